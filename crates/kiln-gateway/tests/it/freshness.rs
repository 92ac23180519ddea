//! Freshness on the bot path, without a worker: a stale entry is served at once and queues one
//! refresh; a page that failed to render moments ago is neither rendered again nor refreshed.

use crate::helpers::{PAGE, TestGateway};
use kiln_core::{DeviceClass, DomainSettings};
use reqwest::StatusCode;
use std::time::{Duration, Instant};

/// Waits until the entry `put` stored (fresh for one second) has gone stale.
async fn until_stale() {
    tokio::time::sleep(Duration::from_millis(1100)).await;
}

#[tokio::test]
async fn a_stale_page_is_served_at_once_and_refreshed_once_in_the_background() {
    let gw = TestGateway::start(DomainSettings::default()).await;
    let (_, key) = gw.key("/products/3", DeviceClass::Desktop);
    gw.cache_page_for(
        "/products/3",
        DeviceClass::Desktop,
        "<p>old render</p>",
        1,
        600,
    )
    .await;

    let fresh = gw.bot("/products/3").send().await.unwrap();
    assert_eq!(fresh.headers()["x-kiln-cache"], "HIT");
    assert!(!gw.store.render_locked(&key).await.unwrap());

    until_stale().await;
    let started = Instant::now();
    let stale = gw.bot("/products/3").send().await.unwrap();
    assert_eq!(stale.status(), StatusCode::OK);
    assert_eq!(stale.headers()["x-kiln-cache"], "STALE");
    assert!(stale.headers().contains_key("age"));
    assert_eq!(stale.text().await.unwrap(), "<p>old render</p>");
    // No worker runs here: a bot waiting for the render would take its whole budget (20 s).
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // One refresh is under way (its render lock is taken), and more stale hits add none.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !gw.store.render_locked(&key).await.unwrap() {
        assert!(Instant::now() < deadline, "no refresh was started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..5 {
        let again = gw.bot("/products/3").send().await.unwrap();
        assert_eq!(again.headers()["x-kiln-cache"], "STALE");
    }
    assert_eq!(
        gw.origin.log.count(),
        0,
        "the origin is not asked for stale pages"
    );
}

#[tokio::test]
async fn a_recent_failure_sends_bots_to_the_origin_at_once_and_holds_back_refreshes() {
    let gw = TestGateway::start(DomainSettings::default()).await;
    let (_, cold) = gw.key("/products/1", DeviceClass::Desktop);
    gw.store
        .put_failure(&cold, "the origin answered 500", Duration::from_secs(30))
        .await
        .unwrap();
    let started = Instant::now();
    let bypassed = gw.bot("/products/1").send().await.unwrap();
    assert_eq!(bypassed.headers()["x-kiln-cache"], "BYPASS");
    assert_eq!(bypassed.text().await.unwrap(), PAGE);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "not held for a render"
    );
    assert!(
        !gw.store.render_locked(&cold).await.unwrap(),
        "no render was queued"
    );

    // A stale copy of a page that just failed to refresh is served, and not refreshed again.
    let stale_key = gw
        .cache_page_for("/products/2", DeviceClass::Desktop, "<p>kept</p>", 1, 600)
        .await;
    gw.store
        .put_failure(&stale_key, "timeout", Duration::from_secs(30))
        .await
        .unwrap();
    until_stale().await;
    let stale = gw.bot("/products/2").send().await.unwrap();
    assert_eq!(stale.headers()["x-kiln-cache"], "STALE");
    assert_eq!(stale.text().await.unwrap(), "<p>kept</p>");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!gw.store.render_locked(&stale_key).await.unwrap());
}

#[tokio::test]
async fn a_domain_without_a_stale_window_renders_again_once_the_page_expires() {
    let settings = DomainSettings {
        stale_ttl_secs: 0,
        bot_wait_ms: 200,
        ..DomainSettings::default()
    };
    let gw = TestGateway::start(settings).await;
    gw.cache_page_for("/products/3", DeviceClass::Desktop, "<p>old</p>", 1, 0)
        .await;
    assert_eq!(
        gw.bot("/products/3").send().await.unwrap().headers()["x-kiln-cache"],
        "HIT"
    );
    until_stale().await;
    // Expired: nothing stale to serve, so the bot waits its budget and gets the origin's page.
    let response = gw.bot("/products/3").send().await.unwrap();
    assert_eq!(response.headers()["x-kiln-cache"], "BYPASS");
}
