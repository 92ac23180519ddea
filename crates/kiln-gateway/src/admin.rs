//! Health endpoints on the admin port: liveness, and readiness (Redis reachable, domains loaded).

use crate::state::AppState;
use axum::extract::State;
use axum::routing::get;
use axum::{Router, http::StatusCode};

pub fn router(app: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(app)
}

async fn readyz(State(app): State<AppState>) -> (StatusCode, String) {
    if let Err(error) = app.store.ping().await {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("redis: {error}\n"));
    }
    if !app.directory.is_loaded() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "domains not loaded yet\n".into(),
        );
    }
    (StatusCode::OK, "ready\n".into())
}
