use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use phlox_model::{Labels, ProfileId, label_names as ln};
use phlox_pprof::{DecodeError, Profile, SeriesProfile, maybe_gunzip, split};
use phlox_proto::push::v1::PushRequest;
use phlox_proto::types::v1 as types;
use tracing::debug;

use crate::limits::{LimitsStore, RateLimiter};
use crate::placement::{AdaptiveShards, ShardChange, shard_for};
use crate::{CpuPool, DistributorMetrics, Limits, PushError, ShardWriter, SinkError};

/// A profile built in this process (OTLP), with its series labels and
/// profile id: see [`Distributor::prepare_built`].
#[derive(Debug, Clone)]
pub struct BuiltProfile {
    pub labels: Vec<types::LabelPair>,
    pub profile: phlox_proto::google::v1::Profile,
    pub id: String,
}

/// The split profiles of one request so far.
#[derive(Default)]
struct Prepared {
    out: Vec<SeriesProfile>,
    received: usize,
    /// Heap bytes of the decoded profiles (`max_request_memory`).
    memory: usize,
}

impl Prepared {
    fn finish(self) -> Result<Vec<SeriesProfile>, PushError> {
        if self.received == 0 {
            return Err(PushError::InvalidArgument("no profiles received".into()));
        }
        Ok(self.out)
    }
}

/// Default shards a dataset spreads over: at least 2, up to 32, one per
/// 512 KiB/s of uncompressed profiles.
const DEFAULT_SHARDS_PER_DATASET: u32 = 2;
const DEFAULT_MAX_SHARDS_PER_DATASET: u32 = 32;
const DEFAULT_SHARD_UNIT_BYTES_PER_SECOND: f64 = 512.0 * 1024.0;

/// The distributor; cheap to share behind an `Arc`.
pub struct Distributor {
    writer: Arc<dyn ShardWriter>,
    limits: Arc<LimitsStore>,
    rate: RateLimiter,
    shards_per_dataset: AdaptiveShards,
    pub(crate) metrics: DistributorMetrics,
    cpu: CpuPool,
}

impl std::fmt::Debug for Distributor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Distributor").finish_non_exhaustive()
    }
}

pub(crate) fn now_nanos() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

impl Distributor {
    pub fn new(writer: Arc<dyn ShardWriter>, limits: Arc<LimitsStore>, metrics: DistributorMetrics) -> Self {
        let shards_per_dataset = AdaptiveShards::new(
            DEFAULT_SHARDS_PER_DATASET,
            DEFAULT_MAX_SHARDS_PER_DATASET,
            DEFAULT_SHARD_UNIT_BYTES_PER_SECOND,
        );
        let threads = CpuPool::default_threads();
        let cpu = CpuPool::new(threads, MAX_WAITING_PER_CPU * threads, metrics.clone());
        Self { writer, limits, rate: RateLimiter::default(), shards_per_dataset, metrics, cpu }
    }

    /// The pool CPU-heavy ingest work runs on (see [`CpuPool`]).
    pub fn cpu(&self) -> &CpuPool {
        &self.cpu
    }

    /// The limits of a tenant right now (they can be reloaded).
    pub fn limits(&self, tenant: &str) -> Limits {
        self.limits.get(tenant)
    }

    /// Applies the tenant's ingestion rate limit to `bytes` (uncompressed
    /// profiles plus labels).
    pub(crate) fn rate_limit(&self, tenant: &str, l: &Limits, bytes: usize) -> Result<(), PushError> {
        let (rate, burst) = (l.ingestion_rate_mb * 1e6, l.ingestion_burst_size_mb * 1e6);
        if self.rate.allow(tenant, bytes, rate, burst, std::time::Instant::now()) {
            return Ok(());
        }
        Err(PushError::ResourceExhausted(format!(
            "push rate limit ({} MB/s, burst {} MB, ingestion_rate_mb) exceeded while adding {bytes} bytes",
            l.ingestion_rate_mb, l.ingestion_burst_size_mb
        )))
    }

    /// Refuses, before any decompression or decoding, a request of
    /// `compressed_bytes` from a tenant whose rate-limit bucket does not even
    /// hold that much: its decoded size (what the limit counts) is at least
    /// as large, so it would be refused anyway. Takes nothing from the
    /// bucket (the exact charge is made on the decoded bytes).
    pub fn admit_request(&self, tenant: &str, compressed_bytes: usize) -> Result<(), PushError> {
        let l = self.limits(tenant);
        let (rate, burst) = (l.ingestion_rate_mb * 1e6, l.ingestion_burst_size_mb * 1e6);
        if self.rate.has(tenant, compressed_bytes, rate, burst, std::time::Instant::now()) {
            return Ok(());
        }
        self.discarded("rate_limited", 1, compressed_bytes as u64);
        Err(PushError::ResourceExhausted(format!(
            "push rate limit ({} MB/s, burst {} MB, ingestion_rate_mb) exceeded: the request alone is {compressed_bytes} bytes",
            l.ingestion_rate_mb, l.ingestion_burst_size_mb
        )))
    }

    /// How many shards one (tenant, service) dataset spreads over: `min`
    /// to `max`, one per `unit_bytes_per_second` of its ingest rate, and
    /// never more than the writers ([`ShardWriter::writers`]).
    pub fn with_shards_per_dataset(mut self, min: u32, max: u32, unit_bytes_per_second: f64) -> Self {
        self.shards_per_dataset = AdaptiveShards::new(min, max, unit_bytes_per_second);
        self
    }

    /// Handles a `push.v1.PushRequest`: resolves once every profile of it is
    /// durable and indexed. On error nothing is acknowledged (profiles of
    /// other shards may already be stored; a retry is deduplicated).
    pub async fn push(&self, tenant: &str, request: PushRequest) -> Result<usize, PushError> {
        let profiles = self.prepare_push(tenant, request)?;
        self.push_prepared(tenant, profiles).await
    }

    /// The CPU part of a push (decode, validate, split), counting a refusal
    /// in the discard metrics. Run it on [`Distributor::cpu`].
    pub fn prepare_push(&self, tenant: &str, request: PushRequest) -> Result<Vec<SeriesProfile>, PushError> {
        let profiles: u64 = request.series.iter().map(|s| s.samples.len() as u64).sum();
        let bytes: u64 = request.series.iter().flat_map(|s| s.samples.iter().map(|x| x.raw_profile.len() as u64)).sum();
        let result = self.prepare(tenant, request, now_nanos());
        if let Err(e) = &result {
            self.discarded(reason(e), profiles, bytes);
        }
        result
    }

    /// The rest of a push: the rate limit on the decoded bytes, then the
    /// writes; resolves once every profile is durable and indexed.
    pub async fn push_prepared(&self, tenant: &str, profiles: Vec<SeriesProfile>) -> Result<usize, PushError> {
        let sources: std::collections::HashSet<usize> =
            profiles.iter().map(|p| Arc::as_ptr(&p.source) as usize).collect();
        let bytes = ingested_bytes(&profiles);
        let result = self.write_limited(tenant, profiles).await;
        if let Err(e) = &result {
            self.discarded(reason(e), sources.len() as u64, bytes as u64);
        }
        result
    }

    /// Counts a refused request in the discard metrics.
    pub(crate) fn discarded(&self, reason: &str, profiles: u64, bytes: u64) {
        self.metrics.discarded_profiles.with_label_values(&[reason]).inc_by(profiles);
        self.metrics.discarded_bytes.with_label_values(&[reason]).inc_by(bytes);
    }

    async fn write_limited(&self, tenant: &str, profiles: Vec<SeriesProfile>) -> Result<usize, PushError> {
        let l = self.limits(tenant);
        self.rate_limit(tenant, &l, ingested_bytes(&profiles))?;
        let count = profiles.len();
        self.write(tenant, profiles).await?;
        Ok(count)
    }

    /// Sends per-series profiles to their shards and waits for every ack.
    pub async fn write(&self, tenant: &str, profiles: Vec<SeriesProfile>) -> Result<(), PushError> {
        let shards = self.writer.shards();
        // Per dataset (service): its bytes (each source profile once) and so its shard count.
        let mut by_service: BTreeMap<&str, (u64, Vec<usize>)> = BTreeMap::new();
        for p in &profiles {
            let (bytes, seen) = by_service.entry(p.service_name()).or_default();
            // The address identifies the shared source (not held across an await).
            let source = Arc::as_ptr(&p.source) as usize;
            if !seen.contains(&source) {
                seen.push(source);
                *bytes += p.source.decoded_len as u64;
            }
        }
        let now = std::time::Instant::now();
        let per_dataset: BTreeMap<String, u32> = by_service
            .into_iter()
            .map(|(service, (bytes, _))| {
                let (k, change) = self.shards_per_dataset.observe(tenant, service, bytes, now);
                if let Some(change) = change {
                    let direction = if change == ShardChange::Grew { "up" } else { "down" };
                    self.metrics.dataset_shard_changes.with_label_values(&[direction]).inc();
                    debug!(tenant, service, shards = k, direction, "dataset shard count changed");
                }
                (service.to_owned(), k)
            })
            .collect();
        let mut by_shard: BTreeMap<u32, Vec<SeriesProfile>> = BTreeMap::new();
        // At most one shard per writer: shards are dealt round-robin, so k
        // consecutive shards are on k writers while k <= writers.
        let writers = self.writer.writers().max(1);
        for p in profiles {
            let k = per_dataset.get(p.service_name()).copied().unwrap_or(1).min(writers);
            let shard = shard_for(tenant, p.service_name(), p.fingerprint, shards, k);
            by_shard.entry(shard).or_default().push(p);
        }
        self.metrics.series_profiles.inc_by(by_shard.values().map(|v| v.len() as u64).sum());
        let results = futures::future::join_all(
            by_shard.into_iter().map(|(shard, profiles)| self.writer.push(tenant, shard, profiles)),
        )
        .await;
        for r in results {
            match r {
                Ok(()) => {}
                Err(SinkError::Overloaded(m)) => return Err(PushError::ResourceExhausted(m)),
                Err(SinkError::Unavailable(m)) => return Err(PushError::Unavailable(m)),
            }
        }
        Ok(())
    }

    /// Validates, decodes and splits a push (no I/O).
    pub fn prepare(&self, tenant: &str, request: PushRequest, now_nanos: i64) -> Result<Vec<SeriesProfile>, PushError> {
        let l = self.limits(tenant);
        let mut prepared = Prepared::default();
        for series in request.series {
            let labels = self.series_labels(&l, &series.labels)?;
            for sample in series.samples {
                self.metrics.received_profiles.inc();
                self.metrics.received_bytes.with_label_values(&["compressed"]).inc_by(sample.raw_profile.len() as u64);
                let profile = self.decode(&l, &sample.raw_profile, now_nanos)?;
                self.take(&l, &mut prepared, &labels, &sample.id, profile, now_nanos)?;
            }
        }
        prepared.finish()
    }

    /// [`prepare_push`](Self::prepare_push) for profiles built in this
    /// process as `google.v1.Profile` messages (OTLP): each goes straight
    /// into the columnar profile, no pprof encoding and decoding in between;
    /// the same checks and limits apply (sizes: the pprof it would encode to).
    pub fn prepare_built(&self, tenant: &str, profiles: Vec<BuiltProfile>) -> Result<Vec<SeriesProfile>, PushError> {
        let now_nanos = now_nanos();
        let l = self.limits(tenant);
        let count = profiles.len() as u64;
        let result = (|| {
            let mut prepared = Prepared::default();
            for built in profiles {
                let labels = self.series_labels(&l, &built.labels)?;
                self.metrics.received_profiles.inc();
                let bad = |e: DecodeError| PushError::InvalidArgument(e.to_string());
                let mut p = Profile::from_proto(&built.profile).map_err(bad)?;
                self.metrics.received_bytes.with_label_values(&["uncompressed"]).inc_by(p.decoded_len as u64);
                if p.decoded_len > l.max_profile_size_bytes {
                    return Err(bad(DecodeError::PayloadTooLarge { limit: l.max_profile_size_bytes }));
                }
                p.validate().map_err(bad)?;
                self.admit(&l, &mut p, now_nanos)?;
                self.take(&l, &mut prepared, &labels, &built.id, p, now_nanos)?;
            }
            prepared.finish()
        })();
        if let Err(e) = &result {
            self.discarded(reason(e), count, 0);
        }
        result
    }

    /// Counts one decoded profile of a request against its memory limit and
    /// splits it into series.
    fn take(
        &self,
        l: &Limits,
        prepared: &mut Prepared,
        labels: &Labels,
        id: &str,
        profile: Profile,
        now_nanos: i64,
    ) -> Result<(), PushError> {
        prepared.received += 1;
        prepared.memory = prepared.memory.saturating_add(profile.heap_bytes());
        if prepared.memory > l.max_request_memory {
            return Err(PushError::InvalidArgument(format!(
                "the request's profiles take more than {} bytes once decoded (max_request_memory): send fewer profiles per request",
                l.max_request_memory
            )));
        }
        let parts = split(labels, Arc::new(profile), profile_id(id), now_nanos)
            .map_err(|e| PushError::InvalidArgument(e.to_string()))?;
        debug!(series = parts.len(), "profile split");
        prepared.out.extend(parts);
        Ok(())
    }

    fn decode(&self, l: &Limits, raw: &[u8], now_nanos: i64) -> Result<Profile, PushError> {
        let bad = |e: DecodeError| PushError::InvalidArgument(e.to_string());
        if raw.is_empty() {
            return Err(PushError::InvalidArgument("malformed profile: empty raw_profile".into()));
        }
        let plain = maybe_gunzip(raw, l.max_profile_size_bytes).map_err(bad)?;
        self.metrics.received_bytes.with_label_values(&["uncompressed"]).inc_by(plain.len() as u64);
        let mut p = Profile::decode(&plain).map_err(bad)?;
        p.validate().map_err(bad)?;
        self.admit(l, &mut p, now_nanos)?;
        Ok(p)
    }

    /// The per-profile limits: symbol length (long strings are cut, as
    /// Pyroscope does), samples, labels per sample, age.
    pub(crate) fn admit(&self, l: &Limits, p: &mut Profile, now_nanos: i64) -> Result<(), PushError> {
        if l.max_profile_symbol_value_length > 0 {
            p.truncate_strings(l.max_profile_symbol_value_length);
        }
        // Profiles built from text formats are not validated as pprof is.
        p.validate_totals().map_err(|e| PushError::InvalidArgument(e.to_string()))?;
        if p.sample_count() > l.max_profile_stacktrace_samples {
            return Err(PushError::InvalidArgument(format!(
                "profile has {} samples, exceeding the limit of {} (max_profile_stacktrace_samples)",
                p.sample_count(),
                l.max_profile_stacktrace_samples
            )));
        }
        if let Some(i) =
            (0..p.sample_count()).find(|&i| p.sample_labels(i).len() > l.max_profile_stacktrace_sample_labels)
        {
            return Err(PushError::InvalidArgument(format!(
                "profile sample has {} labels, exceeding the limit of {} (max_profile_stacktrace_sample_labels)",
                p.sample_labels(i).len(),
                l.max_profile_stacktrace_sample_labels
            )));
        }
        if p.time_nanos > 0 {
            let older = l.reject_older_than.as_nanos() as i64;
            let newer = l.reject_newer_than.as_nanos() as i64;
            if p.time_nanos < now_nanos.saturating_sub(older) {
                return Err(PushError::InvalidArgument(format!(
                    "profile is older than {}s (reject_older_than)",
                    l.reject_older_than.as_secs()
                )));
            }
            if p.time_nanos > now_nanos.saturating_add(newer) {
                return Err(PushError::InvalidArgument(format!(
                    "profile is more than {}s in the future (reject_newer_than)",
                    l.reject_newer_than.as_secs()
                )));
            }
        }
        Ok(())
    }

    /// Validates series labels and applies the default relabeling.
    pub fn series_labels(&self, l: &Limits, pairs: &[types::LabelPair]) -> Result<Labels, PushError> {
        let bad = |m: String| Err(PushError::InvalidArgument(m));
        if pairs.is_empty() {
            return bad("profile series has no labels".into());
        }
        if pairs.len() > l.max_label_names_per_series {
            return bad(format!(
                "profile series has {} label names, exceeding the limit of {} (max_label_names_per_series)",
                pairs.len(),
                l.max_label_names_per_series
            ));
        }
        let mut seen = std::collections::HashSet::with_capacity(pairs.len());
        for p in pairs {
            if p.name.is_empty() {
                return bad("profile series has a label with an empty name".into());
            }
            if p.name.chars().count() > l.max_label_name_length {
                return bad(format!(
                    "label name {:.64}... is longer than {} characters (max_label_name_length)",
                    p.name, l.max_label_name_length
                ));
            }
            if p.value.chars().count() > l.max_label_value_length {
                return bad(format!(
                    "value of label {:?} is longer than {} characters (max_label_value_length)",
                    p.name, l.max_label_value_length
                ));
            }
            if !seen.insert(p.name.as_str()) {
                return bad(format!("duplicate label name {:?}", p.name));
            }
        }
        let mut labels = Labels::from_pairs(pairs.iter().map(|p| (p.name.as_str(), p.value.as_str())));
        limit_sessions(&mut labels, l.max_sessions_per_series);
        match labels.get(ln::METRIC_NAME) {
            None | Some("") => return bad("invalid metric name: series has no __name__ label".into()),
            Some(name) => {
                if let Some(rest) = name.strip_prefix("godeltaprof_") {
                    let rest = rest.to_owned();
                    labels.set(ln::METRIC_NAME, &rest);
                    labels.set(ln::DELTA, "false");
                }
            }
        }
        Ok(labels)
    }
}

/// Pyroscope's `max_sessions_per_series`: with 0 the `__session_id__` label
/// is dropped; otherwise the id (16 hex digits, a little-endian u64) is
/// folded to one of that many values per series (`id % n`, the id read as
/// signed, as Pyroscope does). An unreadable id is dropped.
fn limit_sessions(labels: &mut Labels, max: usize) {
    let Some(value) = labels.get(ln::SESSION_ID) else { return };
    let parsed =
        (value.len() == 16).then(|| u64::from_str_radix(value, 16).ok()).flatten().map(|be| be.swap_bytes() as i64);
    match (max, parsed) {
        (1.., Some(id)) => {
            let folded = (id % max as i64) as u64;
            labels.set(ln::SESSION_ID, &format!("{:016x}", folded.swap_bytes()));
        }
        _ => {
            labels.remove(ln::SESSION_ID);
        }
    }
}

/// Requests that may wait for the decode pool, per CPU.
const MAX_WAITING_PER_CPU: usize = 8;

/// The profile's id: the client's id (a UUID, or any other string hashed,
/// so it names the profile consistently across the client's retries);
/// without one, a fresh random id: as in Pyroscope, two identical profiles
/// sent without ids are two profiles, and both count. (The distributor's own
/// retries to segment writers reuse the id given here, so they count once.)
fn profile_id(given: &str) -> ProfileId {
    if given.is_empty() {
        return ProfileId::random();
    }
    ProfileId::parse(given).unwrap_or_else(|| ProfileId::from_content(&[given.as_bytes()]))
}

/// The discard reason of a refusal, for metrics (Pyroscope-like names).
pub(crate) fn reason(e: &PushError) -> &'static str {
    match e {
        PushError::ResourceExhausted(m) if m.contains("rate limit") => "rate_limited",
        PushError::ResourceExhausted(_) => "overloaded",
        PushError::Unavailable(_) => "unavailable",
        PushError::InvalidArgument(m) => {
            if m.contains("exceeds limit") || m.contains("max_profile_size") {
                "profile_too_large"
            } else if m.contains("older than") {
                "too_old"
            } else if m.contains("in the future") {
                "too_new"
            } else if m.contains("max_profile_stacktrace_samples") {
                "too_many_samples"
            } else if m.contains("label") || m.contains("metric name") {
                "invalid_labels"
            } else {
                "malformed_profile"
            }
        }
    }
}

/// Bytes a push counts against the rate limit: each source pprof once
/// (uncompressed, as decoded) plus the series labels.
pub(crate) fn ingested_bytes(profiles: &[SeriesProfile]) -> usize {
    // A push can split into thousands of series profiles: a set, not a scan.
    let mut seen: std::collections::HashSet<*const Profile> = std::collections::HashSet::new();
    let mut bytes = 0;
    for p in profiles {
        if seen.insert(Arc::as_ptr(&p.source)) {
            bytes += p.source.decoded_len;
        }
        bytes += p.labels.iter().map(|l| l.name.len() + l.value.len()).sum::<usize>();
    }
    bytes
}
