//! The dedup index behind exactly-once ingest: which profile-row keys an
//! indexed block already holds, for a window of block time.
//!
//! Time here is block time (`BlockMeta.max_time`), never the wall clock, so
//! that pruning is the same on every voter.

use std::collections::{BTreeSet, HashMap};

use phlox_model::ProfileKey;
use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error as _};

use super::codec::{decode_hex, encode_hex};

/// Default dedup window: one hour of block time.
pub const DEDUP_WINDOW_MS: i64 = 3_600_000;

/// Size of one dedup key in `AddBlockRequest.dataset_keys`.
pub(crate) const KEY_LEN: usize = 16;

/// Key → block time of the newest block that held it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DedupIndex {
    window_ms: i64,
    newest_ms: Option<i64>,
    keys: HashMap<ProfileKey, i64>,
    by_time: BTreeSet<(i64, ProfileKey)>,
}

impl Default for DedupIndex {
    fn default() -> Self {
        Self::new(DEDUP_WINDOW_MS)
    }
}

/// Splits a concatenation of 16-byte keys (length checked by validation).
pub(crate) fn split_keys(bytes: &[u8]) -> impl Iterator<Item = ProfileKey> + '_ {
    bytes.chunks_exact(KEY_LEN).map(|chunk| {
        let mut key = [0u8; KEY_LEN];
        key.copy_from_slice(chunk);
        ProfileKey(key)
    })
}

impl DedupIndex {
    pub(crate) fn new(window_ms: i64) -> Self {
        Self { window_ms, newest_ms: None, keys: HashMap::new(), by_time: BTreeSet::new() }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// (block time, key) of every key held, in time order.
    pub(crate) fn entries(&self) -> Vec<(i64, ProfileKey)> {
        self.by_time.iter().copied().collect()
    }

    #[cfg(test)]
    pub(crate) fn contains(&self, key: &ProfileKey) -> bool {
        self.keys.contains_key(key)
    }

    /// Records the keys of one block (one list per dataset) at `time_ms` and
    /// returns, per dataset, the distinct keys (sorted) that an earlier
    /// block already held, with the number of rows they cover. Keys repeated
    /// within the block never shadow each other.
    pub(crate) fn observe(&mut self, dataset_keys: &[impl AsRef<[u8]>], time_ms: i64) -> (Vec<Vec<ProfileKey>>, u64) {
        let mut rows = 0u64;
        let shadowed = dataset_keys
            .iter()
            .map(|keys| {
                let mut seen: Vec<ProfileKey> =
                    split_keys(keys.as_ref()).filter(|k| self.keys.contains_key(k)).collect();
                rows += seen.len() as u64;
                seen.sort_unstable();
                seen.dedup();
                seen
            })
            .collect();
        for keys in dataset_keys {
            for key in split_keys(keys.as_ref()) {
                self.touch(key, time_ms);
            }
        }
        let newest = self.newest_ms.map_or(time_ms, |n| n.max(time_ms));
        self.newest_ms = Some(newest);
        self.prune(newest.saturating_sub(self.window_ms));
        (shadowed, rows)
    }

    /// Sets the key's time to the later of its current and `time_ms`, so a
    /// row retried again and again stays shadowed.
    fn touch(&mut self, key: ProfileKey, time_ms: i64) {
        match self.keys.get_mut(&key) {
            Some(t) if *t >= time_ms => {}
            Some(t) => {
                self.by_time.remove(&(*t, key));
                *t = time_ms;
                self.by_time.insert((time_ms, key));
            }
            None => {
                self.keys.insert(key, time_ms);
                self.by_time.insert((time_ms, key));
            }
        }
    }

    /// Drops keys whose time is before `cutoff_ms`.
    fn prune(&mut self, cutoff_ms: i64) {
        while let Some(&(t, key)) = self.by_time.first() {
            if t >= cutoff_ms {
                break;
            }
            self.by_time.remove(&(t, key));
            self.keys.remove(&key);
        }
    }
}

/// Serialized form: window, newest time and the entries in time order: in
/// JSON, `[time, "hex key"]` pairs; in the binary format, `(time, key)`
/// tuples (streamed, no buffer of the whole index).
#[derive(Serialize, Deserialize)]
struct DedupIndexRepr {
    window_ms: i64,
    newest_ms: Option<i64>,
    entries: Vec<(i64, String)>,
}

#[derive(Deserialize)]
struct DedupIndexBinary {
    window_ms: i64,
    newest_ms: Option<i64>,
    entries: Vec<(i64, [u8; KEY_LEN])>,
}

/// The entries of the binary form, serialized straight from the index.
struct BinaryEntries<'a>(&'a BTreeSet<(i64, ProfileKey)>);

impl Serialize for BinaryEntries<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|(t, k)| (*t, k.0)))
    }
}

#[derive(Serialize)]
struct DedupIndexBinaryRef<'a> {
    window_ms: i64,
    newest_ms: Option<i64>,
    entries: BinaryEntries<'a>,
}

impl Serialize for DedupIndex {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            return DedupIndexRepr {
                window_ms: self.window_ms,
                newest_ms: self.newest_ms,
                entries: self.by_time.iter().map(|(t, k)| (*t, encode_hex(&k.0))).collect(),
            }
            .serialize(serializer);
        }
        DedupIndexBinaryRef {
            window_ms: self.window_ms,
            newest_ms: self.newest_ms,
            entries: BinaryEntries(&self.by_time),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for DedupIndex {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if !deserializer.is_human_readable() {
            let repr = DedupIndexBinary::deserialize(deserializer)?;
            let mut index = DedupIndex::new(repr.window_ms);
            index.newest_ms = repr.newest_ms;
            for (time, key) in repr.entries {
                index.touch(ProfileKey(key), time);
            }
            return Ok(index);
        }
        let repr = DedupIndexRepr::deserialize(deserializer)?;
        let mut index = DedupIndex::new(repr.window_ms);
        index.newest_ms = repr.newest_ms;
        for (time, hex) in repr.entries {
            let bytes = decode_hex(&hex).ok_or_else(|| D::Error::custom("invalid dedup key"))?;
            let key: [u8; KEY_LEN] = bytes.try_into().map_err(|_| D::Error::custom("dedup key is not 16 bytes"))?;
            index.touch(ProfileKey(key), time);
        }
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> ProfileKey {
        ProfileKey([n; KEY_LEN])
    }

    fn keys(ns: &[u8]) -> Vec<u8> {
        ns.iter().flat_map(|n| [*n; KEY_LEN]).collect()
    }

    #[test]
    fn keys_of_an_earlier_block_are_shadowed_once_per_dataset() {
        let mut index = DedupIndex::new(100);
        let (shadowed, rows) = index.observe(&[keys(&[1, 2, 2])], 10);
        assert_eq!((shadowed, rows), (vec![vec![]], 0));
        let (shadowed, rows) = index.observe(&[keys(&[3, 2, 2]), keys(&[1, 4])], 20);
        assert_eq!(shadowed, vec![vec![key(2)], vec![key(1)]]);
        assert_eq!(rows, 3);
        assert_eq!(index.len(), 4);
    }

    #[test]
    fn keys_older_than_the_window_are_pruned_and_retries_refresh_them() {
        let mut index = DedupIndex::new(100);
        index.observe(&[keys(&[1, 2])], 0);
        index.observe(&[keys(&[2])], 50);
        index.observe(&[keys(&[3])], 120);
        assert!(!index.contains(&key(1)));
        assert!(index.contains(&key(2)));
        let (shadowed, _) = index.observe(&[keys(&[1, 2])], 130);
        assert_eq!(shadowed, vec![vec![key(2)]]);
    }

    #[test]
    fn serde_round_trip_keeps_every_entry() {
        let mut index = DedupIndex::new(100);
        index.observe(&[keys(&[1, 2]), keys(&[9])], 7);
        let json = serde_json::to_string(&index).unwrap();
        let back: DedupIndex = serde_json::from_str(&json).unwrap();
        assert_eq!(back, index);
        let binary = crate::fsm::encode_stored_vec(&index).unwrap();
        // Format byte, window 100 (1-byte zigzag varint is 200: 2 bytes),
        // Some(7), 3 entries of (varint 7, 16 raw bytes).
        assert_eq!(binary.len(), 1 + 2 + 2 + 1 + 3 * (1 + 16));
        let back: DedupIndex = crate::fsm::decode_stored(&binary).unwrap();
        assert_eq!(back, index);
    }
}
