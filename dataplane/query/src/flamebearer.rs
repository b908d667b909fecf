//! Pyroscope's flamebearer JSON: a flame graph as `/pyroscope/render` and
//! the ad hoc profiles API return it (`format: single` or `double`).

use phlox_proto::querier::v1 as q;
use serde_json::{Value, json};

/// The units and sample rate the flamebearer metadata gives a sample type.
fn units(sample_type: &str, sample_unit: &str) -> (String, i64) {
    match sample_type {
        "cpu" => ("samples".into(), 1_000_000_000),
        "inuse_objects" | "alloc_objects" | "goroutine" | "samples" => ("objects".into(), 100),
        _ => (sample_unit.to_owned(), 100),
    }
}

/// A flamebearer profile (`format: single`) of a flame graph.
pub fn flamebearer_single(
    flame: &q::FlameGraph,
    sample_type: &str,
    sample_unit: &str,
    timeline: Value,
    groups: Value,
) -> Value {
    let (units, sample_rate) = units(sample_type, sample_unit);
    let levels: Vec<&Vec<i64>> = flame.levels.iter().map(|l| &l.values).collect();
    json!({
        "version": 1,
        "flamebearer": { "names": flame.names, "levels": levels, "numTicks": flame.total, "maxSelf": flame.max_self },
        "metadata": { "format": "single", "spyName": "", "sampleRate": sample_rate, "units": units, "name": sample_type },
        "timeline": timeline,
        "groups": groups,
        "heatmap": null,
    })
}

/// A flamebearer profile (`format: double`) of a diff flame graph.
pub fn flamebearer_double(d: &q::FlameGraphDiff, sample_type: &str, sample_unit: &str) -> Value {
    let (units, sample_rate) = units(sample_type, sample_unit);
    let levels: Vec<&Vec<i64>> = d.levels.iter().map(|l| &l.values).collect();
    json!({
        "version": 1,
        "flamebearer": { "names": d.names, "levels": levels, "numTicks": d.total, "maxSelf": d.max_self },
        "metadata": { "format": "double", "spyName": "", "sampleRate": sample_rate, "units": units, "name": sample_type },
        "leftTicks": d.left_ticks,
        "rightTicks": d.right_ticks,
        "timeline": null,
        "groups": null,
        "heatmap": null,
    })
}
