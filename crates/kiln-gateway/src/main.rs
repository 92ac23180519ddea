//! `kiln-gateway`: sets up logging, reads settings and runs the gateway until SIGINT/SIGTERM.

use kiln_gateway::{Application, Settings, init_tracing, shutdown_signal};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    init_tracing(settings.log_json);
    let app = Application::build(settings).await?;
    app.run_until_stopped(shutdown_signal()).await
}
