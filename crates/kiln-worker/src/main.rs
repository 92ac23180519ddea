//! `kiln-worker`: sets up logging, reads settings and renders jobs until SIGINT/SIGTERM.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    kiln_worker::run_from_env().await
}
