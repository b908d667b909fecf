//! `make bench-symbolize`: a flame graph of 10 000 distinct native
//! addresses (no function names: a build id and an address each, as the
//! eBPF profiler sends them) symbolized from an uploaded debug file, cold
//! (new backend: the debug file read and parsed, every address resolved)
//! and warm (symbols cached), next to the same query before any upload
//! (frames named by address) and to the floor: parsing the file and
//! resolving the addresses alone.
//!
//! The program: generated C, 2000 functions each with an inlined helper,
//! built here with `gcc -g -O2`.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use object::Object;
use object_store::local::LocalFileSystem;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use phlox_block::{BlockHeader, SegmentBuilder, paths};
use phlox_model::{Labels, ProfileId};
use phlox_pprof::{Profile, split};
use phlox_proto::debuginfo::v1alpha1 as d;
use phlox_proto::google::v1 as pb;
use phlox_proto::metastore_client::Metastore;
use phlox_proto::querier::v1 as q;
use phlox_query::debuginfo::{DebugFile, DebugInfoLimits, DebugInfoStore};
use phlox_query::{LocalBackend, QueryFrontend, QueryLimits};
use prost::Message;

phlox_introspect::install_allocator!();

const TENANT: &str = "anonymous";
const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
const FUNCTIONS: usize = 2000;
const ADDRESSES: usize = 10_000;
const BASE: u64 = 0x5555_5555_0000;

mod common;
use common::Blocks;

/// Builds the program; its bytes.
fn program(dir: &std::path::Path) -> Vec<u8> {
    let mut src = String::from("#include <stdio.h>\n");
    for i in 0..FUNCTIONS {
        src.push_str(&format!(
            "static inline __attribute__((always_inline)) long h{i}(long x) {{ return x * {m} + (x >> {s}); }}\n\
             __attribute__((noinline)) long f{i}(long n) {{ long s = 0; for (long k = 0; k < n; k++) s += h{i}(k ^ s); return s; }}\n",
            m = i * 2 + 3,
            s = i % 7 + 1
        ));
    }
    src.push_str("int main(int c, char **v) { long s = 0;\n");
    for i in 0..FUNCTIONS {
        src.push_str(&format!("s += f{i}(c);\n"));
    }
    src.push_str("printf(\"%ld\\n\", s); return 0; }\n");
    std::fs::write(dir.join("prog.c"), src).unwrap();
    let out = dir.join("prog");
    let status = std::process::Command::new("gcc")
        .args(["-g", "-O2", "-Wl,--build-id", "-o", out.to_str().unwrap(), dir.join("prog.c").to_str().unwrap()])
        .status()
        .expect("this bench needs gcc");
    assert!(status.success());
    std::fs::read(out).unwrap()
}

/// 10 000 distinct runtime addresses spread over the text of the `f`
/// functions (mapped at BASE from file offset 0).
fn addresses(elf: &[u8]) -> Vec<u64> {
    use object::{ObjectSegment, ObjectSymbol};
    let file = object::File::parse(elf).unwrap();
    let mut ranges: Vec<(u64, u64)> = file
        .symbols()
        .filter(|s| s.name().is_ok_and(|n| n.starts_with('f') && n[1..].parse::<usize>().is_ok()))
        .map(|s| (s.address(), s.size()))
        .collect();
    ranges.sort();
    let text: u64 = ranges.iter().map(|r| r.1).sum();
    let step = (text / ADDRESSES as u64).max(1);
    let to_offset = |vaddr: u64| {
        file.segments()
            .find(|s| s.address() <= vaddr && vaddr < s.address() + s.file_range().1)
            .map(|s| vaddr - s.address() + s.file_range().0)
            .unwrap()
    };
    let mut out = Vec::new();
    for (start, size) in ranges {
        let mut a = start;
        while a < start + size && out.len() < ADDRESSES {
            out.push(BASE + to_offset(a));
            a += step;
        }
    }
    assert_eq!(out.len(), ADDRESSES, "text of {text} bytes");
    out
}

/// One CPU profile: a sample per address, each under `main`'s first address.
fn profile(build_id: &str, addrs: &[u64]) -> Vec<u8> {
    let mut p = pb::Profile {
        string_table: vec![String::new(), "cpu".into(), "nanoseconds".into(), "/usr/bin/prog".into(), build_id.into()],
        sample_type: vec![pb::ValueType { r#type: 1, unit: 2 }],
        period_type: Some(pb::ValueType { r#type: 1, unit: 2 }),
        period: 10_000_000,
        time_nanos: 1_700_000_000_000_000_000,
        mapping: vec![pb::Mapping {
            id: 1,
            memory_start: BASE,
            memory_limit: BASE + (1 << 30),
            filename: 3,
            build_id: 4,
            ..Default::default()
        }],
        ..Default::default()
    };
    for (i, &a) in addrs.iter().enumerate() {
        p.location.push(pb::Location { id: i as u64 + 1, mapping_id: 1, address: a, ..Default::default() });
        p.sample.push(pb::Sample { location_id: vec![i as u64 + 1], value: vec![(i as i64 % 97) + 1], label: vec![] });
    }
    p.encode_to_vec()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let elf = program(tmp.path());
    let build_id: String =
        object::File::parse(&*elf).unwrap().build_id().unwrap().unwrap().iter().map(|b| format!("{b:02x}")).collect();
    let addrs = addresses(&elf);
    let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(tmp.path()).unwrap());

    let labels = Labels::from_pairs([("__name__", "process_cpu"), ("service_name", "native")]);
    let p = Arc::new(Profile::decode(&profile(&build_id, &addrs)).unwrap());
    let mut b = SegmentBuilder::default();
    for sp in split(&labels, p, ProfileId::from_content(&[b"bench"]), 0).unwrap() {
        b.add(TENANT, &sp);
    }
    let id = ulid::Ulid::from_parts(1_700_000_000_000, 1);
    let header = BlockHeader { id, tenant: TENANT.into(), shard: 0, level: 1, created_by: "bench".into() };
    let block = b.finish(header).unwrap();
    rt.block_on(store.put(&paths::block_path(TENANT, id), PutPayload::from(block.bytes))).unwrap();
    let metastore = Arc::new(Blocks(vec![block.meta]));

    let flame = |f: &QueryFrontend| -> (Vec<String>, Duration) {
        let s = Instant::now();
        let r = rt
            .block_on(f.select_merge_stacktraces(
                &[TENANT.to_owned()],
                q::SelectMergeStacktracesRequest {
                    profile_type_id: CPU.into(),
                    label_selector: "{}".into(),
                    start: 1_699_999_000_000,
                    end: 1_700_000_100_000,
                    max_nodes: Some(65_536),
                    ..Default::default()
                },
            ))
            .unwrap();
        (r.flamegraph.unwrap().names, s.elapsed())
    };
    let frontend = || {
        QueryFrontend::new(
            Arc::clone(&metastore) as Arc<dyn Metastore>,
            Arc::new(LocalBackend::new(Arc::clone(&store))),
            QueryLimits { max_query_lookback: Duration::from_secs(100 * 365 * 86_400), ..QueryLimits::default() },
        )
    };
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let run = |what: &str| -> Vec<String> {
        let f = frontend();
        let (names, cold) = flame(&f);
        let mut warm: Vec<Duration> = (0..5).map(|_| flame(&f).1).collect();
        warm.sort();
        println!("| {what} | {:.1} ms | {:.1} ms | {} |", ms(cold), ms(warm[2]), names.len() - 1);
        names
    };
    println!(
        "{ADDRESSES} distinct addresses in {FUNCTIONS} functions of a {:.1} MB debug file (gcc -g -O2)",
        elf.len() as f64 / 1e6
    );
    println!("| flame graph | cold | warm (median of 5) | names |");
    println!("|---|---|---|---|");
    let before = run("no debug file (frames named by address)");
    assert!(before.iter().filter(|n| n.starts_with("0x")).count() >= ADDRESSES);

    let debuginfo = DebugInfoStore::new(Arc::clone(&store));
    let limits = DebugInfoLimits { max_file_bytes: 1 << 30, max_files: 10 };
    let file = d::FileMetadata { gnu_build_id: build_id.clone(), ..Default::default() };
    rt.block_on(debuginfo.should_initiate_upload(TENANT, file, limits)).unwrap();
    let body = futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(elf.clone()))]);
    rt.block_on(debuginfo.upload(TENANT, &build_id, body, limits)).unwrap();
    rt.block_on(debuginfo.upload_finished(TENANT, &build_id)).unwrap();
    let after = run("debug file uploaded (symbolized)");
    assert!(after.iter().all(|n| !n.starts_with("0x")), "every address resolved");

    // The floor: parse the file and resolve every address, nothing else.
    let s = Instant::now();
    let parsed = DebugFile::parse(&elf).unwrap();
    let parse = s.elapsed();
    let s = Instant::now();
    let frames: usize = addrs.iter().map(|&a| parsed.frames(parsed.file_address(a, BASE, 0)).len()).sum();
    let resolve = s.elapsed();
    println!(
        "floor: parse {:.1} ms, resolve {ADDRESSES} addresses {:.1} ms ({frames} frames, inlined included)",
        ms(parse),
        ms(resolve)
    );
}
