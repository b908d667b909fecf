//! Text encodings used where protobuf messages and raw keys cross serde
//! (Raft log entries and snapshots are JSON): lowercase hex.

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

/// `#[serde(with = "proto_hex")]`: a prost message as the hex of its encoding,
/// so that every field the proto gains travels through the log unchanged.
pub(crate) mod proto_hex {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub(crate) fn serialize<M: prost::Message, S: Serializer>(message: &M, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::encode_hex(&message.encode_to_vec()))
    }

    pub(crate) fn deserialize<'de, M: prost::Message + Default, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<M, D::Error> {
        let text = String::deserialize(deserializer)?;
        let bytes = super::decode_hex(&text).ok_or_else(|| D::Error::custom("invalid hex"))?;
        M::decode(bytes.as_slice()).map_err(D::Error::custom)
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
