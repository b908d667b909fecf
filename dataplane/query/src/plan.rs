//! Plan nodes and their mergeable results.

use std::collections::{BTreeMap, BTreeSet};

use phlox_model::{Selector, StackTree};

/// What a read leaf computes over one block.
#[derive(Debug, Clone)]
pub enum LeafKind {
    /// The merged call tree of the selected profiles.
    Tree,
    /// Per group of `group_by` label values, per step: sum and count of profile totals.
    Series {
        start_ms: i64,
        step_ms: i64,
        group_by: Vec<String>,
    },
    LabelNames,
    LabelValues(String),
    /// Distinct label sets projected on these names (all when empty).
    LabelSets(Vec<String>),
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

/// Group labels → step timestamp (ms) → (sum, count).
pub type SeriesPoints = BTreeMap<Vec<(String, String)>, BTreeMap<i64, (f64, u64)>>;

/// A partial result; merge nodes combine them.
#[derive(Debug, Clone)]
pub enum LeafResult {
    Tree(StackTree),
    Series(SeriesPoints),
    Names(BTreeSet<String>),
    LabelSets(BTreeSet<Vec<(String, String)>>),
}

impl LeafResult {
    pub fn empty(kind: &LeafKind) -> Self {
        match kind {
            LeafKind::Tree => LeafResult::Tree(StackTree::default()),
            LeafKind::Series { .. } => LeafResult::Series(SeriesPoints::new()),
            LeafKind::LabelNames | LeafKind::LabelValues(_) => LeafResult::Names(BTreeSet::new()),
            LeafKind::LabelSets(_) => LeafResult::LabelSets(BTreeSet::new()),
        }
    }

    /// Merges `other` into `self` (same kind).
    pub fn merge(&mut self, other: LeafResult) {
        match (self, other) {
            (LeafResult::Tree(a), LeafResult::Tree(b)) => a.merge(&b),
            (LeafResult::Series(a), LeafResult::Series(b)) => {
                for (k, points) in b {
                    let e = a.entry(k).or_default();
                    for (t, (s, c)) in points {
                        let p = e.entry(t).or_insert((0.0, 0));
                        p.0 += s;
                        p.1 += c;
                    }
                }
            }
            (LeafResult::Names(a), LeafResult::Names(b)) => a.extend(b),
            (LeafResult::LabelSets(a), LeafResult::LabelSets(b)) => a.extend(b),
            _ => {}
        }
    }
}
