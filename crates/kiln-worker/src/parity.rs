//! The page loads of a parity check (`kiln_core::parity`), in one tab, after the page has been
//! rendered for bots in it:
//!
//! 1. **Live**: the page as a person's browser shows it: scripts on, a person's User-Agent, the
//!    render's readiness rules (and its tall view of the page, which a person reaches by
//!    scrolling).
//! 2. **Snapshot**: the render's bytes, served as the main document's response with scripts off
//!    (`Content-Security-Policy: script-src 'none'`), at the origin's URL so that its styles and
//!    fonts load as they do for the live page. The render's markup names the origin's host (the
//!    public host is put in only when the page is stored); requests for the public host (a `<base>`
//!    Kiln added) go to the origin instead.
//!
//! Both loads block what renders block (images by default), so blocked resources are no
//! difference. Each ends with a screenshot at the device's width over the page's height (at most
//! [`MAX_SCREENSHOT_HEIGHT`]; the snapshot's over at least the live page's, so that the two cover the
//! same area) and the facts a crawler reads.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chromiumoxide::Page;
use chromiumoxide::cdp::browser_protocol::emulation::SetUserAgentOverrideParams;
use chromiumoxide::cdp::browser_protocol::fetch::{
    self, ContinueRequestParams, EventRequestPaused, FailRequestParams, FulfillRequestParams,
    HeaderEntry, RequestPattern, RequestStage,
};
use chromiumoxide::cdp::browser_protocol::network::{ErrorReason, ResourceType};
use chromiumoxide::cdp::browser_protocol::page::{
    CaptureScreenshotFormat, CaptureScreenshotParams, NavigateParams, Viewport,
};
use futures::StreamExt;
use kiln_core::DeviceClass;
use kiln_core::parity::{PageCapture, PageFacts};
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::blocking;
use crate::pool::Lease;
use crate::render::{self, Loaded, Prepared, RenderError, RenderRequest, cdp_error, evaluate};

/// The tallest area compared, in CSS pixels: six screens of a desktop. Below it a page is compared
/// by its text and fields only. Every pixel costs twice (Chromium encodes the PNG, the comparison
/// decodes it): 1366 × 6000 is about 8 million pixels a side.
pub const MAX_SCREENSHOT_HEIGHT: u32 = 6000;

/// Reads what a crawler reads of the page, and its height.
const FACTS_JS: &str = r#"(() => {
  const clean = (text) => (text || '').trim().replace(/\s+/g, ' ');
  const body = document.body;
  const description = document.querySelector('meta[name="description" i][content]');
  const canonical = document.querySelector('link[rel~="canonical" i][href]');
  const scroller = document.scrollingElement || document.documentElement;
  return {
    text: body ? body.innerText : '',
    title: clean(document.title),
    description: description ? description.content : null,
    canonical: canonical ? canonical.href : null,
    headings: Array.from(document.querySelectorAll('h1, h2, h3, h4, h5, h6'),
      (h) => h.localName + ': ' + clean(h.innerText)),
    links: Array.from(document.querySelectorAll('a[href]'), (a) => a.href),
    json_ld: Array.from(document.querySelectorAll('script[type="application/ld+json" i]'),
      (s) => s.textContent),
    height: Math.ceil(scroller ? scroller.scrollHeight : 0),
  };
})()"#;

/// Where the snapshot's document is in its loading: `loaded` once its load event has fired and its
/// fonts are in, else what it waits for.
const LOADED_JS: &str = "document.readyState !== 'complete' ? 'its load event (the document is ' + \
    document.readyState + ')' : (document.fonts && document.fonts.status !== 'loaded' ? 'its fonts' : 'loaded')";

/// How often the snapshot's load is looked at.
const SNAPSHOT_POLL: Duration = Duration::from_millis(25);

/// The two captures of a check, and how long each load took.
pub struct Captures {
    pub live: PageCapture,
    pub snapshot: PageCapture,
    pub live_ms: u64,
    pub snapshot_ms: u64,
}

/// Loads the page live and then `snapshot_html` (the render of `request.url`), each in a page of
/// its own that `lease` opens in its context, and captures both. Dispose of the lease afterwards.
pub async fn capture(
    lease: &Lease,
    request: &RenderRequest<'_>,
    snapshot_html: &str,
) -> Result<Captures, RenderError> {
    let browser_dead = &lease.browser_dead();
    let page = open(lease).await?;
    let live = capture_live(&page, request, browser_dead).await;
    let _ = page.close().await;
    let (live, live_height, live_ms) = live?;

    let started = Instant::now();
    let page = open(lease).await?;
    let snapshot = capture_snapshot(&page, request, snapshot_html, live_height, browser_dead).await;
    let _ = page.close().await;
    let (mut live, mut snapshot) = (live, snapshot?);
    // Both loads ran on the origin; bots see the page on its public host.
    for facts in [&mut live.facts, &mut snapshot.facts] {
        on_public_host(facts, request.url, request.page_url);
    }
    Ok(Captures {
        live,
        snapshot,
        live_ms,
        snapshot_ms: started.elapsed().as_millis() as u64,
    })
}

/// `facts`' links and canonical URL with the origin's scheme, host and port (of `render_url`)
/// replaced by the public ones (of `page_url`), as bots get them: a `<base>` Kiln adds names the
/// public host, and the live page names the origin.
fn on_public_host(facts: &mut PageFacts, render_url: &str, page_url: &str) {
    let base = |url: &str| {
        url::Url::parse(url)
            .ok()
            .map(|u| u.origin().ascii_serialization())
    };
    let (Some(origin), Some(public)) = (base(render_url), base(page_url)) else {
        return;
    };
    let rebase = |url: &mut String| {
        if let Some(rest) = url.strip_prefix(origin.as_str())
            && (rest.is_empty() || rest.starts_with(['/', '?', '#']))
        {
            *url = format!("{public}{rest}");
        }
    };
    facts.links.iter_mut().for_each(rebase);
    if let Some(canonical) = facts.canonical.as_mut() {
        rebase(canonical);
    }
}

async fn open(lease: &Lease) -> Result<Page, RenderError> {
    lease
        .open_page()
        .await
        .map_err(|e| RenderError::NoBrowser(format!("could not open a page for the check: {e}")))
}

/// The live page, the height it was photographed at, and how long it took.
async fn capture_live(
    page: &Page,
    request: &RenderRequest<'_>,
    browser_dead: &CancellationToken,
) -> Result<(PageCapture, u32, u64), RenderError> {
    let started = Instant::now();
    // A person scrolls: the live page always gets the tall view, whatever the snapshot's fidelity.
    let live_request = RenderRequest {
        user_agent: Some(request.device.person_user_agent()),
        faithful: true,
        ..request.clone()
    };
    let mut documents = BTreeSet::new();
    match render::load(
        page,
        Prepared::default(),
        &live_request,
        browser_dead,
        &mut documents,
    )
    .await?
    {
        // A page of any status is compared: bots get a 404's page too.
        Loaded::Ready(_) => {}
        Loaded::Redirect(redirect) => {
            let to = redirect
                .headers
                .iter()
                .find(|(name, _)| name == "Location")
                .map_or("elsewhere", |(_, value)| value.as_str());
            return Err(RenderError::Page(format!(
                "the page redirects ({}) to {to}: compare that URL instead",
                redirect.status
            )));
        }
    }
    let facts = facts(page).await?;
    let height = shot_height(&facts, 0);
    let png = screenshot(page, request.device, height).await?;
    let elapsed = started.elapsed().as_millis() as u64;
    Ok((PageCapture { png, facts }, height, elapsed))
}

/// The snapshot, photographed over at least `live_height`.
async fn capture_snapshot(
    page: &Page,
    request: &RenderRequest<'_>,
    html: &str,
    live_height: u32,
    browser_dead: &CancellationToken,
) -> Result<PageCapture, RenderError> {
    render::prepare(
        page,
        Prepared::default(),
        request.device,
        &request.blocking,
        request.faithful,
    )
    .await?;
    load_snapshot(page, request, html, browser_dead).await?;
    let facts = facts(page).await?;
    let png = screenshot(page, request.device, shot_height(&facts, live_height)).await?;
    Ok(PageCapture { png, facts })
}

/// The height to photograph a page at: its own, at least `at_least`, at most the cap.
fn shot_height(facts: &PageFacts, at_least: u32) -> u32 {
    facts.height.max(at_least).clamp(1, MAX_SCREENSHOT_HEIGHT)
}

/// Loads `html` as the response to `request.url`, scripts off, and waits for its load event and
/// its fonts (and for the network, through the cap, since the load event waits for styles).
async fn load_snapshot(
    page: &Page,
    request: &RenderRequest<'_>,
    html: &str,
    browser_dead: &CancellationToken,
) -> Result<(), RenderError> {
    let deadline = Instant::now() + request.cap;
    let origin = url::Url::parse(request.url)
        .map_err(|_| RenderError::InvalidUrl(request.url.to_owned()))?;
    let origin_base = origin.origin().ascii_serialization();
    let public_base = url::Url::parse(request.page_url)
        .map(|url| url.origin().ascii_serialization())
        .ok()
        .filter(|public| *public != origin_base);

    let mut paused = page
        .event_listener::<EventRequestPaused>()
        .await
        .map_err(cdp_error)?;
    let blocked_patterns = blocking::patterns(&request.blocking);
    let mut patterns = blocked_patterns.clone();
    patterns.push(
        RequestPattern::builder()
            .url_pattern("*")
            .resource_type(ResourceType::Document)
            .request_stage(RequestStage::Request)
            .build(),
    );
    if let Some(public) = &public_base {
        patterns.push(
            RequestPattern::builder()
                .url_pattern(format!("{public}/*"))
                .request_stage(RequestStage::Request)
                .build(),
        );
    }
    let enable = fetch::EnableParams {
        patterns: Some(patterns),
        ..Default::default()
    };
    page.execute(enable).await.map_err(cdp_error)?;
    page.execute(SetUserAgentOverrideParams::new(
        request.device.render_user_agent(),
    ))
    .await
    .map_err(cdp_error)?;

    let body = BASE64.encode(html.as_bytes());
    let navigate = page.execute(NavigateParams::new(request.url));
    tokio::pin!(navigate);
    let mut navigating = true;
    let mut served = false;
    let mut next_look = Instant::now() + SNAPSHOT_POLL;
    let mut waiting_for = String::from("its document");
    loop {
        tokio::select! {
            biased;
            _ = browser_dead.cancelled() => {
                return Err(RenderError::BrowserCrashed("the browser exited".into()));
            }
            _ = tokio::time::sleep_until(deadline) => {
                return Err(RenderError::Timeout {
                    after_ms: request.cap.as_millis() as u64,
                    waiting_for: format!("the snapshot's load: {waiting_for}"),
                });
            }
            event = paused.next() => {
                let Some(event) = event else {
                    return Err(RenderError::BrowserCrashed("the page's event stream ended".into()));
                };
                let id = event.request_id.clone();
                let url = event.request.url.as_str();
                if !served && event.resource_type == ResourceType::Document && url == request.url {
                    served = true;
                    let fulfil = FulfillRequestParams::builder()
                        .request_id(id)
                        .response_code(200)
                        .response_headers([
                            HeaderEntry::new("Content-Type", "text/html; charset=utf-8"),
                            HeaderEntry::new("Content-Security-Policy", "script-src 'none'"),
                        ])
                        .body(body.clone())
                        .build()
                        .map_err(RenderError::Page)?;
                    page.execute(fulfil).await.map_err(cdp_error)?;
                    continue;
                }
                // A pattern matches as Chromium matches it: its resource type, if it names one,
                // and its URL pattern, if it has one.
                let blocked = !matches!(event.resource_type, ResourceType::Document)
                    && blocked_patterns.iter().any(|pattern| {
                        pattern.resource_type.as_ref().is_none_or(|kind| *kind == event.resource_type)
                            && pattern.url_pattern.as_deref().is_none_or(|p| wildcard_match(p, url))
                    });
                let page = page.clone();
                let rewritten = public_base
                    .as_deref()
                    .and_then(|public| url.strip_prefix(public))
                    .map(|rest| format!("{origin_base}{rest}"));
                // Answered off the loop: a slow answer must not hold up the others.
                tokio::spawn(async move {
                    let _ = if blocked {
                        page.execute(FailRequestParams::new(id, ErrorReason::BlockedByClient))
                            .await
                            .map(drop)
                    } else {
                        let mut params = ContinueRequestParams::new(id);
                        params.url = rewritten;
                        page.execute(params).await.map(drop)
                    };
                });
            }
            navigated = &mut navigate, if navigating => {
                navigating = false;
                match navigated {
                    Ok(response) => {
                        if let Some(text) = response.result.error_text.filter(|t| !t.is_empty()) {
                            return Err(RenderError::Navigation(text));
                        }
                    }
                    Err(chromiumoxide::error::CdpError::Timeout) => {}
                    Err(error) => return Err(cdp_error(error)),
                }
            }
            // Not once chromiumoxide says the navigation is over: it waits for every frame's load
            // event, which a lazy or refused frame never fires.
            _ = tokio::time::sleep_until(next_look), if served => {
                match evaluate(page, LOADED_JS).await? {
                    Some(serde_json::Value::String(state)) if state == "loaded" => return Ok(()),
                    Some(serde_json::Value::String(state)) => waiting_for = state,
                    _ => {}
                }
                next_look = Instant::now() + SNAPSHOT_POLL;
            }
        }
    }
}

/// Whether `url` matches a `Fetch` URL pattern (`*` for any run of characters).
fn wildcard_match(pattern: &str, url: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else {
        return true;
    };
    let Some(mut rest) = url.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    for (i, part) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

async fn facts(page: &Page) -> Result<PageFacts, RenderError> {
    let value = evaluate(page, FACTS_JS)
        .await?
        .ok_or_else(|| RenderError::Page("the page has no document to read".into()))?;
    serde_json::from_value(value)
        .map_err(|e| RenderError::Page(format!("unexpected page facts: {e}")))
}

/// A PNG of the page's top `height` CSS pixels at the device's width, one pixel per CSS pixel.
async fn screenshot(page: &Page, device: DeviceClass, height: u32) -> Result<Vec<u8>, RenderError> {
    let (width, _) = device.viewport();
    let clip = Viewport {
        x: 0.0,
        y: 0.0,
        width: f64::from(width),
        height: f64::from(height),
        scale: 1.0 / device.scale_factor(),
    };
    let params = CaptureScreenshotParams::builder()
        .format(CaptureScreenshotFormat::Png)
        .clip(clip)
        .from_surface(true)
        .capture_beyond_viewport(true)
        .build();
    let shot = page.execute(params).await.map_err(cdp_error)?;
    let data: &str = shot.result.data.as_ref();
    BASE64
        .decode(data)
        .map_err(|e| RenderError::Page(format!("the screenshot is not base64: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetch_patterns_match_like_chromium() {
        assert!(wildcard_match("*", "http://a/b"));
        assert!(wildcard_match("*/favicon.ico", "http://a/favicon.ico"));
        assert!(!wildcard_match("*/favicon.ico", "http://a/favicon.ico?x"));
        assert!(wildcard_match(
            "*://*.criteo.com/*",
            "https://x.criteo.com/a.js"
        ));
        assert!(!wildcard_match(
            "*://*.criteo.com/*",
            "https://criteo.net/a.js"
        ));
        assert!(wildcard_match("http://a/*", "http://a/"));
        assert!(!wildcard_match("http://a/*", "http://b/"));
    }

    #[test]
    fn links_are_compared_on_the_public_host() {
        let mut facts = PageFacts {
            links: vec![
                "http://127.0.0.1:8080/a?b#c".into(),
                "http://127.0.0.1:8080".into(),
                "http://127.0.0.1:80801/x".into(),
                "https://elsewhere.example/".into(),
            ],
            canonical: Some("http://127.0.0.1:8080/p".into()),
            ..PageFacts::default()
        };
        on_public_host(
            &mut facts,
            "http://127.0.0.1:8080/p",
            "https://shop.example/p",
        );
        assert_eq!(
            facts.links,
            [
                "https://shop.example/a?b#c",
                "https://shop.example",
                "http://127.0.0.1:80801/x",
                "https://elsewhere.example/",
            ]
        );
        assert_eq!(facts.canonical.as_deref(), Some("https://shop.example/p"));
    }

    #[test]
    fn the_snapshot_is_photographed_over_at_least_the_live_pages_height() {
        let facts = |height| PageFacts {
            height,
            ..PageFacts::default()
        };
        assert_eq!(shot_height(&facts(1200), 0), 1200);
        assert_eq!(shot_height(&facts(800), 1200), 1200);
        assert_eq!(shot_height(&facts(0), 0), 1);
        assert_eq!(shot_height(&facts(50_000), 0), MAX_SCREENSHOT_HEIGHT);
    }
}
