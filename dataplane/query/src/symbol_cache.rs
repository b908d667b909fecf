//! Decoded symbols of recently read datasets, bounded by bytes. Objects are
//! immutable (keys are ULIDs), so an entry never goes stale; a warm query
//! skips the symbols GET and their decoding.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use phlox_block::{DatasetReader, Symbols};

use crate::QueryError;

/// Default budget of decoded symbols kept in memory.
pub const DEFAULT_SYMBOL_CACHE_BYTES: usize = 256 << 20;

#[derive(Debug, Default)]
struct Entries {
    map: HashMap<String, (Arc<Symbols>, usize)>,
    /// Least recently inserted first.
    order: VecDeque<String>,
    bytes: usize,
}

/// A byte-bounded cache of [`Symbols`] by dataset.
#[derive(Debug)]
pub struct SymbolCache {
    entries: Mutex<Entries>,
    max_bytes: usize,
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
        Self { entries: Mutex::new(Entries::default()), max_bytes }
    }

    /// The symbols of `ds`, from the cache or read and decoded.
    pub async fn get(&self, ds: &DatasetReader) -> Result<Arc<Symbols>, QueryError> {
        let key = format!("{}\n{}\n{}", ds.path(), ds.meta().tenant, ds.meta().name);
        if let Ok(e) = self.entries.lock()
            && let Some((s, _)) = e.map.get(&key)
        {
            return Ok(Arc::clone(s));
        }
        let symbols = Arc::new(ds.symbols().await?);
        let size = size_of(&symbols);
        if size > self.max_bytes {
            return Ok(symbols);
        }
        if let Ok(mut e) = self.entries.lock()
            && !e.map.contains_key(&key)
        {
            while e.bytes + size > self.max_bytes {
                let Some(old) = e.order.pop_front() else { break };
                if let Some((_, n)) = e.map.remove(&old) {
                    e.bytes -= n;
                }
            }
            e.bytes += size;
            e.order.push_back(key.clone());
            e.map.insert(key, (Arc::clone(&symbols), size));
        }
        Ok(symbols)
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.entries.lock().map(|e| e.bytes).unwrap_or(0)
    }
}
