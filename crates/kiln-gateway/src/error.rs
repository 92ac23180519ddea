//! The gateway's errors, each knowing where it came from: that decides the status a client sees.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The client sent something Kiln will not serve.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The request's body is larger than the gateway accepts.
    #[error("the request body is too large")]
    PayloadTooLarge,
    /// The `Host` names no domain registered with Kiln.
    #[error("no domain is registered for host `{0}`")]
    UnknownHost(String),
    /// The `Host` names a domain used only through the render service, whose traffic never comes
    /// through Kiln's edge: it is not served here (its origin is the public site, which may well be
    /// Kiln's own edge if its DNS points here by mistake).
    #[error("`{0}` is used only through the render service")]
    ServiceOnly(String),
    /// The origin refused the connection, reset it, or failed TLS.
    #[error("the origin could not be reached: {0}")]
    OriginUnreachable(String),
    /// The origin is somewhere Kiln may not connect for this domain: one of Kiln's own services, or
    /// a non-public address `KILN_ALLOWED_PRIVATE_NETS` does not grant its tenant at that port.
    #[error("the origin may not be connected to: {0}")]
    OriginRefused(String),
    /// The origin did not start answering in time.
    #[error("the origin did not answer in time")]
    OriginTimeout,
    /// The client's address made more bot requests than the domain allows; it may try again after
    /// this long.
    #[error("too many requests; retry in {0:?}")]
    TooManyRequests(std::time::Duration),
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let (status, title, detail) = match &self {
            GatewayError::BadRequest(why) => {
                (StatusCode::BAD_REQUEST, "Bad request", (*why).to_owned())
            }
            GatewayError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "Payload too large",
                "The request body is larger than this server accepts.".to_owned(),
            ),
            GatewayError::UnknownHost(host) => (
                StatusCode::MISDIRECTED_REQUEST,
                "Unknown host",
                format!(
                    "This server does not serve {host}: no domain with that name is registered with Kiln."
                ),
            ),
            GatewayError::ServiceOnly(host) => (
                StatusCode::MISDIRECTED_REQUEST,
                "Not served here",
                format!(
                    "{host} is used only through Kiln's render service, so its visitors are not served by this server. Its DNS should point at its own site."
                ),
            ),
            GatewayError::OriginUnreachable(_) => (
                StatusCode::BAD_GATEWAY,
                "Origin unreachable",
                "Kiln could not reach the website's origin server. Please try again shortly."
                    .to_owned(),
            ),
            GatewayError::OriginRefused(_) => (
                StatusCode::BAD_GATEWAY,
                "Origin refused",
                "This website's origin server is at an address Kiln does not connect to. \
                 Its owner can correct the origin in Kiln's dashboard."
                    .to_owned(),
            ),
            GatewayError::OriginTimeout => (
                StatusCode::GATEWAY_TIMEOUT,
                "Origin timeout",
                "The website's origin server did not answer in time. Please try again shortly."
                    .to_owned(),
            ),
            GatewayError::TooManyRequests(wait) => (
                StatusCode::TOO_MANY_REQUESTS,
                "Too many requests",
                format!(
                    "Your address has made more requests than this website allows. Please retry in {} s.",
                    retry_after_secs(*wait)
                ),
            ),
        };
        let body = format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>{code} {title}</title></head>\
             <body><h1>{code} {title}</h1><p>{detail}</p><hr><p>Kiln</p></body></html>\n",
            code = status.as_u16(),
            detail = html_escape::encode_text(&detail),
        );
        let mut response = Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
            .header(header::CACHE_CONTROL, "no-store")
            .header("x-kiln-error", self.code());
        if let GatewayError::TooManyRequests(wait) = &self {
            response = response.header(header::RETRY_AFTER, retry_after_secs(*wait));
        }
        response
            .body(Body::from(body))
            .expect("static response parts are valid")
    }
}

impl GatewayError {
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::BadRequest(_) => "bad-request",
            GatewayError::PayloadTooLarge => "payload-too-large",
            GatewayError::UnknownHost(_) => "unknown-host",
            GatewayError::ServiceOnly(_) => "service-only-domain",
            GatewayError::OriginUnreachable(_) => "origin-unreachable",
            GatewayError::OriginRefused(_) => "origin-refused",
            GatewayError::OriginTimeout => "origin-timeout",
            GatewayError::TooManyRequests(_) => "rate-limited",
        }
    }
}

/// `Retry-After` in whole seconds, rounded up: a client retrying on time must not be refused.
pub(crate) fn retry_after_secs(wait: std::time::Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}
