//! The checker on small crates held in memory: what it reads as a use, what it leaves out, and
//! how it reports a loop.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use crate::refs::doc_links;
use crate::{Tree, loops};

/// The loops of a crate made of `files` (`src/lib.rs` its root), as `a -> b -> a`.
fn loops_of(files: &[(&str, &str)]) -> Vec<String> {
    let files: HashMap<PathBuf, String> = files
        .iter()
        .map(|(path, source)| (PathBuf::from(path), (*source).to_owned()))
        .collect();
    let mut read = |path: &Path| {
        files
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    };
    let tree = Tree::load(Path::new("src/lib.rs"), &mut read).expect("the crate reads");
    loops::find(&tree).iter().map(ToString::to_string).collect()
}

fn check(name: &str, files: &[(&str, &str)], expected: &[&str]) {
    assert_eq!(loops_of(files), expected, "{name}");
}

#[test]
fn loops_are_found_however_the_path_is_written() {
    let root = ("src/lib.rs", "mod a; mod b;");
    let cases: &[(&str, &str, &str)] = &[
        (
            "use items",
            "use crate::b::Y; pub struct X;",
            "use crate::a::X; pub struct Y;",
        ),
        (
            "one use tree",
            "use crate::{b, c}; pub struct X;",
            "use crate::a::X; pub struct Y;",
        ),
        (
            "nested use tree",
            "use crate::{b::{Y, Z}}; pub struct X;",
            "use crate::a::X; pub struct Y;",
        ),
        (
            "whole module",
            "use crate::b; pub struct X;",
            "use super::a; pub struct Y;",
        ),
        (
            "glob",
            "use crate::b::*; pub struct X;",
            "use self::super::a::X;",
        ),
        (
            "renamed",
            "use crate::b::Y as Why;",
            "pub struct Y; fn f() -> crate::a::X { todo!() }",
        ),
        (
            "expression",
            "pub fn x() { crate::b::y() }",
            "pub fn y() { super::a::x() }",
        ),
        (
            "type and generic argument",
            "pub struct X(Vec<crate::b::Y>);",
            "pub struct Y; impl From<super::a::X> for Y { fn from(_: super::a::X) -> Self { Y } }",
        ),
        (
            "use inside a function body",
            "pub fn x() { use crate::b::y; y() }",
            "pub fn y() { use crate::a::x; }",
        ),
        (
            "macro argument",
            "pub fn x() { assert!(crate::b::y()); }",
            "pub fn y() -> bool { matches!(crate::a::X, crate::a::X) }",
        ),
        (
            "macro_rules body",
            "macro_rules! m { () => { $crate::b::y() } } pub struct X;",
            "use crate::a::X; pub fn y() {}",
        ),
        (
            "attribute string",
            "#[derive(serde::Deserialize)] pub struct X { #[serde(default = \"crate::b::y\")] n: u8 }",
            "use crate::a::X; pub fn y() -> u8 { 1 }",
        ),
        (
            "doc link",
            "use crate::b::Y; pub struct X;",
            "/// Read by [`X`](crate::a::X).\npub struct Y;",
        ),
        (
            "doc link, shortcut",
            "use crate::b::Y; pub struct X;",
            "//! Read by [`crate::a::X`].\npub struct Y;",
        ),
    ];
    for (name, a, b) in cases {
        check(
            name,
            &[root, ("src/a.rs", a), ("src/b.rs", b)],
            &["a -> b -> a"],
        );
    }
}

#[test]
fn reexports_are_followed_to_where_the_item_lives() {
    // `crate::Y` is b's `Y`, re-exported at the root: a uses b.
    check(
        "root re-export",
        &[
            ("src/lib.rs", "mod a; mod b; pub use b::Y;"),
            ("src/a.rs", "use crate::Y; pub struct X;"),
            ("src/b.rs", "use crate::a::X; pub struct Y;"),
        ],
        &["a -> b -> a"],
    );
    check(
        "re-export in a module, through a glob",
        &[
            ("src/lib.rs", "mod a; mod b; mod c;"),
            ("src/a.rs", "pub use crate::c::*;"),
            ("src/b.rs", "use crate::a::Z; pub struct Y;"),
            ("src/c.rs", "pub struct Z; fn f(_: crate::b::Y) {}"),
        ],
        &["b -> c -> b"],
    );
    check(
        "re-export of a module",
        &[
            ("src/lib.rs", "mod a; mod b; pub use b as bee;"),
            ("src/a.rs", "use crate::bee::Y; pub struct X;"),
            ("src/b.rs", "use crate::a::X; pub struct Y;"),
        ],
        &["a -> b -> a"],
    );
}

#[test]
fn a_module_may_use_its_ancestors_items() {
    check(
        "children use the root's items and the root uses theirs",
        &[
            ("src/lib.rs", "mod a; pub use a::X; pub struct Settings;"),
            (
                "src/a.rs",
                "use crate::Settings; pub struct X(super::Settings); #[cfg(test)] mod tests { use super::*; }",
            ),
        ],
        &[],
    );
    check(
        "a grandchild uses its grandparent",
        &[
            ("src/lib.rs", "mod a;"),
            ("src/a.rs", "mod b; pub use b::Y; pub struct X;"),
            ("src/a/b.rs", "use super::super::a::X; pub struct Y(X);"),
        ],
        &[],
    );
    // c names a's `Y`, which a re-exports from its child b: c uses b, and b uses c.
    check(
        "but not its uncle",
        &[
            ("src/lib.rs", "mod a; mod c;"),
            ("src/a.rs", "mod b; pub use b::Y;"),
            ("src/a/b.rs", "pub struct Y(crate::c::Z);"),
            ("src/c.rs", "pub struct Z; fn f(_: crate::a::Y) {}"),
        ],
        &["a::b -> c -> a::b"],
    );
}

#[test]
fn what_is_not_a_use_of_the_crates_modules() {
    check(
        "extern crates, std, locals, Self, visibility, prose in docs",
        &[
            ("src/lib.rs", "mod a; mod b;"),
            (
                "src/a.rs",
                "use std::fmt; use ::b::Y; pub(in crate::b) struct X; \
                 impl X { fn f() -> Self { Self::g() } fn g() -> Self { X } }\n\
                 /// See [the docs](https://example.com/b) and [b].\n\
                 fn h() { let b = 1; let _ = b; }",
            ),
            ("src/b.rs", "use crate::a::X;"),
        ],
        &[],
    );
}

#[test]
fn files_are_found_as_rustc_finds_them() {
    check(
        "a.rs's children in a/, mod.rs's beside it, #[path], inline modules",
        &[
            (
                "src/lib.rs",
                "mod a; mod m; #[path = \"other/p.rs\"] mod p;",
            ),
            ("src/a.rs", "mod b; mod inline { mod c; }"),
            ("src/a/b.rs", "use crate::m::M; pub struct B;"),
            ("src/a/inline/c.rs", "use crate::p::P; pub struct C;"),
            ("src/m/mod.rs", "mod d; pub struct M(crate::a::b::B);"),
            ("src/m/d.rs", ""),
            ("src/other/p.rs", "mod q; pub use q::*; pub struct P;"),
            ("src/other/q.rs", "use crate::a::inline::c::C;"),
        ],
        &[
            "a::b -> m -> a::b",
            "a::inline::c -> p -> p::q -> a::inline::c",
        ],
    );
    check(
        "a cfg'd module without a file is skipped",
        &[("src/lib.rs", "#[cfg(windows)] mod windows;")],
        &[],
    );
}

#[test]
fn a_longer_loop_is_reported_once_from_its_first_module() {
    check(
        "three modules",
        &[
            ("src/lib.rs", "mod a; mod b; mod c;"),
            ("src/a.rs", "use crate::b::B; pub struct A;"),
            ("src/b.rs", "use crate::c::C; pub struct B;"),
            ("src/c.rs", "use crate::a::A; pub struct C;"),
        ],
        &["a -> b -> c -> a"],
    );
    check(
        "two loops through one module",
        &[
            ("src/lib.rs", "mod a; mod b; mod c;"),
            ("src/a.rs", "use crate::{b::B, c::C}; pub struct A;"),
            ("src/b.rs", "use crate::a::A; pub struct B;"),
            ("src/c.rs", "use crate::a::A; pub struct C;"),
        ],
        &["a -> b -> a", "a -> c -> a"],
    );
}

#[test]
fn doc_links_are_read_as_rustdoc_reads_them() {
    let cases: &[(&str, &[&str])] = &[
        ("[`Verifier`](crate::Verifier)", &["crate::Verifier"]),
        ("[`collect`](crate::collect) knows", &["crate::collect"]),
        ("see [`Answer::from_records`]", &["Answer::from_records"]),
        ("[f()] and [`g!`] and [fn@h]", &["f", "g", "h"]),
        ("[`Vec<T>`]", &["Vec"]),
        ("[text][label]\n[label]: crate::x::Y", &["crate::x::Y"]),
        ("[a link](https://example.com) [two words] [`1`]", &[]),
    ];
    for (text, expected) in cases {
        let links: Vec<String> = doc_links(text).iter().map(|l| l.join("::")).collect();
        assert_eq!(links, *expected, "{text}");
    }
}

#[test]
fn non_test_lines_leave_out_what_is_under_cfg_test() {
    let check = |source: &str, expected: usize| {
        let lines = crate::sizes::count(source, Path::new("src/lib.rs")).expect("it parses");
        assert_eq!(lines, expected, "{source}");
    };
    check("fn a() {}\nfn b() {}\n", 2);
    check(
        "fn a() {}\n#[cfg(test)]\nmod tests {\n    fn t() {}\n}\n",
        1,
    );
    check("#[cfg(test)]\nfn helper() {}\nfn a() {}\n", 1);
    // Only a plain `cfg(test)`: a feature gate is production code.
    check("#[cfg(feature = \"x\")]\nfn a() {}\n", 2);
    // Inline modules are looked into.
    check(
        "mod m {\n    fn a() {}\n    #[cfg(test)]\n    fn t() {}\n}\n",
        3,
    );
}
