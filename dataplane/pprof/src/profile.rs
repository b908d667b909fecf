//! The decoded pprof profile, columnar: samples, their location ids, values
//! and labels live in flat vectors, so decoding allocates per table, never per
//! sample.

use std::ops::Range;

use rustc_hash::FxHashMap;

use crate::DecodeError;
use crate::wire::{Reader, WT_LEN};

/// A (type, unit) pair of string indices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ValueType {
    pub r#type: i64,
    pub unit: i64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mapping {
    pub id: u64,
    pub memory_start: u64,
    pub memory_limit: u64,
    pub file_offset: u64,
    pub filename: i64,
    pub build_id: i64,
    /// has_functions, has_filenames, has_line_numbers, has_inline_frames as bits 0..4.
    pub flags: u8,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    pub id: u64,
    pub mapping_id: u64,
    pub address: u64,
    /// Range into [`Profile::lines`]; innermost frame first.
    pub lines: Range<u32>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Line {
    pub function_id: u64,
    pub line: i64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Function {
    pub id: u64,
    pub name: i64,
    pub system_name: i64,
    pub filename: i64,
    pub start_line: i64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Label {
    pub key: i64,
    pub str: i64,
    pub num: i64,
    pub num_unit: i64,
}

/// The string table: one buffer and offsets, `strings[i] = data[offsets[i]..offsets[i+1]]`.
#[derive(Debug, Clone, Default)]
pub struct StringTable {
    data: String,
    offsets: Vec<u32>,
}

impl StringTable {
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The string at a pprof string index; `None` when out of range.
    #[inline]
    pub fn get(&self, idx: i64) -> Option<&str> {
        let i = usize::try_from(idx).ok()?;
        let start = *self.offsets.get(i)? as usize;
        let end = *self.offsets.get(i + 1)? as usize;
        self.data.get(start..end)
    }

    /// Like [`get`](Self::get) but out-of-range indices read as "" (only
    /// for profiles that passed [`Profile::validate`]).
    #[inline]
    pub fn str(&self, idx: i64) -> &str {
        self.get(idx).unwrap_or("")
    }

    /// Cuts every string longer than `max` bytes to its last `max` bytes
    /// (moved forward to a character boundary, so it stays valid UTF-8).
    /// Returns how many strings were cut.
    fn truncate_to_tails(&mut self, max: usize) -> usize {
        let n = self.len();
        if (0..n).all(|i| (self.offsets[i + 1] - self.offsets[i]) as usize <= max) {
            return 0;
        }
        let mut data = String::with_capacity(self.data.len());
        let mut offsets = Vec::with_capacity(self.offsets.len());
        offsets.push(0);
        let mut cut = 0;
        for i in 0..n {
            let s = &self.data[self.offsets[i] as usize..self.offsets[i + 1] as usize];
            let tail = if s.len() > max {
                cut += 1;
                let mut start = s.len() - max;
                while !s.is_char_boundary(start) {
                    start += 1;
                }
                &s[start..]
            } else {
                s
            };
            data.push_str(tail);
            // Never longer than before, so it fits in u32 as the original did.
            offsets.push(data.len() as u32);
        }
        self.data = data;
        self.offsets = offsets;
        cut
    }

    pub(crate) fn clear_with_empty(&mut self) {
        self.data.clear();
        self.offsets.clear();
        self.offsets.push(0);
        self.offsets.push(0);
    }

    /// Makes a table that got no string a valid empty one (decoding ends
    /// with it).
    pub(crate) fn start(&mut self) {
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
    }

    /// Appends a string; its index is the previous [`len`](Self::len).
    pub(crate) fn push_str(&mut self, s: &str) -> Result<(), DecodeError> {
        self.push(s)
    }

    fn push(&mut self, s: &str) -> Result<(), DecodeError> {
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        self.data.push_str(s);
        let end = u32::try_from(self.data.len()).map_err(|_| DecodeError::TooLarge)?;
        self.offsets.push(end);
        Ok(())
    }
}

/// Maps pprof ids (usually 1..=n in order) to table positions.
#[derive(Debug, Clone, Default)]
pub(crate) enum IdIndex {
    #[default]
    Dense,
    Sparse(FxHashMap<u64, u32>),
}

impl IdIndex {
    fn build(ids: impl ExactSizeIterator<Item = u64> + Clone) -> Self {
        if ids.clone().enumerate().all(|(i, id)| id == i as u64 + 1) {
            return IdIndex::Dense;
        }
        IdIndex::Sparse(ids.enumerate().map(|(i, id)| (id, i as u32)).collect())
    }

    #[inline]
    fn get(&self, id: u64, len: usize) -> Option<usize> {
        match self {
            IdIndex::Dense => {
                let i = usize::try_from(id.checked_sub(1)?).ok()?;
                (i < len).then_some(i)
            }
            IdIndex::Sparse(m) => m.get(&id).map(|&i| i as usize),
        }
    }
}

/// A decoded pprof profile.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    pub strings: StringTable,
    pub sample_types: Vec<ValueType>,
    pub period_type: Option<ValueType>,
    pub period: i64,
    pub time_nanos: i64,
    pub duration_nanos: i64,
    pub default_sample_type: i64,
    pub drop_frames: i64,
    pub keep_frames: i64,
    pub comments: Vec<i64>,
    pub mappings: Vec<Mapping>,
    pub locations: Vec<Location>,
    pub lines: Vec<Line>,
    pub functions: Vec<Function>,
    /// `sample_locations[i]..sample_locations[i+1]` indexes [`location_ids`](Self::location_ids).
    pub sample_locations: Vec<u32>,
    /// Location ids of every sample, leaf first.
    pub location_ids: Vec<u64>,
    /// Values, `sample_types.len()` per sample, row-major.
    pub values: Vec<i64>,
    /// `sample_labels[i]..sample_labels[i+1]` indexes [`labels`](Self::labels).
    pub sample_labels: Vec<u32>,
    pub labels: Vec<Label>,
    /// Size of the encoded profile this was decoded from (or built to).
    pub decoded_len: usize,
    location_index: IdIndex,
    function_index: IdIndex,
    mapping_index: IdIndex,
    /// [`Profile::encoded`], computed once.
    pub(crate) encoded: EncodedCache,
}

/// The encoding of a profile, kept once computed. A clone starts empty, so
/// a cloned profile that is then changed never reuses a stale encoding.
#[derive(Debug, Default)]
pub(crate) struct EncodedCache(pub(crate) std::sync::OnceLock<bytes::Bytes>);

impl Clone for EncodedCache {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl Profile {
    /// Decodes a plain (not gzipped) pprof message. Structural errors
    /// (truncation, wrong wire types, bad UTF-8) fail here; semantic checks
    /// are in [`validate`](Self::validate).
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut p = Profile { decoded_len: buf.len(), ..Profile::default() };
        // Capacity hint: most of a pprof's bytes are samples.
        p.sample_locations.reserve(buf.len() / 32 + 1);
        p.sample_locations.push(0);
        p.sample_labels.push(0);
        p.strings.data.reserve(buf.len() / 4);
        let mut r = Reader::new(buf);
        while !r.is_empty() {
            let (field, wt) = r.tag()?;
            match field {
                1 => p.sample_types.push(decode_value_type(expect_len(&mut r, wt)?)?),
                2 => p.decode_sample(expect_len(&mut r, wt)?)?,
                3 => p.mappings.push(decode_mapping(expect_len(&mut r, wt)?)?),
                4 => p.decode_location(expect_len(&mut r, wt)?)?,
                5 => p.functions.push(decode_function(expect_len(&mut r, wt)?)?),
                6 => {
                    let s = expect_len(&mut r, wt)?;
                    let s = std::str::from_utf8(s).map_err(|_| DecodeError::InvalidUtf8)?;
                    p.strings.push(s)?;
                }
                7 => p.drop_frames = r.scalar(wt)? as i64,
                8 => p.keep_frames = r.scalar(wt)? as i64,
                9 => p.time_nanos = r.scalar(wt)? as i64,
                10 => p.duration_nanos = r.scalar(wt)? as i64,
                11 => p.period_type = Some(decode_value_type(expect_len(&mut r, wt)?)?),
                12 => p.period = r.scalar(wt)? as i64,
                13 => r.repeated(wt, &mut p.comments, |v| v as i64)?,
                14 => p.default_sample_type = r.scalar(wt)? as i64,
                _ => r.skip(wt)?,
            }
        }
        p.strings.start();
        p.reindex();
        Ok(p)
    }

    /// Rebuilds the id → position indexes after the tables changed.
    pub(crate) fn reindex(&mut self) {
        self.location_index = IdIndex::build(self.locations.iter().map(|l| l.id));
        self.function_index = IdIndex::build(self.functions.iter().map(|f| f.id));
        self.mapping_index = IdIndex::build(self.mappings.iter().map(|m| m.id));
    }

    /// Repairs profiles of older .NET clients, whose functions all have id 0
    /// while each location's line names its function by the location's id:
    /// when every function id is 0 and there are as many functions as
    /// locations, function `i` takes location `i`'s id (as Pyroscope does).
    /// Returns whether it changed anything.
    pub fn repair_zero_function_ids(&mut self) -> bool {
        if self.functions.is_empty()
            || self.functions.len() != self.locations.len()
            || self.functions.iter().any(|f| f.id != 0)
        {
            return false;
        }
        for (f, l) in self.functions.iter_mut().zip(&self.locations) {
            f.id = l.id;
        }
        self.reindex();
        true
    }

    /// Pyroscope's symbol length limit (`max_profile_symbol_value_length`):
    /// every string of the table longer than `max` bytes keeps its last
    /// `max` bytes (the end of a long symbol or path is the part that tells
    /// it apart). Returns how many strings were cut.
    pub fn truncate_strings(&mut self, max: usize) -> usize {
        let cut = self.strings.truncate_to_tails(max);
        if cut > 0 {
            self.encoded = EncodedCache::default();
        }
        cut
    }

    /// Heap memory the decoded profile holds, bytes (what a request's
    /// memory budget is charged).
    pub fn heap_bytes(&self) -> usize {
        fn vec<T>(v: &Vec<T>) -> usize {
            v.capacity() * std::mem::size_of::<T>()
        }
        self.strings.data.capacity()
            + vec(&self.strings.offsets)
            + vec(&self.sample_types)
            + vec(&self.comments)
            + vec(&self.mappings)
            + vec(&self.locations)
            + vec(&self.lines)
            + vec(&self.functions)
            + vec(&self.sample_locations)
            + vec(&self.location_ids)
            + vec(&self.values)
            + vec(&self.sample_labels)
            + vec(&self.labels)
    }

    /// Appends a string to the table and returns its index.
    pub fn add_string(&mut self, s: &str) -> Result<i64, DecodeError> {
        let i = self.strings.len() as i64;
        self.strings.push(s)?;
        Ok(i)
    }

    /// Renames sample type `i` (e.g. `-` → `_` for .NET clients).
    pub fn rename_sample_type(&mut self, i: usize, name: &str) -> Result<(), DecodeError> {
        let idx = self.add_string(name)?;
        if let Some(vt) = self.sample_types.get_mut(i) {
            vt.r#type = idx;
        }
        Ok(())
    }

    fn decode_sample(&mut self, buf: &[u8]) -> Result<(), DecodeError> {
        let mut r = Reader::new(buf);
        while !r.is_empty() {
            let (field, wt) = r.tag()?;
            match field {
                1 => r.repeated(wt, &mut self.location_ids, |v| v)?,
                2 => r.repeated(wt, &mut self.values, |v| v as i64)?,
                3 => self.labels.push(decode_label(expect_len(&mut r, wt)?)?),
                _ => r.skip(wt)?,
            }
        }
        let locs = u32::try_from(self.location_ids.len()).map_err(|_| DecodeError::TooLarge)?;
        let labels = u32::try_from(self.labels.len()).map_err(|_| DecodeError::TooLarge)?;
        self.sample_locations.push(locs);
        self.sample_labels.push(labels);
        Ok(())
    }

    fn decode_location(&mut self, buf: &[u8]) -> Result<(), DecodeError> {
        let mut r = Reader::new(buf);
        let start = u32::try_from(self.lines.len()).map_err(|_| DecodeError::TooLarge)?;
        let mut loc = Location::default();
        while !r.is_empty() {
            let (field, wt) = r.tag()?;
            match field {
                1 => loc.id = r.scalar(wt)?,
                2 => loc.mapping_id = r.scalar(wt)?,
                3 => loc.address = r.scalar(wt)?,
                4 => self.lines.push(decode_line(expect_len(&mut r, wt)?)?),
                _ => r.skip(wt)?,
            }
        }
        let end = u32::try_from(self.lines.len()).map_err(|_| DecodeError::TooLarge)?;
        loc.lines = start..end;
        self.locations.push(loc);
        Ok(())
    }

    /// Number of samples.
    #[inline]
    pub fn sample_count(&self) -> usize {
        self.sample_locations.len().saturating_sub(1)
    }

    /// Location ids of sample `i`, leaf first.
    #[inline]
    pub fn sample_location_ids(&self, i: usize) -> &[u64] {
        let (s, e) = (self.sample_locations[i] as usize, self.sample_locations[i + 1] as usize);
        &self.location_ids[s..e]
    }

    /// Value `t` of sample `i`.
    #[inline]
    pub fn sample_value(&self, i: usize, t: usize) -> i64 {
        self.values[i * self.sample_types.len() + t]
    }

    /// Labels of sample `i`.
    #[inline]
    pub fn sample_labels(&self, i: usize) -> &[Label] {
        let (s, e) = (self.sample_labels[i] as usize, self.sample_labels[i + 1] as usize);
        &self.labels[s..e]
    }

    #[inline]
    pub fn location(&self, id: u64) -> Option<&Location> {
        self.location_index.get(id, self.locations.len()).map(|i| &self.locations[i])
    }

    #[inline]
    pub fn location_position(&self, id: u64) -> Option<usize> {
        self.location_index.get(id, self.locations.len())
    }

    #[inline]
    pub fn function(&self, id: u64) -> Option<&Function> {
        self.function_index.get(id, self.functions.len()).map(|i| &self.functions[i])
    }

    #[inline]
    pub fn function_position(&self, id: u64) -> Option<usize> {
        self.function_index.get(id, self.functions.len())
    }

    #[inline]
    pub fn mapping_position(&self, id: u64) -> Option<usize> {
        self.mapping_index.get(id, self.mappings.len())
    }

    /// Semantic checks (Pyroscope's `malformed_profile` rules): sample
    /// types present, `string_table[0] == ""`, string indices in range, no
    /// location or function with id 0, referenced ids exist, one value per
    /// sample type in every sample, no `-` in sample type names.
    pub fn validate(&self) -> Result<(), DecodeError> {
        use DecodeError::Invalid;
        if self.sample_types.is_empty() {
            return Err(Invalid("profile has no sample types".into()));
        }
        if self.strings.get(0) != Some("") {
            return Err(Invalid("string_table[0] must be the empty string".into()));
        }
        let n = self.strings.len() as i64;
        let check = |idx: i64, what: &str| {
            if idx < 0 || idx >= n {
                Err(Invalid(format!("{what} string index {idx} out of range (table has {n})")))
            } else {
                Ok(())
            }
        };
        for vt in self.sample_types.iter().chain(self.period_type.iter()) {
            check(vt.r#type, "value type")?;
            check(vt.unit, "value unit")?;
        }
        for vt in &self.sample_types {
            if self.strings.str(vt.r#type).contains('-') {
                return Err(Invalid(format!("sample type {:?} contains '-'", self.strings.str(vt.r#type))));
            }
        }
        check(self.default_sample_type, "default sample type")?;
        check(self.drop_frames, "drop_frames")?;
        check(self.keep_frames, "keep_frames")?;
        for &c in &self.comments {
            check(c, "comment")?;
        }
        for m in &self.mappings {
            check(m.filename, "mapping filename")?;
            check(m.build_id, "mapping build id")?;
        }
        for f in &self.functions {
            if f.id == 0 {
                return Err(Invalid("function with id 0".into()));
            }
            check(f.name, "function name")?;
            check(f.system_name, "function system name")?;
            check(f.filename, "function filename")?;
        }
        for l in &self.locations {
            if l.id == 0 {
                return Err(Invalid("location with id 0".into()));
            }
            if l.mapping_id != 0 && self.mapping_position(l.mapping_id).is_none() {
                return Err(Invalid(format!("location {} references unknown mapping", l.id)));
            }
        }
        for line in &self.lines {
            if line.function_id != 0 && self.function_position(line.function_id).is_none() {
                return Err(Invalid(format!("line references unknown function {}", line.function_id)));
            }
        }
        for &id in &self.location_ids {
            if self.location_position(id).is_none() {
                return Err(Invalid(format!("sample references unknown location {id}")));
            }
        }
        let types = self.sample_types.len();
        if self.values.len() != self.sample_count() * types {
            // Find the first offending sample for the message.
            return Err(Invalid(format!("sample values do not match the {types} sample types")));
        }
        for l in &self.labels {
            check(l.key, "label key")?;
            check(l.str, "label value")?;
            check(l.num_unit, "label unit")?;
        }
        self.validate_totals()
    }

    /// Totals are 64-bit sums: a profile whose absolute values of one
    /// sample type cannot be summed is refused rather than wrapped (or
    /// panicking).
    pub fn validate_totals(&self) -> Result<(), DecodeError> {
        use DecodeError::Invalid;
        let types = self.sample_types.len();
        if types > 0 {
            let mut sums = vec![0i64; types];
            for row in self.values.chunks_exact(types) {
                for (t, (sum, &v)) in sums.iter_mut().zip(row).enumerate() {
                    // Absolute values: then no subset (a series, a
                    // stack) of the samples can overflow either.
                    *sum = v.checked_abs().and_then(|a| sum.checked_add(a)).ok_or_else(|| {
                        Invalid(format!(
                            "the values of sample type {:?} overflow a 64-bit total",
                            self.strings.str(self.sample_types[t].r#type)
                        ))
                    })?;
                }
            }
        }
        Ok(())
    }
}

fn expect_len<'a>(r: &mut Reader<'a>, wt: u8) -> Result<&'a [u8], DecodeError> {
    if wt != WT_LEN {
        return Err(DecodeError::BadWireType(wt));
    }
    r.bytes()
}

fn decode_value_type(buf: &[u8]) -> Result<ValueType, DecodeError> {
    let mut r = Reader::new(buf);
    let mut v = ValueType::default();
    while !r.is_empty() {
        let (field, wt) = r.tag()?;
        match field {
            1 => v.r#type = r.scalar(wt)? as i64,
            2 => v.unit = r.scalar(wt)? as i64,
            _ => r.skip(wt)?,
        }
    }
    Ok(v)
}

fn decode_label(buf: &[u8]) -> Result<Label, DecodeError> {
    let mut r = Reader::new(buf);
    let mut l = Label::default();
    while !r.is_empty() {
        let (field, wt) = r.tag()?;
        match field {
            1 => l.key = r.scalar(wt)? as i64,
            2 => l.str = r.scalar(wt)? as i64,
            3 => l.num = r.scalar(wt)? as i64,
            4 => l.num_unit = r.scalar(wt)? as i64,
            _ => r.skip(wt)?,
        }
    }
    Ok(l)
}

fn decode_mapping(buf: &[u8]) -> Result<Mapping, DecodeError> {
    let mut r = Reader::new(buf);
    let mut m = Mapping::default();
    while !r.is_empty() {
        let (field, wt) = r.tag()?;
        match field {
            1 => m.id = r.scalar(wt)?,
            2 => m.memory_start = r.scalar(wt)?,
            3 => m.memory_limit = r.scalar(wt)?,
            4 => m.file_offset = r.scalar(wt)?,
            5 => m.filename = r.scalar(wt)? as i64,
            6 => m.build_id = r.scalar(wt)? as i64,
            7..=10 => {
                if r.scalar(wt)? != 0 {
                    m.flags |= 1 << (field - 7);
                }
            }
            _ => r.skip(wt)?,
        }
    }
    Ok(m)
}

fn decode_line(buf: &[u8]) -> Result<Line, DecodeError> {
    let mut r = Reader::new(buf);
    let mut l = Line::default();
    while !r.is_empty() {
        let (field, wt) = r.tag()?;
        match field {
            1 => l.function_id = r.scalar(wt)?,
            2 => l.line = r.scalar(wt)? as i64,
            _ => r.skip(wt)?,
        }
    }
    Ok(l)
}

fn decode_function(buf: &[u8]) -> Result<Function, DecodeError> {
    let mut r = Reader::new(buf);
    let mut f = Function::default();
    while !r.is_empty() {
        let (field, wt) = r.tag()?;
        match field {
            1 => f.id = r.scalar(wt)?,
            2 => f.name = r.scalar(wt)? as i64,
            3 => f.system_name = r.scalar(wt)? as i64,
            4 => f.filename = r.scalar(wt)? as i64,
            5 => f.start_line = r.scalar(wt)? as i64,
            _ => r.skip(wt)?,
        }
    }
    Ok(f)
}
