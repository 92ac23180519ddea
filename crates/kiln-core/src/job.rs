//! Render jobs (gateway → queue → worker) and their outcomes (worker → waiting gateways).

use crate::{CacheKey, DeviceClass, NormalizedUrl, ResourceBlocking, UnixMillis};
use serde::{Deserialize, Serialize};

/// A request to render one page for one device class and store it under `key`.
///
/// Jobs are idempotent: rendering the same job twice stores the same entry twice, no more.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenderJob {
    pub key: CacheKey,
    pub tenant_id: String,
    /// The public URL the bot asked for (what the cache entry describes).
    pub page_url: NormalizedUrl,
    /// The URL Chromium loads: the same path and query on the customer's origin.
    pub render_url: String,
    pub device: DeviceClass,
    pub cache_ttl_secs: u64,
    pub render_timeout_ms: u64,
    pub enqueued_at: UnixMillis,
    /// The id of the request that caused the render, carried into the worker's logs.
    pub request_id: Option<String>,
    /// What the render does not download (jobs queued before this field existed get the defaults).
    #[serde(default)]
    pub blocking: ResourceBlocking,
}

impl RenderJob {
    /// The origin's scheme, host and port: `render_url` without the page's path and query.
    pub fn origin_base(&self) -> &str {
        self.render_url
            .strip_suffix(self.page_url.path_and_query())
            .unwrap_or(&self.render_url)
    }
}

/// What became of a render, announced to every gateway waiting on its key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RenderOutcome {
    /// A page entry was stored; waiting gateways read it from the cache.
    Stored { status: u16, render_ms: u64 },
    /// The render failed; waiting gateways fall back to the origin at once.
    Failed { reason: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_origin_base_is_the_render_url_without_the_page() {
        let page_url = NormalizedUrl::from_stored("https://shop.com/p/3?a=1".into());
        let job = RenderJob {
            key: CacheKey::new("d", DeviceClass::Desktop, &page_url),
            tenant_id: "t".into(),
            render_url: "http://10.0.0.5:8080/p/3?a=1".into(),
            page_url,
            device: DeviceClass::Desktop,
            cache_ttl_secs: 60,
            render_timeout_ms: 1000,
            enqueued_at: 0,
            request_id: None,
            blocking: ResourceBlocking::default(),
        };
        assert_eq!(job.origin_base(), "http://10.0.0.5:8080");
        assert_eq!(job.page_url.base(), "https://shop.com");
    }
}
