//! `/metrics` on the admin port: every request is counted by class and cache status, renders
//! queued and the queue's depth and age show, connections are counted while open, and Redis
//! failures are counted.

use crate::helpers::{TestApp, spawn_app};
use kiln_core::{DeviceClass, DomainSettings};
use reqwest::{Method, StatusCode};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The gateway's metrics, scraped now.
pub(crate) async fn scrape(gw: &TestApp) -> Metrics {
    let response = gw
        .client
        .get(format!("http://127.0.0.1:{}/metrics", gw.admin_port))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "{:?}",
        response.headers()
    );
    Metrics(response.text().await.unwrap())
}

pub struct Metrics(pub String);

impl Metrics {
    /// The value of the sample `series` (name and labels exactly as written), if there is one.
    pub fn value(&self, series: &str) -> Option<f64> {
        kiln_testkit::metric_value(&self.0, series)
    }

    pub fn expect(&self, series: &str) -> f64 {
        self.value(series)
            .unwrap_or_else(|| panic!("no `{series}` in:\n{}", self.0))
    }
}

#[tokio::test]
async fn requests_are_counted_by_class_and_cache_status() {
    let gw = spawn_app(DomainSettings {
        // No worker runs here: a missing page is queued and its bot gets the origin's page soon.
        bot_wait_ms: 300,
        ..Default::default()
    })
    .await;
    let before = scrape(&gw).await;
    assert_eq!(
        before.expect(r#"kiln_build_info{service="gateway",version="0.0.0"}"#),
        1.0
    );
    assert!(before.expect("process_resident_memory_bytes") > 1_000_000.0);
    assert!(before.expect("process_open_fds") > 3.0);
    for class in ["person", "bot"] {
        for cache in ["none", "hit", "stale", "miss", "bypass"] {
            assert_eq!(
                before.expect(&format!(
                    r#"kiln_gateway_requests_total{{class="{class}",cache="{cache}"}}"#
                )),
                0.0
            );
        }
    }

    for _ in 0..3 {
        let page = gw.person(Method::GET, "/products/1").send().await.unwrap();
        assert_eq!(page.status(), StatusCode::OK);
    }
    gw.cache_page(
        "/cached",
        DeviceClass::Desktop,
        "<html><body>cached</body></html>",
    )
    .await;
    for _ in 0..2 {
        let hit = gw.bot("/cached").send().await.unwrap();
        assert_eq!(hit.headers()["x-kiln-cache"], "HIT");
    }
    let miss = gw.bot("/not-rendered-yet").send().await.unwrap();
    assert_eq!(miss.headers()["x-kiln-cache"], "BYPASS");
    let unknown = gw
        .client
        .get(gw.url("/"))
        .header("host", "nobody.test")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::MISDIRECTED_REQUEST);

    let after = scrape(&gw).await;
    let requests = |class: &str, cache: &str| {
        after.expect(&format!(
            r#"kiln_gateway_requests_total{{class="{class}",cache="{cache}"}}"#
        ))
    };
    assert_eq!(
        requests("person", "none"),
        4.0,
        "three pages and the unknown host"
    );
    assert_eq!(requests("bot", "hit"), 2.0);
    assert_eq!(requests("bot", "bypass"), 1.0);
    assert_eq!(requests("bot", "miss"), 0.0);
    assert_eq!(
        after.expect(r#"kiln_gateway_responses_total{class="person",status="4xx"}"#),
        1.0
    );
    assert_eq!(
        after.expect(r#"kiln_gateway_responses_total{class="person",status="2xx"}"#),
        3.0
    );
    assert_eq!(
        after.expect(r#"kiln_gateway_request_duration_seconds_count{class="bot",cache="hit"}"#),
        2.0
    );
    // The bypassed bot waited its 300 ms for the render.
    assert!(
        after.expect(r#"kiln_gateway_request_duration_seconds_sum{class="bot",cache="bypass"}"#)
            >= 0.3
    );
    assert_eq!(
        after.expect(r#"kiln_gateway_renders_queued_total{purpose="bot"}"#),
        1.0
    );
    // Nobody takes the job: it waits in the render queue, and ages.
    assert_eq!(after.expect(r#"kiln_queue_depth{queue="render"}"#), 1.0);
    assert_eq!(after.expect(r#"kiln_queue_depth{queue="warm"}"#), 0.0);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let age = scrape(&gw)
            .await
            .expect(r#"kiln_queue_oldest_job_age_seconds{queue="render"}"#);
        if age >= 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "the job's age stays {age}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn open_connections_are_counted_until_they_close() {
    let gw = spawn_app(DomainSettings::default()).await;
    let open = |m: &Metrics| m.expect("kiln_gateway_open_connections");
    let base = open(&scrape(&gw).await);
    let mut connections = Vec::new();
    for _ in 0..5 {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", gw.port))
            .await
            .unwrap();
        // One whole request each, so the connection has surely been accepted; then it stays open.
        stream
            .write_all(b"GET /products/1 HTTP/1.1\r\nHost: shop.test\r\n\r\n")
            .await
            .unwrap();
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"HTTP/1.1 200");
        connections.push(stream);
    }
    assert!(open(&scrape(&gw).await) >= base + 5.0);
    drop(connections);
    let deadline = Instant::now() + Duration::from_secs(10);
    while open(&scrape(&gw).await) > base {
        assert!(
            Instant::now() < deadline,
            "closed connections are still counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn redis_failures_are_counted() {
    let mut gw = spawn_app(DomainSettings {
        bot_wait_ms: 300,
        ..Default::default()
    })
    .await;
    let errors = |m: &Metrics| m.expect(r#"kiln_redis_errors_total{service="gateway"}"#);
    let before = errors(&scrape(&gw).await);
    gw.redis.stop();
    // Bots still get an answer (the origin's page) while the cache is gone; each look-up fails.
    for path in ["/a", "/b", "/c"] {
        let response = gw.bot(path).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let after = scrape(&gw).await;
    assert!(
        errors(&after) >= before + 3.0,
        "{} then {}",
        before,
        errors(&after)
    );
    gw.redis.restart();
}

#[tokio::test]
async fn every_metric_the_docs_promise_is_served() {
    let gw = spawn_app(DomainSettings::default()).await;
    let text = scrape(&gw).await.0;
    let checked =
        kiln_testkit::assert_serves_documented_metrics(&text, &["Every Kiln service", "Gateway"]);
    assert!(checked >= 14, "{checked} metrics documented");
}
