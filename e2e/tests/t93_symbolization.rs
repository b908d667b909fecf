//! Native symbolization: a small C and a small Rust program are compiled
//! here with debug info and stripped; a pprof carrying only their build ids
//! and addresses is pushed. Before the debug files are uploaded the flame
//! graph names frames by address; after the unstripped files go through the
//! debuginfo API the same query shows the functions, files and lines
//! `addr2line` (binutils) gives, inlined frames included, and stacks that
//! became identical are merged.
//!
//! Needs gcc, rustc, strip, nm, readelf and addr2line (Debian: gcc,
//! binutils; rustc comes with the toolchain): the test fails naming any
//! that is missing.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use phlox_e2e::*;
use phlox_proto::google::v1 as pb;
use phlox_proto::querier::v1 as q;
use prost::Message;

const TENANT: &str = "anonymous";

/// Frames of an address or a stack: (function, file, line), innermost first.
type Frames = Vec<(String, String, i64)>;
const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("this test needs `{cmd}` (Debian: gcc, binutils; rustc from the toolchain): {e}"));
    assert!(out.status.success(), "{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

const C_SOURCE: &str = r#"
#include <stdio.h>
static inline __attribute__((always_inline)) int leaf_inline(int x) { return x * x * 3 + (x >> 2); }
__attribute__((noinline)) int work(int n) {
    int s = 0;
    for (int i = 0; i < n; i++) s += leaf_inline(i ^ s);
    return s;
}
int main(int argc, char **argv) { printf("%d\n", work(argc * 1000)); return 0; }
"#;

const RUST_SOURCE: &str = r#"
#[inline(always)]
fn leaf_inline(x: u64) -> u64 { x.wrapping_mul(x).wrapping_mul(3) ^ (x >> 2) }
#[inline(never)]
fn work(n: u64) -> u64 {
    let mut s = 0u64;
    for i in 0..n { s = s.wrapping_add(leaf_inline(i ^ s)); }
    s
}
fn main() { println!("{}", work(std::env::args().count() as u64 * 1000)); }
"#;

/// A binary built here: unstripped (the debug file) and its build id.
struct Binary {
    debug: PathBuf,
    build_id: String,
    /// (start, size) of each text symbol, by name (as `nm` prints it).
    symbols: HashMap<String, (u64, u64)>,
    /// (file offset, virtual address, file size) of each LOAD segment.
    segments: Vec<(u64, u64, u64)>,
}

fn hex(s: &str) -> u64 {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap()
}

impl Binary {
    fn inspect(debug: PathBuf) -> Binary {
        let d = debug.to_str().unwrap();
        let notes = run("readelf", &["-n", d]);
        let build_id = notes
            .lines()
            .find_map(|l| l.trim().strip_prefix("Build ID: "))
            .unwrap_or_else(|| panic!("{d} has no GNU build id"))
            .to_owned();
        let mut symbols = HashMap::new();
        for l in run("nm", &["-S", "--defined-only", d]).lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() == 4 && (f[2] == "T" || f[2] == "t") {
                symbols.insert(f[3].to_owned(), (hex(f[0]), hex(f[1])));
            }
        }
        let mut segments = Vec::new();
        for l in run("readelf", &["-lW", d]).lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.first() == Some(&"LOAD") {
                segments.push((hex(f[1]), hex(f[2]), hex(f[4])));
            }
        }
        Binary { debug, build_id, symbols, segments }
    }

    /// The symbol whose name ends with `suffix` (Rust names are mangled).
    fn symbol(&self, suffix: &str) -> (u64, u64) {
        let mut found: Vec<_> = self.symbols.iter().filter(|(n, _)| n.contains(suffix)).collect();
        found.sort();
        *found.first().unwrap_or_else(|| panic!("no symbol like {suffix} in {:?}", self.debug)).1
    }

    /// The file offset of a virtual address.
    fn offset(&self, vaddr: u64) -> u64 {
        let &(off, va, _) = self
            .segments
            .iter()
            .find(|&&(_, va, size)| va <= vaddr && vaddr < va + size)
            .expect("address in a segment");
        vaddr - va + off
    }

    /// `addr2line -f -i -C` of each address: frames (function, file, line), innermost first.
    fn addr2line(&self, addrs: &[u64]) -> Vec<Frames> {
        let list: Vec<String> = addrs.iter().map(|a| format!("0x{a:x}")).collect();
        let mut args = vec!["-a", "-f", "-i", "-C", "-e", self.debug.to_str().unwrap()];
        args.extend(list.iter().map(String::as_str));
        let out = run("addr2line", &args);
        let mut result: Vec<Frames> = Vec::new();
        let mut lines = out.lines().peekable();
        while let Some(l) = lines.next() {
            if l.starts_with("0x") {
                result.push(Vec::new());
                continue;
            }
            let place = lines.next().unwrap();
            let place = place.split(" (discriminator").next().unwrap();
            let (file, line) = place.rsplit_once(':').unwrap();
            let file = if file == "??" { "" } else { file };
            result.last_mut().unwrap().push((l.to_owned(), file.to_owned(), line.parse().unwrap_or(0)));
        }
        result
    }
}

/// Compiles both programs into `dir`: (C binary, Rust binary), each also
/// copied stripped (what runs in production).
fn build(dir: &Path) -> (Binary, Binary) {
    std::fs::write(dir.join("prog.c"), C_SOURCE).unwrap();
    std::fs::write(dir.join("rprog.rs"), RUST_SOURCE).unwrap();
    let c = dir.join("prog");
    let r = dir.join("rprog");
    run("gcc", &["-g", "-O2", "-Wl,--build-id", "-o", c.to_str().unwrap(), dir.join("prog.c").to_str().unwrap()]);
    run(
        "rustc",
        &[
            "-g",
            "-C",
            "opt-level=2",
            "-C",
            "link-arg=-Wl,--build-id",
            "-o",
            r.to_str().unwrap(),
            dir.join("rprog.rs").to_str().unwrap(),
        ],
    );
    for b in [&c, &r] {
        let stripped = b.with_extension("stripped");
        std::fs::copy(b, &stripped).unwrap();
        run("strip", &["--strip-all", stripped.to_str().unwrap()]);
        let sections = run("readelf", &["-SW", stripped.to_str().unwrap()]);
        assert!(!sections.contains(".debug_info") && !sections.contains(".symtab"), "stripped: {sections}");
    }
    let (c, r) = (Binary::inspect(c), Binary::inspect(r));
    for b in [&c, &r] {
        let notes = run("readelf", &["-n", b.debug.with_extension("stripped").to_str().unwrap()]);
        assert!(notes.contains(&b.build_id), "the stripped file keeps its build id");
    }
    (c, r)
}

/// Addresses of a program for the profile: one in `work` where
/// `leaf_inline` is inlined, two in `work` itself (different addresses,
/// the same function), one in `main`; with addr2line's frames for each.
fn pick(b: &Binary, work: &str, main: &str) -> ([u64; 4], Vec<Frames>) {
    let (start, size) = b.symbol(work);
    let all: Vec<u64> = (start..start + size).collect();
    let frames = b.addr2line(&all);
    let inlined = (0..all.len())
        .find(|&i| frames[i].len() >= 2 && frames[i][0].0.contains("leaf_inline"))
        .expect("an inlined address");
    let plain: Vec<usize> = (0..all.len())
        .filter(|&i| frames[i].len() == 1 && frames[i][0].0.ends_with("work") && frames[i][0].2 > 0)
        .collect();
    assert!(plain.len() >= 2, "addresses of work itself: {plain:?}");
    let (m, _) = b.symbol(main);
    let main_addr =
        (m..m + 64).find(|&a| b.addr2line(&[a])[0].first().is_some_and(|f| f.0.ends_with("main") && f.2 > 0)).unwrap();
    let addrs = [all[inlined], all[plain[0]], all[plain[plain.len() - 1]], main_addr];
    let frames = b.addr2line(&addrs);
    (addrs, frames)
}

/// Each program is mapped at a base of its own, from file offset 0.
const BASES: [u64; 2] = [0x5555_5555_0000, 0x7f00_0000_0000];

/// The profile: per program, [inlined, main] × 30, [work, main] × 12,
/// [work', main] × 5 (runtime addresses only, no functions).
fn profile(programs: &[(&Binary, [u64; 4])]) -> Vec<u8> {
    let mut p = pb::Profile {
        string_table: vec![String::new(), "cpu".into(), "nanoseconds".into()],
        sample_type: vec![pb::ValueType { r#type: 1, unit: 2 }],
        period_type: Some(pb::ValueType { r#type: 1, unit: 2 }),
        period: 10_000_000,
        time_nanos: now_nanos(),
        ..Default::default()
    };
    for (k, (b, addrs)) in programs.iter().enumerate() {
        p.string_table.push(format!("/usr/bin/{}", b.debug.file_name().unwrap().to_str().unwrap()));
        p.string_table.push(b.build_id.clone());
        let mapping = k as u64 + 1;
        p.mapping.push(pb::Mapping {
            id: mapping,
            memory_start: BASES[k],
            memory_limit: BASES[k] + (1 << 30),
            file_offset: 0,
            filename: p.string_table.len() as i64 - 2,
            build_id: p.string_table.len() as i64 - 1,
            ..Default::default()
        });
        for &a in addrs {
            p.location.push(pb::Location {
                id: p.location.len() as u64 + 1,
                mapping_id: mapping,
                address: BASES[k] + b.offset(a),
                ..Default::default()
            });
        }
        let loc = |i: usize| (k * 4 + i) as u64 + 1;
        for (leaf, value) in [(0, 30), (1, 12), (2, 5)] {
            p.sample.push(pb::Sample { location_id: vec![loc(leaf), loc(3)], value: vec![value], label: vec![] });
        }
    }
    p.encode_to_vec()
}

/// Self value per function name of a flame graph.
fn self_by_name(fg: &q::FlameGraph) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for level in &fg.levels {
        for node in level.values.chunks(4) {
            *out.entry(fg.names[node[3] as usize].clone()).or_insert(0) += node[2];
        }
    }
    out
}

async fn flame(base: &str, selector: &str) -> q::FlameGraph {
    let now = now_nanos() / 1_000_000;
    let r: q::SelectMergeStacktracesResponse = query(
        base,
        TENANT,
        "SelectMergeStacktraces",
        &q::SelectMergeStacktracesRequest {
            profile_type_id: CPU.into(),
            label_selector: selector.into(),
            start: now - 3_600_000,
            end: now + 60_000,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    r.flamegraph.unwrap_or_default()
}

/// The merged pprof as (frames of each stack, leaf first; value).
async fn stacks(base: &str) -> HashMap<Frames, i64> {
    stacks_of(base, r#"{service_name="native"}"#).await
}

async fn stacks_of(base: &str, selector: &str) -> HashMap<Frames, i64> {
    let now = now_nanos() / 1_000_000;
    let p: pb::Profile = query(
        base,
        TENANT,
        "SelectMergeProfile",
        &q::SelectMergeProfileRequest {
            profile_type_id: CPU.into(),
            label_selector: selector.into(),
            start: now - 3_600_000,
            end: now + 60_000,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let s = |i: i64| p.string_table[i as usize].clone();
    let mut out = HashMap::new();
    for sample in &p.sample {
        let mut frames = Vec::new();
        for id in &sample.location_id {
            let loc = p.location.iter().find(|l| l.id == *id).unwrap();
            for line in &loc.line {
                let f = p.function.iter().find(|f| f.id == line.function_id).unwrap();
                frames.push((s(f.name), s(f.filename), line.line));
            }
        }
        *out.entry(frames).or_insert(0) += sample.value[0];
    }
    out
}

async fn debuginfo(
    client: &reqwest::Client,
    base: &str,
    method: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let r = client
        .post(format!("{base}/debuginfo.v1alpha1.DebuginfoService/{method}"))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, serde_json::from_slice(&r.bytes().await.unwrap()).unwrap_or(serde_json::Value::Null))
}

/// Both programs built, their addresses picked, and the stacks the answer
/// must hold once symbolized (from addr2line: frames of each stack, leaf
/// first; stacks that resolve alike summed).
struct Setup {
    _tmp: tempfile::TempDir,
    c: Binary,
    rust: Binary,
    c_addrs: [u64; 4],
    r_addrs: [u64; 4],
    c_frames: Vec<Frames>,
    want: HashMap<Frames, i64>,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let (c, rust) = build(tmp.path());
    let (c_addrs, c_frames) = pick(&c, "work", "main");
    let (r_addrs, r_frames) = pick(&rust, "4work", "4main");
    let mut want: HashMap<Frames, i64> = HashMap::new();
    for frames in [&c_frames, &r_frames] {
        for (leaf, value) in [(0, 30), (1, 12), (2, 5)] {
            let stack: Vec<_> = frames[leaf].iter().chain(&frames[3]).cloned().collect();
            *want.entry(stack).or_insert(0) += value;
        }
    }
    Setup { _tmp: tmp, c, rust, c_addrs, r_addrs, c_frames, want }
}

/// A config file: missing debug files looked up again after a second,
/// `extra` appended to the `symbolizer` section.
fn config(dir: &Path, extra: &str) -> String {
    let path = dir.join("phlox.yaml");
    std::fs::write(&path, format!("symbolizer:\n  retry_missing: 1s\n{extra}")).unwrap();
    path.to_str().unwrap().to_owned()
}

async fn push_profile(server: &Phlox, s: &Setup) {
    let body = push_request(
        &[("__name__", "process_cpu"), ("service_name", "native")],
        profile(&[(&s.c, s.c_addrs), (&s.rust, s.r_addrs)]),
        "7d3a1a7e-0000-4000-8000-000000000001",
    );
    push_until_acked(&reqwest::Client::new(), &server.push_url(), TENANT, body.encode_to_vec()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_frames_get_names_once_their_debug_files_are_uploaded() {
    let s = setup();
    let (c, rust, c_addrs, r_addrs, c_frames, want) = (&s.c, &s.rust, s.c_addrs, s.r_addrs, &s.c_frames, &s.want);
    // Default settings: a build id without a file is looked up again only
    // after 30 s, but an upload to this process is used at once.
    let (_data, dir) = data_dir();
    let server = Phlox::start(&dir, &[]);
    let client = reqwest::Client::new();
    push_profile(&server, &s).await;

    // Before any upload: frames named by their runtime addresses, and the
    // series marked unsymbolized.
    let before = self_by_name(&flame(&server.http, "{}").await);
    let addr = |k: usize, b: &Binary, a: u64| format!("0x{:x}", BASES[k] + b.offset(a));
    assert_eq!(before.get(&addr(0, c, c_addrs[0])), Some(&30), "{before:?}");
    assert_eq!(before.get(&addr(0, c, c_addrs[2])), Some(&5), "{before:?}");
    assert_eq!(before.get(&addr(1, rust, r_addrs[1])), Some(&12), "{before:?}");
    assert_eq!(flame(&server.http, r#"{__unsymbolized__="true"}"#).await.total, 94);

    // The API: bad input is refused, the files go up.
    let (status, _) =
        debuginfo(&client, &server.http, "ShouldInitiateUpload", serde_json::json!({"file": {"gnuBuildId": "xyz"}}))
            .await;
    assert_eq!(status, 400, "a build id that is not hex");
    let upload_url = |id: &str| format!("{}/debuginfo.v1alpha1.DebuginfoService/Upload/{id}", server.http);
    let r = client.post(upload_url(&c.build_id)).body("not an ELF file".to_owned()).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400, "a body that is not ELF");
    for b in [c, rust] {
        let (status, answer) = debuginfo(
            &client,
            &server.http,
            "ShouldInitiateUpload",
            serde_json::json!({"file": {"gnuBuildId": b.build_id, "name": "prog"}}),
        )
        .await;
        assert_eq!((status, &answer["shouldInitiateUpload"]), (200, &serde_json::json!(true)), "{answer}");
        let r = client.post(upload_url(&b.build_id)).body(std::fs::read(&b.debug).unwrap()).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
        let (status, answer) =
            debuginfo(&client, &server.http, "UploadFinished", serde_json::json!({"gnuBuildId": b.build_id})).await;
        assert_eq!(status, 200, "{answer}");
        let (_, answer) = debuginfo(
            &client,
            &server.http,
            "ShouldInitiateUpload",
            serde_json::json!({"file": {"gnuBuildId": b.build_id}}),
        )
        .await;
        // proto3 JSON leaves out `false`.
        assert_eq!(answer["shouldInitiateUpload"].as_bool(), None, "uploaded once: {answer}");
        assert_eq!(answer["reason"], "debuginfo already exists");
    }
    let (_, list) = debuginfo(&client, &server.http, "ListDebuginfo", serde_json::json!({})).await;
    let listed: Vec<(&str, &str)> = list["object"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["file"]["gnuBuildId"].as_str().unwrap(), o["state"].as_str().unwrap()))
        .collect();
    let mut ids = [c.build_id.as_str(), rust.build_id.as_str()];
    ids.sort();
    assert_eq!(listed, ids.iter().map(|i| (*i, "STATE_UPLOADED")).collect::<Vec<_>>());

    // At once after: the functions, files and lines addr2line gives,
    // inlined frames included; `work` at two addresses is one node of the
    // flame graph.
    let got = stacks(&server.http).await;
    assert_eq!(&got, want);
    assert_eq!(got.values().sum::<i64>(), 94);
    let after = self_by_name(&flame(&server.http, "{}").await);
    let name = |frames: &Frames| frames[0].0.clone();
    assert_eq!(after.get(&name(&c_frames[0])), Some(&30), "{after:?}");
    assert_eq!(after.get("work"), Some(&17), "{after:?}");
    assert!(after.keys().all(|n| !n.starts_with("0x")), "{after:?}");

    // An OTLP profile (the eBPF profiler's form: the build id a mapping
    // attribute) of the C program: resolved alike.
    let r = client
        .post(format!("{}/v1development/profiles", server.http))
        .header("Content-Type", "application/x-protobuf")
        .body(otlp_request(c, c_addrs).encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let otlp = stacks_of(&server.http, r#"{service_name="native-otlp"}"#).await;
    let stack: Vec<_> = c_frames[0].iter().chain(&c_frames[3]).cloned().collect();
    assert_eq!(otlp, HashMap::from([(stack, 3 * OTLP_PERIOD)]));

    // Deleted: listed no more.
    let (status, _) =
        debuginfo(&client, &server.http, "DeleteDebuginfo", serde_json::json!({"gnuBuildId": c.build_id})).await;
    assert_eq!(status, 200);
    let (_, list) = debuginfo(&client, &server.http, "ListDebuginfo", serde_json::json!({})).await;
    assert_eq!(list["object"].as_array().map_or(0, Vec::len), 1);
    server.stop();
}

/// Debian's debuginfod server on a directory holding the unstripped files.
struct Debuginfod {
    child: std::process::Child,
    url: String,
}

impl Drop for Debuginfod {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn debuginfod(files: &Path, db: &Path, build_ids: &[&str]) -> Debuginfod {
    let port = free_port();
    let child = Command::new("debuginfod")
        .args(["-F", files.to_str().unwrap(), "-p", &port.to_string(), "-d", db.to_str().unwrap(), "-t", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("this test needs Debian's debuginfod server (apt-get install debuginfod): {e}"));
    let server = Debuginfod { child, url: format!("http://127.0.0.1:{port}") };
    let client = reqwest::Client::new();
    for id in build_ids {
        let url = format!("{}/buildid/{id}/debuginfo", server.url);
        eventually("debuginfod indexed the files", Duration::from_secs(60), Duration::from_millis(200), || async {
            client.get(&url).send().await.ok().filter(|r| r.status().is_success()).map(|_| ())
        })
        .await;
    }
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_frames_get_names_from_a_debuginfod_server() {
    let s = setup();
    let files = tempfile::tempdir().unwrap();
    for b in [&s.c, &s.rust] {
        std::fs::copy(&b.debug, files.path().join(b.debug.file_name().unwrap())).unwrap();
    }
    let server_dir = tempfile::tempdir().unwrap();
    let d = debuginfod(files.path(), &server_dir.path().join("db.sqlite"), &[&s.c.build_id, &s.rust.build_id]).await;
    let (data, dir) = data_dir();
    let cfg = config(data.path(), &format!("  debuginfod_url: {}\n", d.url));
    let server = Phlox::start(&dir, &["--config", &cfg]);
    push_profile(&server, &s).await;
    // No upload: the files come from debuginfod.
    let got = eventually("symbolized from debuginfod", Duration::from_secs(60), Duration::from_millis(500), || async {
        let got = stacks(&server.http).await;
        (got == s.want).then_some(got)
    })
    .await;
    assert_eq!(got.values().sum::<i64>(), 94);
    server.stop();
    // The fetched files were kept in the bucket: the same answer with the
    // debuginfod server gone, from a new process (empty caches).
    drop(d);
    let server = Phlox::start(&dir, &["--config", &cfg]);
    assert_eq!(stacks(&server.http).await, s.want);
    server.stop();
}

const OTLP_PERIOD: i64 = 10_000_000;

/// An OTLP export: `samples:count` every 10 ms, one stack [inlined, main]
/// × 3 of `b`, as the eBPF profiler sends it: the build id a mapping
/// attribute, addresses within the file (not the process).
fn otlp_request(
    b: &Binary,
    addrs: [u64; 4],
) -> phlox_proto::opentelemetry::proto::collector::profiles::v1development::ExportProfilesServiceRequest {
    use phlox_proto::opentelemetry::proto::collector::profiles::v1development::ExportProfilesServiceRequest;
    use phlox_proto::opentelemetry::proto::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
    use phlox_proto::opentelemetry::proto::profiles::v1development::{
        Function, KeyValueAndUnit, Link, Location, Mapping, Profile, ProfilesDictionary, ResourceProfiles, Sample,
        ScopeProfiles, Stack, ValueType,
    };
    use phlox_proto::opentelemetry::proto::resource::v1::Resource;
    let text = |v: &str| Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) });
    let strings: Vec<String> =
        ["", "samples", "count", "cpu", "nanoseconds", "process.executable.build_id.gnu", "/usr/bin/prog"]
            .map(String::from)
            .to_vec();
    let loc = |a: u64| Location { mapping_index: 1, address: a, lines: vec![], attribute_indices: vec![] };
    let profile = Profile {
        sample_type: Some(ValueType { type_strindex: 1, unit_strindex: 2 }),
        samples: vec![Sample {
            stack_index: 1,
            attribute_indices: vec![],
            link_index: 0,
            values: vec![3],
            timestamps_unix_nano: vec![],
        }],
        time_unix_nano: now_nanos() as u64,
        duration_nano: 10_000_000_000,
        period_type: Some(ValueType { type_strindex: 3, unit_strindex: 4 }),
        period: OTLP_PERIOD,
        ..Default::default()
    };
    ExportProfilesServiceRequest {
        resource_profiles: vec![ResourceProfiles {
            resource: Some(Resource {
                attributes: vec![KeyValue { key: "service.name".into(), value: text("native-otlp"), key_strindex: 0 }],
                dropped_attributes_count: 0,
                entity_refs: vec![],
            }),
            scope_profiles: vec![ScopeProfiles {
                scope: Some(InstrumentationScope {
                    name: "ebpf-profiler".into(),
                    version: "1".into(),
                    attributes: vec![],
                    dropped_attributes_count: 0,
                }),
                profiles: vec![profile],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
        dictionary: Some(ProfilesDictionary {
            mapping_table: vec![
                Mapping::default(),
                Mapping {
                    memory_start: BASES[0],
                    memory_limit: BASES[0] + (1 << 30),
                    file_offset: 0,
                    filename_strindex: 6,
                    attribute_indices: vec![1],
                },
            ],
            location_table: vec![Location::default(), loc(addrs[0]), loc(addrs[3])],
            function_table: vec![Function::default()],
            link_table: vec![Link::default()],
            string_table: strings,
            attribute_table: vec![
                KeyValueAndUnit::default(),
                KeyValueAndUnit { key_strindex: 5, value: text(&b.build_id), unit_strindex: 0 },
            ],
            stack_table: vec![Stack::default(), Stack { location_indices: vec![1, 2] }],
        }),
    }
}
