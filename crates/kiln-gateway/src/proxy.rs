//! The human path: a streaming reverse proxy to the domain's origin.
//!
//! Every method, path, query and body is forwarded; end-to-end headers pass both ways (several
//! `Set-Cookie` included); hop-by-hop headers are dropped; status codes and redirects pass unchanged.
//! Bodies stream in both directions without buffering. The origin's host is resolved for every new
//! connection and refused when it resolves to one of Kiln's own services, or to a non-public address
//! that `KILN_ALLOWED_PRIVATE_NETS` does not grant to the domain's tenant at the origin's port, so a
//! DNS change cannot turn a customer domain into a door to Kiln's own network; an IP-literal origin
//! is held to the same policy (`kiln_origin`). Since a client vets addresses for one port, there is
//! one client per (tenant with grants of its own, port): each with its own connection pool, so
//! tenants never share a connection either.
//!
//! Protocol upgrades (WebSocket and the like) are passed through: the `Upgrade` request goes to the
//! origin, and when it answers `101 Switching Protocols` the two connections are joined byte for byte.

use crate::error::GatewayError;
use axum::body::Body;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, Uri};
use kiln_core::headers::{BOT_FAMILY, FORWARDED_FOR, FORWARDED_HOST, FORWARDED_PROTO, IS_BOT};
use kiln_core::{DomainConfig, EgressPolicy, strip_hop_by_hop};
use kiln_origin::{ClientSettings, OriginHttp};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

/// Which client a request goes through: the tenant when it has grants of its own, and the port.
type ClientKey = (Option<String>, u16);

pub struct OriginClient {
    policy: EgressPolicy,
    clients: RwLock<HashMap<ClientKey, Arc<OriginHttp<Body>>>>,
    settings: ClientSettings,
    response_timeout: Duration,
}

impl OriginClient {
    pub fn new(
        policy: EgressPolicy,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Self {
        OriginClient {
            policy,
            clients: RwLock::default(),
            settings: ClientSettings {
                connect_timeout,
                nodelay: true,
                pool_idle_timeout: Some(Duration::from_secs(30)),
                pool_max_idle_per_host: 64,
            },
            response_timeout,
        }
    }

    /// The client for connections to `port` on behalf of `tenant`, made on first use.
    fn client(&self, tenant: &str, port: u16) -> Arc<OriginHttp<Body>> {
        let tenant = self
            .policy
            .has_own_grants(tenant)
            .then(|| tenant.to_owned());
        let key = (tenant, port);
        if let Some(client) = self
            .clients
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return client.clone();
        }
        let mut clients = self.clients.write().unwrap_or_else(PoisonError::into_inner);
        let policy = self.policy.for_tenant(key.0.as_deref());
        clients
            .entry(key)
            .or_insert_with(|| Arc::new(kiln_origin::client(policy, port, &self.settings)))
            .clone()
    }

    /// Forwards `req` to `domain`'s origin and streams the answer back.
    pub async fn forward(
        &self,
        domain: &DomainConfig,
        req: Request<Body>,
        peer: SocketAddr,
    ) -> Result<Response<Body>, GatewayError> {
        let (mut parts, body) = req.into_parts();
        let upgrade = upgrade_request(&parts.headers);
        let client_upgrade = upgrade
            .as_ref()
            .and_then(|_| parts.extensions.remove::<hyper::upgrade::OnUpgrade>());
        let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let origin = domain.origin.trim_end_matches('/');
        let mut target = String::with_capacity(origin.len() + path_and_query.len());
        target.push_str(origin);
        target.push_str(path_and_query);
        // From the `String` itself: http takes its bytes over instead of copying them.
        let uri = Uri::try_from(target)
            .map_err(|_| GatewayError::BadRequest("the request target is not a valid URL"))?;
        let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
            Some("https") => 443,
            _ => 80,
        });
        let client = self.client(&domain.tenant_id, port);

        strip_hop_by_hop(&mut parts.headers);
        parts.headers.remove(IS_BOT);
        parts.headers.remove(BOT_FAMILY);
        let public_host = parts.headers.get(header::HOST).cloned();
        if let Some(host) = uri
            .authority()
            .and_then(|authority| HeaderValue::from_str(authority.as_str()).ok())
        {
            parts.headers.insert(header::HOST, host);
        }
        if let Some(public_host) = public_host {
            parts.headers.insert(FORWARDED_HOST, public_host);
        }
        append_forwarded_for(&mut parts.headers, peer);
        if !parts.headers.contains_key(FORWARDED_PROTO) {
            parts
                .headers
                .insert(FORWARDED_PROTO, HeaderValue::from_static("http"));
        }
        if let (Some(protocol), Some(_)) = (&upgrade, &client_upgrade) {
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            parts.headers.insert(header::UPGRADE, protocol.clone());
        }
        parts.uri = uri;
        parts.version = http::Version::HTTP_11;

        let request = Request::from_parts(parts, body);
        let response = self.send(&client, request).await?;
        if response.status() == http::StatusCode::SWITCHING_PROTOCOLS
            && let Some(client_upgrade) = client_upgrade
        {
            return Ok(join_upgraded(client_upgrade, response));
        }
        Ok(end_to_end(response))
    }

    /// Fetches the page at `url` of `domain` with `headers` and no body: not a client's request
    /// passed on but one of the gateway's own (the render service's fallback, which must not carry
    /// the bot's identity back to a customer's middleware). The same policy, clients and timeout
    /// as [`OriginClient::forward`].
    pub async fn fetch(
        &self,
        domain: &DomainConfig,
        url: &str,
        mut headers: HeaderMap,
    ) -> Result<Response<Body>, GatewayError> {
        let uri: Uri = url
            .parse()
            .map_err(|_| GatewayError::BadRequest("the page's URL is not a valid URL"))?;
        let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
            Some("https") => 443,
            _ => 80,
        });
        if let Some(authority) = uri.authority()
            && let Ok(host) = HeaderValue::from_str(authority.as_str())
        {
            headers.insert(header::HOST, host);
        }
        let client = self.client(&domain.tenant_id, port);
        let mut request = Request::new(Body::empty());
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        let response = self.send(&client, request).await?;
        Ok(end_to_end(response))
    }

    /// Sends `request` through `client`, within the time an origin has to start answering.
    async fn send(
        &self,
        client: &OriginHttp<Body>,
        request: Request<Body>,
    ) -> Result<Response<hyper::body::Incoming>, GatewayError> {
        tokio::time::timeout(self.response_timeout, client.request(request))
            .await
            .map_err(|_| GatewayError::OriginTimeout)?
            .map_err(|error| failure(&error))
    }
}

/// The origin's answer, less its hop-by-hop headers.
fn end_to_end(response: Response<hyper::body::Incoming>) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, Body::new(body))
}

/// The protocol a request asks to switch to, if it asks (`Connection: upgrade` with `Upgrade: …`).
fn upgrade_request(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    asks.then(|| headers.get(header::UPGRADE).cloned())
        .flatten()
}

/// Answers the client with the origin's `101` and, once both sides have switched, copies bytes both
/// ways until either closes.
fn join_upgraded(
    client: hyper::upgrade::OnUpgrade,
    mut origin_response: Response<hyper::body::Incoming>,
) -> Response<Body> {
    let origin = hyper::upgrade::on(&mut origin_response);
    tokio::spawn(async move {
        match tokio::try_join!(client, origin) {
            Ok((client, origin)) => {
                let mut client = hyper_util::rt::TokioIo::new(client);
                let mut origin = hyper_util::rt::TokioIo::new(origin);
                if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut origin).await {
                    tracing::debug!(%error, "upgraded connection closed with an error");
                }
            }
            Err(error) => tracing::debug!(%error, "a protocol upgrade did not complete"),
        }
    });
    let (parts, _) = origin_response.into_parts();
    Response::from_parts(parts, Body::empty())
}

fn append_forwarded_for(headers: &mut HeaderMap, peer: SocketAddr) {
    use std::fmt::Write;
    let existing = headers
        .get(FORWARDED_FOR)
        .and_then(|v| v.to_str().ok())
        .filter(|existing| !existing.trim().is_empty());
    // One string, handed to the header as it is (no `to_string`, `format!` and copy).
    let mut value = String::with_capacity(existing.map_or(0, |e| e.len() + 2) + 39);
    if let Some(existing) = existing {
        value.push_str(existing);
        value.push_str(", ");
    }
    let _ = write!(value, "{}", peer.ip());
    if let Ok(value) = HeaderValue::try_from(value) {
        headers.insert(FORWARDED_FOR, value);
    }
}

/// Why sending a request to the origin failed: the client's body when it was too large or broken
/// (malformed chunks, a client gone mid-upload), which is the client's error, else the origin.
fn failure(error: &hyper_util::client::legacy::Error) -> GatewayError {
    let first: &(dyn std::error::Error + 'static) = error;
    let causes: Vec<_> = std::iter::successors(Some(first), |cause| cause.source()).collect();
    if causes
        .iter()
        .any(|cause| cause.is::<http_body_util::LengthLimitError>())
    {
        return GatewayError::PayloadTooLarge;
    }
    // Only the request's body is an axum body here: the origin's answer is not read yet.
    if causes.iter().any(|cause| cause.is::<axum::Error>()) {
        return GatewayError::BadRequest("the request body is malformed or was cut short");
    }
    if kiln_origin::is_refusal(error) {
        return GatewayError::OriginRefused(kiln_runtime::error_chain(error));
    }
    GatewayError::OriginUnreachable(kiln_runtime::error_chain(error))
}
