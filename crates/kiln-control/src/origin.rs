//! Origins: the customer servers Kiln fetches pages from, checked when a domain is registered.
//!
//! Two steps, so that the pure part can be tested with tables and the REST API can reject a malformed
//! origin before doing any IO: [`Origin::parse`] checks the form (http or https, a host, nothing but
//! `/` after it), and [`Origin::check_addresses`] resolves the host and refuses it if any address is
//! one of Kiln's own services, or not public unless the operator granted that network and port to
//! the domain's tenant (`KILN_ALLOWED_PRIVATE_NETS`, see `kiln_core::policy`).
//!
//! This check at registration time is a first line only: DNS can change afterwards (rebinding), so the
//! gateway and the renderer check every address again when they connect.

use kiln_core::{EgressPolicy, Refusal};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
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

#[derive(Debug, thiserror::Error)]
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
    #[error("origin host `{host}` cannot be resolved")]
    Unresolvable {
        host: String,
        #[source]
        source: ResolveError,
    },
    #[error(
        "origin host `{host}` resolves to {address}, which is not a public address; if that is \
         intended, the operator can grant it with KILN_ALLOWED_PRIVATE_NETS (e.g. {suggestion})"
    )]
    NotPublic {
        host: String,
        address: IpAddr,
        suggestion: String,
    },
    #[error(
        "origin `{host}` port {port} is at {address}, where one of this Kiln's own services \
         listens; an origin can never be one of them"
    )]
    Platform {
        host: String,
        address: IpAddr,
        port: u16,
    },
}

/// Why an origin's host could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("no answer within {} s", .0.as_secs())]
    Timeout(Duration),
    #[error("no addresses")]
    NoAddresses,
    #[error(transparent)]
    Lookup(std::io::Error),
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

    /// The port connections go to: the URL's, or the scheme's default.
    pub fn port(&self) -> u16 {
        self.url.port_or_known_default().unwrap_or(80)
    }

    /// Resolves the host and checks that a domain of `tenant` may connect to every address it
    /// resolves to under `policy`: a host with one private address among public ones is refused,
    /// since any of them may be used. Returns the addresses.
    pub async fn check_addresses(
        &self,
        policy: &EgressPolicy,
        tenant: &str,
    ) -> Result<Vec<IpAddr>, OriginError> {
        let host = self.host();
        let port = self.port();
        let addresses = match self.url.host() {
            Some(Host::Ipv4(ip)) => vec![IpAddr::V4(ip)],
            Some(Host::Ipv6(ip)) => vec![IpAddr::V6(ip)],
            _ => resolve(&host, port).await?,
        };
        let policy = policy.for_tenant(Some(tenant));
        for &address in &addresses {
            match policy.refusal(SocketAddr::new(address, port)) {
                None => {}
                Some(Refusal::Platform) => {
                    return Err(OriginError::Platform {
                        host,
                        address,
                        port,
                    });
                }
                Some(Refusal::NotPublic) => {
                    let suggestion = match address.to_canonical() {
                        IpAddr::V4(v4) => format!("{v4}:{port}@{tenant}"),
                        v6 => format!("[{v6}]:{port}@{tenant}"),
                    };
                    return Err(OriginError::NotPublic {
                        host,
                        address,
                        suggestion,
                    });
                }
            }
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
    let unresolvable = |source| OriginError::Unresolvable {
        host: host.to_owned(),
        source,
    };
    let lookup = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| unresolvable(ResolveError::Timeout(RESOLVE_TIMEOUT)))?
        .map_err(|error| unresolvable(ResolveError::Lookup(error)))?;
    let mut addresses: Vec<IpAddr> = lookup.map(|socket| socket.ip()).collect();
    addresses.sort();
    addresses.dedup();
    if addresses.is_empty() {
        return Err(unresolvable(ResolveError::NoAddresses));
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
    async fn private_addresses_need_a_grant_for_their_port_and_tenant() {
        use kiln_core::OPERATOR_TENANT_ID as OPERATOR;
        let none = EgressPolicy::default();
        let granted = EgressPolicy::parse("127.0.0.1:5173, 10.0.0.0/8:80@t-9")
            .unwrap()
            .with_platform(["127.0.0.1:6379".parse().unwrap()]);

        let origin = Origin::parse("http://127.0.0.1:5173").unwrap();
        let error = origin.check_addresses(&none, "t-1").await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "origin host `127.0.0.1` resolves to 127.0.0.1, which is not a public address; if that is \
             intended, the operator can grant it with KILN_ALLOWED_PRIVATE_NETS (e.g. 127.0.0.1:5173@t-1)"
        );
        assert_eq!(
            origin.check_addresses(&granted, OPERATOR).await.unwrap(),
            vec!["127.0.0.1".parse::<IpAddr>().unwrap()]
        );
        // The grant is the operator's: a sign-up's domain may not use it.
        assert!(matches!(
            origin.check_addresses(&granted, "t-1").await,
            Err(OriginError::NotPublic { .. })
        ));
        // Nor another port of the same address.
        let other_port = Origin::parse("http://127.0.0.1:5174").unwrap();
        assert!(matches!(
            other_port.check_addresses(&granted, OPERATOR).await,
            Err(OriginError::NotPublic { .. })
        ));
        // A tenant's own grant.
        let internal = Origin::parse("http://10.1.2.3").unwrap();
        assert!(internal.check_addresses(&granted, "t-9").await.is_ok());
        assert!(internal.check_addresses(&granted, OPERATOR).await.is_err());
        // Kiln's own services never, by address or by name.
        for redis in ["http://127.0.0.1:6379", "http://localhost:6379"] {
            let error = Origin::parse(redis)
                .unwrap()
                .check_addresses(&granted, OPERATOR)
                .await
                .unwrap_err();
            assert!(
                matches!(error, OriginError::Platform { port: 6379, .. }),
                "{redis}: {error}"
            );
        }

        let metadata = Origin::parse("http://169.254.169.254").unwrap();
        assert!(matches!(
            metadata.check_addresses(&granted, OPERATOR).await,
            Err(OriginError::NotPublic { .. })
        ));
        let v6 = Origin::parse("http://[::1]:8080").unwrap();
        assert!(matches!(
            v6.check_addresses(&granted, OPERATOR).await,
            Err(OriginError::NotPublic { .. })
        ));
        let public = Origin::parse("https://8.8.8.8").unwrap();
        assert_eq!(public.check_addresses(&none, "t-1").await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn unresolvable_hosts_are_refused() {
        // `.invalid` never resolves (RFC 6761).
        let origin = Origin::parse("http://no-such-origin.invalid").unwrap();
        let error = origin
            .check_addresses(&EgressPolicy::default(), "t-1")
            .await
            .unwrap_err();
        assert!(
            matches!(&error, OriginError::Unresolvable { host, .. } if host == "no-such-origin.invalid"),
            "{error}"
        );
        // Why the lookup failed is the error's source, which a report writes after it.
        let reported = crate::error_chain(&error);
        assert!(
            reported.starts_with("origin host `no-such-origin.invalid` cannot be resolved: ")
                && reported.len() > error.to_string().len() + 2,
            "{reported}"
        );
    }
}
