//! The render service's side in the control plane: service tokens (created, listed, revoked, and
//! published to Redis under their hash for the gateways) and domains used only through the render
//! service.

use crate::helpers::{ApiClient, TestServer, host_name, spawn_app};
use kiln_control::directory;
use kiln_control::domains;
use kiln_store::{ServiceToken, token_hash};
use std::time::{Duration, Instant};

/// What the gateways find under `token`, if anything.
async fn published(t: &crate::helpers::TestApp, token: &str) -> Option<ServiceToken> {
    t.app
        .store
        .service_tokens()
        .get(&token_hash(token))
        .await
        .unwrap()
}

#[tokio::test]
async fn service_tokens_are_shown_once_published_for_the_gateways_and_withdrawn_on_revoke() {
    let t = spawn_app().await;
    let server = TestServer::start(&t).await;
    let mut owner = ApiClient::new(&server);
    let signed_up = owner.sign_up("owner@example.com").await;
    let tenant_id = signed_up.body["tenant_id"].as_str().map(str::to_owned);

    let created = owner
        .post(
            "/api/v1/service-tokens",
            serde_json::json!({ "name": " shop's prerender-node ", "rate_per_second": 5, "burst": 20 }),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let body = &created.body;
    let token = body["token"].as_str().unwrap().to_owned();
    let id = body["id"].as_str().unwrap().to_owned();
    assert!(
        token.starts_with("kiln_svc_") && token.len() == 41,
        "{token}"
    );
    assert_eq!(body["name"], "shop's prerender-node");
    assert_eq!(body["prefix"], &token[..17]);
    assert_eq!(
        (body["rate_per_second"].clone(), body["burst"].clone()),
        (5.into(), 20.into())
    );
    assert!(body["created_at"].is_string());

    let gateway_view = published(&t, &token)
        .await
        .expect("published under its hash");
    assert_eq!(gateway_view.id, id);
    if let Some(tenant_id) = tenant_id {
        assert_eq!(gateway_view.tenant_id, tenant_id);
    }
    assert_eq!(
        (gateway_view.rate_per_second, gateway_view.burst),
        (Some(5), Some(20))
    );
    let stored: String = sqlx::query_scalar(
        "SELECT encode(token_hash, 'hex') FROM service_tokens WHERE id = $1::uuid",
    )
    .bind(&id)
    .fetch_one(&t.pg)
    .await
    .unwrap();
    assert_eq!(stored, token_hash(&token), "only the hash is stored");

    // Defaults: no limits of its own.
    let plain = owner
        .post(
            "/api/v1/service-tokens",
            serde_json::json!({ "name": "staging" }),
        )
        .await;
    assert_eq!(plain.status, 201, "{:?}", plain.body);
    assert_eq!(plain.body["rate_per_second"], serde_json::Value::Null);
    let plain_token = plain.body["token"].as_str().unwrap().to_owned();
    assert_eq!(published(&t, &plain_token).await.unwrap().burst, None);

    // A gateway saw the token used: the listing says when, and never shows a token.
    let used_at = 1_800_000_000_000;
    t.app
        .store
        .service_tokens()
        .record_use(&id, used_at)
        .await
        .unwrap();
    let listed = owner.get("/api/v1/service-tokens").await;
    assert_eq!(listed.status, 200, "{:?}", listed.body);
    let text = listed.body.to_string();
    assert!(
        !text.contains(&token) && !text.contains(&plain_token),
        "{text}"
    );
    let tokens = listed.body["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 2);
    let mine = tokens
        .iter()
        .find(|entry| entry["id"] == id.as_str())
        .unwrap();
    assert_eq!(mine["last_used_at"], "2027-01-15T08:00:00Z");
    assert_eq!(mine["revoked_at"], serde_json::Value::Null);
    assert_eq!(mine["prefix"], &token[..17]);

    // Refusals: a bad name or limit, and an API key (keys cannot manage tokens).
    for (input, expected) in [
        (serde_json::json!({ "name": "" }), "name"),
        (
            serde_json::json!({ "name": "x", "rate_per_second": 0 }),
            "rate_per_second",
        ),
        (serde_json::json!({ "name": "x", "burst": 10001 }), "burst"),
    ] {
        let refused = owner.post("/api/v1/service-tokens", input.clone()).await;
        assert_eq!(refused.status, 422, "{input}: {:?}", refused.body);
        assert!(
            refused.message().contains(expected),
            "{input}: {:?}",
            refused.body
        );
    }
    let by_key = ApiClient::account_with_key(&server, "scripts@example.com").await;
    let refused = by_key
        .post("/api/v1/service-tokens", serde_json::json!({ "name": "x" }))
        .await;
    assert_eq!(refused.status, 403, "{:?}", refused.body);

    // Revoking withdraws it from the gateways at once, and forgets its use there.
    let revoked = owner.delete(&format!("/api/v1/service-tokens/{id}")).await;
    assert_eq!(revoked.status, 204, "{:?}", revoked.body);
    assert_eq!(published(&t, &token).await, None);
    let used = t.app.store.service_tokens().last_used().await.unwrap();
    assert!(!used.contains_key(&id), "{used:?}");
    assert!(
        published(&t, &plain_token).await.is_some(),
        "the other one stays"
    );
    let listed = owner.get("/api/v1/service-tokens").await;
    let mine = listed.body["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["id"] == id.as_str())
        .unwrap()
        .clone();
    assert!(mine["revoked_at"].is_string(), "{mine}");
    // Again: still fine (a retry after Redis failed), and nothing is published back.
    let again = owner.delete(&format!("/api/v1/service-tokens/{id}")).await;
    assert_eq!(again.status, 204, "{:?}", again.body);
    assert_eq!(published(&t, &token).await, None);

    let actions: Vec<String> = t
        .audit_events()
        .await
        .into_iter()
        .filter(|event| event.action.starts_with("service_token."))
        .map(|event| format!("{} {}", event.action, event.target))
        .collect();
    assert_eq!(
        actions,
        [
            format!("service_token.create {}", &token[..17]),
            format!("service_token.create {}", &plain_token[..17]),
            format!("service_token.revoke {}", &token[..17]),
        ]
    );
    let events = t.audit_events().await;
    let logged = serde_json::to_string(
        &events
            .iter()
            .map(|e| (&e.before, &e.after))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert!(
        !logged.contains(&token[17..]),
        "the audit log never holds a token"
    );
}

#[tokio::test]
async fn another_tenants_service_token_is_not_found() {
    let t = spawn_app().await;
    let server = TestServer::start(&t).await;
    let mut alice = ApiClient::new(&server);
    alice.sign_up("alice@example.com").await;
    let mut bob = ApiClient::new(&server);
    bob.sign_up("bob@example.com").await;
    let created = alice
        .post(
            "/api/v1/service-tokens",
            serde_json::json!({ "name": "alice's" }),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let id = created.body["id"].as_str().unwrap();
    let token = created.body["token"].as_str().unwrap();

    let theirs = bob.delete(&format!("/api/v1/service-tokens/{id}")).await;
    assert_eq!(theirs.status, 404, "{:?}", theirs.body);
    assert_eq!(theirs.code(), "not_found");
    let unknown = bob
        .delete(&format!("/api/v1/service-tokens/{}", uuid::Uuid::now_v7()))
        .await;
    assert_eq!(
        (unknown.status, unknown.body.clone()),
        (theirs.status, theirs.body.clone()),
        "another tenant's token is exactly like one that does not exist"
    );
    assert!(published(&t, token).await.is_some(), "still live");
    let listed = bob.get("/api/v1/service-tokens").await;
    assert_eq!(listed.body["tokens"], serde_json::json!([]));
}

#[tokio::test]
async fn a_redis_that_lost_its_data_gets_the_live_service_tokens_back() {
    let t = spawn_app().await;
    let server = TestServer::start(&t).await;
    let mut owner = ApiClient::new(&server);
    owner.sign_up("owner@example.com").await;
    let mut tokens = Vec::new();
    for name in ["live", "revoked"] {
        let created = owner
            .post(
                "/api/v1/service-tokens",
                serde_json::json!({ "name": name }),
            )
            .await;
        assert_eq!(created.status, 201, "{:?}", created.body);
        tokens.push((
            created.body["id"].as_str().unwrap().to_owned(),
            created.body["token"].as_str().unwrap().to_owned(),
        ));
    }
    let (revoked_id, revoked) = &tokens[1];
    let (_, live) = &tokens[0];
    let done = owner
        .delete(&format!("/api/v1/service-tokens/{revoked_id}"))
        .await;
    assert_eq!(done.status, 204);

    t.flush_redis().await;
    assert_eq!(published(&t, live).await, None);
    // The dashboard notices by itself that Redis lost the directory and publishes it whole again,
    // tokens included.
    let deadline = Instant::now() + Duration::from_secs(20);
    while published(&t, live).await.is_none() {
        assert!(
            Instant::now() < deadline,
            "the live token was not published again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        published(&t, revoked).await,
        None,
        "a revoked token stays out"
    );

    // And `publish` (the command's function) replaces whatever Redis held.
    t.app
        .store
        .service_tokens()
        .put("stale", &published(&t, live).await.unwrap())
        .await
        .unwrap();
    let report = directory::publish_all(&t.app).await.unwrap();
    assert_eq!(report.service_tokens, 1);
    assert!(
        t.app
            .store
            .service_tokens()
            .get("stale")
            .await
            .unwrap()
            .is_none()
    );
    assert!(published(&t, live).await.is_some());
}

#[tokio::test]
async fn a_service_only_domain_takes_its_public_site_as_origin_and_is_published_so() {
    let t = spawn_app().await;
    let server = TestServer::start(&t).await;
    let mut owner = ApiClient::new(&server);
    owner.sign_up("owner@example.com").await;

    // Its origin is https://<host>, checked like any origin: here it does not resolve.
    let unresolvable = owner
        .post(
            "/api/v1/domains",
            serde_json::json!({ "hostname": "shop.example.com", "service_only": true }),
        )
        .await;
    assert_eq!(unresolvable.status, 422, "{:?}", unresolvable.body);
    assert_eq!(unresolvable.code(), "origin_unresolvable");
    assert!(
        unresolvable.message().contains("shop.example.com"),
        "{:?}",
        unresolvable.body
    );
    // Another origin is refused, and so is none for an ordinary domain.
    let other = owner
        .post(
            "/api/v1/domains",
            serde_json::json!({
                "hostname": "shop.example.com",
                "origin": "https://origin.example.com",
                "service_only": true,
            }),
        )
        .await;
    assert_eq!(other.status, 422, "{:?}", other.body);
    assert!(
        other.message().contains("https://shop.example.com"),
        "{:?}",
        other.body
    );
    let none = owner
        .post(
            "/api/v1/domains",
            serde_json::json!({ "hostname": "shop.example.com" }),
        )
        .await;
    assert_eq!(none.status, 422, "{:?}", none.body);
    assert!(
        none.message().contains("origin is required"),
        "{:?}",
        none.body
    );
    assert!(t.pg_domains().await.is_empty());

    // Registered (as the tests' DNS cannot resolve a public name, straight into Postgres, as
    // `add_domain` would store it), it is listed and published as service-only.
    let host = host_name("render-only.example.com");
    let origin = domains::service_origin(&host).unwrap();
    assert_eq!(origin.as_str(), "https://render-only.example.com");
    let me = owner.get("/api/v1/auth/me").await;
    let tenant_id: uuid::Uuid = me.body["tenant_id"].as_str().unwrap().parse().unwrap();
    let record = t
        .insert_domain(tenant_id, "render-only.example.com", true)
        .await;
    directory::publish_all(&t.app).await.unwrap();
    let config = t.redis_domain("render-only.example.com").await.unwrap();
    assert!(config.service_only);
    assert_eq!(config.origin, "https://render-only.example.com");
    assert_eq!(config, record.config());

    let shown = owner.get(&format!("/api/v1/domains/{}", record.id)).await;
    assert_eq!(shown.body["service_only"], true, "{:?}", shown.body);
    assert_eq!(shown.body["origin"], "https://render-only.example.com");
    // Its origin stays its public site.
    let moved = owner
        .patch(
            &format!("/api/v1/domains/{}", record.id),
            serde_json::json!({ "origin": "https://elsewhere.example.com" }),
        )
        .await;
    assert_eq!(moved.status, 422, "{:?}", moved.body);
    assert!(
        moved.message().contains("render service"),
        "{:?}",
        moved.body
    );
}
