//! Usage counters: key layout (a day in 64 shards), sums per domain and kind, lifetime, numbered
//! batches over many shards, and the day read a page at a time.

use crate::helpers::TestStore;
use fred::prelude::*;
use fred::types::InfoKind;
use kiln_store::{USAGE_RETENTION_SECS, UsageBatch, UsageCounts, UsageHour, UsageKind};
use std::collections::BTreeMap;

/// Hour `hour` of `day`.
pub fn at(day: &str, hour: u8) -> UsageHour {
    UsageHour::new(day, hour).unwrap()
}

/// The 64 shard keys of `day`.
pub fn shard_keys(prefix: &str, day: &str) -> Vec<String> {
    (0..64)
        .map(|shard| format!("{prefix}{{usage:{day}:{shard:02}}}"))
        .collect()
}

/// Every key under `prefix`, sorted.
async fn keys(t: &TestStore) -> Vec<String> {
    let mut keys: Vec<String> = t
        .raw
        .custom(fred::cmd!("KEYS"), vec![format!("{}*", t.prefix)])
        .await
        .unwrap();
    keys.sort();
    keys
}

/// A domain's packed counts as stored: (kind, hour) → count, the non-zero ones.
async fn packed(t: &TestStore, key: &str, domain_id: &str) -> BTreeMap<(usize, usize), u32> {
    let value: Value = t.raw.hget(key, domain_id).await.unwrap();
    let bytes = value.as_bytes().unwrap();
    assert_eq!(bytes.len(), 5 * 24 * 4, "5 kinds × 24 hours × u32");
    bytes
        .chunks_exact(4)
        .enumerate()
        .map(|(i, c)| ((i / 24, i % 24), u32::from_le_bytes(c.try_into().unwrap())))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// The counts of `HSCAN` and of the commands that return a whole hash, from `INFO commandstats`.
async fn hash_reads(t: &TestStore) -> (u64, u64) {
    let info: String = t.raw.info(Some(InfoKind::CommandStats)).await.unwrap();
    let calls = |command: &str| -> u64 {
        info.lines()
            .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
            .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
    };
    (
        calls("hscan"),
        calls("hgetall") + calls("hvals") + calls("hkeys"),
    )
}

#[tokio::test]
async fn usage_adds_up_per_domain_and_kind_in_the_day_s_shards() {
    let t = TestStore::start().await;
    let day = "2025-03-04";
    t.store
        .usage()
        .add(
            &at(day, 0),
            &[
                ("d1".into(), UsageKind::Hit, 3),
                ("d1".into(), UsageKind::Miss, 1),
                ("d2".into(), UsageKind::Hit, 5),
                ("d2".into(), UsageKind::Bypass, 0),
            ],
        )
        .await
        .unwrap();
    t.store
        .usage()
        .add(
            &at(day, 13),
            &[
                ("d1".into(), UsageKind::Hit, 2),
                ("d1".into(), UsageKind::Render, 1),
                ("d2".into(), UsageKind::Passthrough, 4),
            ],
        )
        .await
        .unwrap();
    t.store
        .usage()
        .add(&at("2025-03-05", 0), &[("d1".into(), UsageKind::Hit, 7)])
        .await
        .unwrap();

    let usage = t.store.usage().for_day(day).await.unwrap();
    assert_eq!(usage.len(), 2, "{usage:?}");
    assert_eq!(
        usage["d1"],
        UsageCounts {
            hits: 5,
            misses: 1,
            renders: 1,
            ..UsageCounts::default()
        }
    );
    assert_eq!(
        usage["d2"],
        UsageCounts {
            hits: 5,
            passthroughs: 4,
            ..UsageCounts::default()
        }
    );
    assert_eq!(
        t.store.usage().for_day("2025-03-05").await.unwrap()["d1"].hits,
        7
    );
    assert!(
        t.store
            .usage()
            .for_day("2025-03-06")
            .await
            .unwrap()
            .is_empty()
    );

    // The layout the docs rely on: a day in 64 hashes `{usage:<day>:<NN>}`, each domain in the one
    // its id hashes to ("d1" to 31, "d2" to 61), its value a u32 per (kind, hour), kinds in the
    // order hit, miss, bypass, passthrough, render; zero counts never written, and no key of the
    // old layout.
    let d1 = format!("{}{{usage:{day}:31}}", t.prefix);
    let d2 = format!("{}{{usage:{day}:61}}", t.prefix);
    assert_eq!(
        keys(&t).await,
        [
            format!("{}{{usage:2025-03-04:31}}", t.prefix),
            format!("{}{{usage:2025-03-04:61}}", t.prefix),
            format!("{}{{usage:2025-03-05:31}}", t.prefix),
        ]
    );
    assert_eq!(
        packed(&t, &d1, "d1").await,
        BTreeMap::from([((0, 0), 3), ((0, 13), 2), ((1, 0), 1), ((4, 13), 1)])
    );
    assert_eq!(
        packed(&t, &d2, "d2").await,
        BTreeMap::from([((0, 0), 5), ((3, 13), 4)])
    );
    let fields: u64 = t.raw.hlen(&d1).await.unwrap();
    assert_eq!(fields, 1, "one field per domain");

    // Kept a few days, not 40: the dashboard copies the counts into Postgres every few seconds.
    assert_eq!(USAGE_RETENTION_SECS, 4 * 24 * 60 * 60);
    for key in [&d1, &d2] {
        let ttl: i64 = t.raw.ttl(key).await.unwrap();
        assert!(
            (USAGE_RETENTION_SECS - 10..=USAGE_RETENTION_SECS).contains(&ttl),
            "{key}: ttl {ttl}"
        );
    }
}

#[tokio::test]
async fn an_hour_s_count_stops_at_the_largest_u32() {
    let t = TestStore::start().await;
    let day = "2025-03-04";
    let add = async |hour: u8, n: u64| {
        t.store
            .usage()
            .add(&at(day, hour), &[("d1".into(), UsageKind::Hit, n)])
            .await
            .unwrap()
    };
    add(1, u64::from(u32::MAX) - 1).await;
    add(1, 5).await;
    add(2, u64::MAX).await;
    add(3, 1).await;
    let usage = t.store.usage().day(day).await.unwrap();
    let hours = usage.hours["d1"];
    assert_eq!(hours[1].hits, u64::from(u32::MAX));
    assert_eq!(hours[2].hits, u64::from(u32::MAX));
    assert_eq!(hours[3].hits, 1, "the next count is untouched");
    assert_eq!(usage.totals["d1"].hits, 2 * u64::from(u32::MAX) + 1);
}

#[tokio::test]
async fn empty_batches_write_nothing_and_the_old_layout_is_still_read() {
    let t = TestStore::start().await;
    let day = "2025-01-01";
    t.store.usage().add(&at(day, 0), &[]).await.unwrap();
    t.store
        .usage()
        .add(&at(day, 0), &[("d1".into(), UsageKind::Hit, 0)])
        .await
        .unwrap();
    let empty = UsageBatch {
        writer: "gw-1".into(),
        seq: 1,
        hours: BTreeMap::from([(at(day, 0), vec![("d1".to_owned(), UsageKind::Hit, 0)])]),
    };
    assert!(!t.store.usage().add_batch(&empty).await.unwrap());
    assert_eq!(keys(&t).await, Vec::<String>::new(), "zeros create no key");

    // A day counted before the upgrade (one hash, a field per domain, kind and maybe hour), and
    // after it: both are read, and add up.
    let key = format!("{}{{usage}}:{day}", t.prefix);
    let _: () = t
        .raw
        .hset(
            &key,
            [
                ("d1:hit", "2"),
                ("d1:hit:05", "2"),
                ("d1:teleport", "9"),
                ("junk", "1"),
                ("d:2:miss", "3"),
            ],
        )
        .await
        .unwrap();
    t.store
        .usage()
        .add(&at(day, 5), &[("d1".into(), UsageKind::Hit, 10)])
        .await
        .unwrap();
    let usage = t.store.usage().day(day).await.unwrap();
    assert_eq!(usage.totals["d1"].hits, 12);
    assert_eq!(usage.hours["d1"][5].hits, 12);
    assert_eq!(usage.totals["d:2"].misses, 3, "domain ids may contain ':'");
    assert_eq!(usage.totals.len(), 2, "{usage:?}");
    assert!(!usage.hours.contains_key("d:2"), "it had no hours");
}

#[tokio::test]
async fn a_numbered_batch_counts_once_however_often_it_is_sent() {
    let t = TestStore::start().await;
    let batch = |seq: u64, hits: u64| UsageBatch {
        writer: "gw-1".into(),
        seq,
        hours: BTreeMap::from([
            (
                at("2025-03-04", 23),
                vec![("d1".to_owned(), UsageKind::Hit, hits)],
            ),
            (
                at("2025-03-05", 0),
                vec![("d1".to_owned(), UsageKind::Miss, 1)],
            ),
        ]),
    };
    let counts = async |day: &str| t.store.usage().for_day(day).await.unwrap()["d1"];

    assert!(t.store.usage().add_batch(&batch(1, 2)).await.unwrap());
    assert!(
        !t.store.usage().add_batch(&batch(1, 2)).await.unwrap(),
        "a resend"
    );
    assert_eq!(counts("2025-03-04").await.hits, 2);
    assert_eq!(counts("2025-03-05").await.misses, 1);

    assert!(t.store.usage().add_batch(&batch(2, 3)).await.unwrap());
    assert!(
        !t.store.usage().add_batch(&batch(1, 2)).await.unwrap(),
        "a replay of an older batch"
    );
    assert_eq!(counts("2025-03-04").await.hits, 5);
    assert_eq!(counts("2025-03-05").await.misses, 2);

    // Another writer's numbers are its own.
    let other = UsageBatch {
        writer: "gw-2".into(),
        ..batch(1, 10)
    };
    assert!(t.store.usage().add_batch(&other).await.unwrap());
    assert_eq!(counts("2025-03-04").await.hits, 15);

    // The writer's marker lives in each shard it wrote to, beside the counts ("d1" is in shard 31).
    let marker = |day: &str| format!("{}{{usage:{day}:31}}:applied:gw-1", t.prefix);
    for (key, lifetime) in [
        (
            format!("{}{{usage:2025-03-05:31}}", t.prefix),
            USAGE_RETENTION_SECS,
        ),
        (marker("2025-03-04"), 24 * 60 * 60),
        (marker("2025-03-05"), 24 * 60 * 60),
    ] {
        let ttl: i64 = t.raw.ttl(&key).await.unwrap();
        assert!(
            (lifetime - 10..=lifetime).contains(&ttl),
            "{key}: ttl {ttl}"
        );
    }
    for day in ["2025-03-04", "2025-03-05"] {
        let seq: String = t.raw.get(marker(day)).await.unwrap();
        assert_eq!(seq, "2");
    }
}

/// `d<n>`'s counts in a batch: hits in hour n % 24, misses in hour 23 for every third, a render in
/// hour 0 for every fifth.
fn counts_of(n: u64) -> Vec<(u8, UsageKind, u64)> {
    let mut counts = vec![((n % 24) as u8, UsageKind::Hit, 1 + n % 7)];
    if n.is_multiple_of(3) {
        counts.push((23, UsageKind::Miss, 2));
    }
    if n.is_multiple_of(5) {
        counts.push((0, UsageKind::Render, 1));
    }
    counts
}

/// A batch of `domains` domains' counts (see [`counts_of`]) on each of `days`.
fn many_domains(writer: &str, seq: u64, days: &[&str], domains: u64) -> UsageBatch {
    let mut hours: BTreeMap<UsageHour, Vec<(String, UsageKind, u64)>> = BTreeMap::new();
    for day in days {
        for n in 0..domains {
            for (hour, kind, count) in counts_of(n) {
                hours
                    .entry(at(day, hour))
                    .or_default()
                    .push((format!("d{n}"), kind, count));
            }
        }
    }
    UsageBatch {
        writer: writer.to_owned(),
        seq,
        hours,
    }
}

/// Checks that `day` holds `times` × [`counts_of`] for `domains` domains, by hour and in total.
#[track_caller]
fn assert_counted(usage: &kiln_store::DayUsage, domains: u64, times: u64) {
    assert_eq!(usage.totals.len() as u64, domains);
    assert_eq!(usage.hours.len() as u64, domains);
    for n in 0..domains {
        let id = format!("d{n}");
        let mut hours = [UsageCounts::default(); 24];
        let mut total = UsageCounts::default();
        for (hour, kind, count) in counts_of(n) {
            hours[usize::from(hour)].add(kind, count * times);
            total.add(kind, count * times);
        }
        assert_eq!(usage.hours[&id], hours, "{id}");
        assert_eq!(usage.totals[&id], total, "{id}");
    }
}

#[tokio::test]
async fn a_batch_over_many_shards_counts_once_in_each_even_after_it_failed_in_one() {
    let t = TestStore::start().await;
    let days = ["2025-03-04", "2025-03-05"];
    let batch = many_domains("gw-1", 1, &days, 1_000);

    // Shard 31 of the second day cannot be written ("d1" is in it): the batch lands in the 127
    // other shards and fails.
    let broken = format!("{}{{usage:2025-03-05:31}}", t.prefix);
    let _: () = t.raw.set(&broken, "x", None, None, false).await.unwrap();
    assert!(t.store.usage().add_batch(&batch).await.is_err());
    let _: () = t.raw.del(&broken).await.unwrap();
    let first = t.store.usage().day(days[0]).await.unwrap();
    assert_counted(&first, 1_000, 1);
    let second = t.store.usage().day(days[1]).await.unwrap();
    assert!(!second.totals.contains_key("d1"));
    assert!(second.totals.len() > 950, "{}", second.totals.len());

    // Sent again as it was, it lands in the one shard that missed it, and nowhere twice.
    assert!(t.store.usage().add_batch(&batch).await.unwrap());
    assert!(!t.store.usage().add_batch(&batch).await.unwrap());
    for day in days {
        assert_counted(&t.store.usage().day(day).await.unwrap(), 1_000, 1);
    }

    // Every shard of both days was written (1,000 domains fill all 64), each with its marker.
    let mut written = 0;
    for day in days {
        for key in shard_keys(&t.prefix, day) {
            let domains: u64 = t.raw.hlen(&key).await.unwrap();
            assert!((5..=30).contains(&domains), "{key}: {domains} domains");
            written += domains;
            let seq: String = t.raw.get(format!("{key}:applied:gw-1")).await.unwrap();
            assert_eq!(seq, "1", "{key}");
        }
    }
    assert_eq!(written, 2 * 1_000, "each domain in one shard a day");

    // The next batch adds on top, once.
    let next = many_domains("gw-1", 2, &days, 1_000);
    assert!(t.store.usage().add_batch(&next).await.unwrap());
    assert!(!t.store.usage().add_batch(&next).await.unwrap());
    assert!(!t.store.usage().add_batch(&batch).await.unwrap());
    for day in days {
        assert_counted(&t.store.usage().day(day).await.unwrap(), 1_000, 2);
    }
}

#[tokio::test]
async fn a_day_of_many_domains_is_read_a_page_at_a_time() {
    let t = TestStore::start().await;
    let day = "2025-03-04";
    // 20,000 domains: some 312 a shard, more than one page (256) of each.
    let domains = 20_000;
    assert!(
        t.store
            .usage()
            .add_batch(&many_domains("gw-1", 1, &[day], domains))
            .await
            .unwrap()
    );
    let _: () = t
        .raw
        .custom(fred::cmd!("CONFIG"), vec!["RESETSTAT"])
        .await
        .unwrap();
    let usage = t.store.usage().day(day).await.unwrap();
    let (scans, whole) = hash_reads(&t).await;
    assert_counted(&usage, domains, 1);
    assert_eq!(whole, 0, "no command returns a whole hash");
    // 64 shards of two pages or more, and the old layout's hash (none).
    assert!(scans > 2 * 64, "{scans} HSCANs");
    assert!(scans <= 4 * 64 + 1, "{scans} HSCANs");
}
