//! `kiln-acme`: parses the command line, reads the settings, sets up logging and runs the command
//! (`run`: the certificate manager until SIGINT/SIGTERM; `sync`: an edge node's certificates).

use clap::Parser;
use kiln_acme::Settings;
use kiln_acme::cli::Cli;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Parsed first so that `--help` works without any configuration.
    let cli = Cli::parse();
    let settings = Settings::from_env()?;
    kiln_runtime::Logs::new(settings.log_format).init();
    kiln_acme::run(cli.command, settings).await
}
