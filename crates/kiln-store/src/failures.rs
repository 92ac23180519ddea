//! Failure markers: a page whose render just failed is not rendered again for a short while.
//!
//! `{prefix}{d:<domain>}:failed:{device}:{urlhash}` holds the failure's reason and expires by
//! itself; it shares its domain's hash tag because the page's writes and purges clear it together
//! with the page. While it exists,
//! a gateway neither holds a bot back for a new render of the page nor refreshes its stale copy: a
//! broken page (an origin answering 500, a page that never loads) costs one render per marker
//! lifetime, not one per bot request. Storing a page clears its marker (in the same script), and so
//! does purging the page by URL.

use crate::{Pages, Result};
use fred::prelude::*;
use fred::types::Expiration;
use kiln_core::CacheKey;
use std::time::Duration;

impl Pages {
    pub(crate) fn failure_key(&self, key: &CacheKey) -> String {
        self.conn.page_scoped_key("failed", key)
    }

    /// Records that rendering `key`'s page failed, for `ttl`.
    pub async fn put_failure(&self, key: &CacheKey, reason: &str, ttl: Duration) -> Result<()> {
        let ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1);
        let _: () = self
            .conn
            .pool
            .set(
                self.failure_key(key),
                reason,
                Some(Expiration::PX(ms)),
                None,
                false,
            )
            .await?;
        Ok(())
    }

    /// Why rendering `key`'s page failed recently, if it did.
    pub async fn recent_failure(&self, key: &CacheKey) -> Result<Option<String>> {
        Ok(self.conn.pool.get(self.failure_key(key)).await?)
    }
}
