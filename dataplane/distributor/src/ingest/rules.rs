//! Pyroscope's naming rules for `/ingest`: profile type from the app name
//! suffix (text formats) or from the pprof sample types.

use std::collections::HashMap;

use phlox_pprof::{DecodeError, Profile};

/// What a text-format app name suffix means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Kind {
    pub(crate) name: &'static str,
    pub(crate) sample_type: &'static str,
    pub(crate) unit: &'static str,
}

const fn k(name: &'static str, sample_type: &'static str, unit: &'static str) -> Kind {
    Kind { name, sample_type, unit }
}

pub(crate) fn suffix_kind(suffix: &str) -> Option<Kind> {
    Some(match suffix {
        "cpu" | "itimer" => k("process_cpu", "samples", "count"),
        "wall" | "seconds" | "nanoseconds" | "microseconds" | "milliseconds" => k("wall", "samples", "count"),
        "inuse_objects" => k("memory", "inuse_objects", "count"),
        "alloc_objects" => k("memory", "alloc_objects", "count"),
        "inuse_space" => k("memory", "inuse_space", "bytes"),
        "alloc_space" => k("memory", "alloc_space", "bytes"),
        "goroutines" => k("goroutine", "goroutines", "count"),
        "mutex_count" => k("mutex", "contentions", "count"),
        "mutex_duration" => k("mutex", "delay", "nanoseconds"),
        "block_count" | "lock_count" => k("block", "contentions", "count"),
        "block_duration" | "lock_duration" => k("block", "delay", "nanoseconds"),
        "alloc_in_new_tlab_objects" => k("memory", "alloc_in_new_tlab_objects", "count"),
        "alloc_outside_tlab_objects" => k("memory", "alloc_outside_tlab_objects", "count"),
        "alloc_in_new_tlab_bytes" => k("memory", "alloc_in_new_tlab_bytes", "bytes"),
        "alloc_outside_tlab_bytes" => k("memory", "alloc_outside_tlab_bytes", "bytes"),
        "live" => k("memory", "live", "count"),
        "exceptions" => k("exceptions", "samples", "count"),
        "bytes" => k("memory", "samples", "bytes"),
        _ => return None,
    })
}

/// `__name__` of a pprof upload from its sample types.
pub(crate) fn pprof_metric_name(types: &[&str], display: &HashMap<String, String>) -> String {
    if types.contains(&"wall") {
        return "wall".into();
    }
    let builtin = |t: &str| -> Option<&'static str> {
        Some(match t {
            "samples" => "cpu",
            "goroutine" => "goroutines",
            "contentions" => "mutex_count",
            "delay" => "mutex_duration",
            _ => return None,
        })
    };
    for t in types {
        let d: &str = match display.get(*t) {
            Some(d) => d,
            None => builtin(t).unwrap_or(t),
        };
        let name = if d.contains("cpu") {
            "process_cpu"
        } else if d.contains("alloc_") || d.contains("inuse_") || d == "space" || d == "objects" {
            "memory"
        } else if d.contains("mutex_") {
            "mutex"
        } else if d.contains("block_") {
            "block"
        } else if d.contains("goroutines") {
            "goroutines"
        } else {
            continue;
        };
        return name.into();
    }
    types.last().map(|t| (*t).to_owned()).unwrap_or_default()
}

/// Parses `sample_type_config` (sample type → settings) into display names.
pub(crate) fn sample_type_config(body: &[u8]) -> Result<HashMap<String, String>, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("sample_type_config is not JSON: {e}"))?;
    let obj = v.as_object().ok_or("sample_type_config is not a JSON object")?;
    Ok(obj
        .iter()
        .filter_map(|(k, v)| v.get("display-name").and_then(|d| d.as_str()).map(|d| (k.clone(), d.to_owned())))
        .collect())
}

/// Script profilers name frames by function only; Pyroscope qualifies them
/// as `"<filename> <function>"` (py-spy keeps absolute paths out).
pub(crate) fn qualify_function_names(p: &mut Profile, skip_absolute: bool) -> Result<(), DecodeError> {
    for i in 0..p.functions.len() {
        let f = p.functions[i];
        let (file, name) = (p.strings.str(f.filename), p.strings.str(f.name));
        if file.is_empty() || (skip_absolute && file.starts_with('/')) {
            continue;
        }
        let q = format!("{file} {name}");
        p.functions[i].name = p.add_string(&q)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pprof_names_follow_the_sample_types() {
        let none = HashMap::new();
        assert_eq!(pprof_metric_name(&["samples", "wall"], &none), "wall");
        assert_eq!(pprof_metric_name(&["samples", "cpu"], &none), "process_cpu");
        assert_eq!(pprof_metric_name(&["inuse_objects", "inuse_space"], &none), "memory");
        assert_eq!(pprof_metric_name(&["contentions", "delay"], &none), "mutex");
        assert_eq!(pprof_metric_name(&["goroutine"], &none), "goroutines");
        assert_eq!(pprof_metric_name(&["weird"], &none), "weird");
        let display = HashMap::from([("contentions".to_owned(), "block_count".to_owned())]);
        assert_eq!(pprof_metric_name(&["contentions", "delay"], &display), "block");
    }

    #[test]
    fn suffixes() {
        assert_eq!(suffix_kind("cpu").map(|k| k.name), Some("process_cpu"));
        assert_eq!(suffix_kind("inuse_space"), Some(k("memory", "inuse_space", "bytes")));
        assert_eq!(suffix_kind("node"), None);
    }
}
