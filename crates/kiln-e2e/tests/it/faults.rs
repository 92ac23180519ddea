//! Faults under a steady load of people and bots through the nginx edge, on the platform as it is
//! deployed at scale ([`TestCluster`], in `helpers/cluster.rs`: two gateway processes behind the
//! edge, two worker processes, one Redis): Redis going away and coming back empty, a worker killed
//! (`kill -9`) mid-render, and a rolling restart (SIGTERM) of every gateway and every worker.
//!
//! Each test prints its figures (`cargo nextest run -p kiln-e2e faults --no-capture` shows them);
//! the closing note of the issue quotes them. Everything runs on loopback and stops by itself.

use crate::helpers::*;
use kiln_core::DomainSettings;
use reqwest::StatusCode;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The pages the load asks for: bots get them rendered (or the origin's, while rendering is out),
/// people get the origin's app shell.
const PATHS: &[&str] = &[
    "/",
    "/products/1",
    "/products/2",
    "/products/3",
    "/products/4",
];

// ---- load ----------------------------------------------------------------------------------------

/// What a load saw.
#[derive(Debug, Default)]
struct Tally {
    people: usize,
    people_failed: Vec<String>,
    /// Bots' answers by `X-Kiln-Cache` (`-` when there was none), with how long each took.
    bots: BTreeMap<String, Vec<Duration>>,
    bots_failed: Vec<String>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.people += other.people;
        self.people_failed.extend(other.people_failed);
        for (cache, times) in other.bots {
            self.bots.entry(cache).or_default().extend(times);
        }
        self.bots_failed.extend(other.bots_failed);
    }

    fn bots_answered(&self) -> usize {
        self.bots.values().map(Vec::len).sum()
    }

    /// How many bots got `cache`.
    fn bots_got(&self, cache: &str) -> usize {
        self.bots.get(cache).map_or(0, Vec::len)
    }

    fn summary(&self) -> String {
        let answers: Vec<String> = self
            .bots
            .iter()
            .map(|(cache, times)| {
                let mut times = times.clone();
                times.sort();
                format!(
                    "{cache} {} (median {} ms, max {} ms)",
                    times.len(),
                    times[times.len() / 2].as_millis(),
                    times[times.len() - 1].as_millis()
                )
            })
            .collect();
        format!(
            "people: {} answered, {} failed; bots: {} answered [{}], {} failed",
            self.people,
            self.people_failed.len(),
            self.bots_answered(),
            answers.join(", "),
            self.bots_failed.len()
        )
    }
}

/// People and bots asking for [`PATHS`] in turn through an edge, each client one request at a time
/// with a short pause, until [`Load::finish`].
struct Load {
    stop: Arc<AtomicBool>,
    clients: Vec<tokio::task::JoinHandle<Tally>>,
}

impl Load {
    fn start(client: &reqwest::Client, edge: String, people: usize, bots: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let clients = (0..people + bots)
            .map(|i| {
                let bot = i >= people;
                let (client, edge, stop) = (client.clone(), edge.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut tally = Tally::default();
                    let mut turn = i;
                    while !stop.load(Ordering::Relaxed) {
                        let path = PATHS[turn % PATHS.len()];
                        turn += 1;
                        let asked = Instant::now();
                        let answer = ask(&client, &edge, path, bot).await;
                        match (bot, answer) {
                            (false, Ok(_)) => tally.people += 1,
                            (false, Err(error)) => tally.people_failed.push(error),
                            (true, Ok(cache)) => {
                                tally.bots.entry(cache).or_default().push(asked.elapsed())
                            }
                            (true, Err(error)) => tally.bots_failed.push(error),
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    tally
                })
            })
            .collect();
        Load { stop, clients }
    }

    async fn finish(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        let mut tally = Tally::default();
        for client in self.clients {
            tally.merge(client.await.expect("a load client panicked"));
        }
        tally
    }
}

/// What only the fault tests do with a cluster.
impl TestCluster {
    fn load(&self, people: usize, bots: usize) -> Load {
        Load::start(&self.stack.client, self.edge_url(), people, bots)
    }

    /// Every page the load asks for, cached.
    async fn warm(&self) {
        for path in PATHS {
            self.until_cached(path).await;
        }
    }
}

// ---- the faults ----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_going_away_and_coming_back_empty_costs_people_nothing_and_bots_get_the_origin() {
    let mut cluster = TestCluster::start(one_render_per_url()).await;
    cluster.warm().await;

    let load = cluster.load(4, 4);
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.stack.redis.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Back, but empty (no persistence): no pages, no queue, no domains in Redis.
    cluster.stack.redis.restart();
    let back = Instant::now();
    // Recovered: a page never rendered before is rendered for a waiting bot ...
    let recovered = until_bot_gets(
        &cluster.stack.client,
        &cluster.edge_url(),
        "/products/6",
        Duration::from_secs(60),
        |c| c == "MISS" || c == "HIT",
    )
    .await;
    // ... and every page the load asks for is in the cache again.
    cluster.warm().await;
    let all_cached = back.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let tally = load.finish().await;
    cluster.until_settled(Duration::from_secs(30)).await;

    eprintln!(
        "FIGURES redis down 3 s and back empty, 2 gateways and 2 workers: {}; a waiting bot's page rendered again {} ms after Redis returned, every page cached again after {} ms",
        tally.summary(),
        recovered.as_millis(),
        all_cached.as_millis(),
    );
    assert!(tally.people_failed.is_empty(), "{:?}", tally.people_failed);
    assert!(tally.bots_failed.is_empty(), "{:?}", tally.bots_failed);
    assert!(tally.people > 100, "{}", tally.summary());
    assert!(
        tally.bots_got("BYPASS") > 0,
        "bots got the origin's pages while Redis was away: {}",
        tally.summary()
    );
    assert!(tally.bots_got("HIT") > 0, "{}", tally.summary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_render_leaves_no_bot_unanswered_and_its_job_is_done_by_another() {
    // Bots wait 5 s for a render here.
    let budget = Duration::from_millis(5_000);
    let mut cluster = TestCluster::start(DomainSettings {
        bot_wait_ms: budget.as_millis() as u64,
        ..one_render_per_url()
    })
    .await;
    cluster.warm().await;
    let load = cluster.load(4, 4);

    // A bot asks for a page nobody has asked for; whichever worker takes its render dies mid-way,
    // with its browser.
    let path = "/products/5";
    let asked = Instant::now();
    let bot = tokio::spawn(
        cluster
            .stack
            .client
            .get(cluster.edge.url(path))
            .header("host", DEMO_HOST)
            .header("user-agent", GOOGLEBOT)
            .send(),
    );
    let holder = loop {
        if let Some(worker) = cluster.renders_in_flight().await.into_keys().next() {
            break worker;
        }
        assert!(
            asked.elapsed() < Duration::from_secs(10),
            "no worker took the render"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let victim = cluster.worker_named(&holder);
    victim.signal("KILL", true);
    let killed = Instant::now();
    assert_eq!(victim.exit_code(Duration::from_secs(10)), None, "killed");

    // The bot was answered within its wait budget, with the origin's page.
    let response = bot.await.unwrap().expect("the bot's request failed");
    let answered = asked.elapsed();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(cache_status(&response), "BYPASS");
    assert!(
        answered < budget + Duration::from_secs(2),
        "the bot waited {answered:?}"
    );

    // The other worker takes the job over once the dead one's heartbeats stop, and stores it.
    cluster.until_cached(path).await;
    let taken_over = killed.elapsed();
    let tally = load.finish().await;
    cluster.until_settled(Duration::from_secs(30)).await;
    // The dead worker logged nothing; the render log holds the job's one run on the other.
    let renders = cluster.renders_of(path).await;
    eprintln!(
        "FIGURES {holder} killed mid-render, 2 gateways and 2 workers under load: {}; the waiting bot answered (BYPASS) in {} ms; the page in the cache {} ms after the kill, by {renders} render(s) on the other worker",
        tally.summary(),
        answered.as_millis(),
        taken_over.as_millis(),
    );
    assert_eq!(
        renders, 1,
        "the job was rendered {renders} times after the kill"
    );
    assert!(tally.people_failed.is_empty(), "{:?}", tally.people_failed);
    assert!(tally.bots_failed.is_empty(), "{:?}", tally.bots_failed);

    // The survivor stops cleanly on SIGTERM.
    let survivor = cluster
        .workers
        .iter_mut()
        .find(|worker| worker.name != holder)
        .unwrap();
    survivor.signal("TERM", false);
    assert_eq!(survivor.exit_code(Duration::from_secs(60)), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_every_gateway_and_worker_under_load_fails_no_request() {
    let mut cluster = TestCluster::start(one_render_per_url()).await;
    cluster.warm().await;
    let load = cluster.load(4, 4);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The gateways, one at a time, as an orchestrator rolls a deployment: each finishes what it has
    // in flight and exits 0, and its replacement starts on the same port; meanwhile the edge sends
    // new requests to the other.
    let mut gateway_stops = Vec::new();
    for i in 0..cluster.gateways.len() {
        let (gateway, port) = &mut cluster.gateways[i];
        gateway.signal("TERM", false);
        let stopping = Instant::now();
        let code = gateway.exit_code(Duration::from_secs(60));
        gateway_stops.push(stopping.elapsed());
        assert_eq!(code, Some(0), "{} exited with {code:?}", gateway.name);
        *gateway = TestService::start_gateway(
            &format!("gateway {i}, replaced"),
            &cluster.stack.vars,
            *port,
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    // Then the workers, each stopped while it renders a page a bot is waiting for: it finishes the
    // render, hands back nothing unfinished, and exits 0.
    let mut worker_stops = Vec::new();
    let mut cold_pages = Vec::new();
    for i in 0..cluster.workers.len() {
        let name = cluster.workers[i].name.clone();
        let asking = Instant::now();
        while !cluster.renders_in_flight().await.contains_key(&name) {
            assert!(
                asking.elapsed() < Duration::from_secs(30),
                "{name} never took a render"
            );
            let path = format!("/products/2?variant={}", cold_pages.len());
            let request = cluster
                .stack
                .client
                .get(cluster.edge.url(&path))
                .header("host", DEMO_HOST)
                .header("user-agent", GOOGLEBOT)
                .send();
            cold_pages.push((path, tokio::spawn(request)));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let worker = &mut cluster.workers[i];
        worker.signal("TERM", false);
        let stopping = Instant::now();
        let code = worker.exit_code(Duration::from_secs(60));
        worker_stops.push(stopping.elapsed());
        assert_eq!(code, Some(0), "{name} exited with {code:?}");
        let left = cluster.renders_in_flight().await;
        assert!(
            !left.contains_key(&name),
            "{name} left jobs in flight: {left:?}"
        );
        cluster.workers[i] = cluster.worker(&format!("{name}-replaced")).await;
    }

    let mut cold_answers = BTreeMap::<String, usize>::new();
    for (path, request) in &mut cold_pages {
        let response = request
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        *cold_answers.entry(cache_status(&response)).or_default() += 1;
    }
    let tally = load.finish().await;
    cluster.until_settled(Duration::from_secs(30)).await;
    // Every page asked for was rendered once, by whichever worker took it: none was lost with a
    // stopping worker, none ran twice.
    for (path, _) in &cold_pages {
        cluster.until_cached(path).await;
        assert_eq!(cluster.renders_of(path).await, 1, "{path}");
    }

    eprintln!(
        "FIGURES rolling restart of 2 gateways, then 2 workers, under load: {}; gateways stopped in {gateway_stops:?}, workers (each with a render in flight) in {worker_stops:?}; the {} bots asking for new pages meanwhile got {cold_answers:?}",
        tally.summary(),
        cold_pages.len(),
    );
    assert!(tally.people_failed.is_empty(), "{:?}", tally.people_failed);
    assert!(tally.bots_failed.is_empty(), "{:?}", tally.bots_failed);
    assert!(
        tally.people > 100 && tally.bots_answered() > 100,
        "{}",
        tally.summary()
    );
}
