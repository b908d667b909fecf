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

/// Label pairs of a profile type's series (those a profile carries; the
/// server's and the upload's own labels aside, see [`own_label`]).
type LabelSet = BTreeSet<(String, String)>;

/// What one profile type holds.
#[derive(Debug, Default)]
struct Entry {
    total: i64,
    names: BTreeSet<String>,
    /// `None`: not compared (the expected answer does not say).
    labels: Option<LabelSet>,
}

/// Profile type id (or `*:type:unit:period_type:period_unit` when only the
/// sample type is known) → what it holds.
type Answer = BTreeMap<String, Entry>;

/// Labels that say where a profile came from rather than what it is: the
/// server's (`__…__`), the upload's (`service_name`, `pyroscope_spy`,
/// `app_name`) and the recording mode (`jfr_event`).
fn own_label(name: &str) -> bool {
    !(name.starts_with("__") || matches!(name, "service_name" | "pyroscope_spy" | "app_name" | "jfr_event"))
}

/// Sample labels that stay on samples (span and profile ids), not series.
fn series_label(name: &str) -> bool {
    !matches!(name, "span_id" | "trace_id" | "profile_id")
}

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
    // Pyroscope's integration goldens are the answer for one service (its
    // test queries `{service_name="unknown_service"}`); the rest compare the
    // whole tenant.
    let selector = match f.expected_from.as_str() {
        "pyroscope-integration-golden" => r#"{service_name="unknown_service"}"#,
        _ => "{}",
    };
    let got = answer(base, &f.id, selector).await?;
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

async fn answer(base: &str, tenant: &str, selector: &str) -> Result<Answer, String> {
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
                label_selector: selector.into(),
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
        let sets: q::SeriesResponse = phlox_e2e::query(
            base,
            tenant,
            "Series",
            &q::SeriesRequest {
                matchers: vec![format!("{{__profile_type__=\"{}\"}}", t.id)],
                label_names: vec![],
                start,
                end,
            },
        )
        .await
        .map_err(|(s, b)| format!("Series {}: {s} {b}", t.id))?;
        let labels = sets
            .labels_set
            .iter()
            .flat_map(|l| &l.labels)
            .filter(|l| own_label(&l.name))
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect();
        out.insert(t.id, Entry { total: fg.total, names, labels: Some(labels) });
    }
    Ok(out)
}

fn compare(expected: &Answer, got: &Answer) -> Result<(), String> {
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    for (key, want) in expected {
        let found = match key.strip_prefix("*:") {
            None => got.get_key_value(key),
            Some(rest) => got.iter().find(|(k, _)| k.split_once(':').is_some_and(|(_, r)| r == rest)),
        };
        let Some((id, have)) = found else {
            problems.push(format!("{key}: not stored (stored: {:?})", got.keys().collect::<Vec<_>>()));
            continue;
        };
        used.insert(id.clone());
        let (total, got_total) = (want.total, have.total);
        if got_total != total && total != DELAY_IN_TICKS {
            problems
                .push(format!("{id}: total {got_total}, expected {total} ({:.4}x)", got_total as f64 / total as f64));
        }
        if have.names != want.names {
            let missing: Vec<&String> = want.names.difference(&have.names).take(5).collect();
            let extra: Vec<&String> = have.names.difference(&want.names).take(5).collect();
            problems.push(format!(
                "{id}: function names differ ({} expected, {} stored): missing {missing:?}, unexpected {extra:?}",
                want.names.len(),
                have.names.len()
            ));
        }
        if let (Some(w), Some(h)) = (&want.labels, &have.labels)
            && w != h
        {
            let missing: Vec<_> = w.difference(h).take(5).collect();
            let extra: Vec<_> = h.difference(w).take(5).collect();
            problems.push(format!("{id}: series labels differ: missing {missing:?}, unexpected {extra:?}"));
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
/// exactly, /ingest uploads by [`ingest_metric`] (others are matched by sample
/// type and period type).
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
    let name = option(&f.send, "__name__").or_else(|| ingest_metric(&f.id)).map(str::to_owned);
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
        let mut labels = LabelSet::new();
        for smp in &p.sample {
            let v = smp.value.get(t).copied().unwrap_or(0);
            if v == 0 {
                continue;
            }
            total += v;
            // String labels become series labels (numeric ones stay on samples).
            labels.extend(
                smp.label.iter().filter(|l| l.str != 0 && series_label(&s(l.key))).map(|l| (s(l.key), s(l.str))),
            );
            for loc in &smp.location_id {
                if let Some(l) = locations.get(loc) {
                    for line in &l.line {
                        names.insert(functions.get(&line.function_id).cloned().unwrap_or_default());
                    }
                }
            }
        }
        if total != 0 {
            out.insert(key, Entry { total, names, labels: Some(labels) });
        }
    }
    out
}

/// The `__name__` Pyroscope gives an /ingest pprof upload (one for the
/// whole profile, from its sample types and `sample_type_config`), as its
/// own integration test of these files expects
/// (grafana/pyroscope `pkg/test/integration/ingest_pprof_test.go`); py-spy and
/// rbspy `samples` are CPU by the default sample type config.
fn ingest_metric(fixture: &str) -> Option<&'static str> {
    Some(match fixture {
        "go-cpu" | "python-pyspy-1" | "python-pyspy" | "ruby-rbspy" | "dotnet-3" | "dotnet-211" => "process_cpu",
        "go-heap-small" | "node-heap" | "node-heap-js" => "memory",
        "go-goroutine" => "goroutines",
        "go-block" => "block",
        "go-mutex" => "mutex",
        "node-wall-cpujs" => "wall",
        _ => return None,
    })
}

/// jfr-parser's goldens: `<name>_<n>_<metric>_<type>__<unit>[ <type>__<unit>]_expected.txt.gz`,
/// a text dump of the pprof: `PeriodType: <type> <unit>` (blank when there
/// is none), `Samples:` lines `<v1> [<v2>]: <location ids>`, and `Locations`
/// lines `<id>: 0x0 M=1 <function name> :<line>:0 s=0()`. (The `_collapsed`
/// files beside them join frames with `;`, which some native library names
/// contain, so they are not used.)
fn from_goldens(f: &Fixture) -> Result<Answer, String> {
    let mut out = Answer::new();
    for path in aux(f, "golden") {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some(stem) = file.strip_suffix("_expected.txt.gz") else { continue };
        let text = String::from_utf8(gunzip_if_needed(&read(&path))).map_err(|e| e.to_string())?;
        let period = text
            .lines()
            .find_map(|l| l.strip_prefix("PeriodType:"))
            .map(|p| p.trim())
            .filter(|p| !p.is_empty())
            .map(|p| p.replace(' ', ":"))
            .unwrap_or_else(|| ":".into());
        // `<fixture>__<recording>_<n>_<metric>_<t1>__<u1>[+<t2>__<u2>]`
        let parts: Vec<&str> = stem.split('_').collect();
        // Find `<n>` (a number) followed by the metric.
        let n_pos = parts.iter().rposition(|p| p.parse::<u32>().is_ok() && !p.is_empty()).ok_or("golden name")?;
        let rest = parts[n_pos + 1..].join("_");
        let (metric, types) = split_metric(&rest).ok_or_else(|| format!("golden name {file}"))?;
        let (samples, names) = golden_dump(&text)?;
        for (i, (ty, unit)) in types.iter().enumerate() {
            let mut total = 0;
            let mut used = BTreeSet::new();
            let mut labels = LabelSet::new();
            for (values, locations, sample_labels) in &samples {
                let v = values.get(i).copied().ok_or("golden sample values")?;
                if v == 0 {
                    continue;
                }
                total += v;
                labels.extend(sample_labels.iter().filter(|(k, _)| series_label(k)).cloned());
                for l in locations {
                    used.insert(names.get(l).cloned().ok_or_else(|| format!("golden location {l}"))?);
                }
            }
            if total != 0 {
                // jfr-parser stores lock `delay` in JFR ticks labelled as
                // nanoseconds; Phlox stores nanoseconds (ARCHITECTURE.md):
                // only the names are compared for it.
                let total = if *ty == "delay" { DELAY_IN_TICKS } else { total };
                out.insert(
                    format!("{metric}:{ty}:{unit}:{period}"),
                    Entry { total, names: used, labels: Some(labels) },
                );
            }
        }
    }
    if out.is_empty() {
        return Err("no golden files".into());
    }
    Ok(out)
}

/// A golden sample: values, location ids, and its labels (`key:[value]`
/// lines under it).
type GoldenSample = (Vec<i64>, Vec<u64>, Vec<(String, String)>);

/// The samples and location names of a golden dump.
fn golden_dump(text: &str) -> Result<(Vec<GoldenSample>, BTreeMap<u64, String>), String> {
    let (mut samples, mut names): (Vec<GoldenSample>, _) = (Vec::new(), BTreeMap::new());
    let mut section = "";
    for line in text.lines() {
        match line.trim_end() {
            "Samples:" | "Locations" | "Mappings" => {
                section = line.trim_end();
                continue;
            }
            _ => {}
        }
        let Some((head, tail)) = line.split_once(':') else { continue };
        match section {
            "Samples:" => {
                let values: Result<Vec<i64>, _> = head.split_whitespace().map(str::parse).collect();
                match (values, head.trim().is_empty()) {
                    (Ok(values), false) => {
                        let locations: Result<Vec<u64>, _> = tail.split_whitespace().map(str::parse).collect();
                        let locations = locations.map_err(|e| format!("golden sample {line:?}: {e}"))?;
                        samples.push((values, locations, Vec::new()));
                    }
                    // `key:[value] key:[value]`, for the sample above.
                    _ => {
                        let Some(last) = samples.last_mut() else { continue };
                        let mut rest = line.trim();
                        while let Some((key, after)) = rest.split_once(":[") {
                            let Some((value, next)) = after.split_once(']') else { break };
                            last.2.push((key.trim().to_owned(), value.to_owned()));
                            rest = next.trim_start();
                        }
                    }
                }
            }
            "Locations" => {
                let Ok(id) = head.trim().parse::<u64>() else { continue };
                let after = tail.split_once(" M=").map(|(_, r)| r).ok_or("golden location")?;
                let name = after.split_once(' ').map(|(_, r)| r).unwrap_or("");
                let name = name.rsplit_once(" :").map_or(name, |(n, _)| n);
                names.insert(id, name.to_owned());
            }
            _ => {}
        }
    }
    Ok((samples, names))
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

/// The JDK's own reading of the recording (`jfr print --json`, whole
/// stacks): CPU from `jdk.ExecutionSample` events whose thread was not
/// sleeping, each worth 1e9 / sampleRate (100); allocation samples from
/// `jdk.ObjectAllocationSample` (count and `weight` bytes). Frames are
/// `<internal class name>.<method>` with Pyroscope's lambda merge.
fn from_jfr_print(f: &Fixture) -> Result<Answer, String> {
    let out = std::process::Command::new("jfr")
        .args([
            "print",
            "--json",
            "--stack-depth",
            "1000000",
            "--events",
            "jdk.ExecutionSample,jdk.ObjectAllocationSample",
        ])
        .arg(&f.file)
        .output()
        .map_err(|e| format!("jfr: {e} (a JDK is needed: make conformance installs it)"))?;
    if !out.status.success() {
        return Err(format!("jfr print failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    let mut answer = Answer::new();
    let mut add = |key: &str, value: i64, names: &BTreeSet<String>| {
        // No labels snapshot is sent: no labels.
        let e =
            answer.entry(key.to_owned()).or_insert_with(|| Entry { labels: Some(LabelSet::new()), ..Entry::default() });
        e.total += value;
        e.names.extend(names.iter().cloned());
    };
    for e in v["recording"]["events"].as_array().ok_or("jfr print: no events")? {
        let frames = e["values"]["stackTrace"]["frames"].as_array();
        let Some(frames) = frames.filter(|f| !f.is_empty()) else { continue };
        let names: BTreeSet<String> = frames
            .iter()
            .map(|fr| {
                let class = fr["method"]["type"]["name"].as_str().unwrap_or("");
                let method = fr["method"]["name"].as_str().unwrap_or("");
                format!("{}.{method}", pyroscope_lambda_merge(class))
            })
            .collect();
        match e["type"].as_str() {
            Some("jdk.ExecutionSample") if e["values"]["state"].as_str() != Some("STATE_SLEEPING") => {
                add("process_cpu:cpu:nanoseconds:cpu:nanoseconds", 10_000_000, &names);
            }
            Some("jdk.ObjectAllocationSample") => {
                add("memory:alloc_sample_objects:count:space:bytes", 1, &names);
                add("memory:alloc_sample_bytes:bytes:space:bytes", e["values"]["weight"].as_i64().unwrap_or(0), &names);
            }
            _ => {}
        }
    }
    Ok(answer)
}

/// Pyroscope's merge of generated lambda class names, as its rule reads:
/// `<prefix>$$Lambda`, then optionally `$<digits>`, `/` or `.`, optionally
/// `0x`, hex digits to the end (or only digits to the end) becomes
/// `<prefix>$$Lambda_` (`App$$Lambda$14/0x0000000801001000`,
/// `App$$Lambda/0x00007f…`); JDK 17's `X$$Lambda$43+0x…/123` stays.
fn pyroscope_lambda_merge(class: &str) -> String {
    let Some(i) = class.rfind("$$Lambda").filter(|&i| i > 0) else { return class.to_owned() };
    let (head, rest) = class.split_at(i + "$$Lambda".len());
    let is_hex = |t: &str| !t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
    let digits_only = !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit());
    let after = rest.strip_prefix('$').unwrap_or(rest);
    let tail = after.trim_start_matches(|c: char| c.is_ascii_digit());
    let separated = tail.strip_prefix(['/', '.']).is_some_and(|t| is_hex(t.strip_prefix("0x").unwrap_or(t)));
    if separated || digits_only { format!("{head}_") } else { class.to_owned() }
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
    let entry = Entry { total, names, labels: Some(LabelSet::new()) };
    BTreeMap::from([("process_cpu:cpu:nanoseconds:cpu:nanoseconds".to_owned(), entry)])
}

/// Pyroscope's reading of a speedscope upload (`/ingest?format=speedscope`,
/// default sampleRate): profiles with equal name, type, unit and start are
/// one; with several, each is typed by `<name>.<unit>` (time units → wall,
/// bytes → memory:samples:bytes), with one by the name (no suffix → CPU).
/// Values are hundredths of the unit (bytes whole); CPU and wall ones
/// become nanoseconds at the unit's own rate (none 1e4/s, seconds 100/s,
/// milliseconds 1e5/s, …): `hundredths × 1e9 / rate`. Evented profiles:
/// the time between two events belongs to the frames open in between.
fn from_speedscope(f: &Fixture) -> Result<Answer, String> {
    let v: serde_json::Value = serde_json::from_slice(&read(&f.file)).map_err(|e| e.to_string())?;
    let frames: Vec<String> = v["shared"]["frames"]
        .as_array()
        .ok_or("no shared frames")?
        .iter()
        .map(|x| x["name"].as_str().unwrap_or("").to_owned())
        .collect();
    let all = v["profiles"].as_array().ok_or("no profiles")?;
    let key_of = |p: &serde_json::Value| {
        (p["name"].to_string(), p["type"].to_string(), p["unit"].to_string(), p["startValue"].to_string())
    };
    let distinct: BTreeSet<_> = all.iter().map(key_of).collect();
    let multi = distinct.len() > 1;
    let mut out = Answer::new();
    for p in all {
        let unit = p["unit"].as_str().unwrap_or("none");
        let suffix = if multi { unit } else { "cpu" };
        let metric = match suffix {
            "cpu" => "process_cpu",
            "bytes" => "memory",
            _ => "wall",
        };
        let (precision, rate) = match unit {
            "bytes" => (1.0, 0.0),
            "seconds" => (100.0, 100.0),
            "milliseconds" => (100.0, 1e5),
            "microseconds" => (100.0, 1e8),
            "nanoseconds" => (100.0, 1e11),
            _ => (100.0, 1e4),
        };
        let (key, scale) = if metric != "memory" && rate != 0.0 {
            let t = if metric == "wall" { "wall" } else { "cpu" };
            (format!("{metric}:{t}:nanoseconds:cpu:nanoseconds"), 1e9 / rate)
        } else if metric == "memory" {
            ("memory:samples:bytes::".to_owned(), 1.0)
        } else {
            (format!("{metric}:samples:count::"), 1.0)
        };
        let value = |units: f64| ((units * precision).trunc() * scale) as i64;
        let entry = out.entry(key).or_insert_with(|| Entry { labels: Some(LabelSet::new()), ..Entry::default() });
        if let (Some(l), Some(name)) = (entry.labels.as_mut(), p["name"].as_str().filter(|n| !n.is_empty())) {
            l.insert(("profile_name".to_owned(), name.to_owned()));
        }
        match p["type"].as_str() {
            Some("sampled") => {
                let samples = p["samples"].as_array().ok_or("samples")?;
                let weights = p["weights"].as_array().ok_or("weights")?;
                for (smp, w) in samples.iter().zip(weights) {
                    let value = value(w.as_f64().unwrap_or(0.0));
                    if value <= 0 {
                        continue;
                    }
                    entry.total += value;
                    for idx in smp.as_array().ok_or("sample")? {
                        entry.names.insert(frames[idx.as_u64().unwrap() as usize].clone());
                    }
                }
            }
            Some("evented") => {
                let mut open: Vec<usize> = Vec::new();
                let mut last = p["startValue"].as_f64().unwrap_or(0.0);
                for e in p["events"].as_array().ok_or("events")? {
                    let at = e["at"].as_f64().unwrap_or(0.0);
                    let value = value(at - last);
                    if value > 0 && !open.is_empty() {
                        entry.total += value;
                        entry.names.extend(open.iter().map(|&i| frames[i].clone()));
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

/// Pyroscope's integration-test outputs (SelectMergeProfile of
/// `{service_name="unknown_service"}`): `golden:<profile type id>=file`,
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
        // The goldens keep no series labels: not compared.
        out.insert(profile_type.to_owned(), Entry { total, names, labels: None });
    }
    Ok(out)
}
