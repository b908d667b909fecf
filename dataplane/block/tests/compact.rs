//! Compaction's merge step: segments of many tenants → one block of one
//! tenant, checked row by row against the sources.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use phlox_block::{
    BlockError, BlockHeader, BlockReader, EncodedBlock, RowRef, SegmentBuilder, SeriesInfo, Symbols, compact,
    is_tenant_index, paths,
};
use phlox_model::{Labels, ProfileId, ProfileKey};
use phlox_pprof::testkit::{ProfileBuilder, realistic_cpu_profile};
use phlox_pprof::{Profile, SeriesProfile, split};
use phlox_proto::google::v1 as pb;
use prost::Message;
use ulid::Ulid;

const A: &str = "tenant-a";
const B: &str = "tenant-b";
const SPAN: &str = "0123456789abcdef";
const TRACE: &str = "0102030405060708090a0b0c0d0e0f10";
const SECOND: i64 = 1_000_000_000;
/// Ticks of every realistic profile: its total is TICKS × 10 ms.
const TICKS: usize = 2000;
const REALISTIC_TOTAL: i64 = TICKS as i64 * 10_000_000;
/// Total of [`handmade`].
const HANDMADE_TOTAL: i64 = 30 + 12 + 5 + 7;

fn series_of(service: &str, encoded: &[u8], id: u8, extra: &[(&str, &str)]) -> Vec<SeriesProfile> {
    let p = Arc::new(Profile::decode(encoded).unwrap());
    p.validate().unwrap();
    let mut labels = vec![("__name__", "process_cpu"), ("service_name", service)];
    labels.extend_from_slice(extra);
    split(&Labels::from_pairs(labels), p, ProfileId([id; 16]), SECOND).unwrap()
}

/// A small profile with span/trace sample labels, two label sets (two
/// series) and an inlined frame: `helper` is inlined into `handle`.
fn handmade(time_nanos: i64) -> Vec<u8> {
    let mut b = ProfileBuilder::new("cpu", "nanoseconds");
    b.period("cpu", "nanoseconds", 10_000_000).time_nanos(time_nanos);
    b.sample(&["main", "handle", "burn"], &[30], &[("endpoint", "/checkout"), ("span_id", SPAN)]);
    b.sample(&["main", "handle", "burn"], &[12], &[("endpoint", "/checkout"), ("span_id", SPAN), ("trace_id", TRACE)]);
    b.sample(&["main", "handle", "idle"], &[5], &[("endpoint", "/checkout")]);
    b.sample(&["main", "gc"], &[7], &[]);
    let mut p = b.build();
    let name = p.string_table.len() as i64;
    p.string_table.push("helper".into());
    let handle = p.string_table.iter().position(|s| s == "handle").unwrap() as i64;
    let handle_fn = p.function.iter().find(|f| f.name == handle).unwrap().id;
    let helper_fn = p.function.iter().map(|f| f.id).max().unwrap() + 1;
    p.function.push(pb::Function { id: helper_fn, name, system_name: name, filename: name, start_line: 1 });
    let loc = p.location.iter_mut().find(|l| l.line[0].function_id == handle_fn).unwrap();
    loc.line.insert(0, pb::Line { function_id: helper_fn, line: 3 });
    p.encode_to_vec()
}

fn realistic(program: u64, seed: u64, time_nanos: i64) -> Vec<u8> {
    let mut b = realistic_cpu_profile(program, seed, TICKS);
    b.time_nanos(time_nanos);
    b.encode()
}

fn header(n: u64, level: u32) -> BlockHeader {
    BlockHeader {
        id: Ulid::from_parts(1_700_000_000_000 + n, n as u128),
        tenant: String::new(),
        shard: 1,
        level,
        created_by: "test".into(),
    }
}

fn segment(n: u64, profiles: &[(&str, Vec<SeriesProfile>)]) -> EncodedBlock {
    let mut b = SegmentBuilder::default();
    for (tenant, ps) in profiles {
        for p in ps {
            assert!(b.add(tenant, p));
        }
    }
    b.finish(header(n, 0)).unwrap()
}

async fn put(store: &Arc<dyn ObjectStore>, block: &EncodedBlock) -> BlockReader {
    let m = &block.meta;
    let path = paths::object_path(&m.tenant, m.shard, m.compaction_level, Ulid::from_string(&m.id).unwrap());
    store.put(&path, PutPayload::from(block.bytes.clone())).await.unwrap();
    BlockReader::from_meta(Arc::clone(store), block.meta.clone()).unwrap()
}

/// Samples of one row folded by (root;..;leaf, span id, trace id).
type Folded = BTreeMap<(String, u64, [u8; 16]), i64>;

#[derive(Debug, Clone, PartialEq, Eq)]
struct RowView {
    dataset: String,
    time_nanos: i64,
    total: i64,
    samples: Folded,
}

/// Every row of a tenant's datasets (shadowed rows excluded), keyed by
/// (series labels, profile id); the first object with a key wins.
async fn tenant_view(readers: &[&BlockReader], tenant: &str) -> BTreeMap<(String, ProfileId), RowView> {
    let mut out = BTreeMap::new();
    for r in readers {
        for (i, ds) in r.meta().datasets.iter().enumerate() {
            if ds.tenant != tenant || is_tenant_index(ds) {
                continue;
            }
            let d = r.dataset(i).await.unwrap();
            let syms = d.symbols().await.unwrap();
            let all: Vec<u32> = (0..d.series().len() as u32).collect();
            for row in d.profiles(&all, i64::MIN, i64::MAX).await.unwrap() {
                let mut samples = Folded::new();
                for (k, (&s, &v)) in row.stack_ids.iter().zip(&row.values).enumerate() {
                    let span = row.span_ids.as_ref().map_or(0, |x| x[k]);
                    let trace = row.trace_ids.as_ref().map_or([0; 16], |x| x[k]);
                    *samples.entry((syms.function_names(s).join(";"), span, trace)).or_default() += v;
                }
                let labels = d.series()[row.series as usize].labels.to_string();
                out.entry((labels, row.id)).or_insert(RowView {
                    dataset: ds.name.clone(),
                    time_nanos: row.time_nanos,
                    total: row.total,
                    samples,
                });
            }
        }
    }
    out
}

/// Symbol rows (strings + functions + locations + stack nodes) and section
/// bytes of a tenant's data datasets.
async fn tenant_footprint(readers: &[&BlockReader], tenant: &str) -> (usize, u64) {
    let (mut rows, mut bytes) = (0, 0);
    for r in readers {
        for (i, ds) in r.meta().datasets.iter().enumerate() {
            if ds.tenant != tenant || is_tenant_index(ds) {
                continue;
            }
            let s = r.dataset(i).await.unwrap().symbols().await.unwrap();
            rows += s.strings.len() + s.functions.len() + s.location_mapping.len() + s.stack_count();
            bytes += ds.sections.iter().map(|s| s.size).sum::<u64>();
        }
    }
    (rows, bytes)
}

struct Fixture {
    store: Arc<dyn ObjectStore>,
    segments: Vec<EncodedBlock>,
    /// Dedup key of the profile shadowed in `shadowing_drops_rows`.
    shadow_key: ProfileKey,
}

/// Three segments, two tenants, services shop and cart. Profile 2 (tenant
/// A, shop) is in segments 1 and 2.
fn fixture() -> Fixture {
    let shop_dup = series_of("shop", &realistic(7, 1, 11 * SECOND), 2, &[]);
    let shadowed = series_of("shop", &handmade(30 * SECOND), 7, &[]);
    // The /checkout series of profile 7 (47 of its 54).
    let checkout = shadowed.iter().find(|p| p.labels.get("endpoint").is_some()).unwrap();
    let shadow_key = ProfileKey::new(A, checkout.fingerprint, &checkout.id);
    let s1 = segment(
        1,
        &[
            (A, series_of("shop", &handmade(10 * SECOND), 1, &[])),
            (A, shop_dup.clone()),
            (A, series_of("cart", &realistic(8, 1, 10 * SECOND), 3, &[("pod", "p1")])),
            (B, series_of("shop", &realistic(7, 2, 10 * SECOND), 4, &[])),
        ],
    );
    let s2 = segment(
        2,
        &[
            (A, series_of("shop", &realistic(7, 3, 20 * SECOND), 5, &[])),
            (A, shop_dup),
            (B, series_of("shop", &handmade(20 * SECOND), 6, &[])),
        ],
    );
    let s3 = segment(
        3,
        &[
            (A, shadowed),
            (A, series_of("shop", &realistic(7, 4, 31 * SECOND), 8, &[("pod", "p2")])),
            (A, series_of("cart", &realistic(8, 2, 30 * SECOND), 9, &[("pod", "p1")])),
            (A, series_of("cart", &realistic(8, 3, 32 * SECOND), 10, &[("pod", "p3")])),
        ],
    );
    Fixture { store: Arc::new(InMemory::new()), segments: vec![s1, s2, s3], shadow_key }
}

async fn open_all(f: &Fixture) -> Vec<BlockReader> {
    let mut out = Vec::new();
    for s in &f.segments {
        out.push(put(&f.store, s).await);
    }
    out
}

fn sum_values(view: &BTreeMap<(String, ProfileId), RowView>) -> i64 {
    view.values().flat_map(|r| r.samples.values()).sum()
}

fn names(block: &EncodedBlock) -> Vec<(&str, &str)> {
    block.meta.datasets.iter().map(|d| (d.tenant.as_str(), d.name.as_str())).collect()
}

#[tokio::test]
async fn compaction_keeps_every_row_once_with_its_stacks_and_spans() {
    let f = fixture();
    let sources = open_all(&f).await;
    let block = compact(&sources, A, header(10, 1)).await.unwrap();

    // Only tenant A: its index, then one dataset per service.
    assert_eq!(names(&block), [(A, ""), (A, "cart"), (A, "shop")]);
    assert!(is_tenant_index(&block.meta.datasets[0]));
    assert_eq!((block.meta.tenant.as_str(), block.meta.compaction_level), (A, 1));
    assert_eq!((block.meta.min_time, block.meta.max_time), (10_000, 32_000));
    let shop = &block.meta.datasets[2];
    // Series: /checkout (profiles 1 and 7), pod=p2 (8), and the one of
    // every other shop row (the rest of 1 and 7, and 2 and 5).
    assert_eq!((shop.profile_count, shop.series_count), (7, 3));
    let cart = &block.meta.datasets[1];
    assert_eq!((cart.profile_count, cart.series_count), (3, 2));
    assert_eq!(block.meta.datasets[0].series_count, 5);

    let block_reader = put(&f.store, &block).await;
    let got = tenant_view(&[&block_reader], A).await;
    let refs: Vec<&BlockReader> = sources.iter().collect();
    let want = tenant_view(&refs, A).await;
    assert_eq!(got, want);
    assert_eq!(got.len(), 10);
    // The duplicated profile is there once.
    assert_eq!(got.keys().filter(|(_, id)| *id == ProfileId([2; 16])).count(), 1);
    // Values: three realistic shop and three cart profiles plus two handmade ones;
    // the sources hold the duplicate's once more.
    let total = 6 * REALISTIC_TOTAL + 2 * HANDMADE_TOTAL;
    assert_eq!(sum_values(&got), total);
    assert_eq!(got.values().map(|r| r.total).sum::<i64>(), total);
    let mut source_sum = 0;
    for s in &sources {
        source_sum += sum_values(&tenant_view(&[s], A).await);
    }
    assert_eq!(source_sum, total + REALISTIC_TOTAL);

    // Inlined frames, span and trace ids survive.
    let checkout = got
        .iter()
        .find(|((labels, id), _)| *id == ProfileId([7; 16]) && labels.contains("/checkout"))
        .map(|(_, r)| r)
        .unwrap();
    let span = u64::from_str_radix(SPAN, 16).unwrap();
    let trace: [u8; 16] = std::array::from_fn(|i| i as u8 + 1);
    let expect: Folded = [
        (("main;handle;helper;burn".to_string(), span, [0; 16]), 30),
        (("main;handle;helper;burn".to_string(), span, trace), 12),
        (("main;handle;helper;idle".to_string(), 0, [0; 16]), 5),
    ]
    .into_iter()
    .collect();
    assert_eq!(checkout.samples, expect);
    assert_eq!((checkout.dataset.as_str(), checkout.time_nanos, checkout.total), ("shop", 30 * SECOND, 47));

    // Symbols deduplicated across the sources; the object is smaller.
    let (src_rows, src_bytes) = tenant_footprint(&refs, A).await;
    let (out_rows, _) = tenant_footprint(&[&block_reader], A).await;
    println!(
        "symbol rows {src_rows} -> {out_rows}; tenant sections {src_bytes} B -> object {} B ({:.1}%)",
        block.bytes.len(),
        100.0 * block.bytes.len() as f64 / src_bytes as f64
    );
    assert!(out_rows <= src_rows, "{out_rows} > {src_rows}");
    assert!((block.bytes.len() as u64) < src_bytes, "{} >= {src_bytes}", block.bytes.len());

    // Dedup keys: the index has none; each dataset's are its rows' keys in row order.
    assert_eq!(block.dataset_keys.len(), 3);
    assert!(block.dataset_keys[0].is_empty());
    for i in 1..3 {
        let d = block_reader.dataset(i).await.unwrap();
        let all: Vec<u32> = (0..d.series().len() as u32).collect();
        let mut keys = Vec::new();
        for row in d.profiles(&all, i64::MIN, i64::MAX).await.unwrap() {
            keys.extend_from_slice(&ProfileKey::new(A, d.series()[row.series as usize].fingerprint, &row.id).0);
        }
        assert_eq!(block.dataset_keys[i], Bytes::from(keys));
    }

    // Tenant B alone.
    let b = compact(&sources, B, header(11, 1)).await.unwrap();
    assert_eq!(names(&b), [(B, "shop")]);
    let b_reader = put(&f.store, &b).await;
    assert_eq!(tenant_view(&[&b_reader], B).await, tenant_view(&refs, B).await);
    assert_eq!(sum_values(&tenant_view(&[&b_reader], B).await), REALISTIC_TOTAL + HANDMADE_TOTAL);

    // Nothing of an unknown tenant.
    assert!(matches!(compact(&sources, "nobody", header(12, 1)).await, Err(BlockError::Empty)));
}

#[tokio::test]
async fn shadowed_rows_are_dropped() {
    let f = fixture();
    let mut sources = open_all(&f).await;
    // The metastore marks profile 7 of segment 3 as a duplicate.
    let mut meta = f.segments[2].meta.clone();
    let shop = meta.datasets.iter_mut().find(|d| d.tenant == A && d.name == "shop").unwrap();
    shop.shadowed_keys = Bytes::copy_from_slice(&f.shadow_key.0);
    sources[2] = BlockReader::from_meta(Arc::clone(&f.store), meta).unwrap();

    let block = compact(&sources, A, header(10, 1)).await.unwrap();
    let reader = put(&f.store, &block).await;
    let got = tenant_view(&[&reader], A).await;
    // Only profile 7's /checkout series had the shadowed key.
    let sevens: Vec<&String> = got.keys().filter(|(_, id)| *id == ProfileId([7; 16])).map(|(l, _)| l).collect();
    assert_eq!(sevens.len(), 1);
    assert!(!sevens[0].contains("/checkout"));
    assert_eq!(got.len(), 9);
    let refs: Vec<&BlockReader> = sources.iter().collect();
    assert_eq!(got, tenant_view(&refs, A).await);
    assert_eq!(block.meta.datasets.iter().find(|d| d.name == "shop").unwrap().profile_count, 6);
    assert_eq!(sum_values(&got), 6 * REALISTIC_TOTAL + 2 * HANDMADE_TOTAL - 47);
}

#[tokio::test]
async fn compaction_is_deterministic() {
    let f = fixture();
    let sources = open_all(&f).await;
    let one = compact(&sources, A, header(10, 1)).await.unwrap();
    let two = compact(&sources, A, header(10, 1)).await.unwrap();
    assert_eq!(one.bytes, two.bytes);
    assert_eq!(one.meta, two.meta);
    assert_eq!(one.dataset_keys, two.dataset_keys);
}

#[tokio::test]
async fn a_compacted_block_compacts_again_with_a_segment() {
    let f = fixture();
    let sources = open_all(&f).await;
    let l1 = compact(&sources, A, header(10, 1)).await.unwrap();
    let l1_reader = put(&f.store, &l1).await;
    // A later segment: a new cart profile and profile 8 again (same key).
    let s4 = segment(
        4,
        &[
            (A, series_of("cart", &realistic(8, 9, 40 * SECOND), 11, &[("pod", "p1")])),
            (A, series_of("shop", &realistic(7, 4, 31 * SECOND), 8, &[("pod", "p2")])),
            (B, series_of("cart", &realistic(8, 9, 40 * SECOND), 12, &[])),
        ],
    );
    let s4_reader = put(&f.store, &s4).await;
    let l2 = compact(&[l1_reader.clone(), s4_reader.clone()], A, header(20, 2)).await.unwrap();
    assert_eq!(names(&l2), [(A, ""), (A, "cart"), (A, "shop")]);
    assert_eq!(l2.meta.compaction_level, 2);
    assert_eq!(l2.meta.max_time, 40_000);
    let l2_reader = put(&f.store, &l2).await;
    let got = tenant_view(&[&l2_reader], A).await;
    assert_eq!(got, tenant_view(&[&l1_reader, &s4_reader], A).await);
    assert_eq!(got.len(), 11);
    assert_eq!(sum_values(&got), 7 * REALISTIC_TOTAL + 2 * HANDMADE_TOTAL);
    // Also equal to compacting every segment at once.
    let mut all = sources.clone();
    all.push(s4_reader);
    let flat = compact(&all, A, header(21, 1)).await.unwrap();
    let flat_reader = put(&f.store, &flat).await;
    assert_eq!(tenant_view(&[&flat_reader], A).await, got);
}

#[tokio::test]
async fn corrupt_sources_are_errors_not_panics() {
    let f = fixture();
    let sources = open_all(&f).await;
    // Flip bytes across tenant A's sections of segment 2: every flip is caught.
    let seg = &f.segments[1];
    let ranges: Vec<(u64, u64)> = seg
        .meta
        .datasets
        .iter()
        .filter(|d| d.tenant == A)
        .flat_map(|d| d.sections.iter().map(|s| (s.offset, s.offset + s.size)))
        .collect();
    let path = sources[1].path().clone();
    let mut tried = 0;
    for &(start, end) in &ranges {
        for pos in (start..end).step_by(((end - start) / 16).max(1) as usize) {
            let mut bad = seg.bytes.to_vec();
            bad[pos as usize] ^= 0x5a;
            f.store.put(&path, PutPayload::from(bad)).await.unwrap();
            let res = compact(&sources, A, header(10, 1)).await;
            assert!(res.is_err(), "flip at {pos} not detected");
            tried += 1;
        }
    }
    assert!(tried > 50, "{tried}");
    // A truncated object: its sections are out of range.
    f.store.put(&path, PutPayload::from(seg.bytes.slice(..seg.bytes.len() / 2))).await.unwrap();
    assert!(compact(&sources, A, header(10, 1)).await.is_err());
    // Tenant B's sections are not read when compacting tenant A.
    let mut bad = seg.bytes.to_vec();
    let b_sec = seg.meta.datasets.iter().find(|d| d.tenant == B).unwrap().sections[0];
    bad[b_sec.offset as usize] ^= 0x5a;
    f.store.put(&path, PutPayload::from(bad)).await.unwrap();
    assert!(compact(&sources, A, header(10, 1)).await.is_ok());
}

#[test]
fn hostile_imported_rows_are_errors_not_panics() {
    let symbols = Symbols {
        strings: vec![String::new()],
        stack_parent: vec![0, 0, 2],
        stack_location: vec![0, 0, 0],
        ..Default::default()
    };
    let series = [SeriesInfo {
        labels: Labels::from_pairs([("service_name", "x")]),
        fingerprint: 1,
        rows: 0..1,
        min_time_nanos: 0,
        max_time_nanos: 0,
    }];
    let row = |series: u32, stack_ids: &'static [u32], values: &'static [i64]| RowRef {
        id: ProfileId([1; 16]),
        series,
        time_nanos: 0,
        total: 1,
        stack_ids,
        values,
        span_ids: None,
        trace_ids: None,
    };
    let mut b = SegmentBuilder::default();
    let mut import = b.import_dataset("t", "x", &symbols, &series);
    for bad in [
        row(0, &[9], &[1]),    // stack out of range
        row(0, &[1], &[1]),    // location 0 of an empty location table
        row(0, &[2], &[1]),    // node its own parent
        row(1, &[0], &[1]),    // series out of range
        row(0, &[0, 0], &[1]), // values shorter than stacks
    ] {
        assert!(matches!(b.import_row(&mut import, &bad), Err(BlockError::Corrupt { .. })), "{bad:?}");
    }
    let spans = RowRef { span_ids: Some(&[1, 2]), trace_ids: Some(&[0; 16]), ..row(0, &[0], &[1]) };
    assert!(b.import_row(&mut import, &spans).is_err());
    // Nothing was added: an object of only failed imports is empty.
    assert!(b.is_empty());
    assert!(matches!(b.finish(header(1, 1)), Err(BlockError::Empty)));
}
