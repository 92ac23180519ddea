//! The render log's roll-ups and retention.
//!
//! `render_stats_hourly` and `render_stats_daily` (migration `0007_render_stats.sql`) count the
//! renders of each domain per UTC hour and day, previews left out, with a histogram of the stored
//! renders' durations: what the dashboard's charts and the usage API show, read from a few rows per
//! domain instead of from every render. The copier adds to them in the transaction that inserts
//! the renders ([`Db::insert_renders`]), counting only the rows it inserted, so a render copied
//! twice counts once and a crash loses nothing; deleting old renders ([`Db::delete_renders_before`])
//! leaves them as they are.
//!
//! # The histogram
//!
//! Bucket `i` holds the durations from [`duration_floor`]`(i)` to `duration_floor(i + 1) - 1`
//! milliseconds: one millisecond each below 32 ms, then every power of two split in 16 (32, 34, 36,
//! … 62, 64, 68, …), so that no bucket is wider than 1/16 of the durations in it. The last bucket
//! ([`DURATION_BUCKETS`]` - 1`, from 1,015,808 ms, about 17 minutes) also takes everything longer.
//! Postgres has the same buckets (`render_duration_bucket`, `render_duration_floor`); a test holds
//! the two to each other.
//!
//! [`duration_percentile`] reads a percentile from a histogram as `percentile_cont` computes it
//! from the durations themselves, with each bucket's durations taken as spread evenly over it:
//! **off by less than 1/16 (6.25 %) of the duration, and exact below 32 ms**. (The estimate of
//! each duration it interpolates between lies in that duration's bucket, less than 1/16 of it
//! away; so the interpolation is off by less than 1/16 of the larger of the two.)

use super::{Db, DbError};
use time::OffsetDateTime;

/// How many buckets a render-time histogram has.
pub const DURATION_BUCKETS: usize = 272;

/// The shortest duration (milliseconds) of bucket `bucket`. `DURATION_BUCKETS` itself gives the
/// end of the last bucket's nominal range (1,048,576 ms).
pub fn duration_floor(bucket: usize) -> i64 {
    if bucket < 32 {
        bucket as i64
    } else {
        let above = bucket - 32;
        ((16 + (above % 16)) as i64) << (1 + above / 16)
    }
}

/// The bucket that counts a render of `duration_ms`, as Postgres's `render_duration_bucket` does.
pub fn duration_bucket(duration_ms: i64) -> usize {
    if duration_ms < 32 {
        return usize::try_from(duration_ms).unwrap_or(0);
    }
    // 5 for 32..63, 6 for 64..127, …
    let power = 63 - duration_ms.leading_zeros() as usize;
    let sixteenth = usize::try_from(duration_ms >> (power - 4)).unwrap_or(0) - 16;
    (32 + (power - 5) * 16 + sixteenth).min(DURATION_BUCKETS - 1)
}

/// The `p` quantile (0 to 1) of the durations a histogram counts: `buckets` (ascending) with
/// `counts[i]` durations in `buckets[i]`, as the roll-ups store them. `percentile_cont`'s
/// interpolation, within the precision described in the module's documentation; `None` for an
/// empty histogram.
pub fn duration_percentile(buckets: &[i16], counts: &[i64], p: f64) -> Option<f64> {
    let entries: Vec<(usize, i64)> = buckets
        .iter()
        .zip(counts)
        .filter(|&(_, &count)| count > 0)
        .map(|(&bucket, &count)| {
            let bucket = usize::try_from(bucket)
                .unwrap_or(0)
                .min(DURATION_BUCKETS - 1);
            (bucket, count)
        })
        .collect();
    let total: i64 = entries.iter().map(|&(_, count)| count).sum();
    if total == 0 {
        return None;
    }
    // The `k`th duration (from 0), taken as the middle of its share of its bucket.
    let nth = |k: i64| -> f64 {
        let mut before = 0;
        for &(bucket, count) in &entries {
            if k < before + count {
                let low = duration_floor(bucket) as f64;
                let high = (duration_floor(bucket + 1) - 1) as f64;
                return low + ((k - before) as f64 + 0.5) / count as f64 * (high - low);
            }
            before += count;
        }
        duration_floor(entries[entries.len() - 1].0) as f64
    };
    let rank = p.clamp(0.0, 1.0) * (total - 1) as f64;
    let below = rank.floor();
    let low = nth(below as i64);
    Some(low + (rank - below) * (nth(rank.ceil() as i64) - low))
}

impl Db {
    /// Deletes up to `limit` of the renders logged before `before`, oldest first; returns how many
    /// went. One short statement (the rows are found through `renders_at_idx`), so that the
    /// retention never holds a long lock or makes a large transaction: call it again while it
    /// deletes `limit`. The roll-ups keep counting what it deletes.
    pub async fn delete_renders_before(
        &self,
        before: OffsetDateTime,
        limit: i64,
    ) -> Result<u64, DbError> {
        let deleted = sqlx::query(
            "DELETE FROM renders WHERE ctid = ANY(ARRAY( \
                 SELECT ctid FROM renders WHERE at < $1 ORDER BY at LIMIT $2))",
        )
        .bind(before)
        .bind(limit)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(deleted)
    }

    /// Deletes the hourly roll-ups of hours that started before `before` (a range of the table's
    /// key, which leads with the hour); returns how many rows went.
    pub async fn delete_render_stats_hourly_before(
        &self,
        before: OffsetDateTime,
    ) -> Result<u64, DbError> {
        let deleted = sqlx::query("DELETE FROM render_stats_hourly WHERE hour < $1")
            .bind(before)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `percentile_cont` over the durations themselves.
    fn exact(sorted: &[i64], p: f64) -> f64 {
        let rank = p * (sorted.len() - 1) as f64;
        let below = rank.floor() as usize;
        let above = rank.ceil() as usize;
        sorted[below] as f64 + (rank - below as f64) * (sorted[above] - sorted[below]) as f64
    }

    fn histogram(durations: &[i64]) -> (Vec<i16>, Vec<i64>) {
        let mut counts = vec![0i64; DURATION_BUCKETS];
        for &duration in durations {
            counts[duration_bucket(duration)] += 1;
        }
        (0..DURATION_BUCKETS)
            .filter(|&bucket| counts[bucket] > 0)
            .map(|bucket| (bucket as i16, counts[bucket]))
            .unzip()
    }

    #[test]
    fn every_duration_falls_in_the_bucket_that_spans_it() {
        assert_eq!(duration_floor(0), 0);
        assert_eq!(duration_floor(31), 31);
        assert_eq!(duration_floor(32), 32);
        assert_eq!(duration_floor(33), 34);
        assert_eq!(duration_floor(48), 64);
        assert_eq!(duration_floor(DURATION_BUCKETS - 1), 1_015_808);
        assert_eq!(duration_floor(DURATION_BUCKETS), 1 << 20);
        for duration in 0..(1i64 << 20) {
            let bucket = duration_bucket(duration);
            assert!(
                duration_floor(bucket) <= duration && duration < duration_floor(bucket + 1),
                "{duration} in {bucket}"
            );
        }
        for bucket in 32..DURATION_BUCKETS {
            let width = duration_floor(bucket + 1) - duration_floor(bucket);
            assert!(width * 16 <= duration_floor(bucket), "bucket {bucket}");
        }
        assert_eq!(duration_bucket(-5), 0);
        assert_eq!(duration_bucket(i64::MAX), DURATION_BUCKETS - 1);
        assert_eq!(duration_bucket(1 << 20), DURATION_BUCKETS - 1);
    }

    #[test]
    fn percentiles_are_within_a_sixteenth_of_percentile_cont() {
        // A few shapes of render times: spread, clustered, short, a long tail.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let samples: Vec<Vec<i64>> = vec![
            (0..1_000).map(|_| 400 + (next() % 1_200) as i64).collect(),
            (0..999).map(|_| 1_500 + (next() % 40) as i64).collect(),
            (0..77).map(|_| (next() % 40) as i64).collect(),
            (0..5_000)
                .map(|_| {
                    let r = next() % 1_000;
                    if r < 900 {
                        200 + r as i64
                    } else {
                        5_000 + 90 * r as i64
                    }
                })
                .collect(),
            vec![100, 200, 300, 400, 700, 1_000],
            vec![42],
            vec![12, 12, 12, 13],
        ];
        for mut durations in samples {
            durations.sort_unstable();
            let (buckets, counts) = histogram(&durations);
            for p in [0.0, 0.05, 0.5, 0.9, 0.95, 0.99, 1.0] {
                let exact = exact(&durations, p);
                let estimate = duration_percentile(&buckets, &counts, p).unwrap();
                // Less than a sixteenth of the larger of the durations interpolated between.
                let larger = durations[(p * (durations.len() - 1) as f64).ceil() as usize];
                let allowed = if larger < 32 {
                    0.0
                } else {
                    larger as f64 / 16.0
                };
                assert!(
                    (estimate - exact).abs() <= allowed,
                    "p{p} of {} durations: {estimate} for {exact}",
                    durations.len()
                );
            }
        }
        let (buckets, counts) = histogram(&[100, 200, 300, 400, 700, 1_000]);
        assert_eq!(duration_percentile(&buckets, &counts, 0.5), Some(351.5));
    }

    #[test]
    fn an_empty_histogram_has_no_percentiles() {
        assert_eq!(duration_percentile(&[], &[], 0.5), None);
        assert_eq!(duration_percentile(&[40], &[0], 0.5), None);
    }
}
