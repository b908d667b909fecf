//! OpenTelemetry profiles through the real HTTP port: gRPC Export, OTLP/HTTP
//! protobuf and JSON; converted to series as Pyroscope does.
#![allow(clippy::unwrap_used)]

use phlox_e2e::*;
use phlox_proto::opentelemetry::proto::collector::profiles::v1development::ExportProfilesServiceRequest;
use phlox_proto::opentelemetry::proto::collector::profiles::v1development::profiles_service_client::ProfilesServiceClient;
use phlox_proto::opentelemetry::proto::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use phlox_proto::opentelemetry::proto::profiles::v1development::{
    Function, KeyValueAndUnit, Line, Link, Location, Mapping, Profile, ProfilesDictionary, ResourceProfiles, Sample,
    ScopeProfiles, Stack, ValueType,
};
use phlox_proto::opentelemetry::proto::resource::v1::Resource;
use prost::Message;

const PERIOD: i64 = 1_000_000_000 / 19;

fn text(v: &str) -> Option<AnyValue> {
    Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) })
}

/// An eBPF-profiler-like CPU profile: samples:count with a cpu period;
/// stacks main.main → main.work (3 samples) and main.main → main.idle (1).
fn request(service: &str) -> ExportProfilesServiceRequest {
    let strings: Vec<String> =
        ["", "samples", "count", "cpu", "nanoseconds", "main.main", "main.work", "main.idle", "main.go"]
            .map(String::from)
            .to_vec();
    let f =
        |name: i32| Function { name_strindex: name, system_name_strindex: name, filename_strindex: 8, start_line: 1 };
    let loc = |func: i32| Location {
        mapping_index: 0,
        address: 0,
        lines: vec![Line { function_index: func, line: 3, column: 0 }],
        attribute_indices: vec![],
    };
    let now = now_nanos() as u64;
    let profile = Profile {
        sample_type: Some(ValueType { type_strindex: 1, unit_strindex: 2 }),
        samples: vec![
            Sample {
                stack_index: 1,
                attribute_indices: vec![],
                link_index: 0,
                values: vec![3],
                timestamps_unix_nano: vec![],
            },
            Sample {
                stack_index: 2,
                attribute_indices: vec![],
                link_index: 0,
                values: vec![1],
                timestamps_unix_nano: vec![],
            },
        ],
        time_unix_nano: now,
        duration_nano: 10_000_000_000,
        period_type: Some(ValueType { type_strindex: 3, unit_strindex: 4 }),
        period: PERIOD,
        ..Default::default()
    };
    ExportProfilesServiceRequest {
        resource_profiles: vec![ResourceProfiles {
            resource: Some(Resource {
                attributes: vec![KeyValue { key: "service.name".into(), value: text(service), key_strindex: 0 }],
                dropped_attributes_count: 0,
                entity_refs: vec![],
            }),
            scope_profiles: vec![ScopeProfiles {
                scope: Some(InstrumentationScope {
                    name: "ebpf".into(),
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
            mapping_table: vec![Mapping::default()],
            // locations: 1 main.main, 2 main.work, 3 main.idle
            location_table: vec![Location::default(), loc(1), loc(2), loc(3)],
            function_table: vec![Function::default(), f(5), f(6), f(7)],
            link_table: vec![Link::default()],
            string_table: strings,
            attribute_table: vec![KeyValueAndUnit::default()],
            // stacks are leaf first
            stack_table: vec![
                Stack::default(),
                Stack { location_indices: vec![2, 1] },
                Stack { location_indices: vec![3, 1] },
            ],
        }),
    }
}

fn json_request(service: &str) -> String {
    let now = now_nanos();
    serde_json::json!({
        "resourceProfiles": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
            "scopeProfiles": [{"scope": {"name": "ebpf"}, "profiles": [{
                "sampleType": {"typeStrindex": 1, "unitStrindex": 2},
                "samples": [{"stackIndex": 1, "values": ["3"]}, {"stackIndex": 2, "values": ["1"]}],
                "timeUnixNano": now.to_string(),
                "periodType": {"typeStrindex": 3, "unitStrindex": 4},
                "period": PERIOD.to_string()
            }]}]
        }],
        "dictionary": {
            "mappingTable": [{}],
            "locationTable": [{}, {"lines": [{"functionIndex": 1}]}, {"lines": [{"functionIndex": 2}]}, {"lines": [{"functionIndex": 3}]}],
            "functionTable": [{}, {"nameStrindex": 5}, {"nameStrindex": 6}, {"nameStrindex": 7}],
            "linkTable": [{}],
            "stringTable": ["", "samples", "count", "cpu", "nanoseconds", "main.main", "main.work", "main.idle"],
            "attributeTable": [{}],
            "stackTable": [{}, {"locationIndices": [2, 1]}, {"locationIndices": [3, 1]}]
        }
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_profiles_arrive_over_grpc_http_and_json() {
    let (_tmp, dir) = data_dir();
    let server = Phlox::start(&dir, &["--ingestion-rate-mb", "0"]);
    let mut grpc = ProfilesServiceClient::connect(server.http.clone()).await.unwrap();
    grpc.export(request("otel-grpc")).await.unwrap();
    let bad = ExportProfilesServiceRequest { dictionary: None, ..request("x") };
    assert_eq!(grpc.export(bad).await.unwrap_err().code(), tonic::Code::InvalidArgument);

    let http = reqwest::Client::new();
    let url = format!("{}/v1development/profiles", server.http);
    let r = http
        .post(&url)
        .header("Content-Type", "application/x-protobuf")
        .body(request("otel-http").encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-protobuf");
    let r = http
        .post(&url)
        .header("Content-Type", "application/json")
        .body(json_request("otel-json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
    // Gzip bodies are accepted; bad input is refused with a reason.
    let r = http
        .post(&url)
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "gzip")
        .body(gzip(&request("otel-gzip").encode_to_vec()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = http.post(&url).header("Content-Type", "text/plain").body("x").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 415);
    let r = http
        .post(&url)
        .header("Content-Type", "application/x-protobuf")
        .body(vec![0xff, 0xff, 0xff])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let r = http
        .post(&url)
        .header("Content-Type", "application/json")
        .body("{\"resourceProfiles\": 5}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    server.stop();

    let got = dump(&dir, &["anonymous"]);
    for service in ["otel-grpc", "otel-http", "otel-json", "otel-gzip"] {
        let s = got["series"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["labels"]["service_name"] == service)
            .unwrap_or_else(|| panic!("{service} missing"));
        assert_eq!(s["labels"]["__profile_type__"], "process_cpu:cpu:nanoseconds:cpu:nanoseconds");
        assert_eq!(s["labels"]["__otel__"], "true");
        assert_eq!(s["labels"]["service.name"], service);
        let p = &s["profiles"][0];
        assert_eq!(p["total"].as_i64().unwrap(), 4 * PERIOD);
        assert_eq!(p["stacks"]["main.main;main.work"].as_i64().unwrap(), 3 * PERIOD);
        assert_eq!(p["stacks"]["main.main;main.idle"].as_i64().unwrap(), PERIOD);
    }
}

/// An OTLP request sent twice counts twice when its profiles carry no
/// `profile_id` (Pyroscope stores both; both were acknowledged), and once
/// when they carry one (a client's retry).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_otlp_profiles_count_twice_unless_they_share_a_profile_id() {
    let (_tmp, dir) = data_dir();
    let server = Phlox::start(&dir, &["--ingestion-rate-mb", "0"]);
    let http = reqwest::Client::new();
    let url = format!("{}/v1development/profiles", server.http);
    let anonymous = request("no-id");
    let mut with_id = request("with-id");
    with_id.resource_profiles[0].scope_profiles[0].profiles[0].profile_id = vec![7u8; 16].into();
    for body in [&anonymous, &anonymous, &with_id, &with_id] {
        let r = http
            .post(&url)
            .header("Content-Type", "application/x-protobuf")
            .body(body.encode_to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    server.stop();
    let got = dump(&dir, &["anonymous"]);
    let totals = |service: &str| -> Vec<i64> {
        got["series"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["labels"]["service_name"] == service)
            .flat_map(|s| s["profiles"].as_array().unwrap().iter().map(|p| p["total"].as_i64().unwrap()))
            .collect()
    };
    assert_eq!(totals("no-id"), vec![4 * PERIOD, 4 * PERIOD], "two profiles without an id: both stored");
    assert_eq!(totals("with-id"), vec![4 * PERIOD], "the same profile_id twice: stored once");
}
