//! Usage counting off the request path: bot responses are counted in memory and added to Redis in
//! one batch a second (and once more at shutdown), so counting never costs a request a round trip.
//!
//! A batch that could not be confirmed is resent as it was, under the same number, until Redis
//! confirms it; Redis applies each number once, so a batch whose first sending timed out but landed
//! anyway is not counted twice. Meanwhile new counts collect in memory. What is kept is bounded by
//! the number of (day, domain) pairs, not by traffic: during an outage every known pair keeps
//! counting, and only counts for pairs beyond [`MAX_PENDING`] are dropped (and logged).

use kiln_store::{Store, UsageBatch, UsageCounts, UsageKind, usage_day};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// The most (day, domain) pairs counted while a batch waits to be confirmed: about 15 MB at worst
/// (twice that with the waiting batch), and far more domains than one gateway serves in the days an
/// outage could last.
pub const MAX_PENDING: usize = 100_000;

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

pub struct Usage {
    /// This gateway process's name for numbering its batches.
    writer: String,
    capacity: usize,
    pending: Mutex<Pending>,
    /// One flush at a time: batch `n + 1` is only made once batch `n` is confirmed.
    flushing: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Pending {
    /// Counts not yet in a batch, by day (days since the Unix epoch, UTC) and domain id.
    days: BTreeMap<u64, HashMap<String, UsageCounts>>,
    /// How many (day, domain) pairs `days` holds.
    pairs: usize,
    /// Counts dropped because `days` was full, since the last flush reported them.
    dropped: u64,
    /// A batch sent without confirmation: it may or may not have been applied.
    unconfirmed: Option<UsageBatch>,
    /// The number of the last batch made.
    seq: u64,
}

impl Pending {
    fn add(&mut self, capacity: usize, day: u64, domain_id: &str, kind: UsageKind) {
        let domains = self.days.entry(day).or_default();
        let counts = match domains.get_mut(domain_id) {
            Some(counts) => counts,
            None if self.pairs < capacity => {
                self.pairs += 1;
                domains.entry(domain_id.to_owned()).or_default()
            }
            None => {
                self.dropped = self.dropped.saturating_add(1);
                if domains.is_empty() {
                    self.days.remove(&day);
                }
                return;
            }
        };
        counts.add(kind, 1);
    }

    /// The batch to send next: the unconfirmed one again, else a new one of everything counted.
    fn next_batch(&mut self, writer: &str) -> Option<(UsageBatch, bool)> {
        if let Some(batch) = self.unconfirmed.take() {
            return Some((batch, true));
        }
        if self.days.is_empty() {
            return None;
        }
        self.seq += 1;
        self.pairs = 0;
        let days = std::mem::take(&mut self.days)
            .into_iter()
            .map(|(day, domains)| {
                let counts = domains
                    .into_iter()
                    .flat_map(|(domain_id, counts)| {
                        UsageKind::ALL
                            .into_iter()
                            .map(move |kind| (domain_id.clone(), kind, counts.get(kind)))
                    })
                    .filter(|(_, _, count)| *count > 0)
                    .collect();
                (usage_day(day * DAY_MS), counts)
            })
            .collect();
        let batch = UsageBatch {
            writer: writer.to_owned(),
            seq: self.seq,
            days,
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
    /// Counts that keep at most `capacity` (day, domain) pairs while they cannot be written.
    pub fn with_capacity(capacity: usize) -> Self {
        Usage {
            writer: format!("gateway-{}", uuid::Uuid::new_v4().simple()),
            capacity,
            pending: Mutex::new(Pending::default()),
            flushing: tokio::sync::Mutex::new(()),
        }
    }

    /// Counts one bot response for `domain_id`, today.
    pub fn record(&self, domain_id: &str, kind: UsageKind) {
        self.record_at(kiln_core::unix_millis_now(), domain_id, kind);
    }

    fn record_at(&self, at: u64, domain_id: &str, kind: UsageKind) {
        self.pending.lock().expect("usage lock poisoned").add(
            self.capacity,
            at / DAY_MS,
            domain_id,
            kind,
        );
    }

    /// Writes what was counted so far: the unconfirmed batch first, if there is one, then a new batch
    /// of everything since. What could not be confirmed is kept for the next flush, and the error
    /// returned.
    pub async fn flush(&self, store: &Store) -> kiln_store::Result<()> {
        let _one_at_a_time = self.flushing.lock().await;
        loop {
            let (next, dropped) = {
                let mut pending = self.pending.lock().expect("usage lock poisoned");
                let dropped = std::mem::take(&mut pending.dropped);
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
            if let Err(error) = store.add_usage_batch(&batch).await {
                self.pending
                    .lock()
                    .expect("usage lock poisoned")
                    .unconfirmed = Some(batch);
                return Err(error);
            }
            // A confirmed resend leaves the counts made since to send; a new batch took them all.
            if !resent {
                return Ok(());
            }
        }
    }

    /// How many (day, domain) pairs wait for a batch, and whether a batch waits for confirmation.
    #[cfg(test)]
    fn waiting(&self) -> (usize, bool) {
        let pending = self.pending.lock().expect("usage lock poisoned");
        (pending.pairs, pending.unconfirmed.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_store::StoreSettings;
    use kiln_testkit::RedisServer;
    use std::time::{Duration, Instant};

    const DAY_1: u64 = 1_735_689_600_000; // 2025-01-01T00:00:00Z

    #[test]
    fn counts_beyond_capacity_are_dropped_but_known_pairs_keep_counting() {
        let usage = Usage::with_capacity(2);
        usage.record_at(DAY_1, "a", UsageKind::Hit);
        usage.record_at(DAY_1, "b", UsageKind::Hit);
        usage.record_at(DAY_1, "c", UsageKind::Hit);
        usage.record_at(DAY_1 + DAY_MS, "a", UsageKind::Hit);
        usage.record_at(DAY_1, "a", UsageKind::Miss);
        let pending = usage.pending.lock().unwrap();
        assert_eq!(pending.pairs, 2);
        assert_eq!(pending.dropped, 2);
        assert_eq!(pending.days.len(), 1, "no empty day is left behind");
        let day = &pending.days[&(DAY_1 / DAY_MS)];
        assert_eq!(day["a"].hits, 1);
        assert_eq!(day["a"].misses, 1);
        assert_eq!(day["b"].hits, 1);
        assert!(!day.contains_key("c"));
    }

    #[test]
    fn an_unconfirmed_batch_is_resent_unchanged_before_anything_new() {
        let mut pending = Pending::default();
        pending.add(10, 1, "a", UsageKind::Hit);
        let (first, resent) = pending.next_batch("w").unwrap();
        assert!(!resent);
        assert_eq!(first.seq, 1);
        assert_eq!(
            first.days["1970-01-02"],
            [("a".to_owned(), UsageKind::Hit, 1)]
        );
        pending.unconfirmed = Some(first.clone());
        pending.add(10, 1, "a", UsageKind::Hit);
        assert_eq!(pending.next_batch("w"), Some((first, true)));
        let (second, resent) = pending.next_batch("w").unwrap();
        assert!(!resent);
        assert_eq!(second.seq, 2);
        assert_eq!(pending.next_batch("w"), None);
    }

    #[tokio::test]
    async fn counts_survive_an_outage_and_are_written_exactly_once() {
        let mut redis = RedisServer::start();
        let prefix = kiln_testkit::unique_prefix();
        let mut settings = StoreSettings::new(redis.url(), &prefix);
        settings.command_timeout = Duration::from_millis(300);
        let store = Store::connect(settings).await.unwrap();
        let usage = Usage::default();
        usage.record_at(DAY_1, "d1", UsageKind::Hit);
        usage.record_at(DAY_1, "d1", UsageKind::Hit);
        usage.record_at(DAY_1 + DAY_MS, "d1", UsageKind::Bypass);

        redis.stop();
        assert!(usage.flush(&store).await.is_err());
        assert!(usage.flush(&store).await.is_err());
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
        while usage.flush(&store).await.is_err() {
            assert!(Instant::now() < deadline, "redis never came back");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(usage.waiting(), (0, false));
        // A replay may go out on another pooled connection: give a straggler a moment to land (an
        // absence cannot be polled for).
        tokio::time::sleep(Duration::from_millis(500)).await;
        let first = store.usage_for_day("2025-01-01").await.unwrap();
        assert_eq!(first["d1"].hits, 3);
        let second = store.usage_for_day("2025-01-02").await.unwrap();
        assert_eq!(second["d1"].bypasses, 1);
    }
}
