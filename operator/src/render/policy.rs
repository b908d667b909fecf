//! PodDisruptionBudgets, the NetworkPolicy and the ServiceAccount.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use phlox_crds::v1alpha1::PyroscopeCluster;

use crate::names::{ADMIN_PORT, Component, GRPC_PORT, HTTP_PORT, Names};

/// cert-manager's `Certificate` (a CRD, so a dynamic object).
pub(crate) fn certificate_resource() -> kube::core::ApiResource {
    kube::core::ApiResource {
        group: "cert-manager.io".into(),
        version: "v1".into(),
        api_version: "cert-manager.io/v1".into(),
        kind: "Certificate".into(),
        plural: "certificates".into(),
    }
}

/// The components' gRPC certificate when `grpcTls.issuerRef` asks
/// cert-manager for it: one name (the one peers are checked against),
/// usable to serve and to dial, its key rotated on every renewal.
pub(crate) fn grpc_certificate(cr: &PyroscopeCluster, names: &Names) -> Option<kube::core::DynamicObject> {
    let issuer = cr.spec.grpc_tls.as_ref()?.issuer_ref.as_ref()?;
    let mut cert =
        kube::core::DynamicObject::new(&names.grpc_tls_certificate(), &certificate_resource()).within(&names.namespace);
    cert.metadata.labels = Some(names.labels(None));
    cert.data = serde_json::json!({"spec": {
        "secretName": names.grpc_tls_certificate(),
        "dnsNames": [names.grpc_tls_name()],
        "usages": ["server auth", "client auth", "digital signature", "key encipherment"],
        "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
        "issuerRef": {"name": issuer.name, "kind": issuer.kind, "group": issuer.group},
    }});
    Some(cert)
}

/// The labels of the operator's pods (Helm chart and kustomize alike).
fn operator_pods() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/component".to_owned(), "operator".to_owned()),
        ("app.kubernetes.io/part-of".to_owned(), "phlox".to_owned()),
    ])
}

/// Ingress to the cluster's pods: gRPC (metastore, Raft, writers, backends)
/// from the cluster's own pods; the admin port (deletes, drain, membership)
/// from the operator's pods; the public port from anywhere, or from the
/// namespaces the spec lists. Nothing else.
pub(crate) fn network_policy(cr: &PyroscopeCluster, names: &Names) -> Option<NetworkPolicy> {
    let spec = &cr.spec.network_policy;
    if !spec.enabled {
        return None;
    }
    let port = |p: i32| NetworkPolicyPort {
        port: Some(IntOrString::Int(p)),
        protocol: Some("TCP".into()),
        ..Default::default()
    };
    let pods = |labels: BTreeMap<String, String>| LabelSelector { match_labels: Some(labels), ..Default::default() };
    let own = BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "phlox".to_owned()),
        ("app.kubernetes.io/instance".to_owned(), names.cluster.clone()),
    ]);
    let public_from = (!spec.public_namespaces.is_empty()).then(|| {
        spec.public_namespaces
            .iter()
            .map(|ns| NetworkPolicyPeer {
                namespace_selector: Some(pods(BTreeMap::from([(
                    "kubernetes.io/metadata.name".to_owned(),
                    ns.clone(),
                )]))),
                ..Default::default()
            })
            .collect()
    });
    Some(NetworkPolicy {
        metadata: super::meta(names, names.cluster.clone(), None),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(pods(own.clone())),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![
                NetworkPolicyIngressRule {
                    ports: Some(vec![port(GRPC_PORT)]),
                    from: Some(vec![NetworkPolicyPeer { pod_selector: Some(pods(own)), ..Default::default() }]),
                },
                NetworkPolicyIngressRule {
                    ports: Some(vec![port(ADMIN_PORT)]),
                    from: Some(vec![NetworkPolicyPeer {
                        namespace_selector: Some(LabelSelector::default()),
                        pod_selector: Some(pods(operator_pods())),
                        ..Default::default()
                    }]),
                },
                NetworkPolicyIngressRule { ports: Some(vec![port(HTTP_PORT)]), from: public_from },
            ]),
            ..Default::default()
        }),
    })
}

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
