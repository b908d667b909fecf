//! The dedup keys of the level-0 blocks in this node's Raft log, over a
//! window of block time: what the leader consults to decide which rows of a
//! new segment an earlier block already holds.
//!
//! Not part of the replicated state (which holds block metadata only): every
//! voter records the keys of the AddBlock entries it appends to its log, in
//! the same durable redb transaction, and forgets those of entries truncated
//! from it. The leader's log holds every committed entry, so its keys cover
//! every block acknowledged in the window; the decision it takes travels in
//! the entry (`Dataset.shadowed_keys`), so every voter applies the same.
//!
//! On disk: `(bucket, log index) -> the entry's keys` (a bucket is a minute
//! of block time: each append writes one value, in order, and the window's
//! end is a range delete). In memory: an 8-byte fingerprint per key and
//! bucket (sorted vectors once a bucket is closed), rebuilt from the table
//! at start; a fingerprint hit is confirmed against the bucket's keys on
//! disk (a retried row, or one chance in 2^64 per key and minute).

use std::collections::BTreeMap;
use std::sync::Mutex;

use redb::{ReadableDatabase as _, ReadableTable as _, TableDefinition, WriteTransaction};
use rustc_hash::FxHashMap;

use super::store::{LOGS, META, StoreError};
use crate::fsm::{Command, KEY_LEN, decode_stored};

/// `(bucket, log index) -> the keys of that entry, concatenated`.
pub(crate) const DEDUP_KEYS: TableDefinition<'static, (i64, u64), &[u8]> = TableDefinition::new("dedup_keys");

/// Block time per bucket.
const BUCKET_MS: i64 = 60_000;

fn bucket_of(time_ms: i64) -> i64 {
    time_ms.div_euclid(BUCKET_MS)
}

fn fingerprint(key: &[u8; KEY_LEN]) -> u64 {
    u64::from_le_bytes([key[0], key[1], key[2], key[3], key[4], key[5], key[6], key[7]])
}

fn fingerprint_of(key: &[u8]) -> u64 {
    let mut k = [0u8; KEY_LEN];
    k.copy_from_slice(key);
    fingerprint(&k)
}

/// The keys one log entry records: level-0 AddBlocks only (a compacted
/// block holds rows deduplicated when their segments were added).
pub(crate) fn entry_keys(command: &Command) -> Option<(i64, impl Iterator<Item = [u8; KEY_LEN]> + '_)> {
    let Command::AddBlock { request, .. } = command else { return None };
    let block = request.block.as_ref()?;
    if block.compaction_level != 0 || request.dataset_keys.iter().all(|k| k.is_empty()) {
        return None;
    }
    let keys = request.dataset_keys.iter().flat_map(|k| k.chunks_exact(KEY_LEN)).map(|c| {
        let mut key = [0u8; KEY_LEN];
        key.copy_from_slice(c);
        key
    });
    Some((block.max_time, keys))
}

/// Fingerprints of one bucket.
#[derive(Debug)]
enum Bucket {
    /// Still receiving keys: fingerprint -> how many keys have it.
    Open(FxHashMap<u64, u32>),
    /// Closed: sorted (with repeats), and where each value of the top
    /// `bits` bits starts (about four fingerprints per value, so a lookup
    /// reads two cache lines).
    Closed { fps: Vec<u64>, starts: Vec<u32>, bits: u32 },
}

impl Bucket {
    fn contains(&self, fp: u64) -> bool {
        match self {
            Bucket::Open(m) => m.contains_key(&fp),
            Bucket::Closed { fps, starts, bits } => {
                let slot = if *bits == 0 { 0 } else { (fp >> (64 - bits)) as usize };
                let (from, to) = (starts[slot] as usize, starts[slot + 1] as usize);
                fps[from..to].contains(&fp)
            }
        }
    }

    fn insert(&mut self, fp: u64) {
        if let Bucket::Closed { fps, .. } = self {
            // A late block for a closed minute (rare): reopen it.
            let mut m = FxHashMap::default();
            for f in fps.iter() {
                *m.entry(*f).or_default() += 1;
            }
            *self = Bucket::Open(m);
        }
        if let Bucket::Open(m) = self {
            *m.entry(fp).or_default() += 1;
        }
    }

    fn close(&mut self) {
        if let Bucket::Open(m) = self {
            let mut fps: Vec<u64> = Vec::with_capacity(m.values().map(|n| *n as usize).sum());
            for (fp, n) in m.drain() {
                fps.extend(std::iter::repeat_n(fp, n as usize));
            }
            fps.sort_unstable();
            let bits = (fps.len() / 4).max(1).ilog2().min(24);
            let mut starts = Vec::with_capacity((1usize << bits) + 1);
            let mut at = 0usize;
            for slot in 0..(1u64 << bits) {
                while at < fps.len() && bits > 0 && (fps[at] >> (64 - bits)) < slot {
                    at += 1;
                }
                starts.push(at as u32);
            }
            starts.push(fps.len() as u32);
            *self = Bucket::Closed { fps, starts, bits };
        }
    }
}

#[derive(Debug, Default)]
struct Memory {
    newest_ms: Option<i64>,
    buckets: BTreeMap<i64, Bucket>,
    /// Keys recorded per bucket (the metric).
    counts: BTreeMap<i64, usize>,
}

impl Memory {
    fn insert(&mut self, bucket: i64, fp: u64) {
        self.buckets.entry(bucket).or_insert_with(|| Bucket::Open(FxHashMap::default())).insert(fp);
        *self.counts.entry(bucket).or_default() += 1;
    }

    /// A truncated entry's key: its fingerprint may stay (a stale hit only
    /// costs a look at the disk, which no longer has the key).
    fn remove(&mut self, bucket: i64) {
        if let Some(n) = self.counts.get_mut(&bucket) {
            *n = n.saturating_sub(1);
        }
    }

    fn count(&self) -> usize {
        self.counts.values().sum()
    }

    /// Closes every bucket but the two newest, drops those before `cutoff`.
    fn settle(&mut self, cutoff_bucket: i64) {
        self.buckets = self.buckets.split_off(&cutoff_bucket);
        self.counts = self.counts.split_off(&cutoff_bucket);
        let open = self.buckets.len().saturating_sub(2);
        for bucket in self.buckets.values_mut().take(open) {
            bucket.close();
        }
    }
}

/// A node's dedup keys: the disk table's in-memory fingerprints and window.
#[derive(Debug)]
pub(crate) struct DedupKeys {
    window_ms: i64,
    memory: Mutex<Memory>,
}

/// What one write transaction recorded, to apply to memory once committed.
#[derive(Debug, Default)]
pub(crate) struct Recorded {
    added: Vec<(i64, u64)>,
    removed: Vec<(i64, u64)>,
    newest_ms: Option<i64>,
}

impl DedupKeys {
    /// Loads the fingerprints of the table.
    pub(crate) fn open(db: &redb::Database, window_ms: i64) -> Result<Self, StoreError> {
        let mut memory = Memory::default();
        let txn = db.begin_read()?;
        let table = txn.open_table(DEDUP_KEYS)?;
        for item in table.iter()? {
            let (key, value) = item?;
            let (bucket, _) = key.value();
            for k in value.value().chunks_exact(KEY_LEN) {
                memory.insert(bucket, fingerprint_of(k));
            }
            let end = (bucket + 1) * BUCKET_MS - 1;
            memory.newest_ms = Some(memory.newest_ms.map_or(end, |n| n.max(end)));
        }
        let cutoff = memory.newest_ms.map_or(i64::MIN, |n| bucket_of(n.saturating_sub(window_ms)));
        memory.settle(cutoff);
        Ok(Self { window_ms, memory: Mutex::new(memory) })
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keys held in the window.
    pub(crate) fn len(&self) -> usize {
        self.memory().count()
    }

    /// Records the keys of the entry at `index` (block time `time_ms`) in
    /// `txn`.
    pub(crate) fn record(
        &self,
        txn: &WriteTransaction,
        recorded: &mut Recorded,
        index: u64,
        time_ms: i64,
        keys: impl Iterator<Item = [u8; KEY_LEN]>,
    ) -> Result<(), StoreError> {
        let bucket = bucket_of(time_ms);
        let mut blob = Vec::new();
        for key in keys {
            blob.extend_from_slice(&key);
            recorded.added.push((bucket, fingerprint(&key)));
        }
        txn.open_table(DEDUP_KEYS)?.insert((bucket, index), blob.as_slice())?;
        recorded.newest_ms = Some(recorded.newest_ms.map_or(time_ms, |n| n.max(time_ms)));
        Ok(())
    }

    /// Forgets the keys the entry at `index` (block time `time_ms`)
    /// recorded: it is truncated from the log.
    pub(crate) fn forget(
        &self,
        txn: &WriteTransaction,
        recorded: &mut Recorded,
        index: u64,
        time_ms: i64,
    ) -> Result<(), StoreError> {
        let bucket = bucket_of(time_ms);
        if let Some(blob) = txn.open_table(DEDUP_KEYS)?.remove((bucket, index))? {
            for k in blob.value().chunks_exact(KEY_LEN) {
                recorded.removed.push((bucket, fingerprint_of(k)));
            }
        }
        Ok(())
    }

    /// Drops, in `txn`, the buckets that fall out of the window once
    /// `recorded` is in.
    pub(crate) fn prune(&self, txn: &WriteTransaction, recorded: &Recorded) -> Result<(), StoreError> {
        let newest = {
            let memory = self.memory();
            match (memory.newest_ms, recorded.newest_ms) {
                (Some(a), Some(b)) => a.max(b),
                (a, b) => match a.or(b) {
                    Some(n) => n,
                    None => return Ok(()),
                },
            }
        };
        let cutoff = bucket_of(newest.saturating_sub(self.window_ms));
        txn.open_table(DEDUP_KEYS)?.retain_in((i64::MIN, 0u64)..(cutoff, 0u64), |_, _| false)?;
        Ok(())
    }

    /// Applies what a committed transaction recorded.
    pub(crate) fn committed(&self, recorded: Recorded) {
        let mut memory = self.memory();
        for (bucket, _) in recorded.removed {
            memory.remove(bucket);
        }
        for (bucket, fp) in recorded.added {
            memory.insert(bucket, fp);
        }
        if let Some(t) = recorded.newest_ms {
            memory.newest_ms = Some(memory.newest_ms.map_or(t, |n| n.max(t)));
        }
        let cutoff = memory.newest_ms.map_or(i64::MIN, |n| bucket_of(n.saturating_sub(self.window_ms)));
        memory.settle(cutoff);
    }

    /// The keys of `keys` that a block of the window holds (fingerprint
    /// hits confirmed on disk, one read of each bucket that has any).
    pub(crate) fn held(&self, db: &redb::Database, keys: &[[u8; KEY_LEN]]) -> Result<Vec<[u8; KEY_LEN]>, StoreError> {
        let mut candidates: BTreeMap<i64, Vec<[u8; KEY_LEN]>> = BTreeMap::new();
        {
            let memory = self.memory();
            for key in keys {
                let fp = fingerprint(key);
                for (bucket, b) in &memory.buckets {
                    if b.contains(fp) {
                        candidates.entry(*bucket).or_default().push(*key);
                    }
                }
            }
        }
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let txn = db.begin_read()?;
        let table = txn.open_table(DEDUP_KEYS)?;
        let mut held = Vec::new();
        for (bucket, mut wanted) in candidates {
            wanted.sort_unstable();
            wanted.dedup();
            for item in table.range((bucket, 0u64)..=(bucket, u64::MAX))? {
                let (_, value) = item?;
                for k in value.value().chunks_exact(KEY_LEN) {
                    if let Ok(at) = wanted.binary_search_by(|w| w.as_slice().cmp(k)) {
                        held.push(wanted.remove(at));
                    }
                }
                if wanted.is_empty() {
                    break;
                }
            }
        }
        Ok(held)
    }
}

impl DedupKeys {
    /// Writes every record of the table to `out`: (bucket i64, index u64,
    /// length u32, keys), little-endian. What a snapshot transfer carries
    /// after the state, so that the follower installing it holds the keys
    /// of the blocks before it.
    pub(crate) fn export(&self, db: &redb::Database, out: &mut impl std::io::Write) -> Result<(), StoreError> {
        let txn = db.begin_read()?;
        let table = txn.open_table(DEDUP_KEYS)?;
        let io = |e: std::io::Error| StoreError::SnapshotFile { path: "dedup keys".into(), source: e };
        for item in table.iter()? {
            let (key, value) = item?;
            let (bucket, index) = key.value();
            let blob = value.value();
            out.write_all(&bucket.to_le_bytes()).map_err(io)?;
            out.write_all(&index.to_le_bytes()).map_err(io)?;
            out.write_all(&u32::try_from(blob.len()).unwrap_or(u32::MAX).to_le_bytes()).map_err(io)?;
            out.write_all(blob).map_err(io)?;
        }
        Ok(())
    }

    /// Records what [`Self::export`] wrote (a truncated tail is ignored).
    pub(crate) fn import(&self, db: &redb::Database, mut records: &[u8]) -> Result<usize, StoreError> {
        let mut txn = db.begin_write()?;
        txn.set_durability(redb::Durability::Immediate)?;
        let mut recorded = Recorded::default();
        let mut entries = 0;
        {
            let mut table = txn.open_table(DEDUP_KEYS)?;
            while records.len() >= 20 {
                let (head, rest) = records.split_at(20);
                let bucket = i64::from_le_bytes(head[..8].try_into().unwrap_or_default());
                let index = u64::from_le_bytes(head[8..16].try_into().unwrap_or_default());
                let len = u32::from_le_bytes(head[16..20].try_into().unwrap_or_default()) as usize;
                if rest.len() < len {
                    break;
                }
                let (blob, rest) = rest.split_at(len);
                table.insert((bucket, index), blob)?;
                for k in blob.chunks_exact(KEY_LEN) {
                    recorded.added.push((bucket, fingerprint_of(k)));
                }
                let end = (bucket + 1) * BUCKET_MS - 1;
                recorded.newest_ms = Some(recorded.newest_ms.map_or(end, |n| n.max(end)));
                entries += 1;
                records = rest;
            }
        }
        self.prune(&txn, &recorded)?;
        txn.commit()?;
        self.committed(recorded);
        Ok(entries)
    }
}

/// `raft_meta` key set once the dedup keys of the store are recorded.
const MIGRATED_KEY: &str = "dedup_keys";

/// The index under which the keys of an earlier version's snapshot are
/// recorded: no log entry has it.
const LEGACY_INDEX: u64 = u64::MAX;

/// Records, once per store, the dedup keys a store of an earlier version
/// holds: its snapshot's dedup index (`legacy`) and the AddBlock entries of
/// its log.
pub(crate) fn migrate(
    db: &redb::Database,
    keys: &DedupKeys,
    legacy: Vec<(i64, phlox_model::ProfileKey)>,
) -> Result<(), StoreError> {
    {
        let txn = db.begin_read()?;
        if txn.open_table(META)?.get(MIGRATED_KEY)?.is_some() {
            return Ok(());
        }
    }
    let mut entries = Vec::new();
    {
        let txn = db.begin_read()?;
        for item in txn.open_table(LOGS)?.iter()? {
            let (index, value) = item?;
            let entry: openraft::Entry<super::TypeConfig> = decode_stored(value.value())?;
            if let openraft::EntryPayload::Normal(command) = &entry.payload
                && let Some((time, k)) = entry_keys(command)
            {
                entries.push((index.value(), time, k.collect::<Vec<_>>()));
            }
        }
    }
    let (legacy_count, log_count) = (legacy.len(), entries.len());
    let mut txn = db.begin_write()?;
    txn.set_durability(redb::Durability::Immediate)?;
    let mut recorded = Recorded::default();
    // One record per minute, under an index no log entry has (so no
    // truncation forgets it).
    let mut by_bucket: BTreeMap<i64, (i64, Vec<[u8; KEY_LEN]>)> = BTreeMap::new();
    for (time, key) in legacy {
        let e = by_bucket.entry(bucket_of(time)).or_insert((time, Vec::new()));
        e.0 = e.0.max(time);
        e.1.push(key.0);
    }
    for (_, (time, k)) in by_bucket {
        keys.record(&txn, &mut recorded, LEGACY_INDEX, time, k.into_iter())?;
    }
    for (index, time, k) in entries {
        keys.record(&txn, &mut recorded, index, time, k.into_iter())?;
    }
    keys.prune(&txn, &recorded)?;
    txn.open_table(META)?.insert(MIGRATED_KEY, b"1".as_slice())?;
    txn.commit()?;
    keys.committed(recorded);
    if legacy_count + log_count > 0 {
        tracing::info!(
            snapshot_keys = legacy_count,
            log_entries = log_count,
            "recorded the dedup keys of a metastore store of an earlier version"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> [u8; KEY_LEN] {
        [n; KEY_LEN]
    }

    fn write(db: &redb::Database, keys: &DedupKeys, f: impl FnOnce(&WriteTransaction, &mut Recorded)) {
        let txn = db.begin_write().unwrap();
        let mut recorded = Recorded::default();
        f(&txn, &mut recorded);
        keys.prune(&txn, &recorded).unwrap();
        txn.commit().unwrap();
        keys.committed(recorded);
    }

    fn held(db: &redb::Database, keys: &DedupKeys, ns: &[u8]) -> Vec<u8> {
        let wanted: Vec<[u8; KEY_LEN]> = ns.iter().map(|n| key(*n)).collect();
        let mut held: Vec<u8> = keys.held(db, &wanted).unwrap().iter().map(|k| k[0]).collect();
        held.sort_unstable();
        held
    }

    #[test]
    fn a_closed_bucket_finds_every_fingerprint_it_holds_and_no_other() {
        let fp = |n: u64| xxhash_rust::xxh3::xxh3_64(&n.to_le_bytes());
        for len in [0u64, 1, 3, 10, 1000, 50_000] {
            let mut bucket = Bucket::Open(FxHashMap::default());
            for n in 0..len {
                bucket.insert(fp(n));
            }
            bucket.insert(fp(0));
            bucket.close();
            assert!((0..len.max(1)).all(|n| bucket.contains(fp(n))), "{len}");
            assert!((len.max(1)..len.max(1) + 1000).all(|n| !bucket.contains(fp(n))), "{len}");
            // Still found once reopened by a late key.
            bucket.insert(fp(u64::MAX));
            assert!(bucket.contains(fp(0)) && bucket.contains(fp(u64::MAX)));
        }
    }

    #[test]
    fn keys_are_held_for_the_window_forgotten_when_truncated_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = super::super::open_database(dir.path()).unwrap();
        let hour = 3_600_000;
        let keys = DedupKeys::open(&db, hour).unwrap();
        write(&db, &keys, |txn, r| keys.record(txn, r, 1, 0, [key(1), key(2)].into_iter()).unwrap());
        write(&db, &keys, |txn, r| keys.record(txn, r, 2, 30 * 60_000, [key(3)].into_iter()).unwrap());
        assert_eq!(held(&db, &keys, &[1, 3, 4]), vec![1, 3]);
        assert_eq!(keys.len(), 3);
        // Entries 2 and 3 are truncated: key 3 goes; key 2, held by entry 1
        // too, stays.
        write(&db, &keys, |txn, r| keys.record(txn, r, 3, 40 * 60_000, [key(2)].into_iter()).unwrap());
        assert_eq!(keys.len(), 4);
        write(&db, &keys, |txn, r| {
            keys.forget(txn, r, 2, 30 * 60_000).unwrap();
            keys.forget(txn, r, 3, 40 * 60_000).unwrap();
        });
        assert_eq!(held(&db, &keys, &[1, 2, 3]), vec![1, 2]);
        assert_eq!(keys.len(), 2);
        // An hour and a minute later, bucket 0 leaves the window.
        write(&db, &keys, |txn, r| keys.record(txn, r, 4, hour + 61_000, [key(5)].into_iter()).unwrap());
        assert_eq!(held(&db, &keys, &[1, 2, 5]), vec![5]);
        assert_eq!(keys.len(), 1);
        drop(keys);
        let reopened = DedupKeys::open(&db, hour).unwrap();
        assert_eq!(reopened.len(), 1);
        assert_eq!(held(&db, &reopened, &[2, 5]), vec![5]);
    }
}
