//! The `kiln-gateway` program, built as part of this package so that the fault tests (which kill,
//! stop and restart real gateway processes) always run the current code: Cargo builds a package's
//! own binaries for its tests, and only those.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    kiln_gateway::run_from_env().await
}
