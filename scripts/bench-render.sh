#!/usr/bin/env bash
# The render engine's figures over the corpus: per-page median render time and overhead beyond the
# page's own completion, renders per second at concurrency 4, and memory before and after 1,000
# renders. Writes docs/benchmarks/render.md. Needs Chromium (scripts/test.sh installs it).
#
#   scripts/bench-render.sh [runs-per-page] [soak-renders]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-10}"
soak="${2:-1000}"
exec cargo bench -p kiln-worker --bench corpus -- \
  --runs "$runs" --throughput 200 --soak "$soak" --out docs/benchmarks/render.md
