//! A worker with a private redis-server, a test origin and its own Chromium profile directory, driven
//! through the real path: jobs go through the queue, outcomes come back on the event channel.

use kiln_core::{CacheKey, DeviceClass, NormalizedUrl, RenderJob, RenderOutcome};
use kiln_queue::{QueueKind, RenderQueue};
use kiln_store::{PageEntry, RenderLogEntry, Store, StoreEvent, Subscription};
use kiln_worker::{Application, Settings};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use kiln_testkit::TestRedis;
use kiln_testkit::corpus::TestCorpusOrigin;

use crate::origin::TestOrigin;

/// How long one render may take through the whole path before a test gives up on it.
const RENDER_DEADLINE: Duration = Duration::from_secs(60);
const START_DEADLINE: Duration = Duration::from_secs(30);

fn init_logging() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("kiln_worker=debug,warn"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// A job in the queue, and the subscription that will hear of its outcome.
pub struct PendingRender {
    events: Subscription,
    key: CacheKey,
    started: Instant,
}

impl PendingRender {
    pub async fn outcome(mut self, store: &Store) -> Outcome {
        let page_key = self.key.page_key();
        let outcome = tokio::time::timeout(RENDER_DEADLINE, async {
            loop {
                match self.events.next().await {
                    Some(StoreEvent::Rendered {
                        page_key: k,
                        outcome,
                    }) if k == page_key => return outcome,
                    Some(_) => continue,
                    None => panic!("the event subscription closed"),
                }
            }
        })
        .await
        .expect("no announcement for the render");
        let elapsed = self.started.elapsed();
        let entry = store.pages().get(&self.key).await.unwrap();
        Outcome {
            outcome,
            entry,
            elapsed,
        }
    }
}

/// What became of one render job.
#[derive(Debug)]
pub struct Outcome {
    pub outcome: RenderOutcome,
    pub entry: Option<PageEntry>,
    /// From pushing the job to the announcement.
    pub elapsed: Duration,
}

impl Outcome {
    pub fn html(&self) -> String {
        let entry = self
            .entry
            .as_ref()
            .unwrap_or_else(|| panic!("nothing was stored: {:?}", self.outcome));
        String::from_utf8(entry.decoded().unwrap().to_vec()).unwrap()
    }

    pub fn status(&self) -> u16 {
        match self.outcome {
            RenderOutcome::Stored { status, .. } => {
                assert_eq!(
                    self.entry.as_ref().map(|e| e.meta.status),
                    Some(status),
                    "stored status differs from the announcement"
                );
                status
            }
            RenderOutcome::Failed { ref reason } => panic!("the render failed: {reason}"),
        }
    }

    pub fn failure(&self) -> &str {
        match &self.outcome {
            RenderOutcome::Failed { reason } => reason,
            RenderOutcome::Stored { status, .. } => {
                panic!("expected a failure, but a page with status {status} was stored")
            }
        }
    }
}

pub struct TestApp {
    pub store: Store,
    pub origin: TestOrigin,
    queue: RenderQueue,
    pub admin_port: u16,
    /// Deleted (with anything left in it) when the test ends.
    _profile_dir: tempfile::TempDir,
    /// Where the worker creates browser profiles: `profile_dir`, unless the test chose another.
    profile_root: PathBuf,
    http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    app: Option<JoinHandle<anyhow::Result<()>>>,
    /// Every Chromium process group seen during the test.
    groups: Mutex<BTreeSet<i32>>,
    /// Every Chromium main process seen during the test.
    mains: Mutex<BTreeSet<i32>>,
    /// Whether Chromium is expected to have run (it cannot with a bad `KILN_CHROME_PATH`).
    expect_browsers: bool,
    // Dropped last: the worker must be gone before its Redis.
    redis: TestRedis,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

pub async fn spawn_app_with(overrides: &[(&str, &str)]) -> TestApp {
    let app = spawn_unready_app(overrides).await;
    app.wait_until_ready().await;
    app
}

/// A worker that may never become ready (a test of what happens then).
pub async fn spawn_unready_app(overrides: &[(&str, &str)]) -> TestApp {
    init_logging();
    let redis = TestRedis::start();
    let origin = TestOrigin::start().await;
    let profile_dir = tempfile::Builder::new()
        .prefix("kiln-worker-test-")
        .tempdir()
        .unwrap();
    let mut vars: HashMap<String, String> = [
        ("KILN_REDIS_URL", redis.url()),
        (
            "KILN_REDIS_PREFIX",
            format!("test-{}:", uuid::Uuid::new_v4().simple()),
        ),
        ("KILN_WORKER_ADMIN_LISTEN", "127.0.0.1:0".to_owned()),
        (
            "KILN_WORKER_PROFILE_DIR",
            profile_dir.path().display().to_string(),
        ),
        ("KILN_WORKER_BROWSERS", "1".to_owned()),
        ("KILN_WORKER_TABS_PER_BROWSER", "2".to_owned()),
        // The test origin is on 127.0.0.1; everything else private stays refused.
        (
            "KILN_ALLOWED_PRIVATE_NETS",
            "127.0.0.1:1-65535@*".to_owned(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    // `{origin}` in an override stands for the test origin's `host:port`.
    let origin_authority = origin.base.trim_start_matches("http://").to_owned();
    for (name, value) in overrides {
        vars.insert(
            name.to_string(),
            value.replace("{origin}", &origin_authority),
        );
    }
    let settings = Settings::from_lookup(|name| Ok(vars.get(name).cloned())).unwrap();
    let store = Store::connect(settings.store_settings()).await.unwrap();
    let queue = RenderQueue::connect(&settings.queue_settings())
        .await
        .unwrap();

    let app = Application::build(settings).await.unwrap();
    let admin_port = app.admin_port();
    let (shutdown, stopped) = oneshot::channel::<()>();
    let app = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    let mut test_app = TestApp {
        store,
        origin,
        queue,
        admin_port,
        profile_root: overrides
            .iter()
            .find(|(name, _)| *name == "KILN_WORKER_PROFILE_DIR")
            .map(|(_, dir)| PathBuf::from(dir))
            .unwrap_or_else(|| profile_dir.path().to_owned()),
        _profile_dir: profile_dir,
        http: reqwest::Client::new(),
        shutdown: Some(shutdown),
        app: Some(app),
        groups: Mutex::default(),
        mains: Mutex::default(),
        expect_browsers: true,
        redis,
    };
    test_app.expect_browsers = !overrides
        .iter()
        .any(|(name, _)| *name == "KILN_CHROME_PATH");
    test_app
}

impl TestApp {
    /// The value of one sample of the worker's `/metrics` (name and labels exactly as written).
    pub async fn metric(&self, series: &str) -> f64 {
        let (status, text) = self.get_admin("/metrics").await;
        assert_eq!(status, 200, "{text}");
        kiln_testkit::metric_value(&text, series)
            .unwrap_or_else(|| panic!("no `{series}` in:\n{text}"))
    }

    pub async fn get_admin(&self, path: &str) -> (u16, String) {
        let response = self
            .http
            .get(format!("http://127.0.0.1:{}{path}", self.admin_port))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    pub async fn wait_until_ready(&self) {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            let (status, body) = self.get_admin("/readyz").await;
            if status == 200 {
                self.chromium_processes();
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the worker was not ready in time: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// A job for `render_url`, with a key of its own.
    pub fn job(&self, render_url: &str, device: DeviceClass) -> RenderJob {
        let path = url::Url::parse(render_url)
            .map(|u| u.path().to_owned())
            .unwrap_or_default();
        let page_url = NormalizedUrl::from_stored(format!("https://www.example.test{path}"));
        RenderJob {
            key: CacheKey::new(
                &format!("domain-{}", uuid::Uuid::new_v4().simple()),
                device,
                &page_url,
            ),
            tenant_id: "tenant-1".to_owned(),
            page_url,
            render_url: render_url.to_owned(),
            device,
            cache_ttl_secs: 300,
            stale_ttl_secs: 0,
            render_timeout_ms: 10_000,
            enqueued_at: 0,
            request_id: Some(format!("req-{}", uuid::Uuid::new_v4().simple())),
            blocking: Default::default(),
            purpose: Default::default(),
            user_agent: None,
            via: Default::default(),
        }
    }

    /// Renders a path of the test origin.
    pub async fn render(&self, path: &str, device: DeviceClass) -> Outcome {
        self.run(self.job(&self.origin.url(path), device)).await
    }

    /// The port of the worker's Redis.
    pub fn redis_port(&self) -> u16 {
        self.redis.port()
    }

    /// Pushes `job` through the queue and waits for its announcement.
    pub async fn run(&self, job: RenderJob) -> Outcome {
        let pending = self.start(job).await;
        let outcome = pending.outcome(&self.store).await;
        self.chromium_processes();
        outcome
    }

    /// Pushes `job` through the render queue, listening for its announcement.
    pub async fn start(&self, job: RenderJob) -> PendingRender {
        self.start_on(QueueKind::Render, job).await
    }

    /// Pushes `job` through the queue `kind`, listening for its announcement.
    pub async fn start_on(&self, kind: QueueKind, job: RenderJob) -> PendingRender {
        let events = self.store.events().subscribe().await.unwrap();
        let key = job.key.clone();
        let started = Instant::now();
        self.push(kind, job).await;
        PendingRender {
            events,
            key,
            started,
        }
    }

    /// Pushes `job` on the queue `kind`.
    pub async fn push(&self, kind: QueueKind, job: RenderJob) {
        // The queue's connection notices a Redis restart on its first command, which then fails.
        let mut attempts = 0;
        while let Err(error) = self.queue.push_to(kind, job.clone()).await {
            attempts += 1;
            assert!(attempts < 5, "could not push a job: {error}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The render log once it holds at least `count` entries (the worker logs a render just after
    /// its outcome is out).
    pub async fn render_log(&self, count: usize) -> Vec<RenderLogEntry> {
        let deadline = Instant::now() + RENDER_DEADLINE;
        loop {
            let entries: Vec<RenderLogEntry> = self
                .store
                .render_log()
                .read("0", 1000)
                .await
                .unwrap()
                .into_iter()
                .map(|(_, entry)| entry)
                .collect();
            if entries.len() >= count {
                return entries;
            }
            assert!(
                Instant::now() < deadline,
                "the render log has {} entries, not {count}: {entries:?}",
                entries.len()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Asks the worker to stop, as SIGTERM would.
    pub fn request_shutdown(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    /// How many commands Redis has processed since it started (`INFO stats`), asked through
    /// redis-cli so that the asking is not a client of the worker's.
    pub fn redis_commands_processed(&self) -> u64 {
        self.redis
            .cli(&["INFO", "stats"])
            .lines()
            .find_map(|line| line.strip_prefix("total_commands_processed:"))
            .and_then(|count| count.trim().parse().ok())
            .expect("INFO stats has total_commands_processed")
    }

    /// Kills the Redis server, as a crash would.
    pub fn stop_redis(&mut self) {
        self.redis.stop();
    }

    /// Starts the Redis server again on the same port, empty.
    pub fn restart_redis(&mut self) {
        self.redis.restart();
    }

    /// Pids of the live processes started with this test's profile directory, remembering their
    /// process groups and which of them are browser main processes.
    pub fn chromium_processes(&self) -> Vec<i32> {
        let root = self.profile_root.display().to_string();
        let mut pids = Vec::new();
        for (pid, cmdline) in processes() {
            // Chromium's own processes name the profile in `--user-data-dir`, Crashpad's handlers
            // in `--database`.
            if !cmdline.iter().any(|arg| arg.contains(&root)) {
                continue;
            }
            pids.push(pid);
            if let Some(stat) = stat(pid) {
                self.groups.lock().unwrap().insert(stat.pgrp);
            }
            let is_browser = cmdline
                .iter()
                .any(|arg| arg.starts_with("--user-data-dir="));
            if is_browser && !cmdline.iter().any(|arg| arg.starts_with("--type=")) {
                self.mains.lock().unwrap().insert(pid);
            }
        }
        pids
    }

    /// The browser main processes seen so far.
    pub fn mains_seen(&self) -> BTreeSet<i32> {
        self.mains.lock().unwrap().clone()
    }

    /// Stops the worker and checks that it left no Chromium behind: no live process with this test's
    /// profile directory, no process at all (zombies included) in any group Chromium used, and no
    /// profile directory.
    pub async fn shutdown(mut self) {
        self.chromium_processes();
        self.request_shutdown();
        tokio::time::timeout(Duration::from_secs(60), self.app.take().unwrap())
            .await
            .expect("the worker did not stop in time")
            .unwrap()
            .expect("the worker stopped with an error");
        self.assert_no_chromium_left();
    }

    /// No live process with this test's profile directory, no process at all (zombies included) in
    /// any group Chromium used, and no profile directory.
    pub fn assert_no_chromium_left(&self) {
        assert_eq!(
            self.chromium_processes(),
            Vec::<i32>::new(),
            "chromium processes outlived the worker"
        );
        let groups = self.groups.lock().unwrap().clone();
        // Without this, a profile marker that matched nothing would make every check below pass.
        assert_eq!(
            !groups.is_empty(),
            self.expect_browsers,
            "chromium processes seen: {groups:?}"
        );
        let leftovers: Vec<String> = processes()
            .filter_map(|(pid, _)| stat(pid).map(|stat| (pid, stat)))
            .filter(|(_, stat)| groups.contains(&stat.pgrp))
            .map(|(pid, stat)| {
                format!(
                    "{pid} ({}) state {} ppid {} pgrp {}",
                    stat.name, stat.state, stat.ppid, stat.pgrp
                )
            })
            .collect();
        assert_eq!(
            leftovers,
            Vec::<String>::new(),
            "processes left in chromium's process groups (this test is process {})",
            std::process::id()
        );
        assert_eq!(
            dir_entries(&self.profile_root),
            Vec::<PathBuf>::new(),
            "profile directories left behind"
        );
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // A test that failed before `shutdown` still stops its worker.
        if let Some(app) = self.app.take() {
            app.abort();
        }
    }
}

/// Every process's pid and command line.
fn processes() -> impl Iterator<Item = (i32, Vec<String>)> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let raw = std::fs::read(entry.path().join("cmdline")).ok()?;
            let args = raw
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            Some((pid, args))
        })
}

/// A process's state letter and process group.
struct Stat {
    name: String,
    state: char,
    ppid: i32,
    pgrp: i32,
}

fn stat(pid: i32) -> Option<Stat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (head, tail) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1.to_owned();
    let mut fields = tail.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(Stat {
        name,
        state,
        ppid,
        pgrp,
    })
}

fn dir_entries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

/// A worker with the render corpus's origin (on 127.0.0.1) and the "internal" server (on
/// 127.0.0.2, standing for everything private) that no render may reach. Each test module adds the
/// ways of rendering it needs.
pub struct TestCorpus {
    pub app: TestApp,
    pub origin: TestCorpusOrigin,
    pub internal: TestCorpusOrigin,
}

impl TestCorpus {
    pub async fn start(overrides: &[(&str, &str)]) -> TestCorpus {
        let app = spawn_app_with(overrides).await;
        let internal = TestCorpusOrigin::start_internal().await;
        let origin = TestCorpusOrigin::start(&internal).await;
        TestCorpus {
            app,
            origin,
            internal,
        }
    }

    /// Stops the worker, once sure that no render reached the internal server.
    pub async fn shutdown(self) {
        assert_eq!(
            self.internal.hits.total(),
            0,
            "a render reached the internal server"
        );
        self.app.shutdown().await;
    }
}
