//! What a render does not download, as Chromium `Fetch` patterns: only matching requests pause (and
//! are failed at once), so everything else goes to the network without a round trip through the
//! worker.

use chromiumoxide::cdp::browser_protocol::fetch::{RequestPattern, RequestStage};
use chromiumoxide::cdp::browser_protocol::network::ResourceType;
use kiln_core::ResourceBlocking;

/// Analytics, advertising, tag-manager and session-recording hosts (and their subdomains). Loading
/// them would count every render as a visit or an ad impression, and they cost time. Kept to
/// well-known hosts whose only job is that: a page's own content never comes from them.
pub const TRACKER_HOSTS: &[&str] = &[
    // Google
    "google-analytics.com",
    "googletagmanager.com",
    "googletagservices.com",
    "googlesyndication.com",
    "googleadservices.com",
    "doubleclick.net",
    "adservice.google.com",
    // Meta, Microsoft, X, LinkedIn, TikTok, Snap, Pinterest, Reddit
    "connect.facebook.net",
    "clarity.ms",
    "bat.bing.com",
    "static.ads-twitter.com",
    "analytics.twitter.com",
    "snap.licdn.com",
    "px.ads.linkedin.com",
    "analytics.tiktok.com",
    "sc-static.net",
    "ct.pinterest.com",
    "redditstatic.com",
    "alb.reddit.com",
    // Product analytics and session recording
    "segment.io",
    "cdn.segment.com",
    "api.segment.io",
    "mixpanel.com",
    "amplitude.com",
    "heapanalytics.com",
    "hotjar.com",
    "hotjar.io",
    "fullstory.com",
    "mouseflow.com",
    "crazyegg.com",
    "logrocket.io",
    "lr-ingest.io",
    "posthog.com",
    "plausible.io",
    "usefathom.com",
    "matomo.cloud",
    "stats.wp.com",
    "mc.yandex.ru",
    "hm.baidu.com",
    "js.hs-scripts.com",
    "js.hs-analytics.net",
    "js.hsadspixel.net",
    "script.crazyegg.com",
    "static.klaviyo.com",
    "cdn.mxpnl.com",
    // Performance and error beacons
    "js-agent.newrelic.com",
    "bam.nr-data.net",
    "browser-intake-datadoghq.com",
    "browser-intake-datadoghq.eu",
    "rum.browser-intake-datadoghq.com",
    // Advertising and measurement networks
    "adsrvr.org",
    "amazon-adsystem.com",
    "criteo.com",
    "criteo.net",
    "taboola.com",
    "outbrain.com",
    "quantserve.com",
    "scorecardresearch.com",
    "adnxs.com",
    "rubiconproject.com",
    "pubmatic.com",
    "casalemedia.com",
    "moatads.com",
    "adroll.com",
    "bidswitch.net",
    "demdex.net",
    "omtrdc.net",
    "everesttech.net",
];

/// The `Fetch.enable` patterns for a render.
pub fn patterns(blocking: &ResourceBlocking) -> Vec<RequestPattern> {
    let by_type = |kind| {
        RequestPattern::builder()
            .url_pattern("*")
            .resource_type(kind)
            .request_stage(RequestStage::Request)
            .build()
    };
    let by_url = |pattern: String| {
        RequestPattern::builder()
            .url_pattern(pattern)
            .request_stage(RequestStage::Request)
            .build()
    };
    let mut patterns = Vec::new();
    let kinds = [
        (blocking.images, ResourceType::Image),
        (blocking.media, ResourceType::Media),
        (blocking.fonts, ResourceType::Font),
        (blocking.stylesheets, ResourceType::Stylesheet),
    ];
    for (blocked, kind) in kinds {
        if blocked {
            patterns.push(by_type(kind));
        }
    }
    // The browser fetches the favicon by itself; renders never need it.
    patterns.push(by_url("*/favicon.ico".to_owned()));
    if blocking.trackers {
        for host in TRACKER_HOSTS {
            patterns.push(by_url(format!("*://{host}/*")));
            patterns.push(by_url(format!("*://*.{host}/*")));
        }
    }
    patterns
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_follow_the_settings() {
        let all = patterns(&ResourceBlocking::default());
        assert!(
            all.iter()
                .any(|p| p.resource_type == Some(ResourceType::Image))
        );
        assert!(
            !all.iter()
                .any(|p| p.resource_type == Some(ResourceType::Stylesheet))
        );
        assert!(
            all.iter()
                .any(|p| p.url_pattern.as_deref() == Some("*://*.google-analytics.com/*"))
        );
        let none = patterns(&ResourceBlocking {
            images: false,
            media: false,
            fonts: false,
            stylesheets: false,
            trackers: false,
        });
        assert_eq!(none.len(), 1, "only the favicon");
    }

    #[test]
    fn hosts_are_bare_lowercase_names() {
        for host in TRACKER_HOSTS {
            assert!(
                host.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-'),
                "{host}"
            );
        }
    }
}
