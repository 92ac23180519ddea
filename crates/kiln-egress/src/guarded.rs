//! A DNS resolver for hyper's `HttpConnector` that keeps only the addresses Kiln may connect to
//! (public, or in `KILN_ALLOWED_PRIVATE_NETS`): the gateway's origin client and the dashboard's
//! sitemap reader use it, so a hostname that resolves into a private network is refused when
//! connecting, not just when the domain was registered.

use hyper_util::client::legacy::connect::dns::Name;
use kiln_core::AllowedNets;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Resolves origin hostnames and keeps only addresses Kiln may connect to.
#[derive(Clone)]
pub struct GuardedResolver {
    allowed: AllowedNets,
}

impl GuardedResolver {
    pub fn new(allowed: AllowedNets) -> Self {
        GuardedResolver { allowed }
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
        let allowed = self.allowed.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let permitted: Vec<SocketAddr> = addrs
                .iter()
                .copied()
                .filter(|a| allowed.permits(a.ip()))
                .collect();
            if permitted.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!(
                        "{host} resolves only to addresses outside the public internet and KILN_ALLOWED_PRIVATE_NETS"
                    ),
                ));
            }
            Ok(permitted.into_iter())
        })
    }
}
