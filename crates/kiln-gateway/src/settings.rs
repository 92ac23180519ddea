//! The gateway's configuration, read once from `KILN_*` environment variables.

use anyhow::Context;
use kiln_core::{AllowedNets, CrawlerRanges, EgressPolicy};
use kiln_runtime::LogFormat;
use kiln_runtime::env::{VarError, Vars};
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Settings {
    /// `KILN_GATEWAY_LISTEN`: where the edge sends traffic (default `127.0.0.1:3000`).
    pub listen: SocketAddr,
    /// `KILN_GATEWAY_ADMIN_LISTEN`: health endpoints (default `127.0.0.1:9100`).
    pub admin_listen: SocketAddr,
    /// `KILN_REDIS_URL` (default `redis://127.0.0.1:6379`): the cache, directory, locks and
    /// events; `redis-cluster://host:port?node=host:port…` for a Redis Cluster.
    pub redis_url: String,
    /// `KILN_QUEUE_REDIS_URL` (default: `KILN_REDIS_URL`): the render queue's Redis, which must be
    /// a single server (see [`kiln_queue::queue_redis_url`]).
    pub queue_redis_url: String,
    /// `KILN_REDIS_PREFIX`: namespace of every Redis key (default `kiln:`).
    pub redis_prefix: String,
    /// `KILN_REDIS_TIMEOUT_MS`: the longest one Redis command may take (default 500).
    pub redis_timeout: Duration,
    /// `KILN_ORIGIN_CONNECT_TIMEOUT_MS` (default 5000).
    pub origin_connect_timeout: Duration,
    /// `KILN_ORIGIN_TIMEOUT_MS`: the longest an origin may take to start answering (default 30000).
    pub origin_response_timeout: Duration,
    /// `KILN_GATEWAY_HEADER_TIMEOUT_MS`: the longest a client may take to send a request's head,
    /// idle time on a kept-alive connection included (default 30000); a slower one is
    /// disconnected. Keep it above the edge's upstream `keepalive_timeout`.
    pub header_timeout: Duration,
    /// `KILN_GATEWAY_MAX_BODY_MB`: the largest request body accepted (default 100, as the edge's
    /// `client_max_body_size`); a larger one gets `413`.
    pub max_body_bytes: u64,
    /// `KILN_ALLOWED_PRIVATE_NETS`: non-public networks (with ports, per tenant) origins may live
    /// in (`NET[:PORTS][@SCOPE]`, see `kiln_core::policy`; default none).
    pub allowed_private_nets: EgressPolicy,
    /// `KILN_PLATFORM_ADDRS`: the deployment's other services (`host:port`, e.g. the dashboard,
    /// Postgres, the workers' admin ports), which no origin may be; the gateway adds its own
    /// listeners and Redis by itself.
    pub platform_addrs: String,
    /// `KILN_LOG_FORMAT`: `pretty` (default) or `json`.
    pub log_format: LogFormat,
    /// `KILN_GATEWAY_HOT_CACHE_MB`: memory for the hottest pages, in front of Redis (default 64;
    /// 0 turns it off).
    pub hot_cache_bytes: u64,
    /// `KILN_TRUSTED_PROXIES`: the proxies (CIDRs) whose `X-Forwarded-For` is believed,
    /// the edge's addresses (default `127.0.0.1/32, ::1/128`: an edge on the same machine). A
    /// request from anywhere else is from its peer, whatever its headers say.
    pub trusted_proxies: AllowedNets,
    /// `KILN_GATEWAY_VERIFY_CRAWLERS`: check that requests claiming to be Googlebot and other
    /// verifiable crawlers come from them (`true`, the default, or `false`; `on`/`off` and `1`/`0`
    /// too, as every switch).
    pub verify_crawlers: bool,
    /// `KILN_GATEWAY_VERIFY_WAIT_MS`: how long a crawler's request waits for the check of a new
    /// address (default 1500); past it, the request is served as unverified and the check goes on.
    pub verify_wait: Duration,
    /// `KILN_DNS_SERVER` (default: the system resolver, `/etc/resolv.conf`): the DNS server
    /// (`ip:port`) for crawler checks.
    pub dns_server: Option<SocketAddr>,
    /// `KILN_DNS_TIMEOUT_MS`: how long one DNS question may take (default 1000).
    pub dns_timeout: Duration,
    /// `KILN_GATEWAY_CRAWLER_RANGES`: the IP ranges crawlers publish, as `name=path` pairs
    /// separated by commas (e.g. `google=/etc/kiln/googlebot.json,openai=/etc/kiln/gptbot.json`),
    /// read at start. The files are the crawlers' own JSON or one CIDR per line.
    pub crawler_ranges: CrawlerRanges,
    /// `KILN_TENANT_MAX_RENDERS` (default 16) and `KILN_TENANT_RENDERS_PER_MINUTE` (default 600;
    /// `0`: no limit): how many bot renders one tenant may have queued or running at once, and
    /// start a minute, across every gateway. Beyond it the tenant's bots get the origin's page.
    pub render_budget: kiln_store::RenderBudget,
    /// `KILN_GATEWAY_MAX_QUEUED_RENDERS` (default 100; `0`: no limit): with this many renders
    /// waiting in the queue for a worker, a bot that misses the cache gets the origin's page at
    /// once and no render is queued for it.
    pub max_queued_renders: u64,
    /// `KILN_GATEWAY_DIRECTORY_RESYNC_MS`: how often the domain directory is brought up to date
    /// from Redis, in case a domain-change event was missed: the changes since the version held,
    /// or the whole directory when those cannot be told (default 30000, at least 100).
    pub directory_resync: Duration,
    /// `KILN_SERVICE_HOST`: the host name the render service answers on (default
    /// `render.localhost`; `off` turns the service off). Never a customer's domain: a domain
    /// registered under it is not served.
    pub service_host: Option<kiln_core::Hostname>,
    /// `KILN_SERVICE_TOKEN_RATE` (default 10) and `KILN_SERVICE_TOKEN_BURST` (default 50): the
    /// requests a second each service token may make on this gateway, and how many above the
    /// rate at once, unless the token has its own. Beyond them: `429` with `Retry-After`.
    pub service_token_rate: u32,
    pub service_token_burst: u32,
}

impl Settings {
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_vars(&Vars::from_env())
    }

    /// Builds settings from any variable source; tests pass a map.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        Self::from_vars(&Vars::new(get))
    }

    fn from_vars(vars: &Vars) -> anyhow::Result<Self> {
        let redis_url = vars.or("KILN_REDIS_URL", "redis://127.0.0.1:6379")?;
        let queue_redis_url =
            kiln_queue::queue_redis_url(&redis_url, vars.get("KILN_QUEUE_REDIS_URL")?.as_deref())
                .map_err(anyhow::Error::msg)?;
        let megabytes = |name: &str, default: u64| -> Result<u64, VarError> {
            Ok(vars
                .number(name, default, .., "megabytes")?
                .saturating_mul(1024 * 1024))
        };
        Ok(Settings {
            listen: vars.addr("KILN_GATEWAY_LISTEN", "127.0.0.1:3000")?,
            admin_listen: vars.addr("KILN_GATEWAY_ADMIN_LISTEN", "127.0.0.1:9100")?,
            redis_url,
            queue_redis_url,
            redis_prefix: vars.or("KILN_REDIS_PREFIX", "kiln:")?,
            redis_timeout: vars.duration_ms("KILN_REDIS_TIMEOUT_MS", 500, ..)?,
            origin_connect_timeout: vars.duration_ms(
                "KILN_ORIGIN_CONNECT_TIMEOUT_MS",
                5_000,
                ..,
            )?,
            origin_response_timeout: vars.duration_ms("KILN_ORIGIN_TIMEOUT_MS", 30_000, ..)?,
            header_timeout: vars.duration_ms("KILN_GATEWAY_HEADER_TIMEOUT_MS", 30_000, ..)?,
            max_body_bytes: megabytes("KILN_GATEWAY_MAX_BODY_MB", 100)?,
            allowed_private_nets: vars.allowed_private_nets()?,
            platform_addrs: vars.or("KILN_PLATFORM_ADDRS", "")?,
            hot_cache_bytes: megabytes("KILN_GATEWAY_HOT_CACHE_MB", 64)?,
            trusted_proxies: match vars.parse_with(
                "KILN_TRUSTED_PROXIES",
                "a list of CIDR networks, e.g. 10.0.0.0/8, fd00::/8",
                AllowedNets::parse,
            )? {
                Some(proxies) => proxies,
                None => AllowedNets::parse("127.0.0.1/32, ::1/128")?,
            },
            verify_crawlers: vars.switch("KILN_GATEWAY_VERIFY_CRAWLERS", true)?,
            verify_wait: vars.duration_ms("KILN_GATEWAY_VERIFY_WAIT_MS", 1_500, ..)?,
            dns_server: vars.parse(
                "KILN_DNS_SERVER",
                "an IP address and port, e.g. 127.0.0.1:53",
            )?,
            dns_timeout: vars.duration_ms("KILN_DNS_TIMEOUT_MS", 1_000, ..)?,
            crawler_ranges: read_crawler_ranges(&vars.list("KILN_GATEWAY_CRAWLER_RANGES")?)?,
            render_budget: kiln_store::RenderBudget::from_vars(vars)?,
            max_queued_renders: vars.number(
                "KILN_GATEWAY_MAX_QUEUED_RENDERS",
                100,
                ..,
                "renders (0: no limit)",
            )?,
            directory_resync: vars
                .duration_ms("KILN_GATEWAY_DIRECTORY_RESYNC_MS", 30_000, ..)?
                .max(Duration::from_millis(100)),
            service_host: vars.service_host()?,
            service_token_rate: vars.number(
                "KILN_SERVICE_TOKEN_RATE",
                10,
                1..,
                "requests a second",
            )?,
            service_token_burst: vars.number("KILN_SERVICE_TOKEN_BURST", 50, 1.., "requests")?,
            log_format: vars.log_format()?,
        })
    }
}

/// Reads the files named in `KILN_GATEWAY_CRAWLER_RANGES` (`name=path,name=path`).
fn read_crawler_ranges(pairs: &[String]) -> anyhow::Result<CrawlerRanges> {
    let mut ranges = CrawlerRanges::default();
    for pair in pairs {
        let (name, path) = pair.split_once('=').ok_or_else(|| {
            VarError::invalid(
                "KILN_GATEWAY_CRAWLER_RANGES",
                pair,
                "a list of name=path pairs, e.g. google=/etc/kiln/googlebot.json",
            )
        })?;
        let text = std::fs::read_to_string(path.trim()).with_context(|| {
            format!("KILN_GATEWAY_CRAWLER_RANGES: cannot read the {name} ranges at {path}")
        })?;
        ranges
            .add(name.trim(), &text)
            .with_context(|| format!("KILN_GATEWAY_CRAWLER_RANGES: {path}"))?;
    }
    Ok(ranges)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(vars: &[(&str, &str)]) -> anyhow::Result<Settings> {
        let map: HashMap<&str, &str> = vars.iter().copied().collect();
        Settings::from_lookup(|name| map.get(name).map(|v| (*v).to_owned()))
    }

    #[test]
    fn defaults_and_blank_values_alike() {
        let blank = [
            "KILN_GATEWAY_LISTEN",
            "KILN_REDIS_PREFIX",
            "KILN_REDIS_TIMEOUT_MS",
            "KILN_GATEWAY_MAX_BODY_MB",
            "KILN_TRUSTED_PROXIES",
            "KILN_GATEWAY_VERIFY_CRAWLERS",
            "KILN_DNS_SERVER",
            "KILN_LOG_FORMAT",
        ]
        .map(|name| (name, " "));
        for s in [from(&[]).unwrap(), from(&blank).unwrap()] {
            assert_eq!(s.listen, "127.0.0.1:3000".parse().unwrap());
            assert_eq!(s.admin_listen, "127.0.0.1:9100".parse().unwrap());
            assert_eq!(s.redis_prefix, "kiln:");
            assert_eq!(s.queue_redis_url, s.redis_url);
            assert_eq!(s.redis_timeout, Duration::from_millis(500));
            assert_eq!(s.max_body_bytes, 100 * 1024 * 1024);
            assert_eq!(s.hot_cache_bytes, 64 * 1024 * 1024);
            assert!(s.trusted_proxies.contains("127.0.0.1".parse().unwrap()));
            assert!(s.trusted_proxies.contains("::1".parse().unwrap()));
            assert!(!s.trusted_proxies.contains("10.0.0.1".parse().unwrap()));
            assert_eq!(s.dns_server, None);
            assert_eq!(s.max_queued_renders, 100);
            assert_eq!(s.directory_resync, Duration::from_secs(30));
            assert_eq!(s.render_budget, kiln_store::RenderBudget::DEFAULT);
            assert_eq!(s.log_format, LogFormat::Pretty);
            assert!(s.verify_crawlers);
        }
    }

    #[test]
    fn overrides() {
        let s = from(&[
            ("KILN_GATEWAY_LISTEN", "0.0.0.0:8080"),
            ("KILN_REDIS_TIMEOUT_MS", "75"),
            ("KILN_GATEWAY_MAX_BODY_MB", "2"),
            ("KILN_GATEWAY_HOT_CACHE_MB", "0"),
            ("KILN_TRUSTED_PROXIES", "10.0.0.0/8"),
            ("KILN_GATEWAY_VERIFY_CRAWLERS", "false"),
            ("KILN_GATEWAY_VERIFY_WAIT_MS", "0"),
            ("KILN_DNS_SERVER", "10.0.0.2:53"),
            ("KILN_GATEWAY_MAX_QUEUED_RENDERS", "0"),
            ("KILN_GATEWAY_DIRECTORY_RESYNC_MS", "5"),
            ("KILN_TENANT_MAX_RENDERS", "4"),
            ("KILN_LOG_FORMAT", "json"),
        ])
        .unwrap();
        assert_eq!(s.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(s.redis_timeout, Duration::from_millis(75));
        assert_eq!(s.max_body_bytes, 2 * 1024 * 1024);
        assert_eq!(s.hot_cache_bytes, 0);
        assert!(s.trusted_proxies.contains("10.1.2.3".parse().unwrap()));
        assert!(!s.trusted_proxies.contains("127.0.0.1".parse().unwrap()));
        assert!(!s.verify_crawlers);
        assert_eq!(s.verify_wait, Duration::ZERO);
        assert_eq!(s.dns_server, Some("10.0.0.2:53".parse().unwrap()));
        assert_eq!(s.max_queued_renders, 0);
        assert_eq!(
            s.directory_resync,
            Duration::from_millis(100),
            "at least 100 ms"
        );
        assert_eq!(s.render_budget.concurrent, 4);
        assert_eq!(s.log_format, LogFormat::Json);
    }

    #[test]
    fn a_bad_value_is_named_with_what_would_do() {
        let cases = [
            ("KILN_GATEWAY_LISTEN", "localhost", "e.g. 127.0.0.1:3000"),
            ("KILN_REDIS_TIMEOUT_MS", "fast", "milliseconds, e.g. 500"),
            ("KILN_GATEWAY_MAX_BODY_MB", "1.5", "megabytes, e.g. 100"),
            ("KILN_ALLOWED_PRIVATE_NETS", "lan", "NET[:PORTS][@SCOPE]"),
            ("KILN_TRUSTED_PROXIES", "edge", "CIDR networks"),
            ("KILN_GATEWAY_VERIFY_CRAWLERS", "yes", "a switch"),
            ("KILN_DNS_SERVER", "dns", "e.g. 127.0.0.1:53"),
            ("KILN_GATEWAY_CRAWLER_RANGES", "google", "name=path"),
            ("KILN_GATEWAY_MAX_QUEUED_RENDERS", "-1", "(0: no limit)"),
            ("KILN_TENANT_RENDERS_PER_MINUTE", "many", "(0: no limit)"),
            ("KILN_LOG_FORMAT", "xml", "`pretty` or `json`"),
        ];
        for (name, value, expected) in cases {
            let error = format!("{:#}", from(&[(name, value)]).unwrap_err());
            assert!(
                error.contains(&format!("{name} `{value}` is not")) && error.contains(expected),
                "{name}={value}: {error}"
            );
        }
    }
}
