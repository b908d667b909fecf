//! Mutation fuzzing of every decoder a client can reach: each seed (the
//! repository's captures and synthetic inputs) is mutated (bit flips,
//! interesting bytes, truncation, insertion, deletion, repeated slices,
//! oversized varints, splices with other seeds) and fed to the decoder as
//! the server would. A mutant must give an error or a bounded result: no
//! panic, and no more than [`MEMORY_BUDGET`] allocated while it is decoded
//! (measured by [`CountingAlloc`], which the running binary installs as its
//! global allocator).
//!
//! `make fuzz` runs each decoder for a time budget (`target/debug/fuzz`);
//! `make test` runs a few thousand mutants of each (`e2e/tests/fuzz_decoders.rs`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use phlox_distributor::ingest::{IngestBody, IngestFormat, IngestParams};
use phlox_distributor::{Distributor, DistributorMetrics, Limits, LimitsStore, ShardWriter, SinkError, TenantLimits};
use phlox_pprof::SeriesProfile;
use prost::Message;

/// Bytes one mutant may allocate (peak, above what was allocated before it).
pub const MEMORY_BUDGET: usize = 512 << 20;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, counting live bytes and their peak.
#[derive(Debug)]
pub struct CountingAlloc;

// SAFETY: every call is forwarded to `System` unchanged; only counters are added.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's arguments.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let now = CURRENT.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size - layout.size();
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

/// A decoder under test: its seeds and how the server would feed it.
pub struct Target {
    pub name: &'static str,
    pub seeds: Vec<Vec<u8>>,
    run: Decoder,
}

/// Feeds one input to a decoder; true when it was accepted.
type Decoder = Box<dyn Fn(&[u8]) -> bool>;

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target").field("name", &self.name).field("seeds", &self.seeds.len()).finish()
    }
}

/// What a run of one target did.
#[derive(Debug, Clone)]
pub struct Report {
    pub name: &'static str,
    pub mutants: u64,
    /// Mutants the decoder accepted (the rest were errors).
    pub accepted: u64,
    pub peak_bytes: usize,
    pub slowest: Duration,
    pub elapsed: Duration,
}

impl Report {
    pub fn per_second(&self) -> f64 {
        self.mutants as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

use phlox_pprof::testkit::Rng;

/// A number below `n` (0 when `n` is 0).
fn below(rng: &mut Rng, n: usize) -> usize {
    rng.below(n as u64) as usize
}

/// One to four mutations of `seed`.
pub fn mutate(rng: &mut Rng, seed: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..1 + below(rng, 4) {
        let len = b.len();
        match below(rng, 9) {
            0 if len > 0 => {
                let i = below(rng, len);
                b[i] ^= 1 << below(rng, 8);
            }
            1 if len > 0 => {
                let i = below(rng, len);
                b[i] = [0x00, 0xff, 0x7f, 0x80, 0x01][below(rng, 5)];
            }
            2 if len > 0 => b.truncate(below(rng, len)),
            3 => {
                let i = below(rng, len + 1);
                let n = 1 + below(rng, 16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                b.splice(i..i, bytes);
            }
            4 if len > 1 => {
                let a = below(rng, len);
                let e = (a + 1 + below(rng, 64)).min(len);
                b.drain(a..e);
            }
            // Repeat a slice (shared references, repeated fields and frames).
            5 if len > 1 => {
                let a = below(rng, len);
                let e = (a + 1 + below(rng, 256)).min(len);
                let slice = b[a..e].to_vec();
                let at = below(rng, len + 1);
                for _ in 0..1 + below(rng, 8) {
                    b.splice(at..at, slice.iter().copied());
                }
            }
            // An oversized varint (a length, count or index field).
            6 if len > 0 => {
                let i = below(rng, len);
                let v: &[u8] = [&[0xff, 0xff, 0xff, 0xff, 0x0f][..], &[0xff; 10][..], &[0x80, 0x80, 0x80, 0x01][..]]
                    [below(rng, 3)];
                let e = (i + v.len()).min(len);
                b.splice(i..e, v.iter().copied());
            }
            7 if !others.is_empty() => {
                let o = &others[below(rng, others.len())];
                if !o.is_empty() {
                    let a = below(rng, o.len());
                    let e = (a + 1 + below(rng, 512)).min(o.len());
                    let at = below(rng, len + 1);
                    b.splice(at..at, o[a..e].iter().copied());
                }
            }
            _ if len > 0 => {
                let i = below(rng, len);
                b[i] = b[i].wrapping_add(1 + below(rng, 3) as u8);
            }
            _ => b.push(rng.next_u64() as u8),
        }
    }
    b
}

/// Runs `target` for `mutants` mutants or until `budget` is spent,
/// whichever comes first. Err names the failure and where its input was
/// saved.
pub fn run(target: &Target, seed: u64, mutants: Option<u64>, budget: Option<Duration>) -> Result<Report, String> {
    let mut rng = Rng::new(seed ^ xxh(target.name.as_bytes()));
    let start = Instant::now();
    let mut report = Report {
        name: target.name,
        mutants: 0,
        accepted: 0,
        peak_bytes: 0,
        slowest: Duration::ZERO,
        elapsed: Duration::ZERO,
    };
    // The seeds themselves first, then mutants.
    let mut queue: Vec<Vec<u8>> = target.seeds.clone();
    loop {
        if mutants.is_some_and(|m| report.mutants >= m) || budget.is_some_and(|b| start.elapsed() >= b) {
            break;
        }
        let input = match queue.pop() {
            Some(i) => i,
            None => {
                let s = &target.seeds[below(&mut rng, target.seeds.len())];
                mutate(&mut rng, s, &target.seeds)
            }
        };
        let before = CURRENT.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        let t = Instant::now();
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| (target.run)(&input)));
        let took = t.elapsed();
        let peak = PEAK.load(Ordering::Relaxed).saturating_sub(before);
        report.mutants += 1;
        report.slowest = report.slowest.max(took);
        report.peak_bytes = report.peak_bytes.max(peak);
        let failure = match outcome {
            Err(_) => Some("panicked".to_owned()),
            Ok(_) if peak > MEMORY_BUDGET => Some(format!("allocated {} MiB", peak >> 20)),
            Ok(accepted) => {
                report.accepted += u64::from(accepted);
                None
            }
        };
        if let Some(why) = failure {
            let dir = std::env::temp_dir().join("phlox-fuzz-failures");
            let _ = std::fs::create_dir_all(&dir);
            let file = dir.join(format!("{}-{seed}-{}.bin", target.name, report.mutants));
            let _ = std::fs::write(&file, &input);
            return Err(format!("{}: mutant {} {why}; input saved to {}", target.name, report.mutants, file.display()));
        }
    }
    report.elapsed = start.elapsed();
    Ok(report)
}

fn xxh(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| (h ^ u64::from(x)).wrapping_mul(0x100_0000_01b3))
}

/// A writer that is never reached: the targets stop before the write.
struct NoWrites;

#[async_trait::async_trait]
impl ShardWriter for NoWrites {
    fn shards(&self) -> u32 {
        8
    }
    fn writers(&self) -> u32 {
        1
    }
    async fn push(&self, _: &str, _: u32, _: Vec<SeriesProfile>) -> Result<(), SinkError> {
        Err(SinkError::Unavailable("the fuzzer does not write".into()))
    }
}

fn distributor() -> Arc<Distributor> {
    // Captures are old: accept a century back.
    let century = Duration::from_secs(100 * 365 * 86_400);
    let limits = Limits { ingestion_rate_mb: 0.0, reject_older_than: century, ..Limits::default() };
    let store = Arc::new(LimitsStore::new(TenantLimits { defaults: limits, ..Default::default() }));
    let metrics = DistributorMetrics::new(&prometheus::Registry::new()).expect("metrics");
    Arc::new(Distributor::new(Arc::new(NoWrites), store, metrics))
}

fn read(path: &str) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("testdata/captures").join(path);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn gunzip(b: &[u8]) -> Vec<u8> {
    phlox_pprof::gunzip_capped(b, 64 << 20).expect("a gzip capture")
}

/// Every decoder target with its seeds.
pub fn targets() -> Vec<Target> {
    let d = distributor();
    let now = crate::now_nanos();
    let mut out = Vec::new();

    // pprof, as a Push carries it (decode, validate, limits, split).
    let push_captures: Vec<Vec<u8>> =
        ["python-pyroscope-io-1.4.0-push-1.pb.gz", "python-pyroscope-io-1.4.0-push-2.pb.gz"]
            .map(|f| gunzip(&read(f)))
            .to_vec();
    let mut pprofs: Vec<Vec<u8>> =
        ["node-pyroscope-nodejs-0.6.4-ingest-heap.pprof.gz", "node-pyroscope-nodejs-0.6.4-ingest-wall.pprof.gz"]
            .map(|f| gunzip(&read(f)))
            .to_vec();
    for c in &push_captures {
        let req = phlox_proto::push::v1::PushRequest::decode(c.as_slice()).expect("a PushRequest capture");
        pprofs.extend(req.series.iter().flat_map(|s| {
            s.samples.iter().map(|x| phlox_pprof::maybe_gunzip(&x.raw_profile, 16 << 20).expect("gzip").into_owned())
        }));
    }
    pprofs.push(phlox_pprof::testkit::realistic_cpu_profile(1, 2, 200).encode());
    let dp = Arc::clone(&d);
    out.push(Target {
        name: "pprof",
        seeds: pprofs.clone(),
        run: Box::new(move |b| {
            let req = crate::push_request(&[("__name__", "process_cpu"), ("service_name", "fuzz")], b.to_vec(), "");
            dp.prepare_push("t", req).is_ok()
        }),
    });

    // Push envelopes (the Connect body after decompression).
    let dp = Arc::clone(&d);
    out.push(Target {
        name: "push",
        seeds: push_captures,
        run: Box::new(move |b| match phlox_proto::push::v1::PushRequest::decode(b) {
            Ok(req) => dp.prepare_push("t", req).is_ok(),
            Err(_) => false,
        }),
    });

    // /ingest formats, through the distributor as the HTTP layer calls it.
    let ingest = |name: &'static str, format: IngestFormat, app: &'static str, seeds: Vec<Vec<u8>>| {
        let d = Arc::clone(&d);
        Target {
            name,
            seeds,
            run: Box::new(move |b| {
                let params =
                    IngestParams { name: app.into(), from: None, until: None, sample_rate: None, spy_name: None };
                d.prepare_ingest("t", format, &params, IngestBody::Raw(Bytes::copy_from_slice(b)), now).is_ok()
            }),
        }
    };
    out.push(ingest("ingest-pprof", IngestFormat::Pprof, "app", pprofs));
    out.push(ingest("jfr", IngestFormat::Jfr, "java", jfr_seeds()));
    out.push(ingest(
        "folded",
        IngestFormat::Folded,
        "app.cpu",
        vec![b"main;a;b 3\nmain;c 2\nmain;  4\n".to_vec(), b"x;y;z 9223372036854775807\n".to_vec()],
    ));
    out.push(ingest("lines", IngestFormat::Lines, "app.cpu", vec![b"main;a\nmain;b;c\n".to_vec()]));
    out.push(ingest(
        "tree",
        IngestFormat::Tree,
        "app.cpu",
        vec![vec![0x00, 0x00, 0x02, 0x01, b'b', 0x04, 0x00, 0x01, b'a', 0x01, 0x01, 0x01, b'c', 0x05, 0x00]],
    ));
    out.push(ingest(
        "trie",
        IngestFormat::Trie,
        "app.cpu",
        vec![vec![0x00, 0x00, 0x01, 0x02, b'a', b';', 0x00, 0x02, 0x01, b'b', 0x03, 0x00, 0x01, b'c', 0x02, 0x00]],
    ));
    out.push(ingest("speedscope", IngestFormat::Speedscope, "app", speedscope_seeds()));

    // OTLP, binary and JSON (decode, convert within the budget, then Push).
    let budget = Limits::default().budget();
    for (name, json) in [("otlp-proto", false), ("otlp-json", true)] {
        let d = Arc::clone(&d);
        let seeds =
            if json { vec![OTLP_JSON.replace("NOW", &now.to_string()).into_bytes()] } else { vec![otlp_seed(now)] };
        out.push(Target {
            name,
            seeds,
            run: Box::new(move |b| {
                let Ok(req) = phlox_formats::otlp::decode_request(b, json) else { return false };
                let Ok(profiles) = phlox_formats::otlp::convert(&req, now, &budget) else { return false };
                let series: Vec<_> = profiles
                    .into_iter()
                    .map(|p| phlox_proto::push::v1::RawProfileSeries {
                        labels: p
                            .labels
                            .into_iter()
                            .map(|(name, value)| phlox_proto::types::v1::LabelPair { name, value })
                            .collect(),
                        samples: vec![phlox_proto::push::v1::RawSample {
                            raw_profile: p.profile.encode_to_vec().into(),
                            id: p.id,
                        }],
                        annotations: vec![],
                    })
                    .collect();
                !series.is_empty() && d.prepare_push("t", phlox_proto::push::v1::PushRequest { series }).is_ok()
            }),
        });
    }

    // Block objects, as a query backend reads them from the bucket.
    out.push(block_target());
    out.push(debuginfo_target());
    out
}

fn jfr_seeds() -> Vec<Vec<u8>> {
    use phlox_formats::jfr::testkit::*;
    vec![
        read("jdk17-burn-profile-settings.jfr"),
        chunk(
            &std_classes(),
            &app_pools(),
            &[
                active_setting(EXECUTION_SAMPLE, "event", "wall"),
                execution_sample(1, 1),
                execution_sample(2, 0),
                event(WALL_CLOCK, &ints(&[1, 2, RUNNABLE, 3])),
                event(MONITOR_ENTER, &ints(&[1, 1500, 2])),
                event(MALLOC, &ints(&[1, 1, 0x7f00, 100])),
            ],
        ),
    ]
}

fn speedscope_seeds() -> Vec<Vec<u8>> {
    vec![
        br#"{"shared":{"frames":[{"name":"a"},{"name":"b"},{"name":"c"}]},"profiles":[{"type":"evented","name":"e","unit":"milliseconds","startValue":0,"endValue":9,"events":[{"type":"O","frame":0,"at":0},{"type":"O","frame":1,"at":2},{"type":"C","frame":1,"at":7},{"type":"C","frame":0,"at":9}]},{"type":"sampled","name":"s","unit":"bytes","startValue":0,"endValue":4,"samples":[[0,1],[0,2]],"weights":[3,1]}]}"#.to_vec(),
        br#"{"shared":{"frames":[{"name":"main"}]},"profiles":[{"type":"sampled","name":"one","unit":"none","samples":[[0],[0]],"weights":[1,2.5]}]}"#.to_vec(),
    ]
}

/// A small OTLP/JSON request (`NOW` is replaced by the time).
const OTLP_JSON: &str = r#"{"resourceProfiles":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]},"scopeProfiles":[{"profiles":[{"sampleType":{"typeStrindex":1,"unitStrindex":2},"periodType":{"typeStrindex":1,"unitStrindex":2},"period":"10000000","timeUnixNano":"NOW","samples":[{"stackIndex":1,"values":["3"],"attributeIndices":[1]},{"stackIndex":2,"values":["1"]}]}]}]}],"dictionary":{"stringTable":["","cpu","nanoseconds","main","work","thread.name","w-1"],"mappingTable":[{}],"functionTable":[{},{"nameStrindex":3},{"nameStrindex":4}],"locationTable":[{},{"lines":[{"functionIndex":1,"line":"3"}]},{"lines":[{"functionIndex":2,"line":"9"}]}],"stackTable":[{},{"locationIndices":[2,1]},{"locationIndices":[1]}],"attributeTable":[{},{"keyStrindex":5,"value":{"stringValue":"w-1"}}],"linkTable":[{}]}}"#;

fn otlp_seed(now: i64) -> Vec<u8> {
    // The JSON seed, decoded and written as binary protobuf.
    let json = OTLP_JSON.replace("NOW", &now.to_string());
    phlox_formats::otlp::decode_request(json.as_bytes(), true).expect("the OTLP/JSON seed").encode_to_vec()
}

fn block_target() -> Target {
    use object_store::{ObjectStore, ObjectStoreExt};
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let mut builder = phlox_block::SegmentBuilder::default();
    for (i, service) in ["shop", "cart"].iter().enumerate() {
        let mut b = phlox_pprof::testkit::ProfileBuilder::new("cpu", "nanoseconds");
        b.period("cpu", "nanoseconds", 10_000_000).time_nanos(5_000_000_000);
        b.sample(&["main", "handle", "burn"], &[30], &[("endpoint", "/checkout")]);
        b.sample(&["main", "gc"], &[7], &[("span_id", "0123456789abcdef")]);
        let p = Arc::new(phlox_pprof::Profile::decode(&b.encode()).expect("testkit pprof"));
        let labels = phlox_model::Labels::from_pairs([("__name__", "process_cpu"), ("service_name", *service)]);
        for sp in phlox_pprof::split(&labels, p, phlox_model::ProfileId([i as u8 + 1; 16]), 1).expect("split") {
            builder.add("t", &sp);
        }
    }
    let header = phlox_block::BlockHeader {
        id: ulid::Ulid::from_parts(1_700_000_000_000, 1),
        tenant: String::new(),
        shard: 1,
        level: 0,
        created_by: "fuzz".into(),
    };
    let path = phlox_block::paths::segment_path(1, header.id);
    let seed = builder.finish(header).expect("a block").bytes.to_vec();
    let runtime = Arc::new(runtime);
    Target {
        name: "block",
        seeds: vec![seed],
        run: Box::new(move |b| {
            runtime.block_on(async {
                let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
                let path = path.clone();
                if store.put(&path, Bytes::copy_from_slice(b).into()).await.is_err() {
                    return false;
                }
                let reader = match phlox_block::BlockReader::open(store, path).await {
                    Ok(r) => r,
                    Err(e) => {
                        if std::env::var_os("FUZZ_DEBUG").is_some() {
                            eprintln!("block: {e}");
                        }
                        return false;
                    }
                };
                let mut ok = true;
                for i in 0..reader.meta().datasets.len() {
                    if phlox_block::is_tenant_index(&reader.meta().datasets[i]) {
                        ok &= reader.tenant_index(i).await.is_ok();
                        continue;
                    }
                    let Ok(ds) = reader.dataset(i).await else {
                        ok = false;
                        continue;
                    };
                    let all: Vec<u32> = (0..ds.series().len() as u32).collect();
                    let Ok(rows) = ds.profiles(&all, i64::MIN, i64::MAX).await else {
                        ok = false;
                        continue;
                    };
                    let Ok(symbols) = ds.symbols().await else {
                        ok = false;
                        continue;
                    };
                    for row in rows {
                        for s in row.stack_ids.iter().take(1000) {
                            if (*s as usize) < symbols.stack_count() {
                                let _ = symbols.function_names(*s);
                            }
                        }
                    }
                }
                ok
            })
        }),
    }
}

/// An uploaded debug file as the symbolizer reads it: parsed (ELF, DWARF),
/// then addresses across its text resolved. Seed: a small C program built
/// here with `gcc -g -O1`.
fn debuginfo_target() -> Target {
    let dir = tempfile::tempdir().expect("a temp dir");
    let src = dir.path().join("p.c");
    std::fs::write(
        &src,
        "static inline int h(int x) { return x * 3 + 1; }\n\
         __attribute__((noinline)) int f(int n) { int s = 0; for (int i = 0; i < n; i++) s += h(i ^ s); return s; }\n\
         int main(int c, char **v) { return f(c); }\n",
    )
    .expect("the seed's source");
    let out = dir.path().join("p");
    let built = std::process::Command::new("gcc")
        .args(["-g", "-O1", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("the debuginfo target needs gcc (Debian package 'gcc')");
    assert!(built.success(), "gcc failed");
    let seed = std::fs::read(&out).expect("the seed");
    Target {
        name: "debuginfo",
        seeds: vec![seed],
        run: Box::new(|b| {
            let Ok(file) = phlox_query::debuginfo::DebugFile::parse(b) else { return false };
            // Addresses over the first 64 KiB of the file, as runtime
            // addresses of a mapping at 0x1000 from offset 0.
            let mut frames = 0;
            for offset in (0..b.len().min(64 << 10) as u64).step_by(97) {
                frames += file.frames(file.file_address(0x1000 + offset, 0x1000, 0)).len();
            }
            frames > 0
        }),
    }
}
