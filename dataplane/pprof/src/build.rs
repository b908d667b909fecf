//! Building a [`Profile`] from named stacks: what the text formats
//! (folded, lines, legacy tree/trie) and other converters produce.

use rustc_hash::FxHashMap;

use crate::profile::{Line, Location, Profile, ValueType};
use crate::{DecodeError, Function};

/// Builds a one-or-more-value profile from stacks of frame names.
/// Each distinct name becomes one function and one location.
#[derive(Debug)]
pub struct StackProfileBuilder {
    p: Profile,
    strings: FxHashMap<String, i64>,
    frames: FxHashMap<i64, u64>,
    /// Upper bound of the string table bytes, against hostile input.
    max_bytes: usize,
    bytes: usize,
}

impl StackProfileBuilder {
    /// `sample_types` as (type, unit); `period` as ((type, unit), period).
    pub fn new(sample_types: &[(&str, &str)], period: Option<((&str, &str), i64)>, max_bytes: usize) -> Self {
        let mut b = Self {
            p: Profile::default(),
            strings: FxHashMap::default(),
            frames: FxHashMap::default(),
            max_bytes,
            bytes: 0,
        };
        b.p.sample_locations.push(0);
        b.p.sample_labels.push(0);
        b.p.strings.clear_with_empty();
        b.strings.insert(String::new(), 0);
        for (t, u) in sample_types {
            let vt = ValueType { r#type: b.intern(t), unit: b.intern(u) };
            b.p.sample_types.push(vt);
        }
        if let Some(((t, u), period)) = period {
            b.p.period_type = Some(ValueType { r#type: b.intern(t), unit: b.intern(u) });
            b.p.period = period;
        }
        b
    }

    fn intern(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.strings.get(s) {
            return i;
        }
        let i = self.p.strings.len() as i64;
        self.bytes += s.len();
        // Never fails below 4 GiB; `add` checks the byte budget first.
        let _ = self.p.strings.push_str(s);
        self.strings.insert(s.to_owned(), i);
        i
    }

    fn frame(&mut self, name: &str) -> u64 {
        let s = self.intern(name);
        if let Some(&id) = self.frames.get(&s) {
            return id;
        }
        let id = self.p.functions.len() as u64 + 1;
        self.p.functions.push(Function { id, name: s, system_name: s, filename: 0, start_line: 0 });
        let line = self.p.lines.len() as u32;
        self.p.lines.push(Line { function_id: id, line: 0 });
        self.p.locations.push(Location { id, mapping_id: 0, address: 0, lines: line..line + 1 });
        self.frames.insert(s, id);
        id
    }

    /// Adds a sample; `stack` is root first. Fails when the profile grows
    /// past the byte budget.
    pub fn add<'a>(
        &mut self,
        stack: impl DoubleEndedIterator<Item = &'a str>,
        values: &[i64],
    ) -> Result<(), DecodeError> {
        if values.len() != self.p.sample_types.len() {
            return Err(DecodeError::Invalid(format!(
                "{} values for {} sample types",
                values.len(),
                self.p.sample_types.len()
            )));
        }
        let start = self.p.location_ids.len();
        for name in stack {
            if self.bytes > self.max_bytes {
                return Err(DecodeError::PayloadTooLarge { limit: self.max_bytes });
            }
            let id = self.frame(name);
            self.p.location_ids.push(id);
            self.bytes += 8;
        }
        // pprof stacks are leaf first.
        self.p.location_ids[start..].reverse();
        self.p.values.extend_from_slice(values);
        self.p.sample_locations.push(u32::try_from(self.p.location_ids.len()).map_err(|_| DecodeError::TooLarge)?);
        self.p.sample_labels.push(0);
        Ok(())
    }

    pub fn time_nanos(&mut self, t: i64) -> &mut Self {
        self.p.time_nanos = t;
        self
    }

    pub fn duration_nanos(&mut self, d: i64) -> &mut Self {
        self.p.duration_nanos = d;
        self
    }

    /// Number of samples added.
    pub fn sample_count(&self) -> usize {
        self.p.sample_count()
    }

    pub fn finish(mut self) -> Profile {
        self.p.decoded_len = self.bytes + self.p.values.len() * 8;
        self.p.reindex();
        self.p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stacks_become_a_valid_profile() {
        let mut b = StackProfileBuilder::new(&[("samples", "count")], None, 1 << 20);
        b.add(["main", "a", "b"].into_iter(), &[3]).unwrap();
        b.add(["main", "a"].into_iter(), &[2]).unwrap();
        let p = b.finish();
        p.validate().unwrap();
        assert_eq!(p.sample_count(), 2);
        let leaf = p.location(p.sample_location_ids(0)[0]).unwrap();
        assert_eq!(p.strings.str(p.function(p.lines[leaf.lines.start as usize].function_id).unwrap().name), "b");
        assert_eq!(p.functions.len(), 3);
        let mut small = StackProfileBuilder::new(&[("samples", "count")], None, 10);
        assert!(small.add(["a-very-long-name", "x", "y"].into_iter(), &[1]).is_err());
    }
}
