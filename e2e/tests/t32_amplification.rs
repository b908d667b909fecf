//! Requests that are small on the wire but expand when converted (a stack
//! shared by thousands of samples, a deep nesting, inlined lines), as an
//! attacker would send them: each is answered (4xx, or 2xx within limits),
//! the server keeps serving, and its peak resident memory stays under 1 GiB.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use phlox_e2e::*;
use phlox_formats::jfr::testkit as jfr;
use phlox_pprof::testkit::ProfileBuilder;
use phlox_proto::opentelemetry::proto::collector::profiles::v1development::ExportProfilesServiceRequest;
use phlox_proto::opentelemetry::proto::profiles::v1development as otel;
use prost::Message;

const GIB: u64 = 1 << 30;

/// One OTLP profile whose 5000 samples all reference one 200,000-frame stack
/// (about 235 KB on the wire; 8 GB if every sample copied the stack).
fn otlp_shared_stack(now: i64) -> Vec<u8> {
    let strings: Vec<String> = ["", "deep", "deep.go", "cpu", "nanoseconds"].map(String::from).to_vec();
    let dictionary = otel::ProfilesDictionary {
        mapping_table: vec![otel::Mapping::default()],
        location_table: vec![
            otel::Location::default(),
            otel::Location {
                mapping_index: 0,
                address: 0,
                lines: vec![otel::Line { function_index: 1, line: 1, column: 0 }],
                attribute_indices: vec![],
            },
        ],
        function_table: vec![
            otel::Function::default(),
            otel::Function { name_strindex: 1, system_name_strindex: 1, filename_strindex: 2, start_line: 1 },
        ],
        link_table: vec![otel::Link::default()],
        string_table: strings,
        attribute_table: vec![otel::KeyValueAndUnit::default()],
        stack_table: vec![otel::Stack::default(), otel::Stack { location_indices: vec![1; 200_000] }],
    };
    let samples = (0..5_000)
        .map(|_| otel::Sample {
            stack_index: 1,
            attribute_indices: vec![],
            link_index: 0,
            values: vec![1],
            timestamps_unix_nano: vec![],
        })
        .collect();
    let profile = otel::Profile {
        sample_type: Some(otel::ValueType { type_strindex: 3, unit_strindex: 4 }),
        samples,
        time_unix_nano: now as u64,
        ..Default::default()
    };
    ExportProfilesServiceRequest {
        resource_profiles: vec![otel::ResourceProfiles {
            resource: None,
            scope_profiles: vec![otel::ScopeProfiles {
                scope: None,
                profiles: vec![profile],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
        dictionary: Some(dictionary),
    }
    .encode_to_vec()
}

/// A JFR recording whose one 200,000-frame pooled stack is sampled under
/// 5000 label contexts, with its labels snapshot: the Java agent's form.
fn jfr_pooled_stack() -> (String, Vec<u8>) {
    use jfr::*;
    let pools = vec![
        (SYMBOL, vec![(1, sym("com/example/App")), (2, sym("deep")), (5, sym("()V"))]),
        (CLASS, vec![(1, ints(&[1, 1]))]),
        (METHOD, vec![(1, ints(&[1, 2, 5]))]),
        (STACK_TRACE, vec![(1, stack(&vec![(1, 1); 200_000]))]),
        (THREAD_STATE, vec![(RUNNABLE, sym("STATE_RUNNABLE"))]),
    ];
    let events: Vec<Vec<u8>> = (1..=5000).map(|ctx| execution_sample(1, ctx)).collect();
    let recording = chunk(&std_classes(), &pools, &events);
    let snapshot = phlox_formats::jfr::LabelsSnapshot {
        contexts: (1..=5000)
            .map(|c| (c, phlox_formats::jfr::Context { labels: [(1, 100 + c)].into_iter().collect() }))
            .collect(),
        strings: std::iter::once((1, "request".to_string()))
            .chain((1..=5000).map(|c| (100 + c, format!("r{c}"))))
            .collect(),
    }
    .encode_to_vec();
    let mut form = Vec::new();
    for (name, part) in [("jfr", gzip(&recording)), ("labels", gzip(&snapshot))] {
        form.extend_from_slice(
            format!(
                "--b0undary\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        form.extend_from_slice(&part);
        form.extend_from_slice(b"\r\n");
    }
    form.extend_from_slice(b"--b0undary--\r\n");
    ("multipart/form-data; boundary=b0undary".into(), form)
}

/// A speedscope evented profile 50,000 frames deep that then opens and
/// closes a leaf 100,000 times: every interval is the whole deep stack.
fn speedscope_deep() -> Vec<u8> {
    let mut events = String::new();
    for i in 0..50_000 {
        events.push_str(&format!("{{\"type\":\"O\",\"frame\":0,\"at\":{i}}},"));
    }
    let mut at = 50_000;
    for _ in 0..100_000 {
        events.push_str(&format!(
            "{{\"type\":\"O\",\"frame\":1,\"at\":{at}}},{{\"type\":\"C\",\"frame\":1,\"at\":{}}},",
            at + 1
        ));
        at += 2;
    }
    events.pop();
    format!(
        "{{\"$schema\":\"https://www.speedscope.app/file-format-schema.json\",\"shared\":{{\"frames\":[{{\"name\":\"deep\"}},{{\"name\":\"leaf\"}}]}},\"profiles\":[{{\"type\":\"evented\",\"name\":\"p\",\"unit\":\"none\",\"startValue\":0,\"endValue\":{at},\"events\":[{events}]}}]}}"
    )
    .into_bytes()
}

/// A legacy tree: a chain 100,000 nodes deep, each with a value (every
/// node's stack is its whole path).
fn tree_chain() -> Vec<u8> {
    let mut b = vec![0x00, 0x00, 0x01]; // root: empty name, value 0, one child
    for i in 0..100_000 {
        b.extend_from_slice(&[0x01, b'f', 0x01, u8::from(i < 99_999)]);
    }
    b
}

/// An ad hoc upload: one location of 100,000 inlined lines of a function
/// with a 100 KB name, referenced by 10,000 samples.
fn adhoc_inlined() -> String {
    use phlox_proto::google::v1 as pb;
    let p = pb::Profile {
        sample_type: vec![pb::ValueType { r#type: 1, unit: 2 }],
        string_table: vec![String::new(), "samples".into(), "count".into(), "f".repeat(100_000)],
        function: vec![pb::Function { id: 1, name: 3, system_name: 3, filename: 0, start_line: 0 }],
        location: vec![pb::Location {
            id: 1,
            mapping_id: 0,
            address: 0,
            line: vec![pb::Line { function_id: 1, line: 1 }; 100_000],
            is_folded: false,
        }],
        sample: (0..10_000).map(|_| pb::Sample { location_id: vec![1], value: vec![1], label: vec![] }).collect(),
        ..Default::default()
    };
    use std::io::Write;
    let raw = p.encode_to_vec();
    let mut b64 = String::new();
    // Standard base64 without a dependency: the table, 3 bytes at a time.
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for c in raw.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                b64.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let mut body = Vec::new();
    write!(body, "{{\"name\":\"inlined.pb\",\"profile\":\"{b64}\"}}").unwrap();
    String::from_utf8(body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amplifying_requests_are_answered_within_a_gib_and_the_server_keeps_serving() {
    let (_tmp, dir) = data_dir();
    let server = Phlox::start(&dir, &["--ingestion-rate-mb", "0"]);
    let client = reqwest::Client::builder().timeout(Duration::from_secs(120)).build().unwrap();
    let base = server.http.clone();
    let now = now_nanos();
    let (jfr_type, jfr_form) = jfr_pooled_stack();
    let shapes: Vec<(&str, String, &str, Vec<u8>)> = vec![
        (
            "otlp shared stack",
            format!("{base}/v1development/profiles"),
            "application/x-protobuf",
            otlp_shared_stack(now),
        ),
        ("jfr pooled stack", format!("{base}/ingest?format=jfr&name=java&from=now-10&until=now"), &jfr_type, jfr_form),
        (
            "speedscope deep",
            format!("{base}/ingest?format=speedscope&name=deep"),
            "application/json",
            speedscope_deep(),
        ),
        ("tree chain", format!("{base}/ingest?format=tree&name=deep.cpu"), "binary/octet-stream+tree", tree_chain()),
        (
            "adhoc inlined lines",
            format!("{base}/adhocprofiles.v1.AdHocProfileService/Upload"),
            "application/json",
            adhoc_inlined().into_bytes(),
        ),
    ];
    for (what, url, content_type, body) in shapes {
        let r = client.post(&url).header("Content-Type", content_type).body(body).send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        println!("{what}: {status} {}", text.chars().take(160).collect::<String>());
        // Refused naming a limit, or accepted within limits.
        assert!(
            (400..500).contains(&status) || status == 200,
            "{what}: {status} {}",
            text.chars().take(300).collect::<String>()
        );
        if (400..500).contains(&status) {
            assert!(text.contains("max_") || text.contains("limit") || text.contains("more than"), "{what}: {text}");
        }
        let ready = client.get(format!("{base}/ready")).send().await.unwrap();
        assert_eq!(ready.status().as_u16(), 200, "{what}: the server keeps serving");
    }
    // An ordinary push still lands, and reads back exactly.
    let mut b = ProfileBuilder::new("cpu", "nanoseconds");
    b.time_nanos(now_nanos()).sample(&["main", "work"], &[42], &[]);
    let req = push_request(&[("__name__", "process_cpu"), ("service_name", "after")], b.encode(), "");
    assert_eq!(push(&client, &server.push_url(), &req).await.unwrap().0, 200);
    let peak = server.peak_rss_bytes();
    println!("peak RSS: {} MiB", peak >> 20);
    assert!(peak < GIB, "peak RSS {} MiB", peak >> 20);
    server.stop();
    let got = dumped(&dump(&dir, &["anonymous"]));
    let after: Vec<i64> = got
        .iter()
        .filter(|(k, _)| k.contains("service_name=\"after\""))
        .flat_map(|(_, p)| p.values().map(|v| v.1))
        .collect();
    assert_eq!(after, vec![42]);
}
