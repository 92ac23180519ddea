//! TLS certificates for customer domains. The manager ([`Manager`]) orders a certificate by ACME
//! HTTP-01 for every verified domain in the published directory, renews it before it expires and
//! keeps it in Redis with its private key sealed; on every edge node, [`CertSync`] writes them to
//! the directory nginx reads a certificate from on each handshake.
//!
//! Architecture invariant: never serves customer traffic (its admin port is for monitoring) and
//! never talks to Postgres; what it knows of
//! domains is the published directory; private keys are never logged and never stored unsealed
//! outside the edge's certificate directory.

pub mod cert;
pub mod manager;
pub mod metrics;
pub mod seal;
pub mod settings;
pub mod sync;

pub use manager::{Manager, ManagerSettings, PassReport};
pub use seal::{SealError, Sealer};
pub use settings::{Secret, Settings};
pub use sync::{CertSync, FALLBACK_NAME, SyncReport};

use anyhow::Context;
use kiln_store::{Store, StoreSettings};
use std::time::Duration;

/// Connects to the deployment's Redis. Certificate work is in the background, so commands may
/// take longer than on a request path.
pub async fn connect(settings: &Settings) -> anyhow::Result<Store> {
    let mut store_settings = StoreSettings::new(&settings.redis_url, &settings.redis_prefix);
    store_settings.command_timeout = Duration::from_secs(5);
    store_settings.pool_size = 2;
    Store::connect(store_settings)
        .await
        .context("failed to connect to redis")
}
