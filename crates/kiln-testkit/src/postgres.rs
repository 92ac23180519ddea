//! Real Postgres for tests: a fresh database per test.
//!
//! If `KILN_TEST_DATABASE_URL` names a server (e.g. `postgres://postgres@127.0.0.1:5433/postgres`, a
//! role allowed to create databases), each test creates a fresh database there and drops it at the
//! end. Otherwise the first test in the process starts a throwaway cluster (`initdb` + `pg_ctl` from
//! the newest `/usr/lib/postgresql/*/bin`, as the `postgres` user when running as root, because
//! Postgres refuses to run as root) in a temporary directory on a free port. The cluster is shared by
//! the tests of the process; a detached watchdog stops it and deletes its directory once the process
//! has exited. (nextest runs every test in its own process, so there each test has its own cluster:
//! about a second of start-up.)

use crate::free_port;
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use uuid::Uuid;

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
    Cluster::start().url
}

/// A throwaway cluster's files and how to start it.
struct Cluster {
    pg_ctl: PathBuf,
    data: PathBuf,
    log: PathBuf,
    options: String,
    url: String,
}

impl Cluster {
    /// Creates a cluster in a temporary directory and starts it on a free port. It is stopped and
    /// its directory deleted once this process has exited, however it ends.
    fn start() -> Cluster {
        let bin = postgres_bin();
        let dir = std::env::temp_dir().join(format!(
            "kiln-dashboard-pg-{}-{}",
            std::process::id(),
            Uuid::new_v4().simple()
        ));
        let data = dir.join("data");
        let pg_ctl = bin.join("pg_ctl");
        std::fs::create_dir_all(&dir).expect("failed to create the cluster directory");
        // `setsid --fork` puts the watchdog in its own session, so a runner that kills our process
        // group does not take it along, and returns at once, so it leaves no zombie behind.
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
            let mut cluster = Cluster {
                pg_ctl: pg_ctl.clone(),
                data: data.clone(),
                log: log.clone(),
                options: format!(
                    "-c listen_addresses=127.0.0.1 -p {port} -k {dir} -c fsync=off \
                     -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
                    dir = dir.display()
                ),
                url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            };
            if cluster.launch() {
                return cluster;
            }
            cluster.url.clear();
        }
        panic!(
            "the throwaway Postgres cluster did not start; its log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Starts the server; false if it did not come up (its port was taken, say).
    fn launch(&self) -> bool {
        pg_command(&self.pg_ctl)
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .args(["-w", "-t", "30", "-o", &self.options, "start"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }
}

/// A Postgres server of a test's own, which the test may stop (as an outage would: every connection
/// dropped) and start again on the same port.
pub struct TestPostgres {
    cluster: Cluster,
}

impl TestPostgres {
    pub fn start() -> Self {
        TestPostgres {
            cluster: Cluster::start(),
        }
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> &str {
        &self.cluster.url
    }

    /// Stops the server, disconnecting every client (`pg_ctl stop -m fast`; not `immediate`, which
    /// with these test clusters' asynchronous commits would also lose the last transactions).
    pub fn stop(&self) {
        run(
            pg_command(&self.cluster.pg_ctl)
                .arg("-D")
                .arg(&self.cluster.data)
                .args(["-m", "fast", "-w", "stop"]),
            "pg_ctl stop",
        );
    }

    /// Starts the stopped server again, on the same port.
    pub fn start_again(&self) {
        assert!(
            self.cluster.launch(),
            "Postgres did not start again; its log:\n{}",
            std::fs::read_to_string(&self.cluster.log).unwrap_or_default()
        );
    }
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

impl TestDatabase {
    /// An existing database (of a [`TestPostgres`], say), left as it is when dropped.
    pub fn existing(url: &str) -> Self {
        TestDatabase {
            name: String::new(),
            url: url.to_owned(),
            server_url: url.to_owned(),
            external: false,
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
