//! Every RPC of every public service over every protocol it is served
//! with, through the real HTTP port: Connect with binary proto, Connect
//! with protobuf-JSON, gRPC (h2c) and gRPC-Web. Read-only calls must give
//! the same answer over all four (errors: the same code); calls that
//! change state are made once per protocol with their own inputs and
//! their answers compared with what the test knows. The services' method
//! lists are read from the `.proto` files, and every method must have
//! been called.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::Mutex;

use phlox_e2e::*;
use phlox_pprof::testkit::ProfileBuilder;
use phlox_proto::adhocprofiles::v1 as a;
use phlox_proto::capabilities::v1 as caps;
use phlox_proto::debuginfo::v1alpha1 as di;
use phlox_proto::grpc::health::v1 as health;
use phlox_proto::opentelemetry::proto::collector::profiles::v1development as otlp_svc;
use phlox_proto::push::v1 as push;
use phlox_proto::querier::v1 as q;
use phlox_proto::settings::v1 as s;
use phlox_proto::types::v1 as t;
use phlox_proto::version::v1 as version;
use prost::Message;

const TENANT: &str = "every-rpc";
const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    ConnectProto,
    ConnectJson,
    Grpc,
    GrpcWeb,
}

const ALL: [Protocol; 4] = [Protocol::ConnectProto, Protocol::ConnectJson, Protocol::Grpc, Protocol::GrpcWeb];

impl Protocol {
    fn tag(self) -> &'static str {
        match self {
            Protocol::ConnectProto => "connect-proto",
            Protocol::ConnectJson => "connect-json",
            Protocol::Grpc => "grpc",
            Protocol::GrpcWeb => "grpc-web",
        }
    }
}

/// A call's answer: the message, or the error's code name.
type Answer<M> = Result<M, String>;

/// Connect code names of the gRPC codes this test expects.
fn code_name(code: tonic::Code) -> String {
    match code {
        tonic::Code::InvalidArgument => "invalid_argument".into(),
        tonic::Code::NotFound => "not_found".into(),
        tonic::Code::Unauthenticated => "unauthenticated".into(),
        tonic::Code::Unimplemented => "unimplemented".into(),
        other => format!("grpc:{other:?}"),
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
    grpc: tonic::client::Grpc<tonic::transport::Channel>,
    called: Mutex<BTreeSet<String>>,
}

impl Client {
    async fn new(base: &str) -> Self {
        let channel = tonic::transport::Channel::from_shared(base.to_owned()).unwrap().connect().await.unwrap();
        Client {
            http: reqwest::Client::new(),
            base: base.to_owned(),
            grpc: tonic::client::Grpc::new(channel),
            called: Mutex::new(BTreeSet::new()),
        }
    }

    /// `/<service>/<method>` with `request` over `protocol`.
    async fn call<Req, Resp>(&self, protocol: Protocol, path: &str, request: &Req) -> Answer<Resp>
    where
        Req: Message + serde::Serialize + Clone + Send + Sync + 'static,
        Resp: Message + Default + serde::de::DeserializeOwned + Send + Sync + 'static,
    {
        self.called.lock().unwrap().insert(path.trim_start_matches('/').to_owned());
        let url = format!("{}{path}", self.base);
        match protocol {
            Protocol::ConnectProto | Protocol::ConnectJson => {
                let json = protocol == Protocol::ConnectJson;
                let (ct, body) = if json {
                    ("application/json", serde_json::to_vec(request).unwrap())
                } else {
                    ("application/proto", request.encode_to_vec())
                };
                let r = self
                    .http
                    .post(url)
                    .header("Content-Type", ct)
                    .header("Connect-Protocol-Version", "1")
                    .header("X-Scope-OrgID", TENANT)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                let content_type = r.headers().get("content-type").unwrap().to_str().unwrap().to_owned();
                let body = r.bytes().await.unwrap();
                if status != 200 {
                    let e: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    return Err(e["code"].as_str().unwrap().to_owned());
                }
                assert_eq!(content_type, ct, "{path} answers in the request's codec");
                Ok(if json { serde_json::from_slice(&body).unwrap() } else { Resp::decode(body).unwrap() })
            }
            Protocol::Grpc | Protocol::GrpcWeb => self.call_grpc(protocol, path, request).await,
        }
    }

    /// `/<service>/<method>` with `request` over gRPC or gRPC-Web.
    async fn call_grpc<Req, Resp>(&self, protocol: Protocol, path: &str, request: &Req) -> Answer<Resp>
    where
        Req: Message + Clone + Send + Sync + 'static,
        Resp: Message + Default + Send + Sync + 'static,
    {
        self.called.lock().unwrap().insert(path.trim_start_matches('/').to_owned());
        let url = format!("{}{path}", self.base);
        match protocol {
            Protocol::ConnectProto | Protocol::ConnectJson => panic!("not gRPC"),
            Protocol::Grpc => {
                let mut grpc = self.grpc.clone();
                grpc.ready().await.unwrap();
                let mut r = tonic::Request::new(request.clone());
                r.metadata_mut().insert("x-scope-orgid", TENANT.parse().unwrap());
                let path = http::uri::PathAndQuery::try_from(path).unwrap();
                grpc.unary(r, path, tonic_prost::ProstCodec::<Req, Resp>::default())
                    .await
                    .map(tonic::Response::into_inner)
                    .map_err(|s| code_name(s.code()))
            }
            Protocol::GrpcWeb => {
                let msg = request.encode_to_vec();
                let mut frame = vec![0u8];
                frame.extend_from_slice(&(msg.len() as u32).to_be_bytes());
                frame.extend_from_slice(&msg);
                let r = self
                    .http
                    .post(url)
                    .header("Content-Type", "application/grpc-web+proto")
                    .header("X-Scope-OrgID", TENANT)
                    .body(frame)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), 200, "{path}");
                let status_header = r.headers().get("grpc-status").map(|v| v.to_str().unwrap().to_owned());
                let body = r.bytes().await.unwrap();
                grpc_web_answer(&body, status_header)
            }
        }
    }

    /// The same read over every protocol: one answer, which is returned.
    async fn same<Req, Resp>(&self, path: &str, request: &Req) -> Answer<Resp>
    where
        Req: Message + serde::Serialize + Clone + Send + Sync + 'static,
        Resp: Message + Default + PartialEq + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    {
        let first: Answer<Resp> = self.call(ALL[0], path, request).await;
        for p in &ALL[1..] {
            let other: Answer<Resp> = self.call(*p, path, request).await;
            assert_eq!(other, first, "{path} over {} differs from {}", p.tag(), ALL[0].tag());
        }
        first
    }
}

/// A gRPC-Web body: data frames, then a trailer frame with the status (or
/// a trailers-only answer whose status is in the headers).
fn grpc_web_answer<Resp: Message + Default>(body: &[u8], status_header: Option<String>) -> Answer<Resp> {
    let (mut i, mut message, mut status) = (0, None, status_header);
    while i + 5 <= body.len() {
        let flag = body[i];
        let len = u32::from_be_bytes(body[i + 1..i + 5].try_into().unwrap()) as usize;
        let payload = &body[i + 5..i + 5 + len];
        if flag & 0x80 == 0 {
            message = Some(Resp::decode(payload).unwrap());
        } else {
            let text = String::from_utf8_lossy(payload);
            for line in text.split("\r\n") {
                if let Some(v) = line.strip_prefix("grpc-status:") {
                    status = Some(v.trim().to_owned());
                }
            }
        }
        i += 5 + len;
    }
    match status.as_deref() {
        Some("0") => Ok(message.unwrap()),
        Some(code) => Err(code_name(tonic::Code::from_i32(code.parse().unwrap()))),
        None => panic!("a gRPC-Web answer without a status"),
    }
}

fn profile(stack: &[&str], value: i64, span: Option<&str>) -> Vec<u8> {
    let mut b = ProfileBuilder::new("cpu", "nanoseconds");
    b.period("cpu", "nanoseconds", 10_000_000).time_nanos(now_nanos());
    let labels: Vec<(&str, &str)> = span.map(|s| vec![("span_id", s)]).unwrap_or_default();
    b.sample(stack, &[value], &labels);
    b.encode()
}

fn cpu_push(service: &str, stack: &[&str], value: i64, span: Option<&str>) -> push::PushRequest {
    push_request(&[("__name__", "process_cpu"), ("service_name", service)], profile(stack, value, span), "")
}

/// An OTLP export of one CPU sample of `value` for `service`.
fn otlp_export(service: &str, value: i64) -> otlp_svc::ExportProfilesServiceRequest {
    use phlox_proto::opentelemetry::proto::common::v1::{AnyValue, KeyValue, any_value};
    use phlox_proto::opentelemetry::proto::profiles::v1development as p;
    use phlox_proto::opentelemetry::proto::resource::v1::Resource;
    let strings = ["", "samples", "count", "cpu", "nanoseconds", "main", "otlp_work", "main.go"].map(String::from);
    let function = |name: i32| p::Function {
        name_strindex: name,
        system_name_strindex: name,
        filename_strindex: 7,
        start_line: 1,
    };
    let location =
        |f: i32| p::Location { lines: vec![p::Line { function_index: f, line: 1, column: 0 }], ..Default::default() };
    otlp_svc::ExportProfilesServiceRequest {
        resource_profiles: vec![p::ResourceProfiles {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue { value: Some(any_value::Value::StringValue(service.into())) }),
                    key_strindex: 0,
                }],
                ..Default::default()
            }),
            scope_profiles: vec![p::ScopeProfiles {
                profiles: vec![p::Profile {
                    sample_type: Some(p::ValueType { type_strindex: 1, unit_strindex: 2 }),
                    samples: vec![p::Sample { stack_index: 1, values: vec![value], ..Default::default() }],
                    time_unix_nano: now_nanos() as u64,
                    duration_nano: 10_000_000_000,
                    period_type: Some(p::ValueType { type_strindex: 3, unit_strindex: 4 }),
                    period: 10_000_000,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
        dictionary: Some(p::ProfilesDictionary {
            string_table: strings.to_vec(),
            function_table: vec![function(0), function(5), function(6)],
            location_table: vec![location(0), location(1), location(2)],
            stack_table: vec![p::Stack::default(), p::Stack { location_indices: vec![2, 1] }],
            mapping_table: vec![p::Mapping::default()],
            link_table: vec![p::Link::default()],
            attribute_table: vec![p::KeyValueAndUnit::default()],
        }),
    }
}

/// The RPCs of the public services, from the `.proto` files.
fn rpcs_in_protos() -> BTreeSet<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dataplane/proto/proto");
    let files = [
        "push/v1/push.proto",
        "querier/v1/querier.proto",
        "settings/v1/recording_rules.proto",
        "capabilities/v1/feature_flags.proto",
        "version/v1/version.proto",
        "adhocprofiles/v1/adhocprofiles.proto",
        "debuginfo/v1alpha1/debuginfo.proto",
        "grpc/health/v1/health.proto",
        "opentelemetry/proto/collector/profiles/v1development/profiles_service.proto",
    ];
    let mut rpcs = BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(root.join(f)).unwrap();
        let package = text.lines().find_map(|l| l.trim().strip_prefix("package ")).unwrap().trim_end_matches(';');
        let mut service = "";
        for line in text.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("service ") {
                service = rest.split_whitespace().next().unwrap();
            } else if let Some(rest) = line.strip_prefix("rpc ") {
                let method = rest.split('(').next().unwrap().trim();
                rpcs.insert(format!("{package}.{service}/{method}"));
            }
        }
    }
    rpcs
}

fn multitenant_server() -> (tempfile::TempDir, Phlox) {
    let (tmp, dir) = data_dir();
    let cfg = tmp.path().join("phlox.yaml");
    std::fs::write(&cfg, "multitenancy_enabled: true\n").unwrap();
    let server = Phlox::start(&dir, &["--config", cfg.to_str().unwrap()]);
    (tmp, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_answers_the_same_over_connect_grpc_and_grpc_web() {
    let (_tmp, server) = multitenant_server();
    let c = Client::new(&server.http).await;
    let start = now_nanos() / 1_000_000 - 3_600_000;
    let end = now_nanos() / 1_000_000 + 3_600_000;

    // Writes, each protocol its own service: 10, 20, 30, 40 in `main;work`,
    // plus 5 with a span in the first.
    for (i, p) in ALL.iter().enumerate() {
        let service = format!("svc-{}", p.tag());
        let mut request = cpu_push(&service, &["main", "work"], 10 * (i as i64 + 1), None);
        if i == 0 {
            request.series.extend(cpu_push(&service, &["main", "span"], 5, Some("00000000000000aa")).series);
        }
        let answer: Answer<push::PushResponse> = c.call(*p, "/push.v1.PusherService/Push", &request).await;
        assert_eq!(answer, Ok(push::PushResponse {}), "push over {}", p.tag());
        let e: Answer<push::PushResponse> =
            c.call(*p, "/push.v1.PusherService/Push", &push::PushRequest::default()).await;
        assert_eq!(e, Err("invalid_argument".into()), "an empty push over {}", p.tag());
        // OTLP has no Connect form: gRPC and gRPC-Web here, OTLP/HTTP below.
        if matches!(p, Protocol::Grpc | Protocol::GrpcWeb) {
            let export = otlp_export(&format!("otlp-{}", p.tag()), 7);
            let path = "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export";
            let answer: Answer<otlp_svc::ExportProfilesServiceResponse> = c.call_grpc(*p, path, &export).await;
            assert!(answer.is_ok(), "export over {}: {answer:?}", p.tag());
        }
    }
    let r = c
        .http
        .post(format!("{}/v1development/profiles", server.http))
        .header("Content-Type", "application/x-protobuf")
        .header("X-Scope-OrgID", TENANT)
        .body(otlp_export("otlp-http", 7).encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "OTLP/HTTP");

    // Reads: one answer whichever the protocol.
    let querier = |m: &str| format!("/querier.v1.QuerierService/{m}");
    let types: q::ProfileTypesResponse =
        c.same(&querier("ProfileTypes"), &q::ProfileTypesRequest { start, end }).await.unwrap();
    assert!(types.profile_types.iter().any(|t| t.id == CPU), "{types:?}");
    let names: t::LabelNamesResponse =
        c.same(&querier("LabelNames"), &t::LabelNamesRequest { matchers: vec![], start, end }).await.unwrap();
    assert!(names.names.contains(&"service_name".to_owned()), "{names:?}");
    let values: t::LabelValuesResponse = c
        .same(
            &querier("LabelValues"),
            &t::LabelValuesRequest { name: "service_name".into(), matchers: vec![], start, end },
        )
        .await
        .unwrap();
    let expected: BTreeSet<String> = ALL
        .iter()
        .map(|p| format!("svc-{}", p.tag()))
        .chain(["otlp-grpc", "otlp-grpc-web", "otlp-http"].map(String::from))
        .collect();
    assert_eq!(values.names.iter().cloned().collect::<BTreeSet<_>>(), expected);
    let series: q::SeriesResponse = c
        .same(
            &querier("Series"),
            &q::SeriesRequest {
                matchers: vec![format!("{{__profile_type__=\"{CPU}\"}}")],
                label_names: vec!["service_name".into()],
                start,
                end,
            },
        )
        .await
        .unwrap();
    // The OTLP exports (samples with a CPU period) are CPU profiles too.
    let services: BTreeSet<String> = series.labels_set.iter().map(|l| l.labels[0].value.clone()).collect();
    assert_eq!(services, expected);
    let selector = "{service_name=~\"svc-.*\"}";
    let merge = q::SelectMergeStacktracesRequest {
        profile_type_id: CPU.into(),
        label_selector: selector.into(),
        start,
        end,
        ..Default::default()
    };
    let flame: q::SelectMergeStacktracesResponse = c.same(&querier("SelectMergeStacktraces"), &merge).await.unwrap();
    assert_eq!(flame.flamegraph.as_ref().unwrap().total, 10 + 20 + 30 + 40 + 5);
    let bad = q::SelectMergeStacktracesRequest { label_selector: "{service_name=".into(), ..merge.clone() };
    let e: Answer<q::SelectMergeStacktracesResponse> = c.same(&querier("SelectMergeStacktraces"), &bad).await;
    assert_eq!(e, Err("invalid_argument".into()));
    let ts: q::SelectSeriesResponse = c
        .same(
            &querier("SelectSeries"),
            &q::SelectSeriesRequest {
                profile_type_id: CPU.into(),
                label_selector: selector.into(),
                start,
                end,
                group_by: vec!["service_name".into()],
                step: 60.0,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let total: f64 = ts.series.iter().flat_map(|s| s.points.iter().map(|p| p.value)).sum();
    assert_eq!((ts.series.len(), total), (4, 105.0));
    let one = |svc: &str| q::SelectMergeStacktracesRequest {
        label_selector: format!("{{service_name=\"svc-{svc}\"}}"),
        ..merge.clone()
    };
    let diff: q::DiffResponse = c
        .same(&querier("Diff"), &q::DiffRequest { left: Some(one("grpc")), right: Some(one("grpc-web")) })
        .await
        .unwrap();
    let d = diff.flamegraph.unwrap();
    assert_eq!((d.left_ticks, d.right_ticks), (30, 40));
    let heatmap: q::SelectHeatmapResponse = c
        .same(
            &querier("SelectHeatmap"),
            &q::SelectHeatmapRequest {
                profile_type_id: CPU.into(),
                label_selector: selector.into(),
                start,
                end,
                step: 60.0,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(!heatmap.series.is_empty(), "{heatmap:?}");
    let spans: q::SelectMergeSpanProfileResponse = c
        .same(
            &querier("SelectMergeSpanProfile"),
            &q::SelectMergeSpanProfileRequest {
                profile_type_id: CPU.into(),
                label_selector: selector.into(),
                span_selector: vec!["00000000000000aa".into()],
                start,
                end,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(spans.flamegraph.unwrap().total, 5);
    let pprof: phlox_proto::google::v1::Profile = c
        .same(
            &querier("SelectMergeProfile"),
            &q::SelectMergeProfileRequest {
                profile_type_id: CPU.into(),
                label_selector: selector.into(),
                start,
                end,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(pprof.sample.iter().map(|s| s.value[0]).sum::<i64>(), 105);
    let analyzed: q::AnalyzeQueryResponse =
        c.same(&querier("AnalyzeQuery"), &q::AnalyzeQueryRequest { start, end, query: selector.into() }).await.unwrap();
    assert!(analyzed.query_impact.is_some(), "{analyzed:?}");
    let stats: t::GetProfileStatsResponse =
        c.same(&querier("GetProfileStats"), &t::GetProfileStatsRequest {}).await.unwrap();
    assert!(stats.data_ingested, "{stats:?}");

    let v: version::VersionResponse = c.same("/version.v1.Version/Version", &version::VersionRequest {}).await.unwrap();
    assert_eq!(v.querier_api, 1);
    let flags: caps::GetFeatureFlagsResponse =
        c.same("/capabilities.v1.FeatureFlagsService/GetFeatureFlags", &caps::GetFeatureFlagsRequest {}).await.unwrap();
    assert!(flags.feature_flags.iter().any(|f| f.name == "pyroscopeRuler" && f.enabled), "{flags:?}");
    let h: health::HealthCheckResponse =
        c.same("/grpc.health.v1.Health/Check", &health::HealthCheckRequest { service: String::new() }).await.unwrap();
    assert_eq!(h.status, health::health_check_response::ServingStatus::Serving as i32);

    // Recording rules: an upsert per protocol, then the same list and get.
    let rules = |m: &str| format!("/settings.v1.RecordingRulesService/{m}");
    let mut ids = Vec::new();
    for p in ALL {
        let upsert = s::UpsertRecordingRuleRequest {
            metric_name: format!("profiles_recorded_{}", p.tag().replace('-', "_")),
            matchers: vec![format!("{{__profile_type__=\"{CPU}\"}}")],
            group_by: vec!["service_name".into()],
            ..Default::default()
        };
        let r: s::UpsertRecordingRuleResponse = c.call(p, &rules("UpsertRecordingRule"), &upsert).await.unwrap();
        let rule = r.rule.unwrap();
        assert_eq!((rule.metric_name.as_str(), rule.profile_type.as_str()), (upsert.metric_name.as_str(), CPU));
        ids.push(rule.id);
    }
    let listed: s::ListRecordingRulesResponse =
        c.same(&rules("ListRecordingRules"), &s::ListRecordingRulesRequest {}).await.unwrap();
    assert_eq!(listed.rules.iter().map(|r| r.id.clone()).collect::<BTreeSet<_>>(), ids.iter().cloned().collect());
    let got: s::GetRecordingRuleResponse =
        c.same(&rules("GetRecordingRule"), &s::GetRecordingRuleRequest { id: ids[0].clone() }).await.unwrap();
    assert_eq!(got.rule.unwrap().metric_name, "profiles_recorded_connect_proto");
    let missing: Answer<s::GetRecordingRuleResponse> =
        c.same(&rules("GetRecordingRule"), &s::GetRecordingRuleRequest { id: "nope".into() }).await;
    assert_eq!(missing, Err("not_found".into()));
    for (p, id) in ALL.iter().zip(&ids) {
        let r: Answer<s::DeleteRecordingRuleResponse> =
            c.call(*p, &rules("DeleteRecordingRule"), &s::DeleteRecordingRuleRequest { id: id.clone() }).await;
        assert_eq!(r, Ok(s::DeleteRecordingRuleResponse {}), "delete over {}", p.tag());
    }
    let listed: s::ListRecordingRulesResponse =
        c.same(&rules("ListRecordingRules"), &s::ListRecordingRulesRequest {}).await.unwrap();
    assert!(listed.rules.is_empty(), "{listed:?}");

    // Settings: a key per protocol.
    let settings = |m: &str| format!("/settings.v1.SettingsService/{m}");
    for p in ALL {
        let set = s::SetSettingsRequest {
            setting: Some(s::Setting { name: format!("k.{}", p.tag()), value: p.tag().into(), modified_at: 0 }),
        };
        let r: s::SetSettingsResponse = c.call(p, &settings("Set"), &set).await.unwrap();
        let setting = r.setting.unwrap();
        assert_eq!((setting.name, setting.value), (format!("k.{}", p.tag()), p.tag().to_owned()));
    }
    let got: s::GetSettingsResponse = c.same(&settings("Get"), &s::GetSettingsRequest {}).await.unwrap();
    let values: BTreeSet<String> = got.settings.iter().map(|s| s.value.clone()).collect();
    assert_eq!(values, ALL.iter().map(|p| p.tag().to_owned()).collect());
    for p in ALL {
        let r: Answer<s::DeleteSettingsResponse> =
            c.call(p, &settings("Delete"), &s::DeleteSettingsRequest { name: format!("k.{}", p.tag()) }).await;
        assert_eq!(r, Ok(s::DeleteSettingsResponse {}));
    }
    let got: s::GetSettingsResponse = c.same(&settings("Get"), &s::GetSettingsRequest {}).await.unwrap();
    assert!(got.settings.is_empty(), "{got:?}");

    // Ad hoc profiles: an upload per protocol (collapsed stacks, base64).
    let adhoc = |m: &str| format!("/adhocprofiles.v1.AdHocProfileService/{m}");
    let mut uploads = Vec::new();
    for (i, p) in ALL.iter().enumerate() {
        let folded = format!("main;adhoc {}\n", i + 1);
        let upload = a::AdHocProfilesUploadRequest {
            name: format!("{}.txt", p.tag()),
            profile: encode_base64(folded.as_bytes()),
            max_nodes: None,
        };
        let r: a::AdHocProfilesGetResponse = c.call(*p, &adhoc("Upload"), &upload).await.unwrap();
        let fb: serde_json::Value = serde_json::from_str(&r.flamebearer_profile).unwrap();
        assert_eq!(
            (r.name.as_str(), fb["flamebearer"]["numTicks"].as_i64()),
            (upload.name.as_str(), Some(i as i64 + 1))
        );
        uploads.push(r.id);
    }
    let listed: a::AdHocProfilesListResponse = c.same(&adhoc("List"), &a::AdHocProfilesListRequest {}).await.unwrap();
    assert_eq!(listed.profiles.len(), 4);
    let got: a::AdHocProfilesGetResponse = c
        .same(
            &adhoc("Get"),
            &a::AdHocProfilesGetRequest { id: uploads[2].clone(), profile_type: None, max_nodes: None },
        )
        .await
        .unwrap();
    assert_eq!(got.name, "grpc.txt");
    let diff: a::AdHocProfilesDiffResponse = c
        .same(
            &adhoc("Diff"),
            &a::AdHocProfilesDiffRequest {
                left_id: uploads[0].clone(),
                right_id: uploads[3].clone(),
                profile_type: None,
                max_nodes: None,
            },
        )
        .await
        .unwrap();
    let fb: serde_json::Value = serde_json::from_str(&diff.flamebearer_profile).unwrap();
    assert_eq!((fb["leftTicks"].as_i64(), fb["rightTicks"].as_i64()), (Some(1), Some(4)));

    // Debug files: each protocol its own build id (an upload changes what
    // ShouldInitiateUpload answers); the raw upload is plain HTTP.
    let debuginfo = |m: &str| format!("/debuginfo.v1alpha1.DebuginfoService/{m}");
    let elf = b"\x7fELF and the rest";
    for (i, p) in ALL.iter().enumerate() {
        let id = format!("0ab{i}");
        let file = di::FileMetadata { gnu_build_id: id.clone(), name: p.tag().into(), ..Default::default() };
        let request = di::ShouldInitiateUploadRequest { file: Some(file) };
        let r: di::ShouldInitiateUploadResponse =
            c.call(*p, &debuginfo("ShouldInitiateUpload"), &request).await.unwrap();
        assert!(r.should_initiate_upload, "{r:?}");
        let upload = c
            .http
            .post(format!("{}{}/{id}", server.http, debuginfo("Upload")))
            .header("X-Scope-OrgID", TENANT)
            .body(elf.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(upload.status().as_u16(), 200);
        let r: Answer<di::UploadFinishedResponse> =
            c.call(*p, &debuginfo("UploadFinished"), &di::UploadFinishedRequest { gnu_build_id: id.clone() }).await;
        assert_eq!(r, Ok(di::UploadFinishedResponse {}));
        let r: di::ShouldInitiateUploadResponse =
            c.call(*p, &debuginfo("ShouldInitiateUpload"), &request).await.unwrap();
        assert!(!r.should_initiate_upload, "{r:?}");
    }
    let listed: di::ListDebuginfoResponse =
        c.same(&debuginfo("ListDebuginfo"), &di::ListDebuginfoRequest {}).await.unwrap();
    let ids: Vec<(String, i32, i64)> =
        listed.object.iter().map(|o| (o.file.as_ref().unwrap().gnu_build_id.clone(), o.state, o.size_bytes)).collect();
    let uploaded = di::object_metadata::State::Uploaded as i32;
    assert_eq!(ids, (0..4).map(|i| (format!("0ab{i}"), uploaded, elf.len() as i64)).collect::<Vec<_>>());
    for (i, p) in ALL.iter().enumerate() {
        let r: Answer<di::DeleteDebuginfoResponse> = c
            .call(*p, &debuginfo("DeleteDebuginfo"), &di::DeleteDebuginfoRequest { gnu_build_id: format!("0ab{i}") })
            .await;
        assert_eq!(r, Ok(di::DeleteDebuginfoResponse {}));
    }
    let listed: di::ListDebuginfoResponse =
        c.same(&debuginfo("ListDebuginfo"), &di::ListDebuginfoRequest {}).await.unwrap();
    assert!(listed.object.is_empty(), "{listed:?}");

    // Every RPC of every public service was called.
    let called = c.called.lock().unwrap().clone();
    assert_eq!(called, rpcs_in_protos(), "RPCs called vs the RPCs in the .proto files");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenant_is_required_by_every_protocol() {
    let (_tmp, server) = multitenant_server();
    let http = reqwest::Client::new();
    // Connect: 401 with the code; gRPC: the same code in the status.
    let r = http
        .post(format!("{}/querier.v1.QuerierService/LabelNames", server.http))
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let channel = tonic::transport::Channel::from_shared(server.http.clone()).unwrap().connect().await.unwrap();
    let mut grpc = phlox_proto::querier::v1::querier_service_client::QuerierServiceClient::new(channel);
    let e = grpc.label_names(t::LabelNamesRequest::default()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e}");
    // A write names exactly one tenant.
    let mut request = tonic::Request::new(cpu_push("x", &["main"], 1, None));
    request.metadata_mut().insert("x-scope-orgid", "a|b".parse().unwrap());
    let channel = tonic::transport::Channel::from_shared(server.http.clone()).unwrap().connect().await.unwrap();
    let e = push::pusher_service_client::PusherServiceClient::new(channel).push(request).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e}");
}
