//! The bot path: serve the cached render, or render once and wait, or fall back to the origin.
//!
//! A fresh entry is a `HIT`. An entry past its fresh TTL but inside its stale window is served at
//! once as `STALE` while one background render (behind the same render lock) replaces it; if that
//! render fails, the stale copy stays (stale-while-revalidate and stale-if-error, RFC 5861). A page
//! whose render failed moments ago (a failure marker, see `kiln_store::failures`) is neither
//! rendered again for a bot nor refreshed until the marker expires.
//!
//! A miss registers a waiter and then looks at the cache once more, so a render announced between the
//! look-up and the wait still wakes it; a hit pays for none of that. One gateway claims the render
//! (the page's render lock and a place in the tenant's render budget: `kiln_store::RenderClaim`,
//! which the worker gives back) and enqueues the job; every request for the same page, on any
//! gateway, waits for the one announcement. A request whose budget runs out gets the origin's page
//! (`BYPASS`) while the render completes for the next bot.

use crate::error::GatewayError;
use crate::metrics::QueuedFor;
use crate::representation::{Negotiation, ServedPage, page_response};
use crate::state::AppState;
use crate::waiters::Waiter;
use axum::body::Body;
use http::{HeaderValue, Method, Request, Response, header};
use kiln_core::{
    CacheKey, DeviceClass, DomainConfig, NormalizedUrl, RenderJob, RenderOutcome, RenderVia,
};
use kiln_queue::QueueKind;
use kiln_store::{ClaimOutcome, UsageKind};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Whether a bot's request may cause a render.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Renders {
    Allowed,
    /// Only what is cached (fresh or stale, and no refresh) or else the origin's page: for requests
    /// that claim to be a crawler they were not shown to be.
    CachedOnly,
}

/// Extra lifetime of a render lock beyond the render's own budget: queueing and storing.
const LOCK_MARGIN: Duration = Duration::from_secs(5);

/// Serves a bot's request in three steps: look the page up (in memory, then in Redis), claim and
/// queue its render if it is missing, and await the render's announcement. Whatever cannot be
/// served from the cache or the render gets the origin's page (`BYPASS`).
pub async fn serve(
    app: &AppState,
    domain: &DomainConfig,
    req: Request<Body>,
    peer: SocketAddr,
    request_id: &str,
    renders: Renders,
) -> Result<Response<Body>, GatewayError> {
    let wanted = Wanted::of(domain, &req, request_id, renders)?;
    match cached_or_rendered(app, domain, &wanted).await {
        Some(response) => Ok(response),
        None => Box::pin(bypass(app, domain, req, peer)).await,
    }
}

/// The page from the cache, or rendered for this request: the three steps of [`serve`] short of
/// the origin's page, which is the caller's to fetch when this is `None` (the render service's
/// fallback is not a proxied request).
pub(crate) async fn cached_or_rendered(
    app: &AppState,
    domain: &DomainConfig,
    wanted: &Wanted<'_>,
) -> Option<Response<Body>> {
    let waiter = match look_up(app, domain, wanted).await {
        LookUp::Served(response) => return Some(response),
        LookUp::Origin => return None,
        LookUp::Missed(waiter) => waiter,
    };
    // A miss's steps are boxed: inline, their state would make every hit's future larger, and
    // moving it costs every request.
    Box::pin(async move {
        let started = Instant::now();
        if !claim_and_queue(app, domain, wanted).await {
            return None;
        }
        await_render(app, domain, wanted, waiter, started).await
    })
    .await
}

/// What a bot asked for, read off its request once: the page, its cache key, how to answer, and
/// whether it may cause a render.
pub(crate) struct Wanted<'a> {
    request_id: &'a str,
    renders: Renders,
    url: NormalizedUrl,
    key: CacheKey,
    page_key: String,
    device: DeviceClass,
    user_agent: String,
    negotiation: Negotiation,
    via: RenderVia,
}

impl<'a> Wanted<'a> {
    fn of(
        domain: &DomainConfig,
        req: &Request<Body>,
        request_id: &'a str,
        renders: Renders,
    ) -> Result<Self, GatewayError> {
        let scheme = match req
            .headers()
            .get(kiln_core::headers::FORWARDED_PROTO)
            .and_then(|v| v.to_str().ok())
        {
            Some("https") => "https",
            _ => "http",
        };
        let path_and_query = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        let url = NormalizedUrl::from_request(
            scheme,
            &domain.host,
            path_and_query,
            &domain.settings.ignored_query_params,
        )
        .map_err(|_| GatewayError::BadRequest("the request target cannot be normalised"))?;
        let user_agent = req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let device = DeviceClass::from_user_agent(user_agent);
        Ok(Wanted::new(
            domain,
            url,
            device,
            user_agent,
            Negotiation::of(req.headers(), req.method() == Method::HEAD),
            request_id,
            renders,
            RenderVia::Edge,
        ))
    }

    /// What a bot asked for at `url`, from a `device`'s browser (the desktop render for a domain
    /// that serves phones and desktops alike), answered as `negotiation` says.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        domain: &DomainConfig,
        url: NormalizedUrl,
        device: DeviceClass,
        user_agent: &str,
        negotiation: Negotiation,
        request_id: &'a str,
        renders: Renders,
        via: RenderVia,
    ) -> Self {
        // One render per URL for domains that serve phones and desktops the same page.
        let device = if domain.settings.device_variants {
            device
        } else {
            DeviceClass::Desktop
        };
        let key = CacheKey::new(&domain.id, device, &url);
        Wanted {
            request_id,
            renders,
            page_key: key.page_key(),
            url,
            key,
            device,
            user_agent: user_agent.to_owned(),
            negotiation,
            via,
        }
    }

    /// The render device: the one asked for, or the desktop for a domain without variants.
    pub(crate) fn device(&self) -> DeviceClass {
        self.device
    }

    /// The job that renders the page on this bot's behalf.
    pub(crate) fn render_job(&self, domain: &DomainConfig) -> RenderJob {
        RenderJob {
            render_url: domain.origin_url_for(&self.url),
            page_url: self.url.clone(),
            key: self.key.clone(),
            tenant_id: domain.tenant_id.clone(),
            device: self.device,
            cache_ttl_secs: domain.settings.cache_ttl_secs,
            stale_ttl_secs: domain.settings.stale_ttl_secs,
            render_timeout_ms: domain.settings.render_timeout_ms,
            enqueued_at: kiln_core::unix_millis_now(),
            request_id: Some(self.request_id.to_owned()),
            blocking: domain.settings.blocking,
            purpose: kiln_core::job::RenderPurpose::Bot,
            user_agent: RenderJob::user_agent_for_job(&self.user_agent),
            via: self.via,
        }
    }
}

/// What the look-up found.
enum LookUp {
    /// The page, fresh (`HIT`) or stale (`STALE`, its refresh queued in the background).
    Served(Response<Body>),
    /// The origin's page, at once: Redis is unreachable, the page may not be rendered for this
    /// bot, or its render failed moments ago.
    Origin,
    /// Not cached: the waiter for its render, registered before the last look.
    Missed(Waiter),
}

/// Step one: the page from memory, or from Redis (with a waiter registered on a miss), unless its
/// render failed moments ago.
async fn look_up(app: &AppState, domain: &DomainConfig, wanted: &Wanted<'_>) -> LookUp {
    let redis_up = app.store.health.is_connected();
    if let Some(response) = hot_hit(app, wanted, redis_up) {
        count(app, domain, UsageKind::Hit);
        return LookUp::Served(response);
    }
    // With no connection to Redis, every command would only wait for its timeout: the origin's
    // page, at once.
    if !redis_up {
        tracing::debug!("redis is unreachable; serving the origin");
        return LookUp::Origin;
    }
    // Boxed, as the steps of a miss are: Redis commands' futures are large, and a page from memory
    // needs none of them.
    Box::pin(async move {
        let waiter = match cached_or_waiter(app, domain, wanted).await {
            LookUp::Missed(waiter) => waiter,
            found => return found,
        };
        // A page that failed to render moments ago gets the origin's page at once.
        match app.store.pages.recent_failure(&wanted.key).await {
            Ok(None) => LookUp::Missed(waiter),
            Ok(Some(reason)) => {
                tracing::info!(render.failure = %reason, "the page failed to render moments ago; serving the origin");
                LookUp::Origin
            }
            Err(error) => {
                tracing::warn!(error = %kiln_runtime::error_chain(&error), "cache unavailable; serving the origin");
                LookUp::Origin
            }
        }
    })
    .await
}

/// A hot page costs no Redis round trip at all. It is served while the event subscription is up
/// (the events are what drop purged and re-rendered pages from memory), and also while Redis is
/// unreachable: then nothing can be purged or re-rendered, and the copy in memory beats the
/// origin's shell (stale-if-error from memory; everything in memory is dropped once the
/// subscription is back).
fn hot_hit(app: &AppState, wanted: &Wanted<'_>, redis_up: bool) -> Option<Response<Body>> {
    if redis_up && !app.events_live.load(Ordering::Acquire) {
        return None;
    }
    let entry = app.hot.get(&wanted.page_key)?;
    if !entry.meta.is_fresh(kiln_core::unix_millis_now()) {
        return None;
    }
    page_response(&entry, "HIT", None, &wanted.negotiation)
}

/// The page from Redis: a hit costs one read and nothing else. A miss registers a waiter and looks
/// once more before it renders, so that a render announced between that look and the wait still
/// wakes it.
async fn cached_or_waiter(app: &AppState, domain: &DomainConfig, wanted: &Wanted<'_>) -> LookUp {
    let mut registered = None;
    loop {
        let ticket = app.hot.ticket(&wanted.page_key);
        match app.store.pages.get(&wanted.key).await {
            Ok(Some(entry)) => {
                let fresh = entry.meta.is_fresh(kiln_core::unix_millis_now());
                let entry = Arc::new(ServedPage::new(entry));
                if fresh {
                    app.hot.insert(&wanted.page_key, Arc::clone(&entry), ticket);
                }
                let status = if fresh { "HIT" } else { "STALE" };
                let Some(response) = page_response(&entry, status, None, &wanted.negotiation)
                else {
                    return LookUp::Origin;
                };
                count(app, domain, UsageKind::Hit);
                if !fresh && wanted.renders == Renders::Allowed {
                    let job = wanted.render_job(domain);
                    refresh_in_background(app, job, refresh_lock_ttl(domain));
                }
                return LookUp::Served(response);
            }
            Ok(None) if wanted.renders == Renders::CachedOnly => return LookUp::Origin,
            Ok(None) => match registered {
                Some(waiter) => return LookUp::Missed(waiter),
                None => registered = Some(app.waiters.register(&wanted.page_key)),
            },
            Err(error) => {
                tracing::warn!(error = %kiln_runtime::error_chain(&error), "cache unavailable; serving the origin");
                return LookUp::Origin;
            }
        }
    }
}

/// Step two: claims the page's render (its lock and the tenant's budget place) and queues the job,
/// or finds someone else rendering it. False when the bot should have the origin's page instead:
/// the render may not be queued now (see [`queue_too_long`] and `kiln_store::RenderBudget`), or
/// Redis or the queue failed.
async fn claim_and_queue(app: &AppState, domain: &DomainConfig, wanted: &Wanted<'_>) -> bool {
    // The worker may try a render twice (one retry after a timeout or a bad result), so the claim
    // outlives two renders; the worker releases it as soon as the outcome is announced.
    let lifetime = Duration::from_millis(domain.settings.bot_wait_ms)
        + 2 * Duration::from_millis(domain.settings.render_timeout_ms)
        + LOCK_MARGIN;
    let claimed = app
        .store
        .pages
        .claim_render(
            &wanted.key,
            &domain.tenant_id,
            wanted.request_id,
            lifetime,
            app.render_budget,
            queue_too_long(app),
        )
        .await;
    let claim = match claimed {
        Ok(ClaimOutcome::Claimed(claim)) => claim,
        // Someone else is rendering this page: wait for their announcement.
        Ok(ClaimOutcome::AlreadyRendering) => return true,
        Ok(ClaimOutcome::Declined(refusal)) => {
            tracing::info!(render.refused = %refusal, "no render queued; serving the origin");
            return false;
        }
        Ok(ClaimOutcome::OverBudget { retry_after }) => {
            let refusal = format!(
                "the tenant's render budget is in use (a place may be free in {} ms)",
                retry_after.as_millis()
            );
            tracing::info!(render.refused = %refusal, "no render queued; serving the origin");
            return false;
        }
        Err(error) => {
            tracing::warn!(error = %kiln_runtime::error_chain(&error), "render lock unavailable; serving the origin");
            return false;
        }
    };
    if let Err(error) = app.queue.push(wanted.render_job(domain)).await {
        tracing::warn!(%error, "could not enqueue a render; serving the origin");
        // What cannot be released now lapses with the claim's lifetime.
        let _ = claim.release().await;
        return false;
    }
    claim.hand_over();
    app.metrics.render_queued(QueuedFor::Bot);
    tracing::info!(cache.key = %wanted.page_key, "render queued");
    true
}

/// Why a bot's render may not be queued now, if it may not: the render queue is too long for it to
/// be done within a bot's wait (`KILN_GATEWAY_MAX_QUEUED_RENDERS`). Only the request that won the
/// render lock asks (see [`kiln_store::Pages::claim_render`]). When Redis cannot tell, the render
/// is queued: the limit guards fairness, not safety.
async fn queue_too_long(app: &AppState) -> Option<String> {
    if app.max_queued_renders == 0 {
        return None;
    }
    match app.queue.untaken(QueueKind::Render).await {
        Ok(queued) if queued >= app.max_queued_renders => Some(format!(
            "{queued} renders are waiting for a worker (the limit is {})",
            app.max_queued_renders
        )),
        Ok(_) => None,
        Err(error) => {
            tracing::debug!(%error, "could not read the render queue's length");
            None
        }
    }
}

/// Step three: the render's announcement, within the domain's wait budget, and the page it stored
/// (`MISS`). None when the bot should have the origin's page instead: the event channel is
/// interrupted, the render failed, or the budget ran out first (the render, if queued, still
/// serves the next bot).
async fn await_render(
    app: &AppState,
    domain: &DomainConfig,
    wanted: &Wanted<'_>,
    mut waiter: Waiter,
    started: Instant,
) -> Option<Response<Body>> {
    // Without the event subscription no announcement would wake this bot: it gets the origin's
    // page now rather than after its whole budget.
    if !app.events_live.load(Ordering::Acquire) {
        tracing::info!("the event channel is interrupted; serving the origin");
        return None;
    }
    let budget = Duration::from_millis(domain.settings.bot_wait_ms);
    match waiter.wait(budget).await {
        Some(RenderOutcome::Stored { status, render_ms }) => {
            let entry = app.store.pages.get(&wanted.key).await.ok().flatten()?;
            let waited = started.elapsed().as_millis() as u64;
            // The other end of the render's trail: the worker logged it under this id too.
            tracing::info!(
                render.status = status,
                render.duration_ms = render_ms,
                bot.waited_ms = waited,
                "render announced; serving it"
            );
            let page = ServedPage::new(entry);
            let response = page_response(&page, "MISS", Some(waited), &wanted.negotiation)?;
            count(app, domain, UsageKind::Miss);
            Some(response)
        }
        Some(RenderOutcome::Failed { reason }) => {
            tracing::info!(render.failure = %reason, "render failed; serving the origin");
            None
        }
        None => {
            tracing::info!(
                budget_ms = budget.as_millis() as u64,
                "render budget exhausted; serving the origin"
            );
            None
        }
    }
}

/// How long a background refresh holds the render lock at most: two renders (the worker retries
/// once) and the queueing; the worker releases it as soon as it is done.
fn refresh_lock_ttl(domain: &DomainConfig) -> Duration {
    2 * Duration::from_millis(domain.settings.render_timeout_ms) + LOCK_MARGIN
}

/// Queues one render to replace a stale entry, unless one is under way (the render lock) or the
/// page failed to render moments ago. Nobody waits for it, so it goes on the background queue with
/// cache warming, behind every bot's render. Runs after the response has gone; failures only log.
fn refresh_in_background(app: &AppState, job: RenderJob, lock_ttl: Duration) {
    let app = app.clone();
    tokio::spawn(async move {
        let key = job.key.clone();
        match app.store.pages.recent_failure(&key).await {
            Ok(None) => {}
            Ok(Some(_)) => return,
            Err(error) => {
                tracing::warn!(error = %kiln_runtime::error_chain(&error), "cannot refresh a stale page: the cache is unavailable");
                return;
            }
        }
        let owner = job.request_id.clone().unwrap_or_default();
        match app.store.pages.claim_refresh(&key, &owner, lock_ttl).await {
            Ok(Some(claim)) => {
                if let Err(error) = app.queue.push_to(QueueKind::Warm, job).await {
                    tracing::warn!(%error, "could not enqueue the refresh of a stale page");
                    let _ = claim.release().await;
                } else {
                    claim.hand_over();
                    app.metrics.render_queued(QueuedFor::Refresh);
                    tracing::debug!(cache.key = %key.page_key(), "refreshing a stale page");
                }
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(error = %kiln_runtime::error_chain(&error), "cannot refresh a stale page: the render lock is unavailable")
            }
        }
    });
}

/// The origin's own response, marked as such.
async fn bypass(
    app: &AppState,
    domain: &DomainConfig,
    req: Request<Body>,
    peer: SocketAddr,
) -> Result<Response<Body>, GatewayError> {
    count(app, domain, UsageKind::Bypass);
    let mut response = app.origin.forward(domain, req, peer).await?;
    response.headers_mut().insert(
        crate::representation::CACHE_HEADER,
        HeaderValue::from_static("BYPASS"),
    );
    Ok(response)
}

/// Counts the bot response for the domain's usage (in memory; flushed to Redis every second) and
/// notes it in the request's log context.
pub(crate) fn count(app: &AppState, domain: &DomainConfig, kind: UsageKind) {
    app.usage.record(&domain.id, kind);
    crate::log_context::update(|fields| fields.cache_status = Some(kind.as_str()));
}
