//! Durations as human text in YAML (`500ms`, `1h`, `30s`).

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*d))
}

/// A duration as the configuration writes it (`30days`, `1h`, `500ms`).
pub fn format(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map_err(|e| serde::de::Error::custom(format!("invalid duration {text:?}: {e}")))
}
