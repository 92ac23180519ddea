//! `kiln-acme run`: the certificate manager. `kiln-acme sync`: keeps an edge node's certificate
//! directory in step with Redis. Both read their settings from `KILN_*` variables (see `Settings`).

use anyhow::Context;
use clap::{Parser, Subcommand};
use kiln_acme::{CertSync, Manager, Sealer, Settings};

#[derive(Parser)]
#[command(
    name = "kiln-acme",
    about = "TLS certificates for Kiln's customer domains"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Order and renew certificates for every verified domain (one process per deployment is
    /// enough; more are safe).
    Run,
    /// Write the stored certificates to KILN_ACME_CERT_DIR for this edge node's nginx, and keep
    /// them in step (run one per edge node).
    Sync {
        /// Sync once and exit.
        #[arg(long)]
        once: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::from_env()?;
    kiln_runtime::Logs::new(settings.log_format).init();
    let store = kiln_acme::connect(&settings).await?;
    let sealer = Sealer::new(&settings.secret);
    match cli.command {
        Command::Run => {
            let manager = Manager::new(store, sealer, (&settings).into());
            if let Some(address) = settings.admin_listen {
                let listener = tokio::net::TcpListener::bind(address)
                    .await
                    .with_context(|| {
                        format!("failed to listen on {address} (KILN_ACME_ADMIN_LISTEN)")
                    })?;
                let admin = kiln_acme::metrics::admin_router(manager.metrics());
                tokio::spawn(async move {
                    if let Err(error) = axum::serve(listener, admin).await {
                        tracing::error!(%error, "the admin server failed");
                    }
                });
            }
            tracing::info!(acme.directory = %settings.directory_url, "certificate manager running");
            manager.run(kiln_runtime::shutdown_signal()).await;
        }
        Command::Sync { once } => {
            let mut sync = CertSync::new(store, sealer, &settings.cert_dir);
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
        }
    }
    Ok(())
}
