//! A small origin serving the fixture pages, counting the requests it receives per path.

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
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

/// Says it is complete (`prerenderReady` false, then true) while its DOM never stops changing (a
/// clock ticking every 20 ms, by an interval, which readiness never waits for) and while its data
/// is still on its way: only the declaration can end the wait, and it must not end it before the
/// data arrives.
const DECLARED: &str = r#"<!DOCTYPE html>
<html><head><title>Declared</title>
<script>
  window.prerenderReady = false;
  setInterval(function () {
    document.getElementById('clock').textContent = String(Date.now());
  }, 20);
  setTimeout(function () {
    fetch('/api/slow.json')
      .then(function (r) { return r.json(); })
      .then(function (data) { document.getElementById('data').textContent = data.message; });
    window.prerenderReady = true;
  }, 100);
</script></head>
<body><h1>Declared</h1><p id="clock">0</p><p id="data">no data yet</p></body></html>"#;

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

/// The isolation probe (`isolation.rs`). It reports, as JSON in `#report`, what it finds of earlier
/// renders: cookies (as `document.cookie`, and as the Cookie header the origin received, which the
/// origin writes into the page), local and session storage, IndexedDB, Cache Storage, service
/// workers, `window.name`, `history.length` and the geolocation permission's state. With
/// `?write=<token>` it then leaves all of that behind itself (the origin adds an HttpOnly cookie
/// with its Set-Cookie header) and reports it again, read back, so that a test can tell the writes
/// took. With `?bundle=<url>` and `?style=<url>` it first loads that script and that stylesheet,
/// each twice. It holds the render with `window.prerenderReady` until the report is written.
const ISOLATION_PAGE: &str = r#"<!DOCTYPE html>
<html><head><title>Isolation probe</title>
<script>window.prerenderReady = false;</script>
</head>
<body><h1>Isolation probe</h1>
<p id="cookie-header" hidden>%COOKIE_HEADER%</p>
<pre id="report">pending</pre>
<script>
(async () => {
  const params = new URLSearchParams(location.search);
  const errors = [];
  const attempt = async (what, step, fallback) => {
    try { return await step(); } catch (e) { errors.push(what + ': ' + e); return fallback; }
  };
  const within = (ms, what, promise) => {
    let timer;
    const late = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(what + ' took longer than ' + ms + ' ms')), ms);
    });
    return Promise.race([promise, late]).finally(() => clearTimeout(timer));
  };
  const load = (tag, attributes) => new Promise((resolve, reject) => {
    const element = Object.assign(document.createElement(tag), attributes);
    element.onload = () => resolve(true);
    element.onerror = () => reject(new Error('could not load a ' + tag));
    document.head.appendChild(element);
  });
  const done = (request) => new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  const committed = (transaction) => new Promise((resolve, reject) => {
    transaction.oncomplete = resolve;
    transaction.onerror = () => reject(transaction.error);
  });
  const permission = async (name) => (await navigator.permissions.query({ name })).state;
  const registrations = async () => (await navigator.serviceWorker.getRegistrations())
    .map((registration) => new URL(registration.scope).pathname);

  const look = async () => ({
    cookie: document.cookie,
    cookieHeader: document.getElementById('cookie-header').textContent,
    localStorage: await attempt('localStorage', () => Object.keys(localStorage), []),
    sessionStorage: await attempt('sessionStorage', () => Object.keys(sessionStorage), []),
    indexedDb: await attempt('indexedDB.databases',
      async () => (await indexedDB.databases()).map((database) => database.name), []),
    caches: await attempt('caches.keys', () => caches.keys(), []),
    serviceWorkers: await attempt('getRegistrations', registrations, []),
    controlled: await attempt('controller', () => !!navigator.serviceWorker.controller, false),
    windowName: window.name,
    historyLength: history.length,
    geolocation: await attempt('geolocation', () => permission('geolocation'), 'unknown'),
  });

  const write = async (token) => {
    document.cookie = 'kiln_js=' + token + '; path=/; max-age=3600';
    localStorage.setItem('kiln-local', token);
    sessionStorage.setItem('kiln-session', token);
    window.name = 'kiln-window-' + token;
    const written = {};
    written.idbRecord = await attempt('indexedDB', async () => {
      const opening = indexedDB.open('kiln-db', 1);
      opening.onupgradeneeded = () => opening.result.createObjectStore('records');
      const db = await done(opening);
      const put = db.transaction('records', 'readwrite');
      put.objectStore('records').put(token, 'record');
      await committed(put);
      return done(db.transaction('records').objectStore('records').get('record'));
    }, null);
    written.cacheEntry = await attempt('caches', async () => {
      const cache = await caches.open('kiln-cache');
      await cache.put('/isolation/cached-entry', new Response(token));
      return (await cache.match('/isolation/cached-entry')).text();
    }, null);
    // The registration is there once its script has arrived. Its worker may never start: the
    // worker's CDP client (chromiumoxide) now and then leaves a service worker paused at its start,
    // and `register()` then never settles, so the page waits for the registration instead.
    await attempt('serviceWorker', async () => {
      navigator.serviceWorker.register('/isolation/sw.js')
        .catch((e) => errors.push('register: ' + e));
      const deadline = performance.now() + 5000;
      while ((await registrations()).length === 0) {
        if (performance.now() > deadline) {
          throw new Error('no service worker registration after 5000 ms');
        }
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    });
    // Denied at once, without a prompt; the full browser keeps the denial for the origin (the
    // headless shell keeps nothing a page's request causes).
    await attempt('geolocation', () => within(5000, 'the geolocation permission',
      new Promise((resolve) => navigator.geolocation.getCurrentPosition(resolve, resolve))));
    written.cookieEcho = await attempt('the cookie echo',
      async () => (await fetch('/isolation/cookie')).text(), null);
    written.state = await look();
    return written;
  };

  const report = { errors };
  for (const [param, tag, attribute] of [['bundle', 'script', 'src'], ['style', 'link', 'href']]) {
    const url = params.get(param);
    // Twice: the second load comes from the page's cache, as the origin lets any cache keep it.
    for (let i = 0; url && i < 2; i++) {
      const attributes = tag === 'link' ? { rel: 'stylesheet' } : {};
      attributes[attribute] = url;
      await attempt(param, () => load(tag, attributes));
    }
  }
  report.bundleRuns = window.kilnBundleRuns || 0;
  report.found = await look();
  const token = params.get('write');
  if (token) {
    report.wrote = await write(token);
  }
  document.getElementById('report').textContent = JSON.stringify(report);
  window.prerenderReady = true;
})();
</script></body></html>"#;

/// A service worker with nothing to do (no fetch handler: it changes nothing a page loads).
const ISOLATION_SW: &str = "self.addEventListener('install', function () {});";

/// A site's script and stylesheet bundles, which it lets any cache keep (`cacheable`).
const BUNDLE_JS: &str = "window.kilnBundleRuns = (window.kilnBundleRuns || 0) + 1;";
const BUNDLE_CSS: &str = "h1 { color: rgb(1, 2, 3); }";

#[derive(Clone, Default)]
pub struct Hits(Arc<Mutex<HashMap<String, usize>>>);

pub struct TestOrigin {
    pub base: String,
    hits: Hits,
    _stop: oneshot::Sender<()>,
}

impl TestOrigin {
    pub async fn start() -> TestOrigin {
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
            .route("/declared", get(|| async { Html(DECLARED) }))
            .route(
                "/api/slow.json",
                get(|| async {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    json(r#"{"message":"the data after the declaration"}"#)
                }),
            )
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
            .route("/isolation/page", get(isolation_page))
            .route(
                "/isolation/cookie",
                get(|headers: HeaderMap| async move {
                    (
                        [(header::CACHE_CONTROL, "no-store")],
                        cookie_header(&headers).to_owned(),
                    )
                }),
            )
            .route(
                "/isolation/sw.js",
                get(|| async { ([(header::CONTENT_TYPE, "text/javascript")], ISOLATION_SW) }),
            )
            .route(
                "/isolation/bundle.js",
                get(|| async { cacheable("text/javascript", BUNDLE_JS) }),
            )
            .route(
                "/isolation/bundle.css",
                get(|| async { cacheable("text/css", BUNDLE_CSS) }),
            )
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
        TestOrigin {
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

/// `body` as any cache may keep it for an hour, as a site's bundles are.
fn cacheable(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
}

fn json(body: &'static str) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], body)
}

/// The isolation probe, with the Cookie header the origin received written into it, and with
/// `?write=<token>` an HttpOnly cookie of the origin's own (a page's script cannot see it: only a
/// later request's Cookie header can).
async fn isolation_page(
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let cookies = cookie_header(&headers)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let mut response = Html(ISOLATION_PAGE.replace("%COOKIE_HEADER%", &cookies)).into_response();
    if let Some(token) = query.get("write") {
        let cookie = format!("kiln_http={token}; Path=/; Max-Age=3600; HttpOnly");
        response.headers_mut().insert(
            header::SET_COOKIE,
            HeaderValue::from_str(&cookie).expect("a token fit for a header"),
        );
    }
    response
}

fn cookie_header(headers: &HeaderMap) -> &str {
    headers
        .get(header::COOKIE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
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
