//! Symbols, stacks and per-kind aggregation shared by all chunks of a
//! recording, and the final conversion to pprof.

use indexmap::{IndexMap, IndexSet};
use phlox_proto::google::v1 as pb;
use rustc_hash::{FxBuildHasher, FxHashMap};

use super::{Context, JfrError, JfrProfile, LabelsSnapshot};

type FxIndexSet<T> = IndexSet<T, FxBuildHasher>;
type FxIndexMap<K, V> = IndexMap<K, V, FxBuildHasher>;

/// The profile kinds, in output order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventKind {
    Cpu = 0,
    Wall,
    TlabIn,
    TlabOut,
    Lock,
    Park,
    LiveObject,
    AllocSample,
    Malloc,
}

pub(crate) const KINDS: usize = 9;

const ALL_KINDS: [EventKind; KINDS] = [
    EventKind::Cpu,
    EventKind::Wall,
    EventKind::TlabIn,
    EventKind::TlabOut,
    EventKind::Lock,
    EventKind::Park,
    EventKind::LiveObject,
    EventKind::AllocSample,
    EventKind::Malloc,
];

struct KindInfo {
    metric: &'static str,
    kind: &'static str,
    sample_types: &'static [(&'static str, &'static str)],
    period_type: Option<(&'static str, &'static str)>,
    /// Values are sample counts multiplied by the sampling period.
    timed: bool,
}

impl EventKind {
    /// The event kind of a JFR event type name.
    pub(crate) fn of_event(name: &str) -> Option<EventKind> {
        Some(match name {
            "jdk.ExecutionSample" => EventKind::Cpu,
            "profiler.WallClockSample" => EventKind::Wall,
            "jdk.ObjectAllocationInNewTLAB" => EventKind::TlabIn,
            "jdk.ObjectAllocationOutsideTLAB" => EventKind::TlabOut,
            "jdk.JavaMonitorEnter" => EventKind::Lock,
            "jdk.ThreadPark" => EventKind::Park,
            "profiler.LiveObject" => EventKind::LiveObject,
            "jdk.ObjectAllocationSample" => EventKind::AllocSample,
            "profiler.Malloc" => EventKind::Malloc,
            _ => return None,
        })
    }

    fn info(self) -> KindInfo {
        match self {
            EventKind::Cpu => KindInfo {
                metric: "process_cpu",
                kind: "cpu",
                sample_types: &[("cpu", "nanoseconds")],
                period_type: Some(("cpu", "nanoseconds")),
                timed: true,
            },
            EventKind::Wall => KindInfo {
                metric: "wall",
                kind: "wall",
                sample_types: &[("wall", "nanoseconds")],
                period_type: Some(("wall", "nanoseconds")),
                timed: true,
            },
            EventKind::TlabIn => KindInfo {
                metric: "memory",
                kind: "alloc_in_new_tlab",
                sample_types: &[("alloc_in_new_tlab_objects", "count"), ("alloc_in_new_tlab_bytes", "bytes")],
                period_type: Some(("space", "bytes")),
                timed: false,
            },
            EventKind::TlabOut => KindInfo {
                metric: "memory",
                kind: "alloc_outside_tlab",
                sample_types: &[("alloc_outside_tlab_objects", "count"), ("alloc_outside_tlab_bytes", "bytes")],
                period_type: Some(("space", "bytes")),
                timed: false,
            },
            EventKind::Lock => KindInfo {
                metric: "mutex",
                kind: "lock",
                sample_types: &[("contentions", "count"), ("delay", "nanoseconds")],
                period_type: Some(("mutex", "count")),
                timed: false,
            },
            EventKind::Park => KindInfo {
                metric: "block",
                kind: "thread_park",
                sample_types: &[("contentions", "count"), ("delay", "nanoseconds")],
                period_type: Some(("block", "count")),
                timed: false,
            },
            EventKind::LiveObject => KindInfo {
                metric: "memory",
                kind: "live_object",
                sample_types: &[("live", "count")],
                period_type: Some(("objects", "count")),
                timed: false,
            },
            EventKind::AllocSample => KindInfo {
                metric: "memory",
                kind: "alloc_sample",
                sample_types: &[("alloc_sample_objects", "count"), ("alloc_sample_bytes", "bytes")],
                period_type: Some(("space", "bytes")),
                timed: false,
            },
            EventKind::Malloc => KindInfo {
                metric: "memory",
                kind: "malloc",
                sample_types: &[("malloc_objects", "count"), ("malloc_bytes", "bytes")],
                period_type: None,
                timed: false,
            },
        }
    }
}

/// Accumulates every chunk's samples.
#[derive(Debug)]
pub(crate) struct Builder {
    functions: FxIndexSet<Box<str>>,
    /// (function, line).
    locations: FxIndexSet<(u32, i64)>,
    /// Location indices, leaf first.
    stacks: FxIndexSet<Box<[u32]>>,
    snapshot: Option<LabelsSnapshot>,
    /// (context id, span id, span name id) → label set (index into `label_sets`).
    contexts: FxHashMap<(i64, i64, i64), u32>,
    /// Distinct label sets as sorted (key, value) pairs; set 0 is empty.
    label_sets: FxIndexSet<Vec<(Box<str>, Box<str>)>>,
    aggs: [FxIndexMap<(u32, u32), [i64; 2]>; KINDS],
    /// Nanoseconds one CPU or wall event stands for: 1e9 / the upload's sample rate.
    period: i64,
    /// The value of the latest `jdk.ActiveSetting` named `event` (async-profiler's
    /// profiling mode: `cpu`, `itimer`, `wall`, …), in recording order.
    pub(crate) event_setting: Option<String>,
    time_start: Option<i64>,
    time_end: i64,
    /// Bytes of function names still allowed to be built (work and memory cap).
    name_budget: usize,
    /// Sample label entries still allowed in the output.
    label_budget: usize,
    limit: usize,
    /// What the output profiles may expand to (each distinct stack of a kind
    /// is copied into its pprof sample), and what they take so far.
    budget: crate::Budget,
    encoded: [usize; KINDS],
    request_bytes: usize,
}

impl Builder {
    pub(crate) fn new(snapshot: Option<LabelsSnapshot>, limit: usize, sample_rate: u32, budget: crate::Budget) -> Self {
        Builder {
            functions: FxIndexSet::default(),
            locations: FxIndexSet::default(),
            stacks: FxIndexSet::default(),
            snapshot,
            contexts: FxHashMap::default(),
            label_sets: std::iter::once(Vec::new()).collect(),
            aggs: Default::default(),
            period: if sample_rate == 0 { 0 } else { 1_000_000_000 / i64::from(sample_rate) },
            event_setting: None,
            time_start: None,
            time_end: 0,
            name_budget: limit,
            label_budget: limit / 16,
            limit,
            budget,
            encoded: [0; KINDS],
            request_bytes: 0,
        }
    }

    pub(crate) fn chunk_time(&mut self, start_nanos: i64, duration_nanos: i64) {
        let start = self.time_start.map_or(start_nanos, |s| s.min(start_nanos));
        self.time_start = Some(start);
        self.time_end = self.time_end.max(start_nanos.saturating_add(duration_nanos.max(0)));
    }

    /// Charges `n` bytes of symbol text against the budget.
    pub(crate) fn charge_name(&mut self, n: usize) -> Result<(), JfrError> {
        self.name_budget = self.name_budget.checked_sub(n).ok_or(JfrError::TooLarge { limit: self.limit })?;
        Ok(())
    }

    pub(crate) fn function(&mut self, name: &str) -> u32 {
        if let Some(i) = self.functions.get_index_of(name) {
            return i as u32;
        }
        self.functions.insert_full(name.into()).0 as u32
    }

    pub(crate) fn location(&mut self, function: u32, line: i64) -> u32 {
        self.locations.insert_full((function, line)).0 as u32
    }

    pub(crate) fn stack(&mut self, locations: &[u32]) -> u32 {
        if let Some(i) = self.stacks.get_index_of(locations) {
            return i as u32;
        }
        self.stacks.insert_full(locations.into()).0 as u32
    }

    /// The label set of an event: its context's labels (by `contextId`), and
    /// with a span id a `profile_id` label (16 hex digits) and the span's
    /// `span_name`. Only with a labels snapshot; 0 (no labels) otherwise.
    pub(crate) fn labels(&mut self, context: i64, span_id: i64, span_name: i64) -> u32 {
        let Some(snap) = &self.snapshot else { return 0 };
        if context == 0 && span_id == 0 && span_name == 0 {
            return 0;
        }
        let key = (context, span_id, span_name);
        if let Some(&set) = self.contexts.get(&key) {
            return set;
        }
        let mut set = match snap.contexts.get(&context) {
            Some(ctx) if context != 0 => label_pairs(snap, ctx),
            _ => Vec::new(),
        };
        if span_id != 0 {
            set.push(("profile_id".into(), format!("{span_id:016x}").into()));
        }
        if let Some(name) = snap.strings.get(&span_name).filter(|n| span_name != 0 && !n.is_empty()) {
            set.push(("span_name".into(), name.as_str().into()));
        }
        set.sort();
        set.dedup_by(|a, b| a.0 == b.0);
        let id = self.label_sets.insert_full(set).0 as u32;
        self.contexts.insert(key, id);
        id
    }

    pub(crate) fn add(&mut self, kind: EventKind, stack: u32, labels: u32, values: [i64; 2]) -> Result<(), JfrError> {
        let agg = &mut self.aggs[kind as usize];
        let len = agg.len();
        let e = agg.entry((stack, labels)).or_insert([0, 0]);
        e[0] = e[0].saturating_add(values[0]);
        e[1] = e[1].saturating_add(values[1]);
        if agg.len() > len {
            // A new pprof sample: its stack will be copied into it.
            let frames = self.stacks.get_index(stack as usize).map_or(0, |s| s.len());
            let encoded = &mut self.encoded[kind as usize];
            *encoded = encoded.saturating_add(frames).saturating_add(1);
            if *encoded > self.budget.max_profile_bytes {
                return Err(JfrError::ProfileTooLarge { kind: kind.info().kind, limit: self.budget.max_profile_bytes });
            }
            self.request_bytes = self.request_bytes.saturating_add(crate::Budget::sample_bytes(frames));
            if self.request_bytes > self.budget.max_request_bytes {
                return Err(JfrError::RequestTooLarge { limit: self.budget.max_request_bytes });
            }
            if labels != 0 {
                let n = self.label_sets.get_index(labels as usize).map_or(0, Vec::len);
                self.label_budget = self.label_budget.checked_sub(n).ok_or(JfrError::TooLarge { limit: self.limit })?;
            }
        }
        Ok(())
    }

    /// One pprof per kind that has samples.
    pub(crate) fn finish(&self) -> Vec<JfrProfile> {
        let mut out = Vec::new();
        for kind in ALL_KINDS {
            let agg = &self.aggs[kind as usize];
            if agg.is_empty() {
                continue;
            }
            let info = kind.info();
            let period = if info.timed { self.period } else { 0 };
            out.push(JfrProfile { metric: info.metric, kind: info.kind, profile: self.pprof(&info, agg, period) });
        }
        out
    }

    fn pprof(&self, info: &KindInfo, agg: &FxIndexMap<(u32, u32), [i64; 2]>, period: i64) -> pb::Profile {
        let mut p = pb::Profile::default();
        let mut intern = Interner { strings: FxIndexSet::default() };
        intern.strings.insert("");
        for &(t, u) in info.sample_types {
            p.sample_type.push(pb::ValueType { r#type: intern.id(t), unit: intern.id(u) });
        }
        p.period_type = info.period_type.map(|(t, u)| pb::ValueType { r#type: intern.id(t), unit: intern.id(u) });
        p.period = period;
        p.time_nanos = self.time_start.unwrap_or(0);
        p.duration_nanos = self.time_end.saturating_sub(p.time_nanos).max(0);
        let mut loc_ids = vec![0u64; self.locations.len()];
        let mut fn_ids = vec![0u64; self.functions.len()];
        let mut label_ids: Vec<Option<Vec<pb::Label>>> = vec![None; self.label_sets.len()];
        p.sample.reserve(agg.len());
        for (&(stack, labels), vals) in agg {
            let Some(locs) = self.stacks.get_index(stack as usize) else { continue };
            let mut location_id = Vec::with_capacity(locs.len());
            for &l in locs.iter() {
                let Some(slot) = loc_ids.get_mut(l as usize) else { continue };
                if *slot == 0 {
                    let Some(&(f, line)) = self.locations.get_index(l as usize) else { continue };
                    let Some(fslot) = fn_ids.get_mut(f as usize) else { continue };
                    if *fslot == 0 {
                        let name = self.functions.get_index(f as usize).map_or("", |n| n);
                        let id = intern.id(name);
                        p.function.push(pb::Function {
                            id: p.function.len() as u64 + 1,
                            name: id,
                            system_name: id,
                            filename: 0,
                            start_line: 0,
                        });
                        *fslot = p.function.len() as u64;
                    }
                    p.location.push(pb::Location {
                        id: p.location.len() as u64 + 1,
                        mapping_id: 0,
                        address: 0,
                        line: vec![pb::Line { function_id: *fslot, line }],
                        is_folded: false,
                    });
                    *slot = p.location.len() as u64;
                }
                location_id.push(*slot);
            }
            let value: Vec<i64> = if info.timed {
                vec![vals[0].saturating_mul(period)]
            } else {
                vals[..info.sample_types.len()].to_vec()
            };
            let label = match (labels, label_ids.get_mut(labels as usize), self.label_sets.get_index(labels as usize)) {
                (1.., Some(slot), Some(set)) => slot
                    .get_or_insert_with(|| {
                        set.iter()
                            .map(|(k, v)| pb::Label { key: intern.id(k), str: intern.id(v), num: 0, num_unit: 0 })
                            .collect()
                    })
                    .clone(),
                _ => Vec::new(),
            };
            p.sample.push(pb::Sample { location_id, value, label });
        }
        p.string_table = intern.strings.into_iter().map(str::to_string).collect();
        p
    }
}

struct Interner<'a> {
    strings: FxIndexSet<&'a str>,
}

impl<'a> Interner<'a> {
    fn id(&mut self, s: &'a str) -> i64 {
        self.strings.insert_full(s).0 as i64
    }
}

/// The (key, value) pairs of a context, sorted by key; pairs whose
/// strings are missing from the snapshot or empty are dropped.
fn label_pairs(snap: &LabelsSnapshot, ctx: &Context) -> Vec<(Box<str>, Box<str>)> {
    let mut v: Vec<(Box<str>, Box<str>)> = ctx
        .labels
        .iter()
        .filter_map(|(k, val)| {
            let k = snap.strings.get(k)?;
            let val = snap.strings.get(val)?;
            (!k.is_empty() && !val.is_empty()).then(|| (k.as_str().into(), val.as_str().into()))
        })
        .collect();
    v.sort();
    v.dedup_by(|a, b| a.0 == b.0);
    v
}
