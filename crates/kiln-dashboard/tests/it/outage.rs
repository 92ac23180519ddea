//! Postgres going away: the dashboard says it is unavailable (a 503 with a clear message, in the API
//! and on its web pages), its readiness probe fails, and once Postgres is back it serves again by
//! itself, without a restart. (Gateways and workers never talk to Postgres: nothing of theirs is
//! affected, which the architecture guarantees rather than a test.)

use crate::helpers::*;
use kiln_testkit::postgres::{TestDatabase, TestPostgres};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_going_away_is_said_plainly_and_the_dashboard_recovers_by_itself() {
    let postgres = TestPostgres::start();
    let app = spawn_app_on(
        TestDatabase::existing(postgres.url()),
        LOOPBACK_FOR_EVERYONE,
    )
    .await;
    let server = TestServer::start(&app).await;
    let mut api = ApiClient::new(&server);
    api.sign_up("owner@outage.example").await;
    assert_eq!(api.get("/api/v1/domains").await.status, 200);

    let errors_before = server.metric("kiln_postgres_errors_total").await;
    postgres.stop();
    let down = Instant::now();
    let response = api.get("/api/v1/domains").await;
    let answered = down.elapsed();
    assert_eq!(response.status, 503, "{:?}", response.body);
    assert_eq!(response.code(), "unavailable", "{:?}", response.body);
    assert!(
        response.message().to_lowercase().contains("unavailable"),
        "{:?}",
        response.body
    );
    assert!(
        answered < Duration::from_secs(10),
        "answered in {answered:?}"
    );

    // The web pages say so too, on a page of their own.
    let page = api
        .request(reqwest::Method::GET, "/domains")
        .header(
            "cookie",
            format!("kiln_session={}", api.session.as_ref().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 503);
    let html = page.text().await.unwrap();
    assert!(html.contains("unavailable"), "{html}");

    let (status, ready) = server.get_json("/readyz").await;
    assert_eq!(status, 503, "{ready}");
    assert!(
        ready["postgres"].as_str().unwrap().starts_with("failed"),
        "{ready}"
    );
    assert_eq!(ready["redis"], "ok", "{ready}");
    assert!(
        server.metric("kiln_postgres_errors_total").await > errors_before,
        "the failed queries are counted"
    );
    assert!(
        server
            .metric(r#"kiln_dashboard_requests_total{area="api",status="5xx"}"#)
            .await
            >= 1.0
    );

    // Back: the same session works again, with no restart of the dashboard.
    postgres.start_again();
    let back = Instant::now();
    loop {
        let response = api.get("/api/v1/domains").await;
        if response.status == 200 {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(30),
            "still {} after Postgres came back: {:?}",
            response.status,
            response.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "FIGURES postgres down: the API answered 503 in {} ms; serving again {} ms after Postgres returned",
        answered.as_millis(),
        back.elapsed().as_millis()
    );
    assert_eq!(server.get_json("/readyz").await.0, 200);
}
