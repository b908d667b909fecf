//! Validation of a rule as the API receives it.

use phlox_model::{MatchOp, Matcher, parse_selector};
use phlox_proto::settings::v1::UpsertRecordingRuleRequest;

/// Recorded metric names start with this.
pub const METRIC_PREFIX: &str = "profiles_recorded_";
/// Rules per tenant unless the limits say otherwise.
pub const DEFAULT_MAX_RULES: usize = 25;
/// The label holding the profile type.
const PROFILE_TYPE: &str = "__profile_type__";

/// Why a rule is refused (a 400 naming the problem).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("metric_name {0:?} is not a valid Prometheus metric name")]
    InvalidMetricName(String),
    #[error("metric_name {0:?} must start with \"profiles_recorded_\"")]
    MissingPrefix(String),
    #[error("matcher {matcher:?}: {reason}")]
    InvalidMatcher { matcher: String, reason: String },
    #[error("the matchers must hold exactly one __profile_type__ equality matcher, found {0}")]
    ProfileTypeMatchers(usize),
    #[error("group_by {0:?} is not a valid label name")]
    InvalidGroupBy(String),
    #[error("group_by {0:?} is repeated")]
    DuplicateGroupBy(String),
    #[error("external label name {0:?} is not a valid label name")]
    InvalidExternalLabel(String),
    #[error("external label {0:?} has an empty value")]
    EmptyExternalLabel(String),
    #[error("external label {0:?} is reserved")]
    ReservedExternalLabel(String),
    #[error("stacktrace_filter.function_name.function_name is empty")]
    EmptyFunctionName,
    #[error("the tenant already has {max} recording rules, the most allowed")]
    TooManyRules { max: usize },
}

/// A rule that passed validation, with its parsed parts.
#[derive(Debug, Clone)]
pub struct ValidRule {
    /// The profile type of the `__profile_type__` matcher.
    pub profile_type: String,
    /// Every matcher of every selector (the profile type's included).
    pub matchers: Vec<Matcher>,
}

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Validates `rule` for a tenant that has `existing` other rules and may
/// have `max_rules` (0: no limit).
pub fn validate(rule: &UpsertRecordingRuleRequest, existing: usize, max_rules: usize) -> Result<ValidRule, RuleError> {
    if !is_metric_name(&rule.metric_name) {
        return Err(RuleError::InvalidMetricName(rule.metric_name.clone()));
    }
    if !rule.metric_name.starts_with(METRIC_PREFIX) {
        return Err(RuleError::MissingPrefix(rule.metric_name.clone()));
    }
    let mut matchers = Vec::new();
    for m in &rule.matchers {
        let selector =
            parse_selector(m).map_err(|e| RuleError::InvalidMatcher { matcher: m.clone(), reason: e.0.clone() })?;
        if let Some(name) = &selector.metric {
            return Err(RuleError::InvalidMatcher {
                matcher: m.clone(),
                reason: format!("a metric name ({name}) is not allowed; use {{__profile_type__=\"...\"}}"),
            });
        }
        matchers.extend(selector.matchers);
    }
    let types: Vec<&Matcher> = matchers.iter().filter(|m| m.name == PROFILE_TYPE).collect();
    let profile_type = match types.as_slice() {
        [only] if only.op == MatchOp::Equal => only.value.clone(),
        _ => return Err(RuleError::ProfileTypeMatchers(types.len())),
    };
    let mut seen = std::collections::BTreeSet::new();
    for g in &rule.group_by {
        if !is_label_name(g) {
            return Err(RuleError::InvalidGroupBy(g.clone()));
        }
        if !seen.insert(g.as_str()) {
            return Err(RuleError::DuplicateGroupBy(g.clone()));
        }
    }
    for l in &rule.external_labels {
        if !is_label_name(&l.name) {
            return Err(RuleError::InvalidExternalLabel(l.name.clone()));
        }
        if l.name == "__name__" || l.name == "profiles_rule_id" {
            return Err(RuleError::ReservedExternalLabel(l.name.clone()));
        }
        if l.value.is_empty() {
            return Err(RuleError::EmptyExternalLabel(l.name.clone()));
        }
    }
    if let Some(f) = rule.stacktrace_filter.as_ref().and_then(|f| f.function_name.as_ref())
        && f.function_name.is_empty()
    {
        return Err(RuleError::EmptyFunctionName);
    }
    if max_rules > 0 && existing >= max_rules {
        return Err(RuleError::TooManyRules { max: max_rules });
    }
    Ok(ValidRule { profile_type, matchers })
}

#[cfg(test)]
mod tests {
    use phlox_proto::settings::v1::{StacktraceFilter, StacktraceFilterFunctionName};
    use phlox_proto::types::v1::LabelPair;

    use super::*;

    const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";

    fn rule() -> UpsertRecordingRuleRequest {
        UpsertRecordingRuleRequest {
            metric_name: "profiles_recorded_cpu_seconds".into(),
            matchers: vec![format!("{{__profile_type__=\"{CPU}\", service_name=\"api\"}}")],
            group_by: vec!["region".into()],
            external_labels: vec![LabelPair { name: "team".into(), value: "checkout".into() }],
            ..Default::default()
        }
    }

    #[test]
    fn a_good_rule_passes_with_its_profile_type() {
        let v = validate(&rule(), 0, 25).unwrap();
        assert_eq!(v.profile_type, CPU);
        assert_eq!(v.matchers.len(), 2);
        // Matchers may be split over several selectors.
        let mut r = rule();
        r.matchers = vec![format!("{{__profile_type__=\"{CPU}\"}}"), "{service_name=~\"api|web\"}".into()];
        assert_eq!(validate(&r, 24, 25).unwrap().matchers.len(), 2);
    }

    #[test]
    fn bad_rules_are_refused_naming_the_problem() {
        type Change = Box<dyn Fn(&mut UpsertRecordingRuleRequest)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|r| r.metric_name = "cpu seconds".into()), "not a valid Prometheus metric name"),
            (Box::new(|r| r.metric_name = "cpu_seconds".into()), "must start with \"profiles_recorded_\""),
            (Box::new(|r| r.matchers = vec!["{service_name=\"api\"}".into()]), "exactly one __profile_type__"),
            (
                Box::new(|r| r.matchers = vec![format!("{{__profile_type__=~\"{CPU}\"}}")]),
                "exactly one __profile_type__ equality matcher, found 1",
            ),
            (
                Box::new(|r| r.matchers.push(format!("{{__profile_type__=\"{CPU}\"}}"))),
                "exactly one __profile_type__ equality matcher, found 2",
            ),
            (Box::new(|r| r.matchers = vec!["{service_name=".into()]), "matcher \"{service_name=\""),
            (Box::new(|r| r.matchers = vec![format!("cpu{{__profile_type__=\"{CPU}\"}}")]), "metric name"),
            (Box::new(|r| r.group_by = vec!["service.name".into()]), "group_by \"service.name\""),
            (Box::new(|r| r.group_by = vec!["a".into(), "a".into()]), "repeated"),
            (
                Box::new(|r| r.external_labels = vec![LabelPair { name: "1x".into(), value: "v".into() }]),
                "external label name \"1x\"",
            ),
            (
                Box::new(|r| r.external_labels = vec![LabelPair { name: "x".into(), value: String::new() }]),
                "empty value",
            ),
            (
                Box::new(|r| r.external_labels = vec![LabelPair { name: "__name__".into(), value: "v".into() }]),
                "reserved",
            ),
            (
                Box::new(|r| {
                    r.stacktrace_filter = Some(StacktraceFilter {
                        function_name: Some(StacktraceFilterFunctionName {
                            function_name: String::new(),
                            metric_type: 0,
                        }),
                    })
                }),
                "function_name is empty",
            ),
        ];
        for (change, message) in cases {
            let mut r = rule();
            change(&mut r);
            let e = validate(&r, 0, 25).unwrap_err().to_string();
            assert!(e.contains(message), "{e:?} should say {message:?}");
        }
        assert_eq!(validate(&rule(), 25, 25).unwrap_err(), RuleError::TooManyRules { max: 25 });
        assert!(validate(&rule(), 1000, 0).is_ok(), "0 is no limit");
    }
}
