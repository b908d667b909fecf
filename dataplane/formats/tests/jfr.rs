//! JFR ingestion: the real JDK 17 capture, recordings made on the fly
//! when a JDK is installed (checked against the JDK's own `jfr` tool),
//! synthetic recordings (labels, settings, kinds the JDK does not emit),
//! and hostile input (truncated, garbage, mutated: errors, never panics).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use phlox_formats::jfr::{Context, JfrError, JfrProfile, LabelsSnapshot, parse_jfr};
use proptest::prelude::*;
use prost::Message;

const CAPTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/captures/jdk17-burn-profile-settings.jfr");
const LIMIT: usize = 64 << 20;
/// The upload's sample rate the tests use (Pyroscope's default): a CPU or
/// wall event is worth 1e9 / 100 ns.
const SAMPLE_RATE: u32 = 100;
const PERIOD: i64 = 10_000_000;

/// A budget no test recording reaches but the amplification one.
const BUDGET: phlox_formats::Budget =
    phlox_formats::Budget { max_profile_bytes: 4 << 20, max_request_bytes: 256 << 20 };

/// The profiles of a recording uploaded at [`SAMPLE_RATE`].
fn parse(buf: &[u8], labels: Option<&[u8]>, limit: usize) -> Result<Vec<JfrProfile>, JfrError> {
    parse_jfr(buf, labels, limit, SAMPLE_RATE, BUDGET).map(|r| r.profiles)
}

fn capture() -> Vec<u8> {
    std::fs::read(CAPTURE).expect("the JDK 17 capture in testdata/captures")
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn by_event<'a>(ps: &'a [JfrProfile], event: &str) -> &'a JfrProfile {
    ps.iter().find(|p| p.kind == event).unwrap_or_else(|| panic!("no {event} profile"))
}

fn func_name(p: &JfrProfile, location_id: u64) -> &str {
    let pr = &p.profile;
    let loc = &pr.location[location_id as usize - 1];
    assert_eq!(loc.id, location_id);
    let f = &pr.function[loc.line[0].function_id as usize - 1];
    &pr.string_table[f.name as usize]
}

/// Is the value of a profile's first sample type a multiple of the period (CPU, wall)?
fn timed(p: &JfrProfile) -> bool {
    matches!(p.kind, "cpu" | "wall")
}

/// Events per stack (function names leaf first, `;`-joined): the first
/// value divided by the period for CPU and wall, the first value otherwise.
fn stack_counts(p: &JfrProfile) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for s in &p.profile.sample {
        let key = s.location_id.iter().map(|&l| lambda_insensitive(func_name(p, l))).collect::<Vec<_>>().join(";");
        let n = if timed(p) {
            assert_eq!(s.value[0] % p.profile.period, 0, "value is a whole number of periods");
            s.value[0] / p.profile.period
        } else {
            s.value[0]
        };
        *out.entry(key).or_insert(0) += n;
    }
    out
}

/// Value `i` per stack (function names leaf first, `;`-joined).
fn stack_values(p: &JfrProfile, i: usize) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for s in &p.profile.sample {
        let key = s.location_id.iter().map(|&l| lambda_insensitive(func_name(p, l))).collect::<Vec<_>>().join(";");
        *out.entry(key).or_insert(0) += s.value[i];
    }
    out
}

/// Events whose stack contains each function (counted once per event).
fn function_counts(stacks: &BTreeMap<String, i64>) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for (stack, &n) in stacks {
        let mut seen: Vec<&str> = stack.split(';').collect();
        seen.sort_unstable();
        seen.dedup();
        for f in seen {
            *out.entry(f.to_string()).or_insert(0) += n;
        }
    }
    out
}

fn total(stacks: &BTreeMap<String, i64>) -> i64 {
    stacks.values().sum()
}

/// Encodes, decodes with the ingest path's decoder and validates.
fn assert_valid_pprof(p: &JfrProfile) {
    assert_eq!(p.profile.string_table.first().map(String::as_str), Some(""));
    let bytes = p.profile.encode_to_vec();
    let decoded = phlox_pprof::Profile::decode(&bytes).unwrap();
    decoded.validate().unwrap_or_else(|e| panic!("{} profile invalid: {e}", p.kind));
    assert_eq!(decoded.sample_count(), p.profile.sample.len());
    let types: Vec<&str> =
        p.profile.sample_type.iter().map(|t| p.profile.string_table[t.r#type as usize].as_str()).collect();
    let expected: &[&str] = match p.kind {
        "cpu" => &["cpu"],
        "wall" => &["wall"],
        "alloc_in_new_tlab" => &["alloc_in_new_tlab_objects", "alloc_in_new_tlab_bytes"],
        "alloc_outside_tlab" => &["alloc_outside_tlab_objects", "alloc_outside_tlab_bytes"],
        "lock" | "thread_park" => &["contentions", "delay"],
        "live_object" => &["live"],
        "alloc_sample" => &["alloc_sample_objects", "alloc_sample_bytes"],
        "malloc" => &["malloc_objects", "malloc_bytes"],
        other => panic!("unexpected event kind {other}"),
    };
    assert_eq!(types, expected);
    let metric = match p.kind {
        "cpu" => "process_cpu",
        "wall" => "wall",
        "lock" => "mutex",
        "thread_park" => "block",
        _ => "memory",
    };
    assert_eq!(p.metric, metric);
}

/// Parses; every profile of an Ok result must be a valid pprof.
fn parse_checked(buf: &[u8], labels: Option<&[u8]>) -> Result<Vec<JfrProfile>, JfrError> {
    let r = parse(buf, labels, LIMIT);
    if let Ok(ps) = &r {
        ps.iter().for_each(assert_valid_pprof);
    }
    r
}

// ---------------------------------------------------------------- the capture

/// Measured with the JDK 17 tool:
/// `jfr print --events jdk.ExecutionSample --stack-depth 1000 jdk17-burn-profile-settings.jfr`,
/// frames of each event up to `(` joined leaf first, counted (656 events,
/// all with the same stack). The recording's `jdk.ActiveSetting` gives
/// `period = 10 ms` for `jdk.ExecutionSample` (settings=profile).
const CAPTURE_CPU_STACKS: &[(&str, i64)] = &[("Burn.burnJavaCycles;Burn.main", 656)];

#[test]
fn capture_cpu_profile() {
    let ps = parse_checked(&capture(), None).unwrap();
    let cpu = by_event(&ps, "cpu");
    assert_eq!(cpu.metric, "process_cpu");
    assert_eq!(cpu.profile.period, PERIOD, "1e9 / the upload's sampleRate, not the recording's setting");
    let st = &cpu.profile.string_table;
    let pt = cpu.profile.period_type.unwrap();
    assert_eq!((st[pt.r#type as usize].as_str(), st[pt.unit as usize].as_str()), ("cpu", "nanoseconds"));
    let unit = cpu.profile.sample_type[0].unit;
    assert_eq!(st[unit as usize], "nanoseconds");

    let stacks = stack_counts(cpu);
    assert_eq!(total(&stacks), 656);
    let expected: BTreeMap<String, i64> = CAPTURE_CPU_STACKS.iter().map(|&(s, n)| (s.to_string(), n)).collect();
    assert_eq!(stacks, expected);
    let funcs = function_counts(&stacks);
    assert_eq!(funcs["Burn.burnJavaCycles"], 656);
    assert_eq!(funcs["Burn.main"], 656);

    // Hottest by self (leaf) time.
    let mut leaf: HashMap<&str, i64> = HashMap::new();
    for s in &cpu.profile.sample {
        *leaf.entry(func_name(cpu, s.location_id[0])).or_insert(0) += s.value[0];
    }
    let hottest = leaf.iter().max_by_key(|e| e.1).unwrap();
    assert_eq!(*hottest.0, "Burn.burnJavaCycles");

    // Lines are kept: one location per (method, line).
    let loc = &cpu.profile.location[(cpu.profile.sample[0].location_id[0] - 1) as usize];
    assert_eq!(loc.line[0].line, 2);
    assert!(cpu.profile.time_nanos > 1_700_000_000_000_000_000);
    assert!(cpu.profile.duration_nanos > 0);

    // The capture also has 2 jdk.ObjectAllocationSample events (jfr summary).
    let alloc = by_event(&ps, "alloc_sample");
    assert_eq!(total(&stack_counts(alloc)), 2);
    assert_eq!(ps.len(), 2, "{:?}", ps.iter().map(|p| p.kind).collect::<Vec<_>>());
}

#[test]
fn capture_gzip_and_multi_chunk() {
    let raw = capture();
    let plain = parse_checked(&raw, None).unwrap();
    assert_eq!(parse_checked(&gzip(&raw), None).unwrap(), plain);

    // A recording is a sequence of chunks: two copies are a valid 2-chunk file.
    let mut two = raw.clone();
    two.extend_from_slice(&raw);
    let ps = parse_checked(&two, None).unwrap();
    let stacks = stack_counts(by_event(&ps, "cpu"));
    assert_eq!(stacks["Burn.burnJavaCycles;Burn.main"], 1312);
    assert_eq!(by_event(&ps, "cpu").profile.function.len(), by_event(&plain, "cpu").profile.function.len());
}

#[test]
fn size_limits() {
    let raw = capture();
    assert_eq!(parse(&raw, None, raw.len() - 1), Err(JfrError::TooLarge { limit: raw.len() - 1 }));
    assert!(parse(&raw, None, raw.len()).is_ok());
    assert_eq!(parse(&gzip(&raw), None, 1000), Err(JfrError::TooLarge { limit: 1000 }));
    let bomb = gzip(&vec![0u8; 32 << 20]);
    assert_eq!(parse(&bomb, None, 1 << 20), Err(JfrError::TooLarge { limit: 1 << 20 }));
    assert!(matches!(parse(&gzip(&raw)[..500], None, LIMIT), Err(JfrError::Gzip(_))));
}

// ------------------------------------------------------- against the JDK's `jfr` tool

/// The JDK's `jfr` binary next to `java` (PATH or JAVA_HOME), if installed.
fn jdk_bin(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(home) = std::env::var_os("JAVA_HOME") {
        dirs.push(Path::new(&home).join("bin"));
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        if let Ok(java) = std::fs::canonicalize(dir.join("java")) {
            dirs.extend(java.parent().map(Path::to_path_buf));
        }
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// A JDK tool, or `None` and a line saying why the test is skipped; a
/// failure under `PHLOX_TEST_REQUIRE_JDK` (set by `make test`, whose
/// `scripts/ensure-test-tools.sh` installs Debian's openjdk-17-jdk-headless).
fn jdk_or_skip(name: &str) -> Option<PathBuf> {
    let found = jdk_bin(name);
    if found.is_none() {
        assert!(
            std::env::var_os("PHLOX_TEST_REQUIRE_JDK").is_none(),
            "PHLOX_TEST_REQUIRE_JDK is set but the JDK's `{name}` is not found (JAVA_HOME/bin or next to `java` on PATH)"
        );
        println!(
            "SKIPPED: no JDK `{name}` (JAVA_HOME/bin or next to `java` on PATH); install openjdk-17-jdk-headless or run `make test`"
        );
    }
    found
}

/// Generated lambda classes (`Mix$$Lambda$14/0x…`, `Mix$$Lambda_` after
/// Pyroscope's rewrite) compared by the part up to `$$Lambda` on both sides:
/// the exact rewrite is checked by the unit tests of the rules and the
/// compatibility corpus (`make conformance`).
fn lambda_insensitive(frame: &str) -> String {
    match frame.find("$$Lambda") {
        Some(i) => {
            let method = frame.rsplit_once('.').map_or("", |(_, m)| m);
            format!("{}.{method}", &frame[..i + "$$Lambda".len()])
        }
        None => frame.to_string(),
    }
}

/// Reads a recording with the JDK's own consumer API (`jdk.jfr.consumer`),
/// every frame included (hidden ones too, which `jfr print` leaves out but
/// the recording and Pyroscope keep), the class by its recorded internal name.
const JDK_READER_JAVA: &str = r#"
import jdk.jfr.consumer.*;
import java.nio.file.Path;
import java.util.*;

public class JdkReader {
    public static void main(String[] args) throws Exception {
        Set<String> wanted = new HashSet<>(Arrays.asList(args).subList(1, args.length));
        for (RecordedEvent e : RecordingFile.readAllEvents(Path.of(args[0]))) {
            String type = e.getEventType().getName();
            if (!wanted.contains(type) || e.getStackTrace() == null) continue;
            String state = e.hasField("state") && e.getValue("state") != null ? e.getString("state") : "";
            StringBuilder sb = new StringBuilder();
            for (RecordedFrame f : e.getStackTrace().getFrames()) {
                if (sb.length() > 0) sb.append(';');
                sb.append((String) f.getMethod().getType().getValue("name")).append('\u0001').append(f.getMethod().getName());
            }
            System.out.println(type + "\t" + state + "\t" + e.getDuration().toNanos() + "\t" + sb);
        }
    }
}
"#;

/// The JDK's reading of the given event types: event type → stack (frames
/// leaf first, named as Pyroscope names them) → (events, sum of the events'
/// durations in nanoseconds, as `jfr print` shows them). Events without a
/// stack trace are left out (as the parser drops them), and so are
/// execution samples of sleeping threads (not CPU time for Pyroscope).
fn jdk_stacks(java: &Path, file: &Path, events: &[&str]) -> BTreeMap<String, BTreeMap<String, (i64, i64)>> {
    let dir = tempfile_dir("jdk-reader");
    let src = dir.join("JdkReader.java");
    std::fs::write(&src, JDK_READER_JAVA).unwrap();
    let out = Command::new(java).arg(&src).arg(file).args(events).output().expect("run java");
    assert!(out.status.success(), "JdkReader: {}", String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::remove_dir_all(&dir);
    let mut result: BTreeMap<String, BTreeMap<String, (i64, i64)>> = BTreeMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let mut cols = line.splitn(4, '\t');
        let (event, state) = (cols.next().unwrap(), cols.next().unwrap());
        let nanos: i64 = cols.next().unwrap().parse().unwrap();
        let frames = cols.next().unwrap_or("");
        if frames.is_empty() || (event == "jdk.ExecutionSample" && state == "STATE_SLEEPING") {
            continue;
        }
        let stack = frames
            .split(';')
            .map(|f| {
                let (class, method) = f.split_once('\u{1}').unwrap();
                lambda_insensitive(&format!("{class}.{method}"))
            })
            .collect::<Vec<_>>()
            .join(";");
        let e = result.entry(event.to_string()).or_default().entry(stack).or_insert((0, 0));
        e.0 += 1;
        e.1 += nanos;
    }
    result
}

/// A fresh directory under the system temp dir for this test process.
fn tempfile_dir(what: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("phlox-jfr-{what}-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const KIND_EVENTS: &[(&str, &str)] = &[
    ("cpu", "jdk.ExecutionSample"),
    ("alloc_in_new_tlab", "jdk.ObjectAllocationInNewTLAB"),
    ("alloc_outside_tlab", "jdk.ObjectAllocationOutsideTLAB"),
    ("lock", "jdk.JavaMonitorEnter"),
    ("thread_park", "jdk.ThreadPark"),
    ("alloc_sample", "jdk.ObjectAllocationSample"),
];

/// Compares every profile of `file` with the JDK's reading, per stack and per function.
fn compare_with_jdk(java: &Path, file: &Path) -> Vec<JfrProfile> {
    let ps = parse_checked(&std::fs::read(file).unwrap(), None).unwrap();
    let events: Vec<&str> = KIND_EVENTS.iter().map(|e| e.1).collect();
    let reference = jdk_stacks(java, file, &events);
    for &(kind, event) in KIND_EVENTS {
        let jdk = reference.get(event).cloned().unwrap_or_default();
        let theirs: BTreeMap<String, i64> = jdk.iter().map(|(s, &(n, _))| (s.clone(), n)).collect();
        let profile = ps.iter().find(|p| p.kind == kind);
        let ours = profile.map(stack_counts).unwrap_or_default();
        assert_eq!(total(&ours), total(&theirs), "{event}: event count");
        assert_eq!(function_counts(&ours), function_counts(&theirs), "{event}: per-function counts");
        assert_eq!(ours, theirs, "{event}: per-stack counts");
        if let (Some(p), "lock" | "thread_park") = (profile, kind) {
            // `delay` is the events' durations in nanoseconds, exactly as the
            // JDK (and `jfr print`) reads them. Pyroscope stores the raw
            // ticks here (ARCHITECTURE.md): Phlox stores nanoseconds.
            let theirs: BTreeMap<String, i64> = jdk.iter().map(|(s, &(_, ns))| (s.clone(), ns)).collect();
            assert_eq!(stack_values(p, 1), theirs, "{event}: delay nanoseconds per stack");
        }
    }
    // jdk.NativeMethodSample (threads in native code) is no profile in Pyroscope.
    assert!(ps.iter().all(|p| p.kind != "wall"), "no wall profile from a JDK recording");
    ps
}

#[test]
fn capture_matches_the_jdk_reading() {
    let Some(java) = jdk_or_skip("java") else { return };
    let ps = compare_with_jdk(&java, Path::new(CAPTURE));
    assert_eq!(total(&stack_counts(by_event(&ps, "cpu"))), 656);
}

const MIX_JAVA: &str = r#"
import java.util.concurrent.locks.LockSupport;
import java.util.concurrent.locks.ReentrantLock;

public class Mix {
    static final Object MONITOR = new Object();
    static final ReentrantLock LOCK = new ReentrantLock();
    static volatile long sink;
    static volatile Object keep;

    static long burnJavaCycles(int n) {
        long x = 0;
        for (int i = 0; i < n; i++) { x += i * 31L ^ (x >>> 3); }
        return x;
    }
    static void idleJava() { LockSupport.parkNanos(2_000_000L); }
    static void holdMonitor() { synchronized (MONITOR) { sink += burnJavaCycles(2_000_000); } }
    static void holdLock() {
        LOCK.lock();
        try { sink += burnJavaCycles(2_000_000); } finally { LOCK.unlock(); }
    }
    static void allocate() { for (int i = 0; i < 1000; i++) { keep = new byte[1024 * (1 + i % 64)]; } }

    public static void main(String[] args) throws Exception {
        long end = System.nanoTime() + Long.parseLong(args[0]) * 1_000_000L;
        Thread[] ts = new Thread[4];
        for (int t = 0; t < ts.length; t++) {
            final int k = t;
            ts[t] = new Thread(() -> {
                while (System.nanoTime() < end) {
                    switch (k) {
                        case 0: sink += burnJavaCycles(5_000_000); idleJava(); break;
                        case 1: holdMonitor(); holdLock(); break;
                        case 2: holdMonitor(); holdLock(); allocate(); break;
                        default: allocate(); idleJava(); break;
                    }
                }
            }, "worker-" + t);
            ts[t].start();
        }
        for (Thread t : ts) t.join();
    }
}
"#;

/// Records a workload with CPU, monitor, park and allocation events with
/// the installed JDK (17+) and checks every kind against the JDK's own reading.
#[test]
fn recorded_workload_matches_the_jdk_reading() {
    let Some(java) = jdk_or_skip("java") else { return };
    let dir = std::env::temp_dir().join(format!("phlox-jfr-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("Mix.java");
    std::fs::write(&src, MIX_JAVA).unwrap();
    let rec = dir.join("mix.jfr");
    let status = Command::new(&java)
        .arg(format!(
            "-XX:StartFlightRecording=settings=profile,locking-threshold=0ms,gc=high,filename={}",
            rec.display()
        ))
        .arg(&src)
        .arg("1500")
        .output()
        .expect("run java");
    if !status.status.success() {
        // E.g. a JDK older than 17 (no `locking-threshold` option).
        eprintln!("java failed, skipping the recorded workload: {}", String::from_utf8_lossy(&status.stderr));
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let ps = compare_with_jdk(&java, &rec);
    for kind in ["cpu", "alloc_in_new_tlab", "alloc_outside_tlab", "thread_park", "alloc_sample"] {
        assert!(ps.iter().any(|p| p.kind == kind), "no {kind} profile");
    }
    // The park delays were compared with the JDK's durations above: they
    // are real time, 2 ms per Mix.idleJava park at least.
    let park = stack_counts(by_event(&ps, "thread_park"));
    assert!(function_counts(&park).get("Mix.idleJava").copied().unwrap_or(0) > 0);
    let tlab = by_event(&ps, "alloc_outside_tlab");
    let bytes: i64 = tlab.profile.sample.iter().map(|s| s.value[1]).sum();
    assert!(bytes >= 1024 * total(&stack_counts(tlab)) / 2, "allocation sizes recorded");
    let delay: i64 = by_event(&ps, "thread_park").profile.sample.iter().map(|s| s.value[1]).sum();
    // Mix.idleJava parks for 2 ms each time.
    assert!(delay >= 1_000_000 * function_counts(&park)["Mix.idleJava"], "park durations in nanoseconds");
    let _ = std::fs::remove_dir_all(&dir);
}

// ------------------------------------------------------------------ synthetic

fn app_recording(events: &[Vec<u8>]) -> Vec<u8> {
    synth::chunk(&synth::std_classes(), &synth::app_pools(), events)
}

fn snapshot() -> LabelsSnapshot {
    let ctx = |pairs: &[(i64, i64)]| Context { labels: pairs.iter().copied().collect() };
    LabelsSnapshot {
        contexts: [
            (1, ctx(&[(10, 11)])),
            (2, ctx(&[(10, 12), (13, 14)])),
            (3, ctx(&[(10, 404)])),
            (4, ctx(&[(10, 11)])),
        ]
        .into_iter()
        .collect(),
        strings: [(10, "span_name"), (11, "GET /a"), (12, "GET /b"), (13, "tenant"), (14, "acme")]
            .into_iter()
            .map(|(k, v)| (k, v.to_string()))
            .collect(),
    }
}

fn sample_labels(p: &JfrProfile, i: usize) -> Vec<(String, String)> {
    let st = &p.profile.string_table;
    p.profile.sample[i].label.iter().map(|l| (st[l.key as usize].clone(), st[l.str as usize].clone())).collect()
}

/// (sample labels, stack, value).
type Row = (Vec<(String, String)>, String, i64);

#[test]
fn synthetic_labels_settings_and_kinds() {
    let rec = app_recording(&[
        synth::active_setting(synth::EXECUTION_SAMPLE, "period", "20 ms"),
        synth::execution_sample(1, 1),
        synth::execution_sample(1, 1),
        synth::execution_sample(1, 2),
        synth::execution_sample(1, 1),
        synth::execution_sample(1, 2),
        synth::execution_sample(2, 0),
        synth::execution_sample(2, 99), // unknown context: no labels
        synth::execution_sample(2, 3),  // context whose value string is missing: no labels
        synth::execution_sample(1, 4),  // same labels as context 1: same sample
        synth::execution_sample(0, 1),  // null stack trace: dropped
        synth::execution_sample(77, 1), // dangling stack trace: dropped
        synth::event(synth::WALL_CLOCK, &synth::ints(&[1, 2, synth::SLEEPING, 3])),
        synth::event(synth::LIVE_OBJECT, &synth::ints(&[1, 1, 64])),
        synth::event(synth::LIVE_OBJECT, &synth::ints(&[1, 1, 64])),
        synth::event(synth::MONITOR_ENTER, &synth::ints(&[1, 1500, 2])),
        synth::event(synth::MONITOR_ENTER, &synth::ints(&[1, 500, 2])),
    ]);
    let labels = snapshot().encode_to_vec();
    let ps = parse_checked(&rec, Some(&labels)).unwrap();
    let kinds: Vec<&str> = ps.iter().map(|p| p.kind).collect();
    assert_eq!(kinds, ["cpu", "wall", "lock", "live_object"]);

    let cpu = by_event(&ps, "cpu");
    assert_eq!(cpu.profile.period, PERIOD, "the recording's 20 ms setting does not count");
    assert_eq!(cpu.profile.time_nanos, synth::START_NANOS);
    assert_eq!(cpu.profile.duration_nanos, 1_000_000_000);
    let got: Vec<Row> = (0..cpu.profile.sample.len())
        .map(|i| {
            let s = &cpu.profile.sample[i];
            let stack = s.location_id.iter().map(|&l| func_name(cpu, l)).collect::<Vec<_>>().join(";");
            (sample_labels(cpu, i), stack, s.value[0])
        })
        .collect();
    let l = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
    assert_eq!(
        got,
        [
            (l(&[("span_name", "GET /a")]), "com/example/App.work;com/example/App.main".to_string(), 4 * PERIOD),
            (
                l(&[("span_name", "GET /b"), ("tenant", "acme")]),
                "com/example/App.work;com/example/App.main".into(),
                2 * PERIOD
            ),
            (l(&[]), "com/example/App.sleep;com/example/App.main".into(), 3 * PERIOD),
        ]
    );
    // Lines: work at 10, main at 5 (stack 1) and main at 6 (stack 2) are distinct locations.
    assert_eq!(cpu.profile.location.len(), 4);
    assert_eq!(cpu.profile.function.len(), 3);

    // Wall: `samples` × 1e9 / sampleRate.
    let wall = by_event(&ps, "wall");
    assert_eq!(wall.profile.period, PERIOD);
    assert_eq!(wall.profile.sample[0].value, [30_000_000]);

    let lock = by_event(&ps, "lock");
    assert_eq!(lock.metric, "mutex");
    assert_eq!(lock.profile.sample[0].value, [2, 2000], "ticks are nanoseconds at 1e9 ticks/s");

    let live = by_event(&ps, "live_object");
    assert_eq!(live.profile.sample[0].value, [2]);

    // Labels may come gzipped; none given: no labels at all.
    let gz = parse_checked(&rec, Some(&gzip(&labels))).unwrap();
    assert_eq!(gz, ps);
    let plain = parse_checked(&rec, None).unwrap();
    assert!(by_event(&plain, "cpu").profile.sample.iter().all(|s| s.label.is_empty()));
    assert_eq!(total(&stack_counts(by_event(&plain, "cpu"))), 9);
}

#[test]
fn bad_labels_snapshot() {
    let rec = app_recording(&[synth::execution_sample(1, 1)]);
    for bad in [&b"\x0a\x05\x08"[..], b"\xff\xff\xff", b"\x12\x02\x08"] {
        assert!(matches!(parse(&rec, Some(bad), LIMIT), Err(JfrError::BadLabels(_))), "{bad:?}");
    }
    assert!(matches!(parse(&rec, Some(&gzip(b"junk")[..10]), LIMIT), Err(JfrError::Gzip(_))));
    // An empty snapshot is valid.
    assert!(parse(&rec, Some(b""), LIMIT).is_ok());
}

/// Rows of a profile: (sample labels, stack leaf first, values), sorted.
/// (sample labels, stack, values).
type ValuesRow = (Vec<(String, String)>, String, Vec<i64>);

fn rows(p: &JfrProfile) -> Vec<ValuesRow> {
    let mut out: Vec<_> = (0..p.profile.sample.len())
        .map(|i| {
            let s = &p.profile.sample[i];
            let stack = s.location_id.iter().map(|&l| func_name(p, l)).collect::<Vec<_>>().join(";");
            let mut labels = sample_labels(p, i);
            labels.sort();
            (labels, stack, s.value.clone())
        })
        .collect();
    out.sort();
    out
}

/// Pyroscope's reading of async-profiler recordings: sleeping threads are no
/// CPU, the `event=wall` setting makes every later execution sample wall
/// time too, span ids become `profile_id` labels, `profiler.Malloc` is
/// native memory, and values follow the upload's sample rate.
#[test]
fn async_profiler_modes_spans_and_native_memory() {
    use synth::{RUNNABLE, SLEEPING};
    let rec = app_recording(&[
        synth::execution_sample_in(1, SLEEPING, 0, 0, 0), // no CPU, and no wall yet
        synth::execution_sample(1, 0),                    // CPU
        synth::active_setting(synth::EXECUTION_SAMPLE, "event", "wall"),
        synth::execution_sample_in(2, SLEEPING, 0, 0, 0), // wall only
        synth::execution_sample_in(2, RUNNABLE, 0x1234_abcd, 11, 0), // CPU and wall, with span
        synth::execution_sample_in(2, 99, 0, 0, 0),       // unknown state: wall only
        // async-profiler's wall-clock sample: 5 intervals of wall, one of CPU (running).
        synth::event(synth::WALL_CLOCK, &synth::ints(&[1, 1, RUNNABLE, 5])),
        synth::event(synth::MALLOC, &synth::ints(&[1, 1, 0x7f00, 100])),
        synth::event(synth::MALLOC, &synth::ints(&[1, 1, 0x7f80, 50])),
    ]);
    let labels = snapshot().encode_to_vec();
    let r = parse_jfr(&rec, Some(&labels), LIMIT, 50, BUDGET).unwrap();
    assert_eq!(r.event.as_deref(), Some("wall"));
    let kinds: Vec<&str> = r.profiles.iter().map(|p| p.kind).collect();
    assert_eq!(kinds, ["cpu", "wall", "malloc"]);
    let l = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
    let span = l(&[("profile_id", "000000001234abcd"), ("span_name", "GET /a")]);
    // sampleRate 50: each event is worth 20 ms.
    let ms20 = 20_000_000;
    let (main_work, main_sleep) =
        ("com/example/App.work;com/example/App.main", "com/example/App.sleep;com/example/App.main");
    assert_eq!(
        rows(by_event(&r.profiles, "cpu")),
        [(l(&[]), main_work.to_string(), vec![2 * ms20]), (span.clone(), main_sleep.to_string(), vec![ms20])]
    );
    assert_eq!(
        rows(by_event(&r.profiles, "wall")),
        [
            (l(&[]), main_sleep.to_string(), vec![2 * ms20]),
            (l(&[]), main_work.to_string(), vec![5 * ms20]),
            (span, main_sleep.to_string(), vec![ms20])
        ]
    );
    let malloc = by_event(&r.profiles, "malloc");
    assert_eq!(malloc.metric, "memory");
    assert_eq!(malloc.profile.period_type, None, "Pyroscope gives native memory no period type");
    assert_eq!(rows(malloc), [(l(&[]), main_work.to_string(), vec![2, 150])]);
    for p in &r.profiles {
        assert_valid_pprof(p);
    }
    // Without the setting nothing is wall time, and no `jfr_event`.
    let plain = parse_jfr(&app_recording(&[synth::execution_sample(1, 0)]), None, LIMIT, 100, BUDGET).unwrap();
    assert_eq!(plain.event, None);
    assert_eq!(plain.profiles.iter().map(|p| p.kind).collect::<Vec<_>>(), ["cpu"]);
    // sampleRate 0: events carry no time (Pyroscope's period 0).
    let zero = parse_jfr(&app_recording(&[synth::execution_sample(1, 0)]), None, LIMIT, 0, BUDGET).unwrap();
    assert_eq!(zero.profiles[0].profile.sample[0].value, [0]);
}

/// Frame names as Pyroscope spells them: internal class names with
/// slashes, `.method` for a class without a name, generated lambda classes
/// merged, frames whose method or class is missing left out, and line -1
/// read as an unsigned 32-bit number.
#[test]
fn frame_names_follow_pyroscope() {
    use synth::*;
    let pools = vec![
        (
            SYMBOL,
            vec![
                (1, sym("com/example/App")),
                (2, sym("main")),
                (3, sym("work")),
                (5, sym("()V")),
                (6, sym("")),
                (7, sym("no_Java_frame")),
                (8, sym("App$$Lambda$14/0x0000000801001000")),
                (9, sym("run")),
            ],
        ),
        (CLASS, vec![(1, ints(&[1, 1])), (2, ints(&[6, 0])), (3, ints(&[8, 0]))]),
        (METHOD, vec![(1, ints(&[1, 2, 5])), (2, ints(&[2, 7, 5])), (3, ints(&[3, 9, 5])), (4, ints(&[99, 3, 5]))]),
        (STACK_TRACE, vec![(1, stack(&[(2, 0), (3, -1), (4, 7), (77, 1), (1, 5)]))]),
        (THREAD_STATE, vec![(RUNNABLE, sym("STATE_RUNNABLE"))]),
    ];
    let rec = chunk(&std_classes(), &pools, &[execution_sample(1, 0)]);
    let ps = parse_checked(&rec, None).unwrap();
    let cpu = by_event(&ps, "cpu");
    assert_eq!(rows(cpu), [(vec![], ".no_Java_frame;App$$Lambda_.run;com/example/App.main".to_string(), vec![PERIOD])]);
    let lambda = &cpu.profile.location[cpu.profile.sample[0].location_id[1] as usize - 1];
    assert_eq!(lambda.line[0].line, 4_294_967_295);
}

#[test]
fn no_supported_events_is_empty() {
    let rec = app_recording(&[synth::active_setting(synth::EXECUTION_SAMPLE, "period", "20 ms")]);
    assert_eq!(parse_checked(&rec, None).unwrap(), vec![]);
}

// ---------------------------------------------------------------- hostile input

type Expect = fn(&JfrError) -> bool;

#[test]
fn garbage_is_rejected() {
    let raw = capture();
    let cases: Vec<(Vec<u8>, Expect)> = vec![
        (vec![], |e| matches!(e, JfrError::NotJfr { .. })),
        (b"hello world".to_vec(), |e| matches!(e, JfrError::NotJfr { .. })),
        (b"FLR\0".to_vec(), |e| matches!(e, JfrError::Truncated { .. })),
        (vec![0u8; 4096], |e| matches!(e, JfrError::NotJfr { .. })),
        (
            {
                let mut v = raw.clone();
                v[5] = 1; // version 1.x
                v
            },
            |e| matches!(e, JfrError::UnsupportedVersion { major: 256 | 1, .. }),
        ),
        (
            {
                let mut v = raw.clone();
                synth::set_chunk_size(&mut v, i64::MAX);
                v
            },
            |e| matches!(e, JfrError::Malformed { .. } | JfrError::Truncated { .. }),
        ),
        (
            {
                let mut v = raw.clone();
                synth::set_chunk_size(&mut v, -1);
                v
            },
            |e| matches!(e, JfrError::Malformed { .. }),
        ),
        (
            {
                let mut v = raw.clone();
                v[24..32].copy_from_slice(&(raw.len() as i64 + 5).to_be_bytes()); // metadata offset
                v
            },
            |e| matches!(e, JfrError::Malformed { .. }),
        ),
        (
            {
                let mut v = raw.clone();
                v.extend_from_slice(b"trailing");
                v
            },
            |e| matches!(e, JfrError::NotJfr { .. }),
        ),
    ];
    for (i, (buf, ok)) in cases.iter().enumerate() {
        let e = parse(buf, None, LIMIT).unwrap_err();
        assert!(ok(&e), "case {i}: {e}");
    }
}

#[test]
fn every_prefix_is_an_error() {
    let raw = capture();
    let mut n = 0;
    while n < raw.len() {
        assert!(parse(&raw[..n], None, LIMIT).is_err(), "prefix {n}");
        n += if n < 256 { 1 } else { 61 };
    }
    // Same with the header's chunk size shrunk to the prefix, so that the
    // metadata, pools and events themselves are cut (synthetic recording:
    // metadata first).
    let events = [synth::execution_sample(1, 1), synth::execution_sample(2, 2)];
    let rec = app_recording(&events);
    // Cuts at event boundaries are valid shorter chunks.
    let meta = synth::event(0, &synth::metadata_body(&synth::metadata_tree(&synth::std_classes())));
    let cp = synth::event(1, &synth::checkpoint_body(&synth::app_pools()));
    let mut boundaries = vec![68 + meta.len(), 68 + meta.len() + cp.len()];
    for e in &events {
        boundaries.push(boundaries.last().unwrap() + e.len());
    }
    for n in 68..rec.len() {
        let mut v = rec[..n].to_vec();
        synth::set_chunk_size(&mut v, n as i64);
        assert_eq!(parse_checked(&v, None).is_ok(), boundaries.contains(&n), "cut at {n}");
    }
    assert!(parse_checked(&rec, None).is_ok());
}

#[test]
fn every_byte_flipped_never_panics() {
    let rec = app_recording(&[
        synth::active_setting(synth::EXECUTION_SAMPLE, "period", "20 ms"),
        synth::execution_sample(1, 1),
        synth::execution_sample(2, 2),
        synth::event(synth::MONITOR_ENTER, &synth::ints(&[1, 1500, 2])),
    ]);
    let labels = snapshot().encode_to_vec();
    let (mut errors, mut oks) = (0, 0);
    for i in 0..rec.len() {
        for x in [0x01u8, 0x80, 0xff, 0x7f] {
            let mut v = rec.clone();
            v[i] ^= x;
            match parse_checked(&v, Some(&labels)) {
                Ok(_) => oks += 1,
                Err(_) => errors += 1,
            }
        }
    }
    assert!(errors > rec.len(), "most flips are detected ({errors} errors, {oks} ok)");
    // The real capture: a flip every 331 bytes.
    let raw = capture();
    for i in (0..raw.len()).step_by(331) {
        let mut v = raw.clone();
        v[i] ^= 0xa5;
        let _ = parse_checked(&v, None);
    }
}

#[test]
fn hostile_declared_sizes_and_nesting() {
    use synth::*;
    let classes = std_classes();
    let pools = app_pools();
    let meta = metadata_body(&metadata_tree(&classes));

    // Pool count, entry count, string length, array length: huge values.
    let huge = i64::from(i32::MAX);
    let mut cp = ints(&[0, 0, 0]);
    cp.push(0);
    cp.extend(ints(&[huge]));
    assert!(parse(&chunk_raw(&meta, &cp, &[]), None, LIMIT).is_err());
    let mut cp = ints(&[0, 0, 0]);
    cp.push(0);
    cp.extend(ints(&[1, SYMBOL, huge]));
    assert!(parse(&chunk_raw(&meta, &cp, &[]), None, LIMIT).is_err());
    let mut bad_sym = vec![3u8];
    bad_sym.extend(ints(&[huge]));
    assert!(parse(&chunk(&classes, &[(SYMBOL, vec![(1, bad_sym)])], &[]), None, LIMIT).is_err());
    let mut neg = vec![3u8];
    neg.extend(ints(&[-5]));
    assert!(parse(&chunk(&classes, &[(SYMBOL, vec![(1, neg)])], &[]), None, LIMIT).is_err());
    let mut bad_stack = vec![0u8];
    bad_stack.extend(ints(&[huge]));
    assert!(parse(&chunk(&classes, &[(STACK_TRACE, vec![(1, bad_stack)])], &[]), None, LIMIT).is_err());
    // Metadata: huge string count.
    let mut m = ints(&[0, 0, 1, huge]);
    m.extend(sym("x"));
    assert!(parse(&chunk_raw(&m, &checkpoint_body(&pools), &[]), None, LIMIT).is_err());

    // Deeply nested metadata elements.
    let mut deep = Element { name: "x".into(), attrs: vec![], children: vec![] };
    for _ in 0..1000 {
        deep = Element { name: "x".into(), attrs: vec![], children: vec![deep] };
    }
    let e = parse(&chunk_raw(&metadata_body(&deep), &checkpoint_body(&[]), &[]), None, LIMIT).unwrap_err();
    assert!(matches!(e, JfrError::Malformed { .. }), "{e}");

    // A struct that inlines itself: `Node { int v; Node next; }`, with a pool entry.
    let mut cls = classes.clone();
    cls.push(class(50, "Node", vec![f("v", INT), f("next", 50)]));
    let e = parse(&chunk(&cls, &[(50, vec![(1, vec![1u8; 10_000])])], &[]), None, LIMIT).unwrap_err();
    assert!(matches!(e, JfrError::Malformed { .. }), "{e}");

    // Structs of structs with no data: skipped in O(1), arrays of them too.
    let mut cls = classes.clone();
    cls.push(class(60, "Empty", vec![]));
    cls.push(class(61, "Empties", vec![f("a", 60), f("b", 60), f("c", 60)]));
    cls.push(class(62, "Holder", vec![arr("many", 61), f("x", INT)]));
    let mut v = ints(&[1_000_000]);
    v.extend(vec![0u8; 1_000_000]);
    v.extend(ints(&[7]));
    assert!(parse(&chunk(&cls, &[(62, vec![(1, v)])], &[]), None, LIMIT).is_ok());

    // Unknown classes in pools or fields.
    let mut cp = ints(&[0, 0, 0]);
    cp.push(0);
    cp.extend(ints(&[1, 12345, 0]));
    assert!(matches!(parse(&chunk_raw(&meta, &cp, &[]), None, LIMIT), Err(JfrError::Malformed { .. })));
    let mut cls = classes.clone();
    cls.push(class(70, "Dangling", vec![f("x", 9999)]));
    assert!(matches!(parse(&chunk(&cls, &pools, &[]), None, LIMIT), Err(JfrError::Malformed { .. })));
}

#[test]
fn name_budget_caps_function_names() {
    use synth::*;
    // 2000 methods of one class with a 10 kB name: 20 MB of function names.
    let long = "c".repeat(10_000);
    let methods: Vec<(i64, Vec<u8>)> = (1..=2000).map(|i| (i, ints(&[1, 2, 2]))).collect();
    let frames: Vec<(i64, i64)> = (1..=2000).map(|i| (i, 0)).collect();
    let pools = vec![
        (SYMBOL, vec![(1, sym(&long)), (2, sym("m"))]),
        (CLASS, vec![(1, ints(&[1, 0]))]),
        (METHOD, methods),
        (STACK_TRACE, vec![(1, stack(&frames))]),
        (THREAD_STATE, vec![(RUNNABLE, sym("STATE_RUNNABLE"))]),
    ];
    let rec = chunk(&std_classes(), &pools, &[execution_sample(1, 0)]);
    assert_eq!(parse(&rec, None, 1 << 20), Err(JfrError::TooLarge { limit: 1 << 20 }));
    let ps = parse_checked(&rec, None).unwrap();
    assert_eq!(ps[0].profile.function.len(), 1, "identical names are one function");
}

/// One 200,000-frame stack in the constant pool, sampled under 5000
/// distinct label contexts: 5000 pprof samples would each copy the stack
/// (1 GB encoded). Refused before the copies are made, naming the limit.
#[test]
fn a_shared_stack_under_many_labels_is_charged_before_it_is_copied() {
    use synth::*;
    let frames: Vec<(i64, i64)> = vec![(1, 1); 200_000];
    let pools = vec![
        (SYMBOL, vec![(1, sym("com/example/App")), (2, sym("deep")), (5, sym("()V"))]),
        (CLASS, vec![(1, ints(&[1, 1]))]),
        (METHOD, vec![(1, ints(&[1, 2, 5]))]),
        (STACK_TRACE, vec![(1, stack(&frames))]),
        (THREAD_STATE, vec![(RUNNABLE, sym("STATE_RUNNABLE"))]),
    ];
    let events: Vec<Vec<u8>> = (1..=5000).map(|ctx| execution_sample(1, ctx)).collect();
    let rec = chunk(&std_classes(), &pools, &events);
    let snapshot = LabelsSnapshot {
        contexts: (1..=5000).map(|c| (c, Context { labels: [(1, 100 + c)].into_iter().collect() })).collect(),
        strings: std::iter::once((1, "request".to_string()))
            .chain((1..=5000).map(|c| (100 + c, format!("r{c}"))))
            .collect(),
    }
    .encode_to_vec();
    let err = parse_jfr(&rec, Some(&snapshot), LIMIT, SAMPLE_RATE, BUDGET).unwrap_err();
    assert_eq!(err, JfrError::ProfileTooLarge { kind: "cpu", limit: 4 << 20 });
    assert!(err.to_string().contains("max_profile_size_bytes"));
    // 20 contexts fit the profile limit (4 MB encoded) but not a 16 MB request budget.
    let few = chunk(&std_classes(), &pools, &events[..20]);
    let tight = phlox_formats::Budget { max_profile_bytes: 8 << 20, max_request_bytes: 16 << 20 };
    assert_eq!(
        parse_jfr(&few, Some(&snapshot), LIMIT, SAMPLE_RATE, tight).unwrap_err(),
        JfrError::RequestTooLarge { limit: 16 << 20 }
    );
    let ps = parse_jfr(&few, Some(&snapshot), LIMIT, SAMPLE_RATE, BUDGET).unwrap().profiles;
    assert_eq!(ps[0].profile.sample.len(), 20);
}

fn mutated(base: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = base.len();
    let edits = proptest::collection::vec((0..len, any::<u8>()), 1..8);
    // Sometimes also cut, and then sometimes shrink the header's chunk size to match.
    let cut = proptest::option::weighted(0.25, (68..len, any::<bool>()));
    (edits, cut).prop_map(move |(edits, cut)| {
        let mut v = base.clone();
        for (i, b) in edits {
            v[i] = b;
        }
        if let Some((cut, fix_size)) = cut {
            v.truncate(cut);
            if fix_size {
                synth::set_chunk_size(&mut v, cut as i64);
            }
        }
        v
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn mutated_synthetic_recordings_never_panic(buf in mutated(app_recording(&[
        synth::active_setting(synth::EXECUTION_SAMPLE, "period", "20 ms"),
        synth::execution_sample(1, 1),
        synth::execution_sample(2, 2),
        synth::event(synth::WALL_CLOCK, &synth::ints(&[1, 2, synth::SLEEPING, 3])),
        synth::event(synth::MONITOR_ENTER, &synth::ints(&[1, 1500, 2])),
    ]))) {
        let _ = parse_checked(&buf, Some(&snapshot().encode_to_vec()));
    }

    #[test]
    fn random_bytes_after_a_header_never_panic(body in proptest::collection::vec(any::<u8>(), 0..2048), meta in 68i64..2200) {
        let mut v = app_recording(&[])[..68].to_vec();
        v[24..32].copy_from_slice(&meta.to_be_bytes());
        v.extend(body);
        let n = v.len() as i64;
        synth::set_chunk_size(&mut v, n);
        let _ = parse_checked(&v, None);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn mutated_capture_never_panics(buf in mutated(capture())) {
        let _ = parse_checked(&buf, None);
    }
}

/// The JFR writer for tests (one chunk, compressed ints, metadata right
/// after the header, then one checkpoint, then the events).
use phlox_formats::jfr::testkit as synth;
