//! A DNS resolver for hyper's `HttpConnector` that keeps only the addresses Kiln may connect to
//! (`kiln_core::EgressPolicy`: public or granted, never Kiln's own services): the gateway's origin
//! client and the dashboard's sitemap reader use it, so a hostname that resolves into a private
//! network is refused when connecting, not just when the domain was registered. A resolver serves
//! one port (hyper asks it for a name only), so its owner keeps one per port it connects to.

use hyper_util::client::legacy::connect::dns::Name;
use kiln_core::EgressPolicy;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Resolves origin hostnames and keeps only addresses Kiln may connect to.
#[derive(Clone)]
pub struct GuardedResolver {
    policy: EgressPolicy,
    port: u16,
}

impl GuardedResolver {
    /// A resolver for connections to `port` under `policy` (already scoped to the tenant).
    pub fn new(policy: EgressPolicy, port: u16) -> Self {
        GuardedResolver { policy, port }
    }
}

impl tower::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.policy.clone();
        let port = self.port;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let permitted: Vec<SocketAddr> = addrs
                .iter()
                .copied()
                .filter(|a| policy.permits(SocketAddr::new(a.ip(), port)))
                .collect();
            if permitted.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!(
                        "{host} resolves only to addresses outside the public internet and what \
                         KILN_ALLOWED_PRIVATE_NETS grants at port {port}, or to Kiln's own services"
                    ),
                ));
            }
            Ok(permitted.into_iter())
        })
    }
}
