//! The hottest pages in memory, in front of Redis.
//!
//! A bounded cache (moka: TinyLFU admission, so one crawl of a million pages does not flush the
//! pages bots ask for all day) of page entries by page key, weighed by their stored size. A fresh
//! entry found here is served without a Redis round trip; a stale one is dropped and the request
//! goes to Redis, where the stale-while-revalidate logic lives.
//!
//! Invalidation follows the event channel: a finished render (`Rendered`) or a purge (`Purged`) of
//! a page drops it within the time pub/sub takes, on every gateway; a domain-wide purge drops the
//! domain's pages; a resubscription (events may have been missed) drops everything. Because an
//! event can land while a request is reading the old entry from Redis, a read only fills the cache
//! if no invalidation touched its shard meanwhile (a generation counter per shard). Entries also
//! live at most [`MAX_LIFETIME`], a bound on staleness should events be lost altogether.

use crate::representation::ServedPage;
use moka::sync::Cache;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The longest an entry stays in memory, whatever the events say.
pub const MAX_LIFETIME: Duration = Duration::from_secs(30);

const SHARDS: usize = 64;

pub struct HotCache {
    pages: Option<Cache<String, Arc<ServedPage>>>,
    generations: [AtomicU64; SHARDS],
}

/// A point in the invalidation history of one page key, taken before reading it from Redis.
#[derive(Clone, Copy, Debug)]
pub struct Ticket {
    shard: usize,
    generation: u64,
}

impl HotCache {
    /// A cache holding at most `capacity_bytes` of pages (0: no cache).
    pub fn new(capacity_bytes: u64) -> Self {
        let pages = (capacity_bytes > 0).then(|| {
            Cache::builder()
                .max_capacity(capacity_bytes)
                .weigher(|key: &String, entry: &Arc<ServedPage>| {
                    let size = key.len() + entry.html.len() + entry.meta.url.len() + 256;
                    u32::try_from(size).unwrap_or(u32::MAX)
                })
                .time_to_live(MAX_LIFETIME)
                .support_invalidation_closures()
                .build()
        });
        HotCache {
            pages,
            generations: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    fn shard(page_key: &str) -> usize {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        page_key.hash(&mut hasher);
        (hasher.finish() as usize) % SHARDS
    }

    pub fn get(&self, page_key: &str) -> Option<Arc<ServedPage>> {
        self.pages.as_ref()?.get(page_key)
    }

    /// Notes where the invalidation history of `page_key` stands, before reading it from Redis.
    pub fn ticket(&self, page_key: &str) -> Ticket {
        let shard = Self::shard(page_key);
        Ticket {
            shard,
            generation: self.generations[shard].load(Ordering::Acquire),
        }
    }

    /// Keeps an entry read from Redis, unless an invalidation may have passed it by since `ticket`.
    pub fn insert(&self, page_key: &str, entry: Arc<ServedPage>, ticket: Ticket) {
        let Some(pages) = &self.pages else { return };
        if self.generations[ticket.shard].load(Ordering::Acquire) == ticket.generation {
            pages.insert(page_key.to_owned(), entry);
        }
    }

    /// Drops one page (it was rendered again or purged).
    pub fn invalidate(&self, page_key: &str) {
        self.generations[Self::shard(page_key)].fetch_add(1, Ordering::AcqRel);
        if let Some(pages) = &self.pages {
            pages.invalidate(page_key);
        }
    }

    /// Drops every page of a domain.
    pub fn invalidate_domain(&self, domain_id: &str) {
        self.bump_all();
        if let Some(pages) = &self.pages {
            let prefix = format!("page:{domain_id}:");
            if let Err(error) = pages.invalidate_entries_if(move |key, _| key.starts_with(&prefix))
            {
                tracing::warn!(%error, "could not drop a domain's pages from memory; dropping all");
                pages.invalidate_all();
            }
        }
    }

    /// Drops everything (events may have been missed).
    pub fn invalidate_all(&self) {
        self.bump_all();
        if let Some(pages) = &self.pages {
            pages.invalidate_all();
        }
    }

    fn bump_all(&self) {
        for generation in &self.generations {
            generation.fetch_add(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn entry(html: &str) -> Arc<ServedPage> {
        Arc::new(ServedPage::new(kiln_store::PageEntry {
            html: Bytes::from(html.to_owned()),
            meta: serde_json::from_value(serde_json::json!({
                "status": 200, "headers": [], "url": "https://shop.test/", "rendered_at": 0,
                "render_ms": 1,
            }))
            .unwrap(),
        }))
    }

    #[test]
    fn a_read_that_an_invalidation_overtook_is_not_kept() {
        let hot = HotCache::new(1 << 20);
        let key = "page:d1:desktop:aa";
        let ticket = hot.ticket(key);
        hot.invalidate(key);
        hot.insert(key, entry("old"), ticket);
        assert!(hot.get(key).is_none());

        let ticket = hot.ticket(key);
        hot.insert(key, entry("new"), ticket);
        assert_eq!(hot.get(key).unwrap().html, "new");
    }

    #[test]
    fn domain_purges_drop_only_that_domains_pages() {
        let hot = HotCache::new(1 << 20);
        for key in [
            "page:d1:desktop:aa",
            "page:d1:mobile:bb",
            "page:d10:desktop:cc",
        ] {
            let ticket = hot.ticket(key);
            hot.insert(key, entry(key), ticket);
        }
        hot.invalidate_domain("d1");
        assert!(hot.get("page:d1:desktop:aa").is_none());
        assert!(hot.get("page:d1:mobile:bb").is_none());
        assert!(hot.get("page:d10:desktop:cc").is_some());
        hot.invalidate_all();
        assert!(hot.get("page:d10:desktop:cc").is_none());
    }

    #[test]
    fn a_zero_capacity_cache_keeps_nothing() {
        let hot = HotCache::new(0);
        let ticket = hot.ticket("k");
        hot.insert("k", entry("x"), ticket);
        assert!(hot.get("k").is_none());
    }
}
