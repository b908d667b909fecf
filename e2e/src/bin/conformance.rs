//! `make conformance`: the compatibility corpus (real profiles from other
//! projects' test suites, kept outside this repository) through a real
//! `phlox`, compared with the answers Pyroscope gives.
//!
//! Reads `MANIFEST.tsv` of the corpus directory (first argument, or
//! `PHLOX_PEER_FIXTURES`), starts `phlox` (multi-tenant, one tenant per
//! fixture), sends each fixture as its `send` column says with its time moved
//! to now, reads it back with ProfileTypes and SelectMergeStacktraces, and
//! compares per profile type the total and the set of function names with
//! the expected answer the `expected_from` column names:
//! - `pprof-decode`: the pprof itself, decoded with the plain generated
//!   protobuf types (sum of each sample type's values, names of the
//!   functions of samples with a value);
//! - `jfr-parser-golden`: the golden files of grafana/jfr-parser beside the
//!   fixture (`*_expected.txt.gz`: profile type in the name, period type in
//!   the header; `*_expected_collapsed.txt.gz`: stacks and values);
//! - `jfr-print`: the JDK's `jfr print --json` of the recording;
//! - `folded-sum`: the folded lines' counts times 1e9 / sampleRate;
//! - `speedscope-pyroscope-rules`: each profile's weights;
//! - `pyroscope-integration-golden`: Pyroscope's integration-test output.
//!
//! Prints one line per fixture and a summary. Fixtures listed in the
//! known-divergences file (second argument, default
//! `e2e/conformance-known.txt`) may differ; the run fails when any other
//! differs, or when a listed one matches (so the list only shrinks).
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use phlox_e2e::{Phlox, gzip, now_nanos};
use phlox_proto::google::v1 as pprof;
use phlox_proto::push::v1::{PushRequest, RawProfileSeries, RawSample};
use phlox_proto::querier::v1 as q;
use phlox_proto::types::v1::LabelPair;
use prost::Message;

/// Profile type id (or `*:type:unit:period_type:period_unit` when only the
/// sample type is known) → (total, function names).
type Answer = BTreeMap<String, (i64, BTreeSet<String>)>;

/// Marks an expected total that is not compared (jfr-parser's lock delay in
/// ticks, see [`from_goldens`]).
const DELAY_IN_TICKS: i64 = i64::MIN;

struct Fixture {
    id: String,
    file: PathBuf,
    send: String,
    expected_from: String,
    aux: Vec<(String, PathBuf)>,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let corpus = PathBuf::from(args.get(1).cloned().or_else(|| std::env::var("PHLOX_PEER_FIXTURES").ok()).expect(
        "usage: conformance CORPUS_DIR [KNOWN_DIVERGENCES] (or PHLOX_PEER_FIXTURES): the peer-fixtures directory",
    ));
    let known_file = args
        .get(2)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance-known.txt"));
    let known: BTreeSet<String> = std::fs::read_to_string(&known_file)
        .unwrap_or_default()
        .lines()
        .map(|l| l.split('#').next().unwrap().trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect();
    let manifest = std::fs::read_to_string(corpus.join("MANIFEST.tsv"))
        .unwrap_or_else(|e| panic!("{}: {e}", corpus.join("MANIFEST.tsv").display()));
    let fixtures: Vec<Fixture> = manifest
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            let aux = c
                .get(6)
                .copied()
                .unwrap_or("")
                .split(';')
                .filter(|a| !a.is_empty())
                .map(|a| {
                    let (kind, rest) = a.split_once('=').unwrap();
                    let file = rest.split("<-").next().unwrap();
                    (kind.to_owned(), corpus.join(file))
                })
                .collect();
            Fixture {
                id: c[0].to_owned(),
                file: corpus.join(c[1]),
                send: c[4].to_owned(),
                expected_from: c[5].to_owned(),
                aux,
            }
        })
        .collect();

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let server = Phlox::start(&tmp.path().join("data"), &["--multitenancy-enabled", "--ingestion-rate-mb", "0"]);
    let mut matched = 0;
    let mut unexpected: Vec<String> = Vec::new();
    for f in &fixtures {
        let outcome = runtime.block_on(check(&server.http, f));
        let ok = outcome.is_ok();
        if ok {
            matched += 1;
        }
        let verdict = match (ok, known.contains(&f.id)) {
            (true, false) => "match",
            (false, true) => "KNOWN DIVERGENCE",
            (false, false) => {
                unexpected.push(format!("{} differs", f.id));
                "DIFFERS"
            }
            (true, true) => {
                unexpected.push(format!("{} matches but is listed in {}", f.id, known_file.display()));
                "match (listed as a known divergence: remove it from the list)"
            }
        };
        println!("{:<26} {verdict}", f.id);
        if let Err(why) = outcome {
            for line in why.lines() {
                println!("    {line}");
            }
        }
    }
    server.stop();
    println!("conformance: {matched}/{} fixtures match Pyroscope's answer", fixtures.len());
    if !unexpected.is_empty() {
        for u in &unexpected {
            println!("FAIL {u}");
        }
        std::process::exit(1);
    }
}

/// Sends one fixture and compares what Phlox answers with what is expected.
async fn check(base: &str, f: &Fixture) -> Result<(), String> {
    let expected = expected(f)?;
    send(base, f).await?;
    let got = answer(base, &f.id).await?;
    compare(&expected, &got)
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The corpus is trusted test input: no decompression budget.
#[allow(clippy::disallowed_methods)]
fn gunzip_if_needed(b: &[u8]) -> Vec<u8> {
    if b.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(b).read_to_end(&mut out).unwrap();
        out
    } else {
        b.to_vec()
    }
}

fn aux(f: &Fixture, kind: &str) -> Vec<PathBuf> {
    f.aux.iter().filter(|(k, _)| k == kind).map(|(_, p)| p.clone()).collect()
}

/// `key=value` options of the `send` column.
fn option<'a>(send: &'a str, key: &str) -> Option<&'a str> {
    send.split_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

// ---------------------------------------------------------------------------
// Sending
// ---------------------------------------------------------------------------

async fn send(base: &str, f: &Fixture) -> Result<(), String> {
    let client = reqwest::Client::new();
    let body = read(&f.file);
    let now_s = now_nanos() / 1_000_000_000;
    let times = format!("&from={}&until={now_s}", now_s - 10);
    let tenant = f.id.as_str();
    let mode = f.send.split_whitespace().next().unwrap_or("");
    let request = match mode {
        "push" => {
            let name = option(&f.send, "__name__").ok_or("push without __name__")?;
            let mut p = pprof::Profile::decode(gunzip_if_needed(&body).as_slice()).map_err(|e| e.to_string())?;
            p.time_nanos = now_nanos();
            let req = PushRequest {
                series: vec![RawProfileSeries {
                    labels: vec![
                        LabelPair { name: "__name__".into(), value: name.into() },
                        LabelPair { name: "service_name".into(), value: f.id.clone() },
                    ],
                    samples: vec![RawSample { raw_profile: gzip(&p.encode_to_vec()).into(), id: String::new() }],
                    annotations: vec![],
                }],
            };
            client
                .post(format!("{base}/push.v1.PusherService/Push"))
                .header("Content-Type", "application/proto")
                .body(req.encode_to_vec())
        }
        "ingest-multipart" | "ingest-raw" => {
            let spy = option(&f.send, "spyName").unwrap_or("gospy");
            // The recording's own time moved to now, as the corpus asks.
            let mut p = pprof::Profile::decode(gunzip_if_needed(&body).as_slice()).map_err(|e| e.to_string())?;
            if p.time_nanos > 0 {
                p.time_nanos = now_nanos();
            }
            let body = p.encode_to_vec();
            let url = format!("{base}/ingest?name={}&spyName={spy}{times}", f.id);
            if mode == "ingest-raw" {
                client.post(format!("{url}&format=pprof")).body(body)
            } else {
                let mut parts = vec![("profile", body)];
                if let Some(st) = aux(f, "sample_type_config").first() {
                    parts.push(("sample_type_config", read(st)));
                }
                let (ct, form) = multipart(&parts);
                client.post(url).header("Content-Type", ct).body(form)
            }
        }
        "ingest-jfr" => {
            let times = if f.send.contains("asis") { String::new() } else { times };
            let url = format!("{base}/ingest?format=jfr&sampleRate=100&name={}&spyName=javaspy{times}", f.id);
            if f.send.contains("multipart-gz") {
                let jfr = if body.starts_with(&[0x1f, 0x8b]) { body } else { gzip(&body) };
                let mut parts = vec![("jfr", jfr)];
                if let Some(labels) = aux(f, "labels").first() {
                    parts.push(("labels", read(labels)));
                }
                let (ct, form) = multipart(&parts);
                client.post(url).header("Content-Type", ct).body(form)
            } else {
                client.post(url).header("Content-Type", "application/octet-stream").body(gunzip_if_needed(&body))
            }
        }
        "ingest-folded" => {
            let suffix = option(&f.send, "name_suffix").unwrap_or("");
            let rate = option(&f.send, "sampleRate").unwrap_or("100");
            client
                .post(format!("{base}/ingest?format=folded&name={}{suffix}&sampleRate={rate}{times}", f.id))
                .body(body)
        }
        "ingest-speedscope" => client.post(format!("{base}/ingest?format=speedscope&name={}{times}", f.id)).body(body),
        "otlp-http" => {
            use phlox_proto::opentelemetry::proto::collector::profiles::v1development::ExportProfilesServiceRequest;
            let mut req =
                ExportProfilesServiceRequest::decode(gunzip_if_needed(&body).as_slice()).map_err(|e| e.to_string())?;
            for rp in &mut req.resource_profiles {
                for sp in &mut rp.scope_profiles {
                    for p in &mut sp.profiles {
                        p.time_unix_nano = now_nanos() as u64;
                    }
                }
            }
            client
                .post(format!("{base}/v1development/profiles"))
                .header("Content-Type", "application/x-protobuf")
                .body(req.encode_to_vec())
        }
        other => return Err(format!("unknown send mode {other:?}")),
    };
    let r = request.header("X-Scope-OrgID", tenant).send().await.map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    if status != 200 {
        return Err(format!("refused: {status} {}", r.text().await.unwrap_or_default()));
    }
    Ok(())
}

fn multipart(parts: &[(&str, Vec<u8>)]) -> (String, Vec<u8>) {
    let boundary = "phlox-conformance-boundary";
    let mut body = Vec::new();
    for (name, data) in parts {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

// ---------------------------------------------------------------------------
// Reading back
// ---------------------------------------------------------------------------

async fn answer(base: &str, tenant: &str) -> Result<Answer, String> {
    let now = now_nanos() / 1_000_000;
    let (start, end) = (now - 3 * 3_600_000, now + 600_000);
    let types: q::ProfileTypesResponse =
        phlox_e2e::query(base, tenant, "ProfileTypes", &q::ProfileTypesRequest { start, end })
            .await
            .map_err(|(s, b)| format!("ProfileTypes: {s} {b}"))?;
    let mut out = Answer::new();
    for t in types.profile_types {
        let r: q::SelectMergeStacktracesResponse = phlox_e2e::query(
            base,
            tenant,
            "SelectMergeStacktraces",
            &q::SelectMergeStacktracesRequest {
                profile_type_id: t.id.clone(),
                label_selector: "{}".into(),
                start,
                end,
                max_nodes: Some(1 << 20),
                ..Default::default()
            },
        )
        .await
        .map_err(|(s, b)| format!("SelectMergeStacktraces {}: {s} {b}", t.id))?;
        let fg = r.flamegraph.unwrap_or_default();
        // The names of nodes with a value (the root "total" aside).
        let mut names = BTreeSet::new();
        for level in &fg.levels {
            for node in level.values.chunks(4) {
                if node[1] != 0 {
                    names.insert(fg.names[node[3] as usize].clone());
                }
            }
        }
        names.remove("total");
        out.insert(t.id, (fg.total, names));
    }
    Ok(out)
}

fn compare(expected: &Answer, got: &Answer) -> Result<(), String> {
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    for (key, (total, names)) in expected {
        let found = match key.strip_prefix("*:") {
            None => got.get_key_value(key),
            Some(rest) => got.iter().find(|(k, _)| k.split_once(':').is_some_and(|(_, r)| r == rest)),
        };
        let Some((id, (got_total, got_names))) = found else {
            problems.push(format!("{key}: not stored (stored: {:?})", got.keys().collect::<Vec<_>>()));
            continue;
        };
        used.insert(id.clone());
        if got_total != total && *total != DELAY_IN_TICKS {
            problems
                .push(format!("{id}: total {got_total}, expected {total} ({:.4}x)", *got_total as f64 / *total as f64));
        }
        if got_names != names {
            let missing: Vec<&String> = names.difference(got_names).take(5).collect();
            let extra: Vec<&String> = got_names.difference(names).take(5).collect();
            problems.push(format!(
                "{id}: function names differ ({} expected, {} stored): missing {missing:?}, unexpected {extra:?}",
                names.len(),
                got_names.len()
            ));
        }
    }
    for id in got.keys().filter(|k| !used.contains(*k)) {
        problems.push(format!("{id}: stored, but Pyroscope stores no such profile type"));
    }
    if problems.is_empty() { Ok(()) } else { Err(problems.join("\n")) }
}

// ---------------------------------------------------------------------------
// Expected answers
// ---------------------------------------------------------------------------

fn expected(f: &Fixture) -> Result<Answer, String> {
    let kind = f.expected_from.split('+').next().unwrap_or("");
    match kind {
        "pprof-decode" => Ok(from_pprof(f)),
        "jfr-parser-golden" => from_goldens(f),
        "jfr-print" => from_jfr_print(f),
        "folded-sum" => Ok(from_folded(f)),
        "speedscope-pyroscope-rules" => from_speedscope(f),
        "pyroscope-integration-golden" => from_integration_golden(f),
        other => Err(format!("unknown expected_from {other:?}")),
    }
}

/// Each sample type of the pprof: the sum of its values and the names of the
/// functions of its samples with a value. Pushes name the profile type
/// exactly; /ingest uploads are matched by sample type and period type.
fn from_pprof(f: &Fixture) -> Answer {
    let mut p = pprof::Profile::decode(gunzip_if_needed(&read(&f.file)).as_slice()).unwrap();
    // Older .NET clients: every function id 0; Pyroscope gives function i
    // the id of location i.
    if f.expected_from.contains("dotnet-fixes")
        && p.function.len() == p.location.len()
        && p.function.iter().all(|x| x.id == 0)
    {
        let ids: Vec<u64> = p.location.iter().map(|l| l.id).collect();
        for (x, id) in p.function.iter_mut().zip(ids) {
            x.id = id;
        }
    }
    let s = |i: i64| p.string_table.get(i as usize).cloned().unwrap_or_default();
    let functions: BTreeMap<u64, String> = p.function.iter().map(|x| (x.id, s(x.name))).collect();
    let locations: BTreeMap<u64, &pprof::Location> = p.location.iter().map(|l| (l.id, l)).collect();
    let (pt, pu) = p.period_type.as_ref().map(|v| (s(v.r#type), s(v.unit))).unwrap_or_default();
    let name = option(&f.send, "__name__").map(str::to_owned);
    // py-spy and rbspy uploads: Pyroscope names each function `<filename> <name>`.
    let scripting = matches!(option(&f.send, "spyName"), Some("pyspy" | "rbspy"));
    let files: BTreeMap<u64, String> = p.function.iter().map(|x| (x.id, s(x.filename))).collect();
    let functions: BTreeMap<u64, String> = if scripting {
        functions.into_iter().map(|(id, n)| (id, format!("{} {n}", files[&id]))).collect()
    } else {
        functions
    };
    let mut out = Answer::new();
    for (t, vt) in p.sample_type.iter().enumerate() {
        let key = match &name {
            Some(n) => format!("{n}:{}:{}:{pt}:{pu}", s(vt.r#type), s(vt.unit)),
            None => format!("*:{}:{}:{pt}:{pu}", s(vt.r#type), s(vt.unit)),
        };
        let mut total = 0;
        let mut names = BTreeSet::new();
        for smp in &p.sample {
            let v = smp.value.get(t).copied().unwrap_or(0);
            if v == 0 {
                continue;
            }
            total += v;
            for loc in &smp.location_id {
                if let Some(l) = locations.get(loc) {
                    for line in &l.line {
                        names.insert(functions.get(&line.function_id).cloned().unwrap_or_default());
                    }
                }
            }
        }
        if total != 0 {
            out.insert(key, (total, names));
        }
    }
    out
}

/// jfr-parser's goldens: `<name>_<n>_<metric>_<type>__<unit>[ <type>__<unit>]_expected.txt.gz`
/// (header `PeriodType: <type> <unit>`) and the matching `_collapsed` file
/// (`frame:line;frame:line [v1 v2]`).
fn from_goldens(f: &Fixture) -> Result<Answer, String> {
    let mut out = Answer::new();
    for path in aux(f, "golden") {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some(stem) = file.strip_suffix("_expected.txt.gz") else { continue };
        let header = String::from_utf8(gunzip_if_needed(&read(&path))).map_err(|e| e.to_string())?;
        let period = header
            .lines()
            .find_map(|l| l.strip_prefix("PeriodType: "))
            .map(|p| p.trim().replace(' ', ":"))
            .unwrap_or_else(|| ":".into());
        // `<fixture>__<recording>_<n>_<metric>_<t1>__<u1>[+<t2>__<u2>]`
        let after = stem.rsplit_once("__").map(|_| stem).unwrap();
        let parts: Vec<&str> = after.split('_').collect();
        // Find `<n>` (a number) followed by the metric.
        let n_pos = parts.iter().rposition(|p| p.parse::<u32>().is_ok() && !p.is_empty()).ok_or("golden name")?;
        let rest = parts[n_pos + 1..].join("_");
        let (metric, types) = split_metric(&rest).ok_or_else(|| format!("golden name {file}"))?;
        let collapsed = path.with_file_name(format!("{stem}_expected_collapsed.txt.gz"));
        let text = String::from_utf8(gunzip_if_needed(&read(&collapsed))).map_err(|e| e.to_string())?;
        for (i, (ty, unit)) in types.iter().enumerate() {
            let mut total = 0;
            let mut names = BTreeSet::new();
            for line in text.lines().filter(|l| !l.is_empty()) {
                let (stack, values) = line.rsplit_once(" [").ok_or("collapsed line")?;
                let v: i64 = values
                    .trim_end_matches(']')
                    .split_whitespace()
                    .nth(i)
                    .ok_or("collapsed values")?
                    .parse()
                    .map_err(|e| format!("{e}"))?;
                if v == 0 {
                    continue;
                }
                total += v;
                for frame in stack.split(';') {
                    names.insert(frame.rsplit_once(':').map_or(frame, |(n, _)| n).to_owned());
                }
            }
            if total != 0 {
                // jfr-parser stores lock `delay` in JFR ticks labelled as
                // nanoseconds; Phlox stores nanoseconds (ARCHITECTURE.md):
                // only the names are compared for it.
                let total = if *ty == "delay" { DELAY_IN_TICKS } else { total };
                out.insert(format!("{metric}:{ty}:{unit}:{period}"), (total, names));
            }
        }
    }
    if out.is_empty() {
        return Err("no golden files".into());
    }
    Ok(out)
}

/// `process_cpu_cpu__nanoseconds` → (`process_cpu`, [(cpu, nanoseconds)]);
/// `memory_alloc_in_new_tlab_objects__count+alloc_in_new_tlab_bytes__bytes`
/// → (`memory`, two types).
fn split_metric(s: &str) -> Option<(String, Vec<(String, String)>)> {
    for metric in ["process_cpu", "memory", "mutex", "block", "wall", "goroutines"] {
        if let Some(rest) = s.strip_prefix(metric).and_then(|r| r.strip_prefix('_')) {
            let types = rest
                .split(['+', ' '])
                .map(|t| t.split_once("__").map(|(a, b)| (a.to_owned(), b.to_owned())))
                .collect::<Option<Vec<_>>>()?;
            return Some((metric.to_owned(), types));
        }
    }
    None
}

/// The JDK's own reading of the recording: CPU from `jdk.ExecutionSample`
/// events whose thread was not sleeping, each worth 1e9 / sampleRate (100).
fn from_jfr_print(f: &Fixture) -> Result<Answer, String> {
    let out = std::process::Command::new("jfr")
        .args(["print", "--json", "--events", "jdk.ExecutionSample"])
        .arg(&f.file)
        .output()
        .map_err(|e| format!("jfr: {e} (a JDK is needed: make conformance installs it)"))?;
    if !out.status.success() {
        return Err(format!("jfr print failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    let mut total = 0;
    let mut names = BTreeSet::new();
    for e in v["recording"]["events"].as_array().ok_or("jfr print: no events")? {
        if e["values"]["state"].as_str() == Some("STATE_SLEEPING") {
            continue;
        }
        let frames = e["values"]["stackTrace"]["frames"].as_array();
        let Some(frames) = frames.filter(|f| !f.is_empty()) else { continue };
        total += 10_000_000;
        for fr in frames {
            let class = fr["method"]["type"]["name"].as_str().unwrap_or("").replace('.', "/");
            let method = fr["method"]["name"].as_str().unwrap_or("");
            names.insert(format!("{class}.{method}"));
        }
    }
    Ok(BTreeMap::from([("process_cpu:cpu:nanoseconds:cpu:nanoseconds".to_owned(), (total, names))]))
}

/// Folded lines: `stack count`; each count is worth 1e9 / sampleRate ns.
fn from_folded(f: &Fixture) -> Answer {
    let rate: i64 = option(&f.send, "sampleRate").unwrap_or("100").parse().unwrap();
    let text = String::from_utf8_lossy(&read(&f.file)).into_owned();
    let mut total = 0;
    let mut names = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Some((stack, count)) = line.trim_end().rsplit_once(' ') else { continue };
        let count: i64 = count.trim().parse().unwrap_or(0);
        if count == 0 {
            continue;
        }
        total += count * (1_000_000_000 / rate);
        names.extend(stack.split(';').map(str::to_owned));
    }
    BTreeMap::from([("process_cpu:cpu:nanoseconds:cpu:nanoseconds".to_owned(), (total, names))])
}

/// Each profile of the file with its weights (sampled) or its open-frame
/// durations (evented), typed by its unit.
fn from_speedscope(f: &Fixture) -> Result<Answer, String> {
    let v: serde_json::Value = serde_json::from_slice(&read(&f.file)).map_err(|e| e.to_string())?;
    let frames: Vec<String> = v["shared"]["frames"]
        .as_array()
        .ok_or("no shared frames")?
        .iter()
        .map(|x| x["name"].as_str().unwrap_or("").to_owned())
        .collect();
    let mut out = Answer::new();
    for p in v["profiles"].as_array().ok_or("no profiles")? {
        let unit = p["unit"].as_str().unwrap_or("none");
        let (key, scale) = match unit {
            "bytes" => ("memory:alloc_space:bytes::", 1.0),
            "nanoseconds" => ("process_cpu:cpu:nanoseconds:cpu:nanoseconds", 1.0),
            "microseconds" => ("process_cpu:cpu:nanoseconds:cpu:nanoseconds", 1e3),
            "milliseconds" => ("process_cpu:cpu:nanoseconds:cpu:nanoseconds", 1e6),
            "seconds" => ("process_cpu:cpu:nanoseconds:cpu:nanoseconds", 1e9),
            _ => ("process_cpu:samples:count::", 1.0),
        };
        let entry = out.entry(key.to_owned()).or_insert((0, BTreeSet::new()));
        match p["type"].as_str() {
            Some("sampled") => {
                let samples = p["samples"].as_array().ok_or("samples")?;
                let weights = p["weights"].as_array();
                for (i, smp) in samples.iter().enumerate() {
                    let w = weights.and_then(|w| w.get(i)).and_then(|w| w.as_f64()).unwrap_or(1.0);
                    let value = (w * scale).round() as i64;
                    if value <= 0 {
                        continue;
                    }
                    entry.0 += value;
                    for idx in smp.as_array().ok_or("sample")? {
                        entry.1.insert(frames[idx.as_u64().unwrap() as usize].clone());
                    }
                }
            }
            Some("evented") => {
                let mut open: Vec<usize> = Vec::new();
                let mut last = p["startValue"].as_f64().unwrap_or(0.0);
                for e in p["events"].as_array().ok_or("events")? {
                    let at = e["at"].as_f64().unwrap_or(0.0);
                    let value = ((at - last) * scale).round() as i64;
                    if value > 0 && !open.is_empty() {
                        entry.0 += value;
                        entry.1.extend(open.iter().map(|&i| frames[i].clone()));
                    }
                    last = at;
                    let frame = e["frame"].as_u64().unwrap_or(0) as usize;
                    match e["type"].as_str() {
                        Some("O") => open.push(frame),
                        _ => {
                            open.pop();
                        }
                    }
                }
            }
            other => return Err(format!("speedscope profile type {other:?}")),
        }
    }
    Ok(out)
}

/// Pyroscope's integration-test outputs: `golden:<profile type id>=file`,
/// each with `samples[].values` and `locations[].lines` (`name[]@file:line`).
fn from_integration_golden(f: &Fixture) -> Result<Answer, String> {
    let mut out = Answer::new();
    for (kind, path) in &f.aux {
        let Some(profile_type) = kind.strip_prefix("golden:") else { continue };
        let v: serde_json::Value = serde_json::from_slice(&read(path)).map_err(|e| e.to_string())?;
        let mut total = 0;
        let mut names = BTreeSet::new();
        for s in v["samples"].as_array().ok_or("samples")? {
            // `values` is a decimal string (int64 in protobuf JSON), or a number.
            let v = if s["values"].is_array() { &s["values"][0] } else { &s["values"] };
            let value: i64 = v.as_i64().or_else(|| v.as_str().and_then(|t| t.parse().ok())).unwrap_or(0);
            if value == 0 {
                continue;
            }
            total += value;
            for loc in s["locations"].as_array().into_iter().flatten() {
                for line in loc["lines"].as_array().into_iter().flatten() {
                    let l = line.as_str().unwrap_or("");
                    names.insert(l.split("[]@").next().unwrap_or(l).to_owned());
                }
            }
        }
        out.insert(profile_type.to_owned(), (total, names));
    }
    Ok(out)
}
