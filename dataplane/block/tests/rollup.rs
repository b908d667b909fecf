//! Rollups: a bucket's rows summed per series, checked against sums the
//! test works out from its own inputs.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use phlox_block::rollup::{DAY_MS, HOUR_MS, rollup};
use phlox_block::{BlockHeader, BlockReader, EncodedBlock, SegmentBuilder, is_tenant_index, paths};
use phlox_model::{Labels, ProfileId};
use phlox_pprof::testkit::ProfileBuilder;
use phlox_pprof::{Profile, split};
use ulid::Ulid;

const T: &str = "tenant";
const MS: i64 = 1_000_000;

/// One profile of `pod` at `time_ms`: `main;work` = `work`, `main;gc` = 7.
fn profile(pod: &str, time_ms: i64, work: i64, n: u8) -> Vec<phlox_pprof::SeriesProfile> {
    let mut b = ProfileBuilder::new("cpu", "nanoseconds");
    b.period("cpu", "nanoseconds", 10_000_000).time_nanos(time_ms * MS);
    b.sample(&["main", "work"], &[work], &[]);
    b.sample(&["main", "gc"], &[7], &[]);
    let p = Arc::new(Profile::decode(&b.encode()).unwrap());
    let labels = Labels::from_pairs([("__name__", "process_cpu"), ("service_name", "api"), ("pod", pod)]);
    let mut out = split(&labels, p, ProfileId([n; 16]), 0).unwrap();
    for sp in &mut out {
        sp.time_nanos = time_ms * MS;
    }
    out
}

fn header(n: u64, level: u32) -> BlockHeader {
    BlockHeader {
        id: Ulid::from_parts(1_700_000_000_000 + n, n as u128),
        tenant: T.into(),
        shard: 0,
        level,
        created_by: "test".into(),
    }
}

async fn put(store: &Arc<dyn ObjectStore>, block: &EncodedBlock) -> BlockReader {
    let m = &block.meta;
    let path = paths::object_path(&m.tenant, m.shard, m.compaction_level, Ulid::from_string(&m.id).unwrap());
    store.put(&path, PutPayload::from(block.bytes.clone())).await.unwrap();
    BlockReader::from_meta(Arc::clone(store), block.meta.clone()).unwrap()
}

/// (pod, time ms, stack "leaf;..;root") → value, and (pod, time) → total, of every row.
async fn rows(r: &BlockReader) -> (BTreeMap<(String, i64, String), i64>, BTreeMap<(String, i64), i64>) {
    let (mut values, mut totals) = (BTreeMap::new(), BTreeMap::new());
    for (i, ds) in r.meta().datasets.iter().enumerate() {
        if is_tenant_index(ds) {
            continue;
        }
        let d = r.dataset(i).await.unwrap();
        let syms = d.symbols().await.unwrap();
        let all: Vec<u32> = (0..d.series().len() as u32).collect();
        for row in d.profiles(&all, i64::MIN, i64::MAX).await.unwrap() {
            let pod = d.series()[row.series as usize].labels.get("pod").unwrap().to_owned();
            let t = row.time_nanos / MS;
            *totals.entry((pod.clone(), t)).or_insert(0) += row.total;
            for (&s, &v) in row.stack_ids.iter().zip(&row.values) {
                // Leaf first, as the test's samples list them.
                let names = syms.function_names(s);
                *values.entry((pod.clone(), t, names.join(";"))).or_insert(0) += v;
            }
        }
    }
    (values, totals)
}

#[tokio::test]
async fn an_hour_rollup_sums_each_series_rows_of_the_hour_and_nothing_else() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let h = 500 * HOUR_MS; // a UTC hour boundary
    // Block 1: pod a at h+10 s (work 100) and h+20 s (work 30); pod b at h+5 s (work 1).
    // Block 2: pod a at h+1 h-1 ms (work 5, last ms of the hour) and h+1 h (work 1000, next hour).
    let mut b1 = SegmentBuilder::default();
    for sp in [profile("a", h + 10_000, 100, 1), profile("a", h + 20_000, 30, 2), profile("b", h + 5_000, 1, 3)]
        .into_iter()
        .flatten()
    {
        b1.add(T, &sp);
    }
    let mut b2 = SegmentBuilder::default();
    for sp in [profile("a", h + HOUR_MS - 1, 5, 4), profile("a", h + HOUR_MS, 1000, 5)].into_iter().flatten() {
        b2.add(T, &sp);
    }
    let r1 = put(&store, &b1.finish(header(1, 2)).unwrap()).await;
    let r2 = put(&store, &b2.finish(header(2, 3)).unwrap()).await;
    let hour = rollup(&[r1.clone(), r2.clone()], T, header(3, 3), (h, h + HOUR_MS), HOUR_MS, None).await.unwrap();
    let m = &hour.meta;
    assert_eq!((m.rollup_start, m.rollup_end, m.min_time, m.max_time), (h, h + HOUR_MS, h, h + HOUR_MS - 1));
    let ids = vec![r1.meta().id.clone(), r2.meta().id.clone()];
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(m.rollup_covers, sorted);
    let api = m.datasets.iter().find(|d| d.name == "api").unwrap();
    assert_eq!(api.rollup_covers, sorted);
    let hour_reader = put(&store, &hour).await;
    let (values, totals) = rows(&hour_reader).await;
    // One row per pod, dated at the hour's start: a = 100 + 30 + 5 of work
    // and 3 × 7 of gc; b = 1 and 7. The row of the next hour is not in it.
    let want: BTreeMap<(String, i64, String), i64> = [
        (("a".into(), h, "main;work".into()), 135),
        (("a".into(), h, "main;gc".into()), 21),
        (("b".into(), h, "main;work".into()), 1),
        (("b".into(), h, "main;gc".into()), 7),
    ]
    .into_iter()
    .collect();
    assert_eq!(values, want);
    let want_totals: BTreeMap<(String, i64), i64> =
        [(("a".into(), h), 135 + 21), (("b".into(), h), 8)].into_iter().collect();
    assert_eq!(totals, want_totals);

    // A day from the same raw blocks: one row per series and hour, in one
    // object (the next hour holds block 2's last row only).
    let day_start = h - h % DAY_MS;
    let day = rollup(&[r1.clone(), r2.clone()], T, header(5, 3), (day_start, day_start + DAY_MS), HOUR_MS, None)
        .await
        .unwrap();
    assert_eq!(day.meta.rollup_covers, sorted);
    assert_eq!((day.meta.rollup_start, day.meta.rollup_end), (day_start, day_start + DAY_MS));
    let (values, totals) = rows(&put(&store, &day).await).await;
    let want: BTreeMap<(String, i64, String), i64> = [
        (("a".into(), h, "main;work".into()), 135),
        (("a".into(), h, "main;gc".into()), 21),
        (("b".into(), h, "main;work".into()), 1),
        (("b".into(), h, "main;gc".into()), 7),
        (("a".into(), h + HOUR_MS, "main;work".into()), 1000),
        (("a".into(), h + HOUR_MS, "main;gc".into()), 7),
    ]
    .into_iter()
    .collect();
    assert_eq!(values, want);
    assert_eq!(totals.values().sum::<i64>(), 135 + 21 + 8 + 1007);
    // A rollup's rows may be summed again (an hour's rows into a wider
    // bucket): they keep their hour.
    let again = rollup(&[hour_reader], T, header(6, 3), (day_start, day_start + DAY_MS), HOUR_MS, None).await.unwrap();
    assert_eq!(again.meta.rollup_covers, sorted, "a rollup input passes on its covers");
    let (values, _) = rows(&put(&store, &again).await).await;
    assert_eq!(values.len(), 4);
    assert!(values.keys().all(|(_, t, _)| *t == h));
    // The whole day in one row per series, dated at the day's start.
    let sums = rollup(&[r1, r2], T, header(7, 3), (day_start, day_start + DAY_MS), DAY_MS, None).await.unwrap();
    assert_eq!(sums.meta.rollup_step, DAY_MS);
    let (values, _) = rows(&put(&store, &sums).await).await;
    let want: BTreeMap<(String, i64, String), i64> = [
        (("a".into(), day_start, "main;work".into()), 1135),
        (("a".into(), day_start, "main;gc".into()), 28),
        (("b".into(), day_start, "main;work".into()), 1),
        (("b".into(), day_start, "main;gc".into()), 7),
    ]
    .into_iter()
    .collect();
    assert_eq!(values, want);
}

#[tokio::test]
async fn a_bucket_without_rows_is_empty() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mut b = SegmentBuilder::default();
    for sp in profile("a", 10_000, 1, 1) {
        b.add(T, &sp);
    }
    let r = put(&store, &b.finish(header(1, 2)).unwrap()).await;
    let err = rollup(&[r], T, header(2, 3), (HOUR_MS, 2 * HOUR_MS), HOUR_MS, None).await.unwrap_err();
    assert!(matches!(err, phlox_block::BlockError::Empty), "{err}");
}
