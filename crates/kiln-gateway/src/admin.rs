//! The admin port: liveness, readiness, and the metrics (`metrics.rs`).
//!
//! Readiness means "send me traffic": the gateway is ready once it knows the domains it serves.
//! A Redis outage does not make it unready, because it still serves everyone (people from the
//! origin, bots from the origin with `BYPASS`) — were it to say otherwise, an outage of the shared
//! Redis would take every gateway out of the load balancer at once and fail people's requests too.
//! The body says whether Redis answers, for whoever looks.

use crate::state::AppState;
use axum::extract::State;
use axum::routing::get;
use axum::{Router, http::StatusCode};

pub fn router(app: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(app)
}

async fn metrics(State(app): State<AppState>) -> impl axum::response::IntoResponse {
    let body = app.metrics.scrape(&app.queue).await;
    (
        [(
            http::header::CONTENT_TYPE,
            kiln_runtime::metrics::CONTENT_TYPE,
        )],
        body,
    )
}

async fn readyz(State(app): State<AppState>) -> (StatusCode, String) {
    let redis = app.store.health.ping().await;
    if !app.directory.is_loaded() {
        let why = match redis {
            Ok(()) => String::new(),
            Err(error) => format!(" (redis: {})", kiln_runtime::error_chain(&error)),
        };
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("domains not loaded yet{why}\n"),
        );
    }
    if !app
        .events_started
        .load(std::sync::atomic::Ordering::Acquire)
    {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not subscribed to render events yet: bots would get the origin's pages\n".into(),
        );
    }
    match redis {
        Ok(()) => (StatusCode::OK, "ready\n".into()),
        Err(error) => (
            StatusCode::OK,
            format!(
                "ready; redis: {} (bots get the origin's pages until it answers)\n",
                kiln_runtime::error_chain(&error)
            ),
        ),
    }
}
