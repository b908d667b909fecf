//! Decoding, validation and the per-series split, on generated profiles and
//! on payloads captured from real SDKs.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use phlox_model::{Labels, ProfileId};
use phlox_pprof::testkit::ProfileBuilder;
use phlox_pprof::{DecodeError, Profile, maybe_gunzip, split};
use prost::Message;

const CAPTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/captures");

fn capture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{CAPTURES}/{name}")).unwrap()
}

#[test]
fn decodes_what_prost_encodes() {
    let mut b = ProfileBuilder::new("samples", "count");
    b.add_sample_type("cpu", "nanoseconds").period("cpu", "nanoseconds", 10).time_nanos(42);
    b.sample(&["main", "a", "b"], &[1, 10], &[]);
    b.sample(&["main", "c"], &[2, 20], &[("endpoint", "/x")]);
    let bytes = b.encode();
    let p = Profile::decode(&bytes).unwrap();
    p.validate().unwrap();
    assert_eq!(p.sample_count(), 2);
    assert_eq!(p.sample_types.len(), 2);
    assert_eq!(p.time_nanos, 42);
    assert_eq!(p.period, 10);
    assert_eq!(p.sample_value(1, 1), 20);
    let leaf = p.location(p.sample_location_ids(0)[0]).unwrap();
    let f = p.function(p.lines[leaf.lines.start as usize].function_id).unwrap();
    assert_eq!(p.strings.str(f.name), "b");
    assert_eq!(p.sample_labels(1).len(), 1);
    assert_eq!(p.strings.str(p.sample_labels(1)[0].key), "endpoint");
}

#[test]
fn wall_series_of_cpu_samples_are_process_cpu() {
    let mut b = ProfileBuilder::new("samples", "count");
    b.add_sample_type("cpu", "nanoseconds").period("cpu", "nanoseconds", 10);
    b.sample(&["main"], &[1, 10], &[]);
    let p = Arc::new(Profile::decode(&b.encode()).unwrap());
    let series = Labels::from_pairs([("__name__", "wall"), ("service_name", "svc")]);
    let out = split(&series, p, ProfileId::random(), 1).unwrap();
    let types: Vec<(&str, &str)> =
        out.iter().map(|s| (s.profile_type.as_str(), s.labels.get("__name__").unwrap())).collect();
    assert_eq!(
        types,
        [
            ("wall:samples:count:cpu:nanoseconds", "wall"),
            ("process_cpu:cpu:nanoseconds:cpu:nanoseconds", "process_cpu")
        ]
    );
}

#[test]
fn long_strings_keep_their_last_bytes() {
    let long = format!("{}::handler", "x".repeat(100));
    let accented = format!("é{}", "y".repeat(9)); // 11 bytes: a cut at 10 would split the é
    let mut b = ProfileBuilder::new("samples", "count");
    b.sample(&["main", &long, &accented], &[1], &[]);
    let mut p = Profile::decode(&b.encode()).unwrap();
    assert_eq!(p.truncate_strings(200), 0, "nothing longer than the limit");
    let longer = (0..p.strings.len() as i64).filter(|&i| p.strings.str(i).len() > 10).count();
    assert!(longer >= 2, "the two function names at least");
    assert_eq!(p.truncate_strings(10), longer);
    p.validate().unwrap();
    let names: Vec<&str> = p
        .sample_location_ids(0)
        .iter()
        .map(|&l| {
            let loc = p.location(l).unwrap();
            p.strings.str(p.function(p.lines[loc.lines.start as usize].function_id).unwrap().name)
        })
        .collect();
    // Leaf first: the 11-byte name loses its first character (2 bytes), the long one keeps "x::handler".
    assert_eq!(names, ["yyyyyyyyy", "x::handler", "main"]);
    // The re-encoded profile carries the cut strings.
    let again = Profile::decode(&p.encoded()).unwrap();
    assert_eq!(again.strings.len(), p.strings.len());
    assert!((0..again.strings.len() as i64).all(|i| again.strings.str(i).len() <= 10));
}

#[test]
fn split_makes_one_series_per_label_set_and_sample_type() {
    let mut b = ProfileBuilder::new("alloc_objects", "count");
    b.add_sample_type("alloc_space", "bytes").time_nanos(7);
    b.sample(&["main", "a"], &[1, 100], &[("endpoint", "/a")]);
    b.sample(&["main", "b"], &[2, 0], &[("endpoint", "/b")]);
    b.sample(&["main", "b"], &[0, 0], &[("endpoint", "/b")]);
    b.sample(&["main", "a"], &[3, 300], &[("endpoint", "/a"), ("span_id", "00000000000000ff")]);
    b.sample(&["main", "a"], &[4, 400], &[("service_name", "override-ignored")]);
    let p = Arc::new(Profile::decode(&b.encode()).unwrap());
    let series = Labels::from_pairs([("__name__", "memory"), ("service_name", "svc"), ("__delta__", "false")]);
    let id = ProfileId([1; 16]);
    let out = split(&series, p, id, 99).unwrap();
    let mut got: Vec<(String, Option<String>, i64, usize)> = out
        .iter()
        .map(|s| (s.profile_type.clone(), s.labels.get("endpoint").map(str::to_owned), s.total, s.samples.len()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("memory:alloc_objects:count::".into(), None, 4, 1),
            ("memory:alloc_objects:count::".into(), Some("/a".into()), 4, 2),
            ("memory:alloc_objects:count::".into(), Some("/b".into()), 2, 1),
            ("memory:alloc_space:bytes::".into(), None, 400, 1),
            ("memory:alloc_space:bytes::".into(), Some("/a".into()), 400, 2),
        ]
    );
    for s in &out {
        assert_eq!(s.labels.get("service_name"), Some("svc"));
        assert_eq!(s.labels.get("__delta__"), None);
        assert_eq!(s.labels.get("span_id"), None);
        assert_eq!(s.labels.get("__type__"), s.profile_type.split(':').nth(1));
        assert_eq!(s.time_nanos, 7);
        assert_eq!(s.fingerprint, s.labels.fingerprint());
    }
    // The span label stays on the sample.
    let a = out.iter().find(|s| s.labels.get("endpoint") == Some("/a") && s.value_index == 0).unwrap();
    let spans: Vec<u64> = a.samples.iter().map(|&i| a.span_keys.of_sample(&a.source, i as usize).0).collect();
    assert_eq!(spans, vec![0, 255]);
}

#[test]
fn split_requires_a_name_and_defaults_service_and_time() {
    let mut b = ProfileBuilder::new("cpu", "nanoseconds");
    b.sample(&["main"], &[5], &[]);
    let p = Arc::new(Profile::decode(&b.encode()).unwrap());
    assert_eq!(
        split(&Labels::default(), Arc::clone(&p), ProfileId::default(), 1).unwrap_err(),
        DecodeError::MissingName
    );
    let out = split(&Labels::from_pairs([("__name__", "process_cpu")]), p, ProfileId::default(), 1234).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].labels.get("service_name"), Some("unknown_service"));
    assert_eq!(out[0].time_nanos, 1234);
    assert_eq!(out[0].profile_type, "process_cpu:cpu:nanoseconds::");
}

#[test]
fn python_sdk_push_capture_decodes_with_its_labels() {
    let body = maybe_gunzip(&capture("python-pyroscope-io-1.4.0-push-1.pb.gz"), 64 << 20).unwrap().into_owned();
    let req = phlox_proto::push::v1::PushRequest::decode(body.as_ref()).unwrap();
    assert_eq!(req.series.len(), 1);
    let s = &req.series[0];
    let labels = Labels::from_pairs(s.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())));
    assert_eq!(labels.get("service_name"), Some("demo.python"));
    assert_eq!(labels.get("__name__"), Some("process_cpu"));
    assert!(labels.get("otel.scope.name").is_some());
    let raw = maybe_gunzip(&s.samples[0].raw_profile, 4 << 20).unwrap();
    let p = Arc::new(Profile::decode(&raw).unwrap());
    p.validate().unwrap();
    assert_eq!(p.strings.str(p.sample_types[0].r#type), "cpu");
    assert_eq!(p.period, 10_000_000);
    let names: Vec<&str> = p.functions.iter().map(|f| p.strings.str(f.name)).collect();
    assert!(names.iter().any(|n| n.contains("burn_cycles")), "{names:?}");
    let id = ProfileId::parse(&s.samples[0].id).unwrap();
    let out = split(&labels, Arc::clone(&p), id, 0).unwrap();
    assert!(out.iter().any(|s| s.labels.get("endpoint") == Some("/checkout")));
    let total: i64 = out.iter().map(|s| s.total).sum();
    let expected: i64 = (0..p.sample_count()).map(|i| p.sample_value(i, 0)).sum();
    assert_eq!(total, expected);
}

#[test]
fn node_sdk_captures_decode() {
    let raw = maybe_gunzip(&capture("node-pyroscope-nodejs-0.6.4-ingest-wall.pprof.gz"), 4 << 20).unwrap().into_owned();
    let p = Profile::decode(&raw).unwrap();
    p.validate().unwrap();
    let types: Vec<&str> = p.sample_types.iter().map(|t| p.strings.str(t.r#type)).collect();
    assert_eq!(types, ["samples", "wall"]);
    // The Node SDK names functions `file:name:line`.
    assert!(p.functions.iter().any(|f| p.strings.str(f.name) == "./app.js:burnNodeCycles:4"));
    let raw = maybe_gunzip(&capture("node-pyroscope-nodejs-0.6.4-ingest-heap.pprof.gz"), 4 << 20).unwrap().into_owned();
    let p = Profile::decode(&raw).unwrap();
    p.validate().unwrap();
    let types: Vec<&str> = p.sample_types.iter().map(|t| p.strings.str(t.r#type)).collect();
    assert_eq!(types, ["inuse_objects", "inuse_space"]);
}

#[test]
fn malformed_profiles_get_typed_errors() {
    let mut b = ProfileBuilder::new("cpu", "nanoseconds");
    b.sample(&["main"], &[5], &[]);
    let mut p = b.build();
    p.sample[0].value.push(1);
    let d = Profile::decode(&p.encode_to_vec()).unwrap();
    assert!(matches!(d.validate(), Err(DecodeError::Invalid(m)) if m.contains("sample types")));

    let mut p = b.build();
    p.string_table[0] = "x".into();
    assert!(matches!(Profile::decode(&p.encode_to_vec()).unwrap().validate(), Err(DecodeError::Invalid(_))));

    let mut p = b.build();
    p.function[0].name = 999;
    assert!(
        matches!(Profile::decode(&p.encode_to_vec()).unwrap().validate(), Err(DecodeError::Invalid(m)) if m.contains("out of range"))
    );

    let mut p = b.build();
    p.sample[0].location_id = vec![77];
    assert!(
        matches!(Profile::decode(&p.encode_to_vec()).unwrap().validate(), Err(DecodeError::Invalid(m)) if m.contains("unknown location"))
    );

    // Values whose 64-bit total overflows.
    let mut huge = ProfileBuilder::new("cpu", "nanoseconds");
    huge.sample(&["a"], &[i64::MAX / 2 + 1], &[]).sample(&["b"], &[i64::MAX / 2 + 1], &[]);
    assert!(
        matches!(Profile::decode(&huge.encode()).unwrap().validate(), Err(DecodeError::Invalid(m)) if m.contains("overflow a 64-bit total"))
    );

    let mut p = b.build();
    p.sample_type.clear();
    p.sample[0].value.clear();
    assert!(matches!(Profile::decode(&p.encode_to_vec()).unwrap().validate(), Err(DecodeError::Invalid(_))));

    // Invalid UTF-8 in the string table.
    let mut bytes = b.encode();
    bytes.extend_from_slice(&[0x32, 0x02, 0xff, 0xfe]);
    assert_eq!(Profile::decode(&bytes).unwrap_err(), DecodeError::InvalidUtf8);
}

mod hostile {
    use super::*;
    use proptest::prelude::*;

    fn valid() -> Vec<u8> {
        let mut b = ProfileBuilder::new("cpu", "nanoseconds");
        b.period("cpu", "nanoseconds", 10);
        for i in 0..20 {
            b.sample(&["main", "a", if i % 2 == 0 { "b" } else { "c" }], &[i], &[("k", "v")]);
        }
        b.encode()
    }

    fn decode_all_the_way(bytes: &[u8]) {
        if let Ok(p) = Profile::decode(bytes)
            && p.validate().is_ok()
        {
            let _ = split(&Labels::from_pairs([("__name__", "x")]), Arc::new(p), ProfileId::default(), 0);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            decode_all_the_way(&bytes);
            let _ = maybe_gunzip(&bytes, 1 << 16);
        }

        #[test]
        fn truncations_never_panic(cut in 0usize..2000) {
            let v = valid();
            let cut = cut.min(v.len());
            decode_all_the_way(&v[..cut]);
        }

        #[test]
        fn byte_flips_never_panic(pos in 0usize..2000, byte in any::<u8>()) {
            let mut v = valid();
            let pos = pos % v.len();
            v[pos] = byte;
            decode_all_the_way(&v);
        }
    }

    #[test]
    fn every_prefix_of_a_profile_decodes_or_fails_cleanly() {
        let v = valid();
        let mut rejected = 0;
        for cut in 0..v.len() {
            match Profile::decode(&v[..cut]) {
                Ok(p) => assert!(p.sample_count() <= 20),
                Err(e) => {
                    assert!(
                        matches!(
                            e,
                            DecodeError::Truncated
                                | DecodeError::BadTag
                                | DecodeError::BadWireType(_)
                                | DecodeError::InvalidUtf8
                        ),
                        "{e}"
                    );
                    rejected += 1;
                }
            }
        }
        assert!(rejected > v.len() / 2, "most cuts fall inside a field: {rejected}/{}", v.len());
    }
}

/// What `Profile::encode` writes decodes to the same profile, and series
/// rebuilt from parts equal the ones `split` made (the distributor →
/// segment-writer wire path).
#[test]
fn encoded_profiles_decode_to_the_same_profile_and_series() {
    let mut b = phlox_pprof::testkit::realistic_cpu_profile(7, 9, 300);
    b.sample(&["main", "handler"], &[5], &[("span_id", "00000000000000aa"), ("endpoint", "/a")]);
    let original = Profile::decode(&b.encode()).unwrap();
    let again = Profile::decode(&original.encode()).unwrap();
    assert_eq!(again.to_proto(), original.to_proto());
    // The cached encoding is the encoding; a clone does not inherit it.
    assert_eq!(original.encoded().as_ref(), original.encode().as_slice());
    assert!(std::ptr::eq(original.encoded().as_ptr(), original.encoded().as_ptr()), "computed once");
    assert_eq!(again.sample_count(), original.sample_count());
    assert_eq!(again.values, original.values);
    assert_eq!(again.location_ids, original.location_ids);

    let labels = Labels::from_pairs([("__name__", "process_cpu"), ("service_name", "svc")]);
    let id = ProfileId([3; 16]);
    let parts = split(&labels, Arc::new(original), id, 1).unwrap();
    let source = Arc::new(again);
    for p in &parts {
        let r = phlox_pprof::SeriesProfile::from_parts(
            Arc::clone(&source),
            p.labels.clone(),
            p.id,
            p.time_nanos,
            p.value_index,
            p.samples.clone(),
        )
        .unwrap();
        assert_eq!(
            (r.fingerprint, &r.profile_type, r.total, &r.samples),
            (p.fingerprint, &p.profile_type, p.total, &p.samples)
        );
        assert_eq!(r.span_keys, p.span_keys);
    }
    // Hostile parts are refused.
    let p = &parts[0];
    let rebuild = |vi: usize, samples: Vec<u32>, labels: Labels| {
        phlox_pprof::SeriesProfile::from_parts(Arc::clone(&source), labels, p.id, 0, vi, samples)
    };
    assert!(rebuild(9, vec![0], p.labels.clone()).is_err());
    assert!(rebuild(0, vec![u32::MAX], p.labels.clone()).is_err());
    assert!(rebuild(0, vec![0], labels.clone()).is_err(), "no __profile_type__");
}

#[test]
fn every_capture_survives_an_encode_round_trip() {
    let mut n = 0;
    for entry in std::fs::read_dir(CAPTURES).unwrap() {
        let path = entry.unwrap().path();
        let Ok(bytes) = std::fs::read(&path) else { continue };
        let Ok(plain) = maybe_gunzip(&bytes, 64 << 20) else { continue };
        let Ok(p) = Profile::decode(&plain) else { continue };
        if p.validate().is_err() || p.sample_count() == 0 {
            continue;
        }
        let again = Profile::decode(&p.encode()).unwrap();
        assert_eq!(again.to_proto(), p.to_proto(), "{}", path.display());
        n += 1;
    }
    assert!(n > 0, "at least one pprof capture");
}
