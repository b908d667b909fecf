use std::fmt;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

/// Names of labels with a meaning to Phlox (as in Pyroscope).
pub mod label_names {
    pub const METRIC_NAME: &str = "__name__";
    pub const SERVICE_NAME: &str = "service_name";
    pub const PROFILE_TYPE: &str = "__profile_type__";
    pub const TYPE: &str = "__type__";
    pub const UNIT: &str = "__unit__";
    pub const PERIOD_TYPE: &str = "__period_type__";
    pub const PERIOD_UNIT: &str = "__period_unit__";
    pub const SERVICE_NAME_PRIVATE: &str = "__service_name__";
    pub const DELTA: &str = "__delta__";
    /// `"true"` on series whose profiles have native frames without
    /// function names (an address in a mapping), as Pyroscope sets it.
    pub const UNSYMBOLIZED: &str = "__unsymbolized__";
    /// A client session (16 hex digits); see `max_sessions_per_series`.
    pub const SESSION_ID: &str = "__session_id__";
    pub const SPAN_ID: &str = "span_id";
    pub const TRACE_ID: &str = "trace_id";
    pub const PROFILE_ID: &str = "profile_id";
    /// Value of `service_name` when a client sends none.
    pub const UNKNOWN_SERVICE: &str = "unknown_service";
}

/// One label.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LabelPair {
    pub name: String,
    pub value: String,
}

/// A label set, always sorted by name with unique names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Labels(Vec<LabelPair>);

impl Labels {
    /// Builds a set from pairs; on duplicate names the first pair wins.
    pub fn from_pairs<N: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (N, V)>) -> Self {
        let mut v: Vec<LabelPair> =
            pairs.into_iter().map(|(n, v)| LabelPair { name: n.into(), value: v.into() }).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name)); // stable: first occurrence first
        v.dedup_by(|later, earlier| later.name == earlier.name);
        Self(v)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.binary_search_by(|p| p.name.as_str().cmp(name)).ok().map(|i| self.0[i].value.as_str())
    }

    /// Sets a label, replacing an existing value.
    pub fn set(&mut self, name: &str, value: &str) {
        match self.0.binary_search_by(|p| p.name.as_str().cmp(name)) {
            Ok(i) => value.clone_into(&mut self.0[i].value),
            Err(i) => self.0.insert(i, LabelPair { name: name.to_owned(), value: value.to_owned() }),
        }
    }

    /// Sets a label only when it is absent.
    pub fn set_if_absent(&mut self, name: &str, value: &str) {
        if let Err(i) = self.0.binary_search_by(|p| p.name.as_str().cmp(name)) {
            self.0.insert(i, LabelPair { name: name.to_owned(), value: value.to_owned() });
        }
    }

    pub fn remove(&mut self, name: &str) -> Option<String> {
        self.0.binary_search_by(|p| p.name.as_str().cmp(name)).ok().map(|i| self.0.remove(i).value)
    }

    pub fn iter(&self) -> impl Iterator<Item = &LabelPair> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A stable 64-bit hash of the set (xxh3 over `name 0xff value 0xff`);
    /// persisted in blocks, so it must never change.
    pub fn fingerprint(&self) -> u64 {
        let mut h = Xxh3::new();
        for p in &self.0 {
            h.update(p.name.as_bytes());
            h.update(&[0xff]);
            h.update(p.value.as_bytes());
            h.update(&[0xff]);
        }
        h.digest()
    }
}

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}={:?}", p.name, p.value)?;
        }
        f.write_str("}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_sorted_unique_and_fingerprinted_by_content() {
        let a = Labels::from_pairs([("b", "2"), ("a", "1"), ("b", "3")]);
        assert_eq!(a.to_string(), r#"{a="1", b="2"}"#);
        let b = Labels::from_pairs([("a", "1"), ("b", "2")]);
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), Labels::from_pairs([("a", "12")]).fingerprint());
        // The separator keeps ("ab","") apart from ("a","b").
        assert_ne!(Labels::from_pairs([("ab", "")]).fingerprint(), Labels::from_pairs([("a", "b")]).fingerprint());
    }

    #[test]
    fn set_get_remove() {
        let mut l = Labels::default();
        l.set("service_name", "x");
        l.set_if_absent("service_name", "y");
        l.set("__name__", "cpu");
        assert_eq!(l.get("service_name"), Some("x"));
        assert_eq!(l.iter().next().map(|p| p.name.as_str()), Some("__name__"));
        assert_eq!(l.remove("service_name"), Some("x".into()));
        assert_eq!(l.len(), 1);
    }
}
