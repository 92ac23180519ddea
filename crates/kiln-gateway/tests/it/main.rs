//! The gateway against a real Redis and a real (test) origin: host routing, the human proxy's
//! fidelity and failure modes, and the bot path's fall-backs when no render arrives.

mod acme;
mod budget;
mod crawlers;
mod directory;
mod directory_refresh;
mod domain_settings;
mod freshness;
mod helpers;
mod hostile;
mod limits;
mod metrics;
mod origins;
mod secrets;
mod service;
mod usage;

use helpers::{PAGE, TestApp, domain, spawn_app};
use kiln_core::DomainSettings;
use reqwest::{Method, StatusCode};
use std::time::{Duration, Instant};

#[tokio::test]
async fn an_unknown_host_gets_421_and_nothing_is_fetched() {
    let gw = spawn_app(DomainSettings::default()).await;
    let response = gw
        .client
        .get(gw.url("/products/1"))
        .header("host", "other.test")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::MISDIRECTED_REQUEST);
    assert!(response.text().await.unwrap().contains("other.test"));
    let missing = gw
        .client
        .get(gw.url("/"))
        .header("host", "")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    assert_eq!(gw.origin.log.count(), 0);
}

#[tokio::test]
async fn hosts_match_case_insensitively_without_port_or_trailing_dot() {
    let gw = spawn_app(DomainSettings::default()).await;
    for host in ["SHOP.test", "shop.test:8080", "shop.test."] {
        let response = gw
            .client
            .get(gw.url("/"))
            .header("host", host)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{host}");
        assert_eq!(response.text().await.unwrap(), PAGE);
    }
    assert_eq!(gw.origin.log.count(), 3);
}

#[tokio::test]
async fn people_get_the_origins_bytes_and_every_set_cookie() {
    let gw = spawn_app(DomainSettings::default()).await;
    let page = gw.person(Method::GET, "/products/3").send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.headers().get("x-kiln-cache").is_none(),
        "people are not served from the cache"
    );
    assert_eq!(page.text().await.unwrap(), PAGE);

    let cookies = gw.person(Method::GET, "/cookies").send().await.unwrap();
    let set: Vec<_> = cookies
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        set,
        [
            "a=1; Path=/; HttpOnly",
            "b=2; Path=/",
            "c=3; Path=/; Secure"
        ]
    );
    assert_eq!(cookies.headers()["x-origin"], "yes");
}

#[tokio::test]
async fn people_reuse_the_gateways_connections_to_the_origin() {
    let gw = spawn_app(DomainSettings::default()).await;
    for n in 0..30 {
        let page = gw
            .person(Method::GET, &format!("/products/{n}"))
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(page.text().await.unwrap(), PAGE);
    }
    let connections: std::collections::BTreeSet<_> = gw
        .origin
        .log
        .requests()
        .iter()
        .map(|seen| seen.peer)
        .collect();
    assert_eq!(gw.origin.log.count(), 30);
    assert_eq!(
        connections.len(),
        1,
        "one request after another goes over one kept-alive connection: {connections:?}"
    );
}

#[tokio::test]
async fn methods_queries_and_bodies_pass_through_with_forwarding_headers() {
    let gw = spawn_app(DomainSettings::default()).await;
    let body = vec![7u8; 3 * 1024 * 1024];
    let response = gw
        .person(Method::POST, "/echo?b=2&a=1&utm_source=x")
        .header("x-is-bot", "0")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-proto", "https")
        .header("connection", "keep-alive, x-secret")
        .header("x-secret", "hop-only")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.text().await.unwrap(),
        format!("POST /echo?b=2&a=1&utm_source=x {}", body.len())
    );

    let seen = gw.origin.log.requests().pop().unwrap();
    assert_eq!(seen.method, Method::POST);
    assert_eq!(
        seen.uri, "/echo?b=2&a=1&utm_source=x",
        "the origin gets the query as sent"
    );
    assert_eq!(seen.body.len(), body.len());
    assert_eq!(
        seen.headers["host"],
        format!("127.0.0.1:{}", gw.origin.port)
    );
    assert_eq!(seen.headers["x-forwarded-host"], "shop.test");
    assert_eq!(seen.headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-proto"], "https");
    assert!(
        seen.headers.get("x-is-bot").is_none(),
        "Kiln's own header never reaches the origin"
    );
    assert!(
        seen.headers.get("x-secret").is_none(),
        "headers named by Connection are hop-by-hop"
    );
}

#[tokio::test]
async fn hop_by_hop_response_headers_are_dropped_and_large_bodies_stream() {
    let gw = spawn_app(DomainSettings::default()).await;
    let hop = gw.person(Method::GET, "/hop").send().await.unwrap();
    assert!(hop.headers().get("x-private").is_none());
    assert!(hop.headers().get("keep-alive").is_none());
    assert_eq!(hop.text().await.unwrap(), "hop");

    let big = gw
        .person(Method::GET, "/big")
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(big.len(), 80 * 64 * 1024);
}

#[tokio::test]
async fn protocol_upgrades_such_as_websockets_are_joined_through() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = spawn_app(DomainSettings::default()).await;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", gw.port))
        .await
        .unwrap();
    stream
        .write_all(b"GET /upgrade HTTP/1.1\r\nHost: shop.test\r\nX-Is-Bot: 0\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(
            stream.read(&mut byte).await.unwrap(),
            1,
            "the connection closed early"
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: echo"), "{head}");

    stream.write_all(b"ping through kiln").await.unwrap();
    let mut echoed = [0u8; 17];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut echoed))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echoed, b"ping through kiln");
}

#[tokio::test]
async fn redirects_are_passed_on_not_followed() {
    let gw = spawn_app(DomainSettings::default()).await;
    let response = gw.person(Method::GET, "/redirect").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(response.headers()["location"], "/elsewhere");
    assert_eq!(gw.origin.log.count(), 1);
}

#[tokio::test]
async fn a_dead_origin_gives_a_quick_502_and_a_slow_one_a_504() {
    let gw = spawn_app(DomainSettings::default()).await;
    let dead_port = kiln_testkit::free_port();
    gw.store
        .directory()
        .put(&domain("dead.test", dead_port, DomainSettings::default()))
        .await
        .unwrap();
    wait_for_domain(&gw, "dead.test").await;

    let started = Instant::now();
    let response = gw
        .client
        .get(gw.url("/"))
        .header("host", "dead.test")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(response.headers()["x-kiln-error"], "origin-unreachable");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a refused connection must not hang"
    );
    assert!(response.text().await.unwrap().contains("could not reach"));

    let slow = gw.person(Method::GET, "/slow").send().await.unwrap();
    assert_eq!(slow.status(), StatusCode::GATEWAY_TIMEOUT);
}

#[tokio::test]
async fn origins_on_private_addresses_outside_the_allow_list_are_refused() {
    let gw = spawn_app(DomainSettings::default()).await;
    let mut config = domain("internal.test", gw.origin.port, DomainSettings::default());
    config.origin = format!("http://127.0.0.2:{}", gw.origin.port);
    gw.store.directory().put(&config).await.unwrap();
    wait_for_domain(&gw, "internal.test").await;
    let before = gw.origin.log.count();
    let response = gw
        .client
        .get(gw.url("/"))
        .header("host", "internal.test")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(response.headers()["x-kiln-error"], "origin-refused");
    assert_eq!(gw.origin.log.count(), before, "nothing reached the origin");
}

#[tokio::test]
async fn a_bot_whose_render_never_comes_gets_the_origins_page_within_its_budget() {
    // No worker runs in this test, so the render cannot arrive.
    let settings = DomainSettings {
        bot_wait_ms: 300,
        ..DomainSettings::default()
    };
    let gw = spawn_app(settings).await;
    let started = Instant::now();
    let response = gw.bot("/products/3").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-kiln-cache"], "BYPASS");
    assert_eq!(response.text().await.unwrap(), PAGE);
    assert!(started.elapsed() >= Duration::from_millis(300));

    // The render was still enqueued once, and a second bot waits on the same lock without a new job.
    let _ = gw.bot("/products/3").send().await.unwrap();
    assert_eq!(
        gw.origin.log.count(),
        2,
        "only the two bypassed page loads reached the origin"
    );
}

#[tokio::test]
async fn bots_on_unverified_domains_and_asset_requests_are_proxied() {
    let gw = spawn_app(DomainSettings::default()).await;
    let mut unverified = domain("new.test", gw.origin.port, DomainSettings::default());
    unverified.verified = false;
    gw.store.directory().put(&unverified).await.unwrap();
    wait_for_domain(&gw, "new.test").await;
    let before = gw.origin.log.count();

    let page = gw
        .client
        .get(gw.url("/products/1"))
        .header("host", "new.test")
        .header("x-is-bot", "1")
        .send()
        .await
        .unwrap();
    assert!(page.headers().get("x-kiln-cache").is_none());
    assert_eq!(page.text().await.unwrap(), PAGE);

    let asset = gw.bot("/static/app.js").send().await.unwrap();
    assert!(asset.headers().get("x-kiln-cache").is_none());
    assert_eq!(gw.origin.log.count() - before, 2);
}

#[tokio::test]
async fn people_are_served_and_bots_bypass_while_redis_is_down() {
    let mut gw = spawn_app(DomainSettings::default()).await;
    gw.redis.stop();
    let person = gw.person(Method::GET, "/").send().await.unwrap();
    assert_eq!(person.status(), StatusCode::OK);
    assert_eq!(person.text().await.unwrap(), PAGE);

    let started = Instant::now();
    let bot = gw.bot("/products/2").send().await.unwrap();
    assert_eq!(bot.status(), StatusCode::OK);
    assert_eq!(bot.headers()["x-kiln-cache"], "BYPASS");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a Redis outage must not stall bots"
    );

    // Still ready for traffic (every gateway shares the Redis: were they to turn unready, the load
    // balancer would drop them all), saying what is missing.
    let ready = gw
        .client
        .get(format!("http://127.0.0.1:{}/readyz", gw.admin_port))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let body = ready.text().await.unwrap();
    assert!(body.starts_with("ready; redis:"), "{body}");
}

async fn wait_for_domain(gw: &TestApp, host: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let response = gw
            .client
            .get(gw.url("/__probe"))
            .header("host", host)
            .send()
            .await
            .unwrap();
        if response.status() != StatusCode::MISDIRECTED_REQUEST {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{host} never reached the gateway's directory");
}
