//! Which IP addresses are public, lists of networks (trusted proxies), and who a request's client
//! is behind them. What a tenant's traffic may reach is `policy.rs`'s.

use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The addresses of a `localhost` name (`localhost` itself, or any name under it such as
/// `shop.localhost`), which RFC 6761 reserves for this machine and resolvers answer without asking
/// DNS: the loopback addresses. None for any other name. (Chromium answers such names itself, and
/// glibc knows only `localhost`; Kiln's resolvers follow the RFC, so that a site on this machine
/// is reached under the same name by the browsers and by Kiln's own clients. Loopback is still
/// refused unless `KILN_ALLOWED_PRIVATE_NETS` grants it.)
pub fn localhost_addresses(host: &str) -> Option<[IpAddr; 2]> {
    let host = host.strip_suffix('.').unwrap_or(host);
    let is_localhost = host.eq_ignore_ascii_case("localhost")
        || host.len() > ".localhost".len()
            && host[host.len() - ".localhost".len()..].eq_ignore_ascii_case(".localhost");
    is_localhost.then_some([
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ])
}

/// Whether `ip` is an ordinary public unicast address: not loopback, private, link-local,
/// carrier-grade NAT, cloud metadata, documentation, benchmarking, multicast, reserved or unspecified,
/// including the same addresses hidden inside IPv4-mapped, IPv4-compatible, NAT64 or 6to4 IPv6 forms.
pub fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT, 100.64.0.0/10
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments, 192.0.0.0/24
        || (a == 198 && (18..20).contains(&b)) // benchmarking, 198.18.0.0/15
        || a >= 240) // reserved, 240.0.0.0/4
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let seg = ip.segments();
    // IPv4-compatible (::a.b.c.d), NAT64 (64:ff9b::/96) and 6to4 (2002::/16) carry an IPv4 address.
    if seg[..6] == [0, 0, 0, 0, 0, 0] && !ip.is_loopback() && !ip.is_unspecified() {
        return is_public_v4(Ipv4Addr::new(
            (seg[6] >> 8) as u8,
            seg[6] as u8,
            (seg[7] >> 8) as u8,
            seg[7] as u8,
        ));
    }
    if seg[0] == 0x64 && seg[1] == 0xff9b && seg[2..6] == [0, 0, 0, 0] {
        return is_public_v4(Ipv4Addr::new(
            (seg[6] >> 8) as u8,
            seg[6] as u8,
            (seg[7] >> 8) as u8,
            seg[7] as u8,
        ));
    }
    if seg[0] == 0x2002 {
        return is_public_v4(Ipv4Addr::new(
            (seg[1] >> 8) as u8,
            seg[1] as u8,
            (seg[2] >> 8) as u8,
            seg[2] as u8,
        ));
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (seg[0] & 0xfe00) == 0xfc00 // unique local, fc00::/7
        || (seg[0] & 0xffc0) == 0xfe80 // link-local, fe80::/10
        || (seg[0] & 0xffc0) == 0xfec0 // site-local (deprecated), fec0::/10
        || (seg[0] == 0x2001 && seg[1] == 0x0db8) // documentation, 2001:db8::/32
        || (seg[0] == 0x2001 && seg[1] < 0x0200) // IETF protocol assignments incl. Teredo, 2001::/23
        || seg[0] == 0x0100 && seg[1..4] == [0, 0, 0]) // discard-only, 100::/64
}

/// A list of networks, such as the proxies trusted to report a client's address
/// (`KILN_TRUSTED_PROXIES`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowedNets(Vec<IpNet>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not a CIDR network such as 127.0.0.1/32 or fd00::/8")]
pub struct NetError(String);

impl AllowedNets {
    /// Parses a comma- or whitespace-separated list of CIDRs; a bare address means just that address.
    pub fn parse(list: &str) -> Result<Self, NetError> {
        list.split([',', ' ', '\n', '\t'])
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| NetError(s.to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(AllowedNets)
    }

    /// Whether `ip` is in one of the listed networks (public or not), e.g. for a list of trusted
    /// proxies.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = unmap(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }
}

/// The address of the client a request comes from. It is the peer's, unless the peer is a trusted
/// proxy (the edge, `trusted`): then the `X-Forwarded-For` chain (`forwarded_for`, the header's
/// values in order) is walked from the right past trusted proxies, and the first address that is
/// not one is the client's: the rightmost untrusted hop. Whatever a client writes into the header
/// itself is left of the hop its own proxy appended, so it is never chosen; a chain that ends in
/// something that is not an address stops the walk at the last trusted hop.
pub fn client_ip<'a>(
    peer: IpAddr,
    forwarded_for: impl IntoIterator<Item = &'a str>,
    trusted: &AllowedNets,
) -> IpAddr {
    let hops: Vec<&str> = forwarded_for
        .into_iter()
        .flat_map(|value| value.split(','))
        .collect();
    let mut client = unmap(peer);
    for hop in hops.iter().rev() {
        if !trusted.contains(client) {
            break;
        }
        let hop = hop.trim();
        // Some load balancers write the client's port too.
        let Some(ip) = hop
            .parse::<IpAddr>()
            .ok()
            .or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        else {
            break;
        };
        client = unmap(ip);
    }
    client
}

/// [`client_ip`] of a request: its peer and its `X-Forwarded-For` headers.
pub fn request_client_ip(peer: IpAddr, headers: &http::HeaderMap, trusted: &AllowedNets) -> IpAddr {
    client_ip(
        peer,
        headers
            .get_all(crate::headers::FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok()),
        trusted,
    )
}

/// `::ffff:a.b.c.d` is `a.b.c.d`.
pub(crate) fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localhost_names_are_loopback_and_no_others() {
        for host in [
            "localhost",
            "LOCALHOST",
            "shop.localhost",
            "a.b.localhost.",
            "x.LocalHost",
        ] {
            assert!(localhost_addresses(host).is_some(), "{host}");
        }
        for host in [
            "localhost.example.com",
            "notlocalhost",
            "localhost-x",
            "example.com",
            ".localhost",
        ] {
            assert!(localhost_addresses(host).is_none(), "{host}");
        }
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_hop() {
        let edge = AllowedNets::parse("127.0.0.1, 10.0.0.0/8").unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let table: &[(&str, &[&str], &str)] = &[
            // Straight from the internet: the header is the client's own words, ignored.
            ("203.0.113.9", &["66.249.66.1"], "203.0.113.9"),
            ("203.0.113.9", &[], "203.0.113.9"),
            // Through the edge, which appended the peer it saw.
            ("127.0.0.1", &["203.0.113.9"], "203.0.113.9"),
            // A client's forged entries are left of what the edge appended.
            (
                "127.0.0.1",
                &["66.249.66.1, 1.2.3.4, 203.0.113.9"],
                "203.0.113.9",
            ),
            ("127.0.0.1", &["66.249.66.1", "203.0.113.9"], "203.0.113.9"),
            // Through a load balancer in a trusted network, then the edge.
            (
                "127.0.0.1",
                &["66.249.66.1, 203.0.113.9, 10.1.2.3"],
                "203.0.113.9",
            ),
            ("127.0.0.1", &["garbage, 203.0.113.9"], "203.0.113.9"),
            ("127.0.0.1", &["203.0.113.9:51234"], "203.0.113.9"),
            ("127.0.0.1", &["[2001:db8::7]:443"], "2001:db8::7"),
            ("::ffff:127.0.0.1", &[" ::ffff:203.0.113.9 "], "203.0.113.9"),
            // Nothing but trusted hops, or a chain ending in nonsense: the last trusted hop.
            ("127.0.0.1", &[], "127.0.0.1"),
            ("127.0.0.1", &["10.0.0.5"], "10.0.0.5"),
            ("127.0.0.1", &["1.2.3.4, unknown"], "127.0.0.1"),
            ("127.0.0.1", &[""], "127.0.0.1"),
        ];
        for (peer, header, client) in table {
            assert_eq!(
                client_ip(ip(peer), header.iter().copied(), &edge),
                ip(client),
                "{peer} {header:?}"
            );
        }
        // With no trusted proxy, the peer is the client whatever the header says.
        assert_eq!(
            client_ip(ip("127.0.0.1"), ["1.2.3.4"], &AllowedNets::default()),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn classifies_addresses() {
        let cases = [
            ("8.8.8.8", true),
            ("1.1.1.1", true),
            ("2606:4700:4700::1111", true),
            ("127.0.0.1", false),
            ("127.1.2.3", false),
            ("10.0.0.1", false),
            ("172.16.5.4", false),
            ("192.168.1.1", false),
            ("169.254.169.254", false),
            ("100.64.0.1", false),
            ("0.0.0.0", false),
            ("255.255.255.255", false),
            ("224.0.0.1", false),
            ("198.18.0.1", false),
            ("::1", false),
            ("::", false),
            ("::ffff:127.0.0.1", false),
            ("::ffff:8.8.8.8", true),
            ("::127.0.0.1", false),
            ("64:ff9b::a9fe:a9fe", false),
            ("2002:7f00:1::", false),
            ("fc00::1", false),
            ("fd12:3456::1", false),
            ("fe80::1", false),
            ("2001:db8::1", false),
        ];
        for (ip, expected) in cases {
            assert_eq!(is_public_ip(ip.parse().unwrap()), expected, "{ip}");
        }
    }

    #[test]
    fn network_lists_contain_their_addresses() {
        let nets = AllowedNets::parse("127.0.0.1/32, 10.1.0.0/16 fd00::5").unwrap();
        assert!(nets.contains("127.0.0.1".parse().unwrap()));
        assert!(nets.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!nets.contains("127.0.0.2".parse().unwrap()));
        assert!(nets.contains("10.1.200.3".parse().unwrap()));
        assert!(!nets.contains("10.2.0.1".parse().unwrap()));
        assert!(nets.contains("fd00::5".parse().unwrap()));
        assert!(!nets.contains("8.8.8.8".parse().unwrap()));
        assert_eq!(AllowedNets::parse("nope"), Err(NetError("nope".into())));
        assert_eq!(AllowedNets::parse("").unwrap(), AllowedNets::default());
    }
}
