//! The leader's dedup decision for a level-0 AddBlock: which of the new
//! segment's rows an earlier block already holds. Taken before proposing,
//! carried in the entry (`Dataset.shadowed_keys`, `decided`), so every voter
//! applies the same and the replicated state holds no keys.
//!
//! Sources: the keys of every AddBlock in this node's log over the window
//! ([`DedupKeys`]; the leader's log holds every committed entry), plus the
//! keys of AddBlocks decided here and not yet in the log (in flight).

use std::sync::{Arc, Mutex, MutexGuard, Weak};

use bytes::Bytes;
use phlox_proto::metastore::v1::AddBlockRequest;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::error::{MetastoreError, Result};
use crate::fsm::KEY_LEN;
use crate::raft::{Db, DedupKeys};

type Key = [u8; KEY_LEN];

/// Decides the shadowed keys of level-0 AddBlocks on the leader.
#[derive(Debug)]
pub(crate) struct DedupGate {
    /// Weak: the store closes when Raft stops, whoever still holds the gate.
    db: Weak<Db>,
    keys: Arc<DedupKeys>,
    /// Keys of requests decided and still being written, with how many
    /// requests hold each.
    in_flight: Mutex<FxHashMap<Key, u32>>,
}

/// A decided request; its keys count as held until it is dropped (after
/// the write: the entry is then in the log, or not at all).
pub(crate) struct Decided<'a> {
    request: AddBlockRequest,
    held: Vec<Key>,
    gate: &'a DedupGate,
}

impl Decided<'_> {
    /// The request with its shadowed keys (once; the keys stay held).
    pub(crate) fn take_request(&mut self) -> AddBlockRequest {
        std::mem::take(&mut self.request)
    }
}

impl Drop for Decided<'_> {
    fn drop(&mut self) {
        let mut in_flight = self.gate.in_flight();
        for key in &self.held {
            if let Some(n) = in_flight.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    in_flight.remove(key);
                }
            }
        }
    }
}

fn keys(bytes: &Bytes) -> impl Iterator<Item = Key> + '_ {
    bytes.chunks_exact(KEY_LEN).map(|c| {
        let mut key = [0u8; KEY_LEN];
        key.copy_from_slice(c);
        key
    })
}

impl DedupGate {
    pub(crate) fn new(db: Arc<Db>, keys: Arc<DedupKeys>) -> Self {
        Self { db: Arc::downgrade(&db), keys, in_flight: Mutex::new(FxHashMap::default()) }
    }

    /// Keys this node holds for the window (see [`DedupKeys`]).
    pub(crate) fn key_count(&self) -> usize {
        self.keys.len()
    }

    fn in_flight(&self) -> MutexGuard<'_, FxHashMap<Key, u32>> {
        self.in_flight.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sets each dataset's `shadowed_keys` of a level-0 request: its keys
    /// (sorted, distinct) that an earlier block holds. Keys repeated within
    /// the request never shadow each other. Other requests pass unchanged.
    pub(crate) fn decide(&self, request: &AddBlockRequest) -> Result<Decided<'_>> {
        let mut request = request.clone();
        let level0 = request.block.as_ref().is_some_and(|b| b.compaction_level == 0);
        if !level0 || request.dataset_keys.iter().all(Bytes::is_empty) {
            return Ok(Decided { request, held: Vec::new(), gate: self });
        }
        // Gone: this node is shutting down, it leads nothing.
        // Gone: this node is shutting down, it leads nothing.
        let db = self.db.upgrade().ok_or(MetastoreError::NoLeader)?;
        let all: Vec<Key> =
            request.dataset_keys.iter().flat_map(keys).collect::<FxHashSet<Key>>().into_iter().collect();
        // Decisions are serialized: a key decided here is seen by the next.
        let mut in_flight = self.in_flight();
        let mut earlier: FxHashSet<Key> = self.keys.held(&db, &all)?.into_iter().collect();
        earlier.extend(all.iter().filter(|k| in_flight.contains_key(*k)));
        let mut shadowed_per_dataset = Vec::with_capacity(request.dataset_keys.len());
        for dataset_keys in &request.dataset_keys {
            let mut shadowed: Vec<Key> = keys(dataset_keys).filter(|k| earlier.contains(k)).collect();
            shadowed.sort_unstable();
            shadowed.dedup();
            shadowed_per_dataset.push(shadowed);
        }
        let held = all;
        for key in &held {
            *in_flight.entry(*key).or_default() += 1;
        }
        drop(in_flight);
        if let Some(block) = &mut request.block {
            for (ds, shadowed) in block.datasets.iter_mut().zip(shadowed_per_dataset) {
                ds.shadowed_keys = Bytes::from(shadowed.concat());
            }
        }
        Ok(Decided { request, held, gate: self })
    }
}
