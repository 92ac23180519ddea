//! The HTTP/1.1 proxy protocol towards Chromium: `CONNECT` tunnels, absolute-form requests forwarded in
//! origin form, and protocol upgrades joined byte for byte.

use crate::error::{EgressError, ProxyBody};
use crate::gate::{Gate, Target};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use kiln_core::{connection_tokens, strip_hop_by_hop};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// One proxy instance's request handling, shared by all of its client connections.
pub(crate) struct Proxy {
    gate: Arc<Gate>,
    /// Pooled by `host:port`; every new pooled connection is opened by the gate, so an idle
    /// connection in the pool always leads to an address that was vetted when it was opened.
    client: Client<VettingConnector, Incoming>,
    shutdown: CancellationToken,
}

impl Proxy {
    pub(crate) fn new(gate: Arc<Gate>, shutdown: CancellationToken) -> Self {
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_timer(TokioTimer::new())
            .build(VettingConnector(gate.clone()));
        Proxy {
            gate,
            client,
            shutdown,
        }
    }

    /// Serves one client (Chromium) connection until it closes or the proxy shuts down. Each request
    /// on a kept-alive connection is vetted on its own: browsers send requests for different hosts
    /// over the same proxy connection.
    pub(crate) async fn serve(self: Arc<Self>, stream: TcpStream) {
        let shutdown = self.shutdown.clone();
        let service = service_fn(move |req| {
            let proxy = self.clone();
            async move { Ok::<_, Infallible>(proxy.handle(req).await) }
        });
        let connection = http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        tokio::select! {
            result = connection => {
                if let Err(error) = result {
                    tracing::debug!(%error, "proxy client connection ended with an error");
                }
            }
            () = shutdown.cancelled() => {}
        }
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<ProxyBody> {
        let result = if req.method() == Method::CONNECT {
            self.tunnel(req).await
        } else {
            self.forward(req).await
        };
        result.unwrap_or_else(|error| error.to_response())
    }

    /// `CONNECT host:port`: vet and connect first, so a refusal or a dead origin is an HTTP answer;
    /// then answer `200` and copy bytes both ways (TLS for https and wss passes through untouched).
    async fn tunnel(&self, req: Request<Incoming>) -> Result<Response<ProxyBody>, EgressError> {
        let authority = match (req.uri().scheme(), req.uri().authority()) {
            (None, Some(authority)) => authority,
            _ => return Err(EgressError::InvalidTarget("CONNECT needs host:port")),
        };
        let target = Target::parse(authority, None)?;
        let mut upstream = self.gate.dial(&target).await?;
        let on_upgrade = hyper::upgrade::on(req);
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let client = match on_upgrade.await {
                Ok(client) => client,
                Err(error) => {
                    tracing::debug!(%error, "a CONNECT tunnel did not open");
                    return;
                }
            };
            let mut client = TokioIo::new(client);
            tokio::select! {
                result = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "a CONNECT tunnel closed with an error");
                    }
                }
                () = shutdown.cancelled() => {}
            }
        });
        Ok(Response::new(empty()))
    }

    /// An absolute-form request (`GET http://host:port/path`): forwarded in origin form to a vetted
    /// address of `host`, streaming both bodies. Redirects are answered, not followed: Chromium follows
    /// them itself, through this proxy again.
    async fn forward(
        &self,
        mut req: Request<Incoming>,
    ) -> Result<Response<ProxyBody>, EgressError> {
        let uri = req.uri();
        let Some(scheme) = uri.scheme_str() else {
            return Err(EgressError::NotAProxyRequest);
        };
        // `ws://` is WebSocket's name for plain HTTP with an upgrade; some clients put it in the
        // request target.
        if !["http", "ws"]
            .iter()
            .any(|s| scheme.eq_ignore_ascii_case(s))
        {
            return Err(EgressError::UnsupportedScheme(scheme.to_ascii_lowercase()));
        }
        let authority = uri
            .authority()
            .ok_or(EgressError::InvalidTarget("no host"))?;
        let target = Target::parse(authority, Some(80))?;
        // RFC 9112 §3.2.2: a proxy replaces `Host` with the request target's authority (the two are
        // the same for browsers), without any user information.
        let host_header = match authority.port() {
            Some(port) => format!("{}:{port}", authority.host()),
            None => authority.host().to_owned(),
        };
        let path = uri.path_and_query().map_or("/", |pq| pq.as_str());
        let upstream_uri: Uri = format!("http://{target}{path}")
            .parse()
            .map_err(|_| EgressError::InvalidTarget("not a valid URL"))?;
        let host_header = HeaderValue::from_str(&host_header)
            .map_err(|_| EgressError::InvalidTarget("not a valid host"))?;

        let upgrade = upgrade_protocol(req.headers());
        let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
        let headers = req.headers_mut();
        strip_hop_by_hop(headers);
        headers.insert(header::HOST, host_header);
        if let Some(protocol) = upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(header::UPGRADE, protocol);
        }
        *req.uri_mut() = upstream_uri;
        *req.version_mut() = Version::HTTP_11;

        let response = self
            .client
            .request(req)
            .await
            .map_err(|error| client_error(&target, &error))?;

        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            let Some(client_upgrade) = client_upgrade else {
                return Err(EgressError::Upstream {
                    target: target.to_string(),
                    cause: "101 Switching Protocols without an upgrade request".to_owned(),
                });
            };
            return Ok(self.join_upgraded(client_upgrade, response));
        }
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        Ok(Response::from_parts(parts, body.boxed()))
    }

    /// Answers the client with the origin's `101` and, once both sides have switched, copies bytes
    /// both ways until either closes.
    fn join_upgraded(
        &self,
        client: hyper::upgrade::OnUpgrade,
        mut origin_response: Response<Incoming>,
    ) -> Response<ProxyBody> {
        let origin = hyper::upgrade::on(&mut origin_response);
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let (client, origin) = match tokio::try_join!(client, origin) {
                Ok(both) => both,
                Err(error) => {
                    tracing::debug!(%error, "a protocol upgrade did not complete");
                    return;
                }
            };
            let mut client = TokioIo::new(client);
            let mut origin = TokioIo::new(origin);
            tokio::select! {
                result = tokio::io::copy_bidirectional(&mut client, &mut origin) => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "an upgraded connection closed with an error");
                    }
                }
                () = shutdown.cancelled() => {}
            }
        });
        let (parts, _) = origin_response.into_parts();
        Response::from_parts(parts, empty())
    }
}

fn empty() -> ProxyBody {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

/// Maps a forwarding failure to the answer: the gate's own error when the connector failed (a
/// refusal stays a refusal), otherwise the origin broke the exchange.
fn client_error(target: &Target, error: &hyper_util::client::legacy::Error) -> EgressError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut causes = Vec::new();
    while let Some(cause) = source {
        if let Some(egress) = cause.downcast_ref::<EgressError>() {
            return egress.clone();
        }
        causes.push(cause.to_string());
        source = cause.source();
    }
    EgressError::Upstream {
        target: target.to_string(),
        cause: causes.join(": "),
    }
}

/// The protocol a request asks to switch to, if it asks (`Connection: upgrade` with `Upgrade: …`).
fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = connection_tokens(headers).any(|token| token.eq_ignore_ascii_case("upgrade"));
    asks.then(|| headers.get(header::UPGRADE).cloned())
        .flatten()
}

/// The forwarding client's connector: every new upstream connection goes through the gate, which
/// resolves once and connects to a vetted address. The client never resolves anything itself.
#[derive(Clone)]
struct VettingConnector(Arc<Gate>);

impl tower::Service<Uri> for VettingConnector {
    type Response = TokioIo<TcpStream>;
    type Error = EgressError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let gate = self.0.clone();
        Box::pin(async move {
            let authority = uri
                .authority()
                .ok_or(EgressError::InvalidTarget("no host"))?;
            let target = Target::parse(authority, Some(80))?;
            gate.dial(&target).await.map(TokioIo::new)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderName;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn strips_hop_by_hop_headers_and_those_connection_names() {
        let mut h = headers(&[
            ("connection", "keep-alive, X-Private"),
            ("x-private", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
            ("te", "trailers"),
            ("trailer", "x-checksum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("accept", "text/html"),
            ("cookie", "a=1"),
        ]);
        strip_hop_by_hop(&mut h);
        let mut left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["accept", "cookie"]);
    }

    #[test]
    fn recognises_upgrade_requests() {
        let check = |pairs: &[(&str, &str)], expected: Option<&str>| {
            let got = upgrade_protocol(&headers(pairs));
            assert_eq!(
                got.as_ref().map(|v| v.to_str().unwrap()),
                expected,
                "{pairs:?}"
            );
        };
        check(
            &[("connection", "Upgrade"), ("upgrade", "websocket")],
            Some("websocket"),
        );
        check(
            &[
                ("connection", "keep-alive, upgrade"),
                ("upgrade", "websocket"),
            ],
            Some("websocket"),
        );
        check(&[("upgrade", "websocket")], None);
        check(&[("connection", "upgrade")], None);
        check(&[("connection", "keep-alive")], None);
    }
}
