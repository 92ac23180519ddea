//! Verified crawlers, against a real dnsmasq: a request claiming to be Googlebot from an address
//! that is not Google's gets the cached page or the origin's, and never causes a render; Google's
//! own addresses get renders. The test client plays the edge's trusted proxy, so its
//! `X-Forwarded-For` names the client.

use crate::helpers::{GOOGLEBOT, PAGE, TestApp, spawn_app_with};
use kiln_core::{DeviceClass, DomainSettings};
use kiln_testkit::dns::{DnsRecord, TestDns};
use reqwest::StatusCode;
use std::time::{Duration, Instant};

const GOOGLE: &str = "66.249.66.1";
/// Claims a Google name in its reverse zone, but the name is not its address.
const IMPOSTOR: &str = "185.199.108.5";
/// Has no reverse name at all.
const NOBODY: &str = "185.199.108.8";

fn dns() -> TestDns {
    TestDns::start(&[
        DnsRecord::a("crawl-66-249-66-1.googlebot.com", GOOGLE),
        DnsRecord::ptr(IMPOSTOR, "crawl-66-249-66-9.googlebot.com"),
        DnsRecord::a("crawl-66-249-66-9.googlebot.com", "66.249.66.9"),
    ])
}

async fn gateway(dns: &TestDns, settings: DomainSettings) -> TestApp {
    spawn_app_with(
        settings,
        &[
            ("KILN_DNS_SERVER", dns.addr().to_string()),
            ("KILN_DNS_TIMEOUT_MS", "500".to_owned()),
        ],
    )
    .await
}

/// Caches `/stale` so that it is stale, and asks for it as a bot at `client`: it is served as it is.
async fn stale_page_served_to(gw: &TestApp, client: &str) -> kiln_core::CacheKey {
    let key = gw
        .cache_page_for("/stale", DeviceClass::Desktop, "<p>old</p>", 1, 600)
        .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let stale = gw
        .bot("/stale")
        .header("x-forwarded-for", client)
        .send()
        .await
        .unwrap();
    assert_eq!(stale.headers()["x-kiln-cache"], "STALE");
    assert_eq!(stale.text().await.unwrap(), "<p>old</p>");
    key
}

fn short_wait() -> DomainSettings {
    DomainSettings {
        bot_wait_ms: 200,
        ..DomainSettings::default()
    }
}

#[tokio::test]
async fn a_forged_googlebot_gets_the_origin_or_the_cache_and_never_a_render() {
    let dns = dns();
    let gw = gateway(&dns, short_wait()).await;

    for client in [IMPOSTOR, NOBODY] {
        let path = format!("/products/{client}");
        let (_, key) = gw.key(&path, DeviceClass::Desktop);
        let started = Instant::now();
        let response = gw
            .bot(&path)
            .header("x-forwarded-for", client)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["x-kiln-cache"], "BYPASS", "{client}");
        assert_eq!(response.text().await.unwrap(), PAGE);
        assert!(
            started.elapsed() < Duration::from_millis(200),
            "{client} waited for a render: {:?}",
            started.elapsed()
        );
        assert!(
            !gw.store.pages().render_locked(&key).await.unwrap(),
            "{client} caused a render"
        );
    }

    // What is cached is served to anyone: it costs nothing.
    gw.cache_page("/cached", DeviceClass::Desktop, "<p>rendered</p>")
        .await;
    let hit = gw
        .bot("/cached")
        .header("x-forwarded-for", IMPOSTOR)
        .send()
        .await
        .unwrap();
    assert_eq!(hit.headers()["x-kiln-cache"], "HIT");
    assert_eq!(hit.text().await.unwrap(), "<p>rendered</p>");

    // A stale page too, but without the refresh it would cause for a real crawler.
    let stale_key = stale_page_served_to(&gw, IMPOSTOR).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!gw.store.pages().render_locked(&stale_key).await.unwrap());
}

#[tokio::test]
async fn googles_own_address_gets_renders_and_so_does_a_stale_refresh() {
    let dns = dns();
    let gw = gateway(&dns, short_wait()).await;
    let (_, key) = gw.key("/products/1", DeviceClass::Desktop);
    // No worker runs here: the render is queued (its lock taken) and the bot's budget runs out.
    let response = gw
        .bot("/products/1")
        .header("x-forwarded-for", GOOGLE)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-kiln-cache"], "BYPASS");
    assert!(
        gw.store.pages().render_locked(&key).await.unwrap(),
        "Google's crawler caused no render"
    );

    let stale_key = stale_page_served_to(&gw, GOOGLE).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !gw.store.pages().render_locked(&stale_key).await.unwrap() {
        assert!(Instant::now() < deadline, "no refresh for Google's crawler");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn x_forwarded_for_is_believed_only_from_trusted_proxies() {
    let dns = dns();
    // The test client is not a trusted proxy here: its header is the client's own claim.
    let gw = spawn_app_with(
        short_wait(),
        &[
            ("KILN_DNS_SERVER", dns.addr().to_string()),
            ("KILN_TRUSTED_PROXIES", "192.0.2.1".to_owned()),
        ],
    )
    .await;
    // The header names an impostor's address; were it believed, no render would follow. The
    // client is its peer instead: a loopback address, which no crawler's DNS covers, so there is
    // nothing to verify and it renders as any bot does.
    let (_, key) = gw.key("/products/1", DeviceClass::Desktop);
    let response = gw
        .bot("/products/1")
        .header("x-forwarded-for", IMPOSTOR)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-kiln-cache"], "BYPASS");
    assert!(gw.store.pages().render_locked(&key).await.unwrap());
}

#[tokio::test]
async fn a_dns_outage_costs_a_new_crawler_address_its_render_not_its_page() {
    let mut dns = dns();
    let gw = gateway(&dns, short_wait()).await;
    dns.stop();
    let (_, key) = gw.key("/products/1", DeviceClass::Desktop);
    let started = Instant::now();
    let response = gw
        .client
        .get(gw.url("/products/1"))
        .header("host", "shop.test")
        .header("x-is-bot", "1")
        .header("user-agent", GOOGLEBOT)
        .header("x-forwarded-for", GOOGLE)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-kiln-cache"], "BYPASS");
    assert_eq!(response.text().await.unwrap(), PAGE);
    // Two tries of 500 ms, well within the 1.5 s the gateway waits for a check.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(!gw.store.pages().render_locked(&key).await.unwrap());
}

#[tokio::test]
async fn verified_crawlers_are_not_rate_limited_and_impostors_are() {
    let dns = dns();
    let gw = gateway(&dns, DomainSettings::default()).await;
    gw.cache_page("/cached", DeviceClass::Desktop, "<p>rendered</p>")
        .await;
    let statuses = |client: &'static str| {
        let gw = &gw;
        async move {
            let mut statuses = Vec::new();
            for _ in 0..30 {
                let response = gw
                    .bot("/cached")
                    .header("x-forwarded-for", client)
                    .send()
                    .await
                    .unwrap();
                statuses.push(response.status().as_u16());
            }
            statuses
        }
    };
    assert!(statuses(GOOGLE).await.iter().all(|s| *s == 200));
    let impostor = statuses(IMPOSTOR).await;
    assert_eq!(
        impostor.iter().filter(|s| **s == 200).count(),
        10,
        "{impostor:?}"
    );
    assert_eq!(
        impostor.iter().filter(|s| **s == 429).count(),
        20,
        "{impostor:?}"
    );
}
