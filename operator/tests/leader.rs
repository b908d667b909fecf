//! Leader election on a Lease against the in-memory API.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::Api;
use kube_fake_client::ClientBuilder;
use kube_fake_client::interceptor;
use phlox_operator::{LeaseConfig, Metrics, can_take, lead, release, try_acquire};

fn cfg(identity: &str) -> LeaseConfig {
    LeaseConfig::new("phlox-operator".into(), "phlox-system".into(), identity.into())
}

#[tokio::test]
async fn one_replica_leads_and_the_other_waits() {
    let client = ClientBuilder::new().build().await.unwrap();
    let api: Api<Lease> = Api::namespaced(client, "phlox-system");
    assert!(try_acquire(&api, &cfg("a")).await.unwrap(), "a takes the free lease");
    assert!(!try_acquire(&api, &cfg("b")).await.unwrap(), "b waits while a renews");
    assert!(try_acquire(&api, &cfg("a")).await.unwrap(), "a renews");
    let lease = api.get("phlox-operator").await.unwrap().spec.unwrap();
    assert_eq!(lease.holder_identity.as_deref(), Some("a"));
    assert_eq!(lease.lease_duration_seconds, Some(15));
    assert_eq!(lease.lease_transitions, Some(0));
}

#[tokio::test]
async fn an_expired_lease_is_taken_over() {
    let stale = Timestamp::now() - SignedDuration::from_secs(60);
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some("phlox-operator".into()),
            namespace: Some("phlox-system".into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some("a".into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(stale)),
            acquire_time: Some(MicroTime(stale)),
            lease_transitions: Some(3),
            ..Default::default()
        }),
    };
    let client = ClientBuilder::new().with_object(lease).build().await.unwrap();
    let api: Api<Lease> = Api::namespaced(client, "phlox-system");
    assert!(try_acquire(&api, &cfg("b")).await.unwrap());
    let spec = api.get("phlox-operator").await.unwrap().spec.unwrap();
    assert_eq!((spec.holder_identity.as_deref(), spec.lease_transitions), (Some("b"), Some(4)));
}

#[test]
fn a_lease_is_free_when_unheld_mine_or_expired() {
    let now = Timestamp::now();
    let held = |holder: &str, ago: i64| Lease {
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(now - SignedDuration::from_secs(ago))),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(can_take(&Lease::default(), "me", now));
    assert!(can_take(&held("me", 1), "me", now));
    assert!(!can_take(&held("other", 1), "me", now));
    assert!(can_take(&held("other", 16), "me", now));
}

/// A leader shutting down hands the lease over: the next candidate takes it
/// at once instead of waiting for it to expire.
#[tokio::test]
async fn a_released_lease_is_taken_at_once() {
    let client = ClientBuilder::new().build().await.unwrap();
    let api: Api<Lease> = Api::namespaced(client, "phlox-system");
    assert!(try_acquire(&api, &cfg("a")).await.unwrap());
    assert!(!try_acquire(&api, &cfg("b")).await.unwrap(), "held by a");
    assert!(!release(&api, &cfg("b")).await.unwrap(), "b cannot release what a holds");
    assert!(release(&api, &cfg("a")).await.unwrap());
    let spec = api.get("phlox-operator").await.unwrap().spec.unwrap();
    assert_eq!((spec.holder_identity, spec.lease_duration_seconds), (None, Some(1)));
    assert!(try_acquire(&api, &cfg("b")).await.unwrap(), "b takes it right away");
    let spec = api.get("phlox-operator").await.unwrap().spec.unwrap();
    assert_eq!((spec.holder_identity.as_deref(), spec.lease_transitions), (Some("b"), Some(1)));
}

/// A leader whose renewals fail stops leading once the renew deadline (10 s)
/// has passed since its last renewal: before the lease (15 s) can be taken by
/// another replica. Virtual time: the deadline, not the machine, decides.
#[tokio::test(start_paused = true)]
async fn a_leader_that_cannot_renew_stops_before_the_lease_expires() {
    let funcs = interceptor::Funcs::new()
        .replace(|_| Err(kube_fake_client::Error::Internal("injected: the API server is unreachable".into())));
    let client = ClientBuilder::new().with_interceptor_funcs(funcs).build().await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let started = tokio::time::Instant::now();
    let leading = tokio::spawn(lead(client, cfg("a"), Metrics::new().unwrap(), tx));
    rx.await.expect("a leads: the lease was free");
    let acquired = started.elapsed();
    tokio::time::timeout(Duration::from_secs(60), leading).await.expect("lead returns").unwrap();
    let held = started.elapsed() - acquired;
    assert!(held >= Duration::from_secs(10), "stopped after {held:?}, before the deadline");
    assert!(held < Duration::from_secs(15), "stopped after {held:?}: the lease could be taken already");
}
