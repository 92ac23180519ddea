//! Usage counters: how many bot requests each domain served from the cache, waited for, or sent to
//! the origin, and how many renders it cost, per UTC day and per UTC hour.
//!
//! **Layout.** A day's counters are split over [`USAGE_SHARDS`] hashes by the domain id,
//! `{prefix}{usage:<YYYY-MM-DD>:<NN>}` (`NN` = `00` to `63`: a stable hash of the domain id, modulo
//! [`USAGE_SHARDS`]), each holding one field per domain: its id, whose value is the domain's counts
//! for every kind and every hour of the day, packed: one little-endian `u32` per (kind, hour), kind
//! by kind in the order of [`UsageKind::ALL`] and hour 0 to 23 within a kind (so 5 × 24 × 4 = 480
//! bytes). A kind added later goes at the end, making the values longer: a reader skips what it
//! does not know, and a writer keeps it. A day's total is the sum of its hours, so the hours always
//! add up to the day. An hour's count of one kind stops at `u32::MAX` (4.29 billion: 1.2 million
//! requests a second on one domain for the whole hour).
//!
//! Why this layout: every key is a hash tag of its own, so a day spreads over 64 hash slots of a
//! Redis Cluster (a new set each day), and one key stays small: at 100,000 domains a day is some 61
//! MB (about 610 bytes a domain, measured; 13.5 KB in the layout it replaces), so a shard is about
//! 1 MB, which a cluster moves between nodes (`MIGRATE`, one key at a time) in milliseconds, and
//! which stays around 10 MB at a million domains. More shards would cost every batch and every read
//! more commands for little gain in balance; fewer would make keys that block a node while they
//! move.
//!
//! **Writing.** Gateways and workers add their counts in batches: a batch's counts are grouped by
//! (day, shard) and each group is one script, atomic on its own; the groups go out concurrently.
//! Every write renews its shard's lifetime of [`USAGE_RETENTION_SECS`].
//!
//! A command that timed out may still be applied: the client replays what it had buffered once it
//! reconnects. A writer that retries failed batches therefore numbers them ([`UsageBatch`]): each
//! shard remembers the last number it applied per writer, in
//! `{prefix}{usage:<day>:<NN>}:applied:<writer>` (its own hash slot, so the script touches one slot
//! only), and ignores a batch it has already seen. A batch that landed in some shards and not in
//! others (one command failed) is resent whole, and each shard applies only what it had not, so a
//! batch counts once in every shard however often it is sent.
//!
//! **Reading.** [`Usage::day`] reads a shard at a time, 256 domains a command (`HSCAN`), a few
//! shards at once: no command returns more than a page (about 120 KB), so Redis is never held for
//! long, whatever the number of domains.
//!
//! **Before this layout** a day was one hash, `{prefix}{usage}:<YYYY-MM-DD>`, with a field per
//! domain, kind and hour (`<domain_id>:<kind>:<HH>`) and per domain and kind for the day
//! (`<domain_id>:<kind>`), all days in one slot. [`Usage::day`] still reads that hash (one more
//! `HSCAN`, answered at once when it is gone) and adds it to the new one, so the counts of gateways
//! not yet upgraded are not lost while a deployment rolls over; nothing writes it any more, and it
//! expires on its own.

use crate::Result;
use fred::prelude::*;
use fred::types::scan::Scanner;
use futures::StreamExt;
use kiln_core::UnixMillis;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// How long a day's counters are kept after they last changed. The dashboard copies them into
/// Postgres every few seconds (today's and yesterday's, as they grow), so Redis only needs the days
/// not yet copied for good: yesterday's until the end of today, and then a margin for a dashboard
/// that was down, which four days make a long weekend. Counts of a day whose shards expired before
/// the dashboard copied them are lost (what it had copied is kept).
pub const USAGE_RETENTION_SECS: i64 = 4 * 24 * 60 * 60;

/// How many hashes a day's counters are split over (see the module's documentation for why 64).
/// Changing it moves domains between shards, which only costs a mixed day some room: a reader adds
/// up a domain's counts from every shard.
pub const USAGE_SHARDS: u16 = 64;

/// How many domains one command of a day's read asks for (`HSCAN … COUNT`): about 120 KB, well
/// under a millisecond of Redis's time.
const READ_PAGE: u32 = 256;

/// How many shards are written or read at once.
const SHARDS_IN_FLIGHT: usize = 8;

/// How long a shard remembers a writer's last applied batch after it last wrote: far longer than a
/// replayed command can lag behind, and short enough that writers that are gone leave nothing.
const APPLIED_MARKER_SECS: i64 = 24 * 60 * 60;

/// Bytes of one count in a packed value.
const COUNT_BYTES: usize = 4;

/// Adds to the packed counts of some domains in one shard, unless the writer's marker says the
/// batch (or a later one) was applied there.
/// KEYS: the shard's hash, then, for a numbered batch, the writer's marker in the same slot.
/// ARGV: the batch number (ignored without a marker), the shard's lifetime, the marker's lifetime,
/// the counts a value holds (kinds × 24), then per domain its id, the number of its counts and that
/// many (index, increment) pairs, an index counting from 0.
const LUA_ADD: &str = r#"
if #KEYS > 1 and tonumber(ARGV[1]) <= tonumber(redis.call('GET', KEYS[2]) or '0') then
  return 0
end
local width = tonumber(ARGV[4]) * 4
local function bump(value, index, increment)
  local at = index * 4
  local b1, b2, b3, b4 = string.byte(value, at + 1, at + 4)
  local n = b1 + b2 * 256 + b3 * 65536 + b4 * 16777216 + increment
  if n > 4294967295 then n = 4294967295 end
  local c1 = n % 256
  n = (n - c1) / 256
  local c2 = n % 256
  n = (n - c2) / 256
  local c3 = n % 256
  local c4 = (n - c3) / 256
  return string.sub(value, 1, at) .. string.char(c1, c2, c3, c4) .. string.sub(value, at + 5)
end
local at = 5
while at <= #ARGV do
  local domain = ARGV[at]
  local counts = tonumber(ARGV[at + 1])
  at = at + 2
  local value = redis.call('HGET', KEYS[1], domain) or ''
  if #value < width then
    value = value .. string.rep('\0', width - #value)
  end
  for _ = 1, counts do
    value = bump(value, tonumber(ARGV[at]), tonumber(ARGV[at + 1]))
    at = at + 2
  end
  redis.call('HSET', KEYS[1], domain, value)
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
if #KEYS > 1 then
  redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[3])
end
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

    /// Its place in [`UsageKind::ALL`], and in a packed value: never changes, new kinds go last.
    fn index(self) -> usize {
        match self {
            UsageKind::Hit => 0,
            UsageKind::Miss => 1,
            UsageKind::Bypass => 2,
            UsageKind::Passthrough => 3,
            UsageKind::Render => 4,
        }
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
    /// Counts by UTC hour: domain id, kind, how many.
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

    /// The day, `YYYY-MM-DD`: the day part of the usage keys.
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

/// One UTC day's counters, by domain id: the day's totals and the same counts hour by hour (a
/// domain's hours add up to its total, except for counts of the old layout written before hours
/// were counted, which only have a total).
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

/// The shard of `domain_id`'s counters: FNV-1a (32 bits) of its bytes, mixed by MurmurHash3's
/// finalizer (FNV's low bits alone spread ids that differ in their last characters unevenly),
/// modulo [`USAGE_SHARDS`]. Stable across versions and machines, unlike Rust's own hasher.
fn shard_of(domain_id: &str) -> u16 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in domain_id.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash ^= hash >> 16;
    hash = hash.wrapping_mul(0x85eb_ca6b);
    hash ^= hash >> 13;
    hash = hash.wrapping_mul(0xc2b2_ae35);
    hash ^= hash >> 16;
    // The remainder is below USAGE_SHARDS, a u16.
    (hash % u32::from(USAGE_SHARDS)) as u16
}

/// The hash tag of one shard of a day: its hash and its writers' markers share it.
fn shard_tag(day: &str, shard: u16) -> String {
    format!("{{usage:{day}:{shard:02}}}")
}

/// The counts a packed value of this version holds.
const COUNTS_PER_VALUE: usize = UsageKind::ALL.len() * HOURS_PER_DAY;

/// Where a count of `kind` in `hour` lies in a packed value, in counts from its start.
fn count_index(kind: UsageKind, hour: u8) -> usize {
    kind.index() * HOURS_PER_DAY + usize::from(hour)
}

/// A packed value read back: the domain's counts by hour. Kinds this version does not know (past
/// its five) and a ragged end are skipped.
fn unpack(value: &[u8]) -> UsageHours {
    let mut hours = [UsageCounts::default(); HOURS_PER_DAY];
    for (index, count) in value.chunks_exact(COUNT_BYTES).enumerate() {
        let Some(kind) = UsageKind::ALL.get(index / HOURS_PER_DAY) else {
            break;
        };
        let count = u32::from_le_bytes([count[0], count[1], count[2], count[3]]);
        hours[index % HOURS_PER_DAY].add(*kind, u64::from(count));
    }
    hours
}

/// What a field of a day's hash in the old layout counts: the domain, the kind, and the hour for an
/// hour field. `None` for fields this version does not know (a kind added later, or written by
/// hand).
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

/// Increments for one shard: by domain id, by index in its packed value.
type ShardCounts<'a> = BTreeMap<&'a str, BTreeMap<usize, i64>>;

impl DayUsage {
    /// Adds a domain's packed value.
    fn add_packed(&mut self, domain_id: &str, value: &[u8]) {
        let unpacked = unpack(value);
        let total = self.totals.entry(domain_id.to_owned()).or_default();
        let hours = self
            .hours
            .entry(domain_id.to_owned())
            .or_insert_with(|| [UsageCounts::default(); HOURS_PER_DAY]);
        for (hour, counts) in hours.iter_mut().zip(&unpacked) {
            for kind in UsageKind::ALL {
                hour.add(kind, counts.get(kind));
                total.add(kind, counts.get(kind));
            }
        }
    }

    /// Adds a field of the old layout's hash.
    fn add_legacy(&mut self, field: &str, count: i64) {
        let Some((domain_id, kind, hour)) = parse_field(field) else {
            return;
        };
        let count = u64::try_from(count).unwrap_or(0);
        match hour {
            None => self.totals.entry(domain_id.to_owned()).or_default(),
            Some(hour) => &mut self
                .hours
                .entry(domain_id.to_owned())
                .or_insert_with(|| [UsageCounts::default(); HOURS_PER_DAY])[hour],
        }
        .add(kind, count);
    }
}

crate::view! {
    /// The usage counters, per domain, day and hour: the gateways add to them, the control plane
    /// reads them (and adds what the dashboard itself serves).
    Usage
}

impl Usage {
    fn shard_key(&self, day: &str, shard: u16) -> String {
        self.conn.key(&shard_tag(day, shard))
    }

    fn marker_key(&self, day: &str, shard: u16, writer: &str) -> String {
        self.conn
            .key(&format!("{}:applied:{writer}", shard_tag(day, shard)))
    }

    /// The day's hash in the layout before shards (read only).
    fn legacy_key(&self, day: &str) -> String {
        self.conn.key(&format!("{{usage}}:{day}"))
    }

    /// Adds `counts` (domain id, kind, how many) to the counters of `hour`: one script per shard
    /// the domains fall in, sent at once, each atomic (every count of its shard lands or none
    /// does). An error does not prove nothing landed (a command that timed out may be applied
    /// later, and other shards may have been written), so a caller that retries should send a
    /// [`UsageBatch`] instead.
    pub async fn add(&self, hour: &UsageHour, counts: &[(String, UsageKind, u64)]) -> Result<()> {
        let counts = counts
            .iter()
            .map(|(domain_id, kind, count)| (hour, domain_id.as_str(), *kind, *count));
        self.write(self.scripts(None, counts)).await?;
        Ok(())
    }

    /// Applies `batch` unless it or a later batch of its writer was applied already: one script per
    /// (day, shard) its counts fall in, sent at once, each atomic and each checking the writer's
    /// marker in its own shard. Returns whether this call wrote any of it (false for a batch that
    /// had been applied everywhere, or that counts nothing). An error leaves some shards maybe
    /// written and others not; sending the same batch again writes only the ones that were not.
    pub async fn add_batch(&self, batch: &UsageBatch) -> Result<bool> {
        let counts = batch.hours.iter().flat_map(|(hour, counts)| {
            counts
                .iter()
                .map(move |(domain_id, kind, count)| (hour, domain_id.as_str(), *kind, *count))
        });
        let scripts = self.scripts(Some((&batch.writer, batch.seq)), counts);
        self.write(scripts).await
    }

    /// The scripts (keys, arguments) that write `counts` (hour, domain id, kind, how many): one for
    /// each (day, shard) they fall in, marked as batch `seq` of `writer` if given.
    fn scripts<'a>(
        &self,
        numbered: Option<(&str, u64)>,
        counts: impl Iterator<Item = (&'a UsageHour, &'a str, UsageKind, u64)>,
    ) -> Vec<(Vec<String>, Vec<Value>)> {
        let mut shards: BTreeMap<(&str, u16), ShardCounts<'a>> = BTreeMap::new();
        for (hour, domain_id, kind, count) in counts.filter(|(_, _, _, n)| *n > 0) {
            let increment = i64::try_from(count).unwrap_or(i64::MAX);
            let total = shards
                .entry((hour.day.as_str(), shard_of(domain_id)))
                .or_default()
                .entry(domain_id)
                .or_default()
                .entry(count_index(kind, hour.hour))
                .or_default();
            *total = total.saturating_add(increment);
        }
        let mut scripts = Vec::with_capacity(shards.len());
        for ((day, shard), domains) in shards {
            let mut keys = vec![self.shard_key(day, shard)];
            let mut seq = 0;
            if let Some((writer, number)) = numbered {
                keys.push(self.marker_key(day, shard, writer));
                seq = i64::try_from(number).unwrap_or(i64::MAX);
            }
            let mut args: Vec<Value> = vec![
                seq.into(),
                USAGE_RETENTION_SECS.into(),
                APPLIED_MARKER_SECS.into(),
                (COUNTS_PER_VALUE as i64).into(),
            ];
            for (domain_id, increments) in domains {
                args.push(domain_id.into());
                args.push((increments.len() as i64).into());
                for (index, increment) in increments {
                    args.push((index as i64).into());
                    args.push(increment.into());
                }
            }
            scripts.push((keys, args));
        }
        scripts
    }

    /// Runs `scripts` (see [`Usage::scripts`]), a few at once. Whether any wrote; the first error
    /// if any failed (after every script has had its answer, so that none is left in flight).
    async fn write(&self, scripts: Vec<(Vec<String>, Vec<Value>)>) -> Result<bool> {
        let answers: Vec<Result<bool>> = futures::stream::iter(scripts)
            .map(|(keys, args)| self.add_to_shard(keys, args))
            .buffer_unordered(SHARDS_IN_FLIGHT)
            .collect()
            .await;
        let mut wrote = false;
        for answer in answers {
            wrote |= answer?;
        }
        Ok(wrote)
    }

    /// Runs [`LUA_ADD`] on one shard: whether it wrote.
    async fn add_to_shard(&self, keys: Vec<String>, args: Vec<Value>) -> Result<bool> {
        let applied: i64 = self.conn.pool.eval(LUA_ADD, keys, args).await?;
        Ok(applied == 1)
    }

    /// Every domain's totals for `day` (`YYYY-MM-DD`), by domain id.
    pub async fn for_day(&self, day: &str) -> Result<BTreeMap<String, UsageCounts>> {
        Ok(self.day(day).await?.totals)
    }

    /// Every domain's counts for each hour of `day` (`YYYY-MM-DD`), by domain id; domains with no
    /// hours (only counts of the old layout from before hours were counted) are left out.
    pub async fn hours_for_day(&self, day: &str) -> Result<BTreeMap<String, UsageHours>> {
        Ok(self.day(day).await?.hours)
    }

    /// Both the totals and the hours of `day` (`YYYY-MM-DD`), read a shard at a time in pages of
    /// 256 domains (`HSCAN`, about 120 KB a command, a few shards at once), and the day's hash of
    /// the old layout if it is still there. No command returns more than a page, so the read never
    /// holds Redis for long, however many domains there are (100,000: 431 commands, 0.3 ms each).
    /// Fields this version does not know (a kind added later) are skipped. A domain changed while
    /// the read goes on may be seen before or after its change.
    pub async fn day(&self, day: &str) -> Result<DayUsage> {
        let mut usage = DayUsage::default();
        let shards = futures::stream::iter(0..USAGE_SHARDS)
            .map(|shard| self.scan(self.shard_key(day, shard)))
            .buffer_unordered(SHARDS_IN_FLIGHT);
        let mut shards = std::pin::pin!(shards);
        while let Some(fields) = shards.next().await {
            for (domain_id, value) in fields? {
                if let Some(value) = value.as_bytes() {
                    usage.add_packed(&domain_id, value);
                }
            }
        }
        for (field, count) in self.scan(self.legacy_key(day)).await? {
            if let Some(count) = count.as_i64() {
                usage.add_legacy(&field, count);
            }
        }
        Ok(usage)
    }

    /// Every field of the hash `key`, read [`READ_PAGE`] fields a command. A field the scan returns
    /// twice (it may, while the hash grows) is kept once.
    async fn scan(&self, key: String) -> Result<HashMap<String, Value>> {
        let client = self.conn.pool.next();
        let pages = client.hscan(key, "*", Some(READ_PAGE));
        let mut pages = std::pin::pin!(pages);
        let mut fields = HashMap::new();
        while let Some(page) = pages.next().await {
            let mut page = page?;
            let Some(results) = page.take_results() else {
                continue;
            };
            for (field, value) in results.inner() {
                if let Some(field) = field.as_str() {
                    fields.insert(field.to_owned(), value);
                }
            }
            // Dropping the page asks for the next one.
        }
        Ok(fields)
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
            let (total, hour) = (format!("d:1:{kind}"), format!("d:1:{kind}:05"));
            assert_eq!(parse_field(&total), Some(("d:1", kind, None)));
            assert_eq!(parse_field(&hour), Some(("d:1", kind, Some(5))));
        }
    }

    #[test]
    fn shards_are_a_stable_hash_of_the_domain_id() {
        // These must never change, or a day counted across an upgrade spreads over two shards
        // (still read right, but in twice the room). FNV-1a of "a" is 0xe40c292c, mixed 0x1a80b1b3.
        assert_eq!(shard_of(""), (0xab3e_7c0b_u32 % 64) as u16);
        assert_eq!(shard_of("a"), (0x1a80_b1b3_u32 % 64) as u16);
        assert_eq!(shard_of("foobar"), (0x0c0d_a6dc_u32 % 64) as u16);
        assert_eq!(shard_of("00000000-0000-4000-8000-000000000000"), 35);
        assert_eq!(shard_of("00000000-0000-4000-8000-000000000001"), 54);
        assert_eq!(shard_of("d1"), 31);
        assert_eq!(shard_tag("2025-03-04", 7), "{usage:2025-03-04:07}");
        assert_eq!(shard_tag("2025-03-04", 63), "{usage:2025-03-04:63}");

        // Domain ids spread evenly, however alike they are: 100,000 over 64 shards are 1,562 a
        // shard on average, and none is more than 8 % off (about four standard deviations).
        let ids: [&dyn Fn(u64) -> String; 3] = [
            &|n| format!("00000000-0000-4000-8000-{n:012}"),
            &|n| {
                format!(
                    "0193b7c2-{:04x}-7{:03x}-8{:03x}-{n:012x}",
                    n % 65_521,
                    n % 4093,
                    n % 4091
                )
            },
            &|n| format!("d{n}"),
        ];
        for id in ids {
            let mut per_shard = [0u32; USAGE_SHARDS as usize];
            for n in 0..100_000u64 {
                per_shard[usize::from(shard_of(&id(n)))] += 1;
            }
            let (least, most) = (
                per_shard.iter().min().unwrap(),
                per_shard.iter().max().unwrap(),
            );
            assert!(
                *least > 1_440 && *most < 1_690,
                "{}: {least}..{most}",
                id(0)
            );
        }
    }

    #[test]
    fn a_packed_value_holds_each_kind_s_hours_in_turn() {
        assert_eq!(COUNTS_PER_VALUE, 120);
        let names: Vec<_> = UsageKind::ALL.iter().map(|k| k.index()).collect();
        assert_eq!(
            names,
            [0, 1, 2, 3, 4],
            "the order of ALL is the packed order"
        );
        assert_eq!(count_index(UsageKind::Hit, 0), 0);
        assert_eq!(count_index(UsageKind::Hit, 23), 23);
        assert_eq!(count_index(UsageKind::Miss, 0), 24);
        assert_eq!(count_index(UsageKind::Render, 23), 119);

        let mut value = vec![0u8; COUNTS_PER_VALUE * COUNT_BYTES];
        let mut put = |kind: UsageKind, hour: u8, count: u32| {
            let at = count_index(kind, hour) * COUNT_BYTES;
            value[at..at + COUNT_BYTES].copy_from_slice(&count.to_le_bytes());
        };
        put(UsageKind::Hit, 0, 3);
        put(UsageKind::Hit, 13, 0x0102_0304);
        put(UsageKind::Passthrough, 23, u32::MAX);
        put(UsageKind::Render, 5, 1);
        let hours = unpack(&value);
        assert_eq!(hours[0].hits, 3);
        assert_eq!(hours[13].hits, 16_909_060);
        assert_eq!(hours[23].passthroughs, u64::from(u32::MAX));
        assert_eq!(hours[5].renders, 1);
        let all: u64 = hours
            .iter()
            .flat_map(|h| UsageKind::ALL.map(|k| h.get(k)))
            .sum();
        assert_eq!(all, 3 + 16_909_060 + u64::from(u32::MAX) + 1);

        // A later version's kind (past the five) is skipped, and so is a ragged end.
        let mut longer = value.clone();
        longer.extend(std::iter::repeat_n(0xff, HOURS_PER_DAY * COUNT_BYTES + 3));
        assert_eq!(unpack(&longer), hours);
        // A short value is what it holds.
        assert_eq!(unpack(&value[..4])[0].hits, 3);
        assert_eq!(unpack(&[]), [UsageCounts::default(); HOURS_PER_DAY]);

        // Added up: the day's total is the sum of its hours.
        let mut day = DayUsage::default();
        day.add_packed("d1", &value);
        day.add_packed("d1", &value[..4]);
        assert_eq!(day.totals["d1"].hits, 3 + 16_909_060 + 3);
        assert_eq!(day.hours["d1"][0].hits, 6);
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
