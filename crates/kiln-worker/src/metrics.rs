//! The worker's Prometheus metrics (`docs/metrics.md`), served at `/metrics` on the admin port:
//! render durations, the browser pool (read from it at each scrape) and the queues.

use crate::pool::{BrowserPool, RecycleReason};
use kiln_core::DeviceClass;
use kiln_queue::{QueueGauges, RenderQueue};
use kiln_runtime::metrics::prometheus_client::metrics::family::Family;
use kiln_runtime::metrics::prometheus_client::metrics::histogram::Histogram;
use kiln_runtime::metrics::{self, Registry};
use kiln_store::{RenderLogOutcome, RenderLogPurpose};
use std::time::Duration;

type Labels = Vec<(&'static str, &'static str)>;

/// A gauge read from the pool: its name, help and how to read it.
type PoolGauge = (&'static str, &'static str, fn(&BrowserPool) -> i64);

pub struct WorkerMetrics {
    registry: Registry,
    renders: Family<Labels, Histogram, fn() -> Histogram>,
    queues: QueueGauges,
}

impl WorkerMetrics {
    pub fn new(pool: &BrowserPool) -> Self {
        let mut registry = metrics::registry("worker", env!("CARGO_PKG_VERSION"));
        let renders = Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(|| {
            Histogram::new(metrics::RENDER_SECONDS_BUCKETS)
        });
        registry.register(
            "kiln_render_duration_seconds",
            "One render job from its start to its result, by outcome, device and purpose",
            renders.clone(),
        );
        let gauges: [PoolGauge; 5] = [
            ("kiln_browser_pool_size", "Browsers running", |p| {
                p.alive_browsers() as i64
            }),
            (
                "kiln_browser_tabs_in_use",
                "Renders holding a tab now",
                |p| p.tabs_in_use() as i64,
            ),
            (
                "kiln_browser_tabs_kept",
                "Tabs kept, scrubbed, for their domain's next render",
                |p| p.tabs_kept() as i64,
            ),
            (
                "kiln_browser_tabs_capacity",
                "Tabs the pool can lend at once",
                |p| p.tab_capacity() as i64,
            ),
            (
                "kiln_browser_memory_bytes",
                "Memory (PSS) of every browser process of the pool, as last measured",
                |p| p.memory_bytes() as i64,
            ),
        ];
        for (name, help, read) in gauges {
            let pool = pool.clone();
            metrics::gauge_fn(&mut registry, name, help, move || read(&pool));
        }
        for reason in RecycleReason::ALL {
            let pool = pool.clone();
            metrics::counter_fn(
                &mut registry,
                "kiln_browser_recycles_total",
                "Browsers replaced, by why",
                &[("reason", reason.as_str())],
                move || pool.recycled(reason),
            );
        }
        let pool_for_crashes = pool.clone();
        metrics::counter_fn(
            &mut registry,
            "kiln_browser_crashes_total",
            "Browsers that died or stopped answering",
            &[],
            move || {
                pool_for_crashes.recycled(RecycleReason::Crashed)
                    + pool_for_crashes.recycled(RecycleReason::Unresponsive)
            },
        );
        let queues = QueueGauges::register(&mut registry);
        metrics::redis_errors(&mut registry, "worker", || {
            kiln_store::redis_errors() + kiln_queue::redis_errors()
        });
        WorkerMetrics {
            registry,
            renders,
            queues,
        }
    }

    /// Counts one finished render job.
    pub fn render(
        &self,
        outcome: RenderLogOutcome,
        device: DeviceClass,
        purpose: RenderLogPurpose,
        took: Duration,
    ) {
        let outcome = match outcome {
            RenderLogOutcome::Stored => "stored",
            RenderLogOutcome::Rendered => "rendered",
            RenderLogOutcome::Failed => "failed",
        };
        let device = match device {
            DeviceClass::Desktop => "desktop",
            DeviceClass::Mobile => "mobile",
        };
        let purpose = match purpose {
            RenderLogPurpose::Bot => "bot",
            RenderLogPurpose::Warm => "warm",
            RenderLogPurpose::Preview => "preview",
            RenderLogPurpose::Parity => "parity",
        };
        self.renders
            .get_or_create(&vec![
                ("outcome", outcome),
                ("device", device),
                ("purpose", purpose),
            ])
            .observe(took.as_secs_f64());
    }

    /// The registry in Prometheus' text format, with the queues' figures read now (when the worker
    /// could connect to the queue).
    pub async fn scrape(&self, queue: Option<&RenderQueue>) -> String {
        if let Some(queue) = queue {
            self.queues.refresh(queue).await;
        }
        metrics::encode(&self.registry)
    }
}
