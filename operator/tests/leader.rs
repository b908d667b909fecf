//! Leader election on a Lease against the in-memory API.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::Api;
use kube_fake_client::ClientBuilder;
use phlox_operator::{LeaseConfig, can_take, try_acquire};

fn cfg(identity: &str) -> LeaseConfig {
    LeaseConfig {
        name: "phlox-operator".into(),
        namespace: "phlox-system".into(),
        identity: identity.into(),
        lease_duration: Duration::from_secs(15),
        renew_every: Duration::from_secs(5),
    }
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
