//! Where a tenant's recording rules live: one object per tenant in the
//! bucket (`settings/<tenant>/recording_rules.binpb`, a
//! `settings.v1.RecordingRulesStore`), plus the provisioned rules of the
//! configuration, which are listed first and are read-only.
//!
//! Writes are read-modify-write of the tenant's object, conditional on the
//! version read (see `versioned`), so query-frontends writing at once never
//! lose each other's changes; each rule carries a generation, and an upsert
//! must name the generation it read (optimistic concurrency: a stale one is
//! refused).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use object_store::ObjectStore;
use phlox_block::paths::recording_rules_path;
use phlox_proto::settings::v1::{
    RecordingRule, RecordingRuleStore, RecordingRulesStore, StacktraceFilter, StacktraceFilterFunctionName,
    UpsertRecordingRuleRequest,
};
use phlox_proto::types::v1::LabelPair;
use prost::Message;

use crate::rule::{RuleError, validate};
use crate::versioned;

/// A rule kept in the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provisioned {
    pub id: String,
    pub metric_name: String,
    pub matchers: Vec<String>,
    pub group_by: Vec<String>,
    pub external_labels: BTreeMap<String, String>,
    pub function_name: Option<String>,
}

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Invalid(#[from] RuleError),
    #[error("recording rule {0:?} not found")]
    NotFound(String),
    #[error("recording rule {0:?} is provisioned by the configuration and cannot be changed through the API")]
    Provisioned(String),
    #[error(
        "recording rule {id:?} was changed concurrently: generation {sent} is not the current {current}; read it again"
    )]
    Conflict { id: String, sent: i64, current: i64 },
    #[error("tenant {tenant:?}: provisioned rule {id:?}: {source}")]
    InvalidProvisioned { tenant: String, id: String, source: RuleError },
    #[error("recording rules storage: {0}")]
    Storage(#[from] object_store::Error),
    #[error("recording rules object of tenant {tenant:?} is corrupt: {reason}")]
    Corrupt { tenant: String, reason: String },
    #[error("recording rules of tenant {0:?} are being changed by others; try again")]
    Busy(String),
}

impl StoreError {
    /// The Connect/gRPC code name of the error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid_argument",
            Self::NotFound(_) => "not_found",
            Self::Provisioned(_) => "permission_denied",
            Self::Conflict { .. } | Self::Busy(_) => "aborted",
            Self::InvalidProvisioned { .. } | Self::Storage(_) | Self::Corrupt { .. } => "internal",
        }
    }
}

fn filter_of(function_name: Option<&str>) -> Option<StacktraceFilter> {
    function_name.map(|f| StacktraceFilter {
        function_name: Some(StacktraceFilterFunctionName { function_name: f.to_owned(), metric_type: 0 }),
    })
}

/// The API form of a stored rule.
fn to_rule(r: &RecordingRuleStore, provisioned: bool) -> Result<RecordingRule, RuleError> {
    let request = UpsertRecordingRuleRequest {
        id: r.id.clone(),
        metric_name: r.metric_name.clone(),
        matchers: r.matchers.clone(),
        group_by: r.group_by.clone(),
        external_labels: r.external_labels.clone(),
        generation: r.generation,
        stacktrace_filter: r.stacktrace_filter.clone(),
    };
    let valid = validate(&request, 0, 0)?;
    Ok(RecordingRule {
        id: r.id.clone(),
        metric_name: r.metric_name.clone(),
        profile_type: valid.profile_type,
        matchers: r.matchers.clone(),
        group_by: r.group_by.clone(),
        external_labels: r.external_labels.clone(),
        generation: r.generation,
        stacktrace_filter: r.stacktrace_filter.clone(),
        provisioned,
    })
}

/// Recording rules of every tenant.
#[derive(Debug)]
pub struct RuleStore {
    store: Arc<dyn ObjectStore>,
    provisioned: RwLock<BTreeMap<String, Vec<RecordingRule>>>,
    write: tokio::sync::Mutex<()>,
}

impl RuleStore {
    /// A store over `store` with no provisioned rules.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store, provisioned: RwLock::default(), write: tokio::sync::Mutex::new(()) }
    }

    /// Replaces the provisioned rules (tenant → rules). Invalid rules are
    /// left out and returned (a typo in one rule must not stop the others,
    /// nor the process).
    pub fn set_provisioned(&self, rules: &BTreeMap<String, Vec<Provisioned>>) -> Vec<StoreError> {
        let mut invalid = Vec::new();
        let mut out: BTreeMap<String, Vec<RecordingRule>> = BTreeMap::new();
        for (tenant, list) in rules {
            for p in list {
                let stored = RecordingRuleStore {
                    id: p.id.clone(),
                    metric_name: p.metric_name.clone(),
                    prometheus_data_source: String::new(),
                    matchers: p.matchers.clone(),
                    group_by: p.group_by.clone(),
                    external_labels: p
                        .external_labels
                        .iter()
                        .map(|(k, v)| LabelPair { name: k.clone(), value: v.clone() })
                        .collect(),
                    generation: 1,
                    stacktrace_filter: filter_of(p.function_name.as_deref()),
                };
                match to_rule(&stored, true) {
                    Ok(rule) => out.entry(tenant.clone()).or_default().push(rule),
                    Err(source) => invalid.push(StoreError::InvalidProvisioned {
                        tenant: tenant.clone(),
                        id: p.id.clone(),
                        source,
                    }),
                }
            }
        }
        if let Ok(mut p) = self.provisioned.write() {
            *p = out;
        }
        invalid
    }

    fn provisioned_of(&self, tenant: &str) -> Vec<RecordingRule> {
        self.provisioned.read().map(|p| p.get(tenant).cloned().unwrap_or_default()).unwrap_or_default()
    }

    async fn load(&self, tenant: &str) -> Result<RecordingRulesStore, StoreError> {
        let read = versioned::read(&*self.store, &recording_rules_path(tenant)).await?;
        decode(tenant, read.bytes)
    }

    /// Applies `change` to the tenant's rules and writes them back, again
    /// on a fresh read when another writer got there first.
    async fn modify<T>(
        &self,
        tenant: &str,
        mut change: impl FnMut(&mut RecordingRulesStore) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let _guard = self.write.lock().await;
        let bump = |all: &mut RecordingRulesStore| {
            let out = change(all)?;
            all.generation += 1;
            Ok(out)
        };
        versioned::modify(&*self.store, &recording_rules_path(tenant), |b| decode(tenant, b), bump)
            .await?
            .ok_or_else(|| StoreError::Busy(tenant.to_owned()))
    }

    /// Every rule of `tenant`: provisioned first, then the API's, by id.
    pub async fn list(&self, tenant: &str) -> Result<Vec<RecordingRule>, StoreError> {
        let mut out = self.provisioned_of(tenant);
        let mut stored = self.load(tenant).await?.rules;
        stored.sort_by(|a, b| a.id.cmp(&b.id));
        for r in &stored {
            out.push(to_rule(r, false)?);
        }
        Ok(out)
    }

    /// One rule of `tenant`.
    pub async fn get(&self, tenant: &str, id: &str) -> Result<RecordingRule, StoreError> {
        self.list(tenant).await?.into_iter().find(|r| r.id == id).ok_or_else(|| StoreError::NotFound(id.to_owned()))
    }

    /// Creates (empty id) or updates a rule; `max_rules` bounds the API's
    /// rules of the tenant (0: no limit).
    pub async fn upsert(
        &self,
        tenant: &str,
        request: UpsertRecordingRuleRequest,
        max_rules: usize,
    ) -> Result<RecordingRule, StoreError> {
        if !request.id.is_empty() && self.provisioned_of(tenant).iter().any(|r| r.id == request.id) {
            return Err(StoreError::Provisioned(request.id));
        }
        let new_id = ulid::Ulid::new().to_string().to_lowercase();
        self.modify(tenant, |all| {
            let existing = all.rules.iter().position(|r| r.id == request.id && !request.id.is_empty());
            let others = all.rules.len() - usize::from(existing.is_some());
            let valid = validate(&request, others, max_rules)?;
            let generation = match existing {
                Some(i) => {
                    let current = all.rules[i].generation;
                    if request.generation != current {
                        return Err(StoreError::Conflict { id: request.id.clone(), sent: request.generation, current });
                    }
                    current + 1
                }
                None => 1,
            };
            let id = if request.id.is_empty() { new_id.clone() } else { request.id.clone() };
            let stored = RecordingRuleStore {
                id,
                metric_name: request.metric_name.clone(),
                prometheus_data_source: String::new(),
                matchers: request.matchers.clone(),
                group_by: request.group_by.clone(),
                external_labels: request.external_labels.clone(),
                generation,
                stacktrace_filter: request.stacktrace_filter.clone(),
            };
            match existing {
                Some(i) => all.rules[i] = stored.clone(),
                None => all.rules.push(stored.clone()),
            }
            let mut rule = to_rule(&stored, false)?;
            rule.profile_type = valid.profile_type;
            Ok(rule)
        })
        .await
    }

    /// Deletes a rule (deleting an unknown id is an error).
    pub async fn delete(&self, tenant: &str, id: &str) -> Result<(), StoreError> {
        if self.provisioned_of(tenant).iter().any(|r| r.id == id) {
            return Err(StoreError::Provisioned(id.to_owned()));
        }
        self.modify(tenant, |all| {
            let before = all.rules.len();
            all.rules.retain(|r| r.id != id);
            if all.rules.len() == before {
                return Err(StoreError::NotFound(id.to_owned()));
            }
            Ok(())
        })
        .await
    }
}

/// The tenant's rules object (absent: no rules).
fn decode(tenant: &str, bytes: Option<Bytes>) -> Result<RecordingRulesStore, StoreError> {
    match bytes {
        Some(b) => RecordingRulesStore::decode(b)
            .map_err(|e| StoreError::Corrupt { tenant: tenant.to_owned(), reason: e.to_string() }),
        None => Ok(RecordingRulesStore::default()),
    }
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;

    use super::*;

    const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";

    fn request(id: &str, generation: i64) -> UpsertRecordingRuleRequest {
        UpsertRecordingRuleRequest {
            id: id.into(),
            metric_name: "profiles_recorded_cpu".into(),
            matchers: vec![format!("{{__profile_type__=\"{CPU}\"}}")],
            group_by: vec!["service_name".into()],
            generation,
            ..Default::default()
        }
    }

    /// Two query-frontends (two stores over one bucket) creating rules at
    /// once: every acknowledged rule is kept.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_frontends_lose_no_rule() {
        let bucket: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let frontends = [Arc::new(RuleStore::new(Arc::clone(&bucket))), Arc::new(RuleStore::new(Arc::clone(&bucket)))];
        let mut tasks = Vec::new();
        for i in 0..24 {
            let store = Arc::clone(&frontends[i % 2]);
            tasks.push(tokio::spawn(async move { store.upsert("t", request("", 0), 0).await.map(|r| r.id) }));
        }
        let mut acked = Vec::new();
        for t in tasks {
            acked.push(t.await.unwrap().unwrap());
        }
        acked.sort();
        let mut listed: Vec<String> = frontends[0].list("t").await.unwrap().into_iter().map(|r| r.id).collect();
        listed.sort();
        assert_eq!(listed, acked);
    }

    #[tokio::test]
    async fn rules_are_created_updated_with_generations_listed_and_deleted() {
        let store = RuleStore::new(Arc::new(InMemory::new()));
        let created = store.upsert("t", request("", 0), 25).await.unwrap();
        assert_eq!((created.generation, created.profile_type.as_str(), created.provisioned), (1, CPU, false));
        assert_eq!(created.id.len(), 26);
        // An update must name the generation it read.
        let e = store.upsert("t", request(&created.id, 0), 25).await.unwrap_err();
        assert!(matches!(e, StoreError::Conflict { sent: 0, current: 1, .. }), "{e}");
        assert_eq!(e.code(), "aborted");
        let updated = store.upsert("t", request(&created.id, 1), 25).await.unwrap();
        assert_eq!(updated.generation, 2);
        assert_eq!(store.list("t").await.unwrap(), vec![updated.clone()]);
        assert!(store.list("other").await.unwrap().is_empty(), "tenants are apart");
        assert_eq!(store.get("t", &created.id).await.unwrap(), updated);
        store.delete("t", &created.id).await.unwrap();
        assert!(matches!(store.get("t", &created.id).await, Err(StoreError::NotFound(_))));
        assert!(matches!(store.delete("t", &created.id).await, Err(StoreError::NotFound(_))));
    }

    #[tokio::test]
    async fn the_limit_counts_the_apis_rules_and_provisioned_rules_are_read_only() {
        let store = RuleStore::new(Arc::new(InMemory::new()));
        store.upsert("t", request("", 0), 2).await.unwrap();
        let second = store.upsert("t", request("", 0), 2).await.unwrap();
        let e = store.upsert("t", request("", 0), 2).await.unwrap_err();
        assert_eq!(e.to_string(), "the tenant already has 2 recording rules, the most allowed");
        // Updating an existing rule at the limit is fine.
        assert_eq!(store.upsert("t", request(&second.id, 1), 2).await.unwrap().generation, 2);
        let provisioned = Provisioned {
            id: "from-git".into(),
            metric_name: "profiles_recorded_git".into(),
            matchers: vec![format!("{{__profile_type__=\"{CPU}\"}}")],
            external_labels: BTreeMap::from([("team".to_owned(), "a".to_owned())]),
            function_name: Some("main.work".into()),
            ..Default::default()
        };
        assert!(store.set_provisioned(&BTreeMap::from([("t".to_owned(), vec![provisioned.clone()])])).is_empty());
        let listed = store.list("t").await.unwrap();
        assert_eq!(listed.len(), 3);
        assert_eq!((listed[0].id.as_str(), listed[0].provisioned), ("from-git", true));
        assert_eq!(
            listed[0].stacktrace_filter.as_ref().unwrap().function_name.as_ref().unwrap().function_name,
            "main.work"
        );
        assert!(matches!(store.upsert("t", request("from-git", 1), 25).await, Err(StoreError::Provisioned(_))));
        assert!(matches!(store.delete("t", "from-git").await, Err(StoreError::Provisioned(_))));
        // A bad provisioned rule is left out and reported with its tenant and id; the others stay.
        let bad = Provisioned { id: "bad".into(), metric_name: "cpu".into(), ..provisioned.clone() };
        let errors = store.set_provisioned(&BTreeMap::from([("t".to_owned(), vec![bad, provisioned])]));
        assert_eq!(errors.len(), 1);
        assert!(errors[0].to_string().contains("tenant \"t\": provisioned rule \"bad\""), "{}", errors[0]);
        assert_eq!(store.list("t").await.unwrap()[0].id, "from-git");
    }
}
