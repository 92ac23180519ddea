//! The decision at the heart of the proxy: resolve a destination once, keep only the addresses Kiln may
//! reach, and connect to one of exactly those addresses.

use crate::error::EgressError;
use crate::resolve::Resolve;
use http::uri::Authority;
use kiln_core::{EgressPolicy, Refusal};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

/// Where a request or tunnel wants to go, parsed from the request target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) host: Host,
    pub(crate) port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Host {
    /// An IP literal, already in canonical form (`::ffff:127.0.0.1` is `127.0.0.1`).
    Ip(IpAddr),
    /// A name to resolve, lowercased.
    Name(String),
}

impl Target {
    /// Parses the `host[:port]` of a request target; `default_port` applies when the port is missing
    /// (80 for `http://`, none for CONNECT, which must name its port).
    pub(crate) fn parse(
        authority: &Authority,
        default_port: Option<u16>,
    ) -> Result<Self, EgressError> {
        let port = match (authority.port_u16(), default_port) {
            (Some(port), _) | (None, Some(port)) => port,
            (None, None) => return Err(EgressError::InvalidTarget("CONNECT needs host:port")),
        };
        if port == 0 {
            return Err(EgressError::InvalidTarget("port 0"));
        }
        let raw = authority.host();
        if raw.is_empty() {
            return Err(EgressError::InvalidTarget("no host"));
        }
        let unbracketed = raw
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(raw);
        let host = match unbracketed.parse::<IpAddr>() {
            Ok(ip) => Host::Ip(ip.to_canonical()),
            Err(_) if raw.starts_with('[') => {
                return Err(EgressError::InvalidTarget("not an IPv6 address"));
            }
            Err(_) => Host::Name(raw.to_ascii_lowercase()),
        };
        Ok(Target { host, port })
    }
}

impl fmt::Display for Target {
    /// `host:port`, with IPv6 literals bracketed: usable both in logs and as a URL authority.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(ip) => write!(f, "{}", SocketAddr::new(*ip, self.port)),
            Host::Name(name) => write!(f, "{name}:{}", self.port),
        }
    }
}

/// What kind of non-public address `ip` is, in a word or two, for refusal messages.
pub(crate) fn address_kind(ip: IpAddr) -> &'static str {
    const METADATA_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
    const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);
    match ip.to_canonical() {
        IpAddr::V4(METADATA_V4) | IpAddr::V6(METADATA_V6) => "cloud metadata",
        ip if ip.is_unspecified() => "unspecified",
        ip if ip.is_loopback() => "loopback",
        ip if ip.is_multicast() => "multicast",
        IpAddr::V4(v4) if v4.is_private() => "private",
        IpAddr::V4(v4) if v4.is_link_local() => "link-local",
        IpAddr::V4(v4) if v4.octets()[0] == 100 && (64..128).contains(&v4.octets()[1]) => {
            "carrier-grade NAT"
        }
        IpAddr::V6(v6) if (v6.segments()[0] & 0xfe00) == 0xfc00 => "private",
        IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80 => "link-local",
        _ => "reserved or special-purpose",
    }
}

/// Counts of the proxy's decisions, one per destination connection it was asked to open.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) allowed: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) failed: AtomicU64,
}

/// Resolves, vets and connects. Shared by CONNECT tunnels and the forwarding client's connector, so
/// both paths make exactly the same decision.
pub(crate) struct Gate {
    pub(crate) policy: EgressPolicy,
    pub(crate) refusals: crate::Refusals,
    pub(crate) connect_timeout: Duration,
    pub(crate) resolver: Arc<dyn Resolve>,
    pub(crate) counters: Counters,
}

impl Gate {
    /// Opens a TCP connection to one of `target`'s vetted addresses. Resolution and connecting share
    /// one deadline, `connect_timeout`; vetted addresses are tried in the resolver's order, moving on
    /// when one refuses the connection.
    pub(crate) async fn dial(&self, target: &Target) -> Result<TcpStream, EgressError> {
        let deadline = Instant::now() + self.connect_timeout;
        let result = self.dial_until(target, deadline).await;
        match &result {
            Ok(_) => {}
            Err(EgressError::Refused { .. }) => {
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    egress.host = %target.host_for_logs(),
                    egress.port = target.port,
                    error = %error,
                    "egress connection failed"
                );
            }
        }
        result
    }

    async fn dial_until(
        &self,
        target: &Target,
        deadline: Instant,
    ) -> Result<TcpStream, EgressError> {
        let timeout = || EgressError::Timeout {
            target: target.to_string(),
            limit: self.connect_timeout,
        };
        let candidates = timeout_at(deadline, self.vet(target))
            .await
            .map_err(|_| timeout())??;
        self.counters.allowed.fetch_add(1, Ordering::Relaxed);
        let mut last_error = None;
        for addr in candidates {
            match timeout_at(deadline, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    // Small request and response heads should not wait for Nagle's algorithm.
                    let _ = stream.set_nodelay(true);
                    tracing::debug!(
                        egress.host = %target.host_for_logs(),
                        egress.port = target.port,
                        egress.addr = %addr,
                        "egress connection opened"
                    );
                    return Ok(stream);
                }
                Ok(Err(error)) => last_error = Some(error),
                Err(_) => return Err(timeout()),
            }
        }
        Err(EgressError::Unreachable {
            target: target.to_string(),
            cause: last_error.map_or_else(|| "no address to try".to_owned(), |e| e.to_string()),
        })
    }

    /// The addresses of `target` that Kiln may connect to, or a refusal when there are none. This is
    /// the only place a name is resolved: the caller connects to what this returns.
    async fn vet(&self, target: &Target) -> Result<Vec<SocketAddr>, EgressError> {
        let ips = match &target.host {
            Host::Ip(ip) => vec![*ip],
            Host::Name(name) => {
                let answer = self.resolver.lookup(name).await.map_err(|error| {
                    EgressError::Unresolvable {
                        target: target.to_string(),
                        cause: error.to_string(),
                    }
                })?;
                let mut ips: Vec<IpAddr> = Vec::with_capacity(answer.len());
                for ip in answer.into_iter().map(|ip| ip.to_canonical()) {
                    if !ips.contains(&ip) {
                        ips.push(ip);
                    }
                }
                if ips.is_empty() {
                    return Err(EgressError::Unresolvable {
                        target: target.to_string(),
                        cause: "no addresses".to_owned(),
                    });
                }
                ips
            }
        };
        let (permitted, refused): (Vec<IpAddr>, Vec<IpAddr>) = ips.into_iter().partition(|ip| {
            let addr = SocketAddr::new(*ip, target.port);
            self.policy.permits(addr) && !self.refusals.contains(addr)
        });
        if permitted.is_empty() {
            let platform = refused.iter().any(|ip| {
                let addr = SocketAddr::new(*ip, target.port);
                self.refusals.contains(addr) || self.policy.refusal(addr) == Some(Refusal::Platform)
            });
            tracing::warn!(
                egress.host = %target.host_for_logs(),
                egress.port = target.port,
                egress.addresses = ?refused,
                egress.platform = platform,
                "refused an egress connection to one of Kiln's own services or to a non-public address \
                 outside KILN_ALLOWED_PRIVATE_NETS"
            );
            return Err(EgressError::Refused {
                target: target.to_string(),
                reason: refusal_reason(&target.host, &refused, platform),
            });
        }
        Ok(permitted
            .into_iter()
            .map(|ip| SocketAddr::new(ip, target.port))
            .collect())
    }
}

impl Target {
    /// The host alone, as logged (never a URL, so never a query string).
    fn host_for_logs(&self) -> String {
        match &self.host {
            Host::Ip(ip) => ip.to_string(),
            Host::Name(name) => name.clone(),
        }
    }
}

/// The sentence a refused request's body carries. For a name it deliberately does not list the
/// addresses: the page that asked should not learn what internal names resolve to (the log has them).
fn refusal_reason(host: &Host, refused: &[IpAddr], platform: bool) -> String {
    const OUTSIDE: &str = "outside the public internet and the networks this Kiln allows";
    match host {
        _ if platform => format!(
            "{} is one of this Kiln's own services, which pages can never reach",
            match host {
                Host::Ip(ip) => ip.to_string(),
                Host::Name(name) => name.clone(),
            }
        ),
        Host::Ip(ip) => format!("{ip} is a {} address, {OUTSIDE}", address_kind(*ip)),
        Host::Name(name) if refused.iter().all(|ip| ip.is_loopback()) => {
            format!("{name} resolves only to loopback addresses, {OUTSIDE}")
        }
        Host::Name(name) => format!("{name} resolves only to non-public addresses, {OUTSIDE}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets() {
        let check =
            |authority: &str, default_port: Option<u16>, expected: Result<(Host, u16), ()>| {
                let parsed = Target::parse(&authority.parse().unwrap(), default_port)
                    .map(|t| (t.host, t.port))
                    .map_err(|_| ());
                assert_eq!(parsed, expected, "{authority}");
            };
        let ip = |s: &str| Host::Ip(s.parse().unwrap());
        let name = |s: &str| Host::Name(s.to_owned());
        check("example.com", Some(80), Ok((name("example.com"), 80)));
        check(
            "Example.COM:8080",
            Some(80),
            Ok((name("example.com"), 8080)),
        );
        check("example.com:443", None, Ok((name("example.com"), 443)));
        check("example.com", None, Err(()));
        check("example.com:0", Some(80), Err(()));
        check("127.0.0.2:81", None, Ok((ip("127.0.0.2"), 81)));
        check("[::1]:80", None, Ok((ip("::1"), 80)));
        check("[::ffff:127.0.0.2]", Some(80), Ok((ip("127.0.0.2"), 80)));
        check("[::ffff:7f00:2]:8000", None, Ok((ip("127.0.0.2"), 8000)));
        check("[fe80::1]", Some(80), Ok((ip("fe80::1"), 80)));
        check(
            "user:pw@example.com",
            Some(80),
            Ok((name("example.com"), 80)),
        );
        check("localhost.", Some(80), Ok((name("localhost."), 80)));
    }

    #[test]
    fn displays_targets_as_authorities() {
        let cases = [
            ("example.com", "example.com:80"),
            ("[::ffff:127.0.0.1]", "127.0.0.1:80"),
            ("[::1]:8080", "[::1]:8080"),
        ];
        for (authority, expected) in cases {
            let target = Target::parse(&authority.parse().unwrap(), Some(80)).unwrap();
            assert_eq!(target.to_string(), expected, "{authority}");
        }
    }

    #[test]
    fn names_address_kinds() {
        let cases = [
            ("127.0.0.2", "loopback"),
            ("::1", "loopback"),
            ("::ffff:127.0.0.1", "loopback"),
            ("10.1.2.3", "private"),
            ("192.168.0.1", "private"),
            ("fd12::1", "private"),
            ("169.254.169.254", "cloud metadata"),
            ("fd00:ec2::254", "cloud metadata"),
            ("169.254.1.1", "link-local"),
            ("fe80::1", "link-local"),
            ("100.64.0.1", "carrier-grade NAT"),
            ("0.0.0.0", "unspecified"),
            ("::", "unspecified"),
            ("224.0.0.1", "multicast"),
            ("198.18.0.1", "reserved or special-purpose"),
            ("64:ff9b::7f00:1", "reserved or special-purpose"),
        ];
        for (ip, expected) in cases {
            assert_eq!(address_kind(ip.parse().unwrap()), expected, "{ip}");
        }
    }

    #[test]
    fn refusal_reasons_name_the_host_but_not_resolved_addresses() {
        let loopback = ["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
        let private = ["10.0.0.7".parse().unwrap()];
        assert_eq!(
            refusal_reason(&Host::Ip("127.0.0.2".parse().unwrap()), &[], false),
            "127.0.0.2 is a loopback address, outside the public internet and the networks this Kiln allows"
        );
        assert_eq!(
            refusal_reason(&Host::Name("localhost".into()), &loopback, false),
            "localhost resolves only to loopback addresses, outside the public internet and the networks this Kiln allows"
        );
        let reason = refusal_reason(&Host::Name("db.internal".into()), &private, false);
        assert!(reason.starts_with("db.internal resolves only to non-public addresses"));
        assert!(!reason.contains("10.0.0.7"));
    }
}
