//! The `kiln-worker` program, built as part of this package so that the fault tests (which kill
//! real worker processes mid-render) always run the current code: Cargo builds a package's own
//! binaries for its tests, and only those.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    kiln_worker::run_from_env().await
}
