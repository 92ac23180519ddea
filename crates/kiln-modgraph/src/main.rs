//! `kiln-modgraph [--skip CRATE]... [PACKAGE]...`: checks every crate of the workspace it is run
//! in (or the packages named) for module loops, prints each as `crate: a -> b -> a` with the
//! references that make it, and exits 1 if any is found outside the skipped packages (2 if the
//! sources cannot be read).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use kiln_modgraph::{Loop, workspace};

#[derive(Parser)]
#[command(
    name = "kiln-modgraph",
    about = "Finds modules that use each other, directly or around a loop"
)]
struct Cli {
    /// A package whose loops are reported as a warning instead of failing the check (one not
    /// yet fixed). May be given more than once, or as a comma-separated list.
    #[arg(long, value_name = "PACKAGE", value_delimiter = ',')]
    skip: Vec<String>,
    /// Check only these packages (all of the workspace's by default).
    packages: Vec<String>,
}

fn main() -> ExitCode {
    match run(&Cli::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// Whether the check passed.
fn run(cli: &Cli) -> anyhow::Result<bool> {
    let cwd = std::env::current_dir().context("failed to read the working directory")?;
    let (root, crates) = workspace::crates(&cwd)?;
    let packages: BTreeSet<&str> = crates.iter().map(|c| c.package.as_str()).collect();
    for name in cli.skip.iter().chain(&cli.packages) {
        if !packages.contains(name.as_str()) {
            println!("warning: {name} is not a package of this workspace");
        }
    }

    let mut failed = 0;
    let mut checked = 0;
    let mut skipped_with_loops = BTreeSet::new();
    for krate in &crates {
        if !cli.packages.is_empty() && !cli.packages.contains(&krate.package) {
            continue;
        }
        let loops = kiln_modgraph::check(&krate.root)
            .with_context(|| format!("failed to read {}", krate.label))?;
        checked += 1;
        if loops.is_empty() {
            continue;
        }
        // A package named on the command line is checked in full, skip list or not.
        if cli.skip.contains(&krate.package) && !cli.packages.contains(&krate.package) {
            skipped_with_loops.insert(krate.package.as_str());
            println!(
                "warning: {} is on the skip list: its {} module loop(s) do not fail the check \
                 (name {} to list them)",
                krate.label,
                loops.len(),
                krate.package,
            );
            continue;
        }
        failed += loops.len();
        for found in &loops {
            print_loop(&krate.label, found, &root);
        }
    }
    // Only a check of the whole workspace knows that a skipped package has no loops left.
    for name in cli.skip.iter().filter(|_| cli.packages.is_empty()) {
        if packages.contains(name.as_str()) && !skipped_with_loops.contains(name.as_str()) {
            println!("warning: {name} has no module loops now: take it off the skip list");
        }
    }

    if failed > 0 {
        println!(
            "{failed} module loop(s): each module uses the next and the last the first; move what \
             they share to where it belongs, or to a module both use"
        );
        return Ok(false);
    }
    let what = if skipped_with_loops.is_empty() {
        ""
    } else {
        " outside the skip list"
    };
    println!("no module loops in {checked} crate(s){what}");
    Ok(true)
}

fn print_loop(label: &str, found: &Loop, root: &Path) {
    println!("{label}: {found}");
    let steps = found.modules.len();
    for (i, evidence) in found.evidence.iter().enumerate() {
        let (from, to) = (&found.modules[i], &found.modules[(i + 1) % steps]);
        for e in evidence.iter().take(3) {
            let file = e.file.strip_prefix(root).unwrap_or(&e.file);
            println!(
                "    {from} -> {to}: {}:{} {} {}",
                file.display(),
                e.line,
                e.kind,
                e.path
            );
        }
        if evidence.len() > 3 {
            println!("    {from} -> {to}: and {} more", evidence.len() - 3);
        }
    }
}
