//! The render service's real clients, run as their users run them: Express apps behind
//! prerender.io's and Rendertron's own Node middlewares (`clients/*.js`, at the versions pinned in
//! `clients/package-lock.json`), and prerender.io's nginx recipe (`clients/nginx-prerender.conf`).
//! Each runs as a child process, stopped when its handle is dropped.
//!
//! The Node packages are installed once per lock file with `npm ci` into
//! `target/tmp/kiln-e2e-clients/<hash of the lock file>`, under a file lock, since nextest runs
//! every test in a process of its own; the apps find them through `NODE_PATH`.

use kiln_testkit::{free_port, render_template, wait_for_port};
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The clients' directory in this repository.
fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients")
}

/// `node` or `npm`, with what to install when it is missing.
fn node_program(name: &str) -> PathBuf {
    let dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    dirs.iter()
        .chain(&[PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not installed: the render-service tests run the real Node clients; \
                 install Debian's `nodejs` and `npm` (apt-get install nodejs npm)"
            )
        })
}

/// FNV-1a: a name for the lock file's contents that stays the same across builds.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The `node_modules` directory with the pinned packages, installed on first use.
fn node_modules() -> &'static Path {
    static INSTALLED: OnceLock<PathBuf> = OnceLock::new();
    INSTALLED.get_or_init(install)
}

fn install() -> PathBuf {
    let source = clients_dir();
    let lock = std::fs::read(source.join("package-lock.json")).expect("clients/package-lock.json");
    let manifest = std::fs::read(source.join("package.json")).expect("clients/package.json");
    let name = format!("{:016x}", fnv1a(&[lock.as_slice(), &manifest].concat()));
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kiln-e2e-clients");
    let dir = root.join(&name);
    let done = dir.join(".installed");
    if done.exists() {
        return dir.join("node_modules");
    }
    std::fs::create_dir_all(&root).expect("the clients' cache directory");
    // One process installs; the others wait for it here, then find it done.
    let lock_file = std::fs::File::create(root.join(format!("{name}.lock"))).expect("lock file");
    lock_file.lock().expect("lock the clients' cache");
    if !done.exists() {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("the clients' install directory");
        for file in ["package.json", "package-lock.json"] {
            std::fs::copy(source.join(file), dir.join(file)).expect("copy the clients' manifest");
        }
        let started = Instant::now();
        let output = Command::new(node_program("npm"))
            .args(["ci", "--no-audit", "--no-fund", "--prefer-offline"])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .output()
            .expect("failed to run npm");
        assert!(
            output.status.success(),
            "npm ci failed ({}):\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::write(&done, "").expect("mark the clients installed");
        eprintln!(
            "installed the render-service clients in {} ({:?})",
            dir.display(),
            started.elapsed()
        );
    }
    dir.join("node_modules")
}

/// One of the customer apps (`prerender-app.js`, `rendertron-app.js`), listening on 127.0.0.1.
pub struct NodeApp {
    pub port: u16,
    child: Child,
}

impl NodeApp {
    /// Starts `clients/<script>` with `env` (its `KILN_*` settings) and waits (30 s at most) until
    /// it says which port it listens on.
    pub fn start(script: &str, env: &[(&str, String)]) -> Self {
        let mut command = Command::new(node_program("node"));
        command
            .arg(clients_dir().join(script))
            .env("NODE_PATH", node_modules())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // rendertron-middleware's `request` would send everything through a proxy named here.
        for proxy in [
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "http_proxy",
            "https_proxy",
            "ALL_PROXY",
        ] {
            command.env_remove(proxy);
        }
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("failed to start node");
        let stdout = child.stdout.take().expect("the app's stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        let name = script.to_owned();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                match line.strip_prefix("listening on ") {
                    Some(port) if tx.is_some() => {
                        let _ = tx.take().unwrap().send(port.trim().parse::<u16>());
                    }
                    _ => eprintln!("[{name}] {line}"),
                }
            }
        });
        let port = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(port)) => port,
            other => {
                let _ = child.kill();
                let status = child.wait();
                panic!("{script} did not start listening: {other:?}, exit {status:?}");
            }
        };
        NodeApp { port, child }
    }
}

impl Drop for NodeApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// prerender.io's nginx recipe, serving the files in `root` on a free port of 127.0.0.1 (and the
/// site's `/api/` from `api`, `host:port`) and sending its bots' requests to the render service
/// at `service` (`host:port`) with `token`, resolving the service's name with the DNS server at
/// `resolver`.
pub struct RecipeNginx {
    pub port: u16,
    child: Child,
    dir: PathBuf,
}

impl RecipeNginx {
    pub fn start(
        root: &Path,
        api: &str,
        service: &str,
        token: &str,
        resolver: std::net::SocketAddr,
    ) -> Self {
        let template = std::fs::read_to_string(clients_dir().join("nginx-prerender.conf"))
            .expect("clients/nginx-prerender.conf");
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("kiln-recipe-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("the recipe's runtime directory");
        // The recipe includes `mime.types` beside its nginx.conf, as in nginx's own layout: a
        // module script served as application/octet-stream would not run in Chromium.
        std::fs::copy("/etc/nginx/mime.types", dir.join("mime.types"))
            .expect("nginx's mime.types (Debian's nginx package)");
        let root = root.canonicalize().expect("the recipe's root");
        let config = render_template(
            &template,
            &[
                ("RUNTIME_DIR", dir.display().to_string()),
                ("LISTEN", format!("127.0.0.1:{port}")),
                ("ROOT", root.display().to_string()),
                ("API", api.to_owned()),
                ("TOKEN", token.to_owned()),
                ("SERVICE", service.to_owned()),
                ("RESOLVER", resolver.to_string()),
            ],
        );
        assert!(
            !config.contains("${"),
            "a placeholder of the recipe was left unfilled"
        );
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config).expect("write the recipe's nginx.conf");
        let child = Command::new(kiln_testkit::program("nginx"))
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
        RecipeNginx { port, child, dir }
    }

    /// What the recipe's nginx logged (its access log), for a failing test's message.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }
}

impl Drop for RecipeNginx {
    fn drop(&mut self) {
        kiln_testkit::stop_nginx(&mut self.child, &self.dir);
    }
}
