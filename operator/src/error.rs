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
}

impl Error {
    /// A short PascalCase reason for conditions, events and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube(_) => "KubernetesApiError",
            Error::InvalidSpec(_) => "InvalidSpec",
            Error::Serialization(_) => "SerializationError",
            Error::MissingField(_) => "InvalidObject",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
