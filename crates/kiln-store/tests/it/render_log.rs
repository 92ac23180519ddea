//! The render log: appended entries read back in order, after a given id.

use crate::helpers::TestStore;
use fred::prelude::*;
use kiln_core::DeviceClass;
use kiln_store::{RenderLogEntry, RenderLogOutcome, RenderLogPurpose};

fn entry(n: u64, outcome: RenderLogOutcome) -> RenderLogEntry {
    RenderLogEntry {
        at: 1_700_000_000_000 + n,
        tab_at: (outcome != RenderLogOutcome::Failed).then_some(1_699_999_999_000 + n),
        domain_id: "d1".into(),
        tenant_id: "t1".into(),
        url: format!("https://shop.test/p/{n}"),
        device: DeviceClass::Mobile,
        purpose: RenderLogPurpose::Bot,
        outcome,
        status: (outcome != RenderLogOutcome::Failed).then_some(200),
        reason: (outcome == RenderLogOutcome::Failed).then(|| "the origin answered 500".into()),
        duration_ms: 100 + n,
        bytes: 1_000 * n,
        user_agent: Some("Googlebot/2.1".into()),
        worker: Some("worker-a".into()),
        via: Default::default(),
    }
}

#[tokio::test]
async fn entries_are_read_back_in_order_after_an_id() {
    let t = TestStore::start().await;
    assert_eq!(t.store.render_log().read("0", 10).await.unwrap(), vec![]);

    let written = [
        entry(1, RenderLogOutcome::Stored),
        entry(2, RenderLogOutcome::Failed),
        entry(3, RenderLogOutcome::Rendered),
    ];
    for e in &written {
        t.store.render_log().append(e).await.unwrap();
    }

    let all = t.store.render_log().read("0", 10).await.unwrap();
    let entries: Vec<_> = all.iter().map(|(_, e)| e.clone()).collect();
    assert_eq!(entries, written);
    let ids: Vec<&str> = all.iter().map(|(id, _)| id.as_str()).collect();

    // Exclusive start: after the first id come the second and third.
    let after_first = t.store.render_log().read(ids[0], 10).await.unwrap();
    assert_eq!(after_first, all[1..].to_vec());
    // `count` bounds one read; reading on from the last id continues.
    let one = t.store.render_log().read(ids[0], 1).await.unwrap();
    assert_eq!(one, all[1..2].to_vec());
    assert_eq!(t.store.render_log().read(ids[2], 10).await.unwrap(), vec![]);
    assert_eq!(t.store.render_log().read("0", 0).await.unwrap(), vec![]);

    // The stream holds JSON in one field, under the deployment prefix.
    let len: u64 = t.raw.xlen(format!("{}renders", t.prefix)).await.unwrap();
    assert_eq!(len, 3);

    // An entry the store cannot read is skipped, not an error for the whole read.
    let _: String = t
        .raw
        .xadd(
            format!("{}renders", t.prefix),
            false,
            None,
            "*",
            vec![("entry", "{not json")],
        )
        .await
        .unwrap();
    t.store
        .render_log()
        .append(&entry(4, RenderLogOutcome::Stored))
        .await
        .unwrap();
    let rest = t.store.render_log().read(ids[2], 10).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].1, entry(4, RenderLogOutcome::Stored));
}

#[test]
fn entries_serialise_with_lowercase_purposes_and_outcomes() {
    let json = serde_json::to_value(entry(1, RenderLogOutcome::Stored)).unwrap();
    assert_eq!(json["purpose"], "bot");
    assert_eq!(json["outcome"], "stored");
    assert_eq!(json["device"], "mobile");
    let json = serde_json::to_value(RenderLogPurpose::Preview).unwrap();
    assert_eq!(json, "preview");
    let json = serde_json::to_value(RenderLogOutcome::Failed).unwrap();
    assert_eq!(json, "failed");
}

#[test]
fn an_entry_logged_before_workers_named_themselves_still_reads() {
    let mut json = serde_json::to_value(entry(1, RenderLogOutcome::Stored)).unwrap();
    assert_eq!(json["worker"], "worker-a");
    json.as_object_mut().unwrap().remove("worker");
    let old: RenderLogEntry = serde_json::from_value(json).unwrap();
    assert_eq!(old.worker, None);
    assert_eq!(
        old,
        RenderLogEntry {
            worker: None,
            ..entry(1, RenderLogOutcome::Stored)
        }
    );
}
