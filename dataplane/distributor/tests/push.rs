//! The distributor's validation, split and fan-out, with a recording shard writer.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use phlox_distributor::{
    Distributor, DistributorMetrics, Limits, LimitsStore, PushError, ShardWriter, SinkError, TenantLimits,
};
use phlox_pprof::SeriesProfile;
use phlox_pprof::testkit::ProfileBuilder;
use phlox_proto::push::v1::{PushRequest, RawProfileSeries, RawSample};
use phlox_proto::types::v1::LabelPair;
use prost::Message;

#[derive(Default)]
struct Recorder {
    pushes: Mutex<Vec<(String, u32, Vec<SeriesProfile>)>>,
    fail: Mutex<Option<SinkError>>,
    /// Writers the 8 shards are dealt over (none: one per shard).
    writers: Option<u32>,
}

#[async_trait::async_trait]
impl ShardWriter for Recorder {
    fn shards(&self) -> u32 {
        8
    }
    fn writers(&self) -> u32 {
        self.writers.unwrap_or(8)
    }
    async fn push(&self, tenant: &str, shard: u32, profiles: Vec<SeriesProfile>) -> Result<(), SinkError> {
        if let Some(e) = self.fail.lock().unwrap().clone() {
            return Err(e);
        }
        self.pushes.lock().unwrap().push((tenant.to_owned(), shard, profiles));
        Ok(())
    }
}

fn distributor() -> (Distributor, Arc<Recorder>) {
    let rec = Arc::new(Recorder::default());
    let metrics = DistributorMetrics::new(&prometheus::Registry::new()).unwrap();
    distributor_with(Limits::default(), rec, metrics)
}

fn distributor_with(limits: Limits, rec: Arc<Recorder>, metrics: DistributorMetrics) -> (Distributor, Arc<Recorder>) {
    let store = Arc::new(LimitsStore::new(TenantLimits { defaults: limits, ..Default::default() }));
    (Distributor::new(Arc::clone(&rec) as Arc<dyn ShardWriter>, store, metrics), rec)
}

fn labels(pairs: &[(&str, &str)]) -> Vec<LabelPair> {
    pairs.iter().map(|(n, v)| LabelPair { name: n.to_string(), value: v.to_string() }).collect()
}

fn request(labels: Vec<LabelPair>, raw: Vec<u8>, id: &str) -> PushRequest {
    PushRequest {
        series: vec![RawProfileSeries {
            labels,
            samples: vec![RawSample { raw_profile: raw.into(), id: id.into() }],
            annotations: vec![],
        }],
    }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64
}

#[tokio::test]
async fn python_sdk_capture_is_split_and_placed() {
    let body = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/captures/python-pyroscope-io-1.4.0-push-1.pb.gz"
    ))
    .unwrap();
    let plain = phlox_pprof::gunzip_capped(&body, 1 << 24).unwrap();
    let req = PushRequest::decode(plain.as_slice()).unwrap();
    let (d, rec) = distributor();
    // The capture is from the past: accept it by its own time window.
    let t = {
        let raw = phlox_pprof::maybe_gunzip(&req.series[0].samples[0].raw_profile, 1 << 22).unwrap().into_owned();
        phlox_pprof::Profile::decode(&raw).unwrap().time_nanos
    };
    // What the capture holds, read with the plain generated pprof types (not
    // the decoder under test): CPU time per value of the `endpoint` sample
    // label (the SDK's tag_wrapper), the samples without it under "".
    let want: BTreeMap<String, i64> = {
        let raw = flate2_gunzip_if_needed(&req.series[0].samples[0].raw_profile);
        let p = phlox_proto::google::v1::Profile::decode(raw.as_slice()).unwrap();
        let s = |i: i64| p.string_table[i as usize].clone();
        assert_eq!((s(p.sample_type[0].r#type), s(p.sample_type[0].unit)), ("cpu".into(), "nanoseconds".into()));
        let mut want = BTreeMap::new();
        for smp in &p.sample {
            let endpoint = smp.label.iter().find(|l| s(l.key) == "endpoint").map(|l| s(l.str)).unwrap_or_default();
            *want.entry(endpoint).or_insert(0) += smp.value[0];
        }
        want
    };
    assert!(want.values().sum::<i64>() > 0);
    let profiles = d.prepare("anonymous", req, t).unwrap();
    let got: BTreeMap<String, i64> =
        profiles.iter().map(|p| (p.labels.get("endpoint").unwrap_or_default().to_owned(), p.total)).collect();
    assert_eq!(got, want);
    assert_eq!(profiles.len(), want.len(), "one series per endpoint");
    for p in &profiles {
        assert_eq!(p.labels.get("service_name"), Some("demo.python"));
        assert_eq!(p.labels.get("region"), Some("eu-west"));
        assert_eq!(p.labels.get("__profile_type__"), Some("process_cpu:cpu:nanoseconds:cpu:nanoseconds"));
        assert_eq!(p.time_nanos, t);
    }
    d.write("anonymous", profiles).await.unwrap();
    let pushes = rec.pushes.lock().unwrap();
    let mut written: Vec<(String, i64)> = pushes
        .iter()
        .flat_map(|(_, _, p)| p.iter().map(|p| (p.labels.get("endpoint").unwrap_or_default().to_owned(), p.total)))
        .collect();
    written.sort();
    assert_eq!(written, want.into_iter().collect::<Vec<_>>(), "every series written once, whole");
    assert!(pushes.iter().all(|(tenant, shard, _)| tenant == "anonymous" && *shard < 8));
    // One service spreads over at most two shards.
    let mut shards: Vec<u32> = pushes.iter().map(|(_, s, _)| *s).collect();
    shards.sort();
    shards.dedup();
    assert!(shards.len() <= 2, "{shards:?}");
}

#[allow(clippy::disallowed_methods)] // the test's own capture
fn flate2_gunzip_if_needed(b: &[u8]) -> Vec<u8> {
    if !b.starts_with(&[0x1f, 0x8b]) {
        return b.to_vec();
    }
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(b), &mut out).unwrap();
    out
}

#[tokio::test]
async fn invalid_pushes_are_rejected_with_the_reason() {
    let (d, rec) = distributor();
    let mut b = ProfileBuilder::new("cpu", "nanoseconds");
    b.sample(&["main"], &[1], &[]);
    let good = b.encode();
    let base = labels(&[("__name__", "process_cpu"), ("service_name", "svc")]);
    let cases: Vec<(PushRequest, &str)> = vec![
        (PushRequest { series: vec![] }, "no profiles received"),
        (request(vec![], good.clone(), ""), "no labels"),
        (request(labels(&[("service_name", "svc")]), good.clone(), ""), "invalid metric name"),
        (request(labels(&[("__name__", "a"), ("__name__", "b")]), good.clone(), ""), "duplicate label name"),
        (request(labels(&[("__name__", "a"), ("x", &"v".repeat(2049))]), good.clone(), ""), "max_label_value_length"),
        (
            request(
                (0..31)
                    .map(|i| LabelPair { name: format!("l{i}"), value: "v".into() })
                    .chain(labels(&[("__name__", "x")]))
                    .collect(),
                good.clone(),
                "",
            ),
            "max_label_names_per_series",
        ),
        (request(base.clone(), vec![], ""), "empty raw_profile"),
        (request(base.clone(), b"\x1f\x8bgarbage".to_vec(), ""), "invalid gzip"),
        (request(base.clone(), good[..good.len() - 3].to_vec(), ""), "malformed pprof"),
        (request(base.clone(), vec![0x0a, 0x02, 0x08], ""), "malformed pprof"),
    ];
    for (req, want) in cases {
        let err = d.prepare("t", req, now()).unwrap_err();
        assert!(matches!(&err, PushError::InvalidArgument(m) if m.contains(want)), "{err:?} should mention {want}");
        assert_eq!(err.http_status(), 400);
    }
    // Gzip bomb: stops at the 4 MiB profile limit.
    let mut enc = flate2_gzip(&vec![0u8; 64 << 20]);
    let err = d.prepare("t", request(base.clone(), std::mem::take(&mut enc), ""), now()).unwrap_err();
    assert!(matches!(&err, PushError::InvalidArgument(m) if m.contains("exceeds limit of 4194304")), "{err:?}");
    // Too old.
    let mut old = ProfileBuilder::new("cpu", "nanoseconds");
    old.time_nanos(now() - 2 * 3600 * 1_000_000_000).sample(&["main"], &[1], &[]);
    let err = d.prepare("t", request(base.clone(), old.encode(), ""), now()).unwrap_err();
    assert!(matches!(&err, PushError::InvalidArgument(m) if m.contains("reject_older_than")), "{err:?}");
    assert!(rec.pushes.lock().unwrap().is_empty());
}

fn flate2_gzip(b: &[u8]) -> Vec<u8> {
    // The pprof testkit has no gzip helper; build the bomb with the standard encoder.
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

#[tokio::test]
async fn client_ids_are_kept_and_missing_ones_are_fresh() {
    let (d, _) = distributor();
    let mut b = ProfileBuilder::new("cpu", "nanoseconds");
    b.time_nanos(now()).sample(&["main"], &[1], &[]);
    let base = labels(&[("__name__", "godeltaprof_memory"), ("service_name", "svc")]);
    let a = d.prepare("t", request(base.clone(), b.encode(), ""), now()).unwrap();
    let again = d.prepare("t", request(base.clone(), b.encode(), ""), now()).unwrap();
    assert_ne!(a[0].id, again[0].id, "without a client id, each profile is its own");
    assert_eq!(a[0].labels.get("__name__"), Some("memory"), "godeltaprof_ prefix is relabeled");
    let x = d.prepare("t", request(base.clone(), b.encode(), "6f9619ff-8b86-d011-b42d-00c04fc964ff"), now()).unwrap();
    assert_eq!(x[0].id.to_string(), "6f9619ff-8b86-d011-b42d-00c04fc964ff");
    let y = d.prepare("t", request(base.clone(), b.encode(), "not-a-uuid"), now()).unwrap();
    assert_ne!(y[0].id, x[0].id);
    let y2 = d.prepare("t", request(base, b.encode(), "not-a-uuid"), now()).unwrap();
    assert_eq!(y[0].id, y2[0].id, "any client string names its profile consistently across retries");
}

#[tokio::test]
async fn session_ids_and_long_symbols_follow_pyroscope_limits() {
    let mut b = ProfileBuilder::new("cpu", "nanoseconds");
    let long = format!("{}tail", "a".repeat(70_000));
    b.time_nanos(now()).sample(&["main", &long], &[1], &[]);
    let session = |d: &Distributor, id: &str| {
        let l = labels(&[("__name__", "process_cpu"), ("service_name", "svc"), ("__session_id__", id)]);
        let out = d.prepare("t", request(l, b.encode(), ""), now()).unwrap();
        out[0].labels.get("__session_id__").map(str::to_owned)
    };
    // Default (max_sessions_per_series 0): the label is dropped.
    let (d, _) = distributor();
    assert_eq!(session(&d, "0a00000000000000"), None);
    // Folded to 4 values: the id is a little-endian u64 read as signed, `id % 4`.
    let metrics = DistributorMetrics::new(&prometheus::Registry::new()).unwrap();
    let (d, _) = distributor_with(Limits { max_sessions_per_series: 4, ..Limits::default() }, Arc::default(), metrics);
    assert_eq!(session(&d, "0a00000000000000").as_deref(), Some("0200000000000000"), "10 % 4 = 2");
    // 0xf000000000000001 as i64 is -1152921504606846975; % 4 = -3 (truncated), as u64 0xff…fd.
    assert_eq!(session(&d, "01000000000000f0").as_deref(), Some("fdffffffffffffff"));
    assert_eq!(session(&d, "not-hex-at-all!!"), None, "an unreadable id is dropped");

    // max_profile_symbol_value_length (65535): the name keeps its last 65535 bytes.
    let out = d.prepare("t", request(labels(&[("__name__", "process_cpu")]), b.encode(), ""), now()).unwrap();
    let p = &out[0].source;
    let names: Vec<&str> =
        (0..p.strings.len() as i64).map(|i| p.strings.str(i)).filter(|s| s.ends_with("tail")).collect();
    assert_eq!(names.len(), 1);
    assert_eq!(names[0].len(), 65_535);
    assert_eq!(names[0], &long[long.len() - 65_535..]);
}

#[tokio::test]
async fn shard_errors_map_to_retryable_statuses() {
    let (d, rec) = distributor();
    let mut b = ProfileBuilder::new("cpu", "nanoseconds");
    b.sample(&["main"], &[1], &[]);
    let req = request(labels(&[("__name__", "process_cpu")]), b.encode(), "");
    *rec.fail.lock().unwrap() = Some(SinkError::Overloaded("full".into()));
    assert_eq!(d.push("t", req.clone()).await.unwrap_err().http_status(), 429);
    *rec.fail.lock().unwrap() = Some(SinkError::Unavailable("down".into()));
    assert_eq!(d.push("t", req).await.unwrap_err().http_status(), 503);
}

#[tokio::test]
async fn the_ingestion_rate_limit_answers_429_naming_the_limit() {
    let metrics = DistributorMetrics::new(&prometheus::Registry::new()).unwrap();
    let limits = Limits { ingestion_rate_mb: 0.001, ingestion_burst_size_mb: 0.002, ..Limits::default() };
    let (d, rec) = distributor_with(limits, Arc::new(Recorder::default()), metrics);
    let mut b = ProfileBuilder::new("cpu", "nanoseconds");
    b.sample(&["main"], &[1], &[]);
    let req = request(labels(&[("__name__", "process_cpu")]), b.encode(), "");
    // The first push fits in the 2000-byte burst, the next ones do not.
    d.push("t", req.clone()).await.unwrap();
    let mut refused = 0;
    for _ in 0..50 {
        if let Err(e) = d.push("t", req.clone()).await {
            assert_eq!(e.http_status(), 429);
            assert!(e.to_string().contains("ingestion_rate_mb"), "{e}");
            refused += 1;
        }
    }
    assert!(refused > 0);
    // Another tenant has its own budget.
    d.push("u", req).await.unwrap();
    assert_eq!(rec.pushes.lock().unwrap().len() + refused, 52);

    // Before any decoding: a request larger than what the bucket holds is
    // refused from its compressed size, and takes nothing from the bucket.
    let e = d.admit_request("v", 2001).unwrap_err();
    assert_eq!(e.http_status(), 429);
    assert!(e.to_string().contains("ingestion_rate_mb"), "{e}");
    for _ in 0..3 {
        d.admit_request("v", 2000).unwrap();
    }
    d.push("v", request(labels(&[("__name__", "process_cpu")]), b.encode(), "")).await.unwrap();
    // "t" spent its burst above (refilling at 1000 bytes/s): a request of
    // half the burst is refused up front.
    assert_eq!(d.admit_request("t", 1000).unwrap_err().http_status(), 429);
}

/// A dataset spreads over at most one shard per writer (shards are dealt
/// round-robin, `shard % writers`): with one writer (the single binary) all
/// its series share one shard's builder, so its symbols are interned once
/// per segment; with four writers a hot dataset reaches all four, one
/// shard each.
#[tokio::test]
async fn a_dataset_spreads_over_at_most_one_shard_per_writer() {
    let metrics = || DistributorMetrics::new(&prometheus::Registry::new()).unwrap();
    for (writers, want) in [(1u32, 1usize), (4, 4)] {
        let rec = Arc::new(Recorder { writers: Some(writers), ..Default::default() });
        let store = Arc::new(LimitsStore::new(TenantLimits::default()));
        // Eight shards wanted for every dataset, whatever its rate.
        let d = Distributor::new(Arc::clone(&rec) as Arc<dyn ShardWriter>, store, metrics())
            .with_shards_per_dataset(8, 8, 1e6);
        for pod in 0..64 {
            let mut b = phlox_pprof::testkit::ProfileBuilder::new("cpu", "nanoseconds");
            b.sample(&["main", "work"], &[10], &[]);
            b.time_nanos(now());
            let pod = format!("pod-{pod}");
            let req =
                request(labels(&[("__name__", "process_cpu"), ("service_name", "hot"), ("pod", &pod)]), b.encode(), "");
            let profiles = d.prepare("anonymous", req, now()).unwrap();
            d.write("anonymous", profiles).await.unwrap();
        }
        let pushes = rec.pushes.lock().unwrap();
        let mut shards: Vec<u32> = pushes.iter().map(|(_, s, _)| *s).collect();
        shards.sort();
        shards.dedup();
        assert_eq!(shards.len(), want, "{writers} writers: shards {shards:?}");
        let mut owners: Vec<u32> = shards.iter().map(|s| s % writers).collect();
        owners.sort();
        owners.dedup();
        assert_eq!(owners.len(), want, "one shard per writer: {shards:?}");
    }
}

#[tokio::test]
async fn ingest_refusals_are_counted_by_reason() {
    use phlox_distributor::ingest::{IngestBody, IngestFormat, IngestParams};
    let registry = prometheus::Registry::new();
    let metrics = DistributorMetrics::new(&registry).unwrap();
    let (d, _rec) = distributor_with(Limits::default(), Arc::new(Recorder::default()), metrics.clone());
    let params = |name: &str| IngestParams { name: name.into(), ..Default::default() };
    let garbage = IngestBody::Raw(bytes::Bytes::from_static(b"not a profile"));
    assert!(d.ingest("t", IngestFormat::Pprof, &params("app.cpu"), garbage.clone()).await.is_err());
    assert!(d.ingest("t", IngestFormat::Pprof, &params("app.cpu{"), garbage).await.is_err());
    let counted = |reason: &str| metrics.discarded_profiles.with_label_values(&[reason]).get();
    assert_eq!(counted("malformed_profile"), 1);
    assert_eq!(counted("invalid_request"), 1);
    assert_eq!(metrics.discarded_bytes.with_label_values(&["malformed_profile"]).get(), 13);
}
