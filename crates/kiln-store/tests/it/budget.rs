//! Tenants' render budgets, shared by every gateway and worker through Redis.

use crate::helpers::TestStore;
use kiln_store::{Admission, RenderBudget};
use std::time::Duration;

const HOLD: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_tenant_holds_at_most_its_concurrent_renders_and_others_are_not_affected() {
    let t = TestStore::start().await;
    let budget = RenderBudget {
        concurrent: 2,
        per_minute: 0,
    };
    for page in ["a", "b"] {
        assert_eq!(
            t.store
                .pages()
                .admit_render("t1", page, budget, HOLD)
                .await
                .unwrap(),
            Admission::Admitted
        );
    }
    // Asking again for a place already held is not a new render.
    assert_eq!(
        t.store
            .pages()
            .admit_render("t1", "a", budget, HOLD)
            .await
            .unwrap(),
        Admission::Admitted
    );
    match t
        .store
        .pages()
        .admit_render("t1", "c", budget, HOLD)
        .await
        .unwrap()
    {
        Admission::Refused { retry_after } => {
            assert!(retry_after <= HOLD && retry_after > HOLD - Duration::from_secs(5))
        }
        other => panic!("a third render was admitted: {other:?}"),
    }
    assert_eq!(
        t.store
            .pages()
            .admit_render("t2", "c", budget, HOLD)
            .await
            .unwrap(),
        Admission::Admitted,
        "another tenant has a budget of its own"
    );
    assert_eq!(t.store.pages().renders_under_way("t1").await.unwrap(), 2);

    t.store
        .pages()
        .release_render_place("t1", "a")
        .await
        .unwrap();
    assert_eq!(
        t.store
            .pages()
            .admit_render("t1", "c", budget, HOLD)
            .await
            .unwrap(),
        Admission::Admitted
    );
}

#[tokio::test]
async fn a_place_nobody_gives_back_lapses_by_itself() {
    let t = TestStore::start().await;
    let budget = RenderBudget {
        concurrent: 1,
        per_minute: 0,
    };
    let short = Duration::from_millis(300);
    assert_eq!(
        t.store
            .pages()
            .admit_render("t1", "a", budget, short)
            .await
            .unwrap(),
        Admission::Admitted
    );
    assert!(matches!(
        t.store
            .pages()
            .admit_render("t1", "b", budget, short)
            .await
            .unwrap(),
        Admission::Refused { .. }
    ));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(t.store.pages().renders_under_way("t1").await.unwrap(), 0);
    assert_eq!(
        t.store
            .pages()
            .admit_render("t1", "b", budget, short)
            .await
            .unwrap(),
        Admission::Admitted
    );
    // The set itself expires with its last place.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let exists: i64 = fred::prelude::KeysInterface::exists(
        &t.raw,
        format!("{}{{t:t1}}:budget:renders", t.prefix),
    )
    .await
    .unwrap();
    assert_eq!(exists, 0);
}

#[tokio::test]
async fn renders_a_minute_are_counted_whether_or_not_they_finished() {
    let t = TestStore::start().await;
    let budget = RenderBudget {
        concurrent: 0,
        per_minute: 3,
    };
    let mut admitted = 0;
    let mut refused = None;
    for page in 0..5 {
        match t
            .store
            .pages()
            .admit_render("t1", &page.to_string(), budget, HOLD)
            .await
            .unwrap()
        {
            Admission::Admitted => {
                admitted += 1;
                t.store
                    .pages()
                    .release_render_place("t1", &page.to_string())
                    .await
                    .unwrap();
            }
            Admission::Refused { retry_after } => refused = Some(retry_after),
        }
    }
    // Three, unless the minute turned during the loop (then up to six).
    assert!((3..=5).contains(&admitted), "{admitted}");
    if admitted == 3 {
        let retry_after = refused.expect("the fourth was refused");
        assert!(retry_after <= Duration::from_secs(60), "{retry_after:?}");
    }
    let unlimited = RenderBudget {
        concurrent: 0,
        per_minute: 0,
    };
    assert_eq!(
        t.store
            .pages()
            .admit_render("t1", "x", unlimited, HOLD)
            .await
            .unwrap(),
        Admission::Admitted
    );
}
