//! Rules evaluated over a real level-0 compaction: segments built from
//! generated profiles with known stacks, merged by `compact_observed` with
//! the evaluator watching; totals, function-filtered values and group_by
//! splits are exact, and a profile repeated in two segments counts once.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use phlox_block::{BlockHeader, BlockReader, EncodedBlock, SegmentBuilder, compact_observed, paths};
use phlox_model::{Labels, ProfileId};
use phlox_pprof::testkit::ProfileBuilder;
use phlox_pprof::{Profile, SeriesProfile, split};
use phlox_proto::settings::v1::{RecordingRule, StacktraceFilter, StacktraceFilterFunctionName};
use phlox_proto::types::v1::LabelPair;
use phlox_recording::{CompiledRule, Evaluator};
use ulid::Ulid;

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
const SECOND: i64 = 1_000_000_000;
const T0: u64 = 1_700_000_000_000;

/// One profile: `main;handle;parse` a, `main;handle;render` b, `main;gc` c.
fn profile(id: u8, service: &str, region: &str, a: i64, b: i64, c: i64) -> Vec<SeriesProfile> {
    let mut p = ProfileBuilder::new("cpu", "nanoseconds");
    p.period("cpu", "nanoseconds", 10_000_000).time_nanos(T0 as i64 * 1_000_000);
    p.sample(&["main", "handle", "parse"], &[a], &[]);
    p.sample(&["main", "handle", "render"], &[b], &[]);
    p.sample(&["main", "gc"], &[c], &[]);
    let decoded = Arc::new(Profile::decode(&p.encode()).unwrap());
    let labels = Labels::from_pairs(vec![("__name__", "process_cpu"), ("service_name", service), ("region", region)]);
    split(&labels, decoded, ProfileId([id; 16]), SECOND).unwrap()
}

fn segment(n: u64, shard: u32, profiles: &[Vec<SeriesProfile>]) -> EncodedBlock {
    let mut b = SegmentBuilder::default();
    for ps in profiles {
        for p in ps {
            b.add("acme", p);
        }
    }
    let header = BlockHeader {
        id: Ulid::from_parts(T0 + n * 1000, u128::from(n)),
        tenant: String::new(),
        shard,
        level: 0,
        created_by: "test".into(),
    };
    b.finish(header).unwrap()
}

async fn put(store: &Arc<dyn ObjectStore>, block: &EncodedBlock) -> BlockReader {
    let m = &block.meta;
    let path = paths::object_path(&m.tenant, m.shard, m.compaction_level, Ulid::from_string(&m.id).unwrap());
    store.put(&path, PutPayload::from(block.bytes.clone())).await.unwrap();
    BlockReader::from_meta(Arc::clone(store), block.meta.clone()).unwrap()
}

fn rule(id: &str, matchers: &str, group_by: &[&str], function: Option<&str>) -> CompiledRule {
    CompiledRule::new(&RecordingRule {
        id: id.into(),
        metric_name: format!("profiles_recorded_{id}"),
        profile_type: CPU.into(),
        matchers: vec![matchers.into()],
        group_by: group_by.iter().map(|s| s.to_string()).collect(),
        external_labels: vec![LabelPair { name: "team".into(), value: "core".into() }],
        generation: 1,
        stacktrace_filter: function.map(|f| StacktraceFilter {
            function_name: Some(StacktraceFilterFunctionName { function_name: f.into(), metric_type: 0 }),
        }),
        provisioned: false,
    })
    .unwrap()
}

/// Output series as "label=value,..." → (time, value) samples.
fn outputs(e: Evaluator) -> BTreeMap<String, Vec<(i64, f64)>> {
    e.into_series()
        .into_iter()
        .map(|(labels, samples)| {
            let key = labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
            (key, samples.into_iter().collect())
        })
        .collect()
}

#[tokio::test]
async fn totals_function_filters_and_group_by_are_exact_and_each_profile_counts_once() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    // Segment 1 (shard 0): api/eu (10, 20, 5) and api/us (1, 2, 3); web/eu (100, 0, 7).
    // Segment 2 (shard 1): api/eu again with the same id (a retry: counted once) and api/eu (4, 0, 0).
    let s1 = segment(
        1,
        0,
        &[profile(1, "api", "eu", 10, 20, 5), profile(2, "api", "us", 1, 2, 3), profile(3, "web", "eu", 100, 0, 7)],
    );
    let s2 = segment(2, 1, &[profile(1, "api", "eu", 10, 20, 5), profile(4, "api", "eu", 4, 0, 0)]);
    let sources = vec![put(&store, &s1).await, put(&store, &s2).await];
    let api = format!("{{__profile_type__=\"{CPU}\", service_name=\"api\"}}");
    let mut evaluator = Evaluator::new(vec![
        rule("total", &api, &["region"], None),
        rule("handle", &format!("{{__profile_type__=\"{CPU}\"}}"), &["service_name"], Some("handle")),
        rule("other_type", "{__profile_type__=\"memory:alloc_space:bytes:space:bytes\"}", &[], None),
    ]);
    let header = BlockHeader {
        id: Ulid::from_parts(T0 + 5000, 9),
        tenant: "acme".into(),
        shard: 0,
        level: 1,
        created_by: "t".into(),
    };
    compact_observed(&sources, "acme", header, &[], &mut evaluator).await.unwrap();
    assert_eq!(evaluator.profiles, 4, "4 distinct profiles, the retried one once");
    assert_eq!(evaluator.oldest_ms, Some((T0 + 1000) as i64));
    let (t1, t2) = ((T0 + 1000) as i64, (T0 + 2000) as i64);
    let got = outputs(evaluator);
    let want: BTreeMap<String, Vec<(i64, f64)>> = [
        (
            "__name__=profiles_recorded_total,profiles_rule_id=total,profiles_shard=0,region=eu,team=core",
            vec![(t1, 35.0)],
        ),
        (
            "__name__=profiles_recorded_total,profiles_rule_id=total,profiles_shard=0,region=us,team=core",
            vec![(t1, 6.0)],
        ),
        (
            "__name__=profiles_recorded_total,profiles_rule_id=total,profiles_shard=1,region=eu,team=core",
            vec![(t2, 4.0)],
        ),
        (
            "__name__=profiles_recorded_handle,profiles_rule_id=handle,profiles_shard=0,service_name=api,team=core",
            vec![(t1, 30.0 + 3.0)],
        ),
        (
            "__name__=profiles_recorded_handle,profiles_rule_id=handle,profiles_shard=0,service_name=web,team=core",
            vec![(t1, 100.0)],
        ),
        (
            "__name__=profiles_recorded_handle,profiles_rule_id=handle,profiles_shard=1,service_name=api,team=core",
            vec![(t2, 4.0)],
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(got, want);
}
