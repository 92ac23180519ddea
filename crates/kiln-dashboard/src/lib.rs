//! The dashboard's HTTP service and command line: the REST API under `/api/v1` ([`api`]) and the web
//! dashboard ([`web`]) over the control plane (`kiln-control`), and the operator's commands
//! ([`cli`]).

pub mod api;
pub mod charts;
pub mod cli;
pub mod http;
pub mod metrics;
pub mod web;

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
