//! The gateway's Prometheus metrics (`docs/metrics.md`), served at `/metrics` on the admin port.
//!
//! Every label combination is created once, up front, and each request only bumps atomics it
//! already holds: no map look-up or lock on the request path beyond the histogram's own.

use kiln_queue::{QueueGauges, RenderQueue};
use kiln_runtime::metrics::prometheus_client::metrics::counter::Counter;
use kiln_runtime::metrics::prometheus_client::metrics::family::Family;
use kiln_runtime::metrics::prometheus_client::metrics::gauge::Gauge;
use kiln_runtime::metrics::prometheus_client::metrics::histogram::Histogram;
use kiln_runtime::metrics::{self, Registry};
use std::sync::Arc;
use std::time::Duration;

/// Who a request was served as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientClass {
    Person = 0,
    Bot = 1,
}

const CLASSES: [(ClientClass, &str); 2] =
    [(ClientClass::Person, "person"), (ClientClass::Bot, "bot")];

/// How a request used the render cache: `X-Kiln-Cache`'s values, or none.
const CACHE_STATUSES: [&str; 5] = ["none", "hit", "stale", "miss", "bypass"];

const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Why a gateway queued a render.
#[derive(Clone, Copy, Debug)]
pub enum QueuedFor {
    /// A bot missed.
    Bot,
    /// A bot was served a stale page, and it is rendered again in the background.
    Refresh,
}

type Labels = Vec<(&'static str, &'static str)>;

pub struct GatewayMetrics {
    registry: Registry,
    /// `[class][cache]`.
    requests: [[Counter; CACHE_STATUSES.len()]; 2],
    durations: [[Histogram; CACHE_STATUSES.len()]; 2],
    /// `[class][status class]`.
    responses: [[Counter; STATUS_CLASSES.len()]; 2],
    renders_queued: [Counter; 2],
    open_connections: Gauge,
    /// Whole reads of the domain directory, bumped by `crate::directory::Directory`.
    directory_reads: Counter,
    queues: QueueGauges,
}

impl GatewayMetrics {
    pub fn new() -> Self {
        let mut registry = metrics::registry("gateway", env!("CARGO_PKG_VERSION"));
        let requests_family = Family::<Labels, Counter>::default();
        let durations_family = Family::<Labels, Histogram>::new_with_constructor(
            (|| Histogram::new(metrics::REQUEST_SECONDS_BUCKETS)) as fn() -> Histogram,
        );
        let responses_family = Family::<Labels, Counter>::default();
        let queued_family = Family::<Labels, Counter>::default();
        let requests = CLASSES.map(|(_, class)| {
            CACHE_STATUSES.map(|cache| {
                requests_family.get_or_create_owned(&vec![("class", class), ("cache", cache)])
            })
        });
        let durations = CLASSES.map(|(_, class)| {
            CACHE_STATUSES.map(|cache| {
                durations_family.get_or_create_owned(&vec![("class", class), ("cache", cache)])
            })
        });
        let responses = CLASSES.map(|(_, class)| {
            STATUS_CLASSES.map(|status| {
                responses_family.get_or_create_owned(&vec![("class", class), ("status", status)])
            })
        });
        let renders_queued = ["bot", "refresh"]
            .map(|purpose| queued_family.get_or_create_owned(&vec![("purpose", purpose)]));
        registry.register(
            "kiln_gateway_requests",
            "Requests answered, by client class and cache status",
            requests_family,
        );
        registry.register(
            "kiln_gateway_request_duration_seconds",
            "Time from a request's head to its response's head",
            durations_family,
        );
        registry.register(
            "kiln_gateway_responses",
            "Responses, by client class and status class",
            responses_family,
        );
        registry.register(
            "kiln_gateway_renders_queued",
            "Render jobs this gateway queued",
            queued_family,
        );
        let open_connections = Gauge::default();
        registry.register(
            "kiln_gateway_open_connections",
            "Client connections open now",
            open_connections.clone(),
        );
        let directory_reads = Counter::default();
        registry.register(
            "kiln_gateway_directory_reads",
            "Whole reads of the domain directory from Redis: at start, after a full publish, and when the changes since the last read cannot be told",
            directory_reads.clone(),
        );
        let queues = QueueGauges::register(&mut registry);
        metrics::redis_errors(&mut registry, "gateway", || {
            kiln_store::redis_errors() + kiln_queue::redis_errors()
        });
        GatewayMetrics {
            registry,
            requests,
            durations,
            responses,
            renders_queued,
            open_connections,
            directory_reads,
            queues,
        }
    }

    /// Counts one answered request. `cache` is the response's `X-Kiln-Cache`, if any.
    pub fn request(&self, class: ClientClass, cache: Option<&[u8]>, status: u16, took: Duration) {
        let cache = match cache {
            Some(b"HIT") => 1,
            Some(b"STALE") => 2,
            Some(b"MISS") => 3,
            Some(b"BYPASS") => 4,
            _ => 0,
        };
        let class = class as usize;
        self.requests[class][cache].inc();
        self.durations[class][cache].observe(took.as_secs_f64());
        let status = usize::from((status / 100).clamp(1, 5)) - 1;
        self.responses[class][status].inc();
    }

    pub fn render_queued(&self, why: QueuedFor) {
        self.renders_queued[why as usize].inc();
    }

    /// The counter of the domain directory's whole reads, for the directory to bump.
    pub fn directory_reads(&self) -> Counter {
        self.directory_reads.clone()
    }

    /// A client connection that counts as open until the guard is dropped.
    pub fn connection(self: &Arc<Self>) -> ConnectionGuard {
        self.open_connections.inc();
        ConnectionGuard(Arc::clone(self))
    }

    /// The registry in Prometheus' text format, with the queues' depth and age read now.
    pub async fn scrape(&self, queue: &RenderQueue) -> String {
        self.queues.refresh(queue).await;
        metrics::encode(&self.registry)
    }
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        Self::new()
    }
}

pub struct ConnectionGuard(Arc<GatewayMetrics>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.open_connections.dec();
    }
}
