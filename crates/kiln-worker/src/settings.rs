//! The worker's configuration, read once from `KILN_*` environment variables.

use kiln_core::EgressPolicy;
use kiln_queue::QueueSettings;
use kiln_runtime::env::{VarError, Vars};
use kiln_store::StoreSettings;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::pool::PoolSettings;

pub use kiln_runtime::LogFormat;

/// The Chromium the worker runs unless `KILN_CHROME_PATH` says otherwise (see
/// [`Settings::chrome_path`]).
pub const DEFAULT_CHROME_PATH: &str = "/usr/lib/chromium/chromium-headless-shell";

/// Renders at once per browser unless `KILN_WORKER_TABS_PER_BROWSER` says otherwise. A render
/// mostly waits (for the origin, for the page's scripts and timers), so a two-core machine keeps
/// eight busy: with the headless shell and kept tabs, eight at once used 1.3–1.9 of 2 cores in
/// `scripts/bench-render-cost.sh`, where four left the machine half idle.
pub const DEFAULT_TABS_PER_BROWSER: usize = 8;

/// Renders after which a browser is replaced unless `KILN_WORKER_RECYCLE_AFTER` says otherwise.
/// Replacing a browser discards its kept tabs and their HTTP caches, and its memory is bounded
/// anyway (`KILN_WORKER_RECYCLE_MEMORY_MB`, `KILN_WORKER_RECYCLE_AGE_SECS`):
/// `scripts/bench-render.sh` measures memory over 1,000 renders of one domain with kept tabs.
pub const DEFAULT_RECYCLE_AFTER: u64 = 500;

#[derive(Clone)]
pub struct Settings {
    /// `KILN_REDIS_URL` (default `redis://127.0.0.1:6379`; `redis-cluster://host:port?node=…` for a
    /// Redis Cluster). May carry a password, so `Debug` hides it.
    pub redis_url: String,
    /// `KILN_QUEUE_REDIS_URL` (default: `KILN_REDIS_URL`): the render queues' Redis, a single
    /// server (see [`kiln_queue::queue_redis_url`]). `Debug` hides it too.
    pub queue_redis_url: String,
    /// `KILN_REDIS_PREFIX`: namespace of every Redis key (default `kiln:`).
    pub redis_prefix: String,
    /// `KILN_REDIS_TIMEOUT_MS`: the longest one Redis command may take (default 500).
    pub redis_timeout: Duration,
    /// `KILN_CHROME_PATH`: the Chromium executable (default
    /// `/usr/lib/chromium/chromium-headless-shell`, the binary of Debian's
    /// `chromium-headless-shell`: its `/usr/bin` script runs it as a child instead of replacing
    /// itself, which would put a shell between the worker and the browser). The full browser
    /// (`/usr/bin/chromium`, run with `--headless=new`) works too, at about four times the CPU per
    /// render.
    pub chrome_path: PathBuf,
    /// `KILN_WORKER_BROWSERS`: how many Chromium processes to keep running (default 1).
    pub browsers: usize,
    /// `KILN_WORKER_TABS_PER_BROWSER`: concurrent renders per browser (default 8,
    /// [`DEFAULT_TABS_PER_BROWSER`]). The render queue's consumer takes `browsers ×
    /// tabs_per_browser` jobs at once.
    pub tabs_per_browser: usize,
    /// `KILN_WORKER_WARM_CONCURRENCY`: how many background jobs (cache warming, refreshes of stale
    /// pages) run at once (default 1; 0: this worker takes none). They share the browsers with
    /// bots' renders, so keep it below the number of tabs.
    pub warm_concurrency: usize,
    /// `KILN_WORKER_PARITY_CONCURRENCY`: how many parity checks run at once (default 1; 0: this
    /// worker takes none). Each holds one tab for three page loads, at the warm queue's priority.
    pub parity_concurrency: usize,
    /// `KILN_RENDER_FIDELITY`: `on` (default) writes what a page holds only in the browser's memory
    /// into its snapshot (CSSOM rules, adopted style sheets, form state) and lets its observers of
    /// the viewport see as far as a crawler's tall viewport; `off` serialises the DOM as it stands.
    pub render_fidelity: bool,
    /// `KILN_WORKER_RECYCLE_AFTER`: renders after which a browser is replaced by a fresh process
    /// (default 500, [`DEFAULT_RECYCLE_AFTER`]).
    pub recycle_after: u64,
    /// `KILN_WORKER_RECYCLE_AGE_SECS`: age after which a browser is replaced (default 1800).
    pub recycle_age: Duration,
    /// `KILN_WORKER_RECYCLE_MEMORY_MB`: memory (proportional set size of all its processes) above
    /// which a browser is replaced (default 1536).
    pub recycle_memory_mb: u64,
    /// `KILN_ALLOWED_PRIVATE_NETS`: private networks (with ports, per tenant: `NET[:PORTS][@SCOPE]`,
    /// see `kiln_core::policy`) a tenant's renders may reach anyway, for origins on a private
    /// network (default none). Everything else private, loopback, link-local or otherwise
    /// non-public is refused by the egress proxy, and so are Kiln's own services.
    pub allowed_private_nets: EgressPolicy,
    /// `KILN_PLATFORM_ADDRS`: the deployment's other services (`host:port`), which no render may
    /// reach; the worker adds its admin listener, Redis and its egress proxies by itself.
    pub platform_addrs: String,
    /// `KILN_WORKER_ADMIN_LISTEN`: health endpoints (default `127.0.0.1:9101`; port 0 picks one).
    pub admin_listen: SocketAddr,
    /// `KILN_WORKER_NAME`: the queue consumer's name, unique per process (default
    /// `<hostname>-<pid>-<random>`).
    pub worker_name: String,
    /// `KILN_RENDER_QUIET_MS`: how long the DOM and the network must stay quiet before a page counts
    /// as rendered (default 50).
    pub render_quiet: Duration,
    /// `KILN_WORKER_PROFILE_DIR`: where each browser's temporary profile directory is created
    /// (default: the system's temporary directory).
    pub profile_dir: PathBuf,
    /// `KILN_LOG_FORMAT`: `pretty` (default) or `json`.
    pub log_format: LogFormat,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("redis_url", &redact_url(&self.redis_url))
            .field("queue_redis_url", &redact_url(&self.queue_redis_url))
            .field("redis_prefix", &self.redis_prefix)
            .field("redis_timeout", &self.redis_timeout)
            .field("chrome_path", &self.chrome_path)
            .field("browsers", &self.browsers)
            .field("tabs_per_browser", &self.tabs_per_browser)
            .field("parity_concurrency", &self.parity_concurrency)
            .field("render_fidelity", &self.render_fidelity)
            .field("warm_concurrency", &self.warm_concurrency)
            .field("recycle_after", &self.recycle_after)
            .field("recycle_age", &self.recycle_age)
            .field("recycle_memory_mb", &self.recycle_memory_mb)
            .field("allowed_private_nets", &self.allowed_private_nets)
            .field("admin_listen", &self.admin_listen)
            .field("worker_name", &self.worker_name)
            .field("render_quiet", &self.render_quiet)
            .field("profile_dir", &self.profile_dir)
            .field("log_format", &self.log_format)
            .finish()
    }
}

impl Settings {
    /// Reads the settings from the process environment.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_vars(&Vars::from_env())
    }

    /// Builds settings from any variable source; tests pass a map. Empty values count as unset.
    pub fn from_lookup(
        get: impl Fn(&str) -> anyhow::Result<Option<String>>,
    ) -> anyhow::Result<Self> {
        Self::from_vars(&Vars::try_new(get))
    }

    fn from_vars(vars: &Vars) -> anyhow::Result<Self> {
        let redis_url = vars.or("KILN_REDIS_URL", "redis://127.0.0.1:6379")?;
        if ![
            "redis://",
            "rediss://",
            "redis-cluster://",
            "rediss-cluster://",
        ]
        .iter()
        .any(|scheme| redis_url.starts_with(scheme))
        {
            // The value may carry a password: it is shown redacted.
            return Err(VarError::invalid(
                "KILN_REDIS_URL",
                &redact_url(&redis_url),
                "a redis://, rediss://, redis-cluster:// or rediss-cluster:// URL, \
                 e.g. redis://127.0.0.1:6379",
            )
            .into());
        }
        let queue_redis_url =
            kiln_queue::queue_redis_url(&redis_url, vars.get("KILN_QUEUE_REDIS_URL")?.as_deref())
                .map_err(anyhow::Error::msg)?;
        let worker_name = match vars.get("KILN_WORKER_NAME")? {
            Some(name) => name,
            None => default_worker_name(),
        };
        let profile_dir = match vars.get("KILN_WORKER_PROFILE_DIR")? {
            Some(dir) => PathBuf::from(dir),
            None => std::env::temp_dir(),
        };

        Ok(Settings {
            redis_url,
            queue_redis_url,
            redis_prefix: vars.or("KILN_REDIS_PREFIX", "kiln:")?,
            redis_timeout: vars.duration_ms("KILN_REDIS_TIMEOUT_MS", 500, 1..)?,
            chrome_path: PathBuf::from(vars.or("KILN_CHROME_PATH", DEFAULT_CHROME_PATH)?),
            browsers: vars.number("KILN_WORKER_BROWSERS", 1, 1.., "browsers")?,
            tabs_per_browser: vars.number(
                "KILN_WORKER_TABS_PER_BROWSER",
                DEFAULT_TABS_PER_BROWSER,
                1..,
                "tabs",
            )?,
            // Unlike the other counts, zero is meaningful here: no warm or parity consumer at all.
            warm_concurrency: vars.number(
                "KILN_WORKER_WARM_CONCURRENCY",
                1,
                ..,
                "jobs (0: none)",
            )?,
            parity_concurrency: vars.number(
                "KILN_WORKER_PARITY_CONCURRENCY",
                1,
                ..,
                "checks (0: none)",
            )?,
            render_fidelity: vars.switch("KILN_RENDER_FIDELITY", true)?,
            recycle_after: vars.number(
                "KILN_WORKER_RECYCLE_AFTER",
                DEFAULT_RECYCLE_AFTER,
                1..,
                "renders",
            )?,
            recycle_age: Duration::from_secs(vars.number(
                "KILN_WORKER_RECYCLE_AGE_SECS",
                1800,
                1..,
                "seconds",
            )?),
            recycle_memory_mb: vars.number(
                "KILN_WORKER_RECYCLE_MEMORY_MB",
                1536,
                1..,
                "megabytes",
            )?,
            allowed_private_nets: vars.allowed_private_nets()?,
            platform_addrs: vars.or("KILN_PLATFORM_ADDRS", "")?,
            admin_listen: vars.addr("KILN_WORKER_ADMIN_LISTEN", "127.0.0.1:9101")?,
            worker_name,
            render_quiet: vars.duration_ms("KILN_RENDER_QUIET_MS", 50, 1..)?,
            profile_dir,
            log_format: vars.log_format()?,
        })
    }

    /// How many jobs the render queue's consumer runs at once: one per tab of every browser.
    pub fn concurrency(&self) -> usize {
        self.browsers.saturating_mul(self.tabs_per_browser).max(1)
    }

    pub fn store_settings(&self) -> StoreSettings {
        let mut settings = StoreSettings::new(self.redis_url.clone(), self.redis_prefix.clone());
        settings.command_timeout = self.redis_timeout;
        settings
    }

    pub fn queue_settings(&self) -> QueueSettings {
        QueueSettings::new(
            &self.queue_redis_url,
            &self.redis_prefix,
            self.redis_timeout,
        )
    }

    pub fn pool_settings(&self) -> PoolSettings {
        PoolSettings {
            chrome_path: self.chrome_path.clone(),
            browsers: self.browsers,
            tabs_per_browser: self.tabs_per_browser,
            recycle_after: self.recycle_after,
            recycle_age: self.recycle_age,
            recycle_memory_mb: self.recycle_memory_mb,
            extra_args: Vec::new(),
            profile_dir: self.profile_dir.clone(),
            devtools_refusals: Default::default(),
            faithful: self.render_fidelity,
        }
    }
}

/// `<hostname>-<pid>-<random>`: unique per process even when several workers share a host (or a
/// container image reuses pids), as the queue requires.
fn default_worker_name() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_owned());
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &random[..8])
}

/// The URL with any password replaced, for logs and `Debug` output.
fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => raw.to_owned(),
        Err(_) => "<unparseable>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(vars: &[(&str, &str)]) -> anyhow::Result<Settings> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|name| Ok(map.get(name).cloned()))
    }

    #[test]
    fn defaults() {
        let s = from(&[]).unwrap();
        assert_eq!(s.redis_url, "redis://127.0.0.1:6379");
        assert_eq!(s.redis_prefix, "kiln:");
        assert_eq!(s.redis_timeout, Duration::from_millis(500));
        assert_eq!(
            s.chrome_path,
            PathBuf::from("/usr/lib/chromium/chromium-headless-shell")
        );
        assert_eq!((s.browsers, s.tabs_per_browser, s.concurrency()), (1, 8, 8));
        assert_eq!(s.warm_concurrency, 1);
        assert_eq!(s.recycle_after, DEFAULT_RECYCLE_AFTER);
        assert_eq!(s.admin_listen, "127.0.0.1:9101".parse().unwrap());
        assert_eq!(s.render_quiet, Duration::from_millis(50));
        assert_eq!(s.log_format, LogFormat::Pretty);
        assert!(s.worker_name.contains(&format!("-{}-", std::process::id())));
    }

    #[test]
    fn zero_warm_concurrency_turns_the_warm_consumer_off() {
        assert_eq!(
            from(&[("KILN_WORKER_WARM_CONCURRENCY", "0")])
                .unwrap()
                .warm_concurrency,
            0
        );
    }

    #[test]
    fn default_worker_names_are_unique() {
        assert_ne!(
            from(&[]).unwrap().worker_name,
            from(&[]).unwrap().worker_name
        );
    }

    #[test]
    fn overrides() {
        let s = from(&[
            ("KILN_REDIS_URL", "redis://:secret@10.0.0.5:6380/2"),
            ("KILN_REDIS_PREFIX", "t1:"),
            ("KILN_REDIS_TIMEOUT_MS", "75"),
            ("KILN_CHROME_PATH", "/opt/chrome/chrome"),
            ("KILN_WORKER_BROWSERS", "3"),
            ("KILN_WORKER_TABS_PER_BROWSER", "2"),
            ("KILN_WORKER_WARM_CONCURRENCY", "3"),
            ("KILN_WORKER_RECYCLE_AFTER", "7"),
            ("KILN_WORKER_RECYCLE_AGE_SECS", "90"),
            ("KILN_WORKER_RECYCLE_MEMORY_MB", "800"),
            (
                "KILN_ALLOWED_PRIVATE_NETS",
                "10.0.0.0/8@*, 127.0.0.1:5173@t-1",
            ),
            ("KILN_PLATFORM_ADDRS", "10.0.0.7:5432"),
            ("KILN_WORKER_ADMIN_LISTEN", "0.0.0.0:0"),
            ("KILN_WORKER_NAME", "w-1"),
            ("KILN_RENDER_QUIET_MS", "120"),
            ("KILN_WORKER_PROFILE_DIR", "/var/tmp/kiln"),
            ("KILN_LOG_FORMAT", "json"),
        ])
        .unwrap();
        assert_eq!(s.redis_prefix, "t1:");
        assert_eq!(s.redis_timeout, Duration::from_millis(75));
        assert_eq!(s.chrome_path, PathBuf::from("/opt/chrome/chrome"));
        assert_eq!((s.browsers, s.tabs_per_browser, s.concurrency()), (3, 2, 6));
        assert_eq!(s.warm_concurrency, 3);
        assert_eq!(s.recycle_after, 7);
        assert_eq!(s.recycle_age, Duration::from_secs(90));
        assert_eq!(s.recycle_memory_mb, 800);
        let t1 = s.allowed_private_nets.for_tenant(Some("t-1"));
        assert!(t1.permits("10.1.2.3:80".parse().unwrap()));
        assert!(t1.permits("127.0.0.1:5173".parse().unwrap()));
        assert!(!t1.permits("127.0.0.2:5173".parse().unwrap()));
        assert!(
            !s.allowed_private_nets
                .permits("127.0.0.1:5173".parse().unwrap())
        );
        assert_eq!(s.platform_addrs, "10.0.0.7:5432");
        assert_eq!(s.admin_listen.port(), 0);
        assert_eq!(s.worker_name, "w-1");
        assert_eq!(s.render_quiet, Duration::from_millis(120));
        assert_eq!(s.profile_dir, PathBuf::from("/var/tmp/kiln"));
        assert_eq!(s.log_format, LogFormat::Json);
        let debug = format!("{s:?}");
        assert!(!debug.contains("secret"), "{debug}");
        assert!(debug.contains("10.0.0.5"), "{debug}");
    }

    #[test]
    fn a_cache_on_a_redis_cluster_keeps_the_queues_on_a_single_redis() {
        let s = from(&[]).unwrap();
        assert_eq!(
            s.queue_redis_url, s.redis_url,
            "the queues default to the cache's Redis"
        );
        let cluster = "redis-cluster://:secret@10.0.0.5:7000?node=10.0.0.6:7000";
        let error = from(&[("KILN_REDIS_URL", cluster)]).unwrap_err();
        assert!(
            format!("{error:#}").contains("KILN_QUEUE_REDIS_URL"),
            "{error:#}"
        );
        let s = from(&[
            ("KILN_REDIS_URL", cluster),
            ("KILN_QUEUE_REDIS_URL", "redis://:secret@10.0.0.7:6379"),
        ])
        .unwrap();
        assert_eq!(s.store_settings().url, cluster);
        assert_eq!(
            s.queue_settings().redis_url,
            "redis://:secret@10.0.0.7:6379"
        );
        let debug = format!("{s:?}");
        assert!(!debug.contains("secret"), "{debug}");
    }

    #[test]
    fn rejects_bad_values_with_the_variable_name() {
        let cases = [
            ("KILN_WORKER_BROWSERS", "0"),
            ("KILN_WORKER_BROWSERS", "two"),
            ("KILN_WORKER_TABS_PER_BROWSER", "-1"),
            ("KILN_WORKER_WARM_CONCURRENCY", "-1"),
            ("KILN_WORKER_WARM_CONCURRENCY", "some"),
            ("KILN_WORKER_RECYCLE_AFTER", "0"),
            ("KILN_WORKER_RECYCLE_AGE_SECS", "soon"),
            ("KILN_WORKER_RECYCLE_MEMORY_MB", "0"),
            ("KILN_ALLOWED_PRIVATE_NETS", "lan"),
            ("KILN_REDIS_TIMEOUT_MS", "fast"),
            ("KILN_RENDER_QUIET_MS", "0"),
            ("KILN_WORKER_ADMIN_LISTEN", "localhost"),
            ("KILN_LOG_FORMAT", "xml"),
            ("KILN_REDIS_URL", "http://127.0.0.1:6379"),
            ("KILN_QUEUE_REDIS_URL", "redis-cluster://10.0.0.5:7000"),
        ];
        for (name, value) in cases {
            let error = from(&[(name, value)]).expect_err(name);
            assert!(
                format!("{error:#}").contains(name),
                "{name}={value}: {error:#}"
            );
        }
    }
}
