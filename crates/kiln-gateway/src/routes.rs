//! Request routing: which domain, and whether the request takes the bot path or the human path.

use crate::bot;
use crate::error::GatewayError;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, Request, header};
use kiln_core::{Hostname, is_asset_path};
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

    let is_bot = req
        .headers()
        .get("x-is-bot")
        .is_some_and(|v| v.as_bytes() == b"1");
    let renderable =
        matches!(*req.method(), Method::GET | Method::HEAD) && !is_asset_path(req.uri().path());
    if is_bot && renderable && domain.verified {
        tracing::Span::current().record("client.kind", "bot");
        return bot::serve(app, &domain, req, peer, request_id).await;
    }
    tracing::Span::current().record(
        "client.kind",
        if is_bot { "bot-passthrough" } else { "person" },
    );
    app.origin.forward(&domain, req, peer).await
}

/// The edge's request id when it sent a sane one, else a fresh one.
fn request_id(req: &Request<Body>) -> String {
    req.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_owned)
}
