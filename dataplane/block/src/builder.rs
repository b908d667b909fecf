//! Building one object from many per-series profiles.
//!
//! [`SegmentBuilder`] keeps one [`DatasetBuilder`] per (tenant, service).
//! Each dataset interns symbols once (strings, functions, mappings,
//! locations, and stacks as a prefix tree of (parent, location) nodes), so the
//! many copies of the same symbols that separate pprofs carry are stored once.
//! A profile row keeps only stack node ids and values.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use indexmap::{IndexMap, IndexSet};
use phlox_model::{Labels, ProfileId, ProfileKey, label_names as ln};
use phlox_pprof::{Profile, SeriesProfile};
use phlox_proto::metastore::v1::{BlockMeta, Dataset, Section, SectionKind};
use rustc_hash::{FxBuildHasher, FxHashMap, FxHashSet};
use ulid::Ulid;

use crate::format::{FORMAT_VERSION, write_footer};
use crate::intern::{LocationSet, StringSet};
use crate::reader::{RowRef, SeriesInfo, Symbols};
use crate::sections as s;
use crate::{BlockError, Result};

/// Frames kept per stack (root-most first), as Pyroscope's
/// `max_profile_stacktrace_depth`.
pub const DEFAULT_MAX_STACK_DEPTH: usize = 1000;

const UNMAPPED: u32 = u32::MAX;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FunctionKey {
    name: u32,
    system_name: u32,
    filename: u32,
    start_line: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct MappingKey {
    memory_start: u64,
    memory_limit: u64,
    file_offset: u64,
    filename: u32,
    build_id: u32,
    flags: u8,
}

/// A dataset's (tenant, service) key, borrowed, for lookups: hashes as the
/// owned tuple does.
#[derive(Hash)]
struct DatasetRef<'a>(&'a str, &'a str);

impl indexmap::Equivalent<(String, String)> for DatasetRef<'_> {
    fn equivalent(&self, key: &(String, String)) -> bool {
        self.0 == key.0 && self.1 == key.1
    }
}

/// Interned symbols of one dataset plus the remapping of the pprof being added.
#[derive(Debug)]
struct SymbolsBuilder {
    strings: StringSet,
    functions: IndexSet<FunctionKey, FxBuildHasher>,
    mappings: IndexSet<MappingKey, FxBuildHasher>,
    locations: LocationSet,
    stack_index: FxHashMap<(u32, u32), u32>,
    /// (parent, location); node 0 is the root and has no location.
    stack_nodes: Vec<(u32, u32)>,
    /// Bytes of the symbols as the source pprofs carried them (for the
    /// dedup figure of the benchmark).
    source: Option<Arc<Profile>>,
    str_map: Vec<u32>,
    fn_map: Vec<u32>,
    mapping_map: Vec<u32>,
    loc_map: Vec<u32>,
    /// Stack node of each sample of the source: the series of one pprof
    /// (one per sample type: `samples` and `cpu`) share its stacks.
    sample_stack: Vec<u32>,
    /// Scratch of [`Self::location`]: the lines of the location at hand.
    lines: Vec<(u32, i64)>,
    /// Whole stacks interned so far, by the hash of their root-first
    /// location ids: (node, start, len) in `stack_paths`. A stack seen
    /// before (the common case: a program's stacks recur in every profile)
    /// costs one probe and one comparison instead of one probe per frame
    /// into the (large, cache-missing) prefix tree.
    whole_stacks: FxHashMap<u64, (u32, u32, u32)>,
    stack_paths: Vec<u32>,
    /// Scratch of [`Self::stack`]: the root-first location ids at hand.
    path: Vec<u32>,
}

impl SymbolsBuilder {
    fn new() -> Self {
        let mut functions = IndexSet::with_hasher(FxBuildHasher);
        functions.insert(FunctionKey { name: 0, system_name: 0, filename: 0, start_line: 0 });
        let mut mappings = IndexSet::with_hasher(FxBuildHasher);
        mappings.insert(MappingKey {
            memory_start: 0,
            memory_limit: 0,
            file_offset: 0,
            filename: 0,
            build_id: 0,
            flags: 0,
        });
        Self {
            strings: StringSet::new(),
            functions,
            mappings,
            locations: LocationSet::new(),
            stack_index: FxHashMap::default(),
            stack_nodes: vec![(0, 0)],
            source: None,
            str_map: Vec::new(),
            fn_map: Vec::new(),
            mapping_map: Vec::new(),
            loc_map: Vec::new(),
            sample_stack: Vec::new(),
            lines: Vec::new(),
            whole_stacks: FxHashMap::default(),
            stack_paths: Vec::new(),
            path: Vec::new(),
        }
    }

    /// Starts remapping a new source profile (no-op for the same source).
    fn use_source(&mut self, p: &Arc<Profile>) {
        if self.source.as_ref().is_some_and(|s| Arc::ptr_eq(s, p)) {
            return;
        }
        self.source = Some(Arc::clone(p));
        reset(&mut self.str_map, p.strings.len());
        reset(&mut self.fn_map, p.functions.len());
        reset(&mut self.mapping_map, p.mappings.len());
        reset(&mut self.loc_map, p.locations.len());
        reset(&mut self.sample_stack, p.sample_count());
    }

    fn string(&mut self, p: &Profile, idx: i64) -> u32 {
        let Ok(i) = usize::try_from(idx) else { return 0 };
        let Some(&m) = self.str_map.get(i) else { return 0 };
        if m != UNMAPPED {
            return m;
        }
        let id = self.strings.intern(p.strings.str(idx));
        self.str_map[i] = id;
        id
    }

    fn function(&mut self, p: &Profile, function_id: u64) -> u32 {
        let Some(pos) = p.function_position(function_id) else { return 0 };
        if self.fn_map[pos] != UNMAPPED {
            return self.fn_map[pos];
        }
        let f = p.functions[pos];
        let key = FunctionKey {
            name: self.string(p, f.name),
            system_name: self.string(p, f.system_name),
            filename: self.string(p, f.filename),
            start_line: f.start_line,
        };
        let id = self.functions.insert_full(key).0 as u32;
        self.fn_map[pos] = id;
        id
    }

    fn mapping(&mut self, p: &Profile, mapping_id: u64) -> u32 {
        let Some(pos) = p.mapping_position(mapping_id) else { return 0 };
        if self.mapping_map[pos] != UNMAPPED {
            return self.mapping_map[pos];
        }
        let m = p.mappings[pos];
        let key = MappingKey {
            memory_start: m.memory_start,
            memory_limit: m.memory_limit,
            file_offset: m.file_offset,
            filename: self.string(p, m.filename),
            build_id: self.string(p, m.build_id),
            flags: m.flags,
        };
        let id = self.mappings.insert_full(key).0 as u32;
        self.mapping_map[pos] = id;
        id
    }

    fn location(&mut self, p: &Profile, pos: usize) -> u32 {
        if self.loc_map[pos] != UNMAPPED {
            return self.loc_map[pos];
        }
        let l = &p.locations[pos];
        let mapping = self.mapping(p, l.mapping_id);
        // Looked up with borrowed lines: a location already interned (by an
        // earlier pprof of this segment) costs no allocation.
        let mut lines = std::mem::take(&mut self.lines);
        lines.clear();
        for line in &p.lines[l.lines.start as usize..l.lines.end as usize] {
            lines.push((self.function(p, line.function_id), line.line));
        }
        let id = self.locations.intern(mapping, l.address, &lines);
        self.lines = lines;
        self.loc_map[pos] = id;
        id
    }

    /// Interns the stack of sample `i` (pprof order: leaf first) and returns
    /// its node id; only the `max_depth` root-most frames are kept. Each
    /// sample of a source is walked once, whichever series asks.
    fn stack(&mut self, p: &Profile, i: usize, max_depth: usize) -> u32 {
        let memo = self.sample_stack[i];
        if memo != UNMAPPED {
            return memo;
        }
        let mut path = std::mem::take(&mut self.path);
        path.clear();
        for &loc_id in p.sample_location_ids(i).iter().rev().take(max_depth) {
            let Some(pos) = p.location_position(loc_id) else { continue };
            path.push(self.location(p, pos));
        }
        let hash = {
            use std::hash::{Hash, Hasher};
            let mut h = rustc_hash::FxHasher::default();
            path.hash(&mut h);
            h.finish()
        };
        let seen = self.whole_stacks.get(&hash).copied();
        let node = match seen {
            Some((node, start, len)) if self.stack_paths[start as usize..(start + len) as usize] == *path => node,
            _ => {
                let node = self.insert_path(&path);
                // A hash shared with another stack (rare) keeps the first.
                if seen.is_none() {
                    let start = self.stack_paths.len() as u32;
                    self.stack_paths.extend_from_slice(&path);
                    self.whole_stacks.insert(hash, (node, start, path.len() as u32));
                }
                node
            }
        };
        self.path = path;
        self.sample_stack[i] = node;
        node
    }

    /// Interns a root-first path into the prefix tree, frame by frame.
    fn insert_path(&mut self, path: &[u32]) -> u32 {
        let mut node = 0u32;
        for &loc in path {
            let next = self.stack_nodes.len() as u32;
            node = *self.stack_index.entry((node, loc)).or_insert_with(|| {
                self.stack_nodes.push((node, loc));
                next
            });
        }
        node
    }

    fn import_string(&mut self, m: &mut ImportMaps, src: &Symbols, i: u32) -> Result<u32> {
        let Some(&memo) = m.strings.get(i as usize) else { return Err(import_corrupt("string out of range")) };
        if memo != UNMAPPED {
            return Ok(memo);
        }
        let id = self.strings.intern(src.strings[i as usize].as_str());
        m.strings[i as usize] = id;
        Ok(id)
    }

    fn import_function(&mut self, m: &mut ImportMaps, src: &Symbols, i: u32) -> Result<u32> {
        let Some(&memo) = m.functions.get(i as usize) else { return Err(import_corrupt("function out of range")) };
        if memo != UNMAPPED {
            return Ok(memo);
        }
        let f = src.functions[i as usize];
        let key = FunctionKey {
            name: self.import_string(m, src, f.name)?,
            system_name: self.import_string(m, src, f.system_name)?,
            filename: self.import_string(m, src, f.filename)?,
            start_line: f.start_line,
        };
        let id = self.functions.insert_full(key).0 as u32;
        m.functions[i as usize] = id;
        Ok(id)
    }

    fn import_mapping(&mut self, m: &mut ImportMaps, src: &Symbols, i: u32) -> Result<u32> {
        let Some(&memo) = m.mappings.get(i as usize) else { return Err(import_corrupt("mapping out of range")) };
        if memo != UNMAPPED {
            return Ok(memo);
        }
        let mp = src.mappings[i as usize];
        let key = MappingKey {
            memory_start: mp.memory_start,
            memory_limit: mp.memory_limit,
            file_offset: mp.file_offset,
            filename: self.import_string(m, src, mp.filename)?,
            build_id: self.import_string(m, src, mp.build_id)?,
            flags: mp.flags,
        };
        let id = self.mappings.insert_full(key).0 as u32;
        m.mappings[i as usize] = id;
        Ok(id)
    }

    fn import_location(&mut self, m: &mut ImportMaps, src: &Symbols, i: u32) -> Result<u32> {
        let Some(&memo) = m.locations.get(i as usize) else { return Err(import_corrupt("location out of range")) };
        if memo != UNMAPPED {
            return Ok(memo);
        }
        let at = i as usize;
        let (Some(&mapping), Some(&address), Some(range)) =
            (src.location_mapping.get(at), src.location_address.get(at), src.location_lines.get(at))
        else {
            return Err(import_corrupt("location out of range"));
        };
        let Some(lines) = src.lines.get(range.start as usize..range.end as usize) else {
            return Err(import_corrupt("location lines out of range"));
        };
        let mapping = self.import_mapping(m, src, mapping)?;
        let mut out = std::mem::take(&mut self.lines);
        out.clear();
        for &(function, line) in lines {
            match self.import_function(m, src, function) {
                Ok(f) => out.push((f, line)),
                Err(e) => {
                    self.lines = out;
                    return Err(e);
                }
            }
        }
        let id = self.locations.intern(mapping, address, &out);
        self.lines = out;
        m.locations[at] = id;
        Ok(id)
    }

    /// The node of source stack `i` in this dataset's tree: walks up to the
    /// first ancestor already translated (the root always is), then interns
    /// the missing nodes root-most first. Source parents precede children.
    fn import_stack(&mut self, m: &mut ImportMaps, src: &Symbols, i: u32) -> Result<u32> {
        let Some(&memo) = m.stacks.get(i as usize) else { return Err(import_corrupt("stack out of range")) };
        if memo != UNMAPPED {
            return Ok(memo);
        }
        m.walk.clear();
        let mut at = i as usize;
        while m.stacks[at] == UNMAPPED {
            m.walk.push(at as u32);
            let parent = src.stack_parent[at] as usize;
            if parent >= at {
                return Err(import_corrupt("stack node out of order"));
            }
            at = parent;
        }
        let mut node = m.stacks[at];
        while let Some(k) = m.walk.pop() {
            let Some(&loc) = src.stack_location.get(k as usize) else {
                return Err(import_corrupt("stack node out of range"));
            };
            let loc = self.import_location(m, src, loc)?;
            let next = self.stack_nodes.len() as u32;
            node = *self.stack_index.entry((node, loc)).or_insert_with(|| {
                self.stack_nodes.push((node, loc));
                next
            });
            m.stacks[k as usize] = node;
        }
        Ok(node)
    }
}

fn import_corrupt(reason: &str) -> BlockError {
    BlockError::Corrupt { path: String::new(), reason: format!("imported row: {reason}") }
}

/// Memo of one source dataset's symbol ids → the builder dataset's (or
/// `UNMAPPED`), filled on first use: only what imported rows reference is
/// copied.
#[derive(Debug, Default)]
struct ImportMaps {
    strings: Vec<u32>,
    functions: Vec<u32>,
    mappings: Vec<u32>,
    locations: Vec<u32>,
    stacks: Vec<u32>,
    series: Vec<u32>,
    /// Scratch of [`SymbolsBuilder::import_stack`].
    walk: Vec<u32>,
}

fn reset(v: &mut Vec<u32>, len: usize) {
    v.clear();
    v.resize(len, UNMAPPED);
}

#[derive(Debug, Clone)]
struct Row {
    series: u32,
    time_nanos: i64,
    id: ProfileId,
    total: i64,
    samples: std::ops::Range<u32>,
    /// Start of this row's entries in the span/trace vectors.
    spans: Option<u32>,
}

/// Accumulates the profiles of one (tenant, service).
#[derive(Debug)]
struct DatasetBuilder {
    symbols: SymbolsBuilder,
    series: IndexMap<u64, Labels, FxBuildHasher>,
    keys: Vec<ProfileKey>,
    seen: FxHashSet<ProfileKey>,
    rows: Vec<Row>,
    stack_ids: Vec<u32>,
    values: Vec<i64>,
    span_ids: Vec<u64>,
    trace_ids: Vec<[u8; 16]>,
    profile_types: BTreeSet<String>,
    min_time: i64,
    max_time: i64,
    scratch: Vec<(u32, u64, [u8; 16], i64)>,
    /// Rollups: per (series, bucket start) the summed values by stack and
    /// the summed totals, turned into one row each by `flush_sums`.
    sums: FxHashMap<(u32, i64), (FxHashMap<u32, i64>, i64)>,
}

/// How many entries a dataset's tables held.
#[derive(Debug, Clone, Copy, Default)]
struct DatasetSizes {
    strings: usize,
    string_bytes: usize,
    functions: usize,
    mappings: usize,
    locations: usize,
    lines: usize,
    stack_nodes: usize,
    whole_stacks: usize,
    stack_path_frames: usize,
    series: usize,
    rows: usize,
    samples: usize,
}

/// Most entries of any table a successor starts with.
const MAX_PRESIZE: usize = 1 << 20;

impl DatasetBuilder {
    fn sized(n: DatasetSizes) -> Self {
        let cap = |n: usize| n.min(MAX_PRESIZE);
        let mut ds = Self::new();
        let sym = &mut ds.symbols;
        sym.strings.reserve(cap(n.strings), cap(n.string_bytes));
        sym.functions.reserve(cap(n.functions));
        sym.mappings.reserve(cap(n.mappings));
        sym.locations.reserve(cap(n.locations), cap(n.lines));
        sym.stack_index.reserve(cap(n.stack_nodes));
        sym.stack_nodes.reserve(cap(n.stack_nodes));
        sym.whole_stacks.reserve(cap(n.whole_stacks));
        sym.stack_paths.reserve(cap(n.stack_path_frames));
        ds.series.reserve(cap(n.series));
        ds.seen.reserve(cap(n.rows));
        ds.keys.reserve(cap(n.rows));
        ds.rows.reserve(cap(n.rows));
        ds.stack_ids.reserve(cap(n.samples));
        ds.values.reserve(cap(n.samples));
        ds
    }

    fn sizes(&self) -> DatasetSizes {
        let sym = &self.symbols;
        DatasetSizes {
            strings: sym.strings.len(),
            string_bytes: sym.strings.byte_len(),
            functions: sym.functions.len(),
            mappings: sym.mappings.len(),
            locations: sym.locations.len(),
            lines: sym.locations.line_count(),
            stack_nodes: sym.stack_nodes.len(),
            whole_stacks: sym.whole_stacks.len(),
            stack_path_frames: sym.stack_paths.len(),
            series: self.series.len(),
            rows: self.rows.len(),
            samples: self.stack_ids.len(),
        }
    }

    fn new() -> Self {
        Self {
            symbols: SymbolsBuilder::new(),
            series: IndexMap::with_hasher(FxBuildHasher),
            keys: Vec::new(),
            seen: FxHashSet::default(),
            rows: Vec::new(),
            stack_ids: Vec::new(),
            values: Vec::new(),
            span_ids: Vec::new(),
            trace_ids: Vec::new(),
            profile_types: BTreeSet::new(),
            min_time: i64::MAX,
            max_time: i64::MIN,
            scratch: Vec::new(),
            sums: FxHashMap::default(),
        }
    }

    fn add(&mut self, key: ProfileKey, p: &SeriesProfile, max_depth: usize) -> bool {
        if !self.seen.insert(key) {
            return false;
        }
        let src = &p.source;
        self.symbols.use_source(src);
        // Intern stacks; samples with the same (stack, span, trace) are
        // merged by `push_row`'s sort.
        self.scratch.clear();
        self.scratch.reserve(p.samples.len());
        let spans = p.span_keys.any();
        for &i in &p.samples {
            let i = i as usize;
            let value = src.sample_value(i, p.value_index);
            let stack = self.symbols.stack(src, i, max_depth);
            let (span, trace) = if spans { p.span_keys.of_sample(src, i) } else { (0, [0; 16]) };
            self.scratch.push((stack, span, trace, value));
        }
        let series = match self.series.get_index_of(&p.fingerprint) {
            Some(series) => series,
            None => self.series.insert_full(p.fingerprint, p.labels.clone()).0,
        };
        if !self.profile_types.contains(&p.profile_type) {
            self.profile_types.insert(p.profile_type.clone());
        }
        self.push_row(key, series as u32, p.time_nanos, p.id, p.total);
        true
    }

    /// Appends a row whose samples are in `scratch` (sorted, merged and
    /// without zeros here).
    fn push_row(&mut self, key: ProfileKey, series: u32, time_nanos: i64, id: ProfileId, total: i64) {
        // Stack order compresses best and makes rows canonical.
        self.scratch.sort_unstable_by_key(|&(stack, span, trace, _)| (stack, span, trace));
        // Merge equal (stack, span, trace) entries: a pprof's samples may
        // share one (same stack, labels that do not make a series), an
        // imported row's may collide once translated.
        let mut w = 0;
        for r in 0..self.scratch.len() {
            let e = self.scratch[r];
            if w > 0 && (self.scratch[w - 1].0, self.scratch[w - 1].1, self.scratch[w - 1].2) == (e.0, e.1, e.2) {
                self.scratch[w - 1].3 = self.scratch[w - 1].3.wrapping_add(e.3);
            } else {
                self.scratch[w] = e;
                w += 1;
            }
        }
        self.scratch.truncate(w);
        self.scratch.retain(|e| e.3 != 0);
        let has_spans = self.scratch.iter().any(|e| e.1 != 0 || e.2 != [0; 16]);
        let start = self.stack_ids.len() as u32;
        let span_start = has_spans.then_some(self.span_ids.len() as u32);
        for &(stack, span, trace, value) in &self.scratch {
            self.stack_ids.push(stack);
            self.values.push(value);
            if has_spans {
                self.span_ids.push(span);
                self.trace_ids.push(trace);
            }
        }
        self.min_time = self.min_time.min(time_nanos);
        self.max_time = self.max_time.max(time_nanos);
        self.keys.push(key);
        self.rows.push(Row {
            series,
            time_nanos,
            id,
            total,
            samples: start..self.stack_ids.len() as u32,
            spans: span_start,
        });
    }

    /// Adds a stored row of another dataset (see [`DatasetImport`]): its
    /// stack ids are translated through `m`, its samples re-sorted by the
    /// new ids. Returns false for a key already in this dataset.
    fn import(
        &mut self,
        m: &mut ImportMaps,
        src: &Symbols,
        series: &[SeriesInfo],
        key_tenant: &str,
        row: &RowRef<'_>,
    ) -> Result<bool> {
        let Some(info) = series.get(row.series as usize) else { return Err(import_corrupt("series out of range")) };
        let key = ProfileKey::new(key_tenant, info.fingerprint, &row.id);
        if self.seen.contains(&key) {
            return Ok(false);
        }
        let n = row.stack_ids.len();
        if row.values.len() != n
            || row.span_ids.is_some_and(|s| s.len() != n)
            || row.trace_ids.is_some_and(|t| t.len() != n * 16)
        {
            return Err(import_corrupt("samples and values differ in length"));
        }
        self.scratch.clear();
        for (k, (&stack, &value)) in row.stack_ids.iter().zip(row.values).enumerate() {
            if value == 0 {
                continue;
            }
            let stack = self.symbols.import_stack(m, src, stack)?;
            let span = row.span_ids.map_or(0, |s| s[k]);
            let mut trace = [0u8; 16];
            if let Some(t) = row.trace_ids {
                trace.copy_from_slice(&t[k * 16..k * 16 + 16]);
            }
            self.scratch.push((stack, span, trace, value));
        }
        let sid = self.import_series(m, info, row.series)?;
        self.seen.insert(key);
        self.push_row(key, sid, row.time_nanos, row.id, row.total);
        Ok(true)
    }

    /// Adds a stored row of another dataset into the sum of its series at
    /// `bucket_nanos` (a rollup): stacks and series are translated as by
    /// [`import`](Self::import); span and trace ids are dropped.
    fn accumulate(
        &mut self,
        m: &mut ImportMaps,
        src: &Symbols,
        series: &[SeriesInfo],
        row: &RowRef<'_>,
        bucket_nanos: i64,
    ) -> Result<()> {
        let Some(info) = series.get(row.series as usize) else { return Err(import_corrupt("series out of range")) };
        if row.values.len() != row.stack_ids.len() {
            return Err(import_corrupt("samples and values differ in length"));
        }
        let sid = self.import_series(m, info, row.series)?;
        let mut translated = std::mem::take(&mut self.scratch);
        translated.clear();
        for (&stack, &value) in row.stack_ids.iter().zip(row.values) {
            if value != 0 {
                translated.push((self.symbols.import_stack(m, src, stack)?, 0, [0; 16], value));
            }
        }
        let (values, total) = self.sums.entry((sid, bucket_nanos)).or_default();
        for &(stack, _, _, value) in &translated {
            let slot = values.entry(stack).or_insert(0);
            *slot = slot.wrapping_add(value);
        }
        *total = total.wrapping_add(row.total);
        self.scratch = translated;
        Ok(())
    }

    /// The series of `info` in this dataset (source series `at`, memoized).
    fn import_series(&mut self, m: &mut ImportMaps, info: &SeriesInfo, at: u32) -> Result<u32> {
        let Some(&memo) = m.series.get(at as usize) else { return Err(import_corrupt("series out of range")) };
        if memo != UNMAPPED {
            return Ok(memo);
        }
        let sid = match self.series.get_index_of(&info.fingerprint) {
            Some(sid) => sid,
            None => self.series.insert_full(info.fingerprint, info.labels.clone()).0,
        } as u32;
        if let Some(t) = info.labels.get(ln::PROFILE_TYPE)
            && !self.profile_types.contains(t)
        {
            self.profile_types.insert(t.to_owned());
        }
        m.series[at as usize] = sid;
        Ok(sid)
    }

    /// Turns the rollup sums into rows: one per (series, bucket), dated at
    /// the bucket's start, its id derived from the bucket.
    fn flush_sums(&mut self, tenant: &str) {
        let mut sums: Vec<_> = std::mem::take(&mut self.sums).into_iter().collect();
        sums.sort_unstable_by_key(|(k, _)| *k);
        for ((sid, bucket), (values, total)) in sums {
            let Some((&fingerprint, _)) = self.series.get_index(sid as usize) else { continue };
            self.scratch.clear();
            self.scratch.extend(values.into_iter().map(|(stack, v)| (stack, 0, [0; 16], v)));
            let id = ProfileId::from_content(&[b"rollup", &bucket.to_le_bytes()]);
            let key = ProfileKey::new(tenant, fingerprint, &id);
            if self.seen.insert(key) {
                self.push_row(key, sid, bucket, id, total);
            }
        }
    }

    /// Writes the seven sections to `out`; returns their descriptors and the
    /// dedup keys in final row order.
    #[allow(clippy::type_complexity)]
    fn write(self, out: &mut Vec<u8>, codec: Codec) -> Result<(Vec<Section>, Vec<u8>, DatasetStats, Vec<IndexSeries>)> {
        let DatasetBuilder { symbols, series, keys, rows, stack_ids, values, span_ids, trace_ids, .. } = self;
        // Series sorted by labels; rows by (series, time, id).
        let mut order: Vec<usize> = (0..series.len()).collect();
        order.sort_by(|&a, &b| series[a].cmp(&series[b]));
        let mut rank = vec![0u32; series.len()];
        for (new, &old) in order.iter().enumerate() {
            rank[old] = new as u32;
        }
        let mut row_order: Vec<usize> = (0..rows.len()).collect();
        row_order.sort_by_key(|&r| (rank[rows[r].series as usize], rows[r].time_nanos, rows[r].id));

        let mut sections = Vec::with_capacity(7);
        let mut section = |kind: SectionKind, out: &mut Vec<u8>, start: usize| {
            sections.push(Section {
                kind: kind as i32,
                offset: start as u64,
                size: (out.len() - start) as u64,
                crc32: crc32fast::hash(&out[start..]),
            });
        };

        // Series index.
        let mut first_row = vec![0u32; series.len()];
        let mut row_count = vec![0u32; series.len()];
        let mut min_t = vec![i64::MAX; series.len()];
        let mut max_t = vec![i64::MIN; series.len()];
        for (pos, &r) in row_order.iter().enumerate() {
            let sid = rank[rows[r].series as usize] as usize;
            if row_count[sid] == 0 {
                first_row[sid] = pos as u32;
            }
            row_count[sid] += 1;
            min_t[sid] = min_t[sid].min(rows[r].time_nanos);
            max_t[sid] = max_t[sid].max(rows[r].time_nanos);
        }
        let sorted: Vec<(&u64, &Labels)> =
            order.iter().map(|&i| series.get_index(i).expect("index in range")).collect();
        let start = out.len();
        write_series(out, &sorted, first_row, row_count, &min_t, &max_t, codec)?;
        section(SectionKind::Series, out, start);
        let index_series: Vec<IndexSeries> = sorted
            .iter()
            .enumerate()
            .map(|(i, (fp, labels))| IndexSeries {
                fingerprint: **fp,
                labels: (*labels).clone(),
                min_time: min_t[i],
                max_time: max_t[i],
            })
            .collect();

        // Profiles, in batches.
        let schema = s::profiles_schema();
        let mut batches = Vec::new();
        let mut sorted_keys = Vec::with_capacity(keys.len() * 16);
        let mut samples = 0u64;
        for chunk in row_order.chunks(s::PROFILE_BATCH_ROWS) {
            let mut ids = Vec::with_capacity(chunk.len() * 16);
            let (mut sids, mut times, mut totals) = (Vec::new(), Vec::new(), Vec::new());
            let (mut st, mut va, mut sp, mut tr) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            let mut span_valid = Vec::with_capacity(chunk.len());
            let mut span_lens = Vec::with_capacity(chunk.len());
            for &r in chunk {
                let row = &rows[r];
                ids.extend_from_slice(&row.id.0);
                sorted_keys.extend_from_slice(&keys[r].0);
                sids.push(rank[row.series as usize]);
                times.push(row.time_nanos);
                totals.push(row.total);
                let range = row.samples.start as usize..row.samples.end as usize;
                samples += range.len() as u64;
                st.extend_from_slice(&stack_ids[range.clone()]);
                va.extend_from_slice(&values[range.clone()]);
                match row.spans {
                    Some(at) => {
                        let at = at as usize;
                        sp.extend_from_slice(&span_ids[at..at + range.len()]);
                        for t in &trace_ids[at..at + range.len()] {
                            tr.extend_from_slice(t);
                        }
                        span_valid.push(true);
                        span_lens.push(range.len());
                    }
                    None => {
                        span_valid.push(false);
                        span_lens.push(0);
                    }
                }
            }
            let sample_offsets = s::offsets(chunk.iter().map(|&r| rows[r].samples.len()))?;
            let span_offsets = s::offsets(span_lens.into_iter())?;
            let nulls = Some(arrow_buffer::NullBuffer::from(span_valid));
            batches.push(s::batch(
                &schema,
                vec![
                    s::fixed16(ids)?,
                    s::u32s(sids),
                    s::i64s(times),
                    s::i64s(totals),
                    s::list(arrow_schema::DataType::UInt32, sample_offsets.clone(), s::u32s(st), None)?,
                    s::list(arrow_schema::DataType::Int64, sample_offsets, s::i64s(va), None)?,
                    s::list(arrow_schema::DataType::UInt64, span_offsets.clone(), s::u64s(sp), nulls.clone())?,
                    s::list(arrow_schema::DataType::FixedSizeBinary(16), span_offsets, s::fixed16(tr)?, nulls)?,
                ],
            )?);
        }
        let start = out.len();
        // Profiles are what queries scan: LZ4 decompresses several times
        // faster than zstd (see ARCHITECTURE.md, "Performance").
        s::write_stream_with(&schema, &batches, out, arrow_ipc::CompressionType::LZ4_FRAME)?;
        section(SectionKind::Profiles, out, start);

        // Symbols.
        let SymbolsBuilder { strings, functions, mappings, locations, stack_nodes, .. } = symbols;
        let schema = s::strings_schema();
        let b = s::batch(&schema, vec![s::strings(strings.iter())])?;
        let start = out.len();
        s::write_stream_with(&schema, &[b], out, codec)?;
        section(SectionKind::Strings, out, start);

        let schema = s::functions_schema();
        let b = s::batch(
            &schema,
            vec![
                s::u32s(functions.iter().map(|f| f.name).collect()),
                s::u32s(functions.iter().map(|f| f.system_name).collect()),
                s::u32s(functions.iter().map(|f| f.filename).collect()),
                s::i64s(functions.iter().map(|f| f.start_line).collect()),
            ],
        )?;
        let start = out.len();
        s::write_stream_with(&schema, &[b], out, codec)?;
        section(SectionKind::Functions, out, start);

        let schema = s::mappings_schema();
        let b = s::batch(
            &schema,
            vec![
                s::u64s(mappings.iter().map(|m| m.memory_start).collect()),
                s::u64s(mappings.iter().map(|m| m.memory_limit).collect()),
                s::u64s(mappings.iter().map(|m| m.file_offset).collect()),
                s::u32s(mappings.iter().map(|m| m.filename).collect()),
                s::u32s(mappings.iter().map(|m| m.build_id).collect()),
                s::u8s(mappings.iter().map(|m| m.flags).collect()),
            ],
        )?;
        let start = out.len();
        s::write_stream_with(&schema, &[b], out, codec)?;
        section(SectionKind::Mappings, out, start);

        let schema = s::locations_schema();
        let line_offsets = s::offsets(locations.iter().map(|l| locations.lines_of(l).len()))?;
        let b = s::batch(
            &schema,
            vec![
                s::u32s(locations.iter().map(|l| l.mapping).collect()),
                s::u64s(locations.iter().map(|l| l.address).collect()),
                s::list(
                    arrow_schema::DataType::UInt32,
                    line_offsets.clone(),
                    s::u32s(locations.iter().flat_map(|l| locations.lines_of(l).iter().map(|x| x.0)).collect()),
                    None,
                )?,
                s::list(
                    arrow_schema::DataType::Int64,
                    line_offsets,
                    s::i64s(locations.iter().flat_map(|l| locations.lines_of(l).iter().map(|x| x.1)).collect()),
                    None,
                )?,
            ],
        )?;
        let start = out.len();
        s::write_stream_with(&schema, &[b], out, codec)?;
        section(SectionKind::Locations, out, start);

        let schema = s::stacks_schema();
        let b = s::batch(
            &schema,
            vec![
                // Parents precede children, so the distance never wraps.
                s::u32s(stack_nodes.iter().enumerate().map(|(i, n)| i as u32 - n.0).collect()),
                s::u32s(stack_nodes.iter().map(|n| n.1).collect()),
            ],
        )?;
        let start = out.len();
        s::write_stream_with(&schema, &[b], out, codec)?;
        section(SectionKind::Stacks, out, start);

        let stats = DatasetStats {
            series: series.len() as u32,
            profiles: rows.len() as u64,
            samples,
            symbol_rows: (strings.len() + functions.len() + mappings.len() + locations.len() + stack_nodes.len())
                as u64,
        };
        Ok((sections, sorted_keys, stats, index_series))
    }
}

/// Body compression of every section but PROFILES (always LZ4: what
/// queries scan).
type Codec = arrow_ipc::CompressionType;

/// Level 0 segments are written on the ingest path, every 500 ms, and live
/// until compaction rewrites them: LZ4 costs a fraction of zstd's CPU there.
/// Compacted blocks are written once and kept: zstd, for their size.
fn symbols_codec(level: u32) -> Codec {
    if level == 0 { arrow_ipc::CompressionType::LZ4_FRAME } else { arrow_ipc::CompressionType::ZSTD }
}

/// A series as the tenant index lists it.
#[derive(Debug, Clone)]
struct IndexSeries {
    fingerprint: u64,
    labels: Labels,
    min_time: i64,
    max_time: i64,
}

/// Writes one series-schema stream (a dataset's series or a tenant index).
fn write_series(
    out: &mut Vec<u8>,
    sorted: &[(&u64, &Labels)],
    first_row: Vec<u32>,
    row_count: Vec<u32>,
    min_t: &[i64],
    max_t: &[i64],
    codec: Codec,
) -> Result<()> {
    let schema = s::series_schema();
    let label_offsets = s::offsets(sorted.iter().map(|(_, l)| l.len()))?;
    let names = s::strings(sorted.iter().flat_map(|(_, l)| l.iter().map(|p| p.name.as_str())));
    let vals = s::strings(sorted.iter().flat_map(|(_, l)| l.iter().map(|p| p.value.as_str())));
    let b = s::batch(
        &schema,
        vec![
            s::u64s(sorted.iter().map(|(f, _)| **f).collect()),
            s::list(arrow_schema::DataType::Utf8, label_offsets.clone(), names, None)?,
            s::list(arrow_schema::DataType::Utf8, label_offsets, vals, None)?,
            s::u32s(first_row),
            s::u32s(row_count),
            s::i64s(min_t.to_vec()),
            s::i64s(max_t.to_vec()),
        ],
    )?;
    s::write_stream_with(&schema, &[b], out, codec)?;
    Ok(())
}

/// The tenant-index dataset of one tenant's datasets: every series, sorted
/// by labels, in one TENANT_INDEX section.
fn encode_tenant_index(
    tenant: &str,
    datasets: &[(&Dataset, &[IndexSeries])],
    codec: Codec,
) -> Result<(Vec<u8>, Dataset)> {
    let mut all: Vec<&IndexSeries> = datasets.iter().flat_map(|(_, s)| s.iter()).collect();
    all.sort_by(|a, b| a.labels.cmp(&b.labels));
    let sorted: Vec<(&u64, &Labels)> = all.iter().map(|s| (&s.fingerprint, &s.labels)).collect();
    let min_t: Vec<i64> = all.iter().map(|s| s.min_time).collect();
    let max_t: Vec<i64> = all.iter().map(|s| s.max_time).collect();
    let mut out = Vec::new();
    write_series(&mut out, &sorted, vec![0; all.len()], vec![0; all.len()], &min_t, &max_t, codec)?;
    let section = Section {
        kind: SectionKind::TenantIndex as i32,
        offset: 0,
        size: out.len() as u64,
        crc32: crc32fast::hash(&out),
    };
    let profile_types: std::collections::BTreeSet<&String> =
        datasets.iter().flat_map(|(d, _)| d.profile_types.iter()).collect();
    let meta = Dataset {
        tenant: tenant.to_owned(),
        name: String::new(),
        min_time: datasets.iter().map(|(d, _)| d.min_time).min().unwrap_or(0),
        max_time: datasets.iter().map(|(d, _)| d.max_time).max().unwrap_or(0),
        sections: vec![section],
        profile_types: profile_types.into_iter().cloned().collect(),
        series_count: all.len() as u32,
        profile_count: 0,
        sample_count: 0,
        shadowed_keys: Bytes::new(),
        deleted: Vec::new(),
        rollup_covers: Vec::new(),
        covered: Vec::new(),
        negated: Vec::new(),
    };
    Ok((out, meta))
}

/// Whether a dataset is a tenant index (see `SECTION_KIND_TENANT_INDEX`).
pub fn is_tenant_index(ds: &Dataset) -> bool {
    ds.name.is_empty() && ds.sections.len() == 1 && ds.sections[0].kind == SectionKind::TenantIndex as i32
}

#[derive(Debug, Clone, Copy)]
struct DatasetStats {
    series: u32,
    profiles: u64,
    samples: u64,
    #[allow(dead_code)]
    symbol_rows: u64,
}

/// One dataset, encoded on its own (offsets relative to its first byte).
struct EncodedDataset {
    bytes: Vec<u8>,
    meta: Dataset,
    keys: Vec<u8>,
    series: Vec<IndexSeries>,
}

fn encode_dataset((tenant, service): (String, String), ds: DatasetBuilder, codec: Codec) -> Result<EncodedDataset> {
    let (min_ns, max_ns) = (ds.min_time, ds.max_time);
    let profile_types: Vec<String> = ds.profile_types.iter().cloned().collect();
    let mut bytes = Vec::new();
    let (sections, keys, stats, series) = ds.write(&mut bytes, codec)?;
    let meta = Dataset {
        tenant,
        name: service,
        min_time: min_ns.div_euclid(1_000_000),
        max_time: max_ns.div_euclid(1_000_000),
        sections,
        profile_types,
        series_count: stats.series,
        profile_count: stats.profiles,
        sample_count: stats.samples,
        shadowed_keys: Bytes::new(),
        deleted: Vec::new(),
        rollup_covers: Vec::new(),
        covered: Vec::new(),
        negated: Vec::new(),
    };
    Ok(EncodedDataset { bytes, meta, keys, series })
}

/// What makes a block a rollup: its bucket (Unix ms, end exclusive) and,
/// per dataset name, the blocks whose rows it sums.
#[derive(Debug, Clone, Default)]
pub(crate) struct RollupMeta {
    pub(crate) start_ms: i64,
    pub(crate) end_ms: i64,
    pub(crate) covers: std::collections::BTreeMap<String, BTreeSet<String>>,
    /// Every block summed, whatever its datasets.
    pub(crate) block_covers: BTreeSet<String>,
    /// Width of a row's time bucket, ms.
    pub(crate) step_ms: i64,
}

impl RollupMeta {
    /// Marks `meta` as this rollup: its datasets span the whole bucket.
    fn describe(&self, meta: &mut BlockMeta) {
        meta.rollup_start = self.start_ms;
        meta.rollup_end = self.end_ms;
        meta.rollup_covers = self.block_covers.iter().cloned().collect();
        meta.rollup_step = self.step_ms;
        meta.min_time = self.start_ms;
        meta.max_time = self.end_ms - 1;
        for ds in &mut meta.datasets {
            ds.min_time = self.start_ms;
            ds.max_time = self.end_ms - 1;
            if let Some(c) = self.covers.get(&ds.name) {
                ds.rollup_covers = c.iter().cloned().collect();
            }
        }
    }
}

/// Identity of the object being built.
#[derive(Debug, Clone)]
pub struct BlockHeader {
    pub id: Ulid,
    /// Empty for a multi-tenant segment.
    pub tenant: String,
    pub shard: u32,
    pub level: u32,
    pub created_by: String,
}

/// A finished object: its bytes, its metadata (also its footer) and the
/// dedup keys of its rows (per dataset, 16 bytes per row, in row order).
#[derive(Debug, Clone)]
pub struct EncodedBlock {
    pub bytes: Bytes,
    pub meta: BlockMeta,
    pub dataset_keys: Vec<Bytes>,
}

/// The import of one stored dataset into a [`SegmentBuilder`] (see
/// [`SegmentBuilder::import_dataset`]): the source's symbols and series and
/// the memo of their translation.
#[derive(Debug)]
pub struct DatasetImport<'a> {
    dataset: usize,
    symbols: &'a Symbols,
    series: &'a [SeriesInfo],
    maps: ImportMaps,
}

/// Builds one object holding many (tenant, service) datasets.
#[derive(Debug)]
pub struct SegmentBuilder {
    datasets: IndexMap<(String, String), DatasetBuilder, FxBuildHasher>,
    /// The sizes each dataset had in the previous segment: a dataset's
    /// tables start at that size instead of growing (and rehashing) again.
    sizes: IndexMap<(String, String), DatasetSizes, FxBuildHasher>,
    max_stack_depth: usize,
    profiles: usize,
    approx_bytes: usize,
}

impl Default for SegmentBuilder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_STACK_DEPTH)
    }
}

impl SegmentBuilder {
    pub fn new(max_stack_depth: usize) -> Self {
        Self {
            datasets: IndexMap::with_hasher(FxBuildHasher),
            sizes: IndexMap::with_hasher(FxBuildHasher),
            max_stack_depth: max_stack_depth.max(1),
            profiles: 0,
            approx_bytes: 0,
        }
    }

    /// An empty builder for the next segment: a dataset this one holds
    /// starts there, when it comes, with the sizes it reached here (each
    /// table at most [`MAX_PRESIZE`] entries).
    pub fn successor(&self) -> SegmentBuilder {
        let mut next = SegmentBuilder::new(self.max_stack_depth);
        for (key, ds) in &self.datasets {
            if !ds.rows.is_empty() {
                next.sizes.insert(key.clone(), ds.sizes());
            }
        }
        next
    }

    /// Adds one series profile. Returns false (and adds nothing) when a
    /// profile with the same dedup key is already in this object.
    pub fn add(&mut self, tenant: &str, p: &SeriesProfile) -> bool {
        let key = ProfileKey::new(tenant, p.fingerprint, &p.id);
        let service = p.service_name();
        let ds = match self.datasets.get_index_of(&DatasetRef(tenant, service)) {
            Some(i) => &mut self.datasets[i],
            None => {
                let sizes = self.sizes.get(&DatasetRef(tenant, service)).copied().unwrap_or_default();
                self.datasets
                    .entry((tenant.to_owned(), service.to_owned()))
                    .or_insert_with(|| DatasetBuilder::sized(sizes))
            }
        };
        let added = ds.add(key, p, self.max_stack_depth);
        if added {
            self.profiles += 1;
            self.approx_bytes += p.samples.len() * 12 + 64;
        }
        added
    }

    /// Starts importing the stored rows of one dataset of another object
    /// (compaction) into dataset (`tenant`, `service`) of this one:
    /// `symbols` and `series` are the source dataset's. Feed its rows to
    /// [`import_row`](Self::import_row).
    pub fn import_dataset<'a>(
        &mut self,
        tenant: &str,
        service: &str,
        symbols: &'a Symbols,
        series: &'a [SeriesInfo],
    ) -> DatasetImport<'a> {
        let key = (tenant.to_owned(), service.to_owned());
        let dataset = match self.datasets.get_index_of(&key) {
            Some(i) => i,
            None => self.datasets.insert_full(key, DatasetBuilder::new()).0,
        };
        let mut maps = ImportMaps::default();
        reset(&mut maps.strings, symbols.strings.len());
        reset(&mut maps.functions, symbols.functions.len());
        reset(&mut maps.mappings, symbols.mappings.len());
        reset(&mut maps.locations, symbols.location_mapping.len());
        reset(&mut maps.stacks, symbols.stack_parent.len().min(symbols.stack_location.len()));
        if let Some(root) = maps.stacks.first_mut() {
            *root = 0;
        }
        reset(&mut maps.series, series.len());
        DatasetImport { dataset, symbols, series, maps }
    }

    /// Adds one stored row of the dataset `import` reads: symbols are
    /// translated (each source symbol once, through the import's memo), the
    /// dedup key is (tenant, series fingerprint, profile id) as for pprof
    /// rows. Stacks are kept as stored (no depth cut). Returns false (and
    /// adds nothing) for a key already in this object; an error when the
    /// row references symbols or series the source does not have.
    pub fn import_row(&mut self, import: &mut DatasetImport<'_>, row: &RowRef<'_>) -> Result<bool> {
        let Some(((tenant, _), ds)) = self.datasets.get_index_mut(import.dataset) else {
            return Err(import_corrupt("no such dataset"));
        };
        let added = ds.import(&mut import.maps, import.symbols, import.series, tenant, row)?;
        if added {
            self.profiles += 1;
            self.approx_bytes += row.stack_ids.len() * 12 + 64;
        }
        Ok(added)
    }

    /// Adds a stored row of the dataset `import` reads into the sum of its
    /// series in the bucket starting at `bucket_nanos` (see
    /// [`crate::rollup`]): [`finish`](Self::finish) writes one row per
    /// (series, bucket) holding the summed values by stack and the summed
    /// totals.
    pub fn accumulate_row(
        &mut self,
        import: &mut DatasetImport<'_>,
        row: &RowRef<'_>,
        bucket_nanos: i64,
    ) -> Result<()> {
        let Some(ds) = self.datasets.get_index_mut(import.dataset).map(|(_, ds)| ds) else {
            return Err(import_corrupt("no such dataset"));
        };
        ds.accumulate(&mut import.maps, import.symbols, import.series, row, bucket_nanos)?;
        self.profiles += 1;
        self.approx_bytes += row.stack_ids.len() * 12;
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.profiles == 0
    }

    /// Profiles added so far.
    pub fn profile_count(&self) -> usize {
        self.profiles
    }

    /// Rough size of the buffered rows (symbols excluded), for back-pressure.
    pub fn approx_bytes(&self) -> usize {
        self.approx_bytes
    }

    /// Encodes the object. Datasets are ordered by (tenant, service).
    pub fn finish(self, header: BlockHeader) -> Result<EncodedBlock> {
        self.encode(header, None)
    }

    /// Encodes the object; a rollup's bucket and covers go into its
    /// metadata (footer included).
    pub(crate) fn encode(mut self, header: BlockHeader, rollup: Option<&RollupMeta>) -> Result<EncodedBlock> {
        for ((tenant, _), ds) in self.datasets.iter_mut() {
            if !ds.sums.is_empty() {
                ds.flush_sums(tenant);
            }
        }
        // (An import whose rows were all duplicates leaves an empty dataset.)
        let mut datasets: Vec<_> = self.datasets.into_iter().filter(|(_, ds)| !ds.rows.is_empty()).collect();
        datasets.sort_by(|a, b| a.0.cmp(&b.0));
        let codec = symbols_codec(header.level);
        // Datasets encode independently (zstd/LZ4 dominate a flush): spread
        // them over the cores, each into its own buffer, then concatenate
        // and shift their section offsets.
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(datasets.len()).max(1);
        let mut encoded: Vec<Option<Result<EncodedDataset>>> = (0..datasets.len()).map(|_| None).collect();
        type Work = Vec<(usize, ((String, String), DatasetBuilder))>;
        let mut work: Vec<Work> = (0..threads).map(|_| Vec::new()).collect();
        for (i, d) in datasets.into_iter().enumerate() {
            work[i % threads].push((i, d));
        }
        std::thread::scope(|scope| {
            let handles: Vec<_> = work
                .into_iter()
                .map(|items| {
                    scope.spawn(move || {
                        items.into_iter().map(|(i, (key, ds))| (i, encode_dataset(key, ds, codec))).collect::<Vec<_>>()
                    })
                })
                .collect();
            for h in handles {
                // A panicking encoder leaves its slots empty: reported below.
                if let Ok(results) = h.join() {
                    for (i, r) in results {
                        encoded[i] = Some(r);
                    }
                }
            }
        });
        let mut out = Vec::with_capacity(self.approx_bytes / 3 + 4096);
        let mut metas = Vec::with_capacity(encoded.len());
        let mut keys = Vec::with_capacity(encoded.len());
        let (mut min_time, mut max_time) = (i64::MAX, i64::MIN);
        let mut encoded = encoded
            .into_iter()
            .map(|e| e.ok_or(BlockError::TooLarge("dataset encoder failed"))?)
            .collect::<Result<Vec<_>>>()?;
        // A tenant with several datasets gets a tenant index, placed before
        // its datasets (the empty name sorts first).
        let mut i = 0;
        while i < encoded.len() {
            let tenant = encoded[i].meta.tenant.clone();
            let n = encoded[i..].iter().take_while(|e| e.meta.tenant == tenant).count();
            if n > 1 {
                let parts: Vec<(&Dataset, &[IndexSeries])> =
                    encoded[i..i + n].iter().map(|e| (&e.meta, e.series.as_slice())).collect();
                let (bytes, meta) = encode_tenant_index(&tenant, &parts, codec)?;
                encoded.insert(i, EncodedDataset { bytes, meta, keys: Vec::new(), series: Vec::new() });
                i += 1;
            }
            i += n;
        }
        for mut e in encoded {
            let base = out.len() as u64;
            for sec in &mut e.meta.sections {
                sec.offset += base;
            }
            out.extend_from_slice(&e.bytes);
            min_time = min_time.min(e.meta.min_time);
            max_time = max_time.max(e.meta.max_time);
            metas.push(e.meta);
            keys.push(Bytes::from(e.keys));
        }
        if metas.is_empty() {
            return Err(BlockError::Empty);
        }
        let mut meta = BlockMeta {
            format_version: FORMAT_VERSION,
            id: header.id.to_string(),
            tenant: header.tenant,
            shard: header.shard,
            compaction_level: header.level,
            min_time,
            max_time,
            size: 0,
            created_by: header.created_by,
            datasets: metas,
            rollup_start: 0,
            rollup_end: 0,
            rollup_covers: Vec::new(),
            rollup_step: 0,
        };
        if let Some(r) = rollup {
            r.describe(&mut meta);
        }
        write_footer(&mut out, &mut meta)?;
        Ok(EncodedBlock { bytes: Bytes::from(out), meta, dataset_keys: keys })
    }
}
