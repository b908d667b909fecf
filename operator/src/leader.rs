//! Leader election on a `coordination.k8s.io/v1` Lease, so that several
//! operator replicas can run and exactly one reconciles.
//!
//! A candidate takes the Lease when it is free or expired (optimistic
//! concurrency on its resourceVersion), then renews it. A leader that has
//! not renewed within the renew deadline (shorter than the lease duration,
//! each attempt bounded by it) stops leading before anyone else may take
//! the lease, and the process exits so that it restarts as a candidate. On
//! shutdown the leader releases the lease, so that another replica takes
//! over at once rather than after the lease duration.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use kube::{Client, Error as KubeError};
use tracing::{info, warn};

/// Lease settings.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    pub lease_duration: Duration,
    /// A leader that has not renewed for this long stops leading (shorter
    /// than `lease_duration`, so it stops before another replica may take over).
    pub renew_deadline: Duration,
    pub renew_every: Duration,
}

impl LeaseConfig {
    /// client-go's defaults: 15 s lease, 10 s renew deadline, retry every 2 s.
    pub fn new(name: String, namespace: String, identity: String) -> Self {
        Self {
            name,
            namespace,
            identity,
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            renew_every: Duration::from_secs(2),
        }
    }
}

/// Whether `lease` can be taken by `me` at `now`.
pub fn can_take(lease: &Lease, me: &str, now: Timestamp) -> bool {
    let Some(spec) = &lease.spec else { return true };
    if spec.holder_identity.as_deref().is_none_or(|h| h.is_empty() || h == me) {
        return true;
    }
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
    match &spec.renew_time {
        Some(MicroTime(t)) => *t + duration < now,
        None => true,
    }
}

fn spec(cfg: &LeaseConfig, previous: Option<&LeaseSpec>, now: Timestamp) -> LeaseSpec {
    let same_holder = previous.and_then(|p| p.holder_identity.as_deref()) == Some(cfg.identity.as_str());
    let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(cfg.identity.clone()),
        lease_duration_seconds: Some(cfg.lease_duration.as_secs() as i32),
        acquire_time: if same_holder { previous.and_then(|p| p.acquire_time.clone()) } else { Some(MicroTime(now)) },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(if same_holder || previous.is_none() { transitions } else { transitions + 1 }),
        ..Default::default()
    }
}

/// One attempt to take or renew the lease; true when this replica holds it.
pub async fn try_acquire(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<bool, KubeError> {
    let now = Timestamp::now();
    match api.get_opt(&cfg.name).await? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(cfg.name.clone()), ..Default::default() },
                spec: Some(spec(cfg, None, now)),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(KubeError::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
        Some(lease) if can_take(&lease, &cfg.identity, now) => {
            let mut next = lease.clone();
            next.spec = Some(spec(cfg, lease.spec.as_ref(), now));
            // resourceVersion is kept: a concurrent writer makes this a 409.
            match api.replace(&cfg.name, &PostParams::default(), &next).await {
                Ok(_) => Ok(true),
                Err(KubeError::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
        Some(_) => Ok(false),
    }
}

/// Waits until this replica leads, then keeps renewing; returns when the
/// lease is lost (the caller stops reconciling).
pub async fn lead(
    client: Client,
    cfg: LeaseConfig,
    metrics: crate::metrics::Metrics,
    on_leading: tokio::sync::oneshot::Sender<()>,
) {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let mut on_leading = Some(on_leading);
    let mut last_renewed: Option<tokio::time::Instant> = None;
    loop {
        // A leader's attempt may take at most what is left of its deadline.
        let attempt = match last_renewed {
            Some(t) => cfg.renew_deadline.saturating_sub(t.elapsed()),
            None => cfg.renew_deadline,
        };
        let result = match tokio::time::timeout(attempt, try_acquire(&api, &cfg)).await {
            Ok(r) => r,
            Err(_) => Err(KubeError::Service("the lease request timed out".into())),
        };
        match result {
            Ok(true) => {
                if let Some(tx) = on_leading.take() {
                    info!(lease = %cfg.name, identity = %cfg.identity, "leading");
                    metrics.leader.set(1);
                    let _ = tx.send(());
                }
                last_renewed = Some(tokio::time::Instant::now());
            }
            Ok(false) if last_renewed.is_some() => {
                warn!(lease = %cfg.name, "the lease was taken by another replica");
                metrics.leader.set(0);
                return;
            }
            Ok(false) => {}
            Err(e) => {
                warn!(error = %e, lease = %cfg.name, "cannot reach the lease");
                if last_renewed.is_some_and(|t| t.elapsed() >= cfg.renew_deadline) {
                    warn!(lease = %cfg.name, deadline = ?cfg.renew_deadline, "not renewed within the deadline: no longer leading");
                    metrics.leader.set(0);
                    return;
                }
            }
        }
        tokio::time::sleep(cfg.renew_every).await;
    }
}

/// Gives the lease up when this replica holds it (on shutdown): no holder
/// and a one-second duration, so that a candidate takes it at its next try.
/// Returns whether it was released.
pub async fn release(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<bool, KubeError> {
    let Some(lease) = api.get_opt(&cfg.name).await? else { return Ok(false) };
    let Some(spec) = &lease.spec else { return Ok(false) };
    if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
        return Ok(false);
    }
    let mut next = lease.clone();
    next.spec = Some(LeaseSpec {
        holder_identity: None,
        lease_duration_seconds: Some(1),
        renew_time: Some(MicroTime(Timestamp::now())),
        ..spec.clone()
    });
    match api.replace(&cfg.name, &PostParams::default(), &next).await {
        Ok(_) => {
            info!(lease = %cfg.name, identity = %cfg.identity, "released the lease");
            Ok(true)
        }
        Err(KubeError::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}
