/// Why a query failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum QueryError {
    /// Bad query: 400 `invalid_argument`.
    #[error("{0}")]
    InvalidArgument(String),
    /// A feature this build does not serve yet: 501.
    #[error("{0}")]
    Unimplemented(String),
    /// The metastore or the bucket failed: 503.
    #[error("{0}")]
    Unavailable(String),
    /// A block could not be read: 500.
    #[error("{0}")]
    Internal(String),
}

impl QueryError {
    pub fn connect_code(&self) -> &'static str {
        match self {
            QueryError::InvalidArgument(_) => "invalid_argument",
            QueryError::Unimplemented(_) => "unimplemented",
            QueryError::Unavailable(_) => "unavailable",
            QueryError::Internal(_) => "internal",
        }
    }
}

impl From<phlox_block::BlockError> for QueryError {
    fn from(e: phlox_block::BlockError) -> Self {
        match e {
            phlox_block::BlockError::Store(s) => QueryError::Unavailable(format!("object store: {s}")),
            other => QueryError::Internal(other.to_string()),
        }
    }
}

impl From<tonic::Status> for QueryError {
    fn from(s: tonic::Status) -> Self {
        match s.code() {
            tonic::Code::InvalidArgument => QueryError::InvalidArgument(s.message().to_owned()),
            _ => QueryError::Unavailable(format!("metastore: {}", s.message())),
        }
    }
}
