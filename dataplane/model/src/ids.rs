use std::fmt;

use xxhash_rust::xxh3::Xxh3;

/// A profile id: 16 bytes, written as a UUID (Pyroscope's `RawSample.ID`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ProfileId(pub [u8; 16]);

impl ProfileId {
    /// Parses a UUID in any of its usual text forms.
    pub fn parse(s: &str) -> Option<Self> {
        uuid::Uuid::parse_str(s.trim()).ok().map(|u| Self(*u.as_bytes()))
    }

    /// A random (v4) id.
    pub fn random() -> Self {
        Self(*uuid::Uuid::new_v4().as_bytes())
    }

    /// A deterministic id derived from content, for clients that send none.
    pub fn from_content(parts: &[&[u8]]) -> Self {
        let mut h = Xxh3::new();
        for p in parts {
            h.update(&(p.len() as u64).to_le_bytes());
            h.update(p);
        }
        let mut b = h.digest128().to_le_bytes();
        // Mark as an RFC 4122 version-8 (custom) UUID.
        b[6] = (b[6] & 0x0f) | 0x80;
        b[8] = (b[8] & 0x3f) | 0x80;
        Self(b)
    }
}

impl fmt::Display for ProfileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        uuid::Uuid::from_bytes(self.0).hyphenated().fmt(f)
    }
}

/// The dedup key of one stored profile row: (tenant, series, profile id)
/// hashed to 128 bits. One pushed profile split into several series gives
/// one key per series; a retried push gives the same keys again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProfileKey(pub [u8; 16]);

impl ProfileKey {
    pub fn new(tenant: &str, series_fingerprint: u64, id: &ProfileId) -> Self {
        let mut h = Xxh3::new();
        h.update(&(tenant.len() as u64).to_le_bytes());
        h.update(tenant.as_bytes());
        h.update(&series_fingerprint.to_le_bytes());
        h.update(&id.0);
        Self(h.digest128().to_le_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_ids_parse_and_print_as_uuids() {
        let id = ProfileId::parse("6F9619FF-8B86-D011-B42D-00C04FC964FF").unwrap();
        assert_eq!(id.to_string(), "6f9619ff-8b86-d011-b42d-00c04fc964ff");
        assert!(ProfileId::parse("not-a-uuid").is_none());
    }

    #[test]
    fn keys_depend_on_tenant_series_and_id() {
        let id = ProfileId([7; 16]);
        let k = ProfileKey::new("a", 1, &id);
        assert_eq!(k, ProfileKey::new("a", 1, &id));
        assert_ne!(k, ProfileKey::new("b", 1, &id));
        assert_ne!(k, ProfileKey::new("a", 2, &id));
        assert_ne!(k, ProfileKey::new("a", 1, &ProfileId([8; 16])));
        assert_eq!(ProfileId::from_content(&[b"x"]), ProfileId::from_content(&[b"x"]));
        assert_ne!(ProfileId::from_content(&[b"x", b""]), ProfileId::from_content(&[b"x"]));
    }
}
