//! Names, labels and ports of everything the operator creates.

use std::collections::BTreeMap;

use phlox_crds::v1alpha1::PyroscopeCluster;

/// Public HTTP port of every component (APIs, `/ready`, `/metrics`).
pub const HTTP_PORT: i32 = 4040;
/// Internal gRPC port (metastore, Raft, component traffic).
pub const GRPC_PORT: i32 = 9095;
/// Admin API port (deletes, a writer's drain, the metastore's membership),
/// behind the cluster's admin token; only the operator reaches it.
pub const ADMIN_PORT: i32 = 4041;
/// Where the admin token Secret is mounted.
pub const ADMIN_TOKEN_DIR: &str = "/etc/phlox-admin";
/// The token's key in the Secret (and its file name).
pub const ADMIN_TOKEN_KEY: &str = "token";
/// Where the public port's credentials (`spec.auth.credentialsSecret`) are mounted.
pub const AUTH_DIR: &str = "/etc/phlox-auth";
/// Their file name there.
pub const AUTH_FILE: &str = "credentials.yaml";
/// Where the components' gRPC certificate (`spec.grpcTls`) is mounted.
pub const GRPC_TLS_DIR: &str = "/etc/phlox-grpc-tls";
/// Where the data-plane config file is mounted.
pub const CONFIG_DIR: &str = "/etc/phlox";
/// The config file's key in the ConfigMap.
pub const CONFIG_FILE: &str = "phlox.yaml";
/// Where the object store's CA bundle (`storage.caBundle`) is mounted.
pub const STORAGE_CA_DIR: &str = "/etc/phlox-storage-ca";
/// The bundle's file name in that directory.
pub const STORAGE_CA_FILE: &str = "ca.pem";
/// Local data (metastore log; scratch space elsewhere).
pub const DATA_DIR: &str = "/data";
/// Mount point of a `filesystem` bucket's shared volume.
pub const BUCKET_DIR: &str = "/var/lib/phlox/bucket";
/// Annotation on pod templates: hash of the config file (without the
/// per-tenant overrides, which are reloaded live), so pods roll on change.
pub const CONFIG_HASH_ANNOTATION: &str = "phlox.dev/config-hash";
/// Annotation on pod templates: hash of the storage credentials Secret's
/// data and of the CA bundle, so pods roll (in order) when they change.
pub const STORAGE_SECRET_HASH_ANNOTATION: &str = "phlox.dev/storage-secret-hash";
/// Annotation on every child: hash of what the operator last applied.
pub const DESIRED_HASH_ANNOTATION: &str = "phlox.dev/desired-hash";
/// Annotation on workloads: hash of the pod template the operator last
/// gave them (the ordered rollout compares it with the desired one).
pub const TEMPLATE_HASH_ANNOTATION: &str = "phlox.dev/template-hash";
/// Field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "phlox-operator";
/// Field manager of the PyroscopeCluster's status (server-side apply).
pub const STATUS_FIELD_MANAGER: &str = "phlox-operator-status";

/// The data-plane components, with Pyroscope's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Component {
    Distributor,
    SegmentWriter,
    Metastore,
    QueryFrontend,
    QueryBackend,
    CompactionWorker,
}

impl Component {
    pub const ALL: [Component; 6] = [
        Component::Distributor,
        Component::SegmentWriter,
        Component::Metastore,
        Component::QueryFrontend,
        Component::QueryBackend,
        Component::CompactionWorker,
    ];

    /// The `--target` value and the `app.kubernetes.io/component` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Distributor => "distributor",
            Component::SegmentWriter => "segment-writer",
            Component::Metastore => "metastore",
            Component::QueryFrontend => "query-frontend",
            Component::QueryBackend => "query-backend",
            Component::CompactionWorker => "compaction-worker",
        }
    }

    /// Runs as a StatefulSet (stable identities) rather than a Deployment.
    pub fn is_stateful_set(self) -> bool {
        matches!(self, Component::Metastore | Component::SegmentWriter)
    }
}

/// Names of one cluster's objects.
#[derive(Debug, Clone)]
pub struct Names {
    pub cluster: String,
    pub namespace: String,
}

impl Names {
    pub fn of(cr: &PyroscopeCluster) -> crate::Result<Self> {
        let cluster = cr.metadata.name.clone().ok_or(crate::Error::MissingField("metadata.name"))?;
        check_cluster_name(&cluster)?;
        Ok(Self {
            cluster,
            namespace: cr.metadata.namespace.clone().ok_or(crate::Error::MissingField("metadata.namespace"))?,
        })
    }

    /// Workload, PDB and client Service of a component.
    pub fn component(&self, c: Component) -> String {
        format!("{}-{}", self.cluster, c.as_str())
    }

    /// The headless Service of a StatefulSet component.
    pub fn headless(&self, c: Component) -> String {
        format!("{}-{}-headless", self.cluster, c.as_str())
    }

    pub fn config_map(&self) -> String {
        format!("{}-config", self.cluster)
    }

    /// The name the components' gRPC certificates carry and are checked
    /// against.
    pub fn grpc_tls_name(&self) -> String {
        format!("{}-grpc.{}.svc", self.cluster, self.namespace)
    }

    /// The cert-manager Certificate (and its Secret) of `spec.grpcTls.issuerRef`.
    pub fn grpc_tls_certificate(&self) -> String {
        format!("{}-grpc-tls", self.cluster)
    }

    /// The Secret holding the cluster's admin token.
    pub fn admin_token_secret(&self) -> String {
        format!("{}-admin-token", self.cluster)
    }

    pub fn service_account(&self) -> String {
        self.cluster.clone()
    }

    /// DNS name of metastore voter `ordinal` (0-based) for Raft peers.
    pub fn metastore_peer(&self, ordinal: i32) -> String {
        format!(
            "{}-{ordinal}.{}.{}.svc:{GRPC_PORT}",
            self.component(Component::Metastore),
            self.headless(Component::Metastore),
            self.namespace
        )
    }

    /// Address components use to reach the metastore.
    pub fn metastore_address(&self) -> String {
        format!("{}.{}.svc:{GRPC_PORT}", self.component(Component::Metastore), self.namespace)
    }

    /// Labels that select a component's pods (never change: selectors are immutable).
    pub fn selector(&self, c: Component) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/name".to_owned(), "phlox".to_owned()),
            ("app.kubernetes.io/instance".to_owned(), self.cluster.clone()),
            ("app.kubernetes.io/component".to_owned(), c.as_str().to_owned()),
        ])
    }

    /// Labels of a component's objects and pods.
    pub fn labels(&self, c: Option<Component>) -> BTreeMap<String, String> {
        let mut l = BTreeMap::from([
            ("app.kubernetes.io/name".to_owned(), "phlox".to_owned()),
            ("app.kubernetes.io/instance".to_owned(), self.cluster.clone()),
            ("app.kubernetes.io/part-of".to_owned(), "phlox".to_owned()),
            ("app.kubernetes.io/managed-by".to_owned(), "phlox-operator".to_owned()),
        ]);
        if let Some(c) = c {
            l.insert("app.kubernetes.io/component".to_owned(), c.as_str().to_owned());
        }
        l
    }
}

/// Longest cluster name whose children are all valid: its StatefulSets are
/// `<name>-segment-writer` (a StatefulSet name may have at most 52
/// characters: its pods' `controller-revision-hash` label adds 11).
pub const MAX_CLUSTER_NAME: usize = 52 - "-segment-writer".len();

/// A cluster name every child can be named after: at most
/// [`MAX_CLUSTER_NAME`] characters of `a-z`, `0-9` and `-`, starting with a
/// letter and ending with a letter or digit (Service names are DNS-1035
/// labels). The CRD's validation says the same.
pub fn check_cluster_name(name: &str) -> crate::Result<()> {
    let ok_chars = name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let ok_ends = name.starts_with(|c: char| c.is_ascii_lowercase()) && !name.ends_with('-');
    if name.len() > MAX_CLUSTER_NAME || !ok_chars || !ok_ends {
        return Err(crate::Error::InvalidSpec(format!(
            "cluster name {name:?}: a name must be at most {MAX_CLUSTER_NAME} characters of lowercase letters, digits and '-', starting with a letter (its StatefulSets are named <name>-segment-writer, and a StatefulSet name may have at most 52)"
        )));
    }
    Ok(())
}
