//! Preview replies: put by a worker, taken (waiting) by the dashboard.

use crate::helpers::TestStore;
use fred::prelude::*;
use fred::types::InfoKind;
use kiln_store::{PREVIEW_TTL_SECS, PreviewResult};
use std::time::{Duration, Instant};

fn result(html: &str) -> PreviewResult {
    PreviewResult {
        status: 200,
        headers: vec![("X-Robots-Tag".into(), "noindex".into())],
        html: html.into(),
        render_ms: 321,
        error: None,
    }
}

#[tokio::test]
async fn a_reply_put_is_taken_once() {
    let t = TestStore::start().await;
    t.store
        .render_log()
        .put_preview("r1", &result("<p>one</p>"))
        .await
        .unwrap();
    let ttl: i64 = t.raw.ttl(format!("{}preview:r1", t.prefix)).await.unwrap();
    assert!((1..=PREVIEW_TTL_SECS).contains(&ttl), "{ttl}");

    let taken = t
        .store
        .render_log()
        .take_preview("r1", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(taken, Some(result("<p>one</p>")));
    // Taken means gone; another reply id never sees it.
    assert_eq!(
        t.store
            .render_log()
            .take_preview("r1", Duration::ZERO)
            .await
            .unwrap(),
        None
    );
    t.store
        .render_log()
        .put_preview("r2", &result("two"))
        .await
        .unwrap();
    assert_eq!(
        t.store
            .render_log()
            .take_preview("r1", Duration::ZERO)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        t.store
            .render_log()
            .take_preview("r2", Duration::ZERO)
            .await
            .unwrap(),
        Some(result("two"))
    );

    let failed = PreviewResult {
        status: 0,
        headers: vec![],
        html: String::new(),
        render_ms: 10,
        error: Some("navigation failed".into()),
    };
    t.store
        .render_log()
        .put_preview("r3", &failed)
        .await
        .unwrap();
    assert_eq!(
        t.store
            .render_log()
            .take_preview("r3", Duration::from_secs(1))
            .await
            .unwrap(),
        Some(failed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_outlasts_the_command_timeout_and_ends_with_none() {
    let t = TestStore::start().await;
    // Three times the store's 500 ms command timeout: a wait cut short by it would end early.
    let wait = Duration::from_millis(1_500);
    let started = Instant::now();
    let taken = t
        .store
        .render_log()
        .take_preview("nobody", wait)
        .await
        .unwrap();
    assert_eq!(taken, None);
    assert!(started.elapsed() >= wait, "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_taker_gets_a_reply_put_later_while_the_store_stays_usable() {
    let t = TestStore::start().await;
    let store = t.store.clone();
    let taker = tokio::spawn(async move {
        store
            .render_log()
            .take_preview("late", Duration::from_secs(60))
            .await
    });

    // Wait until the taker is blocked in BLPOP, so the reply really arrives while it waits.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let clients: String = t.raw.info(Some(InfoKind::Clients)).await.unwrap();
        if clients
            .lines()
            .any(|line| line.trim() == "blocked_clients:1")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the taker never blocked: {clients}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The blocked wait holds a connection of its own: the store's others still answer.
    for _ in 0..20 {
        t.store.health().ping().await.unwrap();
    }
    t.store
        .render_log()
        .put_preview("late", &result("late"))
        .await
        .unwrap();
    let taken = tokio::time::timeout(Duration::from_secs(30), taker)
        .await
        .expect("the taker did not wake")
        .unwrap()
        .unwrap();
    assert_eq!(taken, Some(result("late")));
}
