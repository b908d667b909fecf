//! Reading a component's load: from its pods' `/metrics` (Prometheus text
//! format) or from a Prometheus HTTP API.

use std::collections::HashMap;
use std::time::Duration;

use phlox_autoscaler::Observation;

use crate::names::Component;

/// Time allowed for one scrape or query.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The load signal of an autoscaled component, and why it is a good one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Segment writers: uncompressed pprof MB/s pushed to each writer (the
    /// rate of `phlox_segment_writer_ingested_bytes_total`). Encoding,
    /// memory and upload cost all grow with it, and it is known before the
    /// writer saturates (unlike flush latency, which only grows once it has).
    IngestMegabytes,
    /// Query backends: read leaves executing or queued per backend
    /// (`phlox_query_backend_inflight_leaves` + `..._queued_leaves`), the
    /// concurrency the HPA's "requests in flight" models: it rises as soon as
    /// queries outrun the backends, and falls to zero when they are idle.
    Leaves,
}

impl Signal {
    /// The signal a component scales on.
    pub fn of(c: Component) -> Option<Self> {
        match c {
            Component::SegmentWriter => Some(Self::IngestMegabytes),
            Component::QueryBackend => Some(Self::Leaves),
            _ => None,
        }
    }

    /// How the status names it.
    pub fn description(self) -> &'static str {
        match self {
            Self::IngestMegabytes => "ingest MB/s per pod",
            Self::Leaves => "read leaves in flight or queued per pod",
        }
    }

    /// Target per pod when the CR sets none.
    pub fn default_target(self) -> f64 {
        match self {
            Self::IngestMegabytes => 8.0,
            Self::Leaves => 4.0,
        }
    }

    fn is_counter(self) -> bool {
        matches!(self, Self::IngestMegabytes)
    }

    /// The raw value in a `/metrics` page (a counter's total or a gauge).
    fn read(self, text: &str) -> Option<f64> {
        match self {
            Self::IngestMegabytes => sum_metric(text, "phlox_segment_writer_ingested_bytes_total").map(|b| b / 1e6),
            Self::Leaves => {
                let inflight = sum_metric(text, "phlox_query_backend_inflight_leaves")?;
                Some(inflight + sum_metric(text, "phlox_query_backend_queued_leaves").unwrap_or(0.0))
            }
        }
    }

    /// PromQL for the pool's total load, over the pods of `workload` in `namespace`.
    pub fn prometheus_query(self, namespace: &str, workload: &str) -> String {
        let sel = format!("namespace=\"{namespace}\",pod=~\"{workload}-[a-z0-9-]+\"");
        match self {
            Self::IngestMegabytes => format!("sum(rate(phlox_segment_writer_ingested_bytes_total{{{sel}}}[1m])) / 1e6"),
            Self::Leaves => format!(
                "sum(phlox_query_backend_inflight_leaves{{{sel}}}) + sum(phlox_query_backend_queued_leaves{{{sel}}})"
            ),
        }
    }
}

/// The sum of a metric's samples over its label sets; `None` when absent.
pub fn sum_metric(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else { continue };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        // The value follows the label set (which may contain spaces in values).
        let after_labels = match rest.strip_prefix('{') {
            Some(r) => match r.rfind('}') {
                Some(i) => &r[i + 1..],
                None => continue,
            },
            None => rest,
        };
        let Some(value) = after_labels.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        if value.is_finite() {
            *found.get_or_insert(0.0) += value;
        }
    }
    found
}

/// A pod the autoscaler reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodTarget {
    pub name: String,
    /// `http://<pod IP>:<http port>`.
    pub base_url: String,
    /// `http://<pod IP>:<admin port>` (drain; behind the admin token).
    pub admin_url: String,
    /// The pod's `Ready` condition.
    pub ready: bool,
}

/// GET `url` as text within [`FETCH_TIMEOUT`].
async fn get_text(http: &reqwest::Client, url: &str) -> Result<String, String> {
    let response = http.get(url).timeout(FETCH_TIMEOUT).send().await.map_err(|e| format!("{url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("{url}: HTTP {}", response.status()));
    }
    response.text().await.map_err(|e| format!("{url}: {e}"))
}

/// What one read of a pool gave.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// `None` when no pod (or Prometheus) gave a usable value.
    pub observation: Option<Observation>,
    /// Failed scrapes or queries.
    pub errors: Vec<String>,
}

/// Reads a pool's load; remembers each pod's last counter value to turn
/// counters into rates (a pod's first scrape gives no rate yet).
#[derive(Debug, Default)]
pub struct LoadReader {
    counters: HashMap<String, (f64, Duration)>,
}

impl LoadReader {
    /// Scrapes every ready pod's `/metrics` at monotonic time `now`.
    pub async fn scrape(
        &mut self,
        http: &reqwest::Client,
        signal: Signal,
        pods: &[PodTarget],
        now: Duration,
    ) -> Reading {
        let ready: Vec<&PodTarget> = pods.iter().filter(|p| p.ready).collect();
        let urls: Vec<String> = ready.iter().map(|p| format!("{}/metrics", p.base_url)).collect();
        let pages = futures::future::join_all(urls.iter().map(|u| get_text(http, u))).await;
        let (mut total, mut reporting, mut errors) = (0.0, 0, Vec::new());
        for (pod, page) in ready.iter().zip(pages) {
            let value = match page {
                Ok(text) => match signal.read(&text) {
                    Some(v) => v,
                    None => {
                        errors.push(format!("{}: no load metric on /metrics", pod.name));
                        continue;
                    }
                },
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            if !signal.is_counter() {
                total += value;
                reporting += 1;
                continue;
            }
            let previous = self.counters.insert(pod.name.clone(), (value, now));
            // A reset (restart) or a first scrape gives no rate.
            if let Some((before, at)) = previous
                && value >= before
                && now > at
            {
                total += (value - before) / (now - at).as_secs_f64();
                reporting += 1;
            }
        }
        self.counters.retain(|name, _| pods.iter().any(|p| &p.name == name));
        let observation = (reporting > 0).then_some(Observation { total, reporting_pods: reporting });
        Reading { observation, errors }
    }
}

/// The value of an instant PromQL query (the first sample of a vector, or
/// a scalar) from the Prometheus HTTP API at `base`.
pub async fn query_prometheus(http: &reqwest::Client, base: &str, query: &str) -> Result<f64, String> {
    let url = format!("{}/api/v1/query?query={}", base.trim_end_matches('/'), percent_encode(query));
    let text = get_text(http, &url).await?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{base}: not JSON: {e}"))?;
    if v["status"] != "success" {
        return Err(format!("{base}: {}", v["error"].as_str().unwrap_or("query failed")));
    }
    let data = &v["data"];
    let sample = match data["resultType"].as_str() {
        Some("vector") => data["result"].get(0).map(|r| &r["value"]),
        Some("scalar") => Some(&data["result"]),
        _ => None,
    };
    let value = sample
        .and_then(|s| s.get(1))
        .and_then(|s| s.as_str())
        .ok_or_else(|| format!("{base}: the query returned no sample"))?;
    value.parse::<f64>().ok().filter(|v| v.is_finite()).ok_or_else(|| format!("{base}: not a number: {value}"))
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_summed_over_label_sets() {
        let page = "# HELP x y\n# TYPE x counter\n\
                    phlox_query_backend_inflight_leaves 3\n\
                    phlox_query_backend_inflight_leaves_other 100\n\
                    phlox_query_backend_queued_leaves{a=\"b c}\"} 2\n\
                    phlox_query_backend_queued_leaves{a=\"d\"} 1.5\n";
        assert_eq!(sum_metric(page, "phlox_query_backend_inflight_leaves"), Some(3.0));
        assert_eq!(sum_metric(page, "phlox_query_backend_queued_leaves"), Some(3.5));
        assert_eq!(sum_metric(page, "absent"), None);
        assert_eq!(Signal::Leaves.read(page), Some(6.5));
        assert_eq!(Signal::Leaves.read("nothing 1\n"), None);
    }

    #[test]
    fn queries_are_percent_encoded() {
        assert_eq!(percent_encode("sum(x{a=\"b\"}) / 1e6"), "sum%28x%7Ba%3D%22b%22%7D%29%20%2F%201e6");
        assert!(
            Signal::IngestMegabytes.prometheus_query("ns", "c-segment-writer").contains("pod=~\"c-segment-writer-")
        );
    }
}
