//! What a cluster offers to its operators' tooling: Prometheus Operator
//! objects (a PodMonitor per component, a PrometheusRule with the mixin's
//! alerts scoped to the cluster's namespace) and an Ingress.

use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule, IngressServiceBackend, IngressSpec,
    IngressTLS, ServiceBackendPort,
};
use kube::core::{ApiResource, DynamicObject};
use phlox_crds::v1alpha1::PyroscopeCluster;
use serde_json::json;

use crate::names::{Component, Names};
use crate::{Error, Result};

fn monitoring_resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: "monitoring.coreos.com".into(),
        version: "v1".into(),
        api_version: "monitoring.coreos.com/v1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// The Prometheus Operator's `PodMonitor`.
pub(crate) fn pod_monitor_resource() -> ApiResource {
    monitoring_resource("PodMonitor", "podmonitors")
}

/// The Prometheus Operator's `PrometheusRule`.
pub(crate) fn prometheus_rule_resource() -> ApiResource {
    monitoring_resource("PrometheusRule", "prometheusrules")
}

/// One PodMonitor per component: its pods' `/metrics` on the `http` port,
/// with the pod and the component as target labels.
pub(crate) fn pod_monitors(cr: &PyroscopeCluster, names: &Names) -> Vec<DynamicObject> {
    let spec = &cr.spec.monitoring.pod_monitor;
    if !spec.enabled {
        return Vec::new();
    }
    Component::ALL
        .iter()
        .map(|&c| {
            let mut m = DynamicObject::new(&names.component(c), &pod_monitor_resource()).within(&names.namespace);
            let mut labels = names.labels(Some(c));
            labels.extend(spec.labels.clone());
            m.metadata.labels = Some(labels);
            let mut endpoint = json!({"port": "http", "path": "/metrics", "scheme": "http"});
            if let Some(interval) = &spec.interval {
                endpoint["interval"] = json!(interval);
            }
            m.data = json!({"spec": {
                "selector": {"matchLabels": names.selector(c)},
                "namespaceSelector": {"matchNames": [names.namespace]},
                "podTargetLabels": ["app.kubernetes.io/component", "app.kubernetes.io/instance"],
                "podMetricsEndpoints": [endpoint],
            }});
            m
        })
        .collect()
}

/// The mixin's alerting rules, each expression restricted to this
/// cluster's namespace.
pub(crate) fn prometheus_rule(cr: &PyroscopeCluster, names: &Names) -> Result<Option<DynamicObject>> {
    let spec = &cr.spec.monitoring.prometheus_rule;
    if !spec.enabled {
        return Ok(None);
    }
    let mut groups: serde_json::Value =
        serde_yaml::from_str(crate::mixin::ALERTS).map_err(|e| Error::InvalidSpec(format!("the alerts: {e}")))?;
    for group in groups["groups"].as_array_mut().into_iter().flatten() {
        group["name"] = json!(format!("{}-{}", names.cluster, group["name"].as_str().unwrap_or("phlox")));
        for rule in group["rules"].as_array_mut().into_iter().flatten() {
            if let Some(expr) = rule["expr"].as_str() {
                rule["expr"] = json!(crate::mixin::scoped_to_namespace(expr, &names.namespace));
            }
        }
    }
    let mut r = DynamicObject::new(&names.cluster, &prometheus_rule_resource()).within(&names.namespace);
    let mut labels = names.labels(None);
    labels.extend(spec.labels.clone());
    r.metadata.labels = Some(labels);
    r.data = json!({ "spec": groups });
    Ok(Some(r))
}

/// The paths that write (to the distributors); everything else goes to
/// the query frontends.
const WRITE_PATHS: [(&str, &str); 5] = [
    ("/push.v1.PusherService/", "Prefix"),
    ("/ingest", "Exact"),
    ("/pyroscope/ingest", "Exact"),
    ("/opentelemetry.proto.collector.profiles.v1development.ProfilesService/", "Prefix"),
    ("/v1development/profiles", "Exact"),
];

/// The Ingress of `spec.ingress`.
pub(crate) fn ingress(cr: &PyroscopeCluster, names: &Names) -> Option<Ingress> {
    let spec = cr.spec.ingress.as_ref()?;
    let backend = |c: Component| IngressBackend {
        service: Some(IngressServiceBackend {
            name: names.component(c),
            port: Some(ServiceBackendPort { name: Some("http".into()), number: None }),
        }),
        resource: None,
    };
    let mut paths: Vec<HTTPIngressPath> = WRITE_PATHS
        .iter()
        .map(|(path, kind)| HTTPIngressPath {
            path: Some((*path).to_owned()),
            path_type: (*kind).to_owned(),
            backend: backend(Component::Distributor),
        })
        .collect();
    paths.push(HTTPIngressPath {
        path: Some("/".into()),
        path_type: "Prefix".into(),
        backend: backend(Component::QueryFrontend),
    });
    let host = (!spec.host.is_empty()).then(|| spec.host.clone());
    let mut meta = super::meta(names, names.cluster.clone(), None);
    if !spec.annotations.is_empty() {
        meta.annotations = Some(spec.annotations.clone());
    }
    Some(Ingress {
        metadata: meta,
        spec: Some(IngressSpec {
            ingress_class_name: spec.class_name.clone(),
            rules: Some(vec![IngressRule { host: host.clone(), http: Some(HTTPIngressRuleValue { paths }) }]),
            tls: spec
                .tls_secret_name
                .as_ref()
                .map(|secret| vec![IngressTLS { hosts: host.map(|h| vec![h]), secret_name: Some(secret.clone()) }]),
            ..Default::default()
        }),
        status: None,
    })
}
