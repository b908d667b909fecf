//! StatefulSet changes the API does not allow in place.
//!
//! A StatefulSet's `volumeClaimTemplates`, `serviceName`,
//! `podManagementPolicy` and `selector` are immutable. When the desired
//! ones differ from the live ones:
//! - a larger volume is applied to every existing claim of the template
//!   (volume expansion; the StorageClass must allow it, else the API's
//!   refusal is reported), a smaller one is refused (volumes do not shrink);
//! - then the StatefulSet is deleted with `propagationPolicy: Orphan` (its
//!   pods and claims keep running, unowned) and recreated by the next
//!   reconcile with the new spec; it adopts the running pods by their labels
//!   and rolls them only if their template changed.
//!
//! Claims made before a storage class change keep their class.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PropagationPolicy};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::apply::holds;
use crate::{Error, Result};

/// What to do with a desired StatefulSet before applying it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prepared {
    /// Apply it (nothing immutable changed, or it does not exist).
    Apply,
    /// The old one is being deleted (orphaning its pods): apply it once it is gone.
    Recreating(String),
}

/// A Kubernetes quantity in bytes (`10Gi`, `500M`, `1e9`); `None` when not one.
pub fn quantity_bytes(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q.find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E').unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let n: f64 = number.parse().ok()?;
    let scale = match suffix {
        "" => 1.0,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "m" => 1e-3,
        _ => return None,
    };
    Some(n * scale)
}

fn storage_request(claim: &PersistentVolumeClaim) -> Option<String> {
    claim.spec.as_ref()?.resources.as_ref()?.requests.as_ref()?.get("storage").map(|q| q.0.clone())
}

/// The immutable part of a StatefulSet's spec that this operator sets.
fn immutable(s: &StatefulSet) -> Result<serde_json::Value> {
    let spec = s.spec.clone().unwrap_or_default();
    Ok(json!({
        "volumeClaimTemplates": serde_json::to_value(spec.volume_claim_templates.unwrap_or_default())?,
        "serviceName": spec.service_name,
        "podManagementPolicy": spec.pod_management_policy,
        "selector": serde_json::to_value(spec.selector)?,
    }))
}

/// Makes room for `desired` when it changes an immutable field of the live
/// StatefulSet: expands the claims that grow, then orphan-deletes the old
/// StatefulSet. A shrinking volume is an error naming the claim.
pub async fn prepare(client: &Client, ns: &str, desired: &StatefulSet) -> Result<Prepared> {
    let name = desired.name_any();
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let Some(live) = api.get_opt(&name).await? else { return Ok(Prepared::Apply) };
    let owner = desired.owner_references().first().map(|o| o.uid.clone());
    if !live.owner_references().iter().any(|o| Some(&o.uid) == owner.as_ref()) {
        // Not ours: `apply` reports it.
        return Ok(Prepared::Apply);
    }
    if live.metadata.deletion_timestamp.is_some() {
        return Ok(Prepared::Recreating(format!("waiting for the old StatefulSet {name} to be deleted")));
    }
    let live_fields = immutable(&live)?;
    let desired_fields = immutable(desired)?;
    // Fields the API server defaults inside the claim templates (status,
    // volumeMode...) are not ours to compare: `holds` looks at what we set.
    if holds(&live_fields, &desired_fields) {
        return Ok(Prepared::Apply);
    }
    let mut reasons = Vec::new();
    let live_claims = live.spec.as_ref().and_then(|s| s.volume_claim_templates.clone()).unwrap_or_default();
    let desired_claims = desired.spec.as_ref().and_then(|s| s.volume_claim_templates.clone()).unwrap_or_default();
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    for want in &desired_claims {
        let claim = want.name_any();
        let Some(have) = live_claims.iter().find(|c| c.name_any() == claim) else { continue };
        let (Some(from), Some(to)) = (storage_request(have), storage_request(want)) else { continue };
        let (Some(from_b), Some(to_b)) = (quantity_bytes(&from), quantity_bytes(&to)) else {
            return Err(Error::InvalidSpec(format!("volume size {to:?} of {name}/{claim} is not a quantity")));
        };
        if to_b < from_b {
            return Err(Error::InvalidSpec(format!(
                "the {claim} volumes of {name} cannot shrink from {from} to {to} (volumes only grow): keep {from} or more"
            )));
        }
        if to_b > from_b {
            // The claims of every ordinal: `<claim>-<statefulset>-<ordinal>`.
            let prefix = format!("{claim}-{name}-");
            let selector = want
                .metadata
                .labels
                .as_ref()
                .map(|l| l.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","))
                .unwrap_or_default();
            let existing = pvcs.list(&ListParams::default().labels(&selector)).await?.items;
            for pvc in existing.iter().filter(|p| {
                p.name_any()
                    .strip_prefix(&prefix)
                    .is_some_and(|o| !o.is_empty() && o.bytes().all(|b| b.is_ascii_digit()))
            }) {
                let current = storage_request(pvc).and_then(|q| quantity_bytes(&q)).unwrap_or(0.0);
                if current < to_b {
                    let patch = json!({"spec": {"resources": {"requests": {"storage": to}}}});
                    pvcs.patch(&pvc.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
                }
            }
            reasons.push(format!("{claim} volumes grow from {from} to {to}"));
        }
    }
    if reasons.is_empty() {
        reasons.push("a claim template, serviceName, podManagementPolicy or selector changed".to_owned());
    }
    let orphan = DeleteParams { propagation_policy: Some(PropagationPolicy::Orphan), ..Default::default() };
    api.delete(&name, &orphan).await?;
    Ok(Prepared::Recreating(format!("StatefulSet {name} is recreated ({}); its pods keep running", reasons.join("; "))))
}

#[cfg(test)]
mod tests {
    use super::quantity_bytes;

    #[test]
    fn quantities_in_bytes() {
        assert_eq!(quantity_bytes("10Gi"), Some(10.0 * 1024.0 * 1024.0 * 1024.0));
        assert_eq!(quantity_bytes("500M"), Some(500e6));
        assert_eq!(quantity_bytes("1e9"), Some(1e9));
        assert_eq!(quantity_bytes("1.5Ti"), Some(1.5 * 1024f64.powi(4)));
        assert_eq!(quantity_bytes("123"), Some(123.0));
        assert_eq!(quantity_bytes("10GB"), None);
        assert_eq!(quantity_bytes("Gi"), None);
    }
}
