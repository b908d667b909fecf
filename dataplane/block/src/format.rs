//! The object layout: sections, then the footer (a `metastore.v1.BlockMeta`
//! protobuf), then a fixed 16-byte trailer.
//!
//! ```text
//! offset 0                                                     size-16-L        size-16     size
//! ┌───────────────┬───────────────┬─────┬───────────────────────┬───────────────┬───────────┐
//! │ dataset 0     │ dataset 1     │ ... │ dataset N-1           │ footer:       │ trailer   │
//! │ 7 sections    │ 7 sections    │     │ 7 sections            │ BlockMeta (L) │ 16 bytes  │
//! └───────────────┴───────────────┴─────┴───────────────────────┴───────────────┴───────────┘
//! trailer = footer_len u32 LE | footer_crc32 u32 LE | format_version u32 LE | magic "PHLX"
//! ```

use bytes::Bytes;
use phlox_proto::metastore::v1::BlockMeta;
use prost::Message;

use crate::{BlockError, Result};

/// Magic bytes at the very end of every object.
pub const MAGIC: &[u8; 4] = b"PHLX";
/// Current object layout version. 2: STACKS holds each node's parent as a
/// distance back (`parent_distance`); 1: absolute `parent` ids. Readers
/// accept both; the STACKS schema says which.
pub const FORMAT_VERSION: u32 = 2;
/// Trailer length in bytes.
pub const TRAILER_LEN: usize = 16;
/// How much of the tail a reader fetches first: footers of segments are
/// small, so one GET almost always suffices.
pub const TAIL_FETCH: u64 = 64 * 1024;

/// Appends the footer and trailer for `meta` to `out`. `meta.size` is set to
/// the final object size (the footer encodes its own length correctly).
pub(crate) fn write_footer(out: &mut Vec<u8>, meta: &mut BlockMeta) -> Result<()> {
    let body = out.len() as u64;
    // meta.size depends on the footer length which depends on meta.size's
    // varint width: iterate to the fixpoint (at most a few rounds).
    let mut size = body + TRAILER_LEN as u64;
    loop {
        meta.size = size;
        let len = meta.encoded_len() as u64;
        let next = body + len + TRAILER_LEN as u64;
        if next == size {
            break;
        }
        size = next;
    }
    let footer = meta.encode_to_vec();
    let footer_len = u32::try_from(footer.len()).map_err(|_| BlockError::TooLarge("footer"))?;
    let crc = crc32fast::hash(&footer);
    out.extend_from_slice(&footer);
    out.extend_from_slice(&footer_len.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(MAGIC);
    debug_assert_eq!(out.len() as u64, meta.size);
    Ok(())
}

/// What the trailer says.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Trailer {
    pub(crate) footer_len: u32,
    pub(crate) footer_crc: u32,
}

pub(crate) fn parse_trailer(path: &str, tail: &[u8]) -> Result<Trailer> {
    let corrupt = |reason: &str| BlockError::Corrupt { path: path.to_owned(), reason: reason.to_owned() };
    if tail.len() < TRAILER_LEN {
        return Err(corrupt("object shorter than its trailer"));
    }
    let t = &tail[tail.len() - TRAILER_LEN..];
    if &t[12..16] != MAGIC {
        return Err(corrupt("bad magic"));
    }
    let word = |i: usize| u32::from_le_bytes([t[i], t[i + 1], t[i + 2], t[i + 3]]);
    let version = word(8);
    if version == 0 || version > FORMAT_VERSION {
        return Err(BlockError::UnsupportedVersion { path: path.to_owned(), version, max: FORMAT_VERSION });
    }
    Ok(Trailer { footer_len: word(0), footer_crc: word(4) })
}

pub(crate) fn decode_footer(path: &str, footer: &Bytes, trailer: Trailer) -> Result<BlockMeta> {
    if crc32fast::hash(footer) != trailer.footer_crc {
        return Err(BlockError::Corrupt { path: path.to_owned(), reason: "footer checksum mismatch".into() });
    }
    BlockMeta::decode(footer.clone())
        .map_err(|e| BlockError::Corrupt { path: path.to_owned(), reason: format!("footer: {e}") })
}
