# What Kiln's benchmark scripts share (scripts/bench.sh, scripts/bench-render-cost.sh): free ports,
# CPU and memory figures from /proc, Prometheus metrics, cgroups to count a system's CPU, and the
# private Kiln stack they measure (Redis, a throwaway Postgres to register domains, the demo origin,
# worker, gateway and the nginx edge, on free ports). Sourced after lib.sh, not executed. The caller
# makes its run's directory (bench_make_work) and sets BIN (the release binaries) first, and its exit
# trap stops what it started (bench_stack_stop) and ends with bench_finish.

BENCH_HOST=demo.localhost
BENCH_BOT_UA='Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)'

# --- figures from /proc ------------------------------------------------------------------------

# descendants PID: the process and every process below it, one id a line.
descendants() {
  ps -e -o pid=,ppid= | awk -v root="$1" '
    { parent[$1] = $2 }
    END { for (p in parent) { q = p; while ((q in parent) && q != root && q > 1) q = parent[q]; if (q == root) print p } }'
}

# cpu_ticks PID...: CPU time (user + system, with reaped children's) of these processes, in ticks.
cpu_ticks() {
  local pid
  for pid in "$@"; do cat "/proc/$pid/stat" 2>/dev/null || true; done |
    awk '{ sub(/^.*\) /, ""); split($0, f, " "); s += f[12] + f[13] + f[14] + f[15] } END { print s + 0 }'
}

# machine_ticks: "busy total" CPU ticks of the whole machine since boot.
machine_ticks() {
  awk '$1 == "cpu" { t = 0; for (i = 2; i <= 9; i++) t += $i; print t - $5 - $6, t }' /proc/stat
}

rss_kb() { awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# A free port below the ephemeral range (where outgoing connections' own ports come from, so a port
# nothing listens on may still be taken), not yet handed out by this script.
BENCH_USED_PORTS=" "
BENCH_EPHEMERAL_LOW=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % (BENCH_EPHEMERAL_LOW - 20000)))
    case $BENCH_USED_PORTS in *" $port "*) continue ;; esac
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && continue
    BENCH_USED_PORTS+="$port "
    echo "$port"
    return
  done
}

# metric URL NAME [LABEL-REGEX]: the sum of a Prometheus metric's samples whose labels match.
metric() {
  curl -fsS --max-time 2 "$1/metrics" 2>/dev/null |
    awk -v name="$2" -v labels="${3:-}" '
      index($1, name) == 1 && (substr($1, length(name) + 1, 1) == "{" || length($1) == length(name)) && $0 ~ labels { s += $NF; n++ }
      END { if (n) printf "%.0f\n", s; else print "" }'
}

# bench_meta: "key=value" lines about the machine and the run, for a report's header.
bench_meta() {
  echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "commit=$(git -C "$KILN_ROOT" rev-parse --short HEAD)$(git -C "$KILN_ROOT" diff --quiet HEAD 2>/dev/null || echo '+changes')"
  echo "cores=$(nproc)"
  echo "cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
  echo "memory_gb=$(awk '/^MemTotal/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)"
  echo "load_start=$(cut -d' ' -f1-3 /proc/loadavg)"
  echo "nginx=$(nginx -v 2>&1 | sed 's|.*nginx/||')"
  # Debian's launcher script prints a shell warning before the version on some machines.
  echo "chromium=$(chromium --version 2>/dev/null | awk '/^Chromium/ { print $2 }')"
  echo "kiln_chrome=${KILN_CHROME_PATH:-/usr/lib/chromium/chromium-headless-shell}"
}

# --- CPU accounting by cgroup ------------------------------------------------------------------
# A system's CPU is every process it starts, Chromium's included, down to renderers that exit
# during a run and Crashpad handlers that leave the process tree at once (they re-parent to init).
# A cgroup of its own holds all of them, since children stay in their parent's cgroup: cgroup v1's
# cpuacct.usage, or cgroup v2's cpu.stat. Where neither can be made, the method is "proc", and the
# driver sums /proc over the process tree instead.

# bench_cpu_method: "cgroup1 DIR", "cgroup2 DIR" (the hierarchy to make cgroups in) or "proc".
# BENCH_CPU_METHOD=proc forces the fallback.
bench_cpu_method() {
  local root probe
  if [ "${BENCH_CPU_METHOD:-}" = proc ]; then echo proc; return; fi
  for root in cgroup1:/sys/fs/cgroup/cpuacct cgroup2:/sys/fs/cgroup cgroup2:/sys/fs/cgroup/unified; do
    case ${root%%:*} in
      cgroup1) [ -f "${root#*:}/cpuacct.usage" ] || continue ;;
      cgroup2) [ -f "${root#*:}/cgroup.controllers" ] || continue ;;
    esac
    probe="${root#*:}/kiln-bench-probe-$$"
    # A cgroup that can be made and joined: a container may show one it cannot write to.
    if mkdir "$probe" 2>/dev/null; then
      if sh -c 'echo $$ >"$1/cgroup.procs"' sh "$probe" 2>/dev/null; then
        rmdir "$probe" 2>/dev/null || true
        echo "${root%%:*} ${root#*:}"
        return
      fi
      rmdir "$probe" 2>/dev/null || true
    fi
  done
  echo proc
}

# bench_join DIR: moves the calling (sub)shell into cgroup DIR; nothing when DIR is empty.
bench_join() {
  [ -z "$1" ] || echo "$BASHPID" >"$1/cgroup.procs"
}

# bench_exec_in DIR COMMAND...: runs COMMAND in cgroup DIR (or where it is, DIR empty), under the
# caller's process id: for `bench_start NAME bench_exec_in DIR COMMAND...`.
bench_exec_in() {
  bench_join "$1" || die "cannot move a process into the cgroup $1"
  shift
  exec "$@"
}

# bench_cgroup_kill DIR: SIGKILL to every process left in cgroup DIR, then removes it.
bench_cgroup_kill() {
  local dir=$1 pids _
  [ -n "$dir" ] && [ -d "$dir" ] || return 0
  for _ in $(seq 25); do
    pids=$(cat "$dir/cgroup.procs" 2>/dev/null || true)
    [ -n "$pids" ] || break
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    sleep 0.2
  done
  # A process that just died may keep the cgroup busy until it is reaped.
  for _ in $(seq 25); do rmdir "$dir" 2>/dev/null && return 0; sleep 0.2; done
  log "warning: could not remove the cgroup $dir"
}

# --- the run's directory -----------------------------------------------------------------------

# bench_make_work NAME: makes the run's directory, WORK, with logs/ and raw/ in it.
bench_make_work() {
  WORK=$(mktemp -d "/tmp/$1.XXXXXX")
  # The postgres user (Postgres refuses to run as root) must be able to enter it.
  chmod 755 "$WORK"
  mkdir -p "$WORK/logs" "$WORK/raw"
}

# bench_finish STATUS: the end of an exit trap. Keeps WORK (logs, raw figures) after a failure or
# with BENCH_KEEP=1, removes it otherwise, and exits with STATUS.
bench_finish() {
  if [ "$1" -ne 0 ] || [ "${BENCH_KEEP:-}" = 1 ]; then
    log "logs and raw figures kept in $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$1"
}

# --- services ----------------------------------------------------------------------------------
BENCH_PIDS=()   # every service started with bench_start, by name=pid

# bench_start NAME COMMAND...: runs a service in the background, its output in $WORK/logs/NAME.log.
bench_start() {
  local name=$1; shift
  "$@" >"$WORK/logs/$name.log" 2>&1 &
  BENCH_PIDS+=("$name=$!")
}
# (`return 0`, not `return`: in an exit trap a bare return would return the status the script exits with.)
bench_pid_of() { local e; for e in "${BENCH_PIDS[@]}"; do [ "${e%%=*}" != "$1" ] || { echo "${e#*=}"; return 0; }; done; }

# bench_stop_services: SIGTERM to every service, up to 10 s to finish (a worker closes its
# browsers), then SIGKILL; and the Chromium processes a worker left behind.
bench_stop_services() {
  local entry pid children=""
  for entry in "${BENCH_PIDS[@]}"; do
    pid=${entry#*=}
    [ "${entry%%=*}" != worker ] || children+=" $(descendants "$pid" | tr '\n' ' ')"
    kill -TERM "$pid" 2>/dev/null || true
  done
  for entry in "${BENCH_PIDS[@]}"; do
    pid=${entry#*=}
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  # Chromium processes the worker started and did not take down with it: the ids recorded just
  # before it was stopped, and only if they still are Chromium's.
  for pid in $children; do
    grep -qa chrom "/proc/$pid/cmdline" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  done
  BENCH_PIDS=()
}

# --- the private stack -------------------------------------------------------------------------
# Optional, set before bench_stack_start:
#   BENCH_WORKER_CGROUP   a cgroup directory for the worker (and its browsers)
#   BENCH_FRONT_CGROUP    a cgroup directory for Redis, the gateway and the edge
#   BENCH_DOMAINS         more domains to register, as HOST=ORIGIN words

# bench_stack_ports: picks free ports for the stack and exports the services' settings; sets
# EDGE, GATEWAY, GW_ADMIN, WORKER_ADMIN and ORIGIN (the demo origin), and the *_PORT variables.
bench_stack_ports() {
  REDIS_PORT=$(free_port) PG_PORT=$(free_port) DEMO_PORT=$(free_port) GW_PORT=$(free_port)
  GW_ADMIN_PORT=$(free_port) WORKER_ADMIN_PORT=$(free_port) EDGE_PORT=$(free_port)
  EDGE_TLS_PORT=$(free_port)
  EDGE=http://127.0.0.1:$EDGE_PORT
  GATEWAY=http://127.0.0.1:$GW_PORT
  GW_ADMIN=http://127.0.0.1:$GW_ADMIN_PORT
  WORKER_ADMIN=http://127.0.0.1:$WORKER_ADMIN_PORT
  ORIGIN=http://127.0.0.1:$DEMO_PORT
  export KILN_REDIS_URL="redis://127.0.0.1:$REDIS_PORT" KILN_REDIS_PREFIX="kiln:"
  export KILN_DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
  export KILN_ALLOWED_PRIVATE_NETS="127.0.0.1:1-65535@*"
  export KILN_DEMO_LISTEN="127.0.0.1:$DEMO_PORT"
  export KILN_GATEWAY_LISTEN="127.0.0.1:$GW_PORT" KILN_GATEWAY_ADMIN_LISTEN="127.0.0.1:$GW_ADMIN_PORT"
  export KILN_WORKER_ADMIN_LISTEN="127.0.0.1:$WORKER_ADMIN_PORT"
  # The worker's own default, as scripts/run-local.sh starts it.
  export KILN_CHROME_PATH="${KILN_CHROME_PATH:-/usr/lib/chromium/chromium-headless-shell}"
  # As deployed (deploy/kubernetes/base/config.yaml): JSON logs at info (BENCH_RUST_LOG=warn measures
  # what the logs cost); the edge is the trusted proxy.
  export KILN_LOG_FORMAT=json RUST_LOG=${BENCH_RUST_LOG:-info} KILN_TRUSTED_PROXIES="127.0.0.1/32"
  export KILN_WORKER_PROFILE_DIR="$WORK/profiles"
  mkdir -p "$KILN_WORKER_PROFILE_DIR"
}

# bench_stack_start: starts the stack of bench_stack_ports, registers the demo domain (and
# BENCH_DOMAINS) and waits until gateway, worker and edge are ready. Sets GW_PID and WORKER_PID.
bench_stack_start() {
  local entry check
  log "starting a private stack: Redis :$REDIS_PORT, Postgres :$PG_PORT, demo :$DEMO_PORT, gateway :$GW_PORT, edge :$EDGE_PORT"
  ( bench_join "${BENCH_FRONT_CGROUP:-}"; start_redis "$WORK/redis" "$REDIS_PORT" ) || exit 1
  start_postgres "$WORK/postgres" "$PG_PORT"
  "$BIN/kiln-dashboard" migrate >"$WORK/logs/migrate.log" 2>&1 \
    || { cat "$WORK/logs/migrate.log" >&2; die "kiln-dashboard migrate failed"; }
  bench_start demo "$BIN/kiln-demo"
  wait_tcp "$DEMO_PORT" 30 || die "the demo origin did not start (see $WORK/logs/demo.log)"
  # Registered and published to Redis as the operator does it; the dashboard service is not needed.
  # The real Googlebot is a verified crawler, which no per-address bot rate limit holds back. The
  # benchmark's comes from 127.0.0.1, which no crawler check can verify (not a public address), so
  # the domain's limit is turned off instead (`--bot-rate-per-second 0`). Should that ever not hold,
  # the benchmarks' counts of HITs and rendered pages catch the 429s.
  : >"$WORK/logs/domain.log"
  for entry in "$BENCH_HOST=$ORIGIN" "${BENCH_DOMAINS[@]}"; do
    "$BIN/kiln-dashboard" domain add --host "${entry%%=*}" --origin "${entry#*=}" --bot-rate-per-second 0 \
      >>"$WORK/logs/domain.log" 2>&1 \
      || { cat "$WORK/logs/domain.log" >&2; die "kiln-dashboard domain add --host ${entry%%=*} failed"; }
  done
  bench_start worker bench_exec_in "${BENCH_WORKER_CGROUP:-}" "$BIN/kiln-worker"
  bench_start gateway bench_exec_in "${BENCH_FRONT_CGROUP:-}" "$BIN/kiln-gateway"
  ( bench_join "${BENCH_FRONT_CGROUP:-}"
    start_edge "$WORK/edge" "127.0.0.1:$EDGE_PORT" "127.0.0.1:$GW_PORT" "127.0.0.1:$EDGE_TLS_PORT" ) || exit 1
  for check in "gateway $GW_ADMIN/readyz" "worker $WORKER_ADMIN/readyz" "edge $EDGE/_edge/healthz"; do
    set -- $check
    wait_http "$2" 60 || die "the $1 did not become ready (see $WORK/logs/$1.log or $WORK/edge/error.log)"
  done
  GW_PID=$(bench_pid_of gateway)
  WORKER_PID=$(bench_pid_of worker)
}

# bench_stack_stop: stops every service bench_start started, and the stack's edge, Redis and
# Postgres. Safe to call whatever was started.
bench_stack_stop() {
  bench_stop_services
  stop_edge "$WORK/edge"
  stop_redis "$WORK/redis"
  stop_postgres "$WORK/postgres"
}
