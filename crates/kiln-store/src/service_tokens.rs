//! The render service's tokens, as the control plane publishes them for the gateways.
//!
//! A service token lets a customer's own server (prerender-node, rendertron-middleware, an nginx
//! recipe…) ask Kiln for its bots' pages by URL. The control plane keeps the tokens in Postgres
//! (hashed) and publishes each live one here; a gateway hashes the token a request presents and
//! looks the hash up, so a revoked token stops working as soon as its record is removed, and the
//! token itself is never stored anywhere.
//!
//! Keys (after the deployment prefix):
//! - `service-tokens`: hash, [`token_hash`] of the token → [`ServiceToken`] JSON;
//! - `service-tokens:used`: hash, token id → when a gateway last saw it used (Unix milliseconds),
//!   which the control plane shows beside the token.

use crate::{Result, StoreError};
use fred::prelude::*;
use kiln_core::UnixMillis;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

crate::view! {
    /// The render service's tokens: published by the control plane, read (and their use
    /// recorded) by the gateways.
    ServiceTokens
}

/// What a gateway knows of a live service token: whose it is, and how fast it may be used.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceToken {
    /// The token's id in the control plane (never the token itself).
    pub id: String,
    /// The tenant whose domains the token may render.
    pub tenant_id: String,
    /// Requests a second the token may make, on each gateway (none: the gateway's default,
    /// `KILN_SERVICE_TOKEN_RATE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_second: Option<u32>,
    /// Requests the token may make at once above its rate (none: `KILN_SERVICE_TOKEN_BURST`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

/// The name a token is published under: SHA-256 of the whole token, in lowercase hex. Tokens are
/// long random strings, so a fast hash is enough (no stretching), which keeps checking a request
/// cheap.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl ServiceTokens {
    fn tokens_key(&self) -> String {
        self.conn.key("service-tokens")
    }

    fn used_key(&self) -> String {
        self.conn.key("service-tokens:used")
    }

    /// Publishes `token` under `hash` ([`token_hash`] of the token).
    pub async fn put(&self, hash: &str, token: &ServiceToken) -> Result<()> {
        let json = serde_json::to_string(token).map_err(StoreError::encode("service token"))?;
        let _: () = self.conn.pool.hset(self.tokens_key(), (hash, json)).await?;
        Ok(())
    }

    /// Withdraws the token published under `hash`: from the next request on, it is refused.
    pub async fn remove(&self, hash: &str) -> Result<()> {
        let _: u32 = self.conn.pool.hdel(self.tokens_key(), hash).await?;
        Ok(())
    }

    /// Replaces every published token with `tokens` (hash, token), in one transaction: what the
    /// control plane does at start and when Redis lost its data, so that a token revoked while
    /// Redis was away is not left behind.
    pub async fn publish(&self, tokens: &[(String, ServiceToken)]) -> Result<()> {
        let mut fields = Vec::with_capacity(tokens.len());
        for (hash, token) in tokens {
            let json = serde_json::to_string(token).map_err(StoreError::encode("service token"))?;
            fields.push((hash.clone(), json));
        }
        let tx = self.conn.pool.next().multi();
        let _: () = tx.del(self.tokens_key()).await?;
        if !fields.is_empty() {
            let _: () = tx.hset(self.tokens_key(), fields).await?;
        }
        let _: () = tx.exec(true).await?;
        Ok(())
    }

    /// The live token published under `hash`, if there is one.
    pub async fn get(&self, hash: &str) -> Result<Option<ServiceToken>> {
        let json: Option<String> = self.conn.pool.hget(self.tokens_key(), hash).await?;
        json.map(|json| {
            serde_json::from_str(&json).map_err(|e| StoreError::corrupt("service token", e))
        })
        .transpose()
    }

    /// Records that the token `id` was used at `at` (a later use is kept over an earlier one, so
    /// gateways may report out of order).
    pub async fn record_use(&self, id: &str, at: UnixMillis) -> Result<()> {
        const LUA_LATEST: &str = r#"
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if tonumber(ARGV[2]) > current then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 1
"#;
        let _: i64 = self
            .conn
            .pool
            .eval(
                LUA_LATEST,
                vec![self.used_key()],
                vec![Value::from(id), Value::from(at.to_string())],
            )
            .await?;
        Ok(())
    }

    /// When each token was last used, by token id (tokens never used are missing).
    pub async fn last_used(&self) -> Result<HashMap<String, UnixMillis>> {
        let raw: HashMap<String, String> = self.conn.pool.hgetall(self.used_key()).await?;
        Ok(raw
            .into_iter()
            .filter_map(|(id, at)| Some((id, at.parse().ok()?)))
            .collect())
    }

    /// Forgets the token `id`'s last use (the token was deleted).
    pub async fn forget_use(&self, id: &str) -> Result<()> {
        let _: u32 = self.conn.pool.hdel(self.used_key(), id).await?;
        Ok(())
    }
}
