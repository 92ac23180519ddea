//! Usage counters: how many bot requests each domain served from the cache, waited for, or sent to
//! the origin, and how many renders it cost, per UTC day.
//!
//! One hash per day, `{prefix}usage:{YYYY-MM-DD}`, with one field per domain and kind,
//! `{domain_id}:{kind}` (`hit`, `miss`, `bypass`, `passthrough`, `render`). Gateways and workers add
//! their counts in batches; every batch renews the day's lifetime of [`USAGE_RETENTION_SECS`], so a
//! day is kept for 40 days after its last count.
//!
//! A command that timed out may still be applied: the client replays what it had buffered once it
//! reconnects. A writer that retries failed batches therefore numbers them ([`UsageBatch`]): Redis
//! remembers the last number applied per writer, in `{prefix}usage:applied:{writer}`, and ignores a
//! batch it has already seen, so a batch counts once however often it is sent.

use crate::{Result, Store};
use fred::prelude::*;
use kiln_core::UnixMillis;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// How long a day's counters are kept after they last changed: a month of history and some margin.
pub const USAGE_RETENTION_SECS: i64 = 40 * 24 * 60 * 60;

/// How long Redis remembers a writer's last applied batch after it last wrote: far longer than a
/// replayed command can lag behind, and short enough that writers that are gone leave nothing.
const APPLIED_MARKER_SECS: i64 = 24 * 60 * 60;

/// Applies a numbered batch unless its writer's marker says it (or a later one) was applied.
/// KEYS: the writer's marker, then one key per day. ARGV: the batch number, the days' lifetime, the
/// marker's lifetime, then per day the number of fields followed by (field, increment) pairs.
const LUA_ADD_BATCH: &str = r#"
local seq = tonumber(ARGV[1])
if seq <= tonumber(redis.call('GET', KEYS[1]) or '0') then
  return 0
end
local at = 4
for k = 2, #KEYS do
  local fields = tonumber(ARGV[at])
  at = at + 1
  for _ = 1, fields do
    redis.call('HINCRBY', KEYS[k], ARGV[at], ARGV[at + 1])
    at = at + 2
  end
  redis.call('EXPIRE', KEYS[k], ARGV[2])
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
return 1
"#;

/// What a counter counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageKind {
    /// A bot was served a cached render (`X-Kiln-Cache: HIT`).
    Hit,
    /// A bot waited for a fresh render and got it (`X-Kiln-Cache: MISS`).
    Miss,
    /// A bot asked for a page that renders but got the origin's own (`X-Kiln-Cache: BYPASS`): the
    /// render failed or ran out of budget, or the cache was unreachable.
    Bypass,
    /// A bot asked for a page the domain's path rules (`include_paths`, `exclude_paths`) keep from
    /// rendering, and was proxied to the origin like a person. Bot requests for assets, non-GET
    /// requests and requests to unverified domains are not counted at all.
    Passthrough,
    /// A render a worker performed (counted by the worker, not the gateway).
    Render,
}

impl UsageKind {
    pub const ALL: [UsageKind; 5] = [
        UsageKind::Hit,
        UsageKind::Miss,
        UsageKind::Bypass,
        UsageKind::Passthrough,
        UsageKind::Render,
    ];

    /// The name used in the counter's field.
    pub fn as_str(self) -> &'static str {
        match self {
            UsageKind::Hit => "hit",
            UsageKind::Miss => "miss",
            UsageKind::Bypass => "bypass",
            UsageKind::Passthrough => "passthrough",
            UsageKind::Render => "render",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

impl std::fmt::Display for UsageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One domain's counters for one day.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageCounts {
    pub hits: u64,
    pub misses: u64,
    pub bypasses: u64,
    pub passthroughs: u64,
    pub renders: u64,
}

impl UsageCounts {
    pub fn get(&self, kind: UsageKind) -> u64 {
        match kind {
            UsageKind::Hit => self.hits,
            UsageKind::Miss => self.misses,
            UsageKind::Bypass => self.bypasses,
            UsageKind::Passthrough => self.passthroughs,
            UsageKind::Render => self.renders,
        }
    }

    fn slot(&mut self, kind: UsageKind) -> &mut u64 {
        match kind {
            UsageKind::Hit => &mut self.hits,
            UsageKind::Miss => &mut self.misses,
            UsageKind::Bypass => &mut self.bypasses,
            UsageKind::Passthrough => &mut self.passthroughs,
            UsageKind::Render => &mut self.renders,
        }
    }

    pub fn add(&mut self, kind: UsageKind, count: u64) {
        let slot = self.slot(kind);
        *slot = slot.saturating_add(count);
    }
}

/// Counts from one writer, numbered so that they are applied at most once however often they are
/// sent. A writer sends batch `n + 1` only once batch `n` is known to be applied (an `Ok` from
/// [`Store::add_usage_batch`]); until then it resends batch `n` exactly as it was.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UsageBatch {
    /// A name no other writer uses, ever: a gateway picks a random one at start.
    pub writer: String,
    /// The batch's number, from 1 upwards.
    pub seq: u64,
    /// Counts by day (`YYYY-MM-DD`): domain id, kind, how many.
    pub days: BTreeMap<String, Vec<(String, UsageKind, u64)>>,
}

/// The UTC day `at` falls on, as `YYYY-MM-DD`: the day part of a usage key.
pub fn usage_day(at: UnixMillis) -> String {
    let seconds = i64::try_from(at / 1000).unwrap_or(i64::MAX);
    let date = time::OffsetDateTime::from_unix_timestamp(seconds)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .date();
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

impl Store {
    fn usage_key(&self, day: &str) -> String {
        self.key(&format!("usage:{day}"))
    }

    /// Adds `counts` (domain id, kind, how many) to the counters of `day` (`YYYY-MM-DD`, see
    /// [`usage_day`]) in one transaction: one round trip, and either every count lands or none does.
    /// An error does not prove nothing landed (a command that timed out may be applied later), so a
    /// caller that retries should send a [`UsageBatch`] instead.
    pub async fn add_usage(&self, day: &str, counts: &[(String, UsageKind, u64)]) -> Result<()> {
        let counts: Vec<_> = counts.iter().filter(|(_, _, n)| *n > 0).collect();
        if counts.is_empty() {
            return Ok(());
        }
        let key = self.usage_key(day);
        let tx = self.pool.next().multi();
        for (domain_id, kind, count) in counts {
            let increment = i64::try_from(*count).unwrap_or(i64::MAX);
            let _: () = tx
                .hincrby(&key, format!("{domain_id}:{kind}"), increment)
                .await?;
        }
        let _: () = tx.expire(&key, USAGE_RETENTION_SECS, None).await?;
        let _: () = tx.exec(true).await?;
        Ok(())
    }

    /// Applies `batch` in one round trip, atomically, unless it or a later batch of its writer was
    /// applied already. Returns whether this call applied it; either way the batch is now counted
    /// once.
    pub async fn add_usage_batch(&self, batch: &UsageBatch) -> Result<bool> {
        let mut keys = vec![self.key(&format!("usage:applied:{}", batch.writer))];
        let mut args: Vec<Value> = vec![
            i64::try_from(batch.seq).unwrap_or(i64::MAX).into(),
            USAGE_RETENTION_SECS.into(),
            APPLIED_MARKER_SECS.into(),
        ];
        for (day, counts) in &batch.days {
            let counts: Vec<_> = counts.iter().filter(|(_, _, n)| *n > 0).collect();
            if counts.is_empty() {
                continue;
            }
            keys.push(self.usage_key(day));
            args.push((counts.len() as i64).into());
            for (domain_id, kind, count) in counts {
                args.push(format!("{domain_id}:{kind}").into());
                args.push(i64::try_from(*count).unwrap_or(i64::MAX).into());
            }
        }
        let applied: i64 = self.pool.eval(LUA_ADD_BATCH, keys, args).await?;
        Ok(applied == 1)
    }

    /// Every domain's counters for `day` (`YYYY-MM-DD`), by domain id. Fields this version does not
    /// know (a kind added later) are skipped.
    pub async fn usage_for_day(&self, day: &str) -> Result<BTreeMap<String, UsageCounts>> {
        let fields: HashMap<String, i64> = self.pool.hgetall(self.usage_key(day)).await?;
        let mut usage: BTreeMap<String, UsageCounts> = BTreeMap::new();
        for (field, count) in fields {
            let Some((domain_id, kind)) = field.rsplit_once(':') else {
                continue;
            };
            let Some(kind) = UsageKind::parse(kind) else {
                continue;
            };
            usage
                .entry(domain_id.to_owned())
                .or_default()
                .add(kind, u64::try_from(count).unwrap_or(0));
        }
        Ok(usage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_utc_calendar_days() {
        #[track_caller]
        fn check(at: UnixMillis, expected: &str) {
            assert_eq!(usage_day(at), expected, "{at}");
        }
        check(0, "1970-01-01");
        check(86_399_999, "1970-01-01");
        check(86_400_000, "1970-01-02");
        check(951_782_400_000, "2000-02-29");
        check(1_709_251_199_999, "2024-02-29");
        check(1_709_251_200_000, "2024-03-01");
        check(1_735_689_599_999, "2024-12-31");
        check(1_735_689_600_000, "2025-01-01");
        check(253_402_300_799_000, "9999-12-31");
    }

    #[test]
    fn kinds_have_stable_names() {
        for kind in UsageKind::ALL {
            assert_eq!(UsageKind::parse(kind.as_str()), Some(kind));
            assert_eq!(
                serde_json::to_string(&kind).unwrap(),
                format!("\"{}\"", kind.as_str())
            );
        }
        assert_eq!(UsageKind::parse("hits"), None);
        let names: Vec<_> = UsageKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names, ["hit", "miss", "bypass", "passthrough", "render"]);
    }

    #[test]
    fn counts_add_up_per_kind() {
        let mut counts = UsageCounts::default();
        counts.add(UsageKind::Hit, 2);
        counts.add(UsageKind::Hit, 3);
        counts.add(UsageKind::Render, 1);
        counts.add(UsageKind::Miss, u64::MAX);
        counts.add(UsageKind::Miss, 1);
        assert_eq!(counts.get(UsageKind::Hit), 5);
        assert_eq!(counts.get(UsageKind::Render), 1);
        assert_eq!(counts.get(UsageKind::Miss), u64::MAX);
        assert_eq!(counts.get(UsageKind::Bypass), 0);
    }
}
