//! The pod template every component shares: one `phlox --target=<c>`
//! container with the config file, probes, ports and security settings.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvFromSource,
    EnvVar, EnvVarSource, HTTPGetAction, KeyToPath, Lifecycle, LifecycleHandler, LocalObjectReference,
    ObjectFieldSelector, PersistentVolumeClaimVolumeSource, PodAffinityTerm, PodAntiAffinity, PodSecurityContext,
    PodSpec, PodTemplateSpec, Probe, SeccompProfile, SecretEnvSource, SecretVolumeSource, SecurityContext, SleepAction,
    TCPSocketAction, TopologySpreadConstraint, Volume, VolumeMount, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use phlox_crds::v1alpha1::{PodOptions, PyroscopeCluster, StorageBackend};

use crate::names::{
    ADMIN_PORT, ADMIN_TOKEN_DIR, AUTH_DIR, AUTH_FILE, BUCKET_DIR, CONFIG_DIR, CONFIG_FILE, CONFIG_HASH_ANNOTATION,
    Component, DATA_DIR, GRPC_PORT, GRPC_TLS_DIR, HTTP_PORT, Names, STORAGE_CA_DIR, STORAGE_CA_FILE,
};

/// Seconds a query backend waits between being told to stop and SIGTERM.
const QUERY_BACKEND_PRE_STOP_SECONDS: i64 = 5;

/// Seconds a distributor or query frontend keeps serving after SIGTERM.
const PUBLIC_SHUTDOWN_DELAY_SECONDS: u64 = 5;

/// Non-root user of the distroless image.
const USER: i64 = 65532;

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar { name: name.to_owned(), value: Some(value.to_owned()), value_from: None }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector { field_path: path.to_owned(), api_version: None }),
            ..Default::default()
        }),
    }
}

/// A preference to spread a component's pods over nodes (used when the
/// spec sets no affinity of its own).
fn spread(names: &Names, c: Component) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![WeightedPodAffinityTerm {
                weight: 100,
                pod_affinity_term: PodAffinityTerm {
                    label_selector: Some(LabelSelector { match_labels: Some(names.selector(c)), ..Default::default() }),
                    topology_key: "kubernetes.io/hostname".to_owned(),
                    ..Default::default()
                },
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The pod template of component `c`; `extra_env` is the component's own
/// part (the metastore's identity). `/data` is the metastore's volume claim
/// and scratch space (emptyDir) everywhere else.
pub(crate) fn template(
    cr: &PyroscopeCluster,
    names: &Names,
    c: Component,
    opts: &PodOptions,
    config_hash: &str,
    extra_env: Vec<EnvVar>,
) -> PodTemplateSpec {
    let spec = &cr.spec;
    let mut args = vec![format!("--target={}", c.as_str()), format!("--config={CONFIG_DIR}/{CONFIG_FILE}")];
    // The components clients reach through a ClusterIP Service keep serving
    // a while after SIGTERM, closing keep-alive connections as they answer,
    // so that no client's next request lands on a closed connection.
    if matches!(c, Component::Distributor | Component::QueryFrontend) {
        args.push(format!("--shutdown-delay={PUBLIC_SHUTDOWN_DELAY_SECONDS}s"));
    }
    args.extend(opts.extra_args.iter().cloned());

    let mut envs = vec![
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        // The address a segment writer registers for distributors to dial.
        field_env("POD_IP", "status.podIP"),
        env("PHLOX_LOG_FORMAT", "json"),
    ];
    envs.extend(extra_env);
    envs.extend(opts.extra_env.iter().cloned());

    let mut mounts = vec![
        VolumeMount {
            name: "config".into(),
            mount_path: CONFIG_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        },
        VolumeMount { name: "data".into(), mount_path: DATA_DIR.into(), ..Default::default() },
    ];
    let mut volumes = vec![Volume {
        name: "config".into(),
        config_map: Some(ConfigMapVolumeSource { name: names.config_map(), ..Default::default() }),
        ..Default::default()
    }];
    if c != Component::Metastore {
        volumes.push(Volume {
            name: "data".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        });
    }
    mounts.push(VolumeMount {
        name: "admin-token".into(),
        mount_path: ADMIN_TOKEN_DIR.into(),
        read_only: Some(true),
        ..Default::default()
    });
    volumes.push(Volume {
        name: "admin-token".into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(names.admin_token_secret()),
            default_mode: Some(0o400),
            ..Default::default()
        }),
        ..Default::default()
    });
    if let Some(tls) = &spec.grpc_tls {
        let secret = tls.secret_name.clone().unwrap_or_else(|| names.grpc_tls_certificate());
        mounts.push(VolumeMount {
            name: "grpc-tls".into(),
            mount_path: GRPC_TLS_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
        volumes.push(Volume {
            name: "grpc-tls".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret),
                default_mode: Some(0o400),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    if let Some(auth) = &spec.auth {
        mounts.push(VolumeMount {
            name: "auth".into(),
            mount_path: AUTH_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
        volumes.push(Volume {
            name: "auth".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(auth.credentials_secret.name.clone()),
                items: Some(vec![KeyToPath {
                    key: auth.credentials_secret.key.clone(),
                    path: AUTH_FILE.into(),
                    mode: None,
                }]),
                default_mode: Some(0o400),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    if spec.storage.backend == StorageBackend::Filesystem {
        mounts.push(VolumeMount { name: "bucket".into(), mount_path: BUCKET_DIR.into(), ..Default::default() });
        volumes.push(Volume {
            name: "bucket".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: spec.storage.filesystem_claim_name.clone(),
                read_only: None,
            }),
            ..Default::default()
        });
    }

    if let Some(ca) = &spec.storage.ca_bundle {
        mounts.push(VolumeMount {
            name: "storage-ca".into(),
            mount_path: STORAGE_CA_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
        volumes.push(Volume {
            name: "storage-ca".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: ca.config_map.clone(),
                items: Some(vec![KeyToPath { key: ca.key.clone(), path: STORAGE_CA_FILE.into(), mode: None }]),
                ..Default::default()
            }),
            ..Default::default()
        });
    }

    let http = IntOrString::String("http".into());
    let container = Container {
        name: "phlox".into(),
        image: Some(spec.image.clone()),
        image_pull_policy: Some(spec.image_pull_policy.as_str().to_owned()),
        args: Some(args),
        env: Some(envs),
        env_from: spec.storage.credentials_secret.as_ref().map(|s| {
            vec![EnvFromSource {
                secret_ref: Some(SecretEnvSource { name: s.clone(), optional: Some(false) }),
                ..Default::default()
            }]
        }),
        ports: Some(vec![
            ContainerPort { name: Some("http".into()), container_port: HTTP_PORT, ..Default::default() },
            ContainerPort { name: Some("grpc".into()), container_port: GRPC_PORT, ..Default::default() },
            ContainerPort { name: Some("admin".into()), container_port: ADMIN_PORT, ..Default::default() },
        ]),
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction { path: Some("/ready".into()), port: http.clone(), ..Default::default() }),
            initial_delay_seconds: Some(5),
            period_seconds: Some(10),
            timeout_seconds: Some(2),
            failure_threshold: Some(3),
            ..Default::default()
        }),
        // Until the HTTP port first accepts connections, neither liveness nor
        // readiness runs: a metastore replaying a long Raft log (up to 15
        // minutes), or any component opening a large data directory, is not
        // killed by the liveness probe while it starts.
        startup_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction { port: http.clone(), ..Default::default() }),
            period_seconds: Some(10),
            timeout_seconds: Some(2),
            failure_threshold: Some(if c == Component::Metastore { 90 } else { 30 }),
            ..Default::default()
        }),
        // Alive = the HTTP port accepts connections; readiness covers the rest
        // (a pod waiting for its metastore must not be restarted).
        liveness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction { port: http, ..Default::default() }),
            initial_delay_seconds: Some(15),
            period_seconds: Some(20),
            timeout_seconds: Some(2),
            failure_threshold: Some(6),
            ..Default::default()
        }),
        // A query backend leaving (scale-in, rollout) waits before SIGTERM so
        // that frontends, re-resolving the backends' names, stop sending it
        // leaves; the ones in flight finish within the termination grace.
        lifecycle: (c == Component::QueryBackend).then(|| Lifecycle {
            pre_stop: Some(LifecycleHandler {
                sleep: Some(SleepAction { seconds: QUERY_BACKEND_PRE_STOP_SECONDS }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        resources: super::resources::resources(spec.size, c, opts.resources.as_ref()),
        volume_mounts: Some(mounts),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), add: None }),
            ..Default::default()
        }),
        ..Default::default()
    };

    let mut annotations = BTreeMap::from([
        (CONFIG_HASH_ANNOTATION.to_owned(), config_hash.to_owned()),
        ("prometheus.io/scrape".to_owned(), "true".to_owned()),
        ("prometheus.io/port".to_owned(), HTTP_PORT.to_string()),
        ("prometheus.io/path".to_owned(), "/metrics".to_owned()),
    ]);
    annotations.extend(opts.pod_annotations.clone());
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(names.labels(Some(c))),
            annotations: Some(annotations),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            service_account_name: Some(names.service_account()),
            containers: vec![container],
            volumes: Some(volumes),
            image_pull_secrets: (!spec.image_pull_secrets.is_empty())
                .then(|| spec.image_pull_secrets.iter().map(|n| LocalObjectReference { name: n.clone() }).collect()),
            node_selector: (!opts.node_selector.is_empty()).then(|| opts.node_selector.clone()),
            affinity: Some(opts.affinity.clone().unwrap_or_else(|| spread(names, c))),
            // Across zones where the nodes have them (a preference: a single
            // zone still schedules), unless the spec brings its own affinity.
            topology_spread_constraints: opts.affinity.is_none().then(|| {
                vec![TopologySpreadConstraint {
                    max_skew: 1,
                    topology_key: "topology.kubernetes.io/zone".to_owned(),
                    when_unsatisfiable: "ScheduleAnyway".to_owned(),
                    label_selector: Some(LabelSelector { match_labels: Some(names.selector(c)), ..Default::default() }),
                    ..Default::default()
                }]
            }),
            tolerations: (!opts.tolerations.is_empty()).then(|| opts.tolerations.clone()),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(USER),
                run_as_group: Some(USER),
                fs_group: Some(USER),
                seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), localhost_profile: None }),
                ..Default::default()
            }),
            // Segment writers flush their last segment and leave the placement.
            termination_grace_period_seconds: Some(if c == Component::SegmentWriter { 60 } else { 30 }),
            ..Default::default()
        }),
    }
}
