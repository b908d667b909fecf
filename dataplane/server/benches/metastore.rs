//! `make bench`, the metastore at fleet scale (issue 23): three `phlox
//! --target=metastore` processes (real Raft over gRPC, real redb), driven
//! with AddBlock traffic shaped like segment writers and with a compaction
//! worker, for hours of block time as fast as the voters commit.
//!
//! Traffic: 8 shards, each flushing one level-0 segment every 500 ms of
//! block time (one round = 8 concurrent AddBlocks, as writers flush
//! together); 4 tenants × 25 services spread over the shards (a block holds
//! the datasets of its shard, plus one tenant index per tenant); the rows of
//! a round (rate × 0.5 s) spread evenly over the blocks and their datasets,
//! each with a distinct 16-byte dedup key. Compaction workers poll jobs
//! and completes each with the merged metadata, so the index holds what a
//! real cluster's does. Block time starts at the wall clock and runs ahead
//! of it, so no block is "old" for the compaction planner.
//!
//! Reported per voter every 30 minutes of block time and at the end: RSS,
//! blocks and dedup keys in its state, the size of its last snapshot and
//! how long building it took; AddBlock latency p50/p99 (client side, over
//! the interval), and log bytes written per AddBlock. Then each voter in turn
//! is SIGKILLed and restarted: the time until it is ready again (snapshot
//! load + log replay + catching up).
//!
//! `PHLOX_BENCH_METASTORE_RATES` (profile rows/s, comma-separated; default
//! `2000,20000`), `PHLOX_BENCH_METASTORE_HOURS` (default 2) and
//! `PHLOX_BENCH_METASTORE_COMPACTORS` (compaction workers, default 4) change
//! the load; a run stops early (and says so) when a voter's RSS passes
//! `PHLOX_BENCH_METASTORE_RSS_CAP_MB` (default 4000).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use phlox_proto::metastore::v1::{
    AddBlockRequest, BlockMeta, CompleteCompactionJobRequest, Dataset, PollCompactionJobRequest, Section,
};
use phlox_proto::metastore_client::{GrpcMetastore, Metastore};

const SHARDS: u32 = 8;
const TENANTS: usize = 4;
const SERVICES_PER_TENANT: usize = 25;
const ROUND_MS: i64 = 500;
const PROFILE_TYPES: [&str; 6] = [
    "process_cpu:cpu:nanoseconds:cpu:nanoseconds",
    "process_cpu:samples:count:cpu:nanoseconds",
    "memory:alloc_objects:count:space:bytes",
    "memory:alloc_space:bytes:space:bytes",
    "memory:inuse_objects:count:space:bytes",
    "memory:inuse_space:bytes:space:bytes",
];

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One metastore process.
struct Voter {
    id: u64,
    dir: PathBuf,
    grpc: String,
    http: String,
    child: std::process::Child,
}

impl Voter {
    fn start(id: u64, root: &Path, config: &Path, port: u16) -> (u64, PathBuf, String, common::Starting) {
        let dir = root.join(format!("voter-{id}"));
        let grpc = format!("127.0.0.1:{port}");
        let starting = common::start(
            Command::new(env!("CARGO_BIN_EXE_phlox")),
            &dir,
            &[
                "--config",
                config.to_str().unwrap(),
                "--target",
                "metastore",
                "--metastore-node-id",
                &id.to_string(),
                "--grpc-listen-address",
                &grpc,
            ],
        );
        (id, dir, grpc, starting)
    }

    fn wait((id, dir, grpc, starting): (u64, PathBuf, String, common::Starting)) -> Voter {
        let started = starting.wait();
        Voter { id, dir, grpc, http: started.http, child: started.child }
    }

    async fn metrics(&self, http: &reqwest::Client) -> String {
        match http.get(format!("{}/metrics", self.http)).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    async fn ready(&self, http: &reqwest::Client) -> bool {
        http.get(format!("{}/ready", self.http)).send().await.is_ok_and(|r| r.status().is_success())
    }
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.split([' ', '{']).next() == Some(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// The datasets a shard's segment holds: its services, by index.
fn shard_services(shard: u32) -> Vec<usize> {
    (0..TENANTS * SERVICES_PER_TENANT).filter(|s| *s as u32 % SHARDS == shard).collect()
}

fn sections(base: u64, rows: u64) -> Vec<Section> {
    (1..=7)
        .map(|kind| Section {
            kind,
            offset: base + kind as u64 * 4096,
            size: 512 + rows * 40 + kind as u64,
            crc32: (base as u32).wrapping_mul(2_654_435_761).wrapping_add(kind as u32),
        })
        .collect()
}

fn dataset(tenant: usize, service: usize, t0: i64, t1: i64, rows: u64) -> Dataset {
    Dataset {
        tenant: format!("tenant-{tenant}"),
        name: format!("service-{service:03}"),
        min_time: t0,
        max_time: t1,
        sections: sections(service as u64 * 65_536, rows),
        profile_types: PROFILE_TYPES.iter().map(|s| (*s).to_owned()).collect(),
        series_count: rows.div_ceil(6) as u32,
        profile_count: rows,
        sample_count: rows * 300,
        ..Default::default()
    }
}

fn block_id(time_ms: i64, n: u64) -> String {
    ulid::Ulid::from_parts(time_ms as u64, u128::from(n) | (0xbe_u128 << 72)).to_string()
}

/// The AddBlock of shard `shard` in round `round`, with `rows` keys drawn
/// from `next_key`.
fn segment(shard: u32, round: u64, start_ms: i64, rows: u64, next_key: &AtomicU64) -> AddBlockRequest {
    let t1 = start_ms + (round as i64 + 1) * ROUND_MS;
    let t0 = t1 - ROUND_MS;
    let services = shard_services(shard);
    let per = rows / services.len() as u64;
    let extra = rows % services.len() as u64;
    let mut datasets = Vec::new();
    let mut dataset_keys = Vec::new();
    for (i, s) in services.iter().enumerate() {
        let n = per + u64::from((i as u64) < extra);
        datasets.push(dataset(s / SERVICES_PER_TENANT, *s, t0, t1, n));
        let mut keys = Vec::with_capacity(n as usize * 16);
        for _ in 0..n {
            let k = next_key.fetch_add(1, Ordering::Relaxed);
            keys.extend_from_slice(&xxhash_rust::xxh3::xxh3_128(&k.to_le_bytes()).to_le_bytes());
        }
        dataset_keys.push(Bytes::from(keys));
    }
    // One tenant index per tenant present (no keys).
    for tenant in 0..TENANTS {
        datasets.push(Dataset {
            tenant: format!("tenant-{tenant}"),
            min_time: t0,
            max_time: t1,
            sections: sections(1 << 30, 0)[..1].to_vec(),
            ..Default::default()
        });
        dataset_keys.push(Bytes::new());
    }
    AddBlockRequest {
        block: Some(BlockMeta {
            format_version: 1,
            id: block_id(t1, round * u64::from(SHARDS) + u64::from(shard)),
            tenant: String::new(),
            shard,
            compaction_level: 0,
            min_time: t0,
            max_time: t1,
            size: 64 * 1024 + rows * 4096,
            created_by: format!("segment-writer-{}", shard / 2),
            datasets,
            ..Default::default()
        }),
        dataset_keys,
    }
}

/// The merged metadata a compaction worker would write for `sources`.
fn merged(job: &phlox_proto::metastore::v1::CompactionJob, n: u64) -> BlockMeta {
    let mut datasets: std::collections::BTreeMap<(String, String), Dataset> = Default::default();
    for b in &job.sources {
        for d in &b.datasets {
            let e = datasets.entry((d.tenant.clone(), d.name.clone())).or_insert_with(|| Dataset {
                min_time: d.min_time,
                max_time: d.max_time,
                ..d.clone()
            });
            e.min_time = e.min_time.min(d.min_time);
            e.max_time = e.max_time.max(d.max_time);
            e.series_count = e.series_count.max(d.series_count);
            e.profile_count += d.profile_count;
            e.sample_count += d.sample_count;
        }
    }
    let min_time = job.sources.iter().map(|b| b.min_time).min().unwrap_or(0);
    let max_time = job.sources.iter().map(|b| b.max_time).max().unwrap_or(0);
    if job.rollup_end > 0 {
        // A rollup: the bucket's sums, covering the raw sources (or, for a
        // day, what its hour rollups cover).
        let covers_of = |b: &BlockMeta| -> Vec<String> {
            if b.rollup_end > 0 { b.rollup_covers.clone() } else { vec![b.id.clone()] }
        };
        let mut covers: Vec<String> = job.sources.iter().flat_map(covers_of).collect();
        covers.sort();
        covers.dedup();
        let mut by_name: std::collections::BTreeMap<String, Dataset> = Default::default();
        for b in &job.sources {
            for d in b.datasets.iter().filter(|d| d.max_time >= job.rollup_start && d.min_time < job.rollup_end) {
                let e = by_name.entry(d.name.clone()).or_insert_with(|| Dataset {
                    name: d.name.clone(),
                    min_time: job.rollup_start,
                    max_time: job.rollup_end - 1,
                    sections: d.sections.clone(),
                    profile_types: d.profile_types.clone(),
                    ..Default::default()
                });
                e.rollup_covers.extend(if b.rollup_end > 0 { d.rollup_covers.clone() } else { vec![b.id.clone()] });
                e.rollup_covers.sort();
                e.rollup_covers.dedup();
            }
        }
        return BlockMeta {
            format_version: 1,
            id: block_id(min_time.max(0), (1 << 41) + n),
            tenant: job.tenant.clone(),
            compaction_level: job.output_level,
            min_time: job.rollup_start,
            max_time: job.rollup_end - 1,
            size: 64 * 1024,
            created_by: "compaction-worker-bench".into(),
            datasets: by_name.into_values().collect(),
            rollup_start: job.rollup_start,
            rollup_end: job.rollup_end,
            rollup_covers: covers,
            rollup_step: job.rollup_step,
            ..Default::default()
        };
    }
    BlockMeta {
        format_version: 1,
        id: block_id(min_time, (1 << 40) + n),
        tenant: job.tenant.clone(),
        shard: job.sources.first().map_or(0, |b| b.shard),
        compaction_level: job.output_level,
        min_time,
        max_time,
        size: job.sources.iter().map(|b| b.size).sum(),
        created_by: "compaction-worker-bench".into(),
        datasets: datasets.into_values().collect(),
        ..Default::default()
    }
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

async fn report(voters: &[Voter], http: &reqwest::Client, label: &str) -> u64 {
    let mut max_rss = 0;
    for v in voters {
        let m = v.metrics(http).await;
        let rss = common::rss_bytes(v.child.id());
        max_rss = max_rss.max(rss);
        println!(
            "  {label} voter {} ({}): RSS {:>6.1} MB, blocks {:>6}, dedup keys {:>9}, last snapshot {:>7.2} MB built in {:.2} s, \
             log {:.0} bytes/entry over {} entries",
            v.id,
            if metric(&m, "phlox_metastore_raft_state") == 2.0 { "leader" } else { "follower" },
            rss as f64 / 1e6,
            metric(&m, "phlox_metastore_blocks"),
            metric(&m, "phlox_metastore_dedup_keys"),
            metric(&m, "phlox_metastore_snapshot_bytes") / 1e6,
            metric(&m, "phlox_metastore_snapshot_build_seconds"),
            metric(&m, "phlox_metastore_log_bytes_total") / metric(&m, "phlox_metastore_log_entries_total").max(1.0),
            metric(&m, "phlox_metastore_log_entries_total"),
        );
    }
    max_rss
}

async fn wait_ready(voter: &Voter, http: &reqwest::Client, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if voter.ready(http).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

async fn run(rate: u64, hours: f64, rss_cap: u64, compactors: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let peers: Vec<String> = ports.iter().enumerate().map(|(i, p)| format!("\"{}=127.0.0.1:{p}\"", i + 1)).collect();
    let config = tmp.path().join("phlox.yaml");
    std::fs::write(
        &config,
        format!(
            "storage:\n  backend: filesystem\n  filesystem:\n    dir: {}\nmetastore:\n  peers: [{}]\n",
            tmp.path().join("bucket").display(),
            peers.join(", ")
        ),
    )
    .unwrap();
    let starting: Vec<_> = (0..3).map(|i| Voter::start(i as u64 + 1, tmp.path(), &config, ports[i])).collect();
    let mut voters: Vec<Voter> = starting.into_iter().map(Voter::wait).collect();
    let http = reqwest::Client::new();
    for v in &voters {
        assert!(wait_ready(v, &http, Duration::from_secs(60)).await, "voter {} not ready", v.id);
    }
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", voters[0].grpc)).unwrap().connect_lazy();
    let client: Arc<dyn Metastore> = Arc::new(GrpcMetastore::new(channel));

    let rounds = (hours * 3_600_000.0 / ROUND_MS as f64) as u64;
    let rows_per_block = rate * ROUND_MS as u64 / 1000 / u64::from(SHARDS);
    let start_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64 + 60_000;
    println!(
        "{rate} profile rows/s: {SHARDS} shards, {rows_per_block} rows per segment, {} datasets, {hours} h of block time \
         ({rounds} rounds, {} AddBlocks), {compactors} compaction workers",
        TENANTS * SERVICES_PER_TENANT,
        rounds * u64::from(SHARDS)
    );

    // The compaction workers.
    let stop = Arc::new(AtomicBool::new(false));
    let compactions = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..compactors)
        .map(|w: u64| {
            let (client, stop, compactions) = (Arc::clone(&client), Arc::clone(&stop), Arc::clone(&compactions));
            tokio::spawn(async move {
                let mut n = w << 32;
                while !stop.load(Ordering::Relaxed) {
                    let poll = client
                        .poll_compaction_job(PollCompactionJobRequest {
                            worker: format!("bench-{w}"),
                            ..Default::default()
                        })
                        .await;
                    match poll.ok().and_then(|r| r.job) {
                        Some(job) => {
                            n += 1;
                            let block = merged(&job, n);
                            let done = client
                                .complete_compaction_job(CompleteCompactionJobRequest {
                                    id: job.id.clone(),
                                    token: job.token,
                                    block: Some(block),
                                })
                                .await;
                            if done.is_ok() {
                                compactions.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        // Workers poll every 2 s when idle; block time runs
                        // about ten times faster than the clock here.
                        None => tokio::time::sleep(Duration::from_millis(200)).await,
                    }
                }
            })
        })
        .collect();

    let next_key = Arc::new(AtomicU64::new(u64::from(rate as u32) << 40));
    let checkpoint = (1_800_000 / ROUND_MS) as u64;
    let mut latencies = Vec::new();
    let mut all_latencies = Vec::new();
    let wall = Instant::now();
    let mut interval_start = Instant::now();
    let mut shadowed = 0u64;
    let mut stopped = None;
    for round in 0..rounds {
        let calls = (0..SHARDS).map(|shard| {
            let request = segment(shard, round, start_ms, rows_per_block, &next_key);
            let client = Arc::clone(&client);
            async move {
                let t = Instant::now();
                let r = client.add_block(request).await.unwrap();
                (t.elapsed(), r.shadowed_profiles)
            }
        });
        for (elapsed, s) in futures::future::join_all(calls).await {
            latencies.push(elapsed);
            shadowed += s;
        }
        if (round + 1) % checkpoint == 0 || round + 1 == rounds {
            let block_minutes = (round + 1) as f64 * ROUND_MS as f64 / 60_000.0;
            let n = latencies.len();
            let (p50, p99) = (percentile(&mut latencies, 0.5), percentile(&mut latencies, 0.99));
            println!(
                " block time {:>3.0} min (wall {:>5.1} s): {n} AddBlocks in {:.1} s, p50 {:.1} ms, p99 {:.1} ms; \
                 {} compactions so far",
                block_minutes,
                wall.elapsed().as_secs_f64(),
                interval_start.elapsed().as_secs_f64(),
                p50.as_secs_f64() * 1e3,
                p99.as_secs_f64() * 1e3,
                compactions.load(Ordering::Relaxed),
            );
            let max_rss = report(&voters, &http, "  ").await;
            all_latencies.append(&mut latencies);
            interval_start = Instant::now();
            if max_rss > rss_cap {
                stopped = Some(block_minutes);
                break;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.await;
    }
    assert_eq!(shadowed, 0, "every key is new: nothing may be shadowed");
    let (p50, p99) = (percentile(&mut all_latencies, 0.5), percentile(&mut all_latencies, 0.99));
    let adds = all_latencies.len() as f64;
    let leader_metrics = {
        let mut text = String::new();
        for v in &voters {
            let m = v.metrics(&http).await;
            if metric(&m, "phlox_metastore_raft_state") == 2.0 {
                text = m;
            }
        }
        text
    };
    println!(
        " result at {rate} rows/s: AddBlock p50 {:.1} ms, p99 {:.1} ms over {adds} calls; leader's log {:.0} bytes per AddBlock \
         (every entry's bytes / AddBlocks); {}",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        metric(&leader_metrics, "phlox_metastore_log_bytes_total") / adds.max(1.0),
        match stopped {
            Some(m) => format!("STOPPED at {m:.0} min of block time: a voter's RSS passed {} MB", rss_cap / 1_000_000),
            None => "ran to the end".into(),
        }
    );

    // Restart each voter in turn: SIGKILL, start again on its data, time to ready.
    for i in 0..voters.len() {
        let v = &mut voters[i];
        let _ = v.child.kill();
        let _ = v.child.wait();
        let id = v.id;
        let t = Instant::now();
        let restarted = Voter::wait(Voter::start(id, tmp.path(), &config, ports[i]));
        let process_ready = t.elapsed();
        assert_eq!(restarted.dir, voters[i].dir);
        voters[i] = restarted;
        let ok = wait_ready(&voters[i], &http, Duration::from_secs(300)).await;
        let m = voters[i].metrics(&http).await;
        println!(
            " restart of voter {id}: started in {:.2} s, ready (applied the log, in the group) in {:.2} s{}; \
             snapshot {:.2} MB",
            process_ready.as_secs_f64(),
            t.elapsed().as_secs_f64(),
            if ok { "" } else { " — NOT READY within 300 s" },
            metric(&m, "phlox_metastore_snapshot_bytes") / 1e6,
        );
    }
    for mut v in voters {
        let _ = Command::new("kill").args(["-TERM", &v.child.id().to_string()]).status();
        let _ = v.child.wait();
    }
}

fn main() {
    let rates: Vec<u64> = std::env::var("PHLOX_BENCH_METASTORE_RATES")
        .unwrap_or_else(|_| "2000,20000".into())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    let hours: f64 = env_or("PHLOX_BENCH_METASTORE_HOURS", 2.0);
    let rss_cap: u64 = env_or("PHLOX_BENCH_METASTORE_RSS_CAP_MB", 4000u64) * 1_000_000;
    let compactors: u64 = env_or("PHLOX_BENCH_METASTORE_COMPACTORS", 4);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    for rate in rates {
        rt.block_on(run(rate, hours, rss_cap, compactors));
    }
}
