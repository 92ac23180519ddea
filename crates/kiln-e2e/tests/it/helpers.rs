//! The whole platform on free loopback ports, torn down when the [`Stack`] is dropped.

use kiln_core::{DomainConfig, DomainSettings, Hostname};
use kiln_store::{Store, StoreSettings};
use kiln_testkit::{Edge, RedisServer, wait_for_port};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

pub const DEMO_HOST: &str = "demo.localhost";
pub const GOOGLEBOT: &str =
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
pub const GOOGLEBOT_SMARTPHONE: &str = "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0.6422.175 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
pub const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36";

pub struct Stack {
    pub edge: Edge,
    pub demo: kiln_demo::Counters,
    pub demo_port: u16,
    pub client: reqwest::Client,
    _redis: RedisServer,
    _stops: Vec<oneshot::Sender<()>>,
    worker_done: Option<tokio::task::JoinHandle<WorkerExit>>,
}

/// How the worker's `run_until_stopped` ended (its error, formatted).
pub type WorkerExit = Result<(), String>;

fn stopper() -> (
    oneshot::Sender<()>,
    impl Future<Output = ()> + Send + 'static,
) {
    let (tx, rx) = oneshot::channel::<()>();
    (tx, async move {
        let _ = rx.await;
    })
}

impl Stack {
    pub async fn start(settings: DomainSettings) -> Self {
        // `RUST_LOG=info cargo nextest run -p kiln-e2e` shows every service's logs for a failing test.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let redis = RedisServer::start();
        let prefix = kiln_testkit::unique_prefix();
        let store = Store::connect(StoreSettings::new(redis.url(), &prefix))
            .await
            .expect("redis");
        let mut stops = Vec::new();

        let demo = kiln_demo::Application::build(kiln_demo::Settings {
            listen: "127.0.0.1:0".parse().unwrap(),
            dir: kiln_demo::Settings::bundled_dir(),
            api_delay: Duration::from_millis(150),
        })
        .await
        .expect("demo origin");
        let demo_port = demo.port();
        let counters = demo.counters();
        let (stop, signal) = stopper();
        stops.push(stop);
        tokio::spawn(demo.run_until_stopped(signal));

        store
            .put_domain(&DomainConfig {
                id: uuid::Uuid::new_v4().to_string(),
                tenant_id: "tenant-demo".into(),
                host: Hostname::parse(DEMO_HOST).unwrap(),
                origin: format!("http://127.0.0.1:{demo_port}"),
                verified: true,
                settings,
            })
            .await
            .expect("publish the demo domain");

        let vars: HashMap<&str, String> = HashMap::from([
            ("KILN_GATEWAY_LISTEN", "127.0.0.1:0".into()),
            ("KILN_GATEWAY_ADMIN_LISTEN", "127.0.0.1:0".into()),
            ("KILN_WORKER_ADMIN_LISTEN", "127.0.0.1:0".into()),
            ("KILN_REDIS_URL", redis.url()),
            ("KILN_REDIS_PREFIX", prefix.clone()),
            ("KILN_ALLOWED_PRIVATE_NETS", "127.0.0.1/32".into()),
            ("KILN_WORKER_BROWSERS", "1".into()),
            ("KILN_WORKER_TABS_PER_BROWSER", "2".into()),
            (
                "KILN_CHROME_PATH",
                std::env::var("KILN_CHROME_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into()),
            ),
        ]);

        let worker_settings =
            kiln_worker::Settings::from_lookup(|name| Ok(vars.get(name).cloned()))
                .expect("worker settings");
        let worker = kiln_worker::Application::build(worker_settings)
            .await
            .expect("worker");
        let worker_admin = worker.admin_port();
        let (stop, signal) = stopper();
        stops.push(stop);
        let worker_done = tokio::spawn(async move {
            worker
                .run_until_stopped(signal)
                .await
                .map_err(|e| format!("{e:#}"))
        });

        let gateway_settings = kiln_gateway::Settings::from_lookup(|name| vars.get(name).cloned())
            .expect("gateway settings");
        let gateway = kiln_gateway::Application::build(gateway_settings)
            .await
            .expect("gateway");
        let gateway_addr = SocketAddr::from(([127, 0, 0, 1], gateway.port()));
        let (stop, signal) = stopper();
        stops.push(stop);
        tokio::spawn(gateway.run_until_stopped(signal));

        let edge = Edge::start(gateway_addr);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .unwrap();

        // A browser must be up before the first render can start.
        wait_for_port(worker_admin, Duration::from_secs(10));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = client
                .get(format!("http://127.0.0.1:{worker_admin}/readyz"))
                .send()
                .await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            assert!(Instant::now() < deadline, "the worker never became ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        Stack {
            edge,
            demo: counters,
            demo_port,
            client,
            _redis: redis,
            _stops: stops,
            worker_done: Some(worker_done),
        }
    }

    /// A GET through the edge for `path` on the demo domain with `user_agent`.
    pub fn get(&self, path: &str, user_agent: &str) -> reqwest::RequestBuilder {
        self.client
            .get(self.edge.url(path))
            .header("host", DEMO_HOST)
            .header("user-agent", user_agent)
    }

    /// The bytes the demo origin serves for a page, fetched directly.
    pub async fn origin_page(&self, path: &str) -> String {
        self.client
            .get(format!("http://127.0.0.1:{}{path}", self.demo_port))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Stops the worker gracefully and returns whether it shut down cleanly.
    pub async fn stop_worker(&mut self) -> WorkerExit {
        // The worker's stop signal is the second one pushed.
        if self._stops.len() > 1 {
            let stop = self._stops.remove(1);
            let _ = stop.send(());
        }
        match self.worker_done.take() {
            Some(done) => tokio::time::timeout(Duration::from_secs(30), done)
                .await
                .map_err(|_| "the worker did not stop within 30 s".to_owned())?
                .map_err(|e| e.to_string())?,
            None => Ok(()),
        }
    }
}
