//! Kiln's control plane: accounts and sessions, API keys and the render service's tokens, domains and their verification, the
//! cache (purge, warm, preview), parity checks, activity and usage, the charts' numbers, the audit
//! log and sitemaps, over Postgres and the store. Postgres is the source of truth for tenants and
//! their domains; what gateways and workers need (the domain directory) is published to Redis
//! through `kiln-store`.
//!
//! Both front ends (the REST API, `kiln-api`, and the web dashboard, `kiln-web`) and the operator's
//! command line call this crate and nothing below it.
//!
//! Architecture invariants:
//! - No HTTP types in its API: callers pass plain values and get domain types and errors (each a
//!   `thiserror` enum that keeps its source), which each front end turns into its own answer.
//! - It is the only writer of the Postgres schema in `migrations/`, and the only crate that depends
//!   on sqlx; only [`db`] sees `sqlx::Error`.
//! - Every operation on a tenant's data takes the tenant's id and filters by it: another tenant's
//!   ids are not found, exactly like ids that do not exist.

pub mod accounts;
pub mod activity;
pub mod api_keys;
pub mod audit;
pub mod cache;
pub mod certificates;
pub mod db;
pub mod directory;
pub mod domains;
pub mod hostnames;
pub mod origin;
pub mod parity;
pub mod service_tokens;
pub mod settings;
pub mod sitemaps;
pub mod state;
pub mod stats;
pub mod tokens;

pub use settings::{LogFormat, Settings};
pub use state::App;

use uuid::Uuid;

/// The built-in tenant that owns domains an operator registers (inserted by `0001_initial.sql`).
pub const OPERATOR_TENANT_ID: Uuid = Uuid::from_u128(1);

pub use kiln_runtime::error_chain;

/// A time stored as Unix milliseconds (as Redis holds them), as a date; the epoch if out of range.
pub fn from_millis(ms: u64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}
