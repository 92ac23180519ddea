//! The gateway's safety net over the domain directory: every `KILN_GATEWAY_DIRECTORY_RESYNC_MS` it
//! asks Redis what changed since the version it holds, and reads the whole directory only when
//! that cannot be told. An idle gateway reads nothing whole; a change whose event it missed is
//! applied all the same, and so is a full publish it heard nothing of.
//!
//! Events are made to go missing by taking `SUBSCRIBE` away from Redis's user and closing the
//! gateway's subscription: it reconnects but cannot subscribe again, while every other command
//! still works.

use crate::directory::{status_of, until_status};
use crate::helpers::{TestApp, domain, spawn_app_with};
use kiln_core::DomainSettings;
use reqwest::StatusCode;
use std::time::Duration;

/// How often the gateways here bring their directory up to date (30 s by default).
const RESYNC_MS: u64 = 100;

async fn spawn() -> TestApp {
    spawn_app_with(
        DomainSettings::default(),
        &[("KILN_GATEWAY_DIRECTORY_RESYNC_MS", RESYNC_MS.to_string())],
    )
    .await
}

/// How many times the gateway has read the whole directory (its own count, on `/metrics`).
async fn full_reads(gw: &TestApp) -> f64 {
    crate::metrics::scrape(gw)
        .await
        .expect("kiln_gateway_directory_reads_total")
}

/// How many `HSCAN`s Redis has served (the gateway's reads of the whole directory; the test reads
/// none): what Redis itself saw, whatever the gateway counts.
fn hscans(gw: &TestApp) -> u64 {
    gw.redis
        .cli(&["INFO", "commandstats"])
        .lines()
        .find_map(|line| line.strip_prefix("cmdstat_hscan:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |calls| calls.parse().unwrap())
}

/// From now on the gateway hears no event: its subscription is closed and cannot be made again.
async fn deafen(gw: &TestApp) {
    gw.redis.cli(&["ACL", "SETUSER", "default", "-subscribe"]);
    gw.redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    // The reconnect (and the brought up to date directory it causes) is over long before this.
    tokio::time::sleep(Duration::from_millis(10 * RESYNC_MS)).await;
    let subscribers = gw
        .redis
        .cli(&["PUBSUB", "NUMSUB", &format!("{}events", gw.prefix)]);
    assert!(
        subscribers.trim_end().ends_with('0'),
        "the gateway still subscribes: {subscribers}"
    );
}

#[tokio::test]
async fn an_idle_gateway_never_reads_the_whole_directory_again() {
    let gw = spawn().await;
    let other = domain("other.test", gw.origin.port, DomainSettings::default());
    gw.store
        .directory()
        .publish(&[gw.domain.clone(), other])
        .await
        .unwrap();
    until_status(&gw, "other.test", StatusCode::OK).await;
    // The publish's event has been acted on (the read after it is over).
    tokio::time::sleep(Duration::from_millis(5 * RESYNC_MS)).await;

    let (reads, scans) = (full_reads(&gw).await, hscans(&gw));
    // Thirty safety-net rounds with nothing changed.
    tokio::time::sleep(Duration::from_millis(30 * RESYNC_MS)).await;
    assert_eq!(
        full_reads(&gw).await,
        reads,
        "full reads while nothing changed"
    );
    assert_eq!(hscans(&gw), scans, "HSCANs while nothing changed");

    // A change is applied from its event, still without reading the whole directory.
    let added = domain("added.test", gw.origin.port, DomainSettings::default());
    gw.store.directory().put(&added).await.unwrap();
    until_status(&gw, "added.test", StatusCode::OK).await;
    tokio::time::sleep(Duration::from_millis(5 * RESYNC_MS)).await;
    assert_eq!(full_reads(&gw).await, reads);
    assert_eq!(hscans(&gw), scans);
    assert_eq!(status_of(&gw, "other.test").await, StatusCode::OK);
}

#[tokio::test]
async fn changes_whose_events_were_missed_are_applied_without_reading_the_whole_directory() {
    let gw = spawn().await;
    let gone = domain("gone.test", gw.origin.port, DomainSettings::default());
    gw.store.directory().put(&gone).await.unwrap();
    until_status(&gw, "gone.test", StatusCode::OK).await;

    deafen(&gw).await;
    let (reads, scans) = (full_reads(&gw).await, hscans(&gw));
    let added = domain("added.test", gw.origin.port, DomainSettings::default());
    gw.store.directory().put(&added).await.unwrap();
    gw.store.directory().remove(&gone.host).await.unwrap();
    // No event told it: the next safety-net round does.
    until_status(&gw, "added.test", StatusCode::OK).await;
    until_status(&gw, "gone.test", StatusCode::MISDIRECTED_REQUEST).await;
    assert_eq!(status_of(&gw, "shop.test").await, StatusCode::OK);
    assert_eq!(
        full_reads(&gw).await,
        reads,
        "the changes were read, not the directory"
    );
    assert_eq!(hscans(&gw), scans);
}

#[tokio::test]
async fn a_full_publish_whose_event_was_missed_is_read_whole_by_the_next_round() {
    let gw = spawn().await;
    let dropped = domain("dropped.test", gw.origin.port, DomainSettings::default());
    gw.store
        .directory()
        .publish(&[gw.domain.clone(), dropped.clone()])
        .await
        .unwrap();
    until_status(&gw, "dropped.test", StatusCode::OK).await;

    deafen(&gw).await;
    let reads = full_reads(&gw).await;
    // More than one batch, without dropped.test.
    let mut directory = vec![gw.domain.clone()];
    directory.extend((0..kiln_store::PUBLISH_BATCH + 10).map(|n| {
        domain(
            &format!("d{n}.test"),
            gw.origin.port,
            DomainSettings::default(),
        )
    }));
    gw.store.directory().publish(&directory).await.unwrap();
    until_status(&gw, "dropped.test", StatusCode::MISDIRECTED_REQUEST).await;
    for host in ["d0.test", "d1009.test", "shop.test"] {
        assert_eq!(status_of(&gw, host).await, StatusCode::OK, "{host}");
    }
    assert!(full_reads(&gw).await > reads);

    // Read once: the rounds after it read nothing whole.
    tokio::time::sleep(Duration::from_millis(3 * RESYNC_MS)).await;
    let (reads, scans) = (full_reads(&gw).await, hscans(&gw));
    tokio::time::sleep(Duration::from_millis(10 * RESYNC_MS)).await;
    assert_eq!(full_reads(&gw).await, reads);
    assert_eq!(hscans(&gw), scans);
}
