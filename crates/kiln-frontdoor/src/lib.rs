//! What the dashboard's two front ends, the REST API (`kiln-api`) and the web dashboard
//! (`kiln-web`), share about a request: who is calling ([`auth`]: an API key or a session cookie)
//! and the rate limits on callers and addresses ([`limits`]), the state every handler works with
//! ([`Context`]), the forms' CSRF keys ([`csrf`]), and the one error shape ([`ApiError`]) that the
//! control plane's errors become.
//!
//! Architecture invariant: the front ends depend on this crate and `kiln-control`, never on each
//! other; this crate holds no handler and no route.

pub mod auth;
pub mod context;
pub mod csrf;
pub mod error;
pub mod limits;

pub use context::{Context, Ctx};
pub use error::{ApiError, ErrorBody, ErrorDetail};

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// The largest request body accepted: 1,000 URLs of up to 8 KiB each, with room for JSON.
pub const MAX_BODY_BYTES: usize = 9 * 1024 * 1024;

/// A parity check's picture as a response. A picture never changes once written, but it is the
/// tenant's: browsers may keep it, shared caches may not.
pub fn png_response(png: bytes::Bytes) -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/png"),
            (header::CACHE_CONTROL, "private, max-age=3600"),
        ],
        png,
    )
        .into_response()
}
