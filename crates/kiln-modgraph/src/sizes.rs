//! How big each package is, in non-test lines: every line of the files its library and binaries
//! are made of, less the items under `#[cfg(test)]` (unit-test modules, inline or in files of their
//! own). Integration tests, benches and examples are not counted. The check keeps any one package
//! from growing back into a crate that holds everything (ARCHITECTURE.md: no crate holds more than
//! a quarter of the workspace).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use syn::spanned::Spanned;
use syn::{Attribute, Item};

use crate::tree::{ModuleId, Tree};

/// The non-test lines of each file of the crate whose root file is `root`.
pub fn non_test_lines(root: &Path) -> anyhow::Result<BTreeMap<PathBuf, usize>> {
    let tree = Tree::load(root, &mut |path| std::fs::read_to_string(path))?;
    let test_only = test_only_modules(&tree);
    let files: BTreeSet<&Path> = tree
        .modules
        .iter()
        .enumerate()
        .filter(|(id, _)| !test_only.contains(id))
        .map(|(_, module)| module.file.as_path())
        .collect();
    let mut lines = BTreeMap::new();
    for file in files {
        let source = std::fs::read_to_string(file)
            .with_context(|| format!("failed to read {}", file.display()))?;
        lines.insert(file.to_owned(), count(&source, file)?);
    }
    Ok(lines)
}

/// The lines of `source`, less those of its items (at any depth of inline modules) that are under
/// `#[cfg(test)]`.
pub(crate) fn count(source: &str, file: &Path) -> anyhow::Result<usize> {
    let parsed =
        syn::parse_file(source).with_context(|| format!("failed to parse {}", file.display()))?;
    let mut test_lines = BTreeSet::new();
    mark_tests(&parsed.items, &mut test_lines);
    Ok(source.lines().count() - test_lines.len())
}

fn mark_tests(items: &[Item], lines: &mut BTreeSet<usize>) {
    for item in items {
        let attrs = match item {
            Item::Mod(m) => &m.attrs,
            Item::Fn(f) => &f.attrs,
            Item::Impl(i) => &i.attrs,
            Item::Use(u) => &u.attrs,
            Item::Struct(s) => &s.attrs,
            Item::Enum(e) => &e.attrs,
            Item::Const(c) => &c.attrs,
            Item::Static(s) => &s.attrs,
            Item::Macro(m) => &m.attrs,
            _ => continue,
        };
        if is_cfg_test(attrs) {
            let span = item.span();
            lines.extend(span.start().line..=span.end().line);
        } else if let Item::Mod(m) = item
            && let Some((_, inner)) = &m.content
        {
            mark_tests(inner, lines);
        }
    }
}

/// Modules declared under `#[cfg(test)]` (`#[cfg(test)] mod tests;`) and everything below them.
fn test_only_modules(tree: &Tree) -> BTreeSet<ModuleId> {
    let mut test_only = BTreeSet::new();
    for (id, module) in tree.modules.iter().enumerate() {
        let Some(parent) = module.parent else {
            continue;
        };
        let declared_for_tests = tree.modules[parent].items.iter().any(|item| {
            matches!(item, Item::Mod(decl) if decl.ident == module.name && is_cfg_test(&decl.attrs))
        });
        if declared_for_tests || test_only.contains(&parent) {
            test_only.insert(id);
        }
    }
    test_only
}

/// Whether the attributes hold a plain `#[cfg(test)]`.
fn is_cfg_test(attrs: &[Attribute]) -> bool {
    attrs.iter().any(|attr| {
        attr.path().is_ident("cfg")
            && attr
                .parse_args::<syn::Ident>()
                .is_ok_and(|ident| ident == "test")
    })
}
