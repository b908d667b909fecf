/// Why a push failed, by the status the client gets.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PushError {
    /// Bad input: HTTP 400 / `invalid_argument`; clients must not retry.
    #[error("{0}")]
    InvalidArgument(String),
    /// Limits or back-pressure: HTTP 429 / `resource_exhausted`; retry later.
    #[error("{0}")]
    ResourceExhausted(String),
    /// Storage or metastore not available: HTTP 503 / `unavailable`; retry.
    #[error("{0}")]
    Unavailable(String),
}

impl PushError {
    /// The Connect error code name.
    pub fn connect_code(&self) -> &'static str {
        match self {
            PushError::InvalidArgument(_) => "invalid_argument",
            PushError::ResourceExhausted(_) => "resource_exhausted",
            PushError::Unavailable(_) => "unavailable",
        }
    }

    /// The HTTP status of the Connect code.
    pub fn http_status(&self) -> u16 {
        match self {
            PushError::InvalidArgument(_) => 400,
            PushError::ResourceExhausted(_) => 429,
            PushError::Unavailable(_) => 503,
        }
    }
}
