//! The gateway's HTTP/1.1 server: axum's router on hyper connections with the limits a public
//! listener needs, which `axum::serve` cannot set.
//!
//! A client must send each request head within the header timeout (idle time on a kept-alive
//! connection included), or it is disconnected: a slowloris client holds a connection for that
//! long at most. A head larger than [`MAX_HEAD_BYTES`] gets `431`, as do more than 100 header
//! lines. Protocol upgrades stay possible (the proxy joins WebSocket connections), and a shutdown
//! stops accepting, lets every connection finish its request in flight, and then returns.

use crate::linger::Lingering;
use crate::metrics::GatewayMetrics;
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

/// The largest request head (request line and headers) the gateway reads. The edge allows at most
/// four 8 KB header lines (nginx's `large_client_header_buffers`) and adds a few of its own.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Serves `router` on `listener` until `shutdown` completes, then lets open connections finish.
/// Each request carries the peer's address as axum's `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    header_timeout: Duration,
    metrics: Arc<GatewayMetrics>,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_header_size(MAX_HEAD_BYTES);
    // Connections watch `stopping`; each holds a `closed` receiver until it ends.
    let (stop, stopping) = watch::channel(());
    let (all_closed, closed) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(%error, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(req.map(Body::new))
        });
        let connection = http
            // Lingering, so that an answer given before the request's body was read (a `413`)
            // reaches a client still sending it (see `linger.rs`).
            .serve_connection(TokioIo::new(Lingering::new(stream)), service)
            .with_upgrades();
        let mut stopping = stopping.clone();
        let closed = closed.clone();
        let open = metrics.connection();
        tokio::spawn(async move {
            let _open = open;
            let mut connection = pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = stopping.changed() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = result {
                // Timeouts, malformed requests and clients going away: theirs, not ours.
                tracing::debug!(%error, client.addr = %peer, "connection ended with an error");
            }
            drop(closed);
        });
    }
    drop(listener);
    let _ = stop.send(());
    drop(closed);
    all_closed.closed().await;
}
