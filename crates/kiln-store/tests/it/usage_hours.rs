//! Usage counters by hour: they land with the day's totals, add up to them, and count once however
//! often a batch is sent.

use crate::usage::at;
use fred::prelude::*;
use kiln_store::{UsageBatch, UsageCounts, UsageKind};
use std::collections::BTreeMap;

use crate::helpers::TestStore;

#[tokio::test]
async fn a_resent_batch_counts_once_in_its_hours_as_in_its_day() {
    let t = TestStore::start().await;
    let day = "2025-03-04";
    let batch = |seq: u64| UsageBatch {
        writer: "gw-1".into(),
        seq,
        hours: BTreeMap::from([
            (
                at(day, 0),
                vec![
                    ("d1".to_owned(), UsageKind::Hit, 2),
                    ("d1".to_owned(), UsageKind::Miss, 1),
                ],
            ),
            (
                at(day, 9),
                vec![
                    ("d1".to_owned(), UsageKind::Hit, 3),
                    ("d2".to_owned(), UsageKind::Bypass, 4),
                    ("d2".to_owned(), UsageKind::Passthrough, 0),
                ],
            ),
            (at(day, 23), vec![("d2".to_owned(), UsageKind::Hit, 1)]),
        ]),
    };

    assert!(t.store.usage().add_batch(&batch(1)).await.unwrap());
    for _ in 0..3 {
        assert!(
            !t.store.usage().add_batch(&batch(1)).await.unwrap(),
            "a resend"
        );
    }

    let hours = t.store.usage().hours_for_day(day).await.unwrap();
    assert_eq!(hours.len(), 2, "{hours:?}");
    let d1 = hours["d1"];
    assert_eq!(
        d1[0],
        UsageCounts {
            hits: 2,
            misses: 1,
            ..UsageCounts::default()
        }
    );
    assert_eq!(d1[9].hits, 3);
    let untouched = (0..24).filter(|h| ![0, 9].contains(h));
    assert!(
        untouched
            .map(|h| d1[h])
            .all(|c| c == UsageCounts::default())
    );
    assert_eq!(hours["d2"][9].bypasses, 4);
    assert_eq!(hours["d2"][9].passthroughs, 0);
    assert_eq!(hours["d2"][23].hits, 1);

    // The day's totals are the sum of its hours, read in the same call.
    let usage = t.store.usage().day(day).await.unwrap();
    assert_eq!(usage.hours, hours);
    assert_eq!(
        usage.totals["d1"],
        UsageCounts {
            hits: 5,
            misses: 1,
            ..UsageCounts::default()
        }
    );
    assert_eq!(usage.totals, t.store.usage().for_day(day).await.unwrap());
    for (domain_id, total) in &usage.totals {
        let mut sum = UsageCounts::default();
        for hour in &usage.hours[domain_id] {
            for kind in UsageKind::ALL {
                sum.add(kind, hour.get(kind));
            }
        }
        assert_eq!(&sum, total, "{domain_id}");
    }

    // The next batch adds on top.
    let next = UsageBatch {
        hours: BTreeMap::from([(at(day, 9), vec![("d1".to_owned(), UsageKind::Hit, 10)])]),
        ..batch(2)
    };
    assert!(t.store.usage().add_batch(&next).await.unwrap());
    assert!(!t.store.usage().add_batch(&next).await.unwrap());
    assert!(!t.store.usage().add_batch(&batch(1)).await.unwrap());
    let hours = t.store.usage().hours_for_day(day).await.unwrap();
    assert_eq!(hours["d1"][9].hits, 13);
    assert_eq!(hours["d1"][0].hits, 2);
    assert_eq!(t.store.usage().for_day(day).await.unwrap()["d1"].hits, 15);
}

#[tokio::test]
async fn days_without_hour_fields_have_totals_only() {
    let t = TestStore::start().await;
    let day = "2025-01-01";
    // Counts written in the layout before shards (one hash a day, read still while a deployment
    // upgrades), before hours were counted, and fields this version does not know.
    let key = format!("{}{{usage}}:{day}", t.prefix);
    let _: () = t
        .raw
        .hset(
            &key,
            [
                ("old:hit", "4"),
                ("d1:hit", "1"),
                ("d1:hit:05", "1"),
                ("d1:hit:24", "9"),
                ("d1:hit:5", "9"),
                ("d1:teleport:05", "9"),
            ],
        )
        .await
        .unwrap();

    let usage = t.store.usage().day(day).await.unwrap();
    assert_eq!(usage.totals["old"].hits, 4);
    assert_eq!(usage.totals["d1"].hits, 1);
    assert_eq!(usage.totals.len(), 2, "{usage:?}");
    assert_eq!(
        usage.hours.keys().collect::<Vec<_>>(),
        ["d1"],
        "a domain without hour fields has no hours"
    );
    let d1 = usage.hours["d1"];
    assert_eq!(d1[5].hits, 1);
    assert_eq!(d1.iter().map(|c| c.hits).sum::<u64>(), 1);

    assert!(
        t.store
            .usage()
            .day("2025-01-02")
            .await
            .unwrap()
            .hours
            .is_empty()
    );
}
