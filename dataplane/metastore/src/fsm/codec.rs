//! How the replicated state crosses serde. Raft log entries and snapshots
//! are stored binary: one format byte, then postcard ([`encode_stored`]).
//! Version 1 of Phlox stored them as JSON, with protobuf messages and raw
//! keys as lowercase hex; [`decode_stored`] reads both, so a metastore
//! upgraded in place reads its old log and snapshot. The serde impls here
//! and in the state pick bytes or hex by the format's
//! `is_human_readable`, so JSON (the Raft RPCs, tests) stays readable.

use std::fmt::Write as _;

/// Lowercase hex of `bytes`.
pub(crate) fn encode_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Bytes of a hex string (either case); `None` on odd length or a non-hex digit.
pub(crate) fn decode_hex(text: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let text = text.as_bytes();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.chunks_exact(2).map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?)).collect()
}

/// Opaque bytes in serde: raw bytes in a binary format, lowercase hex in a
/// human-readable one (JSON).
pub(crate) struct Blob<'a>(pub(crate) &'a [u8]);

impl serde::Serialize for Blob<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&encode_hex(self.0))
        } else {
            serializer.serialize_bytes(self.0)
        }
    }
}

/// The owned form of [`Blob`], for deserializing.
pub(crate) struct BlobBuf(pub(crate) Vec<u8>);

impl<'de> serde::Deserialize<'de> for BlobBuf {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            decode_hex(&text).map(BlobBuf).ok_or_else(|| D::Error::custom("invalid hex"))
        } else {
            struct Visitor;
            impl serde::de::Visitor<'_> for Visitor {
                type Value = BlobBuf;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("bytes")
                }
                fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<BlobBuf, E> {
                    Ok(BlobBuf(v.to_vec()))
                }
                fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<BlobBuf, E> {
                    Ok(BlobBuf(v))
                }
            }
            deserializer.deserialize_byte_buf(Visitor)
        }
    }
}

/// `#[serde(with = "proto_message")]`: a prost message as its encoding (a
/// [`Blob`]), so that every field the proto gains travels through the log
/// unchanged.
pub(crate) mod proto_message {
    use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error as _};

    use super::{Blob, BlobBuf};

    pub(crate) fn serialize<M: prost::Message, S: Serializer>(message: &M, serializer: S) -> Result<S::Ok, S::Error> {
        Blob(&message.encode_to_vec()).serialize(serializer)
    }

    pub(crate) fn deserialize<'de, M: prost::Message + Default, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<M, D::Error> {
        let BlobBuf(bytes) = BlobBuf::deserialize(deserializer)?;
        M::decode(bytes.as_slice()).map_err(D::Error::custom)
    }
}

/// Format byte of a stored value: postcard, version 1 of the binary layout.
/// (JSON values, from before, start with `{`.)
pub(crate) const BINARY_V1: u8 = 1;

/// A stored log entry or snapshot that does not decode.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// A JSON value (the format before the binary one) is malformed.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A binary value is malformed.
    #[error("binary: {0}")]
    Binary(#[from] postcard::Error),
    /// Writing the value failed.
    #[error("write: {0}")]
    Io(#[from] std::io::Error),
    /// The value starts with a format byte this version does not know
    /// (written by a newer Phlox?).
    #[error("unknown format byte {0:#04x} (written by a newer version?)")]
    UnknownFormat(u8),
    /// The value is empty.
    #[error("empty value")]
    Empty,
}

/// Writes `value` in the stored binary format (format byte, then postcard).
pub(crate) fn encode_stored<T: serde::Serialize, W: std::io::Write>(value: &T, mut out: W) -> Result<W, CodecError> {
    out.write_all(&[BINARY_V1])?;
    Ok(postcard::to_io(value, out)?)
}

/// [`encode_stored`] into a new vector.
pub(crate) fn encode_stored_vec<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    encode_stored(value, Vec::new())
}

/// Reads a stored value: the binary format, or JSON written by Phlox
/// before it.
pub(crate) fn decode_stored<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    match bytes.first() {
        None => Err(CodecError::Empty),
        Some(b'{') => Ok(serde_json::from_slice(bytes)?),
        Some(&BINARY_V1) => Ok(postcard::from_bytes(&bytes[1..])?),
        Some(&other) => Err(CodecError::UnknownFormat(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_rejects_garbage() {
        let bytes = [0u8, 1, 0x7f, 0x80, 0xff];
        assert_eq!(encode_hex(&bytes), "00017f80ff");
        assert_eq!(decode_hex("00017F80ff").unwrap(), bytes);
        assert_eq!(decode_hex("abc"), None);
        assert_eq!(decode_hex("zz"), None);
        assert_eq!(decode_hex("").unwrap(), Vec::<u8>::new());
    }
}
