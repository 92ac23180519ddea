//! How to reach Redis, and how patient to be with it.

use fred::prelude::*;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct StoreSettings {
    /// `redis://[user:password@]host:port/db`.
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
    /// bounds what it buffers while disconnected.
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
