//! One crate's module tree, read as rustc reads it: from the crate root, following every `mod`
//! declaration to its file (`a.rs` or `a/mod.rs`, or what `#[path]` names) and into inline
//! `mod a { ... }` blocks.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use syn::{AttrStyle, Attribute, Item, ItemMod};

/// A module's index in [`Tree::modules`]; the crate root is [`Tree::ROOT`].
pub type ModuleId = usize;

/// One module: its items and where they were read from.
pub struct Module {
    /// The module's own name (`crate` for the root).
    pub name: String,
    pub parent: Option<ModuleId>,
    /// The file its items were read from (an inline module's is its parent's).
    pub file: PathBuf,
    /// Its inner attributes (`//!` docs among them). The outer ones, on its `mod` declaration,
    /// are its parent's to read.
    pub attrs: Vec<Attribute>,
    pub items: Vec<Item>,
    /// Its `mod` declarations, by name.
    pub children: BTreeMap<String, ModuleId>,
}

/// A crate's modules, the root first.
pub struct Tree {
    pub modules: Vec<Module>,
}

impl Tree {
    pub const ROOT: ModuleId = 0;

    /// Reads the crate whose root file is `root` (`src/lib.rs`, `src/main.rs`, `tests/it/main.rs`,
    /// ...). `read` reads one source file; a `mod` whose file it cannot find is an error unless
    /// the declaration has a `#[cfg]`, which may well exclude it on this platform.
    pub fn load(
        root: &Path,
        read: &mut dyn FnMut(&Path) -> io::Result<String>,
    ) -> anyhow::Result<Self> {
        let source = read(root).with_context(|| format!("failed to read {}", root.display()))?;
        let mut loader = Loader {
            modules: Vec::new(),
            read,
        };
        let body = parse(root, &source)?;
        loader.add(
            None,
            "crate".to_owned(),
            root.to_owned(),
            body,
            Dirs::both(parent_dir(root)),
        )?;
        Ok(Tree {
            modules: loader.modules,
        })
    }

    /// The module's path below the crate root (`api::keys`), or `crate` for the root itself.
    pub fn display(&self, id: ModuleId) -> String {
        let mut names = Vec::new();
        let mut cur = Some(id);
        while let Some(module) = cur.filter(|&m| m != Self::ROOT) {
            names.push(self.modules[module].name.as_str());
            cur = self.modules[module].parent;
        }
        if names.is_empty() {
            return "crate".to_owned();
        }
        names.reverse();
        names.join("::")
    }

    /// Whether `ancestor` encloses `module` (a module is not its own ancestor).
    pub fn is_ancestor(&self, ancestor: ModuleId, module: ModuleId) -> bool {
        let mut cur = self.modules[module].parent;
        while let Some(m) = cur {
            if m == ancestor {
                return true;
            }
            cur = self.modules[m].parent;
        }
        false
    }
}

/// A module's own attributes and items, as read from its file or its inline block.
struct Body {
    attrs: Vec<Attribute>,
    items: Vec<Item>,
}

struct Loader<'r> {
    modules: Vec<Module>,
    read: &'r mut dyn FnMut(&Path) -> io::Result<String>,
}

impl Loader<'_> {
    /// Adds the module and, depth first, the modules it declares.
    fn add(
        &mut self,
        parent: Option<ModuleId>,
        name: String,
        file: PathBuf,
        body: Body,
        dirs: Dirs,
    ) -> anyhow::Result<ModuleId> {
        let id = self.modules.len();
        self.modules.push(Module {
            name,
            parent,
            file: file.clone(),
            attrs: body.attrs,
            items: Vec::new(),
            children: BTreeMap::new(),
        });
        let mut items = body.items;
        for item in &mut items {
            let Item::Mod(decl) = item else { continue };
            let child_name = decl.ident.to_string();
            let child = match decl.content.take() {
                // An inline module keeps its parent's file; its own `mod` files sit in a
                // directory named after it. Its outer attributes stay with the declaration.
                Some((_, items)) => {
                    let attrs = decl
                        .attrs
                        .iter()
                        .filter(|attr| matches!(attr.style, AttrStyle::Inner(_)))
                        .cloned()
                        .collect();
                    let dirs = Dirs::both(dirs.children.join(&child_name));
                    let body = Body { attrs, items };
                    self.add(Some(id), child_name.clone(), file.clone(), body, dirs)?
                }
                None => {
                    let Some((child_file, source, child_dirs)) = self.locate(decl, &dirs) else {
                        if has_cfg(&decl.attrs) {
                            continue;
                        }
                        bail!(
                            "{}: no file for `mod {child_name};` (looked for {child_name}.rs and \
                             {child_name}/mod.rs in {})",
                            file.display(),
                            dirs.children.display(),
                        );
                    };
                    let body = parse(&child_file, &source)?;
                    self.add(Some(id), child_name.clone(), child_file, body, child_dirs)?
                }
            };
            self.modules[id].children.insert(child_name, child);
        }
        self.modules[id].items = items;
        Ok(id)
    }

    /// The file a `mod a;` declaration names, its source, and where that file's own
    /// declarations look.
    fn locate(&mut self, decl: &ItemMod, dirs: &Dirs) -> Option<(PathBuf, String, Dirs)> {
        if let Some(path) = path_attr(&decl.attrs) {
            let file = dirs.path_attr.join(path);
            let source = (self.read)(&file).ok()?;
            // A file named by `#[path]` is read like a `mod.rs`: its children sit beside it.
            let dirs = Dirs::both(parent_dir(&file));
            return Some((file, source, dirs));
        }
        let name = decl.ident.to_string();
        let flat = dirs.children.join(format!("{name}.rs"));
        if let Ok(source) = (self.read)(&flat) {
            // `a.rs`'s children live in `a/`, but its own `#[path]`s are relative to its
            // directory.
            let dirs = Dirs {
                children: dirs.children.join(&name),
                path_attr: dirs.children.clone(),
            };
            return Some((flat, source, dirs));
        }
        let nested = dirs.children.join(&name).join("mod.rs");
        let source = (self.read)(&nested).ok()?;
        Some((nested, source, Dirs::both(dirs.children.join(&name))))
    }
}

/// Where a module's `mod` declarations find their files.
struct Dirs {
    /// For `mod a;`: `a.rs` or `a/mod.rs` in here.
    children: PathBuf,
    /// For `#[path = "..."] mod a;`: relative to here (the file's own directory, or for a
    /// declaration inside an inline module, the inline module's directory).
    path_attr: PathBuf,
}

impl Dirs {
    /// A `mod.rs`, a crate root or an inline module: both kinds of declaration look in `dir`.
    fn both(dir: PathBuf) -> Self {
        Dirs {
            children: dir.clone(),
            path_attr: dir,
        }
    }
}

fn parse(path: &Path, source: &str) -> anyhow::Result<Body> {
    let file =
        syn::parse_file(source).with_context(|| format!("failed to parse {}", path.display()))?;
    Ok(Body {
        attrs: file.attrs,
        items: file.items,
    })
}

fn parent_dir(file: &Path) -> PathBuf {
    file.parent().map(Path::to_owned).unwrap_or_default()
}

fn path_attr(attrs: &[Attribute]) -> Option<String> {
    attrs.iter().find_map(|attr| {
        if !matches!(attr.style, AttrStyle::Outer) || !attr.path().is_ident("path") {
            return None;
        }
        let syn::Meta::NameValue(meta) = &attr.meta else {
            return None;
        };
        match &meta.value {
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(path),
                ..
            }) => Some(path.value()),
            _ => None,
        }
    })
}

fn has_cfg(attrs: &[Attribute]) -> bool {
    attrs
        .iter()
        .any(|attr| attr.path().is_ident("cfg") || attr.path().is_ident("cfg_attr"))
}
