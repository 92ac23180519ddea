//! A small origin serving the fixture pages, counting the requests it receives per path.

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// Content inserted by script after a 300 ms timer and a fetch; an image that must be blocked; a
/// JSON-LD block that must survive.
const APP: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
  <title>Fixture app</title>
  <script type="application/ld+json">{"@context":"https://schema.org","@type":"Organization","name":"Kiln Fixture Org"}</script>
  <script src="/static/app.js"></script>
  <script>window.inlineRan = true;</script>
</head>
<body>
  <div id="app">loading</div>
  <img src="/img/logo.png" alt="logo">
</body>
</html>"#;

const APP_JS: &str = r#"setTimeout(function () {
  fetch('/api/data.json')
    .then(function (r) { return r.json(); })
    .then(function (data) { document.getElementById('app').textContent = data.message; });
}, 300);"#;

/// Holds readiness with `window.prerenderReady` only: the timer is longer than the tracker's 1 s
/// limit, so without the flag the page would count as ready long before the content arrives.
const LATE: &str = r#"<!DOCTYPE html>
<html><head><title>Late</title>
<script>
  window.prerenderReady = false;
  setTimeout(function () {
    document.getElementById('late').textContent = 'late content arrived';
    window.prerenderReady = true;
  }, 1500);
</script></head>
<body><h1>Late</h1><p id="late">not yet</p></body></html>"#;

const META_404: &str = r#"<!DOCTYPE html>
<html><head><title>Gone</title><meta name="prerender-status-code" content="404"></head>
<body><h1>This product no longer exists</h1></body></html>"#;

const MOVED_META: &str = r#"<!DOCTYPE html>
<html><head><title>Moved</title>
<meta name="prerender-status-code" content="301">
<meta name="prerender-header" content="Location: https://www.example.test/new-home">
<meta name="prerender-header" content="Set-Cookie: stolen=1">
<meta name="prerender-header" content="X-Robots-Tag: noindex">
</head><body><p>Moved to the new home</p></body></html>"#;

/// Polls forever: an interval with fetches that rewrite the DOM, a self-rescheduling timer chain, a
/// long-poll that never answers and an event stream.
const POLL: &str = r#"<!DOCTYPE html>
<html><head><title>Polling</title></head>
<body><div id="count">nothing yet</div>
<script>
  var n = 0;
  setInterval(function () {
    fetch('/api/poll').then(function (r) { return r.json(); }).then(function () {
      document.getElementById('count').textContent = 'polled ' + (++n);
    });
  }, 100);
  function tick() { setTimeout(tick, 200); }
  tick();
  fetch('/api/longpoll').then(function (r) { return r.text(); });
  new EventSource('/api/events');
</script></body></html>"#;

const VIEWPORT: &str = r#"<!DOCTYPE html>
<html><head><title>Viewport</title><meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><p id="probe"></p>
<script>
  document.getElementById('probe').textContent =
    'probe-width=' + window.innerWidth + '|probe-touch=' + navigator.maxTouchPoints + '|probe-ua=' + navigator.userAgent + '|';
</script></body></html>"#;

const EMPTY: &str = "<!DOCTYPE html><html><head><title>Empty</title></head><body>  </body></html>";

#[derive(Clone, Default)]
pub struct Hits(Arc<Mutex<HashMap<String, usize>>>);

pub struct Origin {
    pub base: String,
    hits: Hits,
    _stop: oneshot::Sender<()>,
}

impl Origin {
    pub async fn start() -> Origin {
        let hits = Hits::default();
        let app = Router::new()
            .route("/app", get(|| async { Html(APP) }))
            .route(
                "/static/app.js",
                get(|| async { ([(header::CONTENT_TYPE, "text/javascript")], APP_JS) }),
            )
            .route(
                "/api/data.json",
                get(|| async { json(r#"{"message":"Hello from the fixture API"}"#) }),
            )
            .route(
                "/img/logo.png",
                get(|| async { ([(header::CONTENT_TYPE, "image/png")], vec![0u8; 64]) }),
            )
            .route("/late", get(|| async { Html(LATE) }))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Html("<!DOCTYPE html><html><body><h1>A slow page</h1><p>It took its time to arrive.</p></body></html>")
                }),
            )
            .route("/meta404", get(|| async { Html(META_404) }))
            .route(
                "/missing",
                get(|| async {
                    (
                        StatusCode::NOT_FOUND,
                        Html("<!DOCTYPE html><html><body><h1>Not found here</h1></body></html>"),
                    )
                }),
            )
            .route(
                "/broken",
                get(|| async {
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        Html("<!DOCTYPE html><html><body><h1>Oops</h1></body></html>"),
                    )
                }),
            )
            .route("/moved-meta", get(|| async { Html(MOVED_META) }))
            .route(
                "/old-path",
                get(|| async {
                    Response::builder()
                        .status(StatusCode::MOVED_PERMANENTLY)
                        .header(header::LOCATION, "/app")
                        .body(Body::empty())
                        .unwrap()
                }),
            )
            .route("/poll", get(|| async { Html(POLL) }))
            .route("/api/poll", get(|| async { json(r#"{"ok":true}"#) }))
            .route(
                "/api/longpoll",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    "too late"
                }),
            )
            .route(
                "/api/events",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    "data: too late\n\n"
                }),
            )
            .route("/viewport", get(|| async { Html(VIEWPORT) }))
            .route("/empty", get(|| async { Html(EMPTY) }))
            .layer(middleware::from_fn_with_state(hits.clone(), count))
            .with_state(());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Origin {
            base,
            hits,
            _stop: stop,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// How many requests for `path` the origin received.
    pub fn hits(&self, path: &str) -> usize {
        self.hits.0.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

fn json(body: &'static str) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], body)
}

async fn count(State(hits): State<Hits>, request: Request, next: Next) -> Response {
    *hits
        .0
        .lock()
        .unwrap()
        .entry(request.uri().path().to_owned())
        .or_default() += 1;
    next.run(request).await
}
