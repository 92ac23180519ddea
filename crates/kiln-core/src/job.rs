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
    /// How long the page is served stale after `cache_ttl_secs` (jobs queued before this field
    /// existed: not at all).
    #[serde(default)]
    pub stale_ttl_secs: u64,
    pub render_timeout_ms: u64,
    pub enqueued_at: UnixMillis,
    /// The id of the request that caused the render, carried into the worker's logs.
    pub request_id: Option<String>,
    /// What the render does not download (jobs queued before this field existed get the defaults).
    #[serde(default)]
    pub blocking: ResourceBlocking,
    /// Why the page is rendered, which decides what becomes of the result (jobs queued before this
    /// field existed were all bots' renders).
    #[serde(default)]
    pub purpose: RenderPurpose,
    /// The User-Agent of the bot whose request caused the render, at most
    /// [`MAX_JOB_USER_AGENT_CHARS`] characters (see [`RenderJob::user_agent_for_job`]); for the
    /// render log only, never sent to the origin.
    #[serde(default)]
    pub user_agent: Option<String>,
    /// How the request that caused the render reached Kiln (jobs queued before this field existed
    /// came through the edge).
    #[serde(default)]
    pub via: RenderVia,
}

/// How the request that caused a render reached Kiln, which the render log keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RenderVia {
    /// Through Kiln's edge: a bot on a domain whose traffic comes to Kiln (a CNAME), or the
    /// dashboard (warms, previews, parity checks).
    #[default]
    Edge,
    /// Through the render service: a customer's own server (prerender-node, rendertron-middleware,
    /// an nginx recipe…) asked for the page by URL with a service token.
    Service,
}

impl RenderVia {
    /// `edge` or `service`, for logs and the render log.
    pub fn as_str(self) -> &'static str {
        match self {
            RenderVia::Edge => "edge",
            RenderVia::Service => "service",
        }
    }
}

/// The longest User-Agent a job carries: enough to tell crawlers apart, too short to bloat the queue.
pub const MAX_JOB_USER_AGENT_CHARS: usize = 256;

/// Why a page is rendered.
///
/// Serialised with a `kind` tag: `{"kind":"bot"}`, `{"kind":"warm","job_id":"…"}`,
/// `{"kind":"preview","reply_to":"…"}`, `{"kind":"parity","check_id":"…"}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RenderPurpose {
    /// A bot asked for the page and missed the cache: store the page, announce it, release the
    /// render lock the gateway took.
    #[default]
    Bot,
    /// Cache warming (a sitemap or a list of URLs): store and announce the page like a bot's render,
    /// count the result under `job_id`, and leave render locks alone (none was taken for it).
    Warm { job_id: String },
    /// A dashboard preview: render, store nothing, and hand the result to whoever waits on
    /// `reply_to`.
    Preview { reply_to: String },
    /// A parity check: render the page as for a bot (storing nothing), load it live as a person's
    /// browser would, compare the two and store the report under `check_id` (see
    /// [`crate::parity`]).
    Parity { check_id: String },
}

impl RenderPurpose {
    /// `bot`, `warm`, `preview` or `parity`, for logs and the render log.
    pub fn as_str(&self) -> &'static str {
        match self {
            RenderPurpose::Bot => "bot",
            RenderPurpose::Warm { .. } => "warm",
            RenderPurpose::Preview { .. } => "preview",
            RenderPurpose::Parity { .. } => "parity",
        }
    }
}

impl RenderJob {
    /// The origin's scheme, host and port: `render_url` without the page's path and query.
    pub fn origin_base(&self) -> &str {
        self.render_url
            .strip_suffix(self.page_url.path_and_query())
            .unwrap_or(&self.render_url)
    }

    /// What a job keeps of a bot's User-Agent: the first [`MAX_JOB_USER_AGENT_CHARS`] characters,
    /// or nothing for an empty one.
    pub fn user_agent_for_job(user_agent: &str) -> Option<String> {
        let user_agent = user_agent.trim();
        (!user_agent.is_empty())
            .then(|| user_agent.chars().take(MAX_JOB_USER_AGENT_CHARS).collect())
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
            stale_ttl_secs: 0,
            render_timeout_ms: 1000,
            enqueued_at: 0,
            request_id: None,
            blocking: ResourceBlocking::default(),
            purpose: RenderPurpose::Bot,
            user_agent: None,
            via: Default::default(),
        };
        assert_eq!(job.origin_base(), "http://10.0.0.5:8080");
        assert_eq!(job.page_url.base(), "https://shop.com");
    }

    #[test]
    fn purposes_serialise_with_a_kind_tag() {
        let check = |purpose: RenderPurpose, json: &str| {
            assert_eq!(serde_json::to_string(&purpose).unwrap(), json);
            assert_eq!(
                serde_json::from_str::<RenderPurpose>(json).unwrap(),
                purpose
            );
        };
        check(RenderPurpose::Bot, r#"{"kind":"bot"}"#);
        check(
            RenderPurpose::Warm {
                job_id: "w1".into(),
            },
            r#"{"kind":"warm","job_id":"w1"}"#,
        );
        check(
            RenderPurpose::Preview {
                reply_to: "r1".into(),
            },
            r#"{"kind":"preview","reply_to":"r1"}"#,
        );
    }

    #[test]
    fn jobs_queued_before_purposes_existed_are_bots_renders() {
        let old = r#"{"key":{"domain_id":"d","device":"mobile","url_hash":"00"},"tenant_id":"t",
            "page_url":"https://shop.com/p","render_url":"http://10.0.0.5/p","device":"mobile",
            "cache_ttl_secs":60,"render_timeout_ms":1000,"enqueued_at":5,"request_id":null}"#;
        let job: RenderJob = serde_json::from_str(old).unwrap();
        assert_eq!(job.purpose, RenderPurpose::Bot);
        assert_eq!(job.user_agent, None);
        assert_eq!(job.blocking, ResourceBlocking::default());
    }

    #[test]
    fn user_agents_are_kept_short() {
        let check = |input: &str, expected: Option<&str>| {
            assert_eq!(
                RenderJob::user_agent_for_job(input).as_deref(),
                expected,
                "{input:?}"
            );
        };
        check("", None);
        check("   ", None);
        check("Googlebot/2.1", Some("Googlebot/2.1"));
        check(" Bingbot ", Some("Bingbot"));
        let long = "é".repeat(300);
        let kept = RenderJob::user_agent_for_job(&long).unwrap();
        assert_eq!(kept.chars().count(), MAX_JOB_USER_AGENT_CHARS);
        assert!(long.starts_with(&kept));
    }
}
