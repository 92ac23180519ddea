//! Render claims: a page's render lock and its place in the tenant's render budget, taken by a
//! gateway in one call and given back together, by the gateway or by the worker that rebuilt the
//! claim from its job.

use crate::helpers::{TestStore, key, next_event, page_scoped_key, url};
use fred::prelude::*;
use kiln_core::job::RenderPurpose;
use kiln_core::{CacheKey, DeviceClass, RenderJob, RenderOutcome};
use kiln_store::{ClaimOutcome, RenderBudget, RenderClaim, StoreEvent};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const LIFETIME: Duration = Duration::from_secs(60);
const TENANT: &str = "t1";
const BUDGET: RenderBudget = RenderBudget {
    concurrent: 1,
    per_minute: 0,
};

fn page(path: &str) -> CacheKey {
    key("d1", path, DeviceClass::Desktop)
}

/// The job a gateway queues for `key`'s render, as the worker receives it.
fn job(key: &CacheKey, purpose: RenderPurpose) -> RenderJob {
    RenderJob {
        key: key.clone(),
        tenant_id: TENANT.into(),
        page_url: url("/a"),
        render_url: "http://origin.test/a".into(),
        device: DeviceClass::Desktop,
        cache_ttl_secs: 60,
        stale_ttl_secs: 0,
        render_timeout_ms: 10_000,
        enqueued_at: kiln_core::unix_millis_now(),
        request_id: Some("req-1".into()),
        blocking: Default::default(),
        purpose,
        user_agent: None,
        via: Default::default(),
    }
}

/// Claims `key` for a bot of [`TENANT`] under `budget`, with a check that lets it through.
async fn claim(t: &TestStore, key: &CacheKey, owner: &str, budget: RenderBudget) -> ClaimOutcome {
    t.store
        .pages()
        .claim_render(key, TENANT, owner, LIFETIME, budget, async { None })
        .await
        .unwrap()
}

fn claimed(outcome: ClaimOutcome) -> RenderClaim {
    match outcome {
        ClaimOutcome::Claimed(claim) => claim,
        other => panic!("the render was not claimed: {other:?}"),
    }
}

/// Whether the page's render lock is held, and the tenant's renders under way.
async fn held(t: &TestStore, key: &CacheKey) -> (bool, u64) {
    (
        t.store.pages().render_locked(key).await.unwrap(),
        t.store.pages().renders_under_way(TENANT).await.unwrap(),
    )
}

#[tokio::test]
async fn a_second_claim_of_a_page_is_refused_while_the_first_is_held_and_release_frees_both() {
    let t = TestStore::start().await;
    let a = page("/a");
    let first = claimed(claim(&t, &a, "gw-1", BUDGET).await);
    assert_eq!(held(&t, &a).await, (true, 1));
    // The lock names its taker, where the Redis layout says.
    let owner: Option<String> = t
        .raw
        .get(page_scoped_key(&t.prefix, "lock", &a))
        .await
        .unwrap();
    assert_eq!(owner.as_deref(), Some("gw-1"));

    // Another request for the page finds the render under way, without asking its own check or
    // taking a second place.
    let checks = AtomicUsize::new(0);
    let check = async {
        checks.fetch_add(1, Ordering::SeqCst);
        None
    };
    let second = t
        .store
        .pages()
        .claim_render(&a, TENANT, "gw-2", LIFETIME, BUDGET, check)
        .await
        .unwrap();
    assert!(
        matches!(second, ClaimOutcome::AlreadyRendering),
        "{second:?}"
    );
    assert_eq!(checks.load(Ordering::SeqCst), 0);
    assert_eq!(held(&t, &a).await, (true, 1));
    // A refresh finds it too.
    assert!(
        t.store
            .pages()
            .claim_refresh(&a, "gw-2", LIFETIME)
            .await
            .unwrap()
            .is_none()
    );

    // The job could not be queued: the lock and the place are both free again.
    first.release().await.unwrap();
    assert_eq!(held(&t, &a).await, (false, 0));
    let again = claimed(claim(&t, &a, "gw-2", BUDGET).await);
    assert_eq!(held(&t, &a).await, (true, 1));
    again.release().await.unwrap();
}

#[tokio::test]
async fn announce_and_release_from_the_job_frees_both_and_wakes_a_subscriber() {
    let t = TestStore::start().await;
    let mut events = t.store.events().subscribe().await.unwrap();
    let a = page("/a");
    claimed(claim(&t, &a, "gw-1", BUDGET).await).hand_over();
    assert_eq!(held(&t, &a).await, (true, 1));

    // Jobs of other purposes carry no claim: a warm of the same page cannot end the bot's.
    let warm = RenderPurpose::Warm {
        job_id: "w1".into(),
    };
    assert!(RenderClaim::of_job(&t.store.pages(), &job(&a, warm)).is_none());

    // The worker rebuilds the claim from the bot's job and ends it.
    let outcome = RenderOutcome::Stored {
        status: 200,
        render_ms: 42,
    };
    RenderClaim::of_job(&t.store.pages(), &job(&a, RenderPurpose::Bot))
        .expect("a bot's job carries its claim")
        .announce_and_release(outcome.clone())
        .await
        .unwrap();
    assert_eq!(
        next_event(&mut events).await,
        StoreEvent::Rendered {
            page_key: a.page_key(),
            outcome
        }
    );
    assert_eq!(held(&t, &a).await, (false, 0));
}

#[tokio::test]
async fn a_render_the_budget_refuses_holds_no_lock() {
    let t = TestStore::start().await;
    let (a, b) = (page("/a"), page("/b"));
    let first = claimed(claim(&t, &a, "gw-1", BUDGET).await);

    // The tenant's one render is under way: the next page is refused, and its lock let go.
    match claim(&t, &b, "gw-1", BUDGET).await {
        ClaimOutcome::OverBudget { retry_after } => {
            assert!(retry_after <= LIFETIME && retry_after > LIFETIME - Duration::from_secs(5))
        }
        other => panic!("a second render was claimed: {other:?}"),
    }
    assert_eq!(held(&t, &b).await, (false, 1));
    first.release().await.unwrap();
}

#[tokio::test]
async fn a_render_the_callers_check_declines_holds_no_lock_and_counts_nothing() {
    let t = TestStore::start().await;
    let (a, b) = (page("/a"), page("/b"));
    // The check declines before any place is taken, so nothing counts against the minute's
    // renders: the one render the minute allows is still there afterwards.
    let one_a_minute = RenderBudget {
        concurrent: 0,
        per_minute: 1,
    };
    let declined = t
        .store
        .pages()
        .claim_render(&b, TENANT, "gw-1", LIFETIME, one_a_minute, async {
            Some("the queue is full".to_owned())
        })
        .await
        .unwrap();
    assert!(
        matches!(&declined, ClaimOutcome::Declined(reason) if reason == "the queue is full"),
        "{declined:?}"
    );
    assert_eq!(held(&t, &b).await, (false, 0));
    let minute = kiln_core::unix_millis_now() / 60_000;
    let counted = claimed(claim(&t, &b, "gw-1", one_a_minute).await);
    let refused = claim(&t, &a, "gw-1", one_a_minute).await;
    // Unless the minute turned meanwhile, a second render in it is refused.
    if kiln_core::unix_millis_now() / 60_000 == minute {
        assert!(
            matches!(refused, ClaimOutcome::OverBudget { .. }),
            "{refused:?}"
        );
        assert!(!t.store.pages().render_locked(&a).await.unwrap());
    }
    counted.release().await.unwrap();
}

#[tokio::test]
async fn a_refresh_claims_the_lock_only() {
    let t = TestStore::start().await;
    let a = page("/a");
    let refresh = t
        .store
        .pages()
        .claim_refresh(&a, "gw-1", LIFETIME)
        .await
        .unwrap()
        .expect("nobody renders the page");
    assert_eq!(held(&t, &a).await, (true, 0));
    assert!(matches!(
        claim(&t, &a, "gw-2", BUDGET).await,
        ClaimOutcome::AlreadyRendering
    ));
    refresh.release().await.unwrap();
    assert_eq!(held(&t, &a).await, (false, 0));
}
