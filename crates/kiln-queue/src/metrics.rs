//! The queues' gauges, `kiln_queue_depth` and `kiln_queue_oldest_job_age_seconds`, which gateways
//! and workers both serve (an autoscaler reads them from whichever is up).

use crate::{QueueKind, RenderQueue};
use kiln_runtime::metrics::Registry;
use kiln_runtime::metrics::prometheus_client::metrics::family::Family;
use kiln_runtime::metrics::prometheus_client::metrics::gauge::Gauge;

type Labels = Vec<(&'static str, &'static str)>;

const QUEUES: [(QueueKind, &str); 3] = [
    (QueueKind::Render, "render"),
    (QueueKind::Warm, "warm"),
    (QueueKind::Parity, "parity"),
];

/// The two gauges, read from Redis at each scrape.
#[derive(Clone)]
pub struct QueueGauges {
    depth: Family<Labels, Gauge>,
    age: Family<Labels, Gauge>,
}

impl QueueGauges {
    pub fn register(registry: &mut Registry) -> Self {
        let depth = Family::<Labels, Gauge>::default();
        registry.register(
            "kiln_queue_depth",
            "Jobs waiting for a worker: held for their tenant's turn, waiting or scheduled (the same on every gateway and worker; aggregate with max)",
            depth.clone(),
        );
        let age = Family::<Labels, Gauge>::default();
        registry.register(
            "kiln_queue_oldest_job_age_seconds",
            "How long the job that has waited longest has waited (0 when none waits)",
            age.clone(),
        );
        QueueGauges { depth, age }
    }

    /// Reads both queues' figures from Redis. A queue Redis cannot be asked about keeps its last
    /// figures (and the error is counted in `kiln_redis_errors_total`).
    pub async fn refresh(&self, queue: &RenderQueue) {
        for (kind, name) in QUEUES {
            let labels = vec![("queue", name)];
            if let Ok(depth) = queue.depth(kind).await {
                let waiting = depth.held + depth.waiting + depth.scheduled;
                self.depth.get_or_create(&labels).set(waiting as i64);
            }
            if let Ok(oldest) = queue.oldest_waiting(kind).await {
                let waited_ms =
                    oldest.map_or(0, |at| kiln_core::unix_millis_now().saturating_sub(at));
                self.age
                    .get_or_create(&labels)
                    .set((waited_ms / 1000) as i64);
            }
        }
    }
}
