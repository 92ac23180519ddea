//! Page entries: rendered HTML with the status and headers to serve it with.

use crate::{Result, Store, StoreError};
use bytes::Bytes;
use fred::prelude::*;
use kiln_core::{CacheKey, UnixMillis};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// One cached render.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageEntry {
    pub html: Bytes,
    pub meta: PageMeta,
}

/// Everything about a render except its body, stored as one JSON field beside the HTML.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageMeta {
    pub status: u16,
    /// Response headers the page asked for that are safe to serve (already filtered by the worker).
    pub headers: Vec<(String, String)>,
    pub url: String,
    pub rendered_at: UnixMillis,
    pub render_ms: u64,
}

impl Store {
    fn page_key(&self, key: &CacheKey) -> String {
        self.key(&key.page_key())
    }

    /// Reads the page entry for `key`, if one is cached.
    pub async fn get_page(&self, key: &CacheKey) -> Result<Option<PageEntry>> {
        let mut fields: HashMap<String, Bytes> = self.pool.hgetall(self.page_key(key)).await?;
        let (Some(meta), Some(html)) = (fields.remove("meta"), fields.remove("html")) else {
            return Ok(None);
        };
        let meta = serde_json::from_slice(&meta)
            .map_err(|e| StoreError::Corrupt(format!("page {}: {e}", key.page_key())))?;
        Ok(Some(PageEntry { html, meta }))
    }

    /// Stores a page entry for `ttl_secs`, replacing any previous one atomically.
    pub async fn put_page(&self, key: &CacheKey, entry: &PageEntry, ttl_secs: u64) -> Result<()> {
        let name = self.page_key(key);
        let meta =
            serde_json::to_vec(&entry.meta).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let tx = self.pool.next().multi();
        let _: () = tx.del(&name).await?;
        let _: () = tx
            .hset(
                &name,
                [
                    ("meta", Value::from(Bytes::from(meta))),
                    ("html", Value::from(entry.html.clone())),
                ],
            )
            .await?;
        let _: () = tx.expire(&name, ttl_secs.max(1) as i64, None).await?;
        let _: () = tx.exec(true).await?;
        Ok(())
    }
}
