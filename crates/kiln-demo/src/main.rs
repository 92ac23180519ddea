//! `kiln-demo`: serves the demo single-page app until SIGINT/SIGTERM.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().init();
    let settings = kiln_demo::Settings::from_env()?;
    let app = kiln_demo::Application::build(settings).await?;
    tracing::info!(port = app.port(), "demo origin listening");
    app.run_until_stopped(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}
