//! The render engine's figures on the corpus: for each page, the median cold render and what it
//! adds to the page's own completion time; renders per second with the worker's default tabs; and the worker's
//! and Chromium's memory over many renders of one domain, its tabs kept and scrubbed between
//! renders as the worker does it.
//!
//! `cargo bench -p kiln-worker --bench corpus -- [--runs N] [--throughput N] [--soak N] [--out FILE]`
//! (`scripts/bench-render.sh` runs it with the figures the README reports). Timings on a shared
//! machine are noisy: medians, not single runs, and nothing here is asserted.
//!
//! With `--out`, the whole report (notes included) is written to FILE and nothing but progress goes
//! to the terminal; without it, the report is printed on standard output. A relative FILE is the
//! repository's (`cargo bench` runs the program in the package's directory).

use futures::StreamExt;
use kiln_core::{DeviceClass, ResourceBlocking};
use kiln_egress::{EgressProxy, EgressSettings};
use kiln_testkit::corpus::{self, TestCorpusOrigin};
use kiln_worker::pool::Affinity;
use kiln_worker::render::{self, Prepared, RenderRequest};
use kiln_worker::settings::{DEFAULT_CHROME_PATH, DEFAULT_RECYCLE_AFTER, DEFAULT_TABS_PER_BROWSER};
use kiln_worker::{BrowserPool, PoolSettings};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// Tabs of the one browser, the worker's default, and the throughput run's and the soak's
/// concurrency.
const TABS: usize = DEFAULT_TABS_PER_BROWSER;
/// Pages whose figures mean something for speed (the SSRF probes are about safety; `wiped` must fail).
const SKIPPED: &[&str] = &["ssrf-fetch", "ssrf-file", "ssrf-iframe", "wiped"];
/// The mix for throughput and memory: typical single-page-app pages.
const MIX: &[&str] = &[
    "script-built",
    "delayed-fetch",
    "late-meta",
    "json-ld",
    "chained",
    "shadow",
];

struct Args {
    runs: usize,
    throughput: usize,
    soak: usize,
    out: Option<String>,
}

fn args() -> Args {
    let mut args = Args {
        runs: 10,
        throughput: 200,
        soak: 1000,
        out: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().expect("a value after the flag");
        match arg.as_str() {
            "--runs" => args.runs = value().parse().expect("--runs N"),
            "--throughput" => args.throughput = value().parse().expect("--throughput N"),
            "--soak" => args.soak = value().parse().expect("--soak N"),
            "--out" => args.out = Some(value()),
            // `cargo bench` passes `--bench`.
            _ => {}
        }
    }
    args
}

struct Sample {
    total: Duration,
    page_ms: Option<u64>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = args();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // chromiumoxide 0.9.1 cannot parse a few of Chromium's newer messages; harmless.
                .unwrap_or_else(|_| {
                    tracing_subscriber::EnvFilter::new("warn,chromiumoxide::handler=error")
                }),
        )
        .with_writer(std::io::stderr)
        .init();
    let internal = TestCorpusOrigin::start_internal().await;
    let origin = TestCorpusOrigin::start(&internal).await;
    let react = TestCorpusOrigin::start_framework("react").await;
    let vue = TestCorpusOrigin::start_framework("vue").await;
    let devtools = kiln_egress::Refusals::default();
    let proxy = EgressProxy::start(EgressSettings {
        policy: kiln_core::EgressPolicy::parse("127.0.0.1:1-65535@*").expect("a valid grant"),
        refusals: devtools.clone(),
        ..EgressSettings::default()
    })
    .await
    .expect("the egress proxy starts");
    let profile = tempfile::tempdir().expect("a temporary directory");
    let pool = BrowserPool::start(PoolSettings {
        chrome_path: std::env::var("KILN_CHROME_PATH")
            .unwrap_or_else(|_| DEFAULT_CHROME_PATH.into())
            .into(),
        browsers: 1,
        tabs_per_browser: TABS,
        recycle_after: DEFAULT_RECYCLE_AFTER,
        recycle_age: Duration::from_secs(1800),
        recycle_memory_mb: 1536,
        extra_args: proxy.chromium_args(),
        profile_dir: profile.path().to_owned(),
        devtools_refusals: devtools,
        faithful: true,
    });
    while pool.alive_browsers() == 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut pages: Vec<(String, String)> = corpus::page_names()
        .into_iter()
        .filter(|name| !SKIPPED.contains(&name.as_str()))
        .map(|name| (name.clone(), origin.url(&format!("/{name}"))))
        .collect();
    pages.push(("react /products/2".into(), react.url("/products/2")));
    pages.push(("vue /products/2".into(), vue.url("/products/2")));

    let mut report = String::new();
    let _ = writeln!(
        report,
        "# Render engine benchmark\n\nOne browser, {TABS} warm tabs, the egress proxy on, {} runs per page \
         (one at a time, each in a fresh browser context). *Page* is when the page itself was \
         complete (its last DOM change, fetch or load event, by its own clock); *overhead* is what \
         the render took beyond that (tab checkout, set-up, readiness detection, serialisation and \
         clean-up).\n",
        args.runs
    );
    let _ = writeln!(
        report,
        "| page | median render ms | median page ms | median overhead ms |\n|---|---:|---:|---:|"
    );
    let mut overheads = Vec::new();
    for (name, url) in &pages {
        // One render first, so that the origin and Chromium's code caches are as warm as in production.
        let _ = render_one(&pool, url, None).await;
        let mut samples = Vec::new();
        for _ in 0..args.runs {
            settle(&pool).await;
            match render_one(&pool, url, None).await {
                Ok(sample) => samples.push(sample),
                Err(error) => eprintln!("{name}: {error}"),
            }
        }
        let totals: Vec<f64> = samples.iter().map(|s| ms(s.total)).collect();
        let page: Vec<f64> = samples
            .iter()
            .filter_map(|s| s.page_ms.map(|p| p as f64))
            .collect();
        let overhead: Vec<f64> = samples
            .iter()
            .filter_map(|s| s.page_ms.map(|p| ms(s.total) - p as f64))
            .collect();
        overheads.extend(overhead.iter().copied());
        let line = format!(
            "| {name} | {:.0} | {:.0} | {:.0} |",
            median(&totals),
            median(&page),
            median(&overhead)
        );
        eprintln!("{line}");
        let _ = writeln!(report, "{line}");
    }
    let _ = writeln!(
        report,
        "\nMedian overhead over all {} renders: **{:.0} ms** (p90 {:.0} ms).\n",
        overheads.len(),
        median(&overheads),
        percentile(&overheads, 0.9)
    );

    let mix: Vec<String> = MIX.iter().map(|p| origin.url(&format!("/{p}"))).collect();
    let started = Instant::now();
    let done = render_mix(&pool, &mix, args.throughput, None).await;
    let rate = done as f64 / started.elapsed().as_secs_f64();
    let line = format!(
        "Throughput at concurrency {TABS} on this machine: **{rate:.1} renders/s** ({done} of {} renders of the mix {MIX:?} succeeded).\n",
        args.throughput
    );
    eprintln!("{line}");
    let _ = writeln!(report, "{line}");

    if args.soak == 0 {
        let _ = writeln!(
            report,
            "Memory over many renders: not measured in this run (`--soak 0`; `scripts/bench-render.sh` \
             alone measures it over 1,000 renders).\n"
        );
    } else {
        // One domain, as the worker keeps tabs: each render's tab is scrubbed and kept for the
        // next, and memory is read every 100 renders.
        let affinity = Affinity::new("bench", &origin.url(""), &origin.url("/"), None);
        let before = memory(&pool);
        let started = Instant::now();
        let mut ok = 0;
        let mut peak = before;
        let mut readings = Vec::new();
        let mut done = 0;
        while done < args.soak {
            let batch = (args.soak - done).min(100);
            ok += render_mix(&pool, &mix, batch, Some(&affinity)).await;
            done += batch;
            let now = memory(&pool);
            peak = (peak.0.max(now.0), peak.1.max(now.1));
            readings.push(format!("{:.0}", now.1));
            eprintln!(
                "soak: {done} renders, worker {:.0} MB, Chromium {:.0} MB, {} tabs kept",
                now.0,
                now.1,
                pool.tabs_kept()
            );
        }
        // Let the last recycled browser's replacement settle before measuring.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = memory(&pool);
        let line = format!(
            "Memory over {} renders of one domain with its tabs kept ({ok} succeeded, {:.0} s; browsers \
             recycled every {DEFAULT_RECYCLE_AFTER} renders, the worker's default): worker {:.0} MB → \
             {:.0} MB RSS (peak {:.0} MB), Chromium {:.0} MB → {:.0} MB (peak {:.0} MB; proportional \
             set size of all its processes, every 100 renders: {}).\n",
            args.soak,
            started.elapsed().as_secs_f64(),
            before.0,
            after.0,
            peak.0,
            before.1,
            after.1,
            peak.1,
            readings.join(", "),
        );
        eprintln!("{line}");
        let _ = writeln!(report, "{line}");
    }
    pool.shutdown().await;
    proxy.shutdown().await;
    report.push_str(&notes(&args));

    match args.out {
        Some(out) => {
            if let Err(error) = write_report(&out, &report) {
                // A plain message and a failed exit, never a panic: its text must not end up in a
                // report that someone assembles from the terminal's output.
                eprintln!("error: {error}");
                std::process::exit(1);
            }
        }
        None => print!("{report}"),
    }
}

/// Writes the report to `out`, creating its directory. A relative path is the repository's: it is
/// resolved against the checkout being run (`cargo bench` sets `CARGO_MANIFEST_DIR` for the
/// program it starts), not a path compiled into a dependency, which a target directory shared
/// between checkouts can leave pointing at another one.
fn write_report(out: &str, report: &str) -> Result<(), String> {
    let out = std::path::Path::new(out);
    let out = if out.is_absolute() {
        out.to_owned()
    } else {
        let package = std::env::var_os("CARGO_MANIFEST_DIR")
            .ok_or("a relative --out needs CARGO_MANIFEST_DIR (run through `cargo bench`)")?;
        std::path::Path::new(&package).join("../..").join(out)
    };
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(&out, report).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    eprintln!("written to {}", out.display());
    Ok(())
}

/// How the figures were made and what explains the outliers: part of the report, so that the file
/// is wholly generated and never pieced together by hand.
fn notes(args: &Args) -> String {
    let command = |program: &str, arg: &str| {
        std::process::Command::new(program)
            .arg(arg)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let chrome = std::env::var("KILN_CHROME_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut notes = format!(
        "Produced on {} with `scripts/bench-render.sh` (`cargo bench -p kiln-worker --bench corpus -- \
         --runs {} --throughput {} --soak {}`) on this {cores}-core machine, {}. Notes:\n\n",
        command("date", "-u"),
        args.runs,
        args.throughput,
        args.soak,
        command(&chrome, "--version"),
    );
    notes.push_str(
        "* `never-idle` keeps a long-poll open: a request counts as long-lived (and stops holding the \
         render) once it is 2 s old, so that page finishes at about 2.1 s, against the 10 s cap that \
         peers burn.\n\
         * `big-dom` moves 3 MB of HTML out of Chromium and through the rewriter: that is its extra \
         overhead.\n\
         * Throughput is bound by Chromium's CPU on two cores: each render gets a fresh browser \
         context, which costs a renderer process; the warm-up of the next tabs runs beside the \
         renders.\n",
    );
    if args.soak > 0 {
        notes.push_str(
            "* \"Before\" memory is measured after the per-page and throughput runs. The soak renders \
             the mix as one domain: each tab is scrubbed after its render and kept for the next \
             (cookies, storage and history cleared, the page replaced by `about:blank`), as the \
             worker does for a domain's renders.\n",
        );
    }
    notes
}

/// Renders `count` pages of `mix`, one per warm tab at a time, their tabs kept for `keep` if
/// given; returns how many succeeded.
async fn render_mix(
    pool: &BrowserPool,
    mix: &[String],
    count: usize,
    keep: Option<&Affinity>,
) -> usize {
    futures::stream::iter((0..count).map(|i| {
        let pool = pool.clone();
        let url = mix[i % mix.len()].clone();
        async move { render_one(&pool, &url, keep).await.is_ok() }
    }))
    .buffer_unordered(TABS)
    .filter(|ok| futures::future::ready(*ok))
    .count()
    .await
}

/// Waits until the pool has all its warm tabs again: each sequential render starts on an idle
/// machine, as a cold render on a quiet worker does (tab creation in the background would
/// otherwise be counted as the page's own time).
async fn settle(pool: &BrowserPool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while pool.warm_tabs() < TABS && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// One render; in a fresh browser context unless `keep` is given, in which case the tab comes
/// from (and goes back to) the domain's kept tabs.
async fn render_one(
    pool: &BrowserPool,
    url: &str,
    keep: Option<&Affinity>,
) -> Result<Sample, String> {
    let started = Instant::now();
    let mut lease = pool
        .checkout(
            Duration::from_secs(30),
            DeviceClass::Desktop,
            kiln_worker::Priority::Waiting,
            keep,
        )
        .await
        .map_err(|e| e.to_string())?;
    let request = RenderRequest {
        url,
        page_url: url,
        device: DeviceClass::Desktop,
        cap: Duration::from_secs(10),
        quiet: Duration::from_millis(50),
        blocking: ResourceBlocking::default(),
        faithful: true,
        user_agent: None,
    };
    let dead = lease.browser_dead();
    let mut documents = BTreeSet::new();
    let rendered = render::render(
        lease.page(),
        lease.prepared(),
        &request,
        &dead,
        &mut documents,
    )
    .await
    .map_err(|e| e.to_string())?;
    if let Some(affinity) = keep {
        let prepared = Prepared::set_up(DeviceClass::Desktop, ResourceBlocking::default());
        lease.keep_for(affinity.clone(), documents, prepared);
    }
    let total = started.elapsed();
    drop(lease);
    Ok(Sample {
        total,
        page_ms: rendered.page_ms,
    })
}

/// The worker's resident size and Chromium's memory, in MB.
fn memory(pool: &BrowserPool) -> (f64, f64) {
    let worker = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| {
                l[6..]
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
        })
        .unwrap_or(0.0)
        / 1024.0;
    let chromium: u64 = pool
        .browser_pids()
        .into_iter()
        .map(kiln_worker::group_memory_bytes)
        .sum();
    (worker, chromium as f64 / (1024.0 * 1024.0))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(values: &[f64]) -> f64 {
    percentile(values, 0.5)
}

fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}
