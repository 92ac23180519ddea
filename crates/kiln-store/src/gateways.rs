//! Which gateways are running, and their word that they have applied the events published so far.
//!
//! A purge deletes pages in Redis and announces them on the event channel, and each gateway drops
//! its in-memory copies as the announcement reaches it: pub/sub delivers on its own time, so the
//! purge's answer would otherwise run ahead of the gateways. Each gateway registers itself in
//! `{prefix}gateways` (a sorted set of gateway ids scored by their last heartbeat, by Redis's
//! clock) while it follows the event channel. [`Events::confirm`] publishes a
//! [`StoreEvent::Checkpoint`] after the purge's own events and waits until every registered
//! gateway has recorded the checkpoint's id in `{prefix}checkpoint:<id>`: a gateway handles its
//! events one after the other, so once it records the checkpoint it has applied the purge too.
//! `PUBLISH`'s count of receivers is no substitute: a receiver has not applied anything yet, and
//! on a Redis Cluster the count covers only the subscribers of the node that took the `PUBLISH`.

use crate::{Events, Result, StoreEvent};
use fred::prelude::*;
use std::collections::HashSet;
use std::time::Duration;
use tokio::time::Instant;

/// How often a gateway renews its registration.
pub const GATEWAY_HEARTBEAT: Duration = Duration::from_secs(2);

/// How long after its last heartbeat a gateway is still waited for. Longer than a gateway keeps a
/// page in memory (30 s) plus two heartbeats: a gateway cut off from Redis keeps serving the pages
/// it holds, and is waited for (and reported when it does not answer) for as long as it may hold a
/// purged one. A gateway that stops cleanly deregisters at once.
pub const GATEWAY_LIVE_WINDOW: Duration = Duration::from_secs(35);

/// How long [`Events::confirm`] waits for the gateways by default: a gateway that follows
/// the events answers within milliseconds.
pub const CONFIRM_WAIT: Duration = Duration::from_secs(2);

/// How long a checkpoint's answers are kept (its id comes from the counter `{prefix}checkpoints`).
const CHECKPOINT_TTL_MS: i64 = 60_000;

/// Registers (or renews) a gateway, scored by Redis's clock, and forgets gateways silent past the
/// live window.
const LUA_REGISTER: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
return 1
"#;

/// The gateways heard from within the live window.
const LUA_LIVE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], now - tonumber(ARGV[1]), '+inf')
"#;

/// What the gateways said to a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Confirmation {
    /// Gateways that applied every event published before the checkpoint.
    pub confirmed: u32,
    /// Registered gateways that did not answer within the wait (stalled, stopped without
    /// deregistering, or cut off from Redis).
    pub unconfirmed: u32,
}

impl Events {
    fn gateways_key(&self) -> String {
        self.conn.key("gateways")
    }

    fn checkpoint_key(&self, id: &str) -> String {
        self.conn.key(&format!("checkpoint:{id}"))
    }

    /// Registers the gateway `gateway_id` as following the event channel, or renews it; to be
    /// called every [`GATEWAY_HEARTBEAT`] while it does.
    pub async fn register_gateway(&self, gateway_id: &str) -> Result<()> {
        let window = GATEWAY_LIVE_WINDOW.as_millis() as i64;
        let _: i64 = self
            .conn
            .pool
            .eval(
                LUA_REGISTER,
                vec![self.gateways_key()],
                vec![Value::from(gateway_id), Value::from(window)],
            )
            .await?;
        Ok(())
    }

    /// Withdraws a gateway that stops: nobody waits for it any more.
    pub async fn deregister_gateway(&self, gateway_id: &str) -> Result<()> {
        let _: i64 = self.conn.pool.zrem(self.gateways_key(), gateway_id).await?;
        Ok(())
    }

    /// Records that `gateway_id` applied every event published before the checkpoint `id`.
    pub async fn acknowledge_checkpoint(&self, id: &str, gateway_id: &str) -> Result<()> {
        let key = self.checkpoint_key(id);
        let tx = self.conn.pool.next().multi();
        let _: () = tx.sadd(&key, gateway_id).await?;
        let _: () = tx.pexpire(&key, CHECKPOINT_TTL_MS, None).await?;
        let _: () = tx.exec(true).await?;
        Ok(())
    }

    /// Waits, for at most `wait`, until every registered gateway has applied the events published
    /// before this call (a purge's announcements, say), and says how many did.
    pub async fn confirm(&self, wait: Duration) -> Result<Confirmation> {
        let window = GATEWAY_LIVE_WINDOW.as_millis() as i64;
        let expected: Vec<String> = self
            .conn
            .pool
            .eval(
                LUA_LIVE,
                vec![self.gateways_key()],
                vec![Value::from(window)],
            )
            .await?;
        let total = expected.len() as u32;
        if expected.is_empty() {
            return Ok(Confirmation {
                confirmed: 0,
                unconfirmed: 0,
            });
        }
        // Unique across every dashboard sharing the Redis.
        let id: u64 = self.conn.pool.incr(self.conn.key("checkpoints")).await?;
        let id = id.to_string();
        self.conn
            .publish(&StoreEvent::Checkpoint { id: id.clone() })
            .await?;
        let key = self.checkpoint_key(&id);
        let deadline = Instant::now() + wait;
        let mut pause = Duration::from_millis(1);
        loop {
            let answered: HashSet<String> = self.conn.pool.smembers(&key).await?;
            let missing = expected.iter().filter(|g| !answered.contains(*g)).count() as u32;
            if missing == 0 || Instant::now() >= deadline {
                return Ok(Confirmation {
                    confirmed: total - missing,
                    unconfirmed: missing,
                });
            }
            tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }
}
