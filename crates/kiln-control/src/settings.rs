//! The dashboard's configuration, read once from `KILN_*` environment variables in `main`.
//!
//! Nothing else in the crate reads the environment: tests build a [`Settings`] directly, or feed
//! [`Settings::from_lookup`] a table of variables.

use anyhow::Context;
use kiln_core::{AllowedNets, EgressPolicy, Hostname};
use kiln_runtime::env::{VarError, Vars};
pub use kiln_store::RenderBudget;
use secrecy::{ExposeSecret, SecretString};
use std::net::SocketAddr;
use std::time::Duration;
use url::Url;

/// Everything the dashboard needs to know about its surroundings.
///
/// `Debug` is safe to log: both URLs are secrets (they may carry passwords) and print as `[REDACTED]`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `KILN_DATABASE_URL` (required): the Postgres database that is the source of truth,
    /// e.g. `postgres://kiln:secret@127.0.0.1:5432/kiln`.
    pub database_url: SecretString,
    /// `KILN_REDIS_URL` (default `redis://127.0.0.1:6379`): where gateways read the domain directory;
    /// `redis-cluster://host:port?node=host:port…` for a Redis Cluster.
    pub redis_url: SecretString,
    /// `KILN_QUEUE_REDIS_URL` (default: `KILN_REDIS_URL`): the render queues' Redis (warms and
    /// previews are queued there), a single server (see [`kiln_queue::queue_redis_url`]).
    pub queue_redis_url: SecretString,
    /// `KILN_REDIS_PREFIX` (default `kiln:`): prepended to every Redis key; must match the gateways'.
    pub redis_prefix: String,
    /// `KILN_ALLOWED_PRIVATE_NETS` (default empty): non-public networks an origin may resolve to,
    /// with their ports and whom they are granted to (`NET[:PORTS][@SCOPE]`, see
    /// `kiln_core::policy`), e.g. `127.0.0.1:5173` for the operator's local demo origin.
    pub allowed_private_nets: EgressPolicy,
    /// `KILN_PLATFORM_ADDRS` (default empty): the deployment's other services (`host:port`: the
    /// gateways, workers' admin ports, …), which no origin may be; the dashboard adds its own
    /// listeners, Redis and Postgres by itself.
    pub platform_addrs: String,
    /// `KILN_DASHBOARD_LISTEN` (default `127.0.0.1:3001`): the address `serve` listens on.
    pub listen: SocketAddr,
    /// `KILN_DASHBOARD_ADMIN_LISTEN` (default `127.0.0.1:9102`): where `serve` answers `/metrics`,
    /// `/healthz` and `/readyz` for the operator's monitoring, apart from users' traffic. `off`:
    /// no admin port (the main port still answers `/healthz` and `/readyz`).
    pub admin_listen: Option<SocketAddr>,
    /// `KILN_SESSION_SECRET` (required by `serve`): the key that signs session tokens (HS256), at
    /// least 32 characters; generate one with `openssl rand -base64 48`. Changing it logs everyone out.
    pub session_secret: Option<SecretString>,
    /// `KILN_SESSION_TTL_SECS` (default 1800): how long a session token lives. Tokens are renewed
    /// while in use, so this is the idle time after which a user must log in again.
    pub session_ttl: Duration,
    /// `KILN_DASHBOARD_PUBLIC_URL` (default `http://` + the listen address): where users reach the
    /// dashboard. With `https://`, session cookies are marked `Secure`. Its host, and every name
    /// under it, can never be registered as a domain (see the `hostnames` module).
    pub public_url: Url,
    /// `KILN_CNAME_TARGET` (e.g. `edge.kiln.example.com`): the hostname customers point their
    /// domains' CNAME records at. Unset, domains can only be verified with a TXT record. It, and
    /// every name under it, can never be registered as a domain.
    pub cname_target: Option<Hostname>,
    /// `KILN_SERVICE_HOST` (default `render.localhost`): the hostname at which customers' own
    /// servers (prerender-node, rendertron-middleware, …) reach the gateways' render service, as
    /// the service tokens page shows it; set it as the gateways have it. It, and every name under
    /// it, can never be registered as a domain. `off` (as for the gateways): no render service.
    pub service_host: Option<Hostname>,
    /// `KILN_DNS_SERVER` (default: the system resolver): the DNS server (`ip:port`) that domain
    /// verification asks.
    pub dns_server: Option<SocketAddr>,
    /// `KILN_TRUSTED_PROXIES` (default empty): CIDRs of reverse proxies in front of the dashboard
    /// whose `X-Forwarded-For` is believed when rate-limiting by client address.
    pub trusted_proxies: AllowedNets,
    /// `KILN_API_RATE_PER_SECOND` (default 10; 0 turns the limit off): REST API requests a second
    /// allowed per API key and per logged-in user, after a burst of `KILN_API_RATE_BURST`.
    pub api_rate_per_second: u32,
    /// `KILN_API_RATE_BURST` (default 100): requests an API key or user may make at once.
    pub api_rate_burst: u32,
    /// `KILN_TENANT_MAX_RENDERS` (default 16) and `KILN_TENANT_RENDERS_PER_MINUTE` (default 600;
    /// `0`: no limit), the gateways' tenant render budget: a parity check holds a place in it
    /// while it is queued or running, and is refused (`429`) when the tenant has none free. Set
    /// them as the gateways have them.
    pub render_budget: RenderBudget,
    /// `KILN_RENDER_LOG_RETENTION_DAYS` (default 30, 1 to 3650): how many days of the render log
    /// (`renders`, every render with its URL, outcome and bot) `serve` keeps; older renders are
    /// deleted a batch at a time. The Activity page's charts and the usage API keep counting them
    /// (from the roll-ups, whose days are kept for good and hours 35 days), but the list of
    /// renders, and its filters, go back only this far.
    pub render_log_retention_days: u32,
    /// `KILN_LOG_FORMAT` (`pretty` or `json`, default `pretty`): how logs are written to stderr.
    pub log_format: LogFormat,
    /// `RUST_LOG` (default `info,sqlx=warn`): which logs are written, in `tracing_subscriber::EnvFilter`
    /// syntax.
    pub log_filter: String,
}

pub use kiln_runtime::LogFormat;

pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
pub const DEFAULT_REDIS_PREFIX: &str = "kiln:";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:3001";
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9102";
pub const DEFAULT_SESSION_TTL_SECS: u64 = 1800;
pub const DEFAULT_API_RATE_PER_SECOND: u32 = 10;
pub const DEFAULT_API_RATE_BURST: u32 = 100;
pub const DEFAULT_RENDER_LOG_RETENTION_DAYS: u32 = 30;
/// The longest render log retention accepted: ten years.
pub const MAX_RENDER_LOG_RETENTION_DAYS: u32 = 3650;
pub use kiln_runtime::env::DEFAULT_SERVICE_HOST;
/// The shortest session secret accepted: 256 bits of base64 or hex text.
pub const MIN_SESSION_SECRET_LEN: usize = 32;
/// sqlx logs "relation already exists, skipping" notices at `info` on every migration run: noise.
pub const DEFAULT_LOG_FILTER: &str = "info,sqlx=warn";

impl Settings {
    /// Reads the settings from the process environment.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_vars(&Vars::from_env())
    }

    /// Reads the settings through `lookup`, which returns a variable's value if it is set. Empty values
    /// count as unset, so `KILN_REDIS_URL=` in an env file means "use the default".
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        Self::from_vars(&Vars::new(lookup))
    }

    fn from_vars(vars: &Vars) -> anyhow::Result<Self> {
        let database_url = vars.required(
            "KILN_DATABASE_URL",
            "point it at the Postgres database, e.g. postgres://kiln:secret@127.0.0.1:5432/kiln",
        )?;
        let redis_url = vars.or("KILN_REDIS_URL", DEFAULT_REDIS_URL)?;
        let queue_redis_url =
            kiln_queue::queue_redis_url(&redis_url, vars.get("KILN_QUEUE_REDIS_URL")?.as_deref())
                .map_err(anyhow::Error::msg)?;
        let listen = vars.addr("KILN_DASHBOARD_LISTEN", DEFAULT_LISTEN)?;
        let session_secret = vars
            .secret("KILN_SESSION_SECRET", MIN_SESSION_SECRET_LEN)?
            // Sessions have always been signed with the value trimmed: kept so, so that nobody is
            // logged out by an upgrade.
            .map(|secret| SecretString::from(secret.expose_secret().trim()));
        let public_url = match vars.get("KILN_DASHBOARD_PUBLIC_URL")? {
            None => Url::parse(&format!("http://{listen}"))
                .context("the listen address is not a URL host")?,
            Some(value) => match Url::parse(&value) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => url,
                _ => {
                    return Err(VarError::invalid(
                        "KILN_DASHBOARD_PUBLIC_URL",
                        &value,
                        "an http(s) URL, e.g. https://kiln.example.com",
                    )
                    .into());
                }
            },
        };
        let service_host = vars.service_host()?;
        let rate =
            |name: &str, default: u32, min: u32| vars.number(name, default, min..=1_000_000, "");

        Ok(Settings {
            database_url: database_url.into(),
            redis_url: redis_url.into(),
            queue_redis_url: queue_redis_url.into(),
            redis_prefix: vars.or("KILN_REDIS_PREFIX", DEFAULT_REDIS_PREFIX)?,
            allowed_private_nets: vars.allowed_private_nets()?,
            platform_addrs: vars.or("KILN_PLATFORM_ADDRS", "")?,
            listen,
            admin_listen: vars.addr_or_off("KILN_DASHBOARD_ADMIN_LISTEN", DEFAULT_ADMIN_LISTEN)?,
            session_secret,
            session_ttl: Duration::from_secs(vars.number(
                "KILN_SESSION_TTL_SECS",
                DEFAULT_SESSION_TTL_SECS,
                60..=86_400,
                "seconds",
            )?),
            public_url,
            cname_target: vars.parse_with(
                "KILN_CNAME_TARGET",
                "a hostname, e.g. edge.kiln.example.com",
                Hostname::parse,
            )?,
            service_host,
            dns_server: vars.parse(
                "KILN_DNS_SERVER",
                "an IP address and port, e.g. 127.0.0.1:53",
            )?,
            trusted_proxies: vars
                .parse_with(
                    "KILN_TRUSTED_PROXIES",
                    "a list of CIDR networks, e.g. 10.0.0.0/8, fd00::/8",
                    AllowedNets::parse,
                )?
                .unwrap_or_default(),
            api_rate_per_second: rate("KILN_API_RATE_PER_SECOND", DEFAULT_API_RATE_PER_SECOND, 0)?,
            api_rate_burst: rate("KILN_API_RATE_BURST", DEFAULT_API_RATE_BURST, 1)?,
            render_budget: RenderBudget::from_vars(vars)?,
            render_log_retention_days: vars.number(
                "KILN_RENDER_LOG_RETENTION_DAYS",
                DEFAULT_RENDER_LOG_RETENTION_DAYS,
                1..=MAX_RENDER_LOG_RETENTION_DAYS,
                "days",
            )?,
            log_format: vars.log_format()?,
            log_filter: vars.or("RUST_LOG", DEFAULT_LOG_FILTER)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use std::collections::HashMap;

    fn from(vars: &[(&str, &str)]) -> anyhow::Result<Settings> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_apply_when_only_the_database_is_given() {
        let settings = from(&[("KILN_DATABASE_URL", "postgres://kiln:hunter2@db/kiln")]).unwrap();
        assert_eq!(
            settings.database_url.expose_secret(),
            "postgres://kiln:hunter2@db/kiln"
        );
        assert_eq!(settings.redis_url.expose_secret(), DEFAULT_REDIS_URL);
        assert_eq!(settings.redis_prefix, "kiln:");
        assert_eq!(settings.allowed_private_nets, EgressPolicy::default());
        assert_eq!(settings.listen, "127.0.0.1:3001".parse().unwrap());
        assert_eq!(settings.log_format, LogFormat::Pretty);
        assert_eq!(
            (settings.api_rate_per_second, settings.api_rate_burst),
            (DEFAULT_API_RATE_PER_SECOND, DEFAULT_API_RATE_BURST)
        );
        assert_eq!(settings.render_budget, RenderBudget::DEFAULT);
        assert_eq!(
            settings.service_host.as_ref().map(Hostname::as_str),
            Some(DEFAULT_SERVICE_HOST)
        );
        assert_eq!(settings.render_log_retention_days, 30);
    }

    #[test]
    fn every_variable_is_read() {
        let settings = from(&[
            ("KILN_DATABASE_URL", "postgres://db/kiln"),
            ("KILN_REDIS_URL", "redis://cache:6380"),
            ("KILN_REDIS_PREFIX", "staging:"),
            ("KILN_ALLOWED_PRIVATE_NETS", "127.0.0.1:5173, 10.0.0.0/8@*"),
            ("KILN_PLATFORM_ADDRS", "10.0.0.7:5432"),
            ("KILN_DASHBOARD_LISTEN", "0.0.0.0:8080"),
            ("KILN_LOG_FORMAT", "json"),
            ("KILN_API_RATE_PER_SECOND", "0"),
            ("KILN_API_RATE_BURST", "7"),
            ("KILN_TENANT_MAX_RENDERS", "3"),
            ("KILN_TENANT_RENDERS_PER_MINUTE", "0"),
            ("KILN_SERVICE_HOST", "Render.Kiln.Example.com"),
            ("KILN_RENDER_LOG_RETENTION_DAYS", "400"),
        ])
        .unwrap();
        assert_eq!(settings.render_log_retention_days, 400);
        assert_eq!(
            settings.service_host.as_ref().map(Hostname::as_str),
            Some("render.kiln.example.com")
        );
        assert_eq!(
            settings.render_budget,
            RenderBudget {
                concurrent: 3,
                per_minute: 0
            }
        );
        assert_eq!(
            (settings.api_rate_per_second, settings.api_rate_burst),
            (0, 7)
        );
        assert_eq!(settings.redis_url.expose_secret(), "redis://cache:6380");
        assert_eq!(
            settings.queue_redis_url.expose_secret(),
            "redis://cache:6380",
            "the queues default to the cache's Redis"
        );
        assert_eq!(settings.redis_prefix, "staging:");
        let policy = &settings.allowed_private_nets;
        assert!(policy.permits("10.1.2.3:80".parse().unwrap()));
        assert!(!policy.permits("192.168.0.1:80".parse().unwrap()));
        assert!(
            !policy.permits("127.0.0.1:5173".parse().unwrap()),
            "the operator's only"
        );
        assert_eq!(settings.platform_addrs, "10.0.0.7:5432");
        assert_eq!(settings.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(settings.log_format, LogFormat::Json);
    }

    #[test]
    fn mistakes_are_named() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[], "KILN_DATABASE_URL is not set"),
            (
                &[("KILN_DATABASE_URL", "  ")],
                "KILN_DATABASE_URL is not set",
            ),
            (
                &[
                    ("KILN_DATABASE_URL", "postgres://db"),
                    ("KILN_ALLOWED_PRIVATE_NETS", "lan"),
                ],
                "KILN_ALLOWED_PRIVATE_NETS",
            ),
            (
                &[
                    ("KILN_DATABASE_URL", "postgres://db"),
                    ("KILN_DASHBOARD_LISTEN", "localhost"),
                ],
                "KILN_DASHBOARD_LISTEN",
            ),
            (
                &[
                    ("KILN_DATABASE_URL", "postgres://db"),
                    ("KILN_LOG_FORMAT", "xml"),
                ],
                "KILN_LOG_FORMAT `xml`",
            ),
            (
                &[
                    ("KILN_DATABASE_URL", "postgres://db"),
                    ("KILN_API_RATE_BURST", "0"),
                ],
                "KILN_API_RATE_BURST `0` is not a whole number between 1",
            ),
            (
                &[
                    ("KILN_DATABASE_URL", "postgres://db"),
                    ("KILN_API_RATE_PER_SECOND", "fast"),
                ],
                "KILN_API_RATE_PER_SECOND `fast`",
            ),
            (
                &[
                    ("KILN_DATABASE_URL", "postgres://db"),
                    ("KILN_SERVICE_HOST", "https://render.example.com"),
                ],
                "KILN_SERVICE_HOST `https://render.example.com`",
            ),
            (
                &[
                    ("KILN_DATABASE_URL", "postgres://db"),
                    ("KILN_TENANT_MAX_RENDERS", "many"),
                ],
                "KILN_TENANT_MAX_RENDERS `many`",
            ),
            (
                &[
                    ("KILN_DATABASE_URL", "postgres://db"),
                    ("KILN_REDIS_URL", "redis-cluster://cache:7000"),
                ],
                "set KILN_QUEUE_REDIS_URL to a single Redis",
            ),
            (
                &[
                    ("KILN_DATABASE_URL", "postgres://db"),
                    ("KILN_RENDER_LOG_RETENTION_DAYS", "0"),
                ],
                "KILN_RENDER_LOG_RETENTION_DAYS `0` is not a whole number of days between 1 and \
                 3650, e.g. 30",
            ),
            (
                &[
                    ("KILN_DATABASE_URL", "postgres://db"),
                    ("KILN_RENDER_LOG_RETENTION_DAYS", "30d"),
                ],
                "KILN_RENDER_LOG_RETENTION_DAYS `30d` is not a whole number of days",
            ),
            (
                &[
                    ("KILN_DATABASE_URL", "postgres://db"),
                    ("KILN_RENDER_LOG_RETENTION_DAYS", "3651"),
                ],
                "KILN_RENDER_LOG_RETENTION_DAYS `3651`",
            ),
        ];
        for (vars, expected) in cases {
            let error = format!("{:#}", from(vars).unwrap_err());
            assert!(error.contains(expected), "{vars:?}: {error}");
        }
    }

    #[test]
    fn a_cache_on_a_redis_cluster_keeps_the_queues_on_a_single_redis() {
        let settings = from(&[
            ("KILN_DATABASE_URL", "postgres://db/kiln"),
            (
                "KILN_REDIS_URL",
                "redis-cluster://cache:7000?node=cache2:7000",
            ),
            ("KILN_QUEUE_REDIS_URL", "redis://queue:6379"),
        ])
        .unwrap();
        assert_eq!(
            settings.redis_url.expose_secret(),
            "redis-cluster://cache:7000?node=cache2:7000"
        );
        assert_eq!(
            settings.queue_redis_url.expose_secret(),
            "redis://queue:6379"
        );
    }

    #[test]
    fn debug_output_hides_the_urls() {
        let settings = from(&[
            ("KILN_DATABASE_URL", "postgres://kiln:hunter2@db/kiln"),
            ("KILN_REDIS_URL", "redis://:sesame@cache"),
        ])
        .unwrap();
        let debug = format!("{settings:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("sesame"),
            "{debug}"
        );
    }
}
