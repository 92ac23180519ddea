#!/usr/bin/env bash
# What a cold render costs (`just bench-render-cost`; `just bench` runs it too): renders per second
# and CPU-seconds per render at 1, 2, 4 and 8 renders at once, for Kiln and, in the same run, on the
# same pages, for prerender 5.21.6 and Rendertron 3.1.0 with Debian's Chromium, set up as
# /work/shared/PEERS.md says, and for "Chromium alone" (scripts/bench-bare-chromium.js): one
# Chromium driven by a bare CDP client, with a pool of tabs and no isolation, queue, cache or edge,
# the floor of what any renderer on this machine can do with these pages. Writes
# docs/benchmarks/render-cost.{md,csv,png}.
#
#   scripts/bench-render-cost.sh               the full run (about 20 minutes after the build)
#   BENCH_QUICK=1 scripts/bench-render-cost.sh fewer renders (under 10 minutes; `just bench-render-cost`)
#
# Needs nothing running. It installs what it lacks (Debian packages; Node.js 18 or newer and npm;
# the two peers and Chromium alone's `ws` from npm, pinned, into
# ${XDG_CACHE_HOME:-~/.cache}/kiln/bench-peers/, reused when present; matplotlib in the venv of
# scripts/bench.sh), builds the release binaries and
# crates/kiln-testkit/examples/bench-origins.rs, and starts on free ports of 127.0.0.1:
#   - a private Kiln stack (scripts/bench-lib.sh): Redis, a throwaway Postgres to register the
#     domains, the demo origin with its API answering after 600 ms (KILN_DEMO_API_DELAY_MS), the
#     worker with the settings a newcomer gets from scripts/run-local.sh (one browser, eight tabs),
#     the gateway and the nginx edge;
#   - the origins of the render corpus and of the React and Vue apps (bench-origins), each also
#     registered with Kiln (corpus.localhost, react.localhost, vue.localhost);
#   - prerender and Rendertron;
#   - Chromium alone, with the browser Kiln's worker runs (KILN_CHROME_PATH, its headless shell by
#     default) and as many tabs as the highest level of BENCH_LEVELS.
# Kiln is asked through the edge as Googlebot; prerender and Chromium alone at /render?url=,
# Rendertron at /render/, each with the origin's URL; every URL carries a query parameter no one
# asked for before, so every render is a cold one. scripts/bench_render_cost.py drives the clients
# and reads the figures.
#
# CPU: each system runs in a cgroup of its own (Kiln's worker with its browsers; Kiln's gateway, edge
# and Redis in another, reported beside it; each peer's Node server with its browser, and Chromium
# alone's the same way), so every process it starts is counted, renderers that exit during a run and
# Crashpad handlers that leave the process tree included. Without cgroups the driver reads /proc
# over the process trees every 50 ms instead (BENCH_CPU_METHOD=proc forces that). The report names
# the method used.
#
# Everything it started is stopped when it ends, however it ends (Ctrl-C included).
#
# Settings (environment):
#   BENCH_LEVELS          renders at once (default "1 2 4 8")
#   BENCH_DEMO_RENDERS    renders per system and level of the demo's product pages (default 40;
#                         16 with BENCH_QUICK=1); never fewer than two per client
#   BENCH_PAGE_RENDERS    renders per system and level of the corpus pages, and of the React and Vue
#                         apps' (default 24; 12 with BENCH_QUICK=1); never fewer than two per client
#   BENCH_QUICK=1         the smaller defaults above
#   BENCH_DEMO_API_DELAY_MS  the demo API's delay (default 600, the issue's headline page)
#   BENCH_PEER_CHROME     the peers' Chromium (default /usr/bin/chromium, as PEERS.md sets them up;
#                         /usr/lib/chromium/chromium-headless-shell gives them the browser Kiln's
#                         worker runs by default)
#   BENCH_CPU_METHOD=proc    count CPU from /proc even where cgroups can be made
#   BENCH_OUT             where the results go (default docs/benchmarks)
#   BENCH_KEEP=1          keep the run's directory (logs, every request's figures)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
export LC_ALL=C

PRERENDER_VERSION=5.21.6
RENDERTRON_VERSION=3.1.0
WS_VERSION=8.18.3
read -r -a LEVELS <<<"${BENCH_LEVELS:-1 2 4 8}"
if [ "${BENCH_QUICK:-0}" = 1 ]; then
  DEMO_RENDERS=${BENCH_DEMO_RENDERS:-16} PAGE_RENDERS=${BENCH_PAGE_RENDERS:-12}
else
  DEMO_RENDERS=${BENCH_DEMO_RENDERS:-40} PAGE_RENDERS=${BENCH_PAGE_RENDERS:-24}
fi
API_DELAY_MS=${BENCH_DEMO_API_DELAY_MS:-600}
# PEERS.md runs the peers with Debian's full Chromium; Kiln's worker runs its headless shell by default.
PEER_CHROME=${BENCH_PEER_CHROME:-/usr/bin/chromium}
OUT=${BENCH_OUT:-$KILN_ROOT/docs/benchmarks}
for n in "$DEMO_RENDERS" "$PAGE_RENDERS" "$API_DELAY_MS" "${LEVELS[@]}"; do
  [[ $n =~ ^[0-9]+$ ]] && [ "$n" -gt 0 ] || die "BENCH_* settings must be whole numbers above 0, not '$n'"
done
COMMAND="scripts/bench-render-cost.sh"
for setting in BENCH_QUICK BENCH_LEVELS BENCH_DEMO_RENDERS BENCH_PAGE_RENDERS BENCH_DEMO_API_DELAY_MS \
    BENCH_PEER_CHROME BENCH_CPU_METHOD; do
  [ -z "${!setting:-}" ] || COMMAND="$setting=\"${!setting}\" $COMMAND"
done

ensure_packages redis-server postgresql nginx chromium chromium-headless-shell fonts-liberation curl \
  ca-certificates procps python3-venv
ensure_node "the peers"
VENV=${XDG_CACHE_HOME:-$HOME/.cache}/kiln/bench-venv
PEERS=${XDG_CACHE_HOME:-$HOME/.cache}/kiln/bench-peers

# --- the run's directory, and cleaning up whatever this script started -------------------------
bench_make_work kiln-bench-render-cost
CGROUPS=()       # the cgroups this script made
cleanup() {
  local status=$? pid dir
  trap - EXIT INT TERM
  # Rendertron ignores SIGTERM (and would start a new browser when its own died first).
  pid=$(bench_pid_of rendertron)
  # (Waited for here, quietly: otherwise bash reports the killed job.)
  [ -z "$pid" ] || { kill -KILL "$pid"; wait "$pid"; } 2>/dev/null || true
  bench_stack_stop
  # Whatever is left of each system, Chromium's Crashpad handlers included.
  for dir in "${CGROUPS[@]}"; do bench_cgroup_kill "$dir"; done
  bench_finish "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- builds and installs -----------------------------------------------------------------------
BIN="${CARGO_TARGET_DIR:-$KILN_ROOT/target}/release"
EXAMPLES="${CARGO_TARGET_DIR:-$KILN_ROOT/target}/release/examples"
log "building Kiln and the corpus's origins (release; the first build takes several minutes)"
(cd "$KILN_ROOT" && cargo build --release --locked --bins) || die "cargo build --release failed"
(cd "$KILN_ROOT" && cargo build --release --locked -p kiln-testkit --example bench-origins) \
  || die "cargo build --example bench-origins failed"
for app in react vue; do
  # Committed, so normally present; scripts/test.sh's render tests need them the same way.
  [ -f "$KILN_ROOT/examples/frameworks/$app/dist/index.html" ] || "$KILN_ROOT/scripts/build-frameworks.sh" "$app"
done
ensure_venv "$VENV" "$KILN_ROOT/scripts/bench-requirements.txt" "the chart's packages (matplotlib)" \
  python -c 'import matplotlib'

# install_peer NAME VERSION [ENV...]: `npm install NAME@VERSION` into $PEERS/NAME, unless that exact
# version is there already.
install_peer() {
  local name=$1 version=$2 dir=$PEERS/$1; shift 2
  if [ "$(node -p "require('$dir/node_modules/$name/package.json').version" 2>/dev/null)" = "$version" ]; then
    return 0
  fi
  log "installing $name $version from npm into $dir"
  mkdir -p "$dir"
  [ -f "$dir/package.json" ] || echo '{ "private": true }' >"$dir/package.json"
  (cd "$dir" && env "$@" npm install --no-audit --no-fund --save-exact "$name@$version" >"$WORK/logs/npm-$name.log" 2>&1) \
    || { tail -n 20 "$WORK/logs/npm-$name.log" >&2; die "npm install $name@$version failed"; }
}
install_peer prerender "$PRERENDER_VERSION"
# Puppeteer would download a Chromium of its own; the peers use Debian's, as Kiln does.
install_peer rendertron "$RENDERTRON_VERSION" PUPPETEER_SKIP_DOWNLOAD=1 PUPPETEER_SKIP_CHROMIUM_DOWNLOAD=1
# Chromium alone's WebSocket client; its server is scripts/bench-bare-chromium.js, found through NODE_PATH.
install_peer ws "$WS_VERSION"

# The peers' servers, as PEERS.md sets them up. Written on every run, so that they always match
# this script. Two departures, both only about where they listen: the ports are free ones picked
# for the run (PORT for both, which each reads; prerender's DevTools port too, which it would
# otherwise share at 9222 with whatever else uses that port on this machine). And the Chromium
# comes from PEER_CHROME (BENCH_PEER_CHROME), PEERS.md's /usr/bin/chromium by default.
cat >"$PEERS/prerender/server.js" <<'JS'
// Written by scripts/bench-render-cost.sh: prerender as /work/shared/PEERS.md sets it up.
const prerender = require('prerender');
const debuggingPort = Number(process.env.BROWSER_DEBUGGING_PORT);
const server = prerender({
  chromeLocation: process.env.PEER_CHROME || '/usr/bin/chromium',
  port: Number(process.env.PORT),
  browserDebuggingPort: debuggingPort,
  chromeFlags: ['--headless', '--no-sandbox', '--disable-gpu', `--remote-debugging-port=${debuggingPort}`,
    '--hide-scrollbars', '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--no-first-run', '--disable-dev-shm-usage'],
  logRequests: false,
});
server.use(prerender.sendPrerenderHeader());
server.use(prerender.removeScriptTags());
server.use(prerender.httpHeaders());
server.start();
JS
cat >"$PEERS/rendertron/node_modules/rendertron/config.json" <<'JSON'
{ "port": "3901", "host": "127.0.0.1", "timeout": 10000, "cache": null,
  "puppeteerArgs": ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"] }
JSON
cat >"$PEERS/rendertron/run.js" <<'JS'
// Written by scripts/bench-render-cost.sh: Rendertron as /work/shared/PEERS.md sets it up, its
// Puppeteer pointed at Debian's Chromium. Its port comes from PORT (config.json's is the default).
const puppeteer = require('puppeteer');
const launch = puppeteer.launch.bind(puppeteer);
const executablePath = process.env.PEER_CHROME || '/usr/bin/chromium';
puppeteer.launch = (opts) => launch(Object.assign({}, opts, { executablePath }));
const { Rendertron } = require('rendertron/build/rendertron');
new Rendertron().initialize();
JS

# --- CPU accounting ----------------------------------------------------------------------------
read -r CPU_METHOD CGROUP_ROOT <<<"$(bench_cpu_method)"
cgroup_for() { # NAME: makes this run's cgroup NAME and prints its directory (nothing for "proc")
  [ "$CPU_METHOD" != proc ] || return 0
  local dir="$CGROUP_ROOT/kiln-bench-$$-$1"
  mkdir "$dir" || die "cannot make the cgroup $dir"
  echo "$dir"
}
if [ "$CPU_METHOD" = proc ]; then
  log "CPU accounting: /proc over each system's process tree (no cgroup could be made)"
else
  log "CPU accounting: $CPU_METHOD cgroups under $CGROUP_ROOT"
fi
CG_KILN=$(cgroup_for kiln-worker); CG_FRONT=$(cgroup_for kiln-front)
CG_PRERENDER=$(cgroup_for prerender); CG_RENDERTRON=$(cgroup_for rendertron); CG_BARE=$(cgroup_for bare)
for dir in "$CG_KILN" "$CG_FRONT" "$CG_PRERENDER" "$CG_RENDERTRON" "$CG_BARE"; do [ -z "$dir" ] || CGROUPS+=("$dir"); done

{
  bench_meta
  echo "cpu_method=$CPU_METHOD"
  echo "cgroup_root=${CGROUP_ROOT:-}"
  echo "node=$(node --version)"
  echo "prerender=$PRERENDER_VERSION"
  echo "rendertron=$RENDERTRON_VERSION"
  echo "puppeteer=$(node -p "require('$PEERS/rendertron/node_modules/puppeteer/package.json').version" 2>/dev/null)"
  echo "peer_chrome=$PEER_CHROME"
  echo "ws=$WS_VERSION"
  echo "command=$COMMAND"
  echo "demo_api_delay_ms=$API_DELAY_MS"
  echo "clk_tck=$(getconf CLK_TCK)"
} >"$WORK/raw/meta.env"

# --- the origins, the Kiln stack and the peers -------------------------------------------------
bench_start origins "$EXAMPLES/bench-origins"
deadline=$((SECONDS + 30))
until grep -qx ready "$WORK/logs/origins.log" 2>/dev/null; do
  [ $SECONDS -lt $deadline ] && kill -0 "$(bench_pid_of origins)" 2>/dev/null \
    || die "the corpus's origins did not start (see $WORK/logs/origins.log)"
  sleep 0.1
done
origin_of() { awk -v name="$1" '$1 == name { print $2 }' "$WORK/logs/origins.log"; }
CORPUS=$(origin_of corpus) REACT=$(origin_of react) VUE=$(origin_of vue)

bench_stack_ports
export KILN_DEMO_API_DELAY_MS=$API_DELAY_MS
BENCH_DOMAINS=("corpus.localhost=$CORPUS" "react.localhost=$REACT" "vue.localhost=$VUE")
BENCH_WORKER_CGROUP=$CG_KILN BENCH_FRONT_CGROUP=$CG_FRONT
bench_stack_start

PRERENDER_PORT=$(free_port) PRERENDER_DEVTOOLS_PORT=$(free_port) RENDERTRON_PORT=$(free_port)
log "starting prerender $PRERENDER_VERSION (:$PRERENDER_PORT) and Rendertron $RENDERTRON_VERSION (:$RENDERTRON_PORT)"
bench_start prerender bench_exec_in "$CG_PRERENDER" env -C "$PEERS/prerender" \
  PORT="$PRERENDER_PORT" BROWSER_DEBUGGING_PORT="$PRERENDER_DEVTOOLS_PORT" PEER_CHROME="$PEER_CHROME" node server.js
bench_start rendertron bench_exec_in "$CG_RENDERTRON" env -C "$PEERS/rendertron" \
  PORT="$RENDERTRON_PORT" HOST=127.0.0.1 PEER_CHROME="$PEER_CHROME" node run.js
wait_tcp "$PRERENDER_PORT" 60 || die "prerender did not start (see $WORK/logs/prerender.log)"
wait_tcp "$RENDERTRON_PORT" 60 || die "Rendertron did not start (see $WORK/logs/rendertron.log)"

# Chromium alone: the browser Kiln's worker runs (bench_stack_ports set KILN_CHROME_PATH), with a tab
# for each render of the highest level, so that it never queues.
BARE_PORT=$(free_port)
BARE_CHROME=$KILN_CHROME_PATH
BARE_TABS=$(printf '%s\n' "${LEVELS[@]}" | sort -n | tail -n 1)
log "starting Chromium alone (:$BARE_PORT, $BARE_TABS tabs)"
bench_start bare bench_exec_in "$CG_BARE" env NODE_PATH="$PEERS/ws/node_modules" PORT="$BARE_PORT" \
  BARE_CHROME="$BARE_CHROME" BARE_TABS="$BARE_TABS" node "$KILN_ROOT/scripts/bench-bare-chromium.js"
wait_tcp "$BARE_PORT" 60 || die "Chromium alone did not start (see $WORK/logs/bare.log)"
echo "bare_chrome=$BARE_CHROME" >>"$WORK/raw/meta.env"
echo "bare_tabs=$BARE_TABS" >>"$WORK/raw/meta.env"

# The driver's view of the run. A system's "account" is its cgroup, or with the proc method the
# process whose tree it is.
account() { # CGROUP PID
  if [ "$CPU_METHOD" = proc ]; then printf '{"pids": [%s]}' "$2"; else printf '{"cgroup": "%s"}' "$1"; fi
}
cat >"$WORK/raw/config.json" <<JSON
{
  "run_id": "$(date +%s)",
  "levels": [$(IFS=,; echo "${LEVELS[*]}")],
  "renders": {"demo": $DEMO_RENDERS, "corpus": $PAGE_RENDERS, "frameworks": $PAGE_RENDERS},
  "cpu_method": "$CPU_METHOD",
  "clk_tck": $(getconf CLK_TCK),
  "cores": $(nproc),
  "products": "$KILN_ROOT/examples/demo/products.json",
  "demo_app": "$KILN_ROOT/examples/demo/static/app.js",
  "demo_api_delay_ms": $API_DELAY_MS,
  "origins": {"demo": "$ORIGIN", "corpus": "$CORPUS", "react": "$REACT", "vue": "$VUE"},
  "kiln_hosts": {"demo": "$BENCH_HOST", "corpus": "corpus.localhost", "react": "react.localhost", "vue": "vue.localhost"},
  "bot_user_agent": "$BENCH_BOT_UA",
  "kiln_render_slots": $(( ${KILN_WORKER_BROWSERS:-1} * ${KILN_WORKER_TABS_PER_BROWSER:-8} )),
  "systems": [
    {"name": "Kiln", "kind": "kiln", "base": "$EDGE", "account": $(account "$CG_KILN" "$WORKER_PID"),
     "extra": {"name": "Kiln's gateway, edge and Redis", "account": $(account "$CG_FRONT" "$GW_PID")}},
    {"name": "prerender $PRERENDER_VERSION", "kind": "prerender", "base": "http://127.0.0.1:$PRERENDER_PORT",
     "account": $(account "$CG_PRERENDER" "$(bench_pid_of prerender)")},
    {"name": "Rendertron $RENDERTRON_VERSION", "kind": "rendertron", "base": "http://127.0.0.1:$RENDERTRON_PORT",
     "account": $(account "$CG_RENDERTRON" "$(bench_pid_of rendertron)")},
    {"name": "Chromium alone", "kind": "bare", "base": "http://127.0.0.1:$BARE_PORT",
     "account": $(account "$CG_BARE" "$(bench_pid_of bare)")}
  ]
}
JSON

log "measuring: levels ${LEVELS[*]}, $DEMO_RENDERS demo renders and $PAGE_RENDERS corpus and framework renders per system and level"
python3 "$KILN_ROOT/scripts/bench_render_cost.py" measure "$WORK/raw/config.json" "$WORK/raw" \
  || die "scripts/bench_render_cost.py measure failed"
echo "load_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$WORK/raw/meta.env"

# --- the report --------------------------------------------------------------------------------
mkdir -p "$OUT"
log "writing $OUT/render-cost.md, render-cost.csv and render-cost.png"
python3 "$KILN_ROOT/scripts/bench_render_cost.py" report "$WORK/raw" "$OUT" \
  || die "scripts/bench_render_cost.py report failed"
"$VENV/bin/python" "$KILN_ROOT/scripts/bench_render_cost.py" chart "$OUT/render-cost.csv" "$OUT/render-cost.png" \
  || die "scripts/bench_render_cost.py chart failed"
sed -n '/^## Goals/,/^## /p' "$OUT/render-cost.md" | sed '$d' >&2
log "done: $OUT/render-cost.md"
