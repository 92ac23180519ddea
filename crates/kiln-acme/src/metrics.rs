//! The certificate manager's metrics and its admin port (`KILN_ACME_ADMIN_LISTEN`): `/metrics`,
//! `/healthz` and `/readyz` (Redis answers), for monitoring only.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use kiln_runtime::metrics::prometheus_client::metrics::counter::Counter;
use kiln_runtime::metrics::prometheus_client::metrics::family::Family;
use kiln_runtime::metrics::prometheus_client::metrics::gauge::Gauge;
use kiln_runtime::metrics::{self, Registry};
use kiln_store::{Certificates, Health, Store};
use std::sync::Arc;

type Labels = Vec<(&'static str, &'static str)>;

pub struct AcmeMetrics {
    registry: Registry,
    /// Counted for the gauge.
    stored: Certificates,
    redis: Health,
    issued: Counter,
    failed: Counter,
    certificates: Gauge,
}

impl AcmeMetrics {
    pub fn new(store: &Store) -> Self {
        let mut registry = metrics::registry("acme", env!("CARGO_PKG_VERSION"));
        let orders = Family::<Labels, Counter>::default();
        let issued = orders.get_or_create_owned(&vec![("result", "issued")]);
        let failed = orders.get_or_create_owned(&vec![("result", "failed")]);
        registry.register(
            "kiln_acme_orders",
            "Certificate orders finished, by result",
            orders,
        );
        let certificates = Gauge::default();
        registry.register(
            "kiln_acme_certificates",
            "Certificates held in Redis",
            certificates.clone(),
        );
        metrics::redis_errors(&mut registry, "acme", kiln_store::redis_errors);
        AcmeMetrics {
            registry,
            stored: store.certificates(),
            redis: store.health(),
            issued,
            failed,
            certificates,
        }
    }

    /// Counts one pass's orders: `issued` certificates stored, `failed` orders.
    pub fn passed(&self, issued: usize, failed: usize) {
        self.issued.inc_by(issued as u64);
        self.failed.inc_by(failed as u64);
    }

    /// The registry in Prometheus' text format, with the certificates counted now (the last count
    /// stays when Redis does not answer).
    pub async fn scrape(&self) -> String {
        if let Ok(index) = self.stored.index().await {
            self.certificates.set(index.len() as i64);
        }
        metrics::encode(&self.registry)
    }
}

/// The admin port's routes.
pub fn admin_router(metrics: Arc<AcmeMetrics>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(scrape))
        .with_state(metrics)
}

async fn scrape(State(metrics): State<Arc<AcmeMetrics>>) -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            kiln_runtime::metrics::CONTENT_TYPE,
        )],
        metrics.scrape().await,
    )
}

async fn readyz(State(metrics): State<Arc<AcmeMetrics>>) -> (StatusCode, String) {
    match metrics.redis.ping().await {
        Ok(()) => (StatusCode::OK, "ready\n".into()),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("redis is unreachable: {error}\n"),
        ),
    }
}
