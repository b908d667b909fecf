//! The PyroscopeCluster controller: `reconcile` applies every child,
//! removes children no longer wanted, and writes the status; `error_policy`
//! backs off exponentially per object.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{Controller, WatchStreamExt, predicates, reflector, watcher};
use kube::{Client, Resource, ResourceExt};
use phlox_crds::v1alpha1::{PyroscopeCluster, PyroscopeClusterStatus};
use serde_json::json;
use tracing::{info, warn};

use crate::apply::{Outcome, apply};
use crate::autoscale::{self, Autoscaler};
use crate::metrics::Metrics;
use crate::names::{Component, FIELD_MANAGER, Names, STATUS_FIELD_MANAGER, STORAGE_SECRET_HASH_ANNOTATION};
use crate::render::{Children, desired_with};
use crate::rollout::{self, Live};
use crate::status::{Observed, compute, with_autoscaling};
use crate::volumes::{self, Prepared};
use crate::voters;
use crate::{Error, Result};

/// Periodic resync when nothing happens (status refresh).
const RESYNC: Duration = Duration::from_secs(300);
/// How often a metastore voter change in progress is looked at.
const VOTERS_POLL: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_secs(5);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub metrics: Metrics,
    recorder: Recorder,
    /// Consecutive failures per object, for the backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// Load-based replicas of the autoscaled components.
    pub autoscaler: Autoscaler,
    /// Calls to the data plane's pods (metastore membership).
    http: reqwest::Client,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").finish_non_exhaustive()
    }
}

impl Context {
    pub fn new(client: Client, metrics: Metrics, instance: Option<String>) -> Self {
        let reporter = Reporter { controller: FIELD_MANAGER.to_owned(), instance };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            failures: Mutex::new(HashMap::new()),
            autoscaler: Autoscaler::default(),
            http: reqwest::Client::new(),
        }
    }

    /// Uses `autoscaler` (e.g. one with a test clock).
    pub fn with_autoscaler(mut self, autoscaler: Autoscaler) -> Self {
        self.autoscaler = autoscaler;
        self
    }

    async fn event(&self, cr: &ObjectReference, type_: EventType, reason: &str, action: &str, note: String) {
        let ev =
            Event { type_, reason: reason.to_owned(), note: Some(note), action: action.to_owned(), secondary: None };
        if let Err(e) = self.recorder.publish(&ev, cr).await {
            warn!(error = %e, reason, "cannot publish event");
        }
    }
}

fn key(cr: &PyroscopeCluster) -> String {
    format!("{}/{}", cr.namespace().unwrap_or_default(), cr.name_any())
}

/// Applies one child and records the write.
async fn child<K>(ctx: &Context, cr_ref: &ObjectReference, ns: &str, obj: K) -> Result<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned,
{
    let kind = K::kind(&()).to_string();
    let name = obj.name_any();
    let (live, outcome) = apply(&ctx.client, ns, obj).await?;
    let action = match outcome {
        Outcome::Unchanged => return Ok(live),
        Outcome::Created => "Created",
        Outcome::Updated => "Updated",
    };
    ctx.metrics.writes.with_label_values(&[&kind, &action.to_lowercase()]).inc();
    info!(%kind, %name, action, "applied");
    ctx.event(cr_ref, EventType::Normal, action, "Apply", format!("{action} {kind} {name}")).await;
    Ok(live)
}

/// What applying the children found: the observed workloads, and the
/// children the API refused (each reported; the others still applied).
struct Applied {
    observed: Vec<Observed>,
    refused: Vec<String>,
}

/// Applies every desired child, each on its own: a child the API refuses
/// (an immutable field, an object of that name this cluster does not own)
/// is reported and the others are still reconciled.
async fn apply_children(ctx: &Context, cr: &PyroscopeCluster, want: Children) -> Result<Applied> {
    let ns = cr.namespace().ok_or(Error::MissingField("metadata.namespace"))?;
    let cr_ref = cr.object_ref(&());
    let wanted = Wanted::of(&want);
    let mut refused = Vec::new();
    let mut note = |kind: &str, name: String, e: Error| {
        warn!(%kind, %name, error = %e, "child refused");
        refused.push(format!("{kind} {name}: {e}"));
    };
    if let Err(e) = child(ctx, &cr_ref, &ns, want.service_account.clone()).await {
        note("ServiceAccount", want.service_account.name_any(), e);
    }
    if let Err(e) = child(ctx, &cr_ref, &ns, want.config_map.clone()).await {
        note("ConfigMap", want.config_map.name_any(), e);
    }
    for s in want.services {
        let name = s.name_any();
        if let Err(e) = child(ctx, &cr_ref, &ns, s).await {
            note("Service", name, e);
        }
    }
    let mut observed = Vec::new();
    for s in want.stateful_sets {
        let name = s.name_any();
        // Immutable fields (volume claims...) change by expanding the claims
        // and recreating the StatefulSet around its running pods.
        match volumes::prepare(&ctx.client, &ns, &s).await {
            Ok(Prepared::Apply) => match child(ctx, &cr_ref, &ns, s).await {
                Ok(live) => observed.push(Observed::stateful_set(component_of(live.labels()), &live)),
                Err(e) => note("StatefulSet", name, e),
            },
            Ok(Prepared::Recreating(why)) => {
                info!(statefulset = %name, %why, "recreating");
                ctx.metrics.writes.with_label_values(&["StatefulSet", "recreated"]).inc();
                ctx.event(&cr_ref, EventType::Normal, "Recreating", "Apply", why).await;
            }
            Err(e) => note("StatefulSet", name, e),
        }
    }
    for d in want.deployments {
        let name = d.name_any();
        match child(ctx, &cr_ref, &ns, d).await {
            Ok(live) => observed.push(Observed::deployment(component_of(live.labels()), &live)),
            Err(e) => note("Deployment", name, e),
        }
    }
    for p in want.pdbs {
        let name = p.name_any();
        if let Err(e) = child(ctx, &cr_ref, &ns, p).await {
            note("PodDisruptionBudget", name, e);
        }
    }
    for n in want.network_policies {
        let name = n.name_any();
        if let Err(e) = child(ctx, &cr_ref, &ns, n).await {
            note("NetworkPolicy", name, e);
        }
    }
    for i in want.ingresses {
        let name = i.name_any();
        if let Err(e) = child(ctx, &cr_ref, &ns, i).await {
            note("Ingress", name, e);
        }
    }
    if let Err(e) = Box::pin(certificate(ctx, cr, &ns, want.certificate)).await {
        note("Certificate", Names::of(cr)?.grpc_tls_certificate(), e);
    }
    let names = Names::of(cr)?;
    let monitors = Component::ALL.iter().map(|&c| names.component(c)).collect::<Vec<_>>();
    let pod_monitor = crate::render::pod_monitor_resource();
    for (name, e) in Box::pin(dynamic_children(ctx, cr, &ns, &pod_monitor, &monitors, want.pod_monitors)).await {
        note("PodMonitor", name, e);
    }
    let rule = crate::render::prometheus_rule_resource();
    let rules = vec![names.cluster.clone()];
    for (name, e) in
        Box::pin(dynamic_children(ctx, cr, &ns, &rule, &rules, want.prometheus_rule.into_iter().collect())).await
    {
        note("PrometheusRule", name, e);
    }
    // Owned children no longer desired go: PDBs come and go with the
    // replica count (none below two pods), and a kind or name a new version
    // of the operator no longer renders is removed too.
    prune::<ServiceAccount>(ctx, cr, &ns, &wanted.service_accounts).await?;
    prune::<ConfigMap>(ctx, cr, &ns, &wanted.config_maps).await?;
    prune::<Service>(ctx, cr, &ns, &wanted.services).await?;
    prune::<StatefulSet>(ctx, cr, &ns, &wanted.stateful_sets).await?;
    prune::<Deployment>(ctx, cr, &ns, &wanted.deployments).await?;
    prune::<PodDisruptionBudget>(ctx, cr, &ns, &wanted.pdbs).await?;
    prune::<NetworkPolicy>(ctx, cr, &ns, &wanted.network_policies).await?;
    prune::<Ingress>(ctx, cr, &ns, &wanted.ingresses).await?;
    observed.sort_by_key(|o| Component::ALL.iter().position(|c| c.as_str() == o.component));
    for r in &refused {
        ctx.event(&cr_ref, EventType::Warning, "ChildRefused", "Apply", r.clone()).await;
    }
    Ok(Applied { observed, refused })
}

/// cert-manager's Certificate of the gRPC port: applied when wanted; one
/// this cluster owns and no longer wants is deleted (without cert-manager
/// installed there is none to find).
async fn certificate(
    ctx: &Context,
    cr: &PyroscopeCluster,
    ns: &str,
    want: Option<kube::core::DynamicObject>,
) -> Result<()> {
    let resource = crate::render::certificate_resource();
    let api: Api<kube::core::DynamicObject> = Api::namespaced_with(ctx.client.clone(), ns, &resource);
    let name = Names::of(cr)?.grpc_tls_certificate();
    match want {
        Some(cert) => {
            let params = kube::api::PatchParams::apply(crate::names::FIELD_MANAGER).force();
            api.patch(&name, &params, &kube::api::Patch::Apply(&cert)).await?;
        }
        None => {
            let owned = |c: &kube::core::DynamicObject| {
                c.owner_references().iter().any(|o| Some(&o.uid) == cr.metadata.uid.as_ref())
            };
            if let Ok(Some(c)) = api.get_opt(&name).await
                && owned(&c)
            {
                api.delete(&name, &Default::default()).await?;
            }
        }
    }
    Ok(())
}

/// Children of a kind another operator defines (the Prometheus Operator's
/// PodMonitor, PrometheusRule): each wanted one applied; of the names this
/// cluster may own (`possible`), the owned ones no longer wanted deleted.
/// Where the kind is not installed, a wanted child is refused with a
/// message saying so, and there is nothing to delete.
async fn dynamic_children(
    ctx: &Context,
    cr: &PyroscopeCluster,
    ns: &str,
    resource: &kube::core::ApiResource,
    possible: &[String],
    want: Vec<kube::core::DynamicObject>,
) -> Vec<(String, Error)> {
    let api: Api<kube::core::DynamicObject> = Api::namespaced_with(ctx.client.clone(), ns, resource);
    let params = kube::api::PatchParams::apply(crate::names::FIELD_MANAGER).force();
    let mut refused = Vec::new();
    for object in &want {
        let name = object.name_any();
        match api.patch(&name, &params, &kube::api::Patch::Apply(object)).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => refused.push((
                name,
                Error::InvalidSpec(format!(
                    "the {} kind ({}) is not installed in this cluster: install the Prometheus Operator's CRDs or turn spec.monitoring off",
                    resource.kind, resource.api_version
                )),
            )),
            Err(e) => refused.push((name, e.into())),
        }
    }
    let wanted: Vec<String> = want.iter().map(ResourceExt::name_any).collect();
    for name in possible.iter().filter(|n| !wanted.contains(n)) {
        if let Ok(Some(o)) = api.get_opt(name).await
            && o.owner_references().iter().any(|r| Some(&r.uid) == cr.metadata.uid.as_ref())
            && let Err(e) = api.delete(name, &Default::default()).await
        {
            refused.push((name.clone(), e.into()));
        }
    }
    refused
}

/// The names of the desired children, per kind.
struct Wanted {
    service_accounts: Vec<String>,
    config_maps: Vec<String>,
    services: Vec<String>,
    stateful_sets: Vec<String>,
    deployments: Vec<String>,
    pdbs: Vec<String>,
    network_policies: Vec<String>,
    ingresses: Vec<String>,
}

impl Wanted {
    fn of(c: &Children) -> Self {
        fn names<K: ResourceExt>(v: &[K]) -> Vec<String> {
            v.iter().map(|o| o.name_any()).collect()
        }
        Self {
            service_accounts: vec![c.service_account.name_any()],
            config_maps: vec![c.config_map.name_any()],
            services: names(&c.services),
            stateful_sets: names(&c.stateful_sets),
            deployments: names(&c.deployments),
            pdbs: names(&c.pdbs),
            network_policies: names(&c.network_policies),
            ingresses: names(&c.ingresses),
        }
    }
}

/// Deletes the children of kind `K` this cluster owns (by its labels and
/// owner reference) that are not `wanted`.
async fn prune<K>(ctx: &Context, cr: &PyroscopeCluster, ns: &str, wanted: &[String]) -> Result<()>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
{
    let names = Names::of(cr)?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    let selector = format!("app.kubernetes.io/instance={},app.kubernetes.io/managed-by=phlox-operator", names.cluster);
    let kind = K::kind(&()).to_string();
    for o in api.list(&ListParams::default().labels(&selector)).await?.items {
        let owned = o.owner_references().iter().any(|r| Some(&r.uid) == cr.metadata.uid.as_ref());
        if owned && o.meta().deletion_timestamp.is_none() && !wanted.contains(&o.name_any()) {
            api.delete(&o.name_any(), &DeleteParams::default()).await?;
            ctx.metrics.writes.with_label_values(&[&kind, "deleted"]).inc();
            info!(%kind, name = %o.name_any(), "pruned");
            ctx.event(
                &cr.object_ref(&()),
                EventType::Normal,
                "Deleted",
                "Apply",
                format!("Deleted {kind} {}", o.name_any()),
            )
            .await;
        }
    }
    Ok(())
}

fn component_of(labels: &std::collections::BTreeMap<String, String>) -> &'static str {
    let c = labels.get("app.kubernetes.io/component").map(String::as_str).unwrap_or("");
    Component::ALL.iter().find(|x| x.as_str() == c).map(|x| x.as_str()).unwrap_or("unknown")
}

/// Writes the status when it differs from the stored one.
async fn write_status(ctx: &Context, cr: &PyroscopeCluster, status: PyroscopeClusterStatus) -> Result<()> {
    if cr.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let was_ready = ready(cr.status.as_ref());
    let now_ready = ready(Some(&status));
    let api: Api<PyroscopeCluster> = Api::namespaced(ctx.client.clone(), &cr.namespace().unwrap_or_default());
    // Server-side apply under the status's own field manager: the status is
    // owned apart from the children (and from `kubectl` edits of the spec).
    let body = json!({
        "apiVersion": PyroscopeCluster::api_version(&()),
        "kind": PyroscopeCluster::kind(&()),
        "status": status_patch(&status)?,
    });
    api.patch_status(&cr.name_any(), &PatchParams::apply(STATUS_FIELD_MANAGER).force(), &Patch::Apply(body)).await?;
    if was_ready != now_ready {
        let (reason, note) = if now_ready {
            ("Ready", "every component is ready".to_owned())
        } else {
            let m = status.conditions.iter().find(|c| c.type_ == "Ready").map(|c| c.message.clone());
            ("NotReady", m.unwrap_or_default())
        };
        ctx.event(&cr.object_ref(&()), EventType::Normal, reason, "Status", note).await;
    }
    Ok(())
}

/// The status to apply, saying also what no longer applies: every field the
/// new status leaves out is sent as `null` (server-side apply removes what
/// its manager applied before and leaves out now; the explicit `null`
/// removes it too where the field was written by an older operator with
/// another manager, and the CRD prunes nulls; otherwise `scaling` would stay
/// after autoscaling is off and every later reconcile would find the status
/// different).
fn status_patch(status: &PyroscopeClusterStatus) -> Result<serde_json::Value> {
    let mut v = serde_json::to_value(status)?;
    if let Some(o) = v.as_object_mut() {
        for field in [
            "observedGeneration",
            "conditions",
            "components",
            "componentsReady",
            "autoscaling",
            "scaling",
            "version",
            "rollout",
        ] {
            o.entry(field).or_insert(serde_json::Value::Null);
        }
        if let Some(scaling) = o.get_mut("scaling").and_then(|s| s.as_object_mut()) {
            for field in ["segmentWriter", "queryBackend"] {
                scaling.entry(field).or_insert(serde_json::Value::Null);
            }
        }
    }
    Ok(v)
}

fn ready(s: Option<&PyroscopeClusterStatus>) -> bool {
    s.is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// One reconcile of one PyroscopeCluster.
pub async fn reconcile(cr: Arc<PyroscopeCluster>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    // Boxed: a reconcile's state (every rendered child) is large.
    let result = Box::pin(reconcile_inner(&cr, &ctx)).await;
    ctx.metrics.duration.observe(started.elapsed().as_secs_f64());
    match &result {
        Ok(_) => {
            ctx.metrics.reconciles.with_label_values(&["ok"]).inc();
            if let Ok(mut f) = ctx.failures.lock() {
                f.remove(&key(&cr));
            }
        }
        Err(e) => {
            ctx.metrics.reconciles.with_label_values(&["error"]).inc();
            ctx.metrics.errors.with_label_values(&[e.reason()]).inc();
            // Best effort: say why in the status and as an event.
            let status =
                compute(cr.metadata.generation, &[], Some((e.reason(), e.to_string())), cr.status.as_ref(), now());
            let mut status = status;
            if let Some(prev) = &cr.status {
                status.components = prev.components.clone();
                status.components_ready = prev.components_ready.clone();
            }
            if let Err(se) = write_status(&ctx, &cr, status).await {
                warn!(error = %se, "cannot write the status");
            }
            ctx.event(&cr.object_ref(&()), EventType::Warning, e.reason(), "Reconcile", e.to_string()).await;
        }
    }
    result
}

async fn reconcile_inner(cr: &PyroscopeCluster, ctx: &Context) -> Result<Action> {
    if cr.spec.paused {
        return reconcile_paused(cr, ctx).await;
    }
    // The token of the pods' admin listeners (drain, membership).
    let admin_token = crate::admin_token::ensure(&ctx.client, cr).await?;
    let autoscaling = autoscale::enabled(cr);
    let plan = if autoscaling {
        Box::pin(ctx.autoscaler.plan(&ctx.client, cr, &ctx.metrics, &admin_token)).await?
    } else {
        ctx.autoscaler.forget(&key(cr), &[]);
        autoscale::Plan::default()
    };
    // Metastore voter changes go through the Raft membership first.
    let voters = Box::pin(voters::step(&ctx.client, &ctx.http, cr, &admin_token)).await?;
    let mut cr_used = cr.clone();
    cr_used.spec.metastore.voters = voters.render;
    let mut want = desired_with(&cr_used, &plan.replicas)?;
    if let Some(hash) = storage_inputs_hash(ctx, cr).await? {
        want.annotate_pods(STORAGE_SECRET_HASH_ANNOTATION, &hash);
    }
    // Template changes go out in the order the data formats need.
    let rollout = rollout::order(&mut want, &live_workloads(ctx, cr).await?)?;
    for (c, why) in &rollout.held {
        info!(component = c.as_str(), why, "rollout: template held");
    }
    // Boxed: the futures of a reconcile are large, and tests run them on
    // small thread stacks.
    let Applied { observed, refused } = Box::pin(apply_children(ctx, &cr_used, want)).await?;
    let error = (!refused.is_empty()).then(|| ("ChildRefused", refused.join("; ")));
    // Complete before the apply, or found complete by it: nothing held and
    // every workload (as the apply left it) runs its latest template on
    // every ready replica. The second read keeps `Ready` and `version` in
    // step when pods become ready between the two reads.
    let applied_complete =
        rollout.held.is_empty() && refused.is_empty() && !observed.is_empty() && observed.iter().all(|o| o.ready());
    let mut status = compute(cr.metadata.generation, &observed, error, cr.status.as_ref(), now());
    if rollout.complete || applied_complete {
        status.version = Some(cr.spec.image.clone());
    }
    let voters_before = cr.status.as_ref().and_then(|s| s.metastore_voters);
    if let Some(n) = voters.confirmed {
        status.metastore_voters = Some(n);
    }
    let mut progress: Vec<String> = rollout.held.iter().map(|(c, why)| format!("{} {why}", c.as_str())).collect();
    progress.extend(voters.progress.clone());
    status.rollout = (!progress.is_empty()).then(|| progress.join("; "));
    let status = with_autoscaling(status, plan.status, cr.status.as_ref(), cr.metadata.generation, now());
    write_status(ctx, cr, status).await?;
    let cr_ref = cr.object_ref(&());
    for (type_, reason, note) in plan.events {
        ctx.event(&cr_ref, type_, &reason, "Autoscale", note).await;
    }
    if let Some(p) = &voters.progress {
        ctx.event(&cr_ref, EventType::Normal, "VotersChanging", "Reconcile", p.clone()).await;
    } else if voters_before.is_some() && voters.confirmed.is_some_and(|n| Some(n) != voters_before) {
        let note = format!("the metastore has {} voters", voters.render);
        ctx.event(&cr_ref, EventType::Normal, "VotersChanged", "Reconcile", note).await;
    }
    // Every other child is applied and the status says what was refused:
    // retry the refused ones with the error backoff.
    if !refused.is_empty() {
        return Err(Error::ChildrenRefused(refused.join("; ")));
    }
    // A voter change in progress is looked at again soon; autoscaled
    // clusters are evaluated every sync period.
    Ok(Action::requeue(if voters.progress.is_some() {
        VOTERS_POLL
    } else if autoscaling {
        autoscale::SYNC_PERIOD
    } else {
        RESYNC
    }))
}

/// A paused cluster: no child is touched; the status reports the workloads
/// as they are, with a `Paused` condition.
async fn reconcile_paused(cr: &PyroscopeCluster, ctx: &Context) -> Result<Action> {
    let live = live_workloads(ctx, cr).await?;
    let mut observed: Vec<Observed> = live
        .stateful_sets
        .iter()
        .map(|s| Observed::stateful_set(component_of(s.labels()), s))
        .chain(live.deployments.iter().map(|d| Observed::deployment(component_of(d.labels()), d)))
        .collect();
    observed.sort_by_key(|o| Component::ALL.iter().position(|c| c.as_str() == o.component));
    let mut status = compute(cr.metadata.generation, &observed, None, cr.status.as_ref(), now());
    if let Some(prev) = &cr.status {
        // The autoscaler is paused too: its last word stays.
        status.autoscaling = prev.autoscaling.clone();
        status.scaling = prev.scaling.clone();
    }
    let since = cr
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == PAUSED))
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(now);
    status.conditions.push(k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
        type_: PAUSED.to_owned(),
        status: "True".to_owned(),
        reason: "PausedBySpec".to_owned(),
        message: "spec.paused is true: no child is changed until it is false".to_owned(),
        observed_generation: cr.metadata.generation,
        last_transition_time: since,
    });
    write_status(ctx, cr, status).await?;
    Ok(Action::requeue(RESYNC))
}

/// Hash of what the pods read of the storage's Secret and ConfigMap at
/// start: the credentials Secret's data and the CA bundle (`None` when the
/// cluster uses neither). One that does not exist yet hashes as missing:
/// the pods cannot start then, and roll once it appears.
async fn storage_inputs_hash(ctx: &Context, cr: &PyroscopeCluster) -> Result<Option<String>> {
    let st = &cr.spec.storage;
    if st.credentials_secret.is_none() && st.ca_bundle.is_none() {
        return Ok(None);
    }
    let ns = cr.namespace().ok_or(Error::MissingField("metadata.namespace"))?;
    // Sorted keys (BTreeMap): the same data always hashes the same.
    let mut inputs: std::collections::BTreeMap<String, Option<Vec<u8>>> = Default::default();
    if let Some(name) = &st.credentials_secret {
        let secret = Api::<Secret>::namespaced(ctx.client.clone(), &ns).get_opt(name).await?;
        let missing = secret.is_none();
        if let Some(s) = secret {
            for (k, v) in s.data.unwrap_or_default() {
                inputs.insert(format!("secret/{k}"), Some(v.0));
            }
            for (k, v) in s.string_data.unwrap_or_default() {
                inputs.insert(format!("secret/{k}"), Some(v.into_bytes()));
            }
        }
        if missing {
            inputs.insert("secret".to_owned(), None);
        }
    }
    if let Some(ca) = &st.ca_bundle {
        let cm = Api::<ConfigMap>::namespaced(ctx.client.clone(), &ns).get_opt(&ca.config_map).await?;
        let pem = cm.and_then(|c| c.data.and_then(|mut d| d.remove(&ca.key)));
        inputs.insert("ca".to_owned(), pem.map(String::into_bytes));
    }
    Ok(Some(crate::apply::desired_hash(&inputs)?))
}

/// The cluster's workloads as they run (owned by it).
async fn live_workloads(ctx: &Context, cr: &PyroscopeCluster) -> Result<Live> {
    let names = Names::of(cr)?;
    let ns = cr.namespace().ok_or(Error::MissingField("metadata.namespace"))?;
    let owned = |o: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference]| {
        o.iter().any(|o| Some(&o.uid) == cr.metadata.uid.as_ref())
    };
    let selector = format!("app.kubernetes.io/instance={},app.kubernetes.io/managed-by=phlox-operator", names.cluster);
    let lp = ListParams::default().labels(&selector);
    let mut live = Live::default();
    for s in Api::<StatefulSet>::namespaced(ctx.client.clone(), &ns).list(&lp).await?.items {
        if owned(s.owner_references()) {
            live.stateful_sets.push(s);
        }
    }
    for d in Api::<Deployment>::namespaced(ctx.client.clone(), &ns).list(&lp).await?.items {
        if owned(d.owner_references()) {
            live.deployments.push(d);
        }
    }
    Ok(live)
}

/// Condition type of a paused cluster.
const PAUSED: &str = "Paused";

/// The clusters in `obj`'s namespace whose spec names it (`named`).
fn users_of<K: Resource>(
    clusters: &reflector::Store<PyroscopeCluster>,
    obj: &K,
    named: impl Fn(&PyroscopeCluster) -> Option<&str>,
) -> Vec<reflector::ObjectRef<PyroscopeCluster>> {
    let (ns, name) = (obj.meta().namespace.clone(), obj.meta().name.clone().unwrap_or_default());
    clusters
        .state()
        .into_iter()
        .filter(|c| c.namespace() == ns && named(c) == Some(name.as_str()))
        .map(|c| reflector::ObjectRef::from_obj(&*c))
        .collect()
}

/// Exponential backoff per object: 5 s, 10 s, 20 s ... 5 min.
pub fn error_policy(cr: Arc<PyroscopeCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    let n = ctx
        .failures
        .lock()
        .map(|mut f| {
            let n = f.entry(key(&cr)).or_insert(0);
            *n = n.saturating_add(1);
            *n
        })
        .unwrap_or(1);
    let delay = backoff(n);
    warn!(cluster = %key(&cr), error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Delay before retry `n` (1-based).
pub fn backoff(n: u32) -> Duration {
    BACKOFF_MIN.saturating_mul(1u32 << n.saturating_sub(1).min(16)).min(BACKOFF_MAX)
}

/// Runs the controller until shutdown; `namespace` limits it to one namespace.
pub async fn run(ctx: Arc<Context>, namespace: Option<String>) {
    let client = ctx.client.clone();
    let (crs, owned) = match &namespace {
        Some(ns) => (Api::<PyroscopeCluster>::namespaced(client.clone(), ns), Some(ns.clone())),
        None => (Api::<PyroscopeCluster>::all(client.clone()), None),
    };
    fn api<K>(client: &Client, ns: &Option<String>) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        match ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let children = watcher::Config::default().labels("app.kubernetes.io/managed-by=phlox-operator");
    // Spec changes only (a new generation), not the operator's own status
    // writes (which would otherwise trigger the next reconcile); owned
    // objects changing and the requeue timer trigger the rest.
    let (reader, writer) = reflector::store();
    let clusters = watcher(crs, watcher::Config::default().any_semantic())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default());
    // The storage's Secret or CA ConfigMap changing rolls the pods of the
    // clusters that use them: both kinds are watched by their metadata only
    // (their data stays out of the operator's memory) and mapped to those
    // clusters.
    let (by_secret, by_ca) = (reader.clone(), reader.clone());
    let secrets = watcher(api::<PartialObjectMeta<Secret>>(&client, &owned), watcher::Config::default())
        .default_backoff()
        .touched_objects();
    let config_maps = watcher(api::<PartialObjectMeta<ConfigMap>>(&client, &owned), watcher::Config::default())
        .default_backoff()
        .touched_objects();
    Controller::for_stream(clusters, reader)
        .watches_stream(secrets, move |s| users_of(&by_secret, &s, |c| c.spec.storage.credentials_secret.as_deref()))
        .watches_stream(config_maps, move |m| {
            users_of(&by_ca, &m, |c| c.spec.storage.ca_bundle.as_ref().map(|b| b.config_map.as_str()))
        })
        .owns(api::<StatefulSet>(&client, &owned), children.clone())
        .owns(api::<Deployment>(&client, &owned), children.clone())
        .owns(api::<Service>(&client, &owned), children.clone())
        .owns(api::<ConfigMap>(&client, &owned), children.clone())
        .owns(api::<ServiceAccount>(&client, &owned), children.clone())
        .owns(api::<PodDisruptionBudget>(&client, &owned), children.clone())
        .owns(api::<NetworkPolicy>(&client, &owned), children)
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                warn!(error = %e, "controller");
            }
        })
        .await;
}
