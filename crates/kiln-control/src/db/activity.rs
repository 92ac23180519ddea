//! What happens to a tenant's pages: warm jobs, the render log, daily and hourly usage, and the
//! buckets of the dashboard's charts.

use super::render_stats::duration_percentile;
use super::{AuditEvent, Db, DbError, action, insert_audit};
use kiln_core::RenderVia;
use std::collections::HashMap;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

/// A row of `warm_jobs`.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct WarmJobRecord {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub domain_id: Option<Uuid>,
    pub sitemap_url: Option<String>,
    pub state: String,
    pub total: i32,
    /// The first entries left out, with reasons (see `cache::LeftOut`): a JSON array.
    pub skipped: serde_json::Value,
    /// How many entries were left out in all.
    pub skipped_total: i32,
    pub error: Option<String>,
    pub actor: String,
    pub created_at: OffsetDateTime,
}

const WARM_COLUMNS: &str = "id, tenant_id, domain_id, sitemap_url, state, total, skipped, \
     skipped_total, error, actor, created_at";

/// A row of `renders`: one entry of the workers' render log.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct RenderRecord {
    pub stream_id: String,
    pub domain_id: Uuid,
    pub at: OffsetDateTime,
    pub url: String,
    pub device: String,
    pub purpose: String,
    pub outcome: String,
    pub status: Option<i32>,
    pub reason: Option<String>,
    pub duration_ms: i64,
    pub bytes: i64,
    pub user_agent: Option<String>,
    /// How the request that caused the render reached Kiln: `edge` or `service` (the render
    /// service), as [`kiln_core::RenderVia::as_str`] writes it.
    pub via: String,
}

/// The condition a render log query puts on `via` (nothing, without a filter). Spelled out as a
/// literal rather than bound as a parameter: only then can the planner use the partial indexes of
/// the renders that came through the render service (`renders_service_*_idx`), which keep a filter
/// that matches nothing from reading every render of the domain or tenant.
pub(super) fn via_condition(via: Option<RenderVia>) -> &'static str {
    match via {
        None => "",
        Some(RenderVia::Edge) => "AND via = 'edge'",
        Some(RenderVia::Service) => "AND via = 'service'",
    }
}

/// One domain's day, as the usage endpoint reports it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct UsageRecord {
    pub domain_id: Uuid,
    pub day: Date,
    pub hits: i64,
    pub misses: i64,
    pub bypasses: i64,
    pub passthroughs: i64,
    pub renders: i64,
    pub failed_renders: i64,
}

/// One domain's counters for one day, read from Redis.
#[derive(Clone, Debug)]
pub struct UsageSnapshot {
    pub domain_id: Uuid,
    pub hits: i64,
    pub misses: i64,
    pub bypasses: i64,
    pub passthroughs: i64,
}

/// A roll-up row's counts and histogram from rows per duration bucket (`bucket`, and the renders
/// `stored`, `rendered` and `failed` in it).
macro_rules! rollup_columns_sql {
    () => {
        "sum(stored), sum(rendered), sum(failed), \
         coalesce(array_agg(bucket ORDER BY bucket) FILTER (WHERE stored > 0), '{}'), \
         coalesce(array_agg(stored ORDER BY bucket) FILTER (WHERE stored > 0), '{}')"
    };
}

/// A roll-up row (`s`) with another's counts and histogram (`excluded`) added.
macro_rules! rollup_merge_sql {
    () => {
        "stored = s.stored + excluded.stored, rendered = s.rendered + excluded.rendered, \
         failed = s.failed + excluded.failed, \
         (duration_buckets, duration_counts) = ( \
             SELECT coalesce(array_agg(bucket ORDER BY bucket), '{}'), \
                    coalesce(array_agg(n ORDER BY bucket), '{}') \
             FROM (SELECT bucket, sum(n)::bigint AS n \
                   FROM unnest(s.duration_buckets || excluded.duration_buckets, \
                               s.duration_counts || excluded.duration_counts) AS m (bucket, n) \
                   GROUP BY bucket) AS merged)"
    };
}

impl Db {
    /// Creates a warm job with its audit event.
    pub async fn insert_warm_job(&self, job: &WarmJobRecord) -> Result<WarmJobRecord, DbError> {
        let mut tx = self.pool.begin().await?;
        let record: WarmJobRecord = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO warm_jobs \
             (id, tenant_id, domain_id, sitemap_url, state, total, skipped, skipped_total, actor) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {WARM_COLUMNS}"
        )))
        .bind(job.id)
        .bind(job.tenant_id)
        .bind(job.domain_id)
        .bind(&job.sitemap_url)
        .bind(&job.state)
        .bind(job.total)
        .bind(&job.skipped)
        .bind(job.skipped_total)
        .bind(&job.actor)
        .fetch_one(&mut *tx)
        .await?;
        let target = record.id.to_string();
        let event = AuditEvent {
            tenant_id: record.tenant_id,
            actor: &record.actor,
            action: action::CACHE_WARM,
            target: &target,
            before: None,
            after: Some(serde_json::json!({
                "domain_id": record.domain_id,
                "sitemap_url": record.sitemap_url,
                "total": record.total,
            })),
        };
        insert_audit(&mut tx, event).await?;
        tx.commit().await?;
        Ok(record)
    }

    /// A sitemap has been read: the job now renders `total` pages.
    pub async fn warm_job_collected(
        &self,
        id: Uuid,
        total: i32,
        skipped: &serde_json::Value,
        skipped_total: i32,
    ) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE warm_jobs SET state = 'rendering', total = $2, skipped = $3, skipped_total = $4 \
             WHERE id = $1",
        )
        .bind(id)
        .bind(total)
        .bind(skipped)
        .bind(skipped_total)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn warm_job_failed(&self, id: Uuid, error: &str) -> Result<(), DbError> {
        sqlx::query("UPDATE warm_jobs SET state = 'failed', error = $2 WHERE id = $1")
            .bind(id)
            .bind(error)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Marks as failed the jobs still reading their sitemap long after any read could have ended:
    /// their dashboard stopped while reading.
    pub async fn fail_abandoned_warm_jobs(&self, older_than_secs: i64) -> Result<u64, DbError> {
        let failed = sqlx::query(
            "UPDATE warm_jobs SET state = 'failed', \
             error = 'the dashboard stopped while reading the sitemap; start the warm again' \
             WHERE state = 'collecting' AND created_at < now() - make_interval(secs => $1)",
        )
        .bind(older_than_secs as f64)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(failed)
    }

    /// The domain's most recent warm jobs, newest first.
    pub async fn recent_warm_jobs(
        &self,
        tenant_id: Uuid,
        domain_id: Uuid,
        limit: i64,
    ) -> Result<Vec<WarmJobRecord>, DbError> {
        let records = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {WARM_COLUMNS} FROM warm_jobs WHERE tenant_id = $1 AND domain_id = $2 \
             ORDER BY created_at DESC LIMIT $3"
        )))
        .bind(tenant_id)
        .bind(domain_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(records)
    }

    pub async fn warm_job_of(
        &self,
        tenant_id: Uuid,
        id: Uuid,
    ) -> Result<Option<WarmJobRecord>, DbError> {
        let record = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {WARM_COLUMNS} FROM warm_jobs WHERE tenant_id = $1 AND id = $2"
        )))
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(record)
    }

    /// Where copying the render log stopped (`"0"` before the first copy).
    pub async fn render_log_cursor(&self) -> Result<String, DbError> {
        let last: Option<String> =
            sqlx::query_scalar("SELECT last_id FROM render_log_cursor WHERE singleton")
                .fetch_optional(&self.pool)
                .await?;
        Ok(last.unwrap_or_else(|| "0".to_owned()))
    }

    /// Stores a batch of render log entries, adds them to the roll-ups (`render_stats_hourly`,
    /// `render_stats_daily`; see [`super::render_stats`]) and advances the cursor to `last_id`,
    /// atomically. Only entries not stored before are counted, so a batch copied twice (a retry,
    /// two dashboards) counts once. The tenant of each entry is taken from its domain, not from
    /// the log; entries of domains that no longer exist are dropped.
    pub async fn insert_renders(
        &self,
        renders: &[RenderRecord],
        last_id: &str,
    ) -> Result<(), DbError> {
        let mut tx = self.pool.begin().await?;
        if !renders.is_empty() {
            let column = |field: fn(&RenderRecord) -> String| -> Vec<String> {
                renders.iter().map(field).collect()
            };
            sqlx::query(INSERT_RENDERS_SQL)
                .bind(column(|r| r.stream_id.clone()))
                .bind(renders.iter().map(|r| r.domain_id).collect::<Vec<_>>())
                .bind(renders.iter().map(|r| r.at).collect::<Vec<_>>())
                .bind(column(|r| r.url.clone()))
                .bind(column(|r| r.device.clone()))
                .bind(column(|r| r.purpose.clone()))
                .bind(column(|r| r.outcome.clone()))
                .bind(renders.iter().map(|r| r.status).collect::<Vec<_>>())
                .bind(renders.iter().map(|r| r.reason.clone()).collect::<Vec<_>>())
                .bind(renders.iter().map(|r| r.duration_ms).collect::<Vec<_>>())
                .bind(renders.iter().map(|r| r.bytes).collect::<Vec<_>>())
                .bind(
                    renders
                        .iter()
                        .map(|r| r.user_agent.clone())
                        .collect::<Vec<_>>(),
                )
                .bind(column(|r| r.via.clone()))
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO render_log_cursor (singleton, last_id) VALUES (true, $1) \
             ON CONFLICT (singleton) DO UPDATE SET last_id = excluded.last_id",
        )
        .bind(last_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The render log of one of the tenant's domains (only the renders that came `via` one way,
    /// when given), newest first, continuing after `before` (a stream id) when given.
    pub async fn renders_of(
        &self,
        tenant_id: Uuid,
        domain_id: Uuid,
        via: Option<RenderVia>,
        before: Option<&str>,
        limit: i64,
    ) -> Result<Vec<RenderRecord>, DbError> {
        let records = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT stream_id, domain_id, at, url, device, purpose, outcome, status, reason, \
             duration_ms, bytes, user_agent, via FROM renders \
             WHERE tenant_id = $1 AND domain_id = $2 {via} \
             AND ($3::text IS NULL OR (at, stream_id) < \
                  (SELECT at, stream_id FROM renders WHERE stream_id = $3 AND tenant_id = $1)) \
             ORDER BY at DESC, stream_id DESC LIMIT $4",
            via = via_condition(via),
        )))
        .bind(tenant_id)
        .bind(domain_id)
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(records)
    }

    /// Stores a snapshot of one day's counters, never lowering a stored count.
    pub async fn upsert_usage(&self, day: Date, rows: &[UsageSnapshot]) -> Result<(), DbError> {
        let mut tx = self.pool.begin().await?;
        for row in rows {
            sqlx::query(
                "INSERT INTO usage_daily (domain_id, day, tenant_id, hits, misses, bypasses, passthroughs) \
                 SELECT d.id, $2, d.tenant_id, $3, $4, $5, $6 FROM domains d WHERE d.id = $1 \
                 ON CONFLICT (domain_id, day) DO UPDATE SET \
                 hits = GREATEST(usage_daily.hits, excluded.hits), \
                 misses = GREATEST(usage_daily.misses, excluded.misses), \
                 bypasses = GREATEST(usage_daily.bypasses, excluded.bypasses), \
                 passthroughs = GREATEST(usage_daily.passthroughs, excluded.passthroughs)",
            )
            .bind(row.domain_id)
            .bind(day)
            .bind(row.hits)
            .bind(row.misses)
            .bind(row.bypasses)
            .bind(row.passthroughs)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Bot traffic and renders per domain per day between `from` and `to` (inclusive), for the
    /// tenant's domains (or one of them). Renders come from the daily roll-up, which is kept for
    /// good like the daily usage, so days the render log no longer holds are still counted.
    pub async fn usage_of(
        &self,
        tenant_id: Uuid,
        domain_id: Option<Uuid>,
        from: Date,
        to: Date,
    ) -> Result<Vec<UsageRecord>, DbError> {
        let records = sqlx::query_as(
            "WITH u AS ( \
                 SELECT domain_id, day, hits, misses, bypasses, passthroughs FROM usage_daily \
                 WHERE tenant_id = $1 AND ($2::uuid IS NULL OR domain_id = $2) \
                 AND day BETWEEN $3 AND $4), \
             r AS ( \
                 SELECT domain_id, day, stored AS renders, rendered + failed AS failed_renders \
                 FROM render_stats_daily WHERE tenant_id = $1 \
                 AND ($2::uuid IS NULL OR domain_id = $2) AND day BETWEEN $3 AND $4) \
             SELECT coalesce(u.domain_id, r.domain_id) AS domain_id, coalesce(u.day, r.day) AS day, \
             coalesce(u.hits, 0) AS hits, coalesce(u.misses, 0) AS misses, \
             coalesce(u.bypasses, 0) AS bypasses, coalesce(u.passthroughs, 0) AS passthroughs, \
             coalesce(r.renders, 0) AS renders, \
             coalesce(r.failed_renders, 0) AS failed_renders \
             FROM u FULL JOIN r ON u.domain_id = r.domain_id AND u.day = r.day \
             ORDER BY 2, 1",
        )
        .bind(tenant_id)
        .bind(domain_id)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        Ok(records)
    }
}

/// Stores render log entries (the arrays `$1` to `$13`, one element per entry) and adds those it
/// stored to the roll-ups, previews left out: per domain, hour (or day) and duration bucket first,
/// then per domain and hour (or day), merged into the stored row by adding counts and histograms.
/// Roll-up rows are upserted in the order of their keys, so that two copiers (two dashboards)
/// adding to the same rows take their locks in the same order.
const INSERT_RENDERS_SQL: &str = concat!(
    "WITH ins AS ( \
         INSERT INTO renders (stream_id, tenant_id, domain_id, at, url, device, purpose, outcome, \
                              status, reason, duration_ms, bytes, user_agent, via) \
         SELECT e.stream_id, d.tenant_id, d.id, e.at, e.url, e.device, e.purpose, e.outcome, \
                e.status, e.reason, e.duration_ms, e.bytes, e.user_agent, e.via \
         FROM unnest($1::text[], $2::uuid[], $3::timestamptz[], $4::text[], $5::text[], \
                     $6::text[], $7::text[], $8::int[], $9::text[], $10::bigint[], $11::bigint[], \
                     $12::text[], $13::text[]) \
              AS e (stream_id, domain_id, at, url, device, purpose, outcome, status, reason, \
                    duration_ms, bytes, user_agent, via) \
         JOIN domains d ON d.id = e.domain_id \
         ON CONFLICT (stream_id) DO NOTHING \
         RETURNING tenant_id, domain_id, at, purpose, outcome, duration_ms), \
     per_bucket AS ( \
         SELECT tenant_id, domain_id, \
                date_trunc('hour', at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS hour, \
                render_duration_bucket(duration_ms) AS bucket, \
                count(*) FILTER (WHERE outcome = 'stored') AS stored, \
                count(*) FILTER (WHERE outcome = 'rendered') AS rendered, \
                count(*) FILTER (WHERE outcome NOT IN ('stored', 'rendered')) AS failed \
         FROM ins WHERE purpose <> 'preview' GROUP BY 1, 2, 3, 4), \
     hourly AS ( \
         INSERT INTO render_stats_hourly AS s (domain_id, hour, tenant_id, stored, rendered, \
                                               failed, duration_buckets, duration_counts) \
         SELECT domain_id, hour, tenant_id, ",
    rollup_columns_sql!(),
    " FROM per_bucket GROUP BY domain_id, hour, tenant_id ORDER BY hour, domain_id \
         ON CONFLICT (domain_id, hour) DO UPDATE SET ",
    rollup_merge_sql!(),
    ") \
     INSERT INTO render_stats_daily AS s (domain_id, day, tenant_id, stored, rendered, failed, \
                                          duration_buckets, duration_counts) \
     SELECT domain_id, day, tenant_id, ",
    rollup_columns_sql!(),
    " FROM (SELECT domain_id, (hour AT TIME ZONE 'UTC')::date AS day, tenant_id, bucket, \
                  sum(stored)::bigint AS stored, sum(rendered)::bigint AS rendered, \
                  sum(failed)::bigint AS failed \
           FROM per_bucket GROUP BY 1, 2, 3, 4) AS per_day \
     GROUP BY domain_id, day, tenant_id ORDER BY domain_id, day \
     ON CONFLICT (domain_id, day) DO UPDATE SET ",
    rollup_merge_sql!(),
);

/// One hour or one day of a chart.
#[derive(Clone, Debug, PartialEq)]
pub struct Bucket {
    /// The start of the hour or day, in UTC.
    pub start: OffsetDateTime,
    /// Renders that stored a page. Previews are not counted.
    pub renders: i64,
    /// Renders that failed (or whose page could not be stored).
    pub failed_renders: i64,
    /// Bots served from the cache.
    pub hits: i64,
    /// Bots that waited for a render and got it.
    pub misses: i64,
    /// Bots that got the origin's page although it renders.
    pub bypasses: i64,
    /// The median render time of the stored renders; `None` without any. Read from the roll-ups'
    /// histograms: within 1/16 of the exact value (see [`super::render_stats`]).
    pub p50_ms: Option<f64>,
    /// The 95th percentile render time of the stored renders, likewise; `None` without any.
    pub p95_ms: Option<f64>,
}

impl Bucket {
    /// A bucket in which nothing happened.
    pub fn empty(start: OffsetDateTime) -> Self {
        Bucket {
            start,
            renders: 0,
            failed_renders: 0,
            hits: 0,
            misses: 0,
            bypasses: 0,
            p50_ms: None,
            p95_ms: None,
        }
    }

    /// The share of bot lookups served from the cache, 0 to 1: hits over hits, misses and bypasses.
    /// `None` when no bot asked.
    pub fn hit_ratio(&self) -> Option<f64> {
        let lookups = self
            .hits
            .saturating_add(self.misses)
            .saturating_add(self.bypasses);
        (lookups > 0).then(|| self.hits as f64 / lookups as f64)
    }
}

/// A chart bucket as [`chart_buckets_sql`] selects it: start, renders, failed renders, hits,
/// misses, bypasses, and the histogram of the stored renders' durations (buckets and counts).
type BucketRow = (
    OffsetDateTime,
    i64,
    i64,
    i64,
    i64,
    i64,
    Option<Vec<i16>>,
    Option<Vec<i64>>,
);

fn bucket(row: BucketRow) -> Bucket {
    let (start, renders, failed_renders, hits, misses, bypasses, buckets, counts) = row;
    let buckets = buckets.unwrap_or_default();
    let counts = counts.unwrap_or_default();
    Bucket {
        start,
        renders,
        failed_renders,
        hits,
        misses,
        bypasses,
        p50_ms: duration_percentile(&buckets, &counts, 0.5),
        p95_ms: duration_percentile(&buckets, &counts, 0.95),
    }
}

/// The query behind a chart: `$stats` selects the roll-up rows of the chart's hours or days for
/// tenant `$1` and optionally domain `$2` (`start`, `stored`, `rendered`, `failed`,
/// `duration_buckets`, `duration_counts`), which are summed per `start`, histograms included; joined
/// with `$usage`, a query of the bot traffic per `start` (`hits`, `misses`, `bypasses`). Renders
/// that did not store a page (failed ones, and parity checks', which store nothing; previews are
/// not in the roll-ups) count as failed, as in [`Db::usage_of`].
macro_rules! chart_buckets_sql {
    ($stats:literal, $usage:literal) => {
        concat!(
            "WITH s AS (",
            $stats,
            "), \
             r AS ( \
                 SELECT start, sum(stored)::bigint AS renders, \
                 sum(rendered + failed)::bigint AS failed_renders FROM s GROUP BY start), \
             h AS ( \
                 SELECT start, array_agg(bucket ORDER BY bucket) AS buckets, \
                 array_agg(n ORDER BY bucket) AS counts \
                 FROM (SELECT s.start, d.bucket, sum(d.n)::bigint AS n \
                       FROM s, unnest(s.duration_buckets, s.duration_counts) AS d (bucket, n) \
                       GROUP BY 1, 2) AS per_bucket \
                 GROUP BY start), \
             u AS (",
            $usage,
            ") \
             SELECT coalesce(r.start, u.start) AS start, \
             coalesce(r.renders, 0) AS renders, coalesce(r.failed_renders, 0) AS failed_renders, \
             coalesce(u.hits, 0) AS hits, coalesce(u.misses, 0) AS misses, \
             coalesce(u.bypasses, 0) AS bypasses, h.buckets, h.counts \
             FROM r LEFT JOIN h ON h.start = r.start FULL JOIN u ON r.start = u.start ORDER BY 1"
        )
    };
}

impl Db {
    /// Stores a snapshot of hourly counters, each row with the start of its UTC hour, never lowering a
    /// stored count; rows of domains that no longer exist are dropped. One statement for all rows (the
    /// copier sends two days of hours for every counted domain every few seconds), and rows that
    /// did not grow are not rewritten.
    pub async fn upsert_usage_hourly(
        &self,
        rows: &[(OffsetDateTime, UsageSnapshot)],
    ) -> Result<(), DbError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut domain_ids = Vec::with_capacity(rows.len());
        let mut hours = Vec::with_capacity(rows.len());
        let mut hits = Vec::with_capacity(rows.len());
        let mut misses = Vec::with_capacity(rows.len());
        let mut bypasses = Vec::with_capacity(rows.len());
        let mut passthroughs = Vec::with_capacity(rows.len());
        for (hour, row) in rows {
            domain_ids.push(row.domain_id);
            hours.push(*hour);
            hits.push(row.hits);
            misses.push(row.misses);
            bypasses.push(row.bypasses);
            passthroughs.push(row.passthroughs);
        }
        // Grouped, so that a row given twice cannot make the upsert touch one row twice (an error).
        sqlx::query(
            "INSERT INTO usage_hourly (domain_id, hour, tenant_id, hits, misses, bypasses, passthroughs) \
             SELECT d.id, u.hour, d.tenant_id, max(u.hits), max(u.misses), max(u.bypasses), \
             max(u.passthroughs) \
             FROM unnest($1::uuid[], $2::timestamptz[], $3::bigint[], $4::bigint[], $5::bigint[], \
                         $6::bigint[]) AS u (domain_id, hour, hits, misses, bypasses, passthroughs) \
             JOIN domains d ON d.id = u.domain_id \
             GROUP BY d.id, u.hour, d.tenant_id \
             ON CONFLICT (domain_id, hour) DO UPDATE SET \
             hits = GREATEST(usage_hourly.hits, excluded.hits), \
             misses = GREATEST(usage_hourly.misses, excluded.misses), \
             bypasses = GREATEST(usage_hourly.bypasses, excluded.bypasses), \
             passthroughs = GREATEST(usage_hourly.passthroughs, excluded.passthroughs) \
             WHERE excluded.hits > usage_hourly.hits OR excluded.misses > usage_hourly.misses \
             OR excluded.bypasses > usage_hourly.bypasses \
             OR excluded.passthroughs > usage_hourly.passthroughs",
        )
        .bind(&domain_ids)
        .bind(&hours)
        .bind(&hits)
        .bind(&misses)
        .bind(&bypasses)
        .bind(&passthroughs)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Deletes the hourly counters of hours that started before `before`; returns how many rows went.
    pub async fn delete_usage_hourly_before(&self, before: OffsetDateTime) -> Result<u64, DbError> {
        let deleted = sqlx::query("DELETE FROM usage_hourly WHERE hour < $1")
            .bind(before)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(deleted)
    }

    /// Renders and bot traffic of the tenant's domains (or one of them) per UTC hour, for the hours
    /// that start in `from..to`: only hours with something to show, oldest first. Preview renders
    /// are left out; render times are those of successful renders, from the roll-up's histograms
    /// (see [`super::render_stats`] for their precision).
    pub async fn hourly_buckets(
        &self,
        tenant_id: Uuid,
        domain_id: Option<Uuid>,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<Bucket>, DbError> {
        let rows: Vec<BucketRow> = sqlx::query_as(chart_buckets_sql!(
            "SELECT hour AS start, stored, rendered, failed, duration_buckets, duration_counts \
             FROM render_stats_hourly WHERE tenant_id = $1 AND ($2::uuid IS NULL OR domain_id = $2) \
             AND hour >= $3 AND hour < $4",
            "SELECT hour AS start, sum(hits)::bigint AS hits, sum(misses)::bigint AS misses, \
             sum(bypasses)::bigint AS bypasses FROM usage_hourly \
             WHERE tenant_id = $1 AND ($2::uuid IS NULL OR domain_id = $2) \
             AND hour >= $3 AND hour < $4 GROUP BY hour"
        ))
        .bind(tenant_id)
        .bind(domain_id)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(bucket).collect())
    }

    /// Renders and bot traffic of the tenant's domains (or one of them) per UTC day, `from` to `to`
    /// inclusive, as [`Db::hourly_buckets`] does per hour.
    pub async fn daily_buckets(
        &self,
        tenant_id: Uuid,
        domain_id: Option<Uuid>,
        from: Date,
        to: Date,
    ) -> Result<Vec<Bucket>, DbError> {
        let rows: Vec<BucketRow> = sqlx::query_as(chart_buckets_sql!(
            "SELECT day::timestamp AT TIME ZONE 'UTC' AS start, stored, rendered, failed, \
             duration_buckets, duration_counts FROM render_stats_daily \
             WHERE tenant_id = $1 AND ($2::uuid IS NULL OR domain_id = $2) \
             AND day >= $3 AND day <= $4",
            "SELECT day::timestamp AT TIME ZONE 'UTC' AS start, sum(hits)::bigint AS hits, \
             sum(misses)::bigint AS misses, sum(bypasses)::bigint AS bypasses FROM usage_daily \
             WHERE tenant_id = $1 AND ($2::uuid IS NULL OR domain_id = $2) \
             AND day >= $3 AND day <= $4 GROUP BY day"
        ))
        .bind(tenant_id)
        .bind(domain_id)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(bucket).collect())
    }

    /// Per domain of the tenant, its cache hits and its lookups (hits, misses and bypasses) over the
    /// last 7 UTC days, today included. Domains without bot traffic in that time are absent.
    pub async fn domain_hit_ratios(
        &self,
        tenant_id: Uuid,
    ) -> Result<HashMap<Uuid, (i64, i64)>, DbError> {
        let rows: Vec<(Uuid, i64, i64)> = sqlx::query_as(
            "SELECT domain_id, sum(hits)::bigint, sum(hits + misses + bypasses)::bigint \
             FROM usage_daily WHERE tenant_id = $1 \
             AND day > (now() AT TIME ZONE 'UTC')::date - 7 GROUP BY domain_id",
        )
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(domain_id, hits, lookups)| (domain_id, (hits, lookups)))
            .collect())
    }
}
