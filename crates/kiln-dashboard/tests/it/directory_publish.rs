//! A full publish of the directory while domains change. The publish writes a hash of its own, a
//! batch at a time, and puts it in place of the directory at the end, which undoes what was
//! published into the old one meanwhile; `publish_all` reads Postgres again afterwards and makes
//! those changes again.

use crate::helpers::{TEST_ACTOR, spawn_app};
use kiln_control::OPERATOR_TENANT_ID;
use kiln_control::{directory, domains};
use kiln_core::{DomainSettings, Hostname};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domains_added_changed_and_removed_during_a_full_publish_are_as_postgres_says_after_it() {
    let t = spawn_app().await;
    let changed = t
        .add("changed.localhost", "http://127.0.0.1:5174")
        .await
        .unwrap();
    t.add("removed.localhost", "http://127.0.0.1:5175")
        .await
        .unwrap();
    // Enough domains for several batches, written straight to Postgres.
    let count = 20 * kiln_store::PUBLISH_BATCH;
    let inserted = sqlx::query(
        "INSERT INTO domains (id, tenant_id, hostname, origin, verified, verification_token)
         SELECT gen_random_uuid(), $1, 'd' || n || '.localhost', 'http://127.0.0.1:5176', true,
                'token-' || n
         FROM generate_series(1, $2) AS n",
    )
    .bind(OPERATOR_TENANT_ID)
    .bind(count as i32)
    .execute(&t.pg)
    .await
    .unwrap();
    assert_eq!(inserted.rows_affected(), count as u64);

    // As soon as the publish has written its first batch: a domain added, one changed and one
    // removed, each committed to Postgres and published into the directory the publish is about
    // to replace.
    let pattern = "{kiln:domains}:publishing:*";
    let meanwhile = async {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if !t
                .redis
                .cli(&["--scan", "--pattern", pattern])
                .trim()
                .is_empty()
            {
                break;
            }
            assert!(Instant::now() < deadline, "the publish never began");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        t.add("late.localhost", "http://127.0.0.1:5177")
            .await
            .unwrap();
        let settings = DomainSettings {
            cache_ttl_secs: 123,
            ..DomainSettings::default()
        };
        domains::update(&t.app, changed.record(), None, settings, TEST_ACTOR)
            .await
            .unwrap();
        t.remove("removed.localhost").await.unwrap();
    };
    let (report, ()) = tokio::join!(directory::publish_all(&t.app), meanwhile);
    let report = report.unwrap();
    assert_eq!(report.published, count + 2, "{report:?}");

    // Redis holds what Postgres does.
    let directory = t.app.store.directory().read().await.unwrap();
    assert!(directory.complete);
    let mut expected: Vec<String> = (1..=count).map(|n| format!("d{n}.localhost")).collect();
    expected.extend(["changed.localhost".to_owned(), "late.localhost".to_owned()]);
    expected.sort();
    assert_eq!(t.redis_hosts().await, expected);
    let changed = t.redis_domain("changed.localhost").await.unwrap();
    assert_eq!(changed.settings.cache_ttl_secs, 123);
    assert_eq!(
        t.redis_domain("removed.localhost").await,
        None,
        "{:?}",
        Hostname::parse("removed.localhost")
    );
}
