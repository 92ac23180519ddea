//! Why the proxy did not pass a request through, and the short plain-text answer Chromium gets instead.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use std::time::Duration;

/// The body type of every response the proxy writes.
pub(crate) type ProxyBody = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

/// The header on every response the proxy writes itself (as opposed to an origin's response), saying
/// what happened: `refused`, `invalid`, `unreachable` or `timeout`.
pub const EGRESS_HEADER: &str = "x-kiln-egress";

/// Everything that ends a proxied request or tunnel inside the proxy. `Clone` (causes are kept as
/// text) so the copy found inside a client error's source chain can be answered directly.
#[derive(Clone, Debug, thiserror::Error)]
pub(crate) enum EgressError {
    #[error(
        "not a proxy request: the request target must be absolute (GET http://host/path) or CONNECT host:port"
    )]
    NotAProxyRequest,
    #[error("{0}: URLs are not proxied; only http:// (and https:// through CONNECT)")]
    UnsupportedScheme(String),
    #[error("invalid proxy target: {0}")]
    InvalidTarget(&'static str),
    #[error("refused {target}: {reason}")]
    Refused { target: String, reason: String },
    #[error("{target}: the host could not be resolved ({cause})")]
    Unresolvable { target: String, cause: String },
    #[error("{target} could not be reached ({cause})")]
    Unreachable { target: String, cause: String },
    #[error("{target} did not accept a connection within {} ms", limit.as_millis())]
    Timeout { target: String, limit: Duration },
    #[error("the origin at {target} failed: {cause}")]
    Upstream { target: String, cause: String },
}

impl EgressError {
    /// The status and `X-Kiln-Egress` value that tell Chromium (and whoever reads the render's logs)
    /// what happened.
    fn status(&self) -> (StatusCode, &'static str) {
        match self {
            EgressError::NotAProxyRequest
            | EgressError::UnsupportedScheme(_)
            | EgressError::InvalidTarget(_) => (StatusCode::BAD_REQUEST, "invalid"),
            EgressError::Refused { .. } => (StatusCode::FORBIDDEN, "refused"),
            EgressError::Unresolvable { .. }
            | EgressError::Unreachable { .. }
            | EgressError::Upstream { .. } => (StatusCode::BAD_GATEWAY, "unreachable"),
            EgressError::Timeout { .. } => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
        }
    }

    pub(crate) fn to_response(&self) -> Response<ProxyBody> {
        let (status, outcome) = self.status();
        let body = Full::new(Bytes::from(format!("kiln egress proxy: {self}\n")))
            .map_err(|never| match never {})
            .boxed();
        let mut response = Response::new(body);
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(EGRESS_HEADER, HeaderValue::from_static(outcome));
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        // A refusal is about this proxy's policy at this moment, never something to cache.
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}
