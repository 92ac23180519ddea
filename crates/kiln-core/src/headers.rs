//! HTTP headers that belong to one connection, not to the message: what every proxy in Kiln (the
//! gateway's human path, the worker's egress proxy) must not forward. And the names of the headers
//! the edge and the gateway pass along, as constants: http parses a name given as text on every
//! use, and these are read on every request.

use http::{HeaderMap, HeaderName, header};

/// Headers that describe one connection rather than the message (RFC 9110 §7.6.1), plus the
/// pre-standard `Proxy-Connection` that browsers still send to proxies.
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The edge's verdict on a request: `1` for a bot.
pub const IS_BOT: HeaderName = HeaderName::from_static("x-is-bot");

/// The bot family the edge found (`search`, `social`, …).
pub const BOT_FAMILY: HeaderName = HeaderName::from_static("x-kiln-bot-family");

/// The request's id, from the edge or made by the gateway.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The scheme the client used, as the edge saw it.
pub const FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// The addresses a request came through.
pub const FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The Host the client asked for, when a proxy sends another.
pub const FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The header names the `Connection` header lists (lower-case as sent, trimmed, empty ones skipped).
pub fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|token| !token.is_empty())
}

/// Removes the hop-by-hop headers and every header `Connection` names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = connection_tokens(headers)
        .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    // Found by one look at the names there are, not removed by name: a removal by name parses and
    // hashes it, and most messages carry none of these (a person's request paid nine of each).
    let present: Vec<HeaderName> = headers
        .keys()
        .filter(|name| HOP_BY_HOP.contains(&name.as_str()))
        .cloned()
        .collect();
    for name in present {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_level_headers_and_the_ones_it_names_go() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "keep-alive, X-Secret ,"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("transfer-encoding", "chunked"),
            ("proxy-connection", "keep-alive"),
            ("content-type", "text/html"),
            ("set-cookie", "a=1"),
        ] {
            headers.append(name, value.parse().unwrap());
        }
        strip_hop_by_hop(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, ["content-type", "set-cookie"]);
    }
}
