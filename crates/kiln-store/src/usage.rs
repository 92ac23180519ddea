//! Usage counters: how many bot requests each domain served from the cache, waited for, or sent to
//! the origin, and how many renders it cost, per UTC day and per UTC hour.
//!
//! One hash per day, `{prefix}{usage}:{YYYY-MM-DD}`, with one field per domain and kind for the day's
//! total, `{domain_id}:{kind}` (`hit`, `miss`, `bypass`, `passthrough`, `render`), and one per domain,
//! kind and hour of the day for the same counts by hour, `{domain_id}:{kind}:{HH}` (`00` to `23`).
//! Every count lands in both in the same atomic write, so the hours of a day add up to its total
//! (except for counts written before hour fields existed, which only have a total). Gateways and
//! workers add their counts in batches; every batch renews the day's lifetime of
//! [`USAGE_RETENTION_SECS`], so a day is kept for 40 days after its last count.
//!
//! A command that timed out may still be applied: the client replays what it had buffered once it
//! reconnects. A writer that retries failed batches therefore numbers them ([`UsageBatch`]): Redis
//! remembers the last number applied per writer, in `{prefix}{usage}:applied:{writer}`, and ignores a
//! batch it has already seen, so a batch counts once however often it is sent.
//!
//! A batch's script touches its writer's marker and every day it counts for, so all usage keys share
//! the hash tag `{usage}`: one hash slot of a Redis Cluster. That is one slot for a few writes a
//! second from each gateway, far from what one node can take.

use crate::Result;
use fred::prelude::*;
use kiln_core::UnixMillis;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// How long a day's counters are kept after they last changed: a month of history and some margin.
pub const USAGE_RETENTION_SECS: i64 = 40 * 24 * 60 * 60;

/// The hash tag of every usage key: a batch's script touches several of them at once.
const USAGE_TAG: &str = "{usage}";

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
/// [`Usage::add_batch`]); until then it resends batch `n` exactly as it was.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UsageBatch {
    /// A name no other writer uses, ever: a gateway picks a random one at start.
    pub writer: String,
    /// The batch's number, from 1 upwards.
    pub seq: u64,
    /// Counts by UTC hour: domain id, kind, how many. Each count is added to its day's total and to
    /// its hour.
    pub hours: BTreeMap<UsageHour, Vec<(String, UsageKind, u64)>>,
}

/// An hour of a UTC day: where a count lands. Ordered by time.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UsageHour {
    day: String,
    hour: u8,
}

impl UsageHour {
    /// The hour `at` falls in.
    pub fn at(at: UnixMillis) -> Self {
        let time = utc(at);
        UsageHour {
            day: day_string(time.date()),
            hour: time.hour(),
        }
    }

    /// Hour `hour` (0 to 23) of `day` (`YYYY-MM-DD`, as [`usage_day`] makes it); `None` for an hour
    /// past 23.
    pub fn new(day: &str, hour: u8) -> Option<Self> {
        (usize::from(hour) < HOURS_PER_DAY).then(|| UsageHour {
            day: day.to_owned(),
            hour,
        })
    }

    /// The day, `YYYY-MM-DD`: the day part of the usage key.
    pub fn day(&self) -> &str {
        &self.day
    }

    /// The hour of the day, 0 to 23.
    pub fn hour(&self) -> u8 {
        self.hour
    }
}

impl std::fmt::Display for UsageHour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}T{:02}", self.day, self.hour)
    }
}

const HOURS_PER_DAY: usize = 24;

/// One domain's counters for each hour of a day, hour 0 first.
pub type UsageHours = [UsageCounts; HOURS_PER_DAY];

/// One UTC day's counters, by domain id: the day's totals and the same counts hour by hour.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DayUsage {
    pub totals: BTreeMap<String, UsageCounts>,
    pub hours: BTreeMap<String, UsageHours>,
}

fn utc(at: UnixMillis) -> time::OffsetDateTime {
    let seconds = i64::try_from(at / 1000).unwrap_or(i64::MAX);
    time::OffsetDateTime::from_unix_timestamp(seconds).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

fn day_string(date: time::Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// The UTC day `at` falls on, as `YYYY-MM-DD`: the day part of a usage key.
pub fn usage_day(at: UnixMillis) -> String {
    day_string(utc(at).date())
}

/// The fields one count goes to: the day's total and its hour.
fn count_fields(hour: u8, domain_id: &str, kind: UsageKind) -> [String; 2] {
    [
        format!("{domain_id}:{kind}"),
        format!("{domain_id}:{kind}:{hour:02}"),
    ]
}

/// What a field of a day's hash counts: the domain, the kind, and the hour for an hour field. `None`
/// for fields this version does not know (a kind added later, or written by hand).
fn parse_field(field: &str) -> Option<(&str, UsageKind, Option<usize>)> {
    let (rest, last) = field.rsplit_once(':')?;
    if let Some(kind) = UsageKind::parse(last) {
        return Some((rest, kind, None));
    }
    // Exactly two digits: a domain id ending in a kind is never read as an hour field.
    if last.len() != 2 || !last.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hour: usize = last.parse().ok()?;
    let (domain_id, kind) = rest.rsplit_once(':')?;
    let kind = UsageKind::parse(kind)?;
    (hour < HOURS_PER_DAY).then_some((domain_id, kind, Some(hour)))
}

crate::view! {
    /// The usage counters, per domain, day and hour: the gateways add to them, the control plane
    /// reads them (and adds what the dashboard itself serves).
    Usage
}

impl Usage {
    fn usage_key(&self, day: &str) -> String {
        self.conn.key(&format!("{USAGE_TAG}:{day}"))
    }

    /// Adds `counts` (domain id, kind, how many) to the counters of `hour` (its day's totals and the
    /// hour's) in one transaction: one round trip, and either every count lands or none does. An
    /// error does not prove nothing landed (a command that timed out may be applied later), so a
    /// caller that retries should send a [`UsageBatch`] instead.
    pub async fn add(&self, hour: &UsageHour, counts: &[(String, UsageKind, u64)]) -> Result<()> {
        let counts: Vec<_> = counts.iter().filter(|(_, _, n)| *n > 0).collect();
        if counts.is_empty() {
            return Ok(());
        }
        let key = self.usage_key(&hour.day);
        let tx = self.conn.pool.next().multi();
        for (domain_id, kind, count) in counts {
            let increment = i64::try_from(*count).unwrap_or(i64::MAX);
            for field in count_fields(hour.hour, domain_id, *kind) {
                let _: () = tx.hincrby(&key, field, increment).await?;
            }
        }
        let _: () = tx.expire(&key, USAGE_RETENTION_SECS, None).await?;
        let _: () = tx.exec(true).await?;
        Ok(())
    }

    /// Applies `batch` in one round trip, atomically, unless it or a later batch of its writer was
    /// applied already. Returns whether this call applied it; either way the batch is now counted
    /// once.
    pub async fn add_batch(&self, batch: &UsageBatch) -> Result<bool> {
        let mut keys = vec![
            self.conn
                .key(&format!("{USAGE_TAG}:applied:{}", batch.writer)),
        ];
        let mut args: Vec<Value> = vec![
            i64::try_from(batch.seq).unwrap_or(i64::MAX).into(),
            USAGE_RETENTION_SECS.into(),
            APPLIED_MARKER_SECS.into(),
        ];
        // One key per day, however many of its hours the batch holds: the hours of a day add to
        // one total per field.
        let mut days: BTreeMap<&str, BTreeMap<String, i64>> = BTreeMap::new();
        for (hour, counts) in &batch.hours {
            for (domain_id, kind, count) in counts.iter().filter(|(_, _, n)| *n > 0) {
                let increment = i64::try_from(*count).unwrap_or(i64::MAX);
                let fields = days.entry(&hour.day).or_default();
                for field in count_fields(hour.hour, domain_id, *kind) {
                    let total = fields.entry(field).or_default();
                    *total = total.saturating_add(increment);
                }
            }
        }
        for (day, fields) in days {
            keys.push(self.usage_key(day));
            args.push((fields.len() as i64).into());
            for (field, increment) in fields {
                args.push(field.into());
                args.push(increment.into());
            }
        }
        let applied: i64 = self.conn.pool.eval(LUA_ADD_BATCH, keys, args).await?;
        Ok(applied == 1)
    }

    /// Every domain's totals for `day` (`YYYY-MM-DD`), by domain id. Fields this version does not
    /// know (a kind added later) are skipped.
    pub async fn for_day(&self, day: &str) -> Result<BTreeMap<String, UsageCounts>> {
        Ok(self.day(day).await?.totals)
    }

    /// Every domain's counts for each hour of `day` (`YYYY-MM-DD`), by domain id; domains with no
    /// hour fields (only counts from before hours were counted) are left out.
    pub async fn hours_for_day(&self, day: &str) -> Result<BTreeMap<String, UsageHours>> {
        Ok(self.day(day).await?.hours)
    }

    /// Both the totals and the hours of `day` (`YYYY-MM-DD`), from one read of the day's hash.
    pub async fn day(&self, day: &str) -> Result<DayUsage> {
        let fields: HashMap<String, i64> = self.conn.pool.hgetall(self.usage_key(day)).await?;
        let mut usage = DayUsage::default();
        for (field, count) in &fields {
            let Some((domain_id, kind, hour)) = parse_field(field) else {
                continue;
            };
            let count = u64::try_from(*count).unwrap_or(0);
            match hour {
                None => usage.totals.entry(domain_id.to_owned()).or_default(),
                Some(hour) => &mut usage
                    .hours
                    .entry(domain_id.to_owned())
                    .or_insert_with(|| [UsageCounts::default(); HOURS_PER_DAY])[hour],
            }
            .add(kind, count);
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
    fn hours_are_utc_hours_of_the_usage_day() {
        #[track_caller]
        fn check(at: UnixMillis, expected: &str) {
            let hour = UsageHour::at(at);
            assert_eq!(hour.to_string(), expected, "{at}");
            assert_eq!(hour.day(), usage_day(at), "{at}");
        }
        check(0, "1970-01-01T00");
        check(3_599_999, "1970-01-01T00");
        check(3_600_000, "1970-01-01T01");
        check(86_399_999, "1970-01-01T23");
        check(86_400_000, "1970-01-02T00");
        check(1_709_251_199_999, "2024-02-29T23");
        check(1_735_732_800_000, "2025-01-01T12");
        assert_eq!(UsageHour::new("2025-01-01", 23).unwrap().hour(), 23);
        assert_eq!(UsageHour::new("2025-01-01", 24), None);
        assert!(UsageHour::new("2025-01-01", 23) < UsageHour::new("2025-01-02", 0));
        assert!(UsageHour::new("2025-01-01", 2) < UsageHour::new("2025-01-01", 10));
    }

    #[test]
    fn fields_name_the_domain_the_kind_and_maybe_the_hour() {
        #[track_caller]
        fn check(field: &str, expected: Option<(&str, UsageKind, Option<usize>)>) {
            assert_eq!(parse_field(field), expected, "{field}");
        }
        check("d1:hit", Some(("d1", UsageKind::Hit, None)));
        check("d1:hit:00", Some(("d1", UsageKind::Hit, Some(0))));
        check("d1:render:23", Some(("d1", UsageKind::Render, Some(23))));
        check("d:2:miss", Some(("d:2", UsageKind::Miss, None)));
        check("d:2:miss:07", Some(("d:2", UsageKind::Miss, Some(7))));
        // A domain id that looks like a total field stays a domain id.
        check("d1:hit:bypass", Some(("d1:hit", UsageKind::Bypass, None)));
        check("d1:hit:24", None);
        check("d1:hit:7", None);
        check("d1:hit:007", None);
        check("d1:teleport:07", None);
        check("d1:teleport", None);
        check("07", None);
        check(":07", None);
        check("junk", None);
        for kind in UsageKind::ALL {
            let [total, hour] = count_fields(5, "d:1", kind);
            assert_eq!(parse_field(&total), Some(("d:1", kind, None)));
            assert_eq!(parse_field(&hour), Some(("d:1", kind, Some(5))));
        }
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
