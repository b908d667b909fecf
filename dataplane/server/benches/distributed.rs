//! `make bench`, part 3: distributed mode with real processes on one
//! machine. Ingest throughput and ack latency with 1 vs 2 segment writers,
//! flame-graph latency with 1 vs 2 query backends on the same data, and the
//! stored bytes after compaction vs the gzipped pprof pushed.
//!
//! Every process shares the machine's cores, so the ratios show the
//! overhead and balance of the split rather than the gain of extra nodes.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use phlox_pprof::testkit::Program;
use phlox_proto::push::v1::{PushRequest, RawProfileSeries, RawSample};
use phlox_proto::querier::v1 as q;
use phlox_proto::types::v1::LabelPair;
use prost::Message;

struct Proc {
    child: Child,
    http: String,
    grpc: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path, name: &str, config: &Path, args: &[&str]) -> Proc {
    start_on(dir, name, config, args, None)
}

/// Starts a process; with `cpu`, pinned to that core (`taskset`, from
/// util-linux, which every Debian has), as a pod with a 1-CPU limit runs:
/// the runtime and the backend's leaf slots size themselves to it.
fn start_on(dir: &Path, name: &str, config: &Path, args: &[&str], cpu: Option<usize>) -> Proc {
    let cmd = match cpu {
        Some(c) => {
            let mut t = Command::new("taskset");
            t.args(["-c", &c.to_string(), env!("CARGO_BIN_EXE_phlox")]);
            t
        }
        None => Command::new(env!("CARGO_BIN_EXE_phlox")),
    };
    let started = common::spawn(cmd, &dir.join(name), &[&["--config", config.to_str().unwrap()], args].concat());
    Proc { child: started.child, http: started.http, grpc: started.grpc }
}

/// CPU seconds a process has used.
fn cpu_secs(p: &Proc) -> f64 {
    common::cpu_secs(p.child.id())
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn bucket_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        if e.path().is_dir() {
            bucket_files(&e.path(), out);
        } else {
            out.push(e.path());
        }
    }
}

fn bucket_bytes(dir: &Path) -> u64 {
    let mut files = Vec::new();
    bucket_files(dir, &mut files);
    files.iter().map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0)).sum()
}

/// What the objects under `dir` hold, from their footers: object count and
/// bytes of profiles, series indexes (and tenant indexes), symbols
/// (strings, functions, mappings, locations, stacks) and footers.
#[derive(Default, Debug)]
struct Breakdown {
    objects: usize,
    profiles: u64,
    index: u64,
    symbols: u64,
    footers: u64,
}

fn breakdown(dir: &Path) -> Breakdown {
    use phlox_proto::metastore::v1::{BlockMeta, SectionKind};
    let mut files = Vec::new();
    bucket_files(dir, &mut files);
    let mut b = Breakdown::default();
    for f in files {
        // Only finished objects (the store writes a staging file first,
        // then renames it); a source being deleted may vanish under us.
        if f.extension().is_none_or(|e| e != "block") {
            continue;
        }
        let Ok(bytes) = std::fs::read(&f) else { continue };
        let n = bytes.len();
        let footer_len = u32::from_le_bytes(bytes[n - 16..n - 12].try_into().unwrap()) as usize;
        let meta = BlockMeta::decode(&bytes[n - 16 - footer_len..n - 16]).unwrap();
        b.objects += 1;
        b.footers += (footer_len + 16) as u64;
        for s in meta.datasets.iter().flat_map(|d| &d.sections) {
            match SectionKind::try_from(s.kind).unwrap() {
                SectionKind::Profiles => b.profiles += s.size,
                SectionKind::Series | SectionKind::TenantIndex => b.index += s.size,
                _ => b.symbols += s.size,
            }
        }
    }
    b
}

fn print_breakdown(what: &str, b: &Breakdown, gz: usize) {
    let total = b.profiles + b.index + b.symbols + b.footers;
    println!(
        "stored, {what}: {} objects, {:.2} MB = {:.3}x the {:.1} MB of gzipped pprof (profiles {:.2} MB, series {:.2} MB, symbols {:.2} MB, footers {:.2} MB)",
        b.objects,
        total as f64 / 1e6,
        total as f64 / gz as f64,
        gz as f64 / 1e6,
        b.profiles as f64 / 1e6,
        b.index as f64 / 1e6,
        b.symbols as f64 / 1e6,
        b.footers as f64 / 1e6,
    );
}

/// Closed-loop pushes: returns (req/s, MB/s of pprof, p50, p99).
async fn ingest(
    url: &str,
    corpus: Arc<Vec<(Vec<u8>, usize)>>,
    clients: usize,
    per_client: usize,
    round: usize,
) -> (f64, f64, Duration, Duration) {
    let http = reqwest::Client::new();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (http, url, corpus) = (http.clone(), url.to_owned(), Arc::clone(&corpus));
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut bytes) = (Vec::new(), 0);
            for i in 0..per_client {
                let (gz, plain) = &corpus[(c * per_client + i) % corpus.len()];
                let req = PushRequest {
                    series: vec![RawProfileSeries {
                        labels: vec![
                            LabelPair { name: "__name__".into(), value: "process_cpu".into() },
                            LabelPair { name: "service_name".into(), value: format!("svc-{}", c % 8) },
                            LabelPair { name: "pod".into(), value: format!("pod-{c}") },
                        ],
                        samples: vec![RawSample {
                            raw_profile: gz.clone().into(),
                            id: format!("{c:08x}-{round:04x}-4000-8000-{i:012x}"),
                        }],
                        annotations: vec![],
                    }],
                };
                let t0 = Instant::now();
                let r = http
                    .post(&url)
                    .header("Content-Type", "application/proto")
                    .body(req.encode_to_vec())
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success(), "{}", r.status());
                lat.push(t0.elapsed());
                bytes += plain;
            }
            (lat, bytes)
        }));
    }
    let (mut lat, mut bytes) = (Vec::new(), 0);
    for t in tasks {
        let (l, b) = t.await.unwrap();
        lat.extend(l);
        bytes += b;
    }
    let secs = start.elapsed().as_secs_f64();
    (lat.len() as f64 / secs, bytes as f64 / 1e6 / secs, percentile(&mut lat, 0.5), percentile(&mut lat, 0.99))
}

/// Warm flame-graph queries per measurement (after one that warms caches).
const QUERY_RUNS: usize = 5;

/// Median time of `runs` flame-graph queries over the range.
async fn flame_ms(base: &str, start: i64, end: i64, runs: usize) -> f64 {
    let req = q::SelectMergeStacktracesRequest {
        profile_type_id: "process_cpu:cpu:nanoseconds:cpu:nanoseconds".into(),
        label_selector: "{}".into(),
        start,
        end,
        ..Default::default()
    };
    let http = reqwest::Client::new();
    let mut times = Vec::new();
    for _ in 0..runs {
        let t0 = Instant::now();
        let r = http
            .post(format!("{base}/querier.v1.QuerierService/SelectMergeStacktraces"))
            .header("Content-Type", "application/proto")
            .body(req.encode_to_vec())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        let body = r.bytes().await.unwrap();
        assert!(q::SelectMergeStacktracesResponse::decode(body).unwrap().flamegraph.unwrap().total > 0);
        times.push(t0.elapsed());
    }
    percentile(&mut times, 0.5).as_secs_f64() * 1e3
}

fn main() {
    let program = Program::new(7, 3000, 5000, 48);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64;
    let corpus: Arc<Vec<(Vec<u8>, usize)>> = Arc::new(
        (0..128u64)
            .map(|i| {
                let mut b = program.cpu_profile(i, 1000);
                b.time_nanos(now + i as i64);
                let plain = b.encode();
                (gzip(&plain), plain.len())
            })
            .collect(),
    );
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let (clients, per_client) = (32, 8);
    for writers in [1usize, 2] {
        let dir = tempfile::tempdir().unwrap();
        let bucket = dir.path().join("bucket");
        let config = dir.path().join("phlox.yaml");
        std::fs::write(
            &config,
            format!(
                "storage:\n  backend: filesystem\n  filesystem:\n    dir: {}\nsegment_writer:\n  shards: 16\n\
                 limits:\n  ingestion_rate_mb: 0\ncompaction:\n  min_blocks: [1000, 1000, 1000]\n  max_age_seconds: [2, 30, 3600]\n\
                 \x20 poll_interval: 200ms\n  tombstone_grace: 1s\n",
                bucket.display()
            ),
        )
        .unwrap();
        let ms = start(dir.path(), "metastore", &config, &["--target", "metastore"]);
        let _ws: Vec<Proc> = (0..writers)
            .map(|i| {
                start(
                    dir.path(),
                    &format!("writer-{i}"),
                    &config,
                    &["--target", "segment-writer", "--metastore-address", &ms.grpc],
                )
            })
            .collect();
        let d =
            start(dir.path(), "distributor", &config, &["--target", "distributor", "--metastore-address", &ms.grpc]);
        let url = format!("{}/push.v1.PusherService/Push", d.http);
        let (rps, mbps, p50, p99) = rt.block_on(ingest(&url, Arc::clone(&corpus), clients, per_client, writers));
        println!(
            "ingest, {writers} segment writer(s), {clients} closed-loop clients: {rps:.1} req/s, {mbps:.1} MB/s pprof, ack p50 {:.0} ms, p99 {:.0} ms",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
        if writers == 2 {
            // Each backend gets one core of its own, as 1-CPU pods would;
            // the frontend and the rest float over every core.
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let backends: Vec<Proc> = (0..2)
                .map(|i| {
                    let cpu = (cores >= 2).then_some(i);
                    start_on(dir.path(), &format!("backend-{i}"), &config, &["--target", "query-backend"], cpu)
                })
                .collect();
            let (s, e) = (now / 1_000_000 - 60_000, now / 1_000_000 + 60_000);
            let mut times = Vec::new();
            for n in [1usize, 2] {
                let list = backends[..n].iter().map(|b| b.grpc.clone()).collect::<Vec<_>>().join(",");
                let f = start(
                    dir.path(),
                    &format!("frontend-{n}"),
                    &config,
                    &["--target", "query-frontend", "--metastore-address", &ms.grpc, "--query-backends", &list],
                );
                let cpu = |b: &[Proc]| (cpu_secs(&f), b.iter().map(cpu_secs).sum::<f64>());
                rt.block_on(flame_ms(&f.http, s, e, 1));
                let before = cpu(&backends);
                let ms_ = rt.block_on(flame_ms(&f.http, s, e, QUERY_RUNS));
                let after = cpu(&backends);
                println!(
                    "flame graph over {} profiles, {n} query backend(s) of one core each: {ms_:.0} ms (median of 5 warm); \
                     CPU per query: frontend {:.0} ms, backends {:.0} ms",
                    clients * per_client,
                    (after.0 - before.0) * 1e3 / QUERY_RUNS as f64,
                    (after.1 - before.1) * 1e3 / QUERY_RUNS as f64,
                );
                times.push(ms_);
            }
            println!("query scaling, 1 -> 2 query backends: {:.2}x faster", times[0] / times[1]);
            // More of the same services, so each dataset holds what about
            // three minutes of 8 pods pushing every 10 s give (128 profiles).
            let (bulk_clients, bulk_per_client) = (64, 12);
            let (rps, ..) = rt.block_on(ingest(&url, Arc::clone(&corpus), bulk_clients, bulk_per_client, 99));
            println!("bulk ingest for compaction: {} more profiles at {rps:.1} req/s", bulk_clients * bulk_per_client);
            let gz: usize = (0..clients * per_client)
                .chain(0..bulk_clients * bulk_per_client)
                .map(|k| corpus[k % corpus.len()].0.len())
                .sum();
            // Compaction: level-0 segments older than 2 s merge per tenant
            // into level-1 blocks (64 segments per job); once the oldest of
            // those is 30 s old, every level-1 block is done and they merge
            // into one level-2 block.
            let segments = breakdown(&bucket.join("segments"));
            print_breakdown("level-0 segments", &segments, gz);
            let w = start(
                dir.path(),
                "compactor",
                &config,
                &["--target", "compaction-worker", "--metastore-address", &ms.grpc],
            );
            // Done: no segment left and one block (sources are deleted 1 s
            // after their job); at most 3 minutes.
            for _ in 0..1800 {
                if bucket_bytes(&bucket.join("segments")) == 0 && breakdown(&bucket.join("blocks")).objects == 1 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let blocks = breakdown(&bucket.join("blocks"));
            print_breakdown("after compaction", &blocks, gz);
            println!(
                "symbol bytes: {:.2} MB in level-0 segments -> {:.2} MB after compaction ({:.0}x smaller)",
                segments.symbols as f64 / 1e6,
                blocks.symbols as f64 / 1e6,
                segments.symbols as f64 / blocks.symbols.max(1) as f64
            );
            drop(w);
        }
    }
}
