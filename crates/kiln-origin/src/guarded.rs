//! The two guards of an origin client's connections. [`GuardedResolver`], a DNS resolver for hyper's
//! `HttpConnector`, keeps only the addresses Kiln may connect to (`kiln_core::EgressPolicy`: public
//! or granted, never Kiln's own services), so a hostname that resolves into a private network is
//! refused when connecting, not just when the domain was registered. [`GuardedConnector`], the
//! connector around it, refuses what the resolver never sees: an origin given as an IP literal,
//! which hyper dials without asking a resolver, and a port other than the one the resolver vets for
//! (hyper asks a resolver for a name only, so a resolver, and with it a client, serves one port).

use crate::ClientSettings;
use http::Uri;
use http::uri::Scheme;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioIo;
use kiln_core::{EgressPolicy, Refusal};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::net::TcpStream;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Resolves origin hostnames and keeps only addresses Kiln may connect to.
///
/// The policy is shared, not copied: hyper's pooled client clones its connector (and so this
/// resolver) for every request, a pooled connection's included, and a policy's lists would be two
/// allocations each time.
#[derive(Clone)]
pub(crate) struct GuardedResolver {
    policy: Arc<EgressPolicy>,
    port: u16,
}

impl GuardedResolver {
    /// A resolver for connections to `port` under `policy` (already scoped to the tenant).
    pub(crate) fn new(policy: Arc<EgressPolicy>, port: u16) -> Self {
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
            let addrs: Vec<SocketAddr> = match kiln_core::net::localhost_addresses(&host) {
                Some(loopback) => loopback.map(|ip| SocketAddr::new(ip, 0)).to_vec(),
                None => tokio::net::lookup_host((host.as_str(), 0)).await?.collect(),
            };
            let permitted: Vec<SocketAddr> = addrs
                .iter()
                .copied()
                .filter(|a| policy.permits(SocketAddr::new(a.ip(), port)))
                .collect();
            if permitted.is_empty() {
                return Err(refused(format!(
                    "{host} resolves only to addresses outside the public internet and what \
                     KILN_ALLOWED_PRIVATE_NETS grants at port {port}, or to Kiln's own services"
                )));
            }
            Ok(permitted.into_iter())
        })
    }
}

/// hyper's HTTP connector over a [`GuardedResolver`], which also holds IP-literal origins and the
/// port to the resolver's policy: the connector an [`OriginConnector`](crate::OriginConnector)
/// wraps in TLS.
#[derive(Clone)]
pub struct GuardedConnector {
    http: HttpConnector<GuardedResolver>,
    policy: Arc<EgressPolicy>,
    port: u16,
}

impl GuardedConnector {
    pub(crate) fn new(policy: EgressPolicy, port: u16, settings: &ClientSettings) -> Self {
        let policy = Arc::new(policy);
        let mut http = HttpConnector::new_with_resolver(GuardedResolver::new(policy.clone(), port));
        // The TLS connector around this one hands it `https://` URIs too.
        http.enforce_http(false);
        http.set_connect_timeout(Some(settings.connect_timeout));
        http.set_nodelay(settings.nodelay);
        GuardedConnector { http, policy, port }
    }

    /// Why a connection to `uri` is refused before any lookup, if it is. The port and the IP literal
    /// are read as `HttpConnector` reads them, so that whatever it would dial without the resolver is
    /// checked here.
    fn refusal(&self, uri: &Uri) -> Option<std::io::Error> {
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme() == Some(&Scheme::HTTPS) {
                443
            } else {
                80
            });
        if port != self.port {
            return Some(refused(format!(
                "this origin client vets addresses for port {} only, not {port}",
                self.port
            )));
        }
        let host = uri.host()?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let ip = host.parse::<IpAddr>().ok()?;
        let reason = match self.policy.refusal(SocketAddr::new(ip, port))? {
            Refusal::Platform => format!("{host} port {port} is one of Kiln's own services"),
            Refusal::NotPublic => format!(
                "{host} is outside the public internet and what KILN_ALLOWED_PRIVATE_NETS grants \
                 at port {port}"
            ),
        };
        Some(refused(reason))
    }
}

impl tower::Service<Uri> for GuardedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        if let Some(refusal) = self.refusal(&uri) {
            return Box::pin(std::future::ready(Err(refusal.into())));
        }
        let connecting = self.http.call(uri);
        Box::pin(async move { connecting.await.map_err(Into::into) })
    }
}

/// A refusal: an `io::Error` of kind `PermissionDenied`, which [`is_refusal`](crate::is_refusal)
/// finds in a client error's chain.
fn refused(reason: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::PermissionDenied, reason)
}
