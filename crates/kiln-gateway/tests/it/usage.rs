//! Usage counting: bot responses per domain and day reach Redis without a round trip on the request
//! path, and the last ones are written at shutdown.

use crate::helpers::spawn_app;
use kiln_core::{DeviceClass, DomainSettings};
use kiln_store::UsageCounts;
use reqwest::Method;
use std::time::{Duration, Instant};

#[tokio::test]
async fn bot_responses_are_counted_per_domain_and_day() {
    let gw = spawn_app(DomainSettings {
        exclude_paths: vec!["/admin*".into()],
        bot_wait_ms: 100,
        ..DomainSettings::default()
    })
    .await;
    gw.cache_page("/products/1", DeviceClass::Desktop, "rendered")
        .await;

    for _ in 0..5 {
        let hit = gw.bot("/products/1").send().await.unwrap();
        assert_eq!(hit.headers()["x-kiln-cache"], "HIT");
    }
    for _ in 0..2 {
        let bypass = gw.bot("/products/2").send().await.unwrap();
        assert_eq!(bypass.headers()["x-kiln-cache"], "BYPASS");
    }
    let _ = gw.bot("/admin").send().await.unwrap();
    // Neither people nor assets count.
    let _ = gw.person(Method::GET, "/products/1").send().await.unwrap();
    let _ = gw.bot("/app.js").send().await.unwrap();

    let expected = UsageCounts {
        hits: 5,
        bypasses: 2,
        passthroughs: 1,
        ..UsageCounts::default()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut usage = gw.recent_usage().await;
    while usage != expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        usage = gw.recent_usage().await;
    }
    assert_eq!(usage, expected);
}

#[tokio::test]
async fn the_last_counts_are_written_at_shutdown() {
    let mut gw = spawn_app(DomainSettings::default()).await;
    gw.cache_page("/", DeviceClass::Desktop, "rendered").await;
    // Well within the first second, before the first periodic flush after the one at start.
    for _ in 0..3 {
        let _ = gw.bot("/").send().await.unwrap();
    }
    gw.shut_down().await;
    assert_eq!(gw.recent_usage().await.hits, 3);
}
