use phlox_pprof::SeriesProfile;

/// Why a shard did not acknowledge.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SinkError {
    #[error("{0}")]
    Overloaded(String),
    #[error("{0}")]
    Unavailable(String),
}

/// Where the distributor sends per-series profiles: the segment writers,
/// in-process or remote. `push` resolves once the profiles are durable and
/// indexed.
#[async_trait::async_trait]
pub trait ShardWriter: Send + Sync + 'static {
    /// Number of shards.
    fn shards(&self) -> u32;
    /// Number of writers the shards are dealt over (round-robin: shard `s`
    /// is writer `s % writers`). A dataset spreads over at most this many
    /// consecutive shards: one per writer, never two shards of one writer,
    /// whose builders would each intern the dataset's symbols again.
    fn writers(&self) -> u32;
    async fn push(&self, tenant: &str, shard: u32, profiles: Vec<SeriesProfile>) -> Result<(), SinkError>;
}
