//! Per-address limits on the bot path: the burst, then the rate, per client address; `429` with
//! `Retry-After` beyond it; people never limited; and a flood of forged `X-Forwarded-For` values
//! sharing one allowance.

use crate::helpers::{TestApp, spawn_app, spawn_app_with};
use kiln_core::{DeviceClass, DomainSettings};
use reqwest::StatusCode;
use std::time::Duration;

const AHREFS: &str = "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)";

/// How many of `count` bot requests for a cached page, each with the `X-Forwarded-For` that
/// `forwarded(i)` gives, were served and how many refused with 429.
async fn flood(gw: &TestApp, count: usize, forwarded: impl Fn(usize) -> String) -> (u32, u32) {
    let (mut served, mut refused) = (0, 0);
    for i in 0..count {
        let response = gw
            .bot_as("/cached", AHREFS)
            .header("x-forwarded-for", forwarded(i))
            .send()
            .await
            .unwrap();
        match response.status() {
            StatusCode::OK => served += 1,
            StatusCode::TOO_MANY_REQUESTS => refused += 1,
            other => panic!("unexpected {other}"),
        }
    }
    (served, refused)
}

#[tokio::test]
async fn each_address_gets_its_burst_then_429_with_retry_after() {
    let gw = spawn_app(DomainSettings::default()).await;
    gw.cache_page("/cached", DeviceClass::Desktop, "<p>rendered</p>")
        .await;
    let client = "185.199.108.20";
    assert_eq!(flood(&gw, 10, |_| client.to_owned()).await, (10, 0));

    let refused = gw
        .bot_as("/cached", AHREFS)
        .header("x-forwarded-for", client)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(refused.headers()["x-kiln-error"], "rate-limited");
    assert_eq!(refused.headers()["cache-control"], "no-store");

    // Another address has an allowance of its own, and the first gets one more every 500 ms.
    assert_eq!(flood(&gw, 1, |_| "185.199.108.21".to_owned()).await, (1, 0));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(flood(&gw, 2, |_| client.to_owned()).await, (1, 1));

    // People are never limited.
    for _ in 0..30 {
        let page = gw
            .person_as("/cached", "Mozilla/5.0 (X11; Linux x86_64) Firefox/131.0")
            .header("x-forwarded-for", client)
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn a_flood_of_forged_x_forwarded_for_values_shares_one_allowance() {
    // One address's allowance: a burst of 10, then 1 a second. On a loaded machine the flood may
    // take a few seconds, so the refill while it ran is allowed for; a forged value that got a
    // bucket of its own would let nearly all 200 through.
    let settings = DomainSettings {
        bot_rate_per_second: 1,
        bot_rate_burst: 10,
        ..DomainSettings::default()
    };
    let one_allowance = |(served, refused): (u32, u32), took: Duration| {
        let refill = took.as_secs() as u32 + 1;
        assert_eq!(served + refused, 200);
        assert!(
            (10..=10 + refill).contains(&served),
            "{served} served in {took:?}: more than one address's allowance"
        );
    };

    // Through a trusted proxy (the test client plays the edge): the hop the edge appended is the
    // client, whatever the client wrote before it.
    let gw = spawn_app(settings.clone()).await;
    gw.cache_page("/cached", DeviceClass::Desktop, "<p>rendered</p>")
        .await;
    let started = std::time::Instant::now();
    let behind_edge = flood(&gw, 200, |i| {
        format!("10.{}.{}.{}, 185.199.108.30", i % 7, i % 251, i % 13)
    })
    .await;
    one_allowance(behind_edge, started.elapsed());

    // From a peer that is no trusted proxy, the header is not read at all.
    let gw = spawn_app_with(
        settings,
        &[("KILN_TRUSTED_PROXIES", "192.0.2.1".to_owned())],
    )
    .await;
    gw.cache_page("/cached", DeviceClass::Desktop, "<p>rendered</p>")
        .await;
    let started = std::time::Instant::now();
    let direct = flood(&gw, 200, |i| format!("198.51.{}.{}", i / 250, i % 250)).await;
    one_allowance(direct, started.elapsed());
}

#[tokio::test]
async fn a_domain_can_change_or_lift_its_limit() {
    let mut gw = spawn_app(DomainSettings {
        bot_rate_per_second: 1,
        bot_rate_burst: 3,
        ..DomainSettings::default()
    })
    .await;
    gw.cache_page("/cached", DeviceClass::Desktop, "<p>rendered</p>")
        .await;
    assert_eq!(flood(&gw, 5, |_| "185.199.108.40".to_owned()).await, (3, 2));

    let mut settings = gw.domain.settings.clone();
    settings.bot_rate_per_second = 0;
    gw.change_settings(settings).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while flood(&gw, 1, |_| "185.199.108.40".to_owned()).await != (1, 0) {
        assert!(
            std::time::Instant::now() < deadline,
            "the limit was not lifted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        flood(&gw, 50, |_| "185.199.108.40".to_owned()).await,
        (50, 0)
    );
}
