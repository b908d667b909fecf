//! A minimal protobuf wire reader over a byte slice: varints, tags,
//! length-delimited fields. Every read is bounds-checked; nothing panics on
//! hostile input.

use crate::DecodeError;

pub(crate) const WT_VARINT: u8 = 0;
pub(crate) const WT_I64: u8 = 1;
pub(crate) const WT_LEN: u8 = 2;
pub(crate) const WT_I32: u8 = 5;

#[derive(Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    #[inline]
    pub(crate) fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut out = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or(DecodeError::Truncated)?;
            self.pos += 1;
            out |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(out);
            }
        }
        Err(DecodeError::BadVarint)
    }

    /// Reads a field tag: (field number, wire type).
    #[inline]
    pub(crate) fn tag(&mut self) -> Result<(u32, u8), DecodeError> {
        let k = self.varint()?;
        let field = u32::try_from(k >> 3).map_err(|_| DecodeError::BadTag)?;
        if field == 0 {
            return Err(DecodeError::BadTag);
        }
        Ok((field, (k & 7) as u8))
    }

    #[inline]
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = usize::try_from(self.varint()?).map_err(|_| DecodeError::Truncated)?;
        let end = self.pos.checked_add(len).ok_or(DecodeError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    pub(crate) fn skip(&mut self, wire_type: u8) -> Result<(), DecodeError> {
        match wire_type {
            WT_VARINT => self.varint().map(|_| ()),
            WT_I64 => self.advance(8),
            WT_LEN => self.bytes().map(|_| ()),
            WT_I32 => self.advance(4),
            _ => Err(DecodeError::BadWireType(wire_type)),
        }
    }

    fn advance(&mut self, n: usize) -> Result<(), DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Truncated)?;
        if end > self.buf.len() {
            return Err(DecodeError::Truncated);
        }
        self.pos = end;
        Ok(())
    }

    /// A varint-typed scalar field value, checking the wire type.
    #[inline]
    pub(crate) fn scalar(&mut self, wire_type: u8) -> Result<u64, DecodeError> {
        if wire_type != WT_VARINT {
            return Err(DecodeError::BadWireType(wire_type));
        }
        self.varint()
    }

    /// A repeated varint field, packed or not, appended to `out`.
    #[inline]
    pub(crate) fn repeated<T>(
        &mut self,
        wire_type: u8,
        out: &mut Vec<T>,
        conv: impl Fn(u64) -> T,
    ) -> Result<(), DecodeError> {
        match wire_type {
            WT_VARINT => {
                out.push(conv(self.varint()?));
                Ok(())
            }
            WT_LEN => {
                let mut r = Reader::new(self.bytes()?);
                while !r.is_empty() {
                    out.push(conv(r.varint()?));
                }
                Ok(())
            }
            other => Err(DecodeError::BadWireType(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_decode_and_reject_overflow_and_truncation() {
        assert_eq!(Reader::new(&[0x96, 0x01]).varint(), Ok(150));
        assert_eq!(Reader::new(&[0x80]).varint(), Err(DecodeError::Truncated));
        assert_eq!(Reader::new(&[0xff; 11]).varint(), Err(DecodeError::BadVarint));
        let mut r = Reader::new(&[0x05, 1, 2]);
        assert_eq!(r.bytes(), Err(DecodeError::Truncated));
    }
}
