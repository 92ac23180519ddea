//! Answers ACME HTTP-01 challenges: `GET /.well-known/acme-challenge/{token}` on any host is answered
//! here from what `kiln-acme` published in Redis for that host and token, for people and bots alike,
//! never proxied to the origin, never cached or rendered.
//!
//! This is the one Redis read on the request path outside the bot path, and only for this path,
//! which certificate authorities fetch a handful of times per order.

use crate::state::AppState;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode, header};
use kiln_core::Hostname;

/// The path prefix certificate authorities fetch challenge answers under (RFC 8555, section 8.3).
pub const CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// The answer for the challenge at `path` (which starts with [`CHALLENGE_PREFIX`]) on `host`: the
/// key authorization as plain text, or 404 when nothing is published for exactly this host and
/// token. A token that could not have come from a CA (base64url, RFC 8555 section 8.1) is not
/// looked up at all.
pub async fn answer(app: &AppState, method: &Method, host: &Hostname, path: &str) -> Response {
    if !matches!(*method, Method::GET | Method::HEAD) {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            "challenges are fetched with GET\n",
        )
            .into_response();
    }
    let token = &path[CHALLENGE_PREFIX.len()..];
    let valid = !token.is_empty()
        && token.len() <= 128
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid {
        return not_found();
    }
    match app.store.challenges.get(host, token).await {
        Ok(Some(key_authorization)) => {
            tracing::info!(acme.token = token, "answered an ACME challenge");
            let mut response = key_authorization.into_response();
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Ok(None) => not_found(),
        Err(error) => {
            tracing::warn!(error = %kiln_runtime::error_chain(&error), "cannot read an ACME challenge from Redis");
            (StatusCode::SERVICE_UNAVAILABLE, "try again\n").into_response()
        }
    }
}

fn not_found() -> Response {
    let mut response = (StatusCode::NOT_FOUND, "no such challenge\n").into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
