//! The Phlox mixin: Grafana dashboards and Prometheus alerting rules for a
//! Phlox cluster. The alerts are kept as YAML (`config/mixin/alerts.yaml`,
//! tested with `promtool test rules`); the dashboards are defined here, one
//! panel per question an operator asks, and written as JSON by
//! `phlox-operator mixin <dir>` (`make mixin`) into `config/mixin/dashboards`
//! and the Helm chart. A test keeps the committed files equal to these.

use serde_json::{Value, json};

/// The alerting rules (a Prometheus rule file: `groups:`).
pub const ALERTS: &str = include_str!("../../config/mixin/alerts.yaml");

/// One time series of a panel: a PromQL expression and its legend.
struct Query(&'static str, &'static str);

/// One panel: its title, the question it answers, the unit of its values
/// (a Grafana unit id) and its queries.
struct Panel {
    title: &'static str,
    answers: &'static str,
    unit: &'static str,
    queries: Vec<Query>,
}

fn panel(title: &'static str, answers: &'static str, unit: &'static str, queries: Vec<Query>) -> Panel {
    Panel { title, answers, unit, queries }
}

/// A dashboard: file name (without `.json`), title and panels, two per row.
struct Dashboard {
    file: &'static str,
    title: &'static str,
    about: &'static str,
    panels: Vec<Panel>,
}

/// Every selector of a query is restricted to the chosen namespaces
/// (`$NS` in the query texts).
const NAMESPACE: &str = "namespace=~\"$namespace\"";

/// The routes whose duration is the ingest ack latency (`$ACK`).
const ACK_ROUTES: &str = "route=~\"/push.v1.PusherService/Push|/ingest|/pyroscope/ingest|/v1development/profiles|/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export\"";

fn dashboards() -> Vec<Dashboard> {
    vec![
        Dashboard {
            file: "phlox-writes",
            title: "Phlox / Writes",
            about: "The write path: distributors receive and refuse, segment writers buffer, flush and acknowledge.",
            panels: vec![
                panel(
                    "Ingest rate",
                    "How many profile bytes and profiles arrive, before any refusal?",
                    "binBps",
                    vec![
                        Query(
                            "sum by (encoding) (rate(phlox_distributor_received_bytes_total{$NS}[$__rate_interval]))",
                            "bytes ({{encoding}})",
                        ),
                        Query(
                            "sum(rate(phlox_segment_writer_ingested_bytes_total{$NS}[$__rate_interval]))",
                            "bytes written to segments",
                        ),
                    ],
                ),
                panel(
                    "Profiles received",
                    "How many profiles per second do clients send?",
                    "reqps",
                    vec![
                        Query(
                            "sum(rate(phlox_distributor_received_profiles_total{$NS}[$__rate_interval]))",
                            "received",
                        ),
                        Query("sum(rate(phlox_segment_writer_profiles_total{$NS}[$__rate_interval]))", "written"),
                        Query(
                            "sum(rate(phlox_segment_writer_deduplicated_profiles_total{$NS}[$__rate_interval]))",
                            "retries deduplicated",
                        ),
                    ],
                ),
                panel(
                    "Refusals by reason",
                    "What is refused, and why (rate limit, overload, bad input)?",
                    "reqps",
                    vec![Query(
                        "sum by (reason) (rate(phlox_distributor_discarded_profiles_total{$NS}[$__rate_interval]))",
                        "{{reason}}",
                    )],
                ),
                panel(
                    "Ack latency",
                    "How long does a client wait for its push to be durable and indexed?",
                    "s",
                    vec![
                        Query(
                            "histogram_quantile(0.99, sum by (le, route) (rate(phlox_request_duration_seconds_bucket{$NS, $ACK}[$__rate_interval])))",
                            "p99 {{route}}",
                        ),
                        Query(
                            "histogram_quantile(0.5, sum by (le, route) (rate(phlox_request_duration_seconds_bucket{$NS, $ACK}[$__rate_interval])))",
                            "p50 {{route}}",
                        ),
                    ],
                ),
                panel(
                    "Pushes by status",
                    "Which status codes do the write routes answer with?",
                    "reqps",
                    vec![Query(
                        "sum by (route, status_code) (rate(phlox_request_duration_seconds_count{$NS, $ACK}[$__rate_interval]))",
                        "{{route}} {{status_code}}",
                    )],
                ),
                panel(
                    "Segment flush",
                    "How long does a segment take to reach object storage and the index, and does it fail?",
                    "s",
                    vec![
                        Query(
                            "histogram_quantile(0.99, sum by (le) (rate(phlox_segment_writer_flush_duration_seconds_bucket{$NS}[$__rate_interval])))",
                            "p99 flush",
                        ),
                        Query(
                            "histogram_quantile(0.99, sum by (le) (rate(phlox_segment_writer_push_wait_seconds_bucket{$NS}[$__rate_interval])))",
                            "p99 push wait",
                        ),
                        Query(
                            "sum(rate(phlox_segment_writer_failed_flushes_total{$NS}[$__rate_interval]))",
                            "failed flushes/s",
                        ),
                        Query(
                            "sum(rate(phlox_segment_writer_upload_retries_total{$NS}[$__rate_interval]))",
                            "upload retries/s",
                        ),
                    ],
                ),
                panel(
                    "Writer load",
                    "Is the load spread over the writers, and is any of them saturated?",
                    "binBps",
                    vec![Query(
                        "sum by (pod) (rate(phlox_segment_writer_ingested_bytes_total{$NS}[$__rate_interval]))",
                        "{{pod}}",
                    )],
                ),
                panel(
                    "Writer buffers",
                    "How much does each writer hold before a flush, and how many pushes wait?",
                    "bytes",
                    vec![
                        Query("sum by (pod) (phlox_segment_writer_buffered_bytes{$NS})", "buffered {{pod}}"),
                        Query("sum by (pod) (phlox_segment_writer_inflight_pushes{$NS})", "in-flight pushes {{pod}}"),
                    ],
                ),
                panel(
                    "Dead-lettered blocks",
                    "Do writers fail to register segments with the metastore?",
                    "short",
                    vec![Query(
                        "sum(increase(phlox_segment_writer_dlq_blocks_total{$NS}[$__rate_interval]))",
                        "blocks left in dlq/",
                    )],
                ),
                panel(
                    "Distributor decode queue",
                    "Is profile decoding CPU-bound on the distributors?",
                    "short",
                    vec![
                        Query("sum(phlox_distributor_cpu_running{$NS})", "decoding"),
                        Query("sum(phlox_distributor_cpu_queued{$NS})", "queued"),
                        Query("sum(rate(phlox_distributor_cpu_rejected_total{$NS}[$__rate_interval]))", "rejected/s"),
                    ],
                ),
            ],
        },
        Dashboard {
            file: "phlox-reads",
            title: "Phlox / Reads",
            about: "The read path: the query frontend plans, query backends read blocks.",
            panels: vec![
                panel(
                    "Query latency by method",
                    "How long do queries take, per API method?",
                    "s",
                    vec![
                        Query(
                            "histogram_quantile(0.99, sum by (le, method) (rate(phlox_query_frontend_request_duration_seconds_bucket{$NS}[$__rate_interval])))",
                            "p99 {{method}}",
                        ),
                        Query(
                            "histogram_quantile(0.5, sum by (le, method) (rate(phlox_query_frontend_request_duration_seconds_bucket{$NS}[$__rate_interval])))",
                            "p50 {{method}}",
                        ),
                    ],
                ),
                panel(
                    "Queries by method and code",
                    "How many queries arrive, and how many fail?",
                    "reqps",
                    vec![Query(
                        "sum by (method, code) (rate(phlox_query_frontend_request_duration_seconds_count{$NS}[$__rate_interval]))",
                        "{{method}} {{code}}",
                    )],
                ),
                panel(
                    "Backend slots and queue",
                    "Do the query backends have free slots, or do leaves queue?",
                    "short",
                    vec![
                        Query("sum(phlox_query_backend_leaf_slots{$NS})", "slots"),
                        Query("sum(phlox_query_backend_inflight_leaves{$NS})", "executing"),
                        Query("sum(phlox_query_backend_queued_leaves{$NS})", "queued"),
                    ],
                ),
                panel(
                    "Backend busy ratio",
                    "What share of the backends' slot time is spent reading?",
                    "percentunit",
                    vec![Query(
                        "sum(rate(phlox_query_backend_busy_seconds_total{$NS}[$__rate_interval])) / sum(phlox_query_backend_leaf_slots{$NS})",
                        "busy",
                    )],
                ),
                panel(
                    "Leaf latency",
                    "How long does reading one block take?",
                    "s",
                    vec![
                        Query(
                            "histogram_quantile(0.99, sum by (le) (rate(phlox_query_backend_leaf_duration_seconds_bucket{$NS}[$__rate_interval])))",
                            "p99",
                        ),
                        Query(
                            "histogram_quantile(0.5, sum by (le) (rate(phlox_query_backend_leaf_duration_seconds_bucket{$NS}[$__rate_interval])))",
                            "p50",
                        ),
                    ],
                ),
                panel(
                    "Symbol cache hit ratio",
                    "How often do backends find a dataset's decoded symbols in memory?",
                    "percentunit",
                    vec![Query(
                        "sum(rate(phlox_query_backend_symbol_cache_requests_total{$NS, result=\"hit\"}[$__rate_interval])) / sum(rate(phlox_query_backend_symbol_cache_requests_total{$NS}[$__rate_interval]))",
                        "hit ratio",
                    )],
                ),
                panel(
                    "Datasets read",
                    "How much do the series indexes save (datasets skipped without reading)?",
                    "short",
                    vec![Query(
                        "sum by (outcome) (rate(phlox_query_backend_datasets_total{$NS}[$__rate_interval]))",
                        "{{outcome}}",
                    )],
                ),
            ],
        },
        Dashboard {
            file: "phlox-metastore",
            title: "Phlox / Metastore",
            about: "The Raft metastore: leadership, commits, the block index, compaction and dead letters.",
            panels: vec![
                panel(
                    "Leader",
                    "Which voter leads (2 = leader), and does leadership change?",
                    "short",
                    vec![Query("max by (pod) (phlox_metastore_raft_state{$NS})", "{{pod}}")],
                ),
                panel(
                    "Raft term",
                    "Do elections happen (each one raises the term)?",
                    "short",
                    vec![Query("max(phlox_metastore_raft_term{$NS})", "term")],
                ),
                panel(
                    "Commit latency by command",
                    "How long does a write take to commit and apply?",
                    "s",
                    vec![Query(
                        "histogram_quantile(0.99, sum by (le, command) (rate(phlox_metastore_apply_duration_seconds_bucket{$NS}[$__rate_interval])))",
                        "p99 {{command}}",
                    )],
                ),
                panel(
                    "Block index size",
                    "How many blocks does the index hold?",
                    "short",
                    vec![
                        Query("max(phlox_metastore_blocks{$NS})", "blocks"),
                        Query("max(phlox_metastore_dedup_keys{$NS})", "dedup keys"),
                    ],
                ),
                panel(
                    "Compaction backlog by level",
                    "How many compaction jobs wait for a worker, per level?",
                    "short",
                    vec![
                        Query(
                            "max by (level) (phlox_metastore_compaction_jobs{$NS, state=\"waiting\"})",
                            "waiting L{{level}}",
                        ),
                        Query(
                            "max by (level) (phlox_metastore_compaction_jobs{$NS, state=\"leased\"})",
                            "leased L{{level}}",
                        ),
                    ],
                ),
                panel(
                    "Compaction jobs by result",
                    "Do workers finish their jobs?",
                    "short",
                    vec![Query(
                        "sum by (result) (rate(phlox_compaction_worker_jobs_total{$NS}[$__rate_interval]))",
                        "{{result}}",
                    )],
                ),
                panel(
                    "Dead-letter queue",
                    "Are blocks waiting in dlq/, and does the leader replay them?",
                    "short",
                    vec![
                        Query("max(phlox_metastore_dlq_entries{$NS})", "entries left"),
                        Query("sum(increase(phlox_metastore_dlq_recovered_total{$NS}[$__rate_interval]))", "recovered"),
                    ],
                ),
                panel(
                    "Snapshots and log",
                    "How big are snapshots, and how fast does the Raft log grow?",
                    "bytes",
                    vec![
                        Query("max by (pod) (phlox_metastore_snapshot_bytes{$NS})", "snapshot {{pod}}"),
                        Query(
                            "sum by (pod) (rate(phlox_metastore_log_bytes_total{$NS}[$__rate_interval]))",
                            "log bytes/s {{pod}}",
                        ),
                    ],
                ),
            ],
        },
        Dashboard {
            file: "phlox-operator",
            title: "Phlox / Operator",
            about: "The operator: reconciles, autoscaler decisions, scale events and writer drains.",
            panels: vec![
                panel(
                    "Reconciles",
                    "Does the operator reconcile, and does it fail?",
                    "short",
                    vec![
                        Query(
                            "sum by (result) (rate(phlox_operator_reconciles_total{$NS}[$__rate_interval]))",
                            "{{result}}",
                        ),
                        Query(
                            "sum by (reason) (rate(phlox_operator_reconcile_errors_total{$NS}[$__rate_interval]))",
                            "error: {{reason}}",
                        ),
                    ],
                ),
                panel(
                    "Reconcile duration",
                    "How long does one reconcile take?",
                    "s",
                    vec![Query(
                        "histogram_quantile(0.99, sum by (le) (rate(phlox_operator_reconcile_duration_seconds_bucket{$NS}[$__rate_interval])))",
                        "p99",
                    )],
                ),
                panel(
                    "Autoscaler decisions",
                    "What does the autoscaler decide, and why?",
                    "short",
                    vec![Query(
                        "sum by (component, reason) (increase(phlox_operator_autoscaler_decisions_total{$NS}[$__rate_interval]))",
                        "{{component}} {{reason}}",
                    )],
                ),
                panel(
                    "Scale events",
                    "When did each component scale, and which way?",
                    "short",
                    vec![Query(
                        "sum by (component, direction) (increase(phlox_operator_scale_events_total{$NS}[$__rate_interval]))",
                        "{{component}} {{direction}}",
                    )],
                ),
                panel(
                    "Writer drains",
                    "Do segment writers drain before they are removed, and in time?",
                    "short",
                    vec![Query(
                        "sum by (outcome) (increase(phlox_operator_drains_total{$NS}[$__rate_interval]))",
                        "{{outcome}}",
                    )],
                ),
                panel(
                    "Leader and load reads",
                    "Which operator replica leads, and do its load reads fail?",
                    "short",
                    vec![
                        Query("max by (pod) (phlox_operator_leader{$NS})", "leader {{pod}}"),
                        Query(
                            "sum by (component) (rate(phlox_operator_metric_fetch_errors_total{$NS}[$__rate_interval]))",
                            "fetch errors {{component}}",
                        ),
                    ],
                ),
            ],
        },
    ]
}

/// A query's text: `$NS` is the namespace matcher, `$ACK` the write routes.
fn expr(template: &str) -> String {
    template.replace("$NS", NAMESPACE).replace("$ACK", ACK_ROUTES)
}

fn datasource() -> Value {
    json!({"type": "prometheus", "uid": "${datasource}"})
}

fn render(d: &Dashboard) -> Value {
    let panels: Vec<Value> = d
        .panels
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let targets: Vec<Value> = p
                .queries
                .iter()
                .enumerate()
                .map(|(j, q)| {
                    json!({
                        "datasource": datasource(),
                        "expr": expr(q.0),
                        "legendFormat": q.1,
                        "refId": char::from(b'A' + j as u8).to_string(),
                    })
                })
                .collect();
            json!({
                "id": i + 1,
                "type": "timeseries",
                "title": p.title,
                "description": p.answers,
                "datasource": datasource(),
                "gridPos": {"h": 8, "w": 12, "x": (i % 2) * 12, "y": (i / 2) * 8},
                "fieldConfig": {"defaults": {"unit": p.unit}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": true}, "tooltip": {"mode": "multi", "sort": "desc"}},
                "targets": targets,
            })
        })
        .collect();
    json!({
        "uid": d.file,
        "title": d.title,
        "description": d.about,
        "tags": ["phlox"],
        "editable": true,
        "schemaVersion": 39,
        "refresh": "30s",
        "time": {"from": "now-3h", "to": "now"},
        "timezone": "",
        "links": [{"type": "dashboards", "tags": ["phlox"], "asDropdown": true, "title": "Phlox", "includeVars": true, "keepTime": true}],
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus", "current": {}, "hide": 0},
            {"name": "namespace", "label": "Namespace", "type": "query", "datasource": datasource(),
             "query": {"query": "label_values(phlox_request_duration_seconds_count, namespace)", "refId": "namespace"},
             "definition": "label_values(phlox_request_duration_seconds_count, namespace)",
             "includeAll": true, "multi": true, "allValue": ".*", "current": {}, "refresh": 2, "hide": 0, "sort": 1},
        ]},
        "panels": panels,
    })
}

/// The dashboards as (file name, JSON text), as committed.
pub fn dashboard_files() -> Vec<(String, String)> {
    dashboards()
        .iter()
        .map(|d| {
            let text = serde_json::to_string_pretty(&render(d)).unwrap_or_default();
            (format!("{}.json", d.file), text + "\n")
        })
        .collect()
}

/// The names of the metrics a PromQL text refers to (Phlox's own:
/// `phlox_…`), e.g. to check that a running cluster exposes each of them.
pub fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("phlox_") {
        let start = i + at;
        let boundary = start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = start
            + text[start..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(text.len() - start);
        if boundary {
            names.insert(text[start..end].to_owned());
        }
        i = end;
    }
    names
}

/// `expr` with `namespace="<namespace>"` added to the selector of every
/// Phlox metric: the alerts of one cluster's PrometheusRule look at its own
/// pods only.
pub fn scoped_to_namespace(expr: &str, namespace: &str) -> String {
    let matcher = format!("namespace=\"{namespace}\"");
    let mut out = String::with_capacity(expr.len() + 64);
    let mut rest = expr;
    while let Some(at) = rest.find("phlox_") {
        let boundary = at == 0 || !rest[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
        let len = rest[at..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len() - at);
        out.push_str(&rest[..at + len]);
        rest = &rest[at + len..];
        if !boundary {
            continue;
        }
        if let Some(inner) = rest.strip_prefix('{') {
            out.push('{');
            out.push_str(&matcher);
            if !inner.trim_start().starts_with('}') {
                out.push_str(", ");
            }
            rest = inner;
        } else {
            out.push('{');
            out.push_str(&matcher);
            out.push('}');
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_are_scoped_to_one_namespace() {
        assert_eq!(
            scoped_to_namespace("sum(rate(phlox_a_total{x=\"1\"}[5m])) / sum(rate(phlox_b_total[5m])) > 0", "team-a"),
            "sum(rate(phlox_a_total{namespace=\"team-a\", x=\"1\"}[5m])) / sum(rate(phlox_b_total{namespace=\"team-a\"}[5m])) > 0"
        );
        assert_eq!(scoped_to_namespace("max(phlox_c{}) == 0", "n"), "max(phlox_c{namespace=\"n\"}) == 0");
        assert_eq!(scoped_to_namespace("not_phlox_d > 1", "n"), "not_phlox_d > 1");
    }

    #[test]
    fn metric_names_are_found_in_queries() {
        let names = metric_names("histogram_quantile(0.99, sum by (le) (rate(phlox_x_bucket{a=\"b\"}[5m]))) / phlox_y");
        assert_eq!(names.into_iter().collect::<Vec<_>>(), vec!["phlox_x_bucket", "phlox_y"]);
    }
}
