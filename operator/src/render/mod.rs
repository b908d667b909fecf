//! The desired children of a PyroscopeCluster: pure functions of the spec,
//! so they can be rendered (`phlox-operator render`) and tested without an
//! API server.

mod config_map;
mod monitoring;
mod pod;
mod policy;
mod resources;
mod services;
mod workloads;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use phlox_crds::v1alpha1::PyroscopeCluster;
use serde::Serialize;

pub use config_map::phlox_config;
pub(crate) use monitoring::{pod_monitor_resource, prometheus_rule_resource};
pub(crate) use policy::certificate_resource;
pub use resources::preset;
pub use workloads::component_options;

use crate::names::{Component, Names};
use crate::{Error, Result};

/// Metadata of a child: name, namespace, labels (owner added by [`desired`]).
fn meta(names: &Names, name: String, c: Option<Component>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(names.namespace.clone()),
        labels: Some(names.labels(c)),
        ..Default::default()
    }
}

/// Every object a PyroscopeCluster owns, in apply order (configuration
/// and identities before the workloads that use them).
#[derive(Debug, Clone, Default)]
pub struct Children {
    pub service_account: ServiceAccount,
    pub config_map: ConfigMap,
    pub services: Vec<Service>,
    pub stateful_sets: Vec<StatefulSet>,
    pub deployments: Vec<Deployment>,
    pub pdbs: Vec<PodDisruptionBudget>,
    /// The cluster's NetworkPolicy (none when `networkPolicy.enabled` is off).
    pub network_policies: Vec<NetworkPolicy>,
    /// cert-manager's Certificate of the gRPC port (`grpcTls.issuerRef`).
    pub certificate: Option<kube::core::DynamicObject>,
    /// The Prometheus Operator's PodMonitors (`monitoring.podMonitor`).
    pub pod_monitors: Vec<kube::core::DynamicObject>,
    /// The PrometheusRule with the alerts (`monitoring.prometheusRule`).
    pub prometheus_rule: Option<kube::core::DynamicObject>,
    /// The Ingress (`ingress`).
    pub ingresses: Vec<Ingress>,
    /// Hash of the config file, set on every pod template.
    pub config_hash: String,
}

/// The owner reference every child carries (garbage collection on delete).
fn owner(cr: &PyroscopeCluster) -> Result<OwnerReference> {
    cr.controller_owner_ref(&()).ok_or(Error::MissingField("metadata.uid"))
}

/// Renders every child of `cr` with the spec's replicas.
pub fn desired(cr: &PyroscopeCluster) -> Result<Children> {
    desired_with(cr, &crate::autoscale::Replicas::new())
}

/// Renders every child of `cr`, with the autoscaler's replicas where it decided.
pub fn desired_with(cr: &PyroscopeCluster, overrides: &crate::autoscale::Replicas) -> Result<Children> {
    let names = Names::of(cr)?;
    let owner = owner(cr)?;
    let (config_map, config) = config_map::config_map(cr, &names)?;
    let hash = config.0;
    let mut c = Children {
        service_account: policy::service_account(cr, &names),
        config_map,
        services: services::services(&names),
        stateful_sets: vec![
            workloads::metastore(cr, &names, &hash),
            workloads::segment_writer(cr, &names, &hash, overrides),
        ],
        deployments: [
            Component::Distributor,
            Component::QueryFrontend,
            Component::QueryBackend,
            Component::CompactionWorker,
        ]
        .into_iter()
        .map(|comp| workloads::deployment(cr, &names, comp, &hash, overrides))
        .collect(),
        pdbs: Component::ALL
            .into_iter()
            .filter_map(|comp| policy::pdb(&names, comp, workloads::replicas(cr, comp, overrides)))
            .collect(),
        network_policies: policy::network_policy(cr, &names).into_iter().collect(),
        certificate: policy::grpc_certificate(cr, &names),
        pod_monitors: monitoring::pod_monitors(cr, &names),
        prometheus_rule: monitoring::prometheus_rule(cr, &names)?,
        ingresses: monitoring::ingress(cr, &names).into_iter().collect(),
        config_hash: hash,
    };
    let set = |m: &mut ObjectMeta| m.owner_references = Some(vec![owner.clone()]);
    set(&mut c.service_account.metadata);
    set(&mut c.config_map.metadata);
    c.services.iter_mut().for_each(|s| set(&mut s.metadata));
    c.stateful_sets.iter_mut().for_each(|s| set(&mut s.metadata));
    c.deployments.iter_mut().for_each(|s| set(&mut s.metadata));
    c.pdbs.iter_mut().for_each(|s| set(&mut s.metadata));
    c.network_policies.iter_mut().for_each(|s| set(&mut s.metadata));
    c.ingresses.iter_mut().for_each(|s| set(&mut s.metadata));
    for dynamic in c.certificate.iter_mut().chain(c.pod_monitors.iter_mut()).chain(c.prometheus_rule.iter_mut()) {
        set(&mut dynamic.metadata);
    }
    Ok(c)
}

/// One document with `apiVersion` and `kind`, as `kubectl apply` takes it.
fn document<K: Resource<DynamicType = ()> + Serialize>(obj: &K) -> Result<serde_json::Value> {
    let mut v = serde_json::to_value(obj)?;
    if let Some(m) = v.as_object_mut() {
        m.insert("apiVersion".into(), K::api_version(&()).into());
        m.insert("kind".into(), K::kind(&()).into());
    }
    Ok(v)
}

impl Children {
    /// Sets `key: value` on the pod template of every workload (a change rolls the pods).
    pub fn annotate_pods(&mut self, key: &str, value: &str) {
        let templates = self
            .stateful_sets
            .iter_mut()
            .filter_map(|s| s.spec.as_mut().map(|s| &mut s.template))
            .chain(self.deployments.iter_mut().filter_map(|d| d.spec.as_mut().map(|s| &mut s.template)));
        for t in templates {
            t.metadata
                .get_or_insert_with(Default::default)
                .annotations
                .get_or_insert_with(Default::default)
                .insert(key.to_owned(), value.to_owned());
        }
    }

    /// Every child as a JSON document (with apiVersion and kind).
    pub fn documents(&self) -> Result<Vec<serde_json::Value>> {
        let mut out = vec![document(&self.service_account)?, document(&self.config_map)?];
        for s in &self.services {
            out.push(document(s)?);
        }
        for s in &self.stateful_sets {
            out.push(document(s)?);
        }
        for d in &self.deployments {
            out.push(document(d)?);
        }
        for p in &self.pdbs {
            out.push(document(p)?);
        }
        for n in &self.network_policies {
            out.push(document(n)?);
        }
        for i in &self.ingresses {
            out.push(document(i)?);
        }
        for dynamic in self.certificate.iter().chain(&self.pod_monitors).chain(&self.prometheus_rule) {
            out.push(serde_json::to_value(dynamic)?);
        }
        Ok(out)
    }

    /// Every child as multi-document YAML.
    pub fn to_yaml(&self) -> Result<String> {
        let mut out = String::new();
        for d in self.documents()? {
            out.push_str("---\n");
            out.push_str(&serde_yaml::to_string(&d).map_err(|e| Error::InvalidSpec(e.to_string()))?);
        }
        Ok(out)
    }
}
