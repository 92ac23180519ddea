#!/usr/bin/env bash
# Runs Kiln's whole test suite against real Redis, PostgreSQL, nginx and Chromium.
#
#   scripts/test.sh [extra arguments for the test runner]
#
# Checks first that no module uses another that uses it back (scripts/module-loops.sh, a second or
# two after its first build). Then installs the Debian packages it lacks (and Node.js with npm,
# unless some Node.js 18 or newer is there), starts a throwaway
# Postgres cluster for the tests (each test creates its own database in it; Redis and nginx are
# started per test by the tests themselves), runs the tests with cargo-nextest when it is installed
# (cargo test otherwise), and cleans up. Then it fuzzes the dashboard's REST API against its OpenAPI
# document (scripts/schemathesis.sh, a minute or two); KILN_SKIP_SCHEMATHESIS=1 skips that on a
# developer's machine, never in CI (CI=true).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_packages
# The render service's tests run the real middlewares (prerender-node, rendertron-middleware) from npm.
ensure_node "the render service's tests"

log "checking for module loops (scripts/module-loops.sh)"
"$KILN_ROOT/scripts/module-loops.sh"

TMP=$(mktemp -d /tmp/kiln-test.XXXXXX)
chmod 755 "$TMP"
cleanup() { stop_postgres "$TMP/postgres"; rm -rf "$TMP"; }
trap cleanup EXIT

PG_PORT=$(( 20000 + RANDOM % 10000 ))
while (exec 3<>"/dev/tcp/127.0.0.1/$PG_PORT") 2>/dev/null; do PG_PORT=$(( 20000 + RANDOM % 10000 )); done
log "starting a throwaway Postgres on 127.0.0.1:$PG_PORT"
start_postgres "$TMP/postgres" "$PG_PORT"
export KILN_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
export KILN_CHROME_PATH="${KILN_CHROME_PATH:-/usr/lib/chromium/chromium-headless-shell}"

cd "$KILN_ROOT"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast "$@"
else
  cargo test --workspace --locked --no-fail-fast "$@"
fi

if [ "${KILN_SKIP_SCHEMATHESIS:-0}" = 1 ] && [ "${CI:-}" != true ]; then
  log "skipping the API fuzzing (KILN_SKIP_SCHEMATHESIS=1)"
else
  log "fuzzing the dashboard's REST API (scripts/schemathesis.sh)"
  # A whole-workspace test build (no arguments) has just made the dashboard's binary, since its
  # tests start it; a separate build would resolve features differently and compile every
  # dependency a second time. With arguments (say `-p kiln-gateway`) it may be stale, so it is built.
  if [ $# -eq 0 ]; then
    export KILN_DASHBOARD_BIN="${CARGO_TARGET_DIR:-$KILN_ROOT/target}/debug/kiln-dashboard"
  fi
  "$KILN_ROOT/scripts/schemathesis.sh"
fi
