//! The gateway's configuration, read once from `KILN_*` environment variables.

use anyhow::Context;
use kiln_core::{AllowedNets, CrawlerRanges, EgressPolicy};
use kiln_runtime::LogFormat;
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
    /// verifiable crawlers come from them (`true`, the default, or `false`).
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
    /// `KILN_GATEWAY_DIRECTORY_RESYNC_MS`: how often the domain directory is re-read in full from
    /// Redis, in case a domain-change event was missed (default 30000, at least 100).
    pub directory_resync: Duration,
}

impl Settings {
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Builds settings from any variable source; tests pass a map.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let var = |name: &str, default: &str| get(name).unwrap_or_else(|| default.to_owned());
        let addr = |name: &str, default: &str| -> anyhow::Result<SocketAddr> {
            var(name, default)
                .parse()
                .with_context(|| format!("{name} must be an address such as 127.0.0.1:3000"))
        };
        let millis = |name: &str, default: u64| -> anyhow::Result<Duration> {
            match get(name) {
                Some(v) => v
                    .parse::<u64>()
                    .map(Duration::from_millis)
                    .with_context(|| format!("{name} must be a whole number of milliseconds")),
                None => Ok(Duration::from_millis(default)),
            }
        };
        let redis_url = var("KILN_REDIS_URL", "redis://127.0.0.1:6379");
        let queue_redis_url = kiln_queue::queue_redis_url(
            &redis_url,
            get("KILN_QUEUE_REDIS_URL")
                .as_deref()
                .filter(|url| !url.is_empty()),
        )
        .map_err(anyhow::Error::msg)?;
        Ok(Settings {
            listen: addr("KILN_GATEWAY_LISTEN", "127.0.0.1:3000")?,
            admin_listen: addr("KILN_GATEWAY_ADMIN_LISTEN", "127.0.0.1:9100")?,
            redis_url,
            queue_redis_url,
            redis_prefix: var("KILN_REDIS_PREFIX", "kiln:"),
            redis_timeout: millis("KILN_REDIS_TIMEOUT_MS", 500)?,
            origin_connect_timeout: millis("KILN_ORIGIN_CONNECT_TIMEOUT_MS", 5_000)?,
            origin_response_timeout: millis("KILN_ORIGIN_TIMEOUT_MS", 30_000)?,
            header_timeout: millis("KILN_GATEWAY_HEADER_TIMEOUT_MS", 30_000)?,
            max_body_bytes: var("KILN_GATEWAY_MAX_BODY_MB", "100")
                .parse::<u64>()
                .map(|mb| mb.saturating_mul(1024 * 1024))
                .context("KILN_GATEWAY_MAX_BODY_MB must be a whole number of megabytes")?,
            allowed_private_nets: EgressPolicy::parse(&var("KILN_ALLOWED_PRIVATE_NETS", ""))
                .context("KILN_ALLOWED_PRIVATE_NETS")?,
            platform_addrs: var("KILN_PLATFORM_ADDRS", ""),
            hot_cache_bytes: var("KILN_GATEWAY_HOT_CACHE_MB", "64")
                .parse::<u64>()
                .map(|mb| mb.saturating_mul(1024 * 1024))
                .context("KILN_GATEWAY_HOT_CACHE_MB must be a whole number of megabytes")?,
            trusted_proxies: AllowedNets::parse(&var(
                "KILN_TRUSTED_PROXIES",
                "127.0.0.1/32, ::1/128",
            ))
            .context("KILN_TRUSTED_PROXIES")?,
            verify_crawlers: match var("KILN_GATEWAY_VERIFY_CRAWLERS", "true").as_str() {
                "true" | "1" => true,
                "false" | "0" => false,
                other => anyhow::bail!(
                    "KILN_GATEWAY_VERIFY_CRAWLERS must be `true` or `false`, not `{other}`"
                ),
            },
            verify_wait: millis("KILN_GATEWAY_VERIFY_WAIT_MS", 1_500)?,
            dns_server: match get("KILN_DNS_SERVER").filter(|v| !v.is_empty()) {
                Some(value) => Some(value.parse().with_context(|| {
                    format!("KILN_DNS_SERVER `{value}` is not an address such as 127.0.0.1:53")
                })?),
                None => None,
            },
            dns_timeout: millis("KILN_DNS_TIMEOUT_MS", 1_000)?,
            crawler_ranges: read_crawler_ranges(&var("KILN_GATEWAY_CRAWLER_RANGES", ""))?,
            render_budget: kiln_store::RenderBudget::from_lookup(&get)
                .map_err(anyhow::Error::msg)?,
            max_queued_renders: var("KILN_GATEWAY_MAX_QUEUED_RENDERS", "100")
                .trim()
                .parse::<u64>()
                .context(
                    "KILN_GATEWAY_MAX_QUEUED_RENDERS must be a whole number of renders (0: no limit)",
                )?,
            directory_resync: millis("KILN_GATEWAY_DIRECTORY_RESYNC_MS", 30_000)?
                .max(Duration::from_millis(100)),
            log_format: LogFormat::from_lookup(&get).map_err(anyhow::Error::msg)?,
        })
    }
}

/// Reads the files named in `KILN_GATEWAY_CRAWLER_RANGES` (`name=path,name=path`).
fn read_crawler_ranges(list: &str) -> anyhow::Result<CrawlerRanges> {
    let mut ranges = CrawlerRanges::default();
    for pair in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, path) = pair.split_once('=').with_context(|| {
            format!("KILN_GATEWAY_CRAWLER_RANGES: `{pair}` is not `name=path`, e.g. `google=/etc/kiln/googlebot.json`")
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
