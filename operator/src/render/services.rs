//! Services: client Services for what other pods and users call, headless
//! Services for the StatefulSets' stable DNS names.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::names::{Component, GRPC_PORT, HTTP_PORT, Names};

fn port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_owned()),
        port,
        target_port: Some(IntOrString::String(name.to_owned())),
        protocol: Some("TCP".into()),
        app_protocol: Some(if name == "grpc" { "grpc".into() } else { "http".into() }),
        ..Default::default()
    }
}

fn service(names: &Names, c: Component, name: String, headless: bool, not_ready: bool) -> Service {
    Service {
        metadata: super::meta(names, name, Some(c)),
        spec: Some(ServiceSpec {
            selector: Some(names.selector(c)),
            ports: Some(vec![port("http", HTTP_PORT), port("grpc", GRPC_PORT)]),
            cluster_ip: headless.then(|| "None".to_owned()),
            // Raft peers and writers must resolve each other before they are ready.
            publish_not_ready_addresses: not_ready.then_some(true),
            type_: Some("ClusterIP".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Every Service of a cluster. Users point SDKs and Alloy at
/// `<cluster>-distributor:4040` and Grafana at `<cluster>-query-frontend:4040`.
pub(crate) fn services(names: &Names) -> Vec<Service> {
    let mut out: Vec<Service> = [Component::Distributor, Component::QueryFrontend, Component::Metastore]
        .into_iter()
        .map(|c| service(names, c, names.component(c), false, false))
        .collect();
    // Query frontends resolve this name to every ready backend and spread
    // leaves over them (re-resolving every few seconds): a ClusterIP would
    // pin each frontend's HTTP/2 channel to one backend.
    out.push(service(names, Component::QueryBackend, names.component(Component::QueryBackend), true, false));
    for c in [Component::Metastore, Component::SegmentWriter] {
        out.push(service(names, c, names.headless(c), true, true));
    }
    out
}
