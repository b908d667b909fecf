//! Plan nodes and their mergeable results.

use std::collections::{BTreeMap, BTreeSet};

use phlox_model::Selector;

use crate::call_tree::CallTree;

/// Most read leaves under one merge node (a backend refuses more).
pub const MAX_MERGE_CHILDREN: usize = 32;

/// What a read leaf computes over one block.
#[derive(Debug, Clone, PartialEq)]
pub enum LeafKind {
    /// The merged call tree of the selected profiles.
    Tree,
    /// Per group of `group_by` label values, per step: sum and count of
    /// profile totals, and with `exemplars` the highest-valued profile.
    Series {
        start_ms: i64,
        step_ms: i64,
        group_by: Vec<String>,
        exemplars: ExemplarKind,
        /// Only samples under this call site (function names, root first) count.
        call_site: Option<Vec<String>>,
    },
    /// Every selected profile (or with `spans`, every span of a profile) as
    /// a point, per group.
    Points {
        start_ms: i64,
        step_ms: i64,
        group_by: Vec<String>,
        spans: bool,
    },
    /// The merged stacks with full locations (for pprof output), restricted
    /// to a call site and optionally reduced for Go PGO.
    Stacks {
        call_site: Vec<String>,
        pgo: Option<crate::stacks::PgoOptions>,
    },
    LabelNames,
    LabelValues(String),
    /// Distinct label sets projected on these names (all when empty).
    LabelSets(Vec<String>),
}

/// Which exemplar a series point carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExemplarKind {
    None,
    /// The profile with the highest total.
    Individual,
    /// The span with the highest total (samples grouped by span id).
    Span,
}

/// A read leaf's query (the block comes with it).
#[derive(Debug, Clone)]
pub struct LeafQuery {
    pub selector: Selector,
    /// Profiles and samples that count (trees only).
    pub filter: phlox_block::SampleFilter,
    pub start_nanos: i64,
    pub end_nanos: i64,
    pub kind: LeafKind,
}

impl PartialEq for LeafQuery {
    fn eq(&self, o: &Self) -> bool {
        self.selector == o.selector
            && self.filter.profile_ids == o.filter.profile_ids
            && self.filter.span_ids == o.filter.span_ids
            && self.filter.trace_ids == o.filter.trace_ids
            && self.start_nanos == o.start_nanos
            && self.end_nanos == o.end_nanos
            && self.kind == o.kind
    }
}

/// One profile of a heatmap.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfilePoint {
    /// Right edge (ms) of the step the profile falls in.
    pub slot_ms: i64,
    pub time_ms: i64,
    pub value: i64,
    pub profile_id: String,
    /// The span of a span point (0 = none), and its trace.
    pub span_id: u64,
    pub trace_id: [u8; 16],
}

/// The profile (or span) with the highest value of a point.
#[derive(Debug, Clone, PartialEq)]
pub struct PointExemplar {
    pub time_ms: i64,
    pub profile_id: String,
    pub value: i64,
    /// Set for span exemplars (0 = none).
    pub span_id: u64,
    pub trace_id: [u8; 16],
    /// Labels of its series that are not group-by labels.
    pub labels: Vec<(String, String)>,
}

/// One point: sum and count of profile totals, and the best exemplar.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PointValue {
    pub sum: f64,
    pub count: u64,
    pub exemplar: Option<PointExemplar>,
}

impl PointValue {
    fn merge(&mut self, o: PointValue) {
        self.sum += o.sum;
        self.count += o.count;
        if let Some(e) = o.exemplar
            && self.exemplar.as_ref().is_none_or(|x| e.value > x.value)
        {
            self.exemplar = Some(e);
        }
    }
}

/// Group labels → step timestamp (ms) → point.
pub type SeriesPoints = BTreeMap<Vec<(String, String)>, BTreeMap<i64, PointValue>>;

/// A partial result; merge nodes combine them.
#[derive(Debug, Clone, PartialEq)]
pub enum LeafResult {
    Tree(CallTree),
    Series(SeriesPoints),
    Names(BTreeSet<String>),
    Points(BTreeMap<Vec<(String, String)>, Vec<ProfilePoint>>),
    LabelSets(BTreeSet<Vec<(String, String)>>),
    Stacks(Box<crate::stacks::MergedStacks>),
}

impl LeafResult {
    pub fn empty(kind: &LeafKind) -> Self {
        match kind {
            LeafKind::Tree => LeafResult::Tree(CallTree::default()),
            LeafKind::Series { .. } => LeafResult::Series(SeriesPoints::new()),
            LeafKind::Points { .. } => LeafResult::Points(BTreeMap::new()),
            LeafKind::LabelNames | LeafKind::LabelValues(_) => LeafResult::Names(BTreeSet::new()),
            LeafKind::LabelSets(_) => LeafResult::LabelSets(BTreeSet::new()),
            LeafKind::Stacks { .. } => LeafResult::Stacks(Box::default()),
        }
    }

    /// Merges `other` into `self` (same kind).
    pub fn merge(&mut self, other: LeafResult) {
        match (self, other) {
            (LeafResult::Tree(a), LeafResult::Tree(b)) => a.merge(b),
            (LeafResult::Series(a), LeafResult::Series(b)) => {
                for (k, points) in b {
                    let e = a.entry(k).or_default();
                    for (t, p) in points {
                        e.entry(t).or_default().merge(p);
                    }
                }
            }
            (LeafResult::Names(a), LeafResult::Names(b)) => a.extend(b),
            (LeafResult::Points(a), LeafResult::Points(b)) => {
                for (k, mut v) in b {
                    a.entry(k).or_default().append(&mut v);
                }
            }
            (LeafResult::LabelSets(a), LeafResult::LabelSets(b)) => a.extend(b),
            (LeafResult::Stacks(a), LeafResult::Stacks(b)) => a.merge(*b),
            _ => {}
        }
    }
}
