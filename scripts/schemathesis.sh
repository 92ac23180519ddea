#!/usr/bin/env bash
# Fuzzes the dashboard's REST API with schemathesis against the OpenAPI document the API serves, so
# that the document and the handlers cannot drift apart: every response must have a documented
# status, content type and schema, no input may cause a 500, and invalid input must be refused.
#
#   scripts/schemathesis.sh [extra arguments for each `schemathesis run`]
#
# e.g. `--max-examples 200` fuzzes harder, `--seed 7` tries other examples (also set by
# KILN_SCHEMATHESIS_MAX_EXAMPLES, default 50, and KILN_SCHEMATHESIS_SEED, default fixed), and
# `--phases fuzzing` skips the other phases. The venv with the pinned schemathesis is kept in
# KILN_SCHEMATHESIS_VENV (default /var/tmp/kiln-venv) between runs. KILN_DASHBOARD_BIN names an
# already built dashboard to test instead of building one.
#
# Installs what it lacks (Debian packages, then schemathesis from scripts/schemathesis-requirements.txt
# into the venv), starts a throwaway Postgres and a private Redis, builds and starts the dashboard,
# creates an account, an API key and an (unverified) domain so that real ids exist, and runs
# schemathesis three times: every endpoint with the API key, the endpoints only a logged-in user may
# call with the session cookie, and log-out. Cleans everything up on exit. Exits non-zero when
# schemathesis finds a failure, printing the dashboard's warnings and errors; the JUnit reports (and
# then the dashboard's log) are kept in KILN_SCHEMATHESIS_REPORTS if that is set.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VENV=${KILN_SCHEMATHESIS_VENV:-/var/tmp/kiln-venv}
REQUIREMENTS="$KILN_ROOT/scripts/schemathesis-requirements.txt"

ensure_packages python3-venv postgresql redis-server curl ca-certificates procps

ensure_venv "$VENV" "$REQUIREMENTS" schemathesis schemathesis --version
log "using $("$VENV/bin/schemathesis" --version)"

TMP=$(mktemp -d /tmp/kiln-schemathesis.XXXXXX)
chmod 755 "$TMP"
DASHBOARD_PID=""
cleanup() {
  if [ -n "$DASHBOARD_PID" ]; then
    kill -TERM "$DASHBOARD_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$DASHBOARD_PID" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$DASHBOARD_PID" 2>/dev/null || true
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

# scripts/test.sh hands over the binary its test build made (KILN_DASHBOARD_BIN): building the
# dashboard alone would resolve the dependencies' features differently and compile everything again.
if [ -n "${KILN_DASHBOARD_BIN:-}" ]; then
  BIN=$KILN_DASHBOARD_BIN
  log "using the dashboard built by the tests ($BIN)"
else
  log "building the dashboard"
  (cd "$KILN_ROOT" && cargo build --locked -p kiln-dashboard --bin kiln-dashboard)
  BIN="${CARGO_TARGET_DIR:-$KILN_ROOT/target}/debug/kiln-dashboard"
fi
[ -x "$BIN" ] || die "$BIN was not built"

PORT=$(free_port)
BASE="http://127.0.0.1:$PORT"
log "starting the dashboard on $BASE"
# The per-key request limit is off: schemathesis sends far more than a script would, and the limit
# has tests of its own (kiln-dashboard `each_api_key_and_user_has_its_own_request_limit`).
KILN_DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres" \
KILN_REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
KILN_SESSION_SECRET="$(head -c 48 /dev/urandom | base64 -w0)" \
KILN_CNAME_TARGET=edge.kiln.test \
KILN_DASHBOARD_LISTEN="127.0.0.1:$PORT" \
KILN_ALLOWED_PRIVATE_NETS="127.0.0.1:9@*" \
KILN_API_RATE_PER_SECOND=0 \
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

SESSION=$(awk '$6 == "kiln_session" { print $7 }' "$TMP/cookies")
[ -n "$SESSION" ] || die "sign-up set no session cookie"

# Two configs: with and without the session. The session cookie goes in through the config's
# OpenAPI-aware auth, not a Cookie header, so that schemathesis knows it is the credential (and leaves
# it out when it checks that unauthenticated requests are refused). In both, the domain's id fills the
# parameters no response links to (GET /cache's domain_id, a purge's or a warm's domain_id) in half
# of the requests, so that they get past the ownership lookup.
cat >"$TMP/key.toml" <<TOML
[dictionaries.domains]
values = ["$DOMAIN_ID"]

[parameters]
"query.domain_id" = { dictionary = "domains", probability = 0.5 }
"body.domain_id" = { dictionary = "domains", probability = 0.5 }
TOML
{ printf '[auth.openapi.session]\napi_key = "${KILN_FUZZ_SESSION}"\n\n'; cat "$TMP/key.toml"; } >"$TMP/session.toml"

REPORTS=${KILN_SCHEMATHESIS_REPORTS:-$TMP/reports}
mkdir -p "$REPORTS"
rm -f "$REPORTS"/{api-key,session,logout}.xml
# fuzz NAME CONFIG [schemathesis run arguments]: one schemathesis run with the settings every run
# shares. Its example database stays off (and .hypothesis/ out of the checkout): the fixed seed alone
# makes a run repeatable.
fuzz() {
  local name=$1 config=$2; shift 2
  log "schemathesis: $name"
  (
    cd "$TMP"
    "$VENV/bin/schemathesis" --config-file "$config" run "$BASE/api/v1/openapi.json" \
      --checks all \
      --exclude-checks "$EXCLUDED_CHECKS" \
      --max-examples "${KILN_SCHEMATHESIS_MAX_EXAMPLES:-50}" \
      --seed "${KILN_SCHEMATHESIS_SEED:-20261122}" \
      --generation-database none \
      --request-timeout 30 \
      --workers 2 \
      --no-color \
      --report junit --report-junit-path "$REPORTS/$name.xml" \
      "$@"
  )
}

# Every check runs but one:
# - positive_data_acceptance expects every request that matches the schema to succeed. Here most
#   cannot, and rightly: an origin must resolve to a public address (or an allowed private one), a
#   URL to purge, warm or render must be on one of the account's own domains (and, to warm or render,
#   a verified one), an id must name something the account owns, a cursor must be one the API
#   returned, a password must be hard to guess. Those refusals follow a lookup no schema can
#   express; they are the API's job, not drift between the document and the handlers.
EXCLUDED_CHECKS=positive_data_acceptance

# Warnings schemathesis prints that are expected, not drift: "authentication failed" (the endpoints
# that refuse API keys, in run 1; run 2 covers them), "rate limited" (sign-up and log-in answer the
# documented 429 once the burst is spent), "missing test data" (warm jobs need a verified domain; the
# fuzzer deletes the seeded domain along the way), "schema validation mismatch" (the lookups above).
export KILN_FUZZ_SESSION="$SESSION"
failed=0
# 1. Every endpoint with the API key, as scripts and CI call the API (the endpoints that need a
#    logged-in user answer it the documented 403). The stateful phase chains calls along the links
#    schemathesis infers (a created domain's id into GET /domains/{id}, ...).
fuzz api-key "$TMP/key.toml" --header "Authorization: Bearer $KEY" "$@" || failed=1
# 2. The endpoints only a logged-in user may call, with the session cookie.
fuzz session "$TMP/session.toml" --include-path-regex '^/api/v1/(api-keys|auth/(me|password))' "$@" || failed=1
# 3. Log-out last, as it ends the session: the first call logs out, the rest are refused.
fuzz logout "$TMP/session.toml" --include-path /api/v1/auth/logout "$@" || failed=1

# One closing line for people and CI: a test per operation in each run, from the JUnit reports (a run
# that wrote none counts as one failure).
"$VENV/bin/python" - "$REPORTS"/{api-key,session,logout}.xml <<'PY'
import sys
import xml.etree.ElementTree as ET

tests = failed = skipped = 0
for path in sys.argv[1:]:
    try:
        suites = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        tests, failed = tests + 1, failed + 1
        continue
    tests += int(suites.get("tests", 0))
    failed += int(suites.get("failures", 0)) + int(suites.get("errors", 0))
    skipped += int(suites.get("skipped", 0))
print(f"schemathesis: {tests - failed - skipped} passed, {failed} failed, {skipped} skipped")
PY

if [ $failed -ne 0 ]; then
  log "schemathesis found failures; the dashboard logged these warnings and errors:"
  grep -E ' (WARN|ERROR) ' "$TMP/dashboard.log" | tail -n 50 >&2 || true
  [ -z "${KILN_SCHEMATHESIS_REPORTS:-}" ] || cp "$TMP/dashboard.log" "$REPORTS/"
  exit 1
fi
