//! Real infrastructure for tests: throwaway `redis-server` processes (one server, or a three-node
//! Redis Cluster) and nginx edges on free loopback ports, each stopped when its handle is dropped.
//! Nothing here is a mock; tests talk to the same programs production runs.
//!
//! Architecture invariant: used only as a dev-dependency (and by benchmarks).

pub mod corpus;
pub mod dns;
pub mod fuzzing;
pub mod logs;
pub mod pebble;
pub mod postgres;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The flags a test's own Chromium needs here: headless, as root (no sandbox), and never reaching
/// for the internet at start.
pub const CHROMIUM_TEST_FLAGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// A free TCP port on 127.0.0.1 (free at the time of asking).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}

/// A Redis key prefix no other test uses, so tests can share one Redis if they want to.
pub fn unique_prefix() -> String {
    format!("kt{}:", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// Waits until something accepts connections on `port`, or panics after `timeout`.
pub fn wait_for_port(port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listened on 127.0.0.1:{port} within {timeout:?}");
}

/// Waits until the service whose admin server listens on `admin_port` answers `GET /readyz` with a
/// success, as a load balancer would before sending it traffic; panics after `timeout`. `client` is
/// the test's own (no proxy).
pub async fn wait_until_ready(client: &reqwest::Client, admin_port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let ready = client
            .get(format!("http://127.0.0.1:{admin_port}/readyz"))
            .send()
            .await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the service on admin port {admin_port} was not ready within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Finds a program on PATH or in the usual system locations, with a clear message when it is missing.
pub fn program(name: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from));
    dirs.iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("`{name}` is not installed; run the README's test command, which installs it")
        })
}

/// A private `redis-server` with no persistence.
pub struct TestRedis {
    port: u16,
    child: Option<Child>,
}

impl TestRedis {
    pub fn start() -> Self {
        // A port is only free when asked: if another process takes it first, try another.
        for _ in 0..5 {
            let mut server = TestRedis {
                port: free_port(),
                child: None,
            };
            if server.spawn() {
                return server;
            }
        }
        panic!("redis-server did not start on any of five free ports");
    }

    /// Starts redis-server on `self.port`; false if it exited (the port was taken) or never listened.
    fn spawn(&mut self) -> bool {
        self.child = spawn_redis(self.port, &[]);
        self.child.is_some()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs `redis-cli` against this server with `args` and returns what it printed; panics if it
    /// fails.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = Command::new(program("redis-cli"))
            .arg("-p")
            .arg(self.port.to_string())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("failed to run redis-cli");
        assert!(
            output.status.success(),
            "redis-cli {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("redis-cli printed UTF-8")
    }

    /// Kills the server (as a crash would).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty.
    pub fn restart(&mut self) {
        self.stop();
        assert!(
            self.spawn(),
            "redis-server did not restart on port {}",
            self.port
        );
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts a persistence-free redis-server on `port` with `extra` arguments, and waits until it
/// listens; `None` if it exited first (the port was taken) or never listened.
fn spawn_redis(port: u16, extra: &[String]) -> Option<Child> {
    let mut child = Command::new(program("redis-server"))
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("failed to start redis-server");
    let deadline = Instant::now() + Duration::from_secs(10);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return Some(child);
        }
        if matches!(child.try_wait(), Ok(Some(_))) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// A private Redis Cluster: three primaries (`cluster-enabled yes`, no replicas, no persistence)
/// holding the 16384 hash slots between them, on free loopback ports. Every node is stopped, and
/// its directory (where each keeps its `nodes.conf`) removed, when the handle is dropped.
pub struct TestRedisCluster {
    ports: Vec<u16>,
    children: Vec<Child>,
    dir: PathBuf,
}

impl TestRedisCluster {
    /// How many primaries the cluster has.
    pub const PRIMARIES: usize = 3;

    /// Starts the nodes, joins them with `redis-cli --cluster create` and waits until every node
    /// reports `cluster_state:ok` and knows the others.
    pub fn start() -> Self {
        let dir =
            std::env::temp_dir().join(format!("kiln-cluster-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("failed to create the cluster's directory");
        let mut cluster = TestRedisCluster {
            ports: Vec::new(),
            children: Vec::new(),
            dir,
        };
        let mut taken = Vec::new();
        for _ in 0..Self::PRIMARIES {
            let (port, child) = cluster.spawn_node(&mut taken);
            cluster.ports.push(port);
            cluster.children.push(child);
        }
        let nodes: Vec<String> = cluster
            .ports
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        let output = Command::new(program("redis-cli"))
            .arg("--cluster")
            .arg("create")
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("failed to run redis-cli --cluster create");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        cluster.wait_until_ok(Duration::from_secs(20));
        cluster
    }

    /// Starts one node on a free port, with its cluster bus on another (the default, port + 10000,
    /// may be out of range or taken); tries other ports if one was taken meanwhile.
    fn spawn_node(&self, taken: &mut Vec<u16>) -> (u16, Child) {
        let mut fresh = || loop {
            let port = free_port();
            if !taken.contains(&port) {
                taken.push(port);
                break port;
            }
        };
        for _ in 0..5 {
            let (port, bus) = (fresh(), fresh());
            let dir = self.dir.join(port.to_string());
            std::fs::create_dir_all(&dir).expect("failed to create a cluster node's directory");
            let extra = [
                "--cluster-enabled",
                "yes",
                "--cluster-port",
                &bus.to_string(),
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "5000",
                "--dir",
                &dir.display().to_string(),
            ]
            .map(str::to_owned);
            if let Some(child) = spawn_redis(port, &extra) {
                return (port, child);
            }
        }
        panic!("a cluster node did not start on any of five free ports");
    }

    /// Polls `CLUSTER INFO` on every node until each says the cluster is ok, with every slot
    /// assigned and every node known.
    fn wait_until_ok(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < deadline {
            let ready = self.ports.iter().all(|port| {
                let info = Command::new(program("redis-cli"))
                    .args(["-p", &port.to_string(), "cluster", "info"])
                    .stdin(Stdio::null())
                    .output()
                    .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
                    .unwrap_or_default();
                let ok = info.contains("cluster_state:ok")
                    && info.contains("cluster_slots_assigned:16384")
                    && info.contains(&format!("cluster_known_nodes:{}", Self::PRIMARIES));
                last = info;
                ok
            });
            if ready {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the Redis Cluster was not ok within {timeout:?}; last CLUSTER INFO:\n{last}");
    }

    /// The primaries' ports.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// `redis-cluster://127.0.0.1:{first}?node=127.0.0.1:{second}&…`, as a deployment names its
    /// cluster.
    pub fn url(&self) -> String {
        let others: Vec<String> = self.ports[1..]
            .iter()
            .map(|port| format!("node=127.0.0.1:{port}"))
            .collect();
        format!(
            "redis-cluster://127.0.0.1:{}?{}",
            self.ports[0],
            others.join("&")
        )
    }

    /// `redis://127.0.0.1:{port}`: one node on its own, for a test that talks to a given node.
    pub fn node_url(&self, port: u16) -> String {
        format!("redis://127.0.0.1:{port}")
    }
}

impl Drop for TestRedisCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
        }
        for child in &mut self.children {
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The nginx edge from `nginx/kiln.conf.template`, in front of a gateway, listening for HTTP and
/// HTTPS (with the certificates in its certificate directory).
pub struct TestEdge {
    port: u16,
    tls_port: u16,
    child: Child,
    dir: PathBuf,
    cert_dir: PathBuf,
}

impl TestEdge {
    /// Starts nginx on a free port, forwarding to the gateway at `gateway`.
    pub fn start(gateway: SocketAddr) -> Self {
        Self::start_with(&[gateway])
    }

    /// Starts nginx on a free port, balancing over the gateways at `gateways` (as a deployment with
    /// several gateways lists them in its upstream block).
    pub fn start_with(gateways: &[SocketAddr]) -> Self {
        Self::start_with_cert_dir(gateways, None)
    }

    /// Starts nginx on free ports, serving HTTPS with the certificates in `cert_dir` (by default
    /// an empty directory of its own, see [`TestEdge::cert_dir`]).
    pub fn start_with_cert_dir(gateways: &[SocketAddr], cert_dir: Option<&Path>) -> Self {
        assert!(!gateways.is_empty(), "an edge needs a gateway");
        let nginx_dir = repo_root().join("nginx");
        let template = std::fs::read_to_string(nginx_dir.join("kiln.conf.template"))
            .expect("nginx/kiln.conf.template is missing");
        // The upstream's `server ${KILN_GATEWAY_ADDR} …;` line, once per gateway.
        let template = template
            .lines()
            .flat_map(|line| {
                if line.contains("${KILN_GATEWAY_ADDR}") {
                    gateways
                        .iter()
                        .map(|gateway| line.replace("${KILN_GATEWAY_ADDR}", &gateway.to_string()))
                        .collect()
                } else {
                    vec![line.to_owned()]
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("kiln-edge-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("failed to create the edge's runtime directory");
        let tls_port = loop {
            let candidate = free_port();
            if candidate != port {
                break candidate;
            }
        };
        let cert_dir = cert_dir.map_or_else(|| dir.join("certs"), Path::to_path_buf);
        std::fs::create_dir_all(&cert_dir)
            .expect("failed to create the edge's certificate directory");
        let config = render_template(
            &template,
            &[
                ("KILN_EDGE_LISTEN", format!("127.0.0.1:{port}")),
                ("KILN_EDGE_TLS_LISTEN", format!("127.0.0.1:{tls_port}")),
                ("KILN_EDGE_CERT_DIR", cert_dir.display().to_string()),
                ("KILN_NGINX_DIR", nginx_dir.display().to_string()),
                ("KILN_EDGE_RUNTIME_DIR", dir.display().to_string()),
            ],
        );
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config).expect("failed to write nginx.conf");
        let child = Command::new(program("nginx"))
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf)
            .args(["-e", "stderr", "-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("failed to start nginx");
        wait_for_port(port, Duration::from_secs(10));
        wait_for_port(tls_port, Duration::from_secs(10));
        TestEdge {
            port,
            tls_port,
            child,
            dir,
            cert_dir,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The HTTPS port.
    pub fn tls_port(&self) -> u16 {
        self.tls_port
    }

    /// Where the edge reads its certificates from (`{host}.pem`, `_default.pem`).
    pub fn cert_dir(&self) -> &Path {
        &self.cert_dir
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for TestEdge {
    fn drop(&mut self) {
        stop_nginx(&mut self.child, &self.dir);
    }
}

/// Stops an nginx a test started (`child`, its master) and removes its directory `dir`. SIGKILL
/// would take only the master and orphan its workers: this asks for a fast shutdown, in which the
/// master stops its workers, and kills only if that does not happen within 5 s.
pub fn stop_nginx(child: &mut std::process::Child, dir: &Path) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            let _ = std::fs::remove_dir_all(dir);
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(dir);
}

/// Replaces `${NAME}` placeholders, as `envsubst` with an explicit variable list does.
pub fn render_template(template: &str, vars: &[(&str, String)]) -> String {
    vars.iter()
        .fold(template.to_owned(), |text, (name, value)| {
            text.replace(&format!("${{{name}}}"), value)
        })
}

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// The metric names `docs/metrics.md` lists in its sections `sections` (the first column of their
/// tables).
pub fn documented_metrics(sections: &[&str]) -> Vec<String> {
    let doc = std::fs::read_to_string(repo_root().join("docs/metrics.md")).unwrap();
    let mut names = Vec::new();
    let mut inside = false;
    for line in doc.lines() {
        if let Some(title) = line.strip_prefix("## ") {
            inside = sections.contains(&title.trim());
            continue;
        }
        let Some(first_cell) = line.strip_prefix("| `").and_then(|l| l.split(" |").next()) else {
            continue;
        };
        if inside {
            names.extend(
                format!("`{first_cell}")
                    .split('`')
                    .filter(|name| name.starts_with("kiln_") || name.starts_with("process_"))
                    .map(str::to_owned),
            );
        }
    }
    names
}

/// The value of one sample of a Prometheus text exposition, named as written (`name{labels}`), if
/// the text has it.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?.strip_prefix(' ')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Panics naming every metric `docs/metrics.md` lists in `sections` that the exposition `text`
/// has no sample of; returns how many were checked.
pub fn assert_serves_documented_metrics(text: &str, sections: &[&str]) -> usize {
    let documented = documented_metrics(sections);
    let missing: Vec<&String> = documented
        .iter()
        .filter(|name| {
            !text
                .lines()
                .any(|line| !line.starts_with('#') && line.starts_with(name.as_str()))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "documented in docs/metrics.md but not served: {missing:?}\n{text}"
    );
    documented.len()
}
