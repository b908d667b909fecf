//! Tenant limits from the configuration, and their reload without restart.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use phlox_config::PhloxConfig;
use phlox_distributor::{Limits, LimitsStore, TenantLimits};
use tracing::{info, warn};

pub(crate) fn tenant_limits(config: &PhloxConfig) -> anyhow::Result<TenantLimits> {
    let overrides: HashMap<String, Limits> =
        config.tenant_limits()?.iter().map(|(t, l)| (t.clone(), Limits::from(l))).collect();
    Ok(TenantLimits { defaults: Limits::from(&config.limits), overrides })
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
