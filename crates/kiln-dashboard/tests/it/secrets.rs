//! No secret reaches the logs: passwords, API keys, session tokens and the session-signing secret,
//! whatever the request does with them (signing up, logging in with the wrong password, using a
//! revoked key, a malformed `Authorization` header), at the most verbose log level.

use crate::helpers::{ApiClient, PASSWORD, TestServer, session_from, spawn_app};
use serde_json::json;

#[tokio::test]
async fn secrets_never_reach_the_logs_even_at_trace_level() {
    let logs = kiln_testkit::logs::capture("trace");
    let app = spawn_app().await;
    let server = TestServer::start(&app).await;

    let mut user = ApiClient::new(&server);
    let created = user.sign_up("jane@example.com").await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let session = session_from(&created);

    let key = user.post("/api/v1/api-keys", json!({ "name": "ci" })).await;
    assert_eq!(key.status, 201, "{:?}", key.body);
    let secret = key.body["secret"].as_str().unwrap().to_owned();
    let script = user.with_key(&secret);
    assert_eq!(script.get("/api/v1/domains").await.status, 200);

    let new_password = "an entirely different passphrase";
    let anonymous = ApiClient::new(&server);
    let wrong = anonymous
        .post(
            "/api/v1/auth/login",
            json!({ "email": "jane@example.com", "password": "wrong password, logged?" }),
        )
        .await;
    assert_eq!(wrong.status, 401);
    let changed = user
        .post(
            "/api/v1/auth/password",
            json!({ "current_password": PASSWORD, "new_password": new_password }),
        )
        .await;
    assert_eq!(changed.status, 200, "{:?}", changed.body);

    let id = key.body["id"].as_str().unwrap();
    assert_eq!(
        user.delete(&format!("/api/v1/api-keys/{id}")).await.status,
        200
    );
    assert_eq!(script.get("/api/v1/domains").await.status, 401);
    let malformed = user.with_key(&format!("{secret}-and-more"));
    assert_eq!(malformed.get("/api/v1/domains").await.status, 401);

    let text = logs.text();
    assert!(
        text.contains("kiln_dashboard"),
        "the dashboard's logs were not captured: {text}"
    );
    let session_secret = app
        .settings
        .session_secret
        .as_ref()
        .map(|s| secrecy::ExposeSecret::expose_secret(s).to_owned())
        .unwrap();
    for (what, value) in [
        ("the password", PASSWORD),
        ("a mistyped password", "wrong password, logged?"),
        ("the new password", new_password),
        ("the API key", secret.as_str()),
        ("the API key's secret part", &secret[18..]),
        ("the session token", session.as_str()),
        (
            "the session token's signature",
            session.rsplit('.').next().unwrap(),
        ),
        ("the session-signing secret", session_secret.as_str()),
    ] {
        assert!(
            !text.contains(value),
            "{what} is in the logs:\n{}",
            text.lines()
                .filter(|line| line.contains(value))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}
