//! The charts' numbers against real Postgres and Redis: renders and render times from the render log,
//! bot traffic copied from the Redis counters, per hour and per day, for one tenant only.

use crate::helpers::{TEST_ACTOR, TestApp, host_name, spawn_app};
use kiln_control::activity;
use kiln_control::db::{RenderRecord, UsageSnapshot};
use kiln_control::domains::{self, AddDomain};
use kiln_control::origin::Origin;
use kiln_control::stats::{self, Bucket, Charts};
use kiln_core::DomainSettings;
use kiln_store::{UsageHour, UsageKind};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

/// A tenant of its own with a domain called `host`; returns the tenant's and the domain's ids.
pub async fn tenant_with_domain(t: &TestApp, host: &str) -> (Uuid, Uuid) {
    let tenant_id = Uuid::new_v4();
    sqlx::query("INSERT INTO tenants (id, name) VALUES ($1, $2)")
        .bind(tenant_id)
        .bind(host)
        .execute(&t.pg)
        .await
        .unwrap();
    let domain_id = add_domain(t, tenant_id, host).await;
    (tenant_id, domain_id)
}

pub async fn add_domain(t: &TestApp, tenant_id: Uuid, host: &str) -> Uuid {
    let request = AddDomain {
        tenant_id,
        ..AddDomain::by_operator(
            host_name(host),
            Origin::parse("http://127.0.0.1:5173").unwrap(),
            DomainSettings::default(),
        )
    };
    domains::add_domain(&t.app, request, TEST_ACTOR)
        .await
        .unwrap()
        .record()
        .id
}

/// A render log entry as the copier stores it.
pub(crate) fn render(
    domain_id: Uuid,
    at: OffsetDateTime,
    purpose: &str,
    outcome: &str,
    duration_ms: i64,
) -> RenderRecord {
    RenderRecord {
        stream_id: Uuid::new_v4().to_string(),
        domain_id,
        at,
        url: "https://shop.test/".to_owned(),
        device: "desktop".to_owned(),
        purpose: purpose.to_owned(),
        outcome: outcome.to_owned(),
        status: (outcome != "failed").then_some(200),
        reason: (outcome == "failed").then(|| "render timed out".to_owned()),
        duration_ms,
        bytes: 1_000,
        user_agent: None,
        via: "edge".to_owned(),
    }
}

/// Stores renders as the render log copier does: (domain, when, purpose, outcome, duration).
async fn renders(t: &TestApp, renders: &[(Uuid, OffsetDateTime, &str, &str, i64)]) {
    let records: Vec<RenderRecord> = renders
        .iter()
        .map(|&(domain_id, at, purpose, outcome, duration_ms)| {
            render(domain_id, at, purpose, outcome, duration_ms)
        })
        .collect();
    t.app.db.insert_renders(&records, "1-0").await.unwrap();
}

/// Counts bot responses in Redis, as the gateways do.
async fn count(t: &TestApp, domain_id: Uuid, at: OffsetDateTime, kind: UsageKind, n: u64) {
    let millis = u64::try_from(at.unix_timestamp()).unwrap() * 1000;
    t.app
        .store
        .usage()
        .add(&UsageHour::at(millis), &[(domain_id.to_string(), kind, n)])
        .await
        .unwrap();
}

fn daily(domain_id: Uuid, hits: i64, misses: i64) -> UsageSnapshot {
    UsageSnapshot {
        domain_id,
        hits,
        misses,
        bypasses: 0,
        passthroughs: 0,
    }
}

/// A render time the charts read from the roll-ups' histograms: within 1/16 of `exact`, what
/// `percentile_cont` gives over the renders themselves (see `kiln_control::db::render_stats`).
#[track_caller]
pub fn assert_near(actual: Option<f64>, exact: f64) {
    let actual = actual.unwrap_or_else(|| panic!("no render time where {exact} was expected"));
    assert!(
        (actual - exact).abs() < exact / 16.0,
        "{actual} is not within 1/16 of {exact}"
    );
}

/// The day bucket that holds `at`.
fn day_of(charts: &Charts, at: OffsetDateTime) -> &Bucket {
    charts
        .days
        .iter()
        .find(|bucket| bucket.start.date() == at.date())
        .unwrap_or_else(|| panic!("no bucket for {at}"))
}

#[tokio::test]
async fn charts_count_renders_and_traffic_per_hour_and_day_for_one_tenant() {
    let t = spawn_app().await;
    let (tenant, shop) = tenant_with_domain(&t, "shop.localhost").await;
    let blog = add_domain(&t, tenant, "blog.localhost").await;
    let (other_tenant, other) = tenant_with_domain(&t, "other.localhost").await;

    let now = OffsetDateTime::now_utc();
    let this_hour = now.truncate_to_hour();
    let three_hours_ago = this_hour - Duration::hours(3);
    let two_days_ago = this_hour - Duration::days(2);
    renders(
        &t,
        &[
            // This hour: five stored renders, one failed, a preview; a second domain; another
            // tenant's.
            (shop, this_hour, "bot", "stored", 100),
            (shop, this_hour, "bot", "stored", 200),
            (shop, this_hour, "warm", "stored", 300),
            (shop, this_hour, "bot", "stored", 400),
            (shop, this_hour, "bot", "stored", 1_000),
            (shop, this_hour, "bot", "failed", 20_000),
            (shop, this_hour, "preview", "rendered", 90_000),
            (shop, this_hour, "preview", "stored", 90_000),
            (blog, this_hour, "bot", "stored", 700),
            (other, this_hour, "bot", "stored", 5),
            (other, this_hour, "bot", "failed", 5),
            (shop, three_hours_ago, "bot", "stored", 50),
            // Before the last 24 hours but within the last 30 days, and before both.
            (shop, two_days_ago, "bot", "failed", 10),
            (shop, now - Duration::days(31), "bot", "stored", 10),
        ],
    )
    .await;
    count(&t, shop, now, UsageKind::Hit, 3).await;
    count(&t, shop, now, UsageKind::Miss, 1).await;
    count(&t, blog, three_hours_ago, UsageKind::Hit, 5).await;
    count(&t, blog, three_hours_ago, UsageKind::Bypass, 1).await;
    count(&t, blog, three_hours_ago, UsageKind::Passthrough, 9).await;
    count(&t, other, now, UsageKind::Hit, 100).await;
    activity::snapshot_usage(&t.app).await.unwrap();
    // Older days, as earlier snapshots left them.
    let ten_days_ago = now - Duration::days(10);
    t.app
        .db
        .upsert_usage(ten_days_ago.date(), &[daily(shop, 7, 3)])
        .await
        .unwrap();
    t.app
        .db
        .upsert_usage((now - Duration::days(30)).date(), &[daily(shop, 1_000, 0)])
        .await
        .unwrap();

    let charts = stats::charts(&t.app, tenant, None, now).await.unwrap();

    // Every hour and day is there, oldest first, ending now.
    assert_eq!(charts.hours.len(), 24);
    assert_eq!(charts.days.len(), 30);
    for (i, bucket) in charts.hours.iter().enumerate() {
        assert_eq!(bucket.start, this_hour - Duration::hours(23 - i as i64));
    }
    for (i, bucket) in charts.days.iter().enumerate() {
        assert_eq!(
            bucket.start,
            now.truncate_to_day() - Duration::days(29 - i as i64)
        );
    }

    // This hour: the tenant's two domains, previews left out, render times of stored renders only.
    // p50 of 100, 200, 300, 400, 700, 1000 is 350; p95 is 925 (interpolated, 0.95 · 5 = 4.75).
    let hour = &charts.hours[23];
    assert_eq!((hour.renders, hour.failed_renders), (6, 1));
    assert_near(hour.p50_ms, 350.0);
    assert_near(hour.p95_ms, 925.0);
    assert_eq!((hour.hits, hour.misses, hour.bypasses), (3, 1, 0));
    assert_eq!(hour.hit_ratio(), Some(0.75));

    let earlier = &charts.hours[20];
    assert_eq!((earlier.renders, earlier.failed_renders), (1, 0));
    assert_near(earlier.p50_ms, 50.0);
    assert_near(earlier.p95_ms, 50.0);
    assert_eq!((earlier.hits, earlier.misses, earlier.bypasses), (5, 0, 1));

    // Everything else is zero.
    for (i, bucket) in charts.hours.iter().enumerate() {
        if i != 23 && i != 20 {
            assert_eq!(bucket, &Bucket::empty(bucket.start), "hour {i}");
        }
    }
    assert_eq!(charts.hours[0].hit_ratio(), None);

    // Per day: what happened today (and three hours ago, which may have been yesterday), the failed
    // render of two days ago, and the older usage.
    let mut expected_days: Vec<(OffsetDateTime, [i64; 5])> = vec![
        (this_hour, [6, 1, 3, 1, 0]),
        (three_hours_ago, [1, 0, 5, 0, 1]),
        (two_days_ago, [0, 1, 0, 0, 0]),
        (ten_days_ago, [0, 0, 7, 3, 0]),
        (now - Duration::days(29), [0, 0, 0, 0, 0]),
    ];
    if three_hours_ago.date() == this_hour.date() {
        expected_days[0].1 = [7, 1, 8, 1, 1];
        expected_days.remove(1);
    }
    for (at, [renders, failed, hits, misses, bypasses]) in expected_days {
        let day = day_of(&charts, at);
        assert_eq!(
            (
                day.renders,
                day.failed_renders,
                day.hits,
                day.misses,
                day.bypasses
            ),
            (renders, failed, hits, misses, bypasses),
            "{at}"
        );
    }
    assert!(day_of(&charts, this_hour).p95_ms.is_some());
    let days_with_data = charts
        .days
        .iter()
        .filter(|d| **d != Bucket::empty(d.start))
        .count();
    assert!(
        (3..=4).contains(&days_with_data),
        "{days_with_data}: {:?}",
        charts.days
    );
    assert_eq!(
        day_of(&charts, two_days_ago).p50_ms,
        None,
        "a failed render has no render time"
    );

    // One domain of the tenant.
    let shop_only = stats::charts(&t.app, tenant, Some(shop), now)
        .await
        .unwrap();
    let hour = &shop_only.hours[23];
    assert_eq!((hour.renders, hour.failed_renders), (5, 1));
    assert_near(hour.p50_ms, 300.0);
    assert_eq!((hour.hits, hour.misses), (3, 1));
    assert_eq!(shop_only.hours[20].hits, 0, "that was the blog's");
    assert_eq!(shop_only.hours[20].renders, 1);

    // The other tenant sees only its own, and nothing of the first tenant's domains.
    let theirs = stats::charts(&t.app, other_tenant, None, now)
        .await
        .unwrap();
    let hour = &theirs.hours[23];
    assert_eq!(
        (hour.renders, hour.failed_renders, hour.hits, hour.misses),
        (1, 1, 100, 0)
    );
    assert_eq!(hour.p50_ms, Some(5.0), "exact below 32 ms");
    assert_eq!(
        theirs
            .hours
            .iter()
            .map(|b| b.renders + b.failed_renders)
            .sum::<i64>(),
        2
    );
    let snooping = stats::charts(&t.app, other_tenant, Some(shop), now)
        .await
        .unwrap();
    assert!(
        snooping
            .hours
            .iter()
            .chain(&snooping.days)
            .all(|b| *b == Bucket::empty(b.start)),
        "{snooping:?}"
    );

    // The domain list's hit ratios: the last 7 days, per domain, for the tenant only.
    let ratios = t.app.db.domain_hit_ratios(tenant).await.unwrap();
    assert_eq!(ratios.len(), 2, "{ratios:?}");
    assert_eq!(ratios[&shop], (3, 4));
    assert_eq!(ratios[&blog], (5, 6), "passthroughs are not lookups");
    let theirs = t.app.db.domain_hit_ratios(other_tenant).await.unwrap();
    assert_eq!(
        theirs.into_iter().collect::<Vec<_>>(),
        [(other, (100, 100))]
    );
}

#[tokio::test]
async fn hourly_usage_never_shrinks_and_old_hours_are_deleted() {
    let t = spawn_app().await;
    let (tenant, shop) = tenant_with_domain(&t, "shop.localhost").await;
    let now = OffsetDateTime::now_utc();
    let this_hour = now.truncate_to_hour();
    let old_hour = this_hour - Duration::days(40);
    let row = |hits, misses| UsageSnapshot {
        domain_id: shop,
        hits,
        misses,
        bypasses: 2,
        passthroughs: 1,
    };
    let unknown_domain = UsageSnapshot {
        domain_id: Uuid::new_v4(),
        ..row(9, 9)
    };

    t.app
        .db
        .upsert_usage_hourly(&[
            (this_hour, row(5, 5)),
            (old_hour, row(1, 1)),
            (this_hour, unknown_domain),
        ])
        .await
        .unwrap();
    // A Redis that lost its counts, and the same hour twice in one snapshot.
    t.app
        .db
        .upsert_usage_hourly(&[(this_hour, row(2, 8)), (this_hour, row(3, 1))])
        .await
        .unwrap();
    t.app.db.upsert_usage_hourly(&[]).await.unwrap();

    let stored: Vec<(OffsetDateTime, Uuid, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT hour, tenant_id, hits, misses, bypasses, passthroughs FROM usage_hourly \
         ORDER BY hour",
    )
    .fetch_all(&t.pg)
    .await
    .unwrap();
    assert_eq!(
        stored,
        [
            (old_hour, tenant, 1, 1, 2, 1),
            (this_hour, tenant, 5, 8, 2, 1)
        ]
    );

    let deleted = t
        .app
        .db
        .delete_usage_hourly_before(now - activity::USAGE_HOURLY_RETENTION)
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    let hours: Vec<OffsetDateTime> = sqlx::query_scalar("SELECT hour FROM usage_hourly")
        .fetch_all(&t.pg)
        .await
        .unwrap();
    assert_eq!(hours, [this_hour]);

    // Only hour starts are stored.
    let error = t
        .app
        .db
        .upsert_usage_hourly(&[(this_hour + Duration::minutes(1), row(1, 1))])
        .await;
    assert!(error.is_err(), "{error:?}");
}
