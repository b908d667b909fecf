//! `make bench-long-range`: flame graphs over 1 h, 1 d, 7 d and 30 d of one
//! service (100 series, a profile every 10 s: 25.9 M profiles), read from
//! rollups and from raw rows only (the same query with rollups disabled),
//! cold and warm, in one run.
//!
//! Data as compaction leaves it: 20-minute level-3 blocks of raw rows
//! (the first hour's built from pprofs, the others re-timed copies of them
//! made with compaction's row import), per whole day its rollups per hour
//! and over the day, and an hour rollup per hour of the partial first and
//! last days (made by `phlox_block::rollup::rollup`, the code compaction
//! workers run). Profiles: a realistic Go-like program (3000
//! functions, 5000 call paths up to 48 deep), 200 CPU ticks per 10 s
//! profile (a service using a fifth of a core), six variants per pod.
//!
//! Cold = a new query backend (empty symbol cache) after the kernel's page
//! cache was dropped (`/proc/sys/vm/drop_caches`, when writable); warm =
//! median of 3 on the same backend. Ranges end 17 min 13 s before the data
//! does, so every range cuts its first and last bucket. Reports stored
//! bytes of raw blocks and of rollups. Needs ~3 GB of disk under
//! `PHLOX_BENCH_DIR` (default: the system temp dir).
#![allow(clippy::unwrap_used)]

// The server's allocator and its settings: large per-dataset buffers cost
// what they cost in the server.
phlox_introspect::install_allocator!();

use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::local::LocalFileSystem;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use phlox_block::rollup::{DAY_MS, HOUR_MS, rollup};
use phlox_block::{BlockHeader, BlockReader, SegmentBuilder, paths};
use phlox_model::{Labels, ProfileId};
use phlox_pprof::testkit::Program;
use phlox_pprof::{Profile, split};
use phlox_proto::metastore::v1::*;
use phlox_proto::metastore_client::Metastore;
use phlox_proto::querier::v1 as q;
use phlox_query::{LocalBackend, QueryFrontend, QueryLimits};

const TENANT: &str = "anonymous";
const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
const SERIES: u64 = 100;
const DAYS: i64 = 30;
const STEP_MS: i64 = 10_000;
const BLOCK_MS: i64 = 20 * 60_000;
const VARIANTS: u64 = 6;
const TICKS: usize = 200;

mod common;
use common::Blocks;

/// Writes dirty pages back and drops the page cache; false when not allowed.
fn drop_page_cache() -> bool {
    let synced = std::process::Command::new("sync").status().is_ok_and(|s| s.success());
    synced && std::fs::write("/proc/sys/vm/drop_caches", "1\n").is_ok()
}

/// Builds the raw blocks and the rollups into `store` (see the top).
fn build(
    rt: &tokio::runtime::Runtime,
    store: &Arc<dyn ObjectStore>,
    (start_ms, end_ms): (i64, i64),
) -> (Vec<BlockMeta>, Vec<BlockMeta>) {
    let program = Program::new(42, 3000, 5000, 48);
    let mut base: Vec<(Labels, Arc<Profile>)> = Vec::new();
    for pod in 0..SERIES {
        for v in 0..VARIANTS {
            let bytes = program.cpu_profile(v * 1000 + pod, TICKS).encode();
            let labels = Labels::from_pairs([
                ("__name__", "process_cpu".to_owned()),
                ("service_name", "checkout".to_owned()),
                ("pod", format!("checkout-{pod:03}")),
            ]);
            base.push((labels, Arc::new(Profile::decode(&bytes).unwrap())));
        }
    }
    let base = Arc::new(base);

    // Raw blocks: the first hour's three blocks from the pprofs, every
    // later block re-timed from one of them through compaction's row import
    // (the same rows an hour later; building 25.9 M profiles from pprofs
    // would take over an hour on 2 cores).
    let build = Instant::now();
    let blocks_n = (end_ms - start_ms) / BLOCK_MS;
    let per_hour = HOUR_MS / BLOCK_MS;
    let mut templates: Vec<(BlockReader, u64)> = Vec::new();
    for k in 0..per_hour {
        let from = start_ms + k * BLOCK_MS;
        let mut b = SegmentBuilder::default();
        let mut n = 0u64;
        for t in (from..from + BLOCK_MS).step_by(STEP_MS as usize) {
            let step = (t - start_ms) / STEP_MS;
            for pod in 0..SERIES {
                let (labels, profile) = &base[(pod * VARIANTS + step as u64 % VARIANTS) as usize];
                n += profile.sample_count() as u64;
                let id = ProfileId::from_content(&[&step.to_le_bytes(), &pod.to_le_bytes()]);
                for mut sp in split(labels, Arc::clone(profile), id, 0).unwrap() {
                    sp.time_nanos = t * 1_000_000;
                    b.add(TENANT, &sp);
                }
            }
        }
        let id = ulid::Ulid::from_parts(from as u64, k as u128);
        let header = BlockHeader { id, tenant: TENANT.into(), shard: 0, level: 3, created_by: "bench".into() };
        let block = b.finish(header).unwrap();
        rt.block_on(store.put(&paths::block_path(TENANT, id), PutPayload::from(block.bytes))).unwrap();
        templates.push((BlockReader::from_meta(Arc::clone(store), block.meta).unwrap(), n));
    }
    let templates = Arc::new(templates);
    let next = Arc::new(std::sync::atomic::AtomicI64::new(per_hour));
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let (templates, next, store) = (Arc::clone(&templates), Arc::clone(&next), Arc::clone(store));
            let handle = rt.handle().clone();
            std::thread::spawn(move || {
                let mut metas: Vec<BlockMeta> = Vec::new();
                loop {
                    let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if k >= blocks_n {
                        return metas;
                    }
                    let (template, _) = &templates[(k % per_hour) as usize];
                    let shift_nanos = (k / per_hour) * HOUR_MS * 1_000_000;
                    let ds = handle.block_on(template.dataset(0)).unwrap();
                    let symbols = handle.block_on(ds.symbols()).unwrap();
                    let mut b = SegmentBuilder::default();
                    let mut import = b.import_dataset(TENANT, &ds.meta().name, &symbols, ds.series());
                    handle
                        .block_on(ds.for_each_row(|row| {
                            let moved = phlox_block::RowRef { time_nanos: row.time_nanos + shift_nanos, ..*row };
                            b.import_row(&mut import, &moved).map(|_| ())
                        }))
                        .unwrap();
                    let from = start_ms + k * BLOCK_MS;
                    let id = ulid::Ulid::from_parts(from as u64, k as u128);
                    let header =
                        BlockHeader { id, tenant: TENANT.into(), shard: 0, level: 3, created_by: "bench".into() };
                    let block = b.finish(header).unwrap();
                    handle.block_on(store.put(&paths::block_path(TENANT, id), PutPayload::from(block.bytes))).unwrap();
                    metas.push(block.meta);
                }
            })
        })
        .collect();
    let samples: u64 = templates.iter().map(|(_, n)| n).sum::<u64>() * (DAYS * 24) as u64;
    let mut raw: Vec<BlockMeta> = templates.iter().map(|(r, _)| r.meta().clone()).collect();
    raw.extend(handles.into_iter().flat_map(|h| h.join().unwrap()));
    raw.sort_by_key(|m| m.min_time);
    let raw_bytes: u64 = raw.iter().map(|m| m.size).sum();
    println!(
        "data: {DAYS} d × {SERIES} series every 10 s = {} profiles, {samples} samples, {} blocks of 20 min, \
         {:.1} MB stored (built in {:.0} s)",
        DAYS * DAY_MS / STEP_MS * SERIES as i64,
        raw.len(),
        raw_bytes as f64 / 1e6,
        build.elapsed().as_secs_f64()
    );

    // Rollups, as compaction workers leave them: each whole day from its
    // raw blocks (rows per series and hour), and the hours of the days not
    // over yet (the first and last, partial, days here).
    let made = Instant::now();
    let mut rollups: Vec<BlockMeta> = Vec::new();
    let mut n = 0u128;
    let mut put_rollup = |inputs: Vec<BlockReader>, bucket: (i64, i64), step: i64, rollups: &mut Vec<BlockMeta>| {
        n += 1;
        let id = ulid::Ulid::from_parts(bucket.0 as u64, (1 << 100) + n);
        let header = BlockHeader { id, tenant: TENANT.into(), shard: 0, level: 3, created_by: "bench".into() };
        let block = rt.block_on(rollup(&inputs, TENANT, header, bucket, step, None)).unwrap();
        rt.block_on(store.put(&paths::block_path(TENANT, id), PutPayload::from(block.bytes))).unwrap();
        rollups.push(block.meta);
    };
    let reader = |m: &BlockMeta| BlockReader::from_meta(Arc::clone(store), m.clone()).unwrap();
    let overlapping = |lo: i64, hi: i64| -> Vec<BlockReader> {
        raw.iter().filter(|m| m.min_time < hi && m.max_time >= lo).map(reader).collect()
    };
    let first_day = (start_ms + DAY_MS - 1) / DAY_MS * DAY_MS;
    let last_day_end = end_ms / DAY_MS * DAY_MS;
    for d in (first_day..last_day_end).step_by(DAY_MS as usize) {
        put_rollup(overlapping(d, d + DAY_MS), (d, d + DAY_MS), HOUR_MS, &mut rollups);
        put_rollup(overlapping(d, d + DAY_MS), (d, d + DAY_MS), DAY_MS, &mut rollups);
    }
    for h in (start_ms..end_ms).step_by(HOUR_MS as usize) {
        if h < first_day || h >= last_day_end {
            put_rollup(overlapping(h, h + HOUR_MS), (h, h + HOUR_MS), HOUR_MS, &mut rollups);
        }
    }
    let rollup_bytes: u64 = rollups.iter().map(|m| m.size).sum();
    println!(
        "rollups: {} hours, {} days per hour, {} days whole, {:.1} MB = {:.1} % of the raw blocks \
         (made in {:.0} s, as compaction would)",
        rollups.iter().filter(|m| m.rollup_end - m.rollup_start == HOUR_MS).count(),
        rollups.iter().filter(|m| m.rollup_end - m.rollup_start == DAY_MS && m.rollup_step == HOUR_MS).count(),
        rollups.iter().filter(|m| m.rollup_step == DAY_MS).count(),
        rollup_bytes as f64 / 1e6,
        100.0 * rollup_bytes as f64 / raw_bytes as f64,
        made.elapsed().as_secs_f64()
    );

    (raw, rollups)
}

/// Blocks a kept data dir already holds (raw, rollups).
fn load(rt: &tokio::runtime::Runtime, store: &Arc<dyn ObjectStore>) -> (Vec<BlockMeta>, Vec<BlockMeta>) {
    use futures::TryStreamExt as _;
    let prefix = object_store::path::Path::from(format!("blocks/{TENANT}"));
    let objects: Vec<_> = rt.block_on(store.list(Some(&prefix)).try_collect()).unwrap();
    let (mut raw, mut rollups) = (Vec::new(), Vec::new());
    for o in objects {
        let r = rt.block_on(BlockReader::open(Arc::clone(store), o.location)).unwrap();
        if r.meta().rollup_end > 0 { rollups.push(r.meta().clone()) } else { raw.push(r.meta().clone()) }
    }
    raw.sort_by_key(|m| m.min_time);
    if !raw.is_empty() {
        println!("data: {} raw blocks and {} rollups kept from an earlier run", raw.len(), rollups.len());
    }
    (raw, rollups)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    // PHLOX_BENCH_DATA=dir keeps the data there and reuses it next time.
    let base_dir = std::env::var_os("PHLOX_BENCH_DIR").map(std::path::PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::tempdir_in(base_dir).unwrap();
    let dir =
        std::env::var_os("PHLOX_BENCH_DATA").map(std::path::PathBuf::from).unwrap_or_else(|| tmp.path().to_owned());
    std::fs::create_dir_all(&dir).unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(&dir).unwrap());
    // Data ends at a UTC day boundary + 9 h (so the last day is partial).
    let end_ms: i64 = 1_795_000_000_000 / DAY_MS * DAY_MS + 9 * HOUR_MS;
    let start_ms = end_ms - DAYS * DAY_MS;
    let (raw, rollups) = match load(&rt, &store) {
        (raw, rollups) if !raw.is_empty() => (raw, rollups),
        _ => build(&rt, &store, (start_ms, end_ms)),
    };
    let mut all = raw.clone();
    all.extend(rollups);
    let metastore = Arc::new(Blocks(all));
    let frontend = |rollups: bool| {
        QueryFrontend::new(
            Arc::clone(&metastore) as Arc<dyn Metastore>,
            Arc::new(LocalBackend::new(Arc::clone(&store))),
            QueryLimits {
                max_query_lookback: Duration::from_secs(100 * 365 * 86_400),
                rollups,
                ..QueryLimits::default()
            },
        )
    };
    let tenants = vec![TENANT.to_owned()];
    let query_end = end_ms - 17 * 60_000 - 13_000;
    let flame = |f: &QueryFrontend, len: i64| -> (i64, Duration) {
        let s = Instant::now();
        let r = rt
            .block_on(f.select_merge_stacktraces(
                &tenants,
                q::SelectMergeStacktracesRequest {
                    profile_type_id: CPU.into(),
                    label_selector: r#"{service_name="checkout"}"#.into(),
                    start: query_end - len,
                    end: query_end,
                    ..Default::default()
                },
            ))
            .unwrap();
        (r.flamegraph.unwrap().total, s.elapsed())
    };
    // PHLOX_BENCH_PROFILE=<days>: only warm rollup queries (raw rows with
    // PHLOX_BENCH_ROLLUPS=0) over that many days, for a minute (to profile
    // the process from outside).
    if let Some(days) = std::env::var("PHLOX_BENCH_PROFILE").ok().and_then(|d| d.parse::<i64>().ok()) {
        let f = frontend(std::env::var("PHLOX_BENCH_ROLLUPS").map_or(true, |v| v != "0"));
        let until = Instant::now() + Duration::from_secs(60);
        let mut n = 0;
        while Instant::now() < until {
            flame(&f, days * DAY_MS);
            n += 1;
        }
        println!("{n} queries over {days} d in 60 s");
        return;
    }
    let mut dropped = true;
    println!("| range | rollups cold | rollups warm | raw rows cold | raw rows warm | warm speed-up |");
    println!("|---|---|---|---|---|---|");
    for (name, len) in [("1 h", HOUR_MS), ("1 d", DAY_MS), ("7 d", 7 * DAY_MS), ("30 d", 30 * DAY_MS)] {
        let mut row = Vec::new();
        let mut totals = Vec::new();
        for on in [true, false] {
            dropped &= drop_page_cache();
            let f = frontend(on);
            let (total, cold) = flame(&f, len);
            let mut warm: Vec<Duration> = (0..3).map(|_| flame(&f, len).1).collect();
            warm.sort();
            totals.push(total);
            row.push((cold, warm[1]));
        }
        assert_eq!(totals[0], totals[1], "{name}: rollups and raw rows give the same total");
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "| {name} | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {:.0}× |",
            ms(row[0].0),
            ms(row[0].1),
            ms(row[1].0),
            ms(row[1].1),
            row[1].1.as_secs_f64() / row[0].1.as_secs_f64()
        );
    }
    if !dropped {
        println!("(the page cache could not be dropped: cold = empty symbol cache, objects in the page cache)");
    }
}
