#!/usr/bin/env bash
# How cold-render throughput grows as workers are added, on this one machine, until the CPU is
# saturated. Writes docs/benchmarks/scale.md (a table) and docs/benchmarks/scale.csv (the same
# figures, one line per worker count, for charts).
#
#   scripts/bench-scale.sh [pages per run, default 60] [worker counts, default "1 2 3 4"]
#
# (The "vs 1 worker" column divides by the first worker count's rate: start the list with 1.)
#
# Builds Kiln (release), then starts its own Redis, Postgres (only for `kiln-dashboard domain add`,
# which publishes the demo domain as an operator would), the demo origin and one gateway, all on
# free ports of 127.0.0.1, and for each worker count N: starts N worker processes, each with one
# Chromium and two tabs, asks the gateway for a fixed number of distinct, never-rendered pages at
# once as bots that wait for their render, and times until the last is rendered and cached (every
# bot gets its page with `X-Kiln-Cache: MISS` right after the worker stored it). It reads the
# machine's CPU use from /proc/stat over the same interval, so the table shows where the CPU
# saturates. Everything it starts is stopped when it ends, however it ends; a run takes a few
# minutes once Kiln is built.
#
# Why one browser × two tabs per worker: a worker process with one Chromium is the unit a
# deployment adds, and two tabs keep that browser busy while one render waits on the network (the
# demo's API answers after 150 ms); the per-worker shape stays fixed, so the only thing that
# changes between rows is the number of worker processes.
#
# Each bot comes from its own address (`X-Forwarded-For` from 198.18.0.0/15, the range RFC 2544
# sets aside for benchmarks, believed because the request comes from 127.0.0.1, a trusted proxy):
# the domain's per-address bot limit is for real clients and would otherwise throttle the
# benchmark. No traffic goes to those addresses. The tenant render budget and the queue limit
# are turned off on the gateway for the same reason.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PAGES=${1:-60}
COUNTS=${2:-"1 2 3 4"}
HOST=demo.localhost
BOT_UA='Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)'
OUT="$KILN_ROOT/docs/benchmarks"
BIN="${CARGO_TARGET_DIR:-$KILN_ROOT/target}/release"

ensure_packages redis-server postgresql chromium-headless-shell fonts-liberation curl procps

log "building Kiln (release; the first build takes several minutes)"
(cd "$KILN_ROOT" && cargo build --release --locked --bins)

WORK=$(mktemp -d /tmp/kiln-bench-scale.XXXXXX)
# Postgres runs as its own user, which must be able to enter the directory.
chmod 755 "$WORK"
mkdir -p "$WORK/logs" "$WORK/profiles"

# free_port: a port on 127.0.0.1 nobody listens on (when asked), not handed out before in this run.
TAKEN=" "
free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 20000))
    case "$TAKEN" in *" $port "*) continue ;; esac
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && continue
    TAKEN+="$port "
    echo "$port"
    return
  done
}

WORKER_PIDS=()
SERVICE_PIDS=()

# stop_pids PID...: SIGTERM, up to 30 s to finish (a worker closes its browsers), then SIGKILL.
stop_pids() {
  [ $# -gt 0 ] || return 0
  kill -TERM "$@" 2>/dev/null || true
  for _ in $(seq 150); do
    local alive=0
    for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && return 0
    sleep 0.2
  done
  kill -KILL "$@" 2>/dev/null || true
  wait "$@" 2>/dev/null || true
}

stop_workers() {
  stop_pids "${WORKER_PIDS[@]}"
  WORKER_PIDS=()
  # A worker killed above could not close its browsers: they are the processes whose command line
  # names this run's profile directory (nothing else does).
  local strays
  # (`profile[s]`, so that grep's own command line does not match.)
  strays=$(grep -l -s -E "$WORK/profile[s]" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3 || true)
  if [ -n "$strays" ]; then
    # shellcheck disable=SC2086
    kill -KILL $strays 2>/dev/null || true
  fi
}

cleanup() {
  stop_workers
  stop_pids "${SERVICE_PIDS[@]}"
  stop_redis "$WORK/redis"
  stop_postgres "$WORK/postgres"
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

REDIS_PORT=$(free_port)
PG_PORT=$(free_port)
DEMO_PORT=$(free_port)
GATEWAY_PORT=$(free_port)
GATEWAY_ADMIN_PORT=$(free_port)

export KILN_REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
export KILN_REDIS_PREFIX="kiln:"
export KILN_ALLOWED_PRIVATE_NETS="127.0.0.1:1-65535@*"
export KILN_CHROME_PATH="${KILN_CHROME_PATH:-/usr/lib/chromium/chromium-headless-shell}"
export KILN_LOG_FORMAT=json
export RUST_LOG="${RUST_LOG:-warn}"

log "starting Redis (127.0.0.1:$REDIS_PORT), Postgres (127.0.0.1:$PG_PORT), the demo origin and a gateway"
start_redis "$WORK/redis" "$REDIS_PORT"
start_postgres "$WORK/postgres" "$PG_PORT"
as_pg "$(pg_bin)/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres kiln
export KILN_DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/kiln"
"$BIN/kiln-dashboard" migrate >/dev/null
# Bots wait as long as a domain may let them (120 s), so that every one gets its render; and a
# render may take 30 s (not 10): with more tabs than cores, renders share the CPU and each takes
# longer, which is what the table shows, not a failure to count.
"$BIN/kiln-dashboard" domain add --host "$HOST" --origin "http://127.0.0.1:$DEMO_PORT" \
  --bot-wait-ms 120000 --render-timeout-ms 30000 >/dev/null

KILN_DEMO_LISTEN="127.0.0.1:$DEMO_PORT" "$BIN/kiln-demo" >"$WORK/logs/demo.log" 2>&1 &
SERVICE_PIDS+=($!)
KILN_GATEWAY_LISTEN="127.0.0.1:$GATEWAY_PORT" KILN_GATEWAY_ADMIN_LISTEN="127.0.0.1:$GATEWAY_ADMIN_PORT" \
  KILN_TENANT_MAX_RENDERS=0 KILN_TENANT_RENDERS_PER_MINUTE=0 KILN_GATEWAY_MAX_QUEUED_RENDERS=0 \
  KILN_GATEWAY_VERIFY_CRAWLERS=false \
  "$BIN/kiln-gateway" >"$WORK/logs/gateway.log" 2>&1 &
SERVICE_PIDS+=($!)
# die_with_log LOG MESSAGE: the log's last lines (the run's directory goes with the clean-up), then die.
die_with_log() { tail -n 20 "$1" >&2; die "$2 (its log's last lines are above)"; }
wait_tcp "$DEMO_PORT" 30 || die_with_log "$WORK/logs/demo.log" "the demo origin did not start"
wait_http "http://127.0.0.1:$GATEWAY_ADMIN_PORT/readyz" 60 \
  || die_with_log "$WORK/logs/gateway.log" "the gateway did not become ready"

# start_workers N: N worker processes, one browser and two tabs each, ready to render. One after
# another: workers starting at the same moment on one profile directory each sweep it for a dead
# worker's browsers while the others create theirs.
start_workers() {
  local n=$1 i admin log
  for i in $(seq "$n"); do
    admin=$(free_port)
    log="$WORK/logs/worker-$n-$i.log"
    KILN_WORKER_NAME="bench-$n-$i" KILN_WORKER_ADMIN_LISTEN="127.0.0.1:$admin" \
      KILN_WORKER_BROWSERS=1 KILN_WORKER_TABS_PER_BROWSER=2 KILN_WORKER_PROFILE_DIR="$WORK/profiles" \
      "$BIN/kiln-worker" >"$log" 2>&1 &
    WORKER_PIDS+=($!)
    wait_http "http://127.0.0.1:$admin/readyz" 120 \
      || die_with_log "$log" "worker $i of $n did not become ready within 120 s"
  done
}

# ask_all SERIES COUNT DIR: asks for COUNT distinct pages (the demo's six products, each under the
# query `SERIES=i`) at once, one bot each, and writes each answer (`status cache`) to DIR/i.
ask_all() {
  local series=$1 count=$2 dir=$3 i bots=()
  mkdir -p "$dir"
  for i in $(seq "$count"); do
    curl -sS -o /dev/null --max-time 150 -w '%{http_code} %header{x-kiln-cache}\n' \
      -H "Host: $HOST" -A "$BOT_UA" -H "X-Forwarded-For: 198.18.$((i / 250)).$((i % 250 + 1))" \
      "http://127.0.0.1:$GATEWAY_PORT/products/$((i % 6 + 1))?$series=$i" >"$dir/$i" 2>&1 &
    bots+=($!)
  done
  # (Not a bare `wait`, which would wait for the services too.)
  wait "${bots[@]}" || true
}

# The CPU's busy and total jiffies since boot (all cores): busy excludes idle and iowait.
cpu_jiffies() {
  awk '$1 == "cpu" { total = 0; for (i = 2; i <= NF; i++) total += $i; print total - $5 - $6, total }' /proc/stat
}

# The CPU time (jiffies: user + system, with that of reaped children) of the services this run
# started (Redis, the origin, the gateway, the workers) and all their descendants, the browsers
# included; not the load generator. A browser process that exits meanwhile is counted in its
# reaper's children's time, so differences between two readings hold.
kiln_jiffies() {
  local roots="${SERVICE_PIDS[*]} ${WORKER_PIDS[*]} $(cat "$WORK/redis/redis.pid" 2>/dev/null)"
  # (cat, not awk, reads the files: a process may exit between the glob and the read.)
  { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v roots="$roots" '
    {
      rest = $0; sub(/^.*\) /, "", rest); split(rest, f, " ")
      parent[$1] = f[2]; cpu[$1] = f[12] + f[13] + f[14] + f[15]
    }
    END {
      n = split(roots, r, " "); for (i = 1; i <= n; i++) ours[r[i]] = 1
      do { grew = 0; for (p in parent) if (!(p in ours) && (parent[p] in ours)) { ours[p] = 1; grew = 1 } } while (grew)
      for (p in ours) if (p in cpu) total += cpu[p]
      print total + 0
    }'
}

ROWS=()
BASE=""
for n in $COUNTS; do
  log "$n worker(s): starting"
  start_workers "$n"
  # One page per tab first, so that every browser has rendered once before the clock starts.
  ask_all "warm$n" $((n * 2)) "$WORK/answers/warm-$n"

  log "$n worker(s): $PAGES pages at once"
  read -r busy0 total0 < <(cpu_jiffies)
  kiln0=$(kiln_jiffies)
  start=$(date +%s.%N)
  ask_all "scale$n" "$PAGES" "$WORK/answers/run-$n"
  # Every bot waited for its page's render, which was stored before the bot was answered; a bot
  # answered otherwise (its render failed, say) makes the run invalid rather than faster.
  misses=$(cat "$WORK/answers/run-$n"/* | grep -c '^200 MISS$' || true)
  end=$(date +%s.%N)
  kiln1=$(kiln_jiffies)
  read -r busy1 total1 < <(cpu_jiffies)
  if [ "$misses" -ne "$PAGES" ]; then
    sort "$WORK/answers/run-$n"/* | uniq -c >&2
    grep -h 'render failed' "$WORK"/logs/worker-*.log | tail -n 5 >&2 || true
    die "$n worker(s): only $misses of $PAGES bots got their render (MISS)"
  fi

  seconds=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
  rate=$(awk -v p="$PAGES" -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", p / (b - a) }')
  [ -n "$BASE" ] || BASE=$rate
  ratio=$(awk -v r="$rate" -v b="$BASE" 'BEGIN { printf "%.2f", r / b }')
  cpu=$(awk -v b0="$busy0" -v t0="$total0" -v b1="$busy1" -v t1="$total1" \
    'BEGIN { printf "%.0f", 100 * (b1 - b0) / (t1 - t0) }')
  kiln_cpu=$(awk -v k0="$kiln0" -v t0="$total0" -v k1="$kiln1" -v t1="$total1" \
    'BEGIN { printf "%.0f", 100 * (k1 - k0) / (t1 - t0) }')
  log "$n worker(s): $PAGES renders in $seconds s, $rate renders/s (×$ratio); CPU: Kiln $kiln_cpu %, machine $cpu % busy"
  ROWS+=("$n,$PAGES,$seconds,$rate,$ratio,$kiln_cpu,$cpu")

  log "$n worker(s): stopping"
  stop_workers
done

mkdir -p "$OUT"
{
  echo "workers,renders,seconds,renders_per_s,ratio_vs_1,kiln_cpu_pct,cpu_busy_pct"
  printf '%s\n' "${ROWS[@]}"
} >"$OUT/scale.csv"
{
  echo "# Scaling out: cold renders as workers are added"
  echo
  echo "Run on $(date -u '+%Y-%m-%d %H:%M UTC') by \`scripts/bench-scale.sh $PAGES \"$COUNTS\"\`: $(nproc) cores"
  echo "($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), commit $(git -C "$KILN_ROOT" rev-parse --short HEAD),"
  echo "release build. One gateway, one Redis and the demo origin; N worker processes, each one Chromium with two tabs."
  echo "Each row: $PAGES distinct, never-rendered pages asked for at once by bots that wait for their render;"
  echo "seconds until the last was rendered and cached. Over that interval, as shares of the whole machine (all"
  echo "cores, 100 % = every core busy): Kiln CPU is what its processes used (Redis, origin, gateway, workers and"
  echo "their browsers; /proc/<pid>/stat), CPU busy is what everything used (/proc/stat), the load generator and"
  echo "any other work on the machine included. Timings on a shared machine are noisy: compare rows of one run,"
  echo "not runs. The same figures are in \`scale.csv\`."
  echo
  echo "| workers | renders | seconds | renders/s | vs 1 worker | Kiln CPU % | CPU busy % |"
  echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  for row in "${ROWS[@]}"; do
    IFS=, read -r w r s rate ratio kiln cpu <<<"$row"
    echo "| $w | $r | $s | $rate | $ratio | $kiln | $cpu |"
  done
} >"$OUT/scale.md"
log "wrote $OUT/scale.md and $OUT/scale.csv"
