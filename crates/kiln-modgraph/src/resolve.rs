//! Which module defines what a path names, as far as the source alone tells: through child
//! modules, the module's own items, its imports and re-exports (`pub use a::Thing` at the root
//! makes `crate::Thing` module `a`'s) and its glob imports.
//!
//! A path whose first name the module does not bind (an extern crate, the prelude, a local
//! variable) names none of the crate's modules. A later name the source does not show (an item
//! a macro makes) stops at the deepest module reached.

use std::collections::{BTreeSet, HashMap};

use syn::Item;

use crate::refs::{self, Binding};
use crate::tree::{ModuleId, Tree};

/// Resolves paths within one crate.
pub struct Resolver<'t> {
    tree: &'t Tree,
    scopes: Vec<Scope>,
}

/// The names one module binds.
#[derive(Default)]
struct Scope {
    names: HashMap<String, Vec<Name>>,
    /// The paths of its glob imports (`use a::*` holds `a`).
    globs: Vec<Vec<String>>,
}

enum Name {
    Module(ModuleId),
    /// An item defined in the module itself (a function, a type, a constant, ...).
    Item,
    /// `use path;` or `use path as name;`: whatever `path` names, read from this module.
    Import(Vec<String>),
}

/// What a path names: a module itself, or something defined in one (an item, or what lies
/// inside an item: a variant, a method).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    Module(ModuleId),
    In(ModuleId),
}

/// Imports and globs being followed, so that `use a::x` in `b` and `use b::x` in `a` end.
type Stack = Vec<(ModuleId, String)>;

impl<'t> Resolver<'t> {
    pub fn new(tree: &'t Tree) -> Self {
        let scopes = tree
            .modules
            .iter()
            .map(|module| {
                let mut scope = Scope::default();
                for (name, &child) in &module.children {
                    scope.bind(name.clone(), Name::Module(child));
                }
                for item in &module.items {
                    scope.add(item);
                }
                scope
            })
            .collect();
        Resolver { tree, scopes }
    }

    /// The modules that define what `path`, written in module `from`, may name (more than one
    /// only where a name is both a module and an item, say `mod collect` and `pub use
    /// collect::collect`).
    pub fn resolve(&self, from: ModuleId, path: &[String]) -> BTreeSet<ModuleId> {
        self.path(from, path, &mut Vec::new())
            .into_iter()
            .map(|target| match target {
                Target::Module(m) | Target::In(m) => m,
            })
            .collect()
    }

    fn path(&self, from: ModuleId, path: &[String], stack: &mut Stack) -> Vec<Target> {
        let Some(first) = path.first() else {
            return Vec::new();
        };
        let (start, rest) = match first.as_str() {
            "crate" | "$crate" => (Tree::ROOT, &path[1..]),
            // `self::super::x` is `super::x`.
            "self" if path.get(1).is_some_and(|s| s == "super") => {
                return self.path(from, &path[1..], stack);
            }
            "self" => (from, &path[1..]),
            "super" => {
                let mut module = from;
                let mut rest = path;
                while rest.first().is_some_and(|s| s == "super") {
                    let Some(parent) = self.tree.modules[module].parent else {
                        return Vec::new();
                    };
                    module = parent;
                    rest = &rest[1..];
                }
                (module, rest)
            }
            "Self" => return Vec::new(),
            _ => return self.lookup(from, path, stack, Missing::Nothing),
        };
        self.walk(start, rest, stack)
    }

    /// Follows `rest` down from `module`.
    fn walk(&self, module: ModuleId, rest: &[String], stack: &mut Stack) -> Vec<Target> {
        if rest.is_empty() {
            vec![Target::Module(module)]
        } else {
            self.lookup(module, rest, stack, Missing::Here)
        }
    }

    /// Looks `path[0]` up among the names `module` binds and follows the rest of the path.
    fn lookup(
        &self,
        module: ModuleId,
        path: &[String],
        stack: &mut Stack,
        missing: Missing,
    ) -> Vec<Target> {
        let (name, rest) = (&path[0], &path[1..]);
        let mut found = Vec::new();
        let names = self.scopes[module].names.get(name);
        for bound in names.into_iter().flatten() {
            match bound {
                Name::Module(child) => found.extend(self.walk(*child, rest, stack)),
                Name::Item => found.push(Target::In(module)),
                Name::Import(target) => {
                    let key = (module, name.clone());
                    if stack.contains(&key) {
                        continue;
                    }
                    stack.push(key);
                    for target in self.path(module, target, stack) {
                        match target {
                            Target::Module(m) => found.extend(self.walk(m, rest, stack)),
                            Target::In(m) => found.push(Target::In(m)),
                        }
                    }
                    stack.pop();
                }
            }
        }
        if names.is_none() {
            let key = (module, format!("*{name}"));
            if !stack.contains(&key) {
                stack.push(key);
                for glob in &self.scopes[module].globs {
                    for target in self.path(module, glob, stack) {
                        if let Target::Module(m) = target {
                            found.extend(self.lookup(m, path, stack, Missing::Nothing));
                        }
                    }
                }
                stack.pop();
            }
            if found.is_empty() && missing == Missing::Here {
                found.push(Target::In(module));
            }
        }
        found.sort();
        found.dedup();
        found
    }
}

/// What a name that a module does not bind names.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Missing {
    /// Nothing of the crate's: the first name of a relative path (an extern crate, the prelude,
    /// a local), or a name looked for through a glob import.
    Nothing,
    /// Something in this module the source does not show (a macro's output).
    Here,
}

impl Scope {
    fn bind(&mut self, name: String, bound: Name) {
        self.names.entry(name).or_default().push(bound);
    }

    fn add(&mut self, item: &Item) {
        let name = match item {
            Item::Use(item) => {
                for leaf in refs::use_leaves(item) {
                    match leaf.binding {
                        Binding::Name(name) => self.bind(name, Name::Import(leaf.path)),
                        Binding::Glob => self.globs.push(leaf.path),
                        Binding::Hidden => {}
                    }
                }
                return;
            }
            Item::ForeignMod(block) => {
                for item in &block.items {
                    let ident = match item {
                        syn::ForeignItem::Fn(f) => &f.sig.ident,
                        syn::ForeignItem::Static(s) => &s.ident,
                        syn::ForeignItem::Type(t) => &t.ident,
                        _ => continue,
                    };
                    self.bind(ident.to_string(), Name::Item);
                }
                return;
            }
            Item::Const(item) => &item.ident,
            Item::Enum(item) => &item.ident,
            Item::Fn(item) => &item.sig.ident,
            Item::Macro(item) => match &item.ident {
                Some(ident) => ident,
                None => return,
            },
            Item::Static(item) => &item.ident,
            Item::Struct(item) => &item.ident,
            Item::Trait(item) => &item.ident,
            Item::TraitAlias(item) => &item.ident,
            Item::Type(item) => &item.ident,
            Item::Union(item) => &item.ident,
            // Modules are bound from the tree (one whose file a `#[cfg]` left out binds nothing).
            _ => return,
        };
        self.bind(name.to_string(), Name::Item);
    }
}
