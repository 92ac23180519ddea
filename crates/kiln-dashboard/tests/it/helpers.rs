//! Real Postgres and Redis for the dashboard's integration tests.
//!
//! Every test gets its own `redis-server` (killed when the test's [`TestApp`] is dropped) and its own
//! database, so tests run in parallel without seeing each other's data.
//!
//! Postgres: if `KILN_TEST_DATABASE_URL` names a server (e.g. `postgres://postgres@127.0.0.1:5433/postgres`,
//! a role allowed to create databases), each test creates a fresh database there and drops it at the end.
//! Otherwise the first test in the process starts a throwaway cluster (`initdb` + `pg_ctl` from the
//! newest `/usr/lib/postgresql/*/bin`, as the `postgres` user when running as root, because Postgres
//! refuses to run as root) in a temporary directory on a free port. The cluster is shared by the tests
//! of the process; a detached watchdog stops it and deletes its directory once the process has exited.
//! (nextest runs every test in its own process, so there each test has its own cluster: about a second
//! of start-up.)

use kiln_core::{AllowedNets, DomainConfig, DomainSettings, Hostname};
use kiln_dashboard::domains::{self, AddDomain, Added, DomainError};
use kiln_dashboard::http::Application;
use kiln_dashboard::origin::Origin;
use kiln_dashboard::{App, LogFormat, Settings};
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection, PgPool};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;
use uuid::Uuid;

/// The audit actor the tests act as.
pub const TEST_ACTOR: &str = "test";

// ---- Redis ---------------------------------------------------------------------------------------

pub use kiln_testkit::{RedisServer, free_port};

// ---- Postgres ------------------------------------------------------------------------------------

/// The Postgres server the tests create their databases in, and whether it is the caller's.
struct PgServer {
    url: String,
    external: bool,
}

fn pg_server() -> &'static PgServer {
    static SERVER: OnceLock<PgServer> = OnceLock::new();
    SERVER.get_or_init(|| match std::env::var("KILN_TEST_DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => PgServer {
            url: url.trim().to_owned(),
            external: true,
        },
        _ => PgServer {
            url: start_cluster(),
            external: false,
        },
    })
}

fn postgres_bin() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("Postgres is not installed in /usr/lib/postgresql; install it or set KILN_TEST_DATABASE_URL")
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .expect("no Postgres with initdb under /usr/lib/postgresql")
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|line| line.starts_with("Uid:"))?;
            Some(line.split_whitespace().nth(1)? == "0")
        })
        .unwrap_or(false)
}

/// A command that runs as the `postgres` user when we are root, and as ourselves otherwise.
fn pg_command(program: &Path) -> Command {
    if running_as_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn run(command: &mut Command, what: &str) {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Starts a throwaway cluster and returns the URL of its `postgres` database.
fn start_cluster() -> String {
    let bin = postgres_bin();
    let dir = std::env::temp_dir().join(format!(
        "kiln-dashboard-pg-{}-{}",
        std::process::id(),
        Uuid::new_v4().simple()
    ));
    let data = dir.join("data");
    let pg_ctl = bin.join("pg_ctl");
    std::fs::create_dir_all(&dir).expect("failed to create the cluster directory");
    // Stops the cluster and removes its directory once this process is gone, however it ends.
    // `setsid --fork` puts the watchdog in its own session, so a runner that kills our process group
    // does not take it along, and returns at once, so it leaves no zombie behind.
    let stop = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
         {runuser} {pg_ctl} -D {data} -m immediate stop; rm -rf {dir}",
        pid = std::process::id(),
        runuser = if running_as_root() {
            "runuser -u postgres --"
        } else {
            ""
        },
        pg_ctl = pg_ctl.display(),
        data = data.display(),
        dir = dir.display(),
    );
    let watchdog = Command::new("setsid")
        .args(["--fork", "sh", "-c", &stop])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("failed to start the cluster's watchdog");
    assert!(
        watchdog.success(),
        "the cluster's watchdog did not start: {watchdog}"
    );

    if running_as_root() {
        run(
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir),
            "chown of the cluster directory",
        );
    }
    run(
        pg_command(&bin.join("initdb")).arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "--no-locale",
            "-E",
            "UTF8",
            "--no-sync",
        ]),
        "initdb",
    );

    let log = dir.join("postgres.log");
    for _ in 0..5 {
        let port = free_port();
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {dir} -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=200",
            dir = dir.display()
        );
        let started = pg_command(&pg_ctl)
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "30", "-o", &options, "start"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if started {
            return format!("postgres://postgres@127.0.0.1:{port}/postgres");
        }
    }
    panic!(
        "the throwaway Postgres cluster did not start; its log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

/// A fresh, empty database on the test server.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    server_url: String,
    external: bool,
}

impl TestDatabase {
    pub async fn create() -> Self {
        let server = pg_server();
        let name = format!("kiln_test_{}", Uuid::new_v4().simple());
        let mut connection = PgConnection::connect(&server.url)
            .await
            .expect("failed to connect to the test Postgres");
        connection
            .execute(AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
            .await
            .expect("failed to create the test database");
        let _ = connection.close().await;
        let mut url = url::Url::parse(&server.url).expect("the test Postgres URL is malformed");
        url.set_path(&name);
        TestDatabase {
            url: url.to_string(),
            name,
            server_url: server.url.clone(),
            external: server.external,
        }
    }
}

impl Drop for TestDatabase {
    /// Drops the database on a server that outlives the tests; a throwaway cluster goes as a whole.
    fn drop(&mut self) {
        if !self.external {
            return;
        }
        let (server_url, name) = (self.server_url.clone(), self.name.clone());
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut connection = PgConnection::connect(&server_url).await.ok()?;
                connection
                    .execute(AssertSqlSafe(format!(
                        r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#
                    )))
                    .await
                    .ok()
            })
        });
        let _ = cleanup.join();
    }
}

// ---- the app under test --------------------------------------------------------------------------

/// A migrated database, a private Redis, and the dashboard's handles on both.
pub struct TestApp {
    pub app: App,
    pub settings: Settings,
    /// A separate pool for the tests' own assertions.
    pub pg: PgPool,
    pub redis: RedisServer,
    pub database: TestDatabase,
}

/// A test app whose origins may be on 127.0.0.1 (the usual local-demo setup).
pub async fn spawn_app() -> TestApp {
    spawn_app_allowing("127.0.0.1/32").await
}

/// A test app whose `KILN_ALLOWED_PRIVATE_NETS` is `nets`.
pub async fn spawn_app_allowing(nets: &str) -> TestApp {
    let database = TestDatabase::create().await;
    let redis = RedisServer::start();
    let settings = Settings {
        database_url: database.url.clone().into(),
        redis_url: redis.url().into(),
        redis_prefix: "kiln:".to_owned(),
        allowed_private_nets: AllowedNets::parse(nets).expect("bad test nets"),
        listen: "127.0.0.1:0".parse().unwrap(),
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

    pub async fn remove(
        &self,
        host: &str,
    ) -> Result<kiln_dashboard::db::DomainRecord, DomainError> {
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
        self.app.store.get_domain(&host_name(host)).await.unwrap()
    }

    /// The hostnames in Redis's domain directory, sorted.
    pub async fn redis_hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = self
            .app
            .store
            .all_domains()
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

    /// Starts `serve` on a free port; it stops when the returned server is dropped.
    pub async fn spawn_server(&self) -> TestServer {
        let application = Application::build(self.settings.clone())
            .await
            .expect("failed to build the application");
        let address = application.address();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(application.run_until(async move {
            let _ = stopped.await;
        }));
        TestServer {
            base: format!("http://{address}"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            _stop: stop,
        }
    }

    /// Runs the `kiln-dashboard` binary against this app's database and Redis.
    pub async fn cli(&self, args: &[&str]) -> CliOutput {
        self.cli_with_env(args, &[("KILN_DATABASE_URL", &self.database.url)])
            .await
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
            .env("KILN_ALLOWED_PRIVATE_NETS", "127.0.0.1/32")
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
    client: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl TestServer {
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
