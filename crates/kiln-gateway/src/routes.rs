//! Request routing: which domain, and whether the request takes the bot path or the human path.
//!
//! A request is a bot's when the edge says so (`X-Is-Bot: 1`) or its User-Agent contains one of the
//! domain's own bot patterns. A bot's GET or HEAD for a page (not an asset) of a verified domain
//! takes the bot path if the domain's path rules render that path; everything else is proxied.

use crate::bot;
use crate::error::GatewayError;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, Request, header};
use kiln_core::{Hostname, is_asset_path};
use kiln_store::UsageKind;
use std::net::SocketAddr;
use tracing::Instrument;

pub async fn handle(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request<Body>,
) -> Response {
    let request_id = request_id(&req);
    let span = tracing::info_span!(
        "request",
        request.id = %request_id,
        http.method = %req.method(),
        http.path = %req.uri().path(),
        http.host = tracing::field::Empty,
        client.kind = tracing::field::Empty,
        bot.source = tracing::field::Empty,
        bot.passthrough = tracing::field::Empty,
        cache.status = tracing::field::Empty,
    );
    let mut response = route(&app, req, peer, &request_id)
        .instrument(span.clone())
        .await
        .unwrap_or_else(|error| {
            span.in_scope(|| match &error {
                GatewayError::OriginUnreachable(_) | GatewayError::OriginTimeout => {
                    tracing::warn!(%error, "origin failure")
                }
                _ => tracing::debug!(%error, "request refused"),
            });
            error.into_response()
        });
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

async fn route(
    app: &AppState,
    req: Request<Body>,
    peer: SocketAddr,
    request_id: &str,
) -> Result<Response, GatewayError> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .ok_or(GatewayError::BadRequest("the request has no Host header"))?;
    let host = Hostname::from_host_header(host)
        .map_err(|_| GatewayError::BadRequest("the Host header is not a valid hostname"))?;
    tracing::Span::current().record("http.host", host.as_str());
    let domain = app
        .directory
        .get(&host)
        .ok_or_else(|| GatewayError::UnknownHost(host.to_string()))?;

    // The edge's verdict, or the domain's own patterns for what the edge took for a person.
    let bot_source = if req
        .headers()
        .get("x-is-bot")
        .is_some_and(|v| v.as_bytes() == b"1")
    {
        Some("edge")
    } else if domain.bot_agents.matches(user_agent(&req)) {
        Some("domain")
    } else {
        None
    };
    let span = tracing::Span::current();
    let Some(bot_source) = bot_source else {
        span.record("client.kind", "person");
        return app.origin.forward(&domain.config, req, peer).await;
    };
    span.record("bot.source", bot_source);

    // Why a bot's request is proxied like a person's, if it is.
    let passthrough = if !matches!(*req.method(), Method::GET | Method::HEAD) {
        Some("method")
    } else if is_asset_path(req.uri().path()) {
        Some("asset")
    } else if !domain.config.verified {
        Some("unverified")
    } else if !domain.paths.renders(req.uri().path()) {
        // Only this one is counted: the customer chose it, and the dashboard shows what it spared.
        app.usage.record(&domain.config.id, UsageKind::Passthrough);
        Some("path_rules")
    } else {
        None
    };
    match passthrough {
        None => {
            span.record("client.kind", "bot");
            bot::serve(app, &domain.config, req, peer, request_id).await
        }
        Some(reason) => {
            span.record("client.kind", "bot-passthrough");
            span.record("bot.passthrough", reason);
            app.origin.forward(&domain.config, req, peer).await
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
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_owned)
}
