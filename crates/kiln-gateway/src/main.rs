//! `kiln-gateway`: sets up logging, reads settings and runs the gateway until SIGINT/SIGTERM.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    kiln_gateway::run_from_env().await
}
