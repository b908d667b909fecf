//! The query frontend: validation as Pyroscope's v2 frontend does it,
//! block lookup in the metastore, one read leaf per block, merge, render.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use phlox_block::SampleFilter;
use phlox_model::{MatchOp, Matcher, ProfileId, ProfileType, Selector, label_names as ln, parse_selector};
use phlox_proto::metastore::v1::{BlockMeta, LabelMatcher, MatchType, QueryBlocksRequest};
use phlox_proto::metastore_client::Metastore;
use phlox_proto::querier::v1 as q;
use phlox_proto::types::v1 as t;

use crate::plan::{ExemplarKind, LeafKind, LeafQuery, LeafResult, MAX_MERGE_CHILDREN};
use crate::stacks::{MergedStacks, PgoOptions};
use crate::task::Task;
use crate::{QueryBackend, QueryError};

/// The id and stack selectors of a stack-trace query.
#[derive(Debug, Default)]
struct Selectors<'a> {
    profile_ids: &'a [String],
    span_ids: &'a [String],
    trace_ids: &'a [String],
    stack_trace: Option<&'a t::StackTraceSelector>,
}

impl Selectors<'_> {
    /// Go PGO options; when set, the call site is ignored (as Pyroscope).
    fn pgo(&self) -> Option<PgoOptions> {
        let p = self.stack_trace?.go_pgo.as_ref()?;
        Some(PgoOptions {
            keep_locations: if p.keep_locations == 0 { usize::MAX } else { p.keep_locations as usize },
            aggregate_callees: p.aggregate_callees,
        })
    }

    /// Call-site function names, root first (empty: none).
    fn call_site(&self) -> Vec<String> {
        self.stack_trace.map(|s| s.call_site.iter().map(|l| l.name.clone()).collect()).unwrap_or_default()
    }

    fn filter(&self) -> Result<SampleFilter, QueryError> {
        let mut f = SampleFilter::default();
        if !self.profile_ids.is_empty() {
            f.profile_ids = Some(
                self.profile_ids
                    .iter()
                    .map(|s| {
                        ProfileId::parse(s)
                            .ok_or_else(|| QueryError::InvalidArgument(format!("profile id {s:?} is not a UUID")))
                    })
                    .collect::<Result<_, _>>()?,
            );
        }
        if !self.span_ids.is_empty() {
            f.span_ids = Some(
                self.span_ids
                    .iter()
                    .map(|s| {
                        u64::from_str_radix(s, 16)
                            .ok()
                            .filter(|_| s.len() == 16)
                            .ok_or_else(|| QueryError::InvalidArgument(format!("span id {s:?} is not 16 hex digits")))
                    })
                    .collect::<Result<_, _>>()?,
            );
        }
        if !self.trace_ids.is_empty() {
            f.trace_ids = Some(
                self.trace_ids
                    .iter()
                    .map(|s| {
                        u128::from_str_radix(s, 16)
                            .ok()
                            .filter(|_| s.len() == 32)
                            .map(u128::to_be_bytes)
                            .ok_or_else(|| QueryError::InvalidArgument(format!("trace id {s:?} is not 32 hex digits")))
                    })
                    .collect::<Result<_, _>>()?,
            );
        }
        Ok(f)
    }
}

/// Query limits (Pyroscope's, with 30 days of length and lookback: rollups
/// make long ranges cheap).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryLimits {
    /// Longest time range of one query; 0 = unlimited.
    pub max_query_length: Duration,
    /// How far back queries reach; older parts are clamped away.
    pub max_query_lookback: Duration,
    pub max_flamegraph_nodes_default: i64,
    pub max_flamegraph_nodes_max: i64,
    /// Plan nodes executed at once per query.
    pub concurrency: usize,
    /// Stack queries read rollups for the whole hours and days of their
    /// range (false: raw rows only; the answers are the same).
    pub rollups: bool,
    /// Per-tenant `max_query_length` and `max_query_lookback` (the
    /// configuration's `overrides`); a query of several tenants gets the
    /// smallest of theirs.
    pub tenants: std::collections::BTreeMap<String, RangeLimits>,
}

/// A tenant's limits on query ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeLimits {
    pub max_query_length: Duration,
    pub max_query_lookback: Duration,
}

impl From<&phlox_config::LimitsConfig> for RangeLimits {
    fn from(l: &phlox_config::LimitsConfig) -> Self {
        Self { max_query_length: l.max_query_length, max_query_lookback: l.max_query_lookback }
    }
}

/// The configuration's defaults ([`phlox_config::LimitsConfig`]'s: defined once).
impl Default for RangeLimits {
    fn default() -> Self {
        Self::from(&phlox_config::LimitsConfig::default())
    }
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            max_query_length: RangeLimits::default().max_query_length,
            max_query_lookback: RangeLimits::default().max_query_lookback,
            max_flamegraph_nodes_default: 8192,
            max_flamegraph_nodes_max: 1_048_576,
            concurrency: 16,
            rollups: true,
            tenants: std::collections::BTreeMap::new(),
        }
    }
}

/// The plan: one read leaf per block, grouped under merge nodes (a node of
/// several blocks is merged by the backend that runs it, so the frontend
/// merges one result per node instead of one per block). About
/// `concurrency` nodes, more when that would put over
/// [`MAX_MERGE_CHILDREN`] leaves under one; node sizes differ by at most
/// one. Blocks stay in the metastore's order.
pub(crate) fn plan_nodes(blocks: Vec<BlockMeta>, concurrency: usize) -> Vec<Vec<BlockMeta>> {
    let n = blocks.len();
    if n == 0 {
        return Vec::new();
    }
    let count = n.min(concurrency.max(1)).max(n.div_ceil(MAX_MERGE_CHILDREN));
    let (base, extra) = (n / count, n % count);
    let mut it = blocks.into_iter();
    (0..count).map(|i| it.by_ref().take(base + usize::from(i < extra)).collect()).collect()
}

/// Plans and runs queries.
pub struct QueryFrontend {
    metastore: Arc<dyn Metastore>,
    backend: Arc<dyn QueryBackend>,
    limits: QueryLimits,
}

impl std::fmt::Debug for QueryFrontend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryFrontend").field("limits", &self.limits).finish_non_exhaustive()
    }
}

fn bad<T>(m: impl Into<String>) -> Result<T, QueryError> {
    Err(QueryError::InvalidArgument(m.into()))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The matchers the metastore can apply (service and profile type).
fn metastore_matchers(selector: &Selector) -> Vec<LabelMatcher> {
    selector
        .matchers
        .iter()
        .filter(|m| m.name == ln::SERVICE_NAME || m.name == ln::PROFILE_TYPE)
        .map(|m| LabelMatcher {
            r#type: match m.op {
                MatchOp::Equal => MatchType::Equal,
                MatchOp::NotEqual => MatchType::NotEqual,
                MatchOp::Regex => MatchType::Regex,
                MatchOp::NotRegex => MatchType::NotRegex,
            } as i32,
            name: m.name.clone(),
            value: m.value.clone(),
        })
        .collect()
}

fn selector_of(matchers: &[String]) -> Result<Selector, QueryError> {
    let mut s = Selector::default();
    for m in matchers {
        let p = parse_selector(m).map_err(|e| QueryError::InvalidArgument(e.to_string()))?;
        s.matchers.extend(p.matchers);
        if s.matchers.len() > phlox_model::MAX_MATCHERS {
            return bad(format!("the selectors have more than {} matchers together", phlox_model::MAX_MATCHERS));
        }
    }
    Ok(s)
}

fn selector_with_type(label_selector: &str, profile_type: &str) -> Result<Selector, QueryError> {
    if let Err(e) = ProfileType::parse(profile_type) {
        return bad(format!("invalid profile_typeID: {e}"));
    }
    let mut s = parse_selector(label_selector).map_err(|e| QueryError::InvalidArgument(e.to_string()))?;
    s.matchers.push(Matcher::equal(ln::PROFILE_TYPE, profile_type));
    Ok(s)
}

impl QueryFrontend {
    pub fn new(metastore: Arc<dyn Metastore>, backend: Arc<dyn QueryBackend>, limits: QueryLimits) -> Self {
        Self { metastore, backend, limits }
    }

    /// The range limits of a query of `tenants`: the smallest of theirs (0
    /// means unlimited).
    fn range_limits(&self, tenants: &[String]) -> RangeLimits {
        let base = RangeLimits {
            max_query_length: self.limits.max_query_length,
            max_query_lookback: self.limits.max_query_lookback,
        };
        let smaller = |a: Duration, b: Duration| match (a.is_zero(), b.is_zero()) {
            (true, _) => b,
            (_, true) => a,
            _ => a.min(b),
        };
        let mut limits: Option<RangeLimits> = None;
        for t in tenants {
            let l = self.limits.tenants.get(t).copied().unwrap_or(base);
            limits = Some(match limits {
                None => l,
                Some(p) => RangeLimits {
                    max_query_length: smaller(p.max_query_length, l.max_query_length),
                    max_query_lookback: smaller(p.max_query_lookback, l.max_query_lookback),
                },
            });
        }
        limits.unwrap_or(base)
    }

    /// Validates and clamps a range in ms; `None` when it ends before the lookback.
    fn range(&self, tenants: &[String], start: i64, end: i64) -> Result<Option<(i64, i64)>, QueryError> {
        if start == 0 || end == 0 {
            return bad("missing time range in the query");
        }
        if start > end {
            return bad(format!("invalid time range: start {start} is after end {end}"));
        }
        let limits = self.range_limits(tenants);
        let max = limits.max_query_length.as_millis() as i64;
        if max > 0 && end.saturating_sub(start) > max {
            return bad(format!(
                "the query time range exceeds the limit (max_query_length {})",
                phlox_config::format_duration(limits.max_query_length)
            ));
        }
        if limits.max_query_lookback.is_zero() {
            return Ok(Some((start, end)));
        }
        let oldest = now_ms().saturating_sub(limits.max_query_lookback.as_millis() as i64);
        if end < oldest {
            return Ok(None);
        }
        Ok(Some((start.max(oldest), end)))
    }

    fn max_nodes(&self, requested: Option<i64>) -> Result<usize, QueryError> {
        match requested {
            None | Some(0) => Ok(self.limits.max_flamegraph_nodes_default as usize),
            Some(n) if n < 0 => bad(format!("max_nodes must not be negative, got {n}")),
            Some(n) if n > self.limits.max_flamegraph_nodes_max => {
                bad(format!("max_nodes {n} exceeds the limit of {}", self.limits.max_flamegraph_nodes_max))
            }
            Some(n) => Ok(n as usize),
        }
    }

    async fn blocks(
        &self,
        tenants: &[String],
        start_ms: i64,
        end_ms: i64,
        selector: &Selector,
    ) -> Result<Vec<BlockMeta>, QueryError> {
        let req = QueryBlocksRequest {
            tenants: tenants.to_vec(),
            start: start_ms,
            end: end_ms,
            matchers: metastore_matchers(selector),
            rollups: false,
        };
        Ok(self.metastore.query_blocks(req).await?.blocks)
    }

    /// Runs one read leaf per block concurrently and merges the results.
    async fn run(
        &self,
        tenants: &[String],
        start_ms: i64,
        end_ms: i64,
        selector: Selector,
        kind: LeafKind,
    ) -> Result<LeafResult, QueryError> {
        self.run_filtered(tenants, start_ms, end_ms, selector, SampleFilter::default(), kind).await
    }

    async fn run_filtered(
        &self,
        tenants: &[String],
        start_ms: i64,
        end_ms: i64,
        selector: Selector,
        filter: SampleFilter,
        kind: LeafKind,
    ) -> Result<LeafResult, QueryError> {
        // Stack queries over whole profiles read rollups where they can;
        // selectors of profiles, spans or traces need the raw rows.
        let rollups = self.limits.rollups
            && matches!(kind, LeafKind::Tree | LeafKind::Stacks { .. })
            && filter.profile_ids.is_none()
            && filter.span_ids.is_none()
            && filter.trace_ids.is_none();
        let (blocks, start_ms, end_ms) = if rollups {
            // Whole days: a rollup is usable only while all its covers are
            // indexed, and those of a day cut by the range lie partly outside it.
            let (wide_start, wide_end) = crate::rollups::widened(start_ms, end_ms);
            let req = QueryBlocksRequest {
                tenants: tenants.to_vec(),
                start: wide_start,
                end: wide_end,
                matchers: metastore_matchers(&selector),
                rollups: true,
            };
            let plan = crate::rollups::plan(self.metastore.query_blocks(req).await?.blocks, start_ms, end_ms);
            (plan.blocks, plan.start_ms, plan.end_ms)
        } else {
            (self.blocks(tenants, start_ms, end_ms, &selector).await?, start_ms, end_ms)
        };
        let query = Arc::new(LeafQuery {
            selector,
            filter,
            start_nanos: start_ms.saturating_mul(1_000_000),
            end_nanos: end_ms.saturating_mul(1_000_000).saturating_add(999_999),
            kind,
        });
        let empty = LeafResult::empty(&query.kind);
        // Each node is its own task, so nodes run on every core (and on
        // every backend); returning early (an error, a client gone) drops
        // and so aborts the rest.
        let nodes = plan_nodes(blocks, self.limits.concurrency);
        let mut nodes = futures::stream::iter(nodes.into_iter().map(|mut blocks| {
            let (backend, query) = (Arc::clone(&self.backend), Arc::clone(&query));
            Task::spawn(async move {
                match blocks.len() {
                    1 => backend.execute(blocks.remove(0), query).await,
                    _ => backend.execute_merge(blocks, query).await,
                }
            })
        }))
        .buffer_unordered(self.limits.concurrency.max(1));
        let mut result = empty;
        while let Some(r) = nodes.next().await {
            result.merge(r.map_err(|e| QueryError::Internal(format!("query leaf failed: {e}")))??);
        }
        Ok(result)
    }

    pub async fn profile_types(
        &self,
        tenants: &[String],
        r: q::ProfileTypesRequest,
    ) -> Result<q::ProfileTypesResponse, QueryError> {
        let (start, end) = if r.start == 0 && r.end == 0 { (now_ms() - 3_600_000, now_ms()) } else { (r.start, r.end) };
        let Some((start, end)) = self.range(tenants, start, end)? else {
            return Ok(q::ProfileTypesResponse::default());
        };
        let mut ids = BTreeSet::new();
        for b in self.blocks(tenants, start, end, &Selector::default()).await? {
            for d in b.datasets {
                ids.extend(d.profile_types);
            }
        }
        let profile_types = ids
            .into_iter()
            .filter_map(|id| {
                let p = ProfileType::parse(&id).ok()?;
                Some(t::ProfileType {
                    id: id.clone(),
                    name: p.name,
                    sample_type: p.sample_type,
                    sample_unit: p.sample_unit,
                    period_type: p.period_type,
                    period_unit: p.period_unit,
                })
            })
            .collect();
        Ok(q::ProfileTypesResponse { profile_types })
    }

    pub async fn label_names(
        &self,
        tenants: &[String],
        r: t::LabelNamesRequest,
    ) -> Result<t::LabelNamesResponse, QueryError> {
        let selector = selector_of(&r.matchers)?;
        let Some((start, end)) = self.range(tenants, r.start, r.end)? else {
            return Ok(t::LabelNamesResponse::default());
        };
        match self.run(tenants, start, end, selector, LeafKind::LabelNames).await? {
            LeafResult::Names(n) => Ok(t::LabelNamesResponse { names: n.into_iter().collect() }),
            _ => Ok(t::LabelNamesResponse::default()),
        }
    }

    pub async fn label_values(
        &self,
        tenants: &[String],
        r: t::LabelValuesRequest,
    ) -> Result<t::LabelValuesResponse, QueryError> {
        if r.name.is_empty() {
            return bad("label name is required");
        }
        let selector = selector_of(&r.matchers)?;
        let Some((start, end)) = self.range(tenants, r.start, r.end)? else {
            return Ok(t::LabelValuesResponse::default());
        };
        match self.run(tenants, start, end, selector, LeafKind::LabelValues(r.name)).await? {
            LeafResult::Names(n) => Ok(t::LabelValuesResponse { names: n.into_iter().collect() }),
            _ => Ok(t::LabelValuesResponse::default()),
        }
    }

    pub async fn series(&self, tenants: &[String], r: q::SeriesRequest) -> Result<q::SeriesResponse, QueryError> {
        let selector = selector_of(&r.matchers)?;
        let Some((start, end)) = self.range(tenants, r.start, r.end)? else { return Ok(q::SeriesResponse::default()) };
        match self.run(tenants, start, end, selector, LeafKind::LabelSets(r.label_names)).await? {
            LeafResult::LabelSets(sets) => Ok(q::SeriesResponse {
                labels_set: sets
                    .into_iter()
                    .map(|s| t::Labels {
                        labels: s.into_iter().map(|(name, value)| t::LabelPair { name, value }).collect(),
                    })
                    .collect(),
            }),
            _ => Ok(q::SeriesResponse::default()),
        }
    }

    /// The merged call tree of a stack-trace query.
    pub async fn merged_tree(
        &self,
        tenants: &[String],
        profile_type: &str,
        label_selector: &str,
        start: i64,
        end: i64,
    ) -> Result<phlox_model::StackTree, QueryError> {
        self.filtered_tree(tenants, profile_type, label_selector, start, end, &Selectors::default()).await
    }

    async fn filtered_tree(
        &self,
        tenants: &[String],
        profile_type: &str,
        label_selector: &str,
        start: i64,
        end: i64,
        sel: &Selectors<'_>,
    ) -> Result<phlox_model::StackTree, QueryError> {
        let selector = selector_with_type(label_selector, profile_type)?;
        let filter = sel.filter()?;
        let Some((start, end)) = self.range(tenants, start, end)? else { return Ok(phlox_model::StackTree::default()) };
        if let Some(pgo) = sel.pgo() {
            let stacks = self.run_stacks(tenants, start, end, selector, filter, Vec::new(), Some(pgo)).await?;
            return Ok(stacks.to_tree());
        }
        let tree = match self.run_filtered(tenants, start, end, selector, filter, LeafKind::Tree).await? {
            LeafResult::Tree(t) => t.into_tree(),
            _ => phlox_model::StackTree::default(),
        };
        let call_site = sel.call_site();
        if call_site.is_empty() {
            return Ok(tree);
        }
        let prefix: Vec<&str> = call_site.iter().map(String::as_str).collect();
        Ok(tree.with_prefix(&prefix))
    }

    /// The merged stacks with full locations, for pprof output.
    async fn merged_stacks(
        &self,
        tenants: &[String],
        profile_type: &str,
        label_selector: &str,
        start: i64,
        end: i64,
        sel: &Selectors<'_>,
    ) -> Result<MergedStacks, QueryError> {
        let selector = selector_with_type(label_selector, profile_type)?;
        let filter = sel.filter()?;
        let Some((start, end)) = self.range(tenants, start, end)? else { return Ok(MergedStacks::default()) };
        let pgo = sel.pgo();
        let call_site = if pgo.is_some() { Vec::new() } else { sel.call_site() };
        self.run_stacks(tenants, start, end, selector, filter, call_site, pgo).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_stacks(
        &self,
        tenants: &[String],
        start: i64,
        end: i64,
        selector: Selector,
        filter: SampleFilter,
        call_site: Vec<String>,
        pgo: Option<PgoOptions>,
    ) -> Result<MergedStacks, QueryError> {
        match self.run_filtered(tenants, start, end, selector, filter, LeafKind::Stacks { call_site, pgo }).await? {
            LeafResult::Stacks(s) => Ok(*s),
            _ => Ok(MergedStacks::default()),
        }
    }

    pub async fn select_merge_stacktraces(
        &self,
        tenants: &[String],
        r: q::SelectMergeStacktracesRequest,
    ) -> Result<q::SelectMergeStacktracesResponse, QueryError> {
        if !r.span_selector.is_empty() && !r.trace_id_selector.is_empty() {
            return bad("span_selector and trace_id_selector cannot be used together");
        }
        let max_nodes = self.max_nodes(r.max_nodes)?;
        let sel = Selectors {
            profile_ids: &r.profile_id_selector,
            span_ids: &r.span_selector,
            trace_ids: &r.trace_id_selector,
            stack_trace: r.stack_trace_selector.as_ref(),
        };
        let format = q::ProfileFormat::try_from(r.format).unwrap_or(q::ProfileFormat::Unspecified);
        let tree = if format == q::ProfileFormat::Pprof {
            phlox_model::StackTree::default()
        } else {
            self.filtered_tree(tenants, &r.profile_type_id, &r.label_selector, r.start, r.end, &sel).await?
        };
        match format {
            q::ProfileFormat::Unspecified | q::ProfileFormat::Flamegraph => Ok(q::SelectMergeStacktracesResponse {
                flamegraph: Some(flamegraph(&tree, max_nodes)),
                ..Default::default()
            }),
            q::ProfileFormat::Tree => {
                Ok(q::SelectMergeStacktracesResponse { tree: tree.tree_bytes(max_nodes).into(), ..Default::default() })
            }
            q::ProfileFormat::Dot => {
                let pt =
                    ProfileType::parse(&r.profile_type_id).map_err(|e| QueryError::InvalidArgument(e.to_string()))?;
                // As Pyroscope: at most max_nodes (default 100) functions in the graph.
                let nodes = match r.max_nodes {
                    Some(n) if n > 0 => max_nodes,
                    _ => 100,
                };
                Ok(q::SelectMergeStacktracesResponse {
                    dot: phlox_model::dot_graph(&tree, nodes, &pt.sample_unit),
                    ..Default::default()
                })
            }
            q::ProfileFormat::Pprof => {
                let pt =
                    ProfileType::parse(&r.profile_type_id).map_err(|e| QueryError::InvalidArgument(e.to_string()))?;
                let stacks =
                    self.merged_stacks(tenants, &r.profile_type_id, &r.label_selector, r.start, r.end, &sel).await?;
                Ok(q::SelectMergeStacktracesResponse {
                    pprof: Some(q::PprofProfile { profile: Some(stacks.to_pprof(&pt)) }),
                    ..Default::default()
                })
            }
        }
    }

    /// Heatmap of individual profiles: per group and step, how many
    /// profiles fall in each of 20 value buckets (equal width between the
    /// smallest and largest total of the result), with the highest-valued
    /// profile of each cell as its exemplar.
    pub async fn select_heatmap(
        &self,
        tenants: &[String],
        r: q::SelectHeatmapRequest,
    ) -> Result<q::SelectHeatmapResponse, QueryError> {
        const BUCKETS: usize = 20;
        if !r.step.is_finite() || r.step < 0.001 {
            return bad(format!("step must be a number of seconds of at least 0.001, got {}", r.step));
        }
        let spans = matches!(q::HeatmapQueryType::try_from(r.query_type), Ok(q::HeatmapQueryType::Span));
        let exemplars = !matches!(t::ExemplarType::try_from(r.exemplar_type), Ok(t::ExemplarType::None));
        let selector = selector_with_type(&r.label_selector, &r.profile_type_id)?;
        let Some((start, end)) = self.range(tenants, r.start, r.end)? else {
            return Ok(q::SelectHeatmapResponse::default());
        };
        let step_ms = ((r.step * 1000.0).round() as i64).max(1);
        let kind = LeafKind::Points { start_ms: r.start, step_ms, group_by: r.group_by.clone(), spans };
        let LeafResult::Points(groups) = self.run(tenants, start, end, selector, kind).await? else {
            return Ok(q::SelectHeatmapResponse::default());
        };
        let (lo, hi) =
            groups.values().flatten().fold((i64::MAX, i64::MIN), |(lo, hi), p| (lo.min(p.value), hi.max(p.value)));
        if lo > hi {
            return Ok(q::SelectHeatmapResponse::default());
        }
        // In f64: values can span all of i64.
        let width = ((hi as f64 - lo as f64) / BUCKETS as f64).max(f64::MIN_POSITIVE);
        let y_min: Vec<f64> = (0..BUCKETS).map(|i| lo as f64 + i as f64 * width).collect();
        let bucket = |v: i64| (((v as f64 - lo as f64) / width) as usize).min(BUCKETS - 1);
        let mut series: Vec<(usize, t::HeatmapSeries)> = groups
            .into_iter()
            .map(|(labels, points)| {
                let n = points.len();
                let mut slots: std::collections::BTreeMap<i64, (Vec<i32>, Vec<Option<crate::plan::ProfilePoint>>)> =
                    Default::default();
                for p in points {
                    let (counts, best) =
                        slots.entry(p.slot_ms).or_insert_with(|| (vec![0; BUCKETS], vec![None; BUCKETS]));
                    let b = bucket(p.value);
                    counts[b] += 1;
                    if best[b].as_ref().is_none_or(|x| p.value > x.value) {
                        best[b] = Some(p);
                    }
                }
                let slots = slots
                    .into_iter()
                    .map(|(ts, (counts, best))| t::HeatmapSlot {
                        timestamp: ts,
                        y_min: y_min.clone(),
                        counts,
                        exemplars: if exemplars {
                            best.into_iter()
                                .flatten()
                                .map(|p| t::Exemplar {
                                    timestamp: p.time_ms,
                                    profile_id: p.profile_id,
                                    span_id: span_hex(p.span_id),
                                    trace_id: trace_hex(p.trace_id),
                                    value: p.value,
                                    ..Default::default()
                                })
                                .collect()
                        } else {
                            Vec::new()
                        },
                    })
                    .collect();
                (
                    n,
                    t::HeatmapSeries {
                        labels: labels.into_iter().map(|(name, value)| t::LabelPair { name, value }).collect(),
                        slots,
                    },
                )
            })
            .collect();
        if let Some(limit) = r.limit.filter(|&l| l > 0) {
            series.sort_by_key(|s| std::cmp::Reverse(s.0));
            series.truncate(limit as usize);
        }
        Ok(q::SelectHeatmapResponse { series: series.into_iter().map(|(_, s)| s).collect() })
    }

    /// The flame graph of the samples of the given spans (traces → profiles).
    pub async fn select_merge_span_profile(
        &self,
        tenants: &[String],
        r: q::SelectMergeSpanProfileRequest,
    ) -> Result<q::SelectMergeSpanProfileResponse, QueryError> {
        let req = q::SelectMergeStacktracesRequest {
            profile_type_id: r.profile_type_id,
            label_selector: r.label_selector,
            start: r.start,
            end: r.end,
            max_nodes: r.max_nodes,
            format: r.format,
            span_selector: r.span_selector,
            ..Default::default()
        };
        if req.span_selector.is_empty() {
            return bad("span_selector is required");
        }
        let resp = self.select_merge_stacktraces(tenants, req).await?;
        Ok(q::SelectMergeSpanProfileResponse { flamegraph: resp.flamegraph, tree: resp.tree })
    }

    pub async fn select_series(
        &self,
        tenants: &[String],
        r: q::SelectSeriesRequest,
    ) -> Result<q::SelectSeriesResponse, QueryError> {
        if !r.step.is_finite() || r.step < 0.001 {
            return bad(format!("step must be a number of seconds of at least 0.001, got {}", r.step));
        }
        // A call site restricts the samples that count; go_pgo has no meaning here.
        let call_site = r
            .stack_trace_selector
            .as_ref()
            .map(|s| s.call_site.iter().map(|l| l.name.clone()).collect::<Vec<_>>())
            .filter(|c| !c.is_empty());
        let selector = selector_with_type(&r.label_selector, &r.profile_type_id)?;
        let Some((start, end)) = self.range(tenants, r.start, r.end)? else {
            return Ok(q::SelectSeriesResponse::default());
        };
        let step_ms = ((r.step * 1000.0).round() as i64).max(1);
        let exemplars = match t::ExemplarType::try_from(r.exemplar_type).unwrap_or(t::ExemplarType::Unspecified) {
            t::ExemplarType::Unspecified | t::ExemplarType::None => ExemplarKind::None,
            t::ExemplarType::Individual => ExemplarKind::Individual,
            t::ExemplarType::Span => ExemplarKind::Span,
        };
        let kind = LeafKind::Series { start_ms: r.start, step_ms, group_by: r.group_by.clone(), exemplars, call_site };
        let LeafResult::Series(points) = self.run(tenants, start, end, selector, kind).await? else {
            return Ok(q::SelectSeriesResponse::default());
        };
        let average = r.aggregation == Some(t::TimeSeriesAggregationType::Average as i32);
        let mut series: Vec<(f64, t::Series)> = points
            .into_iter()
            .map(|(labels, pts)| {
                let total: f64 = pts.values().map(|p| p.sum).sum();
                let points = pts
                    .into_iter()
                    .map(|(ts, p)| t::Point {
                        value: if average && p.count > 0 { p.sum / p.count as f64 } else { p.sum },
                        timestamp: ts,
                        exemplars: p
                            .exemplar
                            .map(|e| t::Exemplar {
                                timestamp: e.time_ms,
                                profile_id: e.profile_id,
                                span_id: span_hex(e.span_id),
                                trace_id: trace_hex(e.trace_id),
                                value: e.value,
                                labels: e
                                    .labels
                                    .into_iter()
                                    .map(|(name, value)| t::LabelPair { name, value })
                                    .collect(),
                            })
                            .into_iter()
                            .collect(),
                        ..Default::default()
                    })
                    .collect();
                (
                    total,
                    t::Series {
                        labels: labels.into_iter().map(|(name, value)| t::LabelPair { name, value }).collect(),
                        points,
                    },
                )
            })
            .collect();
        if let Some(limit) = r.limit.filter(|&l| l > 0) {
            series.sort_by(|a, b| b.0.total_cmp(&a.0));
            series.truncate(limit as usize);
        }
        let mut series: Vec<t::Series> = series.into_iter().map(|(_, s)| s).collect();
        series.sort_by(|a, b| {
            a.labels.iter().map(|l| (&l.name, &l.value)).cmp(b.labels.iter().map(|l| (&l.name, &l.value)))
        });
        Ok(q::SelectSeriesResponse { series })
    }

    /// The merged profile as pprof with full locations (`SelectMergeProfile`;
    /// max_nodes is not applied, as in Pyroscope; `go_pgo` keeps the
    /// leaf-most locations of each stack).
    pub async fn select_merge_profile(
        &self,
        tenants: &[String],
        r: q::SelectMergeProfileRequest,
    ) -> Result<phlox_proto::google::v1::Profile, QueryError> {
        let sel = Selectors {
            profile_ids: &r.profile_id_selector,
            span_ids: &[],
            trace_ids: &r.trace_id_selector,
            stack_trace: r.stack_trace_selector.as_ref(),
        };
        let stacks = self.merged_stacks(tenants, &r.profile_type_id, &r.label_selector, r.start, r.end, &sel).await?;
        let pt = ProfileType::parse(&r.profile_type_id).map_err(|e| QueryError::InvalidArgument(e.to_string()))?;
        Ok(stacks.to_pprof(&pt))
    }

    /// Two stack-trace queries aligned into one diff flame graph.
    pub async fn diff(&self, tenants: &[String], r: q::DiffRequest) -> Result<q::DiffResponse, QueryError> {
        let (Some(left), Some(right)) = (r.left, r.right) else {
            return bad("diff needs a left and a right query");
        };
        let max_nodes = self.max_nodes(left.max_nodes.or(right.max_nodes))?;
        let (l, rt) = futures::try_join!(
            self.merged_tree(tenants, &left.profile_type_id, &left.label_selector, left.start, left.end),
            self.merged_tree(tenants, &right.profile_type_id, &right.label_selector, right.start, right.end),
        )?;
        let d = phlox_model::diff_flamegraph(&l, &rt, max_nodes);
        Ok(q::DiffResponse {
            flamegraph: Some(q::FlameGraphDiff {
                names: d.names,
                levels: d.levels.into_iter().map(|values| q::Level { values }).collect(),
                total: d.left_ticks.wrapping_add(d.right_ticks),
                max_self: d.max_self,
                left_ticks: d.left_ticks,
                right_ticks: d.right_ticks,
            }),
        })
    }

    /// What a query would read, from block metadata only (no object is
    /// fetched): blocks, series, profiles, samples and section bytes of the
    /// datasets the metastore selects, the tenant indexes excluded.
    pub async fn analyze_query(
        &self,
        tenants: &[String],
        r: q::AnalyzeQueryRequest,
    ) -> Result<q::AnalyzeQueryResponse, QueryError> {
        // The query is a selector, optionally prefixed by a profile type id.
        let (profile_type, label_selector) = match r.query.find('{') {
            Some(i) => (r.query[..i].trim(), &r.query[i..]),
            None => (r.query.trim(), "{}"),
        };
        let mut selector = parse_selector(label_selector).map_err(|e| QueryError::InvalidArgument(e.to_string()))?;
        if !profile_type.is_empty() {
            if let Err(e) = ProfileType::parse(profile_type) {
                return bad(format!("invalid profile type in the query: {e}"));
            }
            selector.matchers.push(Matcher::equal(ln::PROFILE_TYPE, profile_type));
        }
        let Some((start, end)) = self.range(tenants, r.start, r.end)? else {
            return Ok(q::AnalyzeQueryResponse::default());
        };
        let blocks = self.blocks(tenants, start, end, &selector).await?;
        let mut scope =
            q::QueryScope { component_type: "object-store".into(), component_count: 1, ..Default::default() };
        let mut dedup = false;
        for b in &blocks {
            scope.block_count += 1;
            dedup |= b.compaction_level == 0;
            for d in b.datasets.iter().filter(|d| !phlox_block::is_tenant_index(d)) {
                scope.series_count += u64::from(d.series_count);
                scope.profile_count += d.profile_count;
                scope.sample_count += d.sample_count;
                for s in &d.sections {
                    use phlox_proto::metastore::v1::SectionKind as K;
                    match K::try_from(s.kind) {
                        Ok(K::Series) => scope.index_bytes += s.size,
                        Ok(K::Profiles) => scope.profile_bytes += s.size,
                        _ => scope.symbol_bytes += s.size,
                    }
                }
            }
        }
        let impact = q::QueryImpact {
            total_bytes_in_time_range: scope.index_bytes + scope.profile_bytes + scope.symbol_bytes,
            total_queried_series: scope.series_count,
            deduplication_needed: dedup,
        };
        Ok(q::AnalyzeQueryResponse { query_scopes: vec![scope], query_impact: Some(impact) })
    }

    pub async fn get_profile_stats(&self, tenants: &[String]) -> Result<t::GetProfileStatsResponse, QueryError> {
        let blocks = self.blocks(tenants, i64::MIN, i64::MAX, &Selector::default()).await?;
        let (mut oldest, mut newest) = (i64::MAX, i64::MIN);
        for b in &blocks {
            for d in &b.datasets {
                oldest = oldest.min(d.min_time);
                newest = newest.max(d.max_time);
            }
        }
        if blocks.is_empty() {
            return Ok(t::GetProfileStatsResponse {
                data_ingested: false,
                oldest_profile_time: 0,
                newest_profile_time: 0,
            });
        }
        Ok(t::GetProfileStatsResponse { data_ingested: true, oldest_profile_time: oldest, newest_profile_time: newest })
    }
}

/// A span id as 16 hex digits ("" for none).
fn span_hex(id: u64) -> String {
    if id == 0 { String::new() } else { format!("{id:016x}") }
}

/// A trace id as 32 lowercase hex digits ("" for none).
fn trace_hex(id: [u8; 16]) -> String {
    if id == [0; 16] { String::new() } else { format!("{:032x}", u128::from_be_bytes(id)) }
}

/// The proto flame graph of a tree.
pub fn flamegraph(tree: &phlox_model::StackTree, max_nodes: usize) -> q::FlameGraph {
    let fg = tree.flamegraph(max_nodes);
    q::FlameGraph {
        names: fg.names,
        levels: fg.levels.into_iter().map(|values| q::Level { values }).collect(),
        total: fg.total,
        max_self: fg.max_self,
    }
}

#[cfg(test)]
mod tests {
    use phlox_proto::metastore::v1::BlockMeta;

    use super::plan_nodes;

    fn blocks(n: usize) -> Vec<BlockMeta> {
        (0..n).map(|i| BlockMeta { id: format!("{i:04}"), ..Default::default() }).collect()
    }

    fn sizes(nodes: &[Vec<BlockMeta>]) -> Vec<usize> {
        nodes.iter().map(Vec::len).collect()
    }

    #[test]
    fn plans_about_one_node_per_concurrent_slot() {
        assert!(plan_nodes(blocks(0), 16).is_empty());
        // Few blocks: one leaf each.
        assert_eq!(sizes(&plan_nodes(blocks(5), 16)), vec![1; 5]);
        assert_eq!(sizes(&plan_nodes(blocks(16), 16)), vec![1; 16]);
        // 17 blocks: 16 nodes, one of two.
        assert_eq!(sizes(&plan_nodes(blocks(17), 16)), [vec![2], vec![1; 15]].concat());
        // 72 blocks, 16 at once: 16 nodes of 5 or 4, in order.
        let nodes = plan_nodes(blocks(72), 16);
        assert_eq!(sizes(&nodes), [vec![5; 8], vec![4; 8]].concat());
        let ids: Vec<String> = nodes.into_iter().flatten().map(|b| b.id).collect();
        assert_eq!(ids, (0..72).map(|i| format!("{i:04}")).collect::<Vec<_>>());
        // Many blocks: more nodes, at most 32 leaves each.
        assert_eq!(sizes(&plan_nodes(blocks(2000), 16)), [vec![32; 47], vec![31; 16]].concat());
        // A concurrency of 0 counts as 1.
        assert_eq!(sizes(&plan_nodes(blocks(3), 0)), vec![3]);
    }
}
