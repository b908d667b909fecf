//! QueryBlocks: blocks of some tenants overlapping a time range, each with
//! only the datasets that match.

use std::collections::{BTreeSet, HashSet};

use phlox_proto::metastore::v1::{BlockMeta, Dataset, LabelMatcher, MatchType, QueryBlocksRequest};
use regex::Regex;

use super::InvalidRequest;
use super::index::BlockIndex;

/// Label whose matchers apply to `Dataset.name`.
pub const SERVICE_NAME_LABEL: &str = "service_name";
/// Label whose matchers apply to any of `Dataset.profile_types`.
pub const PROFILE_TYPE_LABEL: &str = "__profile_type__";

#[derive(Debug)]
enum Target {
    ServiceName,
    ProfileType,
}

#[derive(Debug)]
enum Test {
    Equal(String),
    NotEqual(String),
    Regex(Regex),
    NotRegex(Regex),
}

impl Test {
    fn matches(&self, value: &str) -> bool {
        match self {
            Test::Equal(v) => value == v,
            Test::NotEqual(v) => value != v,
            Test::Regex(re) => re.is_match(value),
            Test::NotRegex(re) => !re.is_match(value),
        }
    }
}

/// A compiled matcher on a dataset label.
#[derive(Debug)]
struct DatasetMatcher {
    target: Target,
    test: Test,
}

impl DatasetMatcher {
    /// `None` for labels that datasets do not carry (ignored).
    fn compile(m: &LabelMatcher) -> Result<Option<Self>, InvalidRequest> {
        let target = match m.name.as_str() {
            SERVICE_NAME_LABEL => Target::ServiceName,
            PROFILE_TYPE_LABEL => Target::ProfileType,
            _ => return Ok(None),
        };
        let regex = |value: &str| {
            // Anchored like Prometheus: the whole value must match.
            Regex::new(&format!("^(?:{value})$"))
                .map_err(|e| InvalidRequest::InvalidRegex { name: m.name.clone(), reason: e.to_string() })
        };
        let test = match MatchType::try_from(m.r#type) {
            Ok(MatchType::Equal) => Test::Equal(m.value.clone()),
            Ok(MatchType::NotEqual) => Test::NotEqual(m.value.clone()),
            Ok(MatchType::Regex) => Test::Regex(regex(&m.value)?),
            Ok(MatchType::NotRegex) => Test::NotRegex(regex(&m.value)?),
            Err(_) => return Err(InvalidRequest::UnknownMatchType(m.r#type)),
        };
        Ok(Some(Self { target, test }))
    }

    /// A dataset matches when some series in it can: its name, or any of its
    /// profile types (a dataset without any is treated as the empty value).
    fn matches(&self, ds: &Dataset) -> bool {
        match self.target {
            Target::ServiceName => self.test.matches(&ds.name),
            Target::ProfileType if ds.profile_types.is_empty() => self.test.matches(""),
            Target::ProfileType => ds.profile_types.iter().any(|t| self.test.matches(t)),
        }
    }
}

/// Checks the range and compiles the matchers that apply to datasets.
fn compile(request: &QueryBlocksRequest) -> Result<Vec<DatasetMatcher>, InvalidRequest> {
    let (start, end) = (request.start, request.end);
    if start > end {
        return Err(InvalidRequest::InvalidQueryRange { start, end });
    }
    request.matchers.iter().filter_map(|m| DatasetMatcher::compile(m).transpose()).collect()
}

/// Checks a query without running it.
pub(crate) fn validate_query(request: &QueryBlocksRequest) -> Result<(), InvalidRequest> {
    compile(request).map(|_| ())
}

/// Runs a query over the index; blocks come out ordered by `min_time`, then id.
pub(crate) fn query_blocks(index: &BlockIndex, request: &QueryBlocksRequest) -> Result<Vec<BlockMeta>, InvalidRequest> {
    let (start, end) = (request.start, request.end);
    let matchers = compile(request)?;
    let tenants: HashSet<&str> = request.tenants.iter().map(String::as_str).collect();
    let mut ids = BTreeSet::new();
    for tenant in &tenants {
        index.candidates(tenant, start, end, &mut ids);
    }
    let mut found: Vec<BlockMeta> = Vec::new();
    for id in &ids {
        let Some(block) = index.get(id) else { continue };
        if !request.rollups && phlox_block::rollup::is_rollup(&block.header) {
            continue;
        }
        let datasets: Vec<Dataset> = block
            .datasets
            .iter()
            .filter(|ds| {
                tenants.contains(block.dataset_tenant(ds))
                    && ds.min_time <= end
                    && ds.max_time >= start
                    && matchers.iter().all(|m| m.matches(ds))
            })
            .cloned()
            .collect();
        if !datasets.is_empty() {
            found.push(BlockMeta { datasets, ..block.header.clone() });
        }
    }
    // `ids` is in id order and the sort is stable: ties on min_time stay by id.
    found.sort_by_key(|meta| meta.min_time);
    Ok(found)
}
