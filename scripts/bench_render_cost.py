"""The render-cost benchmark's driver, report and chart (scripts/bench-render-cost.sh runs them).

    bench_render_cost.py measure CONFIG.json RAW_DIR    drive the renders, read the CPU figures
    bench_render_cost.py report RAW_DIR OUT_DIR         write OUT_DIR/render-cost.md and .csv
    bench_render_cost.py chart CSV PNG                  draw the chart (needs matplotlib)

`measure` and `report` use the standard library only. CONFIG.json (written by the shell script)
names the systems (Kiln through its edge, prerender, Rendertron, and "Chromium alone", the floor:
scripts/bench-bare-chromium.js), where each one's CPU is counted (a cgroup, or with the "proc"
method the process trees below some pids), the origins and the levels.

For each level, each page set and each system in turn (the order of the systems turns from one
run to the next, so that the machine's noise falls on all of them), N never-rendered URLs (a query
parameter of their own) are asked by `level` clients at once, each request on a new connection, as
a crawler makes them. A render counts only with status 200 and the page's content in the body (a
product's name, say), so that an empty shell answered fast wins nothing. Each run waits first for
the system to be quiet and, after its last answer, for it to be quiet again: the CPU of a run is
from its first request until then, so that work a system defers (closing pages, a browser recycled)
is counted too. While a run lasts, /proc is read every 50 ms for a breakdown of the CPU by kind of
process (Chromium's --type=), and /proc/stat for the machine's busy cores.
"""

import csv
import gzip
import html
import http.client
import json
import os
import re
import statistics
import sys
import threading
import time
import urllib.parse
import zlib

SAMPLE_SECONDS = 0.05
# A system is quiet when it uses less than this share of one core over two half-second windows.
QUIET_CORES = 0.05
QUIET_MAX_SECONDS = 20
IDLE_SECONDS = 5
REQUEST_TIMEOUT = 60

# What a page shows once its scripts have run, and how long it waits by design (its own timers and
# its API's delays: what a renderer cannot save). The corpus's figures are in its pages:
# crates/kiln-testkit/corpus/. `shadow` is left out: its content is in shadow roots, which only
# Kiln serialises, and this benchmark compares cost, not features.
CORPUS_PAGES = [
    ("/script-built", "Built by script</h1>", 0),
    ("/delayed-fetch", "Price arrived after 400 ms", 400),
    ("/late-meta", "Walnut desk</h1>", 200),
    ("/json-ld", "Injected Product", 0),
    # /api/chain/2 answers after 80 ms, the script it names waits 30 ms and fetches an API that
    # answers after 120 ms.
    ("/chained", "third link: third", 230),
]
# examples/frameworks/*/src/shop.js waits 50 ms before it fetches the product.
FRAMEWORK_PRODUCTS = {1: "Walnut desk", 2: "Oak chair", 3: "Linen lamp"}
FRAMEWORK_WAIT_MS = 50
SETS = ["demo", "corpus", "frameworks"]
SET_TITLES = {
    "demo": "The demo's product pages",
    "corpus": "The render corpus",
    "frameworks": "The React and Vue apps",
}


def log(message):
    print(message, file=sys.stderr, flush=True)


# --- pages -------------------------------------------------------------------------------------


def demo_fetch_delay_ms(app_js):
    """The demo app's own pause before each fetch (FETCH_DELAY_MS in examples/demo/static/app.js)."""
    with open(app_js) as f:
        found = re.search(r"const FETCH_DELAY_MS = (\d+);", f.read())
    if not found:
        raise SystemExit(f"no FETCH_DELAY_MS in {app_js}")
    return int(found.group(1))


def page_sets(config):
    """Per page set, its pages: (origin key, path, expected content, designed waiting in ms)."""
    with open(config["products"]) as f:
        products = json.load(f)
    demo_wait = demo_fetch_delay_ms(config["demo_app"]) + config["demo_api_delay_ms"]
    frameworks = []
    for product_id, name in FRAMEWORK_PRODUCTS.items():
        for app, framework in (("react", "React"), ("vue", "Vue")):
            frameworks.append((app, f"/products/{product_id}", f"{name} · {framework} shop", FRAMEWORK_WAIT_MS))
    return {
        "demo": [
            ("demo", f"/products/{p['id']}", html.escape(p["name"], quote=False), demo_wait) for p in products
        ],
        "corpus": [("corpus", path, expected, wait) for path, expected, wait in CORPUS_PAGES],
        "frameworks": frameworks,
    }


# --- /proc and cgroups -------------------------------------------------------------------------


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def proc_stat(pid):
    """(ppid, utime+stime, utime+stime+cutime+cstime, starttime) in ticks, or None once it is gone."""
    raw = read(f"/proc/{pid}/stat")
    if raw is None:
        return None
    fields = raw[raw.rindex(b")") + 2 :].split()
    own = int(fields[11]) + int(fields[12])
    return int(fields[1]), own, own + int(fields[13]) + int(fields[14]), int(fields[19])


def all_processes():
    """Every process: pid -> (ppid, starttime)."""
    processes = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = proc_stat(int(entry))
            if stat:
                processes[int(entry)] = (stat[0], stat[3])
    return processes


def machine_ticks():
    """(busy, total) ticks of the whole machine since boot."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu "):
                v = [int(x) for x in line.split()[1:9]]
                total = sum(v)
                return total - v[3] - v[4], total
    raise SystemExit("no cpu line in /proc/stat")


def uptime_ticks(hz):
    with open("/proc/uptime") as f:
        return float(f.read().split()[0]) * hz


class Account:
    """Where one system's CPU is counted: a cgroup (v1 cpuacct or v2), or the process trees below
    some pids (method "proc").

    The proc method reads every process of the tree every 50 ms and adds up each one's own user
    and system time from when it was first seen (or from 0, for a process started since the account
    began), keeping the last figures of those that exited. Reaped children's times (cutime) are not
    used: whether a tree process reaped a child that exited between two readings cannot be told,
    and counting both would count the child twice. What it misses: processes that live less than
    50 ms, and the last 50 ms at most of each process that exits."""

    def __init__(self, spec, method, hz):
        self.cgroup = spec.get("cgroup")
        self.roots = spec.get("pids", [])
        self.method = method
        self.hz = hz
        if method == "proc":
            self.lock = threading.Lock()
            self.started_ticks = uptime_ticks(hz)
            # (pid, start) -> [own ticks when first seen, or 0; own ticks at last sight]
            self.known = {}
            self.read_tree()

    def pids(self, processes=None):
        if self.cgroup:
            raw = read(os.path.join(self.cgroup, "cgroup.procs")) or b""
            return [int(p) for p in raw.split()]
        processes = processes or all_processes()
        tree = set(p for p in self.roots if p in processes)
        changed = True
        while changed:
            changed = False
            for pid, (ppid, _) in processes.items():
                if ppid in tree and pid not in tree:
                    tree.add(pid)
                    changed = True
        # A process seen in the tree stays in it when it re-parents to init (Crashpad's handler):
        # the same process, not another that was given its id since.
        with self.lock:
            known = list(self.known)
        tree.update(pid for pid, start in known if processes.get(pid, (0, None))[1] == start)
        return sorted(tree)

    def read_tree(self, processes=None):
        for pid in self.pids(processes):
            stat = proc_stat(pid)
            if stat is None:
                continue
            _, own, _, start = stat
            with self.lock:
                entry = self.known.get((pid, start))
                if entry is None:
                    self.known[(pid, start)] = [0 if start >= self.started_ticks - 1 else own, own]
                else:
                    entry[1] = own

    @staticmethod
    def follow(accounts):
        """Reads the trees of these proc-method accounts every 50 ms, one look at /proc for all."""

        def run():
            while True:
                time.sleep(SAMPLE_SECONDS)
                processes = all_processes()
                for account in accounts:
                    account.read_tree(processes)

        if accounts:
            threading.Thread(target=run, daemon=True).start()

    def usage(self):
        """CPU-seconds used since the account began (the cgroup's: since it was made)."""
        if self.method == "cgroup1":
            return int(read(os.path.join(self.cgroup, "cpuacct.usage"))) / 1e9
        if self.method == "cgroup2":
            for line in read(os.path.join(self.cgroup, "cpu.stat")).decode().splitlines():
                key, value = line.split()
                if key == "usage_usec":
                    return int(value) / 1e6
            raise SystemExit(f"no usage_usec in {self.cgroup}/cpu.stat")
        self.read_tree()
        with self.lock:
            return sum(last - first for first, last in self.known.values()) / self.hz


def command_line(pid):
    """A process's arguments. Chromium rewrites its own as one string, the arguments separated by
    spaces (and its profile's path may hold spaces too: only the flags are looked at)."""
    raw = read(f"/proc/{pid}/cmdline") or b""
    argv = [a.decode(errors="replace") for a in raw.split(b"\0") if a]
    if argv and " --" in argv[0]:
        head, *flags = " ".join(argv).split(" --")
        argv = [head] + ["--" + f for f in flags]
    return argv


def process_kind(argv):
    """What a process is, for the breakdown: Chromium's by its --type=, the services by name."""
    if not argv:
        return "exited"
    exe = os.path.basename(argv[0])
    if "crashpad" in exe:
        return "crashpad"
    if "chrom" in exe or "headless_shell" in exe:
        kind = next((a.split("=", 1)[1] for a in argv if a.startswith("--type=")), None)
        if kind is None:
            return "browser"
        if kind == "utility":
            sub = next((a.split("=", 1)[1] for a in argv if a.startswith("--utility-sub-type=")), "")
            if sub.startswith("network."):
                return "utility: network"
            if sub.startswith("storage."):
                return "utility: storage"
            return "utility: other"
        return kind
    if exe == "node":
        return "service (node)"
    if exe.startswith("kiln-"):
        return f"service ({exe})"
    if exe.startswith("nginx"):
        return "edge (nginx)"
    if exe.startswith("redis"):
        return "redis"
    return exe[:40] or "other"


class Sampler(threading.Thread):
    """Reads every process of some accounts every 50 ms: CPU by kind of process over a run."""

    # Kinds a process may still change from: a zygote's child is a renderer-to-be until Chromium
    # rewrites its command line.
    PROVISIONAL = ("zygote", "exited")

    def __init__(self, accounts, hz):
        super().__init__(daemon=True)
        self.accounts = accounts
        self.hz = hz
        self.stop_event = threading.Event()
        # (account name, pid, start) -> [kind, ticks at first sight or 0 for a process born
        # during the run, ticks at last sight, born during the run]
        self.seen = {}
        self.started_ticks = uptime_ticks(hz)
        self.sample()

    def sample(self):
        for name, account in self.accounts.items():
            for pid in account.pids():
                stat = proc_stat(pid)
                if stat is None:
                    continue
                _, own, _, start = stat
                key = (name, pid, start)
                entry = self.seen.get(key)
                if entry is None:
                    born = start >= self.started_ticks - 1
                    self.seen[key] = [process_kind(command_line(pid)), 0 if born else own, own, born]
                else:
                    entry[2] = own
                    if entry[0] in self.PROVISIONAL:
                        kind = process_kind(command_line(pid))
                        if kind != "exited":
                            entry[0] = kind

    def run(self):
        while not self.stop_event.wait(SAMPLE_SECONDS):
            self.sample()

    def finish(self):
        """By account and kind: CPU-seconds, and how many processes were started during the run."""
        self.stop_event.set()
        self.join()
        self.sample()
        seconds, started = {}, {}
        for (name, _, _), (kind, first, last, born) in self.seen.items():
            seconds.setdefault(name, {}).setdefault(kind, 0.0)
            seconds[name][kind] += (last - first) / self.hz
            if born:
                started.setdefault(name, {}).setdefault(kind, 0)
                started[name][kind] += 1
        return seconds, started


def wait_quiet(accounts, limit=QUIET_MAX_SECONDS):
    """Waits until these accounts together use less than QUIET_CORES for two half-seconds in a row;
    returns the seconds waited (the limit if they never were)."""
    started = time.monotonic()
    quiet = 0
    before = sum(a.usage() for a in accounts)
    while time.monotonic() - started < limit:
        time.sleep(0.5)
        now = sum(a.usage() for a in accounts)
        quiet = quiet + 1 if (now - before) / 0.5 < QUIET_CORES else 0
        before = now
        if quiet >= 2:
            break
    return time.monotonic() - started


# --- requests ----------------------------------------------------------------------------------


def target(system, origins, kiln_hosts, page, bench_id):
    """(base URL, request target, Host header or None) of one render."""
    origin_key, path, _, _ = page
    query = urllib.parse.urlencode({"bench": bench_id})
    if system["kind"] == "kiln":
        return system["base"], f"{path}?{query}", kiln_hosts[origin_key]
    url = f"{origins[origin_key]}{path}?{query}"
    # Chromium alone (scripts/bench-bare-chromium.js) is asked as prerender is.
    if system["kind"] in ("prerender", "bare"):
        return system["base"], "/render?url=" + urllib.parse.quote(url, safe=""), None
    # Rendertron takes the URL as the rest of the path and decodes it: the query string is escaped
    # so that it is the page's and not Rendertron's own.
    return system["base"], "/render/" + urllib.parse.quote(url, safe=":/"), None


def fetch(base, request_target, host, user_agent):
    """One request on a new connection: (status, headers, body, seconds, error)."""
    parts = urllib.parse.urlsplit(base)
    headers = {"User-Agent": user_agent, "Accept-Encoding": "gzip", "Connection": "close"}
    if host:
        headers["Host"] = host
    started = time.monotonic()
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=REQUEST_TIMEOUT)
    try:
        connection.request("GET", request_target, headers=headers)
        response = connection.getresponse()
        body = response.read()
        elapsed = time.monotonic() - started
        response_headers = {k.lower(): v for k, v in response.getheaders()}
        return response.status, response_headers, body, elapsed, ""
    except (OSError, http.client.HTTPException) as error:
        return 0, {}, b"", time.monotonic() - started, type(error).__name__
    finally:
        connection.close()


def text_of(headers, body):
    encoding = headers.get("content-encoding", "").lower()
    try:
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
    except (OSError, zlib.error, EOFError):
        return ""
    return body.decode("utf-8", errors="replace")


def render(system, config, page, bench_id):
    base, request_target, host = target(system, config["origins"], config["kiln_hosts"], page, bench_id)
    status, headers, body, seconds, error = fetch(base, request_target, host, config["bot_user_agent"])
    expected = page[2]
    if error:
        reason = error
    elif status != 200:
        reason = f"status {status}"
    elif expected not in text_of(headers, body):
        reason = "content missing"
    else:
        reason = ""
    return {
        "status": status,
        "cache": headers.get("x-kiln-cache", ""),
        "bytes": len(body),
        "ms": seconds * 1000,
        "good": not reason,
        "reason": reason,
    }


def run_renders(system, config, pages, level, count, id_prefix):
    """`count` renders, `level` at once; returns every request's figures and the wall seconds."""
    results = [None] * count
    next_index = iter(range(count))
    lock = threading.Lock()
    clock0 = time.monotonic()

    def client():
        while True:
            with lock:
                i = next(next_index, None)
            if i is None:
                return
            page = pages[i % len(pages)]
            started = time.monotonic() - clock0
            result = render(system, config, page, f"{id_prefix}-{i}")
            result.update(index=i, origin=page[0], path=page[1], designed_ms=page[3], start=started)
            result["end"] = time.monotonic() - clock0
            results[i] = result

    threads = [threading.Thread(target=client) for _ in range(level)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    return results, wall


# --- measure -----------------------------------------------------------------------------------


def measure(config_path, raw_dir):
    with open(config_path) as f:
        config = json.load(f)
    hz = config["clk_tck"]
    cores = config["cores"]
    method = config["cpu_method"]
    sets = page_sets(config)
    systems = config["systems"]
    accounts = {}
    for system in systems:
        accounts[system["name"]] = Account(system["account"], method, hz)
        if "extra" in system:
            accounts[system["extra"]["name"]] = Account(system["extra"]["account"], method, hz)

    Account.follow([a for a in accounts.values() if a.method == "proc"])

    def own_accounts(system):
        names = [system["name"]] + ([system["extra"]["name"]] if "extra" in system else [])
        return {n: accounts[n] for n in names}

    # Every system renders each page once first: it starts its browser, the origins warm up, and a
    # system that cannot render a page fails here rather than in every run.
    log("warming up: every page once from every system")
    for system in systems:
        first = True
        for set_name in SETS:
            for page in sets[set_name]:
                # The first page waits for the system to start (up to 90 s); the others are asked once.
                deadline = time.monotonic() + (90 if first else 0)
                while True:
                    warm_id = f"{config['run_id']}-warm-{system['kind']}-{time.time_ns()}"
                    result = render(system, config, page, warm_id)
                    if result["good"] or time.monotonic() > deadline:
                        break
                    time.sleep(1)
                if not result["good"]:
                    if first:
                        raise SystemExit(f"{system['name']} renders nothing: {page[0]} {page[1]}: {result['reason']}")
                    log(f"    warning: {system['name']} failed to render {page[0]} {page[1]}: {result['reason']}")
                first = False
        log(f"    {system['name']}: ready")

    # What each system uses doing nothing, for the report: a run's CPU includes the seconds it
    # takes to be quiet again, and this says how little of that is idling.
    wait_quiet(list(accounts.values()))
    before = {name: a.usage() for name, a in accounts.items()}
    time.sleep(IDLE_SECONDS)
    idle = {name: (a.usage() - before[name]) / IDLE_SECONDS for name, a in accounts.items()}
    with open(os.path.join(raw_dir, "idle.json"), "w") as f:
        json.dump(idle, f)
    log("    idle: " + ", ".join(f"{name} {cores:.3f} cores" for name, cores in idle.items()))

    requests_path = os.path.join(raw_dir, "requests.tsv")
    runs_path = os.path.join(raw_dir, "runs.jsonl")
    with open(requests_path, "w") as f:
        f.write("system\tset\tlevel\tindex\torigin\tpath\tstatus\tcache\tbytes\tms\tdesigned_ms\tgood\treason\n")
    open(runs_path, "w").close()

    turn = 0
    for level in config["levels"]:
        for set_name in SETS:
            order = systems[turn % len(systems) :] + systems[: turn % len(systems)]
            turn += 1
            for system in order:
                mine = own_accounts(system)
                waited = wait_quiet(list(mine.values()))
                sampler = Sampler(mine, hz)
                before = {name: a.usage() for name, a in accounts.items()}
                busy0, total0 = machine_ticks()
                sampler.start()
                id_prefix = f"{config['run_id']}-{system['kind']}-{set_name}-{level}"
                # At least two renders per client, so that every client's first render is not all there is.
                count = max(config["renders"][set_name], 2 * level)
                results, wall = run_renders(system, config, sets[set_name], level, count, id_prefix)
                busy1, total1 = machine_ticks()
                during = {name: a.usage() - before[name] for name, a in accounts.items()}
                settled = wait_quiet(list(mine.values()))
                after = {name: accounts[name].usage() - before[name] for name in mine}
                kinds, started = sampler.finish()
                busy_cores = cores * (busy1 - busy0) / max(1, total1 - total0)
                others = busy_cores - sum(during.values()) / wall if wall > 0 else 0.0
                run = {
                    "system": system["name"],
                    "kind": system["kind"],
                    "set": set_name,
                    "level": level,
                    "requests": len(results),
                    "good": sum(1 for r in results if r["good"]),
                    "reasons": {},
                    "wall_s": wall,
                    "cpu_s": after[system["name"]],
                    "cpu_s_during": during[system["name"]],
                    "extra_cpu_s": after[system["extra"]["name"]] if "extra" in system else None,
                    "busy_cores": busy_cores,
                    "other_busy_cores": others,
                    "quiet_wait_s": waited,
                    "settle_s": settled,
                    "latency_ms": [r["ms"] for r in results if r["good"]],
                    "overhead_ms": [r["ms"] - r["designed_ms"] for r in results if r["good"]],
                    "kinds": kinds.get(system["name"], {}),
                    "started": started.get(system["name"], {}),
                    "extra_kinds": kinds.get(system["extra"]["name"], {}) if "extra" in system else {},
                    "caches": {},
                }
                for r in results:
                    if r["reason"]:
                        run["reasons"][r["reason"]] = run["reasons"].get(r["reason"], 0) + 1
                    if r["cache"]:
                        run["caches"][r["cache"]] = run["caches"].get(r["cache"], 0) + 1
                with open(runs_path, "a") as f:
                    f.write(json.dumps(run) + "\n")
                with open(requests_path, "a") as f:
                    for r in results:
                        f.write(
                            f"{system['name']}\t{set_name}\t{level}\t{r['index']}\t{r['origin']}\t{r['path']}\t"
                            f"{r['status']}\t{r['cache'] or '-'}\t{r['bytes']}\t{r['ms']:.1f}\t{r['designed_ms']}\t"
                            f"{int(r['good'])}\t{r['reason'] or '-'}\n"
                        )
                good = run["good"]
                log(
                    f"    {set_name:<10} {level} at once  {system['name']:<17} {good:>3}/{len(results)} good  "
                    f"{good / wall:5.2f} renders/s  "
                    + (f"{run['cpu_s'] / good:6.3f} CPU-s/render  " if good else "   n/a CPU-s/render  ")
                    + (f"p50 {statistics.median(run['latency_ms']):6.0f} ms  " if good else "")
                    + f"busy {busy_cores:.2f} cores"
                    + (f"  failures: {run['reasons']}" if run["reasons"] else "")
                )


# --- report ------------------------------------------------------------------------------------


def percentile(values, share):
    """The share-th percentile, interpolated between the two nearest values (the median at 0.5)."""
    if not values:
        return None
    ordered = sorted(values)
    position = share * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def figures(run):
    good = run["good"]
    cpu = run["cpu_s"]
    out = {
        "requests": run["requests"],
        "renders": good,
        "failures": run["requests"] - good,
        "wall_s": run["wall_s"],
        "renders_per_s": good / run["wall_s"] if run["wall_s"] > 0 else None,
        "cpu_s": cpu,
        "cpu_s_during_requests": run["cpu_s_during"],
        "cpu_s_per_render": cpu / good if good else None,
        "renders_per_cpu_s": good / cpu if cpu > 0 else None,
        "p50_ms": percentile(run["latency_ms"], 0.5),
        "p90_ms": percentile(run["latency_ms"], 0.9),
        "overhead_p50_ms": statistics.median(run["overhead_ms"]) if run["overhead_ms"] else None,
        "busy_cores": run["busy_cores"],
        "other_busy_cores": run["other_busy_cores"],
        "settle_s": run["settle_s"],
    }
    if run["extra_cpu_s"] is not None:
        out["front_cpu_s"] = run["extra_cpu_s"]
        out["cpu_s_per_render_with_front"] = (cpu + run["extra_cpu_s"]) / good if good else None
    attributed = sum(run["kinds"].values())
    for kind, seconds in run["kinds"].items():
        out[f"cpu_s_per_render[{kind}]"] = seconds / good if good else None
    out["cpu_s_per_render[not attributed]"] = (cpu - attributed) / good if good else None
    for kind, count in run.get("started", {}).items():
        out[f"processes_started_per_render[{kind}]"] = count / good if good else None
    return out


def read_meta(raw_dir):
    meta = {}
    with open(os.path.join(raw_dir, "meta.env")) as f:
        for line in f:
            if "=" in line:
                key, value = line.rstrip("\n").split("=", 1)
                meta[key] = value
    return meta


def fmt(value, digits=2, suffix=""):
    if value is None:
        return "—"
    return f"{value:,.{digits}f}{suffix}"


# The breakdown's columns; other kinds (the launcher script Debian's /usr/bin/chromium is, and the
# tools it runs) go under "other".
BREAKDOWN = [
    "service (kiln-worker)",
    "service (node)",
    "browser",
    "renderer",
    "gpu-process",
    "utility: network",
    "utility: storage",
    "utility: other",
    "zygote",
    "crashpad",
    "other",
    "not attributed",
]


def report(raw_dir, out_dir):
    meta = read_meta(raw_dir)
    with open(os.path.join(raw_dir, "config.json")) as f:
        config = json.load(f)
    runs = []
    with open(os.path.join(raw_dir, "runs.jsonl")) as f:
        for line in f:
            runs.append(json.loads(line))
    systems = [s["name"] for s in config["systems"]]
    kiln = next(s["name"] for s in config["systems"] if s["kind"] == "kiln")
    rendertron = next(s["name"] for s in config["systems"] if s["kind"] == "rendertron")
    prerender = next(s["name"] for s in config["systems"] if s["kind"] == "prerender")
    # Chromium alone, the floor; absent from runs made before it was added.
    bare = next((s["name"] for s in config["systems"] if s["kind"] == "bare"), None)
    levels = config["levels"]
    table = {(r["system"], r["set"], r["level"]): figures(r) for r in runs}
    by_run = {(r["system"], r["set"], r["level"]): r for r in runs}
    sets = page_sets(config)
    idle = {}
    if os.path.exists(os.path.join(raw_dir, "idle.json")):
        with open(os.path.join(raw_dir, "idle.json")) as f:
            idle = json.load(f)
    demo_wait = sets["demo"][0][3]
    fetch_delay = demo_fetch_delay_ms(config["demo_app"])

    # The CSV: every figure, one a line.
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "render-cost.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["page_set", "system", "level", "metric", "value"])
        for (system, set_name, level), values in table.items():
            for metric, value in values.items():
                if value is not None:
                    writer.writerow([set_name, system, level, metric, f"{value:.6g}"])
        for name, cores in idle.items():
            writer.writerow(["idle", name, 0, "idle_cores", f"{cores:.6g}"])
        for set_name in SETS:
            for level in levels:
                k = table.get((kiln, set_name, level), {}).get("renders_per_cpu_s")
                for peer in (rendertron, prerender):
                    p = table.get((peer, set_name, level), {}).get("renders_per_cpu_s")
                    if k and p:
                        writer.writerow([set_name, f"{kiln} / {peer}", level, "renders_per_cpu_s_ratio", f"{k / p:.6g}"])

    def get(system, set_name, level, metric):
        return table.get((system, set_name, level), {}).get(metric)

    def ratio(set_name, level, peer):
        k, p = get(kiln, set_name, level, "renders_per_cpu_s"), get(peer, set_name, level, "renders_per_cpu_s")
        return k / p if k and p else None

    # Goals of the issue, on the demo's pages.
    goals = []

    def verdict(ok):
        return "met" if ok else "**not met**"

    cpu_by_level = {l: get(kiln, "demo", l, "cpu_s_per_render") for l in levels}
    measured = [v for v in cpu_by_level.values() if v is not None]
    if measured:
        goals.append((
            "Kiln ≤ 0.25 CPU-s per render on the demo page, at every level",
            ", ".join(f"{fmt(v, 3)} at {l}" for l, v in cpu_by_level.items()),
            verdict(len(measured) == len(levels) and all(v <= 0.25 for v in measured)),
        ))
    ratios = {l: ratio("demo", l, rendertron) for l in levels}
    if any(v is not None for v in ratios.values()):
        goals.append((
            "Kiln ≥ 1.5× Rendertron's renders per CPU-second on the demo page, at every level",
            ", ".join(f"{fmt(v, 2, '×')} at {l}" for l, v in ratios.items()),
            verdict(all(v is not None and v >= 1.5 for v in ratios.values())),
        ))
    # Beside the renders/s goals, what Chromium alone reached on the same page in the same run: the
    # ceiling. The verdicts are Kiln's alone.
    bare_rates = []
    for level, floor in ((4, 5), (8, 7)):
        rate = get(kiln, "demo", level, "renders_per_s")
        if rate is not None:
            measured_text = f"{rate:.2f}/s"
            bare_rate = get(bare, "demo", level, "renders_per_s") if bare else None
            if bare_rate is not None:
                measured_text += f" (Chromium alone: {bare_rate:.2f}/s)"
                bare_rates.append(bare_rate)
            goals.append((f"Kiln ≥ {floor} renders/s with {level} at once (demo page)", measured_text, verdict(rate >= floor)))
    overhead = get(kiln, "demo", 1, "overhead_p50_ms") if 1 in levels else None
    if overhead is not None:
        goals.append((
            f"Kiln's overhead through the edge ≤ 100 ms median, one at a time (demo page, {demo_wait} ms of designed waiting)",
            f"{overhead:.0f} ms",
            verdict(overhead <= 100),
        ))

    lines = []
    add = lines.append
    add("# Render cost: Kiln, prerender and Rendertron" + (", and Chromium alone as the floor" if bare else ""))
    add("")
    add(
        f"Cold renders, {', '.join(str(l) for l in levels)} at once, of the same pages by the three systems"
        + (" and by Chromium alone (one browser driven by a bare CDP client: the floor)" if bare else "")
        + f" in one run on this machine ({meta.get('cores')} cores, {meta.get('cpu')}, {meta.get('memory_gb')} GB), "
        f"{meta.get('date')}, commit {meta.get('commit')}. Debian's Chromium {meta.get('chromium')}: Kiln's worker runs "
        f"`{meta.get('kiln_chrome')}` (its default), the peers `{meta.get('peer_chrome')}`"
        + (" (as PEERS.md sets them up)" if meta.get("peer_chrome") == "/usr/bin/chromium" else "")
        + (f", Chromium alone `{meta.get('bare_chrome')}`" if bare else "")
        + f"; Node.js {meta.get('node')} for the peers" + (" and Chromium alone" if bare else "")
        + f". Written by `{meta.get('command')}` "
        "(scripts/bench-render-cost.sh; `just bench-render-cost` is the quick run, `just bench` the full one)."
    )
    add("")
    add("## Goals")
    add("")
    add("| goal | measured | result |")
    add("| --- | --- | --- |")
    for goal, value, result in goals:
        add(f"| {goal} | {value} | {result} |")
    add("")
    if bare_rates:
        add("*Chromium alone* beside the renders/s goals is what one Chromium driven by a bare CDP client "
            "(scripts/bench-bare-chromium.js) reached on the same page in the same run: the ceiling set by the page "
            "and this machine, since no product can beat a browser driven by a bare CDP client with no isolation, "
            "queue or edge.")
        add("")
    # What no overhead could change: a render slot of Kiln's worker serves one render at a time, and
    # a render of the demo's page lasts at least the page's own waiting.
    slots = config.get("kiln_render_slots", 4)
    ceiling = 1000 * slots / demo_wait
    top = max(levels)
    busy_top = get(kiln, "demo", top, "busy_cores")
    add(f"What bounds Kiln's renders per second on the demo page: its worker, as a newcomer starts it, renders "
        f"{slots} pages at once (KILN_WORKER_BROWSERS × KILN_WORKER_TABS_PER_BROWSER; the rest wait in the queue), and each render lasts at "
        f"least the page's {demo_wait} ms of designed waiting, so it cannot pass {slots} ÷ {demo_wait / 1000:g} s = "
        f"**{ceiling:.1f} renders/s** however small its overhead"
        + (f"; at {top} at once the machine was {busy_top:.2f} of {meta.get('cores')} cores busy" if busy_top else "")
        + ". More tabs (KILN_WORKER_TABS_PER_BROWSER) or workers raise that bound.")
    add("")
    add("## How it was measured")
    add("")
    method = meta.get("cpu_method")
    method_text = {
        "cgroup1": f"a cgroup v1 `cpuacct` group of its own per system (`cpuacct.usage`, under {meta.get('cgroup_root')})",
        "cgroup2": f"a cgroup v2 group of its own per system (`cpu.stat` usage_usec, under {meta.get('cgroup_root')})",
        "proc": "/proc: the user and system time of every process of each system's process tree, read every "
        "50 ms (no cgroup could be made; processes that live less than 50 ms, and the last 50 ms at most of "
        "each one that exits, are missed)",
    }.get(method, method)
    add(f"- **CPU accounting**: {method_text}. A system's CPU is every process it starts: Kiln's worker and its "
        "Chromium; a peer's (or Chromium alone's) Node server and its Chromium; renderers that exit during a run "
        "and Crashpad handlers that leave the process tree included. Kiln's gateway, edge and Redis are counted apart and shown beside "
        "it (the peers have no such front). A run's CPU is from its first request until the system is quiet again "
        "after its last answer (less than 0.05 of a core for a second, 20 s at most), so deferred work counts."
        + (" Doing nothing, they use " + ", ".join(f"{name} {cores:.3f}" for name, cores in idle.items())
           + " cores (5 s after the warm-up)." if idle else ""))
    add(f"- **Pages**: the demo's {len(sets['demo'])} product pages (`kiln-demo`, its API answering after "
        f"{config['demo_api_delay_ms']} ms; the app waits {fetch_delay} ms before it fetches, "
        f"examples/demo/static/app.js, so its designed waiting is **{demo_wait} ms**); "
        f"{len(CORPUS_PAGES)} pages of the render corpus ({', '.join(p[0][1:] for p in CORPUS_PAGES)}; "
        "designed waiting 0 to 400 ms); the React and Vue apps' product pages (50 ms). Every URL has a query "
        "parameter no one asked for before: every render is a cold one, and neither peer has a cache here.")
    add("- **A good render**: status 200 and the page's content in the body (the product's name, the text the "
        "page's script writes), so that an empty shell answered fast counts as a failure. Latencies are of good "
        "renders, from request to last byte, on a new connection each.")
    add(f"- **Kiln**: asked through the nginx edge as Googlebot (`Host: demo.localhost` and the like, "
        "`Accept-Encoding: gzip`), on a private stack with the worker's defaults (one browser, "
        f"{config.get('kiln_render_slots', 8)} tabs, Chromium's headless "
        "shell), as scripts/run-local.sh starts it. Its domains block images, media and fonts (the default).")
    add(f"- **prerender {meta.get('prerender')}** (`/render?url=`) and **Rendertron {meta.get('rendertron')}** "
        f"(`/render/<URL>`, Puppeteer {meta.get('puppeteer')}), installed from npm into "
        "`~/.cache/kiln/bench-peers/` and set up as /work/shared/PEERS.md says, on free ports.")
    if bare:
        add(f"- **Chromium alone** (`/render?url=`, scripts/bench-bare-chromium.js): the floor, not a product. A "
            f"Node.js server (`ws` {meta.get('ws')}) drives one `{meta.get('bare_chrome')}`, the browser Kiln's worker "
            f"runs, over CDP with {meta.get('bare_tabs')} tabs made at the start (the highest level, so it never "
            "queues), each in a browser context of its own that lives from render to render (its HTTP cache of the "
            "page's scripts and styles too). A page is done once it has loaded, `prerenderReady` (where the page "
            "sets it) is true, no request and no timer of 1 s or less is pending, and neither the DOM nor the "
            "network has changed for 50 ms (Kiln's worker's default quiet window). It waits that window even once "
            "`prerenderReady` is true, so its latency one at a time is no hard floor: a renderer that trusts "
            "`prerenderReady` can answer up to 50 ms sooner. And it asks the page every 10 ms whether it is done, "
            "which costs CPU of its own (its Node server's share in *Where the CPU goes*): its CPU per render is "
            "that of this simple client, not the least any renderer could spend. Then the DOM is serialised and the "
            "tab goes back to about:blank. No isolation between renders, no queue, cache, resource blocking, edge or "
            "gateway.")
    add("- **Order**: for each level and page set the systems run one after another, and which one goes "
        "first turns from run to run, so that noise from the machine falls on all. *busy cores* is the whole "
        "machine during the run (/proc/stat); *others* is what was busy beyond the systems measured (the driver, "
        "the origins, other work on the machine).")
    renders = config["renders"]
    add(f"- **Renders** per system and level: {renders['demo']} (demo), {renders['corpus']} (corpus), "
        f"{renders['frameworks']} (React and Vue). Timings on a shared 2-core machine are noisy: compare the "
        "systems within this run, by their ratios, rather than with other runs.")
    add("")

    for set_name in SETS:
        add(f"## {SET_TITLES[set_name]}")
        add("")
        add("| system | at once | renders/s | CPU-s per render | renders per CPU-s | p50 ms | p90 ms | failures | busy cores (others) |")
        add("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for system in systems:
            for level in levels:
                v = table.get((system, set_name, level))
                if not v:
                    continue
                cpu = fmt(v["cpu_s_per_render"], 3)
                if v.get("cpu_s_per_render_with_front") is not None:
                    cpu += f" ({fmt(v['cpu_s_per_render_with_front'], 3)} with gateway, edge, Redis)"
                reasons = by_run[(system, set_name, level)]["reasons"]
                failures = f"{v['failures']} of {v['requests']}"
                if reasons:
                    failures += " (" + ", ".join(f"{k}: {n}" for k, n in sorted(reasons.items())) + ")"
                add(
                    f"| {system} | {level} | {fmt(v['renders_per_s'])} | {cpu} | {fmt(v['renders_per_cpu_s'])} | "
                    f"{fmt(v['p50_ms'], 0)} | {fmt(v['p90_ms'], 0)} | {failures} | "
                    f"{fmt(v['busy_cores'])} ({fmt(v['other_busy_cores'])}) |"
                )
        add("")
        add("Renders per CPU-second, Kiln against each peer (above 1: Kiln renders more for the same CPU):")
        add("")
        add("| at once | Kiln ÷ Rendertron | Kiln ÷ prerender |")
        add("| ---: | ---: | ---: |")
        for level in levels:
            add(f"| {level} | {fmt(ratio(set_name, level, rendertron), 2, '×')} | {fmt(ratio(set_name, level, prerender), 2, '×')} |")
        add("")

    add("## Overhead, one at a time")
    add("")
    add("Median of (request to last byte − the page's designed waiting) over the good renders at 1 at once: what "
        "a system adds to the page's own time. Kiln's is through the edge and the gateway, as a bot sees it.")
    add("")
    add("| page set | designed waiting | " + " | ".join(systems) + " |")
    add("| --- | --- | " + " | ".join("---:" for _ in systems) + " |")
    waits = {
        "demo": f"{demo_wait} ms",
        "corpus": "0–400 ms by page",
        "frameworks": f"{FRAMEWORK_WAIT_MS} ms",
    }
    for set_name in SETS:
        cells = []
        for system in systems:
            o, p = get(system, set_name, 1, "overhead_p50_ms"), get(system, set_name, 1, "p50_ms")
            cells.append(f"{fmt(o, 0)} ms (p50 {fmt(p, 0)} ms)" if o is not None else "—")
        add(f"| {SET_TITLES[set_name]} | {waits[set_name]} | " + " | ".join(cells) + " |")
    add("")

    add("## Where the CPU goes")
    add("")
    add("CPU-milliseconds per good render by kind of process, on the demo's pages, from /proc read every 50 ms "
        "(Chromium's processes by their `--type=`). *not attributed* is the rest of the system's measured CPU: "
        "processes that lived or ended between two readings; *other* is mostly Debian's `/usr/bin/chromium`, a "
        "shell script, and the tools it runs when a browser starts. Every page set's breakdown, and the "
        "processes of each kind started per render, are in render-cost.csv.")
    add("")
    add("| system | at once | " + " | ".join(BREAKDOWN) + " | total | renderers started per render |")
    add("| --- | ---: | " + " | ".join("---:" for _ in BREAKDOWN) + " | ---: | ---: |")
    for system in systems:
        for level in levels:
            run = by_run.get((system, "demo", level))
            if not run or not run["good"]:
                continue
            by_column = {}
            for kind, seconds in run["kinds"].items():
                column = kind if kind in BREAKDOWN else "other"
                by_column[column] = by_column.get(column, 0.0) + seconds
            by_column["not attributed"] = run["cpu_s"] - sum(run["kinds"].values())
            cells = [f"{1000 * by_column[c] / run['good']:,.0f}" if c in by_column else "—" for c in BREAKDOWN]
            renderers = run.get("started", {}).get("renderer", 0) / run["good"]
            add(f"| {system} | {level} | " + " | ".join(cells)
                + f" | {1000 * run['cpu_s'] / run['good']:,.0f} | {renderers:.1f} |")
    front = [by_run.get((kiln, "demo", level)) for level in levels]
    front_cells = []
    for level, r in zip(levels, front):
        if r and r["good"] and r["extra_cpu_s"] is not None:
            front_cells.append(f"{1000 * r['extra_cpu_s'] / r['good']:.0f} ms at {level}")
    if front_cells:
        add("")
        add("Kiln's gateway, edge and Redis besides, per render: " + ", ".join(front_cells) + ".")
    add("")
    add(f"Raw figures: `BENCH_KEEP=1` keeps every request's figures (requests.tsv) and every run's (runs.jsonl). "
        f"Load average at the start {meta.get('load_start')}, at the end {meta.get('load_end')}.")
    add("")
    with open(os.path.join(out_dir, "render-cost.md"), "w") as f:
        f.write("\n".join(lines))


# --- chart -------------------------------------------------------------------------------------


def chart(csv_path, png_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = {}
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            values[(row["page_set"], row["system"], int(row["level"]), row["metric"])] = float(row["value"])
    systems = []
    for _, system, _, metric in values:
        if metric == "renders_per_s" and system not in systems:
            systems.append(system)
    palette = iter(["#4477aa", "#228833", "#aa3377", "#666666", "#ccbb44"])
    colours = {s: ("#d9541e" if s.split()[0] == "Kiln" else "#000000" if s == "Chromium alone" else next(palette))
               for s in systems}
    fig, axes = plt.subplots(2, len(SETS), figsize=(5 * len(SETS), 8.5), squeeze=False)
    fig.suptitle("Render cost: Kiln, prerender and Rendertron"
                 + (" (Chromium alone, dashed: the floor)" if "Chromium alone" in systems else "")
                 + ", cold renders in one run on this machine", fontsize=12)
    for column, set_name in enumerate(SETS):
        for row, (metric, label) in enumerate((("cpu_s_per_render", "CPU-s per render (lower is better)"),
                                               ("renders_per_s", "renders/s (higher is better)"))):
            ax = axes[row][column]
            for system in systems:
                points = sorted((lvl, v) for (s, sy, lvl, m), v in values.items() if s == set_name and sy == system and m == metric)
                if not points:
                    continue
                # Chromium alone is a reference, not a contender: dashed.
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=system, color=colours[system],
                        linestyle="--" if system == "Chromium alone" else "-")
            ax.set_xscale("log", base=2)
            levels = sorted({lvl for (s, _, lvl, _) in values if s == set_name})
            ax.set_xticks(levels)
            ax.set_xticklabels([str(l) for l in levels])
            ax.set_xlabel("renders at once")
            ax.set_ylabel(label)
            ax.set_ylim(bottom=0)
            ax.grid(True, alpha=0.3)
            if row == 0:
                ax.set_title(SET_TITLES[set_name])
            if row == 0 and column == 0:
                ax.legend(fontsize=9)
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("measure", "report", "chart"):
        raise SystemExit(__doc__)
    {"measure": measure, "report": report, "chart": chart}[sys.argv[1]](sys.argv[2], sys.argv[3])


if __name__ == "__main__":
    main()
