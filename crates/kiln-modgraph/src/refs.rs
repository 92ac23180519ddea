//! What one module's source refers to: every path in its `use` items, expressions, types,
//! patterns, attributes and macro arguments, and every intra-doc link in its documentation,
//! as written (resolving them is the resolver's job).

use std::fmt;

use proc_macro2::{Spacing, Span, TokenStream, TokenTree};
use syn::visit::{self, Visit};
use syn::{AttrStyle, Attribute, Expr, ExprLit, ItemMod, ItemUse, Lit, Meta, UseTree};

use crate::tree::Module;

/// How a module came to name a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Use,
    /// In an expression, a type, a pattern or a trait bound.
    Path,
    /// Inside a macro's arguments or a `macro_rules!` body.
    Macro,
    /// A path in an attribute's arguments, or a string there that is one (`#[serde(default =
    /// "crate::x::f")]`).
    Attribute,
    DocLink,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Use => "use",
            Kind::Path => "path",
            Kind::Macro => "macro",
            Kind::Attribute => "attribute",
            Kind::DocLink => "doc link",
        })
    }
}

/// One path a module names, with the line it is on.
#[derive(Clone, Debug)]
pub struct Reference {
    pub path: Vec<String>,
    pub kind: Kind,
    pub line: usize,
}

/// What one leaf of a `use` tree brings into scope.
pub enum Binding {
    /// `use a::b;` binds `b`, `use a::b as c;` binds `c`.
    Name(String),
    /// `use a::b::*;`: everything `a::b` holds.
    Glob,
    /// `use a::Trait as _;`: nothing by name.
    Hidden,
}

/// One leaf of a `use` tree: `use crate::{a, b::{c, d as e}}` has four.
pub struct UseLeaf {
    /// The full path (for a glob, the module it takes everything from).
    pub path: Vec<String>,
    pub binding: Binding,
    pub span: Span,
}

/// The leaves of a `use` item; none for one that starts with `::` (an extern crate's).
pub fn use_leaves(item: &ItemUse) -> Vec<UseLeaf> {
    let mut leaves = Vec::new();
    if item.leading_colon.is_none() {
        flatten(&item.tree, &mut Vec::new(), &mut leaves);
    }
    leaves
}

fn flatten(tree: &UseTree, prefix: &mut Vec<String>, out: &mut Vec<UseLeaf>) {
    match tree {
        UseTree::Path(path) => {
            prefix.push(path.ident.to_string());
            flatten(&path.tree, prefix, out);
            prefix.pop();
        }
        UseTree::Name(name) => {
            let ident = name.ident.to_string();
            // `use a::b::{self};` names `a::b` itself.
            let (path, bound) = if ident == "self" {
                (prefix.clone(), prefix.last().cloned().unwrap_or_default())
            } else {
                (with(prefix, &ident), ident)
            };
            out.push(UseLeaf {
                path,
                binding: Binding::Name(bound),
                span: name.ident.span(),
            });
        }
        UseTree::Rename(rename) => {
            let ident = rename.ident.to_string();
            let path = if ident == "self" {
                prefix.clone()
            } else {
                with(prefix, &ident)
            };
            let binding = match rename.rename.to_string().as_str() {
                "_" => Binding::Hidden,
                name => Binding::Name(name.to_owned()),
            };
            out.push(UseLeaf {
                path,
                binding,
                span: rename.ident.span(),
            });
        }
        UseTree::Glob(glob) => out.push(UseLeaf {
            path: prefix.clone(),
            binding: Binding::Glob,
            span: glob.star_token.span,
        }),
        UseTree::Group(group) => {
            for tree in &group.items {
                flatten(tree, prefix, out);
            }
        }
    }
}

fn with(prefix: &[String], last: &str) -> Vec<String> {
    let mut path = prefix.to_vec();
    path.push(last.to_owned());
    path
}

/// Every path `module` names in its own source: its items (function bodies included, nested
/// modules not: those are modules of their own), its inner attributes, and the outer attributes
/// of the modules it declares (rustdoc reads a `mod` declaration's `///` in the declaring
/// module).
pub fn references(module: &Module) -> Vec<Reference> {
    let mut collector = Collector { refs: Vec::new() };
    for attr in &module.attrs {
        collector.visit_attribute(attr);
    }
    for item in &module.items {
        collector.visit_item(item);
    }
    collector.refs
}

struct Collector {
    refs: Vec<Reference>,
}

impl Collector {
    fn push(&mut self, path: Vec<String>, kind: Kind, span: Span) {
        if !path.is_empty() {
            self.refs.push(Reference {
                path,
                kind,
                line: span.start().line,
            });
        }
    }
}

impl<'ast> Visit<'ast> for Collector {
    fn visit_item_mod(&mut self, item: &'ast ItemMod) {
        // The module's body is its own; a `mod` inside a function body is not read at all.
        for attr in item
            .attrs
            .iter()
            .filter(|a| matches!(a.style, AttrStyle::Outer))
        {
            self.visit_attribute(attr);
        }
    }

    fn visit_item_use(&mut self, item: &'ast ItemUse) {
        for attr in &item.attrs {
            self.visit_attribute(attr);
        }
        for leaf in use_leaves(item) {
            self.push(leaf.path, Kind::Use, leaf.span);
        }
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        if path.leading_colon.is_none() {
            let segments = names_of(path);
            if worth_resolving(&segments) {
                let span = path.segments[0].ident.span();
                self.push(segments, Kind::Path, span);
            }
        }
        // Generic arguments hold paths of their own.
        visit::visit_path(self, path);
    }

    fn visit_visibility(&mut self, _: &'ast syn::Visibility) {
        // `pub(in crate::a)` says who may see an item, not what it uses.
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.visit_path(&mac.path);
        scan_tokens(mac.tokens.clone(), Kind::Macro, self);
    }

    fn visit_attribute(&mut self, attr: &'ast Attribute) {
        match &attr.meta {
            Meta::NameValue(meta) if attr.path().is_ident("doc") => {
                if let Expr::Lit(ExprLit {
                    lit: Lit::Str(text),
                    ..
                }) = &meta.value
                {
                    for link in doc_links(&text.value()) {
                        self.push(link, Kind::DocLink, text.span());
                    }
                }
            }
            Meta::List(list) => {
                self.visit_path(&list.path);
                scan_tokens(list.tokens.clone(), Kind::Attribute, self);
            }
            _ => visit::visit_attribute(self, attr),
        }
    }
}

fn names_of(path: &syn::Path) -> Vec<String> {
    path.segments.iter().map(|s| s.ident.to_string()).collect()
}

/// Whether a path in code can name one of the crate's modules: one that starts at the crate, a
/// parent or the module itself, or any of two segments or more (`parse::Document`, which may
/// start from a child module or an import). One plain name is a local, an import or an item of
/// the module itself, already counted where it was imported.
fn worth_resolving(segments: &[String]) -> bool {
    match segments.first().map(String::as_str) {
        None | Some("Self") => false,
        Some("crate" | "super" | "self") => true,
        Some(_) => segments.len() >= 2,
    }
}

/// Finds paths (`a::b`, `crate::a`, `$crate::a::b`) in a token stream: a macro's arguments or an
/// attribute's. In an attribute, a string that reads as a path counts too.
fn scan_tokens(tokens: TokenStream, kind: Kind, out: &mut Collector) {
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i] {
            TokenTree::Group(group) => {
                scan_tokens(group.stream(), kind, out);
                i += 1;
            }
            TokenTree::Literal(literal) if kind == Kind::Attribute => {
                if let Ok(Lit::Str(text)) = syn::parse_str::<Lit>(&literal.to_string())
                    && let Ok(path) = syn::parse_str::<syn::Path>(&text.value())
                    && path.leading_colon.is_none()
                {
                    let segments = names_of(&path);
                    if segments.len() >= 2 {
                        out.push(segments, kind, literal.span());
                    }
                }
                i += 1;
            }
            TokenTree::Ident(_) | TokenTree::Punct(_) => {
                let (segments, span, next) = path_at(&tokens, i);
                if segments.len() >= 2 {
                    out.push(segments, kind, span);
                }
                i = next;
            }
            TokenTree::Literal(_) => i += 1,
        }
    }
}

/// The path starting at `tokens[start]`, if one does (`$crate` reads as `crate`), its span, and
/// where scanning goes on. A path that follows `::` is an extern crate's, or the tail of one
/// already read: skipped.
fn path_at(tokens: &[TokenTree], start: usize) -> (Vec<String>, Span, usize) {
    let mut i = start;
    let span = tokens[i].span();
    let preceded_by_colons = start >= 2 && is_path_sep(tokens, start - 2);
    if is_punct(&tokens[i], '$')
        && matches!(tokens.get(i + 1), Some(TokenTree::Ident(id)) if id == "crate")
    {
        i += 1;
    }
    let TokenTree::Ident(first) = &tokens[i] else {
        return (Vec::new(), span, start + 1);
    };
    let mut segments = vec![first.to_string()];
    i += 1;
    while is_path_sep(tokens, i) {
        let Some(TokenTree::Ident(next)) = tokens.get(i + 2) else {
            break;
        };
        segments.push(next.to_string());
        i += 3;
    }
    if preceded_by_colons || segments[0] == "Self" {
        segments.clear();
    }
    (segments, span, i)
}

/// Whether `tokens[i..]` starts with `::`.
fn is_path_sep(tokens: &[TokenTree], i: usize) -> bool {
    matches!(tokens.get(i), Some(TokenTree::Punct(p)) if p.as_char() == ':' && p.spacing() == Spacing::Joint)
        && tokens.get(i + 1).is_some_and(|t| is_punct(t, ':'))
}

fn is_punct(token: &TokenTree, c: char) -> bool {
    matches!(token, TokenTree::Punct(p) if p.as_char() == c)
}

/// The Rust paths a piece of documentation links to: `[text](path)`, `` [`path`] ``, `[path]`
/// and `[label]: path`, with rustdoc's disambiguators (`fn@`, `()`, `!`) and generics dropped.
/// A link whose target is not a path (a URL, prose) yields nothing.
pub fn doc_links(text: &str) -> Vec<Vec<String>> {
    let mut links = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let Some(close) = after.find(']') else { break };
        let label = &after[..close];
        let tail = &after[close + 1..];
        let target = if let Some(inline) = tail.strip_prefix('(') {
            inline.find(')').map(|end| &inline[..end])
        } else if let Some(definition) = tail.strip_prefix(':') {
            definition.split_whitespace().next()
        } else if let Some(reference) = tail.strip_prefix('[') {
            // `[text][label]`: the label's definition is read where it stands.
            rest = reference.find(']').map_or("", |end| &reference[end + 1..]);
            continue;
        } else {
            Some(label)
        };
        if let Some(path) = target.and_then(link_path) {
            links.push(path);
        }
        rest = tail;
    }
    links
}

fn link_path(target: &str) -> Option<Vec<String>> {
    let mut target = target.trim().trim_matches('`');
    if let Some((_, after)) = target.split_once('@') {
        target = after;
    }
    if let Some(generic) = target.find('<') {
        target = &target[..generic];
    }
    let target = target
        .trim_end_matches("()")
        .trim_end_matches('(')
        .trim_end_matches('!');
    let segments: Vec<String> = target.split("::").map(str::to_owned).collect();
    let is_ident = |s: &String| {
        s.chars()
            .next()
            .is_some_and(|c| c.is_alphabetic() || c == '_')
            && s.chars().all(|c| c.is_alphanumeric() || c == '_')
    };
    (segments.iter().all(is_ident) && segments.first().is_some_and(|s| s != "Self"))
        .then_some(segments)
}
