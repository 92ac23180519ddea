//! Usage counting off the request path: bot responses are counted in memory and added to Redis in
//! one batch a second (and once more at shutdown), so counting never costs a request a round trip.
//!
//! A batch that cannot be written stays in memory for the next try. What is kept is bounded by the
//! number of (day, domain) pairs, not by traffic: during an outage every known pair keeps counting,
//! and only counts for pairs beyond [`MAX_PENDING`] are dropped (and logged).

use kiln_store::{Store, UsageCounts, UsageKind, usage_day};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// The most (day, domain) pairs held while Redis cannot take them: about 15 MB at worst, and far
/// more domains than one gateway serves in the few days an outage could last.
pub const MAX_PENDING: usize = 100_000;

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

pub struct Usage {
    pending: Mutex<Pending>,
    capacity: usize,
}

#[derive(Default)]
struct Pending {
    /// Counts by day (days since the Unix epoch, UTC) and domain id.
    days: BTreeMap<u64, HashMap<String, UsageCounts>>,
    /// How many (day, domain) pairs `days` holds.
    pairs: usize,
    /// Counts dropped because `days` was full, since the last flush reported them.
    dropped: u64,
}

impl Pending {
    fn add(&mut self, capacity: usize, day: u64, domain_id: &str, counts: &UsageCounts) {
        let domains = self.days.entry(day).or_default();
        let slot = match domains.get_mut(domain_id) {
            Some(slot) => slot,
            None if self.pairs < capacity => {
                self.pairs += 1;
                domains.entry(domain_id.to_owned()).or_default()
            }
            None => {
                self.dropped = UsageKind::ALL.into_iter().fold(self.dropped, |sum, kind| {
                    sum.saturating_add(counts.get(kind))
                });
                if domains.is_empty() {
                    self.days.remove(&day);
                }
                return;
            }
        };
        for kind in UsageKind::ALL {
            slot.add(kind, counts.get(kind));
        }
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
            pending: Mutex::new(Pending::default()),
            capacity,
        }
    }

    /// Counts one bot response for `domain_id`, today.
    pub fn record(&self, domain_id: &str, kind: UsageKind) {
        self.record_at(unix_millis(), domain_id, kind);
    }

    fn record_at(&self, at: u64, domain_id: &str, kind: UsageKind) {
        let mut one = UsageCounts::default();
        one.add(kind, 1);
        self.pending.lock().expect("usage lock poisoned").add(
            self.capacity,
            at / DAY_MS,
            domain_id,
            &one,
        );
    }

    /// Writes everything counted so far, one round trip per day with counts. Whatever could not be
    /// written is kept for the next flush, and the error returned.
    pub async fn flush(&self, store: &Store) -> kiln_store::Result<()> {
        let (days, dropped) = {
            let mut pending = self.pending.lock().expect("usage lock poisoned");
            let dropped = std::mem::take(&mut pending.dropped);
            pending.pairs = 0;
            (std::mem::take(&mut pending.days), dropped)
        };
        if dropped > 0 {
            tracing::warn!(
                usage.dropped = dropped,
                "usage counts were dropped while Redis could not take them"
            );
        }
        let mut days = days.into_iter();
        while let Some((day, domains)) = days.next() {
            let batch: Vec<(String, UsageKind, u64)> = domains
                .iter()
                .flat_map(|(domain_id, counts)| {
                    UsageKind::ALL
                        .into_iter()
                        .map(|kind| (domain_id.clone(), kind, counts.get(kind)))
                })
                .filter(|(_, _, count)| *count > 0)
                .collect();
            if let Err(error) = store.add_usage(&usage_day(day * DAY_MS), &batch).await {
                // Put this day and the ones not tried back, merged with what was counted meanwhile.
                let mut pending = self.pending.lock().expect("usage lock poisoned");
                for (day, domains) in std::iter::once((day, domains)).chain(days) {
                    for (domain_id, counts) in &domains {
                        pending.add(self.capacity, day, domain_id, counts);
                    }
                }
                return Err(error);
            }
        }
        Ok(())
    }

    /// How many (day, domain) pairs are waiting to be written.
    #[cfg(test)]
    fn pending_pairs(&self) -> usize {
        self.pending.lock().expect("usage lock poisoned").pairs
    }
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_store::StoreSettings;
    use kiln_testkit::RedisServer;

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

    #[tokio::test]
    async fn a_failed_flush_keeps_the_counts_for_the_next() {
        let mut redis = RedisServer::start();
        let prefix = kiln_testkit::unique_prefix();
        let mut settings = StoreSettings::new(redis.url(), &prefix);
        settings.command_timeout = std::time::Duration::from_millis(300);
        let store = Store::connect(settings).await.unwrap();
        let usage = Usage::default();
        usage.record_at(DAY_1, "d1", UsageKind::Hit);
        usage.record_at(DAY_1, "d1", UsageKind::Hit);
        usage.record_at(DAY_1 + DAY_MS, "d1", UsageKind::Bypass);

        redis.stop();
        assert!(usage.flush(&store).await.is_err());
        assert_eq!(usage.pending_pairs(), 2, "both days are kept");
        usage.record_at(DAY_1, "d1", UsageKind::Hit);

        redis.restart();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while usage.flush(&store).await.is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis never came back"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(usage.pending_pairs(), 0);
        let first = store.usage_for_day("2025-01-01").await.unwrap();
        assert_eq!(first["d1"].hits, 3);
        let second = store.usage_for_day("2025-01-02").await.unwrap();
        assert_eq!(second["d1"].bypasses, 1);
    }
}
