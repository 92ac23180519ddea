//! The render log and daily usage: copied from Redis (where workers and gateways write them, since
//! neither talks to Postgres) into Postgres, where they are kept and queried per tenant.
//!
//! Copying runs every few seconds in the background and once more before each read, so a tenant
//! always sees what has happened up to the moment it asks. The render log is copied at least once
//! (the cursor advances in the same transaction as the inserts, and the stream id is the key, so
//! a repeat stores nothing twice).

use crate::App;
use crate::db::{DbError, RenderRecord, UsageSnapshot};
use kiln_store::{RenderLogOutcome, RenderLogPurpose, StoreError};
use std::sync::LazyLock;
use time::{Date, Duration, OffsetDateTime};
use tokio::sync::Mutex;
use uuid::Uuid;

/// How many log entries one round trip copies.
const BATCH: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum ActivityError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("reading Redis failed: {0}")]
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
        let entries = app.store.read_render_log(&cursor, BATCH).await?;
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

/// Snapshots today's and yesterday's counters (yesterday's last minutes land after midnight).
pub async fn snapshot_usage(app: &App) -> Result<(), ActivityError> {
    let today = OffsetDateTime::now_utc().date();
    for day in [today - Duration::days(1), today] {
        let counts = app.store.usage_for_day(&day_key(day)).await?;
        let rows: Vec<UsageSnapshot> = counts
            .into_iter()
            .filter_map(|(domain_id, counts)| {
                Some(UsageSnapshot {
                    domain_id: Uuid::parse_str(&domain_id).ok()?,
                    hits: i64::try_from(counts.hits).unwrap_or(i64::MAX),
                    misses: i64::try_from(counts.misses).unwrap_or(i64::MAX),
                    bypasses: i64::try_from(counts.bypasses).unwrap_or(i64::MAX),
                    passthroughs: i64::try_from(counts.passthroughs).unwrap_or(i64::MAX),
                })
            })
            .collect();
        if !rows.is_empty() {
            app.db.upsert_usage(day, &rows).await?;
        }
    }
    Ok(())
}

/// Copies the render log and usage every `every` until the process ends; failures are logged and
/// retried on the next round.
pub async fn run_copier(app: App, every: std::time::Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if let Err(error) = copy_render_log(&app).await {
            tracing::warn!(%error, "copying the render log failed; retrying");
        }
        if let Err(error) = snapshot_usage(&app).await {
            tracing::warn!(%error, "copying usage counters failed; retrying");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_keys_match_the_gateways() {
        let day = Date::from_calendar_date(2026, time::Month::March, 7).unwrap();
        assert_eq!(day_key(day), "2026-03-07");
        let millis =
            OffsetDateTime::new_utc(day, time::Time::MIDNIGHT).unix_timestamp() as u64 * 1000;
        assert_eq!(kiln_store::usage_day(millis), day_key(day));
    }
}
