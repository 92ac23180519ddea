#!/usr/bin/env bash
# Checks Kiln's dependencies against deny.toml with cargo-deny: licences, banned crates, sources,
# and the RustSec security advisories (with yanked crates).
#
# The advisories live in a git repository on GitHub. Where it cannot be fetched (a machine whose
# only way out is a package registry), this says so loudly and checks the rest; set
# KILN_DENY_REQUIRE_ADVISORIES=1 to fail instead. Everything else fails the run as usual.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CARGO_DENY_VERSION=0.20.2
if [ "$(cargo deny --version 2>/dev/null)" != "cargo-deny $CARGO_DENY_VERSION" ]; then
  echo "== installing cargo-deny $CARGO_DENY_VERSION (once; a few minutes)"
  cargo install cargo-deny --locked --version "$CARGO_DENY_VERSION"
fi

echo "== cargo deny: licences, bans, sources"
cargo deny --log-level warn check licenses bans sources

echo "== cargo deny: advisories"
if cargo deny --log-level error fetch db; then
  cargo deny --log-level warn check advisories
elif [ "${KILN_DENY_REQUIRE_ADVISORIES:-0}" = 1 ]; then
  echo "the RustSec advisory database could not be fetched, and KILN_DENY_REQUIRE_ADVISORIES=1" >&2
  exit 1
else
  cat >&2 <<'WARN'
##################################################################################################
# WARNING: the RustSec advisory database (https://github.com/rustsec/advisory-db) could not be
# fetched from this machine, so security advisories were NOT checked. Licences, bans and sources
# were. Run scripts/deny.sh where GitHub is reachable (KILN_DENY_REQUIRE_ADVISORIES=1 makes this
# an error).
##################################################################################################
WARN
fi
