//! The floor of the gateway's stack, for `just bench`: the same HTTP server and client (hyper 1 on
//! tokio's multi-threaded runtime, mimalloc) doing the least a gateway could do, with nothing of
//! Kiln's on top — no routing, no logging, no metrics, no directory, no guards. What this costs per
//! request is what any gateway built on the design's fixed stack (axum is a router over hyper)
//! costs at least, so the benchmark can say how much of the gateway's CPU per request is its own
//! and how much the stack's, beside nginx doing the same job in the same run.
//!
//!   kiln-floor static ADDR FILE [HEADER: VALUE ...]   every request gets FILE's bytes with the
//!                                                     headers given (a cache hit's answer)
//!   kiln-floor proxy ADDR ORIGIN                      every request is forwarded to ORIGIN
//!                                                     (`http://host:port`) over a pooled,
//!                                                     kept-alive connection, bodies streamed
//!
//! Never deployed; not a product: it skips every check the gateway makes.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, Uri, header};
use http_body_util::BodyExt;
use http_body_util::{Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Body = BoxBody<Bytes, hyper::Error>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage =
        "usage: kiln-floor static ADDR FILE [HEADER: VALUE ...] | kiln-floor proxy ADDR ORIGIN";
    let (Some(mode), Some(addr)) = (args.first(), args.get(1)) else {
        anyhow::bail!(usage);
    };
    let listener = TcpListener::bind(addr).await?;
    match mode.as_str() {
        "static" => {
            let file = args.get(2).ok_or_else(|| anyhow::anyhow!(usage))?;
            let body = Bytes::from(std::fs::read(file)?);
            let mut headers = http::HeaderMap::new();
            for line in &args[3..] {
                let (name, value) = line
                    .split_once(':')
                    .ok_or_else(|| anyhow::anyhow!("a header is NAME: VALUE, not {line}"))?;
                headers.append(
                    HeaderName::try_from(name.trim())?,
                    HeaderValue::try_from(value.trim())?,
                );
            }
            let page = Arc::new((body, headers));
            serve(listener, move |_req: Request<Incoming>| {
                let page = page.clone();
                async move {
                    let mut response = Response::new(
                        Full::new(page.0.clone())
                            .map_err(|never: Infallible| match never {})
                            .boxed(),
                    );
                    response.headers_mut().clone_from(&page.1);
                    Ok::<_, Infallible>(response)
                }
            })
            .await
        }
        "proxy" => {
            let origin: Uri = args.get(2).ok_or_else(|| anyhow::anyhow!(usage))?.parse()?;
            let authority = origin
                .authority()
                .ok_or_else(|| anyhow::anyhow!("the origin has no host: {origin}"))?
                .clone();
            let host = HeaderValue::try_from(authority.as_str())?;
            let mut connector = HttpConnector::new();
            connector.set_nodelay(true);
            let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(64)
                .build(connector);
            serve(listener, move |req: Request<Incoming>| {
                let client = client.clone();
                let authority = authority.clone();
                let host = host.clone();
                async move {
                    let (mut parts, body) = req.into_parts();
                    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
                    parts.uri = Uri::builder()
                        .scheme("http")
                        .authority(authority)
                        .path_and_query(path)
                        .build()
                        .expect("the origin and a request's path make a URI");
                    parts.headers.insert(header::HOST, host);
                    let response = match client.request(Request::from_parts(parts, body)).await {
                        Ok(response) => response.map(BodyExt::boxed),
                        Err(_) => {
                            let mut response = Response::new(
                                Full::new(Bytes::from_static(b"origin unreachable\n"))
                                    .map_err(|never: Infallible| match never {})
                                    .boxed(),
                            );
                            *response.status_mut() = http::StatusCode::BAD_GATEWAY;
                            response
                        }
                    };
                    Ok::<_, Infallible>(response)
                }
            })
            .await
        }
        _ => anyhow::bail!(usage),
    }
}

/// Serves HTTP/1.1 with keep-alive on `listener`, one task per connection, as the gateway does.
async fn serve<F, Fut>(listener: TcpListener, handle: F) -> anyhow::Result<()>
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
{
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let handle = handle.clone();
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), hyper::service::service_fn(handle))
                .await;
        });
    }
}
