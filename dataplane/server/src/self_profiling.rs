//! Self-profiling: every `self_profiling.interval` the process takes the
//! CPU profile of the interval and its heap profile (allocations of the
//! interval, live memory at its end) and pushes both to a distributor's
//! Push API, as any SDK would: `process_cpu` and `memory` of
//! `service_name`, labelled with this process's `target` and `instance`.

use std::time::Duration;

use phlox_config::SelfProfilingConfig;
use phlox_introspect::{HeapProfile, IntrospectError};
use phlox_proto::push::v1::{PushRequest, RawProfileSeries, RawSample};
use phlox_proto::types::v1::LabelPair;
use prometheus::{IntCounterVec, Opts, Registry};
use prost::Message;
use tracing::{debug, warn};

/// How long one push may take.
const PUSH_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct SelfProfiler {
    config: SelfProfilingConfig,
    /// `<base>/push.v1.PusherService/Push`.
    push_url: String,
    labels: Vec<(String, String)>,
    client: reqwest::Client,
    pushes: IntCounterVec,
}

impl SelfProfiler {
    /// `push_base` is `self_profiling.push_url`, or this process's own HTTP
    /// address when that is empty (the caller checks it runs a distributor).
    pub(crate) fn new(
        config: SelfProfilingConfig,
        push_base: &str,
        target: &str,
        registry: &Registry,
    ) -> anyhow::Result<Self> {
        let pushes = IntCounterVec::new(
            Opts::new(
                "phlox_self_profiling_pushes_total",
                "Self-profiling pushes by outcome (ok, error: refused or unreachable, skipped: the CPU sampler was busy).",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(pushes.clone()))?;
        let instance = std::env::var("POD_NAME")
            .ok()
            .filter(|p| !p.is_empty())
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_owned()))
            .unwrap_or_else(|| "unknown".into());
        let labels = vec![
            ("service_name".to_owned(), config.service_name.clone()),
            ("target".to_owned(), target.to_owned()),
            ("instance".to_owned(), instance),
        ];
        let client = reqwest::Client::builder().timeout(PUSH_TIMEOUT).build()?;
        let push_url = format!("{}/push.v1.PusherService/Push", push_base.trim_end_matches('/'));
        Ok(Self { config, push_url, labels, client, pushes })
    }

    pub(crate) fn spawn(self) {
        tokio::spawn(self.run());
    }

    async fn run(self) {
        let mut previous_heap: Option<HeapProfile> = None;
        loop {
            let cpu = match phlox_introspect::cpu_profiler().profile(self.config.interval).await {
                Ok(p) => Some(p),
                Err(IntrospectError::Busy) => {
                    // Someone is reading /debug/pprof/profile: this interval's
                    // CPU profile is theirs.
                    self.pushes.with_label_values(&["skipped"]).inc();
                    tokio::time::sleep(self.config.interval).await;
                    None
                }
                Err(e) => {
                    warn!(error = %e, "self-profiling: no CPU profile");
                    tokio::time::sleep(self.config.interval).await;
                    None
                }
            };
            let heap = match tokio::task::spawn_blocking(phlox_introspect::heap_profile).await {
                Ok(Ok(h)) => Some(h),
                Ok(Err(e)) => {
                    debug!(error = %e, "self-profiling: no heap profile");
                    None
                }
                Err(e) => {
                    warn!(error = %e, "self-profiling: the heap profile failed");
                    None
                }
            };
            let mut series = Vec::with_capacity(2);
            if let Some(cpu) = cpu {
                series.push(self.series("process_cpu", &cpu));
            }
            if let Some(heap) = heap {
                match heap.to_pprof(previous_heap.as_ref()) {
                    Ok(p) => series.push(self.series("memory", &p)),
                    Err(e) => warn!(error = %e, "self-profiling: unreadable heap profile"),
                }
                previous_heap = Some(heap);
            }
            if series.is_empty() {
                continue;
            }
            match self.push(PushRequest { series }).await {
                Ok(()) => self.pushes.with_label_values(&["ok"]).inc(),
                Err(e) => {
                    self.pushes.with_label_values(&["error"]).inc();
                    warn!(url = %self.push_url, error = %e, "self-profiling: push failed");
                }
            }
        }
    }

    fn series(&self, name: &str, profile: &phlox_pprof::Profile) -> RawProfileSeries {
        let mut labels = vec![LabelPair { name: "__name__".into(), value: name.into() }];
        labels.extend(self.labels.iter().map(|(n, v)| LabelPair { name: n.clone(), value: v.clone() }));
        RawProfileSeries {
            labels,
            samples: vec![RawSample {
                raw_profile: phlox_introspect::gzip(profile).into(),
                id: ulid::Ulid::new().to_string(),
            }],
            annotations: Vec::new(),
        }
    }

    async fn push(&self, request: PushRequest) -> anyhow::Result<()> {
        let mut post = self
            .client
            .post(&self.push_url)
            .header(reqwest::header::CONTENT_TYPE, "application/proto")
            .body(request.encode_to_vec());
        if !self.config.tenant.is_empty() {
            post = post.header("X-Scope-OrgID", &self.config.tenant);
        }
        if let Some(file) = &self.config.bearer_token_file {
            let token = tokio::fs::read_to_string(file).await?;
            post = post.bearer_auth(token.trim());
        }
        let response = post.send().await?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            anyhow::bail!("{status}: {}", body.trim());
        }
        Ok(())
    }
}
