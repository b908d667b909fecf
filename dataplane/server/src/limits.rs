//! Tenant limits from the configuration, and their reload without restart.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use phlox_config::{LimitsConfig, PhloxConfig};
use phlox_distributor::{Limits, LimitsStore, TenantLimits};
use tracing::{info, warn};

fn limits(l: &LimitsConfig) -> Limits {
    Limits {
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

pub(crate) fn tenant_limits(config: &PhloxConfig) -> anyhow::Result<TenantLimits> {
    let overrides: HashMap<String, Limits> =
        config.tenant_limits()?.iter().map(|(t, l)| (t.clone(), limits(l))).collect();
    Ok(TenantLimits { defaults: limits(&config.limits), overrides })
}

/// Re-reads the configuration every `every` and on SIGHUP; applies the
/// limits when they changed. A broken file is reported and ignored.
pub(crate) fn spawn_reload(
    load: Arc<dyn Fn() -> anyhow::Result<PhloxConfig> + Send + Sync>,
    store: Arc<LimitsStore>,
    mut current: TenantLimits,
    every: Duration,
) {
    tokio::spawn(async move {
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {},
                Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {},
            }
            match load().and_then(|c| tenant_limits(&c)) {
                Ok(next) if next != current => {
                    info!(tenants = next.overrides.len(), "limits reloaded");
                    store.set(next.clone());
                    current = next;
                }
                Ok(_) => {}
                Err(error) => warn!(%error, "config reload failed; keeping the current limits"),
            }
        }
    });
}
