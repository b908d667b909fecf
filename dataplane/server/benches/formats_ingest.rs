//! `make bench`, part 3: JFR and OTLP ingest through the real `phlox`
//! binary. Both formats are converted in the server into profiles; this
//! measures the whole path per CPU-second of the server process (from
//! /proc): MB of the format's bytes as sent, and profiles, per CPU-s.
//!
//! - JFR: the JDK 17 recording in `testdata/captures` (a real `jfr`
//!   capture), `POST /ingest?format=jfr`, raw body;
//! - OTLP: the Go-like CPU profiles of the other benches as OTLP
//!   `ExportProfilesServiceRequest`s (profiles dictionary, one stack per
//!   sample), `POST /v1development/profiles`, protobuf.
//!
//! Closed-loop clients, rate limit off; every request must be acked (2xx).
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use phlox_pprof::testkit::Program;
use phlox_proto::google::v1 as pb;
use phlox_proto::opentelemetry::proto::collector::profiles::v1development::ExportProfilesServiceRequest;
use phlox_proto::opentelemetry::proto::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use phlox_proto::opentelemetry::proto::profiles::v1development as otlp;
use phlox_proto::opentelemetry::proto::resource::v1::Resource;
use prost::Message;

/// An OTLP export of one pprof profile (its first sample type), service
/// `service`: the dictionary holds the pprof's tables, one stack per sample.
fn to_otlp(p: &pb::Profile, service: &str, now: u64) -> ExportProfilesServiceRequest {
    let index = |ids: Vec<u64>| -> std::collections::HashMap<u64, i32> {
        ids.into_iter().enumerate().map(|(i, id)| (id, i as i32 + 1)).collect()
    };
    let functions = index(p.function.iter().map(|f| f.id).collect());
    let mappings = index(p.mapping.iter().map(|m| m.id).collect());
    let locations = index(p.location.iter().map(|l| l.id).collect());
    let mut function_table = vec![otlp::Function::default()];
    function_table.extend(p.function.iter().map(|f| otlp::Function {
        name_strindex: f.name as i32,
        system_name_strindex: f.system_name as i32,
        filename_strindex: f.filename as i32,
        start_line: f.start_line,
    }));
    let mut mapping_table = vec![otlp::Mapping::default()];
    mapping_table.extend(p.mapping.iter().map(|m| otlp::Mapping {
        memory_start: m.memory_start,
        memory_limit: m.memory_limit,
        file_offset: m.file_offset,
        filename_strindex: m.filename as i32,
        attribute_indices: vec![],
    }));
    let mut location_table = vec![otlp::Location::default()];
    location_table.extend(p.location.iter().map(|l| {
        otlp::Location {
            mapping_index: mappings.get(&l.mapping_id).copied().unwrap_or(0),
            address: l.address,
            lines: l
                .line
                .iter()
                .map(|x| otlp::Line { function_index: functions[&x.function_id], line: x.line, column: 0 })
                .collect(),
            attribute_indices: vec![],
        }
    }));
    let mut stack_table = vec![otlp::Stack::default()];
    let mut samples = Vec::with_capacity(p.sample.len());
    for s in &p.sample {
        stack_table.push(otlp::Stack { location_indices: s.location_id.iter().map(|id| locations[id]).collect() });
        samples.push(otlp::Sample {
            stack_index: stack_table.len() as i32 - 1,
            values: vec![s.value[0]],
            ..Default::default()
        });
    }
    let vt = |v: &pb::ValueType| otlp::ValueType { type_strindex: v.r#type as i32, unit_strindex: v.unit as i32 };
    let profile = otlp::Profile {
        sample_type: p.sample_type.first().map(vt),
        samples,
        time_unix_nano: now,
        duration_nano: p.duration_nanos as u64,
        period_type: p.period_type.as_ref().map(vt),
        period: p.period,
        ..Default::default()
    };
    ExportProfilesServiceRequest {
        resource_profiles: vec![otlp::ResourceProfiles {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue { value: Some(any_value::Value::StringValue(service.into())) }),
                    key_strindex: 0,
                }],
                dropped_attributes_count: 0,
                entity_refs: vec![],
            }),
            scope_profiles: vec![otlp::ScopeProfiles {
                scope: Some(InstrumentationScope {
                    name: "bench".into(),
                    version: "1".into(),
                    attributes: vec![],
                    dropped_attributes_count: 0,
                }),
                profiles: vec![profile],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
        dictionary: Some(otlp::ProfilesDictionary {
            mapping_table,
            location_table,
            function_table,
            link_table: vec![otlp::Link::default()],
            string_table: p.string_table.clone(),
            attribute_table: vec![otlp::KeyValueAndUnit::default()],
            stack_table,
        }),
    }
}

#[derive(Clone, Copy)]
enum Format {
    Jfr,
    Otlp,
}

/// `clients` closed-loop clients each sending `per_client` bodies of
/// `corpus`; prints and returns MB of bodies per CPU-s of the server.
async fn run(format: Format, base: &str, pid: u32, corpus: Arc<Vec<Vec<u8>>>, clients: usize, per_client: usize) {
    let http = reqwest::Client::new();
    let start = Instant::now();
    let cpu_before = common::cpu_secs(pid);
    let mut tasks = Vec::new();
    let now_secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as usize;
    for c in 0..clients {
        let (http, base, corpus) = (http.clone(), base.to_owned(), Arc::clone(&corpus));
        tasks.push(tokio::spawn(async move {
            let (mut bytes, mut retries) = (0usize, 0usize);
            for i in 0..per_client {
                let body = corpus[(c * per_client + i) % corpus.len()].clone();
                bytes += body.len();
                let request = match format {
                    Format::Jfr => http
                        .post(format!(
                            "{base}/ingest?format=jfr&name=bench.jfr{{pod=pod-{c}}}&spyName=javaspy&from={}&until={}",
                            now_secs - 600 + i,
                            now_secs - 590 + i
                        ))
                        .header("Content-Type", "application/octet-stream"),
                    Format::Otlp => http
                        .post(format!("{base}/v1development/profiles"))
                        .header("Content-Type", "application/x-protobuf"),
                };
                // A 429 (the decode queue full) is retried after a pause,
                // as clients back off.
                loop {
                    let r = request.try_clone().unwrap().body(body.clone()).send().await.unwrap();
                    let status = r.status();
                    if status.as_u16() == 429 {
                        retries += 1;
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                    assert!(status.is_success(), "{status}: {}", r.text().await.unwrap_or_default());
                    break;
                }
            }
            (bytes, retries)
        }));
    }
    let (mut bytes, mut retries) = (0, 0);
    for t in tasks {
        let (b, r) = t.await.unwrap();
        bytes += b;
        retries += r;
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = common::cpu_secs(pid) - cpu_before;
    let requests = clients * per_client;
    let name = match format {
        Format::Jfr => "JFR (/ingest?format=jfr)",
        Format::Otlp => "OTLP (/v1development/profiles)",
    };
    println!(
        "{name:<31} {clients:>3} clients: {:>6.1} req/s, {:>6.1} MB/s, {:>6.1} MB/CPU-s, {:>6.1} requests/CPU-s, {retries} retried 429s",
        requests as f64 / secs,
        bytes as f64 / 1e6 / secs,
        bytes as f64 / 1e6 / cpu.max(0.01),
        requests as f64 / cpu.max(0.01),
    );
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let started = common::spawn(
        Command::new(env!("CARGO_BIN_EXE_phlox")),
        &dir.path().join("data"),
        &["--ingestion-rate-mb", "0"],
    );
    let (mut child, base) = (started.child, started.http);
    let pid = child.id();

    let jfr_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/captures/jdk17-burn-profile-settings.jfr");
    let jfr = Arc::new(vec![std::fs::read(jfr_path).unwrap()]);
    println!("JFR: {} ({:.0} KB, a JDK 17 recording)", jfr_path.rsplit('/').next().unwrap(), jfr[0].len() as f64 / 1e3);
    let program = Program::new(7, 3000, 5000, 48);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let otlp: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..64u64)
            .map(|i| {
                let p = program.cpu_profile(i, 1000).build();
                to_otlp(&p, "bench-otlp", now + i).encode_to_vec()
            })
            .collect(),
    );
    println!(
        "OTLP: {:.0} KB requests on average (the Go-like CPU profiles of http_ingest)",
        otlp.iter().map(|b| b.len() as f64).sum::<f64>() / otlp.len() as f64 / 1e3
    );
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        // JFR requests are small (201 KB, 656 samples): more of them, for
        // CPU time well above /proc's 10 ms resolution.
        for (clients, per_client) in [(1, 10), (64, 32)] {
            run(Format::Jfr, &base, pid, Arc::clone(&jfr), clients, per_client).await;
        }
        for (clients, per_client) in [(1, 10), (64, 16)] {
            run(Format::Otlp, &base, pid, Arc::clone(&otlp), clients, per_client).await;
        }
    });
    println!("server peak RSS: {:.0} MB", common::peak_rss_bytes(pid) as f64 / 1e6);
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
}
