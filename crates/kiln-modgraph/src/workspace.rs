//! The crates of a Cargo workspace, as `cargo metadata` lists its members' targets: each
//! library, binary, test, bench and example is a crate of its own, with its own module tree.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};
use serde::Deserialize;

/// One crate of the workspace.
#[derive(Debug, Clone)]
pub struct CrateRoot {
    /// The package it belongs to (`kiln-gateway`).
    pub package: String,
    /// How reports name it: the package for its library, `kiln-gateway (test it)` otherwise.
    pub label: String,
    /// Its root file.
    pub root: PathBuf,
    /// What cargo builds from it: `lib`, `bin`, `test`, `bench`, `example`.
    pub kind: String,
}

#[derive(Deserialize)]
struct Metadata {
    packages: Vec<Package>,
    workspace_root: PathBuf,
}

#[derive(Deserialize)]
struct Package {
    name: String,
    targets: Vec<Target>,
}

#[derive(Deserialize)]
struct Target {
    name: String,
    kind: Vec<String>,
    src_path: PathBuf,
}

/// The workspace root and the crates of every member package of the workspace `dir` is in,
/// ordered by label. Build scripts are left out.
pub fn crates(dir: &Path) -> anyhow::Result<(PathBuf, Vec<CrateRoot>)> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(dir)
        .output()
        .context("failed to run cargo metadata")?;
    if !output.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let metadata: Metadata =
        serde_json::from_slice(&output.stdout).context("failed to read cargo metadata's output")?;
    let mut crates = Vec::new();
    for package in metadata.packages {
        for target in package.targets {
            let kind = target.kind.first().map_or("", String::as_str);
            let label = match kind {
                "custom-build" => continue,
                "lib" | "rlib" | "dylib" | "proc-macro" => package.name.clone(),
                _ => format!("{} ({kind} {})", package.name, target.name),
            };
            crates.push(CrateRoot {
                package: package.name.clone(),
                label,
                root: target.src_path,
                kind: match kind {
                    "rlib" | "dylib" | "proc-macro" => "lib",
                    other => other,
                }
                .to_owned(),
            });
        }
    }
    crates.sort_by(|a, b| a.label.cmp(&b.label));
    Ok((metadata.workspace_root, crates))
}
