//! Metastore voter changes (`spec.metastore.voters`), orchestrated so that
//! the Raft group is never split and never loses its quorum.
//!
//! ```text
//! grow  R → D   1. claims of ordinals R..D left by earlier voters are deleted
//!                  (a removed voter's old log must not come back)
//!               2. the StatefulSet runs D pods, the config lists D peers;
//!                  the new pods start empty and wait (only the lowest id
//!                  ever initializes a group)
//!               3. the leader adds them as learners, waits until they have
//!                  caught up, then makes them voters (POST /metastore/membership)
//! shrink R → D  1. the leader removes the voters D+1..R from the membership
//!               2. only then the StatefulSet goes down to D pods
//! ```
//!
//! `status.metastoreVoters` records the membership the operator last
//! changed or confirmed; the change is done when it equals the spec.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, ListParams};
use kube::{Client, ResourceExt};
use phlox_crds::v1alpha1::PyroscopeCluster;
use serde::Deserialize;

use crate::Result;
use crate::autoscale::pod_target;
use crate::names::{Component, Names};

/// Longest the operator waits for one membership call (new voters catching
/// up take longer; the next reconcile asks again).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// What this reconcile does about the voters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoterStep {
    /// Voters to render (StatefulSet replicas and peer list).
    pub render: i32,
    /// The membership now confirmed, when it changed.
    pub confirmed: Option<i32>,
    /// A change in progress or failing, for events and the status.
    pub progress: Option<String>,
}

/// A voter's answer to `GET /metastore/membership`.
#[derive(Debug, Clone, Deserialize)]
struct Membership {
    leader: Option<u64>,
    voters: BTreeMap<u64, String>,
}

/// The voters to render now, and the membership calls that get there.
/// `admin_token`: the cluster's, for the voters' membership calls.
pub async fn step(
    client: &Client,
    http: &reqwest::Client,
    cr: &PyroscopeCluster,
    admin_token: &str,
) -> Result<VoterStep> {
    let names = Names::of(cr)?;
    let ns = names.namespace.clone();
    let want = cr.spec.metastore.voters.max(1);
    let sts = names.component(Component::Metastore);
    let running = Api::<StatefulSet>::namespaced(client.clone(), &ns)
        .get_opt(&sts)
        .await?
        .filter(|s| s.owner_references().iter().any(|o| Some(&o.uid) == cr.metadata.uid.as_ref()))
        .and_then(|s| s.spec.and_then(|s| s.replicas));
    let Some(running) = running else {
        // A new cluster: every voter starts, the lowest id initializes them all.
        return Ok(VoterStep { render: want, confirmed: Some(want), progress: None });
    };
    // Before the operator changed voters, the membership is what the
    // cluster was created with.
    let confirmed = cr.status.as_ref().and_then(|s| s.metastore_voters).unwrap_or(running);
    if running == want && confirmed == want {
        return Ok(VoterStep { render: want, confirmed: None, progress: None });
    }
    if want > running {
        // Grow, step 1 and 2: fresh claims, then the pods.
        delete_stale_claims(client, &names, running, want).await?;
        return Ok(VoterStep {
            render: want,
            confirmed: None,
            progress: Some(format!("metastore voters {running} → {want}: starting the new voters")),
        });
    }
    // Grow step 3 (the pods run), or shrink step 1: change the membership.
    let voters: BTreeMap<u64, String> = (0..want).map(|i| (i as u64 + 1, names.metastore_peer(i))).collect();
    match change_membership(client, http, &names, &voters, admin_token).await {
        Ok(()) => Ok(VoterStep { render: want, confirmed: Some(want), progress: None }),
        Err(why) => Ok(VoterStep {
            // A shrink keeps every pod until the membership left them out.
            render: running.max(want),
            confirmed: None,
            progress: Some(format!("metastore voters {confirmed} → {want}: {why}")),
        }),
    }
}

/// Deletes the claims of ordinals `from..to` whose pod does not exist: they
/// hold the log of a voter removed earlier.
async fn delete_stale_claims(client: &Client, names: &Names, from: i32, to: i32) -> Result<()> {
    let ns = &names.namespace;
    let sts = names.component(Component::Metastore);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    for ordinal in from..to {
        let claim = format!("data-{sts}-{ordinal}");
        if pods.get_opt(&format!("{sts}-{ordinal}")).await?.is_none() && pvcs.get_opt(&claim).await?.is_some() {
            tracing::info!(%claim, "deleting the claim of a removed metastore voter before it is re-added");
            pvcs.delete(&claim, &DeleteParams::default()).await?;
        }
    }
    Ok(())
}

/// Asks the leader to make `voters` the membership; finds it through any
/// running voter.
async fn change_membership(
    client: &Client,
    http: &reqwest::Client,
    names: &Names,
    voters: &BTreeMap<u64, String>,
    admin_token: &str,
) -> std::result::Result<(), String> {
    let selector = names.selector(Component::Metastore).iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>();
    let pods = Api::<Pod>::namespaced(client.clone(), &names.namespace)
        .list(&ListParams::default().labels(&selector.join(",")))
        .await
        .map_err(|e| e.to_string())?
        .items;
    let sts = names.component(Component::Metastore);
    let url_of = |node: u64| {
        let name = format!("{sts}-{}", node.saturating_sub(1));
        pods.iter().find(|p| p.name_any() == name).and_then(pod_target).map(|t| t.admin_url)
    };
    // The leader, as the first voter that knows one says.
    let mut leader = None;
    let mut errors = Vec::new();
    for target in pods.iter().filter_map(pod_target) {
        let url = format!("{}/metastore/membership", target.admin_url);
        match get_membership(http, &url, admin_token).await {
            Ok(m) if m.voters.keys().eq(voters.keys()) && m.leader.is_some() => return Ok(()),
            Ok(Membership { leader: Some(l), .. }) => {
                leader = Some(l);
                break;
            }
            Ok(_) => errors.push(format!("{}: no leader known", target.name)),
            Err(e) => errors.push(e),
        }
    }
    let Some(leader) = leader else {
        return Err(format!("no voter knows a leader yet ({})", errors.join("; ")));
    };
    let Some(base) = url_of(leader) else {
        return Err(format!("the leader, node {leader}, has no running pod"));
    };
    let url = format!("{base}/metastore/membership");
    let response = http
        .post(&url)
        .bearer_auth(admin_token)
        .timeout(CALL_TIMEOUT)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(serde_json::json!({ "voters": voters }).to_string())
        .send()
        .await
        .map_err(|e| format!("{url}: {e} (new voters may still be catching up)"))?;
    if response.status().is_success() {
        return Ok(());
    }
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    Err(format!("{url}: HTTP {status}: {}", body.trim()))
}

async fn get_membership(
    http: &reqwest::Client,
    url: &str,
    admin_token: &str,
) -> std::result::Result<Membership, String> {
    let response =
        http.get(url).bearer_auth(admin_token).timeout(CALL_TIMEOUT).send().await.map_err(|e| format!("{url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("{url}: HTTP {}", response.status()));
    }
    let text = response.text().await.map_err(|e| format!("{url}: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("{url}: {e}"))
}
