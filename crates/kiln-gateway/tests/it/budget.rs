//! Fair shares of the render capacity: a tenant's render budget (renders under way, renders a
//! minute), and a render queue too long for a bot to wait on. Either way the bot gets the origin's
//! page at once and no render is queued for it. No worker runs here, so queued renders stay queued.

use crate::helpers::{PAGE, TestApp, domain, spawn_app_with};
use kiln_core::DomainSettings;
use kiln_queue::{QueueKind, RenderQueue};
use reqwest::StatusCode;
use std::time::{Duration, Instant};

/// Long enough that a bot waiting on a render is told apart from one sent to the origin at once.
const WAIT_MS: u64 = 4_000;

fn settings() -> DomainSettings {
    DomainSettings {
        bot_wait_ms: WAIT_MS,
        bot_rate_per_second: 0,
        ..DomainSettings::default()
    }
}

/// Sends a bot for each path at once, without waiting for the answers (their renders never come).
fn bots_waiting(gw: &TestApp, host: &str, paths: &[&str]) -> Vec<tokio::task::JoinHandle<()>> {
    paths
        .iter()
        .map(|path| {
            let request = gw
                .client
                .get(gw.url(path))
                .header("host", host)
                .header("x-is-bot", "1");
            tokio::spawn(async move {
                let _ = request.send().await;
            })
        })
        .collect()
}

/// A bot's request that must be answered with the origin's page at once, not after its wait.
async fn sent_to_the_origin_at_once(gw: &TestApp, host: &str, path: &str) {
    let started = Instant::now();
    let response = gw
        .client
        .get(gw.url(path))
        .header("host", host)
        .header("x-is-bot", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-kiln-cache"], "BYPASS");
    assert_eq!(response.text().await.unwrap(), PAGE);
    assert!(
        started.elapsed() < Duration::from_millis(WAIT_MS / 2),
        "{path} waited {:?} for a render that was never queued",
        started.elapsed()
    );
}

async fn wait_for_queued(queue: &RenderQueue, expected: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let queued = queue.untaken(QueueKind::Render).await.unwrap();
        if queued == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{queued} renders queued, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_tenant_with_all_its_renders_under_way_gets_the_origin_and_other_tenants_do_not() {
    let gw = spawn_app_with(
        settings(),
        &[
            ("KILN_TENANT_MAX_RENDERS", "2".to_owned()),
            ("KILN_TENANT_RENDERS_PER_MINUTE", "0".to_owned()),
        ],
    )
    .await;
    let mut other = domain("other.test", gw.origin.port, settings());
    other.tenant_id = "tenant-2".into();
    gw.store.directory().put(&other).await.unwrap();
    crate::wait_for_domain(&gw, "other.test").await;
    let queue = gw.render_queue().await;

    let waiting = bots_waiting(&gw, "shop.test", &["/a", "/b"]);
    wait_for_queued(&queue, 2).await;
    assert_eq!(
        gw.store
            .pages()
            .renders_under_way(&gw.domain.tenant_id)
            .await
            .unwrap(),
        2
    );

    // A third page of the same tenant: the origin's page at once, and nothing queued.
    sent_to_the_origin_at_once(&gw, "shop.test", "/c").await;
    wait_for_queued(&queue, 2).await;

    // Another tenant's bots are not held back by it.
    let others = bots_waiting(&gw, "other.test", &["/a"]);
    wait_for_queued(&queue, 3).await;

    // A place given back (as a worker does when the render is done) is free for the next page.
    let (_, key) = gw.key("/a", kiln_core::DeviceClass::Desktop);
    gw.store
        .pages()
        .release_render_place(&gw.domain.tenant_id, &key.page_key())
        .await
        .unwrap();
    let more = bots_waiting(&gw, "shop.test", &["/d"]);
    wait_for_queued(&queue, 4).await;
    for task in waiting.into_iter().chain(others).chain(more) {
        task.abort();
    }
}

#[tokio::test]
async fn a_tenant_that_started_its_renders_for_the_minute_gets_the_origin() {
    let gw = spawn_app_with(
        settings(),
        &[
            ("KILN_TENANT_MAX_RENDERS", "0".to_owned()),
            ("KILN_TENANT_RENDERS_PER_MINUTE", "3".to_owned()),
        ],
    )
    .await;
    let queue = gw.render_queue().await;
    let waiting = bots_waiting(&gw, "shop.test", &["/a", "/b", "/c"]);
    wait_for_queued(&queue, 3).await;
    // Unless the minute turned meanwhile, the fourth page is refused.
    let minute = kiln_core::unix_millis_now() / 60_000;
    let started = Instant::now();
    let response = gw.bot("/d").send().await.unwrap();
    if kiln_core::unix_millis_now() / 60_000 == minute {
        assert_eq!(response.headers()["x-kiln-cache"], "BYPASS");
        assert!(started.elapsed() < Duration::from_millis(WAIT_MS / 2));
        wait_for_queued(&queue, 3).await;
    }
    for task in waiting {
        task.abort();
    }
}

#[tokio::test]
async fn with_the_render_queue_too_long_bots_get_the_origin_at_once() {
    let gw = spawn_app_with(
        settings(),
        &[("KILN_GATEWAY_MAX_QUEUED_RENDERS", "2".to_owned())],
    )
    .await;
    let queue = gw.render_queue().await;
    let waiting = bots_waiting(&gw, "shop.test", &["/a", "/b"]);
    wait_for_queued(&queue, 2).await;
    sent_to_the_origin_at_once(&gw, "shop.test", "/c").await;
    wait_for_queued(&queue, 2).await;
    // The refused page's render lock is not left behind for the next bot.
    let (_, key) = gw.key("/c", kiln_core::DeviceClass::Desktop);
    assert!(
        gw.store
            .pages()
            .try_lock_render(&key, "test", Duration::from_secs(1))
            .await
            .unwrap()
    );
    for task in waiting {
        task.abort();
    }
}
