//! Tenant limits from the configuration, and their reload without restart.

use std::collections::HashMap;
use std::sync::Arc;

use phlox_config::PhloxConfig;
use phlox_distributor::{Limits, LimitsStore, TenantLimits};
use tracing::{info, warn};

use crate::reload::Current;

pub(crate) fn tenant_limits(config: &PhloxConfig) -> anyhow::Result<TenantLimits> {
    let overrides: HashMap<String, Limits> =
        config.tenant_limits()?.iter().map(|(t, l)| (t.clone(), Limits::from(l))).collect();
    Ok(TenantLimits { defaults: Limits::from(&config.limits), overrides })
}

/// Applies the limits of each new configuration when they changed.
pub(crate) fn follow(config: Current, store: Arc<LimitsStore>, mut current: TenantLimits) {
    crate::reload::on_change(config, move |c| match tenant_limits(c) {
        Ok(next) if next != current => {
            info!(tenants = next.overrides.len(), "limits reloaded");
            store.set(next.clone());
            current = next;
        }
        Ok(_) => {}
        Err(error) => warn!(%error, "invalid limits in the new configuration; keeping the current ones"),
    });
}
