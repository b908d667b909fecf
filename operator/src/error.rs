//! Operator errors.

/// What can go wrong while reconciling.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("the spec cannot be rendered: {0}")]
    InvalidSpec(String),
    #[error("serialization: {0}")]
    Serialization(#[from] serde_json::Error),
    #[error("the PyroscopeCluster has no {0}")]
    MissingField(&'static str),
    /// The cluster's admin token cannot be made or read.
    #[error("admin token: {0}")]
    AdminToken(String),
    /// Children the API refused (the others were applied).
    #[error("children refused: {0}")]
    ChildrenRefused(String),
    /// An object of a child's name exists and this cluster does not own it.
    #[error("{kind} {name} exists and is not owned by this cluster: left alone (rename or delete it)")]
    NotOwned { kind: String, name: String },
}

impl Error {
    /// Every [`Error::reason`].
    pub const REASONS: [&'static str; 7] = [
        "KubernetesApiError",
        "InvalidSpec",
        "SerializationError",
        "InvalidObject",
        "AdminTokenUnavailable",
        "NotOwned",
        "ChildRefused",
    ];

    /// A short PascalCase reason for conditions, events and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube(_) => "KubernetesApiError",
            Error::InvalidSpec(_) => "InvalidSpec",
            Error::Serialization(_) => "SerializationError",
            Error::MissingField(_) => "InvalidObject",
            Error::AdminToken(_) => "AdminTokenUnavailable",
            Error::NotOwned { .. } => "NotOwned",
            Error::ChildrenRefused(_) => "ChildRefused",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
