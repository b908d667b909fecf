//! The configuration as it is now: re-read every `every` and on SIGHUP (a
//! ConfigMap update on Kubernetes) and handed to what applies changes
//! without a restart: limits, provisioned recording rules, retention. A
//! file that fails to load keeps the last good configuration.

use std::sync::Arc;
use std::time::Duration;

use phlox_config::PhloxConfig;
use tokio::sync::watch;
use tracing::warn;

use crate::cli::ConfigLoader;

/// The current configuration; `changed()` wakes on a new one.
pub(crate) type Current = watch::Receiver<Arc<PhloxConfig>>;

/// Starts re-reading with `load` (none: the configuration never changes).
pub(crate) fn watch(initial: PhloxConfig, load: Option<ConfigLoader>, every: Duration) -> Current {
    let (tx, rx) = watch::channel(Arc::new(initial));
    let Some(load) = load else { return rx };
    tokio::spawn(async move {
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            let hangup = async {
                match hup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tick.tick() => {},
                Some(()) = hangup => {},
                () = tx.closed() => return,
            }
            match load() {
                Ok(next) => {
                    tx.send_if_modified(|current| {
                        let changed = **current != next;
                        if changed {
                            *current = Arc::new(next);
                        }
                        changed
                    });
                }
                Err(error) => warn!(%error, "config reload failed; keeping the current configuration"),
            }
        }
    });
    rx
}

/// Calls `apply` with every new configuration.
pub(crate) fn on_change(mut current: Current, mut apply: impl FnMut(&PhloxConfig) + Send + 'static) {
    tokio::spawn(async move {
        while current.changed().await.is_ok() {
            let config = Arc::clone(&current.borrow_and_update());
            apply(&config);
        }
    });
}
