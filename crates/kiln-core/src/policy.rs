//! Where Kiln may send a tenant's traffic (people's requests proxied to an origin, a render's every
//! request, a sitemap fetch): the public internet, plus the non-public networks the operator grants
//! in `KILN_ALLOWED_PRIVATE_NETS` — and never Kiln's own services, whatever that list says.
//!
//! A grant names a network, optionally the ports it opens and whom it is for:
//!
//! ```text
//! NET[:PORTS][@SCOPE]     NET   = 10.0.0.5, 10.0.0.0/8, [fd00::5], [fd00::/8] (brackets only with ports)
//!                         PORTS = 8080 or 8000-8099 (default: every port)
//!                         SCOPE = operator (default): domains the operator added from the CLI
//!                                 *: every tenant, sign-ups included
//!                                 <tenant id>: that tenant only
//! ```
//!
//! So `127.0.0.1:5173` lets the operator's own domains use a local origin on port 5173 and nothing
//! else, while `10.0.0.0/8@*` (every port of a private network, for every sign-up) is what the
//! probing found dangerous. Whatever is granted, the *platform's endpoints* are refused: the
//! listeners of Kiln's services and the Redis and Postgres they use (each service adds its own;
//! `KILN_PLATFORM_ADDRS` names the rest of a deployment's), so no tenant can make the gateway, a
//! render or the dashboard talk to Redis, Postgres or an admin port.

use crate::net::{is_public_ip, unmap};
use ipnet::IpNet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;

/// The tenant id of the built-in operator tenant, which owns the domains an operator adds from the
/// command line (the dashboard's first migration creates it).
pub const OPERATOR_TENANT_ID: &str = "00000000-0000-0000-0000-000000000001";

/// Whom a grant is for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GrantScope {
    /// Every tenant (`@*`).
    Everyone,
    /// One tenant, by id (`@<id>`; `@operator` is [`OPERATOR_TENANT_ID`]).
    Tenant(String),
}

impl GrantScope {
    fn covers(&self, tenant: Option<&str>) -> bool {
        match self {
            GrantScope::Everyone => true,
            GrantScope::Tenant(id) => tenant == Some(id.as_str()),
        }
    }
}

/// One `KILN_ALLOWED_PRIVATE_NETS` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub net: IpNet,
    /// The ports it opens; `None` opens every port.
    pub ports: Option<RangeInclusive<u16>>,
    pub scope: GrantScope,
}

impl Grant {
    fn matches(&self, addr: SocketAddr) -> bool {
        self.net.contains(&unmap(addr.ip()))
            && self.ports.as_ref().is_none_or(|p| p.contains(&addr.port()))
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.ports, self.net) {
            (None, net) => write!(f, "{net}")?,
            (Some(p), IpNet::V6(net)) => write!(f, "[{net}]:{}", PortRange(p))?,
            (Some(p), net) => write!(f, "{net}:{}", PortRange(p))?,
        }
        match &self.scope {
            GrantScope::Everyone => write!(f, "@*"),
            GrantScope::Tenant(id) if id == OPERATOR_TENANT_ID => Ok(()),
            GrantScope::Tenant(id) => write!(f, "@{id}"),
        }
    }
}

struct PortRange<'a>(&'a RangeInclusive<u16>);

impl fmt::Display for PortRange<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.start() == self.0.end() {
            write!(f, "{}", self.0.start())
        } else {
            write!(f, "{}-{}", self.0.start(), self.0.end())
        }
    }
}

/// An address of Kiln's own: a listener or a store. An unspecified address (a listener on
/// `0.0.0.0` or `[::]`) stands for every address of the machine; whoever builds the policy adds the
/// machine's interface addresses for it, and [`EgressPolicy::is_platform`] treats every loopback
/// address as one of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PlatformEndpoint(pub SocketAddr);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error(
        "`{0}` is not NET[:PORTS][@SCOPE], such as 127.0.0.1:5173, 10.0.0.0/8:80-443@* or [fd00::/8]:8080@<tenant id>"
    )]
    Syntax(String),
    #[error("`{0}`: a port range must run from 1 to 65535, low to high")]
    Ports(String),
    #[error("`{0}`: the scope must be `operator`, `*` or a tenant id")]
    Scope(String),
    #[error(
        "`{0}` opens every port of a loopback address, where Kiln's own services and browsers listen: \
         name the origin's ports, e.g. 127.0.0.1:5173"
    )]
    PortlessLoopback(String),
}

/// What may be reached: see the module's documentation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    grants: Vec<Grant>,
    platform: Vec<SocketAddr>,
}

/// Why an address was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// One of Kiln's own listeners or stores.
    Platform,
    /// A non-public address no grant opens to this tenant at this port.
    NotPublic,
}

impl EgressPolicy {
    /// Parses `KILN_ALLOWED_PRIVATE_NETS`: grants separated by commas or whitespace.
    pub fn parse(list: &str) -> Result<Self, PolicyError> {
        let grants = list
            .split([',', ' ', '\n', '\t'])
            .filter(|s| !s.is_empty())
            .map(parse_grant)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(EgressPolicy {
            grants,
            platform: Vec::new(),
        })
    }

    /// Adds Kiln's own endpoints, which are refused whatever the grants say.
    pub fn with_platform(mut self, endpoints: impl IntoIterator<Item = SocketAddr>) -> Self {
        for addr in endpoints {
            let addr = SocketAddr::new(unmap(addr.ip()), addr.port());
            if !self.platform.contains(&addr) {
                self.platform.push(addr);
            }
        }
        self
    }

    /// The grants, as parsed.
    pub fn grants(&self) -> &[Grant] {
        &self.grants
    }

    /// The platform's endpoints this policy refuses.
    pub fn platform(&self) -> &[SocketAddr] {
        &self.platform
    }

    /// Grants that open every port of a network: worth a warning at start, since whatever else
    /// listens in that network (an admin port, a database) is opened with the origin.
    pub fn portless_grants(&self) -> impl Iterator<Item = &Grant> {
        self.grants.iter().filter(|g| g.ports.is_none())
    }

    /// The tenants that have grants of their own (beyond those for everyone), in order, each once.
    pub fn tenants_with_grants(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self
            .grants
            .iter()
            .filter_map(|g| match &g.scope {
                GrantScope::Tenant(id) => Some(id.as_str()),
                GrantScope::Everyone => None,
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Whether `tenant` has grants of its own, so that its traffic needs a policy of its own.
    pub fn has_own_grants(&self, tenant: &str) -> bool {
        // Asked on every request a gateway proxies: no allocation.
        self.grants
            .iter()
            .any(|g| matches!(&g.scope, GrantScope::Tenant(id) if id == tenant))
    }

    /// The policy one tenant's traffic is held to (`None`: a tenant with no grants of its own): its
    /// grants and everyone's, now all applying to whoever uses the result, and the same platform.
    pub fn for_tenant(&self, tenant: Option<&str>) -> EgressPolicy {
        EgressPolicy {
            grants: self
                .grants
                .iter()
                .filter(|g| g.scope.covers(tenant))
                .map(|g| Grant {
                    scope: GrantScope::Everyone,
                    ..g.clone()
                })
                .collect(),
            platform: self.platform.clone(),
        }
    }

    /// Whether `addr` is one of the platform's endpoints: listed, or at a listed port of an
    /// unspecified listener on a loopback address.
    pub fn is_platform(&self, addr: SocketAddr) -> bool {
        let ip = unmap(addr.ip());
        self.platform.iter().any(|p| {
            p.port() == addr.port()
                && (p.ip() == ip
                    || (p.ip().is_unspecified() && (ip.is_loopback() || ip.is_unspecified())))
        })
    }

    /// Why `addr` may not be reached under the grants that apply to everyone (use
    /// [`for_tenant`](Self::for_tenant) first for a tenant's traffic); `None` if it may.
    pub fn refusal(&self, addr: SocketAddr) -> Option<Refusal> {
        if self.is_platform(addr) {
            return Some(Refusal::Platform);
        }
        let ip = unmap(addr.ip());
        let granted = self.grants.iter().any(|g| {
            g.scope == GrantScope::Everyone && g.matches(SocketAddr::new(ip, addr.port()))
        });
        if is_public_ip(ip) || granted {
            None
        } else {
            Some(Refusal::NotPublic)
        }
    }

    /// Whether `addr` may be reached (see [`refusal`](Self::refusal)).
    pub fn permits(&self, addr: SocketAddr) -> bool {
        self.refusal(addr).is_none()
    }
}

fn parse_grant(text: &str) -> Result<Grant, PolicyError> {
    let syntax = || PolicyError::Syntax(text.to_owned());
    let (target, scope) = match text.split_once('@') {
        Some((target, scope)) => (target, parse_scope(text, scope)?),
        None => (text, GrantScope::Tenant(OPERATOR_TENANT_ID.to_owned())),
    };
    let net = |s: &str| {
        s.parse::<IpNet>()
            .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
            .ok()
    };
    // A bare network or address (IPv6 ones contain colons, so they are tried whole first).
    if let Some(net) = net(target) {
        let net = unmap_net(net);
        if net.contains(&IpAddr::from([127, 0, 0, 1]))
            || net.contains(&IpAddr::from(std::net::Ipv6Addr::LOCALHOST))
            || net.network().is_loopback()
        {
            return Err(PolicyError::PortlessLoopback(text.to_owned()));
        }
        return Ok(Grant {
            net,
            ports: None,
            scope,
        });
    }
    let (net_text, ports) = if let Some(rest) = target.strip_prefix('[') {
        let (inner, after) = rest.split_once(']').ok_or_else(syntax)?;
        (inner, after.strip_prefix(':').ok_or_else(syntax)?)
    } else {
        target.rsplit_once(':').ok_or_else(syntax)?
    };
    let net = net(net_text).ok_or_else(syntax)?;
    Ok(Grant {
        net: unmap_net(net),
        ports: Some(parse_ports(text, ports)?),
        scope,
    })
}

fn parse_scope(text: &str, scope: &str) -> Result<GrantScope, PolicyError> {
    match scope {
        "*" => Ok(GrantScope::Everyone),
        "operator" => Ok(GrantScope::Tenant(OPERATOR_TENANT_ID.to_owned())),
        id if !id.is_empty()
            && id.len() <= 64
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
        {
            Ok(GrantScope::Tenant(id.to_ascii_lowercase()))
        }
        _ => Err(PolicyError::Scope(text.to_owned())),
    }
}

fn parse_ports(text: &str, ports: &str) -> Result<RangeInclusive<u16>, PolicyError> {
    let bad = || PolicyError::Ports(text.to_owned());
    let (low, high) = ports.split_once('-').unwrap_or((ports, ports));
    let low: u16 = low.parse().map_err(|_| bad())?;
    let high: u16 = high.parse().map_err(|_| bad())?;
    if low == 0 || low > high {
        return Err(bad());
    }
    Ok(low..=high)
}

/// `::ffff:10.0.0.0/104` is `10.0.0.0/8`: addresses are compared unmapped.
fn unmap_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) => match v6.addr().to_ipv4_mapped() {
            Some(v4) if v6.prefix_len() >= 96 => {
                IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96).unwrap_or(net)
            }
            _ => net,
        },
        net => net,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn grants_parse_with_ports_and_scopes() {
        let op = || GrantScope::Tenant(OPERATOR_TENANT_ID.to_owned());
        let table: &[(&str, &str, Option<RangeInclusive<u16>>, GrantScope)] = &[
            ("10.0.0.1", "10.0.0.1/32", None, op()),
            ("10.0.0.0/8", "10.0.0.0/8", None, op()),
            ("127.0.0.1:5173", "127.0.0.1/32", Some(5173..=5173), op()),
            (
                "10.0.0.0/8:80-443@*",
                "10.0.0.0/8",
                Some(80..=443),
                GrantScope::Everyone,
            ),
            ("fd00::5", "fd00::5/128", None, op()),
            (
                "[fd00::/8]:8080@operator",
                "fd00::/8",
                Some(8080..=8080),
                op(),
            ),
            (
                "[::1]:9@0F1e-Aa",
                "::1/128",
                Some(9..=9),
                GrantScope::Tenant("0f1e-aa".into()),
            ),
            ("::ffff:10.0.0.0/104", "10.0.0.0/8", None, op()),
        ];
        for (text, net, ports, scope) in table {
            let policy = EgressPolicy::parse(text).unwrap();
            let grant = &policy.grants()[0];
            assert_eq!(grant.net.to_string(), *net, "{text}");
            assert_eq!(&grant.ports, ports, "{text}");
            assert_eq!(&grant.scope, scope, "{text}");
        }
        assert_eq!(
            EgressPolicy::parse("127.0.0.1:5173, 10.0.0.0/8:80-443@* [fd00::/8]:8080@ab-1")
                .unwrap()
                .grants()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            [
                "127.0.0.1/32:5173",
                "10.0.0.0/8:80-443@*",
                "[fd00::/8]:8080@ab-1"
            ]
        );
        for loopback in [
            "127.0.0.1",
            "127.0.0.0/8@*",
            "::1",
            "::ffff:127.0.0.1",
            "0.0.0.0/0",
        ] {
            assert!(
                matches!(
                    EgressPolicy::parse(loopback),
                    Err(PolicyError::PortlessLoopback(_))
                ),
                "{loopback}"
            );
        }
        for bad in [
            "nope",
            "10.0.0.0/8:",
            "10.0.0.0/8:0",
            "10.0.0.0/8:9-3",
            "1.2.3.4:99999",
        ] {
            assert!(EgressPolicy::parse(bad).is_err(), "{bad}");
        }
        // An IPv6 address is read whole: a port needs brackets.
        assert_eq!(
            EgressPolicy::parse("fd00::5:80").unwrap().grants()[0].ports,
            None
        );
        assert!(matches!(
            EgressPolicy::parse("10.0.0.1@"),
            Err(PolicyError::Scope(_))
        ));
        assert!(matches!(
            EgressPolicy::parse("10.0.0.1@a/b"),
            Err(PolicyError::Scope(_))
        ));
        assert_eq!(EgressPolicy::parse("").unwrap(), EgressPolicy::default());
    }

    #[test]
    fn grants_open_their_ports_to_their_tenants_only() {
        let policy =
            EgressPolicy::parse("127.0.0.1:5173, 10.1.0.0/16:80-443@*, 10.9.0.0/16@t-1").unwrap();
        let op = policy.for_tenant(Some(OPERATOR_TENANT_ID));
        let t1 = policy.for_tenant(Some("t-1"));
        let other = policy.for_tenant(None);
        let cases = [
            ("127.0.0.1:5173", [true, false, false]),
            ("[::ffff:127.0.0.1]:5173", [true, false, false]),
            ("127.0.0.1:6379", [false, false, false]),
            ("127.0.0.2:5173", [false, false, false]),
            ("10.1.2.3:443", [true, true, true]),
            ("10.1.2.3:8080", [false, false, false]),
            ("10.9.0.1:6379", [false, true, false]),
            ("8.8.8.8:25", [true, true, true]),
        ];
        for (a, [for_op, for_t1, for_other]) in cases {
            assert_eq!(op.permits(addr(a)), for_op, "operator {a}");
            assert_eq!(t1.permits(addr(a)), for_t1, "t-1 {a}");
            assert_eq!(other.permits(addr(a)), for_other, "others {a}");
        }
        // The unscoped policy holds everyone to the grants for everyone.
        assert!(!policy.permits(addr("127.0.0.1:5173")));
        assert!(policy.permits(addr("10.1.2.3:80")));
        assert_eq!(policy.tenants_with_grants(), [OPERATOR_TENANT_ID, "t-1"]);
        assert!(policy.has_own_grants("t-1") && !policy.has_own_grants("t-2"));
        assert_eq!(policy.portless_grants().count(), 1);
    }

    #[test]
    fn the_platform_is_refused_whatever_is_granted() {
        let policy = EgressPolicy::parse("127.0.0.0/8:1-65535@*, 10.0.0.0/8@*")
            .unwrap()
            .with_platform([
                addr("127.0.0.1:6379"),
                addr("0.0.0.0:3000"),
                addr("10.0.0.7:5432"),
                addr("8.8.4.4:6379"),
            ]);
        let cases = [
            ("127.0.0.1:6379", Some(Refusal::Platform)),
            ("[::ffff:127.0.0.1]:6379", Some(Refusal::Platform)),
            ("127.0.0.1:3000", Some(Refusal::Platform)),
            ("127.0.0.5:3000", Some(Refusal::Platform)),
            ("[::1]:3000", Some(Refusal::Platform)),
            ("10.0.0.7:5432", Some(Refusal::Platform)),
            ("8.8.4.4:6379", Some(Refusal::Platform)),
            ("127.0.0.1:6380", None),
            ("10.0.0.7:5433", None),
            ("10.0.0.8:3000", None),
            ("192.168.1.1:80", Some(Refusal::NotPublic)),
        ];
        for (a, expected) in cases {
            assert_eq!(policy.refusal(addr(a)), expected, "{a}");
        }
        // Scoping keeps the platform.
        assert_eq!(
            policy
                .for_tenant(Some("anyone"))
                .refusal(addr("127.0.0.1:6379")),
            Some(Refusal::Platform)
        );
    }
}
