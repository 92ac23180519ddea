"""Turns the raw figures of one scripts/bench.sh run into docs/benchmarks/latest.md and latest.csv.

    python3 scripts/bench_report.py RAW_DIR OUT_DIR

RAW_DIR holds what scripts/bench.sh wrote (meta.env, wrk.tsv, gateway-memory.tsv, cold.tsv,
renders.tsv, levels.tsv, render-memory.tsv, worker-idle.tsv). Every figure is computed here from
those files, the goals' verdicts included; nothing is carried over from an earlier run. Standard
library only.
"""

import csv
import statistics
import sys
from pathlib import Path

MIB = 1024 * 1024

# The goals (issue 22, replacing issue 8's throughput goals, which no gateway behind this edge could
# reach on this machine), each checked against the figure this run measured.
CPU_PER_REQUEST_RATIO = 1.0  # the gateway's CPU per request at most nginx's for the same job
HIT_CEILING_RATIO = 0.90  # cache hits through the edge: at least 90 % of the edge's ceiling
HUMAN_CEILING_RATIO = 0.75  # people through the edge: at least 75 % of the edge's ceiling
HIT_P99_MS = 5.0  # cache hits: p99 under 5 ms on loopback
HUMAN_ADDED_P50_MS = 1.0  # human path: under 1 ms added p50 (kept for the record)
GATEWAY_RSS_MIB = 64  # gateway RSS under 64 MB at 1,000 connections
CONNECTIONS_GOAL = 1000


def read_tsv(path, names):
    rows = []
    if not path.exists():
        return rows
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        fields = line.split("\t")
        rows.append(dict(zip(names, fields)))
    return rows


def read_pairs(path):
    pairs = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if "\t" in line:
                key, value = line.split("\t", 1)
            elif "=" in line:
                key, value = line.split("=", 1)
            else:
                continue
            pairs[key.strip()] = value.strip()
    return pairs


def num(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def percentile(values, p):
    """Nearest-rank percentile; None for no values."""
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    return values[round((len(values) - 1) * p)]


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value, digits=0, suffix=""):
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}{suffix}"


class Wrk:
    """The wrk runs of one section, by subject and round."""

    def __init__(self, rows, section):
        self.rows = [r for r in rows if r["section"] == section]
        self.subjects = list(dict.fromkeys(r["subject"] for r in self.rows))

    def runs(self, subject):
        return [r for r in self.rows if r["subject"] == subject]

    def med(self, subject, field):
        return median([num(r[field]) for r in self.runs(subject)])

    def errors(self, subject):
        return sum(int(r["non2xx"]) + int(r["socket_errors"]) for r in self.runs(subject))

    def requests(self, subject):
        return sum(int(r["requests"]) for r in self.runs(subject))

    def counted(self, subject):
        return sum(int(r["counted"]) for r in self.runs(subject))

    def per_round(self, subject, reference, combine):
        """The median over rounds of combine(subject's run, reference's run in the same round)."""
        ref = {r["round"]: r for r in self.runs(reference)}
        return median([combine(r, ref[r["round"]]) for r in self.runs(subject) if r["round"] in ref])

    def ratio(self, subject, reference):
        return self.per_round(subject, reference, lambda s, r: num(s["rps"]) / num(r["rps"]) if num(r["rps"]) else None)

    def cpu_us(self, subject, hz):
        """The median over rounds of the subject's own processes' CPU time per request, in µs."""
        return median([per_request_cpu(r, hz) for r in self.runs(subject)])

    def cpu_ratio(self, subject, reference, hz):
        """The median over rounds of the subject's CPU per request over the reference's."""

        def combine(s, r):
            a, b = per_request_cpu(s, hz), per_request_cpu(r, hz)
            return a / b if a is not None and b else None

        return self.per_round(subject, reference, combine)

    def added(self, subject, reference, field):
        return self.per_round(subject, reference, lambda s, r: num(s[field]) - num(r[field]))


def per_request_cpu(row, hz):
    """CPU-microseconds per request of one wrk run: the subject's processes' CPU ticks over the
    requests wrk completed; None when the run did not measure CPU."""
    ticks, requests = num(row.get("cpu_ticks")), num(row.get("requests"))
    if ticks is None or not requests or not hz:
        return None
    return ticks / hz * 1e6 / requests


def verdict(ok, valid=True, why=""):
    if not valid:
        return f"**not measured** ({why})" if why else "**not measured**"
    return "pass" if ok else "**FAIL**"


def main():
    raw, out = Path(sys.argv[1]), Path(sys.argv[2])
    meta = read_pairs(raw / "meta.env")
    cores = int(meta.get("cores", "0") or 0)
    wrk_rows = read_tsv(
        raw / "wrk.tsv",
        ["section", "subject", "round", "rps", "p50", "p99", "requests", "non2xx", "socket_errors", "counted", "cpu_ticks"],
    )
    hz = num(meta.get("clock_ticks")) or 100
    hits, human = Wrk(wrk_rows, "hits"), Wrk(wrk_rows, "human")
    memory = read_pairs(raw / "gateway-memory.tsv")
    cold = read_tsv(raw / "cold.tsv", ["round", "page", "status", "cache", "render_ms", "total_ms"])
    renders = read_tsv(
        raw / "renders.tsv", ["level", "client", "start", "status", "cache", "render_ms", "total_ms", "end"]
    )
    levels = read_tsv(raw / "levels.tsv", ["level", "wall_s", "cpu_s", "machine_busy_pct", "load"])
    render_memory = read_tsv(raw / "render-memory.tsv", ["level", "worker_rss_kb", "chromium_bytes", "tabs"])
    worker_idle = read_pairs(raw / "worker-idle.tsv")

    csv_rows = []

    def record(section, subject, metric, value, unit=""):
        if value is not None:
            csv_rows.append([section, subject, metric, round(value, 4) if isinstance(value, float) else value, unit])

    # --- cache hits and the human path ---------------------------------------------------------
    STATIC, EDGE, GATEWAY = "nginx static file", "edge + gateway", "gateway alone"
    ORIGIN, PROXY, PERSON = "origin alone", "nginx proxy", "edge + gateway"
    PERSON_ALONE = "gateway alone"
    # The gateway's HTTP stack (hyper on tokio) with nothing of Kiln's on top.
    FLOOR, FLOOR_PROXY = "hyper floor", "hyper floor proxy"
    FLOOR_EDGE_HITS = "edge + hyper floor"
    # The edge with nginx (bots) or the origin (people) behind it in place of the gateway.
    CEILING_HITS, CEILING_HUMAN = "edge + nginx static (ceiling)", "edge + origin (ceiling)"
    for section, data, reference in (("hits", hits, STATIC), ("human", human, PROXY)):
        for subject in data.subjects:
            record(section, subject, "requests_per_s", data.med(subject, "rps"), "1/s")
            record(section, subject, "p50", data.med(subject, "p50"), "ms")
            record(section, subject, "p99", data.med(subject, "p99"), "ms")
            record(section, subject, "ratio_to_reference", data.ratio(subject, reference), "")
            record(section, subject, "errors", data.errors(subject), "")
            record(section, subject, "cpu_per_request", data.cpu_us(subject, hz), "us")

    def hit_share(subject):
        requests = hits.requests(subject)
        return hits.counted(subject) / requests if requests else None

    def hits_valid(subject):
        share = hit_share(subject)
        return hits.errors(subject) == 0 and share is not None and share >= 0.99

    # --- memory --------------------------------------------------------------------------------
    peak_rss = num(memory.get("peak_rss_kb"))
    peak_rss_mib = peak_rss / 1024 if peak_rss is not None else None
    idle_rss_mib = num(memory.get("idle_rss_kb")) / 1024 if num(memory.get("idle_rss_kb")) is not None else None
    peak_open = num(memory.get("peak_open_connections"))
    mem_errors = int(num(memory.get("non2xx")) or 0) + int(num(memory.get("socket_errors")) or 0)
    record("memory", "gateway", "idle_rss", idle_rss_mib, "MiB")
    record("memory", "gateway", "peak_rss_1000_connections", peak_rss_mib, "MiB")
    record("memory", "gateway", "peak_open_connections", peak_open, "")
    record("memory", "gateway", "requests_per_s_1000_connections", num(memory.get("rps")), "1/s")
    record("memory", "gateway", "p99_1000_connections", num(memory.get("p99_ms")), "ms")

    worker_idle_mib = (num(worker_idle.get("worker_idle_rss_kb")) or 0) / 1024 or None
    worker_peak = max((num(r["worker_rss_kb"]) or 0 for r in render_memory), default=0) / 1024 or None
    chromium_peak = max((num(r["chromium_bytes"]) or 0 for r in render_memory), default=0) / MIB or None
    record("memory", "worker", "peak_rss_renders", worker_peak, "MiB")
    record("memory", "chromium", "peak_pss_renders", chromium_peak, "MiB")

    # --- renders -------------------------------------------------------------------------------
    def rendered(row):
        return row["status"] == "200" and row["cache"] == "MISS"

    cold_ok = [r for r in cold if rendered(r)]
    cold_total = [num(r["total_ms"]) for r in cold_ok]
    cold_render = [num(r["render_ms"]) for r in cold_ok]
    record("cold", "demo pages", "p50", median(cold_total), "ms")
    record("cold", "demo pages", "p90", percentile(cold_total, 0.9), "ms")
    record("cold", "demo pages", "render_p50", median(cold_render), "ms")

    level_rows = []
    base_rate = None
    for level in levels:
        n = level["level"]
        rows = [r for r in renders if r["level"] == n]
        ok = [r for r in rows if rendered(r)]
        wall = num(level["wall_s"])
        rate = len(ok) / wall if wall else None
        if base_rate is None and n == "1":
            base_rate = rate
        totals = [num(r["total_ms"]) for r in ok]
        mem = [r for r in render_memory if r["level"] == n]
        cpu_cores = num(level["cpu_s"]) / wall if wall else None
        entry = {
            "level": int(n),
            "requests": len(rows),
            "rendered": len(ok),
            "rate": rate,
            "ratio": rate / base_rate if rate is not None and base_rate else None,
            "p50": median(totals),
            "p90": percentile(totals, 0.9),
            "cpu_cores": cpu_cores,
            "busy": num(level["machine_busy_pct"]),
            "load": num(level["load"]),
            "worker_mib": max((num(r["worker_rss_kb"]) or 0 for r in mem), default=0) / 1024 or None,
            "chromium_mib": max((num(r["chromium_bytes"]) or 0 for r in mem), default=0) / MIB or None,
        }
        level_rows.append(entry)
        subject = f"{n} at once"
        record("renders", subject, "renders_per_s", rate, "1/s")
        record("renders", subject, "ratio_to_one", entry["ratio"], "")
        record("renders", subject, "p50", entry["p50"], "ms")
        record("renders", subject, "p90", entry["p90"], "ms")
        record("renders", subject, "kiln_cpu_cores", cpu_cores, "cores")
        record("renders", subject, "machine_busy", entry["busy"], "%")
        record("renders", subject, "worker_peak_rss", entry["worker_mib"], "MiB")
        record("renders", subject, "chromium_peak_pss", entry["chromium_mib"], "MiB")

    # Where the CPU is the limit: the first level at which Kiln's worker and Chromium use three
    # quarters of the cores, or, when other work leaves them less, at which the machine is all busy.
    saturation = next((e for e in level_rows if e["cpu_cores"] and cores and e["cpu_cores"] >= 0.75 * cores), None)
    if saturation is None:
        saturation = next((e for e in level_rows if e["busy"] is not None and e["busy"] >= 95), None)

    # --- goals ---------------------------------------------------------------------------------
    edge_p99 = hits.med(EDGE, "p99")
    gw_p99 = hits.med(GATEWAY, "p99")
    person_added = human.added(PERSON, PROXY, "p50")
    person_valid = human.errors(PERSON) == 0 and human.errors(PROXY) == 0
    rss_valid = peak_rss_mib is not None and peak_open is not None and peak_open >= CONNECTIONS_GOAL * 0.99
    rss_why = "" if rss_valid else f"only {fmt(peak_open)} connections were open at once"
    def goal(text, key, value, digits, unit, met, valid, why):
        """A row of the goals table: (text, measured, verdict, key, value); `met` is asked only of a
        measured value."""
        return (text, fmt(value, digits, unit), verdict(value is not None and met(value), valid, why), key, value)

    hits_why, person_why = "errors or non-HITs", "errors"
    ceiling_hits = hits.ratio(CEILING_HITS, STATIC)
    ceiling_human = human.ratio(CEILING_HUMAN, PROXY)
    # Through the edge against the same edge with a zero-cost backend, round by round.
    edge_vs_ceiling = hits.ratio(EDGE, CEILING_HITS)
    person_vs_ceiling = human.ratio(PERSON, CEILING_HUMAN)
    hit_cpu_ratio = hits.cpu_ratio(GATEWAY, STATIC, hz)
    # The same job as nginx's: the gateway proxying the origin, with no edge in front of it (through
    # the edge it serves fewer requests a second, so each carries more of the fixed work).
    person_cpu_ratio = human.cpu_ratio(PERSON_ALONE, PROXY, hz)
    cpu_why = "no CPU figures (an older raw/wrk.tsv?)"
    goals = [
        goal("Gateway CPU per cache hit ≤ 1.0× nginx's per request serving the stored page from disk",
             "hit_cpu_per_request", hit_cpu_ratio, 2, "×", lambda v: v <= CPU_PER_REQUEST_RATIO,
             hits_valid(GATEWAY) and hit_cpu_ratio is not None, hits_why if hit_cpu_ratio is not None else cpu_why),
        goal("Gateway CPU per person's request ≤ 1.0× nginx's per request proxying the origin",
             "human_cpu_per_request", person_cpu_ratio, 2, "×", lambda v: v <= CPU_PER_REQUEST_RATIO,
             person_valid and human.errors(PERSON_ALONE) == 0 and person_cpu_ratio is not None,
             person_why if person_cpu_ratio is not None else cpu_why),
        goal("Cache hits through edge + gateway: ≥ 0.90× the edge's ceiling", "hit_throughput_vs_ceiling",
             edge_vs_ceiling, 2, "×", lambda v: v >= HIT_CEILING_RATIO, hits_valid(EDGE), hits_why),
        goal("People through edge + gateway: ≥ 0.75× the edge's ceiling", "human_throughput_vs_ceiling",
             person_vs_ceiling, 2, "×", lambda v: v >= HUMAN_CEILING_RATIO, person_valid, person_why),
        goal("Cache hits through edge + gateway: p99 < 5 ms", "hit_p99_edge",
             edge_p99, 2, " ms", lambda v: v < HIT_P99_MS, hits_valid(EDGE), hits_why),
        goal("Cache hits straight to the gateway: p99 < 5 ms", "hit_p99_gateway",
             gw_p99, 2, " ms", lambda v: v < HIT_P99_MS, hits_valid(GATEWAY), hits_why),
        goal("Human path: < 1 ms p50 added over nginx proxying the origin", "human_added_p50",
             person_added, 3, " ms", lambda v: v < HUMAN_ADDED_P50_MS, person_valid, person_why),
        goal("Gateway RSS < 64 MiB with 1,000 connections open", "gateway_rss_1000",
             peak_rss_mib, 1, " MiB", lambda v: v < GATEWAY_RSS_MIB, rss_valid, rss_why),
    ]
    record("cpu", "hits", "gateway_us_per_request", hits.cpu_us(GATEWAY, hz), "us")
    record("cpu", "hits", "gateway_via_edge_us_per_request", hits.cpu_us(EDGE, hz), "us")
    record("cpu", "hits", "nginx_static_us_per_request", hits.cpu_us(STATIC, hz), "us")
    record("cpu", "hits", "hyper_floor_us_per_request", hits.cpu_us(FLOOR, hz), "us")
    record("cpu", "hits", "hyper_floor_vs_nginx", hits.cpu_ratio(FLOOR, STATIC, hz), "")
    record("cpu", "hits", "gateway_vs_hyper_floor", hits.cpu_ratio(GATEWAY, FLOOR, hz), "")
    record("cpu", "human", "gateway_us_per_request", human.cpu_us(PERSON_ALONE, hz), "us")
    record("cpu", "human", "gateway_via_edge_us_per_request", human.cpu_us(PERSON, hz), "us")
    record("cpu", "human", "nginx_proxy_us_per_request", human.cpu_us(PROXY, hz), "us")
    record("cpu", "human", "hyper_floor_us_per_request", human.cpu_us(FLOOR_PROXY, hz), "us")
    record("cpu", "human", "hyper_floor_vs_nginx", human.cpu_ratio(FLOOR_PROXY, PROXY, hz), "")
    record("cpu", "human", "gateway_vs_hyper_floor", human.cpu_ratio(PERSON_ALONE, FLOOR_PROXY, hz), "")
    # What the people-through-the-edge goal could reach with a gateway costing only its stack's floor.
    record("ceilings", "human", "hyper_floor_via_edge_vs_ceiling", human.ratio("edge + hyper floor proxy", CEILING_HUMAN), "")
    record("ceilings", "hits", "hyper_floor_via_edge_vs_ceiling", hits.ratio(FLOOR_EDGE_HITS, CEILING_HITS), "")
    record("ceilings", "hits", "ratio_to_reference", ceiling_hits, "")
    record("ceilings", "human", "ratio_to_reference", ceiling_human, "")
    for _, _, result, key, value in goals:
        record("goals", key, "value", value, "")
        record("goals", key, "pass", 1 if result == "pass" else 0, "")

    # --- latest.md -----------------------------------------------------------------------------
    load_start = meta.get("load_start", "?")
    load_end = meta.get("load_end", "?")
    loads = [num(x) for x in (load_start.split()[:1] + load_end.split()[:1])]
    loads += [e["load"] for e in level_rows]
    busy_note = ""
    worst = max((x for x in loads if x is not None), default=None)
    if worst is not None and cores and worst > 2 * cores:
        busy_note = (
            f"\n**The machine was busy with other work during this run** (1-minute load up to {worst:.1f} on "
            f"{cores} cores): absolute figures are lower and noisier than on a quiet machine; the ratios, "
            "measured with the reference in the same rounds, are the figures to read.\n"
        )

    md = []
    w = md.append
    w("# Kiln benchmarks\n")
    w(
        f"`just bench` (scripts/bench.sh) on {meta.get('date', '?')}, commit {meta.get('commit', '?')}: "
        f"{cores} cores ({meta.get('cpu', '?')}), {meta.get('memory_gb', '?')} GB, nginx {meta.get('nginx', '?')}, "
        f"Chromium {meta.get('chromium', '?')}; release build, everything (load generator included) on this one "
        f"machine over loopback. Load average (1, 5, 15 min) at the start: {load_start}; at the end: {load_end}."
    )
    w(busy_note)
    w(
        f"Each wrk row is the median of {meta.get('rounds', '?')} rounds of {meta.get('wrk_seconds', '?')} s "
        f"(`wrk -t2 -c{meta.get('connections', '?')} --latency`); within a round the reference and the subjects run "
        "one after the other, and ratios are the median of the per-round ratios, so that what else the machine "
        "did hits both sides alike. Compare figures within this run, not across runs.\n"
    )
    w("## Goals\n")
    w("| goal | measured | result |")
    w("| --- | ---: | --- |")
    for text, measured, result, _, _ in goals:
        w(f"| {text} | {measured} | {result} |")
    w("")
    if ceiling_hits is not None or ceiling_human is not None:
        w(
            "**Ceilings.** The edge is an nginx proxy in front of the gateway, and everything shares the two "
            "cores. The same edge with nginx serving the page behind it, in place of the gateway, reaches "
            f"**{fmt(ceiling_hits, 2, '×')}** of nginx-static throughput; with the origin behind it, "
            f"**{fmt(ceiling_human, 2, '×')}** of nginx proxying the origin. Those are the figures a gateway "
            "that cost nothing would reach through this edge on this machine (the *ceiling* rows below).\n"
        )

    def wrk_table(data, reference, hits_section):
        w("| target | requests/s | p50 ms | p99 ms | throughput vs reference | CPU µs/request | errors |" + (" HITs |" if hits_section else ""))
        w("| --- | ---: | ---: | ---: | ---: | ---: | ---: |" + (" ---: |" if hits_section else ""))
        for subject in data.subjects:
            name = f"{subject} (reference)" if subject == reference else subject
            share = ""
            if hits_section:
                share = " — |" if subject == reference or "ceiling" in subject else f" {fmt(100 * hit_share(subject) if hit_share(subject) is not None else None, 1, ' %')} |"
            w(
                f"| {name} | {fmt(data.med(subject, 'rps'))} | {fmt(data.med(subject, 'p50'), 3)} | "
                f"{fmt(data.med(subject, 'p99'), 3)} | {fmt(data.ratio(subject, reference), 2, '×')} | "
                f"{fmt(data.cpu_us(subject, hz), 1)} | {data.errors(subject)} |{share}"
            )
        w("")

    w(
        "**CPU per request** is the CPU time (user + system) the subject's own processes used during its "
        "runs over the requests served: the gateway process for every row through it (the edge's nginx is "
        "not counted: it is the same in the ceiling rows), and the reference nginx's master and workers for "
        "the reference rows, and `kiln-floor` for the *hyper floor* rows. Empty for the origin and the ceilings.\n"
    )
    w(
        "**The floor** (*hyper floor*, *hyper floor proxy*: `kiln-floor` of crates/kiln-bench) is the gateway's own "
        "HTTP stack, hyper on tokio with the same allocator, doing the least the job needs: the stored bytes with "
        "the gateway's headers, or a pooled proxy to the origin, with no routing, logging, metrics or checks. What "
        "it costs any gateway on this stack costs at least; the rest of the gateway's figure is Kiln's own work. "
        f"Per request: hits — gateway {fmt(hits.cpu_us(GATEWAY, hz), 1)} µs, floor {fmt(hits.cpu_us(FLOOR, hz), 1)} µs, "
        f"nginx {fmt(hits.cpu_us(STATIC, hz), 1)} µs; people — gateway {fmt(human.cpu_us(PERSON_ALONE, hz), 1)} µs, "
        f"floor {fmt(human.cpu_us(FLOOR_PROXY, hz), 1)} µs, nginx {fmt(human.cpu_us(PROXY, hz), 1)} µs.\n"
    )
    w(
        "**Tail latency through the edge** (p99 of cache hits, medians of the rounds): the edge with the gateway "
        f"behind it {fmt(edge_p99, 2, ' ms')}, with hyper's floor behind it (the gateway's stack doing nothing of "
        f"Kiln's) {fmt(hits.med(FLOOR_EDGE_HITS, 'p99'), 2, ' ms')}, with nginx serving the file behind it (the "
        f"ceiling) {fmt(hits.med(CEILING_HITS, 'p99'), 2, ' ms')}; the gateway alone "
        f"{fmt(gw_p99, 2, ' ms')}. Every process here shares two cores with the load generator, so at saturation "
        "the tail is mostly time spent waiting for a core.\n"
    )
    w("## Cache hits\n")
    w(
        f"Googlebot (its per-address rate limit off, as for a verified crawler) asks for /products/3, which is in the cache. The reference is nginx serving the "
        f"same bytes from disk (the gateway's stored gzip, {meta.get('page_gzip_bytes', '?')} bytes, "
        f"{meta.get('page_bytes', '?')} uncompressed, through `gzip_static`), configured like the edge (two workers, "
        "a JSON access-log line per request). *Gateway alone* is the gateway without the edge in front, sent the "
        "headers the edge adds. *HITs* is what the gateway counted as cache hits (`kiln_gateway_requests_total`) "
        "over the requests wrk completed: 100 % means every answer was a HIT. *Ceiling* is the edge with the "
        "reference nginx behind it in place of the gateway.\n"
    )
    wrk_table(hits, STATIC, True)
    w("## Human path\n")
    w(
        "A browser's request for /products/3: the origin's single-page-app shell, proxied. The reference is nginx "
        "proxying the origin, configured like the edge (keep-alive to the upstream, no buffering); the origin "
        "alone is shown for scale. *Ceiling* is the edge with the origin behind it in place of the gateway.\n"
    )
    wrk_table(human, PROXY, False)
    w(
        f"Added p50 over nginx proxying the origin: **{fmt(person_added, 3, ' ms')}**; over the origin alone: "
        f"**{fmt(human.added(PERSON, ORIGIN, 'p50'), 3, ' ms')}**.\n"
    )
    w("Every round (requests/s, p50 ms, p99 ms):\n")
    rounds = sorted({r["round"] for r in wrk_rows}, key=int)
    w("| section | target | " + " | ".join(f"round {r}" for r in rounds) + " |")
    w("| --- | --- |" + " ---: |" * len(rounds))
    for section, data in (("cache hits", hits), ("human path", human)):
        for subject in data.subjects:
            cells = []
            for rnd in rounds:
                run = next((r for r in data.runs(subject) if r["round"] == rnd), None)
                cells.append(
                    f"{fmt(num(run['rps']))} / {fmt(num(run['p50']), 2)} / {fmt(num(run['p99']), 2)}" if run else "—"
                )
            w(f"| {section} | {subject} | " + " | ".join(cells) + " |")
    w("")

    w("## Gateway memory with 1,000 connections\n")
    w(
        f"`wrk -t2 -c1000` for {meta.get('wrk_seconds', '?')} s on cache hits straight to the gateway, its resident "
        "memory (`VmRSS`) and `kiln_gateway_open_connections` sampled every 0.2 s.\n"
    )
    w("| figure | value |")
    w("| --- | ---: |")
    w(f"| gateway RSS before (idle, after the runs above) | {fmt(idle_rss_mib, 1, ' MiB')} |")
    w(f"| gateway RSS, peak during the run | **{fmt(peak_rss_mib, 1, ' MiB')}** |")
    after = num(memory.get("after_rss_kb"))
    w(f"| gateway RSS after | {fmt(after / 1024 if after is not None else None, 1, ' MiB')} |")
    w(f"| open connections, peak seen | {fmt(peak_open)} |")
    w(f"| requests/s | {fmt(num(memory.get('rps')))} |")
    w(f"| p50 / p99 | {fmt(num(memory.get('p50_ms')), 2)} / {fmt(num(memory.get('p99_ms')), 2)} ms |")
    w(f"| errors (non-2xx, socket) | {mem_errors} |")
    w("")

    w("## Cold renders of the demo's pages\n")
    w(
        "Googlebot through the edge, one request at a time, for a page never rendered before (render "
        "cache emptied, and a query string no one asked for yet), the worker idle before each. The demo's script "
        "waits 100 ms and its API answers after 150 ms: about 250 ms of each render is the page's own loading "
        "time. *Total* is the bot's view (request to last byte), *render* the worker's `X-Kiln-Render-Ms`.\n"
    )
    w(
        f"Rendered: {len(cold_ok)} of {len(cold)} (200 and `X-Kiln-Cache: MISS`). Total: median "
        f"**{fmt(median(cold_total))} ms**, p90 **{fmt(percentile(cold_total, 0.9))} ms**; render: median "
        f"{fmt(median(cold_render))} ms, p90 {fmt(percentile(cold_render, 0.9))} ms.\n"
    )
    pages = list(dict.fromkeys(r["page"] for r in cold))
    w("| page | " + " | ".join(f"round {r} total / render ms" for r in sorted({r['round'] for r in cold}, key=int)) + " |")
    w("| --- |" + " ---: |" * len({r["round"] for r in cold}))
    for page in pages:
        cells = []
        for r in sorted((r for r in cold if r["page"] == page), key=lambda r: int(r["round"])):
            mark = "" if rendered(r) else f" ({r['status']} {r['cache']})"
            cells.append(f"{fmt(num(r['total_ms']))} / {r['render_ms']}{mark}")
        w(f"| {page} | " + " | ".join(cells) + " |")
    w("")

    w("## Renders per second by concurrency\n")
    w(
        f"{', '.join(str(e['level']) for e in level_rows)} bots at once (closed loop: each asks for its next never-rendered page as soon as it has "
        f"the last), {meta.get('render_seconds', '?')} s a level, the render cache emptied and the worker idle "
        "before each; one browser with 8 tabs (`KILN_WORKER_TABS_PER_BROWSER=8`, so eight at once are eight "
        "renders in Chromium), recycled as by default (every 500 renders since issue 18, 50 before). Renders/s counts 200 MISS answers over "
        "the time until the last one finished. *Kiln CPU* is the CPU time the worker and its Chromium processes "
        "used, in cores; *machine busy* is the whole machine's (other work included).\n"
    )
    w("| bots at once | rendered | renders/s | vs 1 at once | total p50 ms | total p90 ms | Kiln CPU (cores) | machine busy | load | worker RSS peak | Chromium PSS peak |")
    w("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for e in level_rows:
        w(
            f"| {e['level']} | {e['rendered']} of {e['requests']} | {fmt(e['rate'], 2)} | {fmt(e['ratio'], 2, '×')} | "
            f"{fmt(e['p50'])} | {fmt(e['p90'])} | {fmt(e['cpu_cores'], 2)} | {fmt(e['busy'], 0, ' %')} | "
            f"{fmt(e['load'], 1)} | {fmt(e['worker_mib'], 0, ' MiB')} | {fmt(e['chromium_mib'], 0, ' MiB')} |"
        )
    w("")
    if saturation is not None:
        later = [e for e in level_rows if e["level"] > saturation["level"]]
        steps = ", ".join(
            f"{b['level']}→{a['level']} at once: {fmt(a['rate'] / b['rate'] if a['rate'] and b['rate'] else None, 2, '×')}"
            for b, a in zip([saturation] + later, later)
        )
        w(
            f"The CPU is the limit from **{saturation['level']} at once**: there Kiln's worker and Chromium used "
            f"{fmt(saturation['cpu_cores'], 2)} of the {cores} cores and the machine was {fmt(saturation['busy'], 0, ' %')} "
            "busy (other work included)"
            + (
                f"; past it, renders/s changed by {steps}, and a render took {fmt(saturation['p50'])} ms "
                f"(median, bot's view) at {saturation['level']} at once against {fmt(later[-1]['p50'])} ms at "
                f"{later[-1]['level']}.\n"
                if steps
                else ".\n"
            )
        )
    elif level_rows:
        w("Neither Kiln's processes nor the machine used the whole CPU at any level measured.\n")
    w(
        f"Worker RSS idle after the renders: {fmt(worker_idle_mib, 0, ' MiB')}. Chromium's memory is "
        "`kiln_browser_memory_bytes` from the worker's /metrics (proportional set size of every process of its "
        "browsers).\n"
    )

    w("## Render engine over the corpus\n")
    render_md = out / "render.md"
    summary = []
    if render_md.exists():
        summary = [
            line
            for line in render_md.read_text().splitlines()
            if line.startswith(("Median overhead", "Throughput at"))
        ]
    if summary:
        w("From [render.md](render.md), written by scripts/bench-render.sh in this run:\n")
        for line in summary:
            w(f"* {line}")
        w("")
    else:
        w("Not run this time (BENCH_CORPUS_RUNS=0); see [render.md](render.md).\n")

    (out / "latest.md").write_text("\n".join(md).rstrip() + "\n")
    with (out / "latest.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["section", "subject", "metric", "value", "unit"])
        writer.writerows(csv_rows)


if __name__ == "__main__":
    main()
