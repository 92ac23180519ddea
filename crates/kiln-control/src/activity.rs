//! The render log and usage (per day, and per hour for the charts of the last 24 hours): copied from
//! Redis (where workers and gateways write them, since neither talks to Postgres) into Postgres,
//! where they are kept and queried per tenant.
//!
//! Copying runs every few seconds in the background and once more before each read, so a tenant
//! always sees what has happened up to the moment it asks. The render log is copied at least once
//! (the cursor advances in the same transaction as the inserts, and the stream id is the key, so
//! a repeat stores nothing twice), and its roll-ups (per domain and hour, and day: what the charts
//! and the usage API read) are added to in that transaction, by the renders it stored.
//!
//! The render log is kept `KILN_RENDER_LOG_RETENTION_DAYS` ([`prune_render_log`], run by the
//! background copier): older renders are deleted a batch at a time. Their roll-ups stay (the daily
//! ones for good, the hourly ones [`USAGE_HOURLY_RETENTION`], as usage).

use crate::App;
use crate::db::{DbError, RenderFilter, RenderRecord, UsageRecord, UsageSnapshot};
use kiln_core::RenderVia;
use kiln_store::{RenderLogOutcome, RenderLogPurpose, StoreError, UsageCounts, UsageHours};
use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicI64, Ordering};
use time::{Date, Duration, OffsetDateTime};
use tokio::sync::Mutex;
use uuid::Uuid;

/// How many log entries one round trip copies.
const BATCH: usize = 500;

/// How long hourly usage is kept in Postgres: the charts show 24 hours, and a month is there for
/// whoever wants to look further back. Daily usage is kept for good.
pub const USAGE_HOURLY_RETENTION: Duration = Duration::days(35);

/// The hour (since the Unix epoch) in which this process last deleted expired hourly usage: once
/// an hour is enough, and spares Postgres a scan every few seconds.
static USAGE_PRUNED_HOUR: AtomicI64 = AtomicI64::new(i64::MIN);

/// How many renders one statement of the retention deletes: tens of milliseconds of work, whose
/// locks are those rows' alone.
pub const PRUNE_BATCH: i64 = 5_000;

/// How many of those statements one round of the background copier runs at most, so that a
/// backlog (the first round after an upgrade, or a shorter retention) is worked off a step at a
/// time between copies (50,000 renders every 5 s, far more than are logged) rather than holding
/// the copier up.
pub const PRUNE_BATCHES_PER_ROUND: u32 = 10;

/// How often the background copier deletes expired renders once none are left.
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum ActivityError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("reading Redis failed")]
    Store(#[from] StoreError),
}

/// One copy at a time per process: concurrent copies would only redo each other's work.
static COPYING: LazyLock<Mutex<()>> = LazyLock::new(|| Mutex::new(()));

/// Copies new render log entries into Postgres; returns how many were read.
pub async fn copy_render_log(app: &App) -> Result<usize, ActivityError> {
    let _guard = COPYING.lock().await;
    let mut copied = 0;
    loop {
        let cursor = app.db.render_log_cursor().await?;
        let entries = app.store.render_log().read(&cursor, BATCH).await?;
        let Some((last_id, _)) = entries.last() else {
            return Ok(copied);
        };
        let last_id = last_id.clone();
        let renders: Vec<RenderRecord> = entries
            .into_iter()
            .filter_map(|(stream_id, entry)| {
                let domain_id = Uuid::parse_str(&entry.domain_id).ok()?;
                let at =
                    OffsetDateTime::from_unix_timestamp_nanos(i128::from(entry.at) * 1_000_000)
                        .ok()?;
                Some(RenderRecord {
                    stream_id,
                    domain_id,
                    at,
                    url: entry.url,
                    device: entry.device.as_str().to_owned(),
                    purpose: match entry.purpose {
                        RenderLogPurpose::Bot => "bot",
                        RenderLogPurpose::Warm => "warm",
                        RenderLogPurpose::Preview => "preview",
                        RenderLogPurpose::Parity => "parity",
                    }
                    .to_owned(),
                    outcome: match entry.outcome {
                        RenderLogOutcome::Stored => "stored",
                        RenderLogOutcome::Rendered => "rendered",
                        RenderLogOutcome::Failed => "failed",
                    }
                    .to_owned(),
                    status: entry.status.map(i32::from),
                    reason: entry.reason,
                    duration_ms: i64::try_from(entry.duration_ms).unwrap_or(i64::MAX),
                    bytes: i64::try_from(entry.bytes).unwrap_or(i64::MAX),
                    user_agent: entry.user_agent,
                    via: entry.via.as_str().to_owned(),
                })
            })
            .collect();
        let read = renders.len();
        app.db.insert_renders(&renders, &last_id).await?;
        copied += read;
        if read < BATCH {
            return Ok(copied);
        }
    }
}

fn day_key(day: Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        day.year(),
        u8::from(day.month()),
        day.day()
    )
}

fn snapshot(domain_id: Uuid, counts: &UsageCounts) -> UsageSnapshot {
    UsageSnapshot {
        domain_id,
        hits: i64::try_from(counts.hits).unwrap_or(i64::MAX),
        misses: i64::try_from(counts.misses).unwrap_or(i64::MAX),
        bypasses: i64::try_from(counts.bypasses).unwrap_or(i64::MAX),
        passthroughs: i64::try_from(counts.passthroughs).unwrap_or(i64::MAX),
    }
}

/// The rows of `usage_hourly` for the hours of `day`: one per domain and hour with bot traffic.
fn hourly_rows(
    day: Date,
    hours: &BTreeMap<String, UsageHours>,
) -> Vec<(OffsetDateTime, UsageSnapshot)> {
    let midnight = day.midnight().assume_utc();
    hours
        .iter()
        .filter_map(|(domain_id, hours)| Some((Uuid::parse_str(domain_id).ok()?, hours)))
        .flat_map(|(domain_id, hours)| {
            (0i64..)
                .zip(hours)
                .map(move |(hour, counts)| {
                    (
                        midnight + Duration::hours(hour),
                        snapshot(domain_id, counts),
                    )
                })
                .filter(|(_, row)| {
                    [row.hits, row.misses, row.bypasses, row.passthroughs]
                        .iter()
                        .any(|&count| count > 0)
                })
        })
        .collect()
}

/// Snapshots today's and yesterday's counters, the days' totals and their hours (yesterday's last
/// minutes land after midnight), and once an hour deletes hourly counters older than
/// [`USAGE_HOURLY_RETENTION`].
pub async fn snapshot_usage(app: &App) -> Result<(), ActivityError> {
    let now = OffsetDateTime::now_utc();
    let today = now.date();
    for day in [today - Duration::days(1), today] {
        let usage = app.store.usage().day(&day_key(day)).await?;
        let rows: Vec<UsageSnapshot> = usage
            .totals
            .iter()
            .filter_map(|(domain_id, counts)| {
                Some(snapshot(Uuid::parse_str(domain_id).ok()?, counts))
            })
            .collect();
        if !rows.is_empty() {
            app.db.upsert_usage(day, &rows).await?;
        }
        app.db
            .upsert_usage_hourly(&hourly_rows(day, &usage.hours))
            .await?;
    }
    let hour = now.unix_timestamp().div_euclid(3600);
    if USAGE_PRUNED_HOUR.swap(hour, Ordering::Relaxed) != hour {
        let pruned = app
            .db
            .delete_usage_hourly_before(now - USAGE_HOURLY_RETENTION)
            .await;
        if pruned.is_err() {
            // Try again on the next round rather than in an hour.
            USAGE_PRUNED_HOUR.store(i64::MIN, Ordering::Relaxed);
        }
        pruned?;
    }
    Ok(())
}

/// What one round of [`prune_render_log`] deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pruned {
    /// Renders deleted.
    pub renders: u64,
    /// Whether every expired render is gone (otherwise the round stopped at its number of
    /// batches).
    pub done: bool,
}

/// Deletes the renders logged more than `retention_days` days before `now`, [`PRUNE_BATCH`] at a
/// time and at most `batches` batches, each its own short transaction; and the hourly roll-ups
/// older than [`USAGE_HOURLY_RETENTION`]. The roll-ups keep counting the deleted renders.
pub async fn prune_render_log(
    app: &App,
    retention_days: u32,
    now: OffsetDateTime,
    batches: u32,
) -> Result<Pruned, DbError> {
    let before = now - Duration::days(i64::from(retention_days));
    let mut pruned = Pruned {
        renders: 0,
        done: false,
    };
    for _ in 0..batches {
        let deleted = app.db.delete_renders_before(before, PRUNE_BATCH).await?;
        pruned.renders += deleted;
        if deleted < PRUNE_BATCH as u64 {
            pruned.done = true;
            break;
        }
    }
    app.db
        .delete_render_stats_hourly_before(now - USAGE_HOURLY_RETENTION)
        .await?;
    Ok(pruned)
}

/// Copies the render log, usage and the service tokens' last uses every `every` until the process
/// ends, and keeps the render log `retention_days` ([`prune_render_log`]: at the first round, then
/// every hour, and every round while a backlog lasts); failures are logged and retried on the next
/// round.
pub async fn run_copier(app: App, every: std::time::Duration, retention_days: u32) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut prune_at = tokio::time::Instant::now();
    loop {
        ticker.tick().await;
        if let Err(error) = copy_render_log(&app).await {
            tracing::warn!(
                error = %crate::error_chain(&error),
                "copying the render log failed; retrying"
            );
        }
        if let Err(error) = snapshot_usage(&app).await {
            tracing::warn!(
                error = %crate::error_chain(&error),
                "copying usage counters failed; retrying"
            );
        }
        if let Err(error) = crate::service_tokens::copy_last_use(&app).await {
            tracing::warn!(
                error = %crate::error_chain(&error),
                "copying the service tokens' last uses failed; retrying"
            );
        }
        if tokio::time::Instant::now() >= prune_at {
            let now = OffsetDateTime::now_utc();
            match prune_render_log(&app, retention_days, now, PRUNE_BATCHES_PER_ROUND).await {
                Ok(pruned) => {
                    if pruned.renders > 0 {
                        tracing::info!(
                            renders.deleted = pruned.renders,
                            renders.retention_days = retention_days,
                            "deleted renders older than the render log's retention"
                        );
                    }
                    if pruned.done {
                        prune_at = tokio::time::Instant::now() + PRUNE_EVERY;
                    }
                }
                Err(error) => tracing::warn!(
                    error = %crate::error_chain(&error),
                    "deleting expired renders failed; retrying"
                ),
            }
        }
    }
}

/// Whether `cursor` can be a render log cursor: the Redis stream id of the previous page's last
/// entry, `<milliseconds>-<sequence>`. Anything else is refused before it reaches a query.
pub fn is_stream_id(cursor: &str) -> bool {
    let number =
        |part: &str| (1..=20).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_digit());
    cursor
        .split_once('-')
        .is_some_and(|(ms, seq)| number(ms) && number(seq))
}

/// Brings the copy up to date before a read. Only Postgres failing fails it: if Redis is down,
/// what Postgres has is served (and the failure logged).
pub async fn catch_up(app: &App) -> Result<(), DbError> {
    match copy_render_log(app).await {
        Err(ActivityError::Db(error)) => return Err(error),
        Err(error) => tracing::warn!(
            error = %crate::error_chain(&error),
            "serving the render log without the latest entries"
        ),
        Ok(_) => {}
    }
    match snapshot_usage(app).await {
        Err(ActivityError::Db(error)) => return Err(error),
        Err(error) => tracing::warn!(
            error = %crate::error_chain(&error),
            "serving usage without the latest counts"
        ),
        Ok(()) => {}
    }
    Ok(())
}

/// The render log of one of the tenant's domains (only the renders that came `via` one way, when
/// given), up to date, newest first, continuing after the entry `before` (a stream id) when given.
pub async fn renders(
    app: &App,
    tenant_id: Uuid,
    domain_id: Uuid,
    via: Option<RenderVia>,
    before: Option<&str>,
    limit: i64,
) -> Result<Vec<RenderRecord>, DbError> {
    catch_up(app).await?;
    app.db
        .renders_of(tenant_id, domain_id, via, before, limit)
        .await
}

/// The tenant's renders matching `filter`, newest first, continuing after the entry `before` (a
/// stream id) when given. As copied so far: call [`catch_up`] first for the latest.
pub async fn renders_matching(
    app: &App,
    tenant_id: Uuid,
    filter: &RenderFilter,
    before: Option<&str>,
    limit: i64,
) -> Result<Vec<RenderRecord>, DbError> {
    app.db
        .renders_matching(tenant_id, filter, before, limit)
        .await
}

/// Bot traffic and renders per domain per day between `from` and `to` (inclusive), up to date, for
/// the tenant's domains (or one of them).
pub async fn usage(
    app: &App,
    tenant_id: Uuid,
    domain_id: Option<Uuid>,
    from: Date,
    to: Date,
) -> Result<Vec<UsageRecord>, DbError> {
    catch_up(app).await?;
    app.db.usage_of(tenant_id, domain_id, from, to).await
}

/// Each of the tenant's domains' cache hits and lookups (hits, misses and bypasses) over the last
/// 7 UTC days, today included (domains without bot traffic then are missing).
pub async fn hit_ratios(app: &App, tenant_id: Uuid) -> Result<HashMap<Uuid, (i64, i64)>, DbError> {
    app.db.domain_hit_ratios(tenant_id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_stream_ids_are_cursors() {
        let check = |cursor: &str, expected: bool| {
            assert_eq!(is_stream_id(cursor), expected, "{cursor:?}");
        };
        check("1700000000000-0", true);
        check("1700000000000-12", true);
        check("0-1", true);
        check("", false);
        check("-", false);
        check("1700000000000", false);
        check("1700000000000-", false);
        check("-0", false);
        check("1700000000000-0-1", false);
        check("17000a0000000-0", false);
        check("1700000000000-0\0", false);
        check(" 1700000000000-0", false);
        check("123456789012345678901-0", false);
    }

    #[test]
    fn day_keys_match_the_gateways() {
        let day = Date::from_calendar_date(2026, time::Month::March, 7).unwrap();
        assert_eq!(day_key(day), "2026-03-07");
        let millis =
            OffsetDateTime::new_utc(day, time::Time::MIDNIGHT).unix_timestamp() as u64 * 1000;
        assert_eq!(kiln_store::usage_day(millis), day_key(day));
    }

    #[test]
    fn hourly_rows_are_the_hours_with_bot_traffic() {
        let day = Date::from_calendar_date(2026, time::Month::March, 7).unwrap();
        let domain = Uuid::from_u128(7);
        let mut hours = [UsageCounts::default(); 24];
        hours[0].hits = 2;
        hours[13].bypasses = 1;
        hours[13].passthroughs = 4;
        hours[23].misses = u64::MAX;
        // Renders are not bot traffic and have no column; an hour with only them has no row.
        hours[5].renders = 3;
        let usage = BTreeMap::from([
            (domain.to_string(), hours),
            ("not-a-uuid".to_owned(), hours),
        ]);

        let rows = hourly_rows(day, &usage);

        let summary: Vec<_> = rows
            .iter()
            .map(|(hour, row)| {
                assert_eq!(row.domain_id, domain);
                (
                    *hour,
                    [row.hits, row.misses, row.bypasses, row.passthroughs],
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (time::macros::datetime!(2026-03-07 00:00 UTC), [2, 0, 0, 0]),
                (time::macros::datetime!(2026-03-07 13:00 UTC), [0, 0, 1, 4]),
                (
                    time::macros::datetime!(2026-03-07 23:00 UTC),
                    [0, i64::MAX, 0, 0]
                ),
            ]
        );
    }
}
