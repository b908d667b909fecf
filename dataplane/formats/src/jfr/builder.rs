//! Symbols, stacks and per-kind aggregation shared by all chunks of a
//! recording, and the final conversion to pprof.

use indexmap::{IndexMap, IndexSet};
use phlox_proto::google::v1 as pb;
use rustc_hash::{FxBuildHasher, FxHashMap};

use super::{Context, JfrError, JfrProfile, LabelsSnapshot};

type FxIndexSet<T> = IndexSet<T, FxBuildHasher>;
type FxIndexMap<K, V> = IndexMap<K, V, FxBuildHasher>;

/// Fallback sampling interval (10 ms) when the recording has no setting.
pub(crate) const DEFAULT_PERIOD_NANOS: i64 = 10_000_000;

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
}

pub(crate) const KINDS: usize = 8;

const ALL_KINDS: [EventKind; KINDS] = [
    EventKind::Cpu,
    EventKind::Wall,
    EventKind::TlabIn,
    EventKind::TlabOut,
    EventKind::Lock,
    EventKind::Park,
    EventKind::LiveObject,
    EventKind::AllocSample,
];

struct KindInfo {
    metric: &'static str,
    event: &'static str,
    sample_types: &'static [(&'static str, &'static str)],
    period_type: (&'static str, &'static str),
    /// Values are sample counts multiplied by the sampling period.
    timed: bool,
}

impl EventKind {
    /// The event kind of a JFR event type name.
    pub(crate) fn of_event(name: &str) -> Option<EventKind> {
        Some(match name {
            "jdk.ExecutionSample" => EventKind::Cpu,
            "jdk.NativeMethodSample" | "profiler.WallClockSample" => EventKind::Wall,
            "jdk.ObjectAllocationInNewTLAB" => EventKind::TlabIn,
            "jdk.ObjectAllocationOutsideTLAB" => EventKind::TlabOut,
            "jdk.JavaMonitorEnter" => EventKind::Lock,
            "jdk.ThreadPark" => EventKind::Park,
            "profiler.LiveObject" => EventKind::LiveObject,
            "jdk.ObjectAllocationSample" => EventKind::AllocSample,
            _ => return None,
        })
    }

    fn info(self) -> KindInfo {
        match self {
            EventKind::Cpu => KindInfo {
                metric: "process_cpu",
                event: "cpu",
                sample_types: &[("cpu", "nanoseconds")],
                period_type: ("cpu", "nanoseconds"),
                timed: true,
            },
            EventKind::Wall => KindInfo {
                metric: "wall",
                event: "wall",
                sample_types: &[("wall", "nanoseconds")],
                period_type: ("wall", "nanoseconds"),
                timed: true,
            },
            EventKind::TlabIn => KindInfo {
                metric: "memory",
                event: "alloc_in_new_tlab",
                sample_types: &[("alloc_in_new_tlab_objects", "count"), ("alloc_in_new_tlab_bytes", "bytes")],
                period_type: ("space", "bytes"),
                timed: false,
            },
            EventKind::TlabOut => KindInfo {
                metric: "memory",
                event: "alloc_outside_tlab",
                sample_types: &[("alloc_outside_tlab_objects", "count"), ("alloc_outside_tlab_bytes", "bytes")],
                period_type: ("space", "bytes"),
                timed: false,
            },
            EventKind::Lock => KindInfo {
                metric: "mutex",
                event: "lock",
                sample_types: &[("contentions", "count"), ("delay", "nanoseconds")],
                period_type: ("mutex", "count"),
                timed: false,
            },
            EventKind::Park => KindInfo {
                metric: "block",
                event: "thread_park",
                sample_types: &[("contentions", "count"), ("delay", "nanoseconds")],
                period_type: ("block", "count"),
                timed: false,
            },
            EventKind::LiveObject => KindInfo {
                metric: "memory",
                event: "live_object",
                sample_types: &[("live", "count")],
                period_type: ("objects", "count"),
                timed: false,
            },
            EventKind::AllocSample => KindInfo {
                metric: "memory",
                event: "alloc_sample",
                sample_types: &[("alloc_sample_objects", "count"), ("alloc_sample_bytes", "bytes")],
                period_type: ("space", "bytes"),
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
    /// Context id → label set (index into `label_sets`).
    contexts: FxHashMap<i64, u32>,
    /// Distinct label sets as sorted (key, value) pairs; set 0 is empty.
    label_sets: FxIndexSet<Vec<(Box<str>, Box<str>)>>,
    aggs: [FxIndexMap<(u32, u32), [i64; 2]>; KINDS],
    periods: [Option<i64>; KINDS],
    time_start: Option<i64>,
    time_end: i64,
    /// Bytes of function names still allowed to be built (work and memory cap).
    name_budget: usize,
    /// Sample label entries still allowed in the output.
    label_budget: usize,
    limit: usize,
}

impl Builder {
    pub(crate) fn new(snapshot: Option<LabelsSnapshot>, limit: usize) -> Self {
        Builder {
            functions: FxIndexSet::default(),
            locations: FxIndexSet::default(),
            stacks: FxIndexSet::default(),
            snapshot,
            contexts: FxHashMap::default(),
            label_sets: std::iter::once(Vec::new()).collect(),
            aggs: Default::default(),
            periods: [None; KINDS],
            time_start: None,
            time_end: 0,
            name_budget: limit,
            label_budget: limit / 16,
            limit,
        }
    }

    pub(crate) fn chunk_time(&mut self, start_nanos: i64, duration_nanos: i64) {
        let start = self.time_start.map_or(start_nanos, |s| s.min(start_nanos));
        self.time_start = Some(start);
        self.time_end = self.time_end.max(start_nanos.saturating_add(duration_nanos.max(0)));
    }

    /// Records a sampling period setting; the smallest one is effective
    /// when several recordings ran at once.
    pub(crate) fn period(&mut self, kind: EventKind, nanos: i64) {
        if nanos > 0 {
            let p = &mut self.periods[kind as usize];
            *p = Some(p.map_or(nanos, |old| old.min(nanos)));
        }
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

    /// The label set of an event's context id (0 when unknown or none).
    pub(crate) fn labels(&mut self, context: i64) -> u32 {
        if context == 0 {
            return 0;
        }
        let Some(snap) = &self.snapshot else { return 0 };
        if let Some(&set) = self.contexts.get(&context) {
            return set;
        }
        let set = match snap.contexts.get(&context) {
            Some(ctx) => label_pairs(snap, ctx),
            None => Vec::new(),
        };
        let id = self.label_sets.insert_full(set).0 as u32;
        self.contexts.insert(context, id);
        id
    }

    pub(crate) fn add(&mut self, kind: EventKind, stack: u32, labels: u32, values: [i64; 2]) -> Result<(), JfrError> {
        let agg = &mut self.aggs[kind as usize];
        let len = agg.len();
        let e = agg.entry((stack, labels)).or_insert([0, 0]);
        e[0] = e[0].saturating_add(values[0]);
        e[1] = e[1].saturating_add(values[1]);
        if agg.len() > len && labels != 0 {
            let n = self.label_sets.get_index(labels as usize).map_or(0, Vec::len);
            self.label_budget = self.label_budget.checked_sub(n).ok_or(JfrError::TooLarge { limit: self.limit })?;
        }
        Ok(())
    }

    /// One pprof per kind that has samples.
    pub(crate) fn finish(self) -> Vec<JfrProfile> {
        let mut out = Vec::new();
        for kind in ALL_KINDS {
            let agg = &self.aggs[kind as usize];
            if agg.is_empty() {
                continue;
            }
            let info = kind.info();
            let period = if info.timed { self.periods[kind as usize].unwrap_or(DEFAULT_PERIOD_NANOS) } else { 1 };
            out.push(JfrProfile {
                metric: info.metric,
                event: info.event.to_string(),
                profile: self.pprof(&info, agg, period),
            });
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
        p.period_type =
            Some(pb::ValueType { r#type: intern.id(info.period_type.0), unit: intern.id(info.period_type.1) });
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
