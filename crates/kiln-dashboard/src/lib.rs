//! The `kiln-dashboard` program: it composes the control plane (`kiln-control`) and its two front
//! ends, the REST API under `/api/v1` (`kiln-api`) and the web dashboard (`kiln-web`), into one
//! HTTP service ([`http`]), and gives the operator its commands ([`cli`]: serve, migrate, domains,
//! publish).
//!
//! Architecture invariant: nothing here is domain logic or a handler; this crate only reads the
//! settings, connects, and wires the parts together.

pub mod cli;
pub mod http;
pub mod metrics;

pub use kiln_control::{LogFormat, Settings};

/// Sends logs to stderr, so that command output on stdout stays clean for scripts; colours only when
/// stderr is a terminal.
pub fn init_telemetry(settings: &Settings) {
    kiln_runtime::Logs {
        filter: Some(&settings.log_filter),
        default_filter: kiln_control::settings::DEFAULT_LOG_FILTER,
        to_stderr: true,
        ..kiln_runtime::Logs::new(settings.log_format)
    }
    .init();
}
