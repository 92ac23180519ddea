"""Draws docs/benchmarks/latest.png from docs/benchmarks/latest.csv (written by scripts/bench_report.py).

    python scripts/bench_chart.py docs/benchmarks/latest.csv docs/benchmarks/latest.png

Four panels: throughput (cache hits against nginx serving the file, the human path against nginx
proxying the origin), p50 and p99 latency of the same runs, renders per second by concurrency, and
memory. scripts/bench.sh runs it with the pinned matplotlib of scripts/bench-requirements.txt.
"""

import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

REFERENCE = "#9e9e9e"
KILN = "#d9541e"
KILN_LIGHT = "#f2a57f"


def load(path):
    figures = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            figures[(row["section"], row["subject"], row["metric"])] = float(row["value"])
    return figures


def main():
    source, target = sys.argv[1], sys.argv[2]
    fig_data = load(source)
    get = lambda section, subject, metric: fig_data.get((section, subject, metric))  # noqa: E731

    targets = [
        ("hits", "nginx static file", "nginx static\nfile (ref.)", REFERENCE),
        ("hits", "edge + gateway", "bot HIT\nedge+gateway", KILN),
        ("hits", "gateway alone", "bot HIT\ngateway", KILN_LIGHT),
        ("hits", "edge + nginx static (ceiling)", "edge+nginx\n(ceiling)", "#9e9e9e"),
        ("human", "origin alone", "origin\nalone", "#cfcfcf"),
        ("human", "nginx proxy", "nginx proxy\n(ref.)", REFERENCE),
        ("human", "edge + gateway", "person\nedge+gateway", KILN),
        ("human", "edge + origin (ceiling)", "edge+origin\n(ceiling)", "#9e9e9e"),
    ]
    targets = [t for t in targets if get(t[0], t[1], "requests_per_s") is not None]

    fig, axes = plt.subplots(2, 2, figsize=(14, 9.5))
    fig.suptitle("Kiln benchmarks (just bench): one run on this machine, references in the same run", fontsize=13)

    # 1. Throughput.
    ax = axes[0][0]
    xs = range(len(targets))
    values = [get(s, n, "requests_per_s") for s, n, _, _ in targets]
    bars = ax.bar(xs, values, color=[c for *_, c in targets])
    for bar, (section, subject, _, _) in zip(bars, targets):
        ratio = get(section, subject, "ratio_to_reference")
        label = f"{bar.get_height():,.0f}"
        if ratio is not None and subject not in ("nginx static file", "nginx proxy", "origin alone"):
            label += f"\n{ratio:.2f}× ref"
        ax.annotate(label, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(xs), [label for _, _, label, _ in targets], fontsize=8)
    ax.set_ylabel("requests/s (median of rounds)")
    ax.set_title("Throughput: cache hits | human path")
    ax.set_ylim(0, max(values + [1]) * 1.25)
    if any(s == "human" for s, *_ in targets):
        split = next(i for i, t in enumerate(targets) if t[0] == "human") - 0.5
        ax.axvline(split, color="black", linewidth=0.8, linestyle=":")

    # 2. Latency p50 / p99.
    ax = axes[0][1]
    width = 0.38
    p50 = [get(s, n, "p50") or 0 for s, n, _, _ in targets]
    p99 = [get(s, n, "p99") or 0 for s, n, _, _ in targets]
    b1 = ax.bar([x - width / 2 for x in xs], p50, width, label="p50", color=[c for *_, c in targets], alpha=0.55)
    b2 = ax.bar([x + width / 2 for x in xs], p99, width, label="p99", color=[c for *_, c in targets])
    for bar in list(b1) + list(b2):
        ax.annotate(f"{bar.get_height():.2f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=7)
    ax.axhline(5, color="#c62828", linewidth=1, linestyle="--")
    ax.annotate("goal: cache-hit p99 < 5 ms", (0, 5), xytext=(0, 3), textcoords="offset points", fontsize=8,
                color="#c62828")
    ax.set_xticks(list(xs), [label for _, _, label, _ in targets], fontsize=8)
    # Logarithmic: a p99 stretched by the shared machine must not flatten every p50 to nothing.
    ax.set_yscale("log")
    ax.set_ylabel("ms (median of rounds, log scale)")
    ax.set_title("Latency: light bars p50, dark bars p99")
    ax.set_ylim(min([v for v in p50 if v > 0] + [0.1]) / 2, max(p99 + [5.5]) * 2)

    # 3. Renders per second by concurrency.
    ax = axes[1][0]
    levels = sorted(
        {int(subject.split()[0]) for section, subject, _ in fig_data if section == "renders"}
    )
    rates = [get("renders", f"{n} at once", "renders_per_s") for n in levels]
    cpu = [get("renders", f"{n} at once", "kiln_cpu_cores") for n in levels]
    if levels:
        ax.plot(levels, rates, marker="o", color=KILN, label="renders/s")
        for n, rate in zip(levels, rates):
            ratio = get("renders", f"{n} at once", "ratio_to_one")
            if rate is not None:
                ax.annotate(f"{rate:.2f}/s\n{ratio:.2f}×" if ratio else f"{rate:.2f}/s", (n, rate),
                            xytext=(0, 6), textcoords="offset points", ha="center", fontsize=8)
        ax.set_xscale("log", base=2)
        ax.set_xticks(levels, [str(n) for n in levels])
        ax.set_ylim(0, max([r for r in rates if r] + [1]) * 1.35)
        ax2 = ax.twinx()
        ax2.bar(levels, [c or 0 for c in cpu], width=[n * 0.25 for n in levels], color="#607d8b", alpha=0.3,
                label="Kiln CPU (cores)")
        ax2.set_ylabel("cores used by worker + Chromium")
        ax2.set_ylim(0, max([c for c in cpu if c] + [2]) * 1.35)
        lines = ax.get_legend_handles_labels()
        more = ax2.get_legend_handles_labels()
        ax.legend(lines[0] + more[0], lines[1] + more[1], loc="upper left", fontsize=8)
    ax.set_xlabel("bots at once (cold renders, each page new)")
    ax.set_ylabel("renders/s")
    ax.set_title("Cold renders per second by concurrency")

    # 4. Memory.
    ax = axes[1][1]
    memory = [
        ("gateway idle", get("memory", "gateway", "idle_rss"), KILN_LIGHT),
        ("gateway, 1,000\nconnections (peak)", get("memory", "gateway", "peak_rss_1000_connections"), KILN),
        ("worker, renders\n(peak RSS)", get("memory", "worker", "peak_rss_renders"), "#8d6e63"),
        ("Chromium, renders\n(peak PSS)", get("memory", "chromium", "peak_pss_renders"), "#5d4037"),
    ]
    memory = [m for m in memory if m[1] is not None]
    ys = range(len(memory))
    bars = ax.barh(list(ys), [m[1] for m in memory], color=[m[2] for m in memory])
    for bar in bars:
        ax.annotate(f" {bar.get_width():,.1f} MiB", (bar.get_width(), bar.get_y() + bar.get_height() / 2),
                    va="center", fontsize=8)
    ax.axvline(64, color="#c62828", linewidth=1, linestyle="--")
    ax.annotate("goal: gateway < 64 MiB", (64, len(memory) - 0.5), xytext=(4, 0), textcoords="offset points",
                fontsize=8, color="#c62828")
    ax.set_yticks(list(ys), [m[0] for m in memory], fontsize=8)
    ax.set_xscale("log")
    ax.set_xlim(5, max([m[1] for m in memory] + [64]) * 4)
    ax.set_xlabel("MiB (log scale)")
    ax.set_title("Memory")
    ax.invert_yaxis()

    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fig.savefig(target, dpi=110)


if __name__ == "__main__":
    main()
