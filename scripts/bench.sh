#!/usr/bin/env bash
# Benchmarks the running platform against in-run references on this machine and writes
# docs/benchmarks/latest.md. Needs the local stack (scripts/run-local.sh) running in another terminal.
#
#   scripts/bench.sh [seconds per wrk run, default 10]
#
# Measured, side by side in one run:
#   1. cache hits (bot, HIT) through edge+gateway, and the gateway alone, vs nginx serving the same bytes
#      from disk;
#   2. the human path through edge+gateway vs nginx proxying the origin directly vs the origin itself;
#   3. cold renders of the demo's product pages (cache emptied before each), from the bot's side.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION=${1:-10}
EDGE=http://127.0.0.1:${KILN_LOCAL_EDGE_PORT:-8080}
GATEWAY=http://127.0.0.1:3000
ORIGIN=http://127.0.0.1:5173
REDIS_PORT=${KILN_LOCAL_REDIS_PORT:-6380}
HOST=demo.localhost
BOT_UA='Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)'
PERSON_UA='Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36'
OUT="$KILN_ROOT/docs/benchmarks"
WORK=$(mktemp -d /tmp/kiln-bench.XXXXXX)
chmod 755 "$WORK"
trap 'stop_edge "$WORK/ref"; rm -rf "$WORK"' EXIT

command -v wrk >/dev/null || { log "installing wrk"; as_root apt-get install -y -q wrk >/dev/null; }
wait_http "$EDGE/_edge/healthz" 5 || die "the local stack is not running: start scripts/run-local.sh first"

# --- a reference nginx: the rendered page from disk, and a plain proxy to the origin -------------------
curl -fsS -H "Host: $HOST" -A "$BOT_UA" "$EDGE/products/3" -o /dev/null
curl -fsS -H "Host: $HOST" -A "$BOT_UA" "$EDGE/products/3" -o "$WORK/page.html"
mkdir -p "$WORK/ref"
cat > "$WORK/ref/nginx.conf" <<CONF
worker_processes auto;
pid $WORK/ref/nginx.pid;
error_log $WORK/ref/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $WORK/ref/body; proxy_temp_path $WORK/ref/proxy;
  fastcgi_temp_path $WORK/ref/fcgi; uwsgi_temp_path $WORK/ref/uwsgi; scgi_temp_path $WORK/ref/scgi;
  upstream origin { server 127.0.0.1:5173; keepalive 64; }
  server { listen 127.0.0.1:8090; default_type text/html;
           location / { root $WORK; try_files /page.html =404; } }
  server { listen 127.0.0.1:8091;
           location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
CONF
nginx -p "$WORK/ref" -c "$WORK/ref/nginx.conf" -e "$WORK/ref/error.log"
wait_tcp 8090 10; wait_tcp 8091 10

# wrk_run NAME URL [header...]: prints "NAME rps p50_ms p99_ms"
to_ms() { awk '{ v=$1; if (v ~ /us$/) { sub(/us$/,"",v); print v/1000 } else if (v ~ /ms$/) { sub(/ms$/,"",v); print v } else if (v ~ /s$/) { sub(/s$/,"",v); print v*1000 } else print v }'; }
wrk_run() {
  local name=$1 url=$2; shift 2
  local args=()
  for h in "$@"; do args+=(-H "$h"); done
  local out; out=$(wrk -t2 -c32 -d"${DURATION}s" --latency "${args[@]}" "$url")
  local rps p50 p99 errors
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}' | to_ms)
  p99=$(echo "$out" | awk '$1=="99%" {print $2}' | to_ms)
  errors=$(echo "$out" | awk '/Non-2xx|Socket errors/ {print}' | tr '\n' ' ')
  printf '%s|%s|%s|%s|%s\n' "$name" "$rps" "$p50" "$p99" "${errors:-none}"
}

log "cache hits (${DURATION}s each)"
HITS=$(
  wrk_run "nginx static file (reference)" "http://127.0.0.1:8090/products/3"
  wrk_run "bot HIT via edge + gateway" "$EDGE/products/3" "Host: $HOST" "User-Agent: $BOT_UA"
  wrk_run "bot HIT via gateway only" "$GATEWAY/products/3" "Host: $HOST" "User-Agent: $BOT_UA" "X-Is-Bot: 1"
)
log "human path (${DURATION}s each)"
HUMANS=$(
  wrk_run "origin directly (reference)" "$ORIGIN/products/3"
  wrk_run "nginx proxying the origin (reference)" "http://127.0.0.1:8091/products/3"
  wrk_run "person via edge + gateway" "$EDGE/products/3" "Host: $HOST" "User-Agent: $PERSON_UA"
)

log "cold renders"
RENDERS=""
for round in 1 2 3; do
  for id in 1 2 3 4 5 6; do
    redis-cli -p "$REDIS_PORT" --scan --pattern 'kiln:{d:*}:page:*' | xargs -r redis-cli -p "$REDIS_PORT" del >/dev/null
    line=$(curl -sS -o /dev/null -H "Host: $HOST" -A "$BOT_UA" -D - -w 'total=%{time_total}\n' "$EDGE/products/$id")
    cache=$(echo "$line" | awk -F': ' 'tolower($1)=="x-kiln-cache" {gsub(/\r/,"",$2); print $2}')
    render=$(echo "$line" | awk -F': ' 'tolower($1)=="x-kiln-render-ms" {gsub(/\r/,"",$2); print $2}')
    total=$(echo "$line" | awk -F'=' '/^total=/ {print $2*1000}')
    RENDERS+="$round|/products/$id|$cache|${render:-}|$total"$'\n'
  done
done
median() { sort -n | awk '{a[NR]=$1} END {if (NR==0) print "n/a"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
RENDER_MEDIAN=$(echo "$RENDERS" | awk -F'|' 'NF>=5 && $3=="MISS" {print $5}' | median)
RENDER_MISSES=$(echo "$RENDERS" | awk -F'|' 'NF>=5 && $3=="MISS"' | wc -l)

field() { echo "$1" | awk -F'|' -v n="$2" -v f="$3" '$1==n {print $f}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b>0) printf "%.2f", a/b; else print "n/a" }'; }
minus() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a-b }'; }
STATIC_RPS=$(field "$HITS" "nginx static file (reference)" 2)
EDGE_RPS=$(field "$HITS" "bot HIT via edge + gateway" 2)
GW_RPS=$(field "$HITS" "bot HIT via gateway only" 2)
ORIGIN_P50=$(field "$HUMANS" "origin directly (reference)" 3)
PROXY_RPS=$(field "$HUMANS" "nginx proxying the origin (reference)" 2)
PROXY_P50=$(field "$HUMANS" "nginx proxying the origin (reference)" 3)
PERSON_RPS=$(field "$HUMANS" "person via edge + gateway" 2)
PERSON_P50=$(field "$HUMANS" "person via edge + gateway" 3)

mkdir -p "$OUT"
{
  echo "# Kiln benchmarks"
  echo
  echo "Run on $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(git -C "$KILN_ROOT" rev-parse --short HEAD), wrk -t2 -c32 for ${DURATION}s per row,"
  echo "release build, everything (load generator included) on this one machine over loopback. Timings on a shared"
  echo "machine are noisy: compare rows of the same run, not runs."
  echo
  echo "## Cache hits"
  echo
  echo "| target | requests/s | p50 ms | p99 ms | errors |"
  echo "| --- | ---: | ---: | ---: | --- |"
  echo "$HITS" | awk -F'|' '{printf "| %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5}'
  echo
  echo "Gateway alone / nginx static: **$(ratio "$GW_RPS" "$STATIC_RPS")×** throughput; edge + gateway / nginx static: **$(ratio "$EDGE_RPS" "$STATIC_RPS")×**."
  echo
  echo "## Human path"
  echo
  echo "| target | requests/s | p50 ms | p99 ms | errors |"
  echo "| --- | ---: | ---: | ---: | --- |"
  echo "$HUMANS" | awk -F'|' '{printf "| %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5}'
  echo
  echo "Edge + gateway / nginx proxy: **$(ratio "$PERSON_RPS" "$PROXY_RPS")×** throughput, p50 added over nginx proxying: **$(minus "$PERSON_P50" "$PROXY_P50") ms**, over the origin itself: **$(minus "$PERSON_P50" "$ORIGIN_P50") ms**."
  echo
  echo "## Cold renders of the demo's product pages"
  echo
  echo "Cache emptied before each request; the demo's script waits 100 ms and its API answers after 150 ms, so"
  echo "about 250 ms of every render is the page's own loading time."
  echo
  echo "| round | page | cache | X-Kiln-Render-Ms | total ms (bot's view) |"
  echo "| ---: | --- | --- | ---: | ---: |"
  echo "$RENDERS" | awk -F'|' 'NF>=5 {printf "| %s | %s | %s | %s | %.0f |\n", $1, $2, $3, $4, $5}'
  echo
  echo "Median cold render (bot's view, $RENDER_MISSES renders): **$RENDER_MEDIAN ms**."
} > "$OUT/latest.md"
cat "$OUT/latest.md"
