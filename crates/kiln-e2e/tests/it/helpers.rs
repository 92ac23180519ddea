//! The whole platform on free loopback ports, torn down when the [`TestStack`] (or
//! [`TestPlatform`], which adds the dashboard, Postgres and DNS) is dropped. [`TestCluster`] runs
//! it as it is deployed at scale, each service a process of its own.

pub mod clients;
mod cluster;
pub use cluster::*;

use kiln_core::{AllowedNets, DomainConfig, DomainSettings, EgressPolicy, Hostname};
use kiln_store::{Store, StoreSettings};
use kiln_testkit::dns::{DnsRecord, TestDns};
use kiln_testkit::postgres::TestDatabase;
use kiln_testkit::{TestEdge, TestRedis};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

pub const DEMO_HOST: &str = "demo.localhost";
pub const GOOGLEBOT: &str =
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
pub const GOOGLEBOT_SMARTPHONE: &str = "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0.6422.175 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
pub const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36";

pub struct TestStack {
    pub edge: TestEdge,
    /// The gateway behind the edge.
    pub gateway: SocketAddr,
    /// What every service of the stack was configured with, for starting more gateways.
    pub vars: HashMap<&'static str, String>,
    pub demo: kiln_demo::Counters,
    pub demo_port: u16,
    pub client: reqwest::Client,
    /// The stack's Redis, as its services see it.
    pub store: Store,
    pub redis: TestRedis,
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

impl TestStack {
    /// The platform with the demo domain (`demo.localhost`, verified, with `settings`) published
    /// straight into Redis, as an operator's `domain add` would.
    pub async fn start(settings: DomainSettings) -> Self {
        Self::start_with(settings, &[]).await
    }

    /// [`TestStack::start`], with the services' settings in `vars` (`KILN_…`) added or replaced.
    pub async fn start_with(settings: DomainSettings, vars: &[(&'static str, &str)]) -> Self {
        Self::launch(Some(settings), true, vars).await.0
    }

    /// A stack with no worker: the test runs its own (as processes it can kill).
    pub async fn start_without_worker(settings: DomainSettings) -> Self {
        Self::launch(Some(settings), false, &[]).await.0
    }

    /// Starts Redis, the demo origin, a worker, a gateway and the edge, with `extra_vars` added to
    /// their settings; with `demo_settings`, the demo domain is published before the gateway
    /// starts. Also returns the Redis URL and key prefix, for a dashboard to share.
    async fn launch(
        demo_settings: Option<DomainSettings>,
        with_worker: bool,
        extra_vars: &[(&'static str, &str)],
    ) -> (Self, String, String) {
        // `RUST_LOG=info cargo nextest run -p kiln-e2e` shows every service's logs for a failing test.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let redis = TestRedis::start();
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

        if let Some(settings) = demo_settings {
            store
                .directory()
                .put(&DomainConfig {
                    id: uuid::Uuid::new_v4().to_string(),
                    tenant_id: "tenant-demo".into(),
                    host: Hostname::parse(DEMO_HOST).unwrap(),
                    origin: format!("http://127.0.0.1:{demo_port}"),
                    verified: true,
                    settings,
                    service_only: false,
                })
                .await
                .expect("publish the demo domain");
        }

        let mut vars: HashMap<&'static str, String> = HashMap::from([
            ("KILN_GATEWAY_LISTEN", "127.0.0.1:0".into()),
            ("KILN_GATEWAY_ADMIN_LISTEN", "127.0.0.1:0".into()),
            ("KILN_WORKER_ADMIN_LISTEN", "127.0.0.1:0".into()),
            ("KILN_REDIS_URL", redis.url()),
            ("KILN_REDIS_PREFIX", prefix.clone()),
            ("KILN_ALLOWED_PRIVATE_NETS", "127.0.0.1:1-65535@*".into()),
            ("KILN_WORKER_BROWSERS", "1".into()),
            // The load tests send one tenant's bots to more pages at once than a tenant's render
            // budget allows, on purpose; the budget and the queue limit have gateway tests.
            ("KILN_TENANT_MAX_RENDERS", "0".into()),
            ("KILN_TENANT_RENDERS_PER_MINUTE", "0".into()),
            ("KILN_GATEWAY_MAX_QUEUED_RENDERS", "0".into()),
            ("KILN_WORKER_TABS_PER_BROWSER", "2".into()),
            (
                "KILN_CHROME_PATH",
                std::env::var("KILN_CHROME_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into()),
            ),
        ]);
        vars.extend(
            extra_vars
                .iter()
                .map(|(name, value)| (*name, (*value).to_owned())),
        );

        let mut worker_done = None;
        let mut worker_admin = None;
        if with_worker {
            let worker_settings =
                kiln_worker::Settings::from_lookup(|name| Ok(vars.get(name).cloned()))
                    .expect("worker settings");
            let worker = kiln_worker::Application::build(worker_settings)
                .await
                .expect("worker");
            worker_admin = Some(worker.admin_port());
            let (stop, signal) = stopper();
            stops.push(stop);
            worker_done = Some(tokio::spawn(async move {
                worker
                    .run_until_stopped(signal)
                    .await
                    .map_err(|e| format!("{e:#}"))
            }));
        }

        let gateway_settings = kiln_gateway::Settings::from_lookup(|name| vars.get(name).cloned())
            .expect("gateway settings");
        let gateway = kiln_gateway::Application::build(gateway_settings)
            .await
            .expect("gateway");
        let gateway_addr = SocketAddr::from(([127, 0, 0, 1], gateway.port()));
        let gateway_admin = gateway.admin_port();
        let (stop, signal) = stopper();
        stops.push(stop);
        tokio::spawn(gateway.run_until_stopped(signal));

        let edge = TestEdge::start(gateway_addr);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .unwrap();

        // A browser must be up before the first render can start, and the gateway must hear of
        // renders before it lets a bot wait for one.
        if let Some(worker_admin) = worker_admin {
            wait_until_ready(&client, worker_admin).await;
        }
        wait_until_ready(&client, gateway_admin).await;

        let redis_url = redis.url();
        let stack = TestStack {
            edge,
            gateway: gateway_addr,
            vars: vars.clone(),
            demo: counters,
            demo_port,
            client,
            store,
            redis,
            _stops: stops,
            worker_done,
        };
        (stack, redis_url, prefix)
    }

    /// Starts another gateway on the stack's Redis (as a second gateway process would run) and
    /// returns its address; it stops with the stack.
    pub async fn another_gateway(&mut self) -> SocketAddr {
        let vars = self.vars.clone();
        let settings = kiln_gateway::Settings::from_lookup(|name| vars.get(name).cloned())
            .expect("gateway settings");
        let gateway = kiln_gateway::Application::build(settings)
            .await
            .expect("gateway");
        let addr = SocketAddr::from(([127, 0, 0, 1], gateway.port()));
        let admin = gateway.admin_port();
        let (stop, signal) = stopper();
        self._stops.push(stop);
        tokio::spawn(gateway.run_until_stopped(signal));
        wait_until_ready(&self.client, admin).await;
        addr
    }

    /// A GET for `path` on the demo domain sent straight to the gateway at `gateway`, marked as a
    /// bot's the way the edge marks it.
    pub fn bot_at(&self, gateway: SocketAddr, path: &str) -> reqwest::RequestBuilder {
        self.client
            .get(format!("http://{gateway}{path}"))
            .header("host", DEMO_HOST)
            .header("x-is-bot", "1")
            .header("user-agent", GOOGLEBOT)
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

// ---- the control plane ---------------------------------------------------------------------------

/// What the test dashboards tell customers to point their CNAME records at.
pub const CNAME_TARGET: &str = "edge.kiln.test";
/// A password the dashboard's strength check accepts.
pub const PASSWORD: &str = "glazed stoneware kiln firing 1240";
/// A User-Agent the edge takes for a person's (no bot token in it), for domains' own bot patterns.
pub const AUDIT_TOOL: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36 AcmeSeoAudit/3.1";

/// The whole platform run by its control plane: the [`TestStack`] (edge, gateway, worker with
/// Chromium, Redis, demo app) plus the dashboard on a fresh Postgres database, sharing the stack's
/// Redis and key prefix, verifying domains against a private dnsmasq. No domain is published behind
/// the dashboard's back: customers add theirs through the API, with [`TestOrigin`] as their origin.
pub struct TestPlatform {
    pub stack: TestStack,
    /// The customers' origin.
    pub site: TestOrigin,
    /// The dashboard's API, before anyone has logged in.
    pub api: Api,
    /// The platform's Redis, for what no API shows (a removed domain's leftovers).
    pub store: Store,
    dns: std::sync::Mutex<Dns>,
    _dashboard_stop: oneshot::Sender<()>,
    _database: TestDatabase,
}

struct Dns {
    server: TestDns,
    records: Vec<DnsRecord>,
}

impl TestPlatform {
    pub async fn start() -> Self {
        let (stack, redis_url, prefix) = TestStack::launch(None, true, &[]).await;
        let site = TestOrigin::start(format!("http://127.0.0.1:{}", stack.demo_port)).await;
        let dns = TestDns::start(&[]);
        let database = TestDatabase::create().await;
        let store = Store::connect(StoreSettings::new(redis_url.clone(), &prefix))
            .await
            .expect("redis");
        let settings = kiln_dashboard::Settings {
            database_url: database.url.clone().into(),
            queue_redis_url: redis_url.clone().into(),
            redis_url: redis_url.into(),
            redis_prefix: prefix,
            allowed_private_nets: EgressPolicy::parse("127.0.0.1:1-65535@*").unwrap(),
            platform_addrs: String::new(),
            listen: "127.0.0.1:0".parse().unwrap(),
            admin_listen: Some("127.0.0.1:0".parse().unwrap()),
            session_secret: Some("e2e-session-secret-0123456789abcdefghij".to_owned().into()),
            session_ttl: Duration::from_secs(1800),
            public_url: "http://127.0.0.1:3001".parse().unwrap(),
            cname_target: Some(Hostname::parse(CNAME_TARGET).unwrap()),
            dns_server: Some(dns.addr()),
            trusted_proxies: AllowedNets::default(),
            api_rate_per_second: kiln_control::settings::DEFAULT_API_RATE_PER_SECOND,
            api_rate_burst: kiln_control::settings::DEFAULT_API_RATE_BURST,
            render_budget: kiln_control::settings::RenderBudget::DEFAULT,
            render_log_retention_days: kiln_control::settings::DEFAULT_RENDER_LOG_RETENTION_DAYS,
            log_format: kiln_dashboard::LogFormat::Pretty,
            log_filter: "info".to_owned(),
            service_host: Some(Hostname::parse("render.localhost").unwrap()),
        };
        let dashboard = kiln_dashboard::http::Application::build(settings)
            .await
            .expect("dashboard");
        let base = format!("http://{}", dashboard.address());
        let (stop, signal) = stopper();
        tokio::spawn(dashboard.run_until(signal));
        let api = Api {
            base,
            client: stack.client.clone(),
        };
        TestPlatform {
            stack,
            site,
            api,
            store,
            dns: std::sync::Mutex::new(Dns {
                server: dns,
                records: Vec::new(),
            }),
            _dashboard_stop: stop,
            _database: database,
        }
    }

    /// A GET through the edge for `path` on `host` with `user_agent`.
    pub fn get(&self, host: &str, path: &str, user_agent: &str) -> reqwest::RequestBuilder {
        self.stack
            .client
            .get(self.stack.edge.url(path))
            .header("host", host)
            .header("user-agent", user_agent)
    }

    /// Sends a bot's GET through the edge and returns its `X-Kiln-Cache` (empty when the request was
    /// proxied) and body.
    pub async fn bot_get(&self, host: &str, path: &str) -> (String, String) {
        let response = self.get(host, path, GOOGLEBOT).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{host}{path}");
        let cache = cache_status(&response);
        (cache, response.text().await.unwrap())
    }

    /// How many pages of `domain_id` Redis holds, read past the API (which forgets removed domains).
    pub async fn pages_in_redis(&self, domain_id: &str) -> usize {
        let mut count = 0;
        let mut cursor = None;
        loop {
            let listing = self
                .store
                .pages()
                .list(domain_id, "", cursor.as_deref(), 1000)
                .await
                .unwrap();
            count += listing.pages.len();
            match listing.next_cursor {
                Some(next) => cursor = Some(next),
                None => return count,
            }
        }
    }

    /// Adds DNS records to those dnsmasq serves. Needs the multi-threaded runtime every test here
    /// uses, since restarting dnsmasq blocks the calling thread for a moment.
    pub fn add_dns(&self, records: &[DnsRecord]) {
        let mut dns = self.dns.lock().unwrap_or_else(|e| e.into_inner());
        dns.records.extend_from_slice(records);
        let Dns { server, records } = &mut *dns;
        // Let the runtime move other tasks off this thread while dnsmasq restarts.
        tokio::task::block_in_place(|| server.set_records(records));
    }

    /// Publishes the TXT record that proves ownership of `domain` (the API's domain JSON).
    pub fn publish_challenge(&self, domain: &Value) {
        let txt = &domain["verification"]["txt_record"];
        self.add_dns(&[DnsRecord::txt(
            txt["name"].as_str().unwrap(),
            txt["value"].as_str().unwrap(),
        )]);
    }

    /// Adds `host` for `tenant` with the site as origin, proves ownership with a TXT record and
    /// verifies it. Returns the domain JSON.
    pub async fn verified_domain(&self, tenant: &Tenant, host: &str, settings: Value) -> Value {
        // The tests poll from one address as fast as they can: the per-address bot limit is off
        // unless a test sets one.
        let mut settings = settings;
        if settings.get("bot_rate_per_second").is_none() {
            settings["bot_rate_per_second"] = json!(0);
        }
        let (status, domain) = tenant
            .add_domain(
                &json!({ "hostname": host, "origin": self.site.base(), "settings": settings }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{domain}");
        self.publish_challenge(&domain);
        let (status, domain) = tenant.verify(domain["id"].as_str().unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{domain}");
        assert_eq!(domain["verified"], true, "{domain}");
        domain
    }

    /// A bot's first GET for `path` on a just-verified `host` that takes the bot path: the gateway
    /// learns of the verification a moment after the API answers, and until then proxies bots (each
    /// such attempt reaches the origin). Returns the `X-Kiln-Cache` and body.
    pub async fn first_bot_render(&self, host: &str, path: &str) -> (String, String) {
        let (_, response) = first_showing(
            Instant::now(),
            || self.get(host, path, GOOGLEBOT),
            |r| r.headers().contains_key("x-kiln-cache"),
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK, "{host}{path}");
        (cache_status(&response), response.text().await.unwrap())
    }
}

/// The `X-Kiln-Cache` of a response, or "" when it has none (the request was proxied).
pub fn cache_status(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("x-kiln-cache")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// Sends requests made by `send` every 20 ms until `shows` holds for one, for at most 20 s; returns
/// that response and how long after `since` it was *sent*. That request was routed with whatever
/// changed a moment after it was sent (the edge's hop), so the time bounds how long the change took
/// to arrive, whatever the request itself then took (a render, say).
pub async fn first_showing(
    since: Instant,
    send: impl Fn() -> reqwest::RequestBuilder,
    shows: impl Fn(&reqwest::Response) -> bool,
) -> (Duration, reqwest::Response) {
    loop {
        let sent = since.elapsed();
        let response = send().send().await.unwrap();
        if shows(&response) {
            return (sent, response);
        }
        assert!(
            sent < Duration::from_secs(20),
            "the change never showed: last answer {} {:?}",
            response.status(),
            response.headers()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The dashboard's API for someone who has not logged in.
pub struct Api {
    pub base: String,
    client: reqwest::Client,
}

impl Api {
    pub async fn sign_up(&self, email: &str, password: &str) -> reqwest::Response {
        self.client
            .post(format!("{}/api/v1/auth/signup", self.base))
            .header("content-type", "application/json")
            .body(json!({ "email": email, "password": password }).to_string())
            .send()
            .await
            .unwrap()
    }

    /// The OpenAPI document (no authentication needed).
    pub async fn openapi(&self) -> Value {
        let response = self
            .client
            .get(format!("{}/api/v1/openapi.json", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        serde_json::from_str(&response.text().await.unwrap()).unwrap()
    }

    /// Creates an API key with a session cookie (`kiln_session=...`).
    pub async fn create_key(&self, cookie: &str, name: &str) -> reqwest::Response {
        self.client
            .post(format!("{}/api/v1/api-keys", self.base))
            .header("cookie", cookie)
            .header("content-type", "application/json")
            .body(json!({ "name": name }).to_string())
            .send()
            .await
            .unwrap()
    }

    /// Signs up `email` and creates an API key: the tenant as its scripts see the API.
    pub async fn tenant(&self, email: &str) -> Tenant {
        let signed_up = self.sign_up(email, PASSWORD).await;
        assert_eq!(signed_up.status(), StatusCode::CREATED);
        let cookie = session_cookie(&signed_up).expect("sign-up sets the session cookie");
        let created = self.create_key(&cookie, "e2e").await;
        assert_eq!(created.status(), StatusCode::CREATED);
        let key: Value = serde_json::from_str(&created.text().await.unwrap()).unwrap();
        self.with_key(key["secret"].as_str().unwrap())
    }

    /// The API as a script holding `secret` calls it.
    pub fn with_key(&self, secret: &str) -> Tenant {
        Tenant {
            base: self.base.clone(),
            client: self.client.clone(),
            key: secret.to_owned(),
        }
    }
}

/// `kiln_session=<value>` from a response's `Set-Cookie`, ready to send back as `Cookie`.
pub fn session_cookie(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("kiln_session="))
        .and_then(|v| v.split(';').next())
        .filter(|pair| pair.len() > "kiln_session=".len())
        .map(str::to_owned)
}

/// One tenant's API key, with one method per request the tests make. Every method returns the
/// status and the JSON body (`null` for an empty one).
pub struct Tenant {
    base: String,
    client: reqwest::Client,
    key: String,
}

impl Tenant {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let url =
            reqwest::Url::parse_with_params(&format!("{}/api/v1{path}", self.base), query).unwrap();
        let mut request = self
            .client
            .request(method.clone(), url)
            .bearer_auth(&self.key)
            .timeout(Duration::from_secs(90));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{method} {path}: {status} with non-JSON {text:?}: {e}"))
        };
        (status, value)
    }

    pub async fn add_domain(&self, body: &Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, "/domains", &[], Some(body))
            .await
    }

    pub async fn domains(&self) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, "/domains", &[], None).await
    }

    pub async fn domain(&self, id: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, &format!("/domains/{id}"), &[], None)
            .await
    }

    pub async fn update_domain(&self, id: &str, patch: &Value) -> (StatusCode, Value) {
        self.call(
            reqwest::Method::PATCH,
            &format!("/domains/{id}"),
            &[],
            Some(patch),
        )
        .await
    }

    pub async fn delete_domain(&self, id: &str) -> (StatusCode, Value) {
        self.call(
            reqwest::Method::DELETE,
            &format!("/domains/{id}"),
            &[],
            None,
        )
        .await
    }

    pub async fn verify(&self, id: &str) -> (StatusCode, Value) {
        self.call(
            reqwest::Method::POST,
            &format!("/domains/{id}/verify"),
            &[],
            None,
        )
        .await
    }

    pub async fn warm(&self, body: &Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, "/cache/warm", &[], Some(body))
            .await
    }

    pub async fn warm_status(&self, id: &str) -> (StatusCode, Value) {
        self.call(
            reqwest::Method::GET,
            &format!("/cache/warm/{id}"),
            &[],
            None,
        )
        .await
    }

    /// Polls a warm job until it is `done` or `failed` (90 s at most) and returns it.
    pub async fn finished_warm(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let (status, job) = self.warm_status(id).await;
            assert_eq!(status, StatusCode::OK, "{job}");
            if matches!(job["state"].as_str(), Some("done" | "failed")) {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "the warm job never finished: {job}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn cache(&self, query: &[(&str, &str)]) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, "/cache", query, None).await
    }

    /// The URLs of a domain's cached pages, sorted, each with its device.
    pub async fn cached_pages(&self, domain_id: &str) -> Vec<(String, String)> {
        let (status, listing) = self.cache(&[("domain_id", domain_id)]).await;
        assert_eq!(status, StatusCode::OK, "{listing}");
        let mut pages: Vec<(String, String)> = listing["pages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["url"].as_str().unwrap().to_owned(),
                    p["device"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        pages.sort();
        pages
    }

    pub async fn purge(&self, body: &Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, "/cache/purge", &[], Some(body))
            .await
    }

    pub async fn render(&self, query: &[(&str, &str)]) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, "/render", query, None)
            .await
    }

    pub async fn renders(&self, domain_id: &str) -> (StatusCode, Value) {
        self.call(
            reqwest::Method::GET,
            "/renders",
            &[("domain_id", domain_id)],
            None,
        )
        .await
    }

    pub async fn usage(&self, domain_id: &str) -> (StatusCode, Value) {
        self.call(
            reqwest::Method::GET,
            "/usage",
            &[("domain_id", domain_id)],
            None,
        )
        .await
    }

    /// Usage of all the account's domains.
    pub async fn usage_of_all(&self) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, "/usage", &[], None).await
    }

    /// Polls `request` until `ready` holds for its 200 answer (20 s at most) and returns that answer.
    pub async fn poll<F, Fut>(&self, request: F, ready: impl Fn(&Value) -> bool) -> Value
    where
        F: Fn() -> Fut,
        Fut: Future<Output = (StatusCode, Value)>,
    {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, body) = request().await;
            assert_eq!(status, StatusCode::OK, "{body}");
            if ready(&body) {
                return body;
            }
            assert!(Instant::now() < deadline, "never ready: last answer {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

// ---- the customer's origin -----------------------------------------------------------------------

/// The customers' origin: the demo app behind a front that counts requests by path and answers
/// the paths a test gives it (sitemaps, failing pages) itself. Stopped when dropped.
pub struct TestOrigin {
    addr: SocketAddr,
    state: Arc<SiteState>,
    _stop: oneshot::Sender<()>,
}

struct SiteState {
    demo: String,
    client: reqwest::Client,
    hits: std::sync::Mutex<HashMap<String, usize>>,
    canned: std::sync::Mutex<HashMap<String, Canned>>,
}

#[derive(Clone)]
struct Canned {
    status: StatusCode,
    content_type: &'static str,
    body: Vec<u8>,
}

impl TestOrigin {
    /// Starts the front on a free port of 127.0.0.1, forwarding to the demo app at `demo`.
    pub async fn start(demo: String) -> Self {
        let state = Arc::new(SiteState {
            demo,
            client: reqwest::Client::builder().no_proxy().build().unwrap(),
            hits: Default::default(),
            canned: Default::default(),
        });
        let app = axum::Router::new()
            .fallback(site_request)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, signal) = stopper();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(signal)
                .await;
        });
        TestOrigin {
            addr,
            state,
            _stop: stop,
        }
    }

    /// The origin as a domain registers it: `http://127.0.0.1:<port>`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many requests for `path` (query ignored) arrived.
    pub fn hits(&self, path: &str) -> usize {
        let hits = self.state.hits.lock().unwrap_or_else(|e| e.into_inner());
        hits.get(path).copied().unwrap_or(0)
    }

    /// Answers `path` with `body` from now on, instead of the demo app.
    pub fn serve(&self, path: &str, status: StatusCode, content_type: &'static str, body: Vec<u8>) {
        let mut canned = self.state.canned.lock().unwrap_or_else(|e| e.into_inner());
        canned.insert(
            path.to_owned(),
            Canned {
                status,
                content_type,
                body,
            },
        );
    }
}

async fn site_request(
    axum::extract::State(site): axum::extract::State<Arc<SiteState>>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let path = request.uri().path().to_owned();
    *site
        .hits
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(path.clone())
        .or_default() += 1;
    let canned = site
        .canned
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&path)
        .cloned();
    if let Some(canned) = canned {
        return (
            canned.status,
            [("content-type", canned.content_type)],
            canned.body,
        )
            .into_response();
    }
    let target = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let Ok(answer) = site
        .client
        .get(format!("{}{target}", site.demo))
        .send()
        .await
    else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let status = answer.status();
    let mut headers = axum::http::HeaderMap::new();
    for name in ["content-type", "cache-control"] {
        if let Some(value) = answer.headers().get(name) {
            headers.insert(name, value.clone());
        }
    }
    match answer.bytes().await {
        Ok(body) => (status, headers, body).into_response(),
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}

/// `text` gzip-compressed, as a `.xml.gz` sitemap is served.
pub fn gzip(text: &str) -> Vec<u8> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(text.as_bytes()).unwrap();
    encoder.finish().unwrap()
}

/// Today's date in UTC (`YYYY-MM-DD`), the day usage is counted under.
pub fn utc_today() -> String {
    time::OffsetDateTime::now_utc().date().to_string()
}

/// Waits (60 s at most) until the service whose admin server listens on `admin_port` says it is
/// ready (a worker: a browser is up; a gateway: it hears render events).
pub async fn wait_until_ready(client: &reqwest::Client, admin_port: u16) {
    kiln_testkit::wait_until_ready(client, admin_port, Duration::from_secs(60)).await;
}
