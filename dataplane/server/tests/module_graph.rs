//! The server crate's modules import each other without a cycle, so it
//! reads top-down: `main` → `app` (wiring) → `api/`, `legacy/`, `admin/`
//! → `context`. The graph is built from the sources: a node per file
//! module, an edge for every `crate::…` or `super::…` path that reaches
//! another module (the longest prefix that is one) and for every use of a
//! child module by name; tests (`#[cfg(test)]`, at the end of a file) are
//! left out. `cargo test -p phlox-server --test module_graph -- --nocapture`
//! prints it.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `main.rs` → `crate`, `a.rs` and `a/mod.rs` → `a`, `a/b.rs` → `a::b`.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    if parts == ["main"] { "crate".into() } else { parts.join("::") }
}

fn parent(module: &str) -> String {
    module.rsplit_once("::").map_or_else(|| "crate".to_owned(), |(p, _)| p.to_owned())
}

fn join(base: &str, segment: &str) -> String {
    if base == "crate" { segment.to_owned() } else { format!("{base}::{segment}") }
}

/// The module a path starting at `base` with `segments` reaches: its
/// longest prefix that is a module.
fn resolve(modules: &BTreeSet<String>, base: &str, segments: &[&str]) -> String {
    let mut at = base.to_owned();
    for s in segments {
        let next = join(&at, s);
        if !modules.contains(&next) {
            break;
        }
        at = next;
    }
    at
}

fn ident(text: &str) -> &str {
    let end = text.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(text.len());
    &text[..end]
}

/// The paths after each `crate::`/`super::` in `code`, as segment lists
/// (a `{a, b::c}` group gives one path per item).
fn paths(code: &str, root: &str) -> Vec<(bool, Vec<String>)> {
    let mut out = Vec::new();
    let needle = format!("{root}::");
    let mut rest = code;
    while let Some(i) = rest.find(&needle) {
        let before = rest[..i].chars().last();
        rest = &rest[i + needle.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let mut segments = Vec::new();
        let mut tail = rest;
        loop {
            if let Some(group) = tail.strip_prefix('{') {
                let items = &group[..group.find('}').unwrap_or(group.len())];
                for item in items.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                    let mut s = segments.clone();
                    s.extend(item.split("::").map(|x| ident(x.trim()).to_owned()));
                    out.push((root == "super", s));
                }
                segments.clear();
                break;
            }
            let id = ident(tail);
            if id.is_empty() {
                break;
            }
            segments.push(id.to_owned());
            tail = &tail[id.len()..];
            match tail.strip_prefix("::") {
                Some(t) => tail = t,
                None => break,
            }
        }
        if !segments.is_empty() {
            out.push((root == "super", segments));
        }
    }
    out
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(&src, f)).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = modules.iter().map(|m| (m.clone(), BTreeSet::new())).collect();
    for file in &files {
        let module = module_of(&src, file);
        let text = std::fs::read_to_string(file).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap();
        let mut targets = Vec::new();
        for (relative, segments) in paths(code, "crate").into_iter().chain(paths(code, "super")) {
            let refs: Vec<&str> = segments.iter().map(String::as_str).collect();
            let base = if relative { parent(&module) } else { "crate".to_owned() };
            targets.push(resolve(&modules, &base, &refs));
        }
        // Children used by name (`push::rpc(..)`, `use rpc::absent`).
        for child in modules.iter().filter(|m| parent(m) == module && m.as_str() != module) {
            let name = child.rsplit("::").next().unwrap();
            let used = code
                .match_indices(&format!("{name}::"))
                .any(|(i, _)| !code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':'));
            if used {
                targets.push(child.clone());
            }
        }
        for t in targets {
            if t != module {
                edges.get_mut(&module).unwrap().insert(t);
            }
        }
    }
    edges
}

fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_owned(), 1);
        stack.push(node.to_owned());
        for next in &edges[node] {
            match state.get(next.as_str()).copied().unwrap_or(0) {
                1 => {
                    let start = stack.iter().position(|n| n == next).unwrap();
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(next, edges, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(node.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in edges.keys() {
        if state.get(node).copied().unwrap_or(0) == 0
            && let Some(c) = visit(node, edges, &mut state, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

#[test]
fn the_server_crate_has_no_import_cycle() {
    let edges = graph();
    for (m, to) in &edges {
        println!("{m} -> {}", to.iter().cloned().collect::<Vec<_>>().join(", "));
    }
    assert_eq!(find_cycle(&edges), None, "an import cycle");
    // The layers: the request context knows no API; the API layers know
    // the context, not each other (but for the status page's use of the
    // reported version); none knows the app.
    let top = |m: &String| m.split("::").next().unwrap().to_owned();
    let uses = |layer: &str| -> BTreeSet<String> {
        edges
            .iter()
            .filter(|(m, _)| top(m) == layer)
            .flat_map(|(_, to)| to.iter().map(top))
            .filter(|t| t != layer)
            .collect()
    };
    let set = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(uses("context"), set(&[]));
    assert_eq!(uses("api"), set(&["context"]));
    assert_eq!(uses("legacy"), set(&["context"]));
    assert_eq!(uses("admin"), set(&["api", "context"]));
    assert_eq!(edges["admin::status"].iter().filter(|t| top(t) == "api").collect::<Vec<_>>(), vec!["api::info"]);
}

#[test]
fn the_graph_sees_paths_groups_and_children() {
    let code = "use crate::context::{ApiError, body::read};\nuse super::rpc::{self, Rpc};\nlet x = a::crate::no;";
    let crate_paths: Vec<Vec<String>> = paths(code, "crate").into_iter().map(|(_, s)| s).collect();
    assert_eq!(crate_paths, vec![vec!["context", "ApiError"], vec!["context", "body", "read"]]);
    let super_paths: Vec<Vec<String>> = paths(code, "super").into_iter().map(|(_, s)| s).collect();
    assert_eq!(super_paths, vec![vec!["rpc", "self"], vec!["rpc", "Rpc"]]);
    // A known cycle is found.
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    edges.insert("a".into(), ["b".to_owned()].into());
    edges.insert("b".into(), ["a".to_owned()].into());
    assert_eq!(find_cycle(&edges), Some(vec!["a".to_owned(), "b".to_owned(), "a".to_owned()]));
}
