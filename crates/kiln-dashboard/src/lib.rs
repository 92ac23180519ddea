//! Kiln's control plane. Postgres is the source of truth for tenants and their domains; the dashboard
//! publishes to Redis what gateways and workers need (the domain directory), through `kiln-store`.
//!
//! Architecture invariants: this crate is the only writer of the Postgres schema in `migrations/`, and
//! the only one that depends on sqlx (and only [`db`] sees `sqlx::Error`). Domain logic lives in
//! [`domains`], shared by the command line today and the REST API later; [`cli`] and [`http`] only
//! parse input and print or serve results.

pub mod accounts;
pub mod activity;
pub mod api;
pub mod api_keys;
pub mod cache;
pub mod charts;
pub mod cli;
pub mod db;
pub mod directory;
pub mod domains;
pub mod hostnames;
pub mod http;
pub mod metrics;
pub mod origin;
pub mod parity;
pub mod settings;
pub mod sitemaps;
pub mod state;
pub mod stats;
pub mod web;

pub use settings::{LogFormat, Settings};
pub use state::App;

use uuid::Uuid;

/// The built-in tenant that owns domains an operator registers (inserted by `0001_initial.sql`).
pub const OPERATOR_TENANT_ID: Uuid = Uuid::from_u128(1);

/// Sends logs to stderr, so that command output on stdout stays clean for scripts; colours only when
/// stderr is a terminal.
pub fn init_telemetry(settings: &Settings) {
    kiln_runtime::Logs {
        filter: Some(&settings.log_filter),
        default_filter: settings::DEFAULT_LOG_FILTER,
        to_stderr: true,
        ..kiln_runtime::Logs::new(settings.log_format)
    }
    .init();
}
