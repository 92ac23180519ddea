//! The numbers behind the dashboard's charts: renders, cache hit ratio and render times of a
//! tenant's domains over the last 24 hours (by UTC hour) and the last 30 days (by UTC day).
//!
//! Renders and render times come from the render log's roll-ups (`render_stats_hourly`,
//! `render_stats_daily`: a few rows per domain, whatever the number of renders, and still there
//! for the days the render log's retention has deleted; render times are read from their
//! histograms, within 1/16 of the exact percentile, see [`crate::db::render_stats`]), bot traffic
//! from the counters copied out of Redis (`usage_hourly`, `usage_daily`). Callers that want the
//! latest minutes copy both first (see [`crate::activity`]).

use crate::App;
pub use crate::db::Bucket;
use crate::db::DbError;
use std::collections::HashMap;
use time::{Duration, OffsetDateTime, UtcOffset};
use uuid::Uuid;

/// How many hourly buckets [`Charts::hours`] holds.
pub const HOURS: usize = 24;
/// How many daily buckets [`Charts::days`] holds.
pub const DAYS: usize = 30;

/// What the dashboard's charts show.
#[derive(Clone, Debug, PartialEq)]
pub struct Charts {
    /// Exactly [`HOURS`] hours, oldest first; the last is the current hour.
    pub hours: Vec<Bucket>,
    /// Exactly [`DAYS`] days, oldest first; the last is today (UTC).
    pub days: Vec<Bucket>,
}

/// The charts of the tenant's domains, or of one of them, as of `now`. Hours and days without any
/// activity are there, with zero counts.
pub async fn charts(
    app: &App,
    tenant_id: Uuid,
    domain_id: Option<Uuid>,
    now: OffsetDateTime,
) -> Result<Charts, DbError> {
    let now = now.to_offset(UtcOffset::UTC);
    let first_hour = now.truncate_to_hour() - Duration::hours(HOURS as i64 - 1);
    let first_day = now.truncate_to_day() - Duration::days(DAYS as i64 - 1);
    let db = &app.db;
    let (hours, days) = tokio::try_join!(
        db.hourly_buckets(
            tenant_id,
            domain_id,
            first_hour,
            first_hour + Duration::hours(HOURS as i64),
        ),
        db.daily_buckets(tenant_id, domain_id, first_day.date(), now.date()),
    )?;
    Ok(Charts {
        hours: fill(first_hour, Duration::HOUR, HOURS, hours),
        days: fill(first_day, Duration::DAY, DAYS, days),
    })
}

/// `count` buckets `step` apart from `first`: those `found` has, and empty ones between them.
/// Found buckets that start elsewhere are ignored.
fn fill(first: OffsetDateTime, step: Duration, count: usize, found: Vec<Bucket>) -> Vec<Bucket> {
    let mut found: HashMap<i64, Bucket> = found
        .into_iter()
        .map(|bucket| (bucket.start.unix_timestamp(), bucket))
        .collect();
    (0..count)
        .map(|i| {
            let start = first + step * i as i32;
            match found.remove(&start.unix_timestamp()) {
                Some(bucket) => Bucket { start, ..bucket },
                None => Bucket::empty(start),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn the_hit_ratio_counts_hits_among_lookups() {
        #[track_caller]
        fn check(hits: i64, misses: i64, bypasses: i64, expected: Option<f64>) {
            let bucket = Bucket {
                hits,
                misses,
                bypasses,
                ..Bucket::empty(OffsetDateTime::UNIX_EPOCH)
            };
            assert_eq!(bucket.hit_ratio(), expected, "{hits}/{misses}/{bypasses}");
        }
        check(0, 0, 0, None);
        check(3, 0, 0, Some(1.0));
        check(0, 2, 2, Some(0.0));
        check(1, 2, 1, Some(0.25));
        check(9, 1, 0, Some(0.9));
        check(i64::MAX, i64::MAX, 0, Some(1.0));
    }

    #[test]
    fn gaps_are_filled_with_empty_buckets() {
        let first = datetime!(2025-01-01 22:00 UTC);
        let at = |hours: i64| first + Duration::hours(hours);
        let busy = |start, renders| Bucket {
            renders,
            p50_ms: Some(10.0),
            ..Bucket::empty(start)
        };
        let found = vec![
            busy(at(0), 1),
            busy(at(3), 2),
            // Outside the range, or not on a bucket's start: ignored.
            busy(at(-1), 7),
            busy(at(4), 7),
            busy(at(1) + Duration::MINUTE, 7),
        ];
        let filled = fill(first, Duration::HOUR, 4, found);
        assert_eq!(
            filled.iter().map(|b| b.start).collect::<Vec<_>>(),
            [at(0), at(1), at(2), at(3)]
        );
        assert_eq!(
            filled.iter().map(|b| b.renders).collect::<Vec<_>>(),
            [1, 0, 0, 2]
        );
        assert_eq!(filled[1], Bucket::empty(at(1)));
        assert_eq!(filled[3].p50_ms, Some(10.0));
        assert_eq!(
            filled[2].start,
            datetime!(2025-01-02 00:00 UTC),
            "hours run across midnight"
        );

        // A start in another offset is the same instant.
        let found = vec![busy(datetime!(2025-01-02 01:00 +01:00), 5)];
        let filled = fill(first, Duration::HOUR, 4, found);
        assert_eq!(filled[2].renders, 5);
        assert_eq!(filled[2].start.offset(), UtcOffset::UTC);
    }
}
