/// Why a push was not acknowledged. Cloneable: one flush answers many pushes.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum WriteError {
    #[error("segment writer is shutting down")]
    ShuttingDown,
    #[error("shard {shard} does not exist (writer has {shards})")]
    UnknownShard { shard: u32, shards: u32 },
    #[error("segment writer buffer is full ({limit} bytes per shard); retry later")]
    Overloaded { limit: usize },
    #[error("segment upload failed: {0}")]
    Upload(String),
    #[error("segment registration failed: {0}")]
    Registration(String),
    #[error("segment encoding failed: {0}")]
    Encode(String),
}
