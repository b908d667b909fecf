//! Decoded symbols of recently read datasets, bounded by bytes. Objects are
//! immutable (keys are ULIDs), so an entry never goes stale; a warm query
//! skips the symbols GET and their decoding.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use phlox_block::{DatasetReader, Symbols};

use crate::QueryError;

/// Default budget of decoded symbols kept in memory.
pub const DEFAULT_SYMBOL_CACHE_BYTES: usize = 256 << 20;

/// Entries by key with their sizes. When full, a pseudo-random entry is
/// evicted: queries scan the same datasets in a loop, and a loop larger
/// than the budget makes FIFO or LRU miss on every read, while random
/// eviction keeps about budget / working set of it.
#[derive(Debug)]
struct Entries<V> {
    map: HashMap<String, (V, usize)>,
    /// Every key once, in no particular order (for eviction).
    keys: Vec<String>,
    bytes: usize,
    /// xorshift64 state.
    rng: u64,
}

impl<V> Default for Entries<V> {
    fn default() -> Self {
        Self { map: HashMap::new(), keys: Vec::new(), bytes: 0, rng: 0x9e37_79b9_7f4a_7c15 }
    }
}

impl<V> Entries<V> {
    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    /// Inserts `value` (unless `key` is present), evicting until the total
    /// stays within `max_bytes`.
    fn insert(&mut self, key: String, value: V, size: usize, max_bytes: usize) {
        if size > max_bytes || self.map.contains_key(&key) {
            return;
        }
        while self.bytes + size > max_bytes && !self.keys.is_empty() {
            let i = (self.next_random() % self.keys.len() as u64) as usize;
            let old = self.keys.swap_remove(i);
            if let Some((_, n)) = self.map.remove(&old) {
                self.bytes -= n;
            }
        }
        self.bytes += size;
        self.keys.push(key.clone());
        self.map.insert(key, (value, size));
    }
}

/// A byte-bounded cache of [`Symbols`] by dataset.
#[derive(Debug)]
pub struct SymbolCache {
    entries: Mutex<Entries<Arc<Symbols>>>,
    max_bytes: usize,
    /// Lookups by result (`hit`, `miss`), once metrics are attached.
    requests: std::sync::OnceLock<prometheus::IntCounterVec>,
}

impl Default for SymbolCache {
    fn default() -> Self {
        Self::new(DEFAULT_SYMBOL_CACHE_BYTES)
    }
}

/// Approximate heap size of decoded symbols.
fn size_of(s: &Symbols) -> usize {
    s.strings.iter().map(|x| x.len() + 24).sum::<usize>()
        + s.functions.len() * 24
        + s.mappings.len() * 40
        + s.location_mapping.len() * (4 + 8 + 8)
        + s.lines.len() * 16
        + s.stack_parent.len() * 8
}

impl SymbolCache {
    /// A cache holding at most `max_bytes` of decoded symbols (0 disables it).
    pub fn new(max_bytes: usize) -> Self {
        Self { entries: Mutex::new(Entries::default()), max_bytes, requests: std::sync::OnceLock::new() }
    }

    /// Counts lookups in `requests` by result (`hit`, `miss`).
    pub fn count_requests(&self, requests: prometheus::IntCounterVec) {
        let _ = self.requests.set(requests);
    }

    fn count(&self, result: &str) {
        if let Some(r) = self.requests.get() {
            r.with_label_values(&[result]).inc();
        }
    }

    /// The symbols of `ds`, from the cache or read and decoded.
    pub async fn get(&self, ds: &DatasetReader) -> Result<Arc<Symbols>, QueryError> {
        let key = format!("{}\n{}\n{}", ds.path(), ds.meta().tenant, ds.meta().name);
        if let Ok(e) = self.entries.lock()
            && let Some((s, _)) = e.map.get(&key)
        {
            self.count("hit");
            return Ok(Arc::clone(s));
        }
        self.count("miss");
        let symbols = Arc::new(ds.symbols().await?);
        let size = size_of(&symbols);
        if let Ok(mut e) = self.entries.lock() {
            e.insert(key, Arc::clone(&symbols), size, self.max_bytes);
        }
        Ok(symbols)
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.entries.lock().map(|e| e.bytes).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::Entries;

    /// Reads `rounds` times over `working` keys of size 1 through a cache of
    /// `budget`; returns the hits.
    fn loop_hits(working: usize, budget: usize, rounds: usize) -> usize {
        let mut e: Entries<()> = Entries::default();
        let mut hits = 0;
        for _ in 0..rounds {
            for k in 0..working {
                let key = k.to_string();
                if e.map.contains_key(&key) {
                    hits += 1;
                } else {
                    e.insert(key, (), 1, budget);
                }
                assert!(e.bytes <= budget);
                assert_eq!(e.bytes, e.map.len());
                assert_eq!(e.keys.len(), e.map.len());
            }
        }
        hits
    }

    #[test]
    fn a_loop_that_fits_always_hits_after_the_first_round() {
        assert_eq!(loop_hits(100, 100, 5), 400);
    }

    #[test]
    fn a_loop_larger_than_the_budget_still_hits_often() {
        // 576 datasets through room for 512 (the distributed bench's level-0
        // segments): FIFO or LRU would hit 0 times.
        let hits = loop_hits(576, 512, 20);
        let reads = 576 * 19;
        assert!(hits * 2 > reads, "{hits} of {reads}");
    }

    #[test]
    fn entries_larger_than_the_budget_are_not_kept() {
        let mut e: Entries<()> = Entries::default();
        e.insert("a".into(), (), 10, 5);
        assert!(e.map.is_empty());
        e.insert("b".into(), (), 5, 5);
        e.insert("b".into(), (), 5, 5);
        assert_eq!((e.bytes, e.keys.len()), (5, 1));
        e.insert("c".into(), (), 3, 5);
        assert_eq!(e.map.keys().collect::<Vec<_>>(), vec!["c"]);
        assert_eq!(e.bytes, 3);
    }
}
