#!/usr/bin/env bash
# The unit costs behind docs/capacity.md, measured on this machine, and the check of the model
# against a two-gateway, three-worker stack. Writes docs/benchmarks/capacity.md (tables) and
# docs/benchmarks/capacity.csv (one line per figure: part, figure, value, unit).
#
#   scripts/bench-capacity.sh        (`just bench-capacity`)
#
# Builds Kiln (release, with the load program `kiln-capacity` of crates/kiln-bench), starts its own
# Redis and Postgres on free ports of 127.0.0.1 (and the demo origin, gateways, workers and the
# dashboard as each part needs them), and stops all of it when it ends, however it ends. Its data
# (about 2 GB of Redis memory, about 5 GB of Postgres) is deleted with its directory at the end.
# Four parts, each run unless BENCH_PARTS names the ones to run:
#
#   directory  100,000 domains published in one full publish, as the dashboard does
#              (`Directory::publish`): the directory's Redis memory; what the publish cost Redis (its
#              slowest command, the largest command's arguments, from the slowlog with every command
#              logged, and the longest a PING waited meanwhile); a gateway's memory before and after
#              it loads them, its time from start to /readyz, its CPU and the bytes Redis sends
#              while it sits idle (BENCH_DIRECTORY_IDLE_SECONDS, 120: four of its 30 s safety-net
#              refreshes), how long a full publish takes to reach a running gateway, and how long
#              one more domain (`Directory::put`) takes until the gateway serves it (polled with its
#              Host until the answer is no longer 421).
#   pages      1,000,000 cached pages of the demo's product page (rendered once by a worker) written
#              with `Pages::put`, the worker's own call, 100,000 of them on one domain: Redis memory
#              per page and per index entry; on the big domain the time to count, list (first page,
#              deep page, a prefix), purge a 10,000-page prefix and purge the domain. A second,
#              smaller set of pages of a larger size (BENCH_LARGE_PAGES of a ~16 KB page) checks
#              how memory grows with the page. And the memory of queued render jobs, and of a
#              day of usage counters per domain (BENCH_USAGE_DOMAINS, 100,000: `Usage::add_batch`,
#              every kind in every hour) with the time to read the day back (`Usage::day`).
#   renderlog  the render log at 10,000,000 rows (30 days, 300 domains of one tenant, loaded with
#              generated SQL, then rolled up per hour and day by the backfill of
#              migrations/0007_render_stats.sql, as an upgrade does) and a month of usage rows: the
#              tables' sizes per row, and the dashboard's Activity page, its API and charts as a
#              logged-in user gets them, timed through a release `kiln-dashboard serve`; one batch of
#              the render log's retention (5,000 renders); EXPLAIN of the queries behind them.
#   check      two gateways and three workers (one Chromium, two tabs each) on this machine. The
#              stack's idle CPU and the unit costs first, one kind of request at a time at a fixed
#              rate (CPU per bot hit and per person request on one gateway, CPU per cold render on
#              the workers; each net of the idle stack), then a fixed mixed load (bots on cached
#              pages + cold renders + people, open loop) spread over both gateways: the CPU the model
#              predicts (idle + requests × unit costs) against the CPU measured, part by part.
#
# Settings (environment): BENCH_DOMAINS (100000), BENCH_PAGES (1000000), BENCH_BIG_DOMAIN_PAGES
# (100000), BENCH_LARGE_PAGES (100000), BENCH_QUEUE_JOBS (10000), BENCH_RENDER_ROWS (10000000),
# BENCH_CHECK_SECONDS (30), BENCH_RUNS (timed runs per figure, medians reported; 5), BENCH_PARTS,
# BENCH_OUT (docs/benchmarks), BENCH_KEEP=1 (keep the run's directory).
#
# Timings on this shared 2-core machine are noisy (other work runs beside it): every time is the
# median of BENCH_RUNS runs; memory and sizes are what the model leans on.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
export LC_ALL=C

DOMAINS=${BENCH_DOMAINS:-100000}
PAGES=${BENCH_PAGES:-1000000}
BIG=${BENCH_BIG_DOMAIN_PAGES:-100000}
LARGE_PAGES=${BENCH_LARGE_PAGES:-100000}
QUEUE_JOBS=${BENCH_QUEUE_JOBS:-10000}
RENDER_ROWS=${BENCH_RENDER_ROWS:-10000000}
CHECK_SECONDS=${BENCH_CHECK_SECONDS:-30}
RUNS=${BENCH_RUNS:-5}
PARTS=${BENCH_PARTS:-directory pages renderlog check}
OUT=${BENCH_OUT:-$KILN_ROOT/docs/benchmarks}
for n in "$DOMAINS" "$PAGES" "$BIG" "$LARGE_PAGES" "$QUEUE_JOBS" "$RENDER_ROWS" "$CHECK_SECONDS" "$RUNS"; do
  [[ $n =~ ^[0-9]+$ ]] || die "BENCH_* settings must be whole numbers, not '$n'"
done
wants() { case " $PARTS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

ensure_packages redis-server postgresql chromium-headless-shell fonts-liberation curl procps jq
log "building Kiln (release)"
(cd "$KILN_ROOT" && cargo build --release --locked --bins)
BIN="${CARGO_TARGET_DIR:-$KILN_ROOT/target}/release"
CAP="$BIN/kiln-capacity"

bench_make_work kiln-bench-capacity
RESULTS="$WORK/results.csv"
: >"$RESULTS"
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  # Everything below is tried, whatever fails.
  set +e
  bench_stop_services
  stop_redis "$WORK/redis"
  stop_postgres "$WORK/postgres"
  # The Postgres data (several GB) goes whatever BENCH_KEEP says.
  rm -rf "$WORK/postgres"
  bench_finish "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# record PART FIGURE VALUE UNIT: one figure, for the report and the CSV.
record() { echo "$1,$2,$3,$4" >>"$RESULTS"; log "  $1: $2 = $3 $4"; }
# figure PART FIGURE: a recorded value.
figure() { awk -F, -v p="$1" -v f="$2" '$1 == p && $2 == f { v = $3 } END { print v }' "$RESULTS"; }
# kv FILE KEY: a value from a key=value file.
kv() { awk -F= -v k="$2" '$1 == k { print substr($0, length(k) + 2) }' "$1"; }
now_ms() { echo $(( ${EPOCHREALTIME/./} / 1000 )); }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'; }
# (As text: awk would print a number this large in exponent form.)
used_memory() { redis-cli -p "$REDIS_PORT" info memory | awk -F: '$1 == "used_memory" { sub(/\r$/, "", $2); print $2 }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# stop_pid PID: SIGTERM, up to 10 s, then SIGKILL (and out of BENCH_PIDS).
stop_pid() {
  local pid=$1 entry kept=()
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  for entry in "${BENCH_PIDS[@]}"; do [ "${entry#*=}" = "$pid" ] || kept+=("$entry"); done
  BENCH_PIDS=("${kept[@]}")
}

# tree_ticks PID...: CPU ticks of these processes and all their descendants (reaped children
# included, through their parents' cutime).
tree_ticks() {
  local pids="" pid
  for pid in "$@"; do pids+=" $(descendants "$pid" | tr '\n' ' ')"; done
  # shellcheck disable=SC2086
  cpu_ticks $pids
}
TICKS=$(getconf CLK_TCK)

REDIS_PORT=$(free_port)
DEMO_PORT=$(free_port)
ORIGIN=http://127.0.0.1:$DEMO_PORT
export KILN_REDIS_URL="redis://127.0.0.1:$REDIS_PORT" KILN_REDIS_PREFIX="kiln:"
export KILN_ALLOWED_PRIVATE_NETS="127.0.0.1:1-65535@*"
export KILN_CHROME_PATH="${KILN_CHROME_PATH:-/usr/lib/chromium/chromium-headless-shell}"
export KILN_LOG_FORMAT=json RUST_LOG=warn KILN_TRUSTED_PROXIES="127.0.0.1/32"
export KILN_WORKER_PROFILE_DIR="$WORK/profiles"
mkdir -p "$KILN_WORKER_PROFILE_DIR"
# Load generators are not tenants: no render budget, no queue limit, no crawler checks.
export KILN_TENANT_MAX_RENDERS=0 KILN_TENANT_RENDERS_PER_MINUTE=0 KILN_GATEWAY_MAX_QUEUED_RENDERS=0
export KILN_GATEWAY_VERIFY_CRAWLERS=false

log "starting Redis (:$REDIS_PORT) and the demo origin (:$DEMO_PORT)"
# No eviction and no persistence: memory figures are the data's.
start_redis "$WORK/redis" "$REDIS_PORT"
KILN_DEMO_LISTEN="127.0.0.1:$DEMO_PORT" bench_start demo "$BIN/kiln-demo"
wait_tcp "$DEMO_PORT" 30 || die "the demo origin did not start"

# start_gateway NAME [ENV...]: a gateway on free ports; sets GW_URL, GW_ADMIN_URL, GW_PID.
start_gateway() {
  local name=$1 port admin; shift
  port=$(free_port) admin=$(free_port)
  GW_URL=http://127.0.0.1:$port GW_ADMIN_URL=http://127.0.0.1:$admin
  bench_start "$name" env KILN_GATEWAY_LISTEN="127.0.0.1:$port" KILN_GATEWAY_ADMIN_LISTEN="127.0.0.1:$admin" \
    "$@" "$BIN/kiln-gateway"
  GW_PID=$(bench_pid_of "$name")
}
# wait_ready URL SECONDS: polls /readyz every 20 ms.
wait_ready() {
  local deadline=$((SECONDS + $2))
  until curl -fsS -o /dev/null --max-time 1 "$1/readyz" 2>/dev/null; do
    [ $SECONDS -lt "$deadline" ] || return 1
    sleep 0.02
  done
}
# status_of GATEWAY HOST: the status a person gets for / on HOST.
status_of() { curl -sS -o /dev/null -w '%{http_code}' --max-time 5 -H "Host: $2" "$1/" 2>/dev/null || echo 000; }
# wait_served GATEWAY HOST SECONDS: polls until HOST is no longer 421 there (every few ms).
wait_served() {
  local deadline=$((SECONDS + $3))
  while [ "$(status_of "$1" "$2")" = 421 ]; do
    [ $SECONDS -lt "$deadline" ] || return 1
  done
}

# --- directory ----------------------------------------------------------------------------------
if wants directory; then
  record directory run_on "$(date -u '+%Y-%m-%d %H:%M UTC') commit $(git -C "$KILN_ROOT" rev-parse --short HEAD)" ""
  # A gateway reads the directory under its Redis command timeout (KILN_REDIS_TIMEOUT_MS, 500 ms by
  # default). Whether a publish reaches it at DOMAINS domains with that timeout is the first figure;
  # the others are taken with DIR_TIMEOUT_MS, long enough for any read to finish.
  DIR_TIMEOUT_MS=${BENCH_DIRECTORY_TIMEOUT_MS:-5000}
  IDLE_SECONDS=${BENCH_DIRECTORY_IDLE_SECONDS:-120}
  [[ $IDLE_SECONDS =~ ^[0-9]+$ ]] || die "BENCH_DIRECTORY_IDLE_SECONDS must be a whole number"
  log "directory: a gateway on an empty directory"
  start_gateway gw-dir
  wait_ready "$GW_ADMIN_URL" 60 || die "the gateway did not become ready (see $WORK/logs/gw-dir.log)"
  sleep 2
  record directory gateway_rss_empty_first_kib "$(rss_kb "$GW_PID")" KiB
  mem0=$(used_memory)
  # Every command of the publish (and of the gateway's read after it) is logged with the time Redis
  # spent on it; and a PING after another all along says how long any other client waited.
  redis-cli -p "$REDIS_PORT" config set slowlog-log-slower-than 0 >/dev/null
  redis-cli -p "$REDIS_PORT" config set slowlog-max-len 100000 >/dev/null
  redis-cli -p "$REDIS_PORT" slowlog reset >/dev/null
  # (Line-buffered: the figures of a killed redis-cli would be lost in its buffer.)
  stdbuf -oL redis-cli -p "$REDIS_PORT" --latency-history -i 1 --raw >"$WORK/publish-latency.txt" 2>&1 &
  latency_pid=$!
  sleep 0.5
  redis-cli -p "$REDIS_PORT" client list | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^addr=/) print substr($i, 6) }' |
    jq -R . | jq -s . >"$WORK/clients-before.json"
  log "directory: publishing $DOMAINS domains (one full publish)"
  t0=$(now_ms)
  "$CAP" publish --count "$DOMAINS" --origin "$ORIGIN" --extra-host "$BENCH_HOST" >"$WORK/publish.env"
  last=d$((DOMAINS - 1)).capacity.test
  if wait_served "$GW_URL" "$last" 40; then
    record directory default_timeout_publish_to_served_ms $(($(now_ms) - t0)) ms
  else
    record directory default_timeout_publish_to_served_ms "never (40 s)" ""
    record directory default_timeout_gateway_log_timeouts "$(grep -c 'Timeout' "$WORK/logs/gw-dir.log" || true)" lines
  fi
  record directory publish_ms "$(kv "$WORK/publish.env" publish_ms)" ms
  kill "$latency_pid" 2>/dev/null || true
  wait "$latency_pid" 2>/dev/null || true
  record directory publish_max_ping_ms "$(awk '{ if ($2 > m) m = $2 } END { print m + 0 }' "$WORK/publish-latency.txt")" ms
  # The publish's own commands: those of clients connected before it (the gateway, the PINGs) are
  # left out. A command with more than 32 arguments is logged with its first 31 and
  # "... (N more arguments)".
  redis-cli -p "$REDIS_PORT" --json slowlog get 100000 >"$WORK/publish-slowlog.json"
  redis-cli -p "$REDIS_PORT" config set slowlog-log-slower-than 10000 >/dev/null
  jq -r --argjson before "$(cat "$WORK/clients-before.json")" '
    [.[] | select(.[4] as $addr | $before | index($addr) | not)
         | .[3] as $a
         | { us: .[2], cmd: ($a[0] | ascii_upcase),
             args: (if ($a[-1] | test("more arguments")) then ($a | length) - 1 + ($a[-1] | capture("\\((?<n>[0-9]+) more") | .n | tonumber) else ($a | length) end) }]
    | "publish_commands=\(length)",
      "publish_slowest_command_us=\(max_by(.us).us)",
      "publish_slowest_command=\(max_by(.us).cmd)",
      "publish_largest_command_args=\(max_by(.args).args)",
      "publish_largest_command=\(max_by(.args).cmd)"' \
    "$WORK/publish-slowlog.json" >"$WORK/publish-commands.env"
  record directory publish_redis_commands "$(kv "$WORK/publish-commands.env" publish_commands)" ""
  record directory publish_slowest_command_ms "$(awk -v u="$(kv "$WORK/publish-commands.env" publish_slowest_command_us)" 'BEGIN { printf "%.1f", u / 1000 }')" "ms ($(kv "$WORK/publish-commands.env" publish_slowest_command))"
  record directory publish_largest_command_args "$(kv "$WORK/publish-commands.env" publish_largest_command_args)" "arguments ($(kv "$WORK/publish-commands.env" publish_largest_command))"
  record directory publish_batch_domains "$(kv "$WORK/publish.env" publish_batch_domains)" domains
  record directory publish_largest_batch_bytes "$(kv "$WORK/publish.env" publish_largest_batch_bytes)" bytes
  mem1=$(used_memory)
  record directory redis_bytes $((mem1 - mem0)) bytes
  record directory redis_bytes_per_domain $(((mem1 - mem0) / DOMAINS)) bytes
  record directory domain_json_bytes "$(redis-cli -p "$REDIS_PORT" hstrlen kiln:domains d1.capacity.test)" bytes
  stop_pid "$GW_PID"
  "$CAP" --prefix kiln: read-directory --runs "$RUNS" >"$WORK/read.env"
  record directory read_directory_ms "$(kv "$WORK/read.env" read_ms)" ms

  log "directory: gateway starts, $RUNS times each, with 0 and $DOMAINS domains (KILN_REDIS_TIMEOUT_MS=$DIR_TIMEOUT_MS)"
  for what in empty full; do
    starts=() rsss=()
    for run in $(seq "$RUNS"); do
      if [ $what = empty ]; then prefix="kiln-empty:"; else prefix="kiln:"; fi
      t0=$(now_ms)
      start_gateway "gw-$what-$run" KILN_REDIS_PREFIX="$prefix" KILN_REDIS_TIMEOUT_MS="$DIR_TIMEOUT_MS"
      wait_ready "$GW_ADMIN_URL" 120 || die "the gateway did not become ready (see $WORK/logs/gw-$what-$run.log)"
      starts+=($(($(now_ms) - t0)))
      sleep 2
      rsss+=("$(rss_kb "$GW_PID")")
      if [ $what = full ] && [ "$run" = "$RUNS" ]; then
        # Nothing changes: what the gateway's safety net (a refresh every 30 s) costs it and Redis.
        log "directory: the gateway idle for $IDLE_SECONDS s with $DOMAINS domains"
        reads0=$(metric "$GW_ADMIN_URL" kiln_gateway_directory_reads_total)
        ticks0=$(cpu_ticks "$GW_PID")
        out0=$(redis-cli -p "$REDIS_PORT" info stats | awk -F: '$1 == "total_net_output_bytes" { sub(/\r$/, "", $2); print $2 }')
        sleep "$IDLE_SECONDS"
        ticks1=$(cpu_ticks "$GW_PID")
        out1=$(redis-cli -p "$REDIS_PORT" info stats | awk -F: '$1 == "total_net_output_bytes" { sub(/\r$/, "", $2); print $2 }')
        reads1=$(metric "$GW_ADMIN_URL" kiln_gateway_directory_reads_total)
        record directory idle_seconds "$IDLE_SECONDS" s
        record directory idle_gateway_cpu_s "$(awk -v a="$ticks0" -v b="$ticks1" -v t="$TICKS" 'BEGIN { printf "%.2f", (b - a) / t }')" s
        record directory idle_gateway_cpu_ms_per_30s "$(awk -v a="$ticks0" -v b="$ticks1" -v t="$TICKS" -v s="$IDLE_SECONDS" 'BEGIN { printf "%.0f", (b - a) / t * 1000 * 30 / s }')" ms
        record directory idle_redis_out_bytes_per_30s "$(awk -v a="$out0" -v b="$out1" -v s="$IDLE_SECONDS" 'BEGIN { printf "%.0f", (b - a) * 30 / s }')" bytes
        record directory idle_gateway_full_reads "$( [ -n "$reads0" ] && [ -n "$reads1" ] && echo $((reads1 - reads0)) )" ""
        log "directory: one more domain with Directory::put, and a full publish, $RUNS times each"
        puts=() fulls=()
        for i in $(seq "$RUNS"); do
          t0=$(now_ms)
          "$CAP" put-domain --host "new$i.capacity.test" --origin "$ORIGIN" --number $((2000000000 + i))
          wait_served "$GW_URL" "new$i.capacity.test" 60 || die "the gateway never served new$i.capacity.test"
          puts+=($(($(now_ms) - t0)))
        done
        for i in $(seq "$RUNS"); do
          # A full publish that adds one domain, as the dashboard's publish after Redis lost its data.
          t0=$(now_ms)
          "$CAP" publish --count "$DOMAINS" --origin "$ORIGIN" --extra-host "$BENCH_HOST" --extra-host "full$i.capacity.test" >"$WORK/republish-$i.env"
          wait_served "$GW_URL" "full$i.capacity.test" 120 || die "the gateway never served full$i.capacity.test"
          fulls+=($(($(now_ms) - t0)))
        done
        record directory put_to_served_ms "$(printf '%s\n' "${puts[@]}" | median)" ms
        record directory full_publish_to_served_ms "$(printf '%s\n' "${fulls[@]}" | median)" ms
        record directory republish_ms "$(for i in $(seq "$RUNS"); do kv "$WORK/republish-$i.env" publish_ms; done | median)" ms
        sleep 2
        record directory gateway_rss_full_after_publishes_kib "$(rss_kb "$GW_PID")" KiB
        record directory last_domain_status "$(status_of "$GW_URL" "$last")" code
        # Each full publish replaced the directory, withdrawing the domain the one before added.
        [ "$RUNS" -lt 2 ] || record directory stale_domain_status "$(status_of "$GW_URL" "full$((RUNS - 1)).capacity.test")" code
      fi
      stop_pid "$GW_PID"
    done
    record directory "gateway_ready_ms_$what" "$(printf '%s\n' "${starts[@]}" | median)" ms
    record directory "gateway_rss_${what}_kib" "$(printf '%s\n' "${rsss[@]}" | median)" KiB
  done
fi

# --- pages --------------------------------------------------------------------------------------
# The demo's rendered product page, as a worker renders it: one worker, one render, its HTML as
# stored (asked for uncompressed).
start_workers() { # N: N workers, one browser and two tabs each; sets WORKER_PIDS
  local i admin
  WORKER_PIDS=()
  for i in $(seq "$1"); do
    admin=$(free_port)
    bench_start "worker-$i" env KILN_WORKER_NAME="capacity-$i" KILN_WORKER_ADMIN_LISTEN="127.0.0.1:$admin" \
      KILN_WORKER_BROWSERS=1 KILN_WORKER_TABS_PER_BROWSER=2 "$BIN/kiln-worker"
    WORKER_PIDS+=("$(bench_pid_of "worker-$i")")
    wait_http "http://127.0.0.1:$admin/readyz" 120 || die "worker $i did not become ready (see $WORK/logs/worker-$i.log)"
  done
}
stop_workers() {
  local pid children=""
  for pid in "${WORKER_PIDS[@]}"; do children+=" $(descendants "$pid" | tr '\n' ' ')"; done
  for pid in "${WORKER_PIDS[@]}"; do stop_pid "$pid"; done
  for pid in $children; do grep -qa chrom "/proc/$pid/cmdline" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true; done
  WORKER_PIDS=()
}

if wants pages; then
  record pages run_on "$(date -u '+%Y-%m-%d %H:%M UTC') commit $(git -C "$KILN_ROOT" rev-parse --short HEAD)" ""
  log "pages: rendering the demo's /products/3 once"
  "$CAP" publish --count 0 --origin "$ORIGIN" --extra-host "$BENCH_HOST" >/dev/null
  start_gateway gw-pages
  wait_ready "$GW_ADMIN_URL" 60 || die "the gateway did not become ready"
  start_workers 1
  curl -fsS --max-time 60 -H "Host: $BENCH_HOST" -A "$BENCH_BOT_UA" -H 'Accept-Encoding: identity' \
    -o "$WORK/page.html" "$GW_URL/products/3" || die "the demo page's render failed"
  grep -q 'Kiln' "$WORK/page.html" || log "warning: the rendered page does not mention Kiln"
  stop_workers
  stop_pid "$GW_PID"
  redis-cli -p "$REDIS_PORT" flushall >/dev/null

  log "pages: pushing $QUEUE_JOBS render jobs"
  mem0=$(used_memory)
  "$CAP" --prefix kiln-queue: queue --jobs "$QUEUE_JOBS" >"$WORK/queue.env"
  mem1=$(used_memory)
  record pages queue_bytes_per_job $(((mem1 - mem0) / QUEUE_JOBS)) bytes
  record pages queue_push_per_s "$(awk -v n="$QUEUE_JOBS" -v ms="$(kv "$WORK/queue.env" queue_push_ms)" 'BEGIN { printf "%.0f", n * 1000 / ms }')" jobs/s
  redis-cli -p "$REDIS_PORT" flushall >/dev/null

  # (Alone, without the pages: `kiln-capacity usage --domains N` on an empty Redis, the difference of
  # its used_memory before and after divided by N.)
  USAGE_DOMAINS=${BENCH_USAGE_DOMAINS:-$DOMAINS}
  log "pages: a day of usage counters (every kind, every hour) for $USAGE_DOMAINS domains, read back $RUNS times"
  redis-cli -p "$REDIS_PORT" config resetstat >/dev/null
  mem0=$(used_memory)
  "$CAP" usage --domains "$USAGE_DOMAINS" --runs "$RUNS" >"$WORK/usage.env"
  mem1=$(used_memory)
  record pages usage_bytes_per_domain_day $(((mem1 - mem0) / USAGE_DOMAINS)) bytes
  # The dashboard's copier reads a whole day (`Usage::day`) every 5 s: end to end, in how many
  # commands (HSCAN pages), how long Redis spent on them, and its slowest.
  record pages usage_day_read_domains "$(kv "$WORK/usage.env" usage_read_domains)" ""
  record pages usage_day_read_ms "$(kv "$WORK/usage.env" usage_read_ms)" ms
  hscan=$(redis-cli -p "$REDIS_PORT" info commandstats | tr -d '\r' | awk -F'[:=,]' '$1 == "cmdstat_hscan" { print $3, $5 }')
  record pages usage_day_read_commands "$(awk -v c="${hscan% *}" -v r="$RUNS" 'BEGIN { printf "%.0f", c / r }')" ""
  record pages usage_day_read_redis_ms "$(awk -v u="${hscan#* }" -v r="$RUNS" 'BEGIN { printf "%.1f", u / r / 1000 }')" ms
  record pages usage_day_read_command_p999_us "$(redis-cli -p "$REDIS_PORT" info latencystats | tr -d '\r' | awk -F'p99.9=' '/^latency_percentiles_usec_hscan:/ { print $2 }')" us
  redis-cli -p "$REDIS_PORT" flushall >/dev/null

  log "pages: writing $PAGES pages ($BIG on one domain) with Pages::put"
  mem0=$(used_memory)
  "$CAP" pages --html "$WORK/page.html" --total "$PAGES" --big-domain-pages "$BIG" --domains 900 >"$WORK/pages.env"
  mem1=$(used_memory)
  record pages page_html_bytes "$(kv "$WORK/pages.env" page_bytes)" bytes
  record pages page_gzip_bytes "$(kv "$WORK/pages.env" page_gzip_bytes)" bytes
  record pages write_per_s "$(kv "$WORK/pages.env" pages_per_second)" pages/s
  record pages write_seconds "$(kv "$WORK/pages.env" pages_seconds)" s
  record pages redis_bytes $((mem1 - mem0)) bytes
  record pages redis_bytes_per_page $(((mem1 - mem0) / PAGES)) bytes
  record pages redis_used_memory_rss "$(redis-cli -p "$REDIS_PORT" info memory | awk -F: '$1 == "used_memory_rss" { sub(/\r$/, "", $2); print $2 }')" bytes
  # One page's hash and the big domain's two index sets, by Redis's own accounting.
  # (Its name: the URL's SHA-256, as kiln_core::CacheKey makes it.)
  key="kiln:{d:00000000-0000-4000-8000-000000000000}:page:desktop:$(printf '%s' https://d0.capacity.test/p/000000 | sha256sum | cut -c1-32)"
  record pages page_hash_bytes "$(redis-cli -p "$REDIS_PORT" memory usage "$key" samples 0)" bytes
  for set in by-path by-expiry; do
    bytes=$(redis-cli -p "$REDIS_PORT" memory usage "kiln:{d:00000000-0000-4000-8000-000000000000}:pages:$set" samples 0)
    record pages "index_${set}_bytes_per_page" $((bytes / BIG)) bytes
  done

  log "pages: the index of the $BIG-page domain, $RUNS times each"
  "$CAP" index --domain 0 --runs "$RUNS" >"$WORK/index.env"
  for f in count_ms list_first_ms list_deep_ms list_deep_1000_ms list_prefix_ms purge_prefix_ms purge_domain_ms; do
    record pages "$f" "$(kv "$WORK/index.env" "$f")" ms
  done
  for f in count_pages list_deep_first_url purge_prefix_pages purge_domain_pages; do
    record pages "$f" "$(kv "$WORK/index.env" "$f")" ""
  done
  redis-cli -p "$REDIS_PORT" flushall >/dev/null

  if [ "$LARGE_PAGES" -gt 0 ]; then
    # A larger page: ~16 KB of HTML, prose and markup (this repository's architecture notes),
    # which compresses about as real pages do.
    {
      echo '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Kiln</title></head><body><main>'
      head -c 15000 "$KILN_ROOT/ARCHITECTURE.md" | sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's|^\(.*\)$|<p class="para">\1</p>|'
      echo '</main></body></html>'
    } >"$WORK/large.html"
    log "pages: writing $LARGE_PAGES pages of $(wc -c <"$WORK/large.html") bytes"
    mem0=$(used_memory)
    "$CAP" pages --html "$WORK/large.html" --total "$LARGE_PAGES" --big-domain-pages 0 --domains 100 >"$WORK/large.env"
    mem1=$(used_memory)
    record pages large_html_bytes "$(kv "$WORK/large.env" page_bytes)" bytes
    record pages large_gzip_bytes "$(kv "$WORK/large.env" page_gzip_bytes)" bytes
    record pages large_redis_bytes_per_page $(((mem1 - mem0) / LARGE_PAGES)) bytes
    redis-cli -p "$REDIS_PORT" flushall >/dev/null
  fi
fi

# --- render log ---------------------------------------------------------------------------------
if wants renderlog; then
  record renderlog run_on "$(date -u '+%Y-%m-%d %H:%M UTC') commit $(git -C "$KILN_ROOT" rev-parse --short HEAD)" ""
  PG_PORT=$(free_port)
  DASH_PORT=$(free_port)
  DASH_ADMIN_PORT=$(free_port)
  DASH=http://127.0.0.1:$DASH_PORT
  log "renderlog: Postgres (:$PG_PORT)"
  start_postgres "$WORK/postgres" "$PG_PORT"
  export KILN_DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
  psql_() { psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres "$@"; }
  "$BIN/kiln-dashboard" migrate >"$WORK/logs/migrate.log" 2>&1 || die "kiln-dashboard migrate failed"
  bench_start dashboard env KILN_DASHBOARD_LISTEN="127.0.0.1:$DASH_PORT" \
    KILN_DASHBOARD_ADMIN_LISTEN="127.0.0.1:$DASH_ADMIN_PORT" KILN_API_RATE_PER_SECOND=0 \
    KILN_CNAME_TARGET=edge.capacity.test \
    KILN_SESSION_SECRET="capacity-benchmark-session-secret-0123456789abcdef" "$BIN/kiln-dashboard" serve
  wait_http "$DASH/healthz" 60 || wait_http "http://127.0.0.1:$DASH_ADMIN_PORT/healthz" 60 \
    || die "the dashboard did not start (see $WORK/logs/dashboard.log)"
  JAR="$WORK/cookies"
  curl -fsS -c "$JAR" -H 'Content-Type: application/json' -o /dev/null \
    -d '{"email":"capacity@example.com","password":"capacity-benchmark-password-42"}' "$DASH/api/v1/auth/signup" \
    || die "signing up failed (see $WORK/logs/dashboard.log)"
  TENANT=$(psql_ -At -c "SELECT tenant_id FROM users WHERE email = 'capacity@example.com'")
  log "renderlog: 300 domains and $RENDER_ROWS renders over 30 days (generated SQL)"
  t0=$(now_ms)
  psql_ <<SQL
INSERT INTO domains (id, tenant_id, hostname, origin, verified, verification_token)
SELECT ('00000000-0000-4000-a000-' || lpad(n::text, 12, '0'))::uuid, '$TENANT',
       'r' || n || '.capacity.test', '$ORIGIN', true, 'token-' || n
FROM generate_series(0, 299) AS n;
-- Renders: domain n takes a share falling with n (a few big sites, many small ones), spread
-- evenly over the last 30 days; 95 % stored, bots mostly, some warms.
INSERT INTO renders (stream_id, tenant_id, domain_id, at, url, device, purpose, outcome, status,
                     reason, duration_ms, bytes, user_agent, via)
SELECT (1700000000000 + i) || '-0', '$TENANT',
       ('00000000-0000-4000-a000-' || lpad(d::text, 12, '0'))::uuid,
       now() - (i::float8 / $RENDER_ROWS) * interval '30 days',
       'https://r' || d || '.capacity.test/products/' || (i % 5000) || '?page=' || (i % 7),
       CASE WHEN i % 3 = 0 THEN 'mobile' ELSE 'desktop' END,
       CASE WHEN i % 10 = 0 THEN 'warm' ELSE 'bot' END,
       CASE WHEN i % 20 = 0 THEN 'failed' ELSE 'stored' END,
       CASE WHEN i % 20 = 0 THEN NULL ELSE 200 END,
       CASE WHEN i % 20 = 0 THEN 'render timed out' END,
       400 + (i * 7919) % 1200, 3000 + (i * 104729) % 20000,
       CASE WHEN i % 10 = 0 THEN NULL
            ELSE 'Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)' END,
       'edge'
FROM (SELECT i, floor(300 * power(((i * 2654435761) % 1000003)::float8 / 1000003, 2))::int AS d
      FROM generate_series(0::bigint, $RENDER_ROWS - 1) AS i) AS g;
-- A month of usage rows: one per domain and day, and per domain and hour for 35 days.
INSERT INTO usage_daily (domain_id, day, tenant_id, hits, misses, bypasses, passthroughs)
SELECT d.id, current_date - k, d.tenant_id, 1000 + k, 50, 3, 7
FROM domains d, generate_series(0, 29) AS k WHERE d.tenant_id = '$TENANT';
INSERT INTO usage_hourly (domain_id, hour, tenant_id, hits, misses, bypasses, passthroughs)
SELECT d.id, date_trunc('hour', now()) - k * interval '1 hour', d.tenant_id, 40, 2, 0, 0
FROM domains d, generate_series(0, 35 * 24 - 1) AS k WHERE d.tenant_id = '$TENANT';
VACUUM ANALYZE renders;
VACUUM ANALYZE usage_daily;
VACUUM ANALYZE usage_hourly;
SQL
  record renderlog load_seconds $((($(now_ms) - t0) / 1000)) s
  # The roll-ups the charts and the usage API read, made as the upgrade to them makes them from the
  # renders already copied: the migration's own backfill, run again (the copier keeps them from then
  # on, adding each batch of renders in the transaction that inserts it).
  log "renderlog: rolling the render log up per hour and day (the backfill of migration 0007)"
  sed -n '/^-- backfill: begin$/,/^-- backfill: end$/p' "$KILN_ROOT/migrations/0007_render_stats.sql" >"$WORK/backfill.sql"
  grep -q 'INSERT INTO render_stats_daily' "$WORK/backfill.sql" || die "no backfill found in migrations/0007_render_stats.sql"
  t0=$(now_ms)
  psql_ -1 -f "$WORK/backfill.sql"
  record renderlog rollup_backfill_seconds $((($(now_ms) - t0) / 1000)) s
  psql_ -c "VACUUM ANALYZE render_stats_hourly" -c "VACUUM ANALYZE render_stats_daily"
  rows=$(psql_ -At -c "SELECT count(*) FROM renders")
  record renderlog rows "$rows" rows
  for rel in renders usage_daily usage_hourly render_stats_hourly render_stats_daily; do
    read -r table total n < <(psql_ -At -F' ' -c "SELECT pg_relation_size('$rel'), pg_total_relation_size('$rel'), (SELECT count(*) FROM $rel)")
    record renderlog "${rel}_table_bytes_per_row" $((table / n)) bytes
    record renderlog "${rel}_total_bytes_per_row" $((total / n)) bytes
  done
  record renderlog renders_total_bytes "$(psql_ -At -c "SELECT pg_total_relation_size('renders')")" bytes
  HOT=00000000-0000-4000-a000-000000000000
  COLD=00000000-0000-4000-a000-000000000299
  # time_get NAME PATH: median time of RUNS GETs as the logged-in user (after one untimed).
  time_get() {
    local name=$1 path=$2 times=() code
    code=$(curl -sS -b "$JAR" -o "$WORK/raw/$name.out" -w '%{http_code}' --max-time 120 "$DASH$path")
    [ "$code" = 200 ] || die "GET $path: $code (see $WORK/raw/$name.out)"
    for _ in $(seq "$RUNS"); do
      times+=("$(curl -sS -b "$JAR" -o /dev/null -w '%{time_total}' --max-time 120 "$DASH$path")")
    done
    record renderlog "${name}_ms" "$(printf '%s\n' "${times[@]}" | median | awk '{ printf "%.0f", $1 * 1000 }')" ms
  }
  log "renderlog: the dashboard's pages and API, $RUNS times each"
  time_get api_renders_hot_domain "/api/v1/renders?domain_id=$HOT"
  time_get api_renders_small_domain "/api/v1/renders?domain_id=$COLD"
  # A filter no row matches (no render came through the render service): the whole domain is read.
  time_get api_renders_hot_via_service "/api/v1/renders?domain_id=$HOT&via=service"
  time_get api_usage_30_days "/api/v1/usage"
  time_get api_usage_domain "/api/v1/usage?domain_id=$HOT"
  time_get web_activity "/activity"
  time_get web_activity_domain "/activity?domain=$HOT"
  time_get web_activity_small_domain "/activity?domain=$COLD"
  # What the charts and lists ask Postgres, as they ask it (psql's EXPLAIN of the same SQL, without
  # the JIT compiler, as the dashboard's connections run: kiln_control::db::Db::connect).
  # rollup SELECT: a chart's roll-up rows, summed per hour or day with their histograms (the query
  # of chart_buckets_sql! in crates/kiln-control/src/db/activity.rs).
  rollup() {
    echo "WITH s AS ($1), r AS (SELECT start, sum(stored)::bigint AS renders, sum(rendered + failed)::bigint AS failed_renders FROM s GROUP BY start), h AS (SELECT start, array_agg(bucket ORDER BY bucket) AS buckets, array_agg(n ORDER BY bucket) AS counts FROM (SELECT s.start, d.bucket, sum(d.n)::bigint AS n FROM s, unnest(s.duration_buckets, s.duration_counts) AS d (bucket, n) GROUP BY 1, 2) AS per_bucket GROUP BY start), u AS ($2) SELECT coalesce(r.start, u.start) AS start, coalesce(r.renders, 0), coalesce(r.failed_renders, 0), coalesce(u.hits, 0), coalesce(u.misses, 0), coalesce(u.bypasses, 0), h.buckets, h.counts FROM r LEFT JOIN h ON h.start = r.start FULL JOIN u ON r.start = u.start ORDER BY 1"
  }
  {
    echo "-- the Activity page's list, the whole tenant"
    PGOPTIONS="-c jit=off" psql_ -c "EXPLAIN (ANALYZE, BUFFERS) SELECT stream_id FROM renders WHERE tenant_id = '$TENANT' ORDER BY at DESC, stream_id DESC LIMIT 51"
    echo "-- the 30-day chart, the whole tenant (from the daily roll-up)"
    PGOPTIONS="-c jit=off" psql_ -c "EXPLAIN (ANALYZE, BUFFERS) $(rollup \
      "SELECT day::timestamp AT TIME ZONE 'UTC' AS start, stored, rendered, failed, duration_buckets, duration_counts FROM render_stats_daily WHERE tenant_id = '$TENANT' AND day >= current_date - 29 AND day <= current_date" \
      "SELECT day::timestamp AT TIME ZONE 'UTC' AS start, sum(hits)::bigint AS hits, sum(misses)::bigint AS misses, sum(bypasses)::bigint AS bypasses FROM usage_daily WHERE tenant_id = '$TENANT' AND day >= current_date - 29 AND day <= current_date GROUP BY day")"
    echo "-- the 24-hour chart, the whole tenant (from the hourly roll-up)"
    PGOPTIONS="-c jit=off" psql_ -c "EXPLAIN (ANALYZE, BUFFERS) $(rollup \
      "SELECT hour AS start, stored, rendered, failed, duration_buckets, duration_counts FROM render_stats_hourly WHERE tenant_id = '$TENANT' AND hour >= date_trunc('hour', now()) - interval '23 hours' AND hour < date_trunc('hour', now()) + interval '1 hour'" \
      "SELECT hour AS start, sum(hits)::bigint AS hits, sum(misses)::bigint AS misses, sum(bypasses)::bigint AS bypasses FROM usage_hourly WHERE tenant_id = '$TENANT' AND hour >= date_trunc('hour', now()) - interval '23 hours' AND hour < date_trunc('hour', now()) + interval '1 hour' GROUP BY hour")"
    echo "-- the usage API's renders per day, the whole tenant, 30 days (from the daily roll-up)"
    PGOPTIONS="-c jit=off" psql_ -c "EXPLAIN (ANALYZE, BUFFERS) SELECT domain_id, day, stored AS renders, rendered + failed AS failed_renders FROM render_stats_daily WHERE tenant_id = '$TENANT' AND day BETWEEN current_date - 29 AND current_date"
    echo "-- the render list of the busiest domain, only renders through the render service (none)"
    PGOPTIONS="-c jit=off" psql_ -c "EXPLAIN (ANALYZE, BUFFERS) SELECT stream_id FROM renders WHERE tenant_id = '$TENANT' AND domain_id = '$HOT' AND via = 'service' ORDER BY at DESC, stream_id DESC LIMIT 51"
    echo "-- one batch of the render log's retention (the 5,000 oldest renders, older than 29 days)"
    PGOPTIONS="-c jit=off" psql_ -c "BEGIN" -c "EXPLAIN (ANALYZE, BUFFERS) DELETE FROM renders WHERE ctid = ANY(ARRAY(SELECT ctid FROM renders WHERE at < now() - interval '29 days' ORDER BY at LIMIT 5000))" -c "ROLLBACK"
  } >"$WORK/explain.txt" 2>&1
  cp "$WORK/explain.txt" "$WORK/raw/explain.txt"
  # The retention, a batch at a time as the dashboard deletes them (PRUNE_BATCH in
  # crates/kiln-control/src/activity.rs): how long one batch of 5,000 renders takes, oldest first.
  batches=()
  for _ in $(seq "$RUNS"); do
    t0=$(now_ms)
    n=$(psql_ -At -c "WITH d AS (DELETE FROM renders WHERE ctid = ANY(ARRAY(SELECT ctid FROM renders WHERE at < now() - interval '29 days' ORDER BY at LIMIT 5000)) RETURNING 1) SELECT count(*) FROM d")
    batches+=($(($(now_ms) - t0)))
    [ "$n" = 5000 ] || log "warning: a retention batch deleted $n renders, not 5000"
  done
  record renderlog retention_batch_5000_ms "$(printf '%s\n' "${batches[@]}" | median)" ms
  stop_pid "$(bench_pid_of dashboard)"
  stop_postgres "$WORK/postgres"
  rm -rf "$WORK/postgres"
fi

# --- check: two gateways, three workers ---------------------------------------------------------
if wants check; then
  record check run_on "$(date -u '+%Y-%m-%d %H:%M UTC') commit $(git -C "$KILN_ROOT" rev-parse --short HEAD)" ""
  redis-cli -p "$REDIS_PORT" flushall >/dev/null
  "$CAP" publish --count 0 --origin "$ORIGIN" --extra-host "$BENCH_HOST" >/dev/null
  start_gateway gw-a; GW_A=$GW_URL GW_A_PID=$GW_PID
  wait_ready "$GW_ADMIN_URL" 60 || die "gateway a did not become ready"
  start_gateway gw-b; GW_B=$GW_URL GW_B_PID=$GW_PID
  wait_ready "$GW_ADMIN_URL" 60 || die "gateway b did not become ready"
  start_workers 3
  DEMO_PID=$(bench_pid_of demo)
  REDIS_PID=$(cat "$WORK/redis/redis.pid")
  # Every gateway has the six product pages cached (one bot each, through each gateway).
  for gw in "$GW_A" "$GW_B"; do
    for p in 1 2 3 4 5 6; do
      curl -fsS -o /dev/null --max-time 60 -H "Host: $BENCH_HOST" -A "$BENCH_BOT_UA" "$gw/products/$p" || die "warming /products/$p failed"
    done
  done
  # A cold render on each worker's browser first, so that no browser starts during the runs.
  "$CAP" load --gateway "$GW_A" --render-rps 2 --seconds 3 --series warmup >/dev/null

  # run_load NAME ARGS...: the load program at the given rates; CPU seconds per part of the stack
  # over the run, until the last answer, into $WORK/NAME.env beside its figures.
  run_load() {
    local name=$1 g0 w0 d0 r0 m0 g1 w1 d1 r1 m1; shift
    g0=$(cpu_ticks "$GW_A_PID" "$GW_B_PID"); w0=$(tree_ticks "${WORKER_PIDS[@]}")
    d0=$(cpu_ticks "$DEMO_PID"); r0=$(cpu_ticks "$REDIS_PID"); read -r m0 _ < <(machine_ticks)
    local t0 t1
    t0=$(now_ms)
    if [ "$1" = idle ]; then
      sleep "$2"
      : >"$WORK/$name.env"
    else
      "$CAP" load "$@" >"$WORK/$name.env"
    fi
    # Deferred work (a browser's clean-up after the last render) counts too.
    sleep 1
    g1=$(cpu_ticks "$GW_A_PID" "$GW_B_PID"); w1=$(tree_ticks "${WORKER_PIDS[@]}")
    d1=$(cpu_ticks "$DEMO_PID"); r1=$(cpu_ticks "$REDIS_PID"); read -r m1 _ < <(machine_ticks)
    t1=$(now_ms)
    {
      echo "elapsed_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) / 1000 }')"
      echo "cpu_gateways=$(awk -v a="$g0" -v b="$g1" -v t="$TICKS" 'BEGIN { printf "%.2f", (b - a) / t }')"
      echo "cpu_workers=$(awk -v a="$w0" -v b="$w1" -v t="$TICKS" 'BEGIN { printf "%.2f", (b - a) / t }')"
      echo "cpu_origin=$(awk -v a="$d0" -v b="$d1" -v t="$TICKS" 'BEGIN { printf "%.2f", (b - a) / t }')"
      echo "cpu_redis=$(awk -v a="$r0" -v b="$r1" -v t="$TICKS" 'BEGIN { printf "%.2f", (b - a) / t }')"
      echo "cpu_machine=$(awk -v a="$m0" -v b="$m1" -v t="$TICKS" 'BEGIN { printf "%.2f", (b - a) / t }')"
    } >>"$WORK/$name.env"
  }
  BOT_RPS=${BENCH_CHECK_BOT_RPS:-600}
  PERSON_RPS=${BENCH_CHECK_PERSON_RPS:-300}
  RENDER_RPS=${BENCH_CHECK_RENDER_RPS:-1.5}
  UNIT_SECONDS=$((CHECK_SECONDS / 2))
  # What the stack uses doing nothing (heartbeats, polls, directory re-reads, idle browsers), per
  # second and part: the model's fixed cost, taken off the unit costs below.
  log "check: the idle stack, $RUNS runs of $UNIT_SECONDS s"
  for run in $(seq "$RUNS"); do run_load "idle-$run" idle "$UNIT_SECONDS"; done
  for part in gateways workers origin redis; do
    record check "idle_${part}_cpu_per_s" "$(for run in $(seq "$RUNS"); do
      awk -v c="$(kv "$WORK/idle-$run.env" "cpu_$part")" -v t="$(kv "$WORK/idle-$run.env" elapsed_s)" 'BEGIN { printf "%.4f\n", c / t }'
    done | median)" cores
  done
  # idle_cpu PART FILE: the idle CPU-seconds of PART over the run written to FILE.
  idle_cpu() { awk -v i="$(figure check "idle_$1_cpu_per_s")" -v t="$(kv "$2" elapsed_s)" 'BEGIN { printf "%.4f", i * t }'; }
  log "check: unit costs, one kind of request at a time, $RUNS runs each (medians, net of the idle stack)"
  for kind in bot person render; do
    per=() gws=() wks=() ogs=() rds=()
    for run in $(seq "$RUNS"); do
      case $kind in
        bot) run_load "unit-$kind-$run" --gateway "$GW_A" --bot-rps "$BOT_RPS" --seconds "$UNIT_SECONDS" ;;
        person) run_load "unit-$kind-$run" --gateway "$GW_A" --person-rps "$PERSON_RPS" --seconds "$UNIT_SECONDS" ;;
        render) run_load "unit-$kind-$run" --gateway "$GW_A" --render-rps "$RENDER_RPS" --seconds "$UNIT_SECONDS" --series "unit$run" ;;
      esac
      f="$WORK/unit-$kind-$run.env"
      n=$(kv "$f" "${kind}_ok")
      [ "$n" -gt 0 ] || die "check: no $kind request answered 200 (see $f)"
      gws+=("$(awk -v c="$(kv "$f" cpu_gateways)" -v i="$(idle_cpu gateways "$f")" -v n="$n" 'BEGIN { printf "%.6f", (c - i) / n }')")
      wks+=("$(awk -v c="$(kv "$f" cpu_workers)" -v i="$(idle_cpu workers "$f")" -v n="$n" 'BEGIN { printf "%.6f", (c - i) / n }')")
      ogs+=("$(awk -v c="$(kv "$f" cpu_origin)" -v i="$(idle_cpu origin "$f")" -v n="$n" 'BEGIN { printf "%.6f", (c - i) / n }')")
      rds+=("$(awk -v c="$(kv "$f" cpu_redis)" -v i="$(idle_cpu redis "$f")" -v n="$n" 'BEGIN { printf "%.6f", (c - i) / n }')")
      [ "$kind" != render ] || [ "$(kv "$f" render_miss)" = "$(kv "$f" render_sent)" ] \
        || log "warning: only $(kv "$f" render_miss) of $(kv "$f" render_sent) cold pages were rendered for the bot (MISS)"
    done
    record check "unit_${kind}_gateway_cpu_ms" "$(printf '%s\n' "${gws[@]}" | median | awk '{ printf "%.4f", $1 * 1000 }')" ms
    record check "unit_${kind}_worker_cpu_ms" "$(printf '%s\n' "${wks[@]}" | median | awk '{ printf "%.4f", $1 * 1000 }')" ms
    record check "unit_${kind}_origin_cpu_ms" "$(printf '%s\n' "${ogs[@]}" | median | awk '{ printf "%.4f", $1 * 1000 }')" ms
    record check "unit_${kind}_redis_cpu_ms" "$(printf '%s\n' "${rds[@]}" | median | awk '{ printf "%.4f", $1 * 1000 }')" ms
  done

  log "check: the mixed load over both gateways: $BOT_RPS bot hits/s, $PERSON_RPS people/s, $RENDER_RPS cold renders/s for $CHECK_SECONDS s, $RUNS runs"
  for run in $(seq "$RUNS"); do
    run_load "mixed-$run" --gateway "$GW_A" --gateway "$GW_B" --bot-rps "$BOT_RPS" --person-rps "$PERSON_RPS" \
      --render-rps "$RENDER_RPS" --seconds "$CHECK_SECONDS" --series "mixed$run"
  done
  # Predicted CPU-seconds of each part: the answered requests of each kind times its unit cost.
  for part in gateway worker origin redis; do
    case $part in gateway | worker) key=cpu_${part}s ;; *) key=cpu_$part ;; esac
    preds=() meas=()
    for run in $(seq "$RUNS"); do
      f="$WORK/mixed-$run.env"
      p=$(idle_cpu "${key#cpu_}" "$f")
      for kind in bot person render; do
        p=$(awk -v p="$p" -v n="$(kv "$f" "${kind}_ok")" -v u="$(figure check "unit_${kind}_${part}_cpu_ms")" 'BEGIN { printf "%.4f", p + n * u / 1000 }')
      done
      preds+=("$p")
      meas+=("$(kv "$f" "$key")")
    done
    record check "mixed_${part}_cpu_s_predicted" "$(printf '%s\n' "${preds[@]}" | median)" s
    record check "mixed_${part}_cpu_s_measured" "$(printf '%s\n' "${meas[@]}" | median)" s
  done
  for kind in bot person render; do
    for f in sent ok miss p50_ms p99_ms last_s; do
      record check "mixed_${kind}_$f" "$(for run in $(seq "$RUNS"); do kv "$WORK/mixed-$run.env" "${kind}_$f"; done | median)" ""
    done
  done
  record check mixed_machine_cpu_s "$(for run in $(seq "$RUNS"); do kv "$WORK/mixed-$run.env" cpu_machine; done | median)" s
  stop_workers
fi

# --- report -------------------------------------------------------------------------------------
mkdir -p "$OUT"
# A run of some parts (BENCH_PARTS) keeps the other parts' figures of the last report.
if [ -f "$OUT/capacity.csv" ]; then
  tail -n +2 "$OUT/capacity.csv" | while IFS=, read -r part rest; do
    wants "$part" || echo "$part,$rest"
  done >"$WORK/kept.csv"
  cat "$WORK/kept.csv" "$RESULTS" >"$WORK/all.csv"
  mv "$WORK/all.csv" "$RESULTS"
fi
{
  echo "part,figure,value,unit"
  cat "$RESULTS"
} >"$OUT/capacity.csv"
[ ! -f "$WORK/explain.txt" ] || cp "$WORK/explain.txt" "$OUT/capacity-explain.txt"
{
  echo "# Capacity: the unit costs behind docs/capacity.md"
  echo
  bench_meta | awk -F= '{ m[$1] = $2 } END { printf "Run on %s by `scripts/bench-capacity.sh` (`just bench-capacity`): %s cores (%s), %s GB, commit %s, release build. Load average at the start: %s.\n", m["date"], m["cores"], m["cpu"], m["memory_gb"], m["commit"], m["load_start"] }'
  echo
  echo "Times are medians of 3 to 5 runs (BENCH_RUNS; each part's first row says when it ran) on a shared 2-core machine: read them as orders of"
  echo "magnitude; memory and sizes are exact. How each figure is measured is in the script's header; what the"
  echo "model makes of them is [docs/capacity.md](../capacity.md). The same figures: \`capacity.csv\`."
  for part in directory pages renderlog check; do
    grep -q "^$part," "$RESULTS" || continue
    echo
    case $part in
      directory) echo "## The directory: $DOMAINS domains" ;;
      pages) echo "## Cached pages: $PAGES pages, $BIG on one domain; queued jobs" ;;
      renderlog) echo "## The render log at $RENDER_ROWS rows" ;;
      check) echo "## The check: two gateways, three workers" ;;
    esac
    echo
    echo "| figure | value | unit |"
    echo "| --- | ---: | --- |"
    awk -F, -v p="$part" '$1 == p { printf "| %s | %s | %s |\n", $2, $3, $4 }' "$RESULTS"
  done
  if [ -f "$WORK/explain.txt" ]; then
    echo
    echo "The plans of the render log's heaviest queries (EXPLAIN ANALYZE at $RENDER_ROWS rows) are in"
    echo "\`capacity-explain.txt\`."
  fi
} >"$OUT/capacity.md"
log "wrote $OUT/capacity.md and $OUT/capacity.csv"
