/// Errors of writing or reading a block.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("block {path} is corrupt: {reason}")]
    Corrupt { path: String, reason: String },
    #[error("block {path} has format version {version}, this build reads up to {max}")]
    UnsupportedVersion { path: String, version: u32, max: u32 },
    #[error("section {kind} of dataset {dataset} fails its checksum")]
    Checksum { dataset: String, kind: &'static str },
    #[error("a block needs at least one profile")]
    Empty,
    #[error("block is too large: {0}")]
    TooLarge(&'static str),
}

pub type Result<T, E = BlockError> = std::result::Result<T, E>;
