#!/usr/bin/env bash
# Kiln's benchmark suite (`just bench`). Needs nothing running: it builds the release binaries, runs
# the render-engine benchmark over the corpus (scripts/bench-render.sh) and the render-cost
# benchmark against prerender and Rendertron (scripts/bench-render-cost.sh, a stack of its own),
# starts a private stack on free ports (Redis, a throwaway Postgres to register the demo domain, the
# demo origin, worker, gateway and the nginx edge, so a running scripts/run-local.sh is left alone;
# scripts/bench-lib.sh starts it), measures, stops everything it started and writes
# docs/benchmarks/latest.{md,csv,png}, render.md and render-cost.{md,csv,png}. About 25 minutes
# after the build; BENCH_KEEP=1 keeps the logs and raw figures.
#
#   scripts/bench.sh
#
# Every figure is compared with a reference measured in the same run on this machine, and references
# and subjects alternate round by round, so that noise from other work on the machine hits both:
#   1. cache hits (Googlebot, HIT) through edge + gateway, and straight to the gateway,
#      against nginx serving the same gzip bytes from disk;
#   2. the human path through edge + gateway against nginx proxying the origin (and the origin alone);
#      and, for both, the ceiling: the same edge with nginx (hits) or the origin (people) behind it in
#      place of the gateway, which is what a gateway that cost nothing would reach; and for both the
#      CPU time per request of the gateway process beside the reference nginx's (its master and
#      workers) doing the same job, and beside the floor of the gateway's own HTTP stack
#      (`kiln-floor`, crates/kiln-bench: hyper on tokio serving the same bytes, or proxying the
#      origin, with nothing of Kiln's on top), so that what the gateway costs is split into the
#      stack's part and Kiln's;
#   3. the gateway's memory with 1,000 connections open, on cache hits;
#   4. cold renders of the demo's pages through the edge, one at a time;
#   5. renders per second with 1, 2, 4 and 8 bots at once, each asking for pages never rendered, with
#      the worker's and Chromium's memory and the CPU they use.
#
# Settings (environment):
#   BENCH_SECONDS         length of each wrk run (default 10)
#   BENCH_ROUNDS          alternating rounds of wrk runs; the tables give the median (default 3)
#   BENCH_CONNECTIONS     wrk connections for cache hits and the human path (default 32: with -t2,
#                         one wrk thread per core, enough requests in flight to keep two nginx
#                         workers and the gateway busy, not so many that queueing makes the p50)
#   BENCH_RENDER_SECONDS  how long each concurrency level of renders runs (default 20)
#   BENCH_LEVELS          concurrency levels of renders (default "1 2 4 8")
#   BENCH_CORPUS_RUNS     renders per corpus page in scripts/bench-render.sh (default 3; 0 skips it)
#   BENCH_RENDER_COST     1 (default) runs scripts/bench-render-cost.sh with its full settings, 0
#                         skips it (its own BENCH_* settings, at its head, pass through)
#   BENCH_OUT             where the results go (default docs/benchmarks)
#   BENCH_KEEP=1          keep the run's directory (logs, raw figures) instead of removing it
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
# A decimal point in EPOCHREALTIME and in every number the tools print.
export LC_ALL=C

RUN_SECONDS=${BENCH_SECONDS:-10}
ROUNDS=${BENCH_ROUNDS:-3}
CONNS=${BENCH_CONNECTIONS:-32}
RENDER_SECONDS=${BENCH_RENDER_SECONDS:-20}
read -r -a LEVELS <<<"${BENCH_LEVELS:-1 2 4 8}"
CORPUS_RUNS=${BENCH_CORPUS_RUNS:-3}
RENDER_COST=${BENCH_RENDER_COST:-1}
OUT=${BENCH_OUT:-$KILN_ROOT/docs/benchmarks}
HOST=$BENCH_HOST
BOT_UA=$BENCH_BOT_UA
PERSON_UA='Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36'
# Crawlers and browsers all accept gzip; the gateway sends its stored gzip bytes as they are.
ACCEPT='Accept-Encoding: gzip'
for n in "$RUN_SECONDS" "$ROUNDS" "$CONNS" "$RENDER_SECONDS" "$CORPUS_RUNS" "$RENDER_COST" "${LEVELS[@]}"; do
  [[ $n =~ ^[0-9]+$ ]] || die "BENCH_* settings must be whole numbers, not '$n'"
done

ensure_packages redis-server postgresql nginx chromium chromium-headless-shell fonts-liberation curl \
  ca-certificates procps wrk python3-venv
VENV=${XDG_CACHE_HOME:-$HOME/.cache}/kiln/bench-venv
REQUIREMENTS="$KILN_ROOT/scripts/bench-requirements.txt"

# --- the run's directory, and cleaning up whatever this script started -------------------------
bench_make_work kiln-bench
SAMPLER_PID=""
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  [ -z "$SAMPLER_PID" ] || kill "$SAMPLER_PID" 2>/dev/null || true
  for pid in ${FLOOR_PIDS:-}; do kill "$pid" 2>/dev/null || true; done
  bench_stack_stop
  stop_edge "$WORK/ref"
  stop_edge "$WORK/ceiling-hits"
  stop_edge "$WORK/ceiling-human"
  stop_edge "$WORK/floor-human"
  stop_edge "$WORK/floor-hits"
  bench_finish "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- builds ------------------------------------------------------------------------------------
BIN="${CARGO_TARGET_DIR:-$KILN_ROOT/target}/release"
log "building Kiln (release; the first build takes several minutes)"
(cd "$KILN_ROOT" && cargo build --release --locked --bins) || die "cargo build --release failed"
if [ "$CORPUS_RUNS" -gt 0 ]; then
  # Compiled now, so that no compiler runs beside the measurements.
  log "building the render-engine benchmark (crates/kiln-worker/benches/corpus.rs)"
  (cd "$KILN_ROOT" && cargo bench --locked -p kiln-worker --bench corpus --no-run) \
    || die "cargo bench --no-run failed"
fi

ensure_venv "$VENV" "$REQUIREMENTS" "the chart's packages (matplotlib)" python -c 'import matplotlib'

# wrk holds 1,000 connections in the memory run, and the gateway must accept them.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge 4096 ] \
  || die "the open-files limit is $(ulimit -n); the 1,000-connection run needs at least 4096 (ulimit -n)"

{
  bench_meta
  echo "wrk_seconds=$RUN_SECONDS"
  echo "rounds=$ROUNDS"
  echo "connections=$CONNS"
  echo "render_seconds=$RENDER_SECONDS"
  echo "clock_ticks=$(getconf CLK_TCK)"
} >"$WORK/raw/meta.env"

# --- 0. the render engine over the corpus (its own browser; before the stack starts) -----------
if [ "$CORPUS_RUNS" -gt 0 ]; then
  log "render engine over the corpus ($CORPUS_RUNS renders a page): scripts/bench-render.sh"
  "$KILN_ROOT/scripts/bench-render.sh" "$CORPUS_RUNS" 0 40 "$OUT/render.md" >"$WORK/logs/corpus.log" 2>&1 \
    || { tail -n 30 "$WORK/logs/corpus.log" >&2; die "scripts/bench-render.sh failed (log above)"; }
  grep -E '^Median overhead|^Throughput at' "$WORK/logs/corpus.log" | sed 's/\*\*//g' >&2 || true
fi

# --- render cost against prerender and Rendertron (a stack of its own; before this one starts) ---
if [ "$RENDER_COST" = 1 ]; then
  log "render cost, Kiln against prerender and Rendertron on the same pages: scripts/bench-render-cost.sh"
  BENCH_OUT="$OUT" "$KILN_ROOT/scripts/bench-render-cost.sh" || die "scripts/bench-render-cost.sh failed"
fi

# --- the private stack -------------------------------------------------------------------------
bench_stack_ports
STATIC_PORT=$(free_port) PROXY_PORT=$(free_port) FLOOR_STATIC_PORT=$(free_port) FLOOR_PROXY_PORT=$(free_port)
CEIL_HITS_PORT=$(free_port) CEIL_HITS_TLS_PORT=$(free_port) CEIL_HUMAN_PORT=$(free_port)
CEIL_HUMAN_TLS_PORT=$(free_port)
FLOOR_EDGE_PORT=$(free_port) FLOOR_EDGE_TLS_PORT=$(free_port)
FLOOR_EDGE=http://127.0.0.1:$FLOOR_EDGE_PORT
FLOOR_HITS_EDGE_PORT=$(free_port) FLOOR_HITS_EDGE_TLS_PORT=$(free_port)
FLOOR_HITS_EDGE=http://127.0.0.1:$FLOOR_HITS_EDGE_PORT
STATIC=http://127.0.0.1:$STATIC_PORT
PROXY=http://127.0.0.1:$PROXY_PORT
FLOOR_STATIC=http://127.0.0.1:$FLOOR_STATIC_PORT
FLOOR_PROXY=http://127.0.0.1:$FLOOR_PROXY_PORT
CEIL_HITS=http://127.0.0.1:$CEIL_HITS_PORT
CEIL_HUMAN=http://127.0.0.1:$CEIL_HUMAN_PORT
# Eight tabs (the worker's default, set here so that the figures do not move with it): eight
# concurrent renders are eight renders in Chromium, not fewer and a queue.
export KILN_WORKER_TABS_PER_BROWSER=8
bench_stack_start

# bot URL [curl args...]: a Googlebot's GET through the edge; prints "status cache render_ms total_ms".
bot() {
  local url=$1; shift
  curl -sS -o /dev/null --max-time 60 -H "Host: $HOST" -A "$BOT_UA" -H "$ACCEPT" "$@" \
    -w '%{http_code}\t%header{x-kiln-cache}\t%header{x-kiln-render-ms}\t%{time_total}\n' "$url" |
    awk -F'\t' '{ printf "%s\t%s\t%s\t%.1f\n", $1, ($2 == "" ? "-" : $2), ($3 == "" ? "-" : $3), $4 * 1000 }' \
    || true # a failed request is a line with status 000, counted as such
}

log "rendering /products/3 for the cache-hit runs"
first=$(bot "$EDGE/products/3")
[ "$(cut -f1 <<<"$first")" = 200 ] || die "the first bot request got '$first' (status, cache), not 200 (see $WORK/logs/)"
for target in "edge $EDGE" "gateway $GATEWAY"; do
  set -- $target
  got=$(bot "$2/products/3" -H 'X-Is-Bot: 1' -H 'X-Kiln-Bot-Family: search')
  [ "$(cut -f1-2 <<<"$got")" = $'200\tHIT' ] || die "a bot's second request via the $1 got '$got', not 200 HIT"
done

# --- the reference nginx: the cached page's bytes from disk, and a plain proxy to the origin ----
mkdir -p "$WORK/www" "$WORK/ref"
curl -fsS -H "Host: $HOST" -A "$BOT_UA" -H "$ACCEPT" -H 'X-Is-Bot: 1' -D "$WORK/raw/hit-headers.txt" \
  -o "$WORK/www/page.html.gz" "$GATEWAY/products/3"
grep -qi '^content-encoding: gzip' "$WORK/raw/hit-headers.txt" || die "the gateway did not send its page gzip-compressed"
gzip -dc "$WORK/www/page.html.gz" >"$WORK/www/page.html"
touch -r "$WORK/www/page.html" "$WORK/www/page.html.gz"
BODY_BYTES=$(stat -c %s "$WORK/www/page.html.gz")
echo "page_gzip_bytes=$BODY_BYTES" >>"$WORK/raw/meta.env"
echo "page_bytes=$(stat -c %s "$WORK/www/page.html")" >>"$WORK/raw/meta.env"
# Configured like the edge where it matters: two workers, JSON access log per request, keep-alive
# to the upstream, no buffering of the proxied response.
cat >"$WORK/ref/nginx.conf" <<CONF
user root;
worker_processes auto;
pid $WORK/ref/nginx.pid;
error_log $WORK/ref/error.log warn;
events { worker_connections 1024; }
http {
  server_tokens off;
  log_format ref_json escape=json '{"time":"\$time_iso8601","request_id":"\$request_id",'
    '"remote_addr":"\$remote_addr","host":"\$http_host","method":"\$request_method",'
    '"uri":"\$request_uri","protocol":"\$server_protocol","status":\$status,'
    '"body_bytes_sent":\$body_bytes_sent,"request_time":\$request_time,'
    '"upstream_addr":"\$upstream_addr","upstream_status":"\$upstream_status",'
    '"upstream_response_time":"\$upstream_response_time","user_agent":"\$http_user_agent"}';
  access_log $WORK/ref/access.log ref_json;
  client_body_temp_path $WORK/ref/body; proxy_temp_path $WORK/ref/proxy;
  fastcgi_temp_path $WORK/ref/fcgi; uwsgi_temp_path $WORK/ref/uwsgi; scgi_temp_path $WORK/ref/scgi;
  upstream origin { server 127.0.0.1:$DEMO_PORT; keepalive 64; }
  server {
    listen 127.0.0.1:$STATIC_PORT;
    location / { root $WORK/www; default_type text/html; gzip_static on; try_files /page.html =404; }
  }
  server {
    listen 127.0.0.1:$PROXY_PORT;
    location / {
      proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_buffering off; proxy_request_buffering off;
    }
  }
}
CONF
nginx -p "$WORK/ref" -c "$WORK/ref/nginx.conf" -e "$WORK/ref/error.log" || die "the reference nginx did not start"
wait_tcp "$STATIC_PORT" 10 && wait_tcp "$PROXY_PORT" 10 || die "the reference nginx is not listening"
ref_len=$(curl -fsS -H "$ACCEPT" -o /dev/null -w '%{size_download}' "$STATIC/products/3")
[ "$ref_len" = "$BODY_BYTES" ] || die "nginx serves $ref_len bytes, the gateway $BODY_BYTES: gzip_static is not in use"

# The floors of the gateway's stack (hyper on tokio, nothing of Kiln's): the gateway's hit with its
# own headers, and a plain proxy to the origin.
floor_headers=()
while IFS= read -r line; do
  line=${line%$'\r'}
  case "${line,,}" in
    content-type:* | content-encoding:* | vary:* | etag:* | last-modified:* | x-kiln-cache:*) floor_headers+=("$line") ;;
  esac
done <"$WORK/raw/hit-headers.txt"
"$BIN/kiln-floor" static "127.0.0.1:$FLOOR_STATIC_PORT" "$WORK/www/page.html.gz" "${floor_headers[@]}" \
  >"$WORK/logs/floor-static.log" 2>&1 &
FLOOR_STATIC_PID=$!
"$BIN/kiln-floor" proxy "127.0.0.1:$FLOOR_PROXY_PORT" "http://127.0.0.1:$DEMO_PORT" >"$WORK/logs/floor-proxy.log" 2>&1 &
FLOOR_PROXY_PID=$!
FLOOR_PIDS="$FLOOR_STATIC_PID $FLOOR_PROXY_PID"
wait_tcp "$FLOOR_STATIC_PORT" 10 && wait_tcp "$FLOOR_PROXY_PORT" 10 || die "kiln-floor is not listening (see $WORK/logs/floor-*.log)"
floor_len=$(curl -fsS -H "$ACCEPT" -o /dev/null -w '%{size_download}' "$FLOOR_STATIC/products/3")
[ "$floor_len" = "$BODY_BYTES" ] || die "kiln-floor serves $floor_len bytes, the gateway $BODY_BYTES"

# The ceilings: the edge's own configuration with the static nginx (for bots) or the origin (for
# people) as its upstream instead of the gateway.
start_edge "$WORK/ceiling-hits" "127.0.0.1:$CEIL_HITS_PORT" "127.0.0.1:$STATIC_PORT" "127.0.0.1:$CEIL_HITS_TLS_PORT"
start_edge "$WORK/ceiling-human" "127.0.0.1:$CEIL_HUMAN_PORT" "127.0.0.1:$DEMO_PORT" "127.0.0.1:$CEIL_HUMAN_TLS_PORT"
# And the edge with the floors behind it: what bots and people through the edge would see with a
# gateway that did nothing but hyper's part of the job (its throughput, and its tail latency).
start_edge "$WORK/floor-human" "127.0.0.1:$FLOOR_EDGE_PORT" "127.0.0.1:$FLOOR_PROXY_PORT" "127.0.0.1:$FLOOR_EDGE_TLS_PORT"
start_edge "$WORK/floor-hits" "127.0.0.1:$FLOOR_HITS_EDGE_PORT" "127.0.0.1:$FLOOR_STATIC_PORT" "127.0.0.1:$FLOOR_HITS_EDGE_TLS_PORT"
for edge in "$CEIL_HITS" "$CEIL_HUMAN" "$FLOOR_EDGE" "$FLOOR_HITS_EDGE"; do
  wait_http "$edge/_edge/healthz" 10 || die "the ceiling edge at $edge did not start"
done
ceil_len=$(curl -fsS -H "Host: $HOST" -A "$BOT_UA" -H "$ACCEPT" -o /dev/null -w '%{size_download}' "$CEIL_HITS/products/3")
[ "$ceil_len" = "$BODY_BYTES" ] || die "the ceiling edge serves bots $ceil_len bytes, the gateway $BODY_BYTES"

# --- wrk ---------------------------------------------------------------------------------------
# role_pids SUBJECT: the processes doing the subject's own work, whose CPU time per request is
# compared: the gateway (for every run through it), or the reference nginx (master and workers).
# None for the origin and the ceilings.
role_pids() {
  case $1 in
    "edge + gateway" | "gateway alone") echo "$GW_PID" ;;
    "hyper floor") echo "$FLOOR_STATIC_PID" ;;
    "hyper floor proxy") echo "$FLOOR_PROXY_PID" ;;
    "nginx static file" | "nginx proxy") descendants "$(cat "$WORK/ref/nginx.pid")" | tr '\n' ' ' ;;
  esac
}

# wrk_run SECTION SUBJECT ROUND URL [HEADER...]: one wrk run; appends a line to raw/wrk.tsv. For the
# runs that pass the gateway, the gateway's own counters say how many answers were cache HITs (bot)
# or took the human path (person): wrk itself only sees status codes. The last field is the CPU
# time (ticks) the subject's own processes (role_pids) used during the run.
wrk_run() {
  local section=$1 subject=$2 round=$3 url=$4; shift 4
  local args=() h counted_before counted_after out pids cpu_before cpu_after
  for h in "$@"; do args+=(-H "$h"); done
  local labels='class="bot".*cache="hit"|cache="hit".*class="bot"'
  [ "$section" = human ] && labels='class="person"'
  pids=$(role_pids "$subject")
  counted_before=$(metric "$GW_ADMIN" kiln_gateway_requests_total "$labels")
  cpu_before=$(cpu_ticks $pids)
  out=$(wrk -t2 -c"$CONNS" -d"${RUN_SECONDS}s" --timeout 5s --latency "${args[@]}" "$url" 2>&1) \
    || die "wrk failed against $url: $out"
  cpu_after=$(cpu_ticks $pids)
  counted_after=$(metric "$GW_ADMIN" kiln_gateway_requests_total "$labels")
  wrk_parse "$out" | awk -v s="$section" -v n="$subject" -v r="$round" -v c=$((${counted_after:-0} - ${counted_before:-0})) \
    -v cpu="$([ -n "$pids" ] && echo $((cpu_after - cpu_before)))" \
    'BEGIN { OFS = "\t" } { print s, n, r, $0, c, cpu }' >>"$WORK/raw/wrk.tsv"
  tail -n 1 "$WORK/raw/wrk.tsv" | awk -F'\t' -v hz="$(getconf CLK_TCK)" '{ printf "    %-28s round %s: %9.0f req/s  p50 %6.3f ms  p99 %7.3f ms  errors %d%s\n", $2, $3, $4, $5, $6, $8 + $9, ($11 != "" && $7 > 0 ? sprintf("  cpu %.1f us/req", $11 / hz * 1e6 / $7) : "") }' >&2
}

# wrk_parse OUTPUT: "rps p50_ms p99_ms requests non2xx socket_errors"
wrk_parse() {
  awk '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /m$/) return v * 60000; if (v ~ /s$/) return v * 1000; return v }
    /Requests\/sec/ { rps = $2 }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    / requests in / { requests = $1 }
    /Non-2xx or 3xx responses/ { non2xx = $NF }
    /Socket errors/ { gsub(/,/, ""); sock = $4 + $6 + $8 + $10 }
    END { printf "%s\t%.3f\t%.3f\t%d\t%d\t%d\n", rps, p50, p99, requests, non2xx, sock }' <<<"$1"
}

: >"$WORK/raw/wrk.tsv"
BOT_HEADERS=("Host: $HOST" "User-Agent: $BOT_UA" "$ACCEPT")
PERSON_HEADERS=("Host: $HOST" "User-Agent: $PERSON_UA" "$ACCEPT")
log "cache hits and the human path: $ROUNDS rounds of ${RUN_SECONDS}s wrk runs, -t2 -c$CONNS, references and subjects alternating"
for round in $(seq "$ROUNDS"); do
  wrk_run hits "nginx static file" "$round" "$STATIC/products/3" "$ACCEPT"
  wrk_run hits "edge + gateway" "$round" "$EDGE/products/3" "${BOT_HEADERS[@]}"
  wrk_run hits "gateway alone" "$round" "$GATEWAY/products/3" "${BOT_HEADERS[@]}" 'X-Is-Bot: 1' 'X-Kiln-Bot-Family: search'
  wrk_run hits "edge + nginx static (ceiling)" "$round" "$CEIL_HITS/products/3" "${BOT_HEADERS[@]}"
  wrk_run hits "hyper floor" "$round" "$FLOOR_STATIC/products/3" "${BOT_HEADERS[@]}"
  wrk_run hits "edge + hyper floor" "$round" "$FLOOR_HITS_EDGE/products/3" "${BOT_HEADERS[@]}"
  wrk_run human "origin alone" "$round" "$ORIGIN/products/3" "${PERSON_HEADERS[@]}"
  wrk_run human "nginx proxy" "$round" "$PROXY/products/3" "${PERSON_HEADERS[@]}"
  wrk_run human "edge + gateway" "$round" "$EDGE/products/3" "${PERSON_HEADERS[@]}"
  wrk_run human "edge + origin (ceiling)" "$round" "$CEIL_HUMAN/products/3" "${PERSON_HEADERS[@]}"
  # The edge's verdict as the edge gives it, so the gateway does what it does behind the edge.
  wrk_run human "gateway alone" "$round" "$GATEWAY/products/3" "${PERSON_HEADERS[@]}" 'X-Is-Bot: 0'
  wrk_run human "hyper floor proxy" "$round" "$FLOOR_PROXY/products/3" "${PERSON_HEADERS[@]}"
  wrk_run human "edge + hyper floor proxy" "$round" "$FLOOR_EDGE/products/3" "${PERSON_HEADERS[@]}"
done

# --- the gateway's memory with 1,000 connections ----------------------------------------------
log "gateway memory: wrk -t2 -c1000 for ${RUN_SECONDS}s on cache hits straight to the gateway"
GW_IDLE_KB=$(rss_kb "$GW_PID")
sample_gateway() { # every 0.2 s: RSS in kB and open connections, while wrk runs
  while :; do
    printf '%s\t%s\n' "$(rss_kb "$GW_PID")" "$(metric "$GW_ADMIN" kiln_gateway_open_connections)"
    sleep 0.2
  done
}
sample_gateway >"$WORK/raw/gateway-1000.tsv" &
SAMPLER_PID=$!
args=()
for h in "${BOT_HEADERS[@]}" 'X-Is-Bot: 1' 'X-Kiln-Bot-Family: search'; do args+=(-H "$h"); done
out=$(wrk -t2 -c1000 -d"${RUN_SECONDS}s" --timeout 10s --latency "${args[@]}" "$GATEWAY/products/3" 2>&1) \
  || die "wrk -c1000 failed: $out"
kill "$SAMPLER_PID" 2>/dev/null || true
wait "$SAMPLER_PID" 2>/dev/null || true
SAMPLER_PID=""
{
  printf 'idle_rss_kb\t%s\n' "$GW_IDLE_KB"
  awk -F'\t' '$1 > m { m = $1 } END { printf "peak_rss_kb\t%d\n", m }' "$WORK/raw/gateway-1000.tsv"
  awk -F'\t' '$2 != "" && $2 + 0 > m { m = $2 } END { printf "peak_open_connections\t%d\n", m }' "$WORK/raw/gateway-1000.tsv"
  printf 'after_rss_kb\t%s\n' "$(rss_kb "$GW_PID")"
  wrk_parse "$out" | awk -F'\t' 'BEGIN { OFS = "\t" } { print "rps", $1; print "p50_ms", $2; print "p99_ms", $3; print "requests", $4; print "non2xx", $5; print "socket_errors", $6 }'
} >"$WORK/raw/gateway-memory.tsv"
awk -F'\t' '{ printf "    %s %s\n", $1, $2 }' "$WORK/raw/gateway-memory.tsv" >&2

# --- renders -----------------------------------------------------------------------------------
flush_pages() { # empties the render cache (the domain directory and the queue stay)
  redis-cli -p "$REDIS_PORT" --scan --pattern 'kiln:{d:*}:page:*' | xargs -r -n 500 redis-cli -p "$REDIS_PORT" del >/dev/null
}
wait_idle() { # until the worker holds no tab and no job waits, so that one level does not leak into the next
  local deadline=$((SECONDS + 60))
  until [ "$(metric "$WORKER_ADMIN" kiln_browser_tabs_in_use)" = 0 ] && [ "$(metric "$WORKER_ADMIN" kiln_queue_depth 'queue="render"')" = 0 ]; do
    [ $SECONDS -lt $deadline ] || die "the worker did not go idle within 60 s"
    sleep 0.2
  done
  sleep 1
}
RUN_ID=$(date +%s)
PRODUCTS=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$KILN_ROOT/examples/demo/products.json" 2>/dev/null || echo 6)

log "cold renders of the demo's pages through the edge, one at a time ($ROUNDS rounds of $PRODUCTS pages)"
: >"$WORK/raw/cold.tsv"
for round in $(seq "$ROUNDS"); do
  for id in $(seq "$PRODUCTS"); do
    flush_pages
    wait_idle
    # A query string no one asked for before: a page the gateway's in-memory cache cannot hold either.
    printf '%s\t/products/%s\t%s\n' "$round" "$id" "$(bot "$EDGE/products/$id?bench=$RUN_ID-cold-$round")" >>"$WORK/raw/cold.tsv"
  done
done
awk -F'\t' '{ printf "    round %s %-12s %s %-5s render %5s ms  total %7.1f ms\n", $1, $2, $3, $4, $5, $6 }' "$WORK/raw/cold.tsv" >&2

# render_client LEVEL CLIENT DEADLINE: one bot asking for never-rendered pages until the deadline.
render_client() {
  local level=$1 client=$2 deadline=$3 i=0 start
  while [ "${EPOCHREALTIME/./}" -lt "$deadline" ]; do
    i=$((i + 1))
    start=$EPOCHREALTIME
    printf '%s\t%s\t%s\t%s\t%s\n' "$level" "$client" "$start" \
      "$(bot "$EDGE/products/$(((client + i) % PRODUCTS + 1))?bench=$RUN_ID-$level-$client-$i")" "$EPOCHREALTIME"
  done
}
sample_renders() { # every 0.5 s: level, worker RSS kB, Chromium PSS bytes, tabs in use
  while :; do
    printf '%s\t%s\t%s\t%s\n' "$1" "$(rss_kb "$WORKER_PID")" "$(metric "$WORKER_ADMIN" kiln_browser_memory_bytes)" \
      "$(metric "$WORKER_ADMIN" kiln_browser_tabs_in_use)"
    sleep 0.5
  done
}
: >"$WORK/raw/renders.tsv"
: >"$WORK/raw/levels.tsv"
: >"$WORK/raw/render-memory.tsv"
log "renders per second by concurrency (${LEVELS[*]}), ${RENDER_SECONDS}s a level, every page a new one"
for level in "${LEVELS[@]}"; do
  flush_pages
  wait_idle
  sample_renders "$level" >>"$WORK/raw/render-memory.tsv" &
  SAMPLER_PID=$!
  procs=$(descendants "$WORKER_PID" | tr '\n' ' ')
  cpu_before=$(cpu_ticks $procs)
  read -r busy_before total_before < <(machine_ticks)
  started=$EPOCHREALTIME
  deadline=$(( ${started/./} + RENDER_SECONDS * 1000000 ))
  clients=()
  for client in $(seq "$level"); do
    render_client "$level" "$client" "$deadline" >"$WORK/raw/renders-$level-$client.tsv" &
    clients+=($!)
  done
  wait "${clients[@]}"
  finished=$EPOCHREALTIME
  # The processes alive now include the browsers started during the level; those that were
  # recycled during it are counted in the worker's reaped children.
  procs=$(descendants "$WORKER_PID" | tr '\n' ' ')
  cpu_after=$(cpu_ticks $procs)
  read -r busy_after total_after < <(machine_ticks)
  kill "$SAMPLER_PID" 2>/dev/null || true
  wait "$SAMPLER_PID" 2>/dev/null || true
  SAMPLER_PID=""
  cat "$WORK/raw/renders-$level"-*.tsv >>"$WORK/raw/renders.tsv"
  awk -v l="$level" -v s="$started" -v f="$finished" -v c=$((cpu_after - cpu_before)) -v hz="$(getconf CLK_TCK)" \
      -v b=$((busy_after - busy_before)) -v t=$((total_after - total_before)) -v load="$(cut -d' ' -f1 /proc/loadavg)" \
      'BEGIN { OFS = "\t"; print l, f - s, c / hz, (t > 0 ? 100 * b / t : 0), load }' >>"$WORK/raw/levels.tsv"
  awk -F'\t' -v l="$level" '$1 == l { n++; if ($4 == 200 && $5 == "MISS") ok++ } END { printf "    %d at once: %d requests, %d rendered (200 MISS)\n", l, n, ok }' "$WORK/raw/renders.tsv" >&2
done
echo "load_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$WORK/raw/meta.env"
printf 'worker_idle_rss_kb\t%s\n' "$(rss_kb "$WORKER_PID")" >"$WORK/raw/worker-idle.tsv"

# --- the report --------------------------------------------------------------------------------
mkdir -p "$OUT"
log "writing $OUT/latest.md, latest.csv and latest.png"
"$VENV/bin/python" "$KILN_ROOT/scripts/bench_report.py" "$WORK/raw" "$OUT" || die "scripts/bench_report.py failed"
"$VENV/bin/python" "$KILN_ROOT/scripts/bench_chart.py" "$OUT/latest.csv" "$OUT/latest.png" || die "scripts/bench_chart.py failed"
sed -n '/^## Goals/,/^## Cache hits/p' "$OUT/latest.md" | sed '$d' >&2
log "done: $OUT/latest.md"
