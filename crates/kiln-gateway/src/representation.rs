//! How a cached page is sent: compressed or not, in full or as `304 Not Modified`.
//!
//! Pages are stored gzip-compressed (see `kiln_store::pages`); a bot that accepts gzip gets those
//! bytes as they are (`Content-Encoding: gzip`, no work on the request path), any other gets them
//! decompressed. Every page carries a weak `ETag` (one validator for both forms), `Last-Modified`
//! (when it was rendered) and `Age`; a conditional request that still matches gets `304` with no
//! body (RFC 9110 §13: `If-None-Match` wins over `If-Modified-Since`).

use axum::body::Body;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use kiln_store::{ContentEncoding, PageEntry};
use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

// Header names are constants, not `&str`s: http parses a name given as text on every use (those
// the edge and the gateway share are in `kiln_core::headers`).

/// How a bot's response used the cache: `HIT`, `STALE`, `MISS` or `BYPASS`.
pub const CACHE_HEADER: header::HeaderName = header::HeaderName::from_static("x-kiln-cache");

/// How long a bot that waited for its page's render waited, in milliseconds (`MISS` only).
const RENDER_MS_HEADER: header::HeaderName = header::HeaderName::from_static("x-kiln-render-ms");

/// What the bot's request says about the responses it can use.
#[derive(Clone, Debug, Default)]
pub struct Negotiation {
    accepts_gzip: bool,
    if_none_match: Option<String>,
    if_modified_since: Option<SystemTime>,
    head: bool,
}

impl Negotiation {
    pub fn of(headers: &HeaderMap, head: bool) -> Self {
        // A header's values as one list, borrowed when it came once (as it nearly always does).
        let text = |name: header::HeaderName| -> Option<Cow<'_, str>> {
            let mut values = headers.get_all(name).iter().filter_map(|v| v.to_str().ok());
            let first = values.next()?;
            let Some(second) = values.next() else {
                return Some(Cow::Borrowed(first));
            };
            let mut all = [first, second].join(",");
            for value in values {
                all.push(',');
                all.push_str(value);
            }
            Some(Cow::Owned(all))
        };
        Negotiation {
            accepts_gzip: text(header::ACCEPT_ENCODING).is_some_and(|v| accepts_gzip(&v)),
            if_none_match: text(header::IF_NONE_MATCH).map(Cow::into_owned),
            if_modified_since: headers
                .get(header::IF_MODIFIED_SINCE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| httpdate::parse_http_date(v).ok()),
            head,
        }
    }

    /// Whether the bot's copy (named by its validators) is still the entry.
    fn not_modified(&self, etag: &str, rendered: SystemTime) -> bool {
        if let Some(tags) = &self.if_none_match {
            return tags
                .split(',')
                .map(str::trim)
                .any(|tag| tag == "*" || weak_eq(tag, etag));
        }
        match self.if_modified_since {
            // HTTP dates have whole seconds.
            Some(since) => whole_seconds(rendered) <= whole_seconds(since),
            None => false,
        }
    }
}

/// Whether an `Accept-Encoding` value allows gzip: named with a non-zero quality, or not named and
/// allowed by `*`.
fn accepts_gzip(value: &str) -> bool {
    let mut gzip = None;
    let mut any = None;
    for item in value.split(',') {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let quality = parts
            .filter_map(|p| p.trim().strip_prefix("q=").or(p.trim().strip_prefix("Q=")))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        match coding.as_str() {
            "gzip" | "x-gzip" => gzip = Some(quality > 0.0),
            "*" => any = Some(quality > 0.0),
            _ => {}
        }
    }
    gzip.or(any).unwrap_or(false)
}

/// Weak comparison (RFC 9110 §8.8.3.2): the opaque tags match, whether or not either is weak.
fn weak_eq(a: &str, b: &str) -> bool {
    let opaque = |tag: &str| tag.strip_prefix("W/").unwrap_or(tag).to_owned();
    opaque(a) == opaque(b)
}

fn whole_seconds(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A cached page with what its answers share made once: its stored headers parsed and its
/// validators formatted. The hot cache keeps pages in this form, so that a hit served from memory
/// only adds what changes with the request (`Age`, the cache status, the length of the form sent):
/// parsing and formatting them anew was a fifth of a hit's CPU time.
pub struct ServedPage {
    pub entry: PageEntry,
    etag: String,
    rendered: SystemTime,
    /// The page's own headers (the worker kept only those safe to serve), then Kiln's that do not
    /// change between requests: `ETag`, `Last-Modified`, `Vary` and `Content-Type`.
    headers: HeaderMap,
    /// `headers` and those of a response with the body as stored (`Content-Length`, and
    /// `Content-Encoding` for a compressed one), with `Age`, the cache status and the request id
    /// (`routes::handle` sets it on every response) in place to be overwritten: a response's headers
    /// are a copy of these and three values replaced, where adding each header to the copy would
    /// hash it in, and grow the map once or twice.
    as_stored: HeaderMap,
}

impl std::ops::Deref for ServedPage {
    type Target = PageEntry;

    fn deref(&self) -> &PageEntry {
        &self.entry
    }
}

impl ServedPage {
    pub fn new(entry: PageEntry) -> Self {
        let etag = entry.etag();
        let rendered = UNIX_EPOCH + Duration::from_millis(entry.meta.rendered_at);
        let mut headers = HeaderMap::new();
        for (name, value) in &entry.meta.headers {
            match (
                header::HeaderName::try_from(name.as_str()),
                HeaderValue::try_from(value.as_str()),
            ) {
                (Ok(name), Ok(value)) => {
                    headers.append(name, value);
                }
                _ => {
                    tracing::warn!(header = %name, "a stored page has an unusable header; left out")
                }
            }
        }
        let mut put = |name: header::HeaderName, value: HeaderValue| {
            headers.insert(name, value);
        };
        if let Ok(value) = HeaderValue::try_from(etag.as_str()) {
            put(header::ETAG, value);
        }
        if let Ok(value) = HeaderValue::try_from(httpdate::fmt_http_date(rendered)) {
            put(header::LAST_MODIFIED, value);
        }
        put(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        put(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        let mut as_stored = headers.clone();
        as_stored.insert(header::AGE, HeaderValue::from_static("0"));
        as_stored.insert(CACHE_HEADER, HeaderValue::from_static("HIT"));
        as_stored.insert(kiln_core::headers::REQUEST_ID, HeaderValue::from_static(""));
        as_stored.insert(header::CONTENT_LENGTH, HeaderValue::from(entry.html.len()));
        if entry.meta.encoding == ContentEncoding::Gzip {
            as_stored.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        ServedPage {
            entry,
            etag,
            rendered,
            headers,
            as_stored,
        }
    }
}

/// The response for a cached page, or `None` when the entry cannot be read (a corrupt compressed
/// body), which the caller treats as a miss.
pub fn page_response(
    page: &ServedPage,
    cache: &'static str,
    render_ms: Option<u64>,
    negotiation: &Negotiation,
) -> Option<Response<Body>> {
    let entry = &page.entry;
    let age = kiln_core::unix_millis_now().saturating_sub(entry.meta.rendered_at) / 1000;
    let cache = HeaderValue::from_static(cache);
    let render_ms = render_ms.map(HeaderValue::from);

    if negotiation.not_modified(&page.etag, page.rendered) {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        let out = response.headers_mut();
        for name in [header::ETAG, header::LAST_MODIFIED, header::VARY] {
            if let Some(value) = page.headers.get(&name) {
                out.insert(name, value.clone());
            }
        }
        out.insert(header::AGE, HeaderValue::from(age));
        out.insert(CACHE_HEADER, cache);
        if let Some(ms) = render_ms {
            out.insert(RENDER_MS_HEADER, ms);
        }
        return Some(response);
    }

    // The body as stored, or decompressed for a client that does not take gzip.
    let decoded = match entry.meta.encoding {
        ContentEncoding::Gzip if !negotiation.accepts_gzip => match entry.decoded() {
            Ok(html) => Some(html),
            Err(error) => {
                tracing::error!(error = %kiln_runtime::error_chain(&error), "a stored page cannot be decompressed");
                return None;
            }
        },
        ContentEncoding::Gzip | ContentEncoding::Identity => None,
    };
    let status = StatusCode::from_u16(entry.meta.status).unwrap_or(StatusCode::OK);
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    let out = response.headers_mut();
    out.clone_from(&page.as_stored);
    out.insert(header::AGE, HeaderValue::from(age));
    out.insert(CACHE_HEADER, cache);
    if let Some(ms) = render_ms {
        out.insert(RENDER_MS_HEADER, ms);
    }
    if let Some(html) = &decoded {
        out.insert(header::CONTENT_LENGTH, HeaderValue::from(html.len()));
        out.remove(header::CONTENT_ENCODING);
    }
    let body = decoded.unwrap_or_else(|| entry.html.clone());
    if !negotiation.head {
        *response.body_mut() = Body::from(body);
    }
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_encoding_is_read_with_its_qualities() {
        for (value, gzip) in [
            ("gzip", true),
            ("gzip, deflate, br", true),
            ("br;q=1.0, gzip;q=0.8, *;q=0.1", true),
            ("GZIP", true),
            ("x-gzip", true),
            ("*", true),
            ("gzip;q=0", false),
            ("gzip;q=0, *", false),
            ("identity", false),
            ("br", false),
            ("*;q=0", false),
            ("", false),
        ] {
            assert_eq!(accepts_gzip(value), gzip, "{value:?}");
        }
    }

    #[test]
    fn validators_compare_weakly_and_if_none_match_wins() {
        let rendered = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let etag = "W/\"abc\"";
        let with = |inm: Option<&str>, ims: Option<SystemTime>| Negotiation {
            if_none_match: inm.map(str::to_owned),
            if_modified_since: ims,
            ..Negotiation::default()
        };
        assert!(with(Some("\"abc\""), None).not_modified(etag, rendered));
        assert!(with(Some("\"x\", W/\"abc\""), None).not_modified(etag, rendered));
        assert!(with(Some("*"), None).not_modified(etag, rendered));
        assert!(!with(Some("\"abd\""), None).not_modified(etag, rendered));
        let later = rendered + Duration::from_millis(1500);
        assert!(with(None, Some(later)).not_modified(etag, rendered));
        assert!(with(None, Some(rendered)).not_modified(etag, rendered));
        assert!(!with(None, Some(rendered - Duration::from_secs(1))).not_modified(etag, rendered));
        // A stale If-None-Match is not rescued by a matching date.
        assert!(!with(Some("\"old\""), Some(later)).not_modified(etag, rendered));
    }
}
