//! Default CPU and memory per component from the cluster's size preset
//! (`spec.size`), merged key by key with the component's own
//! `pod.resources`. Memory has a limit (an OOM kill is better than a node
//! under pressure); CPU has none (a throttled segment writer misses its
//! flush deadline, a throttled metastore its heartbeats).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use phlox_crds::v1alpha1::Size;

use crate::names::Component;

/// (CPU request, memory request, memory limit) of `c` at `size`.
pub fn preset(size: Size, c: Component) -> Option<(&'static str, &'static str, &'static str)> {
    use Component::*;
    Some(match (size, c) {
        (Size::None, _) => return None,
        (Size::Small, Distributor) => ("250m", "512Mi", "1Gi"),
        (Size::Small, SegmentWriter) => ("500m", "1Gi", "2Gi"),
        (Size::Small, Metastore) => ("100m", "256Mi", "1Gi"),
        (Size::Small, QueryFrontend) => ("100m", "256Mi", "1Gi"),
        (Size::Small, QueryBackend) => ("500m", "1Gi", "2Gi"),
        (Size::Small, CompactionWorker) => ("250m", "512Mi", "2Gi"),
        (Size::Medium, Distributor) => ("1", "1Gi", "2Gi"),
        (Size::Medium, SegmentWriter) => ("1", "2Gi", "4Gi"),
        (Size::Medium, Metastore) => ("500m", "1Gi", "2Gi"),
        (Size::Medium, QueryFrontend) => ("500m", "512Mi", "2Gi"),
        (Size::Medium, QueryBackend) => ("2", "4Gi", "8Gi"),
        (Size::Medium, CompactionWorker) => ("1", "2Gi", "4Gi"),
        (Size::Large, Distributor) => ("2", "2Gi", "4Gi"),
        (Size::Large, SegmentWriter) => ("2", "4Gi", "8Gi"),
        (Size::Large, Metastore) => ("1", "2Gi", "4Gi"),
        (Size::Large, QueryFrontend) => ("1", "1Gi", "4Gi"),
        (Size::Large, QueryBackend) => ("4", "8Gi", "16Gi"),
        (Size::Large, CompactionWorker) => ("2", "4Gi", "8Gi"),
    })
}

/// The resources of `c`'s container: the preset, with every key the spec
/// sets taken from the spec.
pub(crate) fn resources(size: Size, c: Component, own: Option<&ResourceRequirements>) -> Option<ResourceRequirements> {
    let Some((cpu, memory, memory_limit)) = preset(size, c) else {
        return own.cloned();
    };
    let q = |v: &str| Quantity(v.to_owned());
    let mut requests = BTreeMap::from([("cpu".to_owned(), q(cpu)), ("memory".to_owned(), q(memory))]);
    let mut limits = BTreeMap::from([("memory".to_owned(), q(memory_limit))]);
    if let Some(own) = own {
        requests.extend(own.requests.clone().unwrap_or_default());
        limits.extend(own.limits.clone().unwrap_or_default());
    }
    Some(ResourceRequirements {
        requests: Some(requests),
        limits: Some(limits),
        claims: own.and_then(|o| o.claims.clone()),
    })
}
