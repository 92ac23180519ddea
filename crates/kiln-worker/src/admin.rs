//! The admin server: liveness and readiness probes for the orchestrator, and the metrics.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use kiln_store::Health;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::metrics::WorkerMetrics;
use crate::pool::BrowserPool;
use kiln_queue::RenderQueue;

#[derive(Clone)]
pub struct AdminState(Arc<Inner>);

struct Inner {
    redis: Health,
    pool: BrowserPool,
    metrics: Arc<WorkerMetrics>,
    queue: Option<RenderQueue>,
    stopping: AtomicBool,
}

impl AdminState {
    pub fn new(
        redis: Health,
        pool: BrowserPool,
        metrics: Arc<WorkerMetrics>,
        queue: Option<RenderQueue>,
    ) -> Self {
        AdminState(Arc::new(Inner {
            redis,
            pool,
            metrics,
            queue,
            stopping: AtomicBool::new(false),
        }))
    }

    /// From now on, readiness fails: the worker takes no new jobs.
    pub fn set_stopping(&self) {
        self.0.stopping.store(true, Ordering::Relaxed);
    }
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn metrics(State(state): State<AdminState>) -> impl axum::response::IntoResponse {
    let body = state.0.metrics.scrape(state.0.queue.as_ref()).await;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            kiln_runtime::metrics::CONTENT_TYPE,
        )],
        body,
    )
}

async fn healthz() -> &'static str {
    "ok"
}

/// Ready when Redis answers and at least one browser is up.
async fn readyz(State(state): State<AdminState>) -> (StatusCode, String) {
    if state.0.stopping.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down".to_owned());
    }
    if let Err(error) = state.0.redis.ping().await {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "redis is unreachable: {}",
                kiln_runtime::error_chain(&error)
            ),
        );
    }
    if state.0.pool.alive_browsers() == 0 {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "no browser is running".to_owned(),
        );
    }
    (StatusCode::OK, "ready".to_owned())
}
