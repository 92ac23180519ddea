//! Request routing: which domain, and whether the request takes the bot path or the human path.
//!
//! A request is a bot's when the edge says so (`X-Is-Bot: 1`) or its User-Agent contains one of the
//! domain's own bot patterns. A request that did not come through the edge (no `X-Is-Bot` at all,
//! or a peer that is not a trusted proxy, whose `X-Is-Bot` is ignored) is classified here with the
//! edge's own data file (`nginx/bots.map`, see `kiln_core::bots`), so a gateway run on its own
//! treats every client as the edge would. Requests `guard.rs` refuses never get this far. A bot's GET or HEAD for a page (not
//! an asset) of a verified domain takes the bot path if its family is one the domain renders for and
//! the domain's path rules render that path; everything else is proxied.
//!
//! A bot whose User-Agent claims to be a crawler that can be verified (Googlebot, Bingbot, …, see
//! `kiln_core::crawlers`) is checked against the client's address (forward-confirmed reverse DNS or
//! published ranges, through `kiln-verify`). One that is not the crawler, or cannot be shown to be
//! one in time, gets the cached page or the origin's, and never causes a render. Bots other than
//! verified crawlers are held to the domain's rate per client address (`429` with `Retry-After`
//! beyond it); verified crawlers are paced by their operators.

use crate::bot;
use crate::error::GatewayError;
use crate::guard;
use crate::log_context::{self, RequestFields};
use crate::metrics::ClientClass;
use crate::state::AppState;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, Request, header};
use kiln_core::{BotClassifier, BotFamily, Crawler, is_asset_path};
use kiln_store::UsageKind;
use kiln_verify::Verdict;
use std::net::{IpAddr, SocketAddr};

/// Answers one request on the public listener from `peer` (see `serve.rs`).
pub async fn handle(app: AppState, peer: SocketAddr, req: Request<Body>) -> Response {
    let started = std::time::Instant::now();
    let request_id = request_id(&req);
    let fields = RequestFields::new(
        &request_id,
        req.method(),
        req.uri(),
        crate::service::loggable_path(req.uri().path()),
    );
    let mut class = ClientClass::Person;
    let mut response = kiln_runtime::context::scope(Box::new(fields), async {
        route(&app, req, peer, &request_id, &mut class)
            .await
            .unwrap_or_else(|error| {
                match &error {
                    GatewayError::OriginUnreachable(_) | GatewayError::OriginTimeout => {
                        tracing::warn!(%error, "origin failure")
                    }
                    GatewayError::OriginRefused(_) => {
                        tracing::warn!(%error, "refused to connect to the domain's origin")
                    }
                    _ => tracing::debug!(%error, "request refused"),
                }
                error.into_response()
            })
    })
    .await;
    // Always set or taken away: a cached page's headers hold a place for it.
    match HeaderValue::from_str(&request_id) {
        Ok(value) => response
            .headers_mut()
            .insert(kiln_core::headers::REQUEST_ID, value),
        Err(_) => response
            .headers_mut()
            .remove(kiln_core::headers::REQUEST_ID),
    };
    app.metrics.request(
        class,
        response
            .headers()
            .get(crate::representation::CACHE_HEADER)
            .map(HeaderValue::as_bytes),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

async fn route(
    app: &AppState,
    req: Request<Body>,
    peer: SocketAddr,
    request_id: &str,
    class: &mut ClientClass,
) -> Result<Response, GatewayError> {
    let host = guard::host(&req)?;
    guard::target(&req, &host)?;
    guard::declared_body(&req, app.max_body_bytes)?;
    let req = guard::limit_body(req, app.max_body_bytes);
    // Certificate authorities validating an order: answered on any host, never proxied.
    if req.uri().path().starts_with(crate::acme::CHALLENGE_PREFIX) {
        log_context::update(|fields| {
            fields.host = Some(host.clone());
            fields.client_kind = Some("acme");
        });
        // Boxed, as the render service's below: what a request's future holds inline is what
        // every request's moves and a cache hit's costs; the rare paths keep theirs apart.
        return Ok(Box::pin(crate::acme::answer(
            app,
            req.method(),
            &host,
            req.uri().path(),
        ))
        .await);
    }
    // The render service's own host: never a customer's domain, whatever the directory holds.
    if app.service_host.as_ref() == Some(&host) {
        *class = ClientClass::Bot;
        return Ok(Box::pin(crate::service::handle(app, req, request_id)).await);
    }
    let domain = app
        .directory
        .get(&host)
        .ok_or_else(|| GatewayError::UnknownHost(host.to_string()))?;
    // A domain used only through the render service: its traffic is not Kiln's to serve, and its
    // origin is its public name, which would be this very edge if its DNS pointed here.
    if domain.config.service_only {
        return Err(GatewayError::ServiceOnly(host.to_string()));
    }

    // The edge's verdict (with the family it found), or the same classification here when the
    // request did not come through the edge; then the domain's own patterns, for what either took
    // for a person (those have no family: the domain asked for them).
    let user_agent = user_agent(&req);
    let classifier = BotClassifier::shared();
    // Only the edge's word counts: from anyone else, X-Is-Bot is ignored like any forged header.
    let edge_verdict = app
        .trusted_proxies
        .contains(peer.ip())
        .then(|| req.headers().get(kiln_core::headers::IS_BOT))
        .flatten()
        .map(|v| v.as_bytes() == b"1");
    let known_bot = match edge_verdict {
        Some(true) => Some((
            "edge",
            req.headers()
                .get(kiln_core::headers::BOT_FAMILY)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<BotFamily>().ok())
                .or_else(|| classifier.classify(user_agent)),
        )),
        Some(false) => None,
        // As the edge does: a bot fetching an asset is served like anyone else.
        None => classifier
            .classify(user_agent)
            .filter(|_| !is_asset_path(req.uri().path()))
            .map(|family| ("gateway", Some(family))),
    };
    let bot = known_bot.or_else(|| {
        domain
            .bot_agents
            .matches(user_agent)
            .then_some(("domain", None))
    });
    let Some((bot_source, family)) = bot else {
        log_context::update(|fields| {
            fields.host = Some(host.clone());
            fields.client_kind = Some("person");
        });
        return app.origin.forward(&domain.config, req, peer).await;
    };
    *class = ClientClass::Bot;

    // Why a bot's request is proxied like a person's, if it is.
    let passthrough = if !matches!(*req.method(), Method::GET | Method::HEAD) {
        Some("method")
    } else if is_asset_path(req.uri().path()) {
        Some("asset")
    } else if !domain.config.verified {
        Some("unverified")
    } else if family.is_some_and(|f| !domain.config.settings.bot_families.contains(&f)) {
        Some("family")
    } else if !domain.paths.renders(req.uri().path()) {
        // Only this one is counted: the customer chose it, and the dashboard shows what it spared.
        app.usage.record(&domain.config.id, UsageKind::Passthrough);
        Some("path_rules")
    } else {
        None
    };
    log_context::update(|fields| {
        fields.host = Some(host.clone());
        fields.client_kind = Some(if passthrough.is_none() {
            "bot"
        } else {
            "bot-passthrough"
        });
        fields.bot_source = Some(bot_source);
        fields.bot_family = family.map(BotFamily::as_str);
        fields.passthrough = passthrough;
    });
    match passthrough {
        None => {
            // Its URL becomes a cache key and a render.
            guard::query(&req)?;
            let client =
                kiln_core::request_client_ip(peer.ip(), req.headers(), &app.trusted_proxies);
            let (renders, verified) = check_crawler(app, client, user_agent).await;
            if !verified && let Err(wait) = app.bot_limits.check(&domain.config, client) {
                log_context::update(|fields| fields.passthrough = Some("rate_limited"));
                return Err(GatewayError::TooManyRequests(wait));
            }
            bot::serve(app, &domain.config, req, peer, request_id, renders).await
        }
        Some(_) => app.origin.forward(&domain.config, req, peer).await,
    }
}

/// Whether a bot's request may cause a render (not if it claims to be a verifiable crawler and the
/// client's address is not shown to be that crawler's), and whether it is a verified crawler's.
async fn check_crawler(app: &AppState, client: IpAddr, user_agent: &str) -> (bot::Renders, bool) {
    let Some(verifier) = &app.crawlers else {
        return (bot::Renders::Allowed, false);
    };
    let Some(crawler) = Crawler::claimed_by(user_agent) else {
        return (bot::Renders::Allowed, false);
    };
    let verdict = verifier.verify(crawler, client, app.verify_wait).await;
    log_context::update(|fields| {
        fields.crawler = Some(crawler.name);
        fields.verified = Some(verdict.as_str());
    });
    match verdict {
        Verdict::Verified { .. } => (bot::Renders::Allowed, true),
        Verdict::Unverifiable { reason } => {
            tracing::debug!(client.ip = %client, %reason, "cannot verify the crawler; rendering as for any bot");
            (bot::Renders::Allowed, false)
        }
        // Debug, not info: a flood of forged User-Agents would be a flood of lines. The verifier
        // logs each new impostor once, when it finds one.
        Verdict::Impostor { reason } | Verdict::Unknown { reason } => {
            tracing::debug!(client.ip = %client, %reason, "not verified as the crawler it claims to be; serving without rendering");
            (bot::Renders::CachedOnly, false)
        }
    }
}

fn user_agent(req: &Request<Body>) -> &str {
    req.headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The edge's request id when it sent a sane one, else a fresh one.
fn request_id(req: &Request<Body>) -> String {
    req.headers()
        .get(kiln_core::headers::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_owned)
}
