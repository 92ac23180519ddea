//! Faults under a steady load of people and bots through the nginx edge, with real processes: Redis
//! going away and coming back empty, a worker killed (`kill -9`) mid-render, and a rolling restart
//! (SIGTERM) of every gateway behind the edge.
//!
//! Each test prints its figures (`cargo nextest run -p kiln-e2e faults --no-capture` shows them);
//! the closing note of the issue quotes them. Everything runs on loopback and stops by itself.

use crate::helpers::*;
use kiln_core::DomainSettings;
use reqwest::StatusCode;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
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
    /// Bots' answers by `X-Kiln-Cache` (`-` when there was none).
    bots: BTreeMap<String, usize>,
    bots_failed: Vec<String>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.people += other.people;
        self.people_failed.extend(other.people_failed);
        for (cache, count) in other.bots {
            *self.bots.entry(cache).or_default() += count;
        }
        self.bots_failed.extend(other.bots_failed);
    }

    fn bots_answered(&self) -> usize {
        self.bots.values().sum()
    }

    fn summary(&self) -> String {
        format!(
            "people: {} answered, {} failed; bots: {} answered {:?}, {} failed",
            self.people,
            self.people_failed.len(),
            self.bots_answered(),
            self.bots,
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
                        let answer = ask(&client, &edge, path, bot).await;
                        match (bot, answer) {
                            (false, Ok(_)) => tally.people += 1,
                            (false, Err(error)) => tally.people_failed.push(error),
                            (true, Ok(cache)) => *tally.bots.entry(cache).or_default() += 1,
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

/// One GET of `path` on the demo domain through the edge at `edge`: the answer's `X-Kiln-Cache`,
/// or what went wrong. A page is answered when it comes whole with a 2xx, a 3xx or the origin's own
/// 404; anything else (a 5xx, a 421, a connection error, a cut body) is a failure.
async fn ask(
    client: &reqwest::Client,
    edge: &str,
    path: &str,
    bot: bool,
) -> Result<String, String> {
    let response = client
        .get(format!("{edge}{path}"))
        .header("host", DEMO_HOST)
        .header("user-agent", if bot { GOOGLEBOT } else { CHROME })
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| format!("{path}: {e}"))?;
    let status = response.status();
    let cache = cache_status(&response);
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("{path}: the body was cut: {e}"))?;
    if status.is_success() || status.is_redirection() || status == StatusCode::NOT_FOUND {
        Ok(if cache.is_empty() { "-".into() } else { cache })
    } else {
        Err(format!(
            "{path}: {status} {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ))
    }
}

// ---- service processes ---------------------------------------------------------------------------

/// A gateway or worker running as a process of its own (this package's copies of `kiln-gateway`
/// and `kiln-worker`, built with the tests), killed when dropped.
struct Service {
    name: String,
    child: Child,
}

impl Service {
    fn start(program: &str, name: &str, vars: &HashMap<&'static str, String>) -> Service {
        let child = Command::new(program)
            .envs(vars)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or("warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            // Its own process group, so that a kill can take its browsers along.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({program}): {e}"));
        Service {
            name: name.to_owned(),
            child,
        }
    }

    fn gateway(name: &str, vars: &HashMap<&'static str, String>, port: u16) -> Service {
        let mut vars = vars.clone();
        vars.insert("KILN_GATEWAY_LISTEN", format!("127.0.0.1:{port}"));
        let service = Service::start(env!("CARGO_BIN_EXE_e2e-gateway"), name, &vars);
        kiln_testkit::wait_for_port(port, Duration::from_secs(30));
        service
    }

    /// Sends `signal` (`TERM`, `KILL`) to the process, or with `group` to its whole process group.
    fn signal(&self, signal: &str, group: bool) {
        let target = if group {
            format!("-{}", self.child.id())
        } else {
            self.child.id().to_string()
        };
        let status = Command::new("kill")
            .args([format!("-{signal}"), "--".into(), target])
            .status()
            .expect("kill");
        assert!(status.success(), "could not signal {}", self.name);
    }

    /// Waits for the process to exit (`timeout` at most) and returns its exit code.
    fn exit_code(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {timeout:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.child.id())])
                .status();
            let _ = self.child.wait();
        }
    }
}

/// The first answer to a bot's request for `path` whose `X-Kiln-Cache` satisfies `wanted`, and how
/// long it took to come; panics after `timeout`.
async fn until_bot_gets(
    stack: &Stack,
    path: &str,
    timeout: Duration,
    wanted: impl Fn(&str) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        if let Ok(response) = stack.get(path, GOOGLEBOT).send().await
            && wanted(&cache_status(&response))
        {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < timeout,
            "no wanted answer for {path} within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn one_render_per_url() -> DomainSettings {
    DomainSettings {
        device_variants: false,
        ..DomainSettings::default()
    }
}

// ---- the faults ----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_going_away_and_coming_back_empty_costs_people_nothing_and_bots_get_the_origin() {
    let mut stack = Stack::start(one_render_per_url()).await;
    until_bot_gets(&stack, "/products/1", Duration::from_secs(30), |c| {
        c == "HIT"
    })
    .await;

    let load = Load::start(&stack.client, stack.edge.url(""), 4, 4);
    tokio::time::sleep(Duration::from_secs(1)).await;
    stack.redis.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Back, but empty (no persistence): no pages, no queue, no domains in Redis.
    stack.redis.restart();
    let back = Instant::now();
    // Recovered: a page never rendered before is rendered for bots and then served from the cache.
    until_bot_gets(&stack, "/products/9", Duration::from_secs(60), |c| {
        c == "MISS" || c == "HIT"
    })
    .await;
    let recovered = back.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let tally = load.finish().await;

    eprintln!(
        "FIGURES redis down 3 s and back empty: {}; rendering again {} ms after Redis returned",
        tally.summary(),
        recovered.as_millis()
    );
    assert!(tally.people_failed.is_empty(), "{:?}", tally.people_failed);
    assert!(tally.bots_failed.is_empty(), "{:?}", tally.bots_failed);
    assert!(tally.people > 100, "{}", tally.summary());
    assert!(
        tally.bots.get("BYPASS").copied().unwrap_or(0) > 0,
        "bots got the origin's pages while Redis was away: {}",
        tally.summary()
    );
    assert!(
        tally.bots.get("HIT").copied().unwrap_or(0) > 0,
        "{}",
        tally.summary()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_render_leaves_no_bot_unanswered_and_its_job_is_done_by_another() {
    // Bots wait 5 s for a render here.
    let stack = Stack::start_without_worker(DomainSettings {
        bot_wait_ms: 5_000,
        ..one_render_per_url()
    })
    .await;
    let profiles = tempfile::tempdir().unwrap();
    // A worker process on the stack, its browser profiles in `profiles`, once it is ready.
    let start_worker = async |name: &str| {
        let admin = kiln_testkit::free_port();
        let mut vars = stack.vars.clone();
        vars.insert("KILN_WORKER_ADMIN_LISTEN", format!("127.0.0.1:{admin}"));
        vars.insert(
            "KILN_WORKER_PROFILE_DIR",
            profiles.path().display().to_string(),
        );
        let worker = Service::start(env!("CARGO_BIN_EXE_e2e-worker"), name, &vars);
        wait_until_ready(&stack.client, admin).await;
        worker
    };
    let mut first = start_worker("the first worker").await;

    // A bot asks for a page; once the origin has served the render its page, the worker dies.
    let path = "/products/5";
    let loads_before = stack.demo.page_loads();
    let asked = Instant::now();
    let bot = tokio::spawn(stack.get(path, GOOGLEBOT).send());
    let deadline = Instant::now() + Duration::from_secs(30);
    while stack.demo.page_loads() == loads_before {
        assert!(Instant::now() < deadline, "the render never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.signal("KILL", true);
    let killed = Instant::now();
    assert_eq!(first.exit_code(Duration::from_secs(10)), None, "killed");

    // Another worker comes up (reusing the profile directory, whose leftovers it clears).
    let mut second = start_worker("the second worker").await;

    // The bot was answered within its wait budget, with the origin's page.
    let response = bot.await.unwrap().expect("the bot's request failed");
    let answered = asked.elapsed();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(cache_status(&response), "BYPASS");
    let budget = Duration::from_millis(5_000);
    assert!(
        answered < budget + Duration::from_secs(2),
        "the bot waited {answered:?}"
    );

    // The job the dead worker held is taken over once its heartbeats stop, and stored.
    let retried = until_bot_gets(&stack, path, Duration::from_secs(90), |c| c == "HIT").await;
    let taken_over = killed.elapsed();
    // The dead worker logged nothing; the render log holds the job's run on the second.
    let renders = stack
        .store
        .read_render_log("0", 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|(_, entry)| entry.url.ends_with(path))
        .count();
    eprintln!(
        "FIGURES worker killed mid-render: the bot answered (BYPASS) in {} ms; the page in the cache {} ms after the kill, by {renders} render(s) on the second worker",
        answered.as_millis(),
        taken_over.as_millis(),
    );
    assert!(retried > Duration::ZERO);
    assert_eq!(
        renders, 1,
        "the job was rendered {renders} times after the kill"
    );

    // A SIGTERM stops the worker cleanly.
    second.signal("TERM", false);
    assert_eq!(second.exit_code(Duration::from_secs(60)), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_the_gateways_under_load_fails_no_request() {
    let stack = Stack::start(one_render_per_url()).await;
    let ports = [kiln_testkit::free_port(), kiln_testkit::free_port()];
    let mut gateways: Vec<Service> = ports
        .iter()
        .enumerate()
        .map(|(i, port)| Service::gateway(&format!("gateway {i}"), &stack.vars, *port))
        .collect();
    let addresses: Vec<SocketAddr> = ports
        .iter()
        .map(|port| SocketAddr::from(([127, 0, 0, 1], *port)))
        .collect();
    let edge = kiln_testkit::Edge::start_with(&addresses);

    let load = Load::start(&stack.client, edge.url(""), 4, 4);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut stops = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        // Stop one (it finishes what it has in flight and exits 0) and start its replacement on
        // the same port, as an orchestrator rolls a deployment; the edge sends new requests to
        // the other meanwhile.
        gateways[i].signal("TERM", false);
        let stopping = Instant::now();
        let code = gateways[i].exit_code(Duration::from_secs(60));
        stops.push(stopping.elapsed());
        assert_eq!(code, Some(0), "gateway {i} exited with {code:?}");
        gateways[i] = Service::gateway(&format!("gateway {i}, replaced"), &stack.vars, *port);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let tally = load.finish().await;

    eprintln!(
        "FIGURES rolling restart of 2 gateways under load: {}; each stopped in {:?}",
        tally.summary(),
        stops
    );
    assert!(tally.people_failed.is_empty(), "{:?}", tally.people_failed);
    assert!(tally.bots_failed.is_empty(), "{:?}", tally.bots_failed);
    assert!(
        tally.people > 100 && tally.bots_answered() > 100,
        "{}",
        tally.summary()
    );
}
