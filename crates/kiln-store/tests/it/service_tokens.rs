//! The render service's tokens, as the control plane publishes them and gateways read them.

use crate::helpers::TestStore;
use kiln_store::{ServiceToken, token_hash};

fn token(id: &str, tenant: &str) -> ServiceToken {
    ServiceToken {
        id: id.into(),
        tenant_id: tenant.into(),
        rate_per_second: None,
        burst: None,
    }
}

#[tokio::test]
async fn a_token_is_found_by_its_hash_only_while_it_is_published() {
    let t = TestStore::start().await;
    let tokens = t.store.service_tokens();
    let secret = "kiln_svc_abcdefghijklmnopqrstuvwxyz012345";
    let hash = token_hash(secret);
    assert_eq!(hash.len(), 64);
    assert_ne!(
        hash,
        token_hash("kiln_svc_abcdefghijklmnopqrstuvwxyz012346")
    );

    assert_eq!(tokens.get(&hash).await.unwrap(), None);
    let mut limited = token("k1", "t1");
    limited.rate_per_second = Some(5);
    limited.burst = Some(10);
    tokens.put(&hash, &limited).await.unwrap();
    assert_eq!(tokens.get(&hash).await.unwrap(), Some(limited));
    // The token itself is no key: only its hash finds it.
    assert_eq!(tokens.get(secret).await.unwrap(), None);

    tokens.remove(&hash).await.unwrap();
    assert_eq!(tokens.get(&hash).await.unwrap(), None);
}

#[tokio::test]
async fn publishing_replaces_every_token_so_none_revoked_meanwhile_is_left() {
    let t = TestStore::start().await;
    let tokens = t.store.service_tokens();
    tokens.put("old", &token("k0", "t1")).await.unwrap();
    tokens
        .publish(&[
            ("a".into(), token("k1", "t1")),
            ("b".into(), token("k2", "t2")),
        ])
        .await
        .unwrap();
    assert_eq!(tokens.get("old").await.unwrap(), None);
    assert_eq!(tokens.get("b").await.unwrap(), Some(token("k2", "t2")));

    tokens.publish(&[]).await.unwrap();
    assert_eq!(tokens.get("a").await.unwrap(), None);
}

#[tokio::test]
async fn the_latest_use_of_a_token_is_kept_whatever_order_gateways_report_it_in() {
    let t = TestStore::start().await;
    let tokens = t.store.service_tokens();
    tokens.record_use("k1", 2_000).await.unwrap();
    tokens.record_use("k1", 1_000).await.unwrap();
    tokens.record_use("k2", 5).await.unwrap();
    let used = tokens.last_used().await.unwrap();
    assert_eq!(used.get("k1"), Some(&2_000));
    assert_eq!(used.get("k2"), Some(&5));

    tokens.forget_use("k1").await.unwrap();
    assert_eq!(tokens.last_used().await.unwrap().get("k1"), None);
}
