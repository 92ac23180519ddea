//! What the gateway refuses before it routes a request: ambiguous or malformed hosts and targets,
//! and bodies too large. Each refusal is a `400` (or `413`) with `X-Kiln-Error`, and nothing is
//! fetched, cached or queued for it.
//!
//! hyper has already refused what cannot be parsed as HTTP/1.1 (conflicting `Content-Length`s,
//! transfer codings other than `chunked`, control bytes in the target, heads over
//! [`crate::serve::MAX_HEAD_BYTES`]). What is left here is what parses but must not be served:
//!
//! * `Host`: exactly one, ASCII (an IDN arrives in punycode, as browsers send it), a hostname
//!   (port, trailing dot and case do not matter; userinfo, paths and IP addresses are refused).
//! * An absolute-form target (`GET http://other.example/ HTTP/1.1`) must name the same host as
//!   `Host`; otherwise the request would be for one host by the URL and for another by the header.
//!   `CONNECT` and `OPTIONS *` have no page to serve.
//! * The path's percent-escapes must be well formed, never `%00`, and decode to UTF-8 (no overlong
//!   forms such as `%c0%af`), as the edge requires of the first two. A person's query goes to the
//!   origin as sent (it is the origin's to judge); a bot's becomes a cache key and a render, so it
//!   is held to the same escapes ([`query`]).

use crate::error::GatewayError;
use axum::body::Body;
use http::{Method, Request, header};
use kiln_core::Hostname;

/// The request's one `Host`, as Kiln names domains.
pub fn host(req: &Request<Body>) -> Result<Hostname, GatewayError> {
    let mut values = req.headers().get_all(header::HOST).iter();
    let value = values
        .next()
        .ok_or(GatewayError::BadRequest("the request has no Host header"))?;
    if values.next().is_some() {
        return Err(GatewayError::BadRequest(
            "the request has more than one Host header",
        ));
    }
    let value = value.to_str().map_err(|_| {
        GatewayError::BadRequest("the Host header is not ASCII (an IDN is sent in punycode)")
    })?;
    Hostname::from_host_header(value)
        .map_err(|_| GatewayError::BadRequest("the Host header is not a valid hostname"))
}

/// Refuses a target that is not a page on `host`.
pub fn target(req: &Request<Body>, host: &Hostname) -> Result<(), GatewayError> {
    if req.method() == Method::CONNECT {
        return Err(GatewayError::BadRequest("CONNECT is not supported"));
    }
    let uri = req.uri();
    if let Some(authority) = uri.authority() {
        let same = Hostname::from_host_header(authority.as_str()).is_ok_and(|h| h == *host);
        let scheme_ok = uri
            .scheme_str()
            .is_some_and(|s| s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https"));
        if !same || !scheme_ok {
            return Err(GatewayError::BadRequest(
                "the request target names another host than the Host header",
            ));
        }
    }
    if !uri.path().starts_with('/') {
        return Err(GatewayError::BadRequest("the request target is not a path"));
    }
    if !escapes_ok(uri.path(), true) {
        return Err(GatewayError::BadRequest(
            "the request path has a malformed or NUL percent-escape, or is not UTF-8",
        ));
    }
    Ok(())
}

/// Refuses a body declared larger than `max` bytes. (One sent in chunks is cut off at `max` by
/// [`limit_body`].)
pub fn declared_body(req: &Request<Body>, max: u64) -> Result<(), GatewayError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(length) if length > max => Err(GatewayError::PayloadTooLarge),
        _ => Ok(()),
    }
}

/// The request with its body failing once more than `max` bytes have been read; the proxy turns
/// that failure into `413`.
pub fn limit_body(req: Request<Body>, max: u64) -> Request<Body> {
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    req.map(|body| Body::new(http_body_util::Limited::new(body, max)))
}

/// Refuses a bot's query with malformed or NUL escapes.
pub fn query(req: &Request<Body>) -> Result<(), GatewayError> {
    match req.uri().query() {
        Some(query) if !escapes_ok(query, false) => Err(GatewayError::BadRequest(
            "the query has a malformed or NUL percent-escape",
        )),
        _ => Ok(()),
    }
}

/// Whether every `%` in `text` starts two hex digits, none of them `%00`, and (with `utf8`) the
/// text decodes to UTF-8, which rules out overlong forms such as `%c0%af` for `/`.
fn escapes_ok(text: &str, utf8: bool) -> bool {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            decoded.push(bytes[i]);
            i += 1;
            continue;
        }
        let value = bytes
            .get(i + 1..i + 3)
            .filter(|hex| hex.iter().all(u8::is_ascii_hexdigit))
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match value {
            Some(0) | None => return false,
            Some(byte) => decoded.push(byte),
        }
        i += 3;
    }
    !utf8 || std::str::from_utf8(&decoded).is_ok()
}

#[cfg(test)]
mod tests {
    use super::escapes_ok;

    #[test]
    fn percent_escapes() {
        let cases = [
            ("/products/1", true, true),
            ("/caf%C3%A9", true, true),
            ("/a%2Fb%20c", true, true),
            ("/products/%zz", false, false),
            ("/products/%", false, false),
            ("/products/%4", false, false),
            ("/products/%+1", false, false),
            ("/a%00b", false, false),
            ("/%c0%af..%c0%afetc", false, true),
            ("/caf%E9", false, true),
            ("q=100%25&x=%E9", false, true),
        ];
        for (text, as_path, as_query) in cases {
            assert_eq!(escapes_ok(text, true), as_path, "path {text}");
            assert_eq!(escapes_ok(text, false), as_query, "query {text}");
        }
    }
}
