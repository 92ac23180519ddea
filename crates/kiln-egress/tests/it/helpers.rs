//! A proxy on a free loopback port with a reqwest client that uses it, a raw TCP client for what
//! reqwest cannot send, origins on loopback addresses that record every connection they accept, and a
//! resolver that gives scripted (and hostile) answers.

use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use kiln_core::EgressPolicy;
use kiln_egress::{EgressProxy, EgressSettings, Resolve, Resolving};
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};

/// Fails the test instead of hanging when something never arrives.
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The proxy under test and a client that sends everything through it.
pub struct TestProxy {
    pub proxy: EgressProxy,
    pub client: reqwest::Client,
}

impl TestProxy {
    /// A proxy that allows `allowed` (a `KILN_ALLOWED_PRIVATE_NETS` value) and uses the system
    /// resolver.
    pub async fn start(allowed: &str) -> Self {
        Self::start_with(settings(allowed), None).await
    }

    pub async fn start_with_resolver(allowed: &str, resolver: Arc<dyn Resolve>) -> Self {
        Self::start_with(settings(allowed), Some(resolver)).await
    }

    pub async fn start_with(settings: EgressSettings, resolver: Option<Arc<dyn Resolve>>) -> Self {
        let proxy = match resolver {
            Some(resolver) => EgressProxy::start_with_resolver(settings, resolver).await,
            None => EgressProxy::start(settings).await,
        }
        .expect("the proxy starts");
        let client = reqwest::Client::builder()
            .proxy(reqwest::Proxy::all(proxy.proxy_url()).unwrap())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        TestProxy { proxy, client }
    }

    /// A plain TCP connection to the proxy.
    pub async fn raw(&self) -> Raw {
        Raw {
            stream: TcpStream::connect(self.proxy.addr()).await.unwrap(),
            buf: Vec::new(),
        }
    }
}

pub fn settings(allowed: &str) -> EgressSettings {
    EgressSettings {
        policy: EgressPolicy::parse(allowed).unwrap().for_tenant(None),
        ..EgressSettings::default()
    }
}

/// A response head (and body, when asked for) read off a raw connection.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: String,
}

/// A raw TCP client, for requests reqwest would never send (CONNECT by hand, origin-form, ftp://)
/// and for several requests on one proxy connection.
pub struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    pub async fn send(&mut self, bytes: &str) {
        self.stream.write_all(bytes.as_bytes()).await.unwrap();
    }

    async fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 8192];
        let n = within("bytes from the proxy", self.stream.read(&mut chunk))
            .await
            .unwrap();
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    /// Reads a response head, leaving anything after it unread.
    pub async fn head(&mut self) -> RawResponse {
        let end = loop {
            if let Some(at) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            assert_ne!(
                self.fill().await,
                0,
                "the proxy closed before a response head"
            );
        };
        let head = String::from_utf8(self.buf.drain(..end + 4).collect()).unwrap();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        RawResponse {
            status,
            headers,
            body: String::new(),
        }
    }

    /// Reads a response with a `Content-Length` body (or none).
    pub async fn response(&mut self) -> RawResponse {
        let mut response = self.head().await;
        let length = response
            .headers
            .get("content-length")
            .map_or(0, |v| v.parse().unwrap());
        response.body = self.exactly(length).await;
        response
    }

    /// Reads exactly `n` bytes.
    pub async fn exactly(&mut self, n: usize) -> String {
        while self.buf.len() < n {
            assert_ne!(self.fill().await, 0, "the connection closed early");
        }
        String::from_utf8(self.buf.drain(..n).collect()).unwrap()
    }

    /// Whether the other side closes the connection (rather than sending more).
    pub async fn closes(&mut self) -> bool {
        self.buf.is_empty() && self.fill().await == 0
    }
}

/// What an origin saw of one request.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
}

type OriginBody = BoxBody<Bytes, Infallible>;

/// A small HTTP origin on one loopback address. Paths: `/echo` (answers the request body, recorded
/// in `seen`), `/stream` (sends `first`, then `second` only after `release`), `/upload` (reports each
/// body chunk on `uploads` as it arrives), `/upgrade` (switches to an echo protocol), `/redirect`.
/// Every response says which address answered in `x-origin`.
pub struct TestOrigin {
    pub addr: SocketAddr,
    /// TCP connections accepted, whatever happened on them.
    pub connections: Arc<AtomicUsize>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub release: Arc<Notify>,
    pub uploads: tokio::sync::Mutex<mpsc::UnboundedReceiver<Bytes>>,
    pub page: Arc<Mutex<String>>,
}

impl TestOrigin {
    pub async fn start(ip: IpAddr) -> Self {
        Self::start_at(SocketAddr::new(ip, 0)).await.unwrap()
    }

    pub async fn start_at(addr: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let connections = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let release = Arc::new(Notify::new());
        let (uploads_tx, uploads) = mpsc::unbounded_channel();
        let page = Arc::new(Mutex::new(String::new()));
        let state = OriginState {
            addr,
            seen: seen.clone(),
            release: release.clone(),
            uploads: uploads_tx,
            page: page.clone(),
        };
        let counter = connections.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let state = state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(state.answer(req).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Ok(TestOrigin {
            addr,
            connections,
            seen,
            release,
            uploads: tokio::sync::Mutex::new(uploads),
            page,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub async fn next_upload(&self) -> Bytes {
        within(
            "an upload chunk at the origin",
            self.uploads.lock().await.recv(),
        )
        .await
        .unwrap()
    }
}

#[derive(Clone)]
struct OriginState {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    release: Arc<Notify>,
    uploads: mpsc::UnboundedSender<Bytes>,
    page: Arc<Mutex<String>>,
}

fn full(body: impl Into<Bytes>) -> OriginBody {
    Full::new(body.into()).boxed()
}

impl OriginState {
    async fn answer(&self, mut req: Request<Incoming>) -> Response<OriginBody> {
        let mut response = match req.uri().path() {
            "/stream" => {
                let (tx, rx) = futures::channel::mpsc::unbounded::<Bytes>();
                tx.unbounded_send(Bytes::from_static(b"first")).unwrap();
                let release = self.release.clone();
                tokio::spawn(async move {
                    release.notified().await;
                    let _ = tx.unbounded_send(Bytes::from_static(b"second"));
                });
                let frames = rx.map(|chunk| Ok::<_, Infallible>(Frame::data(chunk)));
                Response::new(BodyExt::boxed(StreamBody::new(frames)))
            }
            "/upload" => {
                let mut body = req.into_body();
                let mut all = Vec::new();
                while let Some(Ok(frame)) = body.frame().await {
                    if let Ok(data) = frame.into_data() {
                        all.extend_from_slice(&data);
                        let _ = self.uploads.send(data);
                    }
                }
                Response::new(full(all))
            }
            "/upgrade" => {
                let on_upgrade = hyper::upgrade::on(&mut req);
                tokio::spawn(async move {
                    if let Ok(upgraded) = on_upgrade.await {
                        let mut io = TokioIo::new(upgraded);
                        let mut buf = [0u8; 1024];
                        while let Ok(n @ 1..) = io.read(&mut buf).await {
                            if io.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                });
                Response::builder()
                    .status(StatusCode::SWITCHING_PROTOCOLS)
                    .header("connection", "upgrade")
                    .header("upgrade", "kiln-echo")
                    .body(full(""))
                    .unwrap()
            }
            "/page" => {
                self.seen.lock().unwrap().push(Seen {
                    method: req.method().clone(),
                    uri: req.uri().clone(),
                    headers: req.headers().clone(),
                    body: Bytes::new(),
                });
                let page = self.page.lock().unwrap().clone();
                Response::builder()
                    .header("content-type", "text/html; charset=utf-8")
                    .body(full(page))
                    .unwrap()
            }
            "/redirect" => Response::builder()
                .status(StatusCode::FOUND)
                .header("location", "http://127.0.0.2/elsewhere")
                .body(full(""))
                .unwrap(),
            _ => {
                let (parts, body) = req.into_parts();
                let body = body.collect().await.unwrap().to_bytes();
                self.seen.lock().unwrap().push(Seen {
                    method: parts.method,
                    uri: parts.uri,
                    headers: parts.headers,
                    body: body.clone(),
                });
                Response::builder()
                    .header("keep-alive", "timeout=5")
                    .header("x-from-origin", "yes")
                    .body(full(body))
                    .unwrap()
            }
        };
        response
            .headers_mut()
            .insert("x-origin", self.addr.ip().to_string().parse().unwrap());
        response
    }
}

/// A raw TCP origin: greets every connection with `hello\n`, then echoes what it receives.
pub struct TestTcpOrigin {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
}

impl TestTcpOrigin {
    pub async fn start(ip: IpAddr) -> Self {
        let listener = TcpListener::bind(SocketAddr::new(ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    stream.write_all(b"hello\n").await?;
                    let (mut read, mut write) = stream.split();
                    tokio::io::copy(&mut read, &mut write).await?;
                    Ok::<_, io::Error>(())
                });
            }
        });
        TestTcpOrigin { addr, connections }
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// A port on 127.0.0.1 where nothing listens (nothing did when asked).
pub fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A resolver with scripted answers: each lookup of a name takes the next answer in its script, the
/// last one repeating. Unknown names do not resolve; names marked `hang` never answer.
#[derive(Default)]
pub struct ScriptedResolver {
    answers: HashMap<String, Vec<Vec<IpAddr>>>,
    hanging: Vec<String>,
    lookups: Mutex<HashMap<String, usize>>,
}

impl ScriptedResolver {
    pub fn answer(mut self, name: &str, answers: &[&[&str]]) -> Self {
        let answers = answers
            .iter()
            .map(|answer| answer.iter().map(|s| ip(s)).collect())
            .collect();
        self.answers.insert(name.to_owned(), answers);
        self
    }

    pub fn hang(mut self, name: &str) -> Self {
        self.hanging.push(name.to_owned());
        self
    }

    /// How many times `name` was looked up.
    pub fn lookups(&self, name: &str) -> usize {
        self.lookups.lock().unwrap().get(name).copied().unwrap_or(0)
    }
}

impl Resolve for ScriptedResolver {
    fn lookup<'a>(&'a self, host: &'a str) -> Resolving<'a> {
        Box::pin(async move {
            let count = {
                let mut lookups = self.lookups.lock().unwrap();
                let count = lookups.entry(host.to_owned()).or_default();
                *count += 1;
                *count
            };
            if self.hanging.iter().any(|h| h == host) {
                std::future::pending::<()>().await;
            }
            let script = self.answers.get(host).ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, "no such host (scripted)")
            })?;
            Ok(script[(count - 1).min(script.len() - 1)].clone())
        })
    }
}

/// Loads `url` in a headless Chromium started with `args`, lets its scripts run for a few (virtual)
/// seconds and returns the serialised DOM.
pub async fn chromium_dump_dom(args: &[String], url: &str) -> String {
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).is_file())
        .expect("Chromium is not installed (/usr/bin/chromium); the worker's tests need it too");
    let profile = std::env::temp_dir().join(format!(
        "kiln-egress-chromium-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let output = tokio::process::Command::new(chromium)
        .args(kiln_testkit::CHROMIUM_TEST_FLAGS)
        .arg("--virtual-time-budget=3000")
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg("--dump-dom")
        .arg(url)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("Chromium finished within a minute")
        .expect("Chromium ran");
    let _ = std::fs::remove_dir_all(&profile);
    String::from_utf8_lossy(&output.stdout).into_owned()
}
