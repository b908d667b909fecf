use std::time::Duration;

/// Per-tenant ingest limits (defaults as Pyroscope's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Uncompressed size of one profile.
    pub max_profile_size_bytes: usize,
    pub max_profile_stacktrace_samples: usize,
    pub max_profile_stacktrace_sample_labels: usize,
    pub max_label_names_per_series: usize,
    pub max_label_name_length: usize,
    pub max_label_value_length: usize,
    /// Profiles older than this (by their own timestamp) are rejected.
    pub reject_older_than: Duration,
    /// Profiles newer than now plus this are rejected.
    pub reject_newer_than: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_profile_size_bytes: 4 * 1024 * 1024,
            max_profile_stacktrace_samples: 16_000,
            max_profile_stacktrace_sample_labels: 100,
            max_label_names_per_series: 30,
            max_label_name_length: 1024,
            max_label_value_length: 2048,
            reject_older_than: Duration::from_secs(3600),
            reject_newer_than: Duration::from_secs(600),
        }
    }
}
