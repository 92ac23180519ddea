//! The gateway's domain directory against a Redis that loses it: a directory that is not marked
//! complete (what a Redis that restarted empty holds once single domains are published again)
//! never replaces the domains the gateway knows, while single removals still apply and a complete
//! directory still replaces them.

use crate::helpers::{TestApp, domain, spawn_app_with};
use kiln_core::{DomainConfig, DomainSettings, Hostname};
use reqwest::StatusCode;
use std::time::{Duration, Instant};

/// How often the gateway here re-reads the whole directory (30 s by default).
const RESYNC_MS: u64 = 100;

/// The status a person gets for `/` on `host`.
pub(crate) async fn status_of(gw: &TestApp, host: &str) -> StatusCode {
    gw.client
        .get(gw.url("/"))
        .header("host", host)
        .header("x-is-bot", "0")
        .send()
        .await
        .unwrap()
        .status()
}

/// Waits until `host` answers `wanted` (a 200 once served, a 421 once gone).
pub(crate) async fn until_status(gw: &TestApp, host: &str, wanted: StatusCode) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = status_of(gw, host).await;
        if status == wanted {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{host} still answers {status}, not {wanted}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Retries `publish` while the store reconnects after a Redis restart.
async fn published(gw: &TestApp, domain: &DomainConfig) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(error) = gw.store.directory().put(domain).await {
        assert!(Instant::now() < deadline, "cannot publish: {error}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_incomplete_directory_never_replaces_the_domains_known_but_removals_and_a_complete_one_do()
 {
    let mut gw = spawn_app_with(
        DomainSettings::default(),
        &[("KILN_GATEWAY_DIRECTORY_RESYNC_MS", RESYNC_MS.to_string())],
    )
    .await;
    let other = domain("other.test", gw.origin.port, DomainSettings::default());
    let gone = domain("gone.test", gw.origin.port, DomainSettings::default());
    gw.store
        .directory()
        .publish(&[gw.domain.clone(), other.clone(), gone.clone()])
        .await
        .unwrap();
    assert!(gw.store.directory().is_complete().await.unwrap());
    for host in ["shop.test", "other.test", "gone.test"] {
        until_status(&gw, host, StatusCode::OK).await;
    }

    // Redis restarts empty, and the first change after it is one domain added.
    gw.redis.restart();
    let added = domain("added.test", gw.origin.port, DomainSettings::default());
    published(&gw, &added).await;
    until_status(&gw, "added.test", StatusCode::OK).await;
    let directory = gw.store.directory().read().await.unwrap();
    assert!(!directory.complete);
    assert_eq!(directory.domains.len(), 1);
    // Many full re-reads later, every domain known is still served.
    let until = Instant::now() + Duration::from_millis(RESYNC_MS * 15);
    while Instant::now() < until {
        for host in ["shop.test", "other.test", "gone.test", "added.test"] {
            assert_eq!(
                status_of(&gw, host).await,
                StatusCode::OK,
                "{host}, with an incomplete directory in Redis"
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A removal still removes, incomplete directory or not.
    gw.store
        .directory()
        .remove(&Hostname::parse("other.test").unwrap())
        .await
        .unwrap();
    until_status(&gw, "other.test", StatusCode::MISDIRECTED_REQUEST).await;
    assert_eq!(status_of(&gw, "shop.test").await, StatusCode::OK);

    // The complete directory, published again, is the truth: a domain it lacks (removed while
    // this gateway heard no events) goes, the others stay.
    gw.store
        .directory()
        .publish(&[gw.domain.clone(), added.clone()])
        .await
        .unwrap();
    until_status(&gw, "gone.test", StatusCode::MISDIRECTED_REQUEST).await;
    for host in ["shop.test", "added.test"] {
        assert_eq!(status_of(&gw, host).await, StatusCode::OK, "{host}");
    }
    assert_eq!(
        status_of(&gw, "other.test").await,
        StatusCode::MISDIRECTED_REQUEST
    );
}
