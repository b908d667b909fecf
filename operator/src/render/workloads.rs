//! Deployments of the stateless components; StatefulSets of the metastore
//! (identity + volume per voter) and of the segment writers (stable
//! identities: a writer's shards and its drain order follow its ordinal).

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment, RollingUpdateStatefulSetStrategy,
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    EnvVar, PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use phlox_crds::v1alpha1::{PodOptions, PyroscopeCluster, ScalableComponentSpec};

use super::pod::template;
use crate::names::{Component, GRPC_PORT, Names};

/// Pod options and replicas of a component as the spec sets them.
pub fn component_options(cr: &PyroscopeCluster, c: Component) -> (&PodOptions, i32) {
    let s = &cr.spec;
    match c {
        Component::Distributor => (&s.distributor.pod, s.distributor.replicas),
        Component::SegmentWriter => (&s.segment_writer.pod, scaled(&s.segment_writer)),
        Component::Metastore => (&s.metastore.pod, s.metastore.voters),
        Component::QueryFrontend => (&s.query_frontend.pod, s.query_frontend.replicas),
        Component::QueryBackend => (&s.query_backend.pod, scaled(&s.query_backend)),
        Component::CompactionWorker => (&s.compaction_worker.pod, s.compaction_worker.replicas),
    }
}

/// Replicas of a component: the autoscaler's decision when it made one,
/// else the spec's.
pub(crate) fn replicas(cr: &PyroscopeCluster, c: Component, overrides: &crate::autoscale::Replicas) -> i32 {
    overrides.get(&c).copied().unwrap_or_else(|| component_options(cr, c).1)
}

/// Replicas of an autoscaled component before the autoscaler decided:
/// `replicas` kept within [min, max].
fn scaled(s: &ScalableComponentSpec) -> i32 {
    if s.autoscaling.enabled {
        s.replicas.clamp(s.autoscaling.min_replicas, s.autoscaling.max_replicas.max(s.autoscaling.min_replicas))
    } else {
        s.replicas
    }
}

fn selector(names: &Names, c: Component) -> LabelSelector {
    LabelSelector { match_labels: Some(names.selector(c)), ..Default::default() }
}

/// A stateless component's Deployment (surge first: never below the desired count).
pub(crate) fn deployment(
    cr: &PyroscopeCluster,
    names: &Names,
    c: Component,
    config_hash: &str,
    overrides: &crate::autoscale::Replicas,
) -> Deployment {
    let (opts, _) = component_options(cr, c);
    let replicas = replicas(cr, c, overrides);
    Deployment {
        metadata: super::meta(names, names.component(c), Some(c)),
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: selector(names, c),
            template: template(cr, names, c, opts, config_hash, Vec::new()),
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::String("25%".into())),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            revision_history_limit: Some(5),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The segment writers' StatefulSet: stable names, no volume (segments
/// live in the object store once acked), all pods start at once.
pub(crate) fn segment_writer(
    cr: &PyroscopeCluster,
    names: &Names,
    config_hash: &str,
    overrides: &crate::autoscale::Replicas,
) -> StatefulSet {
    let c = Component::SegmentWriter;
    let (opts, _) = component_options(cr, c);
    let replicas = replicas(cr, c, overrides);
    StatefulSet {
        metadata: super::meta(names, names.component(c), Some(c)),
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            service_name: Some(names.headless(c)),
            selector: selector(names, c),
            pod_management_policy: Some("Parallel".into()),
            template: template(cr, names, c, opts, config_hash, Vec::new()),
            revision_history_limit: Some(5),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The metastore's StatefulSet: one Raft voter per pod, node id = ordinal
/// + 1, its own volume, peers from the headless Service's DNS names.
pub(crate) fn metastore(cr: &PyroscopeCluster, names: &Names, config_hash: &str) -> StatefulSet {
    let c = Component::Metastore;
    let (opts, voters) = component_options(cr, c);
    let vol = &cr.spec.metastore.storage;
    let identity = vec![
        EnvVar { name: "PHLOX_METASTORE_NODE_ID".into(), value: Some("auto".into()), value_from: None },
        EnvVar {
            name: "PHLOX_METASTORE_ADVERTISE_ADDRESS".into(),
            value: Some(format!("$(POD_NAME).{}.{}.svc:{GRPC_PORT}", names.headless(c), names.namespace)),
            value_from: None,
        },
    ];
    let claim = PersistentVolumeClaim {
        metadata: ObjectMeta { name: Some("data".into()), labels: Some(names.selector(c)), ..Default::default() },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: vol.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some([("storage".to_owned(), Quantity(vol.size.clone()))].into()),
                limits: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let policy = if vol.delete_with_cluster { "Delete" } else { "Retain" };
    StatefulSet {
        metadata: super::meta(names, names.component(c), Some(c)),
        spec: Some(StatefulSetSpec {
            replicas: Some(voters),
            service_name: Some(names.headless(c)),
            selector: selector(names, c),
            // Voters must all start to elect a leader; ordered start-up would wait forever.
            pod_management_policy: Some("Parallel".into()),
            template: template(cr, names, c, opts, config_hash, identity),
            // One voter at a time, the next only once the replaced one is
            // ready, i.e. back in a healthy Raft group (its `/ready`).
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateStatefulSetStrategy {
                    max_unavailable: Some(IntOrString::Int(1)),
                    partition: None,
                }),
            }),
            volume_claim_templates: Some(vec![claim]),
            persistent_volume_claim_retention_policy: Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
                when_deleted: Some(policy.into()),
                when_scaled: Some("Retain".into()),
            }),
            revision_history_limit: Some(5),
            ..Default::default()
        }),
        ..Default::default()
    }
}
