//! PodDisruptionBudgets and the ServiceAccount.

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use phlox_crds::v1alpha1::PyroscopeCluster;

use crate::names::{Component, Names};

/// A PDB per component with more than one pod: one pod at a time may be
/// evicted, and for the metastore never more than keeps a Raft majority
/// (1 of 3, 2 of 5). Single-pod components get none: a PDB would block
/// every node drain.
pub(crate) fn pdb(names: &Names, c: Component, replicas: i32) -> Option<PodDisruptionBudget> {
    if replicas < 2 {
        return None;
    }
    let max_unavailable = if c == Component::Metastore { ((replicas - 1) / 2).max(1) } else { 1 };
    Some(PodDisruptionBudget {
        metadata: super::meta(names, names.component(c), Some(c)),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(max_unavailable)),
            selector: Some(LabelSelector { match_labels: Some(names.selector(c)), ..Default::default() }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// The identity of every pod. No API permissions are bound to it; its
/// annotations come from `spec.serviceAccountAnnotations` (IRSA, Workload
/// Identity).
pub(crate) fn service_account(cr: &PyroscopeCluster, names: &Names) -> ServiceAccount {
    let mut metadata = super::meta(names, names.service_account(), None);
    if !cr.spec.service_account_annotations.is_empty() {
        metadata.annotations = Some(cr.spec.service_account_annotations.clone());
    }
    ServiceAccount { metadata, automount_service_account_token: Some(false), ..Default::default() }
}
