//! The gateway's HTTP/1.1 server: the request handler on hyper connections with the limits a public
//! listener needs, which `axum::serve` cannot set.
//!
//! Every request on the public listener goes to one handler (`routes::handle`), so it is called
//! straight from hyper's service rather than through an axum `Router`: a router with nothing but a
//! fallback still matched each path, boxed a clone of its route and wrapped the answer's future,
//! about a twentieth of a cache hit's CPU time (issue 22). The handler is written with axum's types,
//! and the admin listener is an axum `Router`.
//!
//! A client must send each request head within the header timeout (idle time on a kept-alive
//! connection included), or it is disconnected: a slowloris client holds a connection for that
//! long at most. A head larger than [`MAX_HEAD_BYTES`] gets `431`, as do more than 100 header
//! lines. Protocol upgrades stay possible (the proxy joins WebSocket connections), and a shutdown
//! stops accepting, lets every connection finish its request in flight, and then returns.

use crate::linger::Lingering;
use crate::metrics::GatewayMetrics;
use axum::body::Body;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The largest request head (request line and headers) the gateway reads. The edge allows at most
/// four 8 KB header lines (nginx's `large_client_header_buffers`) and adds a few of its own.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Serves `handler` on `listener` until `shutdown` completes, then lets open connections finish.
/// The handler is given each request with its peer's address.
pub async fn serve<H, F>(
    listener: TcpListener,
    handler: H,
    header_timeout: Duration,
    metrics: Arc<GatewayMetrics>,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(http::Request<Body>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
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
        let handler = handler.clone();
        let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
            // Boxed: hyper keeps a connection's request future in an allocation of its own size
            // for as long as the connection is open, and an idle kept-alive connection should not
            // hold the handler's (some kilobytes) between requests.
            let answer = Box::pin(handler(req.map(Body::new), peer));
            async move { Ok::<_, Infallible>(answer.await) }
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
