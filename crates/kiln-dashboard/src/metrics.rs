//! The dashboard's Prometheus metrics (`docs/metrics.md`), served at `/metrics` on its admin port
//! (`KILN_DASHBOARD_ADMIN_LISTEN`), never on the port users reach.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use kiln_runtime::metrics::prometheus_client::metrics::counter::Counter;
use kiln_runtime::metrics::prometheus_client::metrics::family::Family;
use kiln_runtime::metrics::prometheus_client::metrics::histogram::Histogram;
use kiln_runtime::metrics::{self, Registry};
use std::sync::Arc;
use std::time::Instant;

type Labels = Vec<(&'static str, &'static str)>;

const AREAS: [&str; 3] = ["api", "web", "other"];
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

pub struct DashboardMetrics {
    registry: Registry,
    /// `[area][status class]`.
    requests: [[Counter; STATUS_CLASSES.len()]; AREAS.len()],
    durations: [Histogram; AREAS.len()],
}

impl DashboardMetrics {
    pub fn new() -> Self {
        let mut registry = metrics::registry("dashboard", env!("CARGO_PKG_VERSION"));
        let requests_family = Family::<Labels, Counter>::default();
        let durations_family =
            Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(|| {
                Histogram::new(metrics::REQUEST_SECONDS_BUCKETS)
            });
        let requests = AREAS.map(|area| {
            STATUS_CLASSES.map(|status| {
                requests_family.get_or_create_owned(&vec![("area", area), ("status", status)])
            })
        });
        let durations =
            AREAS.map(|area| durations_family.get_or_create_owned(&vec![("area", area)]));
        registry.register(
            "kiln_dashboard_requests",
            "Requests answered, by area (api, web, other) and status class",
            requests_family,
        );
        registry.register(
            "kiln_dashboard_request_duration_seconds",
            "Time to a response's head, by area",
            durations_family,
        );
        metrics::counter_fn(
            &mut registry,
            "kiln_postgres_errors_total",
            "Database operations that failed (constraint violations aside)",
            &[],
            kiln_control::db::postgres_errors,
        );
        metrics::redis_errors(&mut registry, "dashboard", || {
            kiln_store::redis_errors() + kiln_queue::redis_errors()
        });
        DashboardMetrics {
            registry,
            requests,
            durations,
        }
    }

    pub fn encode(&self) -> String {
        metrics::encode(&self.registry)
    }
}

impl Default for DashboardMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Middleware counting every request the main port answers.
pub async fn count(
    State(metrics): State<Arc<DashboardMetrics>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let path = request.uri().path();
    let area = if path.starts_with("/api/") {
        0
    } else if path == "/healthz" || path == "/readyz" || path.starts_with("/static/") {
        2
    } else {
        1
    };
    let response = next.run(request).await;
    let status = usize::from((response.status().as_u16() / 100).clamp(1, 5)) - 1;
    metrics.requests[area][status].inc();
    metrics.durations[area].observe(started.elapsed().as_secs_f64());
    response
}
