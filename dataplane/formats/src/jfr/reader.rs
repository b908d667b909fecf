//! Bounds-checked reader over the bytes of a JFR chunk.
//!
//! Every read checks the window `[pos, end)`; nothing here panics or
//! allocates on input-declared sizes. Offsets in errors are absolute
//! (from the start of the decompressed recording).

use super::JfrError;

/// String encodings (the first byte of every JFR string value).
const STR_NULL: u8 = 0;
const STR_EMPTY: u8 = 1;
const STR_POOL: u8 = 2;
const STR_UTF8: u8 = 3;
const STR_CHARS: u8 = 4;
const STR_LATIN1: u8 = 5;

/// A string value as stored: decoded only when needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JStr<'a> {
    Null,
    Empty,
    /// Reference into the `java.lang.String` constant pool.
    Pool(i64),
    Utf8(&'a [u8]),
    Latin1(&'a [u8]),
    /// `count` chars, each encoded as an int (varint or 2 bytes).
    Chars {
        raw: &'a [u8],
        count: usize,
        compressed: bool,
    },
}

impl JStr<'_> {
    /// Appends the decoded text to `out` (lossy on invalid data).
    pub(crate) fn push_to(&self, out: &mut String) {
        match *self {
            JStr::Null | JStr::Empty | JStr::Pool(_) => {}
            JStr::Utf8(b) => out.push_str(&String::from_utf8_lossy(b)),
            JStr::Latin1(b) => out.extend(b.iter().map(|&c| char::from(c))),
            JStr::Chars { raw, count, compressed } => {
                let mut r = Reader::new(raw, 0, raw.len(), compressed);
                for _ in 0..count {
                    match r.char_code() {
                        Ok(c) => out.push(char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER)),
                        Err(_) => break,
                    }
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
    compressed: bool,
}

impl<'a> Reader<'a> {
    /// A reader over `buf[pos..end]` (`end` clamped to the buffer).
    pub(crate) fn new(buf: &'a [u8], pos: usize, end: usize, compressed: bool) -> Self {
        let end = end.min(buf.len());
        Reader { buf, pos: pos.min(end), end, compressed }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.end - self.pos
    }

    pub(crate) fn truncated(&self) -> JfrError {
        JfrError::Truncated { offset: self.pos }
    }

    pub(crate) fn malformed(&self, what: &'static str) -> JfrError {
        JfrError::Malformed { what, offset: self.pos }
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], JfrError> {
        if n > self.remaining() {
            return Err(self.truncated());
        }
        let b = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(b)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], JfrError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, JfrError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn be_u16(&mut self) -> Result<u16, JfrError> {
        self.array().map(u16::from_be_bytes)
    }

    pub(crate) fn be_i32(&mut self) -> Result<i32, JfrError> {
        self.array().map(i32::from_be_bytes)
    }

    pub(crate) fn be_i64(&mut self) -> Result<i64, JfrError> {
        self.array().map(i64::from_be_bytes)
    }

    /// JFR's compressed integer: 7 bits per byte, little-endian groups,
    /// high bit = more; the 9th byte carries 8 full bits (64 bits total).
    pub(crate) fn varint(&mut self) -> Result<i64, JfrError> {
        let mut v: u64 = 0;
        for i in 0..8 {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v as i64);
            }
        }
        let b = self.u8()?;
        Ok((v | (u64::from(b) << 56)) as i64)
    }

    /// A Java `long`.
    pub(crate) fn long(&mut self) -> Result<i64, JfrError> {
        if self.compressed { self.varint() } else { self.be_i64() }
    }

    /// A Java `int`.
    pub(crate) fn int(&mut self) -> Result<i32, JfrError> {
        if self.compressed { self.varint().map(|v| v as i32) } else { self.be_i32() }
    }

    /// A Java `short`.
    pub(crate) fn short(&mut self) -> Result<i16, JfrError> {
        if self.compressed { self.varint().map(|v| v as i16) } else { self.be_u16().map(|v| v as i16) }
    }

    /// A Java `char` as a code unit/point.
    pub(crate) fn char_code(&mut self) -> Result<u32, JfrError> {
        if self.compressed { self.varint().map(|v| v as u32) } else { self.be_u16().map(u32::from) }
    }

    /// An element count: a non-negative int no larger than the bytes left
    /// (every counted item takes at least one byte, or is skipped in O(1)).
    pub(crate) fn count(&mut self) -> Result<usize, JfrError> {
        let n = self.int()?;
        let n = usize::try_from(n).map_err(|_| self.malformed("negative count"))?;
        if n > self.remaining() {
            return Err(self.truncated());
        }
        Ok(n)
    }

    /// Reads a string value without allocating.
    pub(crate) fn string(&mut self) -> Result<JStr<'a>, JfrError> {
        match self.u8()? {
            STR_NULL => Ok(JStr::Null),
            STR_EMPTY => Ok(JStr::Empty),
            STR_POOL => self.long().map(JStr::Pool),
            STR_UTF8 => {
                let n = self.count()?;
                self.bytes(n).map(JStr::Utf8)
            }
            STR_LATIN1 => {
                let n = self.count()?;
                self.bytes(n).map(JStr::Latin1)
            }
            STR_CHARS => {
                let count = self.count()?;
                let start = self.pos;
                for _ in 0..count {
                    self.char_code()?;
                }
                Ok(JStr::Chars { raw: &self.buf[start..self.pos], count, compressed: self.compressed })
            }
            _ => Err(JfrError::Malformed { what: "unknown string encoding", offset: self.pos - 1 }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn varints() {
        let b = [0x85u8, 0xb0, 0x03];
        assert_eq!(Reader::new(&b, 0, 3, true).varint().unwrap(), 55301);
        // 9 bytes: the last one carries 8 bits.
        let b = [0xffu8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(Reader::new(&b, 0, 9, true).varint().unwrap(), -1);
        // Padded encoding (continuation bits with zero payload) is valid.
        let b = [0x85u8, 0x80, 0x80, 0x00];
        assert_eq!(Reader::new(&b, 0, 4, true).varint().unwrap(), 5);
        let b = [0x85u8, 0x80];
        assert!(matches!(Reader::new(&b, 0, 2, true).varint(), Err(JfrError::Truncated { offset: 2 })));
    }

    #[test]
    fn strings() {
        let b = [3u8, 2, b'h', b'i', 5, 1, 0xe9, 4, 2, 0x68, 0xe9, 0x01, 2, 7, 0, 1];
        let mut r = Reader::new(&b, 0, b.len(), true);
        let mut s = String::new();
        for _ in 0..3 {
            r.string().unwrap().push_to(&mut s);
        }
        assert_eq!(s, "hiéhé");
        assert_eq!(r.string().unwrap(), JStr::Pool(7));
        assert_eq!(r.string().unwrap(), JStr::Null);
        assert_eq!(r.string().unwrap(), JStr::Empty);
        // Declared lengths beyond the window are errors, not allocations.
        let b = [3u8, 0xff, 0xff, 0xff, 0xff, 0x07];
        assert!(Reader::new(&b, 0, b.len(), true).string().is_err());
        let b = [9u8];
        assert!(Reader::new(&b, 0, b.len(), true).string().is_err());
    }

    #[test]
    fn raw_ints() {
        let b = [0u8, 0, 0, 5, 0, 7];
        let mut r = Reader::new(&b, 0, b.len(), false);
        assert_eq!(r.int().unwrap(), 5);
        assert_eq!(r.short().unwrap(), 7);
        assert!(r.long().is_err());
    }
}
