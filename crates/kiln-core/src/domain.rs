//! The configuration of a registered domain, as the dashboard publishes it for gateways and workers.

use crate::{Hostname, NormalizedUrl};
use serde::{Deserialize, Serialize};

/// Everything a gateway or worker needs to know about one customer domain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainConfig {
    pub id: String,
    pub tenant_id: String,
    pub host: Hostname,
    /// The customer's origin server: scheme, host and optional port, no path (e.g. `https://origin.shop.com`).
    pub origin: String,
    /// Whether the domain's ownership is established. Unverified domains are proxied for people but
    /// never rendered for bots.
    pub verified: bool,
    #[serde(default)]
    pub settings: DomainSettings,
}

/// Per-domain knobs, each with a sane default so that older published records stay readable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DomainSettings {
    /// How long a render is served from the cache.
    pub cache_ttl_secs: u64,
    /// The longest a single render may take in the browser.
    pub render_timeout_ms: u64,
    /// How long a bot waits for a render on a cache miss before it gets the origin's page.
    pub bot_wait_ms: u64,
    /// Query parameters that never change the page (`utm_*` is a prefix pattern).
    pub ignored_query_params: Vec<String>,
    /// What renders do not download.
    pub blocking: ResourceBlocking,
}

/// What a render does not download. Bots read the document, not its pixels: images, media and fonts
/// only cost time, and analytics, ads and tag managers would count every render as a visit.
/// Stylesheets can change what the page shows (`display: none`), so they load by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourceBlocking {
    pub images: bool,
    pub media: bool,
    pub fonts: bool,
    pub stylesheets: bool,
    /// Known analytics, advertising and tag-manager hosts.
    pub trackers: bool,
}

impl Default for ResourceBlocking {
    fn default() -> Self {
        ResourceBlocking {
            images: true,
            media: true,
            fonts: true,
            stylesheets: false,
            trackers: true,
        }
    }
}

impl Default for DomainSettings {
    fn default() -> Self {
        DomainSettings {
            cache_ttl_secs: 3600,
            render_timeout_ms: 10_000,
            bot_wait_ms: 20_000,
            ignored_query_params: ["utm_*", "gclid", "fbclid", "msclkid"]
                .map(String::from)
                .to_vec(),
            blocking: ResourceBlocking::default(),
        }
    }
}

impl DomainConfig {
    /// The origin URL that serves the page a client asked for at `url`.
    pub fn origin_url_for(&self, url: &NormalizedUrl) -> String {
        format!(
            "{}{}",
            self.origin.trim_end_matches('/'),
            url.path_and_query()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_url_keeps_path_and_query() {
        let domain = DomainConfig {
            id: "d".into(),
            tenant_id: "t".into(),
            host: Hostname::parse("shop.com").unwrap(),
            origin: "http://127.0.0.1:5173/".into(),
            verified: true,
            settings: DomainSettings::default(),
        };
        let url = NormalizedUrl::from_stored("https://shop.com/p/3?a=1".into());
        assert_eq!(domain.origin_url_for(&url), "http://127.0.0.1:5173/p/3?a=1");
    }

    #[test]
    fn missing_settings_take_defaults() {
        let json = r#"{"id":"d","tenant_id":"t","host":"a.com","origin":"http://a","verified":true,"settings":{"cache_ttl_secs":60}}"#;
        let parsed: DomainConfig = serde_json::from_str(json).unwrap();
        assert_eq!(parsed.settings.cache_ttl_secs, 60);
        assert_eq!(parsed.settings.bot_wait_ms, 20_000);
        assert_eq!(parsed.settings.blocking, ResourceBlocking::default());
    }
}
