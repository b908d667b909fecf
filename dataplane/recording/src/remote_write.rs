//! Export of recorded samples to Prometheus by remote-write (protocol 1.0).
//!
//! Each request is an HTTP POST of a Snappy block-compressed (not framed)
//! protobuf `prometheus.WriteRequest`, with the headers
//! `Content-Encoding: snappy`, `Content-Type: application/x-protobuf`,
//! `X-Prometheus-Remote-Write-Version: 0.1.0`, `User-Agent: phlox/<version>`
//! and `X-Scope-OrgID: <tenant>` (omitted for an empty tenant).
//!
//! The [`Exporter`] keeps a bounded in-memory queue of [`Batch`]es (one
//! tenant each) and sends them in order, one request at a time:
//!
//! - a 2xx accepts the request (`phlox_recording_exported_samples_total`,
//!   and `phlox_recording_lag_seconds` observes how old the batch's oldest
//!   profile was when the receiver accepted it);
//! - a 5xx, a 429 or a network error (timeouts included) is retried with
//!   exponential backoff (`min_backoff` doubling up to `max_backoff`, a
//!   `Retry-After` in seconds lengthening the wait up to `max_backoff`) at
//!   most `max_retries` times, then the request's samples are counted in
//!   `phlox_recording_failed_samples_total`;
//! - any other status refuses the request for good: its samples are counted
//!   failed at once and the response body is logged;
//! - when the queue holds more than `max_buffered_samples`, the oldest
//!   queued batches are dropped (`phlox_recording_dropped_samples_total`).
//!
//! Sample counts are taken after duplicate timestamps were merged (see
//! [`encode`]). A batch with more than `max_samples_per_request` samples is
//! sent as several requests, in order; a series longer than that is split
//! by time.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Opts, Registry};
use prost::Message;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use tokio::sync::watch;

use self::wire::{Label, Sample, TimeSeries, WriteRequest};

/// Requests carry at most this many samples unless configured otherwise.
pub const DEFAULT_MAX_SAMPLES_PER_REQUEST: usize = 10_000;
/// The metric-name label every series must have.
pub const METRIC_NAME_LABEL: &str = "__name__";

const TENANT_HEADER: &str = "x-scope-orgid";
const VERSION_HEADER: &str = "x-prometheus-remote-write-version";
/// Headers the exporter sets itself; `RemoteWriteConfig::headers` may not.
const RESERVED_HEADERS: [&str; 6] =
    ["content-encoding", "content-type", "content-length", "user-agent", VERSION_HEADER, TENANT_HEADER];
/// How much of a refusing receiver's body is logged.
const LOGGED_BODY_BYTES: usize = 1024;

/// The remote-write 1.0 protobuf messages (`prometheus.WriteRequest` and
/// its parts; the metadata field is not used).
pub mod wire {
    /// `prometheus.WriteRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WriteRequest {
        #[prost(message, repeated, tag = "1")]
        pub timeseries: Vec<TimeSeries>,
    }

    /// `prometheus.TimeSeries`: labels sorted by name, samples by timestamp.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeries {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
    }

    /// `prometheus.Label`.
    #[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
    pub struct Label {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    /// `prometheus.Sample`; `timestamp` in Unix milliseconds.
    #[derive(Clone, Copy, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(double, tag = "1")]
        pub value: f64,
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
    }
}

/// Why the exporter could not be built, or a batch not encoded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid remote-write config: {0}")]
    Config(String),
    #[error("invalid remote-write header {name:?}: {reason}")]
    Header { name: String, reason: String },
    #[error("registering the remote-write metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("building the remote-write HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("series {series}: {reason}")]
    InvalidSeries { series: String, reason: &'static str },
    #[error("snappy compression: {0}")]
    Compress(#[from] snap::Error),
}

/// One series: its labels (any order; `__name__` required) and samples
/// (`(timestamp in Unix ms, value)`, any order).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    pub labels: Vec<(String, String)>,
    pub samples: Vec<(i64, f64)>,
}

/// Series of one tenant to send together.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// Sent as `X-Scope-OrgID`; empty: no such header.
    pub tenant: String,
    pub series: Vec<Series>,
    /// When the oldest profile the batch was computed from was taken (Unix
    /// ms): `phlox_recording_lag_seconds` measures from it, so it shows the
    /// batch's worst lag. 0 or less: unknown, not observed.
    pub oldest_profile_ms: i64,
}

impl Batch {
    /// The number of samples of all series.
    pub fn sample_count(&self) -> usize {
        self.series.iter().map(|s| s.samples.len()).sum()
    }
}

/// Where and how to send.
#[derive(Clone, PartialEq)]
pub struct RemoteWriteConfig {
    /// The receiver's endpoint, e.g. `http://prometheus:9090/api/v1/write`.
    pub url: String,
    /// Queued samples beyond this drop the oldest batches.
    pub max_buffered_samples: usize,
    /// Larger batches are split into several requests.
    pub max_samples_per_request: usize,
    /// Retries of a request after a retryable error (so at most
    /// `max_retries + 1` attempts).
    pub max_retries: u32,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Per attempt, connection included.
    pub timeout: Duration,
    /// Extra headers of every request (e.g. `Authorization`); never logged.
    pub headers: Vec<(String, String)>,
}

impl RemoteWriteConfig {
    /// The defaults for sending to `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_buffered_samples: 1_000_000,
            max_samples_per_request: DEFAULT_MAX_SAMPLES_PER_REQUEST,
            max_retries: 5,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
            headers: Vec::new(),
        }
    }
}

impl Default for RemoteWriteConfig {
    /// The defaults, without a URL (which [`Exporter::new`] requires).
    fn default() -> Self {
        Self::new("")
    }
}

impl fmt::Debug for RemoteWriteConfig {
    // Header values may be credentials: only their names are shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteWriteConfig")
            .field("url", &self.url)
            .field("max_buffered_samples", &self.max_buffered_samples)
            .field("max_samples_per_request", &self.max_samples_per_request)
            .field("max_retries", &self.max_retries)
            .field("min_backoff", &self.min_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("timeout", &self.timeout)
            .field("headers", &self.headers.iter().map(|(name, _)| name.as_str()).collect::<Vec<_>>())
            .finish()
    }
}

/// Encodes `batch` as one remote-write request body: Snappy block-format
/// compressed `WriteRequest` bytes, series in the batch's order.
///
/// Every series is normalised as the [`Exporter`] does: labels with an
/// empty value are removed (Prometheus treats them as absent), labels are
/// sorted by name, samples by timestamp, and samples of one series with the
/// same timestamp are merged into one whose value is their sum. Series
/// without samples are left out. A series without `__name__`, with an empty
/// label name or with a repeated label name is an error.
pub fn encode(batch: &Batch) -> Result<Vec<u8>, Error> {
    let mut timeseries = Vec::with_capacity(batch.series.len());
    for series in &batch.series {
        let series = prepare(series.clone())?;
        if !series.samples.is_empty() {
            timeseries.push(series);
        }
    }
    compress(&WriteRequest { timeseries })
}

fn compress(request: &WriteRequest) -> Result<Vec<u8>, Error> {
    Ok(snap::raw::Encoder::new().compress_vec(&request.encode_to_vec())?)
}

/// Converts and normalises one series (see [`encode`]).
fn prepare(series: Series) -> Result<TimeSeries, Error> {
    let labels = series
        .labels
        .into_iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(name, value)| Label { name, value })
        .collect();
    let samples = series.samples.into_iter().map(|(timestamp, value)| Sample { value, timestamp }).collect();
    normalize(TimeSeries { labels, samples })
}

fn normalize(mut series: TimeSeries) -> Result<TimeSeries, Error> {
    series.labels.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    let invalid = |reason| Error::InvalidSeries { series: describe(&series.labels), reason };
    if series.labels.first().is_some_and(|l| l.name.is_empty()) {
        return Err(invalid("a label name is empty"));
    }
    if series.labels.windows(2).any(|pair| pair[0].name == pair[1].name) {
        return Err(invalid("a label name is repeated"));
    }
    if series.labels.binary_search_by(|l| l.name.as_str().cmp(METRIC_NAME_LABEL)).is_err() {
        return Err(invalid("no __name__ label"));
    }
    if !series.samples.is_sorted_by_key(|s| s.timestamp) {
        // Stable, so equal timestamps are summed in the order given.
        series.samples.sort_by_key(|s| s.timestamp);
    }
    series.samples.dedup_by(|next, kept| {
        let same = next.timestamp == kept.timestamp;
        if same {
            kept.value += next.value;
        }
        same
    });
    Ok(series)
}

/// `{a="b", c="d"}`, for errors.
fn describe(labels: &[Label]) -> String {
    let pairs: Vec<String> = labels.iter().map(|l| format!("{}={:?}", l.name, l.value)).collect();
    format!("{{{}}}", pairs.join(", "))
}

/// Appends `series` to `out`, cut by time into parts of at most `limit`
/// samples.
fn split_into(mut series: TimeSeries, limit: usize, out: &mut Vec<TimeSeries>) {
    if series.samples.len() <= limit {
        out.push(series);
        return;
    }
    let rest: Vec<TimeSeries> = series.samples[limit..]
        .chunks(limit)
        .map(|part| TimeSeries { labels: series.labels.clone(), samples: part.to_vec() })
        .collect();
    series.samples.truncate(limit);
    series.samples.shrink_to_fit();
    out.push(series);
    out.extend(rest);
}

/// The exporter's metrics.
#[derive(Debug, Clone)]
struct Metrics {
    exported: IntCounter,
    failed: IntCounter,
    dropped: IntCounter,
    lag: Histogram,
    pending: IntGauge,
}

impl Metrics {
    fn register(registry: &Registry) -> Result<Self, Error> {
        let metrics = Self {
            exported: IntCounter::with_opts(Opts::new(
                "phlox_recording_exported_samples_total",
                "Recorded samples accepted by the remote-write receiver.",
            ))?,
            failed: IntCounter::with_opts(Opts::new(
                "phlox_recording_failed_samples_total",
                "Recorded samples not exported: invalid, refused by the receiver, or out of retries.",
            ))?,
            dropped: IntCounter::with_opts(Opts::new(
                "phlox_recording_dropped_samples_total",
                "Recorded samples dropped unsent because the remote-write queue was full or the exporter stopped.",
            ))?,
            lag: Histogram::with_opts(
                HistogramOpts::new(
                    "phlox_recording_lag_seconds",
                    "Time from the oldest profile of a batch to the remote-write receiver accepting its samples.",
                )
                .buckets(vec![1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0]),
            )?,
            pending: IntGauge::with_opts(Opts::new(
                "phlox_recording_pending_samples",
                "Recorded samples queued for remote-write, not counting the request being sent.",
            ))?,
        };
        registry.register(Box::new(metrics.exported.clone()))?;
        registry.register(Box::new(metrics.failed.clone()))?;
        registry.register(Box::new(metrics.dropped.clone()))?;
        registry.register(Box::new(metrics.lag.clone()))?;
        registry.register(Box::new(metrics.pending.clone()))?;
        Ok(metrics)
    }
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// A batch waiting to be sent, normalised and cut into parts that fit a
/// request.
#[derive(Debug)]
struct Queued {
    seq: u64,
    tenant: Option<HeaderValue>,
    series: Vec<TimeSeries>,
    samples: usize,
    oldest_profile_ms: i64,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Queued>,
    queued_samples: usize,
    /// The sequence number of the next batch submitted.
    next_seq: u64,
    /// The batch being sent.
    in_flight: Option<u64>,
    /// The [`Exporter`] is gone: the sender stops.
    closed: bool,
}

impl State {
    /// Whether every batch numbered below `seq` is settled (exported,
    /// failed or dropped).
    fn settled_before(&self, seq: u64) -> bool {
        self.queue.front().is_none_or(|b| b.seq >= seq) && self.in_flight.is_none_or(|s| s >= seq)
    }
}

struct Inner {
    url: reqwest::Url,
    max_buffered_samples: usize,
    max_samples_per_request: usize,
    max_retries: u32,
    min_backoff: Duration,
    max_backoff: Duration,
    client: reqwest::Client,
    /// The protocol headers and the configured ones.
    headers: HeaderMap,
    metrics: Metrics,
    state: Mutex<State>,
    /// Bumped on every change of `state` the sender or `flush` waits for.
    changed: watch::Sender<()>,
    /// Held by the running sender: one request at a time, in order.
    sender: tokio::sync::Mutex<()>,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inner").field("url", &self.url.as_str()).finish_non_exhaustive()
    }
}

/// Sends recorded samples to a remote-write receiver; see the module
/// documentation. Dropping it drops the queued batches (counted dropped)
/// and stops the sender after its current attempt: [`Exporter::flush`]
/// first to shut down gracefully.
#[derive(Debug)]
pub struct Exporter {
    inner: Arc<Inner>,
}

impl Exporter {
    /// Checks `config` and registers the metrics in `registry` (once per
    /// registry: a second exporter on the same registry is an error).
    pub fn new(config: RemoteWriteConfig, registry: &Registry) -> Result<Self, Error> {
        let url = reqwest::Url::parse(&config.url).map_err(|e| Error::Config(format!("url {:?}: {e}", config.url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::Config(format!("url {:?}: the scheme must be http or https", config.url)));
        }
        if config.max_buffered_samples == 0 {
            return Err(Error::Config("max_buffered_samples must be positive".into()));
        }
        if config.max_samples_per_request == 0 {
            return Err(Error::Config("max_samples_per_request must be positive".into()));
        }
        if config.min_backoff > config.max_backoff {
            return Err(Error::Config("min_backoff must not exceed max_backoff".into()));
        }
        if config.timeout.is_zero() {
            return Err(Error::Config("timeout must be positive".into()));
        }
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("snappy"));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-protobuf"));
        headers.insert(VERSION_HEADER, HeaderValue::from_static("0.1.0"));
        for (name, value) in &config.headers {
            let header_error = |reason: &str| Error::Header { name: name.clone(), reason: reason.to_owned() };
            let parsed = HeaderName::from_bytes(name.as_bytes()).map_err(|_| header_error("not a header name"))?;
            if RESERVED_HEADERS.contains(&parsed.as_str()) {
                return Err(header_error("set by the exporter"));
            }
            let mut value = HeaderValue::from_str(value).map_err(|_| header_error("invalid value"))?;
            value.set_sensitive(true);
            headers.append(parsed, value);
        }
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .user_agent(concat!("phlox/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(Error::Client)?;
        let metrics = Metrics::register(registry)?;
        let (changed, _) = watch::channel(());
        Ok(Self {
            inner: Arc::new(Inner {
                url,
                max_buffered_samples: config.max_buffered_samples,
                max_samples_per_request: config.max_samples_per_request,
                max_retries: config.max_retries,
                min_backoff: config.min_backoff,
                max_backoff: config.max_backoff,
                client,
                headers,
                metrics,
                state: Mutex::new(State::default()),
                changed,
                sender: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// Queues `batch` (normalised as by [`encode`]); never blocks on the
    /// network. Invalid series are counted failed and logged. When the
    /// queue then holds more than `max_buffered_samples`, the oldest queued
    /// batches are dropped until it does not (the new batch too if it alone
    /// is larger); the batch being sent is not in the queue.
    pub fn submit(&self, batch: Batch) {
        let inner = &self.inner;
        let tenant = if batch.tenant.is_empty() {
            None
        } else {
            match HeaderValue::from_str(&batch.tenant) {
                Ok(value) => Some(value),
                Err(_) => {
                    let samples = batch.sample_count();
                    inner.metrics.failed.inc_by(count(samples));
                    tracing::warn!(tenant = ?batch.tenant, samples, "recording batch not exported: invalid tenant");
                    return;
                }
            }
        };
        let mut series = Vec::with_capacity(batch.series.len());
        let mut samples = 0;
        let mut invalid = 0;
        let mut first_error = None;
        for s in batch.series {
            let raw = s.samples.len();
            match prepare(s) {
                Ok(s) => {
                    samples += s.samples.len();
                    if !s.samples.is_empty() {
                        split_into(s, inner.max_samples_per_request, &mut series);
                    }
                }
                Err(e) => {
                    invalid += raw;
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(error) = first_error {
            inner.metrics.failed.inc_by(count(invalid));
            tracing::warn!(tenant = %batch.tenant, samples = invalid, %error, "invalid recorded series not exported");
        }
        if samples == 0 {
            return;
        }
        let (dropped_batches, dropped_samples) = {
            let mut state = inner.lock();
            let seq = state.next_seq;
            state.next_seq += 1;
            state.queue.push_back(Queued { seq, tenant, series, samples, oldest_profile_ms: batch.oldest_profile_ms });
            state.queued_samples += samples;
            let (mut batches, mut dropped) = (0, 0);
            while state.queued_samples > inner.max_buffered_samples {
                let Some(oldest) = state.queue.pop_front() else { break };
                state.queued_samples -= oldest.samples;
                batches += 1;
                dropped += oldest.samples;
            }
            inner.set_pending(&state);
            (batches, dropped)
        };
        inner.changed.send_replace(());
        if dropped_samples > 0 {
            inner.metrics.dropped.inc_by(count(dropped_samples));
            tracing::warn!(
                batches = dropped_batches,
                samples = dropped_samples,
                max_buffered_samples = inner.max_buffered_samples,
                "remote-write queue full: oldest recorded samples dropped"
            );
        }
    }

    /// Spawns the sender, which runs until the exporter is dropped. A
    /// second sender of the same exporter waits for the first to end, so
    /// requests stay one at a time and in order.
    pub fn spawn(&self) -> tokio::task::JoinHandle<()> {
        let inner = Arc::clone(&self.inner);
        tokio::spawn(inner.run())
    }

    /// Waits until every batch submitted before the call is settled
    /// (exported, failed or dropped) or `timeout` passed; returns whether
    /// they all are. Only a spawned sender sends them.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let mut changes = self.inner.changed.subscribe();
        let target = self.inner.lock().next_seq;
        let settled = async {
            loop {
                changes.borrow_and_update();
                if self.inner.lock().settled_before(target) {
                    return;
                }
                if changes.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::time::timeout(timeout, settled).await.is_ok()
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let inner = &self.inner;
        let dropped = {
            let mut state = inner.lock();
            state.closed = true;
            let dropped = state.queued_samples;
            state.queue.clear();
            state.queued_samples = 0;
            inner.set_pending(&state);
            dropped
        };
        inner.changed.send_replace(());
        if dropped > 0 {
            inner.metrics.dropped.inc_by(count(dropped));
            tracing::warn!(samples = dropped, "remote-write exporter stopped: queued recorded samples dropped");
        }
    }
}

/// What one request came to, after its retries.
enum Outcome {
    Accepted,
    Failed,
    /// The exporter was dropped while waiting to retry.
    Abandoned,
}

/// What one attempt came to.
enum Attempt {
    Accepted,
    Refused,
    Retry { reason: String, retry_after: Option<Duration> },
}

/// The batch being sent: clears `in_flight` when done, and counts the
/// samples not sent yet as dropped if the sender stops (or is aborted)
/// before sending them.
struct InFlight<'a> {
    inner: &'a Inner,
    remaining: usize,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.remaining > 0 {
            self.inner.metrics.dropped.inc_by(count(self.remaining));
            tracing::warn!(samples = self.remaining, "remote-write sender stopped: recorded samples dropped");
        }
        self.inner.lock().in_flight = None;
        self.inner.changed.send_replace(());
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_pending(&self, state: &State) {
        self.metrics.pending.set(i64::try_from(state.queued_samples).unwrap_or(i64::MAX));
    }

    async fn run(self: Arc<Self>) {
        let _sender = self.sender.lock().await;
        let mut changes = self.changed.subscribe();
        loop {
            changes.borrow_and_update();
            let next = {
                let mut state = self.lock();
                if state.closed {
                    return;
                }
                let next = state.queue.pop_front();
                if let Some(batch) = &next {
                    state.queued_samples -= batch.samples;
                    state.in_flight = Some(batch.seq);
                    self.set_pending(&state);
                }
                next
            };
            match next {
                Some(batch) => self.send_batch(batch).await,
                None => {
                    if changes.changed().await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Sends `batch` in requests of at most `max_samples_per_request`
    /// samples (unless a single part is larger, which `split_into` avoids).
    async fn send_batch(&self, batch: Queued) {
        let mut guard = InFlight { inner: self, remaining: batch.samples };
        let mut series = batch.series.into_iter().peekable();
        while series.peek().is_some() {
            let mut chunk = Vec::new();
            let mut samples = 0;
            while let Some(s) =
                series.next_if(|s| samples == 0 || samples + s.samples.len() <= self.max_samples_per_request)
            {
                samples += s.samples.len();
                chunk.push(s);
            }
            let outcome = match compress(&WriteRequest { timeseries: chunk }) {
                Ok(body) => self.send_with_retries(batch.tenant.as_ref(), Bytes::from(body)).await,
                Err(error) => {
                    tracing::error!(%error, samples, "recorded samples not exported: encoding failed");
                    Outcome::Failed
                }
            };
            match outcome {
                Outcome::Accepted => {
                    self.metrics.exported.inc_by(count(samples));
                    if batch.oldest_profile_ms > 0 {
                        let lag_ms = now_ms().saturating_sub(batch.oldest_profile_ms).max(0);
                        self.metrics.lag.observe(lag_ms as f64 / 1000.0);
                    }
                }
                Outcome::Failed => self.metrics.failed.inc_by(count(samples)),
                Outcome::Abandoned => return,
            }
            guard.remaining -= samples;
        }
    }

    async fn send_with_retries(&self, tenant: Option<&HeaderValue>, body: Bytes) -> Outcome {
        let mut backoff = self.min_backoff;
        let mut retries = 0;
        loop {
            let wait = match self.attempt(tenant, body.clone()).await {
                Attempt::Accepted => return Outcome::Accepted,
                Attempt::Refused => return Outcome::Failed,
                Attempt::Retry { reason, retry_after } => {
                    if retries >= self.max_retries {
                        tracing::warn!(
                            tenant = ?tenant,
                            attempts = retries + 1,
                            error = %reason,
                            "recorded samples not exported: out of retries"
                        );
                        return Outcome::Failed;
                    }
                    let wait = retry_after.map_or(backoff, |after| after.max(backoff)).min(self.max_backoff);
                    tracing::debug!(tenant = ?tenant, error = %reason, ?wait, "remote-write request will be retried");
                    wait
                }
            };
            if self.closed_during(wait).await {
                return Outcome::Abandoned;
            }
            retries += 1;
            backoff = backoff.saturating_mul(2).min(self.max_backoff);
        }
    }

    /// Sleeps `wait`, or less if the exporter is dropped: returns whether
    /// it was.
    async fn closed_during(&self, wait: Duration) -> bool {
        let mut changes = self.changed.subscribe();
        let sleep = tokio::time::sleep(wait);
        tokio::pin!(sleep);
        loop {
            if self.lock().closed {
                return true;
            }
            tokio::select! {
                () = &mut sleep => return false,
                changed = changes.changed() => {
                    if changed.is_err() {
                        return false;
                    }
                }
            }
        }
    }

    async fn attempt(&self, tenant: Option<&HeaderValue>, body: Bytes) -> Attempt {
        let mut request = self.client.post(self.url.clone()).headers(self.headers.clone()).body(body);
        if let Some(tenant) = tenant {
            request = request.header(TENANT_HEADER, tenant.clone());
        }
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(error) => return Attempt::Retry { reason: error_chain(&error), retry_after: None },
        };
        let status = response.status();
        if status.is_success() {
            return Attempt::Accepted;
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = read_prefix(&mut response, LOGGED_BODY_BYTES).await;
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            Attempt::Retry { reason: format!("{status}: {body}"), retry_after }
        } else {
            tracing::warn!(
                tenant = ?tenant,
                status = status.as_u16(),
                body = %body,
                "remote-write receiver refused recorded samples; they are dropped"
            );
            Attempt::Refused
        }
    }
}

/// At most `limit` bytes of the body, as text.
async fn read_prefix(response: &mut reqwest::Response, limit: usize) -> String {
    let mut body = Vec::new();
    while body.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk[..chunk.len().min(limit - body.len())]),
            Ok(None) | Err(_) => break,
        }
    }
    String::from_utf8_lossy(&body).trim().to_owned()
}

/// `error` and its sources, `: `-separated.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> Series {
        Series {
            labels: labels.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect(),
            samples: samples.to_vec(),
        }
    }

    fn decode(body: &[u8]) -> WriteRequest {
        let raw = snap::raw::Decoder::new().decompress_vec(body).unwrap();
        WriteRequest::decode(raw.as_slice()).unwrap()
    }

    fn label(name: &str, value: &str) -> Label {
        Label { name: name.to_owned(), value: value.to_owned() }
    }

    #[test]
    fn remote_write_encode_sorts_and_sums_duplicates() {
        let batch = Batch {
            tenant: "t".into(),
            series: vec![
                series(
                    &[("service_name", "api"), ("__name__", "profiles_recorded_cpu"), ("empty", "")],
                    &[(3000, 1.0), (1000, 2.0), (3000, 0.5), (2000, 4.0), (1000, 0.25)],
                ),
                series(&[("__name__", "profiles_recorded_none")], &[]),
                series(&[("__name__", "profiles_recorded_mem")], &[(5, 7.0)]),
            ],
            oldest_profile_ms: 0,
        };
        let request = decode(&encode(&batch).unwrap());
        assert_eq!(
            request,
            WriteRequest {
                timeseries: vec![
                    TimeSeries {
                        labels: vec![label("__name__", "profiles_recorded_cpu"), label("service_name", "api")],
                        samples: vec![
                            Sample { value: 2.25, timestamp: 1000 },
                            Sample { value: 4.0, timestamp: 2000 },
                            Sample { value: 1.5, timestamp: 3000 },
                        ],
                    },
                    TimeSeries {
                        labels: vec![label("__name__", "profiles_recorded_mem")],
                        samples: vec![Sample { value: 7.0, timestamp: 5 }],
                    },
                ],
            }
        );
    }

    #[test]
    fn remote_write_encode_refuses_invalid_series() {
        let encode_one = |s| encode(&Batch { tenant: String::new(), series: vec![s], oldest_profile_ms: 0 });
        let err = encode_one(series(&[("job", "x")], &[(1, 1.0)])).unwrap_err();
        assert_eq!(err.to_string(), "series {job=\"x\"}: no __name__ label");
        let err = encode_one(series(&[("__name__", "m"), ("a", "1"), ("a", "2")], &[(1, 1.0)])).unwrap_err();
        assert_eq!(err.to_string(), "series {__name__=\"m\", a=\"1\", a=\"2\"}: a label name is repeated");
        let err = encode_one(series(&[("__name__", "m"), ("", "v")], &[(1, 1.0)])).unwrap_err();
        assert_eq!(err.to_string(), "series {=\"v\", __name__=\"m\"}: a label name is empty");
        // An empty value removes the label, so it is no duplicate.
        assert!(encode_one(series(&[("__name__", "m"), ("a", "1"), ("a", "")], &[(1, 1.0)])).is_ok());
    }

    #[test]
    fn remote_write_split_cuts_long_series_by_time() {
        let long = normalize(TimeSeries {
            labels: vec![label("__name__", "m")],
            samples: (0..7).map(|t| Sample { value: t as f64, timestamp: t }).collect(),
        })
        .unwrap();
        let mut out = Vec::new();
        split_into(long, 3, &mut out);
        let parts: Vec<Vec<i64>> = out.iter().map(|s| s.samples.iter().map(|s| s.timestamp).collect()).collect();
        assert_eq!(parts, vec![vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
        assert!(out.iter().all(|s| s.labels == vec![label("__name__", "m")]));
    }

    #[test]
    fn remote_write_config_checks() {
        let registry = Registry::new();
        let new = |config: RemoteWriteConfig| Exporter::new(config, &registry).map(drop);
        assert!(matches!(new(RemoteWriteConfig::default()), Err(Error::Config(_))));
        assert!(matches!(new(RemoteWriteConfig::new("ftp://x/")), Err(Error::Config(_))));
        let reserved = RemoteWriteConfig {
            headers: vec![("X-Scope-OrgID".into(), "t".into())],
            ..RemoteWriteConfig::new("http://127.0.0.1:1/api/v1/write")
        };
        assert!(matches!(new(reserved), Err(Error::Header { .. })));
        let secret = RemoteWriteConfig {
            headers: vec![("Authorization".into(), "Bearer secret".into())],
            ..RemoteWriteConfig::new("http://127.0.0.1:1/api/v1/write")
        };
        assert!(!format!("{secret:?}").contains("secret"));
        new(secret.clone()).unwrap();
        // The metrics are registered once per registry.
        assert!(matches!(new(secret), Err(Error::Metrics(_))));
    }
}
