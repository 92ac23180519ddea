#!/usr/bin/env bash
# Builds the framework fixture apps under examples/frameworks/ (React and Vue single-page apps that the
# worker's render tests load in Chromium). Their dist/ folders are committed, so the tests need no
# Node; run this only after changing an app's sources or dependencies, then commit dist/ as well.
#
#   scripts/build-frameworks.sh [react|vue ...]     (default: every app)
#
# Needs Node.js 18, 20 or 22+ and npm (Debian: apt-get install nodejs npm).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

FRAMEWORKS_DIR="$KILN_ROOT/examples/frameworks"

command -v node >/dev/null 2>&1 \
  || die "node is not on PATH: install Node.js 18 or newer (Debian/Ubuntu: apt-get install nodejs npm)"
command -v npm >/dev/null 2>&1 \
  || die "npm is not on PATH: install it (Debian/Ubuntu: apt-get install npm)"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 18 ] \
  || die "Node.js $(node --version) is too old for Vite 6: install Node.js 18 or newer (Debian/Ubuntu: apt-get install nodejs npm)"

apps=("$@")
[ ${#apps[@]} -gt 0 ] || apps=(react vue)

for app in "${apps[@]}"; do
  dir="$FRAMEWORKS_DIR/$app"
  [ -f "$dir/package-lock.json" ] || die "no such app: $dir (expected a package.json and package-lock.json there)"
  log "building $app ($dir) with node $(node --version), npm $(npm --version 2>/dev/null)"
  (cd "$dir" && npm ci --no-audit --no-fund && npm run build)
done
log "built: ${apps[*]}; commit their dist/ folders along with any source change"
