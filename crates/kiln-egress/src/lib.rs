//! The worker's egress proxy: every connection Chromium makes while rendering a customer's page goes
//! through it, and it refuses the ones that lead into Kiln's own network.
//!
//! # Why a proxy
//!
//! Render services are a classic server-side request forgery target (Rendertron's CVE-2020-8902 and
//! its iframe bypass, Gotenberg's `[::ffff:127.0.0.1]` and redirect bypasses): a page can make the
//! browser fetch anything, from documents, iframes, `fetch`/XHR and redirect hops to WebSockets. A
//! forward proxy sees all of them, and decides without a CDP round trip per request.
//!
//! * **It checks after resolution.** The proxy resolves each destination itself, keeps only public
//!   addresses (`kiln_core::is_public_ip`) and those the operator's `KILN_ALLOWED_PRIVATE_NETS`
//!   grants to the renders using this proxy (`kiln_core::EgressPolicy`, with ports and per tenant),
//!   never Kiln's own services (the policy's platform endpoints, and the proxy itself), and refuses
//!   the request when none is left. IP literals, including IPv4-mapped IPv6 forms such as `[::ffff:127.0.0.1]`, are checked as
//!   the address they denote.
//! * **It survives DNS rebinding.** The address that was vetted is the address connected to: the
//!   proxy never hands a name to anything that could resolve it a second time, so a name cannot answer
//!   "public" to the check and "127.0.0.1" to the connection.
//! * **It sees loopback and link-local traffic.** Chromium sends requests for loopback hosts around
//!   any `--proxy-server` unless the bypass list contains `<-loopback>`; [`EgressProxy::chromium_args`]
//!   sets it.
//!
//! Refused requests and tunnels get `403 Forbidden` with `X-Kiln-Egress: refused` ([`EGRESS_HEADER`])
//! and a one-line text body naming the host and why; the proxy logs a `warn` with host and port (never
//! a URL). Other answers the proxy writes itself carry the same header: `invalid` (400: not a proxy
//! request, or a scheme other than `http`), `unreachable` (502: the host does not resolve, nothing
//! listens, or the origin broke the exchange) and `timeout` (504: no connection within
//! [`EgressSettings::connect_timeout`]).
//!
//! # Protocol
//!
//! HTTP/1.1 on a loopback listener. `CONNECT host:port` opens a byte tunnel (https and wss);
//! absolute-form requests (`GET http://host:port/path`, any method) are forwarded in origin form with
//! hop-by-hop headers removed, bodies streaming both ways, connections kept alive and upstream
//! connections pooled per `host:port`. `Connection: upgrade` requests (plain `ws://`) are joined byte
//! for byte after the origin's `101`. Redirects are passed back, never followed: Chromium follows them
//! through the proxy again, so every hop is checked.
//!
//! Not covered here, and the caller's job: `file:`, `data:` and other URLs that never reach a proxy
//! (block them in the browser), and UDP (WebRTC), which [`EgressProxy::chromium_args`] disables.
//!
//! Architecture invariant: this crate owns the egress decision for rendered pages; the address
//! classification itself lives in `kiln-core::net`, shared with the gateway.

mod error;
mod gate;
mod resolve;
mod serve;

pub use error::EGRESS_HEADER;
pub use resolve::{Resolve, Resolving, SystemResolver};

use gate::{Counters, Gate};
use kiln_core::EgressPolicy;
use serve::Proxy;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::PoisonError;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

/// How an [`EgressProxy`] listens and what it lets through.
#[derive(Clone, Debug)]
pub struct EgressSettings {
    /// Where to listen; must be a loopback address, since anything able to reach the proxy can use it
    /// to reach the allowed networks. Port 0 picks a free port. Default `127.0.0.1:0`.
    pub listen: SocketAddr,
    /// What may be reached (`KILN_ALLOWED_PRIVATE_NETS` as it applies to the renders using this
    /// proxy, and Kiln's own endpoints, which never may; the proxy adds its own address). Default:
    /// the public internet only.
    pub policy: EgressPolicy,
    /// The limit for resolving a destination and opening the connection to it, together. Default 5 s.
    pub connect_timeout: Duration,
    /// Endpoints that come and go while the proxy runs (a browser's DevTools port), refused like the
    /// policy's platform endpoints. Default: none.
    pub refusals: Refusals,
}

/// A changing set of endpoints every proxy sharing it refuses, such as the DevTools ports of the
/// browsers the proxies serve: a page reaching one could drive the browser. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Refusals(Arc<std::sync::RwLock<std::collections::HashSet<SocketAddr>>>);

impl Refusals {
    /// Refuses `addr` from now on, until [`remove`](Self::remove)d.
    pub fn insert(&self, addr: SocketAddr) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(addr);
    }

    pub fn remove(&self, addr: SocketAddr) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&addr);
    }

    /// Whether `addr` is refused (an unspecified address stands for every loopback one).
    pub fn contains(&self, addr: SocketAddr) -> bool {
        let set = self.0.read().unwrap_or_else(PoisonError::into_inner);
        if set.is_empty() {
            return false;
        }
        let ip = addr.ip().to_canonical();
        set.contains(&SocketAddr::new(ip, addr.port()))
            || (ip.is_loopback()
                && set.iter().any(|r| {
                    r.port() == addr.port() && (r.ip().is_loopback() || r.ip().is_unspecified())
                }))
    }
}

impl Default for EgressSettings {
    fn default() -> Self {
        EgressSettings {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            policy: EgressPolicy::default(),
            connect_timeout: Duration::from_secs(5),
            refusals: Refusals::default(),
        }
    }
}

/// What the proxy has decided since it started. Each count is of destination connections: one per
/// `CONNECT` and one per new upstream connection for forwarded requests (a kept-alive upstream
/// connection serves later requests to the same `host:port` without a new decision).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EgressStats {
    /// Destinations with at least one address Kiln may reach (whether or not the connection then
    /// succeeded).
    pub allowed: u64,
    /// Destinations refused because every address was non-public and outside the allowed networks.
    pub refused: u64,
    /// Destinations that could not be resolved, or whose allowed addresses could not be reached in
    /// time.
    pub failed: u64,
}

/// A running egress proxy. Dropping it (or [`EgressProxy::shutdown`]) stops accepting and closes
/// every open client connection and tunnel.
pub struct EgressProxy {
    addr: SocketAddr,
    gate: Arc<Gate>,
    accept: JoinHandle<()>,
    stop_on_drop: DropGuard,
}

impl std::fmt::Debug for EgressProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EgressProxy")
            .field("addr", &self.addr)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl EgressProxy {
    /// Binds `settings.listen` and starts serving, resolving names with the system resolver.
    pub async fn start(settings: EgressSettings) -> io::Result<EgressProxy> {
        Self::start_with_resolver(settings, Arc::new(SystemResolver)).await
    }

    /// Like [`EgressProxy::start`], resolving names with `resolver` (tests use it to give hostile
    /// answers).
    pub async fn start_with_resolver(
        settings: EgressSettings,
        resolver: Arc<dyn Resolve>,
    ) -> io::Result<EgressProxy> {
        Self::check_listen(&settings)?;
        let listener = TcpListener::bind(settings.listen).await?;
        let addr = listener.local_addr()?;
        Ok(Self::serve(listener, settings, resolver, &[addr]))
    }

    /// Starts one proxy per settings, each refusing every proxy of the group as well as its own
    /// policy's refusals: a page must not reach a proxy that grants more than its own does.
    pub async fn start_group(settings: Vec<EgressSettings>) -> io::Result<Vec<EgressProxy>> {
        let mut listeners = Vec::with_capacity(settings.len());
        for one in &settings {
            Self::check_listen(one)?;
            listeners.push(TcpListener::bind(one.listen).await?);
        }
        let addrs = listeners
            .iter()
            .map(TcpListener::local_addr)
            .collect::<io::Result<Vec<_>>>()?;
        Ok(listeners
            .into_iter()
            .zip(settings)
            .map(|(listener, one)| Self::serve(listener, one, Arc::new(SystemResolver), &addrs))
            .collect())
    }

    fn check_listen(settings: &EgressSettings) -> io::Result<()> {
        if settings.listen.ip().is_loopback() {
            return Ok(());
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "the egress proxy must listen on a loopback address, not {}",
                settings.listen
            ),
        ))
    }

    fn serve(
        listener: TcpListener,
        settings: EgressSettings,
        resolver: Arc<dyn Resolve>,
        proxies: &[SocketAddr],
    ) -> EgressProxy {
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let gate = Arc::new(Gate {
            // A page must not use a proxy to reach a proxy.
            policy: settings.policy.with_platform(proxies.iter().copied()),
            connect_timeout: settings.connect_timeout,
            refusals: settings.refusals,
            resolver,
            counters: Counters::default(),
        });
        let stop = CancellationToken::new();
        let proxy = Arc::new(Proxy::new(gate.clone(), stop.clone()));
        let accept = tokio::spawn(accept_loop(listener, proxy, stop.clone()));
        tracing::info!(egress.addr = %addr, "egress proxy listening");
        EgressProxy {
            addr,
            gate,
            accept,
            stop_on_drop: stop.drop_guard(),
        }
    }

    /// The address the proxy listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The proxy as a URL, `http://127.0.0.1:<port>`.
    pub fn proxy_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The Chromium flags that send all of a browser's traffic through this proxy:
    /// `--proxy-server`, `--proxy-bypass-list=<-loopback>` (without it Chromium connects to loopback
    /// hosts directly) and a WebRTC policy that keeps UDP, which no HTTP proxy carries, from going
    /// around it.
    pub fn chromium_args(&self) -> Vec<String> {
        vec![
            format!("--proxy-server={}", self.proxy_url()),
            "--proxy-bypass-list=<-loopback>".to_owned(),
            "--force-webrtc-ip-handling-policy=disable_non_proxied_udp".to_owned(),
        ]
    }

    /// The decisions made so far.
    pub fn stats(&self) -> EgressStats {
        let counters = &self.gate.counters;
        EgressStats {
            allowed: counters.allowed.load(Ordering::Relaxed),
            refused: counters.refused.load(Ordering::Relaxed),
            failed: counters.failed.load(Ordering::Relaxed),
        }
    }

    /// Stops accepting, closes open connections and tunnels, and waits for the listener to close.
    pub async fn shutdown(self) {
        let EgressProxy {
            accept,
            stop_on_drop,
            ..
        } = self;
        drop(stop_on_drop);
        if let Err(error) = accept.await {
            tracing::warn!(%error, "the egress proxy's accept loop failed");
        }
    }
}

async fn accept_loop(listener: TcpListener, proxy: Arc<Proxy>, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(proxy.clone().serve(stream));
            }
            Err(error) => {
                // Usually out of file descriptors: wait a moment rather than spin.
                tracing::warn!(%error, "the egress proxy could not accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    tracing::info!("egress proxy stopped");
}
