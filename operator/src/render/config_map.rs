//! The data-plane config file (`phlox.yaml`) in a ConfigMap.
//!
//! The document is built as YAML and parsed by `phlox-config` itself, so a
//! spec the data plane would refuse fails here, before any pod starts.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use phlox_config::PhloxConfig;
use phlox_crds::v1alpha1::{LimitsSpec, PyroscopeCluster, StorageBackend};
use serde_yaml::{Mapping, Value};

use crate::names::{
    ADMIN_PORT, ADMIN_TOKEN_DIR, ADMIN_TOKEN_KEY, AUTH_DIR, AUTH_FILE, BUCKET_DIR, CONFIG_FILE, DATA_DIR, GRPC_PORT,
    GRPC_TLS_DIR, HTTP_PORT, Names, STORAGE_CA_DIR, STORAGE_CA_FILE,
};
use crate::{Error, Result};

/// xxh3 of the config document without `overrides` and the provisioned
/// recording rules (reloaded live by the data plane) and without the
/// metastore's peer list (see [`config_map`]): the pods roll when it changes.
#[derive(Debug, Clone)]
pub(crate) struct ConfigHash(pub(crate) String);

fn key(k: &str) -> Value {
    Value::String(k.to_owned())
}

/// Limits as the data plane's snake_case keys; unset fields are left out.
fn limits(l: &LimitsSpec) -> Mapping {
    let mut m = Mapping::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            m.insert(key(k), v);
        }
    };
    put("ingestion_rate_mb", l.ingestion_rate_mb.map(Value::from));
    put("ingestion_burst_size_mb", l.ingestion_burst_size_mb.map(Value::from));
    put("max_profile_size_bytes", l.max_profile_size_bytes.map(Value::from));
    put("max_profile_stacktrace_samples", l.max_profile_stacktrace_samples.map(Value::from));
    put("max_profile_stacktrace_sample_labels", l.max_profile_stacktrace_sample_labels.map(Value::from));
    put("max_profile_stacktrace_depth", l.max_profile_stacktrace_depth.map(Value::from));
    put("max_label_names_per_series", l.max_label_names_per_series.map(Value::from));
    put("max_label_name_length", l.max_label_name_length.map(Value::from));
    put("max_label_value_length", l.max_label_value_length.map(Value::from));
    put("max_profile_symbol_value_length", l.max_profile_symbol_value_length.map(Value::from));
    put("max_sessions_per_series", l.max_sessions_per_series.map(Value::from));
    put("max_request_memory", l.max_request_memory.map(Value::from));
    put("reject_older_than", l.reject_older_than.clone().map(Value::from));
    put("reject_newer_than", l.reject_newer_than.clone().map(Value::from));
    put("retention_period", l.retention_period.clone().map(Value::from));
    put("max_recording_rules", l.max_recording_rules.map(Value::from));
    put("max_query_length", l.max_query_length.clone().map(Value::from));
    put("max_query_lookback", l.max_query_lookback.clone().map(Value::from));
    put("max_debuginfo_file_bytes", l.max_debuginfo_file_bytes.map(Value::from));
    put("max_debuginfo_files", l.max_debuginfo_files.map(Value::from));
    m
}

/// `recording_rules`: the remote-write URL and the rules per tenant.
fn recording_rules(spec: &phlox_crds::v1alpha1::RecordingRulesSpec) -> Mapping {
    let mut by_tenant: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for r in &spec.rules {
        let mut m = Mapping::new();
        m.insert(key("id"), key(&r.id));
        m.insert(key("metric_name"), key(&r.metric_name));
        m.insert(key("matchers"), Value::Sequence(r.matchers.iter().map(|s| key(s)).collect()));
        m.insert(key("group_by"), Value::Sequence(r.group_by.iter().map(|s| key(s)).collect()));
        let mut labels = Mapping::new();
        for (k, v) in &r.external_labels {
            labels.insert(key(k), key(v));
        }
        m.insert(key("external_labels"), Value::Mapping(labels));
        if let Some(f) = &r.function_name {
            m.insert(key("function_name"), key(f));
        }
        by_tenant.entry(r.tenant.as_str()).or_default().push(Value::Mapping(m));
    }
    let mut rules = Mapping::new();
    for (tenant, list) in by_tenant {
        rules.insert(key(tenant), Value::Sequence(list));
    }
    let mut out = Mapping::new();
    out.insert(key("remote_write_url"), key(&spec.remote_write_url));
    out.insert(key("rules"), Value::Mapping(rules));
    out
}

/// The data-plane configuration of a cluster, validated by `phlox-config`.
pub fn phlox_config(cr: &PyroscopeCluster, names: &Names) -> Result<PhloxConfig> {
    let spec = &cr.spec;
    let st = &spec.storage;
    let backend = match st.backend {
        StorageBackend::S3 => "s3",
        StorageBackend::Gcs => "gcs",
        StorageBackend::Azure => "azure",
        StorageBackend::Filesystem => "filesystem",
    };
    let mut storage = Mapping::new();
    storage.insert(key("backend"), key(backend));
    storage.insert(key("prefix"), key(&st.prefix));
    let mut backend_cfg = Mapping::new();
    match st.backend {
        StorageBackend::S3 => {
            backend_cfg.insert(key("bucket"), key(&st.bucket));
            if let Some(e) = &st.endpoint {
                backend_cfg.insert(key("endpoint"), key(e));
            }
            if let Some(r) = &st.region {
                backend_cfg.insert(key("region"), key(r));
            }
            backend_cfg.insert(key("insecure"), Value::Bool(st.insecure));
        }
        StorageBackend::Gcs => {
            backend_cfg.insert(key("bucket"), key(&st.bucket));
        }
        StorageBackend::Azure => {
            backend_cfg.insert(key("account"), key(&st.azure_account));
            backend_cfg.insert(key("container"), key(&st.bucket));
            if let Some(e) = &st.endpoint {
                backend_cfg.insert(key("endpoint"), key(e));
            }
        }
        StorageBackend::Filesystem => {
            backend_cfg.insert(key("dir"), key(BUCKET_DIR));
        }
    }
    storage.insert(key(backend), Value::Mapping(backend_cfg));
    if st.ca_bundle.is_some() {
        storage.insert(key("ca_file"), key(&format!("{STORAGE_CA_DIR}/{STORAGE_CA_FILE}")));
    }

    let voters = spec.metastore.voters.max(1);
    let peers: Vec<Value> = (0..voters).map(|i| key(&format!("{}={}", i + 1, names.metastore_peer(i)))).collect();
    let mut metastore = Mapping::new();
    metastore.insert(key("peers"), Value::Sequence(peers));
    metastore.insert(key("bootstrap"), Value::Bool(true));
    metastore.insert(key("address"), key(&names.metastore_address()));

    let mut server = Mapping::new();
    // Every address of the pod, IPv4 and IPv6 (IPv4 only where IPv6 is off).
    server.insert(key("http_listen_address"), key(&format!("[::]:{HTTP_PORT}")));
    server.insert(key("grpc_listen_address"), key(&format!("[::]:{GRPC_PORT}")));
    // Deletes, drain and membership: only here, behind the operator's token.
    server.insert(key("admin_listen_address"), key(&format!("[::]:{ADMIN_PORT}")));
    server.insert(key("admin_token_file"), key(&format!("{ADMIN_TOKEN_DIR}/{ADMIN_TOKEN_KEY}")));
    if let Some(tls) = &spec.grpc_tls {
        if tls.secret_name.is_some() == tls.issuer_ref.is_some() {
            return Err(Error::InvalidSpec("grpcTls: set exactly one of secretName and issuerRef".into()));
        }
        let mut t = Mapping::new();
        t.insert(key("cert_file"), key(&format!("{GRPC_TLS_DIR}/tls.crt")));
        t.insert(key("key_file"), key(&format!("{GRPC_TLS_DIR}/tls.key")));
        t.insert(key("ca_file"), key(&format!("{GRPC_TLS_DIR}/ca.crt")));
        t.insert(key("server_name"), key(&names.grpc_tls_name()));
        server.insert(key("grpc_tls"), Value::Mapping(t));
    }
    if spec.auth.is_some() {
        let mut auth = Mapping::new();
        auth.insert(key("credentials_file"), key(&format!("{AUTH_DIR}/{AUTH_FILE}")));
        server.insert(key("auth"), Value::Mapping(auth));
    }

    let mut overrides = Mapping::new();
    for (tenant, l) in &spec.overrides {
        overrides.insert(key(tenant), Value::Mapping(limits(l)));
    }
    let mut query_frontend = Mapping::new();
    query_frontend.insert(
        key("backends"),
        Value::Sequence(vec![key(&format!(
            "{}.{}.svc:{GRPC_PORT}",
            names.component(crate::names::Component::QueryBackend),
            names.namespace
        ))]),
    );

    // Every writer the pool may grow to owns at least one shard.
    let sw = &spec.segment_writer;
    let max_writers = if sw.autoscaling.enabled { sw.autoscaling.max_replicas } else { sw.replicas };
    let shards = PhloxConfig::default().segment_writer.shards.max(u32::try_from(max_writers).unwrap_or(0));
    let mut segment_writer = Mapping::new();
    segment_writer.insert(key("shards"), Value::from(shards));

    let mut doc = Mapping::new();
    doc.insert(key("version"), Value::from(1));
    doc.insert(key("target"), key("all"));
    doc.insert(key("data_dir"), key(DATA_DIR));
    doc.insert(key("multitenancy_enabled"), Value::Bool(spec.multitenancy_enabled));
    doc.insert(key("server"), Value::Mapping(server));
    doc.insert(key("storage"), Value::Mapping(storage));
    doc.insert(key("metastore"), Value::Mapping(metastore));
    doc.insert(key("query_frontend"), Value::Mapping(query_frontend));
    doc.insert(key("segment_writer"), Value::Mapping(segment_writer));
    let mut global = limits(&spec.limits);
    if spec.limits.retention_period.is_none() {
        global.insert(key("retention_period"), key(&spec.retention.period));
    }
    doc.insert(key("limits"), Value::Mapping(global));
    doc.insert(key("overrides"), Value::Mapping(overrides));
    doc.insert(key("recording_rules"), Value::Mapping(recording_rules(&spec.recording_rules)));
    let mut symbolizer = Mapping::new();
    symbolizer.insert(key("debuginfod_url"), key(&spec.symbolizer.debuginfod_url));
    if let Some(r) = &spec.symbolizer.retry_missing {
        symbolizer.insert(key("retry_missing"), key(r));
    }
    doc.insert(key("symbolizer"), Value::Mapping(symbolizer));
    if spec.self_profiling.enabled {
        let mut p = Mapping::new();
        p.insert(key("enabled"), Value::Bool(true));
        p.insert(
            key("push_url"),
            key(&format!(
                "http://{}.{}.svc:{HTTP_PORT}",
                names.component(crate::names::Component::Distributor),
                names.namespace
            )),
        );
        p.insert(key("tenant"), key(&spec.self_profiling.tenant));
        doc.insert(key("self_profiling"), Value::Mapping(p));
    }
    let text = serde_yaml::to_string(&doc).map_err(|e| Error::InvalidSpec(e.to_string()))?;
    PhloxConfig::from_yaml(&text).map_err(|e| Error::InvalidSpec(e.to_string()))
}

/// The ConfigMap holding `phlox.yaml`.
pub(crate) fn config_map(cr: &PyroscopeCluster, names: &Names) -> Result<(ConfigMap, ConfigHash)> {
    let config = phlox_config(cr, names)?;
    let yaml = serde_yaml::to_string(&config).map_err(|e| Error::InvalidSpec(e.to_string()))?;
    // Overrides and provisioned recording rules are reloaded live: they do not roll pods.
    let mut without_overrides = config.clone();
    without_overrides.overrides.clear();
    without_overrides.recording_rules.rules.clear();
    // The voters: read at start by a new voter only (the lowest id
    // initializes a new group; the others are added by the leader), so a
    // voter change does not roll the pods.
    without_overrides.metastore.peers.clear();
    let stable = serde_yaml::to_string(&without_overrides).map_err(|e| Error::InvalidSpec(e.to_string()))?;
    let hash = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(stable.as_bytes()));
    let header = format!(
        "# Rendered by phlox-operator from PyroscopeCluster {}/{}; edit the PyroscopeCluster, not this file.\n",
        names.namespace, names.cluster
    );
    let cm = ConfigMap {
        metadata: super::meta(names, names.config_map(), None),
        data: Some(BTreeMap::from([(CONFIG_FILE.to_owned(), format!("{header}{yaml}"))])),
        ..Default::default()
    };
    Ok((cm, ConfigHash(hash)))
}
