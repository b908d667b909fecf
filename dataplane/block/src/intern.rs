//! Interning tables of a dataset's symbols whose entries are variable
//! length (strings, a location's lines): the contents live in one flat
//! buffer, the hash index holds (hash, id) pairs. Interning a new entry
//! appends to the buffer (no allocation per entry); finding one costs one
//! probe and one comparison against the buffer.

use std::hash::{Hash, Hasher};

use indexmap::{Equivalent, IndexSet};
use rustc_hash::{FxBuildHasher, FxHasher};

/// An entry of an index: its content's hash and its id. Keys are equal
/// only by id, so two contents sharing a hash stay two entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    hash: u64,
    id: u32,
}

impl Hash for Entry {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

fn hash_of<T: Hash + ?Sized>(v: &T) -> u64 {
    let mut h = FxHasher::default();
    v.hash(&mut h);
    h.finish()
}

/// Strings by content; id 0 is the empty string.
#[derive(Debug)]
pub(crate) struct StringSet {
    bytes: String,
    /// End of string `i` in `bytes` (its start is the end of `i - 1`);
    /// `usize`, so no amount of strings wraps an offset.
    ends: Vec<usize>,
    index: IndexSet<Entry, FxBuildHasher>,
}

/// A lookup of `text` in a [`StringSet`].
struct StrQuery<'a> {
    hash: u64,
    text: &'a str,
    set: &'a StringSet,
}

impl Hash for StrQuery<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl Equivalent<Entry> for StrQuery<'_> {
    fn equivalent(&self, key: &Entry) -> bool {
        key.hash == self.hash && self.set.get(key.id) == self.text
    }
}

impl StringSet {
    pub(crate) fn new() -> Self {
        let mut set = Self { bytes: String::new(), ends: Vec::new(), index: IndexSet::with_hasher(FxBuildHasher) };
        set.intern("");
        set
    }

    /// Room for `strings` strings of `bytes` bytes in all.
    pub(crate) fn reserve(&mut self, strings: usize, bytes: usize) {
        self.bytes.reserve(bytes);
        self.ends.reserve(strings);
        self.index.reserve(strings);
    }

    /// The id of `text`, added if new.
    pub(crate) fn intern(&mut self, text: &str) -> u32 {
        let hash = hash_of(text);
        if let Some(id) = self.index.get_index_of(&StrQuery { hash, text, set: self }) {
            return id as u32;
        }
        let id = self.ends.len() as u32;
        self.bytes.push_str(text);
        self.ends.push(self.bytes.len());
        self.index.insert(Entry { hash, id });
        id
    }

    /// String `id` (empty when out of range).
    pub(crate) fn get(&self, id: u32) -> &str {
        let i = id as usize;
        let Some(&end) = self.ends.get(i) else { return "" };
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..end]
    }

    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Total bytes of the strings.
    pub(crate) fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &str> {
        (0..self.ends.len() as u32).map(|i| self.get(i))
    }
}

/// One interned location: its mapping, address and its lines' range in
/// [`LocationSet::lines`] (u32: 2^32 lines would be 64 GiB of them, far
/// beyond what a segment or a compaction job may hold).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Location {
    pub(crate) mapping: u32,
    pub(crate) address: u64,
    start: u32,
    end: u32,
}

/// Locations by content: (mapping, address, lines), lines being
/// (function, line) innermost first.
#[derive(Debug)]
pub(crate) struct LocationSet {
    locations: Vec<Location>,
    lines: Vec<(u32, i64)>,
    index: IndexSet<Entry, FxBuildHasher>,
}

/// A lookup of a location in a [`LocationSet`].
struct LocationQuery<'a> {
    hash: u64,
    mapping: u32,
    address: u64,
    lines: &'a [(u32, i64)],
    set: &'a LocationSet,
}

impl Hash for LocationQuery<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl Equivalent<Entry> for LocationQuery<'_> {
    fn equivalent(&self, key: &Entry) -> bool {
        let l = self.set.locations[key.id as usize];
        key.hash == self.hash
            && l.mapping == self.mapping
            && l.address == self.address
            && self.set.lines_of(&l) == self.lines
    }
}

impl LocationSet {
    pub(crate) fn new() -> Self {
        Self { locations: Vec::new(), lines: Vec::new(), index: IndexSet::with_hasher(FxBuildHasher) }
    }

    /// Room for `locations` locations of `lines` lines in all.
    pub(crate) fn reserve(&mut self, locations: usize, lines: usize) {
        self.locations.reserve(locations);
        self.lines.reserve(lines);
        self.index.reserve(locations);
    }

    /// The id of the location, added if new.
    pub(crate) fn intern(&mut self, mapping: u32, address: u64, lines: &[(u32, i64)]) -> u32 {
        let hash = hash_of(&(mapping, address, lines));
        let query = LocationQuery { hash, mapping, address, lines, set: self };
        if let Some(id) = self.index.get_index_of(&query) {
            return id as u32;
        }
        let id = self.locations.len() as u32;
        let start = self.lines.len() as u32;
        self.lines.extend_from_slice(lines);
        self.locations.push(Location { mapping, address, start, end: self.lines.len() as u32 });
        self.index.insert(Entry { hash, id });
        id
    }

    pub(crate) fn lines_of(&self, l: &Location) -> &[(u32, i64)] {
        &self.lines[l.start as usize..l.end as usize]
    }

    pub(crate) fn len(&self) -> usize {
        self.locations.len()
    }

    /// Total lines of the locations.
    pub(crate) fn line_count(&self) -> usize {
        self.lines.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Location> {
        self.locations.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_interned_once_by_content() {
        let mut s = StringSet::new();
        assert_eq!(s.intern(""), 0);
        let a = s.intern("main");
        let b = s.intern("runtime.goexit");
        assert_eq!((a, b), (1, 2));
        assert_eq!(s.intern(&String::from("main")), 1);
        assert_eq!(s.get(2), "runtime.goexit");
        assert_eq!(s.iter().collect::<Vec<_>>(), ["", "main", "runtime.goexit"]);
        assert_eq!(s.byte_len(), 18);
    }

    #[test]
    fn locations_are_interned_once_by_content() {
        let mut l = LocationSet::new();
        let a = l.intern(1, 0x10, &[(3, 7), (4, 9)]);
        let b = l.intern(1, 0x10, &[(3, 7)]);
        let c = l.intern(1, 0x10, &[(3, 7), (4, 9)]);
        let d = l.intern(2, 0x10, &[(3, 7)]);
        assert_eq!((a, b, c, d), (0, 1, 0, 2));
        type Row = (u32, u64, Vec<(u32, i64)>);
        let all: Vec<Row> = l.iter().map(|x| (x.mapping, x.address, l.lines_of(x).to_vec())).collect();
        assert_eq!(all, [(1, 0x10, vec![(3, 7), (4, 9)]), (1, 0x10, vec![(3, 7)]), (2, 0x10, vec![(3, 7)])]);
        assert_eq!(l.line_count(), 4);
    }
}
