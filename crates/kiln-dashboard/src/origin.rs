//! Origins: the customer servers Kiln fetches pages from, checked when a domain is registered.
//!
//! Two steps, so that the pure part can be tested with tables and the REST API can reject a malformed
//! origin before doing any IO: [`Origin::parse`] checks the form (http or https, a host, nothing but
//! `/` after it), and [`Origin::check_addresses`] resolves the host and refuses it if any address is
//! not public, unless the operator allowed that network (`KILN_ALLOWED_PRIVATE_NETS`).
//!
//! This check at registration time is a first line only: DNS can change afterwards (rebinding), so the
//! gateway and the renderer check every address again when they connect.

use kiln_core::AllowedNets;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;
use url::{Host, Url};

/// How long resolving an origin's host may take before registration gives up.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// A well-formed origin in canonical form: `scheme://host[:port]`, lowercase, punycode, default port
/// omitted, no trailing slash (e.g. `https://origin.shop.com`, `http://127.0.0.1:5173`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    url: Url,
    canonical: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OriginError {
    #[error("origin `{0}` is not a URL such as https://origin.example.com")]
    Unparsable(String),
    #[error(
        "origin `{input}` uses the `{scheme}` scheme; only http and https origins are supported"
    )]
    Scheme { input: String, scheme: String },
    #[error(
        "origin `{0}` contains a user name or password; credentials are not allowed in an origin"
    )]
    UserInfo(String),
    #[error(
        "origin `{input}` has the path `{path}`; give only scheme, host and port, e.g. {suggestion}"
    )]
    Path {
        input: String,
        path: String,
        suggestion: String,
    },
    #[error("origin `{0}` has a query string or fragment; give only scheme, host and port")]
    QueryOrFragment(String),
    #[error("origin `{0}` has no host")]
    NoHost(String),
    #[error("origin host `{host}` cannot be resolved: {reason}")]
    Unresolvable { host: String, reason: String },
    #[error(
        "origin host `{host}` resolves to {address}, which is not a public address; if that is \
         intended, allow it with KILN_ALLOWED_PRIVATE_NETS (e.g. {suggestion})"
    )]
    NotPublic {
        host: String,
        address: IpAddr,
        suggestion: String,
    },
}

impl Origin {
    /// Checks an origin's form as an operator or tenant typed it. Does no IO.
    pub fn parse(input: &str) -> Result<Self, OriginError> {
        let input = input.trim();
        let url = Url::parse(input).map_err(|_| OriginError::Unparsable(input.to_owned()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(OriginError::Scheme {
                input: input.to_owned(),
                scheme: url.scheme().to_owned(),
            });
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(OriginError::UserInfo(input.to_owned()));
        }
        if url.host().is_none() {
            return Err(OriginError::NoHost(input.to_owned()));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(OriginError::QueryOrFragment(input.to_owned()));
        }
        let canonical = url.origin().ascii_serialization();
        if url.path() != "/" {
            return Err(OriginError::Path {
                input: input.to_owned(),
                path: url.path().to_owned(),
                suggestion: canonical,
            });
        }
        Ok(Origin { url, canonical })
    }

    /// The canonical form, as stored and published.
    pub fn as_str(&self) -> &str {
        &self.canonical
    }

    /// The host as it appears in the URL (an IPv6 address without brackets).
    pub fn host(&self) -> String {
        match self.url.host() {
            Some(Host::Ipv6(ip)) => ip.to_string(),
            Some(host) => host.to_string(),
            None => unreachable!("Origin::parse refuses URLs without a host"),
        }
    }

    /// Resolves the host and checks that Kiln may connect to every address it resolves to: a host
    /// with one private address among public ones is refused, since any of them may be used.
    /// Returns the addresses.
    pub async fn check_addresses(&self, allowed: &AllowedNets) -> Result<Vec<IpAddr>, OriginError> {
        let host = self.host();
        let addresses = match self.url.host() {
            Some(Host::Ipv4(ip)) => vec![IpAddr::V4(ip)],
            Some(Host::Ipv6(ip)) => vec![IpAddr::V6(ip)],
            _ => resolve(&host, self.url.port_or_known_default().unwrap_or(80)).await?,
        };
        if let Some(&address) = addresses.iter().find(|ip| !allowed.permits(**ip)) {
            let suggestion = match address {
                IpAddr::V4(_) => format!("{address}/32"),
                IpAddr::V6(_) => format!("{address}/128"),
            };
            return Err(OriginError::NotPublic {
                host,
                address,
                suggestion,
            });
        }
        Ok(addresses)
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical)
    }
}

async fn resolve(host: &str, port: u16) -> Result<Vec<IpAddr>, OriginError> {
    let unresolvable = |reason: String| OriginError::Unresolvable {
        host: host.to_owned(),
        reason,
    };
    let lookup = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| unresolvable(format!("no answer within {} s", RESOLVE_TIMEOUT.as_secs())))?
        .map_err(|error| unresolvable(error.to_string()))?;
    let mut addresses: Vec<IpAddr> = lookup.map(|socket| socket.ip()).collect();
    addresses.sort();
    addresses.dedup();
    if addresses.is_empty() {
        return Err(unresolvable("no addresses".to_owned()));
    }
    Ok(addresses)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_origins() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("http://127.0.0.1:5173", Ok("http://127.0.0.1:5173")),
            ("http://127.0.0.1:5173/", Ok("http://127.0.0.1:5173")),
            ("  https://Origin.Shop.COM  ", Ok("https://origin.shop.com")),
            (
                "https://origin.shop.com:443/",
                Ok("https://origin.shop.com"),
            ),
            ("http://origin.shop.com:80", Ok("http://origin.shop.com")),
            ("https://bücher.de", Ok("https://xn--bcher-kva.de")),
            ("http://[::1]:8080", Ok("http://[::1]:8080")),
            (
                "file:///etc/passwd",
                Err("uses the `file` scheme; only http and https"),
            ),
            ("ftp://origin.shop.com", Err("uses the `ftp` scheme")),
            ("javascript:alert(1)", Err("uses the `javascript` scheme")),
            ("http://user:pw@x", Err("contains a user name or password")),
            ("http://user@x", Err("contains a user name or password")),
            (
                "http://x/path",
                Err("has the path `/path`; give only scheme, host and port, e.g. http://x"),
            ),
            ("http://x/a/", Err("has the path `/a/`")),
            ("http://x/?a=1", Err("has a query string or fragment")),
            ("http://x/#top", Err("has a query string or fragment")),
            ("origin.shop.com", Err("is not a URL")),
            ("", Err("is not a URL")),
            ("http://", Err("is not a URL")),
        ];
        for (input, expected) in cases {
            let got = Origin::parse(input)
                .map(|o| o.as_str().to_owned())
                .map_err(|e| e.to_string());
            match (expected, &got) {
                (Ok(want), Ok(have)) => assert_eq!(have, want, "{input:?}"),
                (Err(want), Err(have)) => assert!(have.contains(want), "{input:?}: {have}"),
                _ => panic!("{input:?}: expected {expected:?}, got {got:?}"),
            }
        }
    }

    #[tokio::test]
    async fn private_addresses_need_an_allowed_network() {
        let none = AllowedNets::default();
        let loopback = AllowedNets::parse("127.0.0.1/32").unwrap();

        let origin = Origin::parse("http://127.0.0.1:5173").unwrap();
        let error = origin.check_addresses(&none).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "origin host `127.0.0.1` resolves to 127.0.0.1, which is not a public address; if that is \
             intended, allow it with KILN_ALLOWED_PRIVATE_NETS (e.g. 127.0.0.1/32)"
        );
        assert_eq!(
            origin.check_addresses(&loopback).await.unwrap(),
            vec!["127.0.0.1".parse::<IpAddr>().unwrap()]
        );

        let metadata = Origin::parse("http://169.254.169.254").unwrap();
        assert!(matches!(
            metadata.check_addresses(&loopback).await,
            Err(OriginError::NotPublic { .. })
        ));
        let v6 = Origin::parse("http://[::1]:8080").unwrap();
        assert!(matches!(
            v6.check_addresses(&loopback).await,
            Err(OriginError::NotPublic { .. })
        ));
        let public = Origin::parse("https://8.8.8.8").unwrap();
        assert_eq!(public.check_addresses(&none).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn unresolvable_hosts_are_refused() {
        // `.invalid` never resolves (RFC 6761).
        let origin = Origin::parse("http://no-such-origin.invalid").unwrap();
        let error = origin
            .check_addresses(&AllowedNets::default())
            .await
            .unwrap_err();
        assert!(
            matches!(&error, OriginError::Unresolvable { host, .. } if host == "no-such-origin.invalid"),
            "{error}"
        );
    }
}
