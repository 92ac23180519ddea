//! `kiln-acme`'s command line: `run` (the certificate manager, [`crate::Application`]) and `sync`
//! (an edge node's copy of the certificates, [`crate::CertSync`]). Both read their settings from
//! `KILN_*` variables (see [`crate::Settings`]); [`crate::run`] runs the one asked for.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "kiln-acme",
    about = "TLS certificates for Kiln's customer domains"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Order and renew certificates for every verified domain (one process per deployment is
    /// enough; more are safe).
    Run,
    /// Write the stored certificates to KILN_ACME_CERT_DIR for this edge node's nginx, and keep
    /// them in step (run one per edge node).
    Sync {
        /// Sync once and exit.
        #[arg(long)]
        once: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::{Cli, Command};
    use clap::{CommandFactory, Parser};

    #[test]
    fn parses_the_commands_and_refuses_anything_else() {
        Cli::command().debug_assert();
        let parse = |args: &[&str]| Cli::try_parse_from(args).map(|cli| cli.command);
        assert!(matches!(parse(&["kiln-acme", "run"]), Ok(Command::Run)));
        assert!(matches!(
            parse(&["kiln-acme", "sync"]),
            Ok(Command::Sync { once: false })
        ));
        assert!(matches!(
            parse(&["kiln-acme", "sync", "--once"]),
            Ok(Command::Sync { once: true })
        ));
        for refused in [
            &["kiln-acme"][..],
            &["kiln-acme", "renew"],
            &["kiln-acme", "run", "--once"],
            &["kiln-acme", "--version"],
        ] {
            assert!(parse(refused).is_err(), "{refused:?}");
        }
    }
}
