//! Real Postgres and Redis for the dashboard's integration tests.
//!
//! Every test gets its own `redis-server` (killed when the test's [`TestApp`] is dropped) and its own
//! database (see `kiln_testkit::postgres`), so tests run in parallel without seeing each other's data.

use kiln_control::domains::{self, AddDomain, Added, DomainError};
use kiln_control::origin::Origin;
use kiln_control::{App, LogFormat, Settings};
use kiln_core::{AllowedNets, DomainConfig, DomainSettings, EgressPolicy, Hostname};
use kiln_dashboard::http::Application;
use sqlx::PgPool;
use std::process::{Output, Stdio};
use std::time::Duration;
use uuid::Uuid;

/// What the test dashboards tell customers to point their CNAME records at.
pub const CNAME_TARGET: &str = "edge.kiln.test";

/// Where the test dashboards say the render service answers.
pub const SERVICE_HOST: &str = "render.kiln.test";

/// The audit actor the tests act as.
pub const TEST_ACTOR: &str = "test";

// ---- Redis ---------------------------------------------------------------------------------------

pub use kiln_testkit::TestRedis;

// ---- Postgres ------------------------------------------------------------------------------------

pub use kiln_testkit::postgres::TestDatabase;

// ---- the app under test --------------------------------------------------------------------------

/// A migrated database, a private Redis, and the dashboard's handles on both.
pub struct TestApp {
    pub app: App,
    pub settings: Settings,
    /// A separate pool for the tests' own assertions.
    pub pg: PgPool,
    pub redis: TestRedis,
    pub database: TestDatabase,
}

/// What the test apps grant: every port of 127.0.0.1 to every tenant (Kiln's own services there
/// stay refused whatever is granted).
pub const LOOPBACK_FOR_EVERYONE: &str = "127.0.0.1:1-65535@*";

/// A test app whose origins may be on 127.0.0.1 (the usual local-demo setup).
pub async fn spawn_app() -> TestApp {
    spawn_app_allowing(LOOPBACK_FOR_EVERYONE).await
}

/// A test app whose `KILN_ALLOWED_PRIVATE_NETS` is `nets`.
pub async fn spawn_app_allowing(nets: &str) -> TestApp {
    spawn_app_on(TestDatabase::create().await, nets).await
}

/// A test app on `database`, whose `KILN_ALLOWED_PRIVATE_NETS` is `nets`.
pub async fn spawn_app_on(database: TestDatabase, nets: &str) -> TestApp {
    let redis = TestRedis::start();
    let settings = Settings {
        database_url: database.url.clone().into(),
        redis_url: redis.url().into(),
        queue_redis_url: redis.url().into(),
        redis_prefix: "kiln:".to_owned(),
        allowed_private_nets: EgressPolicy::parse(nets).expect("bad test nets"),
        platform_addrs: String::new(),
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: Some("127.0.0.1:0".parse().unwrap()),
        session_secret: Some("test-session-secret-0123456789abcdef".to_owned().into()),
        session_ttl: Duration::from_secs(1800),
        public_url: "http://127.0.0.1:3001".parse().unwrap(),
        cname_target: Some(Hostname::parse(CNAME_TARGET).unwrap()),
        service_host: Some(Hostname::parse(SERVICE_HOST).unwrap()),
        dns_server: None,
        trusted_proxies: AllowedNets::default(),
        api_rate_per_second: kiln_control::settings::DEFAULT_API_RATE_PER_SECOND,
        api_rate_burst: kiln_control::settings::DEFAULT_API_RATE_BURST,
        render_budget: kiln_control::settings::RenderBudget::DEFAULT,
        render_log_retention_days: kiln_control::settings::DEFAULT_RENDER_LOG_RETENTION_DAYS,
        log_format: LogFormat::Pretty,
        log_filter: "info".to_owned(),
    };
    let app = App::connect(&settings)
        .await
        .expect("failed to connect the test app");
    app.db
        .migrate()
        .await
        .expect("failed to migrate the test database");
    let pg = PgPool::connect(&database.url)
        .await
        .expect("failed to connect the assertion pool");
    TestApp {
        app,
        settings,
        pg,
        redis,
        database,
    }
}

/// A row of `domains`, as the tests look at it.
#[derive(Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct PgDomain {
    pub hostname: String,
    pub origin: String,
    pub verified: bool,
    pub tenant_id: Uuid,
}

#[derive(Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct PgAudit {
    pub actor: String,
    pub action: String,
    pub target: String,
    pub tenant_id: Option<Uuid>,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

impl TestApp {
    /// Registers `host` → `origin` as the operator, as `domain add` does.
    pub async fn add(&self, host: &str, origin: &str) -> Result<Added, DomainError> {
        self.add_with(host, origin, DomainSettings::default(), false)
            .await
    }

    pub async fn add_with(
        &self,
        host: &str,
        origin: &str,
        settings: DomainSettings,
        if_not_exists: bool,
    ) -> Result<Added, DomainError> {
        let mut request =
            AddDomain::by_operator(host_name(host), Origin::parse(origin).unwrap(), settings);
        request.if_not_exists = if_not_exists;
        domains::add_domain(&self.app, request, TEST_ACTOR).await
    }

    /// Registers `host` (unverified) for `tenant_id` straight into Postgres, as `add_domain` would
    /// store it, with its public site as its origin: the tests' DNS cannot resolve a public name,
    /// which a service-only domain's origin is.
    pub async fn insert_domain(
        &self,
        tenant_id: Uuid,
        host: &str,
        service_only: bool,
    ) -> kiln_control::db::DomainRecord {
        let host = host_name(host);
        let origin = domains::service_origin(&host).unwrap();
        self.app
            .db
            .insert_domain(
                &kiln_control::db::NewDomain {
                    id: Uuid::now_v7(),
                    tenant_id,
                    host: &host,
                    origin: origin.as_str(),
                    verified: false,
                    verification_token: "kiln-verify-test",
                    settings: &DomainSettings::default(),
                    service_only,
                },
                TEST_ACTOR,
            )
            .await
            .unwrap()
    }

    /// The tenant of the user who signed up as `email`.
    pub async fn tenant_of(&self, email: &str) -> Uuid {
        sqlx::query_scalar("SELECT tenant_id FROM users WHERE email = $1")
            .bind(email)
            .fetch_one(&self.pg)
            .await
            .unwrap()
    }

    pub async fn remove(&self, host: &str) -> Result<kiln_control::db::DomainRecord, DomainError> {
        domains::remove_domain(&self.app, &host_name(host), TEST_ACTOR).await
    }

    /// Every row of `domains`, by hostname, read straight from Postgres.
    pub async fn pg_domains(&self) -> Vec<PgDomain> {
        sqlx::query_as(
            "SELECT hostname, origin, verified, tenant_id FROM domains ORDER BY hostname",
        )
        .fetch_all(&self.pg)
        .await
        .unwrap()
    }

    /// The ids of every domain, by hostname.
    pub async fn pg_domains_ids(&self) -> Vec<String> {
        sqlx::query_scalar("SELECT id::text FROM domains ORDER BY hostname")
            .fetch_all(&self.pg)
            .await
            .unwrap()
    }

    /// Every audit event, oldest first.
    pub async fn audit_events(&self) -> Vec<PgAudit> {
        sqlx::query_as(
            "SELECT actor, action, target, tenant_id, before, after FROM audit_events ORDER BY id",
        )
        .fetch_all(&self.pg)
        .await
        .unwrap()
    }

    /// The domain as gateways would read it from Redis.
    pub async fn redis_domain(&self, host: &str) -> Option<DomainConfig> {
        self.app
            .store
            .directory()
            .get(&host_name(host))
            .await
            .unwrap()
    }

    /// The hostnames in Redis's domain directory, sorted.
    pub async fn redis_hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = self
            .app
            .store
            .directory()
            .all()
            .await
            .unwrap()
            .into_keys()
            .map(String::from)
            .collect();
        hosts.sort();
        hosts
    }

    /// Empties Redis, as a restart without persistence would.
    pub async fn flush_redis(&self) {
        use fred::prelude::*;
        let client = Builder::from_config(Config::from_url(&self.redis.url()).unwrap())
            .build()
            .unwrap();
        client.init().await.unwrap();
        let () = client.flushall(false).await.unwrap();
        let _ = client.quit().await;
    }

    /// Runs the `kiln-dashboard` binary against this app's database and Redis.
    pub async fn cli(&self, args: &[&str]) -> CliOutput {
        self.cli_with_env(args, &[("KILN_DATABASE_URL", &self.database.url)])
            .await
    }

    /// Runs the binary with `input` on its standard input.
    pub async fn cli_with_input(&self, args: &[&str], input: &str) -> CliOutput {
        use tokio::io::AsyncWriteExt;
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_kiln-dashboard"));
        command
            .args(args)
            .env("KILN_DATABASE_URL", &self.database.url)
            .env("KILN_REDIS_URL", self.redis.url())
            .env("KILN_ALLOWED_PRIVATE_NETS", LOOPBACK_FOR_EVERYONE)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("failed to run the CLI");
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).await.unwrap();
        drop(stdin);
        let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("the CLI did not finish within 60 s")
            .expect("failed to run the CLI");
        CliOutput::from(output)
    }

    /// Runs the binary with exactly these `KILN_*` variables (plus this app's Redis and allowed nets).
    pub async fn cli_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> CliOutput {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_kiln-dashboard"));
        for (name, _) in std::env::vars() {
            if name.starts_with("KILN_") || name == "RUST_LOG" {
                command.env_remove(name);
            }
        }
        command
            .args(args)
            .env("KILN_REDIS_URL", self.redis.url())
            .env("KILN_ALLOWED_PRIVATE_NETS", LOOPBACK_FOR_EVERYONE)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null());
        let output = tokio::time::timeout(Duration::from_secs(60), command.output())
            .await
            .expect("the CLI did not finish within 60 s")
            .expect("failed to run the CLI");
        CliOutput::from(output)
    }
}

pub fn host_name(host: &str) -> Hostname {
    Hostname::parse(host).unwrap()
}

/// What a run of the binary printed, and how it exited.
#[derive(Debug)]
pub struct CliOutput {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for CliOutput {
    fn from(output: Output) -> Self {
        CliOutput {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// A running `serve`, with one method per request the tests make.
pub struct TestServer {
    pub base: String,
    /// The admin port's base URL (`/metrics`, `/healthz`, `/readyz`).
    pub admin: String,
    client: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl TestServer {
    /// Starts `serve` for `app` on a free port; it stops when the returned server is dropped.
    pub async fn start(app: &TestApp) -> TestServer {
        let application = Application::build(app.settings.clone())
            .await
            .expect("failed to build the application");
        let address = application.address();
        let admin_port = application
            .admin_port()
            .expect("the test settings ask for an admin port");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(application.run_until(async move {
            let _ = stopped.await;
        }));
        TestServer {
            base: format!("http://{address}"),
            admin: format!("http://127.0.0.1:{admin_port}"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            _stop: stop,
        }
    }

    /// The value of one sample of the admin port's `/metrics` (name and labels exactly as written).
    pub async fn metric(&self, series: &str) -> f64 {
        let response = self
            .client
            .get(format!("{}/metrics", self.admin))
            .send()
            .await
            .expect("the metrics request failed");
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        kiln_testkit::metric_value(&text, series)
            .unwrap_or_else(|| panic!("no `{series}` in:\n{text}"))
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("the request failed")
    }

    /// GETs `path` and parses the body as JSON.
    pub async fn get_json(&self, path: &str) -> (reqwest::StatusCode, serde_json::Value) {
        let response = self.get(path).await;
        let status = response.status();
        let text = response.text().await.expect("failed to read the body");
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{path} answered {status} with non-JSON {text:?}: {e}"));
        (status, body)
    }
}

// ---- the REST API --------------------------------------------------------------------------------

/// A strong password for test accounts.
pub const PASSWORD: &str = "correct horse battery staple";

/// A client of a running dashboard's REST API, holding a session cookie or an API key.
#[derive(Clone)]
pub struct ApiClient {
    pub base: String,
    pub client: reqwest::Client,
    pub session: Option<String>,
    pub key: Option<String>,
}

/// A response: status, `Set-Cookie` values and the JSON body (`Null` when empty).
#[derive(Debug)]
pub struct ApiResponse {
    pub status: u16,
    pub cookies: Vec<String>,
    pub headers: reqwest::header::HeaderMap,
    pub body: serde_json::Value,
}

impl ApiResponse {
    /// The error code of an error response.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or("")
    }
}

impl ApiClient {
    pub fn new(server: &TestServer) -> Self {
        ApiClient {
            base: server.base.clone(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            session: None,
            key: None,
        }
    }

    pub fn with_key(&self, key: &str) -> Self {
        ApiClient {
            session: None,
            key: Some(key.to_owned()),
            ..self.clone()
        }
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> ApiResponse {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(session) = &self.session {
            request = request.header("cookie", format!("kiln_session={session}"));
        }
        if let Some(key) = &self.key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        self.finish(request).await
    }

    pub async fn raw(&self, request: reqwest::RequestBuilder) -> ApiResponse {
        self.finish(request).await
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(key) = &self.key {
            request = request.bearer_auth(key);
        }
        request
    }

    async fn finish(&self, request: reqwest::RequestBuilder) -> ApiResponse {
        let response = request.send().await.expect("the API request failed");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let cookies = headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        let text = response.text().await.expect("failed to read the body");
        let body = if text.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{status} with a non-JSON body {text:?}: {e}"))
        };
        ApiResponse {
            status,
            cookies,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> ApiResponse {
        self.send(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: serde_json::Value) -> ApiResponse {
        self.send(reqwest::Method::POST, path, Some(&body)).await
    }

    pub async fn patch(&self, path: &str, body: serde_json::Value) -> ApiResponse {
        self.send(reqwest::Method::PATCH, path, Some(&body)).await
    }

    pub async fn delete(&self, path: &str) -> ApiResponse {
        self.send(reqwest::Method::DELETE, path, None).await
    }

    /// Signs up (and so logs in) as `email`.
    pub async fn sign_up(&mut self, email: &str) -> ApiResponse {
        let response = self
            .post(
                "/api/v1/auth/signup",
                serde_json::json!({ "email": email, "password": PASSWORD }),
            )
            .await;
        assert_eq!(response.status, 201, "sign-up failed: {:?}", response.body);
        self.session = Some(session_from(&response));
        response
    }

    /// Signs up as `email` and returns a client authenticated with a fresh API key of that account.
    pub async fn account_with_key(server: &TestServer, email: &str) -> ApiClient {
        let mut session = ApiClient::new(server);
        session.sign_up(email).await;
        let created = session
            .post("/api/v1/api-keys", serde_json::json!({ "name": "tests" }))
            .await;
        assert_eq!(created.status, 201, "{:?}", created.body);
        session.with_key(created.body["secret"].as_str().unwrap())
    }

    /// Adds a domain and returns its JSON.
    pub async fn add_domain(&self, host: &str, origin: &str) -> serde_json::Value {
        let response = self
            .post(
                "/api/v1/domains",
                serde_json::json!({ "hostname": host, "origin": origin }),
            )
            .await;
        assert_eq!(
            response.status, 201,
            "adding {host} failed: {:?}",
            response.body
        );
        response.body
    }
}

/// The session token a response's `Set-Cookie` carries.
pub fn session_from(response: &ApiResponse) -> String {
    response
        .cookies
        .iter()
        .find_map(|c| c.strip_prefix("kiln_session="))
        .and_then(|rest| rest.split(';').next())
        .expect("no session cookie was set")
        .to_owned()
}
