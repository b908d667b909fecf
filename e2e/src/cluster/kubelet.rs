//! The box's "kubelet" and workload controllers: every pod of the
//! StatefulSets and Deployments in one namespace runs as a real `phlox`
//! process with exactly the rendered args and env, in its own network
//! namespace (its own address, so every pod listens on the rendered ports)
//! and mount namespace (the rendered volume mounts: ConfigMap and Secret keys as
//! files, emptyDirs, claims as directories under the box's root).
//!
//! Semantics kept from Kubernetes:
//! - StatefulSet pods are `<name>-<ordinal>`, started together (the
//!   operator renders `Parallel`), scaled down from the highest ordinal,
//!   rolled one pod at a time from the highest ordinal, each waiting until
//!   the pod before it is ready; claims of volume claim templates are
//!   `<template>-<pod>` and outlive their pod.
//! - Deployment pods roll by surge (a new pod ready before an old one goes).
//! - A pod's readiness is its rendered readiness probe (`GET` on the
//!   container's port), reported in the Pod object and the workload status.
//! - Stopping a pod runs its `preStop` sleep, then SIGTERM, then SIGKILL
//!   after the termination grace period. A process that exits is
//!   restarted (`restartPolicy: Always`); a Pod object deleted through the
//!   API stops its process, and the workload makes a new one.
//! - Services: a headless Service's name resolves to its pods' addresses
//!   (ready ones, or all with `publishNotReadyAddresses`), and each
//!   StatefulSet pod has `<pod>.<service>.<namespace>.svc`; a ClusterIP
//!   Service gets a virtual address on the bridge with a per-connection
//!   balancer to its ready pods (long-lived HTTP/2 channels stay pinned,
//!   as with kube-proxy).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, PodTemplateSpec, Secret, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use super::net::Network;

/// How often the kubelet looks at the API and probes its pods.
const TICK: Duration = Duration::from_millis(250);

/// A pod's owner.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Owner {
    kind: &'static str,
    name: String,
}

/// One running (or stopping) pod.
struct PodRun {
    owner: Owner,
    ordinal: Option<i32>,
    template: PodTemplateSpec,
    /// Hash of the template it runs (the workload's revision).
    revision: String,
    netns: String,
    ip: Ipv4Addr,
    dir: PathBuf,
    child: Option<tokio::process::Child>,
    ready: bool,
    terminating: bool,
    restarts: u32,
}

/// A StatefulSet's pod, as its controller looks at it.
struct Member {
    name: String,
    ordinal: i32,
    revision: String,
    ready: bool,
    terminating: bool,
}

/// A pod, as a Service looks at it.
struct Endpoint {
    pod: String,
    labels: BTreeMap<String, String>,
    template: PodTemplateSpec,
    ip: Ipv4Addr,
    ready: bool,
}

/// A ClusterIP Service's virtual address and the endpoints of its balancers.
struct ServiceRun {
    vip: Ipv4Addr,
    /// Per port: the balancer's current backends.
    ports: BTreeMap<u16, Arc<Mutex<Vec<SocketAddr>>>>,
}

/// The kubelet of one namespace.
pub struct Kubelet {
    client: Client,
    namespace: String,
    net: Arc<Network>,
    root: PathBuf,
    phlox: PathBuf,
    http: reqwest::Client,
    pods: Mutex<BTreeMap<String, PodRun>>,
    services: Mutex<BTreeMap<String, ServiceRun>>,
    /// Names of Pod objects this kubelet created (to notice deletions).
    published: Mutex<BTreeSet<String>>,
    /// Pods started so far per workload, for Deployment pod names.
    counter: Mutex<HashMap<String, u32>>,
    /// What happened, for the report: (seconds since start, what).
    pub events: Mutex<Vec<(f64, String)>>,
    started: std::time::Instant,
}

impl std::fmt::Debug for Kubelet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kubelet").field("namespace", &self.namespace).finish_non_exhaustive()
    }
}

fn template_revision(t: &PodTemplateSpec) -> String {
    let bytes = serde_json::to_vec(t).unwrap_or_default();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:010x}", h & 0xff_ffff_ffff)
}

fn selector_matches(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn container(t: &PodTemplateSpec) -> Option<&Container> {
    t.spec.as_ref()?.containers.first()
}

/// The container port a probe or Service names (`http`) or gives (a number).
fn port_of(t: &PodTemplateSpec, port: &k8s_openapi::apimachinery::pkg::util::intstr::IntOrString) -> Option<u16> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    match port {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => container(t)?
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

impl Kubelet {
    pub fn new(client: Client, namespace: &str, net: Arc<Network>, root: &Path, phlox: &Path) -> Arc<Self> {
        Arc::new(Self {
            client,
            namespace: namespace.to_owned(),
            net,
            root: root.to_owned(),
            phlox: phlox.to_owned(),
            http: reqwest::Client::new(),
            pods: Mutex::new(BTreeMap::new()),
            services: Mutex::new(BTreeMap::new()),
            published: Mutex::new(BTreeSet::new()),
            counter: Mutex::new(HashMap::new()),
            events: Mutex::new(Vec::new()),
            started: std::time::Instant::now(),
        })
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn note(&self, what: String) {
        let at = self.started.elapsed().as_secs_f64();
        if std::env::var_os("PHLOX_BOX_VERBOSE").is_some() {
            eprintln!("box {at:7.2}s {what}");
        }
        if let Ok(mut e) = self.events.lock() {
            e.push((at, what));
        }
    }

    /// Runs until the task is dropped.
    pub async fn run(self: Arc<Self>) {
        loop {
            if let Err(e) = self.tick().await {
                self.note(format!("kubelet: {e}"));
            }
            tokio::time::sleep(TICK).await;
        }
    }

    /// Pods running now: name → (owner, ready, ip).
    pub fn pods(&self) -> Vec<(String, String, bool, Ipv4Addr)> {
        let pods = self.pods.lock().map(|p| {
            p.iter()
                .filter(|(_, r)| !r.terminating)
                .map(|(n, r)| (n.clone(), r.owner.name.clone(), r.ready, r.ip))
                .collect()
        });
        pods.unwrap_or_default()
    }

    /// The virtual address of a ClusterIP Service, once it has one.
    pub fn service_address(&self, name: &str) -> Option<Ipv4Addr> {
        self.services.lock().ok()?.get(name).map(|s| s.vip)
    }

    async fn tick(self: &Arc<Self>) -> Result<(), String> {
        let lp = ListParams::default();
        let e = |e: kube::Error| e.to_string();
        let stateful_sets = self.api::<StatefulSet>().list(&lp).await.map_err(e)?.items;
        let deployments = self.api::<Deployment>().list(&lp).await.map_err(e)?.items;
        let services = self.api::<Service>().list(&lp).await.map_err(e)?.items;
        let api_pods: BTreeSet<String> =
            self.api::<Pod>().list(&lp).await.map_err(e)?.items.iter().map(|p| p.name_any()).collect();

        // Pod objects deleted through the API: their processes stop.
        let deleted: Vec<String> = {
            let published = self.published.lock().map_err(|_| "poisoned")?;
            published.iter().filter(|n| !api_pods.contains(*n)).cloned().collect()
        };
        for name in deleted {
            self.published.lock().map_err(|_| "poisoned")?.remove(&name);
            self.note(format!("pod {name} deleted through the API: stopping it"));
            self.terminate(&name);
        }

        // Names first: a pod started below resolves them from its first lookup.
        self.wire_services(&services, &stateful_sets).await?;
        let mut wanted_owners = BTreeSet::new();
        for s in &stateful_sets {
            wanted_owners.insert(s.name_any());
            self.reconcile_stateful_set(s).await?;
        }
        for d in &deployments {
            wanted_owners.insert(d.name_any());
            self.reconcile_deployment(d).await?;
        }
        // Workloads gone: their pods go.
        let orphans: Vec<String> = self
            .pods
            .lock()
            .map_err(|_| "poisoned")?
            .iter()
            .filter(|(_, p)| !wanted_owners.contains(&p.owner.name) && !p.terminating)
            .map(|(n, _)| n.clone())
            .collect();
        for name in orphans {
            self.terminate(&name);
        }
        self.restart_exited().await?;
        self.probe().await;
        self.publish().await?;
        self.report_status(&stateful_sets, &deployments).await?;
        self.wire_services(&services, &stateful_sets).await?;
        Ok(())
    }

    async fn reconcile_stateful_set(self: &Arc<Self>, s: &StatefulSet) -> Result<(), String> {
        let name = s.name_any();
        let Some(spec) = &s.spec else { return Ok(()) };
        let replicas = spec.replicas.unwrap_or(1);
        let revision = template_revision(&spec.template);
        let owner = Owner { kind: "StatefulSet", name: name.clone() };
        let mine: Vec<Member> = {
            let pods = self.pods.lock().map_err(|_| "poisoned")?;
            pods.iter()
                .filter(|(_, p)| p.owner == owner)
                .map(|(n, p)| Member {
                    name: n.clone(),
                    ordinal: p.ordinal.unwrap_or(0),
                    revision: p.revision.clone(),
                    ready: p.ready,
                    terminating: p.terminating,
                })
                .collect()
        };
        let all_ready = mine.iter().all(|m| m.ready && !m.terminating);
        // Scale down: the highest ordinals go.
        for m in &mine {
            if m.ordinal >= replicas && !m.terminating {
                self.terminate(&m.name);
            }
        }
        // Missing ordinals start (all together: the operator renders Parallel).
        for ordinal in 0..replicas {
            let pod = format!("{name}-{ordinal}");
            if !mine.iter().any(|m| m.name == pod) {
                self.start(&pod, owner.clone(), Some(ordinal), &spec.template, &revision, s).await?;
            }
        }
        // Rolling update: one pod at a time, highest ordinal first, only
        // when every pod is ready.
        let count_ok = mine.iter().filter(|m| m.ordinal < replicas).count() == replicas as usize;
        if all_ready && count_ok {
            let mut old: Vec<&Member> =
                mine.iter().filter(|m| m.ordinal < replicas && m.revision != revision).collect();
            old.sort_by_key(|m| std::cmp::Reverse(m.ordinal));
            if let Some(m) = old.first() {
                self.note(format!("rolling {} to revision {revision}", m.name));
                self.terminate(&m.name);
            }
        }
        Ok(())
    }

    async fn reconcile_deployment(self: &Arc<Self>, d: &Deployment) -> Result<(), String> {
        let name = d.name_any();
        let Some(spec) = &d.spec else { return Ok(()) };
        let replicas = spec.replicas.unwrap_or(1).max(0) as usize;
        let revision = template_revision(&spec.template);
        let owner = Owner { kind: "Deployment", name: name.clone() };
        let mine: Vec<(String, String, bool)> = {
            let pods = self.pods.lock().map_err(|_| "poisoned")?;
            pods.iter()
                .filter(|(_, p)| p.owner == owner && !p.terminating)
                .map(|(n, p)| (n.clone(), p.revision.clone(), p.ready))
                .collect()
        };
        let new: Vec<&(String, String, bool)> = mine.iter().filter(|(_, r, _)| *r == revision).collect();
        let old: Vec<&(String, String, bool)> = mine.iter().filter(|(_, r, _)| *r != revision).collect();
        let surge = replicas.div_ceil(4).max(1);
        // Surge: new pods up to the replicas, never more than replicas + surge in all.
        if new.len() < replicas && mine.len() < replicas + surge {
            let k = {
                let mut c = self.counter.lock().map_err(|_| "poisoned")?;
                let k = c.entry(name.clone()).or_insert(0);
                *k += 1;
                *k
            };
            let pod = format!("{name}-{}-{k}", &revision[..6]);
            self.start(&pod, owner.clone(), None, &spec.template, &revision, d).await?;
        }
        // Old pods go once the others keep enough ready (maxUnavailable 0);
        // an old pod that is not ready goes once the new ones are all there.
        let ready = mine.iter().filter(|(_, _, r)| *r).count();
        if let Some((pod, _, was_ready)) = old.iter().find(|(_, _, r)| !*r).or_else(|| old.first()) {
            let ready_after = ready - usize::from(*was_ready);
            if ready_after >= replicas || (!*was_ready && new.len() >= replicas) {
                self.terminate(pod);
            }
        }
        // Scale down: extra new pods go (unready first).
        if old.is_empty() && new.len() > replicas {
            let mut extra: Vec<&&(String, String, bool)> = new.iter().collect();
            extra.sort_by_key(|(_, _, r)| *r);
            for (pod, ..) in extra.into_iter().take(new.len() - replicas) {
                self.terminate(pod);
            }
        }
        Ok(())
    }

    /// Starts a pod's process in a namespace of its own.
    async fn start<K: ResourceExt>(
        self: &Arc<Self>,
        pod: &str,
        owner: Owner,
        ordinal: Option<i32>,
        template: &PodTemplateSpec,
        revision: &str,
        workload: &K,
    ) -> Result<(), String> {
        let _ = workload;
        let (netns, ip) = self.net.add_pod()?;
        let dir = self.root.join("pods").join(pod);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        self.note(format!("starting pod {pod} at {ip} (revision {revision})"));
        let mut run = PodRun {
            owner,
            ordinal,
            template: template.clone(),
            revision: revision.to_owned(),
            netns,
            ip,
            dir,
            child: None,
            ready: false,
            terminating: false,
            restarts: 0,
        };
        run.child = Some(self.spawn(pod, &run).await?);
        self.pods.lock().map_err(|_| "poisoned")?.insert(pod.to_owned(), run);
        Ok(())
    }

    /// The volumes of a pod as directories: (mount path, source).
    async fn volumes(&self, pod: &str, run: &PodRun) -> Result<Vec<(String, PathBuf)>, String> {
        let Some(spec) = &run.template.spec else { return Ok(Vec::new()) };
        let c = container(&run.template).ok_or("a pod without a container")?;
        let mut out = Vec::new();
        for m in c.volume_mounts.iter().flatten() {
            let source = match spec.volumes.iter().flatten().find(|v| v.name == m.name) {
                Some(v) if v.config_map.is_some() => {
                    let cm_src = v.config_map.as_ref().ok_or("configMap")?;
                    let dir = run.dir.join("volumes").join(&v.name);
                    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
                    let cm = self.api::<ConfigMap>().get_opt(&cm_src.name).await.map_err(|e| e.to_string())?;
                    let data = cm.and_then(|c| c.data).unwrap_or_default();
                    match &cm_src.items {
                        Some(items) => {
                            for i in items {
                                if let Some(v) = data.get(&i.key) {
                                    write_in_place(&dir.join(&i.path), v)?;
                                }
                            }
                        }
                        None => {
                            for (k, v) in &data {
                                write_in_place(&dir.join(k), v)?;
                            }
                        }
                    }
                    dir
                }
                Some(v) if v.secret.is_some() => {
                    // A Secret's keys as files; a missing Secret fails the
                    // pod's start, as the kubelet keeps it ContainerCreating.
                    let name = v.secret.as_ref().and_then(|s| s.secret_name.clone()).ok_or("secretName")?;
                    let dir = run.dir.join("volumes").join(&v.name);
                    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
                    let secret = self.api::<Secret>().get_opt(&name).await.map_err(|e| e.to_string())?;
                    let secret = secret.ok_or_else(|| format!("Secret {name} does not exist"))?;
                    for (k, v) in secret.data.unwrap_or_default() {
                        write_in_place(&dir.join(&k), &String::from_utf8_lossy(&v.0))?;
                    }
                    dir
                }
                Some(v) if v.persistent_volume_claim.is_some() => {
                    let claim = &v.persistent_volume_claim.as_ref().ok_or("claim")?.claim_name;
                    self.root.join("claims").join(claim)
                }
                Some(v) => run.dir.join("volumes").join(&v.name),
                // A volume claim template of the StatefulSet.
                None => self.root.join("claims").join(format!("{}-{pod}", m.name)),
            };
            std::fs::create_dir_all(&source).map_err(|e| e.to_string())?;
            out.push((m.mount_path.clone(), source));
        }
        Ok(out)
    }

    async fn env(&self, pod: &str, run: &PodRun) -> Result<Vec<(String, String)>, String> {
        let c = container(&run.template).ok_or("a pod without a container")?;
        let mut env: Vec<(String, String)> = Vec::new();
        for from in c.env_from.iter().flatten() {
            if let Some(s) = &from.secret_ref {
                let secret = self.api::<Secret>().get_opt(&s.name).await.map_err(|e| e.to_string())?;
                for (k, v) in secret.and_then(|s| s.data).unwrap_or_default() {
                    env.push((k, String::from_utf8_lossy(&v.0).into_owned()));
                }
            }
        }
        for e in c.env.iter().flatten() {
            let value = if let Some(from) = &e.value_from {
                match from.field_ref.as_ref().map(|f| f.field_path.as_str()) {
                    Some("metadata.name") => pod.to_owned(),
                    Some("metadata.namespace") => self.namespace.clone(),
                    Some("status.podIP") => run.ip.to_string(),
                    _ => String::new(),
                }
            } else {
                // `$(VAR)` refers to an earlier variable.
                let mut v = e.value.clone().unwrap_or_default();
                for (k, val) in &env {
                    v = v.replace(&format!("$({k})"), val);
                }
                v
            };
            env.push((e.name.clone(), value));
        }
        Ok(env)
    }

    async fn spawn(&self, pod: &str, run: &PodRun) -> Result<tokio::process::Child, String> {
        let c = container(&run.template).ok_or("a pod without a container")?;
        let mut script = String::from("set -e\n");
        for (path, source) in self.volumes(pod, run).await? {
            script.push_str(&format!(
                "mkdir -p {p}\nmount --bind {s} {p}\n",
                p = shell_quote(&path),
                s = shell_quote(&source.to_string_lossy())
            ));
        }
        script.push_str("exec \"$@\"\n");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(run.dir.join("log"))
            .map_err(|e| e.to_string())?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = tokio::process::Command::new("ip");
        cmd.args(["netns", "exec", &run.netns, "sh", "-c", &script, "pod"])
            .arg(&self.phlox)
            .args(c.args.iter().flatten())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env(pod, run).await?)
            // PHLOX_BOX_POD_LOG: a log filter for every pod (e.g. `info,phlox_query=debug`).
            .envs(std::env::var("PHLOX_BOX_POD_LOG").ok().map(|f| ("PHLOX_LOG", f)))
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(log2)
            .kill_on_drop(true);
        cmd.spawn().map_err(|e| format!("start {pod}: {e}"))
    }

    /// Stops a pod: preStop sleep, SIGTERM, SIGKILL after the grace period.
    fn terminate(self: &Arc<Self>, pod: &str) {
        let Ok(mut pods) = self.pods.lock() else { return };
        let Some(run) = pods.get_mut(pod) else { return };
        if run.terminating {
            return;
        }
        run.terminating = true;
        run.ready = false;
        let spec = run.template.spec.clone().unwrap_or_default();
        let pre_stop = container(&run.template)
            .and_then(|c| c.lifecycle.as_ref()?.pre_stop.as_ref()?.sleep.as_ref().map(|s| s.seconds))
            .unwrap_or(0);
        let grace = spec.termination_grace_period_seconds.unwrap_or(30);
        let child = run.child.take();
        let netns = run.netns.clone();
        drop(pods);
        self.note(format!("stopping pod {pod} (preStop {pre_stop} s, grace {grace} s)"));
        let this = Arc::clone(self);
        let pod = pod.to_owned();
        tokio::spawn(async move {
            if let Some(mut child) = child {
                tokio::time::sleep(Duration::from_secs(pre_stop.max(0) as u64)).await;
                if let Some(pid) = child.id() {
                    let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
                }
                let grace = Duration::from_secs(grace.max(0) as u64);
                if tokio::time::timeout(grace, child.wait()).await.is_err() {
                    this.note(format!("pod {pod} did not stop within its grace period: SIGKILL"));
                    let _ = child.kill().await;
                }
            }
            this.net.remove_pod(&netns);
            if let Ok(mut pods) = this.pods.lock() {
                pods.remove(&pod);
            }
            if let Ok(mut published) = this.published.lock() {
                published.remove(&pod);
            }
            let _ = this.api::<Pod>().delete(&pod, &DeleteParams::default()).await;
        });
    }

    /// The image a pod runs.
    pub fn image(&self, pod: &str) -> Option<String> {
        self.pods.lock().ok()?.get(pod).and_then(|r| container(&r.template)?.image.clone())
    }

    /// How many times a pod's process was restarted.
    pub fn restarts(&self, pod: &str) -> Option<u32> {
        self.pods.lock().ok()?.get(pod).map(|r| r.restarts)
    }

    /// Stops a pod by SIGKILL, as a crashed node or the OOM killer would;
    /// its workload's restart policy brings the process back.
    pub fn kill_process(&self, pod: &str) -> bool {
        let Ok(mut pods) = self.pods.lock() else { return false };
        match pods.get_mut(pod).and_then(|r| r.child.as_mut()) {
            Some(child) => child.start_kill().is_ok(),
            None => false,
        }
    }

    async fn restart_exited(self: &Arc<Self>) -> Result<(), String> {
        let exited: Vec<String> = {
            let mut pods = self.pods.lock().map_err(|_| "poisoned")?;
            pods.iter_mut()
                .filter(|(_, r)| !r.terminating)
                .filter_map(|(n, r)| {
                    let done = r.child.as_mut().is_none_or(|c| c.try_wait().ok().flatten().is_some());
                    done.then(|| n.clone())
                })
                .collect()
        };
        for pod in exited {
            let spawn = {
                let pods = self.pods.lock().map_err(|_| "poisoned")?;
                let Some(run) = pods.get(&pod) else { continue };
                PodRun {
                    owner: run.owner.clone(),
                    ordinal: run.ordinal,
                    template: run.template.clone(),
                    revision: run.revision.clone(),
                    netns: run.netns.clone(),
                    ip: run.ip,
                    dir: run.dir.clone(),
                    child: None,
                    ready: false,
                    terminating: false,
                    restarts: run.restarts + 1,
                }
            };
            self.note(format!("pod {pod} exited: restart {}", spawn.restarts));
            let child = self.spawn(&pod, &spawn).await;
            if let Ok(mut pods) = self.pods.lock()
                && let Some(run) = pods.get_mut(&pod)
                && !run.terminating
            {
                run.restarts = spawn.restarts;
                run.ready = false;
                run.child = child.ok();
            }
        }
        Ok(())
    }

    /// Runs every pod's readiness probe.
    async fn probe(&self) {
        let targets: Vec<(String, String)> = self
            .pods
            .lock()
            .map(|pods| {
                pods.iter()
                    .filter(|(_, r)| !r.terminating && r.child.is_some())
                    .filter_map(|(n, r)| {
                        let probe = container(&r.template)?.readiness_probe.as_ref()?.http_get.as_ref()?.clone();
                        let port = port_of(&r.template, &probe.port)?;
                        Some((n.clone(), format!("http://{}:{port}{}", r.ip, probe.path.unwrap_or_default())))
                    })
                    .collect()
            })
            .unwrap_or_default();
        for (pod, url) in targets {
            let ready = matches!(
                self.http.get(&url).timeout(Duration::from_secs(1)).send().await,
                Ok(r) if r.status().is_success()
            );
            if let Ok(mut pods) = self.pods.lock()
                && let Some(run) = pods.get_mut(&pod)
                && !run.terminating
            {
                if run.ready != ready {
                    self.note(format!("pod {pod} {}", if ready { "ready" } else { "not ready" }));
                }
                run.ready = ready;
            }
        }
    }

    /// Pod objects in the API, as the operator reads them.
    async fn publish(&self) -> Result<(), String> {
        let pods: Vec<(String, PodRun)> = {
            let p = self.pods.lock().map_err(|_| "poisoned")?;
            p.iter()
                .filter(|(_, r)| !r.terminating)
                .map(|(n, r)| {
                    (
                        n.clone(),
                        PodRun {
                            owner: r.owner.clone(),
                            ordinal: r.ordinal,
                            template: r.template.clone(),
                            revision: r.revision.clone(),
                            netns: r.netns.clone(),
                            ip: r.ip,
                            dir: r.dir.clone(),
                            child: None,
                            ready: r.ready,
                            terminating: false,
                            restarts: r.restarts,
                        },
                    )
                })
                .collect()
        };
        let api = self.api::<Pod>();
        for (name, run) in pods {
            let labels = run.template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
            let containers = run.template.spec.as_ref().map(|s| s.containers.clone()).unwrap_or_default();
            let ready = if run.ready { "True" } else { "False" };
            let object = json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": self.namespace, "labels": labels,
                    "annotations": {"phlox.dev/revision": run.revision}},
                "spec": {"containers": containers},
                "status": {"phase": "Running", "podIP": run.ip.to_string(),
                    "conditions": [{"type": "Ready", "status": ready}],
                    "containerStatuses": [{"name": "phlox", "ready": run.ready, "restartCount": run.restarts,
                        "image": "", "imageID": "", "started": true}]}
            });
            let known = self.published.lock().map_err(|_| "poisoned")?.contains(&name);
            if known {
                let status = json!({"status": object["status"].clone()});
                let _ = api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await;
            } else {
                let pod: Pod = serde_json::from_value(object).map_err(|e| e.to_string())?;
                match api.create(&PostParams::default(), &pod).await {
                    Ok(_) => {
                        self.published.lock().map_err(|_| "poisoned")?.insert(name);
                    }
                    Err(e) => return Err(format!("publish pod {name}: {e}")),
                }
            }
        }
        Ok(())
    }

    async fn report_status(&self, stateful_sets: &[StatefulSet], deployments: &[Deployment]) -> Result<(), String> {
        let counts = |kind: &'static str, name: &str, revision: &str| {
            let pods = self.pods.lock().map(|p| {
                p.values()
                    .filter(|r| r.owner.kind == kind && r.owner.name == name && !r.terminating)
                    .map(|r| (r.revision == revision, r.ready))
                    .collect::<Vec<_>>()
            });
            let pods = pods.unwrap_or_default();
            let total = pods.len() as i32;
            let ready = pods.iter().filter(|(_, r)| *r).count() as i32;
            let updated = pods.iter().filter(|(u, _)| *u).count() as i32;
            (total, ready, updated)
        };
        for s in stateful_sets {
            let Some(spec) = &s.spec else { continue };
            let revision = template_revision(&spec.template);
            let (total, ready, updated) = counts("StatefulSet", &s.name_any(), &revision);
            let current = if updated == total { revision.clone() } else { format!("{revision}-previous") };
            let status = json!({"status": {"observedGeneration": s.metadata.generation, "replicas": total,
                "readyReplicas": ready, "updatedReplicas": updated, "currentReplicas": total,
                "availableReplicas": ready, "currentRevision": current, "updateRevision": revision}});
            if s.status.as_ref().map(|st| serde_json::to_value(st).unwrap_or_default())
                != Some(status["status"].clone())
            {
                let _ = self
                    .api::<StatefulSet>()
                    .patch_status(&s.name_any(), &PatchParams::default(), &Patch::Merge(&status))
                    .await;
            }
        }
        for d in deployments {
            let Some(spec) = &d.spec else { continue };
            let revision = template_revision(&spec.template);
            let (total, ready, updated) = counts("Deployment", &d.name_any(), &revision);
            let status = json!({"status": {"observedGeneration": d.metadata.generation, "replicas": total,
                "readyReplicas": ready, "updatedReplicas": updated, "availableReplicas": ready}});
            if d.status.as_ref().map(|st| serde_json::to_value(st).unwrap_or_default())
                != Some(status["status"].clone())
            {
                let _ = self
                    .api::<Deployment>()
                    .patch_status(&d.name_any(), &PatchParams::default(), &Patch::Merge(&status))
                    .await;
            }
        }
        Ok(())
    }

    /// Names for every Service, virtual addresses and balancers for the
    /// ClusterIP ones.
    async fn wire_services(&self, services: &[Service], stateful_sets: &[StatefulSet]) -> Result<(), String> {
        let pods: Vec<Endpoint> = self
            .pods
            .lock()
            .map_err(|_| "poisoned")?
            .iter()
            .filter(|(_, r)| !r.terminating)
            .map(|(n, r)| Endpoint {
                pod: n.clone(),
                labels: r.template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default(),
                template: r.template.clone(),
                ip: r.ip,
                ready: r.ready,
            })
            .collect();
        let mut hosts: Vec<(String, Ipv4Addr)> = Vec::new();
        let ns = &self.namespace;
        for svc in services {
            let name = svc.name_any();
            let Some(spec) = &svc.spec else { continue };
            let selector = spec.selector.clone().unwrap_or_default();
            let not_ready = spec.publish_not_ready_addresses == Some(true);
            let members: Vec<&Endpoint> =
                pods.iter().filter(|e| selector_matches(&selector, &e.labels) && (e.ready || not_ready)).collect();
            let names = [format!("{name}.{ns}.svc"), format!("{name}.{ns}.svc.cluster.local"), format!("{name}.{ns}")];
            if spec.cluster_ip.as_deref() == Some("None") {
                for e in &members {
                    for n in &names {
                        hosts.push((n.clone(), e.ip));
                    }
                }
                // Stable names of the StatefulSet pods this Service governs.
                for s in stateful_sets
                    .iter()
                    .filter(|s| s.spec.as_ref().and_then(|s| s.service_name.as_deref()) == Some(name.as_str()))
                {
                    let prefix = format!("{}-", s.name_any());
                    for e in pods.iter().filter(|e| e.pod.starts_with(&prefix)) {
                        hosts.push((format!("{}.{name}.{ns}.svc", e.pod), e.ip));
                        hosts.push((format!("{}.{name}.{ns}.svc.cluster.local", e.pod), e.ip));
                    }
                }
                continue;
            }
            // ClusterIP: one virtual address, a balancer per port.
            let vip = self.service_vip(&name)?;
            for n in &names {
                hosts.push((n.clone(), vip));
            }
            for port in spec.ports.iter().flatten() {
                let Ok(service_port) = u16::try_from(port.port) else { continue };
                let target = port
                    .target_port
                    .clone()
                    .unwrap_or(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(port.port));
                let backends: Vec<SocketAddr> = members
                    .iter()
                    .filter(|e| e.ready)
                    .filter_map(|e| port_of(&e.template, &target).map(|p| SocketAddr::from((e.ip, p))))
                    .collect();
                self.balance(&name, vip, service_port, backends).await?;
            }
        }
        self.net.write_hosts(&hosts)
    }

    fn service_vip(&self, name: &str) -> Result<Ipv4Addr, String> {
        let mut services = self.services.lock().map_err(|_| "poisoned")?;
        if let Some(s) = services.get(name) {
            return Ok(s.vip);
        }
        let vip = self.net.add_service_address()?;
        services.insert(name.to_owned(), ServiceRun { vip, ports: BTreeMap::new() });
        Ok(vip)
    }

    /// Sets the backends of a Service port's balancer, starting it if new.
    async fn balance(&self, service: &str, vip: Ipv4Addr, port: u16, backends: Vec<SocketAddr>) -> Result<(), String> {
        let existing =
            self.services.lock().map_err(|_| "poisoned")?.get(service).and_then(|s| s.ports.get(&port).cloned());
        if let Some(b) = existing {
            *b.lock().map_err(|_| "poisoned")? = backends;
            return Ok(());
        }
        let listener =
            tokio::net::TcpListener::bind((vip, port)).await.map_err(|e| format!("{service} {vip}:{port}: {e}"))?;
        let shared = Arc::new(Mutex::new(backends));
        let b = Arc::clone(&shared);
        tokio::spawn(async move {
            let mut next = 0usize;
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { return };
                let target = b.lock().ok().and_then(|v| (!v.is_empty()).then(|| v[next % v.len()]));
                next = next.wrapping_add(1);
                let Some(target) = target else { continue };
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        if let Some(s) = self.services.lock().map_err(|_| "poisoned")?.get_mut(service) {
            s.ports.insert(port, shared);
        }
        Ok(())
    }

    /// Stops every pod now (SIGKILL): the end of a run.
    pub fn shutdown(&self) {
        if let Ok(mut pods) = self.pods.lock() {
            for (_, mut run) in std::mem::take(&mut *pods) {
                if let Some(c) = run.child.as_mut() {
                    let _ = c.start_kill();
                }
                self.net.remove_pod(&run.netns);
            }
        }
    }
}

fn write_in_place(path: &Path, text: &str) -> Result<(), String> {
    if std::fs::read_to_string(path).ok().as_deref() == Some(text) {
        return Ok(());
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}
