//! Flame-graph results as dense values over a service's interned call tree.
//!
//! ```text
//! per (tenant, service): Interned call tree   (parent, function name) → node, append-only
//! per cached dataset:    stack id → node      (made once, under the tree's write lock)
//! per query and leaf:    values[node] += stack value          no hashing
//! merging leaves:        values += values (same tree)         no hashing
//! end of the query:      nodes with a value → StackTree       once
//! ```
//!
//! Building a [`StackTree`] per leaf and merging those costs a hash lookup
//! per call-tree node per leaf: most of a warm long-range query, where
//! every leaf (an hour or a day of one service) has the same few hundred
//! thousand nodes. Node ids never change once given, so values of the same
//! tree add up however many nodes it has gained since.

use std::sync::{Arc, PoisonError, RwLock};

use phlox_block::Symbols;
use phlox_model::StackTree;

/// Approximate bytes per interned node (parent, name, self value, index entry).
pub(crate) const INTERNED_NODE_BYTES: usize = 40;

/// The call tree of every dataset of one service the process has read: a
/// [`StackTree`] whose values stay zero (results hold theirs apart).
#[derive(Debug, Default)]
pub(crate) struct Interned(StackTree);

impl Interned {
    pub(crate) fn len(&self) -> usize {
        self.0.node_count()
    }

    /// [`Interned::map_stacks`] when the tree already holds every node of
    /// `symbols` (so that readers map at once); `None` at the first missing.
    pub(crate) fn map_known_stacks(&self, symbols: &Symbols) -> Option<Vec<u32>> {
        let mut names: Vec<u32> = vec![u32::MAX; symbols.functions.len()];
        walk_stacks(symbols, |parent, f| {
            let name = match names.get(f as usize) {
                Some(&id) if id != u32::MAX => id,
                _ => {
                    let id = self.0.find_name(function_name(symbols, f))?;
                    if let Some(slot) = names.get_mut(f as usize) {
                        *slot = id;
                    }
                    id
                }
            };
            self.0.find_child(parent, name)
        })
    }

    /// The call-tree node of every stack node of `symbols` (index = stack
    /// id; the node of a stack's innermost frame; 0 for the root and for
    /// stacks without frames), adding the nodes the tree lacks.
    pub(crate) fn map_stacks(&mut self, symbols: &Symbols) -> Vec<u32> {
        let mut names: Vec<u32> = vec![u32::MAX; symbols.functions.len()];
        let map = walk_stacks(symbols, |parent, f| {
            let name = match names.get(f as usize) {
                Some(&id) if id != u32::MAX => id,
                _ => {
                    let id = self.0.name_id(function_name(symbols, f));
                    if let Some(slot) = names.get_mut(f as usize) {
                        *slot = id;
                    }
                    id
                }
            };
            Some(self.0.child(parent, name))
        });
        map.unwrap_or_default()
    }
}

/// The node of every stack of `symbols` (parents precede children in the
/// stack table): `child(node, function)` is the node of a frame of that
/// function under `node`, frames outermost first; `None` stops the walk.
fn walk_stacks(symbols: &Symbols, mut child: impl FnMut(u32, u32) -> Option<u32>) -> Option<Vec<u32>> {
    let n = symbols.stack_count();
    let mut map = vec![0u32; n];
    for i in 1..n {
        let mut node = map.get(symbols.stack_parent[i] as usize).copied().unwrap_or(0);
        if let Some(r) = symbols.location_lines.get(symbols.stack_location[i] as usize) {
            // Lines are innermost first: the outermost frame is the caller.
            for &(f, _) in symbols.lines.get(r.start as usize..r.end as usize).unwrap_or(&[]).iter().rev() {
                node = child(node, f)?;
            }
        }
        map[i] = node;
    }
    Some(map)
}

/// The name of function `f` of `symbols` ("" when out of range).
fn function_name(symbols: &Symbols, f: u32) -> &str {
    symbols.functions.get(f as usize).and_then(|f| symbols.strings.get(f.name as usize)).map_or("", String::as_str)
}

/// An interned tree shared by the datasets of its service and the results
/// that hold values over it.
pub(crate) type SharedInterned = Arc<RwLock<Interned>>;

/// A flame-graph result: self values per node of interned trees, and a
/// plain tree (received from another process, or built from such values).
#[derive(Debug, Clone, Default)]
pub struct CallTree {
    dense: Vec<(SharedInterned, Vec<i64>)>,
    tree: StackTree,
}

impl From<StackTree> for CallTree {
    fn from(tree: StackTree) -> Self {
        Self { dense: Vec::new(), tree }
    }
}

impl PartialEq for CallTree {
    fn eq(&self, o: &Self) -> bool {
        self.to_tree() == o.to_tree()
    }
}

impl CallTree {
    /// The self values over `interned`, at least `len` long.
    pub(crate) fn values_of(&mut self, interned: &SharedInterned, len: usize) -> &mut Vec<i64> {
        let at = match self.dense.iter().position(|(t, _)| Arc::ptr_eq(t, interned)) {
            Some(at) => at,
            None => {
                self.dense.push((Arc::clone(interned), Vec::new()));
                self.dense.len() - 1
            }
        };
        let values = &mut self.dense[at].1;
        if values.len() < len {
            values.resize(len, 0);
        }
        values
    }

    /// Adds `other`: values over the same interned tree add up node by node.
    pub fn merge(&mut self, other: CallTree) {
        for (interned, values) in other.dense {
            match self.dense.iter_mut().find(|(t, _)| Arc::ptr_eq(t, &interned)) {
                Some((_, mine)) => {
                    let (mut long, short) = if values.len() > mine.len() {
                        (values, std::mem::take(mine))
                    } else {
                        (std::mem::take(mine), values)
                    };
                    for (a, b) in long.iter_mut().zip(short) {
                        *a = a.wrapping_add(b);
                    }
                    *mine = long;
                }
                None => self.dense.push((interned, values)),
            }
        }
        self.tree.merge_owned(other.tree);
    }

    /// The plain call tree of these values.
    pub fn into_tree(self) -> StackTree {
        let mut tree = self.tree;
        for (interned, values) in &self.dense {
            tree.add_values(&interned.read().unwrap_or_else(PoisonError::into_inner).0, values);
        }
        tree
    }

    /// [`CallTree::into_tree`] of a copy.
    pub fn to_tree(&self) -> StackTree {
        self.clone().into_tree()
    }
}

#[cfg(test)]
mod tests {
    use phlox_block::FunctionRow;

    use super::*;

    /// Symbols of stacks given as locations (each a list of function names,
    /// innermost first), leaf location first; string 0 is "".
    fn symbols(stacks: &[&[&[&str]]]) -> Symbols {
        let mut s = Symbols { strings: vec![String::new()], ..Default::default() };
        s.stack_parent.push(0);
        s.stack_location.push(0);
        for stack in stacks {
            let mut node = 0u32;
            for loc in stack.iter().rev() {
                let start = s.lines.len() as u32;
                for f in *loc {
                    s.strings.push((*f).to_owned());
                    s.functions.push(FunctionRow {
                        name: s.strings.len() as u32 - 1,
                        system_name: 0,
                        filename: 0,
                        start_line: 0,
                    });
                    s.lines.push((s.functions.len() as u32 - 1, 7));
                }
                s.location_lines.push(start..s.lines.len() as u32);
                s.stack_parent.push(node);
                s.stack_location.push(s.location_lines.len() as u32 - 1);
                node = s.stack_parent.len() as u32 - 1;
            }
        }
        s
    }

    #[test]
    fn stacks_of_two_datasets_map_to_the_same_nodes_inlined_frames_included() {
        let mut tree = Interned::default();
        // main → [serve, parse (inlined into serve)]; main → gc.
        let a = symbols(&[&[&["parse", "serve"], &["main"]], &[&["gc"], &["main"]]]);
        let map_a = tree.map_stacks(&a);
        // root, main, serve, parse, gc
        assert_eq!(tree.len(), 5);
        assert_eq!(map_a, vec![0, 1, 3, 1, 4]);
        // The same call paths in another order, with other ids.
        let b = symbols(&[&[&["gc"], &["main"]], &[&["parse", "serve"], &["main"]]]);
        assert_eq!(tree.map_known_stacks(&b), Some(vec![0, 1, 4, 1, 3]));
        assert_eq!(tree.map_stacks(&b), vec![0, 1, 4, 1, 3]);
        assert_eq!(tree.len(), 5);
        // A new frame is not known until added.
        let c = symbols(&[&[&["idle"], &["main"]]]);
        assert_eq!(tree.map_known_stacks(&c), None);
        assert_eq!(tree.map_stacks(&c), vec![0, 1, 5]);
    }

    #[test]
    fn values_over_a_tree_that_grew_add_up_and_convert_to_the_same_tree() {
        let interned: SharedInterned = Arc::default();
        // main (node 1) → work (node 2), then main → idle (node 3) once a
        // first result holds values over the tree.
        let node = |parent: u32, name: &str| {
            let mut w = interned.write().unwrap();
            let id = w.0.name_id(name);
            w.0.child(parent, id)
        };
        assert_eq!((node(0, "main"), node(1, "work")), (1, 2));
        let mut first = CallTree::default();
        first.values_of(&interned, 3)[2] = 5;
        assert_eq!(node(1, "idle"), 3);
        let mut second = CallTree::default();
        second.values_of(&interned, 4)[3] = 7;
        second.values_of(&interned, 4)[2] = 1;
        second.values_of(&interned, 1)[0] = 2;
        first.merge(second);
        first.merge(CallTree::from({
            let mut t = StackTree::default();
            t.add_stack(["main", "work"], 10);
            t
        }));
        let mut want = StackTree::default();
        want.add_stack(["main", "work"], 16);
        want.add_stack(["main", "idle"], 7);
        want.add_stack([], 2);
        let got = first.into_tree();
        assert_eq!(got.total(), 25);
        assert_eq!(got.flamegraph(0), want.flamegraph(0));
    }
}
