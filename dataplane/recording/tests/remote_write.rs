//! The remote-write exporter against an in-process receiver.
#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use bytes::Bytes;
use phlox_recording::remote_write::wire::{Label, Sample, TimeSeries, WriteRequest};
use phlox_recording::remote_write::{Batch, Exporter, RemoteWriteConfig, Series};
use prometheus::Registry;
use prost::Message;
use tokio::sync::{Notify, Semaphore};

const FLUSH: Duration = Duration::from_secs(30);

struct Received {
    headers: HeaderMap,
    body: WriteRequest,
}

/// Records every request, answers the scripted statuses then 200s, and
/// holds each request until `hold` gives a permit.
struct Receiver {
    requests: Mutex<Vec<Received>>,
    statuses: Mutex<VecDeque<u16>>,
    arrived: Notify,
    hold: Semaphore,
}

impl Receiver {
    fn new(statuses: &[u16]) -> Arc<Self> {
        Self::with_hold(statuses, Semaphore::MAX_PERMITS)
    }

    fn with_hold(statuses: &[u16], permits: usize) -> Arc<Self> {
        Arc::new(Self {
            requests: Mutex::new(Vec::new()),
            statuses: Mutex::new(statuses.iter().copied().collect()),
            arrived: Notify::new(),
            hold: Semaphore::new(permits),
        })
    }

    fn bodies(&self) -> Vec<WriteRequest> {
        self.requests.lock().unwrap().iter().map(|r| r.body.clone()).collect()
    }

    fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

async fn write(State(receiver): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> (StatusCode, &'static str) {
    let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
    let body = WriteRequest::decode(raw.as_slice()).unwrap();
    receiver.requests.lock().unwrap().push(Received { headers, body });
    receiver.arrived.notify_one();
    let _permit = receiver.hold.acquire().await.unwrap();
    let status = receiver.statuses.lock().unwrap().pop_front().unwrap_or(200);
    (StatusCode::from_u16(status).unwrap(), "scripted answer")
}

/// Serves `receiver` on 127.0.0.1; returns the write URL.
async fn serve(receiver: Arc<Receiver>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/api/v1/write", post(write)).with_state(receiver);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/api/v1/write")
}

/// A URL nothing listens on.
async fn unreachable() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/api/v1/write")
}

fn config(url: &str) -> RemoteWriteConfig {
    RemoteWriteConfig {
        min_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        timeout: Duration::from_secs(10),
        ..RemoteWriteConfig::new(url)
    }
}

fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> Series {
    Series {
        labels: labels.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect(),
        samples: samples.to_vec(),
    }
}

fn batch(tenant: &str, series: Vec<Series>) -> Batch {
    Batch { tenant: tenant.to_owned(), series, oldest_profile_ms: 1_700_000_000_000 }
}

fn ts(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
    TimeSeries {
        labels: labels.iter().map(|(n, v)| Label { name: (*n).to_owned(), value: (*v).to_owned() }).collect(),
        samples: samples.iter().map(|&(timestamp, value)| Sample { value, timestamp }).collect(),
    }
}

fn family(registry: &Registry, name: &str) -> prometheus::proto::MetricFamily {
    registry.gather().into_iter().find(|f| f.name() == name).unwrap()
}

fn counter(registry: &Registry, name: &str) -> f64 {
    family(registry, name).get_metric()[0].get_counter().get_value()
}

fn exported(registry: &Registry) -> f64 {
    counter(registry, "phlox_recording_exported_samples_total")
}

fn failed(registry: &Registry) -> f64 {
    counter(registry, "phlox_recording_failed_samples_total")
}

fn dropped(registry: &Registry) -> f64 {
    counter(registry, "phlox_recording_dropped_samples_total")
}

fn pending(registry: &Registry) -> f64 {
    family(registry, "phlox_recording_pending_samples").get_metric()[0].get_gauge().get_value()
}

fn lag_observations(registry: &Registry) -> u64 {
    family(registry, "phlox_recording_lag_seconds").get_metric()[0].get_histogram().get_sample_count()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn remote_write_sends_sorted_series_with_headers() {
    let receiver = Receiver::new(&[]);
    let url = serve(receiver.clone()).await;
    let registry = Registry::new();
    let config = RemoteWriteConfig { headers: vec![("Authorization".into(), "Bearer t0k3n".into())], ..config(&url) };
    let exporter = Exporter::new(config, &registry).unwrap();
    let _sender = exporter.spawn();

    exporter.submit(batch(
        "tenant-a",
        vec![
            series(
                &[("service_name", "api"), ("__name__", "profiles_recorded_cpu"), ("env", "prod")],
                &[(1000, 1.5), (2000, 2.5), (3000, 3.5)],
            ),
            series(
                &[("__name__", "profiles_recorded_alloc"), ("service_name", "db")],
                &[(3000, 30.0), (1000, 10.0), (2000, 20.0)],
            ),
        ],
    ));
    assert!(exporter.flush(FLUSH).await);

    let requests = receiver.requests.lock().unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].body,
        WriteRequest {
            timeseries: vec![
                ts(
                    &[("__name__", "profiles_recorded_cpu"), ("env", "prod"), ("service_name", "api")],
                    &[(1000, 1.5), (2000, 2.5), (3000, 3.5)],
                ),
                ts(
                    &[("__name__", "profiles_recorded_alloc"), ("service_name", "db")],
                    &[(1000, 10.0), (2000, 20.0), (3000, 30.0)],
                ),
            ],
        }
    );
    let headers = &requests[0].headers;
    assert_eq!(header(headers, "content-encoding"), Some("snappy"));
    assert_eq!(header(headers, "content-type"), Some("application/x-protobuf"));
    assert_eq!(header(headers, "x-prometheus-remote-write-version"), Some("0.1.0"));
    assert_eq!(header(headers, "user-agent"), Some(concat!("phlox/", env!("CARGO_PKG_VERSION"))));
    assert_eq!(header(headers, "x-scope-orgid"), Some("tenant-a"));
    assert_eq!(header(headers, "authorization"), Some("Bearer t0k3n"));
    drop(requests);

    assert_eq!(exported(&registry), 6.0);
    assert_eq!(failed(&registry), 0.0);
    assert_eq!(dropped(&registry), 0.0);
    assert_eq!(pending(&registry), 0.0);
    assert_eq!(lag_observations(&registry), 1);
}

#[tokio::test]
async fn remote_write_retries_5xx_and_429() {
    let receiver = Receiver::new(&[503, 429]);
    let url = serve(receiver.clone()).await;
    let registry = Registry::new();
    let exporter = Exporter::new(config(&url), &registry).unwrap();
    let _sender = exporter.spawn();

    exporter.submit(batch(
        "t",
        vec![
            series(&[("__name__", "profiles_recorded_a")], &[(1, 1.0), (2, 2.0)]),
            series(&[("__name__", "profiles_recorded_b")], &[(1, 3.0), (2, 4.0)]),
        ],
    ));
    assert!(exporter.flush(FLUSH).await);

    let bodies = receiver.bodies();
    assert_eq!(bodies.len(), 3);
    let expected = WriteRequest {
        timeseries: vec![
            ts(&[("__name__", "profiles_recorded_a")], &[(1, 1.0), (2, 2.0)]),
            ts(&[("__name__", "profiles_recorded_b")], &[(1, 3.0), (2, 4.0)]),
        ],
    };
    assert!(bodies.iter().all(|b| *b == expected));
    assert_eq!(exported(&registry), 4.0);
    assert_eq!(failed(&registry), 0.0);
    assert_eq!(lag_observations(&registry), 1);
}

#[tokio::test]
async fn remote_write_4xx_is_not_retried() {
    let receiver = Receiver::new(&[400]);
    let url = serve(receiver.clone()).await;
    let registry = Registry::new();
    let exporter = Exporter::new(config(&url), &registry).unwrap();
    let _sender = exporter.spawn();

    exporter.submit(batch("t", vec![series(&[("__name__", "profiles_recorded_a")], &[(1, 1.0), (2, 2.0), (3, 3.0)])]));
    assert!(exporter.flush(FLUSH).await);
    assert_eq!(receiver.count(), 1);
    assert_eq!(failed(&registry), 3.0);
    assert_eq!(exported(&registry), 0.0);
    assert_eq!(lag_observations(&registry), 0);

    // The next batch is sent as usual.
    exporter.submit(batch("t", vec![series(&[("__name__", "profiles_recorded_a")], &[(4, 4.0)])]));
    assert!(exporter.flush(FLUSH).await);
    assert_eq!(receiver.count(), 2);
    assert_eq!(failed(&registry), 3.0);
    assert_eq!(exported(&registry), 1.0);
}

#[tokio::test]
async fn remote_write_gives_up_after_max_retries() {
    let receiver = Receiver::new(&[500; 10]);
    let url = serve(receiver.clone()).await;
    let registry = Registry::new();
    let exporter = Exporter::new(RemoteWriteConfig { max_retries: 2, ..config(&url) }, &registry).unwrap();
    let _sender = exporter.spawn();
    exporter.submit(batch("t", vec![series(&[("__name__", "profiles_recorded_a")], &[(1, 1.0), (2, 2.0)])]));
    assert!(exporter.flush(FLUSH).await);
    assert_eq!(receiver.count(), 3);
    assert_eq!(failed(&registry), 2.0);
    assert_eq!(exported(&registry), 0.0);

    // Network errors are retried likewise, then counted failed.
    let registry = Registry::new();
    let exporter =
        Exporter::new(RemoteWriteConfig { max_retries: 2, ..config(&unreachable().await) }, &registry).unwrap();
    let _sender = exporter.spawn();
    exporter.submit(batch("t", vec![series(&[("__name__", "profiles_recorded_a")], &[(1, 1.0), (2, 2.0), (3, 3.0)])]));
    assert!(exporter.flush(FLUSH).await);
    assert_eq!(failed(&registry), 3.0);
    assert_eq!(exported(&registry), 0.0);
    assert_eq!(pending(&registry), 0.0);
}

fn numbered(n: u32) -> Batch {
    let value = f64::from(n);
    batch("t", vec![series(&[("__name__", "profiles_recorded_a")], &[(1, value), (2, value), (3, value), (4, value)])])
}

#[tokio::test]
async fn remote_write_bounded_queue_drops_oldest() {
    // The receiver takes the first request and does not answer it.
    let receiver = Receiver::with_hold(&[], 0);
    let url = serve(receiver.clone()).await;
    let registry = Registry::new();
    let exporter = Exporter::new(RemoteWriteConfig { max_buffered_samples: 10, ..config(&url) }, &registry).unwrap();
    let _sender = exporter.spawn();

    exporter.submit(numbered(1));
    receiver.arrived.notified().await;
    assert_eq!(pending(&registry), 0.0);

    // 4 samples a batch, at most 10 queued: 2 batches stay.
    for n in 2..=6 {
        exporter.submit(numbered(n));
        assert!(pending(&registry) <= 10.0);
    }
    assert_eq!(dropped(&registry), 12.0);
    assert_eq!(pending(&registry), 8.0);

    receiver.hold.add_permits(Semaphore::MAX_PERMITS);
    assert!(exporter.flush(FLUSH).await);
    let values: Vec<f64> = receiver.bodies().iter().map(|b| b.timeseries[0].samples[0].value).collect();
    assert_eq!(values, vec![1.0, 5.0, 6.0]);
    assert_eq!(exported(&registry), 12.0);
    assert_eq!(dropped(&registry), 12.0);
    assert_eq!(pending(&registry), 0.0);

    // A batch larger than the bound on its own is dropped too.
    let samples: Vec<(i64, f64)> = (0..11).map(|t| (t, 1.0)).collect();
    exporter.submit(batch("t", vec![series(&[("__name__", "profiles_recorded_a")], &samples)]));
    assert_eq!(dropped(&registry), 23.0);
    assert_eq!(pending(&registry), 0.0);
}

#[tokio::test]
async fn remote_write_drop_abandons_unsent_samples() {
    let registry = Registry::new();
    let config = RemoteWriteConfig { max_retries: u32::MAX, ..config(&unreachable().await) };
    let exporter = Exporter::new(config, &registry).unwrap();
    let sender = exporter.spawn();
    exporter.submit(batch("t", vec![series(&[("__name__", "profiles_recorded_a")], &[(1, 1.0), (2, 2.0), (3, 3.0)])]));
    // Until the sender took the batch.
    while pending(&registry) != 0.0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    exporter.submit(batch("t", vec![series(&[("__name__", "profiles_recorded_a")], &[(4, 4.0), (5, 5.0)])]));
    assert_eq!(pending(&registry), 2.0);
    assert!(!exporter.flush(Duration::from_millis(20)).await);

    drop(exporter);
    sender.await.unwrap();
    assert_eq!(dropped(&registry), 5.0);
    assert_eq!(failed(&registry), 0.0);
    assert_eq!(exported(&registry), 0.0);
    assert_eq!(pending(&registry), 0.0);
}

#[tokio::test]
async fn remote_write_splits_large_batches() {
    let receiver = Receiver::new(&[]);
    let url = serve(receiver.clone()).await;
    let registry = Registry::new();
    let exporter = Exporter::new(RemoteWriteConfig { max_samples_per_request: 3, ..config(&url) }, &registry).unwrap();
    let _sender = exporter.spawn();

    exporter.submit(batch(
        "",
        vec![
            series(&[("__name__", "profiles_recorded_a")], &[(1, 1.0), (2, 2.0)]),
            series(&[("__name__", "profiles_recorded_b")], &[(5, 5.0), (1, 1.0), (4, 4.0), (2, 2.0), (3, 3.0)]),
        ],
    ));
    assert!(exporter.flush(FLUSH).await);

    let a = [("__name__", "profiles_recorded_a")];
    let b = [("__name__", "profiles_recorded_b")];
    assert_eq!(
        receiver.bodies(),
        vec![
            WriteRequest { timeseries: vec![ts(&a, &[(1, 1.0), (2, 2.0)])] },
            WriteRequest { timeseries: vec![ts(&b, &[(1, 1.0), (2, 2.0), (3, 3.0)])] },
            WriteRequest { timeseries: vec![ts(&b, &[(4, 4.0), (5, 5.0)])] },
        ]
    );
    // No tenant: no X-Scope-OrgID.
    assert!(receiver.requests.lock().unwrap().iter().all(|r| r.headers.get("x-scope-orgid").is_none()));
    assert_eq!(exported(&registry), 7.0);
    assert_eq!(lag_observations(&registry), 3);
}
