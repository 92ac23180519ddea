//! The Prometheus metrics every Kiln program serves at `/metrics` on its admin port
//! (`docs/metrics.md` lists them all).
//!
//! Each program keeps its own [`Registry`] (not a process-wide one), so that tests running several
//! programs in one process read each one's figures apart. [`registry`] starts one with what every
//! program reports: `kiln_build_info` and the `process_*` family read from `/proc/self` at each
//! scrape. Values that already live somewhere else (a pool's size, an error count kept by a
//! library) are read when scraped through [`gauge_fn`] and [`counter_fn`] rather than copied into
//! a gauge on every change.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
pub use prometheus_client::registry::Registry;
use std::borrow::Cow;

pub use prometheus_client;

/// The media type of [`encode`]'s output (OpenMetrics text, which Prometheus reads natively).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Histogram buckets for request handling, in seconds: 0.25 ms to 60 s. Cache hits answer in well
/// under a millisecond, bots waiting for a render in seconds.
pub const REQUEST_SECONDS_BUCKETS: [f64; 18] = [
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    20.0, 30.0, 60.0,
];

/// Histogram buckets for renders, in seconds: 50 ms to 2 minutes (the longest render timeout).
pub const RENDER_SECONDS_BUCKETS: [f64; 14] = [
    0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 30.0, 120.0,
];

/// A registry with `kiln_build_info{service, version}` and the process metrics.
pub fn registry(service: &'static str, version: &'static str) -> Registry {
    let mut registry = Registry::default();
    registry.register(
        "kiln_build",
        "Which Kiln program and version answers",
        Info::new(vec![("service", service), ("version", version)]),
    );
    registry.register_collector(Box::new(ProcessCollector));
    registry
}

/// The registry in Prometheus' (OpenMetrics) text format.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::with_capacity(8 * 1024);
    // Writing into a String cannot fail; a metric whose encoding fails is a bug in this crate.
    prometheus_client::encoding::text::encode(&mut out, registry)
        .expect("metrics encode into a string");
    out
}

/// Registers a gauge whose value `read` gives at each scrape.
pub fn gauge_fn(
    registry: &mut Registry,
    name: &'static str,
    help: &'static str,
    read: impl Fn() -> i64 + Send + Sync + 'static,
) {
    registry.register_collector(Box::new(FnMetric {
        name,
        help,
        kind: MetricType::Gauge,
        labels: Vec::new(),
        read: Box::new(move || read() as f64),
    }));
}

/// Registers a counter whose total `read` gives at each scrape, with fixed `labels`. `name` is
/// the full name, ending in `_total`.
pub fn counter_fn(
    registry: &mut Registry,
    name: &'static str,
    help: &'static str,
    labels: &[(&'static str, &'static str)],
    read: impl Fn() -> u64 + Send + Sync + 'static,
) {
    let name = name.strip_suffix("_total").unwrap_or(name);
    registry.register_collector(Box::new(FnMetric {
        name,
        help,
        kind: MetricType::Counter,
        labels: labels.to_vec(),
        read: Box::new(move || read() as f64),
    }));
}

/// Registers `kiln_redis_errors_total{service}`, read from `read` (the Redis error counts the
/// program's store and queue keep) at each scrape.
pub fn redis_errors(
    registry: &mut Registry,
    service: &'static str,
    read: impl Fn() -> u64 + Send + Sync + 'static,
) {
    counter_fn(
        registry,
        "kiln_redis_errors_total",
        "Redis commands that failed (timeouts, lost connections, errors)",
        &[("service", service)],
        read,
    );
}

struct FnMetric {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    labels: Vec<(&'static str, &'static str)>,
    read: Box<dyn Fn() -> f64 + Send + Sync>,
}

impl std::fmt::Debug for FnMetric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnMetric")
            .field("name", &self.name)
            .finish()
    }
}

impl Collector for FnMetric {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let value = (self.read)();
        let metric = encoder.encode_descriptor(self.name, self.help, None, self.kind)?;
        let labels: Vec<(Cow<'static, str>, Cow<'static, str>)> = self
            .labels
            .iter()
            .map(|(k, v)| (Cow::Borrowed(*k), Cow::Borrowed(*v)))
            .collect();
        match self.kind {
            MetricType::Counter if labels.is_empty() => {
                ConstCounter::new(value as u64).encode(metric)
            }
            MetricType::Counter => {
                let mut metric = metric;
                ConstCounter::new(value as u64).encode(metric.encode_family(&labels)?)
            }
            _ => ConstGauge::new(value as i64).encode(metric),
        }
    }
}

/// `process_*` metrics, read from `/proc/self` at each scrape (nothing elsewhere than Linux).
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(process) = ProcessStats::read() else {
            return Ok(());
        };
        let gauge = |encoder: &mut DescriptorEncoder, name, help, value: i64| {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(value).encode(metric)
        };
        gauge(
            &mut encoder,
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            process.resident_bytes as i64,
        )?;
        gauge(
            &mut encoder,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes",
            process.virtual_bytes as i64,
        )?;
        gauge(
            &mut encoder,
            "process_open_fds",
            "Open file descriptors",
            process.open_fds as i64,
        )?;
        if let Some(start) = process.start_time_seconds {
            gauge(
                &mut encoder,
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch in seconds",
                start as i64,
            )?;
        }
        let metric = encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(process.cpu_seconds).encode(metric)
    }
}

/// What `/proc/self` says of this process.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProcessStats {
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub open_fds: u64,
    pub cpu_seconds: f64,
    pub start_time_seconds: Option<u64>,
}

/// Clock ticks per second in `/proc`'s times. Linux fixes USER_HZ at 100 for user space on every
/// architecture Kiln runs on; asking `sysconf` would take `unsafe` libc calls, which the workspace
/// forbids, for the same answer.
const TICKS_PER_SECOND: f64 = 100.0;

impl ProcessStats {
    /// This process's figures, or `None` where there is no `/proc` (not Linux).
    pub fn read() -> Option<Self> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let boot_time = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| parse_boot_time(&s));
        let open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
        let mut stats = parse(&status, &stat, boot_time)?;
        stats.open_fds = open_fds;
        Some(stats)
    }
}

/// Figures from the text of `/proc/self/status` and `/proc/self/stat`, and the boot time.
fn parse(status: &str, stat: &str, boot_time: Option<u64>) -> Option<ProcessStats> {
    let kb = |field: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .map(|n| n * 1024)
    };
    // The command name (field 2) is in parentheses and may hold spaces: count fields after it.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // After the name, field 3 (state) is index 0: utime is field 14, stime 15, starttime 22.
    let number = |field: usize| fields.get(field - 3)?.parse::<u64>().ok();
    let cpu_ticks = number(14)? + number(15)?;
    let start_ticks = number(22)?;
    Some(ProcessStats {
        resident_bytes: kb("VmRSS:").unwrap_or(0),
        virtual_bytes: kb("VmSize:").unwrap_or(0),
        open_fds: 0,
        cpu_seconds: cpu_ticks as f64 / TICKS_PER_SECOND,
        start_time_seconds: boot_time
            .map(|boot| boot + (start_ticks as f64 / TICKS_PER_SECOND) as u64),
    })
}

fn parse_boot_time(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|n| n.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    #[test]
    fn proc_files_are_read_field_by_field() {
        let status = "Name:\tkiln\nVmSize:\t  2048 kB\nVmRSS:\t   512 kB\nThreads:\t4\n";
        // A command name with a space and a parenthesis must not shift the fields.
        let stat = "4242 (kiln (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 1000 \
                    2097152 128 18446744073709551615";
        let stats = parse(status, stat, Some(1_700_000_000)).unwrap();
        assert_eq!(stats.resident_bytes, 512 * 1024);
        assert_eq!(stats.virtual_bytes, 2048 * 1024);
        assert_eq!(stats.cpu_seconds, 3.0);
        assert_eq!(stats.start_time_seconds, Some(1_700_000_010));
        assert_eq!(parse(status, "garbage", None), None);
        assert_eq!(
            parse_boot_time("cpu 1 2 3\nbtime 1699999999\n"),
            Some(1699999999)
        );
    }

    #[test]
    fn this_process_is_measured() {
        let stats = ProcessStats::read().expect("tests run on Linux");
        assert!(stats.resident_bytes > 1024 * 1024, "{stats:?}");
        assert!(stats.open_fds >= 3, "{stats:?}");
        assert!(stats.start_time_seconds.is_some());
    }

    #[test]
    fn a_registry_encodes_build_info_process_figures_and_read_values() {
        let mut registry = registry("test-service", "1.2.3");
        let requests = Counter::<u64>::default();
        registry.register("kiln_test_requests", "Requests", requests.clone());
        requests.inc_by(3);
        gauge_fn(&mut registry, "kiln_test_pool_size", "Pool", || 7);
        counter_fn(
            &mut registry,
            "kiln_test_errors_total",
            "Errors",
            &[("service", "test-service")],
            || 11,
        );
        let text = encode(&registry);
        for line in [
            "kiln_build_info{service=\"test-service\",version=\"1.2.3\"} 1",
            "kiln_test_requests_total 3",
            "kiln_test_pool_size 7",
            "kiln_test_errors_total{service=\"test-service\"} 11",
            "# TYPE process_resident_memory_bytes gauge",
            "# TYPE process_cpu_seconds counter",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "`{line}` missing from:\n{text}"
            );
        }
    }
}
