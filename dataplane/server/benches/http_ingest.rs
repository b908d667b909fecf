//! `make bench`, part 2: the real `phlox` binary under concurrent clients.
//!
//! For Push (Connect, gzip) and `/ingest?format=pprof`, at 1, 8 and 64
//! concurrent clients: requests/s, MB/s of uncompressed pprof, the ack
//! latency p50/p99 with the default 500 ms segment window, and MB of pprof
//! per CPU-second of the server process (from /proc). In the same run, two
//! decode floors: gunzipping and decoding the same bodies in this process on
//! one thread, with a generic protobuf parse (the generated types) and with
//! Phlox's zero-copy decoder; the ratios say how far the server is from the
//! work no ingest path avoids. The server's peak RSS and the best figure of
//! each API against the target close the report.
//!
//! Two client models: closed loop (each client sends its next request as
//! soon as the previous one is acked: the throughput figure), and agents
//! (each client waits a random 0–1 s between requests, as independent SDKs
//! pushing on their own schedules do: the latency figure). A closed-loop
//! client always arrives just after a segment was cut, so it waits a whole
//! window; agents arrive at random points of it.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use phlox_pprof::testkit::Program;
use phlox_proto::push::v1::{PushRequest, RawProfileSeries, RawSample};
use phlox_proto::types::v1::LabelPair;
use prost::Message;

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

struct Sample {
    gz: Vec<u8>,
    plain: usize,
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

#[derive(Clone, Copy)]
enum Api {
    Push,
    Ingest,
}

#[allow(clippy::too_many_arguments)]
async fn run(
    api: Api,
    base: &str,
    server_pid: u32,
    floors: (f64, f64),
    corpus: Arc<Vec<Sample>>,
    clients: usize,
    per_client: usize,
    agents: bool,
    round: usize,
) -> f64 {
    let http = reqwest::Client::new();
    let start = Instant::now();
    let cpu_before = common::cpu_secs(server_pid);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (http, base, corpus) = (http.clone(), base.to_owned(), Arc::clone(&corpus));
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut bytes = 0usize;
            let mut retries = 0usize;
            let mut rng = phlox_pprof::testkit::Rng::new(c as u64 + 1);
            for i in 0..per_client {
                if agents {
                    tokio::time::sleep(Duration::from_millis(rng.below(1000))).await;
                }
                let s = &corpus[(c * per_client + i) % corpus.len()];
                let pod = format!("pod-{c}");
                let t0 = Instant::now();
                // A 429 (the decode queue full: closed-loop clients all send
                // right after a segment is acked) is retried after a pause,
                // as SDKs and Alloy back off; the latency includes it.
                loop {
                    let status = match api {
                        Api::Push => {
                            let req = PushRequest {
                                series: vec![RawProfileSeries {
                                    labels: vec![
                                        LabelPair { name: "__name__".into(), value: "process_cpu".into() },
                                        LabelPair { name: "service_name".into(), value: "bench".into() },
                                        LabelPair { name: "pod".into(), value: pod.clone() },
                                    ],
                                    samples: vec![RawSample {
                                        raw_profile: s.gz.clone().into(),
                                        id: uuid_like(round, c, i),
                                    }],
                                    annotations: vec![],
                                }],
                            };
                            http.post(format!("{base}/push.v1.PusherService/Push"))
                                .header("Content-Type", "application/proto")
                                .body(req.encode_to_vec())
                                .send()
                                .await
                                .unwrap()
                                .status()
                        }
                        Api::Ingest => http
                            .post(format!(
                                "{base}/ingest?format=pprof&name=bench.ingest{{pod={pod}}}&from={}&spyName=gospy",
                                1_000_000 + round * 100_000 + c * per_client + i
                            ))
                            .header("Content-Type", "application/octet-stream")
                            .body(s.gz.clone())
                            .send()
                            .await
                            .unwrap()
                            .status(),
                    };
                    if status.as_u16() == 429 {
                        retries += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                    assert!(status.is_success(), "{status}");
                    break;
                }
                lat.push(t0.elapsed());
                bytes += s.plain;
            }
            (lat, bytes, retries)
        }));
    }
    let mut lat = Vec::new();
    let (mut bytes, mut retries) = (0, 0);
    for t in tasks {
        let (l, b, r) = t.await.unwrap();
        lat.extend(l);
        bytes += b;
        retries += r;
    }
    let secs = start.elapsed().as_secs_f64();
    // Acked means flushed and indexed: the work of these requests is done.
    let cpu = common::cpu_secs(server_pid) - cpu_before;
    let (p50, p99) = (percentile(&mut lat, 0.5), percentile(&mut lat, 0.99));
    let name = match api {
        Api::Push => "Push (Connect, proto)",
        Api::Ingest => "/ingest?format=pprof",
    };
    let model = if agents { "agents" } else { "closed loop" };
    let per_cpu = bytes as f64 / 1e6 / cpu.max(0.01);
    println!(
        "{name:<22} {model:<11} {clients:>3} clients: {:>7.1} req/s, {:>6.1} MB/s pprof, ack p50 {:>4.0} ms, p99 {:>4.0} ms, \
         {per_cpu:>6.1} MB/CPU-s ({:.2}x / {:.2}x the floors), {retries} retried 429s",
        lat.len() as f64 / secs,
        bytes as f64 / 1e6 / secs,
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        per_cpu / floors.0,
        per_cpu / floors.1,
    );
    per_cpu
}

/// Which decoder a floor uses.
#[derive(Clone, Copy)]
enum Floor {
    /// The generated protobuf types (`google.v1.Profile`, prost): what any
    /// protobuf library's full parse costs (the "C zlib + upb").
    Generic,
    /// Phlox's own zero-copy decoder (strings borrowed, no per-sample
    /// allocation): the tighter floor.
    Phlox,
}

/// MB of uncompressed pprof per CPU-second to gunzip and decode the corpus
/// (best of three passes, CPU time of this thread).
fn decode_floor(corpus: &[Sample], floor: Floor) -> f64 {
    let thread_cpu = || {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
        let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |x| x.1).split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
        (ticks(11) + ticks(12)) / 100.0
    };
    let bytes: usize = corpus.iter().map(|s| s.plain).sum();
    let mut best = 0f64;
    for _ in 0..3 {
        let before = thread_cpu();
        let wall = Instant::now();
        for s in corpus {
            let raw = phlox_pprof::maybe_gunzip(&s.gz, 64 << 20).unwrap();
            let samples = match floor {
                Floor::Generic => phlox_proto::google::v1::Profile::decode(raw.as_ref()).unwrap().sample.len(),
                Floor::Phlox => phlox_pprof::Profile::decode(&raw).unwrap().sample_count(),
            };
            std::hint::black_box(samples);
        }
        // Tick resolution is 10 ms: fall back to wall time on a short pass.
        let cpu = (thread_cpu() - before).max(wall.elapsed().as_secs_f64().min(0.01));
        best = best.max(bytes as f64 / 1e6 / cpu);
    }
    best
}

/// A unique profile id per (round, client, request): nothing is deduplicated.
fn uuid_like(round: usize, c: usize, i: usize) -> String {
    format!("{c:08x}-{round:04x}-4000-8000-{i:012x}")
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    // PHLOX_BENCH_SERVER_ARGS: more flags for the server (experiments).
    let extra = std::env::var("PHLOX_BENCH_SERVER_ARGS").unwrap_or_default();
    let mut args = vec!["--ingestion-rate-mb", "0"];
    args.extend(extra.split_whitespace());
    let started = common::spawn(Command::new(env!("CARGO_BIN_EXE_phlox")), &dir.path().join("data"), &args);
    let (mut child, base) = (started.child, started.http);

    let program = Program::new(7, 3000, 5000, 48);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64;
    let corpus: Arc<Vec<Sample>> = Arc::new(
        (0..256u64)
            .map(|i| {
                let mut b = program.cpu_profile(i, 1000);
                b.time_nanos(now + i as i64);
                let plain = b.encode();
                Sample { gz: gzip(&plain), plain: plain.len() }
            })
            .collect(),
    );
    let avg: f64 = corpus.iter().map(|s| s.plain as f64).sum::<f64>() / corpus.len() as f64;
    println!(
        "profiles: {:.0} KB uncompressed, {:.0} KB gzipped on average; segment window 500 ms",
        avg / 1e3,
        corpus.iter().map(|s| s.gz.len() as f64).sum::<f64>() / corpus.len() as f64 / 1e3
    );
    let generic = decode_floor(&corpus, Floor::Generic);
    let phlox = decode_floor(&corpus, Floor::Phlox);
    println!("decode floors (gunzip + decode, this process, one thread), MB of pprof per CPU-s:");
    println!("  generic protobuf parse (google.v1.Profile, prost): {generic:.1}");
    println!("  phlox's zero-copy decoder:                         {phlox:.1}");
    let pid = child.id();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let mut best = Vec::new();
    rt.block_on(async {
        let mut round = 0;
        for api in [Api::Push, Api::Ingest] {
            let mut api_best = 0f64;
            for agents in [false, true] {
                for (clients, per_client) in [(1, 20), (8, 20), (64, 8)] {
                    round += 1;
                    let per_cpu =
                        run(api, &base, pid, (generic, phlox), Arc::clone(&corpus), clients, per_client, agents, round)
                            .await;
                    api_best = api_best.max(per_cpu);
                }
            }
            best.push((api, api_best));
        }
    });
    // The targets (#22): >= 100 MB of pprof per CPU-s, and >= 0.5x
    // the generic decode floor, at the best load.
    for (api, per_cpu) in best {
        let name = match api {
            Api::Push => "Push",
            Api::Ingest => "/ingest",
        };
        let meets = per_cpu >= 100.0 && per_cpu >= 0.5 * generic;
        println!(
            "{name:<8} best {per_cpu:.1} MB/CPU-s = {:.2}x the generic floor, {:.2}x phlox's decoder: {}",
            per_cpu / generic,
            per_cpu / phlox,
            if meets { "meets >= 100 MB/CPU-s and >= 0.5x" } else { "MISSES >= 100 MB/CPU-s and >= 0.5x" }
        );
    }
    println!("server peak RSS: {:.0} MB", common::peak_rss_bytes(pid) as f64 / 1e6);
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
}
