use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Per-tenant ingest limits (defaults as Pyroscope's).
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Sustained ingest rate (uncompressed profile + label bytes), MB/s.
    pub ingestion_rate_mb: f64,
    /// Burst on top of the rate, MB.
    pub ingestion_burst_size_mb: f64,
    /// Uncompressed size of one profile.
    pub max_profile_size_bytes: usize,
    pub max_profile_stacktrace_samples: usize,
    pub max_profile_stacktrace_sample_labels: usize,
    pub max_label_names_per_series: usize,
    pub max_label_name_length: usize,
    pub max_label_value_length: usize,
    /// Longer strings of a profile keep their last this many bytes; 0: no limit.
    pub max_profile_symbol_value_length: usize,
    /// `__session_id__` values are folded to this many per series; 0 drops the label.
    pub max_sessions_per_series: usize,
    /// Memory the decoded profiles of one request may take (Push, /ingest,
    /// OTLP); formats that share stacks are charged before they expand.
    pub max_request_memory: usize,
    /// Profiles older than this (by their own timestamp) are rejected.
    pub reject_older_than: Duration,
    /// Profiles newer than now plus this are rejected.
    pub reject_newer_than: Duration,
}

impl Limits {
    /// What a request of this tenant may expand to while it is converted.
    pub fn budget(&self) -> phlox_formats::Budget {
        phlox_formats::Budget {
            max_profile_bytes: self.max_profile_size_bytes,
            max_request_bytes: self.max_request_memory,
        }
    }
}

impl From<&phlox_config::LimitsConfig> for Limits {
    fn from(l: &phlox_config::LimitsConfig) -> Self {
        Self {
            ingestion_rate_mb: l.ingestion_rate_mb,
            ingestion_burst_size_mb: l.ingestion_burst_size_mb,
            max_profile_size_bytes: l.max_profile_size_bytes,
            max_profile_stacktrace_samples: l.max_profile_stacktrace_samples,
            max_profile_stacktrace_sample_labels: l.max_profile_stacktrace_sample_labels,
            max_label_names_per_series: l.max_label_names_per_series,
            max_label_name_length: l.max_label_name_length,
            max_label_value_length: l.max_label_value_length,
            max_profile_symbol_value_length: l.max_profile_symbol_value_length,
            max_sessions_per_series: l.max_sessions_per_series,
            max_request_memory: l.max_request_memory,
            reject_older_than: l.reject_older_than,
            reject_newer_than: l.reject_newer_than,
        }
    }
}

/// The configuration's defaults ([`phlox_config::LimitsConfig`]'s: defined once).
impl Default for Limits {
    fn default() -> Self {
        Self::from(&phlox_config::LimitsConfig::default())
    }
}

/// Default limits plus per-tenant overrides.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TenantLimits {
    pub defaults: Limits,
    pub overrides: HashMap<String, Limits>,
}

/// The live limits: swapped as a whole when the configuration is reloaded.
#[derive(Debug, Default)]
pub struct LimitsStore(RwLock<Arc<TenantLimits>>);

impl LimitsStore {
    pub fn new(limits: TenantLimits) -> Self {
        Self(RwLock::new(Arc::new(limits)))
    }

    /// The limits of one tenant.
    pub fn get(&self, tenant: &str) -> Limits {
        let all = Arc::clone(&self.0.read().unwrap_or_else(|e| e.into_inner()));
        all.overrides.get(tenant).unwrap_or(&all.defaults).clone()
    }

    /// Replaces every limit (configuration reload).
    pub fn set(&self, limits: TenantLimits) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(limits);
    }
}

/// Token buckets per tenant: `rate` bytes/s, at most `burst` bytes at once.
#[derive(Debug, Default)]
pub(crate) struct RateLimiter {
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// Whether the tenant's bucket holds `bytes` now (nothing is taken).
    pub(crate) fn has(&self, tenant: &str, bytes: usize, rate_bytes: f64, burst_bytes: f64, now: Instant) -> bool {
        if rate_bytes <= 0.0 {
            return true;
        }
        let b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        match b.get(tenant) {
            None => burst_bytes >= bytes as f64,
            Some((tokens, last)) => {
                let refilled =
                    (*tokens + now.saturating_duration_since(*last).as_secs_f64() * rate_bytes).min(burst_bytes);
                refilled >= bytes as f64
            }
        }
    }

    /// Takes `bytes` from the tenant's bucket; false (taking nothing) when
    /// there are not enough tokens.
    pub(crate) fn allow(&self, tenant: &str, bytes: usize, rate_bytes: f64, burst_bytes: f64, now: Instant) -> bool {
        if rate_bytes <= 0.0 {
            return true; // 0 disables the limit
        }
        let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, last) = b.entry(tenant.to_owned()).or_insert((burst_bytes, now));
        *tokens = (*tokens + now.saturating_duration_since(*last).as_secs_f64() * rate_bytes).min(burst_bytes);
        *last = now;
        if *tokens >= bytes as f64 {
            *tokens -= bytes as f64;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_refill_at_the_rate_up_to_the_burst() {
        let r = RateLimiter::default();
        let t0 = Instant::now();
        assert!(r.allow("a", 1500, 1000.0, 2000.0, t0));
        assert!(!r.allow("a", 1000, 1000.0, 2000.0, t0));
        assert!(r.allow("b", 1000, 1000.0, 2000.0, t0), "tenants have their own buckets");
        assert!(r.allow("a", 1000, 1000.0, 2000.0, t0 + Duration::from_millis(600)));
        assert!(!r.allow("a", 2001, 1000.0, 2000.0, t0 + Duration::from_secs(100)), "never more than the burst");
        assert!(r.allow("a", 1 << 30, 0.0, 0.0, t0), "rate 0 disables the limit");
    }

    #[test]
    fn overrides_apply_per_tenant_and_reload() {
        let store = LimitsStore::new(TenantLimits::default());
        assert_eq!(store.get("t").max_label_names_per_series, 30);
        let o = Limits { max_label_names_per_series: 5, ..Limits::default() };
        store.set(TenantLimits { defaults: Limits::default(), overrides: HashMap::from([("t".to_owned(), o)]) });
        assert_eq!(store.get("t").max_label_names_per_series, 5);
        assert_eq!(store.get("u").max_label_names_per_series, 30);
    }
}
