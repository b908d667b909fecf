//! Rendering of the samples: names, labels, selectors, ports, args,
//! probes, resources, volumes and owner references of every object.
#![allow(clippy::unwrap_used)]

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Container, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use phlox_crds::v1alpha1::PyroscopeCluster;
use phlox_operator::{Children, desired, phlox_config};

fn sample(file: &str) -> PyroscopeCluster {
    let path = format!("{}/../config/samples/{file}", env!("CARGO_MANIFEST_DIR"));
    let mut cr: PyroscopeCluster = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    cr.metadata.uid = Some("0b9e7c2e-51b3-4a8f-9c55-1f8c1f0e2a10".into());
    cr
}

fn container(t: &PodTemplateSpec) -> &Container {
    &t.spec.as_ref().unwrap().containers[0]
}

fn deployment<'a>(c: &'a Children, name: &str) -> &'a Deployment {
    c.deployments.iter().find(|d| d.name_any() == name).unwrap()
}

fn sts<'a>(c: &'a Children, name: &str) -> &'a StatefulSet {
    c.stateful_sets.iter().find(|d| d.name_any() == name).unwrap()
}

#[test]
fn the_minimal_sample_renders_every_component() {
    let cr = sample("pyroscopecluster-minimal.yaml");
    let c = desired(&cr).unwrap();
    let docs = c.documents().unwrap();
    assert_eq!(docs.len(), 15);
    // Owner, namespace and the common labels on every object.
    for d in &docs {
        let m = &d["metadata"];
        assert_eq!(m["namespace"], "phlox", "{d}");
        assert_eq!(m["ownerReferences"][0]["kind"], "PyroscopeCluster");
        assert_eq!(m["ownerReferences"][0]["name"], "phlox");
        assert_eq!(m["ownerReferences"][0]["controller"], true);
        assert_eq!(m["labels"]["app.kubernetes.io/instance"], "phlox");
        assert_eq!(m["labels"]["app.kubernetes.io/managed-by"], "phlox-operator");
    }
    let mut kinds: Vec<String> = docs
        .iter()
        .map(|d| format!("{}/{}", d["kind"].as_str().unwrap(), d["metadata"]["name"].as_str().unwrap()))
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        vec![
            "ConfigMap/phlox-config",
            "Deployment/phlox-compaction-worker",
            "Deployment/phlox-distributor",
            "Deployment/phlox-query-backend",
            "Deployment/phlox-query-frontend",
            "NetworkPolicy/phlox",
            "Service/phlox-distributor",
            "Service/phlox-metastore",
            "Service/phlox-metastore-headless",
            "Service/phlox-query-backend",
            "Service/phlox-query-frontend",
            "Service/phlox-segment-writer-headless",
            "ServiceAccount/phlox",
            "StatefulSet/phlox-metastore",
            "StatefulSet/phlox-segment-writer",
        ]
    );

    // Workloads: selector = pod labels, args, ports, probes, config volume.
    let d = deployment(&c, "phlox-distributor");
    let spec = d.spec.as_ref().unwrap();
    let selector = spec.selector.match_labels.clone().unwrap();
    assert_eq!(selector["app.kubernetes.io/component"], "distributor");
    let pod_labels = spec.template.metadata.as_ref().unwrap().labels.clone().unwrap();
    assert!(selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)));
    let ctr = container(&spec.template);
    assert_eq!(ctr.image.as_deref(), Some(phlox_crds::v1alpha1::DEFAULT_IMAGE));
    // A distributor drains its keep-alive clients for 5 s after SIGTERM.
    assert_eq!(
        ctr.args.clone().unwrap(),
        vec!["--target=distributor", "--config=/etc/phlox/phlox.yaml", "--shutdown-delay=5s"]
    );
    let ports: Vec<(String, i32)> =
        ctr.ports.clone().unwrap().into_iter().map(|p| (p.name.unwrap(), p.container_port)).collect();
    assert_eq!(ports, vec![("http".into(), 4040), ("grpc".into(), 9095), ("admin".into(), 4041)]);
    let ready = ctr.readiness_probe.as_ref().unwrap().http_get.as_ref().unwrap();
    assert_eq!((ready.path.as_deref(), &ready.port), (Some("/ready"), &IntOrString::String("http".into())));
    assert!(ctr.liveness_probe.as_ref().unwrap().tcp_socket.is_some());
    let mounts: Vec<(String, String)> =
        ctr.volume_mounts.clone().unwrap().into_iter().map(|m| (m.name, m.mount_path)).collect();
    assert_eq!(
        mounts,
        vec![
            ("config".into(), "/etc/phlox".into()),
            ("data".into(), "/data".into()),
            ("admin-token".into(), "/etc/phlox-admin".into())
        ]
    );
    let volumes = spec.template.spec.as_ref().unwrap().volumes.clone().unwrap();
    assert_eq!(volumes[0].config_map.as_ref().unwrap().name, "phlox-config");
    assert!(volumes[1].empty_dir.is_some());
    assert_eq!(volumes[2].secret.as_ref().unwrap().secret_name.as_deref(), Some("phlox-admin-token"));
    // The admin listener (deletes, drain, membership) takes the mounted token.
    let config: serde_yaml::Value = serde_yaml::from_str(&c.config_map.data.as_ref().unwrap()["phlox.yaml"]).unwrap();
    assert_eq!(config["server"]["admin_listen_address"], "[::]:4041");
    assert_eq!(config["server"]["admin_token_file"], "/etc/phlox-admin/token");
    // Credentials from the Secret, never in the ConfigMap.
    assert_eq!(ctr.env_from.as_ref().unwrap()[0].secret_ref.as_ref().unwrap().name, "phlox-s3");
    assert!(!c.config_map.data.as_ref().unwrap()["phlox.yaml"].contains("secret_access_key: \""));
    // Hardened pods.
    let sc = ctr.security_context.as_ref().unwrap();
    assert_eq!((sc.read_only_root_filesystem, sc.allow_privilege_escalation), (Some(true), Some(false)));
    assert_eq!(spec.template.spec.as_ref().unwrap().service_account_name.as_deref(), Some("phlox"));

    // Services select their component and expose http/grpc by name.
    let svc = c.services.iter().find(|s| s.name_any() == "phlox-query-frontend").unwrap();
    let s = svc.spec.as_ref().unwrap();
    assert_eq!(s.selector.as_ref().unwrap()["app.kubernetes.io/component"], "query-frontend");
    assert_eq!(s.ports.as_ref().unwrap()[0].port, 4040);
    assert_eq!(s.ports.as_ref().unwrap()[0].target_port, Some(IntOrString::String("http".into())));
    let headless = c.services.iter().find(|s| s.name_any() == "phlox-metastore-headless").unwrap();
    let h = headless.spec.as_ref().unwrap();
    assert_eq!((h.cluster_ip.as_deref(), h.publish_not_ready_addresses), (Some("None"), Some(true)));

    // The metastore: one voter, its identity, a volume claim.
    let m = sts(&c, "phlox-metastore").spec.clone().unwrap();
    assert_eq!((m.replicas, m.service_name.as_deref()), (Some(1), Some("phlox-metastore-headless")));
    assert_eq!(m.pod_management_policy.as_deref(), Some("Parallel"));
    let env: Vec<(String, Option<String>)> =
        container(&m.template).env.clone().unwrap().into_iter().map(|e| (e.name, e.value)).collect();
    assert!(env.contains(&("PHLOX_METASTORE_NODE_ID".into(), Some("auto".into()))));
    assert!(env.contains(&(
        "PHLOX_METASTORE_ADVERTISE_ADDRESS".into(),
        Some("$(POD_NAME).phlox-metastore-headless.phlox.svc:9095".into())
    )));
    let claim = &m.volume_claim_templates.unwrap()[0];
    assert_eq!(claim.metadata.name.as_deref(), Some("data"));
    assert_eq!(
        claim.spec.as_ref().unwrap().resources.as_ref().unwrap().requests.as_ref().unwrap()["storage"],
        Quantity("10Gi".into())
    );
    assert_eq!(m.persistent_volume_claim_retention_policy.unwrap().when_deleted.as_deref(), Some("Retain"));

    // Segment writers: stable names, no volume claim, longer grace for the last flush.
    let w = sts(&c, "phlox-segment-writer").spec.clone().unwrap();
    assert_eq!(w.service_name.as_deref(), Some("phlox-segment-writer-headless"));
    assert!(w.volume_claim_templates.is_none());
    assert_eq!(w.template.spec.as_ref().unwrap().termination_grace_period_seconds, Some(60));
    assert!(c.pdbs.is_empty());

    // Every pod template carries the config hash.
    for t in c
        .deployments
        .iter()
        .map(|d| &d.spec.as_ref().unwrap().template)
        .chain(c.stateful_sets.iter().map(|s| &s.spec.as_ref().unwrap().template))
    {
        assert_eq!(
            t.metadata.as_ref().unwrap().annotations.as_ref().unwrap()[phlox_operator::CONFIG_HASH_ANNOTATION],
            c.config_hash
        );
    }
}

#[test]
fn the_production_sample_renders_three_voters_resources_and_budgets() {
    let cr = sample("pyroscopecluster-production-s3.yaml");
    let c = desired(&cr).unwrap();
    let m = sts(&c, "phlox-prod-metastore").spec.clone().unwrap();
    assert_eq!(m.replicas, Some(3));
    let claim = &m.volume_claim_templates.unwrap()[0];
    assert_eq!(claim.spec.as_ref().unwrap().storage_class_name.as_deref(), Some("gp3"));
    let res = container(&m.template).resources.clone().unwrap();
    assert_eq!(res.requests.unwrap()["memory"], Quantity("1Gi".into()));
    assert_eq!(res.limits.unwrap()["memory"], Quantity("2Gi".into()));

    // Raft peers: node ids 1..3 at the voters' stable DNS names.
    let config = phlox_config(&cr, &phlox_operator::Names::of(&cr).unwrap()).unwrap();
    assert_eq!(
        config.metastore.peers,
        vec![
            "1=phlox-prod-metastore-0.phlox-prod-metastore-headless.observability.svc:9095",
            "2=phlox-prod-metastore-1.phlox-prod-metastore-headless.observability.svc:9095",
            "3=phlox-prod-metastore-2.phlox-prod-metastore-headless.observability.svc:9095",
        ]
    );
    assert_eq!(config.metastore.address.as_deref(), Some("phlox-prod-metastore.observability.svc:9095"));
    assert_eq!(config.storage.s3.bucket, "acme-profiles");
    assert_eq!(config.storage.prefix, "prod");
    assert_eq!(config.limits.ingestion_rate_mb, 16.0);
    assert_eq!(config.overrides["team-checkout"]["ingestion_rate_mb"], serde_yaml::Value::from(64.0));
    assert!(config.multitenancy_enabled);

    // Replicas; autoscaled components start within [min, max].
    let replicas = |n: &str| deployment(&c, n).spec.as_ref().unwrap().replicas;
    assert_eq!(replicas("phlox-prod-distributor"), Some(2));
    assert_eq!(replicas("phlox-prod-query-backend"), Some(2));
    assert_eq!(sts(&c, "phlox-prod-segment-writer").spec.as_ref().unwrap().replicas, Some(3));

    // PDBs: one pod at a time, the metastore keeps its majority.
    let mut pdbs: Vec<(String, IntOrString)> =
        c.pdbs.iter().map(|p| (p.name_any(), p.spec.as_ref().unwrap().max_unavailable.clone().unwrap())).collect();
    pdbs.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        pdbs,
        vec![
            ("phlox-prod-compaction-worker".into(), IntOrString::Int(1)),
            ("phlox-prod-distributor".into(), IntOrString::Int(1)),
            ("phlox-prod-metastore".into(), IntOrString::Int(1)),
            ("phlox-prod-query-backend".into(), IntOrString::Int(1)),
            ("phlox-prod-query-frontend".into(), IntOrString::Int(1)),
            ("phlox-prod-segment-writer".into(), IntOrString::Int(1)),
        ]
    );

    // Scheduling options reach the pods.
    let cw = deployment(&c, "phlox-prod-compaction-worker").spec.as_ref().unwrap().template.spec.clone().unwrap();
    assert_eq!(cw.node_selector.unwrap()["node.kubernetes.io/instance-type"], "m6i.xlarge");
    assert_eq!(cw.tolerations.unwrap()[0].key.as_deref(), Some("dedicated"));
    // Without an affinity of their own, pods prefer distinct nodes.
    let qb = deployment(&c, "phlox-prod-query-backend").spec.as_ref().unwrap().template.spec.clone().unwrap();
    assert!(qb.affinity.unwrap().pod_anti_affinity.is_some());
}

#[test]
fn the_config_hash_ignores_overrides_but_not_limits() {
    let mut cr = sample("pyroscopecluster-minimal.yaml");
    let base = desired(&cr).unwrap().config_hash;
    cr.spec
        .overrides
        .insert("t".into(), phlox_crds::v1alpha1::LimitsSpec { ingestion_rate_mb: Some(9.0), ..Default::default() });
    assert_eq!(desired(&cr).unwrap().config_hash, base);
    cr.spec.limits.ingestion_rate_mb = Some(9.0);
    assert_ne!(desired(&cr).unwrap().config_hash, base);
}

#[test]
fn the_symbolizer_and_debuginfo_limits_reach_the_config() {
    let mut cr = sample("pyroscopecluster-minimal.yaml");
    let names = phlox_operator::Names::of(&cr).unwrap();
    let defaults = phlox_config(&cr, &names).unwrap();
    assert_eq!(defaults.symbolizer, phlox_config::SymbolizerConfig::default());
    cr.spec.symbolizer.debuginfod_url = "https://debuginfod.debian.net".into();
    cr.spec.symbolizer.retry_missing = Some("2m".into());
    cr.spec.limits.max_debuginfo_file_bytes = Some(1 << 20);
    cr.spec.limits.max_debuginfo_files = Some(7);
    let config = phlox_config(&cr, &names).unwrap();
    assert_eq!(config.symbolizer.debuginfod_url, "https://debuginfod.debian.net");
    assert_eq!(config.symbolizer.retry_missing, std::time::Duration::from_secs(120));
    assert_eq!((config.limits.max_debuginfo_file_bytes, config.limits.max_debuginfo_files), (1 << 20, 7));
}

#[test]
fn a_spec_the_data_plane_would_refuse_is_an_error_not_a_config_map() {
    let mut cr = sample("pyroscopecluster-minimal.yaml");
    cr.spec.limits.reject_older_than = Some("soon".into());
    let err = desired(&cr).unwrap_err();
    assert_eq!(err.reason(), "InvalidSpec");
    assert!(err.to_string().contains("soon"), "{err}");
}

#[test]
fn recording_rules_of_the_cluster_reach_the_config_and_do_not_roll_pods() {
    let mut cr = sample("pyroscopecluster-production-s3.yaml");
    let names = phlox_operator::Names::of(&cr).unwrap();
    let config = phlox_config(&cr, &names).unwrap();
    let rr = &config.recording_rules;
    assert_eq!(rr.remote_write_url, "http://mimir-distributor.monitoring:8080/api/v1/push");
    let rules = &rr.rules["team-checkout"];
    assert_eq!(rules.len(), 1);
    let r = &rules[0];
    assert_eq!(
        (r.id.as_str(), r.metric_name.as_str(), r.function_name.as_deref()),
        (
            "checkout-tls-handshake",
            "profiles_recorded_checkout_tls_handshake_cpu_nanoseconds",
            Some("crypto/tls.(*Conn).Handshake")
        )
    );
    assert_eq!(r.group_by, vec!["region".to_owned()]);
    assert_eq!(r.external_labels.get("team").map(String::as_str), Some("checkout"));
    assert_eq!(
        r.matchers,
        vec![
            "{__profile_type__=\"process_cpu:cpu:nanoseconds:cpu:nanoseconds\", service_name=\"checkout\"}".to_owned()
        ]
    );
    // Rules are reloaded live: changing them does not change the pods' config hash.
    let base = desired(&cr).unwrap().config_hash;
    cr.spec.recording_rules.rules[0].group_by.push("pod".into());
    assert_eq!(desired(&cr).unwrap().config_hash, base);
    // The endpoint is not reloaded: it rolls the pods.
    cr.spec.recording_rules.remote_write_url = "http://other:9090/api/v1/write".into();
    assert_ne!(desired(&cr).unwrap().config_hash, base);
}

/// The Service a `<name>.<namespace>.svc:<port>` (or `<pod>.<name>...`)
/// address names, and whether the address is of one pod of it.
fn service_of<'a>(c: &'a Children, namespace: &str, address: &str) -> (&'a k8s_openapi::api::core::v1::Service, bool) {
    let host = address.rsplit_once(':').unwrap().0;
    let parts: Vec<&str> = host.split('.').collect();
    let svc_at =
        parts.iter().position(|p| *p == "svc").unwrap_or_else(|| panic!("{address} is not a Service DNS name"));
    assert_eq!(parts[svc_at - 1], namespace, "{address}: the cluster's namespace");
    let name = parts[svc_at - 2];
    let per_pod = svc_at == 3;
    let svc =
        c.services.iter().find(|s| s.name_any() == name).unwrap_or_else(|| panic!("{address}: no Service {name}"));
    (svc, per_pod)
}

/// Every address one pod uses to reach others names a Service of the right
/// kind: query backends behind a headless Service of ready pods (frontends
/// resolve it to every backend and spread leaves over them; a ClusterIP
/// would pin each frontend to one backend), metastore voters by their
/// per-pod names on the headless Service that publishes not-ready pods
/// (Raft peers must find each other before they are ready), the metastore
/// client address on a ClusterIP (any voter answers or redirects).
#[test]
fn every_peer_address_names_a_service_of_the_right_kind() {
    for file in
        ["pyroscopecluster-minimal.yaml", "pyroscopecluster-production-s3.yaml", "pyroscopecluster-autoscaling.yaml"]
    {
        let cr = sample(file);
        let c = desired(&cr).unwrap();
        let config = phlox_config(&cr, &phlox_operator::Names::of(&cr).unwrap()).unwrap();
        let ns = cr.metadata.namespace.clone().unwrap();
        let kind = |s: &k8s_openapi::api::core::v1::Service| {
            let spec = s.spec.as_ref().unwrap();
            (spec.cluster_ip.as_deref() == Some("None"), spec.publish_not_ready_addresses == Some(true))
        };
        assert!(!config.query_frontend.backends.is_empty(), "{file}");
        for b in &config.query_frontend.backends {
            let (svc, per_pod) = service_of(&c, &ns, b);
            assert_eq!((kind(svc), per_pod), ((true, false), false), "{file}: backends {b}");
            assert_eq!(
                svc.spec.as_ref().unwrap().selector.as_ref().unwrap()["app.kubernetes.io/component"],
                "query-backend"
            );
        }
        for p in &config.metastore.peers {
            let (_, address) = p.split_once('=').unwrap();
            let (svc, per_pod) = service_of(&c, &ns, address);
            assert_eq!((kind(svc), per_pod), ((true, true), true), "{file}: peer {p}");
        }
        let (svc, per_pod) = service_of(&c, &ns, config.metastore.address.as_deref().unwrap());
        assert_eq!((kind(svc), per_pod), ((false, false), false), "{file}: metastore address");
    }
}

/// The shard count fits the writer pool's largest size, so every writer the
/// autoscaler adds owns shards.
#[test]
fn the_shard_count_fits_the_writer_pools_maximum() {
    for file in
        ["pyroscopecluster-minimal.yaml", "pyroscopecluster-production-s3.yaml", "pyroscopecluster-autoscaling.yaml"]
    {
        let cr = sample(file);
        let config = phlox_config(&cr, &phlox_operator::Names::of(&cr).unwrap()).unwrap();
        let sw = &cr.spec.segment_writer;
        let max = if sw.autoscaling.enabled { sw.autoscaling.max_replicas } else { sw.replicas };
        assert!(
            config.segment_writer.shards >= max as u32,
            "{file}: {} shards, {max} writers",
            config.segment_writer.shards
        );
        assert!(config.segment_writer.shards >= 4, "{file}: at least the data plane's default");
    }
    let mut cr = sample("pyroscopecluster-autoscaling.yaml");
    cr.spec.segment_writer.autoscaling.enabled = true;
    cr.spec.segment_writer.autoscaling.max_replicas = 24;
    let config = phlox_config(&cr, &phlox_operator::Names::of(&cr).unwrap()).unwrap();
    assert_eq!(config.segment_writer.shards, 24);
}

/// A cluster name whose children would be invalid is refused with the
/// limit; the longest valid one renders objects whose names all fit.
#[test]
fn cluster_names_are_checked_against_the_longest_child_name() {
    let mut cr = sample("pyroscopecluster-minimal.yaml");
    cr.metadata.name = Some("a".repeat(60));
    let err = desired(&cr).unwrap_err().to_string();
    assert!(err.contains("at most 37 characters"), "{err}");
    for bad in ["1phlox", "phlox.prod", "Phlox", "phlox-"] {
        cr.metadata.name = Some(bad.into());
        assert!(desired(&cr).is_err(), "{bad}");
    }
    cr.metadata.name = Some(format!("p{}", "x".repeat(phlox_operator::MAX_CLUSTER_NAME - 1)));
    let c = desired(&cr).unwrap();
    for s in &c.stateful_sets {
        assert!(s.name_any().len() <= 52, "{}", s.name_any());
    }
    for s in &c.services {
        assert!(s.name_any().len() <= 63, "{}", s.name_any());
    }
    // The CRD says the same to the API server.
    let crd = serde_json::to_string(&<PyroscopeCluster as kube::CustomResourceExt>::crd()).unwrap();
    assert!(crd.contains("size(self.metadata.name) <= 37"), "the CRD's rule");
    assert!(!crd.contains("self == oldSelf"), "voters change (orchestrated by the operator)");
}

/// Every component has a startup probe (the metastore the longest: a Raft
/// log replay must not meet the liveness probe) and spreads over zones.
#[test]
fn pods_start_patiently_and_spread_over_zones() {
    let cr = sample("pyroscopecluster-production-s3.yaml");
    let c = desired(&cr).unwrap();
    let templates = c
        .deployments
        .iter()
        .map(|d| (d.name_any(), &d.spec.as_ref().unwrap().template))
        .chain(c.stateful_sets.iter().map(|s| (s.name_any(), &s.spec.as_ref().unwrap().template)));
    for (name, t) in templates {
        let probe = container(t).startup_probe.as_ref().unwrap_or_else(|| panic!("{name}: no startup probe"));
        let budget = probe.period_seconds.unwrap() * probe.failure_threshold.unwrap();
        if name.ends_with("-metastore") {
            assert!(budget >= 900, "{name}: {budget} s to start");
        } else {
            assert!(budget >= 300, "{name}: {budget} s to start");
        }
        let spread = t.spec.as_ref().unwrap().topology_spread_constraints.as_ref().unwrap();
        assert_eq!(spread[0].topology_key, "topology.kubernetes.io/zone", "{name}");
        assert_eq!(spread[0].when_unsatisfiable, "ScheduleAnyway", "{name}");
    }
}

/// Every component gets requests and a memory limit from `spec.size`
/// (small by default); a component's own `pod.resources` overrides the
/// preset key by key; `none` leaves only what the spec sets.
#[test]
fn resources_come_from_the_size_preset_and_the_spec_overrides_them_key_by_key() {
    let res = |cr: &PyroscopeCluster, name: &str| {
        let c = desired(cr).unwrap();
        let t = match c.deployments.iter().find(|d| d.name_any() == name) {
            Some(d) => d.spec.clone().unwrap().template,
            None => sts(&c, name).spec.clone().unwrap().template,
        };
        container(&t).resources.clone()
    };
    let q = |s: &str| Quantity(s.into());
    let mut cr = sample("pyroscopecluster-minimal.yaml");
    // The minimal sample sets no resources: the `small` preset.
    let small = res(&cr, "phlox-segment-writer").unwrap();
    assert_eq!(small.requests.as_ref().unwrap()["cpu"], q("500m"));
    assert_eq!(small.requests.as_ref().unwrap()["memory"], q("1Gi"));
    assert_eq!(small.limits.as_ref().unwrap()["memory"], q("2Gi"));
    assert!(!small.limits.as_ref().unwrap().contains_key("cpu"), "no CPU limit");
    for name in [
        "phlox-distributor",
        "phlox-segment-writer",
        "phlox-metastore",
        "phlox-query-frontend",
        "phlox-query-backend",
        "phlox-compaction-worker",
    ] {
        let r = res(&cr, name).unwrap();
        assert_eq!(r.requests.unwrap().len(), 2, "{name}: cpu and memory requests");
        assert_eq!(r.limits.unwrap().len(), 1, "{name}: a memory limit");
    }

    cr.spec.size = phlox_crds::v1alpha1::Size::Large;
    let large = res(&cr, "phlox-query-backend").unwrap();
    assert_eq!(large.requests.as_ref().unwrap()["cpu"], q("4"));
    assert_eq!(large.limits.as_ref().unwrap()["memory"], q("16Gi"));

    // Only limits.memory in the spec: the preset's requests stay.
    cr.spec.query_backend.pod.resources = Some(k8s_openapi::api::core::v1::ResourceRequirements {
        limits: Some([("memory".to_owned(), q("10Gi"))].into()),
        ..Default::default()
    });
    let mixed = res(&cr, "phlox-query-backend").unwrap();
    assert_eq!(mixed.limits.as_ref().unwrap()["memory"], q("10Gi"));
    assert_eq!(mixed.requests.as_ref().unwrap()["memory"], q("8Gi"));
    assert_eq!(mixed.requests.as_ref().unwrap()["cpu"], q("4"));

    cr.spec.size = phlox_crds::v1alpha1::Size::None;
    let none = res(&cr, "phlox-query-backend").unwrap();
    assert_eq!(none.requests, None);
    assert_eq!(none.limits.unwrap()["memory"], q("10Gi"));
    assert_eq!(res(&cr, "phlox-distributor"), None);
}

/// `storage.caBundle`: the ConfigMap key is mounted in every pod and the
/// data plane's `storage.ca_file` points at it.
#[test]
fn a_ca_bundle_is_mounted_and_named_in_the_config() {
    let mut cr = sample("pyroscopecluster-minimal.yaml");
    cr.spec.storage.ca_bundle =
        Some(phlox_crds::v1alpha1::CaBundle { config_map: "corp-ca".into(), key: "bundle.pem".into() });
    let c = desired(&cr).unwrap();
    let config = phlox_config(&cr, &phlox_operator::Names::of(&cr).unwrap()).unwrap();
    assert_eq!(config.storage.ca_file.as_deref(), Some(std::path::Path::new("/etc/phlox-storage-ca/ca.pem")));
    let templates = c
        .deployments
        .iter()
        .map(|d| d.spec.clone().unwrap().template)
        .chain(c.stateful_sets.iter().map(|s| s.spec.clone().unwrap().template));
    let mut n = 0;
    for t in templates {
        let spec = t.spec.clone().unwrap();
        let volume = spec.volumes.unwrap().into_iter().find(|v| v.name == "storage-ca").unwrap();
        let source = volume.config_map.unwrap();
        assert_eq!(source.name, "corp-ca");
        let items = source.items.unwrap();
        assert_eq!((items[0].key.as_str(), items[0].path.as_str()), ("bundle.pem", "ca.pem"));
        let mount = container(&t).volume_mounts.clone().unwrap().into_iter().find(|m| m.name == "storage-ca").unwrap();
        assert_eq!((mount.mount_path.as_str(), mount.read_only), ("/etc/phlox-storage-ca", Some(true)));
        n += 1;
    }
    assert_eq!(n, 6);
    // Without one: no volume, no ca_file.
    cr.spec.storage.ca_bundle = None;
    let config = phlox_config(&cr, &phlox_operator::Names::of(&cr).unwrap()).unwrap();
    assert_eq!(config.storage.ca_file, None);
}

/// The NetworkPolicy: gRPC only from the cluster's pods, the admin port
/// only from the operator's, the public port from anywhere or from the
/// namespaces listed; off when disabled.
#[test]
fn the_network_policy_fences_the_internal_and_admin_ports() {
    let mut cr = sample("pyroscopecluster-minimal.yaml");
    let c = desired(&cr).unwrap();
    let np = serde_json::to_value(&c.network_policies[0]).unwrap();
    let spec = &np["spec"];
    assert_eq!(
        spec["podSelector"]["matchLabels"],
        serde_json::json!({"app.kubernetes.io/name": "phlox", "app.kubernetes.io/instance": "phlox"})
    );
    assert_eq!(spec["policyTypes"], serde_json::json!(["Ingress"]));
    let rules = spec["ingress"].as_array().unwrap();
    let by_port = |p: i64| rules.iter().find(|r| r["ports"][0]["port"] == p).unwrap().clone();
    assert_eq!(
        by_port(9095)["from"],
        serde_json::json!([{"podSelector": {"matchLabels": spec["podSelector"]["matchLabels"]}}])
    );
    assert_eq!(
        by_port(4041)["from"],
        serde_json::json!([{"namespaceSelector": {}, "podSelector": {"matchLabels":
            {"app.kubernetes.io/component": "operator", "app.kubernetes.io/part-of": "phlox"}}}])
    );
    assert!(by_port(4040).get("from").is_none(), "the public port is open: {np}");
    assert_eq!(rules.len(), 3);

    cr.spec.network_policy.public_namespaces = vec!["apps".into(), "grafana".into()];
    let np = serde_json::to_value(&desired(&cr).unwrap().network_policies[0]).unwrap();
    let public =
        np["spec"]["ingress"].as_array().unwrap().iter().find(|r| r["ports"][0]["port"] == 4040).unwrap().clone();
    assert_eq!(
        public["from"],
        serde_json::json!([
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "apps"}}},
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "grafana"}}}
        ])
    );
    cr.spec.network_policy.enabled = false;
    assert!(desired(&cr).unwrap().network_policies.is_empty());
}

/// `spec.auth.credentialsSecret`: the Secret's key mounted in every pod and
/// named as the config's credentials file.
#[test]
fn auth_credentials_come_from_a_secret() {
    let mut cr = sample("pyroscopecluster-minimal.yaml");
    cr.spec.auth = Some(phlox_crds::v1alpha1::AuthSpec {
        credentials_secret: phlox_crds::v1alpha1::SecretKeySelector { name: "phlox-auth".into(), key: "creds".into() },
    });
    let c = desired(&cr).unwrap();
    let config: serde_yaml::Value = serde_yaml::from_str(&c.config_map.data.as_ref().unwrap()["phlox.yaml"]).unwrap();
    assert_eq!(config["server"]["auth"]["credentials_file"], "/etc/phlox-auth/credentials.yaml");
    for template in c.deployments.iter().map(|d| &d.spec.as_ref().unwrap().template) {
        let pod = template.spec.as_ref().unwrap();
        let volume = pod.volumes.as_ref().unwrap().iter().find(|v| v.name == "auth").unwrap();
        let secret = volume.secret.as_ref().unwrap();
        assert_eq!(secret.secret_name.as_deref(), Some("phlox-auth"));
        let items = secret.items.as_ref().unwrap();
        assert_eq!((items[0].key.as_str(), items[0].path.as_str()), ("creds", "credentials.yaml"));
        let mounts = pod.containers[0].volume_mounts.as_ref().unwrap();
        assert!(mounts.iter().any(|m| m.name == "auth" && m.mount_path == "/etc/phlox-auth"));
    }
}

/// `spec.grpcTls`: the certificate's Secret mounted in every pod and named
/// by the config (with the one name peers are checked against); with an
/// issuer, cert-manager's Certificate for that name; both sources at once
/// are refused.
#[test]
fn grpc_tls_comes_from_a_secret_or_from_cert_manager() {
    use phlox_crds::v1alpha1::{GrpcTlsSpec, IssuerRef};
    let mut cr = sample("pyroscopecluster-minimal.yaml");
    cr.spec.grpc_tls = Some(GrpcTlsSpec { secret_name: Some("my-tls".into()), issuer_ref: None });
    let c = desired(&cr).unwrap();
    let config: serde_yaml::Value = serde_yaml::from_str(&c.config_map.data.as_ref().unwrap()["phlox.yaml"]).unwrap();
    let tls = &config["server"]["grpc_tls"];
    assert_eq!(tls["cert_file"], "/etc/phlox-grpc-tls/tls.crt");
    assert_eq!(tls["key_file"], "/etc/phlox-grpc-tls/tls.key");
    assert_eq!(tls["ca_file"], "/etc/phlox-grpc-tls/ca.crt");
    assert_eq!(tls["server_name"], "phlox-grpc.phlox.svc");
    let templates = c
        .deployments
        .iter()
        .map(|d| &d.spec.as_ref().unwrap().template)
        .chain(c.stateful_sets.iter().map(|s| &s.spec.as_ref().unwrap().template));
    for template in templates {
        let pod = template.spec.as_ref().unwrap();
        let volume = pod.volumes.as_ref().unwrap().iter().find(|v| v.name == "grpc-tls").unwrap();
        assert_eq!(volume.secret.as_ref().unwrap().secret_name.as_deref(), Some("my-tls"));
        let mounts = pod.containers[0].volume_mounts.as_ref().unwrap();
        assert!(mounts.iter().any(|m| m.name == "grpc-tls" && m.mount_path == "/etc/phlox-grpc-tls"));
    }
    assert!(c.certificate.is_none());

    cr.spec.grpc_tls = Some(GrpcTlsSpec {
        secret_name: None,
        issuer_ref: Some(IssuerRef {
            name: "ca-issuer".into(),
            kind: "ClusterIssuer".into(),
            group: "cert-manager.io".into(),
        }),
    });
    let c = desired(&cr).unwrap();
    let cert = serde_json::to_value(c.certificate.as_ref().unwrap()).unwrap();
    assert_eq!((cert["apiVersion"].as_str(), cert["kind"].as_str()), (Some("cert-manager.io/v1"), Some("Certificate")));
    assert_eq!(cert["metadata"]["name"], "phlox-grpc-tls");
    assert_eq!(cert["metadata"]["ownerReferences"][0]["kind"], "PyroscopeCluster");
    assert_eq!(cert["spec"]["secretName"], "phlox-grpc-tls");
    assert_eq!(cert["spec"]["dnsNames"], serde_json::json!(["phlox-grpc.phlox.svc"]));
    assert_eq!(
        cert["spec"]["issuerRef"],
        serde_json::json!({"name": "ca-issuer", "kind": "ClusterIssuer", "group": "cert-manager.io"})
    );
    let volume = c.deployments[0]
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == "grpc-tls")
        .cloned()
        .unwrap();
    assert_eq!(volume.secret.unwrap().secret_name.as_deref(), Some("phlox-grpc-tls"));
    assert!(c.documents().unwrap().iter().any(|d| d["kind"] == "Certificate"));

    cr.spec.grpc_tls = Some(GrpcTlsSpec {
        secret_name: Some("my-tls".into()),
        issuer_ref: Some(IssuerRef { name: "x".into(), kind: "Issuer".into(), group: "cert-manager.io".into() }),
    });
    assert!(desired(&cr).unwrap_err().to_string().contains("exactly one of secretName and issuerRef"));
}

#[test]
fn monitoring_and_ingress_are_rendered_only_when_asked() {
    let minimal = desired(&sample("pyroscopecluster-minimal.yaml")).unwrap();
    assert!(minimal.pod_monitors.is_empty() && minimal.prometheus_rule.is_none() && minimal.ingresses.is_empty());

    let cr = sample("pyroscopecluster-production-s3.yaml");
    let c = desired(&cr).unwrap();
    // One PodMonitor per component, selecting exactly that component's pods.
    let monitors: Vec<(String, serde_json::Value)> =
        c.pod_monitors.iter().map(|m| (m.name_any(), m.data["spec"].clone())).collect();
    let names: Vec<&str> = monitors.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "phlox-prod-distributor",
            "phlox-prod-segment-writer",
            "phlox-prod-metastore",
            "phlox-prod-query-frontend",
            "phlox-prod-query-backend",
            "phlox-prod-compaction-worker"
        ]
    );
    for (name, spec) in &monitors {
        let component = name.strip_prefix("phlox-prod-").unwrap();
        assert_eq!(spec["selector"]["matchLabels"]["app.kubernetes.io/component"], component);
        assert_eq!(spec["selector"]["matchLabels"]["app.kubernetes.io/instance"], "phlox-prod");
        assert_eq!(spec["podMetricsEndpoints"][0]["port"], "http");
        assert_eq!(spec["podMetricsEndpoints"][0]["path"], "/metrics");
        assert_eq!(spec["podMetricsEndpoints"][0]["interval"], "30s");
        assert_eq!(spec["namespaceSelector"]["matchNames"][0], "observability");
    }
    assert_eq!(c.pod_monitors[0].labels()["release"], "kube-prometheus-stack");

    // The alerts, every expression scoped to the cluster's namespace.
    let rule = c.prometheus_rule.as_ref().unwrap();
    assert_eq!(rule.labels()["release"], "kube-prometheus-stack");
    let groups = rule.data["spec"]["groups"].as_array().unwrap();
    let alerts: Vec<&serde_json::Value> = groups.iter().flat_map(|g| g["rules"].as_array().unwrap()).collect();
    assert_eq!(alerts.len(), 10);
    for a in alerts {
        let expr = a["expr"].as_str().unwrap();
        let selectors = expr.matches("phlox_").count();
        assert_eq!(expr.matches("namespace=\"observability\"").count(), selectors, "{expr}");
    }

    // Writes to the distributors, the rest to the query frontends.
    let ingress = &c.ingresses[0];
    let spec = ingress.spec.as_ref().unwrap();
    assert_eq!(spec.ingress_class_name.as_deref(), Some("nginx"));
    let rule = &spec.rules.as_ref().unwrap()[0];
    assert_eq!(rule.host.as_deref(), Some("profiles.example.com"));
    let routes: Vec<(String, String, String)> = rule
        .http
        .as_ref()
        .unwrap()
        .paths
        .iter()
        .map(|p| {
            let service = p.backend.service.as_ref().unwrap().name.clone();
            (p.path.clone().unwrap(), p.path_type.clone(), service)
        })
        .collect();
    let to = |p: &str, t: &str, s: &str| (p.to_owned(), t.to_owned(), format!("phlox-prod-{s}"));
    assert_eq!(
        routes,
        vec![
            to("/push.v1.PusherService/", "Prefix", "distributor"),
            to("/ingest", "Exact", "distributor"),
            to("/pyroscope/ingest", "Exact", "distributor"),
            to("/opentelemetry.proto.collector.profiles.v1development.ProfilesService/", "Prefix", "distributor"),
            to("/v1development/profiles", "Exact", "distributor"),
            to("/", "Prefix", "query-frontend"),
        ]
    );
    assert_eq!(spec.tls.as_ref().unwrap()[0].secret_name.as_deref(), Some("profiles-example-com-tls"));
}

#[test]
fn self_profiling_pushes_to_the_clusters_distributors() {
    let cr = sample("pyroscopecluster-production-s3.yaml");
    let c = phlox_config(&cr, &phlox_operator::Names::of(&cr).unwrap()).unwrap();
    assert!(c.self_profiling.enabled);
    assert_eq!(c.self_profiling.push_url, "http://phlox-prod-distributor.observability.svc:4040");
    assert_eq!(c.self_profiling.tenant, "phlox");
    let mut cr = sample("pyroscopecluster-minimal.yaml");
    cr.spec.self_profiling.enabled = false;
    assert!(!phlox_config(&cr, &phlox_operator::Names::of(&cr).unwrap()).unwrap().self_profiling.enabled);
}
