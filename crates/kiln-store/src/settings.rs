//! How to reach Redis, and how patient to be with it.

use fred::prelude::*;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct StoreSettings {
    /// `redis://[user:password@]host:port/db` for one Redis (`rediss://` with TLS), or
    /// `redis-cluster://[user:password@]host:port?node=host:port&node=…` for a Redis Cluster: any
    /// of its nodes will do, and more (`node=`) help when the first is down; the client learns the
    /// rest of the cluster from them and follows it as slots move.
    pub url: String,
    /// Prepended to every key and channel name, e.g. `kiln:`.
    pub prefix: String,
    /// The longest any one command may take before it fails.
    pub command_timeout: Duration,
    pub pool_size: usize,
}

impl StoreSettings {
    pub fn new(url: impl Into<String>, prefix: impl Into<String>) -> Self {
        StoreSettings {
            url: url.into(),
            prefix: prefix.into(),
            command_timeout: Duration::from_millis(500),
            pool_size: 4,
        }
    }

    /// fred's defaults suit a batch job, not a request path: no reconnect policy, no command timeout
    /// and an unbounded command buffer. Kiln reconnects forever with backoff, fails commands fast and
    /// bounds what it buffers while disconnected. The same holds for a cluster's client (fred's
    /// clustered `ServerConfig`, chosen by the URL's scheme), which keeps a connection to every
    /// primary.
    pub(crate) fn builder(&self) -> Result<Builder, fred::error::Error> {
        let config = Config::from_url(&self.url)?;
        let mut builder = Builder::from_config(config);
        let timeout = self.command_timeout;
        builder
            .with_performance_config(|perf| {
                perf.default_command_timeout = timeout;
                perf.broadcast_channel_capacity = 4096;
            })
            .with_connection_config(|conn| {
                conn.connection_timeout = Duration::from_secs(2);
                conn.internal_command_timeout = Duration::from_secs(2);
                conn.max_command_attempts = 2;
                conn.max_command_buffer_len = 10_000;
            })
            // At most 300 ms between attempts: a Redis that comes back is in use again within a
            // third of a second (an attempt against a Redis that is down is one refused
            // connection, next to nothing, even from many gateways).
            .set_policy(ReconnectPolicy::new_exponential(0, 50, 300, 2));
        Ok(builder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_scheme_picks_one_redis_or_a_cluster() {
        #[track_caller]
        fn check(url: &str, clustered: bool, hosts: &[&str]) {
            let mut settings = StoreSettings::new(url, "kiln:");
            settings.command_timeout = Duration::from_millis(40);
            let builder = settings.builder().unwrap();
            let config = builder.get_config().unwrap();
            assert_eq!(config.server.is_clustered(), clustered, "{url}");
            let mut found: Vec<String> = config
                .server
                .hosts()
                .iter()
                .map(|server| format!("{}:{}", server.host, server.port))
                .collect();
            found.sort();
            assert_eq!(found, hosts, "{url}");
            // The cluster's client is as impatient and as bounded as one Redis's.
            assert_eq!(
                builder.get_performance_config().default_command_timeout,
                Duration::from_millis(40),
                "{url}"
            );
            assert_eq!(
                builder.get_connection_config().max_command_buffer_len,
                10_000,
                "{url}"
            );
            assert!(builder.get_policy().is_some(), "{url}");
        }
        check("redis://127.0.0.1:6379", false, &["127.0.0.1:6379"]);
        check("redis://cache", false, &["cache:6379"]);
        check(
            "redis-cluster://a.test:7000?node=b.test:7001&node=c.test:7002",
            true,
            &["a.test:7000", "b.test:7001", "c.test:7002"],
        );
        check(
            "redis-cluster://user:secret@a.test:7000",
            true,
            &["a.test:7000"],
        );
    }
}
