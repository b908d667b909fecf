//! The Raft state machine: [`MetastoreState`] in memory, snapshots in
//! files (streamed in the binary format of [`crate::fsm::encode_stored`])
//! whose metadata is in redb.
//!
//! Apply does not persist anything; the last snapshot plus the committed log
//! after it rebuild the state at restart (openraft replays entries up to the
//! saved committed pointer).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftSnapshotBuilder,
    Snapshot, SnapshotMeta, StorageError, StorageIOError, StoredMembership,
};
use redb::{Durability, ReadableDatabase as _};

use super::TypeConfig;
use super::dedup_keys::DedupKeys;
use super::store::{Db, SNAPSHOT, SNAPSHOT_DATA_KEY, SNAPSHOT_META_KEY, StoreError, blocking};
use crate::fsm::{MetastoreState, Response, decode_stored, encode_stored};
use crate::metrics::StorageMetrics;

type StorageResult<T> = Result<T, StorageError<u64>>;
type Meta = SnapshotMeta<u64, BasicNode>;

/// What the state machine has applied; shared with the read path.
#[derive(Debug, Default)]
pub(crate) struct AppliedState {
    pub(crate) last_applied: Option<LogId<u64>>,
    pub(crate) membership: StoredMembership<u64, BasicNode>,
    pub(crate) state: MetastoreState,
}

/// Shared, lock-protected applied state. The lock is never held across an
/// await.
pub(crate) type SharedState = Arc<RwLock<AppliedState>>;

fn read_lock(shared: &SharedState) -> std::sync::RwLockReadGuard<'_, AppliedState> {
    // A panic while holding the lock leaves a state we still want to read.
    shared.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write_lock(shared: &SharedState) -> std::sync::RwLockWriteGuard<'_, AppliedState> {
    shared.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn read_state<T>(shared: &SharedState, f: impl FnOnce(&AppliedState) -> T) -> T {
    f(&read_lock(shared))
}

fn snapshot_err(meta: Option<&Meta>, verb: ErrorVerb, e: StoreError) -> StorageError<u64> {
    let subject = match meta {
        Some(m) => ErrorSubject::Snapshot(Some(m.signature())),
        None => ErrorSubject::Snapshot(None),
    };
    StorageIOError::new(subject, verb, AnyError::new(&e)).into()
}

fn file_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::SnapshotFile { path: path.to_owned(), source }
}

/// The file of snapshot `id` (ids are `<leader id>-<index>-<seq>`; anything
/// but letters, digits, `-` and `_` is replaced).
pub(crate) fn snapshot_path(db: &Db, id: &str) -> PathBuf {
    let name: String =
        id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    db.snapshot_dir().join(format!("{name}.snap"))
}

/// Where a snapshot sent by the leader is written while it arrives.
fn receiving_path(db: &Db) -> PathBuf {
    db.snapshot_dir().join("receiving.tmp")
}

/// Flushes a directory entry change (a rename) to disk.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(file_err(dir))
}

/// The persisted snapshot's metadata, if any. A store of the layout before
/// snapshot files (the state as JSON in redb) is moved to a file first.
fn load_snapshot_meta(db: &Db) -> Result<Option<Meta>, StoreError> {
    let (meta, old_data) = {
        let txn = db.begin_read()?;
        let table = txn.open_table(SNAPSHOT)?;
        let Some(meta) = table.get(SNAPSHOT_META_KEY)? else { return Ok(None) };
        let meta: Meta = serde_json::from_slice(meta.value())?;
        (meta, table.get(SNAPSHOT_DATA_KEY)?.map(|d| d.value().to_vec()))
    };
    if let Some(data) = old_data {
        let path = snapshot_path(db, &meta.snapshot_id);
        write_file(&path, &data)?;
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        txn.open_table(SNAPSHOT)?.remove(SNAPSHOT_DATA_KEY)?;
        txn.commit()?;
        tracing::info!(snapshot_id = %meta.snapshot_id, "moved the metastore snapshot out of the database into a file");
    }
    Ok(Some(meta))
}

fn write_file(path: &Path, data: &[u8]) -> Result<(), StoreError> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp).map_err(file_err(&tmp))?;
    file.write_all(data).and_then(|()| file.sync_all()).map_err(file_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(file_err(path))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Reads and decodes the snapshot file of `meta`.
fn read_snapshot(db: &Db, meta: &Meta) -> Result<(MetastoreState, u64), StoreError> {
    let path = snapshot_path(db, &meta.snapshot_id);
    let data = std::fs::read(&path).map_err(file_err(&path))?;
    Ok((decode_stored(&data)?, data.len() as u64))
}

/// Makes `meta` the persisted snapshot (its file is in place) and removes
/// every other snapshot file.
fn commit_snapshot(db: &Db, meta: &Meta) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(meta)?;
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    {
        let mut table = txn.open_table(SNAPSHOT)?;
        table.insert(SNAPSHOT_META_KEY, bytes.as_slice())?;
        table.remove(SNAPSHOT_DATA_KEY)?;
    }
    txn.commit()?;
    let keep = snapshot_path(db, &meta.snapshot_id);
    let dir = db.snapshot_dir();
    for entry in std::fs::read_dir(dir).map_err(file_err(dir))?.flatten() {
        let path = entry.path();
        if path != keep && path.extension().is_some_and(|e| e == "snap") {
            let _ = std::fs::remove_file(&path);
        }
    }
    Ok(())
}

/// The openraft state machine.
#[derive(Debug)]
pub(crate) struct StateMachineStore {
    db: Arc<Db>,
    shared: SharedState,
    metrics: StorageMetrics,
    snapshot_seq: Arc<AtomicU64>,
    /// This node's dedup keys: sent after the state in a snapshot transfer,
    /// loaded from one on install.
    keys: Arc<DedupKeys>,
}

impl StorageMetrics {
    fn observe_state(&self, state: &MetastoreState) {
        self.blocks.set(gauge_value(state.block_count()));
        for (level, (waiting, leased)) in state.compaction_jobs_by_level().into_iter().enumerate() {
            let level = level.to_string();
            self.compaction_jobs.with_label_values(&[level.as_str(), "waiting"]).set(gauge_value(waiting));
            self.compaction_jobs.with_label_values(&[level.as_str(), "leased"]).set(gauge_value(leased));
        }
    }
}

impl StateMachineStore {
    /// Opens the state machine, restoring the last snapshot from `db`.
    pub(crate) fn open(db: Arc<Db>, metrics: StorageMetrics, keys: Arc<DedupKeys>) -> Result<Self, StoreError> {
        let mut applied = AppliedState::default();
        if let Some(meta) = load_snapshot_meta(&db)? {
            let (state, bytes) = read_snapshot(&db, &meta)?;
            metrics.snapshot_bytes.set(gauge_value(bytes as usize));
            applied.state = state;
            applied.last_applied = meta.last_log_id;
            applied.membership = meta.last_membership;
            tracing::info!(
                snapshot_id = %meta.snapshot_id,
                blocks = applied.state.block_count(),
                bytes,
                "restored metastore snapshot"
            );
        }
        metrics.observe_state(&applied.state);
        Ok(Self {
            db,
            shared: Arc::new(RwLock::new(applied)),
            metrics,
            snapshot_seq: Arc::new(AtomicU64::new(0)),
            keys,
        })
    }

    /// Records, once, the dedup keys of a store written by an earlier
    /// version (see [`super::dedup_keys::migrate`]).
    pub(crate) fn migrate_dedup_keys(&self) -> Result<(), StoreError> {
        let legacy = read_lock(&self.shared).state.legacy_dedup_entries();
        super::dedup_keys::migrate(&self.db, &self.keys, legacy)
    }

    /// The state as applied, for the read path.
    pub(crate) fn shared(&self) -> SharedState {
        Arc::clone(&self.shared)
    }
}

fn gauge_value(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Builds snapshots from the shared state.
#[derive(Debug)]
pub(crate) struct SnapshotBuilder {
    db: Arc<Db>,
    shared: SharedState,
    metrics: StorageMetrics,
    snapshot_seq: Arc<AtomicU64>,
}

impl SnapshotBuilder {
    /// Streams the state into a new snapshot file and makes it current.
    fn build(&self) -> Result<(Meta, PathBuf, u64), StoreError> {
        let seq = self.snapshot_seq.fetch_add(1, Ordering::Relaxed);
        let tmp = self.db.snapshot_dir().join(format!("building-{seq}.tmp"));
        let file = std::fs::File::create(&tmp).map_err(file_err(&tmp))?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        // Encoded under the read lock, so that the data and last_applied agree.
        let (last_applied, membership) = {
            let applied = read_lock(&self.shared);
            out = encode_stored(&applied.state, out)?;
            (applied.last_applied, applied.membership.clone())
        };
        let file =
            out.into_inner().map_err(|e| StoreError::SnapshotFile { path: tmp.clone(), source: e.into_error() })?;
        file.sync_all().map_err(file_err(&tmp))?;
        let bytes = file.metadata().map_err(file_err(&tmp))?.len();
        let snapshot_id = match last_applied {
            Some(id) => format!("{}-{}-{seq}", id.leader_id, id.index),
            None => format!("none-{seq}"),
        };
        let meta = Meta { last_log_id: last_applied, last_membership: membership, snapshot_id };
        let path = snapshot_path(&self.db, &meta.snapshot_id);
        std::fs::rename(&tmp, &path).map_err(file_err(&path))?;
        sync_dir(self.db.snapshot_dir())?;
        commit_snapshot(&self.db, &meta)?;
        Ok((meta, path, bytes))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let started = std::time::Instant::now();
        let builder = Self {
            db: Arc::clone(&self.db),
            shared: Arc::clone(&self.shared),
            metrics: self.metrics.clone(),
            snapshot_seq: Arc::clone(&self.snapshot_seq),
        };
        let (meta, path, bytes) =
            blocking(&self.db, move |_| builder.build()).await.map_err(|e| snapshot_err(None, ErrorVerb::Write, e))?;
        let seconds = started.elapsed().as_secs_f64();
        self.metrics.snapshot_bytes.set(gauge_value(bytes as usize));
        self.metrics.snapshot_build_seconds.set(seconds);
        tracing::info!(snapshot_id = %meta.snapshot_id, bytes, seconds, "built metastore snapshot");
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| snapshot_err(Some(&meta), ErrorVerb::Read, file_err(&path)(e)))?;
        Ok(Snapshot { meta, snapshot: Box::new(file) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> StorageResult<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>)> {
        let applied = read_lock(&self.shared);
        Ok((applied.last_applied, applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<Response>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut applied = write_lock(&self.shared);
        let responses = entries
            .into_iter()
            .map(|entry| {
                applied.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => Response::Empty,
                    EntryPayload::Normal(command) => applied.state.apply(command),
                    EntryPayload::Membership(membership) => {
                        applied.membership = StoredMembership::new(Some(entry.log_id), membership);
                        Response::Empty
                    }
                }
            })
            .collect();
        self.metrics.observe_state(&applied.state);
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            db: Arc::clone(&self.db),
            shared: Arc::clone(&self.shared),
            metrics: self.metrics.clone(),
            snapshot_seq: Arc::clone(&self.snapshot_seq),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<tokio::fs::File>> {
        let path = receiving_path(&self.db);
        // Readable too: `install_snapshot` reads what arrived from it.
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .await
            .map_err(|e| snapshot_err(None, ErrorVerb::Write, file_err(&path)(e)))?;
        Ok(Box::new(file))
    }

    async fn install_snapshot(&mut self, meta: &Meta, mut snapshot: Box<tokio::fs::File>) -> StorageResult<()> {
        use tokio::io::{AsyncSeekExt as _, AsyncWriteExt as _};
        // Copied from the start into a file of ours: the data may be any
        // file (openraft hands over what `begin_receiving_snapshot` gave,
        // but nothing requires it).
        let received = self.db.snapshot_dir().join("installing.tmp");
        let copied = async {
            snapshot.flush().await?;
            snapshot.seek(std::io::SeekFrom::Start(0)).await?;
            let mut out = tokio::fs::File::create(&received).await?;
            tokio::io::copy(&mut *snapshot, &mut out).await?;
            out.sync_all().await
        };
        copied.await.map_err(|e| snapshot_err(Some(meta), ErrorVerb::Write, file_err(&received)(e)))?;
        drop(snapshot);
        let _ = tokio::fs::remove_file(receiving_path(&self.db)).await;
        let db = Arc::clone(&self.db);
        let installed = meta.clone();
        let keys = Arc::clone(&self.keys);
        let (state, bytes) = blocking(&self.db, move |_| {
            let path = snapshot_path(&db, &installed.snapshot_id);
            let data = std::fs::read(&received).map_err(file_err(&received))?;
            match split_transfer(&data) {
                Some((state, records)) => {
                    write_file(&path, state)?;
                    let entries = keys.import(&db, records)?;
                    tracing::info!(entries, "loaded the dedup keys sent with the snapshot");
                    let _ = std::fs::remove_file(&received);
                }
                None => {
                    std::fs::rename(&received, &path).map_err(file_err(&path))?;
                    sync_dir(db.snapshot_dir())?;
                }
            }
            let read = read_snapshot(&db, &installed)?;
            commit_snapshot(&db, &installed)?;
            Ok(read)
        })
        .await
        .map_err(|e| snapshot_err(Some(meta), ErrorVerb::Read, e))?;
        self.metrics.snapshot_bytes.set(gauge_value(bytes as usize));
        let mut applied = write_lock(&self.shared);
        applied.last_applied = meta.last_log_id;
        applied.membership = meta.last_membership.clone();
        applied.state = state;
        self.metrics.observe_state(&applied.state);
        tracing::info!(snapshot_id = %meta.snapshot_id, bytes, "installed metastore snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let Some(meta) = load_snapshot_meta(&self.db).map_err(|e| snapshot_err(None, ErrorVerb::Read, e))? else {
            return Ok(None);
        };
        // What a follower receives: the state, then this node's dedup keys
        // (the follower's log will not hold the entries before the snapshot).
        let (db, keys, id) = (Arc::clone(&self.db), Arc::clone(&self.keys), meta.snapshot_id.clone());
        let seq = self.snapshot_seq.fetch_add(1, Ordering::Relaxed);
        let path = blocking(&self.db, move |_| {
            let state_path = snapshot_path(&db, &id);
            let state = std::fs::read(&state_path).map_err(file_err(&state_path))?;
            let path = db.snapshot_dir().join(format!("sending-{seq}.tmp"));
            let file = std::fs::File::create(&path).map_err(file_err(&path))?;
            let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
            out.write_all(TRANSFER_MAGIC)
                .and_then(|()| out.write_all(&(state.len() as u64).to_le_bytes()))
                .and_then(|()| out.write_all(&state))
                .map_err(file_err(&path))?;
            keys.export(&db, &mut out)?;
            out.flush().map_err(file_err(&path))?;
            Ok(path)
        })
        .await
        .map_err(|e| snapshot_err(Some(&meta), ErrorVerb::Read, e))?;
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| snapshot_err(Some(&meta), ErrorVerb::Read, file_err(&path)(e)))?;
        // Unlinked now; the open file stays readable for the transfer.
        let _ = tokio::fs::remove_file(&path).await;
        Ok(Some(Snapshot { meta, snapshot: Box::new(file) }))
    }
}

/// Start of a snapshot transfer that carries dedup keys after the state.
const TRANSFER_MAGIC: &[u8; 8] = b"PXSNAPK1";

/// (state, dedup key records) of a transfer; `None` for a bare state.
fn split_transfer(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let rest = data.strip_prefix(TRANSFER_MAGIC.as_slice())?;
    let (len, rest) = rest.split_at_checked(8)?;
    let len = usize::try_from(u64::from_le_bytes(len.try_into().ok()?)).ok()?;
    rest.split_at_checked(len)
}
