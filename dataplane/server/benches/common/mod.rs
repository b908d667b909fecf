//! Starting the `phlox` binary for a benchmark: free loopback ports, JSON
//! logs, and the addresses from its "phlox is ready" line.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A started process and its addresses.
pub(crate) struct Started {
    pub(crate) child: Child,
    /// `http://host:port` of the public port.
    pub(crate) http: String,
    /// `host:port` of the internal gRPC port (not every benchmark dials it).
    #[allow(dead_code)]
    pub(crate) grpc: String,
}

#[allow(dead_code)]
/// Runs `cmd` (the binary, maybe behind `taskset`) on `data_dir` with
/// `args` and waits until it is ready.
pub(crate) fn spawn(cmd: Command, data_dir: &Path, args: &[&str]) -> Started {
    start(cmd, data_dir, args).wait()
}

/// A process started and not yet ready.
pub(crate) struct Starting {
    child: Child,
    ready: std::sync::mpsc::Receiver<(String, String)>,
}

impl Starting {
    /// Waits for the "phlox is ready" line (2 minutes at most).
    pub(crate) fn wait(self) -> Started {
        let (http, grpc) = self.ready.recv_timeout(Duration::from_secs(120)).unwrap();
        Started { child: self.child, http: format!("http://{http}"), grpc }
    }
}

/// Like [`spawn`], without waiting: processes that become ready only
/// together (Raft voters) start this way.
pub(crate) fn start(mut cmd: Command, data_dir: &Path, args: &[&str]) -> Starting {
    cmd.args(["--data-dir", data_dir.to_str().unwrap(), "--log-format", "json", "--log-level", "info"]).args([
        "--http-listen-address",
        "127.0.0.1:0",
        "--admin-listen-address",
        "127.0.0.1:0",
    ]);
    // A fixed gRPC address (a Raft peer's) when `args` has one.
    if !args.contains(&"--grpc-listen-address") {
        cmd.args(["--grpc-listen-address", "127.0.0.1:0"]);
    }
    let mut child = cmd.args(args).stderr(Stdio::piped()).spawn().unwrap();
    let (tx, ready) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && v["message"] == "phlox is ready"
            {
                let address = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
                let _ = tx.send((address("http"), address("grpc")));
            }
        }
    });
    Starting { child, ready }
}

#[allow(dead_code)]
/// CPU seconds process `pid` has used (user + system, from /proc; clock
/// ticks of 1/100 s, Linux's USER_HZ).
pub(crate) fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces) start after ')'.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |x| x.1).split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// A `/proc/<pid>/status` memory field (`VmHWM`, `VmRSS`) in bytes.
fn status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The peak resident memory of process `pid` so far (`VmHWM`), bytes.
#[allow(dead_code)]
pub(crate) fn peak_rss_bytes(pid: u32) -> u64 {
    status_bytes(pid, "VmHWM")
}

/// The resident memory of process `pid` now (`VmRSS`), bytes.
#[allow(dead_code)]
pub(crate) fn rss_bytes(pid: u32) -> u64 {
    status_bytes(pid, "VmRSS")
}
