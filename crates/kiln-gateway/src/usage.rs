//! Usage counting off the request path: bot responses are counted in memory and added to Redis in
//! one batch a second (and once more at shutdown), so counting never costs a request a round trip.
//!
//! A batch that could not be confirmed is resent as it was, under the same number, until Redis
//! confirms it; each shard of the counters in Redis applies each number once, so a batch whose
//! first sending timed out but landed anyway (in some shards or all) is not counted twice.
//! Meanwhile new counts collect in memory, by UTC hour (Redis keeps each day's counts by hour, for
//! the dashboard's charts). What is kept is bounded by the number of (hour, domain) pairs, not by
//! traffic: during an outage every known pair keeps counting, and only counts for pairs beyond
//! [`MAX_PENDING`] are dropped (and logged).

use kiln_store::{UsageBatch, UsageCounts, UsageHour, UsageKind};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// The most (hour, domain) pairs counted while a batch waits to be confirmed: about 15 MB at worst
/// (twice that with the waiting batch). That is a day's outage for 4 000 domains busy around the
/// clock, far more than one gateway serves.
pub const MAX_PENDING: usize = 100_000;

const HOUR_MS: u64 = 60 * 60 * 1000;

/// How many stripes counts are made in: more than a gateway has worker threads, so that two threads
/// seldom share one.
const STRIPES: usize = 8;

pub struct Usage {
    /// This gateway process's name for numbering its batches.
    writer: String,
    capacity: usize,
    /// Counts as bot responses make them, each thread in a stripe of its own ([`stripe`]): with one
    /// lock for all, two workers counting at once waited on each other (a futex wait and wake) many
    /// times a second. A flush moves them into `pending`.
    stripes: [Mutex<Counts>; STRIPES],
    pending: Mutex<Pending>,
    /// One flush at a time: batch `n + 1` is only made once batch `n` is confirmed.
    flushing: tokio::sync::Mutex<()>,
}

/// Counts by hour and domain, at most `capacity` (hour, domain) pairs of them.
#[derive(Default)]
struct Counts {
    /// By hour (hours since the Unix epoch) and domain id.
    hours: BTreeMap<u64, HashMap<String, UsageCounts>>,
    /// How many (hour, domain) pairs `hours` holds.
    pairs: usize,
    /// Counts dropped because `hours` was full, since the last flush reported them.
    dropped: u64,
}

impl Counts {
    fn add(&mut self, capacity: usize, hour: u64, domain_id: &str, kind: UsageKind, count: u64) {
        let domains = self.hours.entry(hour).or_default();
        let counts = match domains.get_mut(domain_id) {
            Some(counts) => counts,
            None if self.pairs < capacity => {
                self.pairs += 1;
                domains.entry(domain_id.to_owned()).or_default()
            }
            None => {
                self.dropped = self.dropped.saturating_add(count);
                if domains.is_empty() {
                    self.hours.remove(&hour);
                }
                return;
            }
        };
        counts.add(kind, count);
    }

    /// Adds what `other` counted (and dropped).
    fn merge(&mut self, capacity: usize, other: Counts) {
        self.dropped = self.dropped.saturating_add(other.dropped);
        for (hour, domains) in other.hours {
            for (domain_id, counts) in domains {
                for kind in UsageKind::ALL {
                    let count = counts.get(kind);
                    if count > 0 {
                        self.add(capacity, hour, &domain_id, kind, count);
                    }
                }
            }
        }
    }
}

/// The stripe the current thread counts in: threads take stripes in turn as they first count.
fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    STRIPE.with(|stripe| *stripe)
}

#[derive(Default)]
struct Pending {
    /// Counts not yet in a batch, gathered from the stripes.
    counts: Counts,
    /// A batch sent without confirmation: it may or may not have been applied.
    unconfirmed: Option<UsageBatch>,
    /// The number of the last batch made.
    seq: u64,
}

impl Pending {
    /// Moves the stripes' counts into these.
    fn gather(&mut self, capacity: usize, stripes: &[Mutex<Counts>]) {
        for stripe in stripes {
            let counts =
                std::mem::take(&mut *stripe.lock().unwrap_or_else(PoisonError::into_inner));
            self.counts.merge(capacity, counts);
        }
    }

    /// The batch to send next: the unconfirmed one again, else a new one of everything counted.
    fn next_batch(&mut self, writer: &str) -> Option<(UsageBatch, bool)> {
        if let Some(batch) = self.unconfirmed.take() {
            return Some((batch, true));
        }
        if self.counts.hours.is_empty() {
            return None;
        }
        self.seq += 1;
        self.counts.pairs = 0;
        let hours = std::mem::take(&mut self.counts.hours)
            .into_iter()
            .map(|(hour, domains)| {
                let counts = domains
                    .into_iter()
                    .flat_map(|(domain_id, counts)| {
                        UsageKind::ALL
                            .into_iter()
                            .map(move |kind| (domain_id.clone(), kind, counts.get(kind)))
                    })
                    .filter(|(_, _, count)| *count > 0)
                    .collect();
                (UsageHour::at(hour * HOUR_MS), counts)
            })
            .collect();
        let batch = UsageBatch {
            writer: writer.to_owned(),
            seq: self.seq,
            hours,
        };
        Some((batch, false))
    }
}

impl Default for Usage {
    fn default() -> Self {
        Usage::with_capacity(MAX_PENDING)
    }
}

impl Usage {
    /// Counts that keep at most `capacity` (hour, domain) pairs while they cannot be written.
    pub fn with_capacity(capacity: usize) -> Self {
        Usage {
            writer: format!("gateway-{}", uuid::Uuid::new_v4().simple()),
            capacity,
            stripes: Default::default(),
            pending: Mutex::new(Pending::default()),
            flushing: tokio::sync::Mutex::new(()),
        }
    }

    /// Counts one bot response for `domain_id`, now.
    pub fn record(&self, domain_id: &str, kind: UsageKind) {
        self.record_at(kiln_core::unix_millis_now(), domain_id, kind);
    }

    fn record_at(&self, at: u64, domain_id: &str, kind: UsageKind) {
        self.stripes[stripe()]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .add(self.capacity, at / HOUR_MS, domain_id, kind, 1);
    }

    /// Writes what was counted so far: the unconfirmed batch first, if there is one, then a new batch
    /// of everything since. What could not be confirmed is kept for the next flush, and the error
    /// returned.
    pub async fn flush(&self, counters: &kiln_store::Usage) -> kiln_store::Result<()> {
        let _one_at_a_time = self.flushing.lock().await;
        loop {
            let (next, dropped) = {
                let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
                pending.gather(self.capacity, &self.stripes);
                let dropped = std::mem::take(&mut pending.counts.dropped);
                (pending.next_batch(&self.writer), dropped)
            };
            if dropped > 0 {
                tracing::warn!(
                    usage.dropped = dropped,
                    "usage counts were dropped while Redis could not take them"
                );
            }
            let Some((batch, resent)) = next else {
                return Ok(());
            };
            if let Err(error) = counters.add_batch(&batch).await {
                self.pending
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .unconfirmed = Some(batch);
                return Err(error);
            }
            // A confirmed resend leaves the counts made since to send; a new batch took them all.
            if !resent {
                return Ok(());
            }
        }
    }

    /// How many (hour, domain) pairs wait for a batch, and whether a batch waits for confirmation.
    #[cfg(test)]
    fn waiting(&self) -> (usize, bool) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending.gather(self.capacity, &self.stripes);
        (pending.counts.pairs, pending.unconfirmed.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_store::{Store, StoreSettings};
    use kiln_testkit::TestRedis;
    use std::time::{Duration, Instant};

    const DAY_1: u64 = 1_735_689_600_000; // 2025-01-01T00:00:00Z
    const DAY_MS: u64 = 24 * HOUR_MS;

    #[test]
    fn counts_beyond_capacity_are_dropped_but_known_pairs_keep_counting() {
        let usage = Usage::with_capacity(2);
        usage.record_at(DAY_1, "a", UsageKind::Hit);
        usage.record_at(DAY_1, "b", UsageKind::Hit);
        usage.record_at(DAY_1, "c", UsageKind::Hit);
        usage.record_at(DAY_1 + HOUR_MS, "a", UsageKind::Hit);
        usage.record_at(DAY_1 + HOUR_MS - 1, "a", UsageKind::Miss);
        let mut pending = usage.pending.lock().unwrap();
        pending.gather(usage.capacity, &usage.stripes);
        let counts = &pending.counts;
        assert_eq!(counts.pairs, 2);
        assert_eq!(counts.dropped, 2);
        assert_eq!(counts.hours.len(), 1, "no empty hour is left behind");
        let hour = &counts.hours[&(DAY_1 / HOUR_MS)];
        assert_eq!(hour["a"].hits, 1);
        assert_eq!(hour["a"].misses, 1);
        assert_eq!(hour["b"].hits, 1);
        assert!(!hour.contains_key("c"));
    }

    /// Threads count in stripes of their own; a flush gathers every stripe's counts.
    #[test]
    fn counts_from_many_threads_are_all_gathered() {
        let usage = Usage::with_capacity(10);
        std::thread::scope(|threads| {
            for _ in 0..STRIPES + 3 {
                threads.spawn(|| {
                    for _ in 0..1000 {
                        usage.record_at(DAY_1, "a", UsageKind::Hit);
                    }
                });
            }
        });
        let mut pending = usage.pending.lock().unwrap();
        pending.gather(usage.capacity, &usage.stripes);
        assert_eq!(pending.counts.pairs, 1);
        assert_eq!(
            pending.counts.hours[&(DAY_1 / HOUR_MS)]["a"].hits,
            (STRIPES as u64 + 3) * 1000
        );
        assert!(
            usage
                .stripes
                .iter()
                .all(|stripe| stripe.lock().unwrap().hours.is_empty())
        );
    }

    #[test]
    fn batches_carry_the_utc_hour_of_each_count() {
        let mut pending = Pending::default();
        for (at, domain_id, kind) in [
            (DAY_1 - 1, "a", UsageKind::Hit),
            (DAY_1, "a", UsageKind::Hit),
            (DAY_1 + 1, "a", UsageKind::Hit),
            (DAY_1 + 13 * HOUR_MS + 59 * 60_000, "a", UsageKind::Miss),
            (DAY_1 + 13 * HOUR_MS, "b", UsageKind::Bypass),
        ] {
            pending.counts.add(10, at / HOUR_MS, domain_id, kind, 1);
        }
        let (batch, _) = pending.next_batch("w").unwrap();
        type Counts = Vec<(String, UsageKind, u64)>;
        let mut hours: Vec<(String, Counts)> = batch
            .hours
            .into_iter()
            .map(|(hour, mut counts)| {
                counts.sort();
                (hour.to_string(), counts)
            })
            .collect();
        hours.sort();
        assert_eq!(
            hours,
            [
                (
                    "2024-12-31T23".to_owned(),
                    vec![("a".to_owned(), UsageKind::Hit, 1)]
                ),
                (
                    "2025-01-01T00".to_owned(),
                    vec![("a".to_owned(), UsageKind::Hit, 2)]
                ),
                (
                    "2025-01-01T13".to_owned(),
                    vec![
                        ("a".to_owned(), UsageKind::Miss, 1),
                        ("b".to_owned(), UsageKind::Bypass, 1)
                    ]
                ),
            ]
        );
    }

    #[test]
    fn an_unconfirmed_batch_is_resent_unchanged_before_anything_new() {
        let mut pending = Pending::default();
        pending.counts.add(10, 1, "a", UsageKind::Hit, 1);
        let (first, resent) = pending.next_batch("w").unwrap();
        assert!(!resent);
        assert_eq!(first.seq, 1);
        assert_eq!(
            first.hours[&UsageHour::new("1970-01-01", 1).unwrap()],
            [("a".to_owned(), UsageKind::Hit, 1)]
        );
        pending.unconfirmed = Some(first.clone());
        pending.counts.add(10, 1, "a", UsageKind::Hit, 1);
        assert_eq!(pending.next_batch("w"), Some((first, true)));
        let (second, resent) = pending.next_batch("w").unwrap();
        assert!(!resent);
        assert_eq!(second.seq, 2);
        assert_eq!(pending.next_batch("w"), None);
    }

    #[tokio::test]
    async fn counts_survive_an_outage_and_are_written_exactly_once() {
        let mut redis = TestRedis::start();
        let prefix = kiln_testkit::unique_prefix();
        let mut settings = StoreSettings::new(redis.url(), &prefix);
        settings.command_timeout = Duration::from_millis(300);
        let store = Store::connect(settings).await.unwrap();
        let usage = Usage::default();
        usage.record_at(DAY_1, "d1", UsageKind::Hit);
        usage.record_at(DAY_1 + 5 * HOUR_MS, "d1", UsageKind::Hit);
        usage.record_at(DAY_1 + DAY_MS, "d1", UsageKind::Bypass);

        redis.stop();
        assert!(usage.flush(&store.usage()).await.is_err());
        assert!(usage.flush(&store.usage()).await.is_err());
        assert_eq!(
            usage.waiting(),
            (0, true),
            "the batch waits to be confirmed"
        );
        usage.record_at(DAY_1, "d1", UsageKind::Hit);
        assert_eq!(
            usage.waiting(),
            (1, true),
            "and new counts collect beside it"
        );

        // The client may replay the sends that timed out once it is back; they must not add up.
        redis.restart();
        let deadline = Instant::now() + Duration::from_secs(10);
        while usage.flush(&store.usage()).await.is_err() {
            assert!(Instant::now() < deadline, "redis never came back");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(usage.waiting(), (0, false));
        // A replay may go out on another pooled connection: give a straggler a moment to land (an
        // absence cannot be polled for).
        tokio::time::sleep(Duration::from_millis(500)).await;
        let first = store.usage().day("2025-01-01").await.unwrap();
        assert_eq!(first.totals["d1"].hits, 3);
        let hits: Vec<u64> = first.hours["d1"].iter().map(|c| c.hits).collect();
        assert_eq!(hits[..6], [2, 0, 0, 0, 0, 1], "{hits:?}");
        assert_eq!(hits.iter().sum::<u64>(), 3);
        let second = store.usage().day("2025-01-02").await.unwrap();
        assert_eq!(second.totals["d1"].bypasses, 1);
        assert_eq!(second.hours["d1"][0].bypasses, 1);
    }
}
