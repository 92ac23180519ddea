//! Name resolution behind a small trait, so tests can answer lookups (including hostile, rebinding
//! answers) without a DNS server.

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;

/// The future a [`Resolve`] implementation returns.
pub type Resolving<'a> = Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send + 'a>>;

/// Turns a hostname into the addresses it currently points at.
///
/// The proxy calls this once per destination it is about to connect to and then connects to one of
/// the returned addresses itself; it never hands the name to anything that could look it up again.
/// IP literals never reach a resolver.
pub trait Resolve: Send + Sync + 'static {
    /// All addresses `host` resolves to, in the order they should be tried. An empty list or an
    /// error means the name does not resolve.
    fn lookup<'a>(&'a self, host: &'a str) -> Resolving<'a>;
}

/// The system resolver (`getaddrinfo` through [`tokio::net::lookup_host`]), which honours
/// `/etc/hosts` and the container's DNS settings; `localhost` names are loopback without asking it
/// (`kiln_core::net::localhost_addresses`).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn lookup<'a>(&'a self, host: &'a str) -> Resolving<'a> {
        Box::pin(async move {
            if let Some(loopback) = kiln_core::net::localhost_addresses(host) {
                return Ok(loopback.to_vec());
            }
            let addrs = tokio::net::lookup_host((host, 0)).await?;
            Ok(addrs.map(|addr| addr.ip()).collect())
        })
    }
}
