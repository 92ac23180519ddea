//! TLS certificates for customer domains, and the `kiln-acme` program. The manager ([`Manager`])
//! orders a certificate by ACME HTTP-01 for every verified domain in the published directory, renews
//! it before it expires and keeps it in Redis with its private key sealed; `kiln-acme run` runs it as
//! a service ([`Application`]: built from the settings, then run until stopped, with its admin port).
//! On every edge node, [`CertSync`] (`kiln-acme sync`) writes the certificates to the directory nginx
//! reads a certificate from on each handshake.
//!
//! Architecture invariant: never serves customer traffic (its admin port is for monitoring) and
//! never talks to Postgres; what it knows of
//! domains is the published directory; private keys are never logged and never stored unsealed
//! outside the edge's certificate directory.

pub mod cert;
pub mod cli;
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
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;

/// The certificate manager as `kiln-acme run` runs it: connected to Redis, with its admin port
/// (`/metrics`, `/healthz`, `/readyz`) bound.
pub struct Application {
    manager: Manager,
    /// The admin port, unless `KILN_ACME_ADMIN_LISTEN` is `off`.
    admin_listener: Option<TcpListener>,
    directory_url: String,
}

impl Application {
    /// Connects to Redis and binds the admin port (`KILN_ACME_ADMIN_LISTEN`; port 0 picks a free
    /// one, see [`Application::admin_port`]).
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let store = connect(&settings).await?;
        let manager = Manager::new(&store, Sealer::new(&settings.secret), (&settings).into());
        let admin_listener = match settings.admin_listen {
            Some(address) => Some(TcpListener::bind(address).await.with_context(|| {
                format!("failed to listen on {address} (KILN_ACME_ADMIN_LISTEN)")
            })?),
            None => None,
        };
        Ok(Application {
            manager,
            admin_listener,
            directory_url: settings.directory_url,
        })
    }

    /// The admin port, if there is one.
    pub fn admin_port(&self) -> Option<u16> {
        self.admin_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok())
            .map(|address| address.port())
    }

    /// Orders and renews certificates until SIGTERM or SIGINT.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(kiln_runtime::shutdown_signal()).await
    }

    /// Makes the manager's passes (see [`Manager::run`]) and answers the admin port until `stop`
    /// completes (a pass under way is finished first). The admin port closes with the manager; a
    /// failure of its server is logged and leaves the manager running.
    pub async fn run_until(self, stop: impl Future<Output = ()>) -> anyhow::Result<()> {
        let admin = self.admin_listener.map(|listener| {
            let admin = metrics::admin_router(self.manager.metrics());
            tokio::spawn(async move {
                if let Err(error) = axum::serve(listener, admin).await {
                    tracing::error!(%error, "the admin server failed");
                }
            })
        });
        tracing::info!(acme.directory = %self.directory_url, "certificate manager running");
        self.manager.run(stop).await;
        if let Some(admin) = admin {
            admin.abort();
        }
        Ok(())
    }
}

/// Runs one of the program's commands with `settings`.
pub async fn run(command: cli::Command, settings: Settings) -> anyhow::Result<()> {
    match command {
        cli::Command::Run => {
            Application::build(settings)
                .await?
                .run_until_stopped()
                .await
        }
        cli::Command::Sync { once } => {
            let store = connect(&settings).await?;
            let mut sync = CertSync::new(&store, Sealer::new(&settings.secret), &settings.cert_dir);
            if once {
                let report = sync.sync_once().await?;
                tracing::info!(
                    certs.written = report.written.len(),
                    certs.removed = report.removed.len(),
                    "certificates synced"
                );
            } else {
                tracing::info!(certs.dir = %settings.cert_dir.display(), "certificate sync running");
                sync.run(settings.sync_interval, kiln_runtime::shutdown_signal())
                    .await;
            }
            Ok(())
        }
    }
}

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
