//! `make bench`: the write path on a realistic corpus, measured.
//!
//! Corpus: one service, 100+ series (pods), CPU profiles with deep stacks
//! drawn from a shared call graph (as real programs: stacks share prefixes
//! and frames), gzipped as SDKs send them.
//!
//! Reports:
//! - ingest throughput on one core: uncompressed pprof MB/s through
//!   gunzip → decode → validate → split → segment builder → object put (local disk);
//! - stored bytes per sample, and stored bytes / gzipped pprof bytes;
//! - symbol bytes before (as the pprofs carry them) and after per-dataset dedup;
//! - segment flush latency p50/p99 (encode + put + AddBlock on a real
//!   single-voter metastore) for segments of at least 10 MB of pprof.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::local::LocalFileSystem;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use phlox_block::{BlockHeader, SegmentBuilder, paths};
use phlox_metastore::{MetastoreConfig, MetastoreNode};
use phlox_model::{Labels, ProfileId};
use phlox_pprof::testkit::Program;
use phlox_pprof::{Profile, maybe_gunzip, split};
use phlox_proto::google::v1 as pb;
use phlox_proto::metastore::v1::{AddBlockRequest, SectionKind};
use prost::Message;

struct Input {
    labels: Labels,
    gz: Vec<u8>,
    plain_len: usize,
    symbol_bytes: usize,
    samples: usize,
}

fn gzip(b: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

/// `series` pods × `rounds` profiles of 10 s each, of one service.
fn corpus(series: u64, rounds: u64, t0: i64) -> Vec<Input> {
    service_corpus("checkout", 42, series, rounds, t0)
}

/// A Go-like service: 3000 functions, 5000 call paths ~40 frames deep.
fn service_corpus(service: &str, program_seed: u64, series: u64, rounds: u64, t0: i64) -> Vec<Input> {
    let program = Program::new(program_seed, 3000, 5000, 48);
    let mut out = Vec::new();
    for round in 0..rounds {
        for pod in 0..series {
            let mut b = program.cpu_profile(round * 10_000 + pod, 1000);
            b.time_nanos(t0 + (round as i64) * 10_000_000_000);
            let p = b.build();
            let plain = p.encode_to_vec();
            let symbols = pb::Profile { sample: vec![], ..p.clone() }.encode_to_vec().len();
            let labels = Labels::from_pairs([
                ("__name__", "process_cpu".to_owned()),
                ("service_name", service.to_owned()),
                ("pod", format!("{service}-{pod:03}")),
                ("region", "eu-west-1".to_owned()),
            ]);
            out.push(Input {
                labels,
                gz: gzip(&plain),
                plain_len: plain.len(),
                symbol_bytes: symbols,
                samples: p.sample.len(),
            });
        }
    }
    out
}

fn mb(b: usize) -> f64 {
    b as f64 / 1e6
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn builder_for(inputs: &[Input]) -> SegmentBuilder {
    let mut builder = SegmentBuilder::default();
    for (i, input) in inputs.iter().enumerate() {
        let plain = maybe_gunzip(&input.gz, 64 << 20).unwrap();
        let p = Profile::decode(&plain).unwrap();
        p.validate().unwrap();
        let id = ProfileId::from_content(&[&(i as u64).to_le_bytes()]);
        for sp in split(&input.labels, Arc::new(p), id, 0).unwrap() {
            builder.add("anonymous", &sp);
        }
    }
    builder
}

/// Flushes 20 segments built from `inputs` as the segment writer does
/// (encode, put, AddBlock on a real metastore): p50, p99, object size.
fn flush_latency(
    rt: &tokio::runtime::Runtime,
    store: &Arc<dyn ObjectStore>,
    client: &Arc<dyn phlox_proto::metastore_client::Metastore>,
    inputs: &[Input],
    shard: u32,
) -> (Duration, Duration, usize) {
    let mut latencies = Vec::new();
    let mut size = 0;
    for _ in 0..20 {
        let builder = builder_for(inputs);
        let start = Instant::now();
        let id = ulid::Ulid::new();
        let block = builder
            .finish(BlockHeader { id, tenant: String::new(), shard, level: 0, created_by: "bench".into() })
            .unwrap();
        size = block.bytes.len();
        rt.block_on(async {
            store.put(&paths::segment_path(shard, id), PutPayload::from(block.bytes.clone())).await.unwrap();
            client
                .add_block(AddBlockRequest { block: Some(block.meta), dataset_keys: block.dataset_keys })
                .await
                .unwrap();
        });
        latencies.push(start.elapsed());
    }
    (percentile(&mut latencies, 0.5), percentile(&mut latencies, 0.99), size)
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bucket = dir.path().join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(&bucket).unwrap());
    let t0 = 1_795_000_000_000_000_000;

    // 1. Throughput, size and dedup on one segment of 100 series × 3 rounds.
    let inputs = corpus(100, 3, t0);
    let plain: usize = inputs.iter().map(|i| i.plain_len).sum();
    let gz: usize = inputs.iter().map(|i| i.gz.len()).sum();
    let samples: usize = inputs.iter().map(|i| i.samples).sum();
    let symbols_before: usize = inputs.iter().map(|i| i.symbol_bytes).sum();
    let mut best = Duration::MAX;
    let mut object = 0;
    let mut symbols_after = 0;
    for run in 0..5 {
        let start = Instant::now();
        let builder = builder_for(&inputs);
        let id = ulid::Ulid::new();
        let block = builder
            .finish(BlockHeader { id, tenant: String::new(), shard: 0, level: 0, created_by: "bench".into() })
            .unwrap();
        rt.block_on(store.put(&paths::segment_path(0, id), PutPayload::from(block.bytes.clone()))).unwrap();
        let elapsed = start.elapsed();
        best = best.min(elapsed);
        if run == 0 {
            object = block.bytes.len();
            symbols_after = block.meta.datasets[0]
                .sections
                .iter()
                .filter(|s| s.kind != SectionKind::Series as i32 && s.kind != SectionKind::Profiles as i32)
                .map(|s| s.size as usize)
                .sum();
        }
    }
    println!(
        "corpus: {} profiles, {} series, {samples} samples, {:.1} MB pprof ({:.1} MB gzipped)",
        inputs.len(),
        100,
        mb(plain),
        mb(gz)
    );
    println!(
        "ingest throughput (1 core, gunzip→decode→split→segment→put): {:.1} MB/s of uncompressed pprof ({:.0} profiles/s)",
        mb(plain) / best.as_secs_f64(),
        inputs.len() as f64 / best.as_secs_f64()
    );
    println!(
        "stored: {object} bytes, {:.2} bytes/sample, {:.3}× the gzipped pprof",
        object as f64 / samples as f64,
        object as f64 / gz as f64
    );
    println!(
        "symbols: {:.2} MB as carried by the pprofs → {:.3} MB after per-dataset dedup ({:.1}× smaller)",
        mb(symbols_before),
        mb(symbols_after),
        symbols_before as f64 / symbols_after.max(1) as f64
    );

    // 2. Flush latency of segments of at least 10 MB of pprof.
    let node = rt.block_on(async {
        let node =
            MetastoreNode::start(MetastoreConfig::new(1, dir.path().join("metastore"), "127.0.0.1:0")).await.unwrap();
        node.wait_for_leader(Duration::from_secs(30)).await.unwrap();
        node
    });
    let client = node.client();
    let per_segment = corpus(100, 1, t0);
    let seg_plain: usize = per_segment.iter().map(|i| i.plain_len).sum();
    let rounds = 10_000_000usize.div_ceil(seg_plain).max(1);
    let segment_inputs: Vec<Input> = (0..rounds as i64).flat_map(|r| corpus(100, 1, t0 + r * 10_000_000_000)).collect();
    let seg_plain: usize = segment_inputs.iter().map(|i| i.plain_len).sum();
    let (p50, p99, seg_size) = flush_latency(&rt, &store, &client, &segment_inputs, 1);
    println!(
        "segment flush (encode + put + AddBlock), {:.1} MB pprof → {:.2} MB object: p50 {:.1} ms, p99 {:.1} ms",
        mb(seg_plain),
        mb(seg_size),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    );

    // 3. Flush latency of 10 MB segment objects: many services (distinct
    // programs, so little dedup across datasets) in one shard's segment.
    let wide: Vec<Input> =
        (0..24u64).flat_map(|s| service_corpus(&format!("svc-{s:02}"), 1000 + s, 10, 1, t0)).collect();
    let wide_plain: usize = wide.iter().map(|i| i.plain_len).sum();
    let (p50, p99, seg_size) = flush_latency(&rt, &store, &client, &wide, 2);
    println!(
        "segment flush (encode + put + AddBlock), 24 services, {:.1} MB pprof → {:.2} MB object: p50 {:.1} ms, p99 {:.1} ms",
        mb(wide_plain),
        mb(seg_size),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    );
    rt.block_on(node.shutdown());
}
