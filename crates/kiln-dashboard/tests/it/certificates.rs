//! `GET /api/v1/domains/{id}/certificate`: what the certificate manager recorded, for the tenant
//! that owns the domain only.

use crate::helpers::{ApiClient, TestServer, host_name, session_from, spawn_app};
use kiln_store::{CertificateState, CertificateStatus};
use serde_json::json;

#[tokio::test]
async fn a_domains_certificate_status_is_shown_to_its_tenant_only() {
    let app = spawn_app().await;
    let server = TestServer::start(&app).await;
    let mut alice = ApiClient::new(&server);
    let session = session_from(&alice.sign_up("alice@example.com").await);
    let bob = ApiClient::account_with_key(&server, "bob@example.com").await;
    let domain = alice
        .add_domain("shop.example.com", "http://127.0.0.1:5173")
        .await;
    let path = format!(
        "/api/v1/domains/{}/certificate",
        domain["id"].as_str().unwrap()
    );

    let none = alice.get(&path).await;
    assert_eq!(none.status, 200, "{:?}", none.body);
    assert_eq!(
        none.body,
        json!({"state": "none", "not_after": null, "last_error": null, "retry_at": null, "updated_at": null})
    );

    let host = host_name("shop.example.com");
    app.app
        .store
        .certificates()
        .put_status(
            &host,
            &CertificateStatus {
                state: CertificateState::Failed,
                not_after: Some(1_800_000_000),
                updated_at: 1_790_000_000,
                last_error: Some("the ACME server did not validate the order".to_owned()),
                failures: 2,
                retry_at: Some(1_790_000_120),
            },
        )
        .await
        .unwrap();
    let failed = alice.get(&path).await;
    assert_eq!(failed.status, 200);
    assert_eq!(
        failed.body,
        json!({
            "state": "failed",
            "not_after": "2027-01-15T08:00:00Z",
            "last_error": "the ACME server did not validate the order",
            "retry_at": "2026-09-21T14:15:20Z",
            "updated_at": "2026-09-21T14:13:20Z",
        })
    );

    // The domain's page says so too.
    let page = reqwest::Client::new()
        .get(format!(
            "{}/domains/{}",
            server.base,
            domain["id"].as_str().unwrap()
        ))
        .header("cookie", format!("kiln_session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("HTTPS: the last certificate request failed (the ACME server did not validate the order)"),
        "{html}"
    );

    let other = bob.get(&path).await;
    assert_eq!((other.status, other.code()), (404, "not_found"));
}
