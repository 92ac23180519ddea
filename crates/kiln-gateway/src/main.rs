//! `kiln-gateway`: sets up logging, reads settings and runs the gateway until SIGINT/SIGTERM.

/// Every request allocates and frees dozens of small buffers (headers, URLs, log fields) on two or
/// more threads at once; glibc's malloc, with its arena locks and consolidation, took a fifth of the
/// gateway's CPU time under load, and mimalloc's thread-local free lists a fraction of that.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    kiln_gateway::run_from_env().await
}
