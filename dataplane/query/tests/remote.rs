//! Read leaves over gRPC: wire round trips, hostile messages, and a query
//! frontend whose leaves run on remote query backends (failover included).
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use phlox_block::{BlockHeader, SampleFilter, SegmentBuilder, paths};
use phlox_model::{Labels, Matcher, ProfileId, StackTree, parse_selector};
use phlox_pprof::testkit::ProfileBuilder;
use phlox_pprof::{Profile, split};
use phlox_proto::metastore::v1::*;
use phlox_proto::querier::v1 as q;
use phlox_proto::querybackend::v1 as pb;
use phlox_proto::types::v1 as t;
use phlox_query::{
    ExemplarKind, LeafKind, LeafQuery, LeafResult, LocalBackend, PgoOptions, PointExemplar, PointValue, ProfilePoint,
    QueryBackend, QueryBackendServer, QueryError, QueryFrontend, QueryLimits, RemoteBackend, RemoteBackendOptions,
    SeriesPoints, query_from_proto, query_to_proto, result_from_proto, result_to_proto,
};
use prost::Message;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use ulid::Ulid;

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
const T0_MS: i64 = 1_700_000_000_000;
const TENANT: &str = "anonymous";

fn span(n: u64) -> String {
    format!("{:016x}", 0x1000_0000_0000_0000 + n)
}

fn trace(n: u8) -> String {
    format!("{:032x}", u128::from(n) << 64 | 0xabc)
}

// ------------------------------------------------------------ round trips

/// Through the wire message and its bytes, and back.
fn query_round_trip(query: &LeafQuery) -> LeafQuery {
    let bytes = query_to_proto(query).encode_to_vec();
    query_from_proto(pb::LeafQuery::decode(bytes.as_slice()).unwrap()).unwrap()
}

fn result_round_trip(result: &LeafResult) -> LeafResult {
    let bytes = result_to_proto(result.clone()).encode_to_vec();
    result_from_proto(pb::LeafResult::decode(bytes.as_slice()).unwrap()).unwrap()
}

fn filter() -> SampleFilter {
    SampleFilter {
        profile_ids: Some([ProfileId([1; 16]), ProfileId([0xfe; 16])].into_iter().collect()),
        span_ids: Some([1u64, u64::MAX, 0x0123_4567_89ab_cdef].into_iter().collect()),
        trace_ids: Some([[7u8; 16], [0u8; 16]].into_iter().collect()),
    }
}

#[test]
fn every_leaf_kind_round_trips() {
    let mut selector = parse_selector(r#"{service_name="shop", env!="dev", pod=~"web-.*", "x.y"!~"a|b"}"#).unwrap();
    selector.metric = Some(CPU.into());
    selector.matchers.push(Matcher::equal("__profile_type__", CPU));
    let kinds = vec![
        LeafKind::Tree,
        LeafKind::Series {
            start_ms: -5,
            step_ms: 15_000,
            group_by: vec!["pod".into(), "region".into()],
            exemplars: ExemplarKind::Span,
            call_site: Some(vec!["main".into(), "handle".into()]),
        },
        LeafKind::Series {
            start_ms: T0_MS,
            step_ms: 1,
            group_by: vec![],
            exemplars: ExemplarKind::Individual,
            call_site: Some(vec![]),
        },
        LeafKind::Series { start_ms: 0, step_ms: 0, group_by: vec![], exemplars: ExemplarKind::None, call_site: None },
        LeafKind::Points { start_ms: 1, step_ms: 2, group_by: vec!["pod".into()], spans: true },
        LeafKind::Points { start_ms: 1, step_ms: 2, group_by: vec![], spans: false },
        LeafKind::LabelNames,
        LeafKind::LabelValues("pod".into()),
        LeafKind::LabelSets(vec![]),
        LeafKind::LabelSets(vec!["pod".into(), "service_name".into()]),
        LeafKind::Stacks { call_site: vec!["main".into()], pgo: None },
        LeafKind::Stacks {
            call_site: vec![],
            pgo: Some(PgoOptions { keep_locations: usize::MAX, aggregate_callees: true }),
        },
        LeafKind::Stacks { call_site: vec![], pgo: Some(PgoOptions { keep_locations: 3, aggregate_callees: false }) },
    ];
    for kind in kinds {
        for filter in [filter(), SampleFilter::default()] {
            let q = LeafQuery {
                selector: selector.clone(),
                filter,
                start_nanos: i64::MIN,
                end_nanos: 42,
                kind: kind.clone(),
            };
            let back = query_round_trip(&q);
            assert_eq!(back, q, "{kind:?}");
            // The regular expressions are compiled again: they still match.
            let l = Labels::from_pairs([("service_name", "shop"), ("pod", "web-1"), ("__profile_type__", CPU)]);
            assert!(back.selector.matches(&l));
            assert!(!back.selector.matches(&Labels::from_pairs([("service_name", "shop"), ("pod", "db-1")])));
        }
    }
    // Present but empty sets stay present (they select nothing).
    let q = LeafQuery {
        selector: Default::default(),
        filter: SampleFilter {
            profile_ids: Some(Default::default()),
            span_ids: Some(Default::default()),
            trace_ids: None,
        },
        start_nanos: 0,
        end_nanos: 0,
        kind: LeafKind::Tree,
    };
    let back = query_round_trip(&q);
    assert_eq!(back, q);
    assert!(back.filter.profile_ids.is_some() && back.filter.trace_ids.is_none());
}

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect()
}

#[test]
fn every_result_round_trips() {
    // A multi-level tree, including a value on the root itself.
    let mut tree = StackTree::default();
    tree.add_stack(["main", "handle", "burn"], 30);
    tree.add_stack(["main", "handle", "idle"], 5);
    tree.add_stack(["main", "gc"], 7);
    tree.add_stack(["main"], 1);
    tree.add_stack(["other", "main", "main"], 2);
    tree.add_stack([], 4);
    let back = result_round_trip(&LeafResult::Tree(tree.clone().into()));
    let LeafResult::Tree(b) = &back else { panic!("{back:?}") };
    let b = &b.to_tree();
    assert_eq!(b, &tree);
    assert_eq!(b.total(), 49);
    assert_eq!(b.flamegraph(100), tree.flamegraph(100));

    let mut series = SeriesPoints::new();
    series.entry(labels(&[("pod", "a")])).or_default().insert(
        60_000,
        PointValue {
            sum: 42.5,
            count: 3,
            exemplar: Some(PointExemplar {
                time_ms: 59_000,
                profile_id: ProfileId([9; 16]).to_string(),
                value: 40,
                span_id: u64::MAX,
                trace_id: [0xab; 16],
                labels: labels(&[("region", "eu"), ("zone", "b")]),
            }),
        },
    );
    series.entry(labels(&[("pod", "a")])).or_default().insert(
        120_000,
        PointValue {
            sum: 1.0,
            count: 1,
            exemplar: Some(PointExemplar {
                time_ms: 61_000,
                profile_id: ProfileId([8; 16]).to_string(),
                value: 1,
                span_id: 0,
                trace_id: [0; 16],
                labels: vec![],
            }),
        },
    );
    series
        .entry(labels(&[("pod", "b")]))
        .or_default()
        .insert(-60_000, PointValue { sum: 0.25, count: 1, exemplar: None });
    series.entry(vec![]).or_default().insert(0, PointValue::default());

    let mut points = BTreeMap::new();
    points.insert(
        labels(&[("pod", "a")]),
        vec![
            ProfilePoint {
                slot_ms: 60_000,
                time_ms: 1,
                value: 5,
                profile_id: ProfileId([1; 16]).to_string(),
                span_id: 77,
                trace_id: [3; 16],
            },
            ProfilePoint {
                slot_ms: 60_000,
                time_ms: 2,
                value: 5,
                profile_id: ProfileId([1; 16]).to_string(),
                span_id: 0,
                trace_id: [0; 16],
            },
        ],
    );
    points.insert(vec![], vec![]);

    let sets: BTreeSet<Vec<(String, String)>> =
        [labels(&[("pod", "a"), ("service_name", "shop")]), labels(&[]), labels(&[("pod", "b")])].into_iter().collect();
    let names: BTreeSet<String> = ["a", "", "service_name"].into_iter().map(str::to_owned).collect();

    for r in [
        LeafResult::Series(series),
        LeafResult::Series(SeriesPoints::new()),
        LeafResult::Points(points),
        LeafResult::Names(names),
        LeafResult::Names(BTreeSet::new()),
        LeafResult::LabelSets(sets),
        LeafResult::Tree(StackTree::default().into()),
        LeafResult::Stacks(Box::default()),
    ] {
        assert_eq!(result_round_trip(&r), r);
    }
}

#[tokio::test]
async fn merged_stacks_round_trip() {
    let (store, blocks) = store_with_blocks().await;
    let local = LocalBackend::new(store);
    let selector = parse_selector(&format!(r#"{{service_name="shop", __profile_type__="{CPU}"}}"#)).unwrap();
    for (call_site, pgo) in [
        (vec![], Some(PgoOptions { keep_locations: 2, aggregate_callees: true })),
        (vec![], Some(PgoOptions { keep_locations: usize::MAX, aggregate_callees: false })),
        (vec!["main".to_owned(), "handle".to_owned()], None),
    ] {
        let query = Arc::new(LeafQuery {
            selector: selector.clone(),
            filter: SampleFilter::default(),
            start_nanos: i64::MIN,
            end_nanos: i64::MAX,
            kind: LeafKind::Stacks { call_site: call_site.clone(), pgo },
        });
        let mut merged = LeafResult::empty(&query.kind);
        for b in &blocks {
            merged.merge(local.execute(b.clone(), Arc::clone(&query)).await.unwrap());
        }
        let LeafResult::Stacks(stacks) = &merged else { panic!() };
        assert!(stacks.total() > 0);
        let back = result_round_trip(&merged);
        assert_eq!(back, merged, "{call_site:?} {pgo:?}");
        let LeafResult::Stacks(b) = &back else { panic!() };
        assert_eq!(
            b.to_pprof(&phlox_model::ProfileType::parse(CPU).unwrap()),
            stacks.to_pprof(&phlox_model::ProfileType::parse(CPU).unwrap())
        );
    }
}

// --------------------------------------------------------- hostile input

fn tree_leaf() -> pb::LeafQuery {
    query_to_proto(&LeafQuery {
        selector: Default::default(),
        filter: SampleFilter::default(),
        start_nanos: 0,
        end_nanos: 1,
        kind: LeafKind::Tree,
    })
}

fn bad_query(edit: impl FnOnce(&mut pb::LeafQuery)) -> String {
    let mut q = tree_leaf();
    edit(&mut q);
    match query_from_proto(q) {
        Err(QueryError::InvalidArgument(m)) => m,
        other => panic!("{other:?}"),
    }
}

#[test]
fn malformed_queries_are_invalid_arguments() {
    let matcher = |op: i32, value: &str| pb::Matcher { name: "pod".into(), op, value: value.into() };
    assert!(bad_query(|q| q.kind = None).contains("missing kind"));
    assert!(bad_query(|q| q.selector = None).contains("missing selector"));
    assert!(bad_query(|q| q.filter = None).contains("missing sample filter"));
    assert!(bad_query(|q| q.selector.as_mut().unwrap().matchers.push(matcher(0, "x"))).contains("unknown op"));
    assert!(bad_query(|q| q.selector.as_mut().unwrap().matchers.push(matcher(99, "x"))).contains("unknown op"));
    assert!(
        bad_query(|q| q.selector.as_mut().unwrap().matchers.push(matcher(3, "(unclosed")))
            .contains("regular expression")
    );
    assert!(
        bad_query(|q| {
            q.filter.as_mut().unwrap().profile_ids = Some(pb::ProfileIds { ids: vec![Bytes::from_static(b"abc")] })
        })
        .contains("profile id of 3 bytes")
    );
    assert!(
        bad_query(|q| {
            q.filter.as_mut().unwrap().trace_ids = Some(pb::TraceIds { ids: vec![Bytes::from(vec![0u8; 17])] })
        })
        .contains("trace id of 17 bytes")
    );
    assert!(
        bad_query(|q| {
            q.kind = Some(pb::leaf_query::Kind::Series(pb::SeriesLeaf { exemplars: 7, ..Default::default() }))
        })
        .contains("exemplar kind")
    );
    // Garbage bytes do not decode as a message at all.
    assert!(pb::LeafQuery::decode(&[0xff, 0xff, 0xff][..]).is_err());
    // A huge keep_locations saturates.
    let mut q = tree_leaf();
    q.kind = Some(pb::leaf_query::Kind::Stacks(pb::StacksLeaf {
        call_site: vec![],
        pgo: Some(pb::PgoOptions { keep_locations: u64::MAX, aggregate_callees: false }),
    }));
    let LeafKind::Stacks { pgo: Some(p), .. } = query_from_proto(q).unwrap().kind else { panic!() };
    assert_eq!(p.keep_locations, usize::MAX);
}

fn bad_result(r: pb::leaf_result::Result) -> String {
    match result_from_proto(pb::LeafResult { result: Some(r) }) {
        Err(QueryError::Internal(m)) => m,
        other => panic!("{other:?}"),
    }
}

#[test]
fn malformed_results_are_internal_errors() {
    use pb::leaf_result::Result as R;
    assert!(
        matches!(result_from_proto(pb::LeafResult { result: None }), Err(QueryError::Internal(m)) if m.contains("missing result"))
    );
    let tree = |names: &[&str], parents: Vec<u32>, name_ids: Vec<u32>, self_values: Vec<i64>| {
        R::Tree(pb::TreeResult {
            names: names.iter().map(|s| (*s).to_owned()).collect(),
            parents,
            name_ids,
            self_values,
        })
    };
    assert!(bad_result(tree(&[], vec![], vec![], vec![])).contains("non-empty"));
    assert!(bad_result(tree(&["a"], vec![0, 0], vec![0, 0], vec![0])).contains("equal length"));
    assert!(bad_result(tree(&["a", "b"], vec![0, 2, 1], vec![0, 0, 1], vec![0; 3])).contains("precede"));
    assert!(bad_result(tree(&["a"], vec![0, 0], vec![0, 5], vec![0, 1])).contains("out of range"));
    assert!(bad_result(tree(&["a"], vec![0, 0, 0], vec![0, 0, 0], vec![0, 1, 1])).contains("duplicate child"));
    assert!(bad_result(tree(&["a", "a"], vec![0, 0], vec![0, 0], vec![0, 1])).contains("duplicate tree name"));
    assert!(bad_result(tree(&["a", "b"], vec![0, 0, 0], vec![0, 0, 1], vec![0, i64::MAX, 1])).contains("overflow"));
    assert!(bad_result(tree(&["a"], vec![u32::MAX, 0], vec![0, 0], vec![0, 1])).contains("root"));

    let exemplar = |trace: &[u8]| pb::Exemplar { trace_id: Bytes::copy_from_slice(trace), ..Default::default() };
    let group = |ts: &[i64], e: Option<pb::Exemplar>| pb::SeriesGroup {
        labels: vec![pb::LabelPair { name: "pod".into(), value: "a".into() }],
        points: ts
            .iter()
            .map(|&t| pb::SeriesPoint { timestamp_ms: t, exemplar: e.clone(), ..Default::default() })
            .collect(),
    };
    assert!(bad_result(R::Series(pb::SeriesResult { groups: vec![group(&[1, 1], None)] })).contains("duplicate point"));
    assert!(
        bad_result(R::Series(pb::SeriesResult { groups: vec![group(&[1], None), group(&[2], None)] }))
            .contains("duplicate series")
    );
    assert!(
        bad_result(R::Series(pb::SeriesResult { groups: vec![group(&[1], Some(exemplar(&[1; 5])))] }))
            .contains("trace id of 5 bytes")
    );
    let pgroup = |trace: &[u8]| pb::PointsGroup {
        labels: vec![],
        points: vec![pb::ProfilePoint { trace_id: Bytes::copy_from_slice(trace), ..Default::default() }],
    };
    assert!(
        bad_result(R::Points(pb::PointsResult { groups: vec![pgroup(&[2; 15])] })).contains("trace id of 15 bytes")
    );
    assert!(
        bad_result(R::Points(pb::PointsResult { groups: vec![pgroup(&[]), pgroup(&[])] }))
            .contains("duplicate point group")
    );

    let stacks = |strings: &[&str],
                  functions: Vec<(u32, u32, u32)>,
                  locations: Vec<(Vec<u32>, Vec<i64>)>,
                  stacks: Vec<(Vec<u32>, i64)>| {
        R::Stacks(pb::StacksResult {
            strings: strings.iter().map(|s| (*s).to_owned()).collect(),
            functions: functions
                .into_iter()
                .map(|(name, system_name, filename)| pb::Function { name, system_name, filename, start_line: 0 })
                .collect(),
            locations: locations
                .into_iter()
                .map(|(function_ids, lines)| pb::Location { function_ids, lines })
                .collect(),
            stacks: stacks.into_iter().map(|(location_ids, value)| pb::Stack { location_ids, value }).collect(),
        })
    };
    let ok_fn = || vec![(0, 0, 1)];
    let ok_loc = || vec![(vec![0], vec![10])];
    assert!(
        result_from_proto(pb::LeafResult {
            result: Some(stacks(&["f", "f.go"], ok_fn(), ok_loc(), vec![(vec![0, 0], 5)]))
        })
        .is_ok()
    );
    assert!(bad_result(stacks(&["f", "f"], vec![], vec![], vec![])).contains("duplicate string"));
    assert!(bad_result(stacks(&["f"], vec![(0, 0, 1)], vec![], vec![])).contains("string index out of range"));
    assert!(bad_result(stacks(&["f", "g"], vec![(0, 0, 1), (0, 0, 1)], vec![], vec![])).contains("duplicate"));
    assert!(
        bad_result(stacks(&["f", "g"], ok_fn(), vec![(vec![1], vec![1])], vec![]))
            .contains("function index out of range")
    );
    assert!(
        bad_result(stacks(&["f", "g"], ok_fn(), vec![(vec![0, 0], vec![1])], vec![]))
            .contains("2 functions but 1 lines")
    );
    assert!(
        bad_result(stacks(&["f", "g"], ok_fn(), vec![(vec![0], vec![1]), (vec![0], vec![1])], vec![]))
            .contains("duplicate")
    );
    assert!(
        bad_result(stacks(&["f", "g"], ok_fn(), ok_loc(), vec![(vec![1], 1)])).contains("location index out of range")
    );
    assert!(bad_result(stacks(&["f", "g"], ok_fn(), ok_loc(), vec![(vec![0], 1), (vec![0], 2)])).contains("duplicate"));
    assert!(bad_result(stacks(&["f", "g"], ok_fn(), ok_loc(), vec![(vec![0], i64::MIN)])).contains("overflow"));
}

// ------------------------------------------------------ remote execution

#[path = "../benches/common/mod.rs"]
mod common;
use common::Blocks;

/// (pod, profile id byte, seconds after T0, [(stack, value, span, trace)]).
type Sample = (&'static [&'static str], i64, Option<u64>, Option<u8>);

fn profiles(block: usize) -> Vec<(&'static str, u8, i64, Vec<Sample>)> {
    if block == 0 {
        vec![
            (
                "a",
                1,
                1,
                vec![
                    (&["main", "handle", "burn"], 30, Some(1), Some(1)),
                    (&["main", "handle", "idle"], 5, Some(2), Some(1)),
                    (&["main", "gc"], 7, None, None),
                ],
            ),
            ("b", 2, 2, vec![(&["main", "handle", "burn"], 100, Some(3), Some(2)), (&["main", "gc"], 11, None, None)]),
        ]
    } else {
        vec![
            (
                "a",
                3,
                61,
                vec![
                    (&["main", "handle", "burn"], 13, None, None),
                    (&["main", "handle", "idle"], 17, Some(4), Some(3)),
                    (&["main", "render"], 3, None, None),
                ],
            ),
            ("b", 4, 62, vec![(&["main", "render", "paint"], 41, Some(5), Some(2))]),
        ]
    }
}

/// Two level-1 blocks of service "shop" (pods a and b), with spans and traces.
async fn store_with_blocks() -> (Arc<dyn ObjectStore>, Vec<BlockMeta>) {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mut metas = Vec::new();
    for block in 0..2 {
        let mut builder = SegmentBuilder::default();
        for (pod, id, secs, samples) in profiles(block) {
            let mut p = ProfileBuilder::new("cpu", "nanoseconds");
            p.period("cpu", "nanoseconds", 10_000_000).time_nanos((T0_MS + secs * 1000) * 1_000_000);
            for (stack, value, s, tr) in samples {
                let mut l: Vec<(&str, String)> = Vec::new();
                if let Some(s) = s {
                    l.push(("span_id", span(s)));
                }
                if let Some(tr) = tr {
                    l.push(("trace_id", trace(tr)));
                }
                let l: Vec<(&str, &str)> = l.iter().map(|(k, v)| (*k, v.as_str())).collect();
                p.sample(stack, &[value], &l);
            }
            let profile = Arc::new(Profile::decode(&p.encode()).unwrap());
            let series = Labels::from_pairs([("__name__", "process_cpu"), ("service_name", "shop"), ("pod", pod)]);
            for sp in split(&series, profile, ProfileId([id; 16]), 0).unwrap() {
                assert!(builder.add(TENANT, &sp));
            }
        }
        let id = Ulid::from_parts(T0_MS as u64 + block as u64, 1);
        let encoded = builder
            .finish(BlockHeader { id, tenant: TENANT.into(), shard: 0, level: 1, created_by: "test".into() })
            .unwrap();
        let path = paths::object_path(TENANT, 0, 1, id);
        store.put(&path, PutPayload::from(encoded.bytes.clone())).await.unwrap();
        metas.push(encoded.meta);
    }
    (store, metas)
}

/// Serves a backend on 127.0.0.1:0 until the test's runtime ends.
async fn serve(backend: Arc<dyn QueryBackend>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(QueryBackendServer::new(backend).into_service())
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    addr
}

/// An address where nothing listens.
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

fn options() -> RemoteBackendOptions {
    RemoteBackendOptions { connect_timeout: Duration::from_secs(2), ..RemoteBackendOptions::default() }
}

fn frontend(blocks: &[BlockMeta], backend: Arc<dyn QueryBackend>) -> QueryFrontend {
    QueryFrontend::new(
        Arc::new(Blocks(blocks.to_vec())),
        backend,
        QueryLimits { max_query_lookback: Duration::from_secs(100 * 365 * 86_400), ..QueryLimits::default() },
    )
}

/// Counts the leaves a backend executes.
struct Counting<B> {
    inner: B,
    calls: AtomicUsize,
}

#[async_trait::async_trait]
impl<B: QueryBackend> QueryBackend for Counting<B> {
    async fn execute(&self, block: BlockMeta, query: Arc<LeafQuery>) -> Result<LeafResult, QueryError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.execute(block, query).await
    }
}

/// Always fails with the same error.
struct Failing(QueryError);

#[async_trait::async_trait]
impl QueryBackend for Failing {
    async fn execute(&self, _: BlockMeta, _: Arc<LeafQuery>) -> Result<LeafResult, QueryError> {
        Err(self.0.clone())
    }
}

const START: i64 = T0_MS - 1_000;
const END: i64 = T0_MS + 3_600_000;

fn stacktraces(selector: &str) -> q::SelectMergeStacktracesRequest {
    q::SelectMergeStacktracesRequest {
        profile_type_id: CPU.into(),
        label_selector: selector.into(),
        start: START,
        end: END,
        ..Default::default()
    }
}

/// Folded stacks (root;..;leaf → value) of a pprof profile.
fn folded(p: &phlox_proto::google::v1::Profile) -> BTreeMap<String, i64> {
    let name = |loc: u64| {
        let l = &p.location[(loc - 1) as usize];
        l.line
            .iter()
            .rev()
            .map(|line| p.string_table[p.function[(line.function_id - 1) as usize].name as usize].clone())
            .collect::<Vec<_>>()
            .join(";")
    };
    let mut out = BTreeMap::new();
    for s in &p.sample {
        let path: Vec<String> = s.location_id.iter().rev().map(|&l| name(l)).collect();
        *out.entry(path.join(";")).or_default() += s.value[0];
    }
    out
}

/// Runs every query kind through a frontend; the answers to compare.
async fn answers(f: &QueryFrontend) -> Vec<String> {
    let tenants = vec![TENANT.to_owned()];
    let shop = r#"{service_name="shop"}"#;
    let mut out = Vec::new();
    let flame = f.select_merge_stacktraces(&tenants, stacktraces(shop)).await.unwrap().flamegraph.unwrap();
    assert_eq!(flame.total, 227);
    let mut names = flame.names.clone();
    names.sort();
    assert_eq!(names, ["burn", "gc", "handle", "idle", "main", "paint", "render", "total"]);
    out.push(format!("{flame:?}"));
    let selected = |mut r: q::SelectMergeStacktracesRequest| async move {
        r.format = q::ProfileFormat::Flamegraph as i32;
        f.select_merge_stacktraces(&[TENANT.to_owned()], r).await.unwrap().flamegraph.unwrap()
    };
    let by_span =
        selected(q::SelectMergeStacktracesRequest { span_selector: vec![span(1), span(3)], ..stacktraces(shop) }).await;
    assert_eq!(by_span.total, 130);
    out.push(format!("{by_span:?}"));
    let by_trace =
        selected(q::SelectMergeStacktracesRequest { trace_id_selector: vec![trace(2)], ..stacktraces(shop) }).await;
    assert_eq!(by_trace.total, 141);
    out.push(format!("{by_trace:?}"));
    let by_id = selected(q::SelectMergeStacktracesRequest {
        profile_id_selector: vec![ProfileId([2; 16]).to_string()],
        ..stacktraces(shop)
    })
    .await;
    assert_eq!(by_id.total, 111);
    out.push(format!("{by_id:?}"));
    let call_site = t::StackTraceSelector {
        call_site: vec![t::Location { name: "main".into() }, t::Location { name: "handle".into() }],
        go_pgo: None,
    };
    let under = selected(q::SelectMergeStacktracesRequest {
        stack_trace_selector: Some(call_site.clone()),
        ..stacktraces(shop)
    })
    .await;
    assert_eq!(under.total, 165);
    out.push(format!("{under:?}"));

    for exemplar_type in [t::ExemplarType::Individual, t::ExemplarType::Span] {
        let series = f
            .select_series(
                &tenants,
                q::SelectSeriesRequest {
                    profile_type_id: CPU.into(),
                    label_selector: shop.into(),
                    start: START,
                    end: END,
                    group_by: vec!["pod".into()],
                    step: 60.0,
                    exemplar_type: exemplar_type as i32,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let total: f64 = series.series.iter().flat_map(|s| &s.points).map(|p| p.value).sum();
        assert_eq!(total, 227.0);
        assert_eq!(series.series.len(), 2);
        assert!(series.series.iter().flat_map(|s| &s.points).all(|p| p.exemplars.len() == 1));
        if exemplar_type == t::ExemplarType::Span {
            let e = &series.series[1].points[0].exemplars[0];
            assert_eq!((e.span_id.as_str(), e.trace_id.as_str(), e.value), (span(3).as_str(), trace(2).as_str(), 100));
        }
        out.push(format!("{series:?}"));
    }
    let under_series = f
        .select_series(
            &tenants,
            q::SelectSeriesRequest {
                profile_type_id: CPU.into(),
                label_selector: shop.into(),
                start: START,
                end: END,
                step: 3600.0,
                stack_trace_selector: Some(call_site),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(under_series.series[0].points.iter().map(|p| p.value).sum::<f64>(), 165.0);
    out.push(format!("{under_series:?}"));

    for query_type in [q::HeatmapQueryType::Individual, q::HeatmapQueryType::Span] {
        let heatmap = f
            .select_heatmap(
                &tenants,
                q::SelectHeatmapRequest {
                    profile_type_id: CPU.into(),
                    label_selector: shop.into(),
                    start: START,
                    end: END,
                    step: 60.0,
                    group_by: vec!["pod".into()],
                    query_type: query_type as i32,
                    exemplar_type: t::ExemplarType::Individual as i32,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let points: i32 = heatmap.series.iter().flat_map(|s| &s.slots).flat_map(|s| &s.counts).sum();
        assert_eq!(points, if query_type == q::HeatmapQueryType::Span { 5 } else { 4 });
        out.push(format!("{heatmap:?}"));
    }

    let profile = f
        .select_merge_profile(
            &tenants,
            q::SelectMergeProfileRequest {
                profile_type_id: CPU.into(),
                label_selector: shop.into(),
                start: START,
                end: END,
                stack_trace_selector: Some(t::StackTraceSelector {
                    call_site: vec![],
                    go_pgo: Some(t::GoPgo { keep_locations: 2, aggregate_callees: true }),
                }),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let stacks = folded(&profile);
    assert_eq!(stacks.values().sum::<i64>(), 227);
    assert_eq!(stacks.get("handle;burn"), Some(&143));
    out.push(format!("{stacks:?}"));

    let label_names = f
        .label_names(&tenants, t::LabelNamesRequest { matchers: vec![shop.into()], start: START, end: END })
        .await
        .unwrap();
    assert!(label_names.names.contains(&"pod".to_owned()));
    out.push(format!("{label_names:?}"));
    let pods = f
        .label_values(&tenants, t::LabelValuesRequest { name: "pod".into(), matchers: vec![], start: START, end: END })
        .await
        .unwrap();
    assert_eq!(pods.names, ["a", "b"]);
    out.push(format!("{pods:?}"));
    let sets = f
        .series(
            &tenants,
            q::SeriesRequest { matchers: vec![shop.into()], label_names: vec!["pod".into()], start: START, end: END },
        )
        .await
        .unwrap();
    let sets: Vec<Vec<(&str, &str)>> = sets
        .labels_set
        .iter()
        .map(|l| l.labels.iter().map(|p| (p.name.as_str(), p.value.as_str())).collect())
        .collect();
    assert_eq!(sets, [[("pod", "a")], [("pod", "b")]]);
    out.push(format!("{sets:?}"));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_backends_answer_as_the_local_one() {
    let (store, blocks) = store_with_blocks().await;
    let local = frontend(&blocks, Arc::new(LocalBackend::new(Arc::clone(&store))));
    let expected = answers(&local).await;

    let a = Arc::new(Counting { inner: LocalBackend::new(Arc::clone(&store)), calls: AtomicUsize::new(0) });
    let b = Arc::new(Counting { inner: LocalBackend::new(Arc::clone(&store)), calls: AtomicUsize::new(0) });
    let (addr_a, addr_b) = (serve(a.clone()).await, serve(b.clone()).await);
    let remote = RemoteBackend::with_options(vec![addr_a.to_string(), addr_b.to_string()], options());
    let f = frontend(&blocks, Arc::new(remote.clone()));
    let got = answers(&f).await;
    assert_eq!(got.len(), expected.len());
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g, e);
    }
    // Leaves are spread over both backends.
    let (ca, cb) = (a.calls.load(Ordering::SeqCst), b.calls.load(Ordering::SeqCst));
    assert!(ca > 0 && cb > 0, "{ca} {cb}");
    assert_eq!(remote.addresses().await.unwrap(), {
        let mut v = vec![addr_a, addr_b];
        v.sort();
        v
    });
}

/// A plan of one merge node over every block (concurrency 1): merged by the
/// backend that runs it, locally or over gRPC, with the same answers as one
/// leaf per block.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_nodes_answer_as_single_leaves() {
    let (store, blocks) = store_with_blocks().await;
    assert_eq!(blocks.len(), 2);
    let expected = answers(&frontend(&blocks, Arc::new(LocalBackend::new(Arc::clone(&store))))).await;
    let one_node = |backend: Arc<dyn QueryBackend>| {
        QueryFrontend::new(
            Arc::new(Blocks(blocks.to_vec())),
            backend,
            QueryLimits {
                max_query_lookback: Duration::from_secs(100 * 365 * 86_400),
                concurrency: 1,
                ..QueryLimits::default()
            },
        )
    };
    assert_eq!(answers(&one_node(Arc::new(LocalBackend::new(Arc::clone(&store))))).await, expected);

    let a = Arc::new(Counting { inner: LocalBackend::new(Arc::clone(&store)), calls: AtomicUsize::new(0) });
    let addr = serve(a.clone()).await;
    let remote = RemoteBackend::with_options(vec![addr.to_string()], options());
    let got = answers(&one_node(Arc::new(remote.clone()))).await;
    assert_eq!(got, expected);
    // The server read both blocks of each node as leaves.
    let leaves = a.calls.load(Ordering::SeqCst);
    assert!(leaves > 0 && leaves % 2 == 0, "{leaves}");

    // A node is one request: both blocks' samples in one answer.
    let tree = remote.execute_merge(blocks.clone(), leaf(LeafKind::Tree)).await.unwrap();
    let mut separate = LeafResult::empty(&LeafKind::Tree);
    for b in &blocks {
        separate.merge(remote.execute(b.clone(), leaf(LeafKind::Tree)).await.unwrap());
    }
    // Leaves merge in the order they finish, so compare stacks, not node order.
    let (LeafResult::Tree(t), LeafResult::Tree(s)) = (&tree, &separate) else { panic!("{tree:?}") };
    let (t, s) = (t.to_tree(), s.to_tree());
    assert_eq!(t.total(), 227);
    assert_eq!(folded_tree(&t), folded_tree(&s));

    // More leaves than a node may hold: refused, not run.
    let many = vec![blocks[0].clone(); phlox_query::MAX_MERGE_CHILDREN + 1];
    let err = remote.execute_merge(many, leaf(LeafKind::Tree)).await.unwrap_err();
    assert!(matches!(&err, QueryError::InvalidArgument(m) if m.contains("at most 32")), "{err:?}");
}

/// Folded stacks (root;..;leaf → self value) of a call tree.
fn folded_tree(t: &StackTree) -> BTreeMap<String, i64> {
    let names: Vec<&str> = t.names().collect();
    t.stacks()
        .into_iter()
        .map(|(ids, v)| (ids.iter().map(|&i| names[i as usize]).collect::<Vec<_>>().join(";"), v))
        .collect()
}

/// A backend from before merge nodes: it reads only `block` (field 1).
struct LeafOnly(LocalBackend);

#[tonic::async_trait]
impl pb::query_backend_service_server::QueryBackendService for LeafOnly {
    async fn execute(
        &self,
        request: tonic::Request<pb::ExecuteRequest>,
    ) -> Result<tonic::Response<pb::ExecuteResponse>, tonic::Status> {
        let r = request.into_inner();
        let block = r.block.ok_or_else(|| tonic::Status::invalid_argument("invalid leaf query: missing block"))?;
        let query = query_from_proto(r.query.unwrap()).unwrap();
        let result = self.0.execute(block, Arc::new(query)).await.unwrap();
        Ok(tonic::Response::new(pb::ExecuteResponse { result: Some(result_to_proto(result)) }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_nodes_fall_back_to_leaves_on_a_backend_without_them() {
    let (store, blocks) = store_with_blocks().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(pb::query_backend_service_server::QueryBackendServiceServer::new(LeafOnly(LocalBackend::new(
                Arc::clone(&store),
            ))))
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    let remote = RemoteBackend::with_options(vec![addr.to_string()], options());
    let tree = remote.execute_merge(blocks.clone(), leaf(LeafKind::Tree)).await.unwrap();
    let LeafResult::Tree(t) = &tree else { panic!("{tree:?}") };
    assert_eq!(t.to_tree().total(), 227);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_backend_is_skipped() {
    let (store, blocks) = store_with_blocks().await;
    let expected = answers(&frontend(&blocks, Arc::new(LocalBackend::new(Arc::clone(&store))))).await;
    let live = Arc::new(Counting { inner: LocalBackend::new(Arc::clone(&store)), calls: AtomicUsize::new(0) });
    let addr = serve(live.clone()).await;
    let dead = closed_port().await;
    let remote = RemoteBackend::with_options(vec![dead.to_string(), addr.to_string()], options());
    let f = frontend(&blocks, Arc::new(remote));
    // Twice: once while the dead one is fresh, once while it cools down.
    for _ in 0..2 {
        assert_eq!(answers(&f).await, expected);
    }
    assert!(live.calls.load(Ordering::SeqCst) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dns_name_with_many_addresses_works() {
    let (store, blocks) = store_with_blocks().await;
    let addr = serve(Arc::new(LocalBackend::new(Arc::clone(&store)))).await;
    // "localhost" may also resolve to ::1, where nothing listens: that
    // address fails over to 127.0.0.1.
    let remote = RemoteBackend::with_options(vec![format!("localhost:{}", addr.port())], options());
    assert!(remote.addresses().await.unwrap().contains(&addr));
    let f = frontend(&blocks, Arc::new(remote));
    let r = f.select_merge_stacktraces(&[TENANT.to_owned()], stacktraces(r#"{service_name="shop"}"#)).await.unwrap();
    assert_eq!(r.flamegraph.unwrap().total, 227);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_live_backend_is_an_error_not_an_empty_result() {
    let (_, blocks) = store_with_blocks().await;
    let tenants = vec![TENANT.to_owned()];
    let (d1, d2) = (closed_port().await, closed_port().await);
    for endpoints in [
        vec![d1.to_string(), d2.to_string()],
        vec!["no-such-host.invalid:9095".to_owned()],
        vec!["not an address".to_owned()],
        vec![],
    ] {
        let f = frontend(&blocks, Arc::new(RemoteBackend::with_options(endpoints.clone(), options())));
        let err = f.select_merge_stacktraces(&tenants, stacktraces(r#"{service_name="shop"}"#)).await.unwrap_err();
        assert!(matches!(err, QueryError::Unavailable(_)), "{endpoints:?}: {err:?}");
        let err = f
            .label_names(&tenants, t::LabelNamesRequest { matchers: vec![], start: START, end: END })
            .await
            .unwrap_err();
        assert!(matches!(err, QueryError::Unavailable(_)), "{endpoints:?}: {err:?}");
    }
}

fn leaf(kind: LeafKind) -> Arc<LeafQuery> {
    Arc::new(LeafQuery {
        selector: Default::default(),
        filter: SampleFilter::default(),
        start_nanos: 0,
        end_nanos: i64::MAX,
        kind,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_unavailable_backends_are_retried() {
    let (_, blocks) = store_with_blocks().await;
    for (error, expected_calls) in [
        (QueryError::InvalidArgument("bad query".into()), 1),
        (QueryError::Internal("corrupt block".into()), 1),
        (QueryError::Unimplemented("not here".into()), 1),
        (QueryError::Unavailable("bucket down".into()), 3),
    ] {
        let backends: Vec<Arc<Counting<Failing>>> =
            (0..3).map(|_| Arc::new(Counting { inner: Failing(error.clone()), calls: AtomicUsize::new(0) })).collect();
        let mut endpoints = Vec::new();
        for b in &backends {
            endpoints.push(serve(b.clone()).await.to_string());
        }
        let remote = RemoteBackend::with_options(endpoints, options());
        let err = remote.execute(blocks[0].clone(), leaf(LeafKind::Tree)).await.unwrap_err();
        let calls: usize = backends.iter().map(|b| b.calls.load(Ordering::SeqCst)).sum();
        assert_eq!(calls, expected_calls, "{error:?}");
        match (&error, &err) {
            (QueryError::InvalidArgument(a), QueryError::InvalidArgument(b)) => assert_eq!(a, b),
            (QueryError::Internal(_), QueryError::Internal(m)) => assert!(m.contains("corrupt block"), "{m}"),
            (QueryError::Unimplemented(_), QueryError::Unimplemented(m)) => assert!(m.contains("not here"), "{m}"),
            (QueryError::Unavailable(_), QueryError::Unavailable(m)) => {
                assert!(m.contains("bucket down") && m.contains("3 tried"), "{m}")
            }
            _ => panic!("{error:?} became {err:?}"),
        }
    }
}

/// Answers every leaf with a result of the wrong kind.
struct WrongKind;

#[async_trait::async_trait]
impl QueryBackend for WrongKind {
    async fn execute(&self, _: BlockMeta, _: Arc<LeafQuery>) -> Result<LeafResult, QueryError> {
        Ok(LeafResult::Names(["x".to_owned()].into_iter().collect()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_of_another_kind_is_rejected() {
    let (_, blocks) = store_with_blocks().await;
    let addr = serve(Arc::new(WrongKind)).await;
    let remote = RemoteBackend::with_options(vec![addr.to_string()], options());
    let err = remote.execute(blocks[0].clone(), leaf(LeafKind::Tree)).await.unwrap_err();
    assert!(matches!(&err, QueryError::Internal(m) if m.contains("another kind")), "{err:?}");
    let ok = remote.execute(blocks[0].clone(), leaf(LeafKind::LabelNames)).await.unwrap();
    assert_eq!(ok, LeafResult::Names(["x".to_owned()].into_iter().collect()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_rejects_malformed_requests() {
    let addr = serve(Arc::new(WrongKind)).await;
    let mut client =
        pb::query_backend_service_client::QueryBackendServiceClient::connect(format!("http://{addr}")).await.unwrap();
    let no_block =
        client.execute(pb::ExecuteRequest { block: None, query: Some(tree_leaf()), blocks: vec![] }).await.unwrap_err();
    assert_eq!(no_block.code(), tonic::Code::InvalidArgument);
    let mut bad = tree_leaf();
    bad.kind = None;
    let status = client
        .execute(pb::ExecuteRequest { block: Some(BlockMeta::default()), query: Some(bad), blocks: vec![] })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("missing kind"), "{}", status.message());
}

/// A backend that starts after the frontend (as the autoscaler adds one)
/// gets work once the endpoints are looked at again: the leaves of later
/// queries spread over it too, and the answers stay exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_appears_later_gets_work() {
    let (store, blocks) = store_with_blocks().await;
    let expected = answers(&frontend(&blocks, Arc::new(LocalBackend::new(Arc::clone(&store))))).await;
    let first = Arc::new(Counting { inner: LocalBackend::new(Arc::clone(&store)), calls: AtomicUsize::new(0) });
    let later = Arc::new(Counting { inner: LocalBackend::new(Arc::clone(&store)), calls: AtomicUsize::new(0) });
    let first_addr = serve(first.clone()).await;
    let later_addr = closed_port().await;
    let options = RemoteBackendOptions {
        refresh_interval: Duration::from_millis(200),
        failure_cooldown: Duration::from_millis(200),
        ..options()
    };
    let remote = RemoteBackend::with_options(vec![first_addr.to_string(), later_addr.to_string()], options);
    let f = frontend(&blocks, Arc::new(remote));
    assert_eq!(answers(&f).await, expected);
    assert_eq!(later.calls.load(Ordering::SeqCst), 0);
    // The new backend comes up on its address.
    let listener = TcpListener::bind(later_addr).await.unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(QueryBackendServer::new(later.clone()).into_service())
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = first.calls.load(Ordering::SeqCst);
    for _ in 0..3 {
        assert_eq!(answers(&f).await, expected);
    }
    let (to_first, to_later) = (first.calls.load(Ordering::SeqCst) - before, later.calls.load(Ordering::SeqCst));
    assert!(to_later > 0, "the new backend got no leaf ({to_first} went to the first)");
    assert!(to_first > 0, "the first backend still gets leaves ({to_later} went to the new one)");
}
