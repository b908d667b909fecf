//! The `autoscaling` block of a scalable component in the PyroscopeCluster
//! resource, as written in the CR.

use serde::{Deserialize, Serialize};

use crate::Error;

/// The CR's `autoscaling` block (camelCase; every field optional, with the
/// CRD's defaults; unknown fields are ignored, so the block parses whatever
/// else the CR grows).
///
/// The CRD's schema keeps the values in range. [`evaluate`](crate::evaluate)
/// stays total on values it would refuse anyway: a minimum below 1 counts as
/// 1 (the metric comes from the pods, so zero pods could never scale up
/// again), a maximum below the minimum as the minimum, a negative window as
/// 0 and a step below 1 as 1. [`Settings::validate`] refuses them instead.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Settings {
    /// Scale from load (default false: the component keeps its `replicas`).
    pub enabled: bool,
    /// Fewest replicas (default 1).
    pub min_replicas: i32,
    /// Most replicas (default 10).
    pub max_replicas: i32,
    /// Load per replica to aim for, in the metric's unit. No default here:
    /// each component has its own ([`Settings::target_or`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_value: Option<f64>,
    /// A scale-up goes only to the lowest recommendation of this window, so
    /// it happens only if every recommendation of the window asks for it
    /// (default 0: at once).
    pub scale_up_stabilization_window_seconds: i32,
    /// A scale-down goes only to the highest recommendation of this window
    /// (default 300).
    pub scale_down_stabilization_window_seconds: i32,
    /// Most pods added per [`STEP_PERIOD_SECONDS`](crate::STEP_PERIOD_SECONDS)
    /// (default 4).
    pub max_scale_up_step: i32,
    /// Most pods removed per [`STEP_PERIOD_SECONDS`](crate::STEP_PERIOD_SECONDS)
    /// (default 1).
    pub max_scale_down_step: i32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            enabled: false,
            min_replicas: 1,
            max_replicas: 10,
            target_value: None,
            scale_up_stabilization_window_seconds: 0,
            scale_down_stabilization_window_seconds: 300,
            max_scale_up_step: 4,
            max_scale_down_step: 1,
        }
    }
}

impl Settings {
    /// The target: `targetValue` if set, else the component's default.
    pub fn target_or(&self, component_default: f64) -> f64 {
        self.target_value.unwrap_or(component_default)
    }

    /// Refuses what the CRD's schema refuses: replicas outside 1..=1000, a
    /// maximum below the minimum, windows outside 0..=3600, steps outside
    /// 1..=1000 and a `targetValue` that is not a positive number.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |what: String| Err(Error::Settings(what));
        for (name, value) in [("minReplicas", self.min_replicas), ("maxReplicas", self.max_replicas)] {
            if !(1..=1000).contains(&value) {
                return bad(format!("{name} is {value}, must be within 1..=1000"));
            }
        }
        if self.max_replicas < self.min_replicas {
            return bad(format!(
                "maxReplicas ({}) must not be below minReplicas ({})",
                self.max_replicas, self.min_replicas
            ));
        }
        for (name, value) in [
            ("scaleUpStabilizationWindowSeconds", self.scale_up_stabilization_window_seconds),
            ("scaleDownStabilizationWindowSeconds", self.scale_down_stabilization_window_seconds),
        ] {
            if !(0..=3600).contains(&value) {
                return bad(format!("{name} is {value}, must be within 0..=3600"));
            }
        }
        for (name, value) in
            [("maxScaleUpStep", self.max_scale_up_step), ("maxScaleDownStep", self.max_scale_down_step)]
        {
            if value < 1 {
                return bad(format!("{name} is {value}, must be at least 1"));
            }
        }
        if let Some(target) = self.target_value
            && !is_usable_target(target)
        {
            return bad(format!("targetValue is {target}, must be a positive number"));
        }
        Ok(())
    }

    /// Replicas are kept within [`lo`, `hi`]: min at least 1, max at least min.
    pub(crate) fn bounds(&self) -> (i32, i32) {
        let lo = self.min_replicas.max(1);
        (lo, self.max_replicas.max(lo))
    }

    /// The windows in seconds (negative counts as 0): (up, down).
    pub(crate) fn windows(&self) -> (u64, u64) {
        let secs = |w: i32| u64::try_from(w).unwrap_or(0);
        (secs(self.scale_up_stabilization_window_seconds), secs(self.scale_down_stabilization_window_seconds))
    }

    /// The step limits (below 1 counts as 1): (up, down).
    pub(crate) fn steps(&self) -> (i32, i32) {
        (self.max_scale_up_step.max(1), self.max_scale_down_step.max(1))
    }
}

/// A target the ratio can be computed from.
pub(crate) fn is_usable_target(target: f64) -> bool {
    target.is_finite() && target > 0.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_block_has_the_crd_defaults() {
        let s: Settings = serde_json::from_str("{}").unwrap();
        assert_eq!(s, Settings::default());
        assert!(!s.enabled);
        assert_eq!((s.min_replicas, s.max_replicas), (1, 10));
        assert_eq!(s.scale_down_stabilization_window_seconds, 300);
        assert_eq!((s.max_scale_up_step, s.max_scale_down_step), (4, 1));
        assert_eq!(s.target_or(8.0), 8.0);
        s.validate().unwrap();
    }

    #[test]
    fn validate_refuses_what_the_schema_refuses() {
        let cases = [
            (r#"{"minReplicas": 0}"#, "minReplicas"),
            (r#"{"minReplicas": 5, "maxReplicas": 4}"#, "maxReplicas (4)"),
            (r#"{"maxReplicas": 1001}"#, "maxReplicas is 1001"),
            (r#"{"scaleDownStabilizationWindowSeconds": -1}"#, "scaleDownStabilizationWindowSeconds"),
            (r#"{"scaleUpStabilizationWindowSeconds": 3601}"#, "scaleUpStabilizationWindowSeconds"),
            (r#"{"maxScaleUpStep": 0}"#, "maxScaleUpStep"),
            (r#"{"maxScaleDownStep": 0}"#, "maxScaleDownStep"),
            (r#"{"targetValue": 0}"#, "targetValue"),
            (r#"{"targetValue": -2.5}"#, "targetValue"),
        ];
        for (json, field) in cases {
            let s: Settings = serde_json::from_str(json).unwrap();
            let err = s.validate().unwrap_err().to_string();
            assert!(err.contains(field), "{json}: {err}");
        }
    }

    #[test]
    fn out_of_range_values_are_made_usable() {
        let s = Settings {
            min_replicas: 0,
            max_replicas: -3,
            scale_up_stabilization_window_seconds: -5,
            max_scale_up_step: 0,
            max_scale_down_step: -1,
            ..Settings::default()
        };
        assert_eq!(s.bounds(), (1, 1));
        assert_eq!(s.windows(), (0, 300));
        assert_eq!(s.steps(), (1, 1));
    }
}
