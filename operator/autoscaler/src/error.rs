//! The crate's errors: settings or traces that cannot be used.

/// Why settings or a trace were refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The trace is not JSON of the expected shape (with line and column).
    #[error("invalid trace: {0}")]
    Json(#[from] serde_json::Error),
    /// An autoscaling setting out of its range.
    #[error("invalid autoscaling settings: {0}")]
    Settings(String),
    /// A trace field out of its range.
    #[error("invalid trace: {0}")]
    Trace(String),
}
