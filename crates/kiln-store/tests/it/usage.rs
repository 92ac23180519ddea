//! Usage counters: key layout, sums per domain and kind, lifetime.

use crate::helpers::TestStore;
use fred::prelude::*;
use kiln_store::{USAGE_RETENTION_SECS, UsageBatch, UsageCounts, UsageHour, UsageKind};
use std::collections::BTreeMap;

/// Hour `hour` of `day`.
pub fn at(day: &str, hour: u8) -> UsageHour {
    UsageHour::new(day, hour).unwrap()
}

#[tokio::test]
async fn usage_adds_up_per_domain_and_kind_in_one_hash_per_day() {
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

    // The layout the dashboard and the docs rely on: one hash per day, `{domain}:{kind}` fields for
    // the day and `{domain}:{kind}:{HH}` for its hours, zero counts never written, and a lifetime of
    // 40 days.
    let key = format!("{}{{usage}}:{day}", t.prefix);
    let mut fields: BTreeMap<String, i64> = t.raw.hgetall(&key).await.unwrap();
    let totals: Vec<_> = fields
        .iter()
        .filter(|(field, _)| field.matches(':').count() == 1)
        .map(|(field, count)| (field.as_str(), *count))
        .collect();
    assert_eq!(
        totals,
        [
            ("d1:hit", 5),
            ("d1:miss", 1),
            ("d1:render", 1),
            ("d2:hit", 5),
            ("d2:passthrough", 4)
        ]
    );
    fields.retain(|field, _| field.matches(':').count() == 2);
    assert_eq!(
        fields.into_iter().collect::<Vec<_>>(),
        [
            ("d1:hit:00".to_owned(), 3),
            ("d1:hit:13".to_owned(), 2),
            ("d1:miss:00".to_owned(), 1),
            ("d1:render:13".to_owned(), 1),
            ("d2:hit:00".to_owned(), 5),
            ("d2:passthrough:13".to_owned(), 4)
        ]
    );
    let ttl: i64 = t.raw.ttl(&key).await.unwrap();
    assert!(
        (USAGE_RETENTION_SECS - 10..=USAGE_RETENTION_SECS).contains(&ttl),
        "ttl {ttl}"
    );
}

#[tokio::test]
async fn empty_batches_write_nothing_and_unknown_fields_are_skipped() {
    let t = TestStore::start().await;
    let day = "2025-01-01";
    t.store.usage().add(&at(day, 0), &[]).await.unwrap();
    t.store
        .usage()
        .add(&at(day, 0), &[("d1".into(), UsageKind::Hit, 0)])
        .await
        .unwrap();
    let key = format!("{}{{usage}}:{day}", t.prefix);
    let exists: u32 = t.raw.exists(&key).await.unwrap();
    assert_eq!(exists, 0, "a batch of zeros creates no key");

    // Fields written by a later version (a new kind) or by hand do not break reading.
    let _: () = t
        .raw
        .hset(
            &key,
            [
                ("d1:hit", "2"),
                ("d1:teleport", "9"),
                ("junk", "1"),
                ("d:2:miss", "3"),
            ],
        )
        .await
        .unwrap();
    let usage = t.store.usage().for_day(day).await.unwrap();
    assert_eq!(usage["d1"].hits, 2);
    assert_eq!(usage["d:2"].misses, 3, "domain ids may contain ':'");
    assert_eq!(usage.len(), 2, "{usage:?}");
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

    for (key, lifetime) in [
        (
            format!("{}{{usage}}:2025-03-05", t.prefix),
            USAGE_RETENTION_SECS,
        ),
        (format!("{}{{usage}}:applied:gw-1", t.prefix), 24 * 60 * 60),
    ] {
        let ttl: i64 = t.raw.ttl(&key).await.unwrap();
        assert!(
            (lifetime - 10..=lifetime).contains(&ttl),
            "{key}: ttl {ttl}"
        );
    }
    let marker: String = t
        .raw
        .get(format!("{}{{usage}}:applied:gw-1", t.prefix))
        .await
        .unwrap();
    assert_eq!(marker, "2");
}
