//! The render log's roll-ups and retention against real Postgres and Redis. The charts and the usage
//! API read roll-ups per domain and hour (or day) that the copier writes with the renders: they must
//! say what the render log itself says (computed here with the queries the dashboard ran on the log
//! before), count a render copied twice once, keep the days the log's retention has deleted, and be
//! built by the migration from the renders copied before it. The render service filter must reach
//! its renders through their own index.

use crate::helpers::{LOOPBACK_FOR_EVERYONE, TestApp, TestDatabase, spawn_app, spawn_app_on};
use crate::stats::{add_domain, assert_near, render, tenant_with_domain};
use kiln_control::activity::{self, Pruned};
use kiln_control::db::render_stats::{DURATION_BUCKETS, duration_bucket, duration_floor};
use kiln_control::db::{MIGRATOR, RenderFilter, RenderRecord};
use kiln_control::stats;
use kiln_core::RenderVia;
use sqlx::PgPool;
use std::collections::HashMap;
use std::time::Instant;
use time::{Date, Duration, OffsetDateTime};
use uuid::Uuid;

/// A small deterministic random number generator (xorshift), so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `count` renders of `domains` before `now`: a third in the last 24 hours, the rest over the last
/// 33 days; bots, warms, previews and parity checks; stored, failed and rendered; durations from a
/// few milliseconds to minutes.
fn random_renders(
    rng: &mut Rng,
    domains: &[Uuid],
    now: OffsetDateTime,
    count: usize,
) -> Vec<RenderRecord> {
    (0..count)
        .map(|_| {
            let domain = domains[rng.below(domains.len() as u64) as usize];
            let age_ms = if rng.below(3) == 0 {
                rng.below(86_400_000)
            } else {
                rng.below(33 * 86_400_000)
            };
            let purpose = match rng.below(10) {
                0..=5 => "bot",
                6 | 7 => "warm",
                8 => "preview",
                _ => "parity",
            };
            let outcome = match purpose {
                "preview" if rng.below(2) == 0 => "rendered",
                "parity" => "rendered",
                _ if rng.below(7) == 0 => "failed",
                _ => "stored",
            };
            let duration_ms = match rng.below(10) {
                0 => rng.below(40),
                1..=7 => 300 + rng.below(3_000),
                8 => 5_000 + rng.below(60_000),
                _ => 60_000 + rng.below(140_000),
            };
            render(
                domain,
                now - Duration::milliseconds(age_ms as i64),
                purpose,
                outcome,
                duration_ms as i64,
            )
        })
        .collect()
}

/// Copies `renders` as the copier does, `batch` at a time.
async fn copy(t: &TestApp, renders: &[RenderRecord], batch: usize) {
    for chunk in renders.chunks(batch) {
        t.app.db.insert_renders(chunk, "1-0").await.unwrap();
    }
}

/// One hour or day of a chart as the dashboard computed it from the render log itself, before the
/// roll-ups: stored and other renders, previews left out, and the stored renders' durations (sorted)
/// with `percentile_cont`'s p50 and p95 of them.
#[derive(Debug, Default)]
struct FromLog {
    renders: i64,
    failed_renders: i64,
    durations: Vec<i64>,
    p50_ms: Option<f64>,
    p95_ms: Option<f64>,
}

/// A row of [`from_render_log`]'s query: start, then [`FromLog`]'s fields.
type FromLogRow = (OffsetDateTime, i64, i64, Vec<i64>, Option<f64>, Option<f64>);

/// The render log's buckets per `unit` (`hour` or `day`) starting in `from..to`, by start.
async fn from_render_log(
    t: &TestApp,
    tenant_id: Uuid,
    domain_id: Option<Uuid>,
    unit: &str,
    from: OffsetDateTime,
    to: OffsetDateTime,
) -> HashMap<OffsetDateTime, FromLog> {
    let rows: Vec<FromLogRow> = sqlx::query_as(
        "SELECT date_trunc($5, at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', \
             count(*) FILTER (WHERE outcome = 'stored'), \
             count(*) FILTER (WHERE outcome <> 'stored'), \
             coalesce(array_agg(duration_ms ORDER BY duration_ms) \
                 FILTER (WHERE outcome = 'stored'), '{}'), \
             percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms::float8) \
                 FILTER (WHERE outcome = 'stored'), \
             percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms::float8) \
                 FILTER (WHERE outcome = 'stored') \
             FROM renders WHERE tenant_id = $1 AND ($2::uuid IS NULL OR domain_id = $2) \
             AND purpose <> 'preview' AND at >= $3 AND at < $4 GROUP BY 1",
    )
    .bind(tenant_id)
    .bind(domain_id)
    .bind(from)
    .bind(to)
    .bind(unit)
    .fetch_all(&t.pg)
    .await
    .unwrap();
    rows.into_iter()
        .map(
            |(start, renders, failed_renders, durations, p50_ms, p95_ms)| {
                let bucket = FromLog {
                    renders,
                    failed_renders,
                    durations,
                    p50_ms,
                    p95_ms,
                };
                (start, bucket)
            },
        )
        .collect()
}

/// A percentile read from a roll-up's histogram against `percentile_cont`'s over the durations:
/// within 1/16 of the larger of the two durations it interpolates between, exact below 32 ms.
#[track_caller]
fn assert_percentile(what: &str, actual: Option<f64>, exact: Option<f64>, sorted: &[i64], p: f64) {
    match (actual, exact) {
        (None, None) => {}
        (Some(actual), Some(exact)) => {
            let larger = sorted[(p * (sorted.len() - 1) as f64).ceil() as usize];
            let allowed = if larger < 32 {
                1e-9
            } else {
                larger as f64 / 16.0
            };
            assert!(
                (actual - exact).abs() <= allowed,
                "{what}: {actual} for {exact} (within {allowed})"
            );
        }
        _ => panic!("{what}: {actual:?} for {exact:?}"),
    }
}

/// The charts of the tenant (or one of its domains) as of `now`, and its usage over the last 45
/// days, count what the render log holds, as the dashboard computed it before the roll-ups.
/// Returns how many renders the charts' days count, so that a caller can tell it compared
/// something.
async fn assert_roll_ups_match_render_log(
    t: &TestApp,
    tenant_id: Uuid,
    domain_id: Option<Uuid>,
    now: OffsetDateTime,
) -> i64 {
    let what = format!("tenant {tenant_id}, domain {domain_id:?}");
    let charts = stats::charts(&t.app, tenant_id, domain_id, now)
        .await
        .unwrap();
    let first_hour = now.truncate_to_hour() - Duration::hours(23);
    let first_day = now.truncate_to_day() - Duration::days(29);
    let periods = [
        (
            "hour",
            &charts.hours,
            first_hour,
            first_hour + Duration::hours(24),
        ),
        (
            "day",
            &charts.days,
            first_day,
            now.truncate_to_day() + Duration::DAY,
        ),
    ];
    let mut counted = 0;
    for (unit, buckets, from, to) in periods {
        let mut expected = from_render_log(t, tenant_id, domain_id, unit, from, to).await;
        for bucket in buckets {
            let old = expected.remove(&bucket.start).unwrap_or_default();
            let at = format!("{what}, {unit} {}", bucket.start);
            assert_eq!(
                (bucket.renders, bucket.failed_renders),
                (old.renders, old.failed_renders),
                "{at}"
            );
            assert_percentile(&at, bucket.p50_ms, old.p50_ms, &old.durations, 0.5);
            assert_percentile(&at, bucket.p95_ms, old.p95_ms, &old.durations, 0.95);
            if unit == "day" {
                counted += bucket.renders + bucket.failed_renders;
            }
        }
        assert!(expected.is_empty(), "{what}: not charted: {expected:?}");
    }

    let today = now.date();
    let from = today - Duration::days(45);
    let usage = activity::usage(&t.app, tenant_id, domain_id, from, today)
        .await
        .unwrap();
    let usage: HashMap<(Uuid, Date), (i64, i64)> = usage
        .into_iter()
        .map(|r| ((r.domain_id, r.day), (r.renders, r.failed_renders)))
        .collect();
    let expected: Vec<(Uuid, Date, i64, i64)> = sqlx::query_as(
        "SELECT domain_id, (at AT TIME ZONE 'UTC')::date AS day, \
         count(*) FILTER (WHERE outcome = 'stored'), \
         count(*) FILTER (WHERE outcome <> 'stored') \
         FROM renders WHERE tenant_id = $1 AND ($2::uuid IS NULL OR domain_id = $2) \
         AND purpose <> 'preview' \
         AND at >= $3::date AT TIME ZONE 'UTC' AND at < ($4::date + 1) AT TIME ZONE 'UTC' \
         GROUP BY 1, 2",
    )
    .bind(tenant_id)
    .bind(domain_id)
    .bind(from)
    .bind(today)
    .fetch_all(&t.pg)
    .await
    .unwrap();
    let expected: HashMap<(Uuid, Date), (i64, i64)> = expected
        .into_iter()
        .map(|(domain, day, renders, failed)| ((domain, day), (renders, failed)))
        .collect();
    assert_eq!(usage, expected, "{what}: the usage API's renders");
    counted
}

/// How many renders of the tenant the roll-ups count, per table.
async fn rolled_up(t: &TestApp, tenant_id: Uuid) -> (i64, i64) {
    sqlx::query_as(
        "SELECT (SELECT coalesce(sum(stored + rendered + failed), 0)::bigint \
                 FROM render_stats_hourly WHERE tenant_id = $1), \
                (SELECT coalesce(sum(stored + rendered + failed), 0)::bigint \
                 FROM render_stats_daily WHERE tenant_id = $1)",
    )
    .bind(tenant_id)
    .fetch_one(&t.pg)
    .await
    .unwrap()
}

async fn renders_stored(t: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM renders")
        .fetch_one(&t.pg)
        .await
        .unwrap()
}

#[tokio::test]
async fn render_stats_the_charts_and_the_usage_api_count_what_the_render_log_holds() {
    let t = spawn_app().await;
    let (tenant, shop) = tenant_with_domain(&t, "shop.localhost").await;
    let blog = add_domain(&t, tenant, "blog.localhost").await;
    let (other_tenant, other) = tenant_with_domain(&t, "other.localhost").await;
    let now = OffsetDateTime::now_utc();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut renders = random_renders(&mut rng, &[shop, blog, other], now, 3_000);
    // A domain that no longer exists: dropped.
    renders.push(render(Uuid::new_v4(), now, "bot", "stored", 100));

    // In batches, as the copier copies: most hours and days are added to several times.
    copy(&t, &renders, 97).await;

    let mut counted = 0;
    for (tenant, domain) in [
        (tenant, None),
        (tenant, Some(shop)),
        (tenant, Some(blog)),
        (other_tenant, None),
        (other_tenant, Some(other)),
    ] {
        counted += assert_roll_ups_match_render_log(&t, tenant, domain, now).await;
    }
    assert!(counted > 2_000, "{counted}");
    // Another tenant's domain: nothing.
    let snooping = stats::charts(&t.app, other_tenant, Some(shop), now)
        .await
        .unwrap();
    assert!(
        snooping
            .days
            .iter()
            .chain(&snooping.hours)
            .all(|b| b.renders + b.failed_renders == 0 && b.p50_ms.is_none())
    );
    // Everything but the previews, once.
    let not_previews = renders
        .iter()
        .filter(|r| r.purpose != "preview" && [shop, blog].contains(&r.domain_id))
        .count() as i64;
    assert_eq!(rolled_up(&t, tenant).await, (not_previews, not_previews));
}

#[tokio::test]
async fn render_stats_a_render_copied_twice_counts_once() {
    let t = spawn_app().await;
    let (tenant, shop) = tenant_with_domain(&t, "shop.localhost").await;
    let now = OffsetDateTime::now_utc();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let renders = random_renders(&mut rng, &[shop], now, 300);
    let not_previews = renders.iter().filter(|r| r.purpose != "preview").count() as i64;

    copy(&t, &renders, 100).await;
    assert_eq!(rolled_up(&t, tenant).await, (not_previews, not_previews));
    // A retry of batches already copied (the transaction committed, the answer was lost), in other
    // batches, and two dashboards copying the same batch at once.
    copy(&t, &renders, 70).await;
    let (first, second) = tokio::join!(
        t.app.db.insert_renders(&renders[..150], "1-0"),
        t.app.db.insert_renders(&renders[..150], "1-0"),
    );
    first.unwrap();
    second.unwrap();
    // A batch of which only some entries are new counts those.
    let mut more = renders[..5].to_vec();
    more.push(render(shop, now, "bot", "stored", 1_234));
    copy(&t, &more, 100).await;

    assert_eq!(renders_stored(&t).await, 301);
    assert_eq!(
        rolled_up(&t, tenant).await,
        (not_previews + 1, not_previews + 1)
    );
    assert_roll_ups_match_render_log(&t, tenant, None, now).await;

    // Through Redis: the render log copied again from the start (a cursor that went back).
    let tenant_text = tenant.to_string();
    let shop_text = shop.to_string();
    for page in ["a", "b", "c"] {
        crate::activity::log_render(
            &t,
            &tenant_text,
            &shop_text,
            &format!("https://shop.localhost/{page}"),
            RenderVia::Edge,
        )
        .await;
    }
    assert_eq!(activity::copy_render_log(&t.app).await.unwrap(), 3);
    sqlx::query("UPDATE render_log_cursor SET last_id = '0'")
        .execute(&t.pg)
        .await
        .unwrap();
    assert_eq!(activity::copy_render_log(&t.app).await.unwrap(), 3);
    assert_eq!(renders_stored(&t).await, 304);
    assert_eq!(
        rolled_up(&t, tenant).await,
        (not_previews + 4, not_previews + 4)
    );
    assert_roll_ups_match_render_log(&t, tenant, None, OffsetDateTime::now_utc()).await;
}

#[tokio::test]
async fn render_stats_the_retention_deletes_old_renders_and_the_charts_and_usage_keep_their_days() {
    let t = spawn_app().await;
    let (tenant, shop) = tenant_with_domain(&t, "shop.localhost").await;
    let now = OffsetDateTime::now_utc();
    let forty_days_ago = now - Duration::days(40);
    let ten_days_ago = now - Duration::days(10);
    let recent = now - Duration::minutes(5);
    let mut renders: Vec<RenderRecord> = (0..5_003)
        .map(|i| {
            let at = forty_days_ago - Duration::milliseconds(i);
            render(shop, at, "bot", "stored", 1_000 + i % 100)
        })
        .collect();
    renders.extend((0..20).map(|_| render(shop, ten_days_ago, "warm", "stored", 500)));
    renders.push(render(shop, ten_days_ago, "bot", "failed", 9_000));
    renders.extend((0..7).map(|_| render(shop, recent, "bot", "stored", 700)));
    copy(&t, &renders, 1_000).await;
    let charts_before = stats::charts(&t.app, tenant, None, now).await.unwrap();
    let usage_before = activity::usage(
        &t.app,
        tenant,
        None,
        now.date() - Duration::days(45),
        now.date(),
    )
    .await
    .unwrap();

    // Kept 7 days: the oldest first, a batch at a time; a round stops at its number of batches.
    let pruned = activity::prune_render_log(&t.app, 7, now, 1).await.unwrap();
    assert_eq!(
        pruned,
        Pruned {
            renders: 5_000,
            done: false
        }
    );
    let oldest_left: OffsetDateTime = sqlx::query_scalar("SELECT min(at) FROM renders")
        .fetch_one(&t.pg)
        .await
        .unwrap();
    // (The three youngest of those 40 days old are left.)
    assert!(oldest_left > forty_days_ago - Duration::milliseconds(3));
    let pruned = activity::prune_render_log(&t.app, 7, now, 10)
        .await
        .unwrap();
    assert_eq!(
        pruned,
        Pruned {
            renders: 24,
            done: true
        }
    );
    assert_eq!(renders_stored(&t).await, 7);
    let pruned = activity::prune_render_log(&t.app, 7, now, 10)
        .await
        .unwrap();
    assert_eq!(
        pruned,
        Pruned {
            renders: 0,
            done: true
        }
    );

    // The charts and the usage API still count what was deleted.
    let charts = stats::charts(&t.app, tenant, None, now).await.unwrap();
    assert_eq!(charts, charts_before);
    let day = charts
        .days
        .iter()
        .find(|d| d.start.date() == ten_days_ago.date())
        .unwrap();
    assert_eq!((day.renders, day.failed_renders), (20, 1));
    assert_near(day.p50_ms, 500.0);
    let usage = activity::usage(
        &t.app,
        tenant,
        None,
        now.date() - Duration::days(45),
        now.date(),
    )
    .await
    .unwrap();
    assert_eq!(
        usage
            .iter()
            .map(|r| (r.day, r.renders, r.failed_renders))
            .collect::<Vec<_>>(),
        usage_before
            .iter()
            .map(|r| (r.day, r.renders, r.failed_renders))
            .collect::<Vec<_>>()
    );
    assert_eq!(usage.iter().map(|r| r.renders).sum::<i64>(), 5_003 + 20 + 7);
    assert!(
        usage.iter().any(|r| r.day == forty_days_ago.date()),
        "{:?}",
        usage.iter().map(|r| r.day).collect::<Vec<_>>()
    );
    // The list shows what is kept.
    let listed = activity::renders_matching(&t.app, tenant, &RenderFilter::default(), None, 100)
        .await
        .unwrap();
    assert_eq!(listed.len(), 7);

    // The hourly roll-ups go after 35 days, as hourly usage does; the daily ones stay.
    let hours: Vec<OffsetDateTime> =
        sqlx::query_scalar("SELECT hour FROM render_stats_hourly ORDER BY hour")
            .fetch_all(&t.pg)
            .await
            .unwrap();
    assert!(
        hours
            .iter()
            .all(|hour| *hour >= now - activity::USAGE_HOURLY_RETENTION),
        "{hours:?}"
    );
    assert_eq!(hours.len(), 2, "{hours:?}");
    let days: i64 = sqlx::query_scalar("SELECT count(*) FROM render_stats_daily")
        .fetch_one(&t.pg)
        .await
        .unwrap();
    assert!(days >= 3, "{days}");
}

/// How many index scans Postgres has counted on the render service's partial indexes.
async fn service_index_scans(t: &TestApp) -> i64 {
    sqlx::query_scalar(
        "SELECT coalesce(sum(idx_scan), 0)::bigint FROM pg_stat_user_indexes \
         WHERE indexrelname IN ('renders_service_domain_at_idx', 'renders_service_at_idx')",
    )
    .fetch_one(&t.pg)
    .await
    .unwrap()
}

#[tokio::test]
async fn render_stats_the_render_service_filter_finds_its_renders_through_their_own_index() {
    let t = spawn_app().await;
    let (tenant, shop) = tenant_with_domain(&t, "shop.localhost").await;
    let blog = add_domain(&t, tenant, "blog.localhost").await;
    let now = OffsetDateTime::now_utc();
    // A busy domain whose renders all came through the edge, and two through the render service on
    // another domain.
    let mut renders: Vec<RenderRecord> = (0..3_000)
        .map(|i| render(shop, now - Duration::seconds(i), "bot", "stored", 800))
        .collect();
    for i in 0..2 {
        let mut service = render(blog, now - Duration::minutes(i), "bot", "stored", 900);
        service.via = "service".to_owned();
        renders.push(service);
    }
    copy(&t, &renders, 500).await;
    sqlx::query("ANALYZE renders").execute(&t.pg).await.unwrap();
    let scans_before = service_index_scans(&t).await;

    let via = |via| RenderFilter {
        via: Some(via),
        ..RenderFilter::default()
    };
    let service = activity::renders_matching(&t.app, tenant, &via(RenderVia::Service), None, 51)
        .await
        .unwrap();
    assert_eq!(service.len(), 2);
    assert!(
        service
            .iter()
            .all(|r| r.via == "service" && r.domain_id == blog)
    );
    let none = activity::renders_matching(
        &t.app,
        tenant,
        &RenderFilter {
            domain_id: Some(shop),
            ..via(RenderVia::Service)
        },
        None,
        51,
    )
    .await
    .unwrap();
    assert!(none.is_empty(), "{none:?}");
    let none = activity::renders(&t.app, tenant, shop, Some(RenderVia::Service), None, 51)
        .await
        .unwrap();
    assert!(none.is_empty(), "{none:?}");
    let blogs = activity::renders(&t.app, tenant, blog, Some(RenderVia::Service), None, 51)
        .await
        .unwrap();
    assert_eq!(blogs.len(), 2);
    let edge = activity::renders(&t.app, tenant, shop, Some(RenderVia::Edge), None, 51)
        .await
        .unwrap();
    assert_eq!(edge.len(), 51);
    assert!(edge.iter().all(|r| r.via == "edge"));
    let next = activity::renders(
        &t.app,
        tenant,
        shop,
        Some(RenderVia::Edge),
        Some(&edge[50].stream_id),
        51,
    )
    .await
    .unwrap();
    assert!(next[0].at <= edge[50].at && next[0].stream_id != edge[50].stream_id);

    // The filters that matched nothing went through the partial indexes (Postgres counts index
    // scans when a backend goes idle, within a second or so).
    let deadline = Instant::now() + std::time::Duration::from_secs(20);
    while service_index_scans(&t).await < scans_before + 4 {
        assert!(
            Instant::now() < deadline,
            "the render service's renders were not read through their indexes: {} scans",
            service_index_scans(&t).await - scans_before
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn render_stats_postgres_and_the_dashboard_bucket_durations_alike() {
    let t = spawn_app().await;
    let mut durations: Vec<i64> = (-3..100).collect();
    for bucket in 0..=DURATION_BUCKETS {
        let floor = duration_floor(bucket);
        durations.extend([floor - 1, floor, floor + 1]);
    }
    durations.extend([5_000_000, i64::MAX]);
    let buckets: Vec<i16> =
        sqlx::query_scalar("SELECT render_duration_bucket(d) FROM unnest($1::bigint[]) AS d")
            .bind(&durations)
            .fetch_all(&t.pg)
            .await
            .unwrap();
    let expected: Vec<i16> = durations
        .iter()
        .map(|&d| duration_bucket(d) as i16)
        .collect();
    assert_eq!(buckets, expected);
    let floors: Vec<i64> = sqlx::query_scalar(
        "SELECT render_duration_floor(b) FROM generate_series(0, $1) AS b ORDER BY b",
    )
    .bind(DURATION_BUCKETS as i32)
    .fetch_all(&t.pg)
    .await
    .unwrap();
    assert_eq!(
        floors,
        (0..=DURATION_BUCKETS)
            .map(duration_floor)
            .collect::<Vec<_>>()
    );
}

/// Stores renders as the dashboard did before the roll-ups existed (schema of migration 0006).
async fn copy_before_roll_ups(pool: &PgPool, renders: &[RenderRecord]) {
    for chunk in renders.chunks(500) {
        sqlx::query(
            "INSERT INTO renders (stream_id, tenant_id, domain_id, at, url, device, purpose, \
             outcome, status, reason, duration_ms, bytes, user_agent, via) \
             SELECT e.stream_id, d.tenant_id, d.id, e.at, 'https://shop.test/', 'desktop', \
             e.purpose, e.outcome, 200, NULL, e.duration_ms, 1000, NULL, 'edge' \
             FROM unnest($1::text[], $2::uuid[], $3::timestamptz[], $4::text[], $5::text[], \
                         $6::bigint[]) AS e (stream_id, domain_id, at, purpose, outcome, duration_ms) \
             JOIN domains d ON d.id = e.domain_id",
        )
        .bind(chunk.iter().map(|r| r.stream_id.clone()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.domain_id).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.at).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.purpose.clone()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.outcome.clone()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.duration_ms).collect::<Vec<_>>())
        .execute(pool)
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn render_stats_the_migration_rolls_up_the_renders_copied_before_it() {
    // A dashboard before the roll-ups, with its render log.
    let database = TestDatabase::create().await;
    let pool = PgPool::connect(&database.url).await.unwrap();
    MIGRATOR.run_to(6, &pool).await.unwrap();
    let (tenant, other_tenant) = (Uuid::new_v4(), Uuid::new_v4());
    let (shop, blog, other) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    for (id, name) in [(tenant, "shop"), (other_tenant, "other")] {
        sqlx::query("INSERT INTO tenants (id, name) VALUES ($1, $2)")
            .bind(id)
            .bind(name)
            .execute(&pool)
            .await
            .unwrap();
    }
    for (id, tenant_id, host) in [
        (shop, tenant, "shop.localhost"),
        (blog, tenant, "blog.localhost"),
        (other, other_tenant, "other.localhost"),
    ] {
        sqlx::query(
            "INSERT INTO domains (id, tenant_id, hostname, origin, verified, verification_token) \
             VALUES ($1, $2, $3, 'http://127.0.0.1:5173', true, 'token')",
        )
        .bind(id)
        .bind(tenant_id)
        .bind(host)
        .execute(&pool)
        .await
        .unwrap();
    }
    let now = OffsetDateTime::now_utc();
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    let mut renders = random_renders(&mut rng, &[shop, blog, other], now, 2_000);
    let long_ago = now - Duration::days(40);
    renders.extend((0..3).map(|i| render(shop, long_ago, "bot", "stored", 100 * (i + 1))));
    copy_before_roll_ups(&pool, &renders).await;
    pool.close().await;

    // The upgrade: the migration rolls them up.
    let t = spawn_app_on(database, LOOPBACK_FOR_EVERYONE).await;
    let not_previews = |tenant_domains: &[Uuid]| {
        renders
            .iter()
            .filter(|r| r.purpose != "preview" && tenant_domains.contains(&r.domain_id))
            .count() as i64
    };
    // (Hours are rolled up for the last 35 days only, as long as they are kept.)
    assert_eq!(
        rolled_up(&t, tenant).await,
        (not_previews(&[shop, blog]) - 3, not_previews(&[shop, blog]))
    );
    for (tenant, domain) in [
        (tenant, None),
        (tenant, Some(shop)),
        (tenant, Some(blog)),
        (other_tenant, None),
    ] {
        assert_roll_ups_match_render_log(&t, tenant, domain, now).await;
    }

    // And the copier adds to what the migration rolled up.
    let more = random_renders(&mut rng, &[shop, blog, other], now, 500);
    copy(&t, &more, 100).await;
    for (tenant, domain) in [(tenant, None), (other_tenant, Some(other))] {
        assert_roll_ups_match_render_log(&t, tenant, domain, now).await;
    }
}
