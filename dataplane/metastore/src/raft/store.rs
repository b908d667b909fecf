//! The redb file shared by the log store and the state machine.
//!
//! ```text
//! raft_log    u64 index -> Entry (binary, see fsm::encode_stored; JSON before)
//! raft_meta   "vote" | "committed" | "last_purged" -> JSON
//! dedup_keys  (minute of block time, key) -> log index (see dedup_keys.rs)
//! snapshot    "meta" -> JSON SnapshotMeta
//!             ("data" -> JSON MetastoreState: the layout before snapshot files;
//!              moved to a file when the store is opened)
//! metastore-snapshots/<snapshot id>.snap   the snapshot's MetastoreState (binary)
//! ```

use std::fmt;
use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;

use redb::{Database, TableDefinition};
use tokio::sync::watch;

pub(crate) const LOGS: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("raft_log");
pub(crate) const META: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("raft_meta");
pub(crate) const SNAPSHOT: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("snapshot");

pub(crate) const VOTE_KEY: &str = "vote";
pub(crate) const COMMITTED_KEY: &str = "committed";
pub(crate) const LAST_PURGED_KEY: &str = "last_purged";
pub(crate) const SNAPSHOT_META_KEY: &str = "meta";
pub(crate) const SNAPSHOT_DATA_KEY: &str = "data";

/// File name of the store in the data directory.
pub(crate) const FILE_NAME: &str = "metastore.redb";
/// redb's page cache (its default is 1 GiB, which the process's RSS would
/// grow to): the log is written once and read back rarely, the dedup keys
/// are looked up only on a fingerprint hit.
const CACHE_BYTES: usize = 64 << 20;

/// Directory of the snapshot files in the data directory.
pub(crate) const SNAPSHOT_DIR: &str = "metastore-snapshots";

/// A failure of the embedded store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be opened.
    #[error("open metastore database: {0}")]
    Open(#[from] redb::DatabaseError),
    /// Another process holds the database file's lock.
    #[error(
        "{} is in use by another process (a phlox server or `phlox dump` on the same data directory): \
         stop that process, or give this one its own --data-dir",
        .0.display()
    )]
    Locked(std::path::PathBuf),
    /// The database file could not be opened, with its path.
    #[error("cannot open the metastore database {}: {source}", path.display())]
    OpenFile { path: std::path::PathBuf, source: redb::DatabaseError },
    /// A transaction could not start.
    #[error("metastore database transaction: {0}")]
    Transaction(#[from] redb::TransactionError),
    /// A table could not be opened.
    #[error("metastore database table: {0}")]
    Table(#[from] redb::TableError),
    /// A read or write failed.
    #[error("metastore database storage: {0}")]
    Storage(#[from] redb::StorageError),
    /// A commit failed.
    #[error("metastore database commit: {0}")]
    Commit(#[from] redb::CommitError),
    /// The durability level was refused.
    #[error("metastore database durability: {0}")]
    Durability(#[from] redb::SetDurabilityError),
    /// A stored value does not decode, or a value does not encode.
    #[error("metastore database value: {0}")]
    Codec(#[from] serde_json::Error),
    /// A stored log entry or snapshot does not decode, or does not encode.
    #[error("metastore stored state: {0}")]
    Stored(#[from] crate::fsm::CodecError),
    /// A snapshot file could not be read or written.
    #[error("metastore snapshot file {}: {source}", path.display())]
    SnapshotFile { path: std::path::PathBuf, source: std::io::Error },
    /// The blocking I/O task failed.
    #[error("metastore database task: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// The open database. When the last handle goes, the file is closed first
/// and then the watchers of [`open_database`]'s receiver are told (fields
/// drop in declaration order), so a restart in the same process can wait
/// for the file lock to be released.
pub(crate) struct Db {
    db: Database,
    /// Directory of the snapshot files.
    snapshots: std::path::PathBuf,
    _closed: watch::Sender<()>,
}

impl Db {
    /// Directory of the snapshot files.
    pub(crate) fn snapshot_dir(&self) -> &Path {
        &self.snapshots
    }
}

impl Deref for Db {
    type Target = Database;

    fn deref(&self) -> &Database {
        &self.db
    }
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Db").finish_non_exhaustive()
    }
}

/// Opens (or creates) `<dir>/metastore.redb` with all tables present. The
/// receiver's `changed()` fails once the database is closed.
pub(crate) fn open_database(dir: &Path) -> Result<(Arc<Db>, watch::Receiver<()>), StoreError> {
    let path = dir.join(FILE_NAME);
    let db = redb::Builder::new().set_cache_size(CACHE_BYTES).create(&path).map_err(|e| match e {
        redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked(path.clone()),
        source => StoreError::OpenFile { path: path.clone(), source },
    })?;
    let txn = db.begin_write()?;
    txn.open_table(LOGS)?;
    txn.open_table(META)?;
    txn.open_table(SNAPSHOT)?;
    txn.open_table(super::dedup_keys::DEDUP_KEYS)?;
    txn.commit()?;
    let snapshots = dir.join(SNAPSHOT_DIR);
    std::fs::create_dir_all(&snapshots)
        .map_err(|source| StoreError::SnapshotFile { path: snapshots.clone(), source })?;
    let (closed, on_close) = watch::channel(());
    Ok((Arc::new(Db { db, snapshots, _closed: closed }), on_close))
}

/// Runs a blocking store operation off the async workers.
pub(crate) async fn blocking<T, F>(db: &Arc<Db>, f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
{
    let db = Arc::clone(db);
    tokio::task::spawn_blocking(move || f(&db)).await?
}
