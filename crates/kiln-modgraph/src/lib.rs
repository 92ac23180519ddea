//! Finds the loops in a crate's module graph: module `a` uses `b`, which (directly or through
//! others) uses `a` again. Such a loop means neither module can be understood, tested or moved
//! without the other. `scripts/test.sh` runs the check over the workspace and fails on any.
//!
//! The source is read as written, without compiling it: [`tree`] follows `mod` declarations
//! from the crate root, [`refs`] collects the paths each module names (in `use` items, code,
//! attributes, macro arguments and intra-doc links), [`resolve`] finds the module that defines
//! what each names, and [`loops`] finds the loops, leaving out a module's uses of its own
//! ancestors' items. [`sizes`] counts each package's non-test lines, so that no crate grows back
//! into one that holds everything.

pub mod loops;
pub mod refs;
pub mod resolve;
pub mod sizes;
pub mod tree;
pub mod workspace;

#[cfg(test)]
mod tests;

use std::path::Path;

pub use loops::{Evidence, Loop};
pub use tree::Tree;
pub use workspace::CrateRoot;

/// The loops of the crate whose root file is `root`, read from disk.
pub fn check(root: &Path) -> anyhow::Result<Vec<Loop>> {
    let tree = Tree::load(root, &mut |path| std::fs::read_to_string(path))?;
    Ok(loops::find(&tree))
}
