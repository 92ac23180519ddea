//! The render corpus: a local origin serving the fixture pages in `corpus/` (one per behaviour the
//! worker must get right), their APIs, a page that answers bots another page (`/cloaking`), the
//! built framework apps in `examples/frameworks/`, and an "internal" server on another loopback
//! address that no render may ever reach.
//!
//! Every server counts the requests it receives by path, so tests can tell what a render fetched.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::oneshot;

/// What the internal server answers; it must never appear in a render.
pub const INTERNAL_SECRET: &str = "KILN-INTERNAL-SECRET-7f3a";

/// Tokens (lowercase) in a User-Agent for which `/cloaking` answers its page for bots: Kiln's
/// renderer's own, and search and social bots'.
const CLOAKED_FOR: &[&str] = &[
    "kilnrender",
    "googlebot",
    "bingbot",
    "yandexbot",
    "duckduckbot",
    "baiduspider",
    "applebot",
    "facebookexternalhit",
    "twitterbot",
];

/// What `/cloaking` answers bots: another title, other headings, keyword-stuffed text and other
/// colours than the `cloaking` page people get.
const CLOAKED_PAGE: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Cheap chairs | best cheap chairs | buy cheap chairs online | chairs sale</title>
  <meta name="description" content="cheap chairs best chairs buy chairs chairs sale chairs discount">
  <style>
    body { margin: 0; font-family: Arial, sans-serif; background-color: rgb(255, 230, 0); color: rgb(200, 0, 0); }
    h1 { font-size: 72px; text-transform: uppercase; }
  </style>
</head>
<body>
  <h1>Best cheap chairs buy now</h1>
  <h2>Cheap chairs sale discount chairs</h2>
  <p id="bot-copy">cheap chairs cheap chairs cheap chairs best chairs buy chairs online chairs sale chairs
    discount chairs cheap chairs free shipping chairs cheap chairs best price chairs</p>
  <ul><li>cheap oak chairs</li><li>cheap ash chairs</li><li>cheap kitchen chairs</li><li>cheap office chairs</li></ul>
</body>
</html>
"#;

/// Requests received, by path.
#[derive(Clone, Default)]
pub struct Hits(Arc<Mutex<HashMap<String, usize>>>);

impl Hits {
    pub fn get(&self, path: &str) -> usize {
        self.lock().get(path).copied().unwrap_or(0)
    }

    /// Requests for paths starting with `prefix`.
    pub fn with_prefix(&self, prefix: &str) -> usize {
        self.lock()
            .iter()
            .filter(|(path, _)| path.starts_with(prefix))
            .map(|(_, n)| n)
            .sum()
    }

    pub fn total(&self) -> usize {
        self.lock().values().sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A server running on a tokio runtime until dropped.
pub struct TestCorpusOrigin {
    pub addr: SocketAddr,
    pub hits: Hits,
    _stop: oneshot::Sender<()>,
}

impl TestCorpusOrigin {
    pub fn base(&self) -> String {
        match self.addr.ip() {
            IpAddr::V6(ip) => format!("http://[{ip}]:{}", self.addr.port()),
            IpAddr::V4(ip) => format!("http://{ip}:{}", self.addr.port()),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    async fn serve(ip: IpAddr, app: Router<Hits>) -> TestCorpusOrigin {
        let hits = Hits::default();
        let app = app
            .layer(middleware::from_fn_with_state(hits.clone(), count))
            .with_state(hits.clone());
        let listener = tokio::net::TcpListener::bind(SocketAddr::new(ip, 0))
            .await
            .unwrap_or_else(|e| panic!("cannot listen on {ip}: {e}"));
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        TestCorpusOrigin {
            addr,
            hits,
            _stop: stop,
        }
    }

    /// The server on 127.0.0.2 standing for everything private: metadata services, admin panels,
    /// databases. Renders must never reach it.
    pub async fn start_internal() -> TestCorpusOrigin {
        let app = Router::new().fallback(|| async { INTERNAL_SECRET });
        TestCorpusOrigin::serve(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), app).await
    }

    /// The corpus origin on 127.0.0.1. `internal` is the server SSRF probes aim at.
    pub async fn start(internal: &TestCorpusOrigin) -> TestCorpusOrigin {
        let pages = Arc::new(Pages {
            dir: corpus_dir(),
            internal_base: internal.base(),
            internal_port: internal.addr.port(),
        });
        let internal_secret_url = internal.url("/secret");
        let app = Router::new()
            .route("/", get(|| async { Html(index()) }))
            .route("/{page}", get(page).with_state(pages.clone()))
            .route("/cloaking", get(cloaking).with_state(pages.clone()))
            .route("/corpus/{file}", get(script).with_state(pages.clone()))
            .route("/api/delay/{ms}/{name}", get(delayed))
            .route(
                "/api/chain/1",
                get(|| async { json(r#"{"name":"one","next":"/api/chain/2"}"#) }),
            )
            .route(
                "/api/chain/2",
                get(|| async {
                    tokio::time::sleep(Duration::from_millis(80)).await;
                    json(r#"{"name":"two","next":"/corpus/chained-extra.js"}"#)
                }),
            )
            .route("/api/poll", get(|| async { json(r#"{"ok":true}"#) }))
            .route("/api/beacon", post(|| async { StatusCode::NO_CONTENT }))
            .route("/api/pixel.gif", get(|| async { StatusCode::NO_CONTENT }))
            .route("/api/longpoll", get(hang))
            .route("/api/events", get(hang))
            .route("/ws", get(hang))
            .route("/slow/{file}", get(slow_asset))
            .route("/missing", get(missing).with_state(pages))
            .route(
                "/redirect-internal",
                get(move || async move { redirect(&internal_secret_url) }),
            )
            .route("/to-file", get(|| async { redirect("file:///etc/passwd") }));
        TestCorpusOrigin::serve(IpAddr::V4(Ipv4Addr::LOCALHOST), app).await
    }

    /// One built framework app (`examples/frameworks/<name>/dist`) at the root of its own origin,
    /// with the single-page-app fallback: unknown paths get `index.html`, missing files under
    /// `/api/` and `/assets/` get a 404.
    pub async fn start_framework(name: &str) -> TestCorpusOrigin {
        let dist = crate::repo_root()
            .join("examples/frameworks")
            .join(name)
            .join("dist");
        assert!(
            dist.join("index.html").is_file(),
            "{} is missing: run scripts/build-frameworks.sh",
            dist.display()
        );
        let dist = Arc::new(dist);
        let app = Router::new().fallback(move |request: Request| {
            let dist = dist.clone();
            async move { spa_file(&dist, request.uri().path()).await }
        });
        TestCorpusOrigin::serve(IpAddr::V4(Ipv4Addr::LOCALHOST), app).await
    }
}

/// The corpus pages, by name, for benchmarks and indexes.
pub fn page_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(corpus_dir())
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|n| n.strip_suffix(".html"))
                        .map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

struct Pages {
    dir: PathBuf,
    internal_base: String,
    internal_port: u16,
}

fn corpus_dir() -> PathBuf {
    crate::repo_root().join("crates/kiln-testkit/corpus")
}

fn index() -> String {
    let links: String = page_names()
        .iter()
        .map(|n| format!("<li><a href=\"/{n}\">{n}</a></li>"))
        .collect();
    format!(
        "<!DOCTYPE html><html><head><title>Corpus</title></head><body><ul>{links}</ul></body></html>"
    )
}

async fn page(State(pages): State<Arc<Pages>>, Path(name): Path<String>) -> Response {
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return StatusCode::NOT_FOUND.into_response();
    }
    match tokio::fs::read_to_string(pages.dir.join(format!("{name}.html"))).await {
        Ok(html) => Html(
            html.replace("{{INTERNAL}}", &pages.internal_base)
                .replace("{{INTERNAL_PORT}}", &pages.internal_port.to_string()),
        )
        .into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The corpus's `missing` page with the origin's own 404.
async fn missing(pages: State<Arc<Pages>>) -> Response {
    let mut response = page(pages, Path("missing".to_owned())).await;
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}

/// The `cloaking` page for people, another page for bots and Kiln's renderer: what a cloaking origin
/// does, for tests of the parity check.
async fn cloaking(pages: State<Arc<Pages>>, request: Request) -> Response {
    let agent = request
        .headers()
        .get(header::USER_AGENT)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let mut response = if CLOAKED_FOR.iter().any(|token| agent.contains(token)) {
        Html(CLOAKED_PAGE).into_response()
    } else {
        page(pages, Path("cloaking".to_owned())).await
    };
    response
        .headers_mut()
        .insert(header::VARY, header::HeaderValue::from_static("User-Agent"));
    response
}

async fn script(State(pages): State<Arc<Pages>>, Path(file): Path<String>) -> Response {
    let valid = file.ends_with(".js")
        && file
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if !valid {
        return StatusCode::NOT_FOUND.into_response();
    }
    match tokio::fs::read(pages.dir.join(&file)).await {
        Ok(body) => ([(header::CONTENT_TYPE, "text/javascript")], body).into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn delayed(Path((ms, name)): Path<(u64, String)>) -> Response {
    tokio::time::sleep(Duration::from_millis(ms.min(30_000))).await;
    let body = serde_json::json!({ "name": name, "ms": ms }).to_string();
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Images, fonts and media that take five seconds: a render that waits for them is too slow.
async fn slow_asset(Path(file): Path<String>) -> Response {
    tokio::time::sleep(Duration::from_secs(5)).await;
    let kind = match file.rsplit('.').next() {
        Some("png") => "image/png",
        Some("woff2") => "font/woff2",
        Some("mp4") => "video/mp4",
        Some("mp3") => "audio/mpeg",
        _ => "application/octet-stream",
    };
    ([(header::CONTENT_TYPE, kind)], vec![0u8; 1024]).into_response()
}

async fn hang() -> &'static str {
    tokio::time::sleep(Duration::from_secs(120)).await;
    "too late"
}

fn redirect(location: &str) -> Response {
    Response::builder()
        .status(StatusCode::FOUND)
        .header(header::LOCATION, location)
        .body(Body::empty())
        .expect("a static redirect is a valid response")
}

fn json(body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn spa_file(dist: &std::path::Path, path: &str) -> Response {
    let relative = path.trim_start_matches('/');
    let safe = !relative
        .split('/')
        .any(|part| part == ".." || part.starts_with('.'));
    let is_file_path = relative.starts_with("api/") || relative.starts_with("assets/");
    if safe
        && !relative.is_empty()
        && let Ok(body) = tokio::fs::read(dist.join(relative)).await
    {
        let kind = match relative.rsplit('.').next() {
            Some("js") => "text/javascript",
            Some("css") => "text/css",
            Some("json") => "application/json",
            Some("svg") => "image/svg+xml",
            Some("html") => "text/html; charset=utf-8",
            _ => "application/octet-stream",
        };
        return ([(header::CONTENT_TYPE, kind)], body).into_response();
    }
    if is_file_path || !safe {
        return StatusCode::NOT_FOUND.into_response();
    }
    match tokio::fs::read_to_string(dist.join("index.html")).await {
        Ok(html) => Html(html).into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn count(State(hits): State<Hits>, request: Request, next: Next) -> Response {
    *hits
        .lock()
        .entry(request.uri().path().to_owned())
        .or_default() += 1;
    next.run(request).await
}
