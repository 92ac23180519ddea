//! Warm job progress counters.

use crate::helpers::TestStore;
use fred::prelude::*;
use kiln_store::{WARM_PROGRESS_TTL_SECS, WarmProgress};

#[tokio::test]
async fn warm_results_are_counted_per_job_and_kept_for_a_week() {
    let t = TestStore::start().await;
    assert_eq!(
        t.store.render_log().warm_progress("w1").await.unwrap(),
        WarmProgress::default()
    );
    for ok in [true, false, true, true] {
        t.store
            .render_log()
            .record_warm_result("w1", ok)
            .await
            .unwrap();
    }
    t.store
        .render_log()
        .record_warm_result("w2", false)
        .await
        .unwrap();

    assert_eq!(
        t.store.render_log().warm_progress("w1").await.unwrap(),
        WarmProgress { done: 3, failed: 1 }
    );
    assert_eq!(
        t.store.render_log().warm_progress("w2").await.unwrap(),
        WarmProgress { done: 0, failed: 1 }
    );
    let ttl: i64 = t.raw.ttl(format!("{}warm:w1", t.prefix)).await.unwrap();
    assert!(
        (WARM_PROGRESS_TTL_SECS - 60..=WARM_PROGRESS_TTL_SECS).contains(&ttl),
        "{ttl}"
    );
}
