//! The gateway's configuration, read once from `KILN_*` environment variables.

use anyhow::Context;
use kiln_core::AllowedNets;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Settings {
    /// `KILN_GATEWAY_LISTEN`: where the edge sends traffic (default `127.0.0.1:3000`).
    pub listen: SocketAddr,
    /// `KILN_GATEWAY_ADMIN_LISTEN`: health endpoints (default `127.0.0.1:9100`).
    pub admin_listen: SocketAddr,
    /// `KILN_REDIS_URL` (default `redis://127.0.0.1:6379`).
    pub redis_url: String,
    /// `KILN_REDIS_PREFIX`: namespace of every Redis key (default `kiln:`).
    pub redis_prefix: String,
    /// `KILN_REDIS_TIMEOUT_MS`: the longest one Redis command may take (default 500).
    pub redis_timeout: Duration,
    /// `KILN_ORIGIN_CONNECT_TIMEOUT_MS` (default 5000).
    pub origin_connect_timeout: Duration,
    /// `KILN_ORIGIN_TIMEOUT_MS`: the longest an origin may take to start answering (default 30000).
    pub origin_response_timeout: Duration,
    /// `KILN_ALLOWED_PRIVATE_NETS`: non-public networks origins may live in (CIDRs, default none).
    pub allowed_private_nets: AllowedNets,
    /// `KILN_LOG_FORMAT`: `pretty` (default) or `json`.
    pub log_json: bool,
    /// `KILN_GATEWAY_HOT_CACHE_MB`: memory for the hottest pages, in front of Redis (default 64;
    /// 0 turns it off).
    pub hot_cache_bytes: u64,
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
        Ok(Settings {
            listen: addr("KILN_GATEWAY_LISTEN", "127.0.0.1:3000")?,
            admin_listen: addr("KILN_GATEWAY_ADMIN_LISTEN", "127.0.0.1:9100")?,
            redis_url: var("KILN_REDIS_URL", "redis://127.0.0.1:6379"),
            redis_prefix: var("KILN_REDIS_PREFIX", "kiln:"),
            redis_timeout: millis("KILN_REDIS_TIMEOUT_MS", 500)?,
            origin_connect_timeout: millis("KILN_ORIGIN_CONNECT_TIMEOUT_MS", 5_000)?,
            origin_response_timeout: millis("KILN_ORIGIN_TIMEOUT_MS", 30_000)?,
            allowed_private_nets: AllowedNets::parse(&var("KILN_ALLOWED_PRIVATE_NETS", ""))
                .context("KILN_ALLOWED_PRIVATE_NETS")?,
            hot_cache_bytes: var("KILN_GATEWAY_HOT_CACHE_MB", "64")
                .parse::<u64>()
                .map(|mb| mb.saturating_mul(1024 * 1024))
                .context("KILN_GATEWAY_HOT_CACHE_MB must be a whole number of megabytes")?,
            log_json: match var("KILN_LOG_FORMAT", "pretty").as_str() {
                "json" => true,
                "pretty" => false,
                other => anyhow::bail!("KILN_LOG_FORMAT must be `json` or `pretty`, not `{other}`"),
            },
        })
    }
}
