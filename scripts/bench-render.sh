#!/usr/bin/env bash
# The render engine's figures over the corpus: per-page median render time and overhead beyond the
# page's own completion, renders per second at the worker's default tabs (8), and memory over many
# renders. Writes docs/benchmarks/render.md (the whole file: figures and notes). Needs Chromium
# (scripts/test.sh installs it). `just bench` (scripts/bench.sh) runs it with fewer renders and no
# soak; run it alone for the full figures (about 15 minutes on two cores).
#
#   scripts/bench-render.sh [runs-per-page, default 10] [soak-renders, default 1000, 0: none]
#                           [throughput-renders, default 200] [output, default docs/benchmarks/render.md]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
runs="${1:-10}"
soak="${2:-1000}"
throughput="${3:-200}"
out="${4:-$KILN_ROOT/docs/benchmarks/render.md}"
for n in "$runs" "$soak" "$throughput"; do
  [[ $n =~ ^[0-9]+$ ]] || die "usage: scripts/bench-render.sh [runs] [soak] [throughput] [output]"
done
# An absolute path: `cargo bench` runs the program in crates/kiln-worker/.
case $out in /*) ;; *) out="$PWD/$out" ;; esac
cd "$KILN_ROOT"
exec cargo bench --locked -p kiln-worker --bench corpus -- \
  --runs "$runs" --throughput "$throughput" --soak "$soak" --out "$out"
