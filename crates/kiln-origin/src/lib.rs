//! Kiln's HTTP client for customer origins, for the programs that fetch from an origin themselves:
//! the gateway's human path and the dashboard's sitemap reader. (The worker's egress proxy,
//! `kiln-egress`, keeps a gate of its own over the same `EgressPolicy`: it vets any host and port
//! Chromium asks for, with a resolver its tests replace and refusals that change while it runs, and
//! hands `CONNECT` tunnels a bare TCP stream, none of which a client for one port can do.)
//!
//! [`client`] builds a hyper client (HTTP/1.1, plain or over rustls with the webpki roots) for one
//! [`EgressPolicy`], already scoped to the tenant whose traffic it carries, and one port.
//!
//! **Invariant:** every connection such a client makes goes only to an address its policy permits at
//! its port: public, or granted by `KILN_ALLOWED_PRIVATE_NETS`, and never one of Kiln's own services.
//! A hostname is resolved once per new connection, the addresses the policy refuses are dropped, and
//! the connection goes to one of exactly those that were kept (hyper dials what its resolver
//! returned and looks nothing up again), so a DNS answer cannot say "public" to the check and
//! "127.0.0.1" to the connection. An IP-literal origin, which hyper dials without a resolver, is
//! checked as the address it denotes (`[::ffff:127.0.0.1]` is `127.0.0.1`), and a request for any
//! other port than the client's is refused, since the policy's grants depend on the port. Checks
//! are made when connecting, not when a domain is registered, because DNS changes.
//!
//! A refusal fails the request with an `io::Error` of kind `PermissionDenied` in its error's chain
//! ([`is_refusal`]), before anything is sent.

mod guarded;

pub use guarded::GuardedConnector;

use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use kiln_core::EgressPolicy;
use std::time::Duration;

/// The connector of an origin client: TLS for `https://` origins, over a [`GuardedConnector`].
pub type OriginConnector = hyper_rustls::HttpsConnector<GuardedConnector>;

/// An origin client sending request bodies of type `B`: see [`client`].
pub type OriginHttp<B> = Client<OriginConnector, B>;

/// How an origin client connects and keeps connections. The default suits an occasional fetch
/// (the dashboard's sitemap reader): a 5 s connect timeout and hyper's pool defaults.
#[derive(Clone, Debug)]
pub struct ClientSettings {
    /// The limit for connecting to an origin's vetted addresses once they are known (hyper shares it
    /// between them when there are several). Default 5 s.
    pub connect_timeout: Duration,
    /// Whether to send small writes at once instead of waiting for Nagle's algorithm. Default off.
    pub nodelay: bool,
    /// How long an idle pooled connection may be reused; `None` for ever. Default 90 s (hyper's).
    pub pool_idle_timeout: Option<Duration>,
    /// How many idle connections to keep per origin. Default unlimited (hyper's).
    pub pool_max_idle_per_host: usize,
}

impl Default for ClientSettings {
    fn default() -> Self {
        ClientSettings {
            connect_timeout: Duration::from_secs(5),
            nodelay: false,
            pool_idle_timeout: Some(Duration::from_secs(90)),
            pool_max_idle_per_host: usize::MAX,
        }
    }
}

/// A client whose connections go only where `policy` (already scoped to one tenant's traffic)
/// permits at `port`, for `http://` and `https://` URIs of that port.
pub fn client<B>(policy: EgressPolicy, port: u16, settings: &ClientSettings) -> OriginHttp<B>
where
    B: http_body::Body + Send,
    B::Data: Send,
{
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(GuardedConnector::new(policy, port, settings));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(settings.pool_idle_timeout)
        .pool_max_idle_per_host(settings.pool_max_idle_per_host)
        .build(https)
}

/// Whether `error` (a client's error, or any error whose chain may hold one) is an origin client's
/// refusal to connect: an `io::Error` of kind `PermissionDenied` anywhere in its chain.
pub fn is_refusal(error: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(error), |cause| cause.source()).any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::StatusCode;
    use http_body_util::Empty;
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// An origin on 127.0.0.1 answering every request `200 ok`, counting the connections it accepts.
    async fn origin() -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let answer =
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
                    let _ = stream.write_all(answer).await;
                });
            }
        });
        (addr, accepted)
    }

    #[tokio::test]
    async fn connects_only_where_the_policy_permits_at_the_clients_port() {
        let (addr, accepted) = origin().await;
        let port = addr.port();
        let closed = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let granted = EgressPolicy::parse(&format!("127.0.0.1:{port}@*,127.0.0.1:{closed}@*"))
            .unwrap()
            .for_tenant(None);
        let platform = granted.clone().with_platform([addr]);
        let public_only = EgressPolicy::default();
        let other_port = if port == 8080 { 8081 } else { 8080 };
        #[derive(Debug, PartialEq)]
        enum Outcome {
            Answered,
            Refused,
            /// Permitted, but nothing listens there.
            Unreachable,
        }
        use Outcome::*;
        // (policy, the client's port, URI, outcome)
        let cases = [
            (
                &granted,
                port,
                format!("http://127.0.0.1:{port}/"),
                Answered,
            ),
            (
                &granted,
                port,
                format!("http://localhost:{port}/"),
                Answered,
            ),
            (
                &granted,
                closed,
                format!("http://127.0.0.1:{closed}/"),
                Unreachable,
            ),
            (
                &granted,
                other_port,
                format!("http://127.0.0.1:{port}/"),
                Refused,
            ),
            (
                &granted,
                other_port,
                format!("http://localhost:{port}/"),
                Refused,
            ),
            (
                &platform,
                port,
                format!("http://127.0.0.1:{port}/"),
                Refused,
            ),
            (
                &platform,
                port,
                format!("http://localhost:{port}/"),
                Refused,
            ),
            (
                &public_only,
                port,
                format!("http://127.0.0.1:{port}/"),
                Refused,
            ),
            (
                &public_only,
                port,
                format!("http://localhost:{port}/"),
                Refused,
            ),
            (
                &public_only,
                port,
                format!("http://[::ffff:127.0.0.1]:{port}/"),
                Refused,
            ),
            (&public_only, port, format!("http://[::1]:{port}/"), Refused),
            (
                &public_only,
                port,
                format!("https://127.0.0.1:{port}/"),
                Refused,
            ),
            (&public_only, 80, "http://10.0.0.1/".to_owned(), Refused),
        ];
        for (policy, client_port, uri, expected) in cases {
            let http: OriginHttp<Empty<Bytes>> =
                client((*policy).clone(), client_port, &ClientSettings::default());
            let before = accepted.load(Ordering::SeqCst);
            let outcome = match http.get(uri.parse().unwrap()).await {
                Ok(response) => {
                    assert_eq!(response.status(), StatusCode::OK, "{uri}");
                    Answered
                }
                Err(error) if is_refusal(&error) => Refused,
                Err(_) => Unreachable,
            };
            assert_eq!(outcome, expected, "{uri}");
            let connections = usize::from(expected == Answered);
            assert_eq!(
                accepted.load(Ordering::SeqCst),
                before + connections,
                "{uri}"
            );
        }
    }
}
