//! Bounded decompression: a gzip bomb stops at the limit, it never fills memory.

use std::io::Read;

use crate::DecodeError;

/// True when `buf` starts with the gzip magic bytes.
pub fn is_gzip(buf: &[u8]) -> bool {
    buf.len() >= 2 && buf[0] == 0x1f && buf[1] == 0x8b
}

/// Gunzips `buf` (all members) into at most `limit` bytes.
pub fn gunzip_capped(buf: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::with_capacity(buf.len().saturating_mul(4).min(limit).min(1 << 24));
    // The buffered decoder reads `buf` in place (no copy through a reader's
    // buffer).
    let decoder = flate2::bufread::MultiGzDecoder::new(buf);
    decoder.take(limit as u64 + 1).read_to_end(&mut out).map_err(|e| DecodeError::Gzip(e.to_string()))?;
    if out.len() > limit {
        return Err(DecodeError::PayloadTooLarge { limit });
    }
    Ok(out)
}

/// Returns the plain payload: gunzipped when gzipped, borrowed otherwise;
/// either way at most `limit` bytes.
pub fn maybe_gunzip(buf: &[u8], limit: usize) -> Result<std::borrow::Cow<'_, [u8]>, DecodeError> {
    if is_gzip(buf) {
        return gunzip_capped(buf, limit).map(std::borrow::Cow::Owned);
    }
    if buf.len() > limit {
        return Err(DecodeError::PayloadTooLarge { limit });
    }
    Ok(std::borrow::Cow::Borrowed(buf))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gzip_bombs_stop_at_the_limit() {
        let bomb = gzip(&vec![0u8; 50 << 20]);
        assert!(bomb.len() < 100_000);
        assert_eq!(gunzip_capped(&bomb, 1 << 20), Err(DecodeError::PayloadTooLarge { limit: 1 << 20 }));
        assert_eq!(gunzip_capped(&gzip(b"hello"), 5).unwrap(), b"hello");
    }

    #[test]
    fn truncated_gzip_is_an_error() {
        let g = gzip(&[7u8; 1000]);
        assert!(matches!(gunzip_capped(&g[..g.len() / 2], 1 << 20), Err(DecodeError::Gzip(_))));
        assert_eq!(maybe_gunzip(b"plain", 5).unwrap().as_ref(), b"plain");
        assert_eq!(maybe_gunzip(b"plain!", 5), Err(DecodeError::PayloadTooLarge { limit: 5 }));
    }
}
