//! OTLP profiles → pprof conversion, as Pyroscope maps them.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use phlox_formats::otlp::{ExportProfilesServiceRequest, OtlpError, OtlpProfile, convert, decode_request};
use phlox_proto::opentelemetry::proto::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use phlox_proto::opentelemetry::proto::profiles::v1development::{
    Function, KeyValueAndUnit, Line, Link, Location, Mapping, Profile, ProfilesDictionary, ResourceProfiles, Sample,
    ScopeProfiles, Stack, ValueType,
};
use phlox_proto::opentelemetry::proto::resource::v1::Resource;
use proptest::prelude::*;
use prost::Message;
use prost::bytes::Bytes;
use serde_json::{Value, json};

const NOW: i64 = 1_700_000_000_000_000_000;
const PERIOD: i64 = 1_000_000_000 / 19;
/// Pyroscope's default profile size limit, and a request budget of 64 MiB.
const BUDGET: phlox_formats::Budget = phlox_formats::Budget { max_profile_bytes: 4 << 20, max_request_bytes: 64 << 20 };

// ---------------------------------------------------------------- builders

fn s(v: &str) -> Option<AnyValue> {
    Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) })
}
fn int(v: i64) -> Option<AnyValue> {
    Some(AnyValue { value: Some(any_value::Value::IntValue(v)) })
}
fn kv(k: &str, v: Option<AnyValue>) -> KeyValue {
    KeyValue { key: k.into(), value: v, key_strindex: 0 }
}

/// Builds a dictionary with the zero value at index 0 of every table.
struct Dict {
    d: ProfilesDictionary,
    strings: HashMap<String, i32>,
}

impl Dict {
    fn new() -> Self {
        let mut d = Dict {
            d: ProfilesDictionary {
                mapping_table: vec![Mapping::default()],
                location_table: vec![Location::default()],
                function_table: vec![Function::default()],
                link_table: vec![Link::default()],
                string_table: vec![],
                attribute_table: vec![KeyValueAndUnit::default()],
                stack_table: vec![Stack::default()],
            },
            strings: HashMap::new(),
        };
        d.s("");
        d
    }
    fn s(&mut self, v: &str) -> i32 {
        if let Some(&i) = self.strings.get(v) {
            return i;
        }
        let i = self.d.string_table.len() as i32;
        self.d.string_table.push(v.into());
        self.strings.insert(v.into(), i);
        i
    }
    fn vt(&mut self, t: &str, u: &str) -> Option<ValueType> {
        Some(ValueType { type_strindex: self.s(t), unit_strindex: self.s(u) })
    }
    fn function(&mut self, name: &str, file: &str) -> i32 {
        let f = Function {
            name_strindex: self.s(name),
            system_name_strindex: self.s(name),
            filename_strindex: self.s(file),
            start_line: 7,
        };
        self.d.function_table.push(f);
        self.d.function_table.len() as i32 - 1
    }
    fn mapping(&mut self, file: &str, attrs: Vec<i32>) -> i32 {
        let m = Mapping {
            memory_start: 0x1000,
            memory_limit: 0x9000,
            file_offset: 0x10,
            filename_strindex: self.s(file),
            attribute_indices: attrs,
        };
        self.d.mapping_table.push(m);
        self.d.mapping_table.len() as i32 - 1
    }
    /// A location with one line per function (innermost first).
    fn location(&mut self, mapping: i32, address: u64, functions: &[&str], attrs: Vec<i32>) -> i32 {
        let lines = functions
            .iter()
            .enumerate()
            .map(|(i, f)| Line { function_index: self.function(f, "main.go"), line: 10 + i as i64, column: 3 })
            .collect();
        self.d.location_table.push(Location { mapping_index: mapping, address, lines, attribute_indices: attrs });
        self.d.location_table.len() as i32 - 1
    }
    /// A stack of single-function locations, leaf first, without mapping.
    fn stack_of(&mut self, leaf_first: &[&str]) -> i32 {
        let locs = leaf_first.iter().map(|f| self.location(0, 0, &[f], vec![])).collect();
        self.stack(locs)
    }
    fn stack(&mut self, location_indices: Vec<i32>) -> i32 {
        self.d.stack_table.push(Stack { location_indices });
        self.d.stack_table.len() as i32 - 1
    }
    fn attr(&mut self, key: &str, value: Option<AnyValue>) -> i32 {
        let a = KeyValueAndUnit { key_strindex: self.s(key), value, unit_strindex: 0 };
        self.d.attribute_table.push(a);
        self.d.attribute_table.len() as i32 - 1
    }
    fn link(&mut self, trace_id: &[u8], span_id: &[u8]) -> i32 {
        self.d
            .link_table
            .push(Link { trace_id: Bytes::copy_from_slice(trace_id), span_id: Bytes::copy_from_slice(span_id) });
        self.d.link_table.len() as i32 - 1
    }
}

fn sample(stack: i32, values: &[i64], attrs: Vec<i32>) -> Sample {
    Sample {
        stack_index: stack,
        attribute_indices: attrs,
        link_index: 0,
        values: values.to_vec(),
        timestamps_unix_nano: vec![],
    }
}

fn request(
    dict: Dict,
    resource: Vec<KeyValue>,
    scope: Vec<KeyValue>,
    profiles: Vec<Profile>,
) -> ExportProfilesServiceRequest {
    ExportProfilesServiceRequest {
        resource_profiles: vec![ResourceProfiles {
            resource: Some(Resource { attributes: resource, dropped_attributes_count: 0, entity_refs: vec![] }),
            scope_profiles: vec![ScopeProfiles {
                scope: Some(InstrumentationScope {
                    name: "ebpf-profiler".into(),
                    version: "1.0".into(),
                    attributes: scope,
                    dropped_attributes_count: 0,
                }),
                profiles,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
        dictionary: Some(dict.d),
    }
}

// ---------------------------------------------------------------- readers

/// Encodes with prost, decodes with phlox-pprof and validates.
fn validated(p: &OtlpProfile) -> phlox_pprof::Profile {
    let bytes = p.profile.encode_to_vec();
    let decoded = phlox_pprof::Profile::decode(&bytes).unwrap();
    decoded.validate().unwrap();
    assert_eq!(p.profile.string_table[0], "");
    assert_eq!(p.profile.sample_type.len(), 1);
    for (i, l) in p.profile.location.iter().enumerate() {
        assert_eq!(l.id, i as u64 + 1);
    }
    for (i, f) in p.profile.function.iter().enumerate() {
        assert_eq!(f.id, i as u64 + 1);
    }
    for (i, m) in p.profile.mapping.iter().enumerate() {
        assert_eq!(m.id, i as u64 + 1);
    }
    decoded
}

fn st(p: &OtlpProfile, i: i64) -> &str {
    &p.profile.string_table[i as usize]
}

fn labels(p: &OtlpProfile) -> Vec<(&str, &str)> {
    p.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// Function names of sample `i`, leaf first (first line of each location).
fn stack_names(p: &OtlpProfile, i: usize) -> Vec<&str> {
    p.profile.sample[i]
        .location_id
        .iter()
        .map(|&id| {
            let loc = &p.profile.location[id as usize - 1];
            let f = &p.profile.function[loc.line[0].function_id as usize - 1];
            st(p, f.name)
        })
        .collect()
}

fn sample_labels(p: &OtlpProfile, i: usize) -> Vec<(&str, &str)> {
    p.profile.sample[i].label.iter().map(|l| (st(p, l.key), st(p, l.str))).collect()
}

fn values(p: &OtlpProfile) -> Vec<i64> {
    p.profile
        .sample
        .iter()
        .map(|s| {
            assert_eq!(s.value.len(), 1);
            s.value[0]
        })
        .collect()
}

// ---------------------------------------------------------------- scenarios

/// An eBPF-profiler-like CPU profile: `samples:count` with period
/// `cpu:nanoseconds` = 1e9/19.
fn ebpf_cpu_request() -> ExportProfilesServiceRequest {
    let mut d = Dict::new();
    let s1 = d.stack_of(&["runtime.memmove", "main.work", "main.main"]);
    let s2 = d.stack_of(&["main.idle", "main.main"]);
    let thread = d.attr("thread.name", s("worker-1"));
    let p = Profile {
        sample_type: d.vt("samples", "count"),
        samples: vec![sample(s1, &[3], vec![thread]), sample(s2, &[1], vec![])],
        time_unix_nano: 1_699_999_990_000_000_000,
        duration_nano: 5_000_000_000,
        period_type: d.vt("cpu", "nanoseconds"),
        period: PERIOD,
        profile_id: Bytes::from_static(&[7; 16]),
        ..Default::default()
    };
    request(
        d,
        vec![kv("service.name", s("checkout")), kv("host.name", s("node-1"))],
        vec![kv("otel.scope.name", s("ebpf"))],
        vec![p],
    )
}

#[test]
fn ebpf_cpu_samples_count_become_nanoseconds() {
    let out = convert(&ebpf_cpu_request(), NOW, &BUDGET).unwrap();
    assert_eq!(out.len(), 1);
    let p = &out[0];
    validated(p);
    assert_eq!(
        labels(p),
        [
            ("__delta__", "false"),
            ("__otel__", "true"),
            ("__name__", "process_cpu"),
            ("service.name", "checkout"),
            ("host.name", "node-1"),
            ("otel.scope.name", "ebpf"),
            ("service_name", "checkout"),
        ]
    );
    let vt = &p.profile.sample_type[0];
    assert_eq!((st(p, vt.r#type), st(p, vt.unit)), ("cpu", "nanoseconds"));
    let pt = p.profile.period_type.as_ref().unwrap();
    assert_eq!((st(p, pt.r#type), st(p, pt.unit)), ("cpu", "nanoseconds"));
    assert_eq!(p.profile.period, 52_631_578);
    assert_eq!(values(p), [3 * 52_631_578, 52_631_578]);
    assert_eq!(stack_names(p, 0), ["runtime.memmove", "main.work", "main.main"]);
    assert_eq!(stack_names(p, 1), ["main.idle", "main.main"]);
    assert_eq!(sample_labels(p, 0), [("thread.name", "worker-1")]);
    assert!(sample_labels(p, 1).is_empty());
    assert_eq!(p.profile.time_nanos, 1_699_999_990_000_000_000);
    assert_eq!(p.profile.duration_nanos, 5_000_000_000);
    // main.main is shared: one function, deduplicated strings.
    assert_eq!(p.profile.function.iter().filter(|f| st(p, f.name) == "main.main").count(), 2);
    assert_eq!(p.profile.string_table.iter().filter(|s| *s == "main.main").count(), 1);
    let f = &p.profile.function[0];
    assert_eq!((st(p, f.filename), f.start_line), ("main.go", 7));
}

#[test]
fn off_cpu_values_are_summed() {
    let mut d = Dict::new();
    let s1 = d.stack_of(&["futex_wait", "main.lock"]);
    let mut samp = sample(s1, &[100, 200, 50], vec![]);
    samp.timestamps_unix_nano = vec![1, 2, 3];
    let p = Profile { sample_type: d.vt("off_cpu", "nanoseconds"), samples: vec![samp], ..Default::default() };
    let out = convert(&request(d, vec![kv("service.name", s("db"))], vec![], vec![p]), NOW, &BUDGET).unwrap();
    assert_eq!(out.len(), 1);
    validated(&out[0]);
    assert_eq!(labels(&out[0])[2], ("__name__", "off_cpu"));
    assert_eq!(values(&out[0]), [350]);
    let vt = &out[0].profile.sample_type[0];
    assert_eq!((st(&out[0], vt.r#type), st(&out[0], vt.unit)), ("off_cpu", "nanoseconds"));
    assert!(out[0].profile.period_type.is_none());
    // Defaults for time and duration.
    assert_eq!(out[0].profile.time_nanos, NOW);
    assert_eq!(out[0].profile.duration_nanos, 10_000_000_000);
}

#[test]
fn sample_service_names_split_profiles() {
    let mut d = Dict::new();
    let st1 = d.stack_of(&["a"]);
    let st2 = d.stack_of(&["b"]);
    let svc_a = d.attr("service.name", s("svc-a"));
    let svc_b = d.attr("service.name", s("svc-b"));
    let thread = d.attr("thread.name", s("t1"));
    let p = Profile {
        sample_type: d.vt("samples", "count"),
        samples: vec![
            sample(st1, &[1], vec![svc_b, thread]),
            sample(st2, &[2], vec![svc_a]),
            sample(st2, &[4], vec![]),
            sample(st1, &[8], vec![thread, svc_b]),
        ],
        period_type: d.vt("cpu", "nanoseconds"),
        period: 10,
        ..Default::default()
    };
    let out = convert(&request(d, vec![kv("service.name", s("res-svc"))], vec![], vec![p]), NOW, &BUDGET).unwrap();
    assert_eq!(out.len(), 3);
    let svc = |p: &OtlpProfile| p.labels.iter().find(|(k, _)| k == "service_name").unwrap().1.clone();
    assert_eq!(svc(&out[0]), "svc-b");
    assert_eq!(svc(&out[1]), "svc-a");
    assert_eq!(svc(&out[2]), "res-svc");
    for p in &out {
        validated(p);
        // The resource's service.name label stays as it is.
        assert!(p.labels.contains(&("service.name".into(), "res-svc".into())));
        assert_eq!(p.labels.last().unwrap().0, "service_name");
    }
    assert_eq!(values(&out[0]), [10, 80]);
    assert_eq!(sample_labels(&out[0], 0), [("thread.name", "t1")]);
    assert_eq!(sample_labels(&out[0], 1), [("thread.name", "t1")]);
    assert_eq!(values(&out[1]), [20]);
    assert!(sample_labels(&out[1], 0).is_empty());
    assert_eq!(values(&out[2]), [40]);
    // Each pprof only holds what its samples use.
    assert_eq!(out[1].profile.function.len(), 1);
    assert!(!out[1].profile.string_table.iter().any(|s| s == "svc-a" || s == "service.name"));
}

#[test]
fn resource_and_scope_attributes_in_order_first_wins() {
    let mut d = Dict::new();
    let st1 = d.stack_of(&["f"]);
    let exe = d.s("java");
    let p = Profile {
        sample_type: d.vt("cpu", "nanoseconds"),
        samples: vec![sample(st1, &[5], vec![])],
        ..Default::default()
    };
    let one_elem = Some(AnyValue {
        value: Some(any_value::Value::ArrayValue(ArrayValue { values: vec![s("eu-west-1").unwrap()] })),
    });
    let two_elem = Some(AnyValue {
        value: Some(any_value::Value::ArrayValue(ArrayValue { values: vec![s("a").unwrap(), s("b").unwrap()] })),
    });
    let resource = vec![
        kv("__name__", s("evil")),
        kv("host.name", s("h1")),
        kv("process.pid", int(4242)),
        kv("cloud.region", one_elem),
        kv("tags", two_elem),
        kv("debug", Some(AnyValue { value: Some(any_value::Value::BoolValue(true)) })),
        kv("ratio", Some(AnyValue { value: Some(any_value::Value::DoubleValue(0.5)) })),
        kv("kv", Some(AnyValue { value: Some(any_value::Value::KvlistValue(KeyValueList { values: vec![] })) })),
        kv("empty", s("")),
        kv("none", None),
        kv("", s("no key")),
        // v1.10.0 dictionary-referenced key and value.
        KeyValue {
            key: String::new(),
            key_strindex: 0,
            value: Some(AnyValue { value: Some(any_value::Value::StringValueStrindex(exe)) }),
        },
        KeyValue {
            key: String::new(),
            key_strindex: d.s("process.executable.name"),
            value: Some(AnyValue { value: Some(any_value::Value::StringValueStrindex(exe)) }),
        },
    ];
    let scope = vec![kv("host.name", s("h2")), kv("__delta__", s("true")), kv("scope.attr", s("x"))];
    let out = convert(&request(d, resource, scope, vec![p]), NOW, &BUDGET).unwrap();
    assert_eq!(out.len(), 1);
    validated(&out[0]);
    assert_eq!(
        labels(&out[0]),
        [
            ("__delta__", "false"),
            ("__otel__", "true"),
            // "cpu:nanoseconds::": the period type is empty, hence the fallback.
            ("__name__", "process_cpu"),
            ("host.name", "h1"),
            ("process.pid", "4242"),
            ("cloud.region", "eu-west-1"),
            ("process.executable.name", "java"),
            ("scope.attr", "x"),
            ("service_name", "unknown_service:java"),
        ]
    );
}

#[test]
fn service_name_defaults_to_unknown_service() {
    let mut d = Dict::new();
    let st1 = d.stack_of(&["f"]);
    let p = Profile {
        sample_type: d.vt("samples", "count"),
        samples: vec![sample(st1, &[1], vec![])],
        ..Default::default()
    };
    let mut req = request(d, vec![], vec![], vec![p]);
    req.resource_profiles[0].resource = None;
    req.resource_profiles[0].scope_profiles[0].scope = None;
    let out = convert(&req, NOW, &BUDGET).unwrap();
    assert_eq!(
        labels(&out[0]),
        [
            ("__delta__", "false"),
            ("__otel__", "true"),
            ("__name__", "process_cpu"),
            ("service_name", "unknown_service")
        ]
    );
    validated(&out[0]);
}

#[test]
fn name_is_the_period_type_for_other_profiles() {
    let mut d = Dict::new();
    let st1 = d.stack_of(&["alloc"]);
    let with_period = Profile {
        sample_type: d.vt("alloc_space", "bytes"),
        period_type: d.vt("space", "bytes"),
        period: 524_288,
        samples: vec![sample(st1, &[1024], vec![])],
        ..Default::default()
    };
    let without_period = Profile {
        sample_type: d.vt("alloc_space", "bytes"),
        period_type: d.vt("space", "bytes"),
        period: 0,
        samples: vec![sample(st1, &[2048], vec![])],
        ..Default::default()
    };
    // samples:count with another period type is not rewritten.
    let count_wall = Profile {
        sample_type: d.vt("samples", "count"),
        period_type: d.vt("wall", "nanoseconds"),
        period: 100,
        samples: vec![sample(st1, &[3], vec![])],
        ..Default::default()
    };
    let empty = Profile { sample_type: None, samples: vec![], ..Default::default() };
    let out = convert(&request(d, vec![], vec![], vec![with_period, without_period, empty, count_wall]), NOW, &BUDGET)
        .unwrap();
    assert_eq!(out.len(), 3, "a profile without samples produces nothing");
    assert_eq!(labels(&out[0])[2], ("__name__", "space"));
    assert_eq!(values(&out[0]), [1024]);
    assert_eq!(out[0].profile.period, 524_288);
    assert_eq!(labels(&out[1])[2], ("__name__", "process_cpu"));
    assert_eq!(values(&out[1]), [2048]);
    assert_eq!(labels(&out[2])[2], ("__name__", "wall"));
    assert_eq!(values(&out[2]), [3]);
    let vt = &out[2].profile.sample_type[0];
    assert_eq!((st(&out[2], vt.r#type), st(&out[2], vt.unit)), ("samples", "count"));
    for p in &out {
        validated(p);
    }
}

/// One shared stack referenced by many samples: the copies pprof needs are
/// charged before they are made. 5000 samples of one 200,000-frame stack
/// would be a 1 GB pprof (8 GB in memory): refused naming the limit.
#[test]
fn shared_stacks_are_charged_before_they_are_copied() {
    let mut d = Dict::new();
    let f = d.function("deep", "deep.go");
    d.d.location_table.push(Location {
        mapping_index: 0,
        address: 0,
        lines: vec![Line { function_index: f, line: 1, column: 0 }],
        attribute_indices: vec![],
    });
    let loc = d.d.location_table.len() as i32 - 1;
    let deep = d.stack(vec![loc; 200_000]);
    let samples: Vec<Sample> = (0..5_000).map(|_| sample(deep, &[1], vec![])).collect();
    let p = Profile { sample_type: d.vt("cpu", "nanoseconds"), samples, ..Default::default() };
    let req = request(d, vec![], vec![], vec![p]);
    assert_eq!(convert(&req, NOW, &BUDGET), Err(OtlpError::ProfileTooLarge { limit: 4 << 20 }));
    assert!(OtlpError::ProfileTooLarge { limit: 4 << 20 }.to_string().contains("max_profile_size_bytes"));
    // Within the profile limit (20 samples: 4 MB), but over a request budget of 16 MB.
    let mut small = req.clone();
    small.resource_profiles[0].scope_profiles[0].profiles[0].samples.truncate(20);
    let tight = phlox_formats::Budget { max_profile_bytes: 8 << 20, max_request_bytes: 16 << 20 };
    assert_eq!(convert(&small, NOW, &tight), Err(OtlpError::RequestTooLarge { limit: 16 << 20 }));
    // The same 20 samples fit a larger budget: 20 copies of 200,000 location ids.
    let roomy = phlox_formats::Budget { max_profile_bytes: 8 << 20, max_request_bytes: 64 << 20 };
    let out = convert(&small, NOW, &roomy).unwrap();
    assert_eq!(out[0].profile.sample.len(), 20);
    assert!(out[0].profile.sample.iter().all(|s| s.location_id.len() == 200_000));
}

#[test]
fn links_become_span_and_trace_labels() {
    let mut d = Dict::new();
    let st1 = d.stack_of(&["handler"]);
    let trace: Vec<u8> = (0..16).collect();
    let full = d.link(&trace, &[0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3]);
    let short_trace = d.link(&[1, 2, 3], &[0xff; 8]);
    let no_span = d.link(&trace, &[]);
    let mut s1 = sample(st1, &[1], vec![]);
    s1.link_index = full;
    let mut s2 = sample(st1, &[2], vec![]);
    s2.link_index = short_trace;
    let mut s3 = sample(st1, &[3], vec![]);
    s3.link_index = no_span;
    let s4 = sample(st1, &[4], vec![]);
    let p = Profile { sample_type: d.vt("cpu", "nanoseconds"), samples: vec![s1, s2, s3, s4], ..Default::default() };
    let out = convert(&request(d, vec![], vec![], vec![p]), NOW, &BUDGET).unwrap();
    let p = &out[0];
    validated(p);
    assert_eq!(
        sample_labels(p, 0),
        [("span_id", "deadbeef00010203"), ("trace_id", "000102030405060708090a0b0c0d0e0f")]
    );
    assert_eq!(sample_labels(p, 1), [("span_id", "ffffffffffffffff")]);
    assert_eq!(sample_labels(p, 2), [("trace_id", "000102030405060708090a0b0c0d0e0f")]);
    assert!(sample_labels(p, 3).is_empty());
    // The form phlox-pprof parses span and trace ids from.
    assert_eq!(phlox_pprof::parse_span_id(sample_labels(p, 0)[0].1), Some(0xdead_beef_0001_0203));
    assert_eq!(phlox_pprof::parse_trace_id(sample_labels(p, 0)[1].1), Some(std::array::from_fn(|i| i as u8)));
}

#[test]
fn mapping_build_id_and_kernel_frames() {
    let mut d = Dict::new();
    let build_id = d.attr("process.executable.build_id.gnu", s("b1d0"));
    let other = d.attr("process.executable.build_id.htlhash", s("zzz"));
    let libc = d.mapping("/lib/libc.so.6", vec![other, build_id]);
    let kernel_attr = d.attr("profile.frame.type", s("kernel"));
    let native_attr = d.attr("profile.frame.type", s("native"));
    let user = d.location(libc, 0x1234, &["memcpy", "printf"], vec![native_attr]);
    let unsymbolized = d.location(libc, 0x2000, &[], vec![]);
    let kernel = d.location(0, 0xffff_0000, &["do_syscall_64"], vec![kernel_attr]);
    let kernel_in_libc = d.location(libc, 0x3000, &["entry"], vec![kernel_attr]);
    let stack = d.stack(vec![kernel, kernel_in_libc, user, unsymbolized]);
    let p = Profile {
        sample_type: d.vt("cpu", "nanoseconds"),
        samples: vec![sample(stack, &[9], vec![])],
        ..Default::default()
    };
    let out = convert(&request(d, vec![], vec![], vec![p]), NOW, &BUDGET).unwrap();
    let p = &out[0];
    validated(p);
    let m = &p.profile.mapping;
    assert_eq!(m.len(), 3);
    let loc = |id: u64| &p.profile.location[id as usize - 1];
    let ids = &p.profile.sample[0].location_id;
    // kernel frame without mapping: a "[kernel]" mapping.
    let k = &m[loc(ids[0]).mapping_id as usize - 1];
    assert_eq!((st(p, k.filename), st(p, k.build_id)), ("[kernel]", ""));
    // kernel frame in libc: a prefixed copy of the libc mapping.
    let kl = &m[loc(ids[1]).mapping_id as usize - 1];
    assert_eq!((st(p, kl.filename), st(p, kl.build_id)), ("[kernel] /lib/libc.so.6", "b1d0"));
    // user frames share the libc mapping.
    assert_eq!(loc(ids[2]).mapping_id, loc(ids[3]).mapping_id);
    let u = &m[loc(ids[2]).mapping_id as usize - 1];
    assert_eq!((st(p, u.filename), st(p, u.build_id)), ("/lib/libc.so.6", "b1d0"));
    assert_eq!((u.memory_start, u.memory_limit, u.file_offset), (0x1000, 0x9000, 0x10));
    // one libc location has no lines: the mapping is not fully symbolized.
    assert!(!u.has_functions && !u.has_line_numbers && !u.has_filenames && u.has_inline_frames);
    assert!(k.has_functions && k.has_line_numbers && k.has_filenames && !k.has_inline_frames);
    let inlined = loc(ids[2]);
    assert_eq!(inlined.address, 0x1234);
    assert_eq!(inlined.line.len(), 2);
    let fname = |l: usize| st(p, p.profile.function[inlined.line[l].function_id as usize - 1].name);
    assert_eq!((fname(0), fname(1)), ("memcpy", "printf"));
    assert_eq!((inlined.line[0].line, inlined.line[1].line), (10, 11));
    assert!(loc(ids[3]).line.is_empty());
}

#[test]
fn timestamps_only_samples_count_timestamps() {
    let mut d = Dict::new();
    let st1 = d.stack_of(&["f"]);
    let mut samp = sample(st1, &[], vec![]);
    samp.timestamps_unix_nano = vec![10, 20, 30, 40];
    let p = Profile {
        sample_type: d.vt("samples", "count"),
        period_type: d.vt("cpu", "nanoseconds"),
        period: PERIOD,
        samples: vec![samp.clone()],
        ..Default::default()
    };
    let q = Profile { sample_type: d.vt("events", "count"), samples: vec![samp], ..Default::default() };
    let out = convert(&request(d, vec![], vec![], vec![p, q]), NOW, &BUDGET).unwrap();
    assert_eq!(values(&out[0]), [4 * 52_631_578]);
    assert_eq!(values(&out[1]), [4]);
    validated(&out[0]);
    validated(&out[1]);
}

#[test]
fn several_resources_and_scopes() {
    let mut req = ebpf_cpu_request();
    let mut rp2 = req.resource_profiles[0].clone();
    rp2.resource = Some(Resource { attributes: vec![kv("service.name", s("other"))], ..Default::default() });
    let mut sp2 = rp2.scope_profiles[0].clone();
    sp2.scope = Some(InstrumentationScope { attributes: vec![kv("lang", s("go"))], ..Default::default() });
    rp2.scope_profiles.push(sp2);
    req.resource_profiles.push(rp2);
    let out = convert(&req, NOW, &BUDGET).unwrap();
    assert_eq!(out.len(), 3);
    assert_eq!(out[1].labels.last().unwrap(), &("service_name".to_string(), "other".to_string()));
    assert!(out[2].labels.contains(&("lang".to_string(), "go".to_string())));
    assert!(!out[1].labels.contains(&("lang".to_string(), "go".to_string())));
}

// ---------------------------------------------------------------- errors

#[test]
fn missing_dictionary_or_resource_profiles() {
    let mut req = ebpf_cpu_request();
    req.dictionary = None;
    assert_eq!(convert(&req, NOW, &BUDGET), Err(OtlpError::MissingDictionary));
    let mut req = ebpf_cpu_request();
    req.resource_profiles.clear();
    assert_eq!(convert(&req, NOW, &BUDGET), Err(OtlpError::MissingResourceProfiles));
    assert_eq!(convert(&ExportProfilesServiceRequest::default(), NOW, &BUDGET), Err(OtlpError::MissingDictionary));
    // An empty body decodes to an empty request, which is then rejected.
    let empty = decode_request(b"", false).unwrap();
    assert_eq!(convert(&empty, NOW, &BUDGET), Err(OtlpError::MissingDictionary));
    let empty = decode_request(b"{}", true).unwrap();
    assert_eq!(convert(&empty, NOW, &BUDGET), Err(OtlpError::MissingDictionary));
    let no_rp = decode_request(br#"{"dictionary": {}}"#, true).unwrap();
    assert_eq!(convert(&no_rp, NOW, &BUDGET), Err(OtlpError::MissingResourceProfiles));
    assert!(OtlpError::MissingDictionary.to_string().contains("missing profile metadata dictionary"));
}

fn first_profile(req: &mut ExportProfilesServiceRequest) -> &mut Profile {
    &mut req.resource_profiles[0].scope_profiles[0].profiles[0]
}

fn out_of_range(r: Result<Vec<OtlpProfile>, OtlpError>) -> &'static str {
    match r {
        Err(OtlpError::IndexOutOfRange { table, .. }) => table,
        other => panic!("expected an index error, got {other:?}"),
    }
}

#[test]
fn out_of_range_indices_are_errors() {
    type Mutation = fn(&mut ExportProfilesServiceRequest);
    let cases: &[(&str, Mutation)] = &[
        ("stack_table", |r| first_profile(r).samples[0].stack_index = 99),
        ("stack_table", |r| first_profile(r).samples[0].stack_index = -1),
        ("attribute_table", |r| first_profile(r).samples[0].attribute_indices.push(1000)),
        ("attribute_table", |r| first_profile(r).samples[1].attribute_indices = vec![-5]),
        ("link_table", |r| first_profile(r).samples[0].link_index = 7),
        ("string_table", |r| first_profile(r).sample_type.as_mut().unwrap().type_strindex = 500),
        ("string_table", |r| first_profile(r).period_type.as_mut().unwrap().unit_strindex = -1),
        ("location_table", |r| r.dictionary.as_mut().unwrap().stack_table[1].location_indices.push(1 << 20)),
        ("function_table", |r| r.dictionary.as_mut().unwrap().location_table[1].lines[0].function_index = 77),
        ("mapping_table", |r| r.dictionary.as_mut().unwrap().location_table[1].mapping_index = 3),
        ("string_table", |r| r.dictionary.as_mut().unwrap().function_table[1].filename_strindex = 1 << 30),
        ("string_table", |r| r.dictionary.as_mut().unwrap().attribute_table[1].key_strindex = 1 << 30),
        ("attribute_table", |r| r.dictionary.as_mut().unwrap().location_table[1].attribute_indices = vec![50]),
        ("string_table", |r| {
            let kv = &mut r.resource_profiles[0].resource.as_mut().unwrap().attributes[0];
            kv.key = String::new();
            kv.key_strindex = 999;
        }),
        ("string_table", |r| {
            let a = &mut r.dictionary.as_mut().unwrap().attribute_table[1];
            a.value = Some(AnyValue { value: Some(any_value::Value::StringValueStrindex(-3)) });
        }),
    ];
    for (table, mutate) in cases {
        let mut req = ebpf_cpu_request();
        mutate(&mut req);
        assert_eq!(out_of_range(convert(&req, NOW, &BUDGET)), *table);
    }
    // A mapping index into a table that has only its zero entry.
    let mut req = ebpf_cpu_request();
    let d = req.dictionary.as_mut().unwrap();
    d.mapping_table.clear();
    d.location_table[1].mapping_index = 1;
    assert_eq!(out_of_range(convert(&req, NOW, &BUDGET)), "mapping_table");
    // Empty stack table: even index 0 is out of range.
    let mut req = ebpf_cpu_request();
    req.dictionary.as_mut().unwrap().stack_table.clear();
    first_profile(&mut req).samples.truncate(1);
    first_profile(&mut req).samples[0].stack_index = 0;
    assert_eq!(out_of_range(convert(&req, NOW, &BUDGET)), "stack_table");
    let e = convert(&req, NOW, &BUDGET).unwrap_err();
    assert!(!e.is_decode_error());
    assert!(e.to_string().contains("stack_table index 0 out of range"), "{e}");
}

#[test]
fn no_values_and_missing_sample_type_are_errors() {
    let mut req = ebpf_cpu_request();
    let t = first_profile(&mut req).sample_type.as_ref().unwrap().type_strindex as usize;
    req.dictionary.as_mut().unwrap().string_table[t] = "alloc-space".into();
    assert_eq!(convert(&req, NOW, &BUDGET), Err(OtlpError::InvalidSampleType("alloc-space".into())));
    let mut req = ebpf_cpu_request();
    first_profile(&mut req).samples[1].values.clear();
    assert_eq!(convert(&req, NOW, &BUDGET), Err(OtlpError::NoValues));
    let mut req = ebpf_cpu_request();
    first_profile(&mut req).sample_type = None;
    assert_eq!(convert(&req, NOW, &BUDGET), Err(OtlpError::MissingSampleType));
}

#[test]
fn garbage_bodies_are_decode_errors() {
    for body in [&b"\xff\xff\xff\xff"[..], b"\x0a\x05abc", b"\x12\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80"] {
        let e = decode_request(body, false).unwrap_err();
        assert!(matches!(e, OtlpError::Protobuf(_)), "{e:?}");
        assert!(e.is_decode_error());
    }
    for body in [&b"not json"[..], b"[]", b"\"x\"", br#"{"resourceProfiles": {}}"#, br#"{"dictionary": []}"#] {
        let e = decode_request(body, true).unwrap_err();
        assert!(matches!(e, OtlpError::Json(_)), "{e:?}");
    }
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(decode_request(deep.as_bytes(), true).is_err());
    let bad_int = br#"{"dictionary": {"stackTable": [{"locationIndices": ["x"]}]}}"#;
    let e = decode_request(bad_int, true).unwrap_err();
    assert!(e.to_string().contains("Stack.locationIndices: invalid int32"), "{e}");
}

// ---------------------------------------------------------------- JSON

/// The eBPF request as an OTel collector writes it in OTLP/JSON.
const EBPF_JSON: &str = r#"{
  "resourceProfiles": [{
    "resource": {"attributes": [
      {"key": "service.name", "value": {"stringValue": "checkout"}},
      {"key": "host.name", "value": {"stringValue": "node-1"}}
    ]},
    "scopeProfiles": [{
      "scope": {"name": "ebpf-profiler", "version": "1.0",
                "attributes": [{"key": "otel.scope.name", "value": {"stringValue": "ebpf"}}]},
      "profiles": [{
        "sampleType": {"typeStrindex": 7, "unitStrindex": 8},
        "samples": [
          {"stackIndex": 1, "attributeIndices": [1], "values": ["3"]},
          {"stackIndex": 2, "values": [1]}
        ],
        "timeUnixNano": "1699999990000000000",
        "durationNano": "5000000000",
        "periodType": {"typeStrindex": 9, "unitStrindex": 10},
        "period": "52631578",
        "profileId": "07070707070707070707070707070707"
      }]
    }]
  }],
  "dictionary": {
    "mappingTable": [{}],
    "locationTable": [{},
      {"lines": [{"functionIndex": 1, "line": "10", "column": "3"}]},
      {"lines": [{"functionIndex": 2, "line": "10", "column": "3"}]},
      {"lines": [{"functionIndex": 3, "line": "10", "column": "3"}]},
      {"lines": [{"functionIndex": 4, "line": "10", "column": "3"}]},
      {"lines": [{"functionIndex": 5, "line": "10", "column": "3"}]}
    ],
    "functionTable": [{},
      {"nameStrindex": 1, "systemNameStrindex": 1, "filenameStrindex": 2, "startLine": "7"},
      {"nameStrindex": 3, "systemNameStrindex": 3, "filenameStrindex": 2, "startLine": "7"},
      {"nameStrindex": 4, "systemNameStrindex": 4, "filenameStrindex": 2, "startLine": "7"},
      {"nameStrindex": 5, "systemNameStrindex": 5, "filenameStrindex": 2, "startLine": "7"},
      {"nameStrindex": 4, "systemNameStrindex": 4, "filenameStrindex": 2, "startLine": "7"}
    ],
    "linkTable": [{}],
    "stringTable": ["", "runtime.memmove", "main.go", "main.work", "main.main", "main.idle",
                    "thread.name", "samples", "count", "cpu", "nanoseconds"],
    "attributeTable": [{}, {"keyStrindex": 6, "value": {"stringValue": "worker-1"}}],
    "stackTable": [{}, {"locationIndices": [1, 2, 3]}, {"locationIndices": [4, 5]}]
  }
}"#;

#[test]
fn json_and_proto_decode_to_the_same_conversion() {
    let built = ebpf_cpu_request();
    let from_json = decode_request(EBPF_JSON.as_bytes(), true).unwrap();
    let from_proto = decode_request(&built.encode_to_vec(), false).unwrap();
    assert_eq!(from_json, built);
    assert_eq!(from_proto, built);
    assert_eq!(convert(&from_json, NOW, &BUDGET).unwrap(), convert(&from_proto, NOW, &BUDGET).unwrap());
    // Original (snake_case) field names and numbers for 64-bit ints work too.
    let snake = EBPF_JSON
        .replace("resourceProfiles", "resource_profiles")
        .replace("scopeProfiles", "scope_profiles")
        .replace("\"timeUnixNano\": \"1699999990000000000\"", "\"time_unix_nano\": 1699999990000000000")
        .replace("stackIndex", "stack_index")
        .replace("stringTable", "string_table")
        .replace("\"period\": \"52631578\"", "\"period\": 52631578");
    assert_eq!(decode_request(snake.as_bytes(), true).unwrap(), built);
}

/// Test-only OTLP/JSON encoder (lowerCamelCase, 64-bit ints as strings, ids hex).
mod enc {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02X}")).collect()
    }
    fn b64(b: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut s = String::new();
        for c in b.chunks(3) {
            let n = c.iter().enumerate().fold(0u32, |n, (i, &x)| n | u32::from(x) << (16 - 8 * i));
            for i in 0..4 {
                if i <= c.len() {
                    s.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    s.push('=');
                }
            }
        }
        s
    }
    pub(super) fn any(v: &AnyValue) -> Value {
        use any_value::Value as V;
        match &v.value {
            None => json!({}),
            Some(V::StringValue(s)) => json!({"stringValue": s}),
            Some(V::BoolValue(b)) => json!({"boolValue": b}),
            Some(V::IntValue(i)) => json!({"intValue": i.to_string()}),
            Some(V::DoubleValue(d)) => json!({"doubleValue": d}),
            Some(V::ArrayValue(a)) => json!({"arrayValue": {"values": a.values.iter().map(any).collect::<Vec<_>>()}}),
            Some(V::KvlistValue(l)) => json!({"kvlistValue": {"values": l.values.iter().map(kv).collect::<Vec<_>>()}}),
            Some(V::BytesValue(b)) => json!({"bytesValue": b64(b)}),
            Some(V::StringValueStrindex(i)) => json!({"stringValueStrindex": i}),
        }
    }
    fn kv(k: &KeyValue) -> Value {
        json!({"key": k.key, "keyStrindex": k.key_strindex, "value": k.value.as_ref().map(any)})
    }
    fn vt(v: &Option<ValueType>) -> Value {
        v.as_ref().map_or(Value::Null, |v| json!({"typeStrindex": v.type_strindex, "unitStrindex": v.unit_strindex}))
    }
    fn strs<T: ToString>(v: &[T]) -> Vec<String> {
        v.iter().map(ToString::to_string).collect()
    }
    pub(super) fn request(r: &ExportProfilesServiceRequest) -> Value {
        let rps: Vec<Value> = r
            .resource_profiles
            .iter()
            .map(|rp| {
                let sps: Vec<Value> = rp
                    .scope_profiles
                    .iter()
                    .map(|sp| {
                        let ps: Vec<Value> = sp
                            .profiles
                            .iter()
                            .map(|p| {
                                let samples: Vec<Value> = p
                                    .samples
                                    .iter()
                                    .map(|s| {
                                        json!({"stackIndex": s.stack_index, "attributeIndices": s.attribute_indices,
                                               "linkIndex": s.link_index, "values": strs(&s.values),
                                               "timestampsUnixNano": strs(&s.timestamps_unix_nano)})
                                    })
                                    .collect();
                                json!({"sampleType": vt(&p.sample_type), "samples": samples,
                                       "timeUnixNano": p.time_unix_nano.to_string(),
                                       "durationNano": p.duration_nano.to_string(),
                                       "periodType": vt(&p.period_type), "period": p.period.to_string(),
                                       "profileId": hex(&p.profile_id),
                                       "droppedAttributesCount": p.dropped_attributes_count,
                                       "originalPayloadFormat": p.original_payload_format,
                                       "originalPayload": b64(&p.original_payload),
                                       "attributeIndices": p.attribute_indices})
                            })
                            .collect();
                        let scope = sp.scope.as_ref().map(|s| {
                            json!({"name": s.name, "version": s.version,
                                   "attributes": s.attributes.iter().map(kv).collect::<Vec<_>>(),
                                   "droppedAttributesCount": s.dropped_attributes_count})
                        });
                        json!({"scope": scope, "profiles": ps, "schemaUrl": sp.schema_url})
                    })
                    .collect();
                let resource = rp.resource.as_ref().map(|r| {
                    json!({"attributes": r.attributes.iter().map(kv).collect::<Vec<_>>(),
                           "droppedAttributesCount": r.dropped_attributes_count})
                });
                json!({"resource": resource, "scopeProfiles": sps, "schemaUrl": rp.schema_url})
            })
            .collect();
        let dict = r.dictionary.as_ref().map(|d| {
            json!({
                "mappingTable": d.mapping_table.iter().map(|m| json!({"memoryStart": m.memory_start.to_string(),
                    "memoryLimit": m.memory_limit.to_string(), "fileOffset": m.file_offset.to_string(),
                    "filenameStrindex": m.filename_strindex, "attributeIndices": m.attribute_indices})).collect::<Vec<_>>(),
                "locationTable": d.location_table.iter().map(|l| json!({"mappingIndex": l.mapping_index,
                    "address": l.address.to_string(), "attributeIndices": l.attribute_indices,
                    "lines": l.lines.iter().map(|x| json!({"functionIndex": x.function_index,
                        "line": x.line.to_string(), "column": x.column.to_string()})).collect::<Vec<_>>()})).collect::<Vec<_>>(),
                "functionTable": d.function_table.iter().map(|f| json!({"nameStrindex": f.name_strindex,
                    "systemNameStrindex": f.system_name_strindex, "filenameStrindex": f.filename_strindex,
                    "startLine": f.start_line.to_string()})).collect::<Vec<_>>(),
                "linkTable": d.link_table.iter().map(|l| json!({"traceId": hex(&l.trace_id),
                    "spanId": hex(&l.span_id)})).collect::<Vec<_>>(),
                "stringTable": d.string_table,
                "attributeTable": d.attribute_table.iter().map(|a| json!({"keyStrindex": a.key_strindex,
                    "value": a.value.as_ref().map(any), "unitStrindex": a.unit_strindex})).collect::<Vec<_>>(),
                "stackTable": d.stack_table.iter().map(|s| json!({"locationIndices": s.location_indices})).collect::<Vec<_>>(),
            })
        });
        json!({"resourceProfiles": rps, "dictionary": dict})
    }
}

#[test]
fn json_encoder_round_trips_every_scenario() {
    let reqs = [ebpf_cpu_request(), arbitrary_sample_request()];
    for req in reqs {
        let body = serde_json::to_vec(&enc::request(&req)).unwrap();
        assert_eq!(decode_request(&body, true).unwrap(), req);
    }
}

fn arbitrary_sample_request() -> ExportProfilesServiceRequest {
    let mut req = ebpf_cpu_request();
    let p = first_profile(&mut req);
    p.original_payload = Bytes::from_static(b"\x00\x01\xfeoriginal");
    p.original_payload_format = "jfr".into();
    p.samples[0].timestamps_unix_nano = vec![u64::MAX];
    p.samples[1].values = vec![i64::MIN, -1];
    let d = req.dictionary.as_mut().unwrap();
    d.link_table.push(Link { trace_id: Bytes::from_static(&[0xab; 16]), span_id: Bytes::from_static(&[0xcd; 8]) });
    d.attribute_table.push(KeyValueAndUnit {
        key_strindex: 1,
        value: Some(AnyValue {
            value: Some(any_value::Value::KvlistValue(KeyValueList {
                values: vec![
                    kv("b", Some(AnyValue { value: Some(any_value::Value::BytesValue(Bytes::from_static(b"xyz!?"))) })),
                    kv("d", Some(AnyValue { value: Some(any_value::Value::DoubleValue(-2.25)) })),
                ],
            })),
        }),
        unit_strindex: 2,
    });
    req
}

// ---------------------------------------------------------------- hostile input

/// Small random requests: tables of 4-5 entries, indices mostly in range
/// (one in 31 anywhere in -3..20), strings drawn from the meaningful ones.
fn arb_request() -> impl Strategy<Value = ExportProfilesServiceRequest> {
    let idx = || prop_oneof![30 => 0i32..4, 1 => -3i32..20];
    let sidx = || prop_oneof![30 => 0i32..10, 1 => -3i32..20];
    let any_value = prop_oneof![
        "[a-z]{0,3}".prop_map(any_value::Value::StringValue),
        any::<i64>().prop_map(any_value::Value::IntValue),
        sidx().prop_map(any_value::Value::StringValueStrindex),
        any::<bool>().prop_map(any_value::Value::BoolValue),
        "[a-z]{1,2}".prop_map(|s| any_value::Value::ArrayValue(ArrayValue {
            values: vec![AnyValue { value: Some(any_value::Value::StringValue(s)) }]
        })),
    ];
    let attr = (sidx(), proptest::option::weighted(0.9, any_value.clone())).prop_map(|(k, v)| KeyValueAndUnit {
        key_strindex: k,
        value: v.map(|v| AnyValue { value: Some(v) }),
        unit_strindex: 0,
    });
    let line = (idx(), -1i64..20).prop_map(|(f, l)| Line { function_index: f, line: l, column: 0 });
    let location = (idx(), any::<u64>(), proptest::collection::vec(line, 0..3), proptest::collection::vec(idx(), 0..2))
        .prop_map(|(m, a, lines, attrs)| Location { mapping_index: m, address: a, lines, attribute_indices: attrs });
    let function = (sidx(), sidx(), sidx(), any::<i64>()).prop_map(|(n, s, f, l)| Function {
        name_strindex: n,
        system_name_strindex: s,
        filename_strindex: f,
        start_line: l,
    });
    let mapping =
        (any::<u64>(), sidx(), proptest::collection::vec(idx(), 0..2)).prop_map(|(start, f, attrs)| Mapping {
            memory_start: start,
            memory_limit: start.wrapping_add(4096),
            file_offset: 0,
            filename_strindex: f,
            attribute_indices: attrs,
        });
    let link = (proptest::collection::vec(any::<u8>(), 0..17), proptest::collection::vec(any::<u8>(), 0..9))
        .prop_map(|(t, s)| Link { trace_id: Bytes::from(t), span_id: Bytes::from(s) });
    let strings = proptest::collection::vec("[a-z:_-]{0,4}", 0..3).prop_map(|extra| {
        let fixed = [
            "",
            "samples",
            "count",
            "cpu",
            "nanoseconds",
            "service.name",
            "profile.frame.type",
            "kernel",
            "process.executable.build_id.gnu",
            "off_cpu",
        ];
        fixed.iter().map(|s| s.to_string()).chain(extra).collect::<Vec<_>>()
    });
    let dict = (
        proptest::collection::vec(mapping, 4..6),
        proptest::collection::vec(location, 4..6),
        proptest::collection::vec(function, 4..6),
        proptest::collection::vec(link, 4..6),
        strings,
        proptest::collection::vec(attr, 4..6),
        proptest::collection::vec(proptest::collection::vec(idx(), 0..4), 4..6),
    )
        .prop_map(|(m, l, f, li, s, a, st)| ProfilesDictionary {
            mapping_table: m,
            location_table: l,
            function_table: f,
            link_table: li,
            string_table: s,
            attribute_table: a,
            stack_table: st.into_iter().map(|location_indices| Stack { location_indices }).collect(),
        });
    let sample = (
        idx(),
        proptest::collection::vec(idx(), 0..3),
        idx(),
        proptest::collection::vec(any::<i64>(), 0..3),
        proptest::collection::vec(any::<u64>(), 0..3),
    )
        .prop_map(|(st, a, l, v, t)| Sample {
            stack_index: st,
            attribute_indices: a,
            link_index: l,
            values: v,
            timestamps_unix_nano: t,
        });
    let vt = (sidx(), sidx()).prop_map(|(t, u)| ValueType { type_strindex: t, unit_strindex: u });
    let profile = (
        proptest::option::weighted(0.95, vt.clone()),
        proptest::collection::vec(sample, 0..4),
        prop_oneof![Just(0u64), any::<u64>()],
        proptest::option::of(vt),
        prop_oneof![Just(0i64), Just(PERIOD), any::<i64>()],
    )
        .prop_map(|(st, samples, t, pt, period)| Profile {
            sample_type: st,
            samples,
            time_unix_nano: t,
            period_type: pt,
            period,
            ..Default::default()
        });
    let kvs = proptest::collection::vec(
        ("[a-z._]{0,6}", proptest::option::of(any_value)).prop_map(|(k, v)| KeyValue {
            key: k,
            value: v.map(|v| AnyValue { value: Some(v) }),
            key_strindex: 0,
        }),
        0..3,
    );
    (proptest::option::weighted(0.95, dict), proptest::collection::vec(profile, 0..3), kvs.clone(), kvs).prop_map(
        |(dict, profiles, res, scope)| ExportProfilesServiceRequest {
            resource_profiles: vec![ResourceProfiles {
                resource: Some(Resource { attributes: res, ..Default::default() }),
                scope_profiles: vec![ScopeProfiles {
                    scope: Some(InstrumentationScope { attributes: scope, ..Default::default() }),
                    profiles,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
            dictionary: dict,
        },
    )
}

fn check_converted(out: &[OtlpProfile]) {
    for p in out {
        let decoded = validated(p);
        assert_eq!(decoded.sample_count(), p.profile.sample.len());
        assert!(!p.profile.sample.is_empty());
        let names: Vec<&str> = p.labels.iter().map(|(k, _)| k.as_str()).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "duplicate label names {names:?}");
        assert_eq!(&names[..3], ["__delta__", "__otel__", "__name__"]);
        assert_eq!(names.last(), Some(&"service_name"));
        assert!(!p.labels[2].1.is_empty());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_requests_convert_or_fail_cleanly(req in arb_request(), now in any::<i64>()) {
        if let Ok(out) = convert(&req, now, &BUDGET) {
            check_converted(&out);
        }
        // The same request through both codecs converts the same way.
        let proto = decode_request(&req.encode_to_vec(), false).unwrap();
        prop_assert_eq!(&proto, &req);
        let body = serde_json::to_vec(&enc::request(&req)).unwrap();
        let json = decode_request(&body, true).unwrap();
        prop_assert_eq!(&json, &req);
        prop_assert_eq!(convert(&json, now, &BUDGET), convert(&req, now, &BUDGET));
    }

    #[test]
    fn garbage_protobuf_never_panics(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(out) = decode_request(&body, false).and_then(|req| convert(&req, NOW, &BUDGET)) {
            check_converted(&out);
        }
    }

    #[test]
    fn mutated_protobuf_never_panics(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut body = ebpf_cpu_request().encode_to_vec();
        for (i, b) in flips {
            let i = i.index(body.len());
            body[i] = b;
        }
        if let Ok(out) = decode_request(&body, false).and_then(|req| convert(&req, NOW, &BUDGET)) {
            check_converted(&out);
        }
    }

    #[test]
    fn mutated_json_never_panics(cut in 0usize..2000, junk in "[\\[\\]{}\",:0-9a-zA-Z ]{0,8}") {
        let mut body = EBPF_JSON.to_string();
        let cut = cut.min(body.len());
        let cut = (0..=cut).rev().find(|&c| body.is_char_boundary(c)).unwrap_or(0);
        body.insert_str(cut, &junk);
        if let Ok(out) = decode_request(body.as_bytes(), true).and_then(|req| convert(&req, NOW, &BUDGET)) {
            check_converted(&out);
        }
    }
}
