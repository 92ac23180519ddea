#!/usr/bin/env bash
# Refreshes docs/screenshots/ by running the dashboard's browser test with KILN_SCREENSHOTS_DIR set.
# Installs what it needs, as scripts/test.sh (which it runs) does.
set -euo pipefail
cd "$(dirname "$0")/.."
export KILN_CHROME_PATH="${KILN_CHROME_PATH:-/usr/bin/chromium}"
export KILN_SCREENSHOTS_DIR="$PWD/docs/screenshots" KILN_SKIP_SCHEMATHESIS=1
exec scripts/test.sh -p kiln-e2e -E 'test(/a_customer_manages_kiln_from_the_browser/)'
