//! Kiln's own endpoints, as one program knows them: its listeners, the Redis and Postgres it uses,
//! and whatever else the operator names in `KILN_PLATFORM_ADDRS` (the rest of the deployment's
//! services). A tenant's traffic is never sent to any of them (`kiln_core::EgressPolicy`), whatever
//! `KILN_ALLOWED_PRIVATE_NETS` grants.

use std::net::{IpAddr, SocketAddr};

/// Collects the endpoints: `listeners` as they are bound (a listener on an unspecified address
/// stands for every address of the machine, so each interface's address is added with its port),
/// the hosts of `store_urls` (`redis://`, `rediss://`, `redis-cluster://h1:p1,h2:p2`,
/// `postgres://`; user and password are skipped, never logged) and `declared`
/// (`KILN_PLATFORM_ADDRS`: `host:port` entries separated by commas or whitespace), names resolved
/// now. A name that does not resolve is left out with a warning: it cannot be connected to through
/// this machine's resolver either, as things stand.
pub async fn platform_endpoints(
    listeners: &[SocketAddr],
    store_urls: &[&str],
    declared: &str,
) -> Result<Vec<SocketAddr>, String> {
    let mut found: Vec<SocketAddr> = Vec::new();
    for listener in listeners {
        found.push(*listener);
        if listener.ip().is_unspecified() {
            found.extend(interface_addresses().map(|ip| SocketAddr::new(ip, listener.port())));
        }
    }
    let mut named: Vec<(String, u16)> = Vec::new();
    for url in store_urls {
        named.extend(store_hosts(url));
    }
    for entry in declared
        .split([',', ' ', '\n', '\t'])
        .filter(|s| !s.is_empty())
    {
        named.push(parse_host_port(entry).ok_or_else(|| {
            format!("KILN_PLATFORM_ADDRS: `{entry}` is not host:port, such as 10.0.0.7:5432 or redis:6379")
        })?);
    }
    for (host, port) in named {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        match tokio::net::lookup_host((host, port)).await {
            Ok(addrs) => found.extend(addrs),
            Err(error) => tracing::warn!(
                platform.host = host,
                platform.port = port,
                %error,
                "one of Kiln's own endpoints does not resolve; it is not on the refusal list"
            ),
        }
    }
    found.sort();
    found.dedup();
    Ok(found)
}

fn interface_addresses() -> impl Iterator<Item = IpAddr> {
    let interfaces = if_addrs::get_if_addrs().unwrap_or_else(|error| {
        tracing::warn!(%error, "could not list the network interfaces");
        Vec::new()
    });
    interfaces.into_iter().map(|interface| interface.ip())
}

/// The `host:port` pairs of a store's URL, with the scheme's default port.
fn store_hosts(url: &str) -> Vec<(String, u16)> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Vec::new();
    };
    let default_port = match scheme {
        "postgres" | "postgresql" => 5432,
        _ => 6379,
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let hosts = authority
        .rsplit_once('@')
        .map_or(authority, |(_, hosts)| hosts);
    hosts
        .split(',')
        .filter(|h| !h.is_empty())
        .filter_map(|h| parse_host_port(h).or_else(|| Some((h.to_owned(), default_port))))
        .collect()
}

/// `host:port`, `[v6]:port` or `v4:port`.
fn parse_host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    if host.is_empty() || (host.contains(':') && !host.starts_with('[')) {
        return None;
    }
    Some((host.to_owned(), port.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_name_their_hosts() {
        let table: &[(&str, &[(&str, u16)])] = &[
            ("redis://127.0.0.1:6380", &[("127.0.0.1", 6380)]),
            ("redis://redis", &[("redis", 6379)]),
            (
                "rediss://:secret@cache.internal:7000/2",
                &[("cache.internal", 7000)],
            ),
            (
                "redis-cluster://a:7001,b:7002,c",
                &[("a", 7001), ("b", 7002), ("c", 6379)],
            ),
            (
                "postgres://kiln:p@ss@db.internal/kiln",
                &[("db.internal", 5432)],
            ),
            (
                "postgresql://u@[fd00::7]:5433/x?sslmode=require",
                &[("[fd00::7]", 5433)],
            ),
            ("nonsense", &[]),
        ];
        for (url, expected) in table {
            let hosts = store_hosts(url);
            let hosts: Vec<(&str, u16)> = hosts.iter().map(|(h, p)| (h.as_str(), *p)).collect();
            assert_eq!(&hosts, expected, "{url}");
        }
    }

    #[tokio::test]
    async fn endpoints_cover_listeners_stores_and_declared_addresses() {
        let found = platform_endpoints(
            &[
                "0.0.0.0:3000".parse().unwrap(),
                "127.0.0.1:9100".parse().unwrap(),
            ],
            &["redis://localhost:6380", "postgres://u:p@127.0.0.1:5433/db"],
            "127.0.0.2:9101, [::1]:9103",
        )
        .await
        .unwrap();
        for expected in [
            "0.0.0.0:3000",
            "127.0.0.1:3000",
            "127.0.0.1:9100",
            "127.0.0.1:6380",
            "127.0.0.1:5433",
            "127.0.0.2:9101",
            "[::1]:9103",
        ] {
            assert!(
                found.contains(&expected.parse().unwrap()),
                "{expected} in {found:?}"
            );
        }
        assert!(platform_endpoints(&[], &[], "no-port").await.is_err());
    }
}
