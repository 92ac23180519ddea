//! What the worker does with a render, by the job's purpose: a bot's render is stored, announced and
//! unlocked; a warm render is stored, announced when stored, counted for its warm job and leaves
//! locks alone; a preview is handed to the dashboard and nothing else. Every render is logged.

use crate::helpers::{TestApp, spawn_app, spawn_app_with};
use kiln_core::DeviceClass::{Desktop, Mobile};
use kiln_core::RenderJob;
use kiln_core::job::RenderPurpose;
use kiln_queue::QueueKind;
use kiln_store::{RenderLogOutcome, RenderLogPurpose, StoreEvent, WarmProgress};
use kiln_testkit::free_port;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(60);

fn warm(mut job: RenderJob, job_id: &str) -> RenderJob {
    job.purpose = RenderPurpose::Warm {
        job_id: job_id.to_owned(),
    };
    job
}

fn preview(mut job: RenderJob, reply_to: &str) -> RenderJob {
    job.purpose = RenderPurpose::Preview {
        reply_to: reply_to.to_owned(),
    };
    job
}

impl TestApp {
    /// Polls the warm job's counters until they have counted `renders` results.
    async fn warm_progress_after(&self, job_id: &str, renders: u64) -> WarmProgress {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let progress = self.store.render_log().warm_progress(job_id).await.unwrap();
            if progress.done + progress.failed >= renders {
                return progress;
            }
            assert!(Instant::now() < deadline, "{progress:?} after the deadline");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bot_renders_are_logged_with_the_bots_user_agent() {
    let app = spawn_app().await;
    let mut job = app.job(&app.origin.url("/app"), Mobile);
    job.user_agent = Some("Googlebot/2.1 (+http://www.google.com/bot.html)".to_owned());
    let rendered = app.run(job.clone()).await;
    assert_eq!(rendered.status(), 200);
    let stored = rendered.entry.as_ref().unwrap();
    assert!(stored.meta.expires_at > stored.meta.rendered_at);

    let failed = app.run(app.job(&app.origin.url("/broken"), Desktop)).await;
    assert!(failed.failure().contains("500"), "{}", failed.failure());

    let log = app.render_log(2).await;
    assert_eq!(log.len(), 2, "{log:?}");
    let entry = &log[0];
    assert_eq!(entry.domain_id, job.key.domain_id);
    assert_eq!(entry.tenant_id, "tenant-1");
    assert_eq!(entry.url, "https://www.example.test/app");
    assert_eq!(entry.device, Mobile);
    assert_eq!(entry.purpose, RenderLogPurpose::Bot);
    assert_eq!(entry.outcome, RenderLogOutcome::Stored);
    assert_eq!(entry.status, Some(200));
    assert_eq!(entry.reason, None);
    assert_eq!(entry.bytes, stored.html.len() as u64);
    assert!(entry.duration_ms > 0);
    assert_eq!(entry.user_agent, job.user_agent);

    let entry = &log[1];
    assert_eq!(entry.url, "https://www.example.test/broken");
    assert_eq!(entry.outcome, RenderLogOutcome::Failed);
    assert_eq!(entry.status, Some(500));
    assert!(
        entry.reason.as_deref().unwrap().contains("500"),
        "{entry:?}"
    );
    assert_eq!(entry.bytes, 0);
    assert_eq!(entry.user_agent, None);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_jobs_store_count_and_leave_the_render_lock_alone() {
    let app = spawn_app().await;
    let job = warm(app.job(&app.origin.url("/app"), Desktop), "warm-1");
    // A bot's render of the same page is in flight: its gateway holds the lock.
    assert!(
        app.store
            .pages()
            .try_lock_render(&job.key, "gateway-1", Duration::from_secs(60))
            .await
            .unwrap()
    );

    // The stored page is announced, so waiting gateways get it.
    let rendered = app
        .start_on(QueueKind::Warm, job.clone())
        .await
        .outcome(&app.store)
        .await;
    assert_eq!(rendered.status(), 200);
    assert!(rendered.html().contains("Hello from the fixture API"));
    assert_eq!(
        app.warm_progress_after("warm-1", 1).await,
        WarmProgress { done: 1, failed: 0 }
    );
    assert!(
        !app.store
            .pages()
            .try_lock_render(&job.key, "gateway-2", Duration::from_secs(60))
            .await
            .unwrap(),
        "a warm render released a lock it did not take"
    );

    // Failures count as failed and store nothing: a dead origin, and one that answers 500.
    let dead = warm(
        app.job(&format!("http://127.0.0.1:{}/", free_port()), Desktop),
        "warm-1",
    );
    let broken = warm(app.job(&app.origin.url("/broken"), Mobile), "warm-1");
    app.push(QueueKind::Warm, dead.clone()).await;
    app.push(QueueKind::Warm, broken.clone()).await;
    assert_eq!(
        app.warm_progress_after("warm-1", 3).await,
        WarmProgress { done: 1, failed: 2 }
    );
    assert_eq!(app.store.pages().get(&dead.key).await.unwrap(), None);
    assert_eq!(app.store.pages().get(&broken.key).await.unwrap(), None);
    assert_eq!(
        app.store
            .render_log()
            .warm_progress("another-job")
            .await
            .unwrap(),
        WarmProgress::default()
    );

    let log = app.render_log(3).await;
    assert_eq!(log.len(), 3, "{log:?}");
    assert!(log.iter().all(|e| e.purpose == RenderLogPurpose::Warm));
    let outcomes: Vec<_> = log.iter().map(|e| (e.url.as_str(), e.outcome)).collect();
    assert_eq!(
        outcomes[0],
        ("https://www.example.test/app", RenderLogOutcome::Stored)
    );
    assert!(outcomes[1..].contains(&("https://www.example.test/", RenderLogOutcome::Failed)));
    assert!(outcomes[1..].contains(&("https://www.example.test/broken", RenderLogOutcome::Failed)));
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_warm_backlog_delays_a_bots_render_by_one_render_at_most() {
    // One browser with one render slot, and three warm slots kept busy with a backlog of slow
    // pages: the warm renders take every tab the browser opens as soon as it is ready, so a bot's
    // render has to win one from them. (With priorities off, this test fails nearly every time.)
    let app = spawn_app_with(&[
        ("KILN_WORKER_TABS_PER_BROWSER", "1"),
        ("KILN_WORKER_WARM_CONCURRENCY", "3"),
    ])
    .await;
    for i in 0..200 {
        let job = app.job(&app.origin.url(&format!("/slow?n={i}")), Desktop);
        app.push(QueueKind::Warm, warm(job, "backlog")).await;
    }
    let deadline = Instant::now() + DEADLINE;
    while app.origin.hits("/slow") < 3 {
        assert!(Instant::now() < deadline, "the backlog never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Bots' renders arrive. What must never happen is a bot's render waiting for a tab while warm
    // renders go on taking them. Between a bot's job being queued and its render getting a tab, one warm render
    // at most gets a tab: one the warm consumer took before the bot's job reached the worker.
    // (Counting the warm renders that *finish* meanwhile would not do: they run beside the bot's.)
    for round in 0..3 {
        let bot = app.job(&app.origin.url("/app"), Desktop);
        // The job is queued once its push returns (before, the test's subscription to the
        // announcements was still being made: no worker could know of the job).
        let pending = app.start(bot.clone()).await;
        let queued_at = kiln_core::unix_millis_now();
        assert_eq!(pending.outcome(&app.store).await.status(), 200);
        // The render is logged just after it is announced.
        let deadline = Instant::now() + DEADLINE;
        let (log, bot_tab_at) = loop {
            let log = app.render_log(1).await;
            let bot = log
                .iter()
                .find(|e| e.purpose == RenderLogPurpose::Bot && e.at >= queued_at);
            if let Some(bot) = bot {
                let tab_at = bot.tab_at.expect("the bot's render got no tab");
                break (log, tab_at);
            }
            assert!(Instant::now() < deadline, "the bot's render was not logged");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        // Warm renders that had not finished when the bot's was logged are not in the log yet:
        // wait for those that took a tab before the bot's render did.
        let warm_tabs = loop {
            let log = app.render_log(1).await;
            let warm: Vec<_> = log
                .iter()
                .filter(|e| e.purpose == RenderLogPurpose::Warm)
                .collect();
            if warm.iter().any(|e| e.tab_at.unwrap_or(0) >= bot_tab_at) {
                break warm
                    .iter()
                    .filter_map(|e| e.tab_at)
                    .filter(|at| (queued_at..bot_tab_at).contains(at))
                    .count();
            }
            assert!(
                Instant::now() < deadline,
                "no warm render after the bot's: {log:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert!(
            warm_tabs <= 1,
            "round {round}: {warm_tabs} warm renders took a tab while the bot's waited for one \
             (purpose, tab at, finished at, relative to the bot's job being queued): {:?}",
            log.iter()
                .filter(|e| e.at + 3000 >= queued_at)
                .map(|e| (
                    e.purpose,
                    e.tab_at.map(|at| at as i64 - queued_at as i64),
                    e.at as i64 - queued_at as i64
                ))
                .collect::<Vec<_>>()
        );
    }
    let progress = app
        .store
        .render_log()
        .warm_progress("backlog")
        .await
        .unwrap();
    assert_eq!(progress.failed, 0, "{progress:?}");
    assert!(
        progress.done < 200,
        "the backlog was done first: {progress:?}"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previews_reply_and_store_announce_and_unlock_nothing() {
    let app = spawn_app().await;
    let mut events = app.store.events().subscribe().await.unwrap();
    let job = preview(app.job(&app.origin.url("/app"), Desktop), "reply-1");
    assert!(
        app.store
            .pages()
            .try_lock_render(&job.key, "gateway-1", Duration::from_secs(60))
            .await
            .unwrap()
    );
    app.push(QueueKind::Render, job.clone()).await;
    let reply = app
        .store
        .render_log()
        .take_preview("reply-1", DEADLINE)
        .await
        .unwrap()
        .expect("no preview reply");
    assert_eq!(reply.error, None);
    assert_eq!(reply.status, 200);
    assert!(
        reply.html.contains("Hello from the fixture API"),
        "{}",
        reply.html
    );
    assert!(!reply.html.contains("<script src"), "{}", reply.html);
    assert!(reply.render_ms > 0);

    // A failed preview replies too, with what is known.
    let broken = preview(app.job(&app.origin.url("/broken"), Desktop), "reply-2");
    app.push(QueueKind::Render, broken.clone()).await;
    let reply = app
        .store
        .render_log()
        .take_preview("reply-2", DEADLINE)
        .await
        .unwrap()
        .expect("no reply for the failed preview");
    assert_eq!(reply.status, 500);
    assert!(reply.error.as_deref().unwrap().contains("500"), "{reply:?}");
    assert!(reply.html.is_empty());

    // Nothing stored, the lock untouched.
    assert_eq!(app.store.pages().get(&job.key).await.unwrap(), None);
    assert_eq!(app.store.pages().get(&broken.key).await.unwrap(), None);
    assert!(
        !app.store
            .pages()
            .try_lock_render(&job.key, "gateway-2", Duration::from_secs(60))
            .await
            .unwrap(),
        "a preview released a render lock"
    );
    // Nothing announced: a bot's render queued after the previews is announced on the same
    // channel, after anything they would have announced.
    let bot = app.job(&app.origin.url("/app"), Mobile);
    assert_eq!(app.run(bot.clone()).await.status(), 200);
    assert_eq!(
        first_announced(&mut events).await,
        bot.key.page_key(),
        "a preview was announced"
    );

    let log = app.render_log(3).await;
    let previews: Vec<_> = log
        .iter()
        .filter(|e| e.purpose == RenderLogPurpose::Preview)
        .map(|e| (e.url.as_str(), e.outcome, e.status))
        .collect();
    assert_eq!(
        previews,
        vec![
            (
                "https://www.example.test/app",
                RenderLogOutcome::Rendered,
                Some(200)
            ),
            (
                "https://www.example.test/broken",
                RenderLogOutcome::Failed,
                Some(500)
            ),
        ]
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bots_render_of_a_page_made_fresh_meanwhile_is_not_done_again() {
    let app = spawn_app().await;
    let mut job = app.job(&app.origin.url("/app"), Desktop);
    job.cache_ttl_secs = 2;
    job.stale_ttl_secs = 60;
    assert_eq!(app.run(job.clone()).await.status(), 200);
    assert_eq!(app.origin.hits("/app"), 1);

    // A second gateway queued the same page (it read the page missing or stale just before the
    // first render landed): the worker answers from the fresh page and releases that lock.
    assert!(
        app.store
            .pages()
            .try_lock_render(&job.key, "gateway-2", Duration::from_secs(60))
            .await
            .unwrap()
    );
    let again = app.run(job.clone()).await;
    assert_eq!(again.status(), 200);
    assert_eq!(
        app.origin.hits("/app"),
        1,
        "a fresh page was rendered again"
    );
    assert!(
        app.store
            .pages()
            .try_lock_render(&job.key, "gateway-3", Duration::from_secs(60))
            .await
            .unwrap(),
        "the lock was kept"
    );
    app.store
        .pages()
        .release_render_lock(&job.key)
        .await
        .unwrap();

    // A warm is asked for to replace the page: it renders.
    let warmed = app
        .start_on(QueueKind::Warm, warm(job.clone(), "warm-1"))
        .await
        .outcome(&app.store)
        .await;
    assert_eq!(warmed.status(), 200);
    assert_eq!(app.origin.hits("/app"), 2);

    // Once the page is stale, a bot's render (the refresh) renders.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(app.run(job.clone()).await.status(), 200);
    assert_eq!(app.origin.hits("/app"), 3);
    app.shutdown().await;
}

/// The page key of the first render announced on `events`.
async fn first_announced(events: &mut kiln_store::Subscription) -> String {
    tokio::time::timeout(DEADLINE, async {
        loop {
            match events.next().await {
                Some(StoreEvent::Rendered { page_key, .. }) => return page_key,
                Some(_) => continue,
                None => panic!("the event subscription closed"),
            }
        }
    })
    .await
    .expect("no announcement")
}
