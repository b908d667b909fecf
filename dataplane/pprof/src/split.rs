//! One pprof → one profile per series.
//!
//! A pprof carries several sample types and per-sample labels. Pyroscope
//! stores one series per (label set, sample type): string sample labels
//! become series labels (labels already on the series win), except
//! `span_id`/`trace_id` (and `profile_id`, an alias of `span_id`), which stay
//! on the samples. Zero-valued samples are dropped here; identical stacks are
//! merged when the segment writer interns them.

use std::sync::Arc;

use phlox_model::{Labels, ProfileId, label_names as ln};
use rustc_hash::FxHashMap;

use crate::{DecodeError, Profile};

/// String-table indices of the span/trace sample label keys of a profile
/// (`-1` when the profile does not use them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanKeys {
    pub span_id: i64,
    pub profile_id: i64,
    pub trace_id: i64,
}

impl SpanKeys {
    fn find(p: &Profile) -> Self {
        let mut k = SpanKeys { span_id: -1, profile_id: -1, trace_id: -1 };
        if p.labels.is_empty() {
            return k;
        }
        for i in 0..p.strings.len() as i64 {
            match p.strings.str(i) {
                ln::SPAN_ID => k.span_id = i,
                ln::PROFILE_ID => k.profile_id = i,
                ln::TRACE_ID => k.trace_id = i,
                _ => {}
            }
        }
        k
    }

    fn is_span_key(&self, key: i64) -> bool {
        key >= 0 && (key == self.span_id || key == self.profile_id || key == self.trace_id)
    }

    pub fn any(&self) -> bool {
        self.span_id >= 0 || self.profile_id >= 0 || self.trace_id >= 0
    }

    /// The (span id, trace id) of sample `i`; zero when absent or unparsable.
    pub fn of_sample(&self, p: &Profile, i: usize) -> (u64, [u8; 16]) {
        let mut span = 0;
        let mut trace = [0; 16];
        if !self.any() {
            return (span, trace);
        }
        for l in p.sample_labels(i) {
            if l.key < 0 {
                continue;
            }
            if l.key == self.span_id || l.key == self.profile_id {
                span = parse_span_id(p.strings.str(l.str)).unwrap_or(0);
            } else if l.key == self.trace_id {
                trace = parse_trace_id(p.strings.str(l.str)).unwrap_or([0; 16]);
            }
        }
        (span, trace)
    }
}

/// Parses a 16-hex-digit span id.
pub fn parse_span_id(s: &str) -> Option<u64> {
    if s.len() != 16 {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

/// Parses a 32-hex-digit trace id.
pub fn parse_trace_id(s: &str) -> Option<[u8; 16]> {
    if s.len() != 32 {
        return None;
    }
    u128::from_str_radix(s, 16).ok().map(u128::to_be_bytes)
}

/// One series' share of a pprof: which samples and which value column.
#[derive(Debug, Clone)]
pub struct SeriesProfile {
    /// Full series labels, including `__profile_type__` and friends.
    pub labels: Labels,
    pub fingerprint: u64,
    /// `name:type:unit:period_type:period_unit`.
    pub profile_type: String,
    pub time_nanos: i64,
    pub id: ProfileId,
    pub source: Arc<Profile>,
    /// Which of `source.sample_types` this series holds.
    pub value_index: usize,
    /// Indices of the (non-zero) samples of this series in `source`.
    pub samples: Vec<u32>,
    /// Sum of the values of `samples`.
    pub total: i64,
    pub span_keys: SpanKeys,
}

impl SeriesProfile {
    /// Rebuilds a series profile from what another process sent: its final
    /// labels, id, time, sample type and sample indices in `source`. The
    /// labels must carry `__profile_type__`; indices are checked.
    pub fn from_parts(
        source: Arc<Profile>,
        labels: Labels,
        id: ProfileId,
        time_nanos: i64,
        value_index: usize,
        samples: Vec<u32>,
    ) -> Result<Self, DecodeError> {
        let bad = |m: String| DecodeError::Invalid(m);
        if value_index >= source.sample_types.len() {
            return Err(bad(format!("sample type {value_index} out of range ({} types)", source.sample_types.len())));
        }
        let n = source.sample_count();
        if let Some(&i) = samples.iter().find(|&&i| i as usize >= n) {
            return Err(bad(format!("sample {i} out of range ({n} samples)")));
        }
        let profile_type = labels
            .get(ln::PROFILE_TYPE)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| bad("series labels lack __profile_type__".into()))?
            .to_owned();
        let total = samples.iter().map(|&i| source.sample_value(i as usize, value_index)).sum();
        Ok(SeriesProfile {
            fingerprint: labels.fingerprint(),
            labels,
            profile_type,
            time_nanos,
            id,
            span_keys: SpanKeys::find(&source),
            source,
            value_index,
            samples,
            total,
        })
    }

    /// The `service_name` label (always present after [`split`]).
    pub fn service_name(&self) -> &str {
        self.labels.get(ln::SERVICE_NAME).unwrap_or(ln::UNKNOWN_SERVICE)
    }

    /// Bytes this profile adds to a buffer, roughly: for memory accounting.
    pub fn approx_size(&self) -> usize {
        let stack: usize =
            self.samples.iter().map(|&i| self.source.sample_location_ids(i as usize).len() * 8 + 16).sum();
        stack + self.labels.iter().map(|p| p.name.len() + p.value.len()).sum::<usize>()
    }
}

/// Splits a validated profile into per-series profiles.
///
/// `series` must carry `__name__` (`wall` with a `cpu` sample type becomes
/// `process_cpu`); `service_name` defaults to `unknown_service`; `__delta__` is dropped; the server-derived labels
/// (`__profile_type__`, `__type__`, `__unit__`, `__period_type__`,
/// `__period_unit__`) are always recomputed. A profile without `time_nanos`
/// gets `receive_time_nanos`.
pub fn split(
    series: &Labels,
    profile: Arc<Profile>,
    id: ProfileId,
    receive_time_nanos: i64,
) -> Result<Vec<SeriesProfile>, DecodeError> {
    let name = series.get(ln::METRIC_NAME).filter(|n| !n.is_empty()).ok_or(DecodeError::MissingName)?;
    let p = &*profile;
    let keys = SpanKeys::find(p);
    let time_nanos = if p.time_nanos > 0 { p.time_nanos } else { receive_time_nanos };

    // Group samples by their string label set (span/trace labels excluded).
    let mut groups: Vec<(Labels, Vec<u32>)> = Vec::new();
    if p.labels.is_empty() {
        groups.push((Labels::default(), (0..p.sample_count() as u32).collect()));
    } else {
        let mut by_indices: FxHashMap<Vec<(i64, i64)>, usize> = FxHashMap::default();
        // Groups by their labels too: different indices may spell the same labels.
        let mut by_labels: FxHashMap<Labels, usize> = FxHashMap::default();
        let mut scratch: Vec<(i64, i64)> = Vec::new();
        for i in 0..p.sample_count() {
            scratch.clear();
            scratch.extend(
                p.sample_labels(i).iter().filter(|l| l.str != 0 && !keys.is_span_key(l.key)).map(|l| (l.key, l.str)),
            );
            scratch.sort_unstable();
            let g = match by_indices.get(scratch.as_slice()) {
                Some(&g) => g,
                None => {
                    let labels = Labels::from_pairs(scratch.iter().map(|&(k, v)| (p.strings.str(k), p.strings.str(v))));
                    // Different indices may spell the same labels: merge them.
                    let g = *by_labels.entry(labels.clone()).or_insert_with(|| {
                        groups.push((labels, Vec::new()));
                        groups.len() - 1
                    });
                    by_indices.insert(scratch.clone(), g);
                    g
                }
            };
            groups[g].1.push(i as u32);
        }
    }

    let (period_type, period_unit) = match p.period_type {
        Some(vt) => (p.strings.str(vt.r#type), p.strings.str(vt.unit)),
        None => ("", ""),
    };
    // Native frames without names: found by label, symbolized at query time.
    let unsymbolized = p.locations.iter().any(|l| l.lines.is_empty() && l.address != 0 && l.mapping_id != 0);
    let mut out = Vec::with_capacity(groups.len() * p.sample_types.len());
    for (group_labels, samples) in &groups {
        for (t, vt) in p.sample_types.iter().enumerate() {
            let (sample_type, sample_unit) = (p.strings.str(vt.r#type), p.strings.str(vt.unit));
            let kept: Vec<u32> = samples.iter().copied().filter(|&i| p.sample_value(i as usize, t) != 0).collect();
            if kept.is_empty() {
                continue;
            }
            let total = kept.iter().map(|&i| p.sample_value(i as usize, t)).sum();
            let mut labels = series.clone();
            for l in group_labels.iter() {
                labels.set_if_absent(&l.name, &l.value);
            }
            labels.remove(ln::DELTA);
            if unsymbolized {
                labels.set(ln::UNSYMBOLIZED, "true");
            }
            labels.set_if_absent(ln::SERVICE_NAME, ln::UNKNOWN_SERVICE);
            // Pyroscope's default relabeling: a `cpu` sample type sent as
            // `wall` (e.g. Go's CPU profile pushed with __name__="wall") is CPU.
            let name = if name == "wall" && sample_type == "cpu" { "process_cpu" } else { name };
            labels.set(ln::METRIC_NAME, name);
            let profile_type = format!("{name}:{sample_type}:{sample_unit}:{period_type}:{period_unit}");
            labels.set(ln::PROFILE_TYPE, &profile_type);
            labels.set(ln::TYPE, sample_type);
            labels.set(ln::UNIT, sample_unit);
            if p.period_type.is_some() {
                labels.set(ln::PERIOD_TYPE, period_type);
                labels.set(ln::PERIOD_UNIT, period_unit);
            } else {
                labels.remove(ln::PERIOD_TYPE);
                labels.remove(ln::PERIOD_UNIT);
            }
            out.push(SeriesProfile {
                fingerprint: labels.fingerprint(),
                labels,
                profile_type,
                time_nanos,
                id,
                source: Arc::clone(&profile),
                value_index: t,
                samples: kept,
                total,
                span_keys: keys,
            });
        }
    }
    Ok(out)
}
