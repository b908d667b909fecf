//! Executing read leaves over one block: only the sections a query needs
//! are fetched (series index always; profiles and symbols for trees;
//! profiles only for series), with ranged GETs.

use std::sync::Arc;

use object_store::ObjectStore;
use phlox_block::{BlockReader, DatasetReader};
use phlox_model::{Labels, StackTree};
use phlox_proto::metastore::v1::BlockMeta;

use crate::QueryError;
use crate::plan::{LeafKind, LeafQuery, LeafResult};

/// Executes read leaves; in-process ([`LocalBackend`]) or remote.
#[async_trait::async_trait]
pub trait QueryBackend: Send + Sync + 'static {
    async fn execute(&self, block: BlockMeta, query: Arc<LeafQuery>) -> Result<LeafResult, QueryError>;
}

/// Reads blocks straight from the bucket.
#[derive(Debug, Clone)]
pub struct LocalBackend {
    store: Arc<dyn ObjectStore>,
    metrics: Option<crate::QueryMetrics>,
}

impl LocalBackend {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store, metrics: None }
    }

    /// Records in-flight leaves and leaf latency.
    pub fn with_metrics(mut self, metrics: crate::QueryMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }
}

/// Counts a leaf in flight for as long as it lives.
struct InFlight<'a>(Option<&'a crate::QueryMetrics>, std::time::Instant);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(m) = self.0 {
            m.inflight_leaves.dec();
            m.leaf_duration.observe(self.1.elapsed().as_secs_f64());
        }
    }
}

#[async_trait::async_trait]
impl QueryBackend for LocalBackend {
    async fn execute(&self, block: BlockMeta, query: Arc<LeafQuery>) -> Result<LeafResult, QueryError> {
        if let Some(m) = &self.metrics {
            m.inflight_leaves.inc();
        }
        let _inflight = InFlight(self.metrics.as_ref(), std::time::Instant::now());
        let reader = BlockReader::from_meta(Arc::clone(&self.store), block)?;
        let mut result = LeafResult::empty(&query.kind);
        for i in 0..reader.meta().datasets.len() {
            let ds = reader.dataset(i).await?;
            let selected = select(&ds, &query);
            if selected.is_empty() {
                continue;
            }
            result.merge(execute_dataset(&ds, &selected, &query).await?);
        }
        Ok(result)
    }
}

/// Series of the dataset that match the selector and overlap the range.
fn select(ds: &DatasetReader, q: &LeafQuery) -> Vec<u32> {
    ds.series()
        .iter()
        .enumerate()
        .filter(|(_, s)| {
            s.max_time_nanos >= q.start_nanos && s.min_time_nanos <= q.end_nanos && q.selector.matches(&s.labels)
        })
        .map(|(i, _)| i as u32)
        .collect()
}

fn labels_of(ds: &DatasetReader, i: u32) -> &Labels {
    &ds.series()[i as usize].labels
}

async fn execute_dataset(ds: &DatasetReader, selected: &[u32], q: &LeafQuery) -> Result<LeafResult, QueryError> {
    Ok(match &q.kind {
        LeafKind::LabelNames => {
            LeafResult::Names(selected.iter().flat_map(|&i| labels_of(ds, i).iter().map(|p| p.name.clone())).collect())
        }
        LeafKind::LabelValues(name) => {
            LeafResult::Names(selected.iter().filter_map(|&i| labels_of(ds, i).get(name).map(str::to_owned)).collect())
        }
        LeafKind::LabelSets(names) => LeafResult::LabelSets(
            selected
                .iter()
                .map(|&i| {
                    labels_of(ds, i)
                        .iter()
                        .filter(|p| names.is_empty() || names.contains(&p.name))
                        .map(|p| (p.name.clone(), p.value.clone()))
                        .collect()
                })
                .collect(),
        ),
        LeafKind::Series { start_ms, step_ms, group_by, exemplars } => {
            let mut out = crate::plan::SeriesPoints::new();
            let step = (*step_ms).max(1);
            for (series, time_nanos, total, id) in ds.profile_totals(selected, q.start_nanos, q.end_nanos).await? {
                let labels = labels_of(ds, series);
                let key: Vec<(String, String)> =
                    group_by.iter().filter_map(|g| labels.get(g).map(|v| (g.clone(), v.to_owned()))).collect();
                // A point at ts covers (ts - step, ts]; steps start at start - step.
                let t = time_nanos.div_euclid(1_000_000);
                let k = (t - start_ms).div_euclid(step) + i64::from((t - start_ms).rem_euclid(step) != 0);
                let ts = start_ms + k * step;
                let p = out.entry(key).or_default().entry(ts).or_default();
                p.sum += total as f64;
                p.count += 1;
                if *exemplars && p.exemplar.as_ref().is_none_or(|e| total > e.value) {
                    p.exemplar = Some(crate::plan::PointExemplar {
                        time_ms: t,
                        profile_id: id.to_string(),
                        value: total,
                        labels: labels
                            .iter()
                            .filter(|l| !group_by.contains(&l.name) && !l.name.starts_with("__"))
                            .map(|l| (l.name.clone(), l.value.clone()))
                            .collect(),
                    });
                }
            }
            LeafResult::Series(out)
        }
        LeafKind::Points { start_ms, step_ms, group_by } => {
            let mut out: std::collections::BTreeMap<Vec<(String, String)>, Vec<crate::plan::ProfilePoint>> =
                Default::default();
            let step = (*step_ms).max(1);
            for (series, time_nanos, total, id) in ds.profile_totals(selected, q.start_nanos, q.end_nanos).await? {
                let labels = labels_of(ds, series);
                let key: Vec<(String, String)> =
                    group_by.iter().filter_map(|g| labels.get(g).map(|v| (g.clone(), v.to_owned()))).collect();
                let t = time_nanos.div_euclid(1_000_000);
                let k = (t - start_ms).div_euclid(step) + i64::from((t - start_ms).rem_euclid(step) != 0);
                out.entry(key).or_default().push(crate::plan::ProfilePoint {
                    slot_ms: start_ms + k * step,
                    time_ms: t,
                    value: total,
                    profile_id: id.to_string(),
                });
            }
            LeafResult::Points(out)
        }
        LeafKind::Tree => LeafResult::Tree(tree(ds, selected, q).await?),
    })
}

/// The call tree of the selected profiles: stack values accumulate in a
/// dense array indexed by stack id, then each used stack node maps to a
/// call-tree node once (parents precede children in the stack table).
async fn tree(ds: &DatasetReader, selected: &[u32], q: &LeafQuery) -> Result<StackTree, QueryError> {
    let symbols = ds.symbols().await?;
    let n = symbols.stack_count();
    let mut values = vec![0i64; n];
    ds.accumulate_filtered(selected, q.start_nanos, q.end_nanos, &q.filter, &mut values).await?;
    // Which nodes are on a path to a valued stack.
    let mut used = vec![false; n];
    for i in (1..n).rev() {
        if values[i] != 0 || used[i] {
            used[i] = true;
            let p = symbols.stack_parent[i] as usize;
            if p < n {
                used[p] = true;
            }
        }
    }
    let mut tree = StackTree::default();
    let mut fn_ids: Vec<u32> = vec![u32::MAX; symbols.functions.len()];
    let mut map = vec![0u32; n];
    for i in 1..n {
        if !used[i] {
            continue;
        }
        let mut t = map[symbols.stack_parent[i] as usize];
        let loc = symbols.stack_location[i] as usize;
        if let Some(r) = symbols.location_lines.get(loc) {
            // Lines are innermost first: the outermost frame is the caller.
            for &(f, _) in symbols.lines[r.start as usize..r.end as usize].iter().rev() {
                let id = match fn_ids.get(f as usize) {
                    Some(&id) if id != u32::MAX => id,
                    _ => {
                        let name = symbols
                            .functions
                            .get(f as usize)
                            .map(|f| symbols.strings[f.name as usize].as_str())
                            .unwrap_or("");
                        let id = tree.name_id(name);
                        if let Some(slot) = fn_ids.get_mut(f as usize) {
                            *slot = id;
                        }
                        id
                    }
                };
                t = tree.child(t, id);
            }
        }
        map[i] = t;
        if values[i] != 0 {
            tree.add_self(t, values[i]);
        }
    }
    Ok(tree)
}
