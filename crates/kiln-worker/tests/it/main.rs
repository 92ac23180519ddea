//! The worker end to end: real Redis, real Chromium, a real origin, jobs through the queue.

mod corpus;
mod fidelity;
mod fuzz_corpus;
mod helpers;
mod isolation;
mod origin;
mod parity;
mod purposes;

use helpers::{spawn_app, spawn_app_with, spawn_unready_app};
use kiln_core::DeviceClass::{Desktop, Mobile};
use kiln_store::{ClaimOutcome, RenderBudget};
use kiln_testkit::free_port;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renders_script_inserted_content_and_strips_scripts() {
    let app = spawn_app().await;
    let job = app.job(&app.origin.url("/app"), Desktop);
    // The gateway that queued the job holds its render claim (the lock and a place in the
    // tenant's budget); the worker must end it.
    let one_at_a_time = RenderBudget {
        concurrent: 1,
        per_minute: 0,
    };
    let claimed = app
        .store
        .pages()
        .claim_render(
            &job.key,
            &job.tenant_id,
            "gateway-1",
            Duration::from_secs(60),
            one_at_a_time,
            async { None },
        )
        .await
        .unwrap();
    match claimed {
        ClaimOutcome::Claimed(claim) => claim.hand_over(),
        other => panic!("the render was not claimed: {other:?}"),
    }

    let rendered = app.run(job.clone()).await;

    assert_eq!(rendered.status(), 200);
    let html = rendered.html();
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    assert!(
        html.contains("Hello from the fixture API"),
        "the fetched text is missing: {html}"
    );
    assert!(!html.contains(">loading<"), "{html}");
    assert!(!html.contains("<script src"), "{html}");
    assert!(
        !html.contains("window.inlineRan"),
        "an inline script survived: {html}"
    );
    assert!(
        html.contains(r#"<script type="application/ld+json">"#),
        "JSON-LD was removed: {html}"
    );
    assert!(html.contains("Kiln Fixture Org"), "{html}");
    let entry = rendered.entry.as_ref().unwrap();
    assert_eq!(entry.meta.url, "https://www.example.test/app");
    assert!(entry.meta.headers.is_empty(), "{:?}", entry.meta.headers);
    assert_eq!(app.origin.hits("/app"), 1);
    assert_eq!(app.origin.hits("/static/app.js"), 1);
    assert_eq!(app.origin.hits("/api/data.json"), 1);
    assert_eq!(
        app.origin.hits("/img/logo.png"),
        0,
        "images must be blocked"
    );
    assert_eq!(
        app.origin.hits("/favicon.ico"),
        0,
        "renders never need the favicon"
    );
    assert!(
        app.store
            .pages()
            .try_lock_render(&job.key, "gateway-2", Duration::from_secs(60))
            .await
            .unwrap(),
        "the render lock was not released"
    );
    assert_eq!(
        app.store
            .pages()
            .renders_under_way(&job.tenant_id)
            .await
            .unwrap(),
        0,
        "the render's place in the tenant's budget was not given back"
    );
    tracing::info!(
        elapsed_ms = rendered.elapsed.as_millis() as u64,
        "fixture /app rendered"
    );

    // A second render of the same page starts from a fresh browser context and gets the same result.
    let again = app.render("/app", Desktop).await;
    assert!(again.html().contains("Hello from the fixture API"));
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_for_prerender_ready() {
    let app = spawn_app().await;
    let rendered = app.render("/late", Desktop).await;
    assert_eq!(rendered.status(), 200);
    let html = rendered.html();
    assert!(html.contains("late content arrived"), "{html}");
    assert!(!html.contains("not yet"), "{html}");
    assert!(
        rendered.elapsed >= Duration::from_millis(1500),
        "{:?}",
        rendered.elapsed
    );
    tracing::info!(
        elapsed_ms = rendered.elapsed.as_millis() as u64,
        "fixture /late rendered"
    );
    app.shutdown().await;
}

/// A page that said it is complete is ready without the quiet window (its DOM never goes quiet
/// here), but not while a request it started is still in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_that_declares_itself_ready_needs_no_quiet_window() {
    let app = spawn_app().await;
    let rendered = app.render("/declared", Desktop).await;
    assert_eq!(rendered.status(), 200);
    let html = rendered.html();
    assert!(html.contains("the data after the declaration"), "{html}");
    assert!(!html.contains("no data yet"), "{html}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_headers_and_the_quality_gate() {
    let app = spawn_app().await;

    let meta_404 = app.render("/meta404", Desktop).await;
    assert_eq!(meta_404.status(), 404);
    assert!(meta_404.html().contains("no longer exists"));

    let origin_404 = app.render("/missing", Desktop).await;
    assert_eq!(origin_404.status(), 404);
    assert!(origin_404.html().contains("Not found here"));

    let moved = app.render("/moved-meta", Desktop).await;
    assert_eq!(moved.status(), 301);
    let headers = &moved.entry.as_ref().unwrap().meta.headers;
    assert_eq!(
        headers,
        &vec![
            (
                "Location".to_owned(),
                "https://www.example.test/new-home".to_owned()
            ),
            ("X-Robots-Tag".to_owned(), "noindex".to_owned()),
        ],
        "Set-Cookie must never be stored"
    );

    // The origin's own redirect is stored as a redirect to the public host, not followed.
    let redirected = app.render("/old-path", Desktop).await;
    assert_eq!(redirected.status(), 301);
    let headers = &redirected.entry.as_ref().unwrap().meta.headers;
    assert_eq!(
        headers,
        &vec![(
            "Location".to_owned(),
            "https://www.example.test/app".to_owned()
        )]
    );

    let broken = app.render("/broken", Desktop).await;
    assert!(broken.failure().contains("500"), "{}", broken.failure());
    assert!(broken.entry.is_none());

    let empty = app.render("/empty", Desktop).await;
    assert!(empty.failure().contains("empty"), "{}", empty.failure());
    assert!(empty.entry.is_none());

    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_that_polls_forever_still_finishes() {
    let app = spawn_app().await;
    let rendered = app.render("/poll", Desktop).await;
    assert_eq!(rendered.status(), 200);
    assert!(rendered.html().contains("polled "), "{}", rendered.html());
    // Stored at all means readiness ended the render before its 10 s cap (a timeout is a failed
    // render); how soon (about 2 s, once the long-poll counts as long-lived) is for the benchmark.
    assert!(app.origin.hits("/api/poll") >= 1);
    assert_eq!(app.origin.hits("/api/longpoll"), 1);
    tracing::info!(
        elapsed_ms = rendered.elapsed.as_millis() as u64,
        "fixture /poll rendered"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mobile_and_desktop_viewports() {
    let app = spawn_app().await;
    let probe = |html: &str, field: &str| -> String {
        let marker = format!("probe-{field}=");
        let start = html
            .find(&marker)
            .unwrap_or_else(|| panic!("no {marker} in {html}"))
            + marker.len();
        html[start..].split('|').next().unwrap().to_owned()
    };

    let mobile = app.render("/viewport", Mobile).await;
    let html = mobile.html();
    let width: u32 = probe(&html, "width").parse().unwrap();
    assert!(width < 500, "mobile width {width}");
    assert!(probe(&html, "touch").parse::<u32>().unwrap() > 0, "{html}");
    let ua = probe(&html, "ua");
    assert!(ua.contains("Mobile") && ua.contains("KilnRender"), "{ua}");

    let desktop = app.render("/viewport", Desktop).await;
    let html = desktop.html();
    let width: u32 = probe(&html, "width").parse().unwrap();
    assert!(width >= 1000, "desktop width {width}");
    assert_eq!(probe(&html, "touch"), "0");
    assert!(!probe(&html, "ua").contains("Mobile"), "{html}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_grant_is_its_tenant_s_alone_and_kiln_s_own_services_are_nobody_s() {
    // The test origin's one port, for tenant-7 only.
    let app = spawn_app_with(&[("KILN_ALLOWED_PRIVATE_NETS", "{origin}@tenant-7")]).await;
    let url = app.origin.url("/app");
    let mut granted = app.job(&url, Desktop);
    granted.tenant_id = "tenant-7".into();
    let rendered = app.run(granted).await;
    assert_eq!(rendered.status(), 200);
    assert!(
        rendered.html().contains("Hello from the fixture API"),
        "{}",
        rendered.html()
    );

    // The same page for another tenant: its render's browser context has no grant.
    let before = app.origin.hits("/app");
    let other = app.run(app.job(&url, Desktop)).await;
    assert!(
        other.failure().contains("egress proxy: refused"),
        "{}",
        other.failure()
    );
    assert!(other.entry.is_none());
    assert_eq!(
        app.origin.hits("/app"),
        before,
        "nothing reached the origin for tenant-1"
    );

    // Mobile renders (a tab set up for another device) and renders one after another alike.
    let mut mobile = app.job(&url, Mobile);
    mobile.tenant_id = "tenant-7".into();
    assert_eq!(app.run(mobile).await.status(), 200);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kiln_s_own_services_are_never_rendered_whatever_is_granted() {
    // Every port of 127.0.0.1 to everyone: the widest grant there is.
    let app = spawn_app().await;
    let redis = format!("http://127.0.0.1:{}/", app.redis_port());
    let admin = format!("http://127.0.0.1:{}/metrics", app.admin_port);
    for url in [redis, admin] {
        let rendered = app.run(app.job(&url, Desktop)).await;
        assert!(
            rendered.failure().contains("egress proxy: refused"),
            "{url}: {}",
            rendered.failure()
        );
        assert!(rendered.entry.is_none(), "{url}");
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_origin_fails_without_storing() {
    let app = spawn_app().await;
    let dead = format!("http://127.0.0.1:{}/", free_port());
    let job = app.job(&dead, Desktop);
    let rendered = app.run(job).await;
    assert!(
        rendered.failure().contains("the origin is unreachable"),
        "{}",
        rendered.failure()
    );
    assert!(rendered.entry.is_none());

    // A render URL that is not http(s) is refused without a browser.
    let bad = app.run(app.job("file:///etc/passwd", Desktop)).await;
    assert!(
        bad.failure().contains("not an http(s) URL"),
        "{}",
        bad.failure()
    );
    assert_eq!(
        app.metric(
            r#"kiln_render_duration_seconds_count{outcome="failed",device="desktop",purpose="bot"}"#
        )
        .await,
        2.0
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routine_recycle_never_makes_the_worker_unready() {
    // One browser, replaced after every render: each render is followed by a moment with no
    // browser running while the next one launches.
    let app = spawn_app_with(&[
        ("KILN_WORKER_RECYCLE_AFTER", "1"),
        ("KILN_WORKER_TABS_PER_BROWSER", "1"),
    ])
    .await;
    let stop = tokio_util::sync::CancellationToken::new();
    let probes = {
        let (http, port, stop) = (reqwest::Client::new(), app.admin_port, stop.clone());
        tokio::spawn(async move {
            let (mut answers, mut unready) = (0u32, Vec::new());
            while !stop.is_cancelled() {
                let response = http
                    .get(format!("http://127.0.0.1:{port}/readyz"))
                    .send()
                    .await
                    .unwrap();
                answers += 1;
                if response.status() != 200 {
                    unready.push(response.text().await.unwrap());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (answers, unready)
        })
    };
    for _ in 0..3 {
        let html = app.render("/app", Desktop).await.html();
        assert!(html.contains("Hello from the fixture API"), "{html}");
    }
    // The last render's browser is being replaced now: keep asking through its relaunch.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    let (answers, unready) = probes.await.unwrap();
    assert!(
        app.metric(r#"kiln_browser_recycles_total{reason="renders"}"#)
            .await
            >= 3.0
    );
    assert!(answers > 50, "only {answers} probes");
    assert!(
        unready.is_empty(),
        "{} of {answers} probes: {unready:?}",
        unready.len()
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_are_recycled_and_leave_nothing_behind() {
    let app = spawn_app_with(&[
        ("KILN_WORKER_RECYCLE_AFTER", "1"),
        ("KILN_WORKER_TABS_PER_BROWSER", "1"),
    ])
    .await;
    for _ in 0..3 {
        let rendered = app.render("/app", Desktop).await;
        let html = rendered.html();
        assert!(html.contains("Hello from the fixture API"), "{html}");
    }
    let mains = app.mains_seen();
    assert!(
        mains.len() >= 3,
        "every render should have had a browser of its own: {mains:?}"
    );
    assert!(
        app.metric(r#"kiln_browser_recycles_total{reason="renders"}"#)
            .await
            >= 2.0
    );
    assert_eq!(
        app.metric(r#"kiln_browser_recycles_total{reason="crashed"}"#)
            .await,
        0.0
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_past_their_age_or_memory_limit_are_replaced_while_idle() {
    for limit in [
        ("KILN_WORKER_RECYCLE_AGE_SECS", "1"),
        // Any Chromium uses more than a megabyte.
        ("KILN_WORKER_RECYCLE_MEMORY_MB", "1"),
    ] {
        let app = spawn_app_with(&[limit]).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while app.mains_seen().len() < 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "{limit:?}: browsers seen {:?}",
                app.mains_seen()
            );
            app.chromium_processes();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Renders go on through the replacements.
        let rendered = app.render("/app", Desktop).await;
        assert!(rendered.html().contains("Hello from the fixture API"));
        app.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_left_by_a_dead_worker_are_cleared_at_start_and_live_ones_kept() {
    use nix::fcntl::{Flock, FlockArg};
    let root = tempfile::tempdir().unwrap();
    // What a worker killed with SIGKILL leaves: a running Chromium whose profile nobody has locked.
    let orphan_profile = root.path().join("kiln-chromium-orphan");
    std::fs::create_dir(&orphan_profile).unwrap();
    std::fs::write(orphan_profile.join("kiln-worker.lock"), "").unwrap();
    let mut orphan = std::process::Command::new(
        std::env::var("KILN_CHROME_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into()),
    )
    .args(kiln_testkit::CHROMIUM_TEST_FLAGS)
    .arg(format!("--user-data-dir={}", orphan_profile.display()))
    .arg("about:blank")
    .env("XDG_CONFIG_HOME", orphan_profile.join("config"))
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    // Another worker's live profile, locked by its owner (this test).
    let live_profile = root.path().join("kiln-chromium-live");
    std::fs::create_dir(&live_profile).unwrap();
    let lock = std::fs::File::create(live_profile.join("kiln-worker.lock")).unwrap();
    let held = Flock::lock(lock, FlockArg::LockExclusiveNonblock).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let app = spawn_app_with(&[("KILN_WORKER_PROFILE_DIR", root.path().to_str().unwrap())]).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while orphan.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the orphaned browser still runs"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!orphan_profile.exists(), "the orphan's profile is deleted");
    assert!(
        live_profile.exists(),
        "a live worker's profile is left alone"
    );
    let rendered = app.render("/app", Desktop).await;
    assert!(rendered.html().contains("Hello from the fixture API"));
    drop(held);
    std::fs::remove_dir_all(&live_profile).unwrap();
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_from_a_killed_browser() {
    let app = spawn_app().await;
    let mains = app.mains_seen();
    assert_eq!(mains.len(), 1, "{mains:?}");
    let main = *mains.iter().next().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(main),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();

    let rendered = app.render("/app", Desktop).await;
    assert!(rendered.html().contains("Hello from the fixture API"));
    assert!(app.mains_seen().len() >= 2);
    let (status, body) = app.get_admin("/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok"));

    // The metrics tell of the crash, the replacement and the render.
    assert_eq!(
        app.metric(r#"kiln_browser_recycles_total{reason="crashed"}"#)
            .await,
        1.0
    );
    assert_eq!(app.metric("kiln_browser_crashes_total").await, 1.0);
    assert_eq!(app.metric("kiln_browser_pool_size").await, 1.0);
    // The test worker runs one browser of two tabs.
    assert_eq!(app.metric("kiln_browser_tabs_capacity").await, 2.0);
    assert_eq!(app.metric("kiln_browser_tabs_in_use").await, 0.0);
    assert_eq!(
        app.metric(
            r#"kiln_render_duration_seconds_count{outcome="stored",device="desktop",purpose="bot"}"#
        )
        .await,
        1.0
    );
    assert_eq!(
        app.metric(r#"kiln_build_info{service="worker",version="0.0.0"}"#)
            .await,
        1.0
    );
    assert_eq!(app.metric(r#"kiln_queue_depth{queue="render"}"#).await, 0.0);
    // Everything docs/metrics.md promises of a worker is there.
    let (_, text) = app.get_admin("/metrics").await;
    kiln_testkit::assert_serves_documented_metrics(&text, &["Every Kiln service", "Worker"]);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_killed_or_frozen_mid_render_is_replaced_and_the_render_retried() {
    use nix::sys::signal::{Signal, kill};
    let app = spawn_app().await;
    for (signal, path) in [
        (Signal::SIGKILL, "/slow?killed"),
        (Signal::SIGSTOP, "/slow?frozen"),
    ] {
        app.chromium_processes();
        let mains = app.mains_seen();
        let mut job = app.job(&app.origin.url(path), Desktop);
        // A short cap: a frozen browser's page runs out of it in 2 s, and a browser that then
        // does not answer its health check is replaced at once.
        job.render_timeout_ms = 2_000;
        let hits = app.origin.hits("/slow");
        let pending = app.start(job).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while app.origin.hits("/slow") == hits {
            assert!(
                std::time::Instant::now() < deadline,
                "the render never started"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The page is being loaded: the browser dies (or stops answering) under it.
        for main in &mains {
            // The browsers of earlier rounds are gone already.
            let _ = kill(nix::unistd::Pid::from_raw(*main), signal);
        }
        let rendered = pending.outcome(&app.store).await;
        app.chromium_processes();
        assert_eq!(rendered.status(), 200, "{signal}");
        assert!(rendered.html().contains("A slow page"), "{signal}");
        assert!(
            app.mains_seen().len() > mains.len(),
            "{signal}: no new browser"
        );
        assert_eq!(app.origin.hits("/slow"), hits + 2, "{signal}: retried once");
    }
    let (status, body) = app.get_admin("/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_renders_in_flight_finish() {
    let mut app = spawn_app().await;
    let pending = app.start(app.job(&app.origin.url("/late"), Desktop)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while app.origin.hits("/late") == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the render never reached the origin"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    app.request_shutdown();
    let rendered = pending.outcome(&app.store).await;
    assert_eq!(rendered.status(), 200);
    assert!(
        rendered.html().contains("late content arrived"),
        "{}",
        rendered.html()
    );
    app.shutdown().await;
}

/// An idle worker looks for jobs about once a second per queue (and is woken at once when one is
/// pushed). When its two consumers shared a task, each woke the other with every fetch, and an idle
/// worker sent Redis thousands of commands a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_leaves_redis_alone() {
    let app = spawn_app().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = app.redis_commands_processed();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let sent = app.redis_commands_processed() - before;
    // Measured: about 15 a second (the polls, the heartbeats, the warm dispatch, the sweeps).
    assert!(
        sent < 250,
        "an idle worker sent Redis {sent} commands in 5 s"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_redis() {
    let mut app = spawn_app().await;
    assert_eq!(app.get_admin("/readyz").await, (200, "ready".to_owned()));

    app.stop_redis();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = app.get_admin("/readyz").await;
        if status == 503 {
            assert!(body.contains("redis"), "{body}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/readyz stayed {status} without redis"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.get_admin("/healthz").await, (200, "ok".to_owned()));

    app.restart_redis();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while app.get_admin("/readyz").await.0 != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "/readyz did not recover with redis"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rendered = app.render("/meta404", Desktop).await;
    assert_eq!(rendered.status(), 404);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_that_cannot_start_keeps_the_worker_up_but_unready() {
    let app = spawn_unready_app(&[("KILN_CHROME_PATH", "/nonexistent/chromium")]).await;
    assert_eq!(app.get_admin("/healthz").await, (200, "ok".to_owned()));
    let (status, body) = app.get_admin("/readyz").await;
    assert_eq!((status, body.as_str()), (503, "no browser is running"));

    // Jobs still get an answer: a failure, so that waiting gateways fall back to the origin.
    let mut job = app.job(&app.origin.url("/app"), Desktop);
    job.render_timeout_ms = 1_000;
    let rendered = app.run(job).await;
    assert!(
        rendered.failure().contains("no browser"),
        "{}",
        rendered.failure()
    );
    assert_eq!(app.origin.hits("/app"), 0);
    app.shutdown().await;
}

/// The safety net: a worker whose runtime is dropped without a shutdown (a test that just ends, a
/// panic) still takes its Chromium processes down and reaps them.
#[test]
fn dropping_the_runtime_takes_chromium_down() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let app = runtime.block_on(async {
        let app = spawn_app().await;
        assert_eq!(app.render("/meta404", Desktop).await.status(), 404);
        app
    });
    drop(runtime);
    app.assert_no_chromium_left();
}
