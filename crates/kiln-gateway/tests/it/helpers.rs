//! A gateway on a free port in front of a test origin that records what it receives, with a private
//! redis-server.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use kiln_core::{CacheKey, DeviceClass, DomainConfig, DomainSettings, Hostname, NormalizedUrl};
use kiln_gateway::{Application, Settings};
use kiln_store::{PageEntry, Store, StoreSettings, UsageCounts, UsageKind, usage_day};
use kiln_testkit::TestRedis;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// What the test origin saw of one request.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The connection it came on (the gateway's end of it).
    pub peer: std::net::SocketAddr,
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Clone, Default)]
pub struct OriginLog(Arc<Mutex<Vec<Seen>>>);

impl OriginLog {
    pub fn requests(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }
    pub fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

pub struct TestOrigin {
    pub port: u16,
    pub log: OriginLog,
    _stop: oneshot::Sender<()>,
}

pub const GOOGLEBOT: &str =
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
pub const GOOGLEBOT_SMARTPHONE: &str = "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

pub const PAGE: &str = "<!doctype html><html><head><title>Origin page</title></head><body><div id=app></div></body></html>";

async fn record(
    State(log): State<OriginLog>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    log.0.lock().unwrap().push(Seen {
        peer,
        method: method.clone(),
        uri: uri.clone(),
        headers,
        body: body.clone(),
    });
    match uri.path() {
        "/cookies" => Response::builder()
            .header("set-cookie", "a=1; Path=/; HttpOnly")
            .header("set-cookie", "b=2; Path=/")
            .header("set-cookie", "c=3; Path=/; Secure")
            .header("x-origin", "yes")
            .body(Body::from("cookies"))
            .unwrap(),
        "/redirect" => Response::builder()
            .status(StatusCode::FOUND)
            .header("location", "/elsewhere")
            .body(Body::empty())
            .unwrap(),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            "slow".into_response()
        }
        "/big" => {
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let stream =
                futures::stream::iter((0..80).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
            Response::new(Body::from_stream(stream))
        }
        "/hop" => Response::builder()
            .header("connection", "x-private")
            .header("x-private", "secret")
            .header("keep-alive", "timeout=5")
            .body(Body::from("hop"))
            .unwrap(),
        "/echo" => format!("{method} {} {}", uri, body.len()).into_response(),
        _ => ([("content-type", "text/html; charset=utf-8")], PAGE).into_response(),
    }
}

/// Switches to a toy protocol that echoes every byte, as a WebSocket server would switch to frames.
async fn upgrade_echo(mut req: axum::extract::Request) -> Response {
    if req.headers().get("upgrade").is_none_or(|v| v != "echo") {
        return StatusCode::BAD_REQUEST.into_response();
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            let (mut reader, mut writer) = tokio::io::split(hyper_util::rt::TokioIo::new(upgraded));
            let _ = tokio::io::copy(&mut reader, &mut writer).await;
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "upgrade")
        .header("upgrade", "echo")
        .body(Body::empty())
        .unwrap()
}

impl TestOrigin {
    pub async fn start() -> Self {
        let log = OriginLog::default();
        let router = Router::new()
            .route("/", get(record))
            .route("/upgrade", any(upgrade_echo))
            .fallback(any(record))
            .layer(axum::extract::DefaultBodyLimit::disable())
            .with_state(log.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        TestOrigin {
            port,
            log,
            _stop: stop,
        }
    }
}

pub struct TestApp {
    pub port: u16,
    pub admin_port: u16,
    pub redis: TestRedis,
    /// The Redis key prefix of this gateway's store and queue.
    pub prefix: String,
    pub store: Store,
    pub origin: TestOrigin,
    /// `shop.test` as published.
    pub domain: DomainConfig,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// The gateway's settings for a test, with `extra` variables added (or in place of the defaults).
pub fn settings_with(redis: &TestRedis, prefix: &str, extra: &[(&str, String)]) -> Settings {
    let mut vars: HashMap<&str, String> = HashMap::from([
        ("KILN_GATEWAY_LISTEN", "127.0.0.1:0".to_owned()),
        ("KILN_GATEWAY_ADMIN_LISTEN", "127.0.0.1:0".to_owned()),
        ("KILN_REDIS_URL", redis.url()),
        ("KILN_REDIS_PREFIX", prefix.to_owned()),
        ("KILN_REDIS_TIMEOUT_MS", "300".to_owned()),
        ("KILN_ORIGIN_TIMEOUT_MS", "1000".to_owned()),
        // Every port of 127.0.0.1, for every tenant: Kiln's own services stay refused anyway.
        (
            "KILN_ALLOWED_PRIVATE_NETS",
            "127.0.0.1:1-65535@*".to_owned(),
        ),
    ]);
    vars.extend(extra.iter().cloned());
    Settings::from_lookup(|name| vars.get(name).cloned()).unwrap()
}

pub fn domain(host: &str, origin_port: u16, settings: DomainSettings) -> DomainConfig {
    DomainConfig {
        id: uuid::Uuid::new_v4().to_string(),
        tenant_id: "tenant-1".into(),
        host: Hostname::parse(host).unwrap(),
        origin: format!("http://127.0.0.1:{origin_port}"),
        verified: true,
        settings,
        service_only: false,
    }
}

/// A gateway serving `shop.test` from a fresh test origin.
pub async fn spawn_app(domain_settings: DomainSettings) -> TestApp {
    spawn_app_with(domain_settings, &[]).await
}

/// [`spawn_app`] with more gateway settings.
pub async fn spawn_app_with(domain_settings: DomainSettings, extra: &[(&str, String)]) -> TestApp {
    let redis = TestRedis::start();
    let prefix = kiln_testkit::unique_prefix();
    let store = Store::connect(StoreSettings::new(redis.url(), &prefix))
        .await
        .unwrap();
    let origin = TestOrigin::start().await;
    let domain = domain("shop.test", origin.port, domain_settings);
    store.directory().put(&domain).await.unwrap();
    let app = Application::build(settings_with(&redis, &prefix, extra))
        .await
        .unwrap();
    let port = app.port();
    let admin_port = app.admin_port();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    // As a load balancer would: no traffic before the gateway says it is ready (it hears
    // render events).
    kiln_testkit::wait_until_ready(&client, admin_port, Duration::from_secs(30)).await;
    TestApp {
        port,
        admin_port,
        redis,
        prefix,
        store,
        origin,
        domain,
        client,
        stop: Some(stop),
        server: Some(server),
    }
}

impl TestApp {
    /// Shuts the gateway down gracefully, as SIGTERM would, and waits until it is gone.
    pub async fn shut_down(&mut self) {
        drop(self.stop.take());
        if let Some(server) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(10), server)
                .await
                .expect("the gateway did not stop")
                .unwrap()
                .unwrap();
        }
    }

    /// Stores a render of `path` on `shop.test` for `device`, as a worker would, fresh for a minute.
    pub async fn cache_page(&self, path: &str, device: DeviceClass, html: &str) {
        self.cache_page_for(path, device, html, 60, 0).await;
    }

    /// The normalised URL and cache key of `path` on `shop.test` for `device`.
    pub fn key(&self, path: &str, device: DeviceClass) -> (NormalizedUrl, CacheKey) {
        let url = NormalizedUrl::from_request(
            "http",
            &self.domain.host,
            path,
            &self.domain.settings.ignored_query_params,
        )
        .unwrap();
        let key = CacheKey::new(&self.domain.id, device, &url);
        (url, key)
    }

    /// Stores a render of `path`, fresh for `fresh_secs` and then stale for `stale_secs`.
    pub async fn cache_page_for(
        &self,
        path: &str,
        device: DeviceClass,
        html: &str,
        fresh_secs: u64,
        stale_secs: u64,
    ) -> CacheKey {
        let (url, key) = self.key(path, device);
        // Built from JSON so that fields added to the metadata later take their defaults here too.
        let meta = serde_json::from_value(serde_json::json!({
            "status": 200,
            "headers": [],
            "url": url.as_str(),
            "rendered_at": 0,
            "render_ms": 5,
        }))
        .unwrap();
        let entry = PageEntry {
            html: Bytes::from(html.to_owned()),
            meta,
        };
        self.store
            .pages()
            .put(&key, &entry, fresh_secs, stale_secs)
            .await
            .unwrap();
        key
    }

    /// The render queue this gateway pushes to, to see what it queued.
    pub async fn render_queue(&self) -> kiln_queue::RenderQueue {
        kiln_queue::RenderQueue::connect(&kiln_queue::QueueSettings::new(
            self.redis.url(),
            self.prefix.clone(),
            Duration::from_secs(2),
        ))
        .await
        .unwrap()
    }

    /// Republishes `shop.test` with `settings`, as the dashboard does when a customer saves them.
    pub async fn change_settings(&mut self, settings: DomainSettings) {
        self.domain.settings = settings;
        self.store.directory().put(&self.domain).await.unwrap();
    }

    /// The usage counters of `shop.test` for the last minute's days (a test running over midnight
    /// counts on two), as the dashboard reads them.
    pub async fn recent_usage(&self) -> UsageCounts {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let mut days = vec![usage_day(now - 60_000), usage_day(now)];
        days.dedup();
        let mut total = UsageCounts::default();
        for day in days {
            if let Some(counts) = self
                .store
                .usage()
                .for_day(&day)
                .await
                .unwrap()
                .remove(&self.domain.id)
            {
                for kind in UsageKind::ALL {
                    total.add(kind, counts.get(kind));
                }
            }
        }
        total
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// A request for `path` on `shop.test`, as the edge would send it for a person.
    pub fn person(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .header("host", "shop.test")
            .header("x-is-bot", "0")
            .header(
                "user-agent",
                "Mozilla/5.0 (X11; Linux x86_64) Chrome/130.0 Safari/537.36",
            )
    }

    /// A GET for `path` on `shop.test` that the edge took for a person's, from `user_agent`.
    pub fn person_as(&self, path: &str, user_agent: &str) -> reqwest::RequestBuilder {
        self.client
            .get(self.url(path))
            .header("host", "shop.test")
            .header("x-is-bot", "0")
            .header("user-agent", user_agent)
    }

    /// A request for `path` on `shop.test`, as the edge would send it for Googlebot.
    pub fn bot(&self, path: &str) -> reqwest::RequestBuilder {
        self.bot_as(path, GOOGLEBOT)
    }

    /// A request for `path` on `shop.test`, as the edge would send it for a bot it recognised.
    pub fn bot_as(&self, path: &str, user_agent: &str) -> reqwest::RequestBuilder {
        self.client
            .get(self.url(path))
            .header("host", "shop.test")
            .header("x-is-bot", "1")
            .header("user-agent", user_agent)
    }
}
