//! Helpers of the end-to-end tests: start the real `phlox` binary on free
//! ports, push what real clients push, kill it, read its data back with
//! `phlox dump`, and compute what the answer must be from the inputs.
#![allow(clippy::unwrap_used, missing_docs)]

pub mod cluster;
pub mod fuzz;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use phlox_proto::push::v1::{PushRequest, RawProfileSeries, RawSample};
use phlox_proto::types::v1::LabelPair;
use prost::Message;

/// The `phlox` binary of this build: beside the running executable (a
/// binary such as `conformance`) or one level up (test executables live in
/// `target/<profile>/deps`).
pub fn phlox_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap();
    let bin = [dir.join("phlox"), dir.parent().unwrap().join("phlox")].into_iter().find(|b| b.exists());
    bin.unwrap_or_else(|| {
        panic!("no phlox binary beside {}: run `cargo build --bin phlox` first (make test does)", exe.display())
    })
}

/// A running `phlox` process.
#[derive(Debug)]
pub struct Phlox {
    child: Child,
    pub http: String,
    /// The internal gRPC address (`host:port`).
    pub grpc: String,
    /// The admin listener (`http://host:port`).
    pub admin: String,
    pub data_dir: PathBuf,
}

impl Phlox {
    /// Starts `phlox` on `data_dir` with free ports and waits until it is ready.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Phlox {
        Self::spawn(data_dir, extra).wait()
    }

    /// Starts `phlox` without waiting (for processes that need each other
    /// to become ready, as Raft voters do). Listen addresses default to
    /// free loopback ports unless `extra` sets them.
    pub fn spawn(data_dir: &Path, extra: &[&str]) -> Starting {
        let log = data_dir.with_extension("log");
        let mut cmd = Command::new(phlox_bin());
        cmd.arg("--data-dir").arg(data_dir);
        for flag in ["--http-listen-address", "--grpc-listen-address", "--admin-listen-address"] {
            if !extra.contains(&flag) {
                cmd.args([flag, "127.0.0.1:0"]);
            }
        }
        let mut child = cmd
            .args(["--log-format", "json"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut file = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = writeln!(file, "{line}");
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                    && v["message"] == "phlox is ready"
                {
                    let _ = tx.send((
                        v["http"].as_str().unwrap_or_default().to_owned(),
                        v["grpc"].as_str().unwrap_or_default().to_owned(),
                        v["admin"].as_str().unwrap_or_default().to_owned(),
                    ));
                }
            }
        });
        Starting { child, ready: rx, data_dir: data_dir.to_owned() }
    }

    /// SIGKILL: no flush, no goodbye.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "phlox exited with {status}");
    }

    /// Waits for the process to exit (after a signal) and says how.
    pub fn wait_exit(mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }

    /// Sends a signal (`HUP`, `TERM`...) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([&format!("-{signal}"), &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }

    /// The process's peak resident memory so far (`VmHWM`), bytes.
    pub fn peak_rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/<pid>/status");
        kb * 1024
    }

    /// The admin API's bearer token (generated in the data directory).
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("admin-token")).unwrap().trim().to_owned()
    }

    /// `Authorization` for the admin API.
    pub fn admin_auth(&self) -> String {
        format!("Bearer {}", self.admin_token())
    }

    pub fn push_url(&self) -> String {
        format!("{}/push.v1.PusherService/Push", self.http)
    }
}

/// A `phlox` process that is starting.
#[derive(Debug)]
pub struct Starting {
    child: Child,
    ready: std::sync::mpsc::Receiver<(String, String, String)>,
    data_dir: PathBuf,
}

impl Starting {
    /// Waits until the process logs that it is ready.
    pub fn wait(self) -> Phlox {
        let (http, grpc, admin) = self.ready.recv_timeout(Duration::from_secs(120)).unwrap_or_else(|_| {
            let log = self.data_dir.with_extension("log");
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            // The last lines that are not a backtrace's.
            let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with(' ')).collect();
            let tail = &lines[lines.len().saturating_sub(5)..];
            panic!("phlox did not become ready; see {}:\n{}", log.display(), tail.join("\n"))
        });
        Phlox {
            child: self.child,
            http: format!("http://{http}"),
            grpc,
            admin: format!("http://{admin}"),
            data_dir: self.data_dir,
        }
    }
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Drop for Phlox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `phlox dump` of a data directory (no server may run on it).
pub fn dump(data_dir: &Path, tenants: &[&str]) -> serde_json::Value {
    let mut cmd = Command::new(phlox_bin());
    cmd.arg("dump").arg("--data-dir").arg(data_dir);
    for t in tenants {
        cmd.args(["--tenant", t]);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "phlox dump failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A series as `phlox dump` prints it, keyed for comparison: labels →
/// profiles (id → (time, total, folded stacks)).
pub type Expected = BTreeMap<String, BTreeMap<String, (i64, i64, BTreeMap<String, i64>)>>;

/// The comparison key of a series: `tenant|{a="1", b="2"}`, names sorted.
pub fn series_key(tenant: &str, labels: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{tenant}|{{{}}}", pairs.join(", "))
}

/// Reads a dump into the [`Expected`] shape; panics if any (series, id)
/// appears twice (double counting).
pub fn dumped(v: &serde_json::Value) -> Expected {
    let mut out = Expected::new();
    for s in v["series"].as_array().unwrap() {
        let labels: BTreeMap<String, String> =
            s["labels"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned())).collect();
        let key = series_key(s["tenant"].as_str().unwrap(), &labels);
        let e = out.entry(key.clone()).or_default();
        for p in s["profiles"].as_array().unwrap() {
            let id = p["id"].as_str().unwrap().to_owned();
            let stacks =
                p["stacks"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_i64().unwrap())).collect();
            let prev = e.insert(id.clone(), (p["time_nanos"].as_i64().unwrap(), p["total"].as_i64().unwrap(), stacks));
            assert!(prev.is_none(), "profile {id} of {key} is stored twice");
        }
    }
    out
}

/// What the store must hold for a push, from a small model of Pyroscope's
/// rules written for the tests, independent of the write path (the pprof is
/// read with the plain generated protobuf types, not Phlox's decoder or its
/// `split`):
/// - one series per (sample type, set of string sample labels): the
///   request's labels, then the sample labels whose names the request does
///   not have (`span_id`, `trace_id` and `profile_id` never), `__delta__`
///   removed, `service_name` defaulting to `unknown_service`, and
///   `__profile_type__` = `name:type:unit:period_type:period_unit` with
///   `__type__`, `__unit__` and, when the profile has a period type,
///   `__period_type__` and `__period_unit__`;
/// - samples whose value is zero are left out, and a series with none is not
///   stored;
/// - stacks root first with inlined frames expanded (a location's lines are
///   innermost first), identical stacks summed;
/// - the profile's time, or `receive_time` when it has none.
pub fn expected(tenant: &str, request: &PushRequest, receive_time: i64) -> Expected {
    use phlox_proto::google::v1 as pprof;
    let mut out = Expected::new();
    for series in &request.series {
        let request_labels: BTreeMap<String, String> =
            series.labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect();
        for sample in &series.samples {
            let raw = plain_gunzip(&sample.raw_profile);
            let p = pprof::Profile::decode(raw.as_slice()).unwrap();
            let id = uuid::Uuid::parse_str(sample.id.trim()).unwrap().hyphenated().to_string();
            let s = |i: i64| p.string_table.get(i as usize).map(String::as_str).unwrap_or("");
            let functions: BTreeMap<u64, &str> = p.function.iter().map(|f| (f.id, s(f.name))).collect();
            let locations: BTreeMap<u64, &pprof::Location> = p.location.iter().map(|l| (l.id, l)).collect();
            let time = if p.time_nanos > 0 { p.time_nanos } else { receive_time };
            // (sample labels, sample type index) → (total, stacks)
            let mut groups: BTreeMap<(BTreeMap<String, String>, usize), (i64, Stacks)> = BTreeMap::new();
            for smp in &p.sample {
                let labels: BTreeMap<String, String> = smp
                    .label
                    .iter()
                    .filter(|l| l.str != 0 && !["span_id", "trace_id", "profile_id"].contains(&s(l.key)))
                    .map(|l| (s(l.key).to_owned(), s(l.str).to_owned()))
                    .collect();
                let mut names: Vec<&str> = Vec::new();
                for loc in smp.location_id.iter().rev() {
                    for line in locations[loc].line.iter().rev() {
                        names.push(functions.get(&line.function_id).copied().unwrap_or(""));
                    }
                }
                for (t, &v) in smp.value.iter().enumerate() {
                    if v == 0 {
                        continue;
                    }
                    let g = groups.entry((labels.clone(), t)).or_default();
                    g.0 += v;
                    *g.1.entry(names.join(";")).or_default() += v;
                }
            }
            let name = &request_labels["__name__"];
            let (period_type, period_unit) =
                p.period_type.as_ref().map(|pt| (s(pt.r#type), s(pt.unit))).unwrap_or(("", ""));
            for ((sample_labels, t), (total, mut stacks)) in groups {
                let vt = &p.sample_type[t];
                let (ty, unit) = (s(vt.r#type), s(vt.unit));
                let mut labels = request_labels.clone();
                for (k, v) in sample_labels {
                    labels.entry(k).or_insert(v);
                }
                labels.remove("__delta__");
                labels.entry("service_name".into()).or_insert_with(|| "unknown_service".into());
                labels.insert("__profile_type__".into(), format!("{name}:{ty}:{unit}:{period_type}:{period_unit}"));
                labels.insert("__type__".into(), ty.into());
                labels.insert("__unit__".into(), unit.into());
                if p.period_type.is_some() {
                    labels.insert("__period_type__".into(), period_type.into());
                    labels.insert("__period_unit__".into(), period_unit.into());
                } else {
                    labels.remove("__period_type__");
                    labels.remove("__period_unit__");
                }
                stacks.retain(|_, v| *v != 0);
                out.entry(series_key(tenant, &labels)).or_default().insert(id.clone(), (time, total, stacks));
            }
        }
    }
    out
}

/// Folded stack → value.
type Stacks = BTreeMap<String, i64>;

/// The bytes, gunzipped when they start with the gzip magic (the tests' own
/// inputs: no decompression budget needed).
#[allow(clippy::disallowed_methods)]
fn plain_gunzip(b: &[u8]) -> Vec<u8> {
    if b.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(b), &mut out).unwrap();
        out
    } else {
        b.to_vec()
    }
}

/// Merges expectations.
pub fn merge(into: &mut Expected, more: Expected) {
    for (k, v) in more {
        into.entry(k).or_default().extend(v);
    }
}

/// A push request of one series and one profile.
pub fn push_request(labels: &[(&str, &str)], raw_profile: Vec<u8>, id: &str) -> PushRequest {
    PushRequest {
        series: vec![RawProfileSeries {
            labels: labels.iter().map(|(n, v)| LabelPair { name: n.to_string(), value: v.to_string() }).collect(),
            samples: vec![RawSample { raw_profile: raw_profile.into(), id: id.to_owned() }],
            annotations: vec![],
        }],
    }
}

/// Standard base64 (the e2e crate keeps its dependencies minimal).
pub fn encode_base64(b: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in b.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            out.push(if i <= c.len() { T[((n >> (18 - 6 * i)) & 63) as usize] as char } else { '=' });
        }
    }
    out
}

pub fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

/// Pushes with the Connect protocol as the Python SDK does (gzip body).
pub async fn push(client: &reqwest::Client, url: &str, request: &PushRequest) -> Result<(u16, String), reqwest::Error> {
    let body = gzip(&request.encode_to_vec());
    push_raw(client, url, body, "gzip").await
}

pub async fn push_raw(
    client: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
    encoding: &str,
) -> Result<(u16, String), reqwest::Error> {
    let r = client
        .post(url)
        .header("Content-Type", "application/proto")
        .header("Content-Encoding", encoding)
        .body(body)
        .send()
        .await?;
    let status = r.status().as_u16();
    Ok((status, r.text().await?))
}

pub fn now_nanos() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64
}

/// The real SDK payloads of `testdata/captures` (see its README).
pub fn captures_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/captures"))
}

/// The captured Python SDK push requests.
pub fn python_captures() -> Vec<PushRequest> {
    ["python-pyroscope-io-1.4.0-push-1.pb.gz", "python-pyroscope-io-1.4.0-push-2.pb.gz"]
        .iter()
        .map(|f| {
            let body = std::fs::read(captures_dir().join(f)).unwrap();
            PushRequest::decode(plain_gunzip(&body).as_slice()).unwrap()
        })
        .collect()
}

/// A temp dir whose `data` subdirectory is the data dir.
pub fn data_dir() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("data");
    (t, d)
}

/// Calls a `querier.v1.QuerierService` method over Connect (binary proto)
/// as `tenant` (`X-Scope-OrgID`, ignored without multi-tenancy): the
/// decoded answer, or the status and body of an error.
pub async fn query<Req: Message, Resp: Message + Default>(
    base: &str,
    tenant: &str,
    method: &str,
    req: &Req,
) -> Result<Resp, (u16, String)> {
    let r = reqwest::Client::new()
        .post(format!("{base}/querier.v1.QuerierService/{method}"))
        .header("Content-Type", "application/proto")
        .header("Connect-Protocol-Version", "1")
        .header("X-Scope-OrgID", tenant)
        .body(req.encode_to_vec())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body = r.bytes().await.unwrap();
    if status != 200 {
        return Err((status, String::from_utf8_lossy(&body).into_owned()));
    }
    Ok(Resp::decode(body).unwrap())
}

/// Posts a Push body (Connect, binary proto) as `tenant` until it is acked,
/// as SDKs retry; with a fixed profile id, retries are idempotent.
pub async fn push_until_acked(client: &reqwest::Client, url: &str, tenant: &str, body: Vec<u8>) {
    for _ in 0..600 {
        let r = client
            .post(url)
            .header("Content-Type", "application/proto")
            .header("X-Scope-OrgID", tenant)
            .timeout(Duration::from_secs(60))
            .body(body.clone())
            .send()
            .await;
        if let Ok(r) = r
            && r.status().as_u16() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("a push was never acked");
}

/// A metric's value from a `/metrics` page, summed over its label sets.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter(|l| l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Processes of one cluster: a temporary directory, one config file whose
/// storage is a filesystem bucket in it, and a log and data dir per process.
#[derive(Debug)]
pub struct Processes {
    pub tmp: tempfile::TempDir,
    config: String,
}

impl Processes {
    /// `extra` is YAML appended to the config after the storage section.
    pub fn new(extra: &str) -> Self {
        let (tmp, _) = data_dir();
        let config = tmp.path().join("phlox.yaml");
        let yaml = format!(
            "storage:\n  backend: filesystem\n  filesystem:\n    dir: {}\n{extra}",
            tmp.path().join("bucket").display()
        );
        std::fs::write(&config, yaml).unwrap();
        let config = config.to_str().unwrap().to_owned();
        Self { tmp, config }
    }

    /// Starts `phlox` named `name` with the shared config and `args`, and waits until it is ready.
    pub fn start(&self, name: &str, args: &[&str]) -> Phlox {
        let mut all = vec!["--config", self.config.as_str()];
        all.extend_from_slice(args);
        Phlox::start(&self.tmp.path().join(name), &all)
    }

    /// The shared bucket directory.
    pub fn bucket(&self) -> PathBuf {
        self.tmp.path().join("bucket")
    }
}

/// Polls `check` every `every` until it gives a value; fails naming `what`
/// after `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, every: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(every).await;
    }
}

/// The total of a flame graph (SelectMergeStacktraces) of `tenant` over
/// `[start_ms, end_ms]` for `selector`.
pub async fn flame_total(
    base: &str,
    tenant: &str,
    profile_type: &str,
    selector: &str,
    start_ms: i64,
    end_ms: i64,
) -> i64 {
    let r: phlox_proto::querier::v1::SelectMergeStacktracesResponse = query(
        base,
        tenant,
        "SelectMergeStacktraces",
        &phlox_proto::querier::v1::SelectMergeStacktracesRequest {
            profile_type_id: profile_type.into(),
            label_selector: selector.into(),
            start: start_ms,
            end: end_ms,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    r.flamegraph.map_or(0, |f| f.total)
}
