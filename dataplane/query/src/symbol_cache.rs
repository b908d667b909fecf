//! Decoded symbols of recently read datasets, bounded by bytes. Objects are
//! immutable (keys are ULIDs), so an entry never goes stale; a warm query
//! skips the symbols GET and their decoding, and a warm flame graph the
//! mapping of its stacks to call-tree nodes ([`crate::call_tree`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use phlox_block::{DatasetReader, Symbols};

use crate::QueryError;
use crate::call_tree::{INTERNED_NODE_BYTES, SharedInterned};

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

    fn remove(&mut self, key: &str) {
        if let Some((_, n)) = self.map.remove(key) {
            self.bytes -= n;
            self.keys.retain(|k| k != key);
        }
    }
}

/// A cached dataset: its symbols and, once a flame graph has read it, the
/// call-tree node of each of its stacks in its service's interned tree.
#[derive(Debug)]
struct Cached {
    symbols: Arc<Symbols>,
    nodes: Mutex<Option<(SharedInterned, Arc<Vec<u32>>)>>,
    /// When native frames were left unresolved for want of a debug file:
    /// when to look for those build ids again, and the build ids (found
    /// then: the dataset is read and symbolized again).
    recheck: Mutex<Option<(std::time::Instant, Vec<String>)>>,
    /// The symbolizer's generation when this entry was made.
    generation: u64,
}

/// The interned call trees by (tenant, service), and their nodes in all.
#[derive(Debug, Default)]
struct Trees {
    by_service: HashMap<(String, String), SharedInterned>,
    nodes: usize,
}

/// A byte-bounded cache of [`Symbols`] by dataset.
#[derive(Debug)]
pub struct SymbolCache {
    entries: Mutex<Entries<Arc<Cached>>>,
    max_bytes: usize,
    /// Lookups by result (`hit`, `miss`), once metrics are attached.
    requests: std::sync::OnceLock<prometheus::IntCounterVec>,
    /// Interned call trees, a quarter of the budget: over it, every tree
    /// starts again (datasets map their stacks again when next read).
    trees: Mutex<Trees>,
    /// Resolves native frames from uploaded debug files, when set.
    symbolizer: Option<Arc<crate::debuginfo::Symbolizer>>,
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
        // The stacks' call-tree nodes, once mapped.
        + s.stack_parent.len() * 4
}

impl SymbolCache {
    /// A cache holding at most `max_bytes` of decoded symbols (0 disables it).
    pub fn new(max_bytes: usize) -> Self {
        Self {
            entries: Mutex::new(Entries::default()),
            max_bytes,
            requests: std::sync::OnceLock::new(),
            trees: Mutex::new(Trees::default()),
            symbolizer: None,
        }
    }

    /// Symbolizes native frames of the datasets read with `symbolizer`.
    pub fn with_symbolizer(mut self, symbolizer: Arc<crate::debuginfo::Symbolizer>) -> Self {
        self.symbolizer = Some(symbolizer);
        self
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

    /// The symbols of `ds` (of `tenant`), from the cache or read, decoded
    /// and symbolized.
    pub async fn get(&self, ds: &DatasetReader, tenant: &str) -> Result<Arc<Symbols>, QueryError> {
        Ok(Arc::clone(&self.cached(ds, tenant).await?.symbols))
    }

    async fn cached(&self, ds: &DatasetReader, tenant: &str) -> Result<Arc<Cached>, QueryError> {
        let key = format!("{}\n{}\n{}", ds.path(), tenant, ds.meta().name);
        let hit = self.entries.lock().ok().and_then(|e| e.map.get(&key).map(|(c, _)| Arc::clone(c)));
        if let Some(c) = hit {
            let now = std::time::Instant::now();
            // Due after `retry_missing`, or at once when a file was uploaded in this process.
            let forgotten = self.symbolizer.as_ref().is_some_and(|s| s.generation() != c.generation);
            let due = c
                .recheck
                .lock()
                .ok()
                .and_then(|r| r.as_ref().filter(|(at, _)| *at <= now || forgotten).map(|(_, ids)| ids.clone()));
            let found = match (&self.symbolizer, due) {
                (Some(s), Some(ids)) => {
                    let found = s.any_found(tenant, &ids).await;
                    if !found && let Ok(mut r) = c.recheck.lock() {
                        *r = Some((now + s.retry_missing(), ids));
                    }
                    found
                }
                _ => false,
            };
            if !found {
                self.count("hit");
                return Ok(c);
            }
            if let Ok(mut e) = self.entries.lock() {
                e.remove(&key);
            }
        }
        self.count("miss");
        let mut symbols = ds.symbols().await?;
        let generation = self.symbolizer.as_ref().map_or(0, |s| s.generation());
        let mut recheck = None;
        if let Some(s) = &self.symbolizer
            && let Some((resolved, missing)) = s.symbolize(tenant, &symbols).await
        {
            symbols = resolved;
            recheck = (!missing.is_empty()).then(|| (std::time::Instant::now() + s.retry_missing(), missing));
        }
        let symbols = Arc::new(symbols);
        let size = size_of(&symbols);
        let cached = Arc::new(Cached { symbols, nodes: Mutex::new(None), recheck: Mutex::new(recheck), generation });
        if let Ok(mut e) = self.entries.lock() {
            e.insert(key, Arc::clone(&cached), size, self.max_bytes);
        }
        Ok(cached)
    }

    /// The symbols of `ds` (of `tenant`), its service's interned call tree and the node of
    /// each of its stacks in it (made on first use, then cached with the
    /// symbols).
    pub(crate) async fn call_tree(
        &self,
        ds: &DatasetReader,
        tenant: &str,
    ) -> Result<(Arc<Symbols>, SharedInterned, Arc<Vec<u32>>), QueryError> {
        let cached = self.cached(ds, tenant).await?;
        let interned = self.interned(tenant, &ds.meta().name);
        let mut nodes = cached.nodes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((t, map)) = nodes.as_ref()
            && Arc::ptr_eq(t, &interned)
        {
            return Ok((Arc::clone(&cached.symbols), interned, Arc::clone(map)));
        }
        // Most datasets of a service add no node: those map under the read
        // lock, concurrently.
        let known =
            interned.read().unwrap_or_else(std::sync::PoisonError::into_inner).map_known_stacks(&cached.symbols);
        let (map, added) = match known {
            Some(map) => (Arc::new(map), 0),
            None => {
                let mut tree = interned.write().unwrap_or_else(std::sync::PoisonError::into_inner);
                let before = tree.len();
                let map = tree.map_stacks(&cached.symbols);
                (Arc::new(map), tree.len() - before)
            }
        };
        if let Ok(mut trees) = self.trees.lock() {
            trees.nodes += added;
            if trees.nodes.saturating_mul(INTERNED_NODE_BYTES) > self.max_bytes / 4 {
                *trees = Trees::default();
            }
        }
        *nodes = Some((Arc::clone(&interned), Arc::clone(&map)));
        Ok((Arc::clone(&cached.symbols), interned, map))
    }

    /// The interned call tree of a service now.
    fn interned(&self, tenant: &str, service: &str) -> SharedInterned {
        let Ok(mut trees) = self.trees.lock() else { return SharedInterned::default() };
        let key = (tenant.to_owned(), service.to_owned());
        Arc::clone(trees.by_service.entry(key).or_default())
    }

    /// The budget.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
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
