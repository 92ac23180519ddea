//! URL normalisation: equivalent requests for one page share one cache entry and one render.
//!
//! A normalised URL is scheme + canonical host + path + query, where the path has its dot-segments
//! resolved and its percent-escapes in one canonical form (unreserved characters decoded, other
//! escapes in upper-case hex), the query has the domain's ignored parameters removed and the rest
//! sorted, and the fragment is dropped (it never reaches a server).

use crate::host::Hostname;
use serde::{Deserialize, Serialize};

/// The longest request target (path and query) Kiln renders; longer ones are refused as client errors.
pub const MAX_TARGET_LEN: usize = 8 * 1024;

/// A URL in Kiln's canonical form. The string is always an absolute `http` or `https` URL.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NormalizedUrl(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlError {
    #[error("the request target is longer than {MAX_TARGET_LEN} bytes")]
    TooLong,
    #[error("the request target must start with `/`")]
    NotOriginForm,
    #[error("the URL scheme `{0}` is not http or https")]
    Scheme(String),
    #[error("the URL is not valid: {0}")]
    Invalid(String),
}

impl NormalizedUrl {
    /// Normalises a request for `path_and_query` on `host` as seen by the client through `scheme`.
    /// `ignored_params` are query parameter names to drop; a trailing `*` makes one a prefix.
    pub fn from_request(
        scheme: &str,
        host: &Hostname,
        path_and_query: &str,
        ignored_params: &[String],
    ) -> Result<Self, UrlError> {
        if path_and_query.len() > MAX_TARGET_LEN {
            return Err(UrlError::TooLong);
        }
        if !path_and_query.starts_with('/') {
            return Err(UrlError::NotOriginForm);
        }
        // A request target has no spaces or control characters (RFC 9112 §3.2; hyper refuses them).
        // The URL parser would drop some silently — tabs and newlines anywhere, the rest at the
        // end — so `/a\x17` and `/a\x17#top` would be two pages (found by the `url` fuzz target).
        if path_and_query
            .bytes()
            .any(|b| b == b' ' || b.is_ascii_control())
        {
            return Err(UrlError::Invalid(
                "the request target has a space or a control character".into(),
            ));
        }
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(UrlError::Scheme(scheme));
        }
        if is_canonical_target(path_and_query, ignored_params) {
            let host = host.as_str();
            let mut out =
                String::with_capacity(scheme.len() + 3 + host.len() + path_and_query.len());
            for part in [scheme.as_str(), "://", host, path_and_query] {
                out.push_str(part);
            }
            return Ok(NormalizedUrl(out));
        }
        Self::parsed(&scheme, host, path_and_query, ignored_params)
    }

    /// What [`from_request`](Self::from_request) gives a checked target, by way of the URL parser.
    fn parsed(
        scheme: &str,
        host: &Hostname,
        path_and_query: &str,
        ignored_params: &[String],
    ) -> Result<Self, UrlError> {
        let parsed = ::url::Url::parse(&format!("{scheme}://{host}{path_and_query}"))
            .map_err(|e| UrlError::Invalid(e.to_string()))?;
        let mut out = format!("{scheme}://{host}");
        out.push_str(&normalize_escapes(parsed.path()));
        if let Some(query) = parsed.query() {
            let mut pairs: Vec<(String, String)> = ::url::form_urlencoded::parse(query.as_bytes())
                .filter(|(name, _)| !is_ignored(name, ignored_params))
                .map(|(name, value)| (name.into_owned(), value.into_owned()))
                .collect();
            pairs.sort();
            if !pairs.is_empty() {
                let query = ::url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(pairs)
                    .finish();
                out.push('?');
                out.push_str(&query);
            }
        }
        Ok(NormalizedUrl(out))
    }

    /// The same URL with `port` after its host: for a page whose public site listens on a port of
    /// its own (a domain used only through the render service, named by its full URL).
    pub fn with_port(&self, port: u16) -> NormalizedUrl {
        let after_scheme = self.0.find("://").map_or(0, |at| at + 3);
        let host_end = self.0[after_scheme..]
            .find('/')
            .map_or(self.0.len(), |at| after_scheme + at);
        NormalizedUrl(format!(
            "{}:{port}{}",
            &self.0[..host_end],
            &self.0[host_end..]
        ))
    }

    /// The same URL with the hashbang route `route` (`#!<route>`, the AJAX crawling scheme's): an
    /// app that routes by hashbang shows that route's page only when loaded with it, so the route
    /// is part of what is rendered and of the cache key. Escaped as a fragment is.
    pub fn with_hashbang(&self, route: &str) -> NormalizedUrl {
        const FRAGMENT: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
            .add(b' ')
            .add(b'"')
            .add(b'<')
            .add(b'>')
            .add(b'`')
            .add(b'#');
        let base = self.0.split('#').next().unwrap_or(&self.0);
        NormalizedUrl(format!(
            "{base}#!{}",
            percent_encoding::utf8_percent_encode(route, FRAGMENT)
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path and query part, starting with `/`.
    pub fn path_and_query(&self) -> &str {
        let after_scheme = self.0.find("://").map_or(0, |i| i + 3);
        self.0[after_scheme..]
            .find('/')
            .map_or("/", |i| &self.0[after_scheme + i..])
    }

    /// The scheme and host part, e.g. `https://shop.example.com`.
    pub fn base(&self) -> &str {
        let path = self.path_and_query();
        &self.0[..self.0.len() - path.len()]
    }

    /// Wraps a string already known to be normalised (read back from storage).
    pub fn from_stored(value: String) -> Self {
        NormalizedUrl(value)
    }
}

impl std::fmt::Display for NormalizedUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Rewrites absolute URLs on `origin` (e.g. `http://10.0.0.5:8080`) to the same URLs on `public_base`
/// (e.g. `https://shop.example.com`).
///
/// Chromium renders the page from the customer's origin, so a script that builds canonical or Open
/// Graph URLs from `location.origin` writes the origin's address into the page. Bots must see the
/// public one. Only whole origins are rewritten: `http://10.0.0.5:80801` is another origin and stays.
/// The JSON-escaped spelling (`http:\/\/…`) inside JSON-LD is rewritten too.
pub fn rebase_origin(html: &str, origin: &str, public_base: &str) -> String {
    let origin = origin.trim_end_matches('/');
    let public_base = public_base.trim_end_matches('/');
    if origin.is_empty() || origin == public_base {
        return html.to_owned();
    }
    let escaped_origin = origin.replace('/', "\\/");
    let escaped_public = public_base.replace('/', "\\/");
    let once = replace_whole(html, origin, public_base);
    replace_whole(&once, &escaped_origin, &escaped_public)
}

/// Replaces `from` with `to` where `from` is not followed by a character that would continue its
/// host or port.
fn replace_whole(text: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(from) {
        let after = &rest[at + from.len()..];
        let continues = after
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '@'));
        out.push_str(&rest[..at]);
        out.push_str(if continues { from } else { to });
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Whether a request target (checked to start with `/` and to hold no space or control character)
/// is already in the form the URL parser and the query's re-encoding would give it, so that it can
/// be used as it is: the common case, a bot asking for a plain path, costs no parse. That holds for
/// a path of characters the parser keeps as they are (no `%`, `\\` or `#`) without `.` or `..`
/// segments, and a query of `name=value` pairs in sorted order, none ignored, of characters the
/// form encoding keeps. Anything else takes the parser (`tests/it/normaliser.rs` checks the two
/// agree).
fn is_canonical_target(target: &str, ignored: &[String]) -> bool {
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    let path_kept = |b: u8| b.is_ascii_alphanumeric() || b"/-._~!$&'()*+,;=:@".contains(&b);
    if !path.bytes().all(path_kept) || path.split('/').any(|s| s == "." || s == "..") {
        return false;
    }
    let Some(query) = query else { return true };
    let form_kept = |b: u8| b.is_ascii_alphanumeric() || b"*-._".contains(&b);
    let mut previous: Option<(&str, &str)> = None;
    for pair in query.split('&') {
        let Some((name, value)) = pair.split_once('=') else {
            return false;
        };
        if !name.bytes().chain(value.bytes()).all(form_kept)
            || is_ignored(name, ignored)
            || previous.is_some_and(|previous| previous > (name, value))
        {
            return false;
        }
        previous = Some((name, value));
    }
    // An empty query (`/p?`) is dropped by the parser's way.
    previous.is_some()
}

pub(crate) fn is_ignored(name: &str, ignored: &[String]) -> bool {
    ignored
        .iter()
        .any(|pattern| match pattern.strip_suffix('*') {
            // Bytes, not a `str` slice: a name's first bytes may end inside a character.
            Some(prefix) => name
                .as_bytes()
                .get(..prefix.len())
                .is_some_and(|start| start.eq_ignore_ascii_case(prefix.as_bytes())),
            None => name.eq_ignore_ascii_case(pattern),
        })
}

/// Decodes escapes of unreserved characters (RFC 3986 §2.3), upper-cases the hex of the others and
/// escapes a `%` that starts no valid escape.
fn normalize_escapes(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(b) if b.is_ascii_alphanumeric() || b"-._~".contains(&b) => {
                    out.push(b as char);
                    i += 3;
                }
                Some(b) => {
                    out.push_str(&format!("%{b:02X}"));
                    i += 3;
                }
                None => {
                    out.push_str("%25");
                    i += 1;
                }
            }
        } else {
            out.push(bytes[i] as char);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]
        /// A target used as it is must be what the parser would have made of it. Drawn from
        /// characters the fast path takes, and from a few it must not (`%`, `#`, `\\`, `é`).
        #[test]
        fn canonical_targets_are_what_the_parser_gives(
            target in proptest::prop_oneof![
                "/[a-c0-9/.]{0,6}(\\?([ab.*~+_]{0,2}=[ab.*~+_-]{0,2}&?){0,3})?",
                "/[a-zA-Z0-9/.=&?*~!$'()+,;:@%#_\\\\é-]{0,24}",
            ],
            https in proptest::bool::ANY,
        ) {
            let ignored = ["utm_*", "gclid"].map(String::from);
            let scheme = if https { "https" } else { "http" };
            let host = Hostname::parse("Shop.Example.com").unwrap();
            if is_canonical_target(&target, &ignored) {
                let fast = NormalizedUrl::from_request(scheme, &host, &target, &ignored).unwrap();
                let parsed = NormalizedUrl::parsed(scheme, &host, &target, &ignored).unwrap();
                proptest::prop_assert_eq!(fast, parsed);
            }
        }
    }

    #[test]
    fn plain_targets_are_canonical_and_others_are_not() {
        let ignored = ["utm_*".to_owned()];
        for target in [
            "/",
            "/products/3",
            "/a/b:c@d/e.html",
            "/p?a=1&b=2",
            "/p?a=&b=2",
        ] {
            assert!(is_canonical_target(target, &ignored), "{target}");
        }
        for target in [
            "/a/./b",
            "/a/..",
            "/%41",
            "/a\\b",
            "/p?",
            "/p?b=2&a=1",
            "/p?a",
            "/p?a=1&&b=2",
            "/p?q=a+b",
            "/p?utm_x=1",
            "/p#x",
            "/caf\u{e9}",
            "/p?a=~",
        ] {
            assert!(!is_canonical_target(target, &ignored), "{target}");
        }
    }

    use super::*;

    fn norm(target: &str) -> Result<String, UrlError> {
        let host = Hostname::parse("shop.example.com").unwrap();
        let ignored: Vec<String> = ["utm_*", "gclid", "fbclid", "msclkid"]
            .map(String::from)
            .to_vec();
        NormalizedUrl::from_request("https", &host, target, &ignored).map(|u| u.0)
    }

    #[test]
    fn a_hashbang_route_is_kept_escaped_as_a_fragment() {
        let url = NormalizedUrl::from_stored("https://shop.example.com/?a=1".into());
        assert_eq!(
            url.with_hashbang("/about us").as_str(),
            "https://shop.example.com/?a=1#!/about%20us"
        );
        assert_eq!(
            url.with_hashbang("/a").with_hashbang("/b").as_str(),
            "https://shop.example.com/?a=1#!/b"
        );
    }

    #[test]
    fn a_port_goes_after_the_host_and_nowhere_else() {
        let url = NormalizedUrl::from_stored("http://shop.localhost/a/b:8?x=1".into());
        assert_eq!(
            url.with_port(8080).as_str(),
            "http://shop.localhost:8080/a/b:8?x=1"
        );
        assert_eq!(url.with_port(8080).path_and_query(), "/a/b:8?x=1");
    }

    #[test]
    fn equivalent_targets_share_one_form() {
        let cases = [
            ("/", "https://shop.example.com/"),
            ("/products/3", "https://shop.example.com/products/3"),
            ("/products/3#reviews", "https://shop.example.com/products/3"),
            ("/a/./b/../c", "https://shop.example.com/a/c"),
            ("/%7Euser/%41", "https://shop.example.com/~user/A"),
            ("/caf%c3%a9", "https://shop.example.com/caf%C3%A9"),
            ("/café", "https://shop.example.com/caf%C3%A9"),
            ("/p?b=2&a=1", "https://shop.example.com/p?a=1&b=2"),
            (
                "/p?a=1&utm_source=x&UTM_medium=y&gclid=z",
                "https://shop.example.com/p?a=1",
            ),
            ("/p?utm_source=x", "https://shop.example.com/p"),
            ("/p?q=a+b", "https://shop.example.com/p?q=a+b"),
            ("/p?q=a%20b", "https://shop.example.com/p?q=a+b"),
            ("/p?", "https://shop.example.com/p"),
            ("/100%", "https://shop.example.com/100%25"),
            // A parameter name whose first bytes end inside a character (found by the property
            // tests: the prefix match used to slice the name and panic).
            (
                "/p?%C3%A9t%C3%A9=1&utm_x=2",
                "https://shop.example.com/p?%C3%A9t%C3%A9=1",
            ),
        ];
        for (target, expected) in cases {
            assert_eq!(norm(target).as_deref(), Ok(expected), "{target}");
        }
    }

    #[test]
    fn different_pages_stay_different() {
        let pairs = [
            ("/p", "/p/"),
            ("/p?a=1", "/p?a=2"),
            ("/a%2Fb", "/a/b"),
            ("/P", "/p"),
        ];
        for (a, b) in pairs {
            assert_ne!(norm(a).unwrap(), norm(b).unwrap(), "{a} vs {b}");
        }
    }

    #[test]
    fn refuses_bad_targets() {
        assert_eq!(norm("products"), Err(UrlError::NotOriginForm));
        assert_eq!(
            norm(&format!("/{}", "a".repeat(MAX_TARGET_LEN))),
            Err(UrlError::TooLong)
        );
        // Found by the `url` fuzz target: the URL parser drops a trailing control character but
        // escapes one followed by a fragment, so the same page had two keys.
        for target in [
            "/a/b\u{17}",
            "/a/b\u{17}#top",
            "/a b",
            "/a\tb",
            "/a\nb",
            "/a\u{7f}",
        ] {
            assert!(
                matches!(norm(target), Err(UrlError::Invalid(_))),
                "{target:?}"
            );
        }
        let host = Hostname::parse("a.com").unwrap();
        assert!(matches!(
            NormalizedUrl::from_request("file", &host, "/", &[]),
            Err(UrlError::Scheme(_))
        ));
    }

    #[test]
    fn rebases_origin_urls_onto_the_public_host() {
        let origin = "http://127.0.0.1:5173";
        let public = "https://shop.example.com";
        let cases = [
            (
                r#"<link rel="canonical" href="http://127.0.0.1:5173/products/3">"#,
                r#"<link rel="canonical" href="https://shop.example.com/products/3">"#,
            ),
            (
                r#"<meta content="http://127.0.0.1:5173">"#,
                r#"<meta content="https://shop.example.com">"#,
            ),
            (
                r#"{"url":"http:\/\/127.0.0.1:5173\/p"}"#,
                r#"{"url":"https:\/\/shop.example.com\/p"}"#,
            ),
            (
                "see http://127.0.0.1:51730/x",
                "see http://127.0.0.1:51730/x",
            ),
            (
                "http://127.0.0.1:5173.evil.com/",
                "http://127.0.0.1:5173.evil.com/",
            ),
            (
                "http://127.0.0.1:5173?q http://127.0.0.1:5173#f",
                "https://shop.example.com?q https://shop.example.com#f",
            ),
            ("no urls here", "no urls here"),
        ];
        for (input, expected) in cases {
            assert_eq!(rebase_origin(input, origin, public), expected, "{input}");
        }
        assert_eq!(
            rebase_origin("a http://x.com/b", "http://x.com/", "http://x.com"),
            "a http://x.com/b"
        );
    }

    #[test]
    fn splits_path_and_query() {
        let url = NormalizedUrl::from_stored("https://a.com/x/y?z=1".into());
        assert_eq!(url.path_and_query(), "/x/y?z=1");
        assert_eq!(url.base(), "https://a.com");
        assert_eq!(
            NormalizedUrl::from_stored("https://a.com/".into()).path_and_query(),
            "/"
        );
    }
}
