#!/usr/bin/env bash
# Checks that no module of the workspace uses another that uses it back, directly or around a
# loop (a module using its own ancestors' items aside), with crates/kiln-modgraph: it reads every
# crate's module tree and the paths each module names (in `use` items, code, attributes, macro
# arguments and intra-doc links), prints each loop as `crate: a -> b -> a` with the lines that make
# it, and fails on any. Over the whole workspace it also counts each package's non-test lines (its
# library's and binaries' files, less `#[cfg(test)]` items) and fails if one holds more than a
# quarter of them (`--max-share PERCENT` to try another bound). Reading the sources takes a second or
# two, after a first build of the tool.
#
#   scripts/module-loops.sh              # the whole workspace, less the skip list below
#   scripts/module-loops.sh PACKAGE...   # only these packages, in full, skip list or not
#
# The packages on SKIP still have loops: how many is printed as a warning and does not fail the
# check. Take a package off the list once its loops are gone (the check says when).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Empty: every crate is checked in full. Add `kiln-x # why` lines only while a loop is being
# untangled.
SKIP=(
)

args=()
if [ ${#SKIP[@]} -gt 0 ]; then args=(--skip "$(IFS=,; echo "${SKIP[*]}")"); fi
exec cargo run --quiet --locked -p kiln-modgraph -- "${args[@]}" "$@"
