//! One render: load a URL in a prepared tab, wait until the page is ready, and serialise it.
//!
//! Readiness is decided from CDP events and the in-page tracker (`ready.js`), never from fixed
//! sleeps: the load event has fired, no network request is in flight (long-polls, event streams and
//! beacons aside) and the network has been quiet for the quiet window, no short timer is pending,
//! the DOM has not changed for the quiet window, and the page has not set
//! `window.prerenderReady = false`. All of it within the job's cap. A page that set
//! `prerenderReady` false and then true has said it is complete: it is ready once nothing is
//! pending, without the quiet windows.
//!
//! The worker looks at the page's state (a `Runtime.evaluate`) when something may have changed: the
//! quiet window after the last activity is over, the network settled, or the page's tracker called
//! the `__kilnSignal` binding because what it waited for has settled. While the page is busy with
//! something only it can see (a timer, `prerenderReady`), a slow fallback look is all the polling
//! left.

use chromiumoxide::Page;
use chromiumoxide::cdp::browser_protocol::emulation::{
    ScreenOrientation, ScreenOrientationType, SetDeviceMetricsOverrideParams,
    SetTouchEmulationEnabledParams, SetUserAgentOverrideParams,
};
use chromiumoxide::cdp::browser_protocol::fetch::{self, EventRequestPaused, FailRequestParams};
use chromiumoxide::cdp::browser_protocol::inspector::{self, EventTargetCrashed};
use chromiumoxide::cdp::browser_protocol::network::{
    ErrorReason, EventLoadingFailed, EventLoadingFinished, EventRequestWillBeSent,
    EventResponseReceived, GetResponseBodyParams, RequestId, ResourceType,
};
use chromiumoxide::cdp::browser_protocol::page::{
    AddScriptToEvaluateOnNewDocumentParams, FrameId, NavigateParams,
};
use chromiumoxide::cdp::js_protocol::runtime::{
    AddBindingParams, EvaluateParams, EventBindingCalled,
};
use chromiumoxide::error::CdpError;
use futures::stream::{BoxStream, SelectAll};
use futures::{FutureExt, StreamExt, TryFutureExt};
use kiln_core::{DeviceClass, ResourceBlocking};
use kiln_egress::EGRESS_HEADER;
use serde::Deserialize;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{blocking, output};

/// The in-page readiness tracker, run before any of the page's own scripts.
const READY_JS: &str = include_str!("ready.js");
/// What in ready.js says how tall a viewport its observers of the viewport see (see
/// [`tracker_script`]).
const TALL_VIEW_MARKER: &str = "/*KILN:TALL_VIEW*/ { desktop: 9300, mobile: 12100 }";

/// The tracker as a tab gets it: with `faithful`, as it is; without, its observers of the viewport
/// see only the viewport.
fn tracker_script(faithful: bool) -> String {
    if faithful {
        READY_JS.to_owned()
    } else {
        READY_JS.replacen(TALL_VIEW_MARKER, "null", 1)
    }
}

/// Reads the tracker's state and the document's ready state. A document without the tracker never
/// counts as ready: it is the blank page the navigation is replacing (error pages end the render
/// through the navigation error instead).
const STATE_JS: &str = "(() => { const f = window.__kilnState; \
    const s = typeof f === 'function' ? f() : { timers: 0, requests: 0, sinceMutationMs: 0, sinceTimerMs: 0, \
    prerenderReady: false }; \
    const nav = performance.getEntriesByType('navigation')[0]; \
    return Object.assign(s, { tracked: typeof f === 'function', readyState: document.readyState, \
    loadEndMs: nav ? nav.loadEventEnd : 0 }); })()";

/// Serialises the document (snapshot.js); called with whether the snapshot is to be faithful.
const SNAPSHOT_JS: &str = include_str!("snapshot.js");

/// The shortest gap between two looks at the page's state.
const MIN_CHECK_INTERVAL: Duration = Duration::from_millis(4);
/// How often the browser's side (the network) is checked while requests are in flight: no CDP
/// call, only the events already received.
const WAITING_CHECK_INTERVAL: Duration = Duration::from_millis(15);
/// How often the page is looked at while it waits for something only it sees (a timer, a fetch,
/// `prerenderReady`). Its tracker signals when that settles; this look is for what time alone
/// settles (a request turning into a long-poll) and for a page that removed the signal.
const FALLBACK_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// The binding through which the page's tracker signals (ready.js).
const SIGNAL_BINDING: &str = "__kilnSignal";
/// Requests in flight longer than this are long-polls (or hung): readiness does not wait for them.
const LONG_REQUEST: Duration = Duration::from_secs(2);
/// Reading the finished page gets this long of its own, beyond the readiness cap. A 3 MB DOM takes
/// about 0.3 s on an idle machine but ten times that on a loaded one; only a renderer that is truly
/// stuck should hit this.
const SERIALIZE_TIMEOUT: Duration = Duration::from_secs(15);
/// A rendered page with less visible text than this is compared with the origin's page...
const NEARLY_EMPTY_TEXT: usize = 16;
/// ...and fails the quality gate if the origin's has at least this much.
const SUBSTANTIAL_TEXT: usize = 64;
/// Larger pages are not cached.
const MAX_HTML_BYTES: usize = 10 * 1024 * 1024;
/// Response headers a page may set through `<meta name="prerender-header">`, with their canonical
/// spelling. `Location` is only honoured with a 3xx status.
const ALLOWED_HEADERS: &[&str] = &["Location", "Link", "X-Robots-Tag"];
const MAX_META_HEADERS: usize = 16;
const MAX_HEADER_VALUE: usize = 2048;

/// What to render.
#[derive(Clone, Debug)]
pub struct RenderRequest<'a> {
    /// The URL Chromium loads (the customer's origin).
    pub url: &'a str,
    /// The public URL bots asked for; origin redirects are rewritten to it.
    pub page_url: &'a str,
    pub device: DeviceClass,
    /// The hard cap on waiting for readiness.
    pub cap: Duration,
    /// How long the DOM and network must be quiet.
    pub quiet: Duration,
    /// What the page does not download.
    pub blocking: ResourceBlocking,
    /// Whether the snapshot carries what the page holds only in memory (see snapshot.js).
    pub faithful: bool,
    /// A User-Agent to present instead of the device's render User-Agent (a parity check's live
    /// load, as a person's browser). The tab is then set up for nothing else: dispose of it after.
    pub user_agent: Option<&'a str>,
}

/// A finished render, ready to be stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    pub html: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Where the page ended up (after redirects and client-side navigations).
    pub final_url: String,
    /// How long the page itself took to be complete (its content last changed or it loaded),
    /// from the start of its navigation; what the render took beyond it is Kiln's overhead.
    pub page_ms: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("the render URL is not an http(s) URL: {0}")]
    InvalidUrl(String),
    #[error("navigation failed: {0}")]
    Navigation(String),
    #[error("the page was not ready after {after_ms} ms (still waiting for {waiting_for})")]
    Timeout { after_ms: u64, waiting_for: String },
    #[error("the origin answered {0}")]
    Status(u16),
    #[error("the rendered page is empty")]
    EmptyPage,
    #[error(
        "the rendered page is nearly empty ({rendered} characters of text; the origin's page has {origin})"
    )]
    NearlyEmpty { rendered: usize, origin: usize },
    #[error("the rendered page is too large ({0} bytes)")]
    TooLarge(usize),
    #[error("the page could not be read: {0}")]
    Page(String),
    #[error("the browser failed: {0}")]
    BrowserCrashed(String),
    #[error("the browser stopped answering")]
    Hung,
    #[error("no browser available: {0}")]
    NoBrowser(String),
    #[error(
        "given up after {0} starts: each time, the worker rendering it went away before it finished"
    )]
    GivenUp(u64),
}

impl RenderError {
    /// Whether the browser (not the page or the origin) is to blame: the browser is then recycled
    /// and the render retried once on a healthy one.
    pub fn is_browser_fault(&self) -> bool {
        matches!(self, RenderError::BrowserCrashed(_) | RenderError::Hung)
    }

    /// Whether the worker had no browser free: nothing is known about the page.
    pub fn is_capacity(&self) -> bool {
        matches!(self, RenderError::NoBrowser(_))
    }

    /// The origin's status, when that is what failed the render.
    pub fn status(&self) -> Option<u16> {
        match self {
            RenderError::Status(status) => Some(*status),
            _ => None,
        }
    }

    /// Whether a second try may well succeed: the browser failed, or the page came out wrong in a
    /// way a flaky script or a slow moment explains. An origin's answer (its status, a refused
    /// connection) or an oversized page would only come out the same again.
    pub fn is_worth_retrying(&self) -> bool {
        self.is_browser_fault()
            || matches!(
                self,
                RenderError::Timeout { .. }
                    | RenderError::EmptyPage
                    | RenderError::NearlyEmpty { .. }
                    | RenderError::NoBrowser(_)
            )
    }
}

/// Errors Chromium answered are about the page; anything else (a closed channel, a lost socket, no
/// answer) is about the browser.
pub(crate) fn cdp_error(error: CdpError) -> RenderError {
    match error {
        CdpError::Chrome(error) => RenderError::Page(error.to_string()),
        CdpError::JavascriptException(details) => RenderError::Page(details.text.clone()),
        CdpError::Serde(error) => RenderError::Page(error.to_string()),
        CdpError::Timeout => RenderError::Hung,
        other => RenderError::BrowserCrashed(other.to_string()),
    }
}

/// Renders `request.url` in `page`, a blank page set up as `prepared` says, in a browser context
/// that holds nothing a page has left (a fresh one, or one the pool has scrubbed).
/// `browser_dead` is cancelled if the browser dies meanwhile. `documents` gets the origin of every
/// document the page loads, its frames' included, whatever the outcome: what the pool clears
/// before the context serves another render.
pub async fn render(
    page: &Page,
    prepared: Prepared,
    request: &RenderRequest<'_>,
    browser_dead: &CancellationToken,
    documents: &mut BTreeSet<String>,
) -> Result<Rendered, RenderError> {
    let loaded = match load(page, prepared, request, browser_dead, documents).await? {
        Loaded::Ready(loaded) => loaded,
        Loaded::Redirect(rendered) => return Ok(rendered),
    };
    let Ready { tracker, started } = *loaded;
    let snapshot = tokio::time::timeout(SERIALIZE_TIMEOUT, serialize(page, request.faithful))
        .await
        .map_err(|_| RenderError::Hung)??;
    let base = base_href(&snapshot.url, request.url, request.page_url);
    // Rewriting a multi-megabyte page is CPU work: off the runtime's threads, so it does not hold up
    // the CDP traffic of the renders beside it.
    let html = snapshot.html;
    let processed = tokio::task::spawn_blocking(move || {
        output::process(
            &html,
            &output::Options {
                base_href: base.as_deref(),
            },
        )
    })
    .await
    .map_err(|e| RenderError::Page(format!("rewriting the page failed: {e}")))?
    .map_err(|e| RenderError::Page(e.to_string()))?;
    tracing::debug!(
        serialized_ms = started.elapsed().as_millis() as u64,
        bytes = processed.html.len(),
        "page serialised"
    );
    let visible_text = processed.visible_text;
    let mut rendered = judge(tracker.main_status, &snapshot.url, processed)?;
    rendered.page_ms = tracker.page_state.as_ref().map(PageState::complete_at_ms);
    if (200..300).contains(&rendered.status) && visible_text < NEARLY_EMPTY_TEXT {
        // Only now is the origin's own page worth reading: a short page is fine unless the
        // origin's was not (a render that lost its content, e.g. to a script error).
        if let Some(request_id) = &tracker.main_request
            && let Some(origin_text) = origin_visible_text(page, request_id).await
            && origin_text >= SUBSTANTIAL_TEXT
        {
            return Err(RenderError::NearlyEmpty {
                rendered: visible_text,
                origin: origin_text,
            });
        }
    }
    Ok(rendered)
}

/// A page loaded until ready, or the origin's redirect (which is what bots get instead).
pub(crate) enum Loaded {
    Ready(Box<Ready>),
    Redirect(Rendered),
}

/// A page that is ready: what its loading saw, and when it started.
pub(crate) struct Ready {
    tracker: Tracker,
    started: Instant,
}

/// Loads `request.url` in `page` (set up as `prepared` says) and waits until it is ready, as
/// [`render`] describes.
pub(crate) async fn load(
    page: &Page,
    prepared: Prepared,
    request: &RenderRequest<'_>,
    browser_dead: &CancellationToken,
    documents: &mut BTreeSet<String>,
) -> Result<Loaded, RenderError> {
    match url::Url::parse(request.url) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => {}
        _ => return Err(RenderError::InvalidUrl(request.url.to_owned())),
    }
    let started = Instant::now();
    let deadline = started + request.cap;

    // Listeners first: nothing the navigation causes may be missed.
    let mut events = subscribe(page).await?;
    prepare(
        page,
        prepared,
        request.device,
        &request.blocking,
        request.faithful,
    )
    .await?;
    if let Some(user_agent) = request.user_agent {
        page.execute(SetUserAgentOverrideParams::new(user_agent))
            .await
            .map_err(cdp_error)?;
    }
    // A top-level target's main frame has the target's id. (chromiumoxide's own idea of the main
    // frame can be a frame of the page before: after a page with frames, a second load in the same
    // tab waited for a main document that had long arrived, found by the parity checks.)
    let main_frame = FrameId::new(page.target_id().inner().clone());
    let mut tracker = Tracker::new(main_frame, request.quiet, started);
    let prepared_ms = started.elapsed().as_millis() as u64;

    let navigate = page.execute(NavigateParams::new(request.url));
    tokio::pin!(navigate);
    let mut navigating = true;
    // Checks are scheduled for the moment the page could first count as ready (the quiet window
    // after its last activity), not on a fixed tick, so readiness is seen within a few ms of it.
    let mut next_check = Instant::now() + request.quiet;
    // When the page's state was last read, how often, and whether the page has signalled since.
    let mut last_look = started;
    let mut looks = 0u32;
    let mut signalled = false;
    // Whether the page has been scrolled through (see `PageState::wants_scroll`).
    let mut scrolled = false;

    loop {
        tokio::select! {
            biased;
            _ = browser_dead.cancelled() => return Err(RenderError::BrowserCrashed("the browser exited".into())),
            _ = tokio::time::sleep_until(deadline) => {
                return Err(RenderError::Timeout {
                    after_ms: request.cap.as_millis() as u64,
                    waiting_for: tracker.waiting_for(Instant::now()),
                });
            }
            event = events.next() => match event {
                Some(Event::Signal) => {
                    // Look at once (but not twice within the shortest gap), unless a look is due sooner.
                    signalled = true;
                    next_check = look_soon(next_check, last_look, Instant::now());
                }
                Some(event) => {
                    let now = Instant::now();
                    tracker.on_event(event, page, now, documents);
                    // The page signalled while its last request's end was still on its way here.
                    if signalled && tracker.network_idle(now) {
                        next_check = look_soon(next_check, last_look, now);
                    }
                }
                None => return Err(RenderError::BrowserCrashed("the page's event stream ended".into())),
            },
            navigated = &mut navigate, if navigating => {
                navigating = false;
                match navigated {
                    Ok(response) => {
                        if let Some(text) = response.result.error_text.filter(|t| !t.is_empty()) {
                            tracker.navigation_error.get_or_insert(text);
                        }
                    }
                    // chromiumoxide gave up waiting for the load event; the cap decides here.
                    Err(CdpError::Timeout) => {}
                    Err(error) => return Err(cdp_error(error)),
                }
            }
            // Time alone can settle the network (a long-poll turning two seconds old), so the check
            // runs on a timer rather than as a precondition of the branch.
            _ = tokio::time::sleep_until(next_check) => {
                let now = Instant::now();
                // Requests in flight: nothing to ask the page yet. The network's quiet window only
                // defers the look if the page did not signal (it may have said it is complete).
                if let Some(wait) = tracker.until_network_settles(now)
                    && (!signalled || !tracker.network_idle(now))
                {
                    next_check = now + wait.clamp(MIN_CHECK_INTERVAL, request.quiet);
                    continue;
                }
                signalled = false;
                // Evaluating takes about a millisecond; one that outlasts the cap by a second means
                // the renderer is stuck (an endless script, say).
                let state = tokio::time::timeout_at(deadline + Duration::from_secs(1), read_state(page))
                    .await
                    .map_err(|_| RenderError::Hung)??;
                looks += 1;
                last_look = Instant::now();
                let now = last_look;
                let wants_scroll = state.as_ref().is_some_and(|state| state.wants_scroll);
                let declared = state.as_ref().is_some_and(|state| state.is_declared_ready() && tracker.document_loaded(state, now));
                let ready = state.as_ref().is_some_and(|state| state.is_ready(request.quiet) && tracker.document_loaded(state, now));
                let wait = state
                    .as_ref()
                    .and_then(|state| state.until_quiet(request.quiet))
                    .unwrap_or(FALLBACK_CHECK_INTERVAL);
                if state.is_some() {
                    tracker.page_state = state;
                }
                // Events that arrived while the page was being asked count too.
                while let Some(Some(event)) = events.next().now_or_never() {
                    match event {
                        Event::Signal => signalled = true,
                        event => tracker.on_event(event, page, Instant::now(), documents),
                    }
                }
                let now = Instant::now();
                if (declared && tracker.network_idle(now))
                    || (ready && tracker.until_network_settles(now).is_none())
                {
                    if !wants_scroll || scrolled {
                        break;
                    }
                    // What the scrolling starts is waited for like the rest: look again after it.
                    scrolled = true;
                    let steps = tokio::time::timeout_at(deadline + Duration::from_secs(1), scroll_through(page))
                        .await
                        .map_err(|_| RenderError::Hung)??;
                    tracing::debug!(steps, "scrolled the page through");
                    next_check = Instant::now() + MIN_CHECK_INTERVAL;
                    continue;
                }
                next_check = if signalled {
                    last_look + MIN_CHECK_INTERVAL
                } else {
                    Instant::now() + wait.max(MIN_CHECK_INTERVAL)
                };
            }
        }
        if tracker.crashed {
            return Err(RenderError::BrowserCrashed(
                "the page's renderer crashed".into(),
            ));
        }
        if let Some(error) = &tracker.navigation_error {
            return Err(RenderError::Navigation(error.clone()));
        }
        if let Some(redirect) = tracker.redirect.take()
            && let Some(rendered) = redirect_entry(&redirect, request.url, request.page_url)
        {
            tracing::debug!(status = redirect.status, location = %redirect.location, "the origin redirected");
            return Ok(Loaded::Redirect(rendered));
        }
    }
    let ready_ms = started.elapsed().as_millis() as u64;
    tracing::debug!(
        prepared_ms,
        ready_ms,
        looks,
        requests = tracker.requests_seen,
        state = ?tracker.page_state,
        "page ready"
    );
    Ok(Loaded::Ready(Box::new(Ready { tracker, started })))
}

/// The origin's own document, as it arrived, reduced to its visible text. `None` if Chromium no
/// longer has the body.
async fn origin_visible_text(page: &Page, request_id: &RequestId) -> Option<usize> {
    let body = tokio::time::timeout(
        Duration::from_secs(2),
        page.execute(GetResponseBodyParams::new(request_id.clone())),
    )
    .await
    .ok()?
    .ok()?;
    let body = &body.result;
    if body.base64_encoded {
        return None;
    }
    Some(output::visible_text(&body.body))
}

/// The `<base href>` a page needs: its own location on the public host, when that is not the URL
/// bots fetch it at (the app moved itself elsewhere with the History API, say), since relative
/// URLs in the page are meant relative to where the page was.
fn base_href(final_url: &str, render_url: &str, page_url: &str) -> Option<String> {
    let target = url::Url::parse(final_url).ok()?;
    let location = to_public(&target, render_url, page_url)?;
    let public = url::Url::parse(page_url).ok()?;
    (without_fragment(&location) != without_fragment(&public)).then(|| location.to_string())
}

/// `target` with the origin's scheme, host and port replaced by the public ones, if it is on the
/// origin; `None` if it is not an http(s) URL.
fn to_public(target: &url::Url, render_url: &str, page_url: &str) -> Option<url::Url> {
    if !matches!(target.scheme(), "http" | "https") {
        return None;
    }
    let origin = url::Url::parse(render_url).ok()?;
    let public = url::Url::parse(page_url).ok()?;
    let mut location = target.clone();
    if target.host_str() == origin.host_str() {
        location.set_scheme(public.scheme()).ok()?;
        location.set_host(public.host_str()).ok()?;
        location.set_port(public.port()).ok()?;
    }
    Some(location)
}

fn without_fragment(url: &url::Url) -> url::Url {
    let mut url = url.clone();
    url.set_fragment(None);
    url
}

/// Everything the render listens to, as one stream.
enum Event {
    RequestWillBeSent(Arc<EventRequestWillBeSent>),
    ResponseReceived(Arc<EventResponseReceived>),
    LoadingFinished(Arc<EventLoadingFinished>),
    LoadingFailed(Arc<EventLoadingFailed>),
    RequestPaused(Arc<EventRequestPaused>),
    Crashed,
    /// The page's tracker says something it waited for settled.
    Signal,
}

async fn subscribe(page: &Page) -> Result<SelectAll<BoxStream<'static, Event>>, RenderError> {
    let streams: Vec<BoxStream<'static, Event>> = vec![
        page.event_listener::<EventRequestWillBeSent>()
            .await
            .map_err(cdp_error)?
            .map(Event::RequestWillBeSent)
            .boxed(),
        page.event_listener::<EventResponseReceived>()
            .await
            .map_err(cdp_error)?
            .map(Event::ResponseReceived)
            .boxed(),
        page.event_listener::<EventLoadingFinished>()
            .await
            .map_err(cdp_error)?
            .map(Event::LoadingFinished)
            .boxed(),
        page.event_listener::<EventLoadingFailed>()
            .await
            .map_err(cdp_error)?
            .map(Event::LoadingFailed)
            .boxed(),
        page.event_listener::<EventRequestPaused>()
            .await
            .map_err(cdp_error)?
            .map(Event::RequestPaused)
            .boxed(),
        page.event_listener::<EventTargetCrashed>()
            .await
            .map_err(cdp_error)?
            .map(|_| Event::Crashed)
            .boxed(),
        page.event_listener::<EventBindingCalled>()
            .await
            .map_err(cdp_error)?
            .filter(|event| futures::future::ready(event.name == SIGNAL_BINDING))
            .map(|_| Event::Signal)
            .boxed(),
    ];
    Ok(futures::stream::select_all(streams))
}

/// What a tab has been set up for. Setting a tab up costs Chromium up to ~100 ms (device emulation
/// waits for a frame), so the pool does it when it opens a tab, ahead of demand, and a render only
/// redoes what its job needs differently.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Prepared {
    /// The device the tab emulates, once set.
    pub device: Option<DeviceClass>,
    /// The blocking the tab's request interception applies, once set.
    pub blocking: Option<ResourceBlocking>,
    /// Whether the readiness tracker and crash reports are installed.
    pub tracker: bool,
}

impl Prepared {
    /// A tab set up for a render of `device` with `blocking`, the tracker installed: what
    /// [`prepare`] leaves, and so what a tab is after any render.
    pub fn set_up(device: DeviceClass, blocking: ResourceBlocking) -> Self {
        Prepared {
            device: Some(device),
            blocking: Some(blocking),
            tracker: true,
        }
    }
}

/// Brings `page`, set up as `prepared` says, to `device` and `blocking`, returning what it now is.
/// Each step that is already in place is skipped.
pub async fn prepare(
    page: &Page,
    prepared: Prepared,
    device: DeviceClass,
    blocking: &ResourceBlocking,
    faithful: bool,
) -> Result<Prepared, RenderError> {
    let mut steps: Vec<futures::future::BoxFuture<'_, Result<(), CdpError>>> = Vec::new();
    if prepared.device != Some(device) {
        let (width, height) = device.viewport();
        let mobile = device == DeviceClass::Mobile;
        let mut metrics = SetDeviceMetricsOverrideParams::new(
            i64::from(width),
            i64::from(height),
            device.scale_factor(),
            mobile,
        );
        metrics.screen_orientation = Some(if mobile {
            ScreenOrientation::new(ScreenOrientationType::PortraitPrimary, 0)
        } else {
            ScreenOrientation::new(ScreenOrientationType::LandscapePrimary, 90)
        });
        let mut touch = SetTouchEmulationEnabledParams::new(mobile);
        if mobile {
            touch.max_touch_points = Some(5);
        }
        let user_agent = SetUserAgentOverrideParams::new(device.render_user_agent());
        steps.push(page.execute(metrics).map_ok(drop).boxed());
        steps.push(page.execute(touch).map_ok(drop).boxed());
        steps.push(page.execute(user_agent).map_ok(drop).boxed());
    }
    if prepared.blocking.as_ref() != Some(blocking) {
        let fetch = fetch::EnableParams {
            patterns: Some(blocking::patterns(blocking)),
            ..Default::default()
        };
        steps.push(page.execute(fetch).map_ok(drop).boxed());
    }
    if !prepared.tracker {
        let tracker = AddScriptToEvaluateOnNewDocumentParams::new(tracker_script(faithful));
        steps.push(page.execute(tracker).map_ok(drop).boxed());
        // Every document of the tab gets it, before its scripts run.
        let signal = AddBindingParams::new(SIGNAL_BINDING);
        steps.push(page.execute(signal).map_ok(drop).boxed());
        // Reports renderer crashes (Inspector.targetCrashed).
        steps.push(
            page.execute(inspector::EnableParams::default())
                .map_ok(drop)
                .boxed(),
        );
    }
    futures::future::try_join_all(steps)
        .await
        .map_err(cdp_error)?;
    Ok(Prepared::set_up(device, *blocking))
}

/// The next look at the page after a signal: now (but not within the shortest gap after the last
/// look, at `last_look`), unless one is due sooner than that.
fn look_soon(next_check: Instant, last_look: Instant, now: Instant) -> Instant {
    next_check.min((last_look + MIN_CHECK_INTERVAL).max(now))
}

/// What `__kilnState()` reports, plus what the worker asks beside it.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PageState {
    /// Whether the tracker runs in this document (it does not in Chromium's error pages, nor in
    /// the blank page a render starts from).
    tracked: bool,
    /// `document.readyState`.
    ready_state: String,
    timers: u32,
    requests: u32,
    since_mutation_ms: f64,
    since_timer_ms: f64,
    prerender_ready: bool,
    /// The page set `prerenderReady` false and then true: it says it is complete.
    #[serde(default)]
    declared_ready: bool,
    /// When the page last changed its DOM or finished a fetch/XHR, in ms since navigation start.
    #[serde(default)]
    content_at_ms: f64,
    /// When the load event's handlers finished, in ms since navigation start (0 before that).
    #[serde(default)]
    load_end_ms: f64,
    /// The page listens to the window's scrolling and is taller than its viewport (and the render
    /// is faithful): it is scrolled through a crawler's tall view once before it counts as ready.
    #[serde(default)]
    wants_scroll: bool,
}

impl PageState {
    /// When the page was complete by its own clock: its content last changed, or it loaded.
    fn complete_at_ms(&self) -> u64 {
        self.content_at_ms.max(self.load_end_ms).max(0.0) as u64
    }

    /// How long until the page's quiet window could be over, if nothing but time is missing.
    fn until_quiet(&self, quiet: Duration) -> Option<Duration> {
        if !self.tracked || self.timers > 0 || self.requests > 0 || !self.prerender_ready {
            return None;
        }
        let quiet_ms = quiet.as_secs_f64() * 1000.0;
        let since = self.since_mutation_ms.min(self.since_timer_ms);
        Some(Duration::from_secs_f64(
            ((quiet_ms - since).max(0.0)) / 1000.0,
        ))
    }

    /// The page's side of readiness, the document's load aside: nothing pending and the quiet
    /// window over.
    fn is_ready(&self, quiet: Duration) -> bool {
        self.until_quiet(quiet) == Some(Duration::ZERO)
    }

    /// The page said it is complete (`prerenderReady` false, then true) and nothing it started
    /// is pending: no quiet window to wait out.
    fn is_declared_ready(&self) -> bool {
        self.tracked && self.declared_ready && self.timers == 0 && self.requests == 0
    }
}

/// Scrolls the page through a crawler's tall view and back (ready.js's `__kilnScroll`); how many
/// screens it took.
async fn scroll_through(page: &Page) -> Result<u64, RenderError> {
    let mut params = EvaluateParams::new(
        "typeof window.__kilnScroll === 'function' ? window.__kilnScroll() : 0",
    );
    params.return_by_value = Some(true);
    params.await_promise = Some(true);
    params.silent = Some(true);
    let response = page.execute(params).await.map_err(cdp_error)?;
    Ok(response
        .result
        .result
        .value
        .as_ref()
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0))
}

/// `Ok(None)` when the page cannot answer right now (for example while a navigation replaces its
/// document); errors only when the browser itself fails.
async fn read_state(page: &Page) -> Result<Option<PageState>, RenderError> {
    match evaluate(page, STATE_JS).await {
        Ok(Some(value)) => Ok(serde_json::from_value(value).ok()),
        Ok(None) => Ok(None),
        Err(RenderError::Page(_)) => Ok(None),
        Err(error) => Err(error),
    }
}

/// Evaluates `expression` in the page's main world and returns its value as JSON (`None` if it
/// threw or returned nothing).
pub(crate) async fn evaluate(
    page: &Page,
    expression: &str,
) -> Result<Option<serde_json::Value>, RenderError> {
    let mut params = EvaluateParams::new(expression);
    params.return_by_value = Some(true);
    params.silent = Some(true);
    let response = page.execute(params).await.map_err(cdp_error)?;
    if let Some(exception) = &response.result.exception_details {
        return Err(RenderError::Page(exception.text.clone()));
    }
    Ok(response
        .result
        .result
        .value
        .clone()
        .filter(|v| !v.is_null()))
}

/// What the serialisation script returns.
#[derive(Debug, Deserialize)]
struct Snapshot {
    html: String,
    url: String,
}

async fn serialize(page: &Page, faithful: bool) -> Result<Snapshot, RenderError> {
    let value = evaluate(page, &format!("({SNAPSHOT_JS})({faithful})"))
        .await?
        .ok_or_else(|| RenderError::Page("the page has no document element".into()))?;
    serde_json::from_value(value)
        .map_err(|e| RenderError::Page(format!("unexpected serialisation result: {e}")))
}

/// Applies the quality gate and the status and header rules to a processed page that Chromium
/// showed at `final_url`.
fn judge(
    origin_status: Option<u16>,
    final_url: &str,
    page: output::Processed,
) -> Result<Rendered, RenderError> {
    let Some(origin_status) = origin_status else {
        return Err(RenderError::Navigation(
            "no response for the main document".into(),
        ));
    };
    if final_url.starts_with("chrome-error:") {
        // Chromium shows its own error page, for example for an error status with an empty body.
        return Err(RenderError::Navigation(format!(
            "chromium showed an error page (origin status {origin_status})"
        )));
    }
    if origin_status >= 500 {
        return Err(RenderError::Status(origin_status));
    }
    let status = effective_status(origin_status, page.status_meta.as_deref());
    if !is_storable_status(status) {
        return Err(RenderError::Status(status));
    }
    if page.visible_text == 0 && page.body_elements == 0 {
        return Err(RenderError::EmptyPage);
    }
    if page.html.len() > MAX_HTML_BYTES {
        return Err(RenderError::TooLarge(page.html.len()));
    }
    Ok(Rendered {
        headers: allowed_headers(&page.header_metas, status),
        html: page.html,
        status,
        final_url: final_url.to_owned(),
        page_ms: None,
    })
}

/// The origin's status, unless the page declares another with a valid
/// `<meta name="prerender-status-code">` (200–599).
fn effective_status(origin: u16, meta: Option<&str>) -> u16 {
    meta.and_then(|m| m.trim().parse::<u16>().ok())
        .filter(|s| (200..=599).contains(s))
        .unwrap_or(origin)
}

/// Which statuses are worth caching: successes, redirects and the client errors that describe the
/// page itself. Server errors and transient client errors (timeouts, rate limits) are failures, so
/// that bots fall back to the origin instead of being served a cached error.
fn is_storable_status(status: u16) -> bool {
    match status {
        200..=399 => true,
        408 | 425 | 429 => false,
        400..=499 => true,
        _ => false,
    }
}

/// The allow-listed headers from `<meta name="prerender-header" content="Name: value">` tags.
fn allowed_headers(metas: &[String], status: u16) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = Vec::new();
    for meta in metas {
        let Some((name, value)) = meta.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        let Some(canonical) = ALLOWED_HEADERS
            .iter()
            .find(|allowed| allowed.eq_ignore_ascii_case(name))
        else {
            continue;
        };
        if value.is_empty()
            || value.len() > MAX_HEADER_VALUE
            || value.chars().any(|c| c.is_control())
        {
            continue;
        }
        if *canonical == "Location" {
            let is_redirect = (300..=399).contains(&status);
            let already = headers.iter().any(|(n, _)| n == "Location");
            if !is_redirect || already || !is_safe_location(value) {
                continue;
            }
        }
        if headers.len() == MAX_META_HEADERS {
            break;
        }
        headers.push(((*canonical).to_owned(), value.to_owned()));
    }
    headers
}

/// A `Location` must lead to an http(s) page: absolute with that scheme, or a relative reference.
fn is_safe_location(value: &str) -> bool {
    match url::Url::parse(value) {
        Ok(url) => matches!(url.scheme(), "http" | "https"),
        Err(url::ParseError::RelativeUrlWithoutBase) => true,
        Err(_) => false,
    }
}

/// An HTTP redirect of the main document, as the origin sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Redirect {
    status: u16,
    location: String,
    /// The URL that answered with the redirect.
    from: String,
}

/// Turns the origin's redirect into a stored redirect for bots, with the `Location` moved from the
/// origin's host to the public one. `None` when the redirect should simply be followed: it is not a
/// real redirect, or it leads back to the page bots asked for (an origin upgrading its own scheme,
/// say).
fn redirect_entry(redirect: &Redirect, render_url: &str, page_url: &str) -> Option<Rendered> {
    if !matches!(redirect.status, 301 | 302 | 303 | 307 | 308) {
        return None;
    }
    let target = url::Url::parse(&redirect.from)
        .ok()?
        .join(&redirect.location)
        .ok()?;
    let location = to_public(&target, render_url, page_url)?;
    let public = url::Url::parse(page_url).ok()?;
    if without_fragment(&location) == without_fragment(&public) {
        return None;
    }
    let href = html_escape::encode_double_quoted_attribute(location.as_str());
    let text = html_escape::encode_text(location.as_str());
    Some(Rendered {
        html: format!(
            "<!DOCTYPE html><html><head><title>Moved</title></head><body><a href=\"{href}\">{text}</a></body></html>"
        ),
        status: redirect.status,
        headers: vec![("Location".to_owned(), location.to_string())],
        final_url: redirect.from.clone(),
        page_ms: None,
    })
}

/// Follows the main document and the page's network traffic.
struct Tracker {
    main_frame: FrameId,
    quiet: Duration,
    /// The current main document's request, and its response status once received.
    main_request: Option<RequestId>,
    main_status: Option<u16>,
    documents: u32,
    navigation_error: Option<String>,
    redirect: Option<Redirect>,
    crashed: bool,
    /// Requests readiness waits for, with when they started.
    in_flight: HashMap<RequestId, Instant>,
    /// Each event type arrives on a stream of its own, so a request's end can be seen before its
    /// start; such requests are remembered here and never counted as in flight.
    finished_early: HashSet<RequestId>,
    /// Requests that are not the page's doing (the favicon).
    ignored: HashSet<RequestId>,
    last_network_activity: Instant,
    requests_seen: u64,
    /// The page's state at the last look.
    page_state: Option<PageState>,
}

impl Tracker {
    fn new(main_frame: FrameId, quiet: Duration, now: Instant) -> Self {
        Tracker {
            main_frame,
            quiet,
            main_request: None,
            main_status: None,
            documents: 0,
            navigation_error: None,
            redirect: None,
            crashed: false,
            in_flight: HashMap::new(),
            finished_early: HashSet::new(),
            ignored: HashSet::new(),
            last_network_activity: now,
            requests_seen: 0,
            page_state: None,
        }
    }

    fn on_event(
        &mut self,
        event: Event,
        page: &Page,
        now: Instant,
        documents: &mut BTreeSet<String>,
    ) {
        match event {
            Event::RequestWillBeSent(event) => {
                if event.r#type == Some(ResourceType::Document)
                    && let Ok(url) = url::Url::parse(&event.request.url)
                    && url.origin().is_tuple()
                {
                    documents.insert(url.origin().ascii_serialization());
                }
                self.on_request(&event, now)
            }
            Event::ResponseReceived(event) => self.on_response(&event, now),
            Event::LoadingFinished(event) => {
                if self.finish(&event.request_id) {
                    self.last_network_activity = now;
                }
            }
            Event::LoadingFailed(event) => {
                if self.finish(&event.request_id) {
                    self.last_network_activity = now;
                }
                if self.main_request.as_ref() == Some(&event.request_id)
                    && self.main_status.is_none()
                    && event.error_text != "net::ERR_ABORTED"
                {
                    self.navigation_error
                        .get_or_insert(event.error_text.clone());
                }
            }
            Event::RequestPaused(event) => {
                // Only blocked resource types pause; fail them without holding up the event loop.
                let page = page.clone();
                let id = event.request_id.clone();
                tokio::spawn(async move {
                    let _ = page
                        .execute(FailRequestParams::new(id, ErrorReason::BlockedByClient))
                        .await;
                });
            }
            Event::Crashed => self.crashed = true,
            // The render loop's business.
            Event::Signal => {}
        }
    }

    fn on_response(&mut self, event: &EventResponseReceived, now: Instant) {
        // Set when the egress proxy answered instead of the origin.
        let egress = header(event.response.headers.inner(), EGRESS_HEADER);
        // Matched by type and frame rather than by request id: the request's own event may
        // not have been seen yet (see `finished_early`).
        if event.r#type == ResourceType::Document
            && event.frame_id.as_ref() == Some(&self.main_frame)
        {
            self.main_status = u16::try_from(event.response.status).ok();
            // The egress proxy answered instead of the origin: the origin is refused or
            // unreachable, and its answer is no page to keep.
            if let Some(kind) = &egress {
                let what = match kind.as_str() {
                    "refused" => {
                        "the origin's address is outside the public internet and the allowed networks"
                    }
                    "timeout" => "the origin did not answer in time",
                    "unreachable" => "the origin is unreachable",
                    _ => "the origin could not be reached",
                };
                self.navigation_error.get_or_insert(format!(
                    "{what} (egress proxy: {kind}, status {})",
                    event.response.status
                ));
            }
        }
        // The egress proxy's own answer (a refusal, a timeout) is whole once its headers
        // are in, but Chromium may never report its end: a no-cors fetch's opaque answer,
        // blocked by ORB, gets no loadingFinished, and readiness would wait for it like a
        // long-poll (2 s).
        if self.ignored.contains(&event.request_id) {
            return;
        }
        if egress.is_some() {
            self.finish(&event.request_id);
        }
        self.last_network_activity = now;
    }

    fn on_request(&mut self, event: &EventRequestWillBeSent, now: Instant) {
        self.requests_seen += 1;
        let is_main_document = event.r#type == Some(ResourceType::Document)
            && event.frame_id.as_ref() == Some(&self.main_frame);
        if is_main_document {
            match &event.redirect_response {
                // The origin redirected the first document: remember the first hop.
                Some(response)
                    if self.documents == 1
                        && self.main_request.as_ref() == Some(&event.request_id) =>
                {
                    if self.redirect.is_none()
                        && let Some(location) = header(response.headers.inner(), "location")
                    {
                        self.redirect = Some(Redirect {
                            status: u16::try_from(response.status).unwrap_or(0),
                            location,
                            from: response.url.clone(),
                        });
                    }
                }
                Some(_) => {}
                None => {
                    self.main_request = Some(event.request_id.clone());
                    self.documents += 1;
                }
            }
        }
        // The browser's own favicon fetch (blocked anyway) is not the page's activity.
        if is_favicon(&event.request.url) {
            self.ignored.insert(event.request_id.clone());
            return;
        }
        // Streams and beacons are never waited for, though starting one is activity.
        let never_waited_for = matches!(
            event.r#type,
            Some(ResourceType::EventSource | ResourceType::WebSocket | ResourceType::Ping)
        );
        if !never_waited_for && !self.finished_early.remove(&event.request_id) {
            self.in_flight
                .entry(event.request_id.clone())
                .or_insert(now);
        }
        self.last_network_activity = now;
    }

    /// Records a request's end; false if it is one the page's activity ignores.
    fn finish(&mut self, request: &RequestId) -> bool {
        if self.ignored.remove(request) {
            return false;
        }
        if self.in_flight.remove(request).is_none() {
            self.finished_early.insert(request.clone());
        }
        true
    }

    /// Requests readiness still waits for: those younger than the long-poll limit.
    fn pending_requests(&self, now: Instant) -> usize {
        self.in_flight
            .values()
            .filter(|started| now.duration_since(**started) < LONG_REQUEST)
            .count()
    }

    /// The browser's side of readiness: the main document's response has arrived, no request
    /// younger than the long-poll limit is in flight, and the network has been quiet for the quiet
    /// window. `None` once settled; otherwise how long to wait before looking again.
    fn until_network_settles(&self, now: Instant) -> Option<Duration> {
        if self.main_status.is_none() || self.pending_requests(now) > 0 {
            return Some(WAITING_CHECK_INTERVAL);
        }
        let quiet_for = now.duration_since(self.last_network_activity);
        (quiet_for < self.quiet).then(|| self.quiet - quiet_for)
    }

    /// The main document's response has arrived and no request younger than the long-poll limit
    /// is in flight (the network's quiet window aside).
    fn network_idle(&self, now: Instant) -> bool {
        self.main_status.is_some() && self.pending_requests(now) == 0
    }

    /// Whether the document counts as loaded: its load event has fired, or it has been parsed and
    /// only requests older than the long-poll limit (which may hold the load event up forever) are
    /// left.
    fn document_loaded(&self, state: &PageState, now: Instant) -> bool {
        match state.ready_state.as_str() {
            "complete" => true,
            "interactive" => !self.in_flight.is_empty() && self.pending_requests(now) == 0,
            _ => false,
        }
    }

    /// What readiness was still waiting for, for the timeout message.
    fn waiting_for(&self, now: Instant) -> String {
        let mut reasons = Vec::new();
        if self.main_status.is_none() {
            reasons.push("the origin's response".to_owned());
        }
        match self.pending_requests(now) {
            0 => {}
            n => reasons.push(format!("{n} network request(s)")),
        }
        if let Some(state) = &self.page_state {
            if !self.document_loaded(state, now) {
                reasons.push("the load event".to_owned());
            }
            if state.timers > 0 {
                reasons.push(format!("{} timer(s)", state.timers));
            }
            if state.requests > 0 {
                reasons.push(format!("{} fetch/XHR call(s)", state.requests));
            }
            if state.since_mutation_ms < self.quiet.as_secs_f64() * 1000.0 {
                reasons.push("DOM changes to stop".to_owned());
            }
            if !state.prerender_ready {
                reasons.push("window.prerenderReady".to_owned());
            }
        }
        if reasons.is_empty() {
            reasons.push("the network to go quiet".to_owned());
        }
        reasons.join(", ")
    }
}

fn is_favicon(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| u.path() == "/favicon.ico")
}

/// A header's value from CDP's header object, whose names may come in any case.
fn header(headers: &serde_json::Value, name: &str) -> Option<String> {
    headers
        .as_object()?
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .and_then(|(_, value)| value.as_str().map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_status_overrides_only_with_a_valid_code() {
        let cases = [
            (200, None, 200),
            (200, Some("404"), 404),
            (200, Some(" 410 "), 410),
            (200, Some("301"), 301),
            (404, Some("200"), 200),
            (200, Some("599"), 599),
            (200, Some("600"), 200),
            (200, Some("199"), 200),
            (200, Some("abc"), 200),
            (200, Some(""), 200),
            (404, Some("-1"), 404),
        ];
        for (origin, meta, expected) in cases {
            assert_eq!(
                effective_status(origin, meta),
                expected,
                "{origin} {meta:?}"
            );
        }
    }

    #[test]
    fn storable_statuses() {
        let cases = [
            (200, true),
            (204, true),
            (301, true),
            (302, true),
            (404, true),
            (410, true),
            (403, true),
            (408, false),
            (429, false),
            (500, false),
            (503, false),
            (100, false),
        ];
        for (status, expected) in cases {
            assert_eq!(is_storable_status(status), expected, "{status}");
        }
    }

    #[test]
    fn meta_headers_are_allow_listed() {
        let check = |metas: &[&str], status: u16, expected: &[(&str, &str)]| {
            let metas: Vec<String> = metas.iter().map(|m| m.to_string()).collect();
            let expected: Vec<(String, String)> = expected
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            assert_eq!(
                allowed_headers(&metas, status),
                expected,
                "{metas:?} {status}"
            );
        };
        check(
            &["Location: https://example.com/new"],
            301,
            &[("Location", "https://example.com/new")],
        );
        check(&["location:/relative"], 302, &[("Location", "/relative")]);
        check(&["Location: https://example.com/new"], 200, &[]);
        check(&["Location: javascript:alert(1)"], 301, &[]);
        check(
            &["Location: https://a.com/1", "Location: https://a.com/2"],
            301,
            &[("Location", "https://a.com/1")],
        );
        check(&["Set-Cookie: session=1"], 200, &[]);
        check(
            &["set-cookie: session=1", "X-Robots-Tag: noindex"],
            200,
            &[("X-Robots-Tag", "noindex")],
        );
        check(
            &["Link: <https://a.com/>; rel=\"canonical\""],
            200,
            &[("Link", "<https://a.com/>; rel=\"canonical\"")],
        );
        check(
            &["Cache-Control: no-store", "Content-Type: text/plain"],
            200,
            &[],
        );
        check(&["X-Robots-Tag"], 200, &[]);
        check(&["X-Robots-Tag: "], 200, &[]);
        check(&["X-Robots-Tag: a\u{7}b"], 200, &[]);
    }

    #[test]
    fn a_redirect_stub_escapes_its_link() {
        let redirect = Redirect {
            status: 302,
            location: "/next?a=1&b=<2>".into(),
            from: "http://origin.internal:8080/old".into(),
        };
        let stub = redirect_entry(
            &redirect,
            "http://origin.internal:8080/old",
            "https://www.example.com/old",
        )
        .unwrap();
        assert!(
            stub.html.contains(
                "<a href=\"https://www.example.com/next?a=1&amp;b=%3C2%3E\">\
                 https://www.example.com/next?a=1&amp;b=%3C2%3E</a>"
            ),
            "{}",
            stub.html
        );
    }

    #[test]
    fn origin_redirects_point_bots_at_the_public_host() {
        let check = |status: u16, from: &str, location: &str, expected: Option<(&str, u16)>| {
            let redirect = Redirect {
                status,
                location: location.into(),
                from: from.into(),
            };
            let got = redirect_entry(
                &redirect,
                "http://origin.internal:8080/old?a=1",
                "https://www.example.com/old?a=1",
            );
            let got = got.map(|r| {
                assert!(r.html.starts_with("<!DOCTYPE html>"));
                (r.headers[0].1.clone(), r.status)
            });
            assert_eq!(
                got,
                expected.map(|(l, s)| (l.to_owned(), s)),
                "{status} {from} -> {location}"
            );
        };
        let from = "http://origin.internal:8080/old?a=1";
        check(
            301,
            from,
            "/new",
            Some(("https://www.example.com/new", 301)),
        );
        check(
            302,
            from,
            "http://origin.internal:8080/x/y?z=1",
            Some(("https://www.example.com/x/y?z=1", 302)),
        );
        check(
            308,
            from,
            "https://elsewhere.org/page",
            Some(("https://elsewhere.org/page", 308)),
        );
        // The origin upgrading its own scheme leads back to the public URL: follow it instead.
        check(301, from, "https://origin.internal/old?a=1", None);
        check(304, from, "/new", None);
        check(301, from, "ftp://files.example.com/", None);
    }

    #[test]
    fn the_quality_gate() {
        let page = |text: usize, elements: usize, status_meta: Option<&str>| output::Processed {
            html: "<!DOCTYPE html><html><body>hi</body></html>".into(),
            status_meta: status_meta.map(str::to_owned),
            header_metas: vec![],
            visible_text: text,
            body_elements: elements,
        };
        let url = "http://origin/";
        assert_eq!(judge(Some(200), url, page(2, 0, None)).unwrap().status, 200);
        assert_eq!(
            judge(Some(200), url, page(0, 1, Some("404")))
                .unwrap()
                .status,
            404
        );
        assert_eq!(judge(Some(404), url, page(2, 0, None)).unwrap().status, 404);
        assert!(matches!(
            judge(Some(200), url, page(0, 0, None)),
            Err(RenderError::EmptyPage)
        ));
        assert!(matches!(
            judge(Some(503), url, page(2, 0, None)),
            Err(RenderError::Status(503))
        ));
        assert!(matches!(
            judge(Some(200), url, page(2, 0, Some("500"))),
            Err(RenderError::Status(500))
        ));
        assert!(matches!(
            judge(Some(429), url, page(2, 0, None)),
            Err(RenderError::Status(429))
        ));
        assert!(matches!(
            judge(None, url, page(2, 0, None)),
            Err(RenderError::Navigation(_))
        ));
        assert!(matches!(
            judge(Some(200), "chrome-error://chromewebdata/", page(2, 0, None)),
            Err(RenderError::Navigation(_))
        ));
    }

    #[test]
    fn a_base_only_when_the_page_moved() {
        let render = "http://origin.internal:8080/shop/list?a=1";
        let public = "https://www.example.com/shop/list?a=1";
        assert_eq!(base_href(render, render, public), None);
        assert_eq!(
            base_href(
                "http://origin.internal:8080/shop/list?a=1#top",
                render,
                public
            ),
            None
        );
        assert_eq!(
            base_href(
                "http://origin.internal:8080/shop/list/page-2",
                render,
                public
            )
            .as_deref(),
            Some("https://www.example.com/shop/list/page-2")
        );
        assert_eq!(base_href("about:blank", render, public), None);
    }

    /// A request's events as Chromium sends them (only the fields the tracker reads vary).
    fn request_events(
        id: &str,
        kind: &str,
        headers: serde_json::Value,
    ) -> (EventRequestWillBeSent, EventResponseReceived) {
        let url = format!("http://127.0.0.1:1/{id}");
        let sent = serde_json::json!({
            "requestId": id, "loaderId": "l", "documentURL": "http://127.0.0.1:1/",
            "request": { "url": url, "method": "GET", "headers": {}, "initialPriority": "High",
                         "referrerPolicy": "no-referrer" },
            "timestamp": 1.0, "wallTime": 1.0, "initiator": { "type": "script" },
            "redirectHasExtraInfo": false, "type": kind, "frameId": "main",
        });
        let received = serde_json::json!({
            "requestId": id, "loaderId": "l", "timestamp": 1.0, "type": kind, "frameId": "main",
            "hasExtraInfo": false,
            "response": { "url": url, "status": 403, "statusText": "Forbidden", "headers": headers,
                          "mimeType": "text/plain", "charset": "utf-8", "connectionReused": false,
                          "connectionId": 1.0, "encodedDataLength": 10.0, "securityState": "insecure" },
        });
        (
            serde_json::from_value(sent).unwrap(),
            serde_json::from_value(received).unwrap(),
        )
    }

    /// A subrequest the egress proxy refused is over once its answer's headers arrive: Chromium
    /// never reports the end of some (a no-cors fetch's, blocked by ORB), and readiness must not
    /// wait for them as for a long-poll. Any other response still waits for its end.
    #[test]
    fn a_refused_subrequest_does_not_hold_the_page() {
        let quiet = Duration::from_millis(50);
        let start = Instant::now();
        let mut tracker = Tracker::new(FrameId::new("main"), quiet, start);
        tracker.main_status = Some(200);
        let (sent, received) = request_events(
            "refused",
            "Fetch",
            serde_json::json!({ EGRESS_HEADER: "refused" }),
        );
        tracker.on_request(&sent, start);
        assert_eq!(tracker.pending_requests(start), 1);
        tracker.on_response(&received, start);
        assert_eq!(tracker.pending_requests(start), 0);
        assert_eq!(tracker.until_network_settles(start + quiet), None);

        let (sent, received) = request_events(
            "streaming",
            "Fetch",
            serde_json::json!({ "content-type": "text/plain" }),
        );
        tracker.on_request(&sent, start);
        tracker.on_response(&received, start);
        assert_eq!(tracker.pending_requests(start), 1);
        assert!(tracker.until_network_settles(start + quiet).is_some());
    }

    #[test]
    fn readiness_of_the_page_state() {
        let quiet = Duration::from_millis(50);
        let state =
            |timers, requests, since_mutation_ms, since_timer_ms, prerender_ready| PageState {
                tracked: true,
                ready_state: "complete".into(),
                timers,
                requests,
                since_mutation_ms,
                since_timer_ms,
                prerender_ready,
                declared_ready: false,
                content_at_ms: 0.0,
                load_end_ms: 0.0,
                wants_scroll: false,
            };
        assert!(state(0, 0, 50.0, 50.0, true).is_ready(quiet));
        assert!(state(0, 0, 500.0, f64::INFINITY, true).is_ready(quiet));
        assert!(!state(1, 0, 500.0, 500.0, true).is_ready(quiet));
        assert!(!state(0, 1, 500.0, 500.0, true).is_ready(quiet));
        assert!(!state(0, 0, 49.0, 500.0, true).is_ready(quiet));
        assert!(!state(0, 0, 500.0, 10.0, true).is_ready(quiet));
        assert!(!state(0, 0, 500.0, 500.0, false).is_ready(quiet));

        let untracked = PageState {
            tracked: false,
            ..state(0, 0, 500.0, 500.0, true)
        };
        assert!(!untracked.is_ready(quiet));

        // A page that said it is complete needs no quiet window, but still nothing pending.
        let declared = |timers, requests| PageState {
            declared_ready: true,
            ..state(timers, requests, 0.0, 0.0, true)
        };
        assert!(declared(0, 0).is_declared_ready());
        assert!(!declared(0, 0).is_ready(quiet));
        assert!(!declared(1, 0).is_declared_ready());
        assert!(!declared(0, 1).is_declared_ready());
        assert!(!state(0, 0, 500.0, 500.0, true).is_declared_ready());
        assert!(
            !PageState {
                tracked: false,
                ..declared(0, 0)
            }
            .is_declared_ready()
        );

        let json = serde_json::json!({
            "tracked": true, "readyState": "complete", "timers": 0, "requests": 0,
            "sinceMutationMs": 80.0, "sinceTimerMs": 1e9, "prerenderReady": true,
        });
        assert!(
            serde_json::from_value::<PageState>(json)
                .unwrap()
                .is_ready(quiet)
        );
    }
}
