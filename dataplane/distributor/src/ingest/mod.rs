//! `POST /ingest`: the legacy HTTP ingest API that SDKs (Node.js, Go's
//! older uploader, Java's JFR) and Alloy's `pyroscope.receive_http` use.
//!
//! Every format becomes a [`phlox_pprof::Profile`] with series labels and
//! then takes the same path as Push: limits, split, shards.

mod name;
mod rules;
mod speedscope;
mod text;
mod time;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use phlox_model::{ProfileId, label_names as ln};
use phlox_pprof::{Profile, SeriesProfile, StackProfileBuilder, maybe_gunzip, split};

pub use name::{AppName, parse_name};
pub use time::parse_time;

use crate::distributor::now_nanos;
use crate::{Distributor, Limits, PushError};

/// The body format of an `/ingest` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestFormat {
    Folded,
    Lines,
    Tree,
    Trie,
    /// Raw pprof (`format=pprof`) or the multipart form.
    Pprof,
    Jfr,
    Speedscope,
}

impl IngestFormat {
    /// Pyroscope's selection: first match of `format`, then content type.
    /// A `format` that names no supported format is an error (it would
    /// otherwise be read as folded text).
    pub fn select(format: Option<&str>, content_type: &str) -> Result<Self, String> {
        let ct = content_type.to_ascii_lowercase();
        match format.unwrap_or("") {
            "trie" => return Ok(Self::Trie),
            _ if ct.starts_with("binary/octet-stream+trie") => return Ok(Self::Trie),
            "tree" => return Ok(Self::Tree),
            _ if ct.starts_with("binary/octet-stream+tree") => return Ok(Self::Tree),
            "lines" => return Ok(Self::Lines),
            "jfr" => return Ok(Self::Jfr),
            "pprof" => return Ok(Self::Pprof),
            "speedscope" => return Ok(Self::Speedscope),
            "" | "folded" => {}
            other => {
                return Err(format!(
                    "format={:?} is not supported: use folded (the default), lines, pprof, jfr, speedscope, tree or trie",
                    other.chars().take(64).collect::<String>()
                ));
            }
        }
        Ok(if ct.contains("multipart/form-data") { Self::Pprof } else { Self::Folded })
    }

    /// Whether all non-rate-limit failures answer 422 (pprof, JFR) rather
    /// than keeping their 400 (text formats).
    pub fn binary(&self) -> bool {
        matches!(self, Self::Pprof | Self::Jfr)
    }
}

/// Query parameters of `/ingest`.
#[derive(Debug, Clone, Default)]
pub struct IngestParams {
    pub name: String,
    pub from: Option<String>,
    pub until: Option<String>,
    pub sample_rate: Option<String>,
    pub spy_name: Option<String>,
}

/// The body, as the HTTP layer extracted it.
#[derive(Debug, Clone)]
pub enum IngestBody {
    Raw(Bytes),
    /// `multipart/form-data` pprof upload.
    PprofForm {
        profile: Option<Bytes>,
        prev_profile: Option<Bytes>,
        sample_type_config: Option<Bytes>,
    },
    /// `multipart/form-data` JFR upload.
    JfrForm {
        jfr: Option<Bytes>,
        labels: Option<Bytes>,
    },
}

impl IngestBody {
    /// The bytes the request carried (its parts, for a form).
    pub fn len(&self) -> usize {
        let n = |b: &Option<Bytes>| b.as_ref().map_or(0, Bytes::len);
        match self {
            IngestBody::Raw(b) => b.len(),
            IngestBody::PprofForm { profile, prev_profile, sample_type_config } => {
                n(profile) + n(prev_profile) + n(sample_type_config)
            }
            IngestBody::JfrForm { jfr, labels } => n(jfr) + n(labels),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why an `/ingest` request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    /// Bad `name` or parameters: 400 `invalid_argument`.
    #[error("{0}")]
    BadRequest(String),
    /// The body does not parse: 422.
    #[error("{0}")]
    Parse(String),
    /// Validation, limits, storage.
    #[error("{0}")]
    Push(PushError),
}

impl IngestError {
    /// (HTTP status, Connect code) as Pyroscope's `/ingest` answers.
    pub fn status(&self, format: IngestFormat) -> (u16, &'static str) {
        match self {
            IngestError::BadRequest(_) => (400, "invalid_argument"),
            IngestError::Parse(_) => (422, "unknown"),
            IngestError::Push(PushError::InvalidArgument(_)) if format.binary() => (422, "unknown"),
            IngestError::Push(e) => (e.http_status(), e.connect_code()),
        }
    }
}

impl From<PushError> for IngestError {
    fn from(e: PushError) -> Self {
        IngestError::Push(e)
    }
}

const NANOS: i64 = 1_000_000_000;
/// Pprof timestamps before this (in 1970) are treated as absent.
const YEAR_1971: i64 = 365 * 86_400 * NANOS;

/// Brace labels, without private (`__`) ones except `__session_id__`.
fn public_labels(labels: &[(String, String)]) -> impl Iterator<Item = &(String, String)> {
    labels.iter().filter(|(k, _)| !k.starts_with("__") || k == ln::SESSION_ID)
}

impl Distributor {
    /// Handles one `/ingest` request; resolves once stored and indexed.
    pub async fn ingest(
        &self,
        tenant: &str,
        format: IngestFormat,
        params: &IngestParams,
        body: IngestBody,
    ) -> Result<usize, IngestError> {
        let profiles = self.prepare_ingest(tenant, format, params, body, now_nanos())?;
        self.ingest_prepared(tenant, profiles).await
    }

    /// The rest of an `/ingest` request once parsed (on [`Distributor::cpu`]):
    /// the rate limit on the decoded bytes, then the writes.
    pub async fn ingest_prepared(&self, tenant: &str, profiles: Vec<SeriesProfile>) -> Result<usize, IngestError> {
        let n = profiles.len();
        if n > 0 {
            let l = self.limits(tenant);
            let bytes = crate::distributor::ingested_bytes(&profiles);
            let written = match self.rate_limit(tenant, &l, bytes) {
                Ok(()) => self.write(tenant, profiles).await,
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                self.discarded(crate::distributor::reason(&e), 1, bytes as u64);
                return Err(e.into());
            }
        }
        Ok(n)
    }

    /// Parses and validates an `/ingest` request (no I/O); a refusal is
    /// counted in the discard metrics by reason.
    pub fn prepare_ingest(
        &self,
        tenant: &str,
        format: IngestFormat,
        params: &IngestParams,
        body: IngestBody,
        now: i64,
    ) -> Result<Vec<SeriesProfile>, IngestError> {
        let bytes = body.len();
        let prepared = self.parse_ingest(tenant, format, params, body, now);
        if let Err(e) = &prepared {
            let reason = match e {
                IngestError::BadRequest(_) => "invalid_request",
                IngestError::Parse(_) => "malformed_profile",
                IngestError::Push(e) => crate::distributor::reason(e),
            };
            self.discarded(reason, 1, bytes as u64);
        }
        prepared
    }

    fn parse_ingest(
        &self,
        tenant: &str,
        format: IngestFormat,
        params: &IngestParams,
        body: IngestBody,
        now: i64,
    ) -> Result<Vec<SeriesProfile>, IngestError> {
        let l = self.limits(tenant);
        let name = parse_name(&params.name).map_err(IngestError::BadRequest)?;
        let time = |key: &str, v: Option<&str>| -> Result<i64, IngestError> {
            match v.filter(|t| !t.trim().is_empty()) {
                None => Ok(now),
                Some(t) => parse_time(t, now).ok_or_else(|| {
                    IngestError::BadRequest(format!(
                        "{key}={:?} is not a time: use unix seconds (or ms, µs, ns), `now`, `now-1h` or YYYYMMDD",
                        t.chars().take(64).collect::<String>()
                    ))
                }),
            }
        };
        let from = time("from", params.from.as_deref())?;
        let until = time("until", params.until.as_deref())?;
        let sample_rate: u32 = match params.sample_rate.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None => 100,
            Some(s) => s.parse().map_err(|_| {
                IngestError::BadRequest(format!(
                    "sampleRate={:?} is not a whole number of samples per second",
                    s.chars().take(64).collect::<String>()
                ))
            })?,
        };
        let spy = params.spy_name.as_deref().filter(|s| !s.is_empty()).unwrap_or("unknown");
        self.metrics.received_profiles.inc();
        match format {
            IngestFormat::Pprof => self.ingest_pprof(&l, &name, from, spy, body, now),
            IngestFormat::Jfr => self.ingest_jfr(&l, &name, from, until, sample_rate, spy, body, now),
            text => self.ingest_text(&l, text, &name, from, until, sample_rate, spy, body, now),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn ingest_text(
        &self,
        l: &Limits,
        format: IngestFormat,
        name: &AppName,
        from: i64,
        until: i64,
        sample_rate: u32,
        spy: &str,
        body: IngestBody,
        now: i64,
    ) -> Result<Vec<SeriesProfile>, IngestError> {
        let IngestBody::Raw(body) = body else {
            return Err(IngestError::BadRequest(
                "this format takes the profile as the request body, not a form".into(),
            ));
        };
        if name.labels.iter().any(|(k, _)| k == "profile_id") {
            // Pyroscope ignores such uploads (span profiles of old SDKs).
            return Ok(Vec::new());
        }
        self.metrics.received_bytes.with_label_values(&["compressed"]).inc_by(body.len() as u64);
        if format == IngestFormat::Speedscope {
            return self.ingest_speedscope(l, name, from, until, sample_rate, spy, &body, now);
        }
        let (stem, kind) = app_kind(&name.app)?;
        let timed = matches!(kind.name, "process_cpu" | "wall") && sample_rate != 0;
        let period = if timed { NANOS / i64::from(sample_rate) } else { 0 };
        let mut b = text_builder(l, kind, timed.then_some(period));
        let scale = if timed { period.max(1) } else { 1 };
        let max_children = l.max_profile_stacktrace_samples as u64;
        let parsed = match format {
            IngestFormat::Folded => text::folded(&body, &mut b, scale),
            IngestFormat::Lines => text::lines(&body, &mut b, scale),
            IngestFormat::Tree => text::tree(&body, &mut b, scale, max_children, symbol_limit(l)),
            _ => text::trie(&body, &mut b, scale, max_children, l.max_profile_size_bytes),
        };
        parsed.map_err(IngestError::Parse)?;
        self.finish_text(l, b, name, kind, stem, &[], spy, from, until, &body, now)
    }

    /// A speedscope file: one series per profile, typed as the module
    /// [`speedscope`] describes.
    #[allow(clippy::too_many_arguments)]
    fn ingest_speedscope(
        &self,
        l: &Limits,
        name: &AppName,
        from: i64,
        until: i64,
        sample_rate: u32,
        spy: &str,
        body: &[u8],
        now: i64,
    ) -> Result<Vec<SeriesProfile>, IngestError> {
        let v = speedscope::parse(body).map_err(IngestError::Parse)?;
        let file = speedscope::file(&v).map_err(IngestError::Parse)?;
        let multi = file.profiles.len() > 1;
        let mut out = Vec::new();
        for p in &file.profiles {
            let app = if multi { format!("{}.{}", name.app, p.unit.name()) } else { name.app.clone() };
            let (stem, kind) = app_kind(&app)?;
            // Pyroscope reads the default sampleRate (100) as "the unit's own rate".
            let rate = if sample_rate == 100 { p.unit.default_sample_rate() } else { u64::from(sample_rate) };
            let timed = matches!(kind.name, "process_cpu" | "wall") && rate != 0;
            let period = if timed { (NANOS as u64 / rate) as i64 } else { 0 };
            let mut b = text_builder(l, kind, timed.then_some(period));
            let (numerator, denominator) =
                if timed { (NANOS, i64::try_from(rate).unwrap_or(i64::MAX)) } else { (1, 1) };
            file.add(p, &mut b, numerator, denominator).map_err(IngestError::Parse)?;
            let extra = [("profile_name".to_owned(), p.name.to_owned())];
            let extra = if p.name.is_empty() { &extra[..0] } else { &extra[..] };
            out.extend(self.finish_text(l, b, name, kind, stem, extra, spy, from, until, body, now)?);
        }
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn finish_text(
        &self,
        l: &Limits,
        mut b: StackProfileBuilder,
        name: &AppName,
        kind: rules::Kind,
        stem: &str,
        extra: &[(String, String)],
        spy: &str,
        from: i64,
        until: i64,
        body: &[u8],
        now: i64,
    ) -> Result<Vec<SeriesProfile>, IngestError> {
        if b.sample_count() == 0 {
            return Ok(Vec::new());
        }
        b.time_nanos(from).duration_nanos(until.saturating_sub(from).max(0));
        let mut profile = b.finish();
        self.metrics.received_bytes.with_label_values(&["uncompressed"]).inc_by(body.len() as u64);
        self.admit(l, &mut profile, now)?;
        let mut labels =
            vec![(ln::METRIC_NAME.to_owned(), kind.name.to_owned()), ("pyroscope_spy".to_owned(), spy.to_owned())];
        labels.extend(public_labels(&name.labels).cloned());
        labels.extend(extra.iter().cloned());
        let has_service = name.labels.iter().any(|(k, _)| k == ln::SERVICE_NAME);
        if !has_service {
            labels.push((ln::SERVICE_NAME.to_owned(), stem.to_owned()));
        } else if !name.labels.iter().any(|(k, _)| k == "app_name") {
            labels.push(("app_name".to_owned(), stem.to_owned()));
        }
        let labels = self.series_labels(l, &to_pairs(labels))?;
        let id = ProfileId::random();
        split(&labels, Arc::new(profile), id, now)
            .map_err(|e| IngestError::Push(PushError::InvalidArgument(e.to_string())))
    }

    fn ingest_pprof(
        &self,
        l: &Limits,
        name: &AppName,
        from: i64,
        spy: &str,
        body: IngestBody,
        now: i64,
    ) -> Result<Vec<SeriesProfile>, IngestError> {
        let (raw, config) = match body {
            IngestBody::Raw(b) => (Some(b), None),
            IngestBody::PprofForm { prev_profile: Some(_), .. } => {
                return Err(IngestError::Parse(
                    "unsupported client version: prev_profile (cumulative profiles) is not supported".into(),
                ));
            }
            IngestBody::PprofForm { profile, sample_type_config, .. } => (profile, sample_type_config),
            IngestBody::JfrForm { .. } => return Err(IngestError::BadRequest("a JFR form needs format=jfr".into())),
        };
        let Some(raw) = raw.filter(|b| !b.is_empty()) else {
            return Ok(Vec::new()); // an empty upload is accepted and stores nothing
        };
        let display_names: HashMap<String, String> = match config {
            Some(c) if !c.is_empty() => rules::sample_type_config(&c).map_err(IngestError::Parse)?,
            _ => HashMap::new(),
        };
        self.metrics.received_bytes.with_label_values(&["compressed"]).inc_by(raw.len() as u64);
        let bad = |e: phlox_pprof::DecodeError| IngestError::Push(PushError::InvalidArgument(e.to_string()));
        let plain = maybe_gunzip(&raw, l.max_profile_size_bytes).map_err(bad)?;
        self.metrics.received_bytes.with_label_values(&["uncompressed"]).inc_by(plain.len() as u64);
        let mut p = Profile::decode(&plain).map_err(bad)?;
        if spy == "dotnetspy" {
            p.repair_zero_function_ids();
            for i in 0..p.sample_types.len() {
                let t = p.strings.str(p.sample_types[i].r#type);
                if t.contains('-') {
                    let fixed = t.replace('-', "_");
                    p.rename_sample_type(i, &fixed).map_err(bad)?;
                }
            }
        }
        p.validate().map_err(bad)?;
        if p.time_nanos < YEAR_1971 {
            p.time_nanos = from;
        }
        if matches!(spy, "pyspy" | "rbspy" | "scripting") {
            rules::qualify_function_names(&mut p, spy == "pyspy").map_err(bad)?;
        }
        self.admit(l, &mut p, now)?;
        let types: Vec<&str> = p.sample_types.iter().map(|t| p.strings.str(t.r#type)).collect();
        let metric = rules::pprof_metric_name(&types, &display_names);
        let mut labels = vec![
            (ln::METRIC_NAME.to_owned(), metric),
            ("pyroscope_spy".to_owned(), spy.to_owned()),
            (ln::SERVICE_NAME.to_owned(), name.app.clone()),
        ];
        // Brace labels win over the derived service_name.
        labels.retain(|(k, _)| !(k == ln::SERVICE_NAME && name.labels.iter().any(|(n, _)| n == ln::SERVICE_NAME)));
        labels.extend(public_labels(&name.labels).cloned());
        let labels = self.series_labels(l, &to_pairs(labels))?;
        let id = ProfileId::random();
        split(&labels, Arc::new(p), id, now).map_err(|e| IngestError::Push(PushError::InvalidArgument(e.to_string())))
    }

    #[allow(clippy::too_many_arguments)]
    fn ingest_jfr(
        &self,
        l: &Limits,
        name: &AppName,
        from: i64,
        until: i64,
        sample_rate: u32,
        spy: &str,
        body: IngestBody,
        now: i64,
    ) -> Result<Vec<SeriesProfile>, IngestError> {
        let (jfr, labels) = match body {
            IngestBody::Raw(b) => (b, None),
            IngestBody::JfrForm { jfr: Some(jfr), labels } => (jfr, labels),
            IngestBody::JfrForm { jfr: None, .. } => return Err(IngestError::Parse("the form has no jfr part".into())),
            IngestBody::PprofForm { .. } => {
                return Err(IngestError::Parse("a JFR upload needs a jfr form part".into()));
            }
        };
        self.metrics.received_bytes.with_label_values(&["compressed"]).inc_by(jfr.len() as u64);
        let recording = phlox_formats::jfr::parse_jfr(&jfr, labels.as_deref(), JFR_MAX_BYTES, sample_rate, l.budget())
            .map_err(|e| IngestError::Parse(format!("jfr: {e}")))?;
        let has_service = name.labels.iter().any(|(k, _)| k == ln::SERVICE_NAME);
        let mut out = Vec::new();
        for mut jp in recording.profiles {
            // Dated by the upload's `from`/`until`, as Pyroscope does, not by
            // the recording's own clock (a JVM's clock may be off, and a
            // buffered or backfilled upload is old by design).
            jp.profile.time_nanos = from;
            jp.profile.duration_nanos = until.saturating_sub(from).max(0);
            // Straight into the columnar profile: no pprof encoding and
            // decoding in between; the limits apply to the size it would
            // have as pprof.
            let bad = |e: phlox_pprof::DecodeError| IngestError::Push(PushError::InvalidArgument(format!("jfr: {e}")));
            let mut p = Profile::from_proto(&jp.profile).map_err(bad)?;
            self.metrics.received_bytes.with_label_values(&["uncompressed"]).inc_by(p.decoded_len as u64);
            if p.decoded_len > l.max_profile_size_bytes {
                return Err(bad(phlox_pprof::DecodeError::PayloadTooLarge { limit: l.max_profile_size_bytes }));
            }
            p.validate().map_err(bad)?;
            self.admit(l, &mut p, now)?;
            let mut pairs = vec![
                (ln::METRIC_NAME.to_owned(), jp.metric.to_owned()),
                ("pyroscope_spy".to_owned(), spy.to_owned()),
                (if has_service { "app_name" } else { ln::SERVICE_NAME }.to_owned(), name.app.clone()),
            ];
            // Pyroscope's `jfr_event`: the recording's `event` setting (none for the JDK's recorder).
            if let Some(event) = recording.event.as_ref().filter(|e| !e.is_empty()) {
                pairs.push(("jfr_event".to_owned(), event.clone()));
            }
            pairs.extend(public_labels(&name.labels).cloned());
            let labels = self.series_labels(l, &to_pairs(pairs))?;
            let id = ProfileId::random();
            out.extend(
                split(&labels, Arc::new(p), id, now)
                    .map_err(|e| IngestError::Push(PushError::InvalidArgument(e.to_string())))?,
            );
        }
        Ok(out)
    }
}

/// The longest name a legacy tree may carry: the symbol length limit.
fn symbol_limit(l: &Limits) -> usize {
    match l.max_profile_symbol_value_length {
        0 => usize::MAX,
        n => n,
    }
}

/// The service name and profile kind of an `/ingest` app name: its last
/// `.suffix` names the kind (`app.cpu`, `app.inuse_space`), none means CPU.
fn app_kind(app: &str) -> Result<(&str, rules::Kind), IngestError> {
    let (stem, suffix) = app.rsplit_once('.').unwrap_or((app, "cpu"));
    let kind = rules::suffix_kind(suffix).ok_or_else(|| {
        IngestError::BadRequest(format!("name: unknown profile type suffix {suffix:?} (e.g. app.cpu, app.inuse_space)"))
    })?;
    Ok((stem, kind))
}

/// The builder of a stack-format upload: with a period, CPU or wall time in
/// nanoseconds (period type cpu/nanoseconds, as Pyroscope writes it for
/// both); without, the kind's own sample type.
fn text_builder(l: &Limits, kind: rules::Kind, period: Option<i64>) -> StackProfileBuilder {
    match period {
        Some(period) => {
            let t = if kind.name == "wall" { "wall" } else { "cpu" };
            StackProfileBuilder::new(
                &[(t, "nanoseconds")],
                Some((("cpu", "nanoseconds"), period)),
                l.max_profile_size_bytes,
            )
        }
        None => StackProfileBuilder::new(&[(kind.sample_type, kind.unit)], None, l.max_profile_size_bytes),
    }
}

/// Largest decompressed JFR recording (the HTTP body limit bounds it too).
const JFR_MAX_BYTES: usize = 256 << 20;

fn to_pairs(labels: Vec<(String, String)>) -> Vec<phlox_proto::types::v1::LabelPair> {
    labels.into_iter().map(|(name, value)| phlox_proto::types::v1::LabelPair { name, value }).collect()
}
