//! `kiln-worker`: sets up logging, reads settings and renders jobs until SIGINT/SIGTERM.

use kiln_worker::{Application, LogFormat, Settings};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    init_tracing(settings.log_format);
    let app = Application::build(settings).await?;
    app.run_until_stopped(shutdown_signal()).await
}

/// Logs to stdout, filtered by `RUST_LOG` (default `info`), as text or JSON lines.
///
/// chromiumoxide warns about every CDP message its protocol definitions do not know, which newer
/// Chromium versions send on every render; those warnings are silenced unless `RUST_LOG` names
/// chromiumoxide explicitly.
fn init_tracing(format: LogFormat) {
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned());
    let mut filter = EnvFilter::try_new(&spec).unwrap_or_else(|_| EnvFilter::new("info"));
    if !spec.contains("chromiumoxide") {
        filter = filter.add_directive(
            "chromiumoxide::handler=error"
                .parse()
                .expect("a valid directive"),
        );
    }
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
        LogFormat::Pretty => builder.init(),
    }
}

/// Completes on SIGTERM (what orchestrators send) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(error) => {
            tracing::error!(%error, "could not listen for SIGTERM; only Ctrl-C will stop the worker");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
