//! The platform as it is deployed at scale, each service a process of its own ([`TestCluster`]:
//! gateway processes behind the nginx edge, worker processes, one Redis), and what tests of faults
//! and of scaling out do with it: ask for pages as a bot, stop (SIGTERM) or kill (`kill -9`) a
//! service, and read the queue and the render log.

use super::{CHROME, DEMO_HOST, GOOGLEBOT, TestStack, cache_status, wait_until_ready};
use kiln_core::DomainSettings;
use kiln_queue::{QueueKind, QueueSettings, RenderQueue};
use kiln_store::RenderLogEntry;
use reqwest::StatusCode;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

// ---- asking for pages ----------------------------------------------------------------------------

/// One GET of `path` on the demo domain through the edge at `edge`: the answer's `X-Kiln-Cache`,
/// or what went wrong. A page is answered when it comes whole within 30 s with a 2xx, a 3xx or the
/// origin's own 404; anything else (a 5xx, a 421, a connection error, a cut body) is a failure.
pub async fn ask(
    client: &reqwest::Client,
    edge: &str,
    path: &str,
    bot: bool,
) -> Result<String, String> {
    ask_within(client, edge, path, bot, Duration::from_secs(30)).await
}

/// [`ask`], with the answer due within `timeout` (a bot waiting long for a render).
pub async fn ask_within(
    client: &reqwest::Client,
    edge: &str,
    path: &str,
    bot: bool,
    timeout: Duration,
) -> Result<String, String> {
    let response = client
        .get(format!("{edge}{path}"))
        .header("host", DEMO_HOST)
        .header("user-agent", if bot { GOOGLEBOT } else { CHROME })
        .timeout(timeout)
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

/// The first answer to a bot's request for `path` through the edge at `edge` whose `X-Kiln-Cache`
/// satisfies `wanted`, and how long it took to come; panics after `timeout`.
pub async fn until_bot_gets(
    client: &reqwest::Client,
    edge: &str,
    path: &str,
    timeout: Duration,
    wanted: impl Fn(&str) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        if let Ok(cache) = ask(client, edge, path, true).await
            && wanted(&cache)
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

/// One render per URL, and no per-address limit: the tests' bots all come from 127.0.0.1.
pub fn one_render_per_url() -> DomainSettings {
    DomainSettings {
        device_variants: false,
        bot_rate_per_second: 0,
        ..DomainSettings::default()
    }
}

/// The path and query of a render-log URL (`http://demo.localhost/products/2?n=1` →
/// `/products/2?n=1`), as the tests ask for it.
pub fn path_of(url: &str) -> &str {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    after_scheme
        .find('/')
        .map_or("/", |slash| &after_scheme[slash..])
}

// ---- service processes ---------------------------------------------------------------------------

/// A gateway or worker running as a process of its own (this package's copies of `kiln-gateway`
/// and `kiln-worker`, built with the tests), killed when dropped.
pub struct TestService {
    pub name: String,
    child: Child,
}

impl TestService {
    pub fn start(program: &str, name: &str, vars: &HashMap<&'static str, String>) -> TestService {
        let child = Command::new(program)
            .envs(vars)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or("warn".into()),
            )
            .stdin(Stdio::null())
            // Services log to stdout: shown with a failing test's output.
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            // Its own process group, so that a kill can take its browsers along.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({program}): {e}"));
        TestService {
            name: name.to_owned(),
            child,
        }
    }

    pub fn start_gateway(
        name: &str,
        vars: &HashMap<&'static str, String>,
        port: u16,
    ) -> TestService {
        let mut vars = vars.clone();
        vars.insert("KILN_GATEWAY_LISTEN", format!("127.0.0.1:{port}"));
        let service = TestService::start(env!("CARGO_BIN_EXE_e2e-gateway"), name, &vars);
        kiln_testkit::wait_for_port(port, Duration::from_secs(30));
        service
    }

    /// Sends `signal` (`TERM`, `KILL`) to the process, or with `group` to its whole process group.
    pub fn signal(&self, signal: &str, group: bool) {
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
    pub fn exit_code(&mut self, timeout: Duration) -> Option<i32> {
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

impl Drop for TestService {
    /// Stops the process as an orchestrator would (SIGTERM: a worker closes its browsers, which
    /// run in process groups of their own), and kills its group if it is still there after 10 s.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-TERM", "--", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            // (The group may be gone already: nothing to say then.)
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.child.id())])
                .stderr(Stdio::null())
                .status();
            let _ = self.child.wait();
        }
    }
}

// ---- the cluster ---------------------------------------------------------------------------------

/// The platform as it is deployed at scale, each service a process of its own: two gateways behind
/// the edge and a few workers (one browser, two tabs each), sharing one Redis, in front of the demo
/// origin. (The [`TestStack`] underneath provides Redis, the origin and the published domain; its
/// in-process gateway is not behind this edge.)
pub struct TestCluster {
    pub stack: TestStack,
    pub edge: kiln_testkit::TestEdge,
    pub gateways: Vec<(TestService, u16)>,
    pub workers: Vec<TestService>,
    /// The workers' browser profiles, shared as on one host.
    profiles: TempDir,
    queue: RenderQueue,
}

impl TestCluster {
    /// Two gateways and two workers (`worker-a`, `worker-b`).
    pub async fn start(settings: DomainSettings) -> TestCluster {
        TestCluster::start_with(settings, &["worker-a", "worker-b"]).await
    }

    /// Two gateways and one worker per name in `workers`, each ready (its browser up) before the
    /// cluster is returned.
    pub async fn start_with(settings: DomainSettings, workers: &[&str]) -> TestCluster {
        let stack = TestStack::start_without_worker(settings).await;
        let queue = RenderQueue::connect(&QueueSettings::new(
            stack.redis.url(),
            stack.vars["KILN_REDIS_PREFIX"].clone(),
            Duration::from_secs(2),
        ))
        .await
        .expect("the queue");
        let ports = [kiln_testkit::free_port(), kiln_testkit::free_port()];
        let gateways = ports
            .iter()
            .enumerate()
            .map(|(i, port)| {
                let name = format!("gateway {i}");
                (TestService::start_gateway(&name, &stack.vars, *port), *port)
            })
            .collect();
        let addresses: Vec<SocketAddr> = ports
            .iter()
            .map(|port| SocketAddr::from(([127, 0, 0, 1], *port)))
            .collect();
        let edge = kiln_testkit::TestEdge::start_with(&addresses);
        let mut cluster = TestCluster {
            stack,
            edge,
            gateways,
            workers: Vec::new(),
            profiles: tempfile::tempdir().expect("a profile directory"),
            queue,
        };
        // One after another, as the fault tests always started them: workers starting at the same
        // moment on one profile directory each sweep it for a dead worker's browsers while the
        // others create theirs.
        for name in workers {
            let worker = cluster.worker(name).await;
            cluster.workers.push(worker);
        }
        cluster
    }

    /// A worker process named `name` (its queue consumers' names start with it), once ready.
    pub async fn worker(&self, name: &str) -> TestService {
        let admin = kiln_testkit::free_port();
        let mut vars = self.stack.vars.clone();
        vars.insert("KILN_WORKER_NAME", name.to_owned());
        vars.insert("KILN_WORKER_ADMIN_LISTEN", format!("127.0.0.1:{admin}"));
        vars.insert(
            "KILN_WORKER_PROFILE_DIR",
            self.profiles.path().display().to_string(),
        );
        let worker = TestService::start(env!("CARGO_BIN_EXE_e2e-worker"), name, &vars);
        wait_until_ready(&self.stack.client, admin).await;
        worker
    }

    /// The worker process named `name`.
    pub fn worker_named(&mut self, name: &str) -> &mut TestService {
        self.workers
            .iter_mut()
            .find(|worker| worker.name == name)
            .unwrap_or_else(|| panic!("{name} is not one of the cluster's workers"))
    }

    pub fn edge_url(&self) -> String {
        self.edge.url("")
    }

    /// Waits until a bot gets `path` from the cache.
    pub async fn until_cached(&self, path: &str) -> Duration {
        until_bot_gets(
            &self.stack.client,
            &self.edge_url(),
            path,
            Duration::from_secs(60),
            |c| c == "HIT",
        )
        .await
    }

    /// How much work the render queue holds.
    pub async fn render_queue(&self) -> kiln_queue::QueueDepth {
        self.queue
            .depth(QueueKind::Render)
            .await
            .expect("queue depth")
    }

    /// The render queue's jobs in flight, by worker (consumer names start with the worker's name).
    pub async fn renders_in_flight(&self) -> BTreeMap<String, u64> {
        let mut by_worker = BTreeMap::new();
        for (consumer, jobs) in self.render_queue().await.in_flight {
            let worker = consumer.split('.').next().unwrap_or(&consumer).to_owned();
            *by_worker.entry(worker).or_default() += jobs;
        }
        by_worker
    }

    /// Waits until neither queue holds an unfinished job: nothing stuck.
    pub async fn until_settled(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            // (A read may fail once after a Redis restart, while the connection is made again.)
            let depths = futures::future::try_join_all(
                [QueueKind::Render, QueueKind::Warm].map(|kind| self.queue.depth(kind)),
            )
            .await;
            if let Ok(depths) = &depths
                && depths.iter().all(|depth| depth.unfinished() == 0)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "jobs still unfinished after {timeout:?}: {depths:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every render logged so far, oldest first.
    pub async fn render_log(&self) -> Vec<RenderLogEntry> {
        self.stack
            .store
            .render_log()
            .read("0", 10_000)
            .await
            .expect("the render log")
            .into_iter()
            .map(|(_, entry)| entry)
            .collect()
    }

    /// How many times `path` was rendered (the render log's entries for it).
    pub async fn renders_of(&self, path: &str) -> usize {
        self.render_log()
            .await
            .iter()
            .filter(|entry| path_of(&entry.url) == path)
            .count()
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        // The workers close their browsers as they stop; a worker killed by a test could not, and
        // its browsers (in process groups of their own) are found by their profile directories.
        self.workers.clear();
        let _ = Command::new("pkill")
            .args(["-KILL", "-f", &self.profiles.path().display().to_string()])
            .status();
    }
}
