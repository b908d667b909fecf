//! Stack-level work over a dataset's symbols: call-site masks and a merged
//! pprof with full locations (function, file, line), optionally reduced for
//! Go PGO.

use std::collections::HashMap;

use phlox_block::Symbols;
use phlox_model::{ProfileType, StackTree};
use phlox_proto::google::v1 as pb;
use rustc_hash::FxHashMap;

/// Per stack id: whether the stack starts with `call_site` (function names,
/// root first; inlined frames count one by one). An empty call site selects
/// every stack.
pub fn call_site_mask(symbols: &Symbols, call_site: &[String]) -> Vec<bool> {
    const FAIL: u32 = u32::MAX;
    let n = symbols.stack_count();
    let want = call_site.len() as u32;
    // Frames of the call site matched so far on the path to each node.
    let mut state = vec![0u32; n];
    for i in 1..n {
        let mut s = state[symbols.stack_parent[i] as usize];
        if s != FAIL && s < want {
            let loc = symbols.stack_location[i] as usize;
            if let Some(r) = symbols.location_lines.get(loc) {
                // Lines are innermost first: walk outermost first.
                for &(f, _) in symbols.lines[r.start as usize..r.end as usize].iter().rev() {
                    if s == want {
                        break;
                    }
                    let name = symbols.functions.get(f as usize).map(|f| symbols.strings[f.name as usize].as_str());
                    if name == Some(call_site[s as usize].as_str()) {
                        s += 1;
                    } else {
                        s = FAIL;
                        break;
                    }
                }
            }
        }
        state[i] = s;
    }
    state.into_iter().map(|s| s == want).collect()
}

/// How stacks are reduced for Go profile-guided optimisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgoOptions {
    /// Leaf-most locations kept per stack.
    pub keep_locations: usize,
    /// Drop the leaf location's line numbers, so all samples of a callee
    /// aggregate (callers keep their call-site lines).
    pub aggregate_callees: bool,
}

/// A function as merged across datasets: (name, system name, filename, start line).
pub(crate) type FunctionKey = (u32, u32, u32, i64);

/// Borrowed [`MergedStacks`] internals: strings, functions, locations (lines
/// innermost first) and stacks (locations leaf first → value).
pub(crate) type StacksParts<'a> = (&'a [String], &'a [FunctionKey], &'a [Vec<(u32, i64)>], &'a HashMap<Vec<u32>, i64>);

/// A merged profile keyed by symbols, so datasets with different symbol
/// tables combine exactly. Strings, functions and locations are interned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MergedStacks {
    strings: Vec<String>,
    string_ids: FxHashMap<String, u32>,
    functions: Vec<FunctionKey>,
    function_ids: FxHashMap<FunctionKey, u32>,
    /// Each location: its lines (function, line), innermost first.
    locations: Vec<Vec<(u32, i64)>>,
    location_ids: HashMap<Vec<(u32, i64)>, u32>,
    /// Locations leaf first → value.
    stacks: HashMap<Vec<u32>, i64>,
}

impl MergedStacks {
    fn string(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.string_ids.get(s) {
            return id;
        }
        let id = self.strings.len() as u32;
        self.strings.push(s.to_owned());
        self.string_ids.insert(s.to_owned(), id);
        id
    }

    fn function(&mut self, key: FunctionKey) -> u32 {
        let next = self.functions.len() as u32;
        *self.function_ids.entry(key).or_insert_with(|| {
            self.functions.push(key);
            next
        })
    }

    fn location(&mut self, lines: Vec<(u32, i64)>) -> u32 {
        if let Some(&id) = self.location_ids.get(&lines) {
            return id;
        }
        let id = self.locations.len() as u32;
        self.locations.push(lines.clone());
        self.location_ids.insert(lines, id);
        id
    }

    /// The interned strings, functions, locations and the valued stacks
    /// (locations leaf first), for transport.
    pub(crate) fn parts(&self) -> StacksParts<'_> {
        (&self.strings, &self.functions, &self.locations, &self.stacks)
    }

    /// The stacks of [`MergedStacks::parts`], checked as untrusted input:
    /// distinct strings, functions, locations and stack paths, every index
    /// in range, and values whose absolute sum fits an `i64`.
    pub(crate) fn from_parts(
        strings: Vec<String>,
        functions: Vec<FunctionKey>,
        locations: Vec<Vec<(u32, i64)>>,
        stacks: Vec<(Vec<u32>, i64)>,
    ) -> Result<Self, String> {
        let mut out = MergedStacks::default();
        for s in strings {
            if out.string_ids.contains_key(&s) {
                return Err(format!("duplicate string {s:?}"));
            }
            out.string(&s);
        }
        for (i, key) in functions.into_iter().enumerate() {
            let (n, sn, f, _) = key;
            if [n, sn, f].iter().any(|&s| s as usize >= out.strings.len()) {
                return Err(format!("function {i}: string index out of range"));
            }
            if out.function_ids.contains_key(&key) {
                return Err(format!("function {i} is a duplicate"));
            }
            out.function(key);
        }
        for (i, lines) in locations.into_iter().enumerate() {
            if lines.iter().any(|&(f, _)| f as usize >= out.functions.len()) {
                return Err(format!("location {i}: function index out of range"));
            }
            if out.location_ids.contains_key(&lines) {
                return Err(format!("location {i} is a duplicate"));
            }
            out.location(lines);
        }
        let mut sum: i64 = 0;
        out.stacks.reserve(stacks.len());
        for (i, (path, value)) in stacks.into_iter().enumerate() {
            if path.iter().any(|&l| l as usize >= out.locations.len()) {
                return Err(format!("stack {i}: location index out of range"));
            }
            sum = value
                .checked_abs()
                .and_then(|v| sum.checked_add(v))
                .ok_or_else(|| format!("stack {i}: values overflow a 64-bit total"))?;
            if out.stacks.insert(path, value).is_some() {
                return Err(format!("stack {i} is a duplicate"));
            }
        }
        Ok(out)
    }

    /// Adds the valued stacks of one dataset (`values` indexed by stack id).
    pub fn add_dataset(&mut self, symbols: &Symbols, values: &[i64], pgo: Option<PgoOptions>) {
        let mut fn_map: Vec<u32> = vec![u32::MAX; symbols.functions.len()];
        let mut loc_map: Vec<u32> = vec![u32::MAX; symbols.location_lines.len()];
        let mut path = Vec::new();
        for (stack, &value) in values.iter().enumerate() {
            if value == 0 || stack == 0 {
                continue;
            }
            path.clear();
            for loc in symbols.stack_locations(stack as u32) {
                if pgo.is_some_and(|p| path.len() >= p.keep_locations) {
                    break;
                }
                let leaf = path.is_empty();
                let strip_line = leaf && pgo.is_some_and(|p| p.aggregate_callees);
                let cached = loc_map.get(loc as usize).copied().unwrap_or(u32::MAX);
                if cached != u32::MAX && !strip_line {
                    path.push(cached);
                    continue;
                }
                let Some(r) = symbols.location_lines.get(loc as usize) else { continue };
                let mut lines = Vec::with_capacity(r.len());
                for &(f, line) in &symbols.lines[r.start as usize..r.end as usize] {
                    let mut id = fn_map.get(f as usize).copied().unwrap_or(u32::MAX);
                    if id == u32::MAX {
                        let Some(row) = symbols.functions.get(f as usize) else { continue };
                        let key = (
                            self.string(&symbols.strings[row.name as usize]),
                            self.string(&symbols.strings[row.system_name as usize]),
                            self.string(&symbols.strings[row.filename as usize]),
                            row.start_line,
                        );
                        id = self.function(key);
                        if let Some(slot) = fn_map.get_mut(f as usize) {
                            *slot = id;
                        }
                    }
                    lines.push((id, if strip_line { 0 } else { line }));
                }
                let id = self.location(lines);
                if !strip_line && let Some(slot) = loc_map.get_mut(loc as usize) {
                    *slot = id;
                }
                path.push(id);
            }
            if !path.is_empty() {
                let v = self.stacks.entry(path.clone()).or_insert(0);
                *v = v.wrapping_add(value);
            }
        }
    }

    /// Adds every stack of `other`.
    pub fn merge(&mut self, other: MergedStacks) {
        let strings: Vec<u32> = other.strings.iter().map(|s| self.string(s)).collect();
        let functions: Vec<u32> = other
            .functions
            .iter()
            .map(|&(n, sn, f, l)| self.function((strings[n as usize], strings[sn as usize], strings[f as usize], l)))
            .collect();
        let locations: Vec<u32> = other
            .locations
            .into_iter()
            .map(|lines| self.location(lines.into_iter().map(|(f, l)| (functions[f as usize], l)).collect()))
            .collect();
        for (path, v) in other.stacks {
            let path: Vec<u32> = path.into_iter().map(|l| locations[l as usize]).collect();
            let s = self.stacks.entry(path).or_insert(0);
            *s = s.wrapping_add(v);
        }
    }

    pub fn total(&self) -> i64 {
        self.stacks.values().fold(0i64, |a, &v| a.wrapping_add(v))
    }

    /// The call tree by function name.
    pub fn to_tree(&self) -> StackTree {
        let mut tree = StackTree::default();
        for (path, &v) in &self.stacks {
            let names = path.iter().rev().flat_map(|&l| {
                self.locations[l as usize]
                    .iter()
                    .rev()
                    .map(|&(f, _)| self.strings[self.functions[f as usize].0 as usize].as_str())
            });
            tree.add_stack(names, v);
        }
        tree
    }

    /// As a pprof profile: one location per distinct (lines) tuple, samples
    /// in a stable order (by location path).
    pub fn to_pprof(&self, profile_type: &ProfileType) -> pb::Profile {
        let mut strings = self.strings.clone();
        // String 0 must be "".
        let shift = if strings.first().is_some_and(String::is_empty) {
            0
        } else {
            strings.insert(0, String::new());
            1
        };
        let mut extra = |s: &str| -> i64 {
            if let Some(i) = strings.iter().position(|x| x == s) {
                return i as i64;
            }
            strings.push(s.to_owned());
            (strings.len() - 1) as i64
        };
        let sample_type =
            pb::ValueType { r#type: extra(&profile_type.sample_type), unit: extra(&profile_type.sample_unit) };
        let period_type = (!profile_type.period_type.is_empty()).then(|| pb::ValueType {
            r#type: extra(&profile_type.period_type),
            unit: extra(&profile_type.period_unit),
        });
        let function = self
            .functions
            .iter()
            .enumerate()
            .map(|(i, &(n, sn, f, l))| pb::Function {
                id: i as u64 + 1,
                name: (n + shift) as i64,
                system_name: (sn + shift) as i64,
                filename: (f + shift) as i64,
                start_line: l,
            })
            .collect();
        let location = self
            .locations
            .iter()
            .enumerate()
            .map(|(i, lines)| pb::Location {
                id: i as u64 + 1,
                line: lines.iter().map(|&(f, line)| pb::Line { function_id: u64::from(f) + 1, line }).collect(),
                ..Default::default()
            })
            .collect();
        let mut stacks: Vec<(&Vec<u32>, i64)> = self.stacks.iter().map(|(k, &v)| (k, v)).collect();
        stacks.sort_unstable();
        let sample = stacks
            .into_iter()
            .filter(|&(_, v)| v != 0)
            .map(|(path, v)| pb::Sample {
                location_id: path.iter().map(|&l| u64::from(l) + 1).collect(),
                value: vec![v],
                label: vec![],
            })
            .collect();
        pb::Profile {
            sample_type: vec![sample_type],
            sample,
            location,
            function,
            string_table: strings,
            period_type,
            ..Default::default()
        }
    }
}
