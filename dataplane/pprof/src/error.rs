/// Why a pprof payload was rejected. Every variant is a client error (400).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("malformed pprof: message is truncated")]
    Truncated,
    #[error("malformed pprof: varint longer than 10 bytes")]
    BadVarint,
    #[error("malformed pprof: invalid field tag")]
    BadTag,
    #[error("malformed pprof: unexpected wire type {0}")]
    BadWireType(u8),
    #[error("malformed pprof: string is not valid UTF-8")]
    InvalidUtf8,
    #[error("malformed pprof: table larger than 4 GiB")]
    TooLarge,
    #[error("malformed profile: {0}")]
    Invalid(String),
    #[error("invalid gzip stream: {0}")]
    Gzip(String),
    #[error("uncompressed profile payload size exceeds limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("profile has no __name__ label")]
    MissingName,
}
