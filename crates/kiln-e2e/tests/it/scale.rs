//! Scaling out, tested on one machine: two gateway processes behind the nginx edge and three worker
//! processes (one browser, two tabs each) sharing one Redis ([`TestCluster`]). Renders spread
//! across the workers, each page rendered once; and a worker's departure, stopped (SIGTERM) or
//! killed (`kill -9`) mid-render, loses no page: the last worker takes the work over.
//!
//! Each test prints its figures (`cargo nextest run -p kiln-e2e -E 'test(scale::)' --no-capture`
//! shows them). How throughput grows with workers is measured by `scripts/bench-scale.sh`.

use crate::helpers::*;
use kiln_core::DomainSettings;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WORKERS: [&str; 3] = ["worker-a", "worker-b", "worker-c"];

/// The `n`th of a series of distinct pages: the demo's six products, each under its own query
/// (`series=n`), so every one is a cache entry and a render of its own.
fn page(series: &str, n: usize) -> String {
    format!("/products/{}?{series}={n}", n % 6 + 1)
}

/// How many times each page was rendered, by the render log.
fn renders_by_page(log: &[kiln_store::RenderLogEntry]) -> BTreeMap<&str, usize> {
    let mut by_page = BTreeMap::new();
    for entry in log {
        *by_page.entry(path_of(&entry.url)).or_default() += 1;
    }
    by_page
}

/// How many renders each worker did, by the render log (`?` for an entry naming none).
fn renders_by_worker(log: &[kiln_store::RenderLogEntry]) -> BTreeMap<String, usize> {
    let mut by_worker = BTreeMap::new();
    for entry in log {
        let worker = entry.worker.clone().unwrap_or_else(|| "?".into());
        *by_worker.entry(worker).or_default() += 1;
    }
    by_worker
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renders_spread_across_three_workers_and_each_page_is_rendered_once() {
    // 36 pages on 3 workers × 2 tabs: six rounds of renders. Every bot waits for its own (the last
    // after all six rounds, well within 50 s even on a loaded machine; the edge's read timeout is
    // 60 s), so each gets a MISS.
    const PAGES: usize = 36;
    let budget = Duration::from_secs(50);
    let cluster = TestCluster::start_with(
        DomainSettings {
            bot_wait_ms: budget.as_millis() as u64,
            ..one_render_per_url()
        },
        &WORKERS,
    )
    .await;
    let edge = cluster.edge_url();
    let paths: Vec<String> = (0..PAGES).map(|n| page("spread", n)).collect();

    // All at once, through the edge, which sends them to the two gateways in turn.
    let started = Instant::now();
    let answers = futures::future::join_all(paths.iter().map(|path| {
        let (client, edge) = (cluster.stack.client.clone(), edge.clone());
        async move {
            let answer = ask_within(&client, &edge, path, true, budget + Duration::from_secs(10));
            (path.as_str(), answer.await)
        }
    }))
    .await;
    let took = started.elapsed();

    let mut by_cache = BTreeMap::<String, usize>::new();
    for (path, answer) in &answers {
        let cache = answer
            .as_ref()
            .unwrap_or_else(|e| panic!("a bot got no page: {e}"));
        assert_eq!(cache, "MISS", "{path}: every bot waits for its own render");
        *by_cache.entry(cache.clone()).or_default() += 1;
    }

    // Each render is logged just after it is announced; then nothing may be left in the queues.
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster.render_log().await.len() < PAGES && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.until_settled(Duration::from_secs(30)).await;
    let log = cluster.render_log().await;

    // Every page rendered exactly once, and stored.
    let by_page = renders_by_page(&log);
    for path in &paths {
        assert_eq!(by_page.get(path.as_str()), Some(&1), "renders of {path}");
    }
    assert_eq!(log.len(), PAGES, "renders of other pages: {log:?}");
    assert!(
        log.iter()
            .all(|entry| entry.outcome == kiln_store::RenderLogOutcome::Stored),
        "{log:?}"
    );
    let loads = cluster.stack.demo.page_loads();
    assert!(loads >= PAGES as u64, "the origin saw {loads} page loads");

    // Each worker took a share. An even split is 12 each; a worker with half of that (one sixth of
    // the pages) or less did not take its turn, which is what this guards against (one worker
    // grabbing the queue while others stand idle).
    let by_worker = renders_by_worker(&log);
    eprintln!(
        "FIGURES {PAGES} distinct pages asked at once by bots through the edge (2 gateways, 3 workers × 1 browser × 2 tabs): answers {by_cache:?}, all answered in {} ms; renders by worker {by_worker:?}; {loads} page loads at the origin",
        took.as_millis()
    );
    assert_eq!(
        by_worker.keys().map(String::as_str).collect::<Vec<_>>(),
        WORKERS,
        "every render names its worker, and every worker rendered: {by_worker:?}"
    );
    for (worker, renders) in &by_worker {
        assert!(
            *renders >= PAGES / 6,
            "{worker} rendered {renders} of {PAGES} pages: {by_worker:?}"
        );
    }
}

/// Bots asking through the edge for a new page every `every`, each request on its own (none waits
/// for the one before), with at most `waiting` of them waiting for their answers at once (the next
/// asks when one is answered), until [`Stream::finish`].
struct Stream {
    stop: Arc<AtomicBool>,
    asked: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<Vec<(String, Result<String, String>)>>,
}

impl Stream {
    fn start(cluster: &TestCluster, every: Duration, waiting: usize, wait: Duration) -> Stream {
        let stop = Arc::new(AtomicBool::new(false));
        let asked = Arc::new(Mutex::new(Vec::new()));
        let (client, edge) = (cluster.stack.client.clone(), cluster.edge_url());
        let task = tokio::spawn({
            let (stop, asked) = (stop.clone(), asked.clone());
            async move {
                let mut requests = Vec::new();
                let places = Arc::new(tokio::sync::Semaphore::new(waiting));
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                for n in 0.. {
                    tick.tick().await;
                    let place = places.clone().acquire_owned().await.expect("never closed");
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let path = page("stream", n);
                    asked.lock().unwrap().push(path.clone());
                    let (client, edge) = (client.clone(), edge.clone());
                    requests.push(tokio::spawn(async move {
                        let answer = ask_within(&client, &edge, &path, true, wait).await;
                        drop(place);
                        (path, answer)
                    }));
                }
                let answers = futures::future::join_all(requests).await;
                answers
                    .into_iter()
                    .map(|answer| answer.expect("a bot panicked"))
                    .collect()
            }
        });
        Stream { stop, asked, task }
    }

    /// The pages asked for so far.
    fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }

    /// Stops asking and returns every page asked for with its answer.
    async fn finish(self) -> Vec<(String, Result<String, String>)> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the stream panicked")
    }
}

/// The first worker other than those in `besides` seen with a render in flight (30 s at most).
async fn a_worker_rendering(cluster: &TestCluster, besides: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let in_flight = cluster.renders_in_flight().await;
        if let Some((worker, _)) = in_flight
            .iter()
            .find(|(worker, jobs)| **jobs > 0 && !besides.contains(&worker.as_str()))
        {
            return worker.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no worker besides {besides:?} took a render: {in_flight:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stopped_and_another_killed_mid_render_lose_no_page_and_the_last_takes_over() {
    // Bots wait up to 20 s for a render. The pages a killed worker held are rendered again only
    // once its heartbeats have lapsed (15 s): their bots get the render if it comes within their
    // budget, else the origin's page (BYPASS).
    let budget = Duration::from_secs(20);
    let mut cluster = TestCluster::start_with(
        DomainSettings {
            bot_wait_ms: budget.as_millis() as u64,
            ..one_render_per_url()
        },
        &WORKERS,
    )
    .await;
    // A new page every 400 ms, but never more than four bots waiting at once. One worker's two
    // tabs render fewer than 2.5 pages a second on a loaded machine (about one a second with six
    // CPU hogs beside this test), so an open stream left the last worker a backlog growing without
    // end: the pages asked after the kill waited behind all of it (the queue is first in, first
    // out), past the deadline below; and a job that waited longer than its render lock lives (a
    // bot's budget, two renders and 5 s: 45 s) was queued again by the next bot for its page, and
    // the page rendered twice. Four waiting bots are two rounds of the last worker's tabs.
    let stream = Stream::start(
        &cluster,
        Duration::from_millis(400),
        4,
        budget + Duration::from_secs(10),
    );

    // One worker is stopped as an orchestrator stops it, while it renders: it finishes what it
    // started, hands back what it took but had not started, and exits 0.
    let stopped = a_worker_rendering(&cluster, &[]).await;
    let worker = cluster.worker_named(&stopped);
    worker.signal("TERM", false);
    let stopping = Instant::now();
    let code = worker.exit_code(Duration::from_secs(60));
    let stop_took = stopping.elapsed();
    let stopped_at = kiln_core::unix_millis_now();
    assert_eq!(code, Some(0), "{stopped} exited with {code:?}");
    let left = cluster.renders_in_flight().await;
    assert!(
        !left.contains_key(&stopped),
        "{stopped} left jobs in flight: {left:?}"
    );

    // Another is killed with its browser while it renders: what it held stays in its in-flight set
    // until its heartbeats lapse, then the last worker is handed it.
    let killed = a_worker_rendering(&cluster, &[&stopped]).await;
    let worker = cluster.worker_named(&killed);
    worker.signal("KILL", true);
    let kill = Instant::now();
    let killed_at = kiln_core::unix_millis_now();
    assert_eq!(worker.exit_code(Duration::from_secs(10)), None, "killed");
    let orphaned = cluster
        .renders_in_flight()
        .await
        .get(&killed)
        .copied()
        .unwrap_or(0);
    assert!(
        orphaned >= 1,
        "{killed} was killed with no render in flight"
    );
    let survivor = WORKERS
        .into_iter()
        .find(|worker| *worker != stopped && *worker != killed)
        .unwrap();
    // What was asked and rendered when the two were gone: every render logged after this was the
    // survivor's.
    let asked_at_kill: Vec<String> = stream.asked();
    let log_at_kill = cluster.render_log().await;
    let logged_at_kill = log_at_kill.len();
    let rendered_at_kill = renders_by_page(&log_at_kill);
    let open_at_kill: BTreeSet<String> = asked_at_kill
        .iter()
        .filter(|path| !rendered_at_kill.contains_key(path.as_str()))
        .cloned()
        .collect();

    // The stream goes on until the survivor has rendered a few pages asked for after the kill.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = cluster.render_log().await;
        let new_pages = log[logged_at_kill.min(log.len())..]
            .iter()
            .filter(|entry| !asked_at_kill.iter().any(|p| p == path_of(&entry.url)))
            .count();
        if new_pages >= 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{survivor} rendered no new page after the others left: renders since ({} asked before): {:?}; the queue: {:?}",
            asked_at_kill.len(),
            log[logged_at_kill.min(log.len())..]
                .iter()
                .map(|entry| (
                    path_of(&entry.url),
                    entry.worker.as_deref(),
                    entry.duration_ms
                ))
                .collect::<Vec<_>>(),
            cluster.render_queue().await,
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let answers = stream.finish().await;

    // Every bot got a page: its render (MISS), or the origin's within its budget (BYPASS).
    let mut by_cache = BTreeMap::<String, usize>::new();
    for (path, answer) in &answers {
        let cache = answer
            .as_ref()
            .unwrap_or_else(|e| panic!("a bot got no page: {e}"));
        assert!(
            ["MISS", "HIT", "BYPASS"].contains(&cache.as_str()),
            "{path}: {cache}"
        );
        *by_cache.entry(cache.clone()).or_default() += 1;
    }
    // Every page asked for ends up in the cache, the killed worker's too once they are handed over.
    for (path, _) in &answers {
        cluster.until_cached(path).await;
    }
    let all_cached = kill.elapsed();
    cluster.until_settled(Duration::from_secs(30)).await;

    // No page was lost and none rendered twice. A page whose render the killed worker had logged
    // was done; one it had in flight is rendered again by the survivor, which logs it — unless the
    // killed worker had stored it before it died (between storing and logging), in which case the
    // survivor finds it fresh and does not render it: no entry at all, and the page cached. So
    // every page has at most one entry, and only pages open at the kill, no more of them than the
    // killed worker held, may have none.
    let log = cluster.render_log().await;
    let by_page = renders_by_page(&log);
    let mut unlogged = Vec::new();
    for (path, _) in &answers {
        match by_page.get(path.as_str()).copied().unwrap_or(0) {
            1 => {}
            0 if open_at_kill.contains(path) => unlogged.push(path),
            renders => panic!("{path} was rendered {renders} times: {log:?}"),
        }
    }
    assert!(
        unlogged.len() as u64 <= orphaned,
        "pages never logged: {unlogged:?}, {orphaned} held by {killed}"
    );
    assert_eq!(log.len(), answers.len() - unlogged.len(), "{log:?}");
    // The departed did nothing once gone, and the survivor did everything after.
    for entry in &log {
        let worker = entry.worker.as_deref().unwrap_or("?");
        if worker == stopped {
            assert!(entry.at <= stopped_at, "{stopped} rendered after it exited");
        } else if worker == killed {
            assert!(
                entry.at <= killed_at,
                "{killed} rendered after it was killed"
            );
        } else {
            assert_eq!(worker, survivor, "{entry:?}");
        }
    }
    assert!(
        log[logged_at_kill..]
            .iter()
            .all(|entry| entry.worker.as_deref() == Some(survivor)),
        "{log:?}"
    );

    let by_worker = renders_by_worker(&log);
    eprintln!(
        "FIGURES a steady stream of {} distinct pages (one per 400 ms, at most 4 bots waiting) through 2 gateways to 3 workers; {stopped} stopped (SIGTERM) mid-render in {} ms, {killed} killed (kill -9) with {orphaned} render(s) in flight; bots got {by_cache:?}; renders by worker {by_worker:?} ({} page(s) stored by {killed} before it died, unlogged); every page cached {} ms after the kill",
        answers.len(),
        stop_took.as_millis(),
        unlogged.len(),
        all_cached.as_millis(),
    );
    assert!(
        by_worker.get(survivor).copied().unwrap_or(0) > 3,
        "{by_worker:?}"
    );

    // The survivor stops cleanly on SIGTERM.
    let worker = cluster.worker_named(survivor);
    worker.signal("TERM", false);
    assert_eq!(worker.exit_code(Duration::from_secs(60)), Some(0));
}
