//! `make bench`, the read path: one hour of profiles from 100 series of one
//! service (10 s interval, realistic stacks), stored as six 10-minute blocks
//! (what compaction produces) on local disk.
//!
//! Reports: flame graph latency (cold: first query of the process; warm:
//! median of 5), scan throughput (samples/s, and per core), `LabelValues`
//! and `SelectSeries` latency, and the ratio to the naive baseline: gunzip
//! and decode every pprof of the hour one by one and merge their stacks.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::local::LocalFileSystem;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use phlox_block::{BlockHeader, BlockReader, SegmentBuilder, paths};
use phlox_model::{Labels, ProfileId, StackTree};

use phlox_pprof::testkit::Program;
use phlox_pprof::{Profile, maybe_gunzip, split};
use phlox_proto::querier::v1 as q;
use phlox_proto::types::v1 as t;
use phlox_query::{LocalBackend, QueryFrontend, QueryLimits};

mod common;
use common::Blocks;

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    let program = Program::new(42, 3000, 5000, 48);
    let t0: i64 = 1_795_000_000_000_000_000;
    let series = 100u64;
    let steps = 360i64; // one hour at 10 s
    // 6 distinct profiles per pod, reused with the timestamps of the hour
    // (generation dominates otherwise; the query cost is the same).
    let variants = 6u64;
    let mut base: Vec<(Labels, Vec<u8>, Arc<Profile>)> = Vec::new();
    for pod in 0..series {
        for v in 0..variants {
            let p = program.cpu_profile(v * 1000 + pod, 1000);
            let bytes = p.encode();
            let labels = Labels::from_pairs([
                ("__name__", "process_cpu".to_owned()),
                ("service_name", "checkout".to_owned()),
                ("pod", format!("checkout-{pod:03}")),
            ]);
            base.push((labels, gzip(&bytes), Arc::new(Profile::decode(&bytes).unwrap())));
        }
    }
    let mut gz_profiles: Vec<&[u8]> = Vec::new();
    let mut metas = Vec::new();
    let mut samples_total = 0u64;
    let build = Instant::now();
    for block in 0..6i64 {
        let mut b = SegmentBuilder::default();
        for step in block * 60..(block + 1) * 60 {
            for pod in 0..series {
                let (labels, gz, profile) = &base[(pod * variants + step as u64 % variants) as usize];
                samples_total += profile.sample_count() as u64;
                let id = ProfileId::from_content(&[&step.to_le_bytes(), &pod.to_le_bytes()]);
                for mut sp in split(labels, Arc::clone(profile), id, 0).unwrap() {
                    sp.time_nanos = t0 + step * 10_000_000_000;
                    b.add("anonymous", &sp);
                }
                gz_profiles.push(gz);
            }
        }
        let id = ulid::Ulid::from_parts(1_795_000_000_000 + block as u64, 1);
        let block = b
            .finish(BlockHeader { id, tenant: "anonymous".into(), shard: 0, level: 2, created_by: "bench".into() })
            .unwrap();
        rt.block_on(store.put(&paths::block_path("anonymous", id), PutPayload::from(block.bytes.clone()))).unwrap();
        metas.push(block.meta);
    }
    let stored: u64 = metas.iter().map(|m| m.size).sum();
    println!(
        "data: 1 h × {series} series = {} profiles, {samples_total} samples, 6 blocks, {:.1} MB stored (built in {:.0} s)",
        gz_profiles.len(),
        stored as f64 / 1e6,
        build.elapsed().as_secs_f64()
    );

    let frontend = QueryFrontend::new(
        Arc::new(Blocks(metas.clone())),
        Arc::new(LocalBackend::new(Arc::clone(&store))),
        QueryLimits { max_query_lookback: Duration::from_secs(100 * 365 * 86_400), ..QueryLimits::default() },
    );
    let tenants = vec!["anonymous".to_owned()];
    let (start, end) = (t0 / 1_000_000 - 1, t0 / 1_000_000 + steps * 10_000);
    let flame = || q::SelectMergeStacktracesRequest {
        profile_type_id: CPU.into(),
        label_selector: r#"{service_name="checkout"}"#.into(),
        start,
        end,
        ..Default::default()
    };
    let time = |f: &dyn Fn() -> Duration| -> (Duration, Duration) {
        let cold = f();
        let mut warm: Vec<Duration> = (0..5).map(|_| f()).collect();
        warm.sort();
        (cold, warm[2])
    };
    let mut total = 0;
    let (cold, warm) = time(&|| {
        let s = Instant::now();
        let r = rt.block_on(frontend.select_merge_stacktraces(&tenants, flame())).unwrap();
        assert!(r.flamegraph.unwrap().total > 0);
        s.elapsed()
    });
    let r = rt.block_on(frontend.select_merge_stacktraces(&tenants, flame())).unwrap();
    total += r.flamegraph.unwrap().total;
    let per_s = samples_total as f64 / warm.as_secs_f64();
    println!(
        "flame graph over the hour (8192 nodes): cold {:.0} ms, warm {:.0} ms",
        cold.as_secs_f64() * 1e3,
        warm.as_secs_f64() * 1e3
    );
    println!("whole query: {:.1} M samples/s ({:.1} M samples/s per core, 2 cores)", per_s / 1e6, per_s / 2e6);
    // The scan stage alone on one core: fetch the profiles section, LZ4,
    // decode the needed columns, add every sample into the stack array.
    let one_core = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut datasets = Vec::new();
    for m in &metas {
        let r = BlockReader::from_meta(Arc::clone(&store), m.clone()).unwrap();
        for i in 0..m.datasets.len() {
            if phlox_block::is_tenant_index(&m.datasets[i]) {
                continue;
            }
            let ds = one_core.block_on(r.dataset(i)).unwrap();
            let stacks = one_core.block_on(ds.symbols()).unwrap().stack_count();
            datasets.push((ds, stacks));
        }
    }
    let mut scans: Vec<(Duration, u64)> = (0..5)
        .map(|_| {
            let s = Instant::now();
            let mut scanned = 0;
            for (ds, stacks) in &datasets {
                let mut values = vec![0i64; *stacks];
                let all: Vec<u32> = (0..ds.series().len() as u32).collect();
                scanned +=
                    one_core.block_on(ds.accumulate_stack_values(&all, i64::MIN, i64::MAX, &mut values)).unwrap();
            }
            (s.elapsed(), scanned)
        })
        .collect();
    scans.sort();
    let (scan_time, scanned) = scans[2];
    println!(
        "scan stage on 1 core (section read, LZ4, decode, accumulate): {:.0} ms for {scanned} stored samples: \
         {:.1} M stored samples/s per core ({:.1} M pprof samples/s)",
        scan_time.as_secs_f64() * 1e3,
        scanned as f64 / scan_time.as_secs_f64() / 1e6,
        samples_total as f64 / scan_time.as_secs_f64() / 1e6
    );
    let (lv_cold, lv_warm) = time(&|| {
        let s = Instant::now();
        let r = rt
            .block_on(
                frontend
                    .label_values(&tenants, t::LabelValuesRequest { name: "pod".into(), matchers: vec![], start, end }),
            )
            .unwrap();
        assert_eq!(r.names.len(), series as usize);
        s.elapsed()
    });
    println!(
        "LabelValues(pod): cold {:.1} ms, warm {:.1} ms",
        lv_cold.as_secs_f64() * 1e3,
        lv_warm.as_secs_f64() * 1e3
    );
    let (ss_cold, ss_warm) = time(&|| {
        let s = Instant::now();
        let r = rt
            .block_on(frontend.select_series(
                &tenants,
                q::SelectSeriesRequest {
                    profile_type_id: CPU.into(),
                    label_selector: "{}".into(),
                    start,
                    end,
                    group_by: vec!["pod".into()],
                    step: 15.0,
                    ..Default::default()
                },
            ))
            .unwrap();
        assert_eq!(r.series.len(), series as usize);
        s.elapsed()
    });
    println!(
        "SelectSeries(step 15 s, by pod): cold {:.0} ms, warm {:.0} ms",
        ss_cold.as_secs_f64() * 1e3,
        ss_warm.as_secs_f64() * 1e3
    );

    // Naive baseline: decode each pprof, merge its samples into a per-profile
    // tree by location ids, then that tree into the result by names.
    let naive = Instant::now();
    let mut tree = StackTree::default();
    for gz in &gz_profiles {
        let raw = maybe_gunzip(gz, 64 << 20).unwrap();
        let p = Profile::decode(&raw).unwrap();
        let mut local: rustc_hash::FxHashMap<(u32, u64), u32> = rustc_hash::FxHashMap::default();
        let mut nodes: Vec<(u32, u64, i64)> = vec![(0, 0, 0)];
        for i in 0..p.sample_count() {
            let mut n = 0u32;
            for &l in p.sample_location_ids(i).iter().rev() {
                let next = nodes.len() as u32;
                n = *local.entry((n, l)).or_insert_with(|| {
                    nodes.push((n, l, 0));
                    next
                });
            }
            nodes[n as usize].2 += p.sample_value(i, 0);
        }
        let mut map = vec![0u32; nodes.len()];
        for k in 1..nodes.len() {
            let (parent, loc, v) = nodes[k];
            let loc = p.location(loc).unwrap();
            let mut t = map[parent as usize];
            for line in p.lines[loc.lines.start as usize..loc.lines.end as usize].iter().rev() {
                let id = tree.name_id(p.strings.str(p.function(line.function_id).unwrap().name));
                t = tree.child(t, id);
            }
            map[k] = t;
            tree.add_self(t, v);
        }
    }
    let naive = naive.elapsed();
    assert_eq!(tree.total(), total, "the naive merge and the query agree");
    println!(
        "naive baseline (gunzip + decode + merge each pprof, 1 core): {:.0} ms; the query is {:.1}× faster",
        naive.as_secs_f64() * 1e3,
        naive.as_secs_f64() / warm.as_secs_f64()
    );
}
