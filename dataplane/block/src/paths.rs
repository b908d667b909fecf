//! The only place that formats or parses object keys in the bucket.
//!
//! ```text
//! segments/<shard:4 digits>/<ulid>.block     level 0: one object per shard and segment, many tenants
//! blocks/<tenant>/<ulid>.block              compacted, one tenant
//! dlq/<shard:4 digits>/<ulid>.meta          AddBlockRequest of a block whose registration failed
//! settings/<tenant>/recording_rules.binpb    a tenant's recording rules (settings.v1.RecordingRulesStore)
//! settings/<tenant>/settings.binpb           a tenant's key/value settings (settings.v1.SettingsStore)
//! ```

use object_store::path::Path;
use ulid::Ulid;

/// Prefix of every dead-letter entry.
pub const DLQ_PREFIX: &str = "dlq";
/// Prefix of level-0 segments.
pub const SEGMENTS_PREFIX: &str = "segments";
/// Prefix of compacted, per-tenant blocks.
pub const BLOCKS_PREFIX: &str = "blocks";

/// Errors from parsing an object key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    /// The key is not under a known prefix or has the wrong number of parts.
    #[error("object key {0:?} is not a block, segment or dead-letter key")]
    UnknownLayout(String),
    /// The file name is not a ULID with the expected extension.
    #[error("object key {0:?} does not end in a ULID file name")]
    BadId(String),
}

/// Key of a level-0 segment object.
pub fn segment_path(shard: u32, id: Ulid) -> Path {
    Path::from(format!("{SEGMENTS_PREFIX}/{shard:04}/{id}.block"))
}

/// Key of a compacted, single-tenant block.
pub fn block_path(tenant: &str, id: Ulid) -> Path {
    Path::from_iter([BLOCKS_PREFIX, tenant, &format!("{id}.block")])
}

/// Key of the object of a block described by its metadata fields: segments
/// have no tenant (level 0), compacted blocks do.
pub fn object_path(tenant: &str, shard: u32, level: u32, id: Ulid) -> Path {
    if level == 0 || tenant.is_empty() { segment_path(shard, id) } else { block_path(tenant, id) }
}

/// Prefix of per-tenant settings.
pub const SETTINGS_PREFIX: &str = "settings";

/// Key of a tenant's recording rules.
pub fn recording_rules_path(tenant: &str) -> Path {
    Path::from_iter([SETTINGS_PREFIX, tenant, "recording_rules.binpb"])
}

/// Prefix of ad hoc (uploaded, not ingested) profiles.
pub const ADHOC_PREFIX: &str = "adhoc";

/// Key of an ad hoc profile's file, as uploaded (base64-decoded).
pub fn adhoc_file_path(tenant: &str, id: Ulid) -> Path {
    Path::from_iter([ADHOC_PREFIX, tenant, &format!("{id}.profile")])
}

/// Key of an ad hoc profile's name and upload time (written after the
/// file: an upload is listed once its metadata exists).
pub fn adhoc_meta_path(tenant: &str, id: Ulid) -> Path {
    Path::from_iter([ADHOC_PREFIX, tenant, &format!("{id}{ADHOC_META_SUFFIX}")])
}

/// File name suffix of an ad hoc profile's metadata object.
pub const ADHOC_META_SUFFIX: &str = ".meta.json";

/// Key of a tenant's key/value settings.
pub fn settings_path(tenant: &str) -> Path {
    Path::from_iter([SETTINGS_PREFIX, tenant, "settings.binpb"])
}

/// Key of a dead-letter entry.
pub fn dlq_path(shard: u32, id: Ulid) -> Path {
    Path::from(format!("{DLQ_PREFIX}/{shard:04}/{id}.meta"))
}

/// Parses the block id out of a segment, block or dead-letter key.
pub fn parse_id(path: &Path) -> Result<Ulid, PathError> {
    let parts: Vec<_> = path.parts().collect();
    let file = match (parts.first().map(|p| p.as_ref()), parts.len()) {
        (Some(SEGMENTS_PREFIX | BLOCKS_PREFIX | DLQ_PREFIX), 3) => parts[2].as_ref(),
        _ => return Err(PathError::UnknownLayout(path.to_string())),
    };
    let stem = file
        .strip_suffix(".block")
        .or_else(|| file.strip_suffix(".meta"))
        .ok_or_else(|| PathError::BadId(path.to_string()))?;
    Ulid::from_string(stem).map_err(|_| PathError::BadId(path.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_to_their_ids() {
        let id = Ulid::from_parts(1_700_000_000_000, 42);
        assert_eq!(segment_path(3, id).to_string(), format!("segments/0003/{id}.block"));
        assert_eq!(block_path("t-1", id).to_string(), format!("blocks/t-1/{id}.block"));
        assert_eq!(dlq_path(12, id).to_string(), format!("dlq/0012/{id}.meta"));
        for p in [segment_path(3, id), block_path("t", id), dlq_path(1, id)] {
            assert_eq!(parse_id(&p).unwrap(), id);
        }
        assert_eq!(object_path("", 7, 0, id), segment_path(7, id));
        assert_eq!(object_path("t", 7, 1, id), block_path("t", id));
    }

    #[test]
    fn foreign_keys_are_rejected() {
        assert!(matches!(parse_id(&Path::from("x/y/z")), Err(PathError::UnknownLayout(_))));
        assert!(matches!(parse_id(&Path::from("segments/0001/nope.block")), Err(PathError::BadId(_))));
    }
}
