//! The crate's "uses" graph between modules, and its loops.
//!
//! Module `a` uses `b` when `a`'s source names something `b` defines (see [`crate::refs`] for
//! where names are read). A module naming one of its own ancestors' items is left out: a child
//! reads its parent's items by design (`use super::*` in tests, `crate::Settings`), and the
//! parent declares it, so counting that would make every such child a loop. A module naming what
//! an ancestor re-exports from elsewhere uses where the item lives.
//!
//! Loops are the graph's strongly connected components of more than one module. One component
//! may hold many loops; [`find`] names enough of them, shortest first, that every edge inside a
//! component lies on one named loop: cutting what they show breaks the component.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::path::PathBuf;

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};

use crate::refs::{self, Kind};
use crate::resolve::Resolver;
use crate::tree::{ModuleId, Tree};

/// One loop: each module uses the next, and the last uses the first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loop {
    /// The modules in order (`api::keys`; `crate` for the root), the first not repeated.
    pub modules: Vec<String>,
    /// For each step (`modules[i]` to the next), where the source makes it.
    pub evidence: Vec<Vec<Evidence>>,
}

/// One reference that makes a module use another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    pub file: PathBuf,
    pub line: usize,
    pub kind: Kind,
    pub path: String,
}

impl fmt::Display for Loop {
    /// `a -> b -> a`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for module in &self.modules {
            write!(f, "{module} -> ")?;
        }
        f.write_str(self.modules.first().map_or("", String::as_str))
    }
}

/// The loops of one crate's module graph, ordered by their modules' names.
pub fn find(tree: &Tree) -> Vec<Loop> {
    let resolver = Resolver::new(tree);
    let mut edges: BTreeMap<(ModuleId, ModuleId), Vec<Evidence>> = BTreeMap::new();
    for (from, module) in tree.modules.iter().enumerate() {
        for reference in refs::references(module) {
            for to in resolver.resolve(from, &reference.path) {
                if to == from || tree.is_ancestor(to, from) {
                    continue;
                }
                edges.entry((from, to)).or_default().push(Evidence {
                    file: module.file.clone(),
                    line: reference.line,
                    kind: reference.kind,
                    path: reference.path.join("::"),
                });
            }
        }
    }

    let mut graph = DiGraph::<ModuleId, ()>::new();
    let nodes: Vec<NodeIndex> = (0..tree.modules.len()).map(|m| graph.add_node(m)).collect();
    for &(from, to) in edges.keys() {
        graph.add_edge(nodes[from], nodes[to], ());
    }

    let mut loops = BTreeSet::new();
    for component in tarjan_scc(&graph) {
        if component.len() < 2 {
            continue;
        }
        let members: BTreeSet<ModuleId> = component.iter().map(|&n| graph[n]).collect();
        let inner: Vec<(ModuleId, ModuleId)> = edges
            .keys()
            .copied()
            .filter(|(a, b)| members.contains(a) && members.contains(b))
            .collect();
        let mut covered = BTreeSet::new();
        for &(from, to) in &inner {
            if covered.contains(&(from, to)) {
                continue;
            }
            let mut cycle = vec![from];
            cycle.extend(shortest_path(&inner, to, from));
            cycle.pop();
            for (i, &m) in cycle.iter().enumerate() {
                covered.insert((m, cycle[(i + 1) % cycle.len()]));
            }
            // The same loop read from its first module in order of names, so that it is
            // listed once.
            let start = (0..cycle.len())
                .min_by_key(|&i| tree.display(cycle[i]))
                .unwrap_or(0);
            cycle.rotate_left(start);
            loops.insert(cycle);
        }
    }

    let mut found: Vec<Loop> = loops
        .into_iter()
        .map(|cycle| Loop {
            modules: cycle.iter().map(|&m| tree.display(m)).collect(),
            evidence: (0..cycle.len())
                .map(|i| {
                    let mut evidence = edges[&(cycle[i], cycle[(i + 1) % cycle.len()])].clone();
                    evidence.sort_by_key(|e| e.line);
                    evidence
                })
                .collect(),
        })
        .collect();
    found.sort_by(|a, b| a.modules.cmp(&b.modules));
    found
}

/// The modules from `from` to `to` along `edges` (both ends included), fewest steps first.
/// Called for two modules of one strongly connected component, so a path exists.
fn shortest_path(edges: &[(ModuleId, ModuleId)], from: ModuleId, to: ModuleId) -> Vec<ModuleId> {
    let mut came_from: HashMap<ModuleId, ModuleId> = HashMap::new();
    let mut queue = VecDeque::from([from]);
    while let Some(module) = queue.pop_front() {
        if module == to {
            break;
        }
        for &(a, b) in edges {
            if a == module && b != from && !came_from.contains_key(&b) {
                came_from.insert(b, a);
                queue.push_back(b);
            }
        }
    }
    let mut path = vec![to];
    let mut module = to;
    while module != from {
        module = came_from[&module];
        path.push(module);
    }
    path.reverse();
    path
}
