//! The bot path: serve the cached render, or render once and wait, or fall back to the origin.
//!
//! A fresh entry is a `HIT`. An entry past its fresh TTL but inside its stale window is served at
//! once as `STALE` while one background render (behind the same render lock) replaces it; if that
//! render fails, the stale copy stays (stale-while-revalidate and stale-if-error, RFC 5861). A page
//! whose render failed moments ago (a failure marker, see `kiln_store::failures`) is neither
//! rendered again for a bot nor refreshed until the marker expires.
//!
//! A miss registers a waiter and then looks at the cache once more, so a render announced between the
//! look-up and the wait still wakes it; a hit pays for none of that. One gateway wins the render lock
//! and enqueues the job; every request for the same page, on any gateway, waits for the one
//! announcement. A request whose budget runs out gets the origin's page (`BYPASS`) while the render
//! completes for the next bot.

use crate::error::GatewayError;
use crate::metrics::QueuedFor;
use crate::representation::{Negotiation, page_response};
use crate::state::AppState;
use axum::body::Body;
use http::{HeaderValue, Method, Request, Response, header};
use kiln_core::{CacheKey, DeviceClass, DomainConfig, NormalizedUrl, RenderJob, RenderOutcome};
use kiln_queue::QueueKind;
use kiln_store::UsageKind;
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

pub async fn serve(
    app: &AppState,
    domain: &DomainConfig,
    req: Request<Body>,
    peer: SocketAddr,
    request_id: &str,
    renders: Renders,
) -> Result<Response<Body>, GatewayError> {
    let scheme = match req
        .headers()
        .get("x-forwarded-proto")
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
    // One render per URL for domains that serve phones and desktops the same page.
    let device = if domain.settings.device_variants {
        DeviceClass::from_user_agent(user_agent)
    } else {
        DeviceClass::Desktop
    };
    let key = CacheKey::new(&domain.id, device, &url);
    let negotiation = Negotiation::of(req.headers(), req.method() == Method::HEAD);

    // A hot page costs no Redis round trip at all. It is served while the event subscription is up
    // (the events are what drop purged and re-rendered pages from memory), and also while Redis is
    // unreachable: then nothing can be purged or re-rendered, and the copy in memory beats the
    // origin's shell (stale-if-error from memory; everything in memory is dropped once the
    // subscription is back).
    let page_key = key.page_key();
    let redis_up = app.store.is_connected();
    if (app.events_live.load(Ordering::Acquire) || !redis_up)
        && let Some(entry) = app.hot.get(&page_key)
        && entry.meta.is_fresh(kiln_core::unix_millis_now())
        && let Some(response) = page_response(&entry, "HIT", None, &negotiation)
    {
        count(app, domain, UsageKind::Hit);
        return Ok(response);
    }
    // With no connection to Redis, every command would only wait for its timeout: the origin's
    // page, at once.
    if !redis_up {
        tracing::debug!("redis is unreachable; serving the origin");
        return bypass(app, domain, req, peer).await;
    }

    // Otherwise a hit costs one Redis read and nothing else. A miss registers a waiter and looks
    // once more before it renders, so that a render announced between that look and the wait still
    // wakes it.
    let mut registered = None;
    let mut waiter = loop {
        let ticket = app.hot.ticket(&page_key);
        match app.store.get_page(&key).await {
            Ok(Some(entry)) => {
                let fresh = entry.meta.is_fresh(kiln_core::unix_millis_now());
                let entry = Arc::new(entry);
                if fresh {
                    app.hot.insert(&page_key, Arc::clone(&entry), ticket);
                }
                let Some(response) = page_response(
                    &entry,
                    if fresh { "HIT" } else { "STALE" },
                    None,
                    &negotiation,
                ) else {
                    return bypass(app, domain, req, peer).await;
                };
                count(app, domain, UsageKind::Hit);
                if !fresh && renders == Renders::Allowed {
                    let job = render_job(domain, &url, &key, device, user_agent, request_id);
                    refresh_in_background(app, job, refresh_lock_ttl(domain));
                }
                return Ok(response);
            }
            Ok(None) if renders == Renders::CachedOnly => {
                return bypass(app, domain, req, peer).await;
            }
            Ok(None) => match registered {
                Some(waiter) => break waiter,
                None => registered = Some(app.waiters.register(&page_key)),
            },
            Err(error) => {
                tracing::warn!(%error, "cache unavailable; serving the origin");
                return bypass(app, domain, req, peer).await;
            }
        }
    };

    // A page that failed to render moments ago gets the origin's page at once.
    match app.store.recent_failure(&key).await {
        Ok(None) => {}
        Ok(Some(reason)) => {
            tracing::info!(render.failure = %reason, "the page failed to render moments ago; serving the origin");
            return bypass(app, domain, req, peer).await;
        }
        Err(error) => {
            tracing::warn!(%error, "cache unavailable; serving the origin");
            return bypass(app, domain, req, peer).await;
        }
    }

    let started = Instant::now();
    let budget = Duration::from_millis(domain.settings.bot_wait_ms);
    // The worker may try a render twice (one retry after a timeout or a bad result), so the lock
    // outlives two renders; the worker releases it as soon as the outcome is announced.
    let lock_ttl =
        budget + 2 * Duration::from_millis(domain.settings.render_timeout_ms) + LOCK_MARGIN;
    match app.store.try_lock_render(&key, request_id, lock_ttl).await {
        Ok(true) => {
            if let Some(refusal) = admit_render(app, domain, &page_key, lock_ttl).await {
                tracing::info!(render.refused = %refusal, "no render queued; serving the origin");
                let _ = app.store.release_render_lock(&key).await;
                return bypass(app, domain, req, peer).await;
            }
            let job = render_job(domain, &url, &key, device, user_agent, request_id);
            if let Err(error) = app.queue.push(job).await {
                tracing::warn!(%error, "could not enqueue a render; serving the origin");
                let _ = app.store.release_render_lock(&key).await;
                let _ = app
                    .store
                    .release_render_place(&domain.tenant_id, &page_key)
                    .await;
                return bypass(app, domain, req, peer).await;
            }
            app.metrics.render_queued(QueuedFor::Bot);
            tracing::info!(cache.key = %page_key, "render queued");
        }
        // Someone else is rendering this page: wait for their announcement.
        Ok(false) => {}
        Err(error) => {
            tracing::warn!(%error, "render lock unavailable; serving the origin");
            return bypass(app, domain, req, peer).await;
        }
    }

    // Without the event subscription no announcement would wake this bot: it gets the origin's
    // page now rather than after its whole budget (the render, if queued, still serves the next).
    if !app.events_live.load(Ordering::Acquire) {
        tracing::info!("the event channel is interrupted; serving the origin");
        return bypass(app, domain, req, peer).await;
    }
    match waiter.wait(budget).await {
        Some(RenderOutcome::Stored { status, render_ms }) => match app.store.get_page(&key).await {
            Ok(Some(entry)) => {
                let waited = started.elapsed().as_millis() as u64;
                // The other end of the render's trail: the worker logged it under this id too.
                tracing::info!(
                    render.status = status,
                    render.duration_ms = render_ms,
                    bot.waited_ms = waited,
                    "render announced; serving it"
                );
                match page_response(&entry, "MISS", Some(waited), &negotiation) {
                    Some(response) => {
                        count(app, domain, UsageKind::Miss);
                        Ok(response)
                    }
                    None => bypass(app, domain, req, peer).await,
                }
            }
            Ok(None) | Err(_) => bypass(app, domain, req, peer).await,
        },
        Some(RenderOutcome::Failed { reason }) => {
            tracing::info!(render.failure = %reason, "render failed; serving the origin");
            bypass(app, domain, req, peer).await
        }
        None => {
            tracing::info!(
                budget_ms = budget.as_millis() as u64,
                "render budget exhausted; serving the origin"
            );
            bypass(app, domain, req, peer).await
        }
    }
}

/// Why a bot's render may not be queued now, if it may not: the render queue is too long for it to
/// be done within a bot's wait (`KILN_GATEWAY_MAX_QUEUED_RENDERS`), or the domain's tenant has all
/// its renders under way or has started its renders for this minute (`KILN_TENANT_*`). Otherwise
/// the render holds a place in the tenant's budget until the worker gives it back (or `hold`
/// passes). When Redis cannot tell, the render is queued: the limits guard fairness, not safety.
async fn admit_render(
    app: &AppState,
    domain: &DomainConfig,
    page_key: &str,
    hold: Duration,
) -> Option<String> {
    if app.max_queued_renders > 0 {
        match app.queue.untaken(QueueKind::Render).await {
            Ok(queued) if queued >= app.max_queued_renders => {
                return Some(format!(
                    "{queued} renders are waiting for a worker (the limit is {})",
                    app.max_queued_renders
                ));
            }
            Ok(_) => {}
            Err(error) => tracing::debug!(%error, "could not read the render queue's length"),
        }
    }
    match app
        .store
        .admit_render(&domain.tenant_id, page_key, app.render_budget, hold)
        .await
    {
        Ok(kiln_store::Admission::Admitted) => None,
        Ok(kiln_store::Admission::Refused { retry_after }) => Some(format!(
            "the tenant's render budget is in use (a place may be free in {} ms)",
            retry_after.as_millis()
        )),
        Err(error) => {
            tracing::debug!(%error, "could not check the tenant's render budget");
            None
        }
    }
}

/// The job that renders `url` for `key` on a bot's behalf.
fn render_job(
    domain: &DomainConfig,
    url: &NormalizedUrl,
    key: &CacheKey,
    device: DeviceClass,
    user_agent: &str,
    request_id: &str,
) -> RenderJob {
    RenderJob {
        render_url: domain.origin_url_for(url),
        page_url: url.clone(),
        key: key.clone(),
        tenant_id: domain.tenant_id.clone(),
        device,
        cache_ttl_secs: domain.settings.cache_ttl_secs,
        stale_ttl_secs: domain.settings.stale_ttl_secs,
        render_timeout_ms: domain.settings.render_timeout_ms,
        enqueued_at: kiln_core::unix_millis_now(),
        request_id: Some(request_id.to_owned()),
        blocking: domain.settings.blocking,
        purpose: kiln_core::job::RenderPurpose::Bot,
        user_agent: RenderJob::user_agent_for_job(user_agent),
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
        match app.store.recent_failure(&key).await {
            Ok(None) => {}
            Ok(Some(_)) => return,
            Err(error) => {
                tracing::warn!(%error, "cannot refresh a stale page: the cache is unavailable");
                return;
            }
        }
        let owner = job.request_id.clone().unwrap_or_default();
        match app.store.try_lock_render(&key, &owner, lock_ttl).await {
            Ok(true) => {
                if let Err(error) = app.queue.push_to(QueueKind::Warm, job).await {
                    tracing::warn!(%error, "could not enqueue the refresh of a stale page");
                    let _ = app.store.release_render_lock(&key).await;
                } else {
                    app.metrics.render_queued(QueuedFor::Refresh);
                    tracing::debug!(cache.key = %key.page_key(), "refreshing a stale page");
                }
            }
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(%error, "cannot refresh a stale page: the render lock is unavailable")
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
/// notes it in the request's span.
fn count(app: &AppState, domain: &DomainConfig, kind: UsageKind) {
    app.usage.record(&domain.id, kind);
    tracing::Span::current().record("cache.status", kind.as_str());
}
