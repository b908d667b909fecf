//! Ordered rollouts: a change to the pod templates (a new image, a new
//! config) reaches the components in the order the data formats require.
//!
//! ```text
//! step 1  query-backend, compaction-worker   readers of every format first
//! step 2  metastore                          one voter at a time (StatefulSet
//!                                            rolling update; a voter is ready
//!                                            when its Raft group is healthy)
//! step 3  segment-writer                     then the writers of new blocks
//! step 4  distributor, query-frontend        then what clients talk to
//! ```
//!
//! A step's workloads get their new template only when every earlier step
//! runs its own new template on all replicas, ready. Until then a later
//! workload keeps the template it runs (its replicas still follow the spec
//! and the autoscaler). A workload created for the first time is never held:
//! a new cluster starts everything at once.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::ResourceExt;

use crate::Result;
use crate::apply::desired_hash;
use crate::names::{Component, TEMPLATE_HASH_ANNOTATION};
use crate::render::Children;
use crate::status::Observed;

/// The rollout order, step by step.
pub const STEPS: [&[Component]; 4] = [
    &[Component::QueryBackend, Component::CompactionWorker],
    &[Component::Metastore],
    &[Component::SegmentWriter],
    &[Component::Distributor, Component::QueryFrontend],
];

/// The workloads as they run (before this reconcile applies anything).
#[derive(Debug, Default, Clone)]
pub struct Live {
    pub stateful_sets: Vec<StatefulSet>,
    pub deployments: Vec<Deployment>,
}

/// Where a rollout stands.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Rollout {
    /// Components that keep their running template, each with what it waits for.
    pub held: Vec<(Component, String)>,
    /// Every workload exists, runs its desired template on every replica
    /// and is ready: the cluster runs the spec's image.
    pub complete: bool,
}

/// One workload, whichever kind.
enum Workload<'a> {
    StatefulSet(&'a mut StatefulSet),
    Deployment(&'a mut Deployment),
}

impl Workload<'_> {
    fn template(&mut self) -> Option<&mut PodTemplateSpec> {
        match self {
            Workload::StatefulSet(s) => s.spec.as_mut().map(|s| &mut s.template),
            Workload::Deployment(d) => d.spec.as_mut().map(|s| &mut s.template),
        }
    }

    fn annotations(&mut self) -> &mut BTreeMap<String, String> {
        match self {
            Workload::StatefulSet(s) => s.annotations_mut(),
            Workload::Deployment(d) => d.annotations_mut(),
        }
    }
}

/// A live workload's template hash, its template, and whether it runs that
/// template everywhere, ready.
struct Running {
    hash: Option<String>,
    template: Option<PodTemplateSpec>,
    settled: bool,
    progress: String,
}

fn running(c: Component, live: &Live, name: &str) -> Option<Running> {
    let describe = |o: &Observed| {
        if o.current {
            let done = o.status.ready_replicas.min(o.status.updated_replicas);
            format!("{} to roll out ({done}/{} updated and ready)", c.as_str(), o.status.desired_replicas)
        } else {
            format!("{} to roll out", c.as_str())
        }
    };
    if c.is_stateful_set() {
        let s = live.stateful_sets.iter().find(|s| s.name_any() == name)?;
        let o = Observed::stateful_set(c.as_str(), s);
        let revisions = s.status.as_ref().is_none_or(|st| match (&st.current_revision, &st.update_revision) {
            (Some(cur), Some(upd)) => cur == upd,
            _ => true,
        });
        Some(Running {
            hash: s.annotations().get(TEMPLATE_HASH_ANNOTATION).cloned(),
            template: s.spec.as_ref().map(|s| s.template.clone()),
            settled: o.ready() && revisions,
            progress: describe(&o),
        })
    } else {
        let d = live.deployments.iter().find(|d| d.name_any() == name)?;
        let o = Observed::deployment(c.as_str(), d);
        Some(Running {
            hash: d.annotations().get(TEMPLATE_HASH_ANNOTATION).cloned(),
            template: d.spec.as_ref().map(|s| s.template.clone()),
            settled: o.ready(),
            progress: describe(&o),
        })
    }
}

/// Marks every desired workload with its template's hash, and holds the
/// template changes whose earlier steps have not finished rolling out.
pub fn order(want: &mut Children, live: &Live) -> Result<Rollout> {
    let mut rollout = Rollout { held: Vec::new(), complete: true };
    // What the earlier steps are still doing; empty = the next step may go.
    let mut waiting: Vec<String> = Vec::new();
    for step in STEPS {
        let mut this_step = Vec::new();
        for &c in step {
            let mut workload = if c.is_stateful_set() {
                let Some(s) = want.stateful_sets.iter_mut().find(|s| component_label(s.labels()) == Some(c)) else {
                    continue;
                };
                Workload::StatefulSet(s)
            } else {
                let Some(d) = want.deployments.iter_mut().find(|d| component_label(d.labels()) == Some(c)) else {
                    continue;
                };
                Workload::Deployment(d)
            };
            let name = match &workload {
                Workload::StatefulSet(s) => s.name_any(),
                Workload::Deployment(d) => d.name_any(),
            };
            let hash = match workload.template() {
                Some(t) => desired_hash(t)?,
                None => continue,
            };
            let Some(run) = running(c, live, &name) else {
                // Created now: nothing runs yet, nothing to order.
                workload.annotations().insert(TEMPLATE_HASH_ANNOTATION.to_owned(), hash);
                rollout.complete = false;
                this_step.push(format!("{} being created", c.as_str()));
                continue;
            };
            let current = run.hash.as_deref() == Some(hash.as_str());
            if current || waiting.is_empty() {
                workload.annotations().insert(TEMPLATE_HASH_ANNOTATION.to_owned(), hash);
                if !current {
                    rollout.complete = false;
                    this_step.push(format!("{} to roll out", c.as_str()));
                } else if !run.settled {
                    rollout.complete = false;
                    this_step.push(run.progress);
                }
                continue;
            }
            // Held: keep what runs until the earlier steps are done.
            rollout.complete = false;
            rollout.held.push((c, format!("waiting for {}", waiting.join(", "))));
            if let (Some(t), Some(running)) = (workload.template(), run.template) {
                *t = running;
            }
            match run.hash {
                Some(h) => workload.annotations().insert(TEMPLATE_HASH_ANNOTATION.to_owned(), h),
                None => workload.annotations().remove(TEMPLATE_HASH_ANNOTATION),
            };
            this_step.push(format!("{} to roll out", c.as_str()));
        }
        // A later step waits for the latest step that is not done.
        if !this_step.is_empty() {
            waiting = this_step;
        }
    }
    Ok(rollout)
}

fn component_label(labels: &BTreeMap<String, String>) -> Option<Component> {
    let c = labels.get("app.kubernetes.io/component")?;
    Component::ALL.into_iter().find(|x| x.as_str() == c)
}
