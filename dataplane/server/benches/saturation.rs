//! `make bench`, part 4: the real `phlox` binary (release) under load it
//! must shed or absorb without starving anything else.
//!
//! 1. Saturating ingest: 32 clients push large requests (8 profiles of a
//!    realistic program each) back to back for 20 s, while a prober asks
//!    `/ready` every 10 ms and a small query runs every 250 ms. Printed:
//!    `/ready` latency p50/p99/max, the queries' latency and whether all
//!    completed, the ingest rate and the server's CPU time.
//! 2. Refusals cost no decode: a tenant over its ingestion rate sends pushes
//!    of the same compressed size (~64 KB) but very different uncompressed
//!    sizes (64 KB of noise, 64 MB of zeros). Printed: the server's CPU time
//!    per refused request for each, next to the CPU time of a `/ready` (the
//!    floor of an HTTP request).
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use phlox_pprof::testkit::Program;
use phlox_proto::push::v1::{PushRequest, RawProfileSeries, RawSample};
use phlox_proto::querier::v1 as q;
use phlox_proto::types::v1::LabelPair;
use prost::Message;

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// The server's user + system CPU time so far.
fn cpu_time(pid: u32) -> Duration {
    Duration::from_secs_f64(common::cpu_secs(pid))
}

fn start(args: &[&str]) -> (Child, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let started = common::spawn(Command::new(env!("CARGO_BIN_EXE_phlox")), &dir.path().join("data"), args);
    (started.child, started.http, dir)
}

fn stop(mut child: Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
}

fn push_body(profiles: Vec<Vec<u8>>, service: &str) -> Vec<u8> {
    let req = PushRequest {
        series: vec![RawProfileSeries {
            labels: vec![
                LabelPair { name: "__name__".into(), value: "process_cpu".into() },
                LabelPair { name: "service_name".into(), value: service.into() },
            ],
            samples: profiles.into_iter().map(|p| RawSample { raw_profile: p.into(), id: String::new() }).collect(),
            annotations: vec![],
        }],
    };
    gzip(&req.encode_to_vec())
}

async fn post_push(http: &reqwest::Client, base: &str, body: Vec<u8>) -> u16 {
    http.post(format!("{base}/push.v1.PusherService/Push"))
        .header("Content-Type", "application/proto")
        .header("Content-Encoding", "gzip")
        .body(body)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

async fn saturation() {
    let (child, base, _dir) = start(&["--ingestion-rate-mb", "0"]);
    let pid = child.id();
    let program = Program::new(7, 3000, 5000, 48);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64;
    // 32 distinct large requests: 8 profiles of 1000 ticks each.
    let bodies: Arc<Vec<(Vec<u8>, usize)>> = Arc::new(
        (0..32u64)
            .map(|r| {
                let profiles: Vec<Vec<u8>> = (0..8u64)
                    .map(|i| {
                        let mut b = program.cpu_profile(r * 8 + i, 1000);
                        b.time_nanos(now + (r * 8 + i) as i64);
                        gzip(&b.encode())
                    })
                    .collect();
                let plain: usize = profiles.iter().map(|p| phlox_pprof::gunzip_capped(p, 1 << 26).unwrap().len()).sum();
                (push_body(profiles, "load"), plain)
            })
            .collect(),
    );
    let http = reqwest::Client::new();
    // Something to query.
    assert_eq!(post_push(&http, &base, bodies[0].0.clone()).await, 200);
    let stop_flag = Arc::new(AtomicBool::new(false));
    let (acked, refused, bytes) =
        (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let cpu0 = cpu_time(pid);
    let t0 = Instant::now();
    let mut pushers = Vec::new();
    for c in 0..32usize {
        let (http, base, bodies, stop_flag) = (http.clone(), base.clone(), Arc::clone(&bodies), Arc::clone(&stop_flag));
        let (acked, refused, bytes) = (Arc::clone(&acked), Arc::clone(&refused), Arc::clone(&bytes));
        pushers.push(tokio::spawn(async move {
            let mut i = c;
            while !stop_flag.load(Ordering::Relaxed) {
                let (body, plain) = &bodies[i % bodies.len()];
                match post_push(&http, &base, body.clone()).await {
                    200 => {
                        acked.fetch_add(1, Ordering::Relaxed);
                        bytes.fetch_add(*plain as u64, Ordering::Relaxed);
                    }
                    _ => {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
                i += 32;
            }
        }));
    }
    let prober = {
        let (http, base, stop_flag) = (http.clone(), base.clone(), Arc::clone(&stop_flag));
        tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut failed = 0;
            while !stop_flag.load(Ordering::Relaxed) {
                let t = Instant::now();
                match http.get(format!("{base}/ready")).send().await {
                    Ok(r) if r.status().as_u16() == 200 => lat.push(t.elapsed()),
                    _ => failed += 1,
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (lat, failed)
        })
    };
    let querier = {
        let (http, base, stop_flag) = (http.clone(), base.clone(), Arc::clone(&stop_flag));
        tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut failed = 0;
            while !stop_flag.load(Ordering::Relaxed) {
                let now_ms = now / 1_000_000;
                let req = q::SelectMergeStacktracesRequest {
                    profile_type_id: "process_cpu:cpu:nanoseconds:cpu:nanoseconds".into(),
                    label_selector: "{service_name=\"load\"}".into(),
                    start: now_ms - 3_600_000,
                    end: now_ms + 3_600_000,
                    max_nodes: Some(16),
                    ..Default::default()
                };
                let t = Instant::now();
                let r = http
                    .post(format!("{base}/querier.v1.QuerierService/SelectMergeStacktraces"))
                    .header("Content-Type", "application/proto")
                    .body(req.encode_to_vec())
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().as_u16() == 200 => lat.push(t.elapsed()),
                    _ => failed += 1,
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            (lat, failed)
        })
    };
    tokio::time::sleep(Duration::from_secs(20)).await;
    stop_flag.store(true, Ordering::Relaxed);
    for p in pushers {
        p.await.unwrap();
    }
    let elapsed = t0.elapsed();
    let cpu = cpu_time(pid).saturating_sub(cpu0);
    let (mut ready, ready_failed) = prober.await.unwrap();
    let (mut queries, queries_failed) = querier.await.unwrap();
    println!(
        "saturating ingest, 32 clients × 8-profile pushes for {:.0} s: {} acked ({:.1} MB/s uncompressed pprof), {} refused (429), server CPU {:.1} s ({:.2} cores)",
        elapsed.as_secs_f64(),
        acked.load(Ordering::Relaxed),
        bytes.load(Ordering::Relaxed) as f64 / 1e6 / elapsed.as_secs_f64(),
        refused.load(Ordering::Relaxed),
        cpu.as_secs_f64(),
        cpu.as_secs_f64() / elapsed.as_secs_f64()
    );
    println!(
        "  /ready: {} answered, {} failed; p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ready.len(),
        ready_failed,
        percentile(&mut ready, 0.5).as_secs_f64() * 1e3,
        percentile(&mut ready, 0.99).as_secs_f64() * 1e3,
        ready.iter().max().unwrap().as_secs_f64() * 1e3
    );
    if queries.is_empty() {
        println!("  small query: none completed, {queries_failed} failed");
    } else {
        println!(
            "  small query every 250 ms: {} completed, {} failed; p50 {:.0} ms, max {:.0} ms",
            queries.len(),
            queries_failed,
            percentile(&mut queries, 0.5).as_secs_f64() * 1e3,
            queries.iter().max().unwrap().as_secs_f64() * 1e3
        );
    }
    stop(child);
}

async fn refusals() {
    // 1 KB/s with a 2 KB burst: after the first request the tenant is over its rate.
    let config = tempfile::tempdir().unwrap();
    let file = config.path().join("phlox.yaml");
    std::fs::write(&file, "limits:\n  ingestion_rate_mb: 0.001\n  ingestion_burst_size_mb: 0.002\n").unwrap();
    let (child, base, _dir) = start(&["--config", file.to_str().unwrap()]);
    let pid = child.id();
    let http = reqwest::Client::new();
    let mut rng = phlox_pprof::testkit::Rng::new(3);
    let noise: Vec<u8> = (0..64 << 10).map(|_| rng.next_u64() as u8).collect();
    let small = push_body(vec![noise], "refused");
    let big = push_body(vec![vec![0u8; 64 << 20]], "refused");
    println!(
        "refused pushes: small {} KB compressed / 64 KB uncompressed, big {} KB compressed / 64 MB uncompressed",
        small.len() >> 10,
        big.len() >> 10
    );
    let _ = post_push(&http, &base, small.clone()).await; // spends the burst
    let n = 2000;
    for (what, body) in [("small", &small), ("big", &big)] {
        let cpu0 = cpu_time(pid);
        let mut codes = std::collections::BTreeMap::new();
        for _ in 0..n {
            *codes.entry(post_push(&http, &base, body.clone()).await).or_insert(0) += 1;
        }
        let cpu = cpu_time(pid).saturating_sub(cpu0);
        println!(
            "  {what}: {n} requests, statuses {codes:?}, server CPU {:.1} µs per request",
            cpu.as_secs_f64() * 1e6 / n as f64
        );
    }
    let cpu0 = cpu_time(pid);
    for _ in 0..n {
        let _ = http.get(format!("{base}/ready")).send().await.unwrap().bytes().await;
    }
    let cpu = cpu_time(pid).saturating_sub(cpu0);
    println!("  floor: GET /ready, server CPU {:.1} µs per request", cpu.as_secs_f64() * 1e6 / n as f64);
    stop(child);
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let only = std::env::var("SATURATION_PART").unwrap_or_default();
    rt.block_on(async {
        if only.is_empty() || only == "load" {
            saturation().await;
        }
        if only.is_empty() || only == "refusals" {
            refusals().await;
        }
    });
}
