#!/usr/bin/env bash
# Parity of the render corpus, before and after Kiln's snapshots were made faithful: runs the parity
# suite of the worker's tests (crates/kiln-worker/tests/it/parity.rs) twice in one go, with
# KILN_RENDER_FIDELITY=off (the snapshot as the DOM stands, as Kiln made it before) and on (the
# default), and writes docs/benchmarks/parity.md: for every corpus page and every route of the React
# and Vue apps, the share of differing pixels between the live page and its snapshot, and the lines
# of text a person sees that the snapshot lacks.
#
#   scripts/parity-report.sh          (about two minutes after the test build)
#
# Needs Redis and Chromium (it installs what it lacks, as scripts/test.sh does).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_packages
export KILN_CHROME_PATH="${KILN_CHROME_PATH:-/usr/lib/chromium/chromium-headless-shell}"
OUT="${BENCH_OUT:-$KILN_ROOT/docs/benchmarks}/parity.md"
LOG=$(mktemp -d /tmp/kiln-parity.XXXXXX)
trap 'rm -rf "$LOG"' EXIT

cd "$KILN_ROOT"
log "the parity suite with KILN_RENDER_FIDELITY=off"
cargo nextest run -p kiln-worker --locked --no-capture --run-ignored ignored-only \
  -E 'test(parity_report_without_fidelity)' >"$LOG/before.log" 2>&1 \
  || { tail -50 "$LOG/before.log" >&2; die "the report run failed"; }
log "the parity suite as Kiln runs by default"
cargo nextest run -p kiln-worker --locked --no-capture \
  -E 'test(every_corpus_page_and_framework_route_looks_like_its_live_page)' >"$LOG/after.log" 2>&1 \
  || { tail -50 "$LOG/after.log" >&2; die "the parity suite failed"; }

python3 - "$LOG/before.log" "$LOG/after.log" "$OUT" "$(git rev-parse --short HEAD)" <<'PY'
import re, sys
before_log, after_log, out, commit = sys.argv[1:]
line = re.compile(r"^(\S.*?)\s+(\d+\.\d+)%\s+missing\s+(\d+)\s+extra\s+(\d+)\s+fields ?(.*)$")
failed = re.compile(r"^(\S.*?)\s+failed: (.*)$")
def read(path):
    rows = {}
    for text in open(path, encoding="utf-8", errors="replace"):
        text = re.sub(r"\x1b\[[0-9;]*m", "", text.rstrip("\n"))
        m = line.match(text)
        if m:
            rows[m.group(1).strip()] = (float(m.group(2)), int(m.group(3)), int(m.group(4)), m.group(5).strip())
            continue
        m = failed.match(text)
        if m and "WARN" not in text and "INFO" not in text:
            rows[m.group(1).strip()] = None
    return rows
before, after = read(before_log), read(after_log)
names = list(after) + [n for n in before if n not in after]
def cell(row):
    if row is None:
        return "failed", "–", "–"
    score, missing, extra, fields = row
    return f"{score:.4f} %", str(missing), fields or "–"
md = [
    "# Parity: what bots get against what people see",
    "",
    f"`scripts/parity-report.sh` at commit {commit}. Every page of the render corpus and every route of the",
    "React and Vue apps (desktop unless marked), each checked by Kiln's parity check: the live page loaded as a",
    "person's browser shows it, the snapshot as bots get it (scripts off), both photographed at the device's",
    "width over the same height and compared pixel by pixel with a tolerance for antialiasing.",
    "",
    "- **before**: `KILN_RENDER_FIDELITY=off`, the snapshot serialised as the DOM stands, as Kiln did before",
    "  (no CSSOM rules, adopted style sheets or form state written out, observers of the viewport seeing only it).",
    "- **after**: Kiln's default.",
    "",
    "The suite fails when a page differs by more than 0.25 % of its pixels or a line of the live page's text",
    "is missing from its snapshot (`cloaking` shows bots another page on purpose: the check must report it).",
    "",
    "| page | differing pixels before | after | text lines missing before | after | fields differing before | after |",
    "| --- | ---: | ---: | ---: | ---: | --- | --- |",
]
for name in names:
    b, a = cell(before.get(name)), cell(after.get(name))
    md.append(f"| {name} | {b[0]} | {a[0]} | {b[1]} | {a[1]} | {b[2]} | {a[2]} |")
def worst(rows):
    vals = [r[0] for n, r in rows.items() if r and n != "cloaking"]
    return max(vals) if vals else float("nan"), sum(1 for v in vals if v > 0.25)
wb, nb = worst(before); wa, na = worst(after)
md += ["", f"Worst page (cloaking aside): {wb:.4f} % before, {wa:.4f} % after; pages over the 0.25 % threshold: {nb} before, {na} after.", ""]
open(out, "w").write("\n".join(md))
print("\n".join(md))
PY
log "wrote $OUT"
