#!/usr/bin/env bash
# Fuzzes the dashboard's REST API with schemathesis against the OpenAPI document the API serves, so
# that the document and the handlers cannot drift apart: every response must have a documented
# status, content type and schema, no input may cause a 500, and invalid input must be refused.
#
#   scripts/schemathesis.sh [extra arguments for `schemathesis run`]
#
# e.g. `scripts/schemathesis.sh --include-path-regex /domains` fuzzes only the domain endpoints, and
# `scripts/schemathesis.sh --max-examples 200` fuzzes harder. The venv with the pinned schemathesis
# is kept in KILN_SCHEMATHESIS_VENV (default /var/tmp/kiln-venv) between runs.
#
# Installs what it lacks (Debian packages, then schemathesis from scripts/schemathesis-requirements.txt
# into the venv), starts a throwaway Postgres and a private Redis, builds and starts the dashboard,
# creates an account, an API key and an (unverified) domain so that real ids exist, runs schemathesis
# with the key, and cleans everything up. Exits non-zero when schemathesis finds a failure; its
# dashboard log is printed then, and the reports are kept in KILN_SCHEMATHESIS_REPORTS if that is set.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VENV=${KILN_SCHEMATHESIS_VENV:-/var/tmp/kiln-venv}
REQUIREMENTS="$KILN_ROOT/scripts/schemathesis-requirements.txt"

ensure_packages python3-venv postgresql redis-server curl ca-certificates procps

# The venv is (re)built whenever the pinned requirements change. Debian's own Python is used, so a
# pyenv or conda python3 earlier on PATH does not matter.
stamp=$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)
if [ "$(cat "$VENV/.kiln-requirements" 2>/dev/null)" != "$stamp" ]; then
  log "installing schemathesis into $VENV"
  rm -rf "$VENV"
  /usr/bin/python3 -m venv "$VENV" || die "creating the venv $VENV failed"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps --require-virtualenv \
    -r "$REQUIREMENTS" || die "installing schemathesis from $REQUIREMENTS failed"
  echo "$stamp" >"$VENV/.kiln-requirements"
fi
log "using $("$VENV/bin/schemathesis" --version)"

TMP=$(mktemp -d /tmp/kiln-schemathesis.XXXXXX)
chmod 755 "$TMP"
DASHBOARD_PID=""
cleanup() {
  if [ -n "$DASHBOARD_PID" ]; then
    kill -TERM "$DASHBOARD_PID" 2>/dev/null || true
    wait "$DASHBOARD_PID" 2>/dev/null || true
  fi
  stop_redis "$TMP/redis"
  stop_postgres "$TMP/postgres"
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  local port=$(( 20000 + RANDOM % 10000 ))
  while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$(( 20000 + RANDOM % 10000 )); done
  echo "$port"
}

PG_PORT=$(free_port)
log "starting a throwaway Postgres on 127.0.0.1:$PG_PORT"
start_postgres "$TMP/postgres" "$PG_PORT"
REDIS_PORT=$(free_port)
log "starting a private Redis on 127.0.0.1:$REDIS_PORT"
start_redis "$TMP/redis" "$REDIS_PORT"

log "building the dashboard"
(cd "$KILN_ROOT" && cargo build --locked -p kiln-dashboard --bin kiln-dashboard)
BIN="${CARGO_TARGET_DIR:-$KILN_ROOT/target}/debug/kiln-dashboard"
[ -x "$BIN" ] || die "$BIN was not built"

PORT=$(free_port)
BASE="http://127.0.0.1:$PORT"
log "starting the dashboard on $BASE"
KILN_DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres" \
KILN_REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
KILN_SESSION_SECRET="$(head -c 48 /dev/urandom | base64 -w0)" \
KILN_CNAME_TARGET=edge.kiln.test \
KILN_DASHBOARD_LISTEN="127.0.0.1:$PORT" \
KILN_ALLOWED_PRIVATE_NETS=127.0.0.1/32 \
KILN_LOG_FORMAT=pretty RUST_LOG="${RUST_LOG:-info,sqlx=warn}" \
  "$BIN" serve >"$TMP/dashboard.log" 2>&1 &
DASHBOARD_PID=$!
deadline=$((SECONDS + 60))
until curl -fsS -o /dev/null --max-time 2 "$BASE/readyz" 2>/dev/null; do
  kill -0 "$DASHBOARD_PID" 2>/dev/null || { cat "$TMP/dashboard.log" >&2; die "the dashboard exited"; }
  [ $SECONDS -lt $deadline ] || { cat "$TMP/dashboard.log" >&2; die "the dashboard did not become ready"; }
  sleep 0.2
done

# api METHOD PATH [JSON]: a request with the session cookie; prints the body, fails unless 2xx.
api() {
  curl -fsS --max-time 30 -b "$TMP/cookies" -c "$TMP/cookies" -X "$1" \
    -H 'content-type: application/json' ${3:+--data "$3"} "$BASE/api/v1$2"
}
json_field() { "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

log "creating an account, an API key and a domain"
api POST /auth/signup '{"email":"fuzz@example.com","password":"schemathesis fuzzes kiln"}' >/dev/null \
  || die "sign-up failed"
KEY=$(api POST /api-keys '{"name":"schemathesis"}' | json_field secret) || die "creating an API key failed"
DOMAIN_ID=$(api POST /domains '{"hostname":"fuzz.kiln.test","origin":"http://127.0.0.1:9"}' | json_field id) \
  || die "adding a domain failed"
log "domain $DOMAIN_ID"

# The checks: all of them but one.
# - positive_data_acceptance expects every request that matches the schema to succeed. Here many
#   cannot: an origin must resolve to a public address (or an allowed private one), a URL to purge,
#   warm or render must be on one of the account's own (for warming and rendering: verified) domains,
#   an id must name something the account owns. Those refusals are the API's job, not drift.
# The stateful phase runs on the links schemathesis infers, which is how ids created by one call
# reach the next.
REPORTS=${KILN_SCHEMATHESIS_REPORTS:-$TMP/reports}
set +e
(
  # schemathesis writes its example database (.hypothesis/) into the working directory: not the
  # checkout's.
  cd "$TMP"
  "$VENV/bin/schemathesis" run "$BASE/api/v1/openapi.json" \
    --header "Authorization: Bearer $KEY" \
    --checks all \
    --exclude-checks positive_data_acceptance \
    --max-examples "${KILN_SCHEMATHESIS_MAX_EXAMPLES:-50}" \
    --seed "${KILN_SCHEMATHESIS_SEED:-20261122}" \
    --generation-database none \
    --request-timeout 30 \
    --workers 2 \
    --no-color \
    --report junit,ndjson --report-dir "$REPORTS" \
    "$@"
)
status=$?
set -e
if [ $status -ne 0 ]; then
  log "schemathesis failed (exit $status); the dashboard's log follows"
  tail -n 200 "$TMP/dashboard.log" >&2
  exit $status
fi
log "schemathesis passed"
