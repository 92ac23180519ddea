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
    /// The largest share of the workspace's non-test lines one package may hold, in percent
    /// (checked only over the whole workspace).
    #[arg(long, value_name = "PERCENT", default_value_t = 25)]
    max_share: u32,
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

    // Shares only mean something over the whole workspace.
    let sizes_ok = !cli.packages.is_empty() || sizes_fit(&crates, cli.max_share)?;
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
    Ok(sizes_ok)
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

/// Whether every package holds at most `max_share` percent of the workspace's non-test lines
/// (its library's and binaries' files, less `#[cfg(test)]` items); prints the largest three.
fn sizes_fit(crates: &[kiln_modgraph::CrateRoot], max_share: u32) -> anyhow::Result<bool> {
    use std::collections::BTreeMap;
    let mut files: BTreeMap<&str, BTreeMap<std::path::PathBuf, usize>> = BTreeMap::new();
    for krate in crates.iter().filter(|c| c.kind == "lib" || c.kind == "bin") {
        let lines = kiln_modgraph::sizes::non_test_lines(&krate.root)
            .with_context(|| format!("failed to count the lines of {}", krate.label))?;
        files.entry(&krate.package).or_default().extend(lines);
    }
    let mut sizes: Vec<(&str, usize)> = files
        .iter()
        .map(|(package, files)| (*package, files.values().sum()))
        .collect();
    sizes.sort_by_key(|(_, lines)| std::cmp::Reverse(*lines));
    let total: usize = sizes.iter().map(|(_, lines)| lines).sum();
    let share = |lines: usize| lines as f64 * 100.0 / total.max(1) as f64;
    let largest: Vec<String> = sizes
        .iter()
        .take(3)
        .map(|(package, lines)| format!("{package} {lines} ({:.1} %)", share(*lines)))
        .collect();
    println!(
        "non-test lines: {total} in {} packages; the largest: {}",
        sizes.len(),
        largest.join(", ")
    );
    let over: Vec<&(&str, usize)> = sizes
        .iter()
        .filter(|(_, lines)| share(*lines) > f64::from(max_share))
        .collect();
    for (package, lines) in &over {
        println!(
            "{package} holds {:.1} % of the workspace's non-test lines ({lines}), more than \
             {max_share} %: split it by its jobs",
            share(*lines)
        );
    }
    Ok(over.is_empty())
}
