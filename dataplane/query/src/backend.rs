//! Executing read leaves over one block: only the sections a query needs
//! are fetched (series index always; profiles and symbols for trees;
//! profiles only for series), with ranged GETs.

use std::sync::Arc;

use futures::StreamExt;
use object_store::ObjectStore;
use phlox_block::{BlockReader, DatasetReader, SeriesInfo, is_tenant_index};
use phlox_model::{Labels, label_names as ln};
use phlox_proto::metastore::v1::{BlockMeta, Dataset, TimeRange};
use rustc_hash::FxHashSet;

use crate::QueryError;
use crate::call_tree::CallTree;
use crate::plan::{ExemplarKind, LeafKind, LeafQuery, LeafResult};
use crate::stacks::{MergedStacks, call_site_mask};
use crate::task::Task;

/// Executes plan nodes; in-process ([`LocalBackend`]) or remote.
#[async_trait::async_trait]
pub trait QueryBackend: Send + Sync + 'static {
    /// A read leaf: the query over one block.
    async fn execute(&self, block: BlockMeta, query: Arc<LeafQuery>) -> Result<LeafResult, QueryError>;

    /// A merge node: every block as a read leaf, the results merged; the
    /// whole result or the first error. This default runs the leaves
    /// concurrently in the caller's task.
    async fn execute_merge(&self, blocks: Vec<BlockMeta>, query: Arc<LeafQuery>) -> Result<LeafResult, QueryError> {
        execute_each(self, blocks, query).await
    }
}

/// Every block as its own [`QueryBackend::execute`] call, concurrently in
/// the caller's task, merged; the whole result or the first error.
pub(crate) async fn execute_each<B: QueryBackend + ?Sized>(
    backend: &B,
    blocks: Vec<BlockMeta>,
    query: Arc<LeafQuery>,
) -> Result<LeafResult, QueryError> {
    let mut result = LeafResult::empty(&query.kind);
    let mut leaves: futures::stream::FuturesUnordered<_> =
        blocks.into_iter().map(|b| backend.execute(b, Arc::clone(&query))).collect();
    while let Some(r) = futures::StreamExt::next(&mut leaves).await {
        result.merge(r?);
    }
    Ok(result)
}

/// Reads blocks straight from the bucket.
#[derive(Debug, Clone)]
pub struct LocalBackend {
    store: Arc<dyn ObjectStore>,
    metrics: Option<crate::QueryMetrics>,
    symbols: Arc<crate::SymbolCache>,
    symbolizer: Arc<crate::debuginfo::Symbolizer>,
    /// Execution slots: leaves beyond them queue (and show as queued).
    slots: Arc<tokio::sync::Semaphore>,
    slot_count: usize,
    /// Where leaves run: a runtime of their own, so decoding and merging
    /// never hold the threads that answer health checks and Raft (none: the
    /// caller's runtime).
    runtime: Option<tokio::runtime::Handle>,
}

/// Default execution slots: two leaves per core (a leaf alternates between
/// waiting for GETs and decoding).
fn default_slots() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get() * 2)
}

impl LocalBackend {
    /// A backend over `store`; native frames are resolved from the debug
    /// files uploaded to the same bucket.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        let slot_count = default_slots();
        let symbolizer = Arc::new(crate::debuginfo::Symbolizer::new(Arc::clone(&store)));
        Self {
            symbols: Arc::new(
                crate::SymbolCache::new(crate::DEFAULT_SYMBOL_CACHE_BYTES).with_symbolizer(Arc::clone(&symbolizer)),
            ),
            symbolizer,
            store,
            metrics: None,
            slots: Arc::new(tokio::sync::Semaphore::new(slot_count)),
            slot_count,
            runtime: None,
        }
    }

    /// Runs leaves on `runtime` (see [`leaf_runtime`]).
    pub fn with_runtime(mut self, runtime: tokio::runtime::Handle) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// Executes at most `n` leaves at once (at least 1).
    pub fn with_slots(mut self, n: usize) -> Self {
        self.slot_count = n.max(1);
        self.slots = Arc::new(tokio::sync::Semaphore::new(self.slot_count));
        if let Some(m) = &self.metrics {
            m.leaf_slots.set(self.slot_count as i64);
        }
        self
    }

    /// Keeps at most `max_bytes` of decoded symbols between queries (0: none).
    pub fn with_symbol_cache(mut self, max_bytes: usize) -> Self {
        self.symbols = Arc::new(crate::SymbolCache::new(max_bytes).with_symbolizer(Arc::clone(&self.symbolizer)));
        if let Some(m) = &self.metrics {
            self.symbols.count_requests(m.symbol_cache_requests.clone());
        }
        self
    }

    /// Resolves native frames with `symbolizer` (a debuginfod server, how
    /// long a missing file is not looked up again); keeps the cache's budget.
    pub fn with_symbolizer(mut self, symbolizer: Arc<crate::debuginfo::Symbolizer>) -> Self {
        self.symbolizer = symbolizer;
        let max_bytes = self.symbols.max_bytes();
        self.with_symbol_cache(max_bytes)
    }

    /// Records in-flight leaves and leaf latency.
    pub fn with_metrics(mut self, metrics: crate::QueryMetrics) -> Self {
        metrics.leaf_slots.set(self.slot_count as i64);
        self.symbols.count_requests(metrics.symbol_cache_requests.clone());
        self.metrics = Some(metrics);
        self
    }
}

/// Counts a leaf in flight for as long as it lives.
struct InFlight<'a>(Option<&'a crate::QueryMetrics>, std::time::Instant);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(m) = self.0 {
            let elapsed = self.1.elapsed().as_secs_f64();
            m.inflight_leaves.dec();
            m.leaf_duration.observe(elapsed);
            m.busy_seconds.inc_by(elapsed);
        }
    }
}

/// A runtime for query leaves, on `threads` threads of its own (the CPUs
/// the process may use). It lives as long as the process.
pub fn leaf_runtime(threads: usize) -> std::io::Result<tokio::runtime::Handle> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name("phlox-query-leaf")
        .enable_all()
        .build()?;
    let handle = runtime.handle().clone();
    // Never dropped: dropping a runtime from async code panics, and leaves
    // may run until the process exits.
    std::mem::forget(runtime);
    Ok(handle)
}

#[async_trait::async_trait]
impl QueryBackend for LocalBackend {
    async fn execute(&self, block: BlockMeta, query: Arc<LeafQuery>) -> Result<LeafResult, QueryError> {
        match &self.runtime {
            Some(rt) => {
                let this = self.clone();
                rt.spawn(async move { this.execute_here(block, query).await })
                    .await
                    .map_err(|e| QueryError::Internal(format!("query leaf failed: {e}")))?
            }
            None => self.execute_here(block, query).await,
        }
    }

    async fn execute_merge(&self, blocks: Vec<BlockMeta>, query: Arc<LeafQuery>) -> Result<LeafResult, QueryError> {
        self.execute_merge_local(blocks, query).await
    }
}

impl LocalBackend {
    /// One leaf, on the current runtime.
    async fn execute_here(&self, block: BlockMeta, query: Arc<LeafQuery>) -> Result<LeafResult, QueryError> {
        if let Some(m) = &self.metrics {
            m.queued_leaves.inc();
        }
        let permit = self.slots.acquire().await;
        if let Some(m) = &self.metrics {
            m.queued_leaves.dec();
        }
        // The semaphore is never closed; a closed one would only lift the limit.
        let _permit = permit.ok();
        if let Some(m) = &self.metrics {
            m.inflight_leaves.inc();
        }
        let _inflight = InFlight(self.metrics.as_ref(), std::time::Instant::now());
        let reader = BlockReader::from_meta(Arc::clone(&self.store), block)?;
        let meta = reader.meta();
        let tenant_of = |d: &Dataset| if d.tenant.is_empty() { meta.tenant.clone() } else { d.tenant.clone() };
        let mut result = LeafResult::empty(&query.kind);
        // Tenant indexes decide which datasets of their tenant to open.
        let mut open: Vec<bool> = meta.datasets.iter().map(|d| !is_tenant_index(d)).collect();
        for (i, index) in meta.datasets.iter().enumerate().filter(|(_, d)| is_tenant_index(d)) {
            let tenant = tenant_of(index);
            let members: Vec<usize> =
                (0..meta.datasets.len()).filter(|&j| open[j] && tenant_of(&meta.datasets[j]) == tenant).collect();
            if members.len() < 2 {
                continue;
            }
            let series = reader.tenant_index(i).await?;
            self.count("index", 1);
            let selected = select(&series, &query, &index.deleted);
            if let Some(labels) = label_result(&series, &selected, &query.kind) {
                // Label queries are answered by the index alone.
                result.merge(labels);
                members.iter().for_each(|&j| open[j] = false);
                self.count("skipped", members.len() as u64);
                continue;
            }
            let services: FxHashSet<&str> = selected
                .iter()
                .map(|&s| series[s as usize].labels.get(ln::SERVICE_NAME).unwrap_or(ln::UNKNOWN_SERVICE))
                .collect();
            for &j in &members {
                if !services.contains(meta.datasets[j].name.as_str()) {
                    open[j] = false;
                    self.count("skipped", 1);
                }
            }
        }
        let outcome = if phlox_block::rollup::is_rollup(meta) { "rollup" } else { "read" };
        for (i, _) in open.iter().enumerate().filter(|(_, o)| **o) {
            let ds = reader.dataset(i).await?;
            self.count(outcome, 1);
            let selected = select(ds.series(), &query, &ds.meta().deleted);
            if selected.is_empty() {
                continue;
            }
            let tenant = tenant_of(ds.meta());
            if let (LeafKind::Tree, LeafResult::Tree(t)) = (&query.kind, &mut result) {
                // Every dataset's stacks straight into the leaf's tree: no
                // per-dataset tree to merge afterwards.
                tree_into(&ds, &tenant, &selected, &query, &self.symbols, t).await?;
                continue;
            }
            result.merge(execute_dataset(&ds, &tenant, &selected, &query, &self.symbols).await?);
        }
        Ok(result)
    }

    /// A merge node in this process: each leaf is its own task (so leaves
    /// run on every core), at most as many at once as the backend has
    /// slots (so one large query does not queue all its leaves ahead of
    /// every later query), merged as they end. An error, or the node being
    /// dropped, aborts the leaves still running.
    pub async fn execute_merge_local(
        &self,
        blocks: Vec<BlockMeta>,
        query: Arc<LeafQuery>,
    ) -> Result<LeafResult, QueryError> {
        let mut leaves = futures::stream::iter(blocks.into_iter().map(|b| {
            let (backend, query) = (self.clone(), Arc::clone(&query));
            Task::spawn(async move { backend.execute(b, query).await })
        }))
        .buffer_unordered(self.slot_count.max(1));
        let mut result = LeafResult::empty(&query.kind);
        while let Some(r) = leaves.next().await {
            result.merge(r.map_err(|e| QueryError::Internal(format!("query leaf failed: {e}")))??);
        }
        Ok(result)
    }

    fn count(&self, outcome: &str, n: u64) {
        if let Some(m) = &self.metrics {
            m.datasets.with_label_values(&[outcome]).inc_by(n);
        }
    }
}

/// Series that match the selector and overlap the range, except those
/// whose every row lies in a pending deletion's range (`deleted`, Unix ms,
/// inclusive: the dataset's `deleted` field in a query answer).
fn select(series: &[SeriesInfo], q: &LeafQuery, deleted: &[TimeRange]) -> Vec<u32> {
    const NANOS_PER_MS: i64 = 1_000_000;
    let gone = |s: &SeriesInfo| {
        deleted.iter().any(|r| {
            r.start.saturating_mul(NANOS_PER_MS) <= s.min_time_nanos
                && s.max_time_nanos <= r.end.saturating_mul(NANOS_PER_MS).saturating_add(NANOS_PER_MS - 1)
        })
    };
    series
        .iter()
        .enumerate()
        .filter(|(_, s)| {
            s.max_time_nanos >= q.start_nanos
                && s.min_time_nanos <= q.end_nanos
                && q.selector.matches(&s.labels)
                && !gone(s)
        })
        .map(|(i, _)| i as u32)
        .collect()
}

/// The result of a label query over the selected series; `None` for other kinds.
fn label_result(series: &[SeriesInfo], selected: &[u32], kind: &LeafKind) -> Option<LeafResult> {
    let labels = |i: u32| &series[i as usize].labels;
    Some(match kind {
        LeafKind::LabelNames => {
            LeafResult::Names(selected.iter().flat_map(|&i| labels(i).iter().map(|p| p.name.clone())).collect())
        }
        LeafKind::LabelValues(name) => {
            LeafResult::Names(selected.iter().filter_map(|&i| labels(i).get(name).map(str::to_owned)).collect())
        }
        LeafKind::LabelSets(names) => LeafResult::LabelSets(
            selected
                .iter()
                .map(|&i| {
                    labels(i)
                        .iter()
                        .filter(|p| names.is_empty() || names.contains(&p.name))
                        .map(|p| (p.name.clone(), p.value.clone()))
                        .collect()
                })
                .collect(),
        ),
        _ => return None,
    })
}

fn labels_of(ds: &DatasetReader, i: u32) -> &Labels {
    &ds.series()[i as usize].labels
}

async fn execute_dataset(
    ds: &DatasetReader,
    tenant: &str,
    selected: &[u32],
    q: &LeafQuery,
    cache: &crate::SymbolCache,
) -> Result<LeafResult, QueryError> {
    Ok(match &q.kind {
        LeafKind::LabelNames | LeafKind::LabelValues(_) | LeafKind::LabelSets(_) => {
            label_result(ds.series(), selected, &q.kind).unwrap_or_else(|| LeafResult::empty(&q.kind))
        }
        LeafKind::Series { start_ms, step_ms, group_by, exemplars, call_site } => {
            let mut out = crate::plan::SeriesPoints::new();
            let step = (*step_ms).max(1);
            let spans = *exemplars == ExemplarKind::Span;
            for p in profile_values(ds, tenant, selected, q, call_site.as_deref(), spans, cache).await? {
                let labels = labels_of(ds, p.series);
                let key: Vec<(String, String)> =
                    group_by.iter().filter_map(|g| labels.get(g).map(|v| (g.clone(), v.to_owned()))).collect();
                let t = p.time_nanos.div_euclid(1_000_000);
                let ts = slot(t, *start_ms, step);
                let point = out.entry(key).or_default().entry(ts).or_default();
                point.sum += p.total as f64;
                point.count += 1;
                let candidate = match exemplars {
                    ExemplarKind::None => None,
                    ExemplarKind::Individual => Some((p.total, 0, [0; 16])),
                    ExemplarKind::Span => {
                        p.spans.iter().max_by_key(|s| (s.2, std::cmp::Reverse(s.0))).map(|s| (s.2, s.0, s.1))
                    }
                };
                if let Some((value, span_id, trace_id)) = candidate
                    && point.exemplar.as_ref().is_none_or(|e| value > e.value)
                {
                    point.exemplar = Some(crate::plan::PointExemplar {
                        time_ms: t,
                        profile_id: p.id.to_string(),
                        value,
                        span_id,
                        trace_id,
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
        LeafKind::Points { start_ms, step_ms, group_by, spans } => {
            let mut out: std::collections::BTreeMap<Vec<(String, String)>, Vec<crate::plan::ProfilePoint>> =
                Default::default();
            let step = (*step_ms).max(1);
            for p in profile_values(ds, tenant, selected, q, None, *spans, cache).await? {
                let labels = labels_of(ds, p.series);
                let key: Vec<(String, String)> =
                    group_by.iter().filter_map(|g| labels.get(g).map(|v| (g.clone(), v.to_owned()))).collect();
                let t = p.time_nanos.div_euclid(1_000_000);
                let points = out.entry(key).or_default();
                let point = |value, span_id, trace_id| crate::plan::ProfilePoint {
                    slot_ms: slot(t, *start_ms, step),
                    time_ms: t,
                    value,
                    profile_id: p.id.to_string(),
                    span_id,
                    trace_id,
                };
                if *spans {
                    points.extend(p.spans.iter().map(|&(span, trace, v)| point(v, span, trace)));
                } else {
                    points.push(point(p.total, 0, [0; 16]));
                }
            }
            LeafResult::Points(out)
        }
        LeafKind::Stacks { call_site, pgo } => {
            let symbols = cache.get(ds, tenant).await?;
            let mut values = vec![0i64; symbols.stack_count()];
            ds.accumulate_filtered(selected, q.start_nanos, q.end_nanos, &q.filter, &mut values).await?;
            if !call_site.is_empty() {
                let mask = call_site_mask(&symbols, call_site);
                for (v, keep) in values.iter_mut().zip(mask) {
                    if !keep {
                        *v = 0;
                    }
                }
            }
            let mut stacks = MergedStacks::default();
            stacks.add_dataset(&symbols, &values, *pgo);
            LeafResult::Stacks(Box::new(stacks))
        }
        LeafKind::Tree => {
            let mut t = CallTree::default();
            tree_into(ds, tenant, selected, q, cache, &mut t).await?;
            LeafResult::Tree(t)
        }
    })
}

/// Right edge (ms) of the step a time falls in: a point at ts covers
/// (ts - step, ts]; steps start at start - step.
fn slot(t: i64, start_ms: i64, step: i64) -> i64 {
    // In i128: a request's start can be anywhere in i64 (once per profile).
    let (d, step) = (i128::from(t) - i128::from(start_ms), i128::from(step.max(1)));
    let k = d.div_euclid(step) + i128::from(d.rem_euclid(step) != 0);
    i64::try_from(i128::from(start_ms) + k * step).unwrap_or(if k > 0 { i64::MAX } else { i64::MIN })
}

/// One profile's value for series and heatmaps.
struct ProfileValue {
    series: u32,
    time_nanos: i64,
    total: i64,
    id: phlox_model::ProfileId,
    /// (span id, trace id, total) per span, when asked for.
    spans: Vec<(u64, [u8; 16], i64)>,
}

/// Totals of the selected profiles. Without a call site or spans, these
/// come from the stored totals without reading samples; otherwise samples
/// are read, masked by the call site and grouped by span. Profiles left
/// with no value under a call site are dropped.
async fn profile_values(
    ds: &DatasetReader,
    tenant: &str,
    selected: &[u32],
    q: &LeafQuery,
    call_site: Option<&[String]>,
    spans: bool,
    cache: &crate::SymbolCache,
) -> Result<Vec<ProfileValue>, QueryError> {
    if call_site.is_none() && !spans {
        let totals = ds.profile_totals(selected, q.start_nanos, q.end_nanos).await?;
        return Ok(totals
            .into_iter()
            .map(|(series, time_nanos, total, id)| ProfileValue { series, time_nanos, total, id, spans: Vec::new() })
            .collect());
    }
    let mask = match call_site {
        Some(cs) => Some(call_site_mask(&*cache.get(ds, tenant).await?, cs)),
        None => None,
    };
    let counts = |stack: u32| mask.as_ref().is_none_or(|m| m.get(stack as usize).copied().unwrap_or(false));
    let mut out = Vec::new();
    for row in ds.profiles(selected, q.start_nanos, q.end_nanos).await? {
        let total = if mask.is_some() {
            row.stack_ids.iter().zip(&row.values).filter(|(s, _)| counts(**s)).map(|(_, v)| v).sum()
        } else {
            row.total
        };
        if mask.is_some() && total == 0 {
            continue;
        }
        let mut span_totals: Vec<(u64, [u8; 16], i64)> = Vec::new();
        if spans && let (Some(sp), Some(tr)) = (&row.span_ids, &row.trace_ids) {
            for (k, (&span, &stack)) in sp.iter().zip(&row.stack_ids).enumerate() {
                if span != 0 && counts(stack) {
                    span_totals.push((
                        span,
                        tr.get(k).copied().unwrap_or([0; 16]),
                        row.values.get(k).copied().unwrap_or(0),
                    ));
                }
            }
            span_totals.sort_unstable_by_key(|s| s.0);
            span_totals.dedup_by(|b, a| {
                if a.0 == b.0 {
                    a.2 += b.2;
                    if a.1 == [0; 16] {
                        a.1 = b.1;
                    }
                    true
                } else {
                    false
                }
            });
        }
        out.push(ProfileValue {
            series: row.series,
            time_nanos: row.time_nanos,
            total,
            id: row.id,
            spans: span_totals,
        });
    }
    Ok(out)
}

/// Adds the selected profiles' stacks of a dataset of `tenant` to `tree`:
/// stack values accumulate in a dense array indexed by stack id, then
/// each valued stack adds to its call-tree node in the service's interned
/// tree (the stack → node map is made once per cached dataset).
async fn tree_into(
    ds: &DatasetReader,
    tenant: &str,
    selected: &[u32],
    q: &LeafQuery,
    cache: &crate::SymbolCache,
    tree: &mut CallTree,
) -> Result<(), QueryError> {
    let (symbols, interned, nodes) = cache.call_tree(ds, tenant).await?;
    let mut values = vec![0i64; symbols.stack_count()];
    ds.accumulate_filtered(selected, q.start_nanos, q.end_nanos, &q.filter, &mut values).await?;
    let len = values.iter().zip(nodes.iter()).filter(|(v, _)| **v != 0).map(|(_, &n)| n as usize + 1).max();
    let out = tree.values_of(&interned, len.unwrap_or(0));
    for (v, &node) in values.iter().zip(nodes.iter()).skip(1) {
        if *v != 0
            && let Some(o) = out.get_mut(node as usize)
        {
            *o = o.wrapping_add(*v);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::slot;

    #[test]
    fn slots_are_right_edges_and_never_overflow() {
        assert_eq!(slot(1_000, 0, 15), 1_005);
        assert_eq!(slot(1_005, 0, 15), 1_005);
        assert_eq!(slot(-1, 0, 15), 0);
        // Starts and times anywhere in i64 (hostile requests): exact, or
        // saturated where the edge is past i64.
        let edge = slot(1_700_000_000_000, i64::MIN, 15_000);
        assert!((0..15_000).contains(&(edge - 1_700_000_000_000)), "{edge}");
        assert_eq!(slot(i64::MIN, i64::MAX, 1), i64::MIN);
        assert_eq!(slot(i64::MAX, i64::MIN, i64::MAX), i64::MAX);
    }
}
