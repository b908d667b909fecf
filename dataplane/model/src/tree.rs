//! The merged call tree of a query: nodes keyed by (parent, function name),
//! self values on nodes; mergeable across blocks and datasets, and rendered
//! as Pyroscope's flame graph levels or tree bytes (wire-api §2.5).

use indexmap::IndexSet;
use rustc_hash::{FxBuildHasher, FxHashMap};

/// Name of the aggregated node of truncated children.
pub const OTHER: &str = "other";

/// A call tree; node 0 is the root. Parents always precede children.
#[derive(Debug, Clone)]
pub struct StackTree {
    names: IndexSet<String, FxBuildHasher>,
    parent: Vec<u32>,
    name: Vec<u32>,
    self_value: Vec<i64>,
    index: FxHashMap<(u32, u32), u32>,
}

impl Default for StackTree {
    fn default() -> Self {
        Self {
            names: IndexSet::with_hasher(FxBuildHasher),
            parent: vec![0],
            name: vec![u32::MAX],
            self_value: vec![0],
            index: FxHashMap::default(),
        }
    }
}

/// Trees are equal when their names (in id order) and nodes (in node order)
/// are: the same structure, built in the same order.
impl PartialEq for StackTree {
    fn eq(&self, o: &Self) -> bool {
        self.names.iter().eq(o.names.iter())
            && self.parent == o.parent
            && self.name == o.name
            && self.self_value == o.self_value
    }
}

impl Eq for StackTree {}

/// A flame graph in Pyroscope's level encoding.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FlameGraphLevels {
    pub names: Vec<String>,
    /// Per depth, 4 values per node: x delta, total, self, name index.
    pub levels: Vec<Vec<i64>>,
    pub total: i64,
    pub max_self: i64,
}

impl StackTree {
    /// Interns a function name.
    pub fn name_id(&mut self, name: &str) -> u32 {
        match self.names.get_index_of(name) {
            Some(i) => i as u32,
            None => self.names.insert_full(name.to_owned()).0 as u32,
        }
    }

    /// The id of an interned function name, if interned.
    pub fn find_name(&self, name: &str) -> Option<u32> {
        self.names.get_index_of(name).map(|i| i as u32)
    }

    /// The child of `parent` with function `name`, if the tree has it.
    pub fn find_child(&self, parent: u32, name: u32) -> Option<u32> {
        self.index.get(&(parent, name)).copied()
    }

    /// The child of `parent` with function `name`, created if absent.
    pub fn child(&mut self, parent: u32, name: u32) -> u32 {
        let next = self.parent.len() as u32;
        *self.index.entry((parent, name)).or_insert_with(|| {
            self.parent.push(parent);
            self.name.push(name);
            self.self_value.push(0);
            next
        })
    }

    /// Adds a stack (root first) with a value.
    pub fn add_stack<'a>(&mut self, stack: impl IntoIterator<Item = &'a str>, value: i64) {
        let mut node = 0;
        for f in stack {
            let n = self.name_id(f);
            node = self.child(node, n);
        }
        let v = &mut self.self_value[node as usize];
        *v = v.wrapping_add(value);
    }

    /// Adds to the self value of a node.
    pub fn add_self(&mut self, node: u32, value: i64) {
        if let Some(v) = self.self_value.get_mut(node as usize) {
            *v = v.wrapping_add(value);
        }
    }

    pub fn node_count(&self) -> usize {
        self.parent.len()
    }

    /// The tree as parallel arrays, for transport: the names (index = name
    /// id), and per node (node 0 is the root, with parent 0 and name 0) its
    /// parent, name id and self value. Parents precede children.
    pub fn into_parts(self) -> (Vec<String>, Vec<u32>, Vec<u32>, Vec<i64>) {
        let mut name = self.name;
        if let Some(root) = name.first_mut() {
            *root = 0;
        }
        (self.names.into_iter().collect(), self.parent, name, self.self_value)
    }

    /// [`StackTree::into_parts`] of a copy.
    pub fn to_parts(&self) -> (Vec<String>, Vec<u32>, Vec<u32>, Vec<i64>) {
        self.clone().into_parts()
    }

    /// The tree of [`StackTree::into_parts`], checked as untrusted input:
    /// equal lengths, a root with parent 0 and name 0, distinct names, every
    /// parent before its child, name ids in range, no two children of a node
    /// with the same name, and values whose absolute sum fits an `i64` (so
    /// totals cannot overflow).
    pub fn from_parts(
        names: Vec<String>,
        parent: Vec<u32>,
        name: Vec<u32>,
        self_value: Vec<i64>,
    ) -> Result<Self, String> {
        let n = parent.len();
        if n == 0 || name.len() != n || self_value.len() != n {
            return Err(format!(
                "tree arrays must be non-empty and of equal length: {n} parents, {} names, {} values",
                name.len(),
                self_value.len()
            ));
        }
        if n > u32::MAX as usize || names.len() > u32::MAX as usize {
            return Err("tree too large".to_owned());
        }
        if parent[0] != 0 || name[0] != 0 {
            return Err("tree root must have parent 0 and name 0".to_owned());
        }
        let mut sum: i64 = 0;
        for v in &self_value {
            sum = sum
                .checked_add(v.checked_abs().ok_or("tree value out of range")?)
                .ok_or("tree values overflow a 64-bit total")?;
        }
        let mut set: IndexSet<String, FxBuildHasher> = IndexSet::with_capacity_and_hasher(names.len(), FxBuildHasher);
        for s in names {
            if set.contains(&s) {
                return Err(format!("duplicate tree name {s:?}"));
            }
            set.insert(s);
        }
        let mut index: FxHashMap<(u32, u32), u32> = FxHashMap::default();
        index.reserve(n - 1);
        for i in 1..n {
            let (p, f) = (parent[i], name[i]);
            if p as usize >= i {
                return Err(format!("tree node {i}: parent {p} does not precede it"));
            }
            if f as usize >= set.len() {
                return Err(format!("tree node {i}: name id {f} out of range ({} names)", set.len()));
            }
            if index.insert((p, f), i as u32).is_some() {
                return Err(format!("tree node {i}: duplicate child {f} of node {p}"));
            }
        }
        let mut name = name;
        name[0] = u32::MAX;
        Ok(Self { names: set, parent, name, self_value, index })
    }

    /// Sum of all values.
    pub fn total(&self) -> i64 {
        self.self_value.iter().fold(0i64, |a, &v| a.wrapping_add(v))
    }

    /// Merges another tree into this one, taking it whole when this one is
    /// empty and otherwise merging the smaller into the larger (the merged
    /// tree is the same, up to the order of its nodes and names).
    pub fn merge_owned(&mut self, mut other: StackTree) {
        if other.parent.len() > self.parent.len() {
            std::mem::swap(self, &mut other);
        }
        if other.parent.len() > 1 {
            self.merge(&other);
        }
    }

    /// Merges another tree into this one.
    pub fn merge(&mut self, other: &StackTree) {
        let names: Vec<u32> = other.names.iter().map(|n| self.name_id(n)).collect();
        let mut map = vec![0u32; other.parent.len()];
        for i in 1..other.parent.len() {
            let p = map[other.parent[i] as usize];
            map[i] = self.child(p, names[other.name[i] as usize]);
        }
        for (i, v) in other.self_value.iter().enumerate() {
            if *v != 0 {
                let s = &mut self.self_value[map[i] as usize];
                *s = s.wrapping_add(*v);
            }
        }
    }

    /// Adds `values` (self values by node of `shape`) to this tree: the
    /// nodes of `shape` on a path to a non-zero value are found or created
    /// here (by function name), the others are left out.
    pub fn add_values(&mut self, shape: &StackTree, values: &[i64]) {
        let n = values.len().min(shape.parent.len());
        // Nodes on a path to a value, found leaves up (parents precede children).
        let mut used = vec![false; n];
        for i in (1..n).rev() {
            if values[i] != 0 || used[i] {
                used[i] = true;
                used[shape.parent[i] as usize] = true;
            }
        }
        if let Some(&root) = values.first() {
            self.add_self(0, root);
        }
        let mut names: Vec<u32> = vec![u32::MAX; shape.names.len()];
        let mut map = vec![0u32; n];
        for i in (1..n).filter(|&i| used[i]) {
            let f = shape.name[i] as usize;
            if names[f] == u32::MAX {
                names[f] = self.name_id(&shape.names[f]);
            }
            map[i] = self.child(map[shape.parent[i] as usize], names[f]);
            self.add_self(map[i], values[i]);
        }
    }

    /// The interned function names (index = name id).
    pub fn names(&self) -> impl ExactSizeIterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }

    /// Every node with a self value: its name ids from the root down, and
    /// the value.
    pub fn stacks(&self) -> Vec<(Vec<u32>, i64)> {
        let mut out = Vec::new();
        for i in 1..self.parent.len() {
            let v = self.self_value[i];
            if v == 0 {
                continue;
            }
            let mut path = Vec::new();
            let mut n = i;
            while n != 0 {
                path.push(self.name[n]);
                n = self.parent[n] as usize;
            }
            path.reverse();
            out.push((path, v));
        }
        out
    }

    /// The tree of the stacks that start (from the root) with `prefix`.
    pub fn with_prefix(&self, prefix: &[&str]) -> StackTree {
        let ids: Option<Vec<u32>> = prefix.iter().map(|n| self.names.get_index_of(*n).map(|i| i as u32)).collect();
        let mut out = StackTree::default();
        let Some(ids) = ids else { return out };
        for (path, v) in self.stacks() {
            if path.len() >= ids.len() && path[..ids.len()] == ids[..] {
                out.add_stack(path.iter().map(|&n| self.names[n as usize].as_str()), v);
            }
        }
        out
    }

    /// Totals per node (self plus descendants).
    pub fn totals(&self) -> Vec<i64> {
        let mut t = self.self_value.clone();
        for i in (1..self.parent.len()).rev() {
            let p = self.parent[i] as usize;
            t[p] = t[p].wrapping_add(t[i]);
        }
        t
    }

    /// Children with a total of at least `threshold`, sorted by name, and
    /// per node the sum of the totals of its children below it (its `other`).
    fn children(&self, totals: &[i64], threshold: i64) -> (Vec<Vec<u32>>, Vec<i64>) {
        let n = self.parent.len();
        let mut c = vec![Vec::new(); n];
        let mut other = vec![0i64; n];
        for (i, &t) in totals.iter().enumerate().skip(1) {
            if t == 0 {
                continue;
            }
            let p = self.parent[i] as usize;
            if t < threshold {
                other[p] = other[p].wrapping_add(t);
            } else {
                c[p].push(i as u32);
            }
        }
        for list in c.iter_mut().filter(|l| l.len() > 1) {
            list.sort_by(|a, b| {
                self.names[self.name[*a as usize] as usize].cmp(&self.names[self.name[*b as usize] as usize])
            });
        }
        (c, other)
    }

    /// The flame graph, truncated to `max_nodes`: children whose total is
    /// below the `max_nodes`-th largest total fold into one `other` node.
    pub fn flamegraph(&self, max_nodes: usize) -> FlameGraphLevels {
        let totals = self.totals();
        let live = totals.iter().skip(1).filter(|&&t| t != 0).count();
        let threshold = if max_nodes > 0 && live > max_nodes {
            let mut all: Vec<i64> = totals.iter().skip(1).copied().filter(|&t| t != 0).collect();
            let k = max_nodes.min(all.len()) - 1;
            let (_, nth, _) = all.select_nth_unstable_by(k, |a, b| b.cmp(a));
            *nth
        } else {
            i64::MIN
        };
        let (children, others) = self.children(&totals, threshold);
        let mut names: IndexSet<String, FxBuildHasher> = IndexSet::with_hasher(FxBuildHasher);
        names.insert("total".to_owned());
        let mut levels: Vec<Vec<i64>> = Vec::new();
        let mut prev_end: Vec<i64> = Vec::new();
        let mut max_self = 0;
        // (node or OTHER marker, depth, abs_x, total, self)
        enum Item {
            Node(u32),
            Other(i64),
        }
        let mut stack: Vec<(Item, usize, i64)> = vec![(Item::Node(0), 0, 0)];
        while let Some((item, depth, x)) = stack.pop() {
            if levels.len() <= depth {
                levels.push(Vec::new());
                prev_end.push(0);
            }
            let (total, self_v, name_idx) = match &item {
                Item::Node(0) => (totals[0], 0, 0),
                Item::Node(n) => {
                    let name = &self.names[self.name[*n as usize] as usize];
                    let idx = names.get_index_of(name.as_str()).unwrap_or_else(|| names.insert_full(name.clone()).0);
                    (totals[*n as usize], self.self_value[*n as usize], idx as i64)
                }
                Item::Other(t) => {
                    let idx = names.get_index_of(OTHER).unwrap_or_else(|| names.insert_full(OTHER.to_owned()).0);
                    (*t, *t, idx as i64)
                }
            };
            max_self = max_self.max(self_v);
            levels[depth].extend_from_slice(&[x.wrapping_sub(prev_end[depth]), total, self_v, name_idx]);
            prev_end[depth] = x.wrapping_add(total);
            if let Item::Node(n) = item {
                // Children left to right: pushed in reverse so they pop in order.
                let mut cx = x.wrapping_add(self_v);
                let mut placed: Vec<(Item, usize, i64)> = Vec::new();
                for &c in &children[n as usize] {
                    placed.push((Item::Node(c), depth + 1, cx));
                    cx = cx.wrapping_add(totals[c as usize]);
                }
                let other = others[n as usize];
                if other != 0 {
                    placed.push((Item::Other(other), depth + 1, cx));
                }
                stack.extend(placed.into_iter().rev());
            }
        }
        FlameGraphLevels { names: names.into_iter().collect(), levels, total: totals[0], max_self }
    }

    /// The tree-bytes encoding: pre-order records `uvarint(len) name
    /// uvarint(self) uvarint(child_count)` under a nameless root.
    pub fn tree_bytes(&self, max_nodes: usize) -> Vec<u8> {
        let fg = self.flamegraph(max_nodes);
        if fg.total == 0 {
            return Vec::new();
        }
        // Rebuild parent/child structure from levels (children follow their parent's x).
        let mut out = Vec::new();
        write_level_tree(&fg, 0, 0, &mut out);
        out
    }
}

/// A Graphviz DOT call graph of the tree, as `go tool pprof -dot` draws
/// one: a node per function (flat and cumulative values), an edge per
/// caller → callee, keeping the `max_nodes` functions of largest
/// cumulative value.
pub fn dot_graph(tree: &StackTree, max_nodes: usize, unit: &str) -> String {
    use std::fmt::Write;
    let totals = tree.totals();
    let total = totals[0].max(1);
    let mut flat: FxHashMap<u32, i64> = FxHashMap::default();
    let mut cum: FxHashMap<u32, i64> = FxHashMap::default();
    let mut edges: FxHashMap<(u32, u32), i64> = FxHashMap::default();
    for (i, &node_total) in totals.iter().enumerate().skip(1) {
        let name = tree.name[i];
        let f = flat.entry(name).or_default();
        *f = f.wrapping_add(tree.self_value[i]);
        // A function counts once per stack: skip nodes with the same name above.
        let mut p = tree.parent[i] as usize;
        let mut recursive = false;
        while p != 0 {
            if tree.name[p] == name {
                recursive = true;
                break;
            }
            p = tree.parent[p] as usize;
        }
        if !recursive {
            let c = cum.entry(name).or_default();
            *c = c.wrapping_add(node_total);
        }
        let parent = tree.parent[i] as usize;
        if parent != 0 {
            let e = edges.entry((tree.name[parent], name)).or_default();
            *e = e.wrapping_add(node_total);
        }
    }
    let mut nodes: Vec<(u32, i64)> = cum.iter().map(|(&k, &v)| (k, v)).filter(|(_, v)| *v != 0).collect();
    nodes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    nodes.truncate(max_nodes.max(1));
    let keep: FxHashMap<u32, usize> = nodes.iter().enumerate().map(|(i, (k, _))| (*k, i + 1)).collect();
    let pct = |v: i64| v as f64 * 100.0 / total as f64;
    let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"unnamed\" {{");
    let _ = writeln!(out, "node [style=filled fillcolor=\"#f8f8f8\"]");
    let _ = writeln!(
        out,
        "subgraph cluster_L {{ \"Total: {} {unit}\" [shape=box fontsize=16 label=\"Total: {} {unit}\\lShowing top {} nodes\\l\"] }}",
        totals[0],
        totals[0],
        nodes.len()
    );
    for (name, c) in &nodes {
        let f = flat.get(name).copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "N{} [label=\"{}\\n{} ({:.2}%)\\nof {} ({:.2}%)\" shape=box fontsize={:.1}]",
            keep[name],
            esc(&tree.names[*name as usize]),
            f,
            pct(f),
            c,
            pct(*c),
            8.0 + 16.0 * (f as f64 / total as f64).sqrt()
        );
    }
    let mut e: Vec<((u32, u32), i64)> =
        edges.into_iter().filter(|((a, b), _)| keep.contains_key(a) && keep.contains_key(b)).collect();
    e.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    for ((a, b), w) in e {
        let _ = writeln!(out, "N{} -> N{} [label=\" {w}\" weight={}]", keep[&a], keep[&b], (pct(w) as i64).max(1));
    }
    out.push_str("}\n");
    out
}

/// A diff flame graph: both trees aligned by path, 7 values per node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiffLevels {
    pub names: Vec<String>,
    /// Per depth, 7 values per node: left x delta, left total, left self,
    /// right x delta, right total, right self, name index.
    pub levels: Vec<Vec<i64>>,
    pub left_ticks: i64,
    pub right_ticks: i64,
    pub max_self: i64,
}

/// Aligns two trees (union of children by name at every node) and lays
/// out each side independently; children below the `max_nodes`-th largest
/// combined total fold into `other`.
pub fn diff_flamegraph(left: &StackTree, right: &StackTree, max_nodes: usize) -> DiffLevels {
    let mut u = StackTree::default();
    // Self values per side on the union structure.
    let side = |u: &mut StackTree, t: &StackTree| -> Vec<i64> {
        let names: Vec<u32> = t.names.iter().map(|n| u.name_id(n)).collect();
        let mut map = vec![0u32; t.parent.len()];
        for i in 1..t.parent.len() {
            map[i] = u.child(map[t.parent[i] as usize], names[t.name[i] as usize]);
        }
        let mut v = vec![0i64; u.parent.len()];
        for (i, s) in t.self_value.iter().enumerate() {
            if let Some(x) = v.get_mut(map[i] as usize) {
                *x = x.wrapping_add(*s);
            }
        }
        v
    };
    let ls = side(&mut u, left);
    let rs = side(&mut u, right);
    let n = u.parent.len();
    let pad = |mut v: Vec<i64>| {
        v.resize(n, 0);
        v
    };
    let (ls, rs) = (pad(ls), pad(rs));
    let totals = |s: &[i64]| {
        let mut t = s.to_vec();
        for i in (1..n).rev() {
            let p = u.parent[i] as usize;
            t[p] = t[p].wrapping_add(t[i]);
        }
        t
    };
    let (lt, rt) = (totals(&ls), totals(&rs));
    let combined: Vec<i64> = lt.iter().zip(&rt).map(|(a, b)| a.wrapping_add(*b)).collect();
    let live = combined.iter().skip(1).filter(|&&t| t != 0).count();
    let threshold = if max_nodes > 0 && live > max_nodes {
        let mut all: Vec<i64> = combined.iter().skip(1).copied().filter(|&t| t != 0).collect();
        let k = max_nodes.min(all.len()) - 1;
        *all.select_nth_unstable_by(k, |a, b| b.cmp(a)).1
    } else {
        i64::MIN
    };
    let mut children = vec![Vec::new(); n];
    for i in 1..n {
        if combined[i] != 0 {
            children[u.parent[i] as usize].push(i as u32);
        }
    }
    for c in &mut children {
        c.sort_by(|a, b| u.names[u.name[*a as usize] as usize].cmp(&u.names[u.name[*b as usize] as usize]));
    }
    let mut names: IndexSet<String, FxBuildHasher> = IndexSet::with_hasher(FxBuildHasher);
    names.insert("total".to_owned());
    let mut levels: Vec<Vec<i64>> = Vec::new();
    let mut prev: Vec<(i64, i64)> = Vec::new();
    let mut max_self = 0;
    /// A node, or the `other` aggregate with its (left, right) totals.
    type Item = Result<u32, (i64, i64)>;
    // (item, depth, left x, right x)
    let mut stack: Vec<(Item, usize, i64, i64)> = vec![(Ok(0), 0, 0, 0)];
    while let Some((item, d, lx, rx)) = stack.pop() {
        if levels.len() <= d {
            levels.push(Vec::new());
            prev.push((0, 0));
        }
        let (ltot, lself, rtot, rself, name) = match item {
            Ok(0) => (lt[0], 0, rt[0], 0, 0),
            Ok(i) => {
                let nm = &u.names[u.name[i as usize] as usize];
                let idx = names.get_index_of(nm.as_str()).unwrap_or_else(|| names.insert_full(nm.clone()).0);
                (lt[i as usize], ls[i as usize], rt[i as usize], rs[i as usize], idx as i64)
            }
            Err((l, r)) => {
                let idx = names.get_index_of(OTHER).unwrap_or_else(|| names.insert_full(OTHER.to_owned()).0);
                (l, l, r, r, idx as i64)
            }
        };
        max_self = max_self.max(lself).max(rself);
        levels[d].extend_from_slice(&[
            lx.wrapping_sub(prev[d].0),
            ltot,
            lself,
            rx.wrapping_sub(prev[d].1),
            rtot,
            rself,
            name,
        ]);
        prev[d] = (lx.wrapping_add(ltot), rx.wrapping_add(rtot));
        if let Ok(i) = item {
            let (mut cl, mut cr) = (lx.wrapping_add(lself), rx.wrapping_add(rself));
            let mut placed = Vec::new();
            let (mut ol, mut or) = (0i64, 0i64);
            for &c in &children[i as usize] {
                let c = c as usize;
                if combined[c] < threshold {
                    ol = ol.wrapping_add(lt[c]);
                    or = or.wrapping_add(rt[c]);
                    continue;
                }
                placed.push((Ok(c as u32), d + 1, cl, cr));
                cl = cl.wrapping_add(lt[c]);
                cr = cr.wrapping_add(rt[c]);
            }
            if ol != 0 || or != 0 {
                placed.push((Err((ol, or)), d + 1, cl, cr));
            }
            stack.extend(placed.into_iter().rev());
        }
    }
    DiffLevels { names: names.into_iter().collect(), levels, left_ticks: lt[0], right_ticks: rt[0], max_self }
}

fn uvarint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Writes node `i` of level `d` and its subtree.
fn write_level_tree(fg: &FlameGraphLevels, d: usize, i: usize, out: &mut Vec<u8>) {
    let abs = |d: usize| -> Vec<(i64, i64)> {
        let mut x = 0i64;
        fg.levels[d]
            .chunks_exact(4)
            .map(|n| {
                let a = x.wrapping_add(n[0]);
                x = a.wrapping_add(n[1]);
                (a, n[1])
            })
            .collect()
    };
    let here = abs(d);
    let node = &fg.levels[d][i * 4..i * 4 + 4];
    let name = if d == 0 { "" } else { fg.names.get(node[3] as usize).map(String::as_str).unwrap_or("") };
    let (x, total) = here[i];
    let kids: Vec<usize> = if d + 1 < fg.levels.len() {
        abs(d + 1)
            .iter()
            .enumerate()
            .filter(|(_, (cx, ct))| *cx >= x && cx.wrapping_add(*ct) <= x.wrapping_add(total) && *ct > 0)
            .map(|(k, _)| k)
            .collect()
    } else {
        Vec::new()
    };
    uvarint(name.len() as u64, out);
    out.extend_from_slice(name.as_bytes());
    uvarint(node[2].max(0) as u64, out);
    uvarint(kids.len() as u64, out);
    for k in kids {
        write_level_tree(fg, d + 1, k, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> StackTree {
        let mut t = StackTree::default();
        t.add_stack(["a"], 1);
        t.add_stack(["a", "c"], 5);
        t.add_stack(["b"], 4);
        t
    }

    #[test]
    fn values_over_a_shape_add_by_name_and_leave_out_nodes_without_value() {
        // Shape: root, a (1), a;c (2), b (3), b;d (4).
        let mut shape = StackTree::default();
        for path in [&["a", "c"][..], &["b", "d"]] {
            shape.add_stack(path.iter().copied(), 0);
        }
        let mut t = StackTree::default();
        t.add_stack(["b"], 2);
        // a;c = 5, b = -1 (a partial sum), b;d = 0: d is left out.
        t.add_values(&shape, &[3, 0, 5, -1, 0]);
        let mut want = StackTree::default();
        want.add_stack(["b"], 1);
        want.add_stack(["a", "c"], 5);
        want.add_stack([], 3);
        assert_eq!(t.total(), 9);
        assert_eq!(t.node_count(), 4);
        assert_eq!(t.flamegraph(0), want.flamegraph(0));
        assert_eq!(shape.find_child(0, shape.find_name("b").unwrap()), Some(3));
        assert_eq!(shape.find_name("x"), None);
    }

    #[test]
    fn the_spec_example_renders_exactly() {
        let fg = example().flamegraph(8192);
        // names are in first-use order: total, a, c, b
        assert_eq!(fg.names, vec!["total", "a", "c", "b"]);
        assert_eq!(fg.levels, vec![vec![0, 10, 0, 0], vec![0, 6, 1, 1, 0, 4, 4, 3], vec![1, 5, 5, 2]]);
        assert_eq!((fg.total, fg.max_self), (10, 5));
    }

    #[test]
    fn merging_adds_values_by_path() {
        let mut t = example();
        t.merge(&example());
        let fg = t.flamegraph(0);
        assert_eq!(fg.total, 20);
        assert_eq!(fg.levels[2], vec![2, 10, 10, 2]);
    }

    #[test]
    fn small_children_fold_into_other() {
        let mut t = StackTree::default();
        t.add_stack(["big"], 100);
        for i in 0..10 {
            t.add_stack([format!("small{i}").as_str()], i + 1);
        }
        // The 3rd largest total is 9: big (100), small9 (10) and small8 (9)
        // stay; small0..small7 (1+..+8 = 36) become `other`, placed last.
        let fg = t.flamegraph(3);
        let name = |i: i64| fg.names[i as usize].as_str();
        let level: Vec<(&str, i64)> = fg.levels[1].chunks(4).map(|n| (name(n[3]), n[1])).collect();
        assert_eq!(level, vec![("big", 100), ("small8", 9), ("small9", 10), ("other", 36)]);
        assert_eq!(fg.total, 155);
        assert_eq!(fg.max_self, 100);
    }

    #[test]
    fn diffs_align_both_sides_by_path() {
        let left = example();
        let mut right = StackTree::default();
        right.add_stack(["a", "c"], 2);
        right.add_stack(["d"], 3);
        let d = diff_flamegraph(&left, &right, 0);
        let name = |i: i64| d.names[i as usize].as_str();
        // (name, left total, left self, right total, right self) per level
        type Row<'a> = (&'a str, i64, i64, i64, i64);
        let rows: Vec<Vec<Row<'_>>> =
            d.levels.iter().map(|l| l.chunks(7).map(|n| (name(n[6]), n[1], n[2], n[4], n[5])).collect()).collect();
        assert_eq!(
            rows,
            vec![
                vec![("total", 10, 0, 5, 0)],
                vec![("a", 6, 1, 2, 0), ("b", 4, 4, 0, 0), ("d", 0, 0, 3, 3)],
                vec![("c", 5, 5, 2, 2)],
            ]
        );
        assert_eq!((d.left_ticks, d.right_ticks, d.max_self), (10, 5, 5));
        // Right x offsets are laid out from right totals only: d starts at 2.
        assert_eq!(d.levels[1][14..21], [0, 0, 0, 0, 3, 3, 4]);
    }

    #[test]
    fn call_site_prefixes_keep_matching_stacks_only() {
        let t = example();
        assert_eq!(t.with_prefix(&["a"]).total(), 6);
        assert_eq!(t.with_prefix(&["a", "c"]).total(), 5);
        assert_eq!(t.with_prefix(&["c"]).total(), 0);
        assert_eq!(t.with_prefix(&[]).total(), 10);
    }

    #[test]
    fn dot_graphs_list_functions_and_calls() {
        let d = dot_graph(&example(), 100, "samples");
        assert!(d.starts_with("digraph"));
        assert!(d.contains(r#"label="c\n5 (50.00%)\nof 5 (50.00%)""#), "{d}");
        assert!(d.contains(r#"label="a\n1 (10.00%)\nof 6 (60.00%)""#), "{d}");
        assert_eq!(d.matches(" -> ").count(), 1);
        assert_eq!(dot_graph(&example(), 1, "samples").matches("\" shape=box fontsize=").count(), 1);
    }

    #[test]
    fn parts_round_trip_and_hostile_parts_are_rejected() {
        let mut t = example();
        t.add_stack([], 2); // the root's own value
        let (names, parent, name, values) = t.to_parts();
        assert_eq!(StackTree::from_parts(names.clone(), parent.clone(), name.clone(), values.clone()), Ok(t.clone()));
        assert_eq!(StackTree::from_parts(vec![], vec![0], vec![0], vec![0]), Ok(StackTree::default()));
        let bad = |names: Vec<&str>, parent: Vec<u32>, name: Vec<u32>, values: Vec<i64>| {
            StackTree::from_parts(names.into_iter().map(str::to_owned).collect(), parent, name, values).unwrap_err()
        };
        assert!(bad(vec![], vec![], vec![], vec![]).contains("non-empty"));
        assert!(bad(vec!["a"], vec![0, 0], vec![0, 0], vec![0]).contains("equal length"));
        assert!(bad(vec!["a"], vec![1, 0], vec![0, 0], vec![0, 0]).contains("root"));
        assert!(bad(vec!["a", "b"], vec![0, 0, 2], vec![0, 0, 1], vec![0; 3]).contains("precede"));
        assert!(bad(vec!["a", "b"], vec![0, 1, 0], vec![0, 0, 1], vec![0; 3]).contains("precede"));
        assert!(bad(vec!["a"], vec![0, 0], vec![0, 1], vec![0; 2]).contains("out of range"));
        assert!(bad(vec!["a", "a"], vec![0, 0], vec![0, 0], vec![0; 2]).contains("duplicate tree name"));
        assert!(bad(vec!["a"], vec![0, 0, 0], vec![0, 0, 0], vec![0; 3]).contains("duplicate child"));
        assert!(bad(vec!["a", "b"], vec![0, 0, 0], vec![0, 0, 1], vec![0, i64::MAX, 1]).contains("overflow"));
        assert!(bad(vec!["a"], vec![0, 0], vec![0, 0], vec![0, i64::MIN]).contains("out of range"));
        assert!(names.len() == 3 && parent.len() == name.len() && name.len() == values.len());
    }

    #[test]
    fn tree_bytes_match_the_spec_layout() {
        let b = example().tree_bytes(8192);
        // root (no name, self 0, 2 children) → a (self 1, 1 child) → c (5) ; b (4)
        assert_eq!(b, vec![0, 0, 2, 1, b'a', 1, 1, 1, b'c', 5, 0, 1, b'b', 4, 0]);
        assert!(StackTree::default().tree_bytes(10).is_empty());
    }
}
