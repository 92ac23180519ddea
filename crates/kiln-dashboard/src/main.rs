//! The `kiln-dashboard` binary: parses the command line, reads the settings, sets up logging and hands
//! over to the library.

use clap::Parser;
use kiln_dashboard::cli::{self, Cli};
use kiln_dashboard::{Settings, init_telemetry};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    // Parsed first so that `--help` works without any configuration.
    let cli = Cli::parse();
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(error) => return fail(&error),
    };
    init_telemetry(&settings);
    match cli::run(cli, settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&error),
    }
}

fn fail(error: &anyhow::Error) -> ExitCode {
    eprintln!("error: {error:#}");
    ExitCode::FAILURE
}
