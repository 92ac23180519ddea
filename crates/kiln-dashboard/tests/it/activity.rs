//! The render log from Redis to the API: entries written as the workers write them are copied into
//! Postgres and listed with how the request that caused them reached Kiln (`via`), and the listing
//! can be filtered by it.

use crate::helpers::{ApiClient, TestApp, TestServer, spawn_app};
use kiln_core::{DeviceClass, RenderVia};
use kiln_store::{RenderLogEntry, RenderLogOutcome, RenderLogPurpose};

const ORIGIN: &str = "http://127.0.0.1:5173";

/// A finished bot render of `url`, as a worker logs it.
fn entry(tenant_id: &str, domain_id: &str, url: &str, via: RenderVia) -> RenderLogEntry {
    let at = u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap() * 1000;
    RenderLogEntry {
        at,
        tab_at: Some(at),
        domain_id: domain_id.to_owned(),
        tenant_id: tenant_id.to_owned(),
        url: url.to_owned(),
        device: DeviceClass::Desktop,
        purpose: RenderLogPurpose::Bot,
        outcome: RenderLogOutcome::Stored,
        status: Some(200),
        reason: None,
        duration_ms: 1_200,
        bytes: 4_096,
        user_agent: Some("Mozilla/5.0 (compatible; Googlebot/2.1)".to_owned()),
        worker: Some("worker-1".to_owned()),
        via,
    }
}

/// Appends a finished bot render of `url` to the Redis render log, as a worker does.
pub async fn log_render(t: &TestApp, tenant_id: &str, domain_id: &str, url: &str, via: RenderVia) {
    let entry = entry(tenant_id, domain_id, url, via);
    t.app.store.render_log().append(&entry).await.unwrap();
}

/// An account with an API session and the domain `shop.example.com`: the client, the tenant's id
/// and the domain's.
async fn owner_with_domain(server: &TestServer) -> (ApiClient, String, String) {
    let mut owner = ApiClient::new(server);
    let signed_up = owner.sign_up("owner@example.com").await;
    let tenant_id = signed_up.body["tenant_id"].as_str().unwrap().to_owned();
    let domain = owner.add_domain("shop.example.com", ORIGIN).await;
    let domain_id = domain["id"].as_str().unwrap().to_owned();
    (owner, tenant_id, domain_id)
}

/// The URLs and ways in of a listing's renders, newest first.
fn listed(body: &serde_json::Value) -> Vec<(String, String)> {
    body["renders"]
        .as_array()
        .unwrap_or_else(|| panic!("no renders in {body}"))
        .iter()
        .map(|render| {
            (
                render["url"].as_str().unwrap().to_owned(),
                render["via"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn activity_renders_through_the_render_service_are_copied_listed_and_filtered_by_via() {
    let t = spawn_app().await;
    let server = TestServer::start(&t).await;
    let (owner, tenant_id, domain_id) = owner_with_domain(&server).await;

    let by_edge = "https://shop.example.com/by-edge";
    let by_service = "https://shop.example.com/by-service";
    log_render(&t, &tenant_id, &domain_id, by_edge, RenderVia::Edge).await;
    log_render(&t, &tenant_id, &domain_id, by_service, RenderVia::Service).await;

    // Copied (the listing catches up first) and shown with their ways in.
    let all = owner
        .get(&format!("/api/v1/renders?domain_id={domain_id}"))
        .await;
    assert_eq!(all.status, 200, "{:?}", all.body);
    let mut all = listed(&all.body);
    all.sort();
    assert_eq!(
        all,
        [
            (by_edge.to_owned(), "edge".to_owned()),
            (by_service.to_owned(), "service".to_owned()),
        ]
    );
    let stored: Vec<(String, String)> = sqlx::query_as("SELECT url, via FROM renders ORDER BY url")
        .fetch_all(&t.pg)
        .await
        .unwrap();
    assert_eq!(stored, all, "Postgres keeps the way in");

    for (via, expected) in [("service", by_service), ("edge", by_edge)] {
        let only = owner
            .get(&format!("/api/v1/renders?domain_id={domain_id}&via={via}"))
            .await;
        assert_eq!(only.status, 200, "{via}: {:?}", only.body);
        assert_eq!(
            listed(&only.body),
            [(expected.to_owned(), via.to_owned())],
            "{via}"
        );
    }

    // Another value, or none, is refused like any invalid choice.
    for bad in ["bogus", "", "Service"] {
        let refused = owner
            .get(&format!("/api/v1/renders?domain_id={domain_id}&via={bad}"))
            .await;
        assert_eq!(refused.status, 400, "{bad:?}: {:?}", refused.body);
        assert_eq!(refused.code(), "bad_request", "{bad:?}");
        assert!(
            refused.message().contains("via"),
            "{bad:?}: {:?}",
            refused.body
        );
    }
}

#[tokio::test]
async fn activity_entries_logged_before_via_existed_came_through_the_edge() {
    let t = spawn_app().await;
    let server = TestServer::start(&t).await;
    let (owner, tenant_id, domain_id) = owner_with_domain(&server).await;

    // An entry as an older worker wrote it, without `via`.
    let old = entry(
        &tenant_id,
        &domain_id,
        "https://shop.example.com/old",
        RenderVia::Service,
    );
    let mut old = serde_json::to_value(old).unwrap();
    old.as_object_mut().unwrap().remove("via");
    let old: RenderLogEntry = serde_json::from_value(old).unwrap();
    assert_eq!(old.via, RenderVia::Edge);
    t.app.store.render_log().append(&old).await.unwrap();

    let listing = owner
        .get(&format!("/api/v1/renders?domain_id={domain_id}&via=edge"))
        .await;
    assert_eq!(listing.status, 200, "{:?}", listing.body);
    assert_eq!(
        listed(&listing.body),
        [("https://shop.example.com/old".to_owned(), "edge".to_owned())]
    );
}
