use serde::{Deserialize, Serialize};

/// Why the state machine refused a request. Requests are validated before
/// they are proposed; apply checks again, so a bad entry in the log changes
/// nothing and answers with this instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum InvalidRequest {
    /// `AddBlockRequest.block` is absent.
    #[error("add block request has no block")]
    MissingBlock,
    /// A block id is not a ULID.
    #[error("block id {id:?} is not a ulid")]
    InvalidBlockId {
        /// The id as sent.
        id: String,
    },
    /// `min_time > max_time` on a block or dataset.
    #[error("time range {min}..={max} of {what} is empty")]
    InvalidTimeRange {
        /// `"block"` or `"dataset <index>"`.
        what: String,
        /// Start, Unix ms.
        min: i64,
        /// End, Unix ms.
        max: i64,
    },
    /// Neither the dataset nor its block names a tenant.
    #[error("dataset {index} has no tenant")]
    DatasetWithoutTenant {
        /// Position of the dataset in the block.
        index: usize,
    },
    /// `dataset_keys` is neither empty nor one entry per dataset.
    #[error("{keys} dedup key lists for {datasets} datasets")]
    DatasetKeyCount {
        /// Number of datasets in the block.
        datasets: usize,
        /// Number of key lists sent.
        keys: usize,
    },
    /// A dedup key list is not a whole number of 16-byte keys.
    #[error("dedup keys of dataset {index} are {len} bytes, not a multiple of 16")]
    DatasetKeyLength {
        /// Position of the dataset in the block.
        index: usize,
        /// Length of its key list in bytes.
        len: usize,
    },
    /// A heartbeat without a member or with an empty member id.
    #[error("compaction poll has no worker id")]
    MissingWorker,
    #[error("unknown compaction job {id}")]
    UnknownJob { id: String },
    #[error("compaction job {id}: token {token} is not the current lease")]
    StaleLease { id: String, token: u64 },
    #[error("compaction job {id}: the result is not one block of the job's tenant one level up")]
    JobResultMismatch { id: String },
    #[error("heartbeat has no member id")]
    MissingMember,
    /// A deletion without a tenant.
    #[error("delete request has no tenant")]
    MissingTenant,
    /// A query whose start is after its end.
    #[error("query range {start}..={end} is empty")]
    InvalidQueryRange {
        /// Start, Unix ms.
        start: i64,
        /// End, Unix ms.
        end: i64,
    },
    /// A matcher type that is not in `MatchType`.
    #[error("unknown match type {0}")]
    UnknownMatchType(i32),
    /// A regex matcher that does not compile.
    #[error("invalid regex for {name:?}: {reason}")]
    InvalidRegex {
        /// Label name of the matcher.
        name: String,
        /// The regex compiler's message.
        reason: String,
    },
}
