//! The autoscaling defaults are defined once (`phlox_autoscaler::Settings`
//! and each signal's default target) and documented the same everywhere a
//! user reads them: the CRD's schema (what `kubectl explain` and the API
//! server's defaulting show), the CR type's `Default`, and the README's
//! table.
#![allow(clippy::unwrap_used)]

use kube::CustomResourceExt;
use phlox_autoscaler::Settings;
use phlox_crds::v1alpha1::{AutoscalingSpec, PyroscopeCluster};
use phlox_operator::autoscale::Signal;
use serde_json::Value;

fn autoscaling_schema(component: &str) -> Value {
    let crd = serde_json::to_value(PyroscopeCluster::crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"][component]["properties"]
        ["autoscaling"]
        .clone()
}

#[test]
fn the_crd_schema_defaults_are_the_algorithms() {
    let d = Settings::default();
    // The numbers, known independently of the code: the README's table says them.
    assert_eq!((d.min_replicas, d.max_replicas, d.scale_up_stabilization_window_seconds), (1, 10, 0));
    assert_eq!((d.scale_down_stabilization_window_seconds, d.max_scale_up_step, d.max_scale_down_step), (300, 4, 1));
    for component in ["segmentWriter", "queryBackend"] {
        let p = &autoscaling_schema(component)["properties"];
        assert_eq!(p["enabled"]["default"], Value::Bool(d.enabled), "{component}");
        for (field, value) in [
            ("minReplicas", d.min_replicas),
            ("maxReplicas", d.max_replicas),
            ("scaleUpStabilizationWindowSeconds", d.scale_up_stabilization_window_seconds),
            ("scaleDownStabilizationWindowSeconds", d.scale_down_stabilization_window_seconds),
            ("maxScaleUpStep", d.max_scale_up_step),
            ("maxScaleDownStep", d.max_scale_down_step),
        ] {
            assert_eq!(p[field]["default"], Value::from(value), "{component}.autoscaling.{field}");
        }
    }
    // An empty block in a CR parses to the same values.
    let empty: AutoscalingSpec = serde_json::from_str("{}").unwrap();
    assert_eq!(empty, AutoscalingSpec::default());
    assert_eq!(phlox_operator::autoscale::settings(&empty), d);
}

#[test]
fn the_documented_default_targets_are_the_signals() {
    let (writers, backends) = (Signal::IngestMegabytes.default_target(), Signal::Leaves.default_target());
    assert_eq!((writers, backends), (8.0, 4.0));
    let description = autoscaling_schema("segmentWriter")["properties"]["targetValue"]["description"]
        .as_str()
        .unwrap()
        .replace('\n', " ");
    assert!(description.contains(&format!("MB/s per replica (default {writers})")), "{description}");
    assert!(description.contains(&format!("in flight per replica (default {backends})")), "{description}");
}

#[test]
fn the_readme_table_says_the_same() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let row = |setting: &str| {
        readme
            .lines()
            .find(|l| l.starts_with(&format!("| {setting} |")))
            .and_then(|l| l.split('|').nth(2))
            .map(|c| c.trim().to_owned())
            .unwrap_or_else(|| panic!("no README row for {setting}"))
    };
    let d = Settings::default();
    assert_eq!(row("`enabled`"), format!("`{}`", d.enabled));
    assert_eq!(row("`minReplicas`, `maxReplicas`"), format!("{}, {}", d.min_replicas, d.max_replicas));
    assert_eq!(
        row("`targetValue`"),
        format!("writers {}, backends {}", Signal::IngestMegabytes.default_target(), Signal::Leaves.default_target())
    );
    assert_eq!(row("`scaleUpStabilizationWindowSeconds`"), d.scale_up_stabilization_window_seconds.to_string());
    assert_eq!(row("`scaleDownStabilizationWindowSeconds`"), d.scale_down_stabilization_window_seconds.to_string());
    assert_eq!(
        row("`maxScaleUpStep`, `maxScaleDownStep`"),
        format!("{}, {}", d.max_scale_up_step, d.max_scale_down_step)
    );
}
