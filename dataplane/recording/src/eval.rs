//! Evaluation of recording rules over the rows a level-0 compaction
//! imports ([`phlox_block::RowObserver`]): every profile is seen exactly once,
//! also in the single-process mode.
//!
//! For each rule whose matchers match a profile's series, the profile adds
//! its total (or, with a function filter, the sum of the samples whose stack
//! contains that function) to one output series:
//! `__name__` = the rule's metric name, `profiles_rule_id`, the `group_by`
//! labels of the series (absent ones are left out), the external labels, and
//! `profiles_shard` = the segment's shard. Samples carry the segment's
//! creation time (the time the profiles were ingested), so that each output
//! series only moves forward in time; the shard label keeps apart series of
//! different segment writers, whose segments of the same instant would
//! otherwise collide.

use std::collections::{BTreeMap, HashMap};

use phlox_block::{RowObserver, RowRef, SeriesInfo, Symbols};
use phlox_model::Matcher;
use phlox_proto::metastore::v1::BlockMeta;
use phlox_proto::settings::v1::RecordingRule;

use crate::rule::RuleError;

/// Label naming the rule of an output series.
pub const RULE_ID_LABEL: &str = "profiles_rule_id";
/// Label naming the shard (segment writer) an output series comes from.
pub const SHARD_LABEL: &str = "profiles_shard";

/// A rule ready to evaluate.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    pub id: String,
    pub metric_name: String,
    matchers: Vec<Matcher>,
    group_by: Vec<String>,
    external_labels: Vec<(String, String)>,
    function_name: Option<String>,
}

impl CompiledRule {
    /// Compiles a rule (validated again: the rule may come from storage).
    pub fn new(rule: &RecordingRule) -> Result<Self, RuleError> {
        let request = phlox_proto::settings::v1::UpsertRecordingRuleRequest {
            id: rule.id.clone(),
            metric_name: rule.metric_name.clone(),
            matchers: rule.matchers.clone(),
            group_by: rule.group_by.clone(),
            external_labels: rule.external_labels.clone(),
            generation: rule.generation,
            stacktrace_filter: rule.stacktrace_filter.clone(),
        };
        let valid = crate::rule::validate(&request, 0, 0)?;
        Ok(Self {
            id: rule.id.clone(),
            metric_name: rule.metric_name.clone(),
            matchers: valid.matchers,
            group_by: rule.group_by.clone(),
            external_labels: rule.external_labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect(),
            function_name: rule
                .stacktrace_filter
                .as_ref()
                .and_then(|f| f.function_name.as_ref())
                .map(|f| f.function_name.clone()),
        })
    }

    fn matches(&self, series: &SeriesInfo) -> bool {
        self.matchers.iter().all(|m| m.matches(series.labels.get(&m.name)))
    }
}

/// Per stack node: whether the stack (node and its callers) contains a
/// frame of function `name` (inlined frames included).
pub fn function_mask(symbols: &Symbols, name: &str) -> Vec<bool> {
    let n = symbols.stack_count();
    let mut mask = vec![false; n];
    let Some(wanted) = symbols.strings.iter().position(|s| s == name) else { return mask };
    let functions: Vec<bool> = symbols.functions.iter().map(|f| f.name as usize == wanted).collect();
    for i in 1..n {
        let parent = symbols.stack_parent[i] as usize;
        mask[i] = mask.get(parent).copied().unwrap_or(false) || {
            let loc = symbols.stack_location[i] as usize;
            symbols.location_lines.get(loc).is_some_and(|r| {
                symbols.lines.get(r.start as usize..r.end as usize).is_some_and(|lines| {
                    lines.iter().any(|&(f, _)| functions.get(f as usize).copied().unwrap_or(false))
                })
            })
        };
    }
    mask
}

/// An output series: its labels (sorted by name) and samples by time (ms).
pub type OutputSeries = (Vec<(String, String)>, BTreeMap<i64, f64>);

/// Accumulates the rules' samples over one compaction's rows.
#[derive(Debug)]
pub struct Evaluator {
    rules: Vec<CompiledRule>,
    /// Current dataset: per series, the (rule, output) pairs it feeds.
    series_outputs: Vec<Vec<(usize, usize)>>,
    /// Current dataset: per rule with a function filter, its stack mask.
    masks: Vec<Option<Vec<bool>>>,
    time_ms: i64,
    outputs: Vec<OutputSeries>,
    index: HashMap<Vec<(String, String)>, usize>,
    /// Oldest segment time seen (Unix ms), for the lag figure.
    pub oldest_ms: Option<i64>,
    /// Profiles that fed at least one rule.
    pub profiles: u64,
}

impl Evaluator {
    pub fn new(rules: Vec<CompiledRule>) -> Self {
        Self {
            rules,
            series_outputs: Vec::new(),
            masks: Vec::new(),
            time_ms: 0,
            outputs: Vec::new(),
            index: HashMap::new(),
            oldest_ms: None,
            profiles: 0,
        }
    }

    /// Whether there is nothing to evaluate.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    fn output(&mut self, labels: Vec<(String, String)>) -> usize {
        if let Some(&i) = self.index.get(&labels) {
            return i;
        }
        let i = self.outputs.len();
        self.index.insert(labels.clone(), i);
        self.outputs.push((labels, BTreeMap::new()));
        i
    }

    /// The output series with their samples, labels sorted by name.
    pub fn into_series(self) -> Vec<OutputSeries> {
        self.outputs.into_iter().filter(|(_, s)| !s.is_empty()).collect()
    }
}

impl RowObserver for Evaluator {
    fn dataset(&mut self, source: &BlockMeta, symbols: &Symbols, series: &[SeriesInfo]) {
        self.time_ms = ulid::Ulid::from_string(&source.id).map_or(source.max_time, |u| u.timestamp_ms() as i64);
        self.oldest_ms = Some(self.oldest_ms.map_or(self.time_ms, |o| o.min(self.time_ms)));
        let shard = source.shard.to_string();
        self.masks = self.rules.iter().map(|r| r.function_name.as_deref().map(|f| function_mask(symbols, f))).collect();
        let mut per_series = Vec::with_capacity(series.len());
        for s in series {
            let mut feeds = Vec::new();
            for r in 0..self.rules.len() {
                if !self.rules[r].matches(s) {
                    continue;
                }
                let rule = &self.rules[r];
                let mut labels: Vec<(String, String)> = vec![
                    ("__name__".to_owned(), rule.metric_name.clone()),
                    (RULE_ID_LABEL.to_owned(), rule.id.clone()),
                    (SHARD_LABEL.to_owned(), shard.clone()),
                ];
                for g in &rule.group_by {
                    if let Some(v) = s.labels.get(g).filter(|v| !v.is_empty()) {
                        labels.push((g.clone(), v.to_owned()));
                    }
                }
                labels.extend(rule.external_labels.iter().cloned());
                labels.sort();
                labels.dedup_by(|a, b| a.0 == b.0);
                feeds.push((r, self.output(labels)));
            }
            per_series.push(feeds);
        }
        self.series_outputs = per_series;
    }

    fn row(&mut self, row: &RowRef<'_>) {
        let Some(feeds) = self.series_outputs.get(row.series as usize) else { return };
        if feeds.is_empty() {
            return;
        }
        self.profiles += 1;
        for &(rule, output) in feeds {
            let value = match self.masks.get(rule).and_then(Option::as_ref) {
                None => row.total as f64,
                Some(mask) => row
                    .stack_ids
                    .iter()
                    .zip(row.values)
                    .filter(|(s, _)| mask.get(**s as usize).copied().unwrap_or(false))
                    .map(|(_, v)| *v as f64)
                    .sum(),
            };
            if let Some((_, samples)) = self.outputs.get_mut(output) {
                *samples.entry(self.time_ms).or_insert(0.0) += value;
            }
        }
    }
}
