//! Write objects with the builder, read them back through an object store.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use phlox_block::{BlockError, BlockHeader, BlockReader, SegmentBuilder, paths};
use phlox_model::{Labels, ProfileId};
use phlox_pprof::testkit::ProfileBuilder;
use phlox_pprof::{Profile, SeriesProfile, split};
use ulid::Ulid;

fn series_profiles(service: &str, b: &ProfileBuilder, id: u8, extra: &[(&str, &str)]) -> Vec<SeriesProfile> {
    let p = Arc::new(Profile::decode(&b.encode()).unwrap());
    p.validate().unwrap();
    let mut labels = vec![("__name__", "process_cpu"), ("service_name", service)];
    labels.extend_from_slice(extra);
    split(&Labels::from_pairs(labels), p, ProfileId([id; 16]), 1_000_000_000).unwrap()
}

fn header() -> BlockHeader {
    BlockHeader {
        id: Ulid::from_parts(1_700_000_000_000, 1),
        tenant: String::new(),
        shard: 2,
        level: 0,
        created_by: "test".into(),
    }
}

async fn put(store: &Arc<dyn ObjectStore>, bytes: bytes::Bytes) -> object_store::path::Path {
    let path = paths::segment_path(2, header().id);
    store.put(&path, PutPayload::from(bytes)).await.unwrap();
    path
}

/// Folded stacks (root;..;leaf → value) of every row of a dataset.
async fn folded(reader: &BlockReader, i: usize) -> BTreeMap<String, BTreeMap<String, i64>> {
    let ds = reader.dataset(i).await.unwrap();
    let syms = ds.symbols().await.unwrap();
    let all: Vec<u32> = (0..ds.series().len() as u32).collect();
    let mut out: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for row in ds.profiles(&all, i64::MIN, i64::MAX).await.unwrap() {
        let series = ds.series()[row.series as usize].labels.to_string();
        let e = out.entry(series).or_default();
        assert_eq!(row.total, row.values.iter().sum::<i64>());
        for (s, v) in row.stack_ids.iter().zip(&row.values) {
            *e.entry(syms.function_names(*s).join(";")).or_default() += v;
        }
    }
    out
}

#[tokio::test]
async fn segments_round_trip_series_totals_and_stacks() {
    let mut a = ProfileBuilder::new("cpu", "nanoseconds");
    a.period("cpu", "nanoseconds", 10_000_000).time_nanos(5_000_000_000);
    a.sample(&["main", "handle", "burn"], &[30], &[("endpoint", "/checkout")]);
    a.sample(&["main", "handle", "burn"], &[12], &[("endpoint", "/checkout")]); // merged
    a.sample(&["main", "handle", "idle"], &[5], &[("endpoint", "/checkout"), ("span_id", "0123456789abcdef")]);
    a.sample(&["main", "gc"], &[7], &[]);
    a.sample(&["main", "gc"], &[0], &[]); // dropped
    let mut b = ProfileBuilder::new("cpu", "nanoseconds");
    b.time_nanos(6_000_000_000);
    b.sample(&["main", "handle", "burn"], &[100], &[]);

    let mut builder = SegmentBuilder::default();
    for p in series_profiles("shop", &a, 1, &[]) {
        assert!(builder.add("tenant-a", &p));
    }
    for p in series_profiles("shop", &b, 2, &[]) {
        assert!(builder.add("tenant-a", &p));
        // Same key again in the same segment: not added.
        assert!(!builder.add("tenant-a", &p));
    }
    for p in series_profiles("cart", &b, 3, &[("region", "eu")]) {
        assert!(builder.add("tenant-b", &p));
    }
    let block = builder.finish(header()).unwrap();
    let names: Vec<(&str, &str)> = block.meta.datasets.iter().map(|d| (d.tenant.as_str(), d.name.as_str())).collect();
    assert_eq!(names, [("tenant-a", "shop"), ("tenant-b", "cart")]);
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let path = put(&store, block.bytes.clone()).await;

    let reader = BlockReader::open(Arc::clone(&store), path).await.unwrap();
    assert_eq!(reader.meta(), &block.meta);
    assert_eq!(reader.meta().min_time, 5_000);
    assert_eq!(reader.meta().max_time, 6_000);
    let shop = &reader.meta().datasets[0];
    assert_eq!(shop.profile_types, ["process_cpu:cpu:nanoseconds::", "process_cpu:cpu:nanoseconds:cpu:nanoseconds"]);
    assert_eq!((shop.series_count, shop.profile_count), (3, 3));
    // Each dataset's keys: 16 bytes per row.
    assert_eq!(block.dataset_keys[0].len(), 3 * 16);

    let got = folded(&reader, 0).await;
    let expect: BTreeMap<String, BTreeMap<String, i64>> = [
        (
            r#"{__name__="process_cpu", __period_type__="cpu", __period_unit__="nanoseconds", __profile_type__="process_cpu:cpu:nanoseconds:cpu:nanoseconds", __type__="cpu", __unit__="nanoseconds", endpoint="/checkout", service_name="shop"}"#,
            vec![("main;handle;burn", 42), ("main;handle;idle", 5)],
        ),
        (
            r#"{__name__="process_cpu", __period_type__="cpu", __period_unit__="nanoseconds", __profile_type__="process_cpu:cpu:nanoseconds:cpu:nanoseconds", __type__="cpu", __unit__="nanoseconds", service_name="shop"}"#,
            vec![("main;gc", 7)],
        ),
        (
            r#"{__name__="process_cpu", __profile_type__="process_cpu:cpu:nanoseconds::", __type__="cpu", __unit__="nanoseconds", service_name="shop"}"#,
            vec![("main;handle;burn", 100)],
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(|(s, n)| (s.to_string(), n)).collect()))
    .collect();
    assert_eq!(got, expect);

    // Span ids stay on samples.
    let ds = reader.dataset(0).await.unwrap();
    let rows = ds.profiles(&[0], i64::MIN, i64::MAX).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].span_ids.as_deref(), Some(&[0, 0x0123456789abcdef][..]));
    assert_eq!(rows[0].id, ProfileId([1; 16]));
    // Time filter.
    assert!(ds.profiles(&[0, 1, 2], 0, 4_999_999_999).await.unwrap().is_empty());
    assert_eq!(ds.profiles(&[0, 1, 2], 5_500_000_000, i64::MAX).await.unwrap().len(), 1);

    // Symbols are stored once per dataset: 5 distinct frames.
    let syms = ds.symbols().await.unwrap();
    assert_eq!(syms.location_mapping.len(), 5);
    let frames = syms.resolve(rows[0].stack_ids[0]);
    assert_eq!(frames.iter().map(|f| f.function).collect::<Vec<_>>(), ["main", "handle", "burn"]);
    assert_eq!(frames[2].filename, "src/burn.rs");

    let cart = folded(&reader, 1).await;
    assert_eq!(cart.len(), 1);
    assert!(cart.keys().next().unwrap().contains(r#"region="eu""#));
}

#[tokio::test]
async fn reader_from_meta_needs_no_tail_read() {
    let mut b = ProfileBuilder::new("cpu", "nanoseconds");
    b.sample(&["a", "b"], &[3], &[]);
    let mut builder = SegmentBuilder::default();
    for p in series_profiles("svc", &b, 9, &[]) {
        builder.add("t", &p);
    }
    let block = builder.finish(header()).unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    put(&store, block.bytes.clone()).await;
    let r = BlockReader::from_meta(Arc::clone(&store), block.meta.clone()).unwrap();
    let ds = r.dataset(0).await.unwrap();
    assert_eq!(ds.series().len(), 1);
    let rows = ds.profiles(&[0], i64::MIN, i64::MAX).await.unwrap();
    assert_eq!(rows[0].total, 3);
}

/// Rows inside a range the metastore marks deleted (a pending deletion) are
/// skipped by every read path; rows outside it are kept.
#[tokio::test]
async fn rows_in_ranges_marked_deleted_are_skipped() {
    let mut builder = SegmentBuilder::default();
    // Profiles at 5 s (value 3), 6 s (value 4) and 7 s (value 5).
    for (id, (secs, value)) in [(5i64, 3i64), (6, 4), (7, 5)].into_iter().enumerate() {
        let mut b = ProfileBuilder::new("cpu", "nanoseconds");
        b.time_nanos(secs * 1_000_000_000).sample(&["a", "b"], &[value], &[]);
        for p in series_profiles("svc", &b, id as u8 + 1, &[]) {
            assert!(builder.add("t", &p));
        }
    }
    let block = builder.finish(header()).unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    put(&store, block.bytes.clone()).await;
    let mut meta = block.meta.clone();
    // Deleted: [6000 ms, 6999 ms], both ends inclusive, so 6 s goes.
    meta.datasets[0].deleted = vec![phlox_proto::metastore::v1::TimeRange { start: 6_000, end: 6_999 }];
    let ds = BlockReader::from_meta(Arc::clone(&store), meta).unwrap().dataset(0).await.unwrap();
    let rows = ds.profiles(&[0], i64::MIN, i64::MAX).await.unwrap();
    assert_eq!(rows.iter().map(|r| r.total).collect::<Vec<_>>(), vec![3, 5]);
    let totals = ds.profile_totals(&[0], i64::MIN, i64::MAX).await.unwrap();
    assert_eq!(totals.iter().map(|t| t.2).collect::<Vec<_>>(), vec![3, 5]);
    let mut values = vec![0i64; ds.symbols().await.unwrap().stack_count()];
    ds.accumulate_stack_values(&[0], i64::MIN, i64::MAX, &mut values).await.unwrap();
    assert_eq!(values.iter().sum::<i64>(), 8);
    let mut seen = Vec::new();
    ds.for_each_row(|r| {
        seen.push(r.total);
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(seen, vec![3, 5]);
}

#[tokio::test]
async fn corrupt_objects_are_rejected_without_panics() {
    let mut b = ProfileBuilder::new("cpu", "nanoseconds");
    for i in 0..50 {
        b.sample(&["a", "b", &format!("f{i}")], &[i + 1], &[]);
    }
    let mut builder = SegmentBuilder::default();
    for p in series_profiles("svc", &b, 9, &[]) {
        builder.add("t", &p);
    }
    let good = builder.finish(header()).unwrap().bytes.to_vec();
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());

    // Truncated: the trailer is gone.
    let path = put(&store, bytes::Bytes::from(good[..good.len() - 3].to_vec())).await;
    assert!(matches!(BlockReader::open(Arc::clone(&store), path).await, Err(BlockError::Corrupt { .. })));

    // Any single flipped byte: an error at open or at read, never a panic
    // and never silently different data (sections and footer are checksummed).
    let mut detected = 0;
    for pos in (0..good.len()).step_by(7) {
        let mut bad = good.clone();
        bad[pos] ^= 0x5a;
        let path = put(&store, bytes::Bytes::from(bad)).await;
        let res = async {
            let r = BlockReader::open(Arc::clone(&store), path).await?;
            let ds = r.dataset(0).await?;
            ds.profiles(&[0], i64::MIN, i64::MAX).await?;
            ds.symbols().await?;
            Ok::<_, BlockError>(())
        }
        .await;
        if res.is_err() {
            detected += 1;
        }
    }
    assert_eq!(detected, good.len().div_ceil(7));
}

#[tokio::test]
async fn objects_of_a_newer_format_version_are_refused() {
    let mut b = ProfileBuilder::new("cpu", "nanoseconds");
    b.sample(&["main", "work"], &[5], &[]);
    let mut builder = SegmentBuilder::default();
    for p in series_profiles("svc", &b, 4, &[]) {
        builder.add("t", &p);
    }
    let block = builder.finish(header()).unwrap();
    assert_eq!(block.meta.format_version, phlox_block::FORMAT_VERSION);
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let newer = phlox_block::FORMAT_VERSION + 1;

    let mut bytes = block.bytes.to_vec();
    let n = bytes.len();
    bytes[n - 8..n - 4].copy_from_slice(&newer.to_le_bytes());
    let path = put(&store, bytes::Bytes::from(bytes)).await;
    let err = BlockReader::open(Arc::clone(&store), path).await.unwrap_err();
    assert!(matches!(err, BlockError::UnsupportedVersion { version, .. } if version == newer), "{err}");

    // Metadata the metastore holds says so too: no read is attempted.
    let mut meta = block.meta.clone();
    meta.format_version = newer;
    let err = BlockReader::from_meta(store, meta).unwrap_err();
    assert!(matches!(err, BlockError::UnsupportedVersion { version, .. } if version == newer), "{err}");
}

#[tokio::test]
async fn a_tenant_with_several_datasets_gets_a_tenant_index() {
    let mut a = ProfileBuilder::new("cpu", "nanoseconds");
    a.time_nanos(5_000_000_000).sample(&["main"], &[1], &[]);
    let mut b = ProfileBuilder::new("cpu", "nanoseconds");
    b.time_nanos(7_000_000_000).sample(&["main"], &[2], &[]);
    let mut builder = SegmentBuilder::default();
    for p in series_profiles("shop", &a, 1, &[("pod", "p1")])
        .into_iter()
        .chain(series_profiles("cart", &b, 2, &[("pod", "p2")]))
        .chain(series_profiles("cart", &a, 3, &[("pod", "p3")]))
    {
        assert!(builder.add("t1", &p));
    }
    for p in series_profiles("solo", &a, 4, &[]) {
        assert!(builder.add("t2", &p));
    }
    let block = builder.finish(header()).unwrap();
    let names: Vec<(&str, &str, bool)> = block
        .meta
        .datasets
        .iter()
        .map(|d| (d.tenant.as_str(), d.name.as_str(), phlox_block::is_tenant_index(d)))
        .collect();
    assert_eq!(names, vec![("t1", "", true), ("t1", "cart", false), ("t1", "shop", false), ("t2", "solo", false)]);
    assert_eq!(block.dataset_keys.len(), 4);
    assert!(block.dataset_keys[0].is_empty());
    let index = &block.meta.datasets[0];
    assert_eq!((index.min_time, index.max_time, index.series_count), (5_000, 7_000, 3));
    assert_eq!(index.profile_types, vec!["process_cpu:cpu:nanoseconds::".to_string()]);

    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let path = put(&store, block.bytes.clone()).await;
    let reader = BlockReader::open(store, path).await.unwrap();
    let series = reader.tenant_index(0).await.unwrap();
    let got: Vec<(String, i64, i64)> =
        series.iter().map(|s| (s.labels.get("pod").unwrap().to_owned(), s.min_time_nanos, s.max_time_nanos)).collect();
    assert_eq!(
        got,
        vec![
            ("p1".into(), 5_000_000_000, 5_000_000_000),
            ("p2".into(), 7_000_000_000, 7_000_000_000),
            ("p3".into(), 5_000_000_000, 5_000_000_000),
        ]
    );
    assert!(series.iter().all(|s| s.rows.is_empty()));
    // A data dataset still opens as before; the index is not a dataset.
    assert_eq!(reader.dataset(1).await.unwrap().series().len(), 2);
    assert!(reader.dataset(0).await.is_err());
}
