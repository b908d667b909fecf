//! Read leaves over gRPC (`querybackend.v1`): [`QueryBackendServer`] serves
//! any [`QueryBackend`] (a `--target=query-backend` process wraps its
//! [`crate::LocalBackend`]), and [`RemoteBackend`] is the [`QueryBackend`]
//! of a query frontend that sends its leaves to those servers.
//!
//! The wire conversions are total and validating: whatever arrives is
//! checked (enum values, id lengths, indexes, tree order, duplicates) and
//! turned into an error, never a panic. A bad request is
//! [`QueryError::InvalidArgument`]; a bad response [`QueryError::Internal`].
//!
//! [`RemoteBackend`] resolves its endpoints (`host:port`; a DNS name may
//! stand for many addresses, as a Kubernetes headless Service does), keeps a
//! lazily connected channel per address, and sends leaves round robin. When
//! a backend cannot be reached or answers `UNAVAILABLE`, the leaf goes to the
//! next backend (each backend at most once; the names are resolved again
//! before giving up); a deterministic error (a bad query, an unreadable
//! block) is returned at once. A leaf's result is always whole: one
//! backend's complete answer, or an error.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use phlox_block::SampleFilter;
use phlox_model::{MatchOp, Matcher, ProfileId, Selector, StackTree};
use phlox_proto::metastore::v1::BlockMeta;
use phlox_proto::querybackend::v1 as pb;
use phlox_proto::querybackend::v1::query_backend_service_client::QueryBackendServiceClient;
use phlox_proto::querybackend::v1::query_backend_service_server::{QueryBackendService, QueryBackendServiceServer};
use tonic::transport::{Channel, Endpoint};

use crate::plan::{
    ExemplarKind, LeafKind, LeafQuery, LeafResult, MAX_MERGE_CHILDREN, PointExemplar, PointValue, ProfilePoint,
    SeriesPoints,
};
use crate::stacks::{MergedStacks, PgoOptions};
use crate::{QueryBackend, QueryError};

/// Largest request or response message, on both sides (a leaf's result can
/// be a large tree or stack set).
pub const QUERY_BACKEND_MAX_MESSAGE_SIZE: usize = 256 << 20;

// ------------------------------------------------------------------ queries

/// A leaf query as its wire message.
pub fn query_to_proto(q: &LeafQuery) -> pb::LeafQuery {
    pb::LeafQuery {
        selector: Some(pb::Selector {
            metric: q.selector.metric.clone(),
            matchers: q
                .selector
                .matchers
                .iter()
                .map(|m| pb::Matcher {
                    name: m.name.clone(),
                    op: match m.op {
                        MatchOp::Equal => pb::MatchOp::Equal,
                        MatchOp::NotEqual => pb::MatchOp::NotEqual,
                        MatchOp::Regex => pb::MatchOp::Regex,
                        MatchOp::NotRegex => pb::MatchOp::NotRegex,
                    } as i32,
                    value: m.value.clone(),
                })
                .collect(),
        }),
        filter: Some(pb::SampleFilter {
            profile_ids: q
                .filter
                .profile_ids
                .as_ref()
                .map(|s| pb::ProfileIds { ids: s.iter().map(|id| Bytes::copy_from_slice(&id.0)).collect() }),
            span_ids: q.filter.span_ids.as_ref().map(|s| pb::SpanIds { ids: s.iter().copied().collect() }),
            trace_ids: q
                .filter
                .trace_ids
                .as_ref()
                .map(|s| pb::TraceIds { ids: s.iter().map(|t| Bytes::copy_from_slice(t)).collect() }),
        }),
        start_nanos: q.start_nanos,
        end_nanos: q.end_nanos,
        kind: Some(kind_to_proto(&q.kind)),
    }
}

fn kind_to_proto(k: &LeafKind) -> pb::leaf_query::Kind {
    use pb::leaf_query::Kind;
    match k {
        LeafKind::Tree => Kind::Tree(pb::TreeLeaf {}),
        LeafKind::Series { start_ms, step_ms, group_by, exemplars, call_site } => Kind::Series(pb::SeriesLeaf {
            start_ms: *start_ms,
            step_ms: *step_ms,
            group_by: group_by.clone(),
            exemplars: match exemplars {
                ExemplarKind::None => pb::ExemplarKind::None,
                ExemplarKind::Individual => pb::ExemplarKind::Individual,
                ExemplarKind::Span => pb::ExemplarKind::Span,
            } as i32,
            call_site: call_site.as_ref().map(|c| pb::CallSite { functions: c.clone() }),
        }),
        LeafKind::Points { start_ms, step_ms, group_by, spans } => Kind::Points(pb::PointsLeaf {
            start_ms: *start_ms,
            step_ms: *step_ms,
            group_by: group_by.clone(),
            spans: *spans,
        }),
        LeafKind::LabelNames => Kind::LabelNames(pb::LabelNamesLeaf {}),
        LeafKind::LabelValues(name) => Kind::LabelValues(pb::LabelValuesLeaf { name: name.clone() }),
        LeafKind::LabelSets(names) => Kind::LabelSets(pb::LabelSetsLeaf { names: names.clone() }),
        LeafKind::Stacks { call_site, pgo } => Kind::Stacks(pb::StacksLeaf {
            call_site: call_site.clone(),
            pgo: pgo.map(|p| pb::PgoOptions {
                keep_locations: u64::try_from(p.keep_locations).unwrap_or(u64::MAX),
                aggregate_callees: p.aggregate_callees,
            }),
        }),
    }
}

/// A leaf query from the wire; anything malformed is `InvalidArgument`.
pub fn query_from_proto(q: pb::LeafQuery) -> Result<LeafQuery, QueryError> {
    decode_query(q).map_err(|e| QueryError::InvalidArgument(format!("invalid leaf query: {e}")))
}

fn decode_query(q: pb::LeafQuery) -> Result<LeafQuery, String> {
    let selector = q.selector.ok_or("missing selector")?;
    let mut matchers = Vec::with_capacity(selector.matchers.len());
    for m in selector.matchers {
        let op = match pb::MatchOp::try_from(m.op) {
            Ok(pb::MatchOp::Equal) => MatchOp::Equal,
            Ok(pb::MatchOp::NotEqual) => MatchOp::NotEqual,
            Ok(pb::MatchOp::Regex) => MatchOp::Regex,
            Ok(pb::MatchOp::NotRegex) => MatchOp::NotRegex,
            Ok(pb::MatchOp::Unspecified) | Err(_) => return Err(format!("matcher {:?}: unknown op {}", m.name, m.op)),
        };
        matchers.push(Matcher::new(&m.name, op, &m.value).map_err(|e| e.to_string())?);
    }
    let f = q.filter.ok_or("missing sample filter")?;
    let filter = SampleFilter {
        profile_ids: f
            .profile_ids
            .map(|s| s.ids.iter().map(|b| id16(b, "profile id").map(ProfileId)).collect::<Result<_, _>>())
            .transpose()?,
        span_ids: f.span_ids.map(|s| s.ids.into_iter().collect()),
        trace_ids: f
            .trace_ids
            .map(|s| s.ids.iter().map(|b| id16(b, "trace id")).collect::<Result<_, _>>())
            .transpose()?,
    };
    Ok(LeafQuery {
        selector: Selector { metric: selector.metric, matchers },
        filter,
        start_nanos: q.start_nanos,
        end_nanos: q.end_nanos,
        kind: decode_kind(q.kind.ok_or("missing kind")?)?,
    })
}

fn decode_kind(k: pb::leaf_query::Kind) -> Result<LeafKind, String> {
    use pb::leaf_query::Kind;
    Ok(match k {
        Kind::Tree(_) => LeafKind::Tree,
        Kind::Series(s) => LeafKind::Series {
            start_ms: s.start_ms,
            step_ms: s.step_ms,
            group_by: s.group_by,
            exemplars: match pb::ExemplarKind::try_from(s.exemplars) {
                Ok(pb::ExemplarKind::None) => ExemplarKind::None,
                Ok(pb::ExemplarKind::Individual) => ExemplarKind::Individual,
                Ok(pb::ExemplarKind::Span) => ExemplarKind::Span,
                Err(_) => return Err(format!("unknown exemplar kind {}", s.exemplars)),
            },
            call_site: s.call_site.map(|c| c.functions),
        },
        Kind::Points(p) => {
            LeafKind::Points { start_ms: p.start_ms, step_ms: p.step_ms, group_by: p.group_by, spans: p.spans }
        }
        Kind::LabelNames(_) => LeafKind::LabelNames,
        Kind::LabelValues(v) => LeafKind::LabelValues(v.name),
        Kind::LabelSets(s) => LeafKind::LabelSets(s.names),
        Kind::Stacks(s) => LeafKind::Stacks {
            call_site: s.call_site,
            pgo: s.pgo.map(|p| PgoOptions {
                keep_locations: usize::try_from(p.keep_locations).unwrap_or(usize::MAX),
                aggregate_callees: p.aggregate_callees,
            }),
        },
    })
}

/// Exactly 16 bytes.
fn id16(b: &[u8], what: &str) -> Result<[u8; 16], String> {
    <[u8; 16]>::try_from(b).map_err(|_| format!("{what} of {} bytes, expected 16", b.len()))
}

/// A trace id on the wire: empty for none (all zero), else 16 bytes.
fn trace_to_proto(t: &[u8; 16]) -> Bytes {
    if *t == [0; 16] { Bytes::new() } else { Bytes::copy_from_slice(t) }
}

fn trace_from_proto(b: &[u8]) -> Result<[u8; 16], String> {
    if b.is_empty() { Ok([0; 16]) } else { id16(b, "trace id") }
}

// ------------------------------------------------------------------ results

fn labels_to_proto(l: Vec<(String, String)>) -> Vec<pb::LabelPair> {
    l.into_iter().map(|(name, value)| pb::LabelPair { name, value }).collect()
}

fn labels_from_proto(l: Vec<pb::LabelPair>) -> Vec<(String, String)> {
    l.into_iter().map(|p| (p.name, p.value)).collect()
}

/// A leaf result as its wire message.
pub fn result_to_proto(r: LeafResult) -> pb::LeafResult {
    use pb::leaf_result::Result as R;
    let result = match r {
        LeafResult::Tree(t) => {
            let (names, parents, name_ids, self_values) = t.into_tree().into_parts();
            R::Tree(pb::TreeResult { names, parents, name_ids, self_values })
        }
        LeafResult::Series(s) => R::Series(pb::SeriesResult {
            groups: s
                .into_iter()
                .map(|(labels, points)| pb::SeriesGroup {
                    labels: labels_to_proto(labels),
                    points: points
                        .into_iter()
                        .map(|(ts, p)| pb::SeriesPoint {
                            timestamp_ms: ts,
                            sum: p.sum,
                            count: p.count,
                            exemplar: p.exemplar.map(|e| pb::Exemplar {
                                time_ms: e.time_ms,
                                profile_id: e.profile_id,
                                value: e.value,
                                span_id: e.span_id,
                                trace_id: trace_to_proto(&e.trace_id),
                                labels: labels_to_proto(e.labels),
                            }),
                        })
                        .collect(),
                })
                .collect(),
        }),
        LeafResult::Names(n) => R::Names(pb::NamesResult { names: n.into_iter().collect() }),
        LeafResult::Points(p) => R::Points(pb::PointsResult {
            groups: p
                .into_iter()
                .map(|(labels, points)| pb::PointsGroup {
                    labels: labels_to_proto(labels),
                    points: points
                        .into_iter()
                        .map(|p| pb::ProfilePoint {
                            slot_ms: p.slot_ms,
                            time_ms: p.time_ms,
                            value: p.value,
                            profile_id: p.profile_id,
                            span_id: p.span_id,
                            trace_id: trace_to_proto(&p.trace_id),
                        })
                        .collect(),
                })
                .collect(),
        }),
        LeafResult::LabelSets(s) => R::LabelSets(pb::LabelSetsResult {
            sets: s.into_iter().map(|l| pb::LabelSet { labels: labels_to_proto(l) }).collect(),
        }),
        LeafResult::Stacks(m) => {
            let (strings, functions, locations, stacks) = m.parts();
            R::Stacks(pb::StacksResult {
                strings: strings.to_vec(),
                functions: functions
                    .iter()
                    .map(|&(name, system_name, filename, start_line)| pb::Function {
                        name,
                        system_name,
                        filename,
                        start_line,
                    })
                    .collect(),
                locations: locations
                    .iter()
                    .map(|lines| pb::Location {
                        function_ids: lines.iter().map(|l| l.0).collect(),
                        lines: lines.iter().map(|l| l.1).collect(),
                    })
                    .collect(),
                stacks: stacks.iter().map(|(path, &value)| pb::Stack { location_ids: path.clone(), value }).collect(),
            })
        }
    };
    pb::LeafResult { result: Some(result) }
}

/// A leaf result from the wire; anything malformed is `Internal`.
pub fn result_from_proto(r: pb::LeafResult) -> Result<LeafResult, QueryError> {
    decode_result(r).map_err(|e| QueryError::Internal(format!("invalid leaf result: {e}")))
}

fn decode_result(r: pb::LeafResult) -> Result<LeafResult, String> {
    use pb::leaf_result::Result as R;
    Ok(match r.result.ok_or("missing result")? {
        R::Tree(t) => LeafResult::Tree(StackTree::from_parts(t.names, t.parents, t.name_ids, t.self_values)?.into()),
        R::Series(s) => {
            let mut out = SeriesPoints::new();
            for g in s.groups {
                let labels = labels_from_proto(g.labels);
                let mut points = BTreeMap::new();
                for p in g.points {
                    let exemplar = match p.exemplar {
                        None => None,
                        Some(e) => Some(PointExemplar {
                            time_ms: e.time_ms,
                            profile_id: e.profile_id,
                            value: e.value,
                            span_id: e.span_id,
                            trace_id: trace_from_proto(&e.trace_id)?,
                            labels: labels_from_proto(e.labels),
                        }),
                    };
                    let value = PointValue { sum: p.sum, count: p.count, exemplar };
                    if points.insert(p.timestamp_ms, value).is_some() {
                        return Err(format!("series {labels:?}: duplicate point at {}", p.timestamp_ms));
                    }
                }
                if out.contains_key(&labels) {
                    return Err(format!("duplicate series {labels:?}"));
                }
                out.insert(labels, points);
            }
            LeafResult::Series(out)
        }
        R::Names(n) => LeafResult::Names(n.names.into_iter().collect()),
        R::Points(p) => {
            let mut out: BTreeMap<Vec<(String, String)>, Vec<ProfilePoint>> = BTreeMap::new();
            for g in p.groups {
                let labels = labels_from_proto(g.labels);
                let points = g
                    .points
                    .into_iter()
                    .map(|p| {
                        Ok(ProfilePoint {
                            slot_ms: p.slot_ms,
                            time_ms: p.time_ms,
                            value: p.value,
                            profile_id: p.profile_id,
                            span_id: p.span_id,
                            trace_id: trace_from_proto(&p.trace_id)?,
                        })
                    })
                    .collect::<Result<Vec<_>, String>>()?;
                if out.contains_key(&labels) {
                    return Err(format!("duplicate point group {labels:?}"));
                }
                out.insert(labels, points);
            }
            LeafResult::Points(out)
        }
        R::LabelSets(s) => {
            LeafResult::LabelSets(s.sets.into_iter().map(|l| labels_from_proto(l.labels)).collect::<BTreeSet<_>>())
        }
        R::Stacks(s) => {
            let functions =
                s.functions.into_iter().map(|f| (f.name, f.system_name, f.filename, f.start_line)).collect();
            let locations = s
                .locations
                .into_iter()
                .enumerate()
                .map(|(i, l)| {
                    if l.function_ids.len() != l.lines.len() {
                        return Err(format!(
                            "location {i}: {} functions but {} lines",
                            l.function_ids.len(),
                            l.lines.len()
                        ));
                    }
                    Ok(l.function_ids.into_iter().zip(l.lines).collect())
                })
                .collect::<Result<Vec<_>, String>>()?;
            let stacks = s.stacks.into_iter().map(|s| (s.location_ids, s.value)).collect();
            LeafResult::Stacks(Box::new(MergedStacks::from_parts(s.strings, functions, locations, stacks)?))
        }
    })
}

/// Whether a result is of the kind a query asks for.
fn result_fits(r: &LeafResult, k: &LeafKind) -> bool {
    matches!(
        (k, r),
        (LeafKind::Tree, LeafResult::Tree(_))
            | (LeafKind::Series { .. }, LeafResult::Series(_))
            | (LeafKind::Points { .. }, LeafResult::Points(_))
            | (LeafKind::LabelNames | LeafKind::LabelValues(_), LeafResult::Names(_))
            | (LeafKind::LabelSets(_), LeafResult::LabelSets(_))
            | (LeafKind::Stacks { .. }, LeafResult::Stacks(_))
    )
}

// ------------------------------------------------------------------- server

/// The `QueryBackendService` over any [`QueryBackend`]. Errors map to gRPC
/// codes: `InvalidArgument` → `INVALID_ARGUMENT`, `Unimplemented` →
/// `UNIMPLEMENTED`, `Unavailable` → `UNAVAILABLE`, `Internal` → `INTERNAL`.
#[derive(Clone)]
pub struct QueryBackendServer {
    backend: Arc<dyn QueryBackend>,
}

impl std::fmt::Debug for QueryBackendServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryBackendServer").finish_non_exhaustive()
    }
}

impl QueryBackendServer {
    pub fn new(backend: Arc<dyn QueryBackend>) -> Self {
        Self { backend }
    }

    /// The tonic service, accepting and sending messages up to
    /// [`QUERY_BACKEND_MAX_MESSAGE_SIZE`].
    pub fn into_service(self) -> QueryBackendServiceServer<Self> {
        QueryBackendServiceServer::new(self)
            .max_decoding_message_size(QUERY_BACKEND_MAX_MESSAGE_SIZE)
            .max_encoding_message_size(QUERY_BACKEND_MAX_MESSAGE_SIZE)
    }
}

fn status_of(e: QueryError) -> tonic::Status {
    match e {
        QueryError::InvalidArgument(m) => tonic::Status::invalid_argument(m),
        QueryError::Unimplemented(m) => tonic::Status::unimplemented(m),
        QueryError::Unavailable(m) => tonic::Status::unavailable(m),
        QueryError::Internal(m) => tonic::Status::internal(m),
    }
}

#[tonic::async_trait]
impl QueryBackendService for QueryBackendServer {
    async fn execute(
        &self,
        request: tonic::Request<pb::ExecuteRequest>,
    ) -> Result<tonic::Response<pb::ExecuteResponse>, tonic::Status> {
        let r = request.into_inner();
        let mut blocks: Vec<BlockMeta> = r.block.into_iter().chain(r.blocks).collect();
        let query = query_from_proto(
            r.query.ok_or_else(|| tonic::Status::invalid_argument("invalid leaf query: missing query"))?,
        )
        .map_err(status_of)?;
        let query = Arc::new(query);
        if blocks.len() > MAX_MERGE_CHILDREN {
            return Err(tonic::Status::invalid_argument(format!(
                "invalid leaf query: {} blocks in one node, at most {MAX_MERGE_CHILDREN}",
                blocks.len()
            )));
        }
        let result = match blocks.len() {
            0 => return Err(tonic::Status::invalid_argument("invalid leaf query: missing block")),
            1 => self.backend.execute(blocks.remove(0), query).await,
            _ => self.backend.execute_merge(blocks, query).await,
        };
        Ok(tonic::Response::new(pb::ExecuteResponse { result: Some(result_to_proto(result.map_err(status_of)?)) }))
    }
}

// ------------------------------------------------------------------- client

/// How a [`RemoteBackend`] reaches its backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteBackendOptions {
    /// TCP connect (and DNS lookup) timeout.
    pub connect_timeout: Duration,
    /// Longest wait for one backend's answer to a leaf; `None`: no limit
    /// (dead peers are still detected by HTTP/2 keepalive). A leaf that
    /// times out fails with `Unavailable` and is not retried.
    pub request_timeout: Option<Duration>,
    /// How often endpoint names are resolved again (also after a failure).
    pub refresh_interval: Duration,
    /// For this long after a failure, a backend is tried after the others.
    pub failure_cooldown: Duration,
    /// Largest request or response message.
    pub max_message_size: usize,
}

impl Default for RemoteBackendOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(3),
            request_timeout: None,
            // A backend the autoscaler adds gets work within seconds.
            refresh_interval: Duration::from_secs(5),
            failure_cooldown: Duration::from_secs(5),
            max_message_size: QUERY_BACKEND_MAX_MESSAGE_SIZE,
        }
    }
}

/// Executes leaves on remote query backends over gRPC (see the module doc).
#[derive(Clone)]
pub struct RemoteBackend {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RemoteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteBackend")
            .field("endpoints", &self.inner.endpoints)
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

/// Forced re-resolutions closer together than this reuse the last one.
const MIN_REFRESH_GAP: Duration = Duration::from_secs(1);

struct Inner {
    /// `host:port` as configured.
    endpoints: Vec<String>,
    options: RemoteBackendOptions,
    state: Mutex<State>,
    /// Held while names are resolved, so one task resolves at a time.
    refreshing: tokio::sync::Mutex<()>,
    /// Round-robin position.
    next: AtomicUsize,
}

#[derive(Default)]
struct State {
    /// Per endpoint: its addresses at the last successful lookup.
    resolved: Vec<Vec<SocketAddr>>,
    /// Every distinct address, sorted.
    backends: Vec<Arc<Backend>>,
    refreshed: Option<Instant>,
    /// A backend failed since the last lookup.
    stale: bool,
    /// Why the last lookup found no address.
    error: Option<String>,
}

struct Backend {
    addr: SocketAddr,
    client: QueryBackendServiceClient<Channel>,
    failed: Mutex<Option<Instant>>,
}

impl Backend {
    fn set_failed(&self, at: Option<Instant>) {
        *self.failed.lock().unwrap_or_else(PoisonError::into_inner) = at;
    }

    fn cooling_down(&self, now: Instant, cooldown: Duration) -> bool {
        self.failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|t| now.saturating_duration_since(t) < cooldown)
    }
}

/// How one attempt failed.
enum Failure {
    /// The backend could not serve the leaf; another one may.
    Retry(String),
    /// The answer would be the same anywhere.
    Fatal(QueryError),
}

impl RemoteBackend {
    /// A backend over these endpoints (`host:port`, each possibly a DNS
    /// name of many addresses), with default options. Names are resolved
    /// and channels connected on first use.
    pub fn new(endpoints: Vec<String>) -> Self {
        Self::with_options(endpoints, RemoteBackendOptions::default())
    }

    pub fn with_options(endpoints: Vec<String>, options: RemoteBackendOptions) -> Self {
        Self {
            inner: Arc::new(Inner {
                endpoints,
                options,
                state: Mutex::new(State::default()),
                refreshing: tokio::sync::Mutex::new(()),
                next: AtomicUsize::new(0),
            }),
        }
    }

    /// The endpoints as configured.
    pub fn endpoints(&self) -> &[String] {
        &self.inner.endpoints
    }

    /// Every address the endpoints resolved to at the last lookup (resolving
    /// now if never done).
    pub async fn addresses(&self) -> Result<Vec<SocketAddr>, QueryError> {
        Ok(self.inner.backends().await?.iter().map(|b| b.addr).collect())
    }
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current backends; resolves first when there are none, and in the
    /// background when the last lookup is old or a backend failed since.
    async fn backends(self: &Arc<Self>) -> Result<Vec<Arc<Backend>>, QueryError> {
        let (list, due) = {
            let st = self.state();
            let due = st.stale || st.refreshed.is_none_or(|t| t.elapsed() >= self.options.refresh_interval);
            (st.backends.clone(), due)
        };
        if list.is_empty() {
            return self.refresh(false).await;
        }
        if due && let Ok(guard) = self.refreshing.try_lock() {
            drop(guard);
            let inner = Arc::clone(self);
            tokio::spawn(async move {
                let _ = inner.refresh(false).await;
            });
        }
        Ok(list)
    }

    /// Resolves every endpoint again (unless another task just did) and
    /// returns the backends. An endpoint that fails to resolve keeps its
    /// previous addresses.
    async fn refresh(&self, force: bool) -> Result<Vec<Arc<Backend>>, QueryError> {
        let _guard = self.refreshing.lock().await;
        let previous = {
            let st = self.state();
            if let Some(t) = st.refreshed {
                let age = t.elapsed();
                let fresh = !st.stale && !st.backends.is_empty() && age < self.options.refresh_interval;
                if age < MIN_REFRESH_GAP || (!force && fresh) {
                    if st.backends.is_empty() {
                        return Err(no_address(st.error.as_deref()));
                    }
                    return Ok(st.backends.clone());
                }
            }
            st.resolved.clone()
        };
        let timeout = self.options.connect_timeout;
        let lookups = self.endpoints.iter().map(|ep| async move {
            match tokio::time::timeout(timeout, tokio::net::lookup_host(ep.as_str())).await {
                Ok(Ok(addrs)) => {
                    let mut a: Vec<SocketAddr> = addrs.collect();
                    a.sort_unstable();
                    a.dedup();
                    if a.is_empty() { Err(format!("{ep}: no address")) } else { Ok(a) }
                }
                Ok(Err(e)) => Err(format!("{ep}: {e}")),
                Err(_) => Err(format!("{ep}: DNS lookup timed out after {timeout:?}")),
            }
        });
        let results = futures::future::join_all(lookups).await;
        let mut resolved = previous;
        resolved.resize(self.endpoints.len(), Vec::new());
        let mut errors = Vec::new();
        for (slot, r) in resolved.iter_mut().zip(results) {
            match r {
                Ok(a) => *slot = a,
                Err(e) => errors.push(e),
            }
        }
        if self.endpoints.is_empty() {
            errors.push("no query backend endpoint configured".to_owned());
        }
        if !errors.is_empty() {
            tracing::warn!(errors = %errors.join("; "), "cannot resolve query backends");
        }
        let mut addrs: Vec<SocketAddr> = resolved.iter().flatten().copied().collect();
        addrs.sort_unstable();
        addrs.dedup();
        tracing::debug!(?addrs, "query backends resolved");
        let mut st = self.state();
        let old: HashMap<SocketAddr, Arc<Backend>> = st.backends.iter().map(|b| (b.addr, Arc::clone(b))).collect();
        let mut backends = Vec::with_capacity(addrs.len());
        for addr in addrs {
            match old.get(&addr) {
                Some(b) => backends.push(Arc::clone(b)),
                None => match self.connect(addr) {
                    Ok(b) => backends.push(Arc::new(b)),
                    Err(e) => errors.push(format!("{addr}: {e}")),
                },
            }
        }
        st.resolved = resolved;
        st.backends = backends.clone();
        st.refreshed = Some(Instant::now());
        st.stale = false;
        if backends.is_empty() {
            st.error = Some(errors.join("; "));
            return Err(no_address(st.error.as_deref()));
        }
        st.error = None;
        Ok(backends)
    }

    /// A lazily connected channel to one address.
    fn connect(&self, addr: SocketAddr) -> Result<Backend, tonic::transport::Error> {
        let channel = phlox_proto::tls::connect_lazy(
            Endpoint::from_shared(format!("http://{addr}"))?
                .connect_timeout(self.options.connect_timeout)
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(30))
                .keep_alive_timeout(Duration::from_secs(20)),
        );
        let client = QueryBackendServiceClient::new(channel)
            .max_decoding_message_size(self.options.max_message_size)
            .max_encoding_message_size(self.options.max_message_size);
        Ok(Backend { addr, client, failed: Mutex::new(None) })
    }

    /// The backends not tried yet, round robin from the next position; those
    /// that failed recently come last.
    fn order(&self, backends: &[Arc<Backend>], tried: &[SocketAddr]) -> Vec<Arc<Backend>> {
        let n = backends.len();
        if n == 0 {
            return Vec::new();
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let now = Instant::now();
        let (mut up, mut down) = (Vec::new(), Vec::new());
        for i in 0..n {
            let b = &backends[(start + i) % n];
            if tried.contains(&b.addr) {
                continue;
            }
            if b.cooling_down(now, self.options.failure_cooldown) {
                down.push(Arc::clone(b));
            } else {
                up.push(Arc::clone(b));
            }
        }
        up.append(&mut down);
        up
    }

    /// One attempt on one backend.
    async fn call(&self, b: &Backend, request: pb::ExecuteRequest, kind: &LeafKind) -> Result<LeafResult, Failure> {
        let mut client = b.client.clone();
        let call = client.execute(request);
        let response = match self.options.request_timeout {
            Some(t) => tokio::time::timeout(t, call).await.map_err(|_| {
                Failure::Fatal(QueryError::Unavailable(format!("query backend {}: no answer within {t:?}", b.addr)))
            })?,
            None => call.await,
        };
        let response = response.map_err(|s| classify(b.addr, &s))?.into_inner();
        let fatal = |m: String| Failure::Fatal(QueryError::Internal(format!("query backend {}: {m}", b.addr)));
        let result = result_from_proto(response.result.ok_or_else(|| fatal("response without a result".into()))?)
            .map_err(|e| fatal(e.to_string()))?;
        if !result_fits(&result, kind) {
            return Err(fatal("result of another kind than the query".into()));
        }
        Ok(result)
    }
}

fn no_address(error: Option<&str>) -> QueryError {
    QueryError::Unavailable(format!("no query backend address: {}", error.unwrap_or("nothing resolved")))
}

/// Whether another backend may succeed where this one failed: it could not
/// be reached (a transport error, carried as the status's source), or it
/// answered `UNAVAILABLE` (its bucket failed, it is shutting down).
fn classify(addr: SocketAddr, s: &tonic::Status) -> Failure {
    use tonic::Code;
    let mut message = format!("query backend {addr}: {}", s.message());
    let mut source = std::error::Error::source(s);
    let transport = source.is_some();
    while let Some(e) = source {
        let m = e.to_string();
        if !message.contains(&m) {
            message.push_str(": ");
            message.push_str(&m);
        }
        source = e.source();
    }
    match s.code() {
        Code::InvalidArgument => Failure::Fatal(QueryError::InvalidArgument(s.message().to_owned())),
        Code::Unimplemented => Failure::Fatal(QueryError::Unimplemented(message)),
        Code::Unavailable | Code::Unknown | Code::Aborted => Failure::Retry(message),
        Code::Internal | Code::Cancelled if transport => Failure::Retry(message),
        _ => Failure::Fatal(QueryError::Internal(message)),
    }
}

#[async_trait::async_trait]
impl QueryBackend for RemoteBackend {
    async fn execute(&self, block: BlockMeta, query: Arc<LeafQuery>) -> Result<LeafResult, QueryError> {
        let request =
            pb::ExecuteRequest { block: Some(block), query: Some(query_to_proto(&query)), blocks: Vec::new() };
        self.send(request, &query.kind).await
    }

    /// One request for the whole node: the backend that takes it reads the
    /// blocks and merges them, and a retry moves the whole node.
    async fn execute_merge(&self, blocks: Vec<BlockMeta>, query: Arc<LeafQuery>) -> Result<LeafResult, QueryError> {
        let request = pb::ExecuteRequest { block: None, query: Some(query_to_proto(&query)), blocks: blocks.clone() };
        match self.send(request, &query.kind).await {
            // A backend from before merge nodes reads only `block`: one
            // request per leaf instead (mixed versions during a rollout).
            Err(QueryError::InvalidArgument(m)) if m.contains("missing block") => {
                tracing::warn!("a query backend does not take merge nodes; sending their leaves one by one");
                crate::backend::execute_each(self, blocks, query).await
            }
            other => other,
        }
    }
}

impl RemoteBackend {
    /// Sends a plan node to one backend after the other until one answers.
    async fn send(&self, request: pb::ExecuteRequest, kind: &LeafKind) -> Result<LeafResult, QueryError> {
        let inner = &self.inner;
        let mut backends = inner.backends().await?;
        let mut tried: Vec<SocketAddr> = Vec::new();
        let mut errors: Vec<String> = Vec::new();
        // Every backend once; then the names again, for addresses not tried.
        for round in 0..2 {
            for b in inner.order(&backends, &tried) {
                tried.push(b.addr);
                match inner.call(&b, request.clone(), kind).await {
                    Ok(result) => {
                        b.set_failed(None);
                        return Ok(result);
                    }
                    Err(Failure::Fatal(e)) => return Err(e),
                    Err(Failure::Retry(e)) => {
                        tracing::warn!(backend = %b.addr, error = %e, "query backend failed; trying another");
                        b.set_failed(Some(Instant::now()));
                        inner.state().stale = true;
                        errors.push(e);
                    }
                }
            }
            if round == 0 {
                match inner.refresh(true).await {
                    Ok(b) => backends = b,
                    Err(e) => {
                        errors.push(e.to_string());
                        break;
                    }
                }
            }
        }
        errors.truncate(4);
        Err(QueryError::Unavailable(format!(
            "no query backend could execute the leaf ({} tried): {}",
            tried.len(),
            errors.join("; ")
        )))
    }
}
