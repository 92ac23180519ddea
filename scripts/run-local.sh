#!/usr/bin/env bash
# Starts the whole Kiln platform on this machine with the bundled demo site, and stops it again.
#
#   scripts/run-local.sh          start everything, print what to try, stop everything on Ctrl-C
#   scripts/run-local.sh down     stop whatever a previous run left running
#
# It installs the Debian packages it lacks (Redis, PostgreSQL, nginx, Chromium), runs private copies
# of Redis (under .kiln/) and Postgres (under /var/tmp/kiln-local/) on their own ports (system-wide
# services are left alone), builds
# Kiln, runs migrations, starts the demo origin, worker, gateway, dashboard and the nginx edge, and
# registers the demo domain.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUN="$KILN_ROOT/.kiln"
EDGE_PORT=${KILN_LOCAL_EDGE_PORT:-8080}
REDIS_PORT=${KILN_LOCAL_REDIS_PORT:-6380}
PG_PORT=${KILN_LOCAL_POSTGRES_PORT:-5433}
DEMO_HOST=demo.localhost
# Postgres runs as the `postgres` user when this script runs as root, and that user cannot enter a
# checkout under a private home directory: its data lives outside the repository.
PG_DIR=${KILN_LOCAL_POSTGRES_DIR:-/var/tmp/kiln-local/postgres}

export KILN_REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
export KILN_REDIS_PREFIX="kiln:"
export KILN_DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/kiln"
# The demo origin's one port, for every tenant (the demo domain belongs to a signed-up account);
# Kiln's own services are refused whatever this grants, and the local stack names them all.
export KILN_ALLOWED_PRIVATE_NETS="127.0.0.1:5173@*"
export KILN_PLATFORM_ADDRS="127.0.0.1:$EDGE_PORT 127.0.0.1:8443 127.0.0.1:3000 127.0.0.1:3001 127.0.0.1:9100 127.0.0.1:9101 127.0.0.1:9102 127.0.0.1:9103 127.0.0.1:$REDIS_PORT 127.0.0.1:$PG_PORT"
export KILN_GATEWAY_LISTEN="127.0.0.1:3000" KILN_GATEWAY_ADMIN_LISTEN="127.0.0.1:9100"
export KILN_WORKER_ADMIN_LISTEN="127.0.0.1:9101" KILN_DASHBOARD_LISTEN="127.0.0.1:3001"
export KILN_DEMO_LISTEN="127.0.0.1:5173" KILN_CHROME_PATH="${KILN_CHROME_PATH:-/usr/lib/chromium/chromium-headless-shell}"
export KILN_CNAME_TARGET="${KILN_CNAME_TARGET:-edge.kiln.localhost}"
export RUST_LOG="${RUST_LOG:-info}"

stop_services() {
  for pidfile in "$RUN"/pids/*.pid; do
    [ -f "$pidfile" ] || continue
    kill -TERM "$(cat "$pidfile")" 2>/dev/null || true
  done
  # Give the services a moment to finish in-flight work, then make sure they are gone.
  for _ in $(seq 50); do
    alive=0
    for pidfile in "$RUN"/pids/*.pid; do
      [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null && alive=1
    done
    [ $alive = 0 ] && break
    sleep 0.2
  done
  for pidfile in "$RUN"/pids/*.pid; do
    [ -f "$pidfile" ] || continue
    kill -KILL "$(cat "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile"
  done
  stop_edge "$RUN/edge"
  stop_redis "$RUN/redis"
  stop_postgres "$PG_DIR"
}

if [ "${1:-up}" = down ]; then
  stop_services
  log "stopped"
  exit 0
fi
[ "${1:-up}" = up ] || die "usage: scripts/run-local.sh [up|down]"

ensure_packages
stop_services
for port in "$EDGE_PORT" 3000 3001 5173 9100 9101 "$REDIS_PORT" "$PG_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "port $port is already in use; stop whatever listens there (or run: scripts/run-local.sh down)"
  fi
done

log "building Kiln (release; the first build takes several minutes)"
(cd "$KILN_ROOT" && cargo build --release --locked --bins)
BIN="$KILN_ROOT/target/release"
mkdir -p "$RUN/logs" "$RUN/pids"

trap 'echo; log "stopping"; stop_services; exit 0' INT TERM
trap 'stop_services' EXIT

# The key that signs dashboard sessions: made once and kept beside the database, so that logins
# survive a restart of the stack.
SECRET_FILE="$(dirname "$PG_DIR")/session-secret"
mkdir -p "$(dirname "$SECRET_FILE")"
[ -s "$SECRET_FILE" ] || (umask 077 && head -c 48 /dev/urandom | base64 -w0 >"$SECRET_FILE")
KILN_SESSION_SECRET="$(cat "$SECRET_FILE")"
export KILN_SESSION_SECRET

log "starting Redis on 127.0.0.1:$REDIS_PORT and Postgres on 127.0.0.1:$PG_PORT"
start_redis "$RUN/redis" "$REDIS_PORT"
mkdir -p "$(dirname "$PG_DIR")" && chmod 755 "$(dirname "$PG_DIR")"
start_postgres "$PG_DIR" "$PG_PORT"
as_pg "$(pg_bin)/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres kiln 2>/dev/null || true
"$BIN/kiln-dashboard" migrate

start() { # name command...
  local name=$1; shift
  "$@" >"$RUN/logs/$name.log" 2>&1 &
  echo $! >"$RUN/pids/$name.pid"
}

start demo "$BIN/kiln-demo"
wait_tcp 5173 30 || die "the demo origin did not start (see $RUN/logs/demo.log)"
# A demo account that owns the demo domain, so the REST API shows it. Its password is made once and
# kept beside the database.
DEMO_EMAIL=demo@kiln.localhost
PASSWORD_FILE="$(dirname "$PG_DIR")/demo-password"
[ -s "$PASSWORD_FILE" ] || (umask 077 && echo "kiln-demo-$(head -c 12 /dev/urandom | base64 -w0 | tr '+/' '-_')" >"$PASSWORD_FILE")
"$BIN/kiln-dashboard" account add --email "$DEMO_EMAIL" --if-not-exists <"$PASSWORD_FILE"
if ! "$BIN/kiln-dashboard" domain add --host "$DEMO_HOST" --origin "http://127.0.0.1:5173" \
       --owner "$DEMO_EMAIL" --if-not-exists; then
  # Registered by an older version of this script (to the operator): give it to the demo account.
  "$BIN/kiln-dashboard" domain remove --host "$DEMO_HOST"
  "$BIN/kiln-dashboard" domain add --host "$DEMO_HOST" --origin "http://127.0.0.1:5173" --owner "$DEMO_EMAIL"
fi
start worker "$BIN/kiln-worker"
start gateway "$BIN/kiln-gateway"
start dashboard "$BIN/kiln-dashboard" serve
start_edge "$RUN/edge" "127.0.0.1:$EDGE_PORT" "127.0.0.1:3000"

for check in "gateway http://127.0.0.1:9100/readyz" "worker http://127.0.0.1:9101/readyz" \
             "dashboard http://127.0.0.1:3001/readyz" "edge http://127.0.0.1:$EDGE_PORT/_edge/healthz"; do
  set -- $check
  wait_http "$2" 60 || die "the $1 did not become ready (see $RUN/logs/$1.log)"
done

cat <<MSG

  Kiln is running. Logs: $RUN/logs/   Stop: Ctrl-C (or scripts/run-local.sh down)

  A bot gets the page as Chromium rendered it (first request renders, the next is a cache HIT):
    curl -si -H 'Host: $DEMO_HOST' -A 'Mozilla/5.0 (compatible; Googlebot/2.1)' http://127.0.0.1:$EDGE_PORT/products/3

  A person gets the origin's bytes (the empty single-page-app shell):
    curl -si -H 'Host: $DEMO_HOST' http://127.0.0.1:$EDGE_PORT/products/3

  In a browser: http://$DEMO_HOST:$EDGE_PORT/ (the demo site)
  The dashboard: http://127.0.0.1:3001/ (log in as $DEMO_EMAIL, password: $(cat "$PASSWORD_FILE"))
  Health: http://127.0.0.1:9100/readyz (gateway), http://127.0.0.1:9101/readyz (worker)

  The REST API (OpenAPI document: http://127.0.0.1:3001/api/v1/openapi.json). The demo account
  $DEMO_EMAIL (password: $(cat "$PASSWORD_FILE")) owns $DEMO_HOST:
    curl -s -c /tmp/kiln.cookies -H 'content-type: application/json' \
      -d '{"email":"$DEMO_EMAIL","password":"$(cat "$PASSWORD_FILE")"}' http://127.0.0.1:3001/api/v1/auth/login
    curl -s -b /tmp/kiln.cookies -H 'content-type: application/json' -d '{"name":"cli"}' \
      http://127.0.0.1:3001/api/v1/api-keys        # prints a key once: use it as a Bearer token
    curl -s -H "authorization: Bearer <key>" http://127.0.0.1:3001/api/v1/domains

MSG

# Stay in the foreground until Ctrl-C, or until a service dies.
while true; do
  for pidfile in "$RUN"/pids/*.pid; do
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      name=$(basename "$pidfile" .pid)
      log "the $name stopped unexpectedly; last lines of $RUN/logs/$name.log:"
      tail -n 20 "$RUN/logs/$name.log" >&2 || true
      exit 1
    fi
  done
  sleep 1
done
