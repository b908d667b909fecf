//! What a new user meets first, tried as they would: the README's quick
//! start against a fresh server, input that must be refused with a message
//! that says what is wrong, start-up errors that name the file, port or
//! bucket and the fix, `--help` with defaults, the multi-tenancy switch, and
//! distributed mode from the README's flags alone.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use phlox_e2e::*;

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";

/// Runs `phlox ARGS` to its end (it must exit within 60 s).
fn run_to_exit(args: &[&str]) -> Output {
    let mut child = Command::new(phlox_bin())
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..600 {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    panic!("phlox {args:?} did not exit within 60 s");
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The total of a flame graph query (Connect JSON, as the README shows it).
async fn total(base: &str, tenant: &str, selector: &str) -> i64 {
    let now = now_nanos() / 1_000_000;
    let r = reqwest::Client::new()
        .post(format!("{base}/querier.v1.QuerierService/SelectMergeStacktraces"))
        .header("Content-Type", "application/json")
        .header("X-Scope-OrgID", tenant)
        .body(
            serde_json::json!({"profileTypeID": CPU, "labelSelector": selector, "start": now - 3_600_000, "end": now + 60_000})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    v["flamegraph"]["total"].as_str().map(|t| t.parse().unwrap()).unwrap_or(0)
}

async fn ingest(base: &str, tenant: &str, query: &str, body: &'static str) -> (u16, String) {
    let r = reqwest::Client::new()
        .post(format!("{base}/ingest?{query}"))
        .header("X-Scope-OrgID", tenant)
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The `sh` block under "## Quick start" in the README, run with bash
/// against a fresh server: every command succeeds and prints the answers
/// the block's profile implies (30 + 20 + 10 samples at 10 ms each).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_quick_start_works_as_written() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let start = readme.find("## Quick start").expect("README has a Quick start section");
    let block = &readme[start..];
    let body_start = block.find("```sh\n").unwrap() + 6;
    let body = &block[body_start..body_start + block[body_start..].find("```").unwrap()];
    assert!(body.contains("curl -g"), "the ingest example uses curl -g: {body}");
    let (_tmp, dir) = data_dir();
    let server = Phlox::start(&dir, &[]);
    let script = body.replace("http://localhost:4040", &server.http);
    let out = Command::new("bash").args(["-e", "-o", "pipefail", "-c", &script]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the quick start failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    // 60 samples of 10 ms: render's numTicks and the Connect total.
    assert!(stdout.contains(r#""numTicks":600000000"#), "{stdout}");
    assert!(stdout.contains(r#""total":"600000000""#), "{stdout}");
    assert!(stdout.contains(r#""names":["total","main","gc","handle","parse","render"]"#), "{stdout}");
    assert!(stdout.contains(&format!(r#"["{CPU}"]"#)), "{stdout}");
    assert!(stdout.contains(r#"["demo"]"#), "{stdout}");
    server.stop();
}

/// Input that is not what it claims is a 4xx naming the problem, and none
/// of it is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_the_reason() {
    let (_tmp, dir) = data_dir();
    let server = Phlox::start(&dir, &[]);
    let base = server.http.as_str();
    for (query, body, status, says) in [
        ("name=demo.cpu", "main;foo -5", 422, "line 1: count -5 is negative"),
        ("name=demo.cpu&format=folded", "main;ok 1\nmain;foo -5", 422, "line 2: count -5 is negative"),
        ("name=demo.cpu&format=xml", "main;foo 5", 400, r#"format=\"xml\" is not supported"#),
        ("name=demo.cpu&from=yesterday", "main;foo 5", 400, r#"from=\"yesterday\" is not a time"#),
        ("name=demo.cpu&until=soon", "main;foo 5", 400, r#"until=\"soon\" is not a time"#),
        ("name=demo.cpu&sampleRate=fast", "main;foo 5", 400, r#"sampleRate=\"fast\" is not a whole number"#),
    ] {
        let (got, text) = ingest(base, "anonymous", query, body).await;
        assert_eq!(got, status, "{query}: {text}");
        assert!(text.contains(says), "{query}: {text}");
    }
    let speedscope = r#"{"shared":{"frames":[{"name":"main"}]},"profiles":[{"type":"sampled","unit":"none","samples":[[0]],"weights":[-3]}]}"#;
    let (got, text) = ingest(base, "anonymous", "name=demo.cpu&format=speedscope", speedscope).await;
    assert_eq!(got, 422, "{text}");
    assert!(text.contains("weight 0 is -3"), "{text}");
    // Queries: a time that is not one, a profile type that is not one.
    for (query, says) in [
        (format!("query={CPU}%7B%7D&from=yesterday"), r#"from=\"yesterday\" is not a time"#),
        (format!("query={CPU}%7B%7D&until=later"), r#"until=\"later\" is not a time"#),
        (
            "query=cpu%7B%7D".to_owned(),
            "expected name:sample_type:sample_unit:period_type:period_unit, e.g. process_cpu:cpu:nanoseconds:cpu:nanoseconds",
        ),
    ] {
        let r = reqwest::get(format!("{base}/pyroscope/render?{query}")).await.unwrap();
        assert_eq!(r.status().as_u16(), 400, "{query}");
        let text = r.text().await.unwrap();
        assert!(text.contains(says), "{query}: {text}");
    }
    // Nothing of the above was stored; a good profile is, exactly.
    assert_eq!(total(base, "anonymous", "{}").await, 0);
    let (got, text) = ingest(base, "anonymous", "name=demo.cpu&sampleRate=100", "main;foo 5\nmain;bar 0").await;
    assert_eq!(got, 200, "{text}");
    assert_eq!(total(base, "anonymous", "{}").await, 5 * 10_000_000);
    server.stop();
}

/// Start-up failures say which file, port or bucket, and what to do; a
/// failed start leaves nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_errors_name_the_cause_and_the_fix() {
    let (tmp, dir) = data_dir();
    let server = Phlox::start(&dir, &[]);
    let d = dir.to_str().unwrap();
    let lock = dir.join("metastore/metastore.redb");
    let lock = lock.to_str().unwrap();
    // A second server, or `phlox dump`, on a data directory in use.
    for args in [
        vec![
            "--data-dir",
            d,
            "--http-listen-address",
            "127.0.0.1:0",
            "--grpc-listen-address",
            "127.0.0.1:0",
            "--admin-listen-address",
            "127.0.0.1:0",
        ],
        vec!["dump", "--data-dir", d],
    ] {
        let out = run_to_exit(&args);
        let err = stderr(&out);
        assert!(!out.status.success(), "{args:?}");
        assert_eq!(err.matches(lock).count(), 1, "names the locked file once: {err}");
        assert!(err.contains("is in use by another process") && err.contains("--data-dir"), "{err}");
        assert!(!err.contains("Database already open"), "{err}");
    }
    // A busy port: refused before the data directory is created.
    let busy = server.http.trim_start_matches("http://").to_owned();
    let fresh = tmp.path().join("fresh");
    let out = run_to_exit(&[
        "--data-dir",
        fresh.to_str().unwrap(),
        "--http-listen-address",
        &busy,
        "--grpc-listen-address",
        "127.0.0.1:0",
        "--admin-listen-address",
        "127.0.0.1:0",
    ]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("cannot listen on {busy} (HTTP APIs)")) && err.contains("--http-listen-address"),
        "{err}"
    );
    assert!(!fresh.exists(), "a failed start created {}", fresh.display());
    server.stop();
    // An unknown storage backend: one line naming the value and the choices.
    let out = run_to_exit(&["--storage-backend", "s4"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.matches("invalid value 's4' for '--storage-backend").count(), 1, "{err}");
    assert!(err.contains("[possible values: filesystem, s3, gcs, azure, memory]"), "{err}");
    assert!(!err.contains("line "), "no YAML line the user never wrote: {err}");
}

/// A bucket the process cannot write to stops the start with a message
/// naming it (a read-only bind mount in a private mount namespace: needs
/// root, as `make test` has; elsewhere the test says it is skipped).
#[test]
fn a_read_only_bucket_fails_the_start() {
    let unshare_ok = Command::new("unshare").args(["--mount", "true"]).status().is_ok_and(|s| s.success());
    if !unshare_ok {
        assert!(
            std::env::var_os("PHLOX_TEST_REQUIRE_UNSHARE").is_none(),
            "PHLOX_TEST_REQUIRE_UNSHARE is set (make test) but `unshare --mount` failed: run as root"
        );
        println!("SKIPPED: `unshare --mount` is not permitted here (needs root)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let bucket = tmp.path().join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    let b = bucket.to_str().unwrap();
    let script = format!(
        "mount --bind {b} {b} && mount -o remount,bind,ro {b} && exec \"$0\" --data-dir {data} \
         --storage-filesystem-dir {b} --http-listen-address 127.0.0.1:0 --grpc-listen-address 127.0.0.1:0 \
         --admin-listen-address 127.0.0.1:0",
        data = tmp.path().join("data").display()
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .arg(phlox_bin())
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains(&format!("the filesystem bucket {b} is not writable")), "{err}");
    assert!(err.contains("Read-only file system"), "{err}");
    assert!(!err.contains("phlox is ready"), "{err}");
}

/// `--help` shows each default; `phlox dump --help` only what dump takes.
#[test]
fn help_shows_defaults_and_dump_takes_only_its_flags() {
    let help = String::from_utf8(run_to_exit(&["--help"]).stdout).unwrap();
    for default in [
        "[default: all]",
        "[default: 0.0.0.0:4040]",
        "[default: 0.0.0.0:9095]",
        "[default: ./data]",
        "[default: filesystem]",
        "[default: 500ms]",
        "[default: 1h]",
        "[default: 4]",
        "[default: false]",
    ] {
        assert!(help.contains(default), "--help lacks {default}:\n{help}");
    }
    let dump = String::from_utf8(run_to_exit(&["dump", "--help"]).stdout).unwrap();
    for flag in ["--data-dir", "--config", "--tenant", "--storage-backend", "--storage-filesystem-dir"] {
        assert!(dump.contains(flag), "dump --help lacks {flag}:\n{dump}");
    }
    for flag in ["--http-listen-address", "--grpc-listen-address", "--target", "--query-backends", "--segment-duration"]
    {
        assert!(!dump.contains(flag), "dump --help lists the server flag {flag}:\n{dump}");
    }
}

/// `--multitenancy-enabled` alone turns multi-tenancy on: tenants are apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multitenancy_enabled_is_a_plain_switch() {
    let (_tmp, dir) = data_dir();
    let server = Phlox::start(&dir, &["--multitenancy-enabled"]);
    let base = server.http.as_str();
    assert_eq!(ingest(base, "acme", "name=shop.cpu&sampleRate=100", "main;a 3").await.0, 200);
    assert_eq!(ingest(base, "globex", "name=shop.cpu&sampleRate=100", "main;b 7").await.0, 200);
    assert_eq!(total(base, "acme", "{}").await, 3 * 10_000_000);
    assert_eq!(total(base, "globex", "{}").await, 7 * 10_000_000);
    let config = reqwest::get(format!("{base}/api/v1/status/config")).await.unwrap().text().await.unwrap();
    assert!(config.contains("multitenancy_enabled: true"), "{config}");
    server.stop();
    let (_tmp2, dir2) = data_dir();
    let off = Phlox::start(&dir2, &["--multitenancy-enabled=false"]);
    assert_eq!(ingest(&off.http, "acme", "name=shop.cpu&sampleRate=100", "main;a 3").await.0, 200);
    assert_eq!(total(&off.http, "someone-else", "{}").await, 3 * 10_000_000, "one tenant when off");
    off.stop();
}

/// The README's distributed recipe on loopback: three voters from flags
/// only, the other components in two more processes sharing a filesystem
/// bucket directory, a frontend without --query-backends saying it reads
/// in-process, and exact answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_mode_from_the_readme_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = tmp.path().join("shared-bucket");
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let peers = ports.iter().enumerate().map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1)).collect::<Vec<_>>().join(",");
    let voters: Vec<Starting> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let id = (i + 1).to_string();
            let grpc = format!("127.0.0.1:{p}");
            Phlox::spawn(
                &tmp.path().join(format!("voter-{id}")),
                &[
                    "--target",
                    "metastore",
                    "--metastore-node-id",
                    &id,
                    "--grpc-listen-address",
                    &grpc,
                    "--metastore-peers",
                    &peers,
                ],
            )
        })
        .collect();
    let voters: Vec<Phlox> = voters.into_iter().map(Starting::wait).collect();
    let metastores = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect::<Vec<_>>().join(",");
    let b = bucket.to_str().unwrap();
    let writer = Phlox::start(
        &tmp.path().join("writer"),
        &[
            "--target",
            "distributor,segment-writer,compaction-worker",
            "--metastore-address",
            &metastores,
            "--storage-filesystem-dir",
            b,
        ],
    );
    let reader_dir = tmp.path().join("reader");
    let reader = Phlox::start(
        &reader_dir,
        &["--target", "query-frontend", "--metastore-address", &metastores, "--storage-filesystem-dir", b],
    );
    for (service, body) in [("shop", "main;a 3\nmain;b 4"), ("cart", "main;c 5")] {
        let (status, text) =
            ingest(&writer.http, "anonymous", &format!("name={service}.cpu&sampleRate=100"), body).await;
        assert_eq!(status, 200, "{text}");
    }
    assert_eq!(total(&reader.http, "anonymous", "{service_name=\"shop\"}").await, 7 * 10_000_000);
    assert_eq!(total(&reader.http, "anonymous", "{}").await, 12 * 10_000_000);
    assert!(std::fs::read_dir(&bucket).unwrap().count() > 0, "objects went to the shared bucket");
    // Exactly one voter is the leader (phlox_metastore_raft_state 2).
    let mut leaders = 0;
    for v in &voters {
        let m = reqwest::get(format!("{}/metrics", v.http)).await.unwrap().text().await.unwrap();
        leaders += m.lines().filter(|l| l.starts_with("phlox_metastore_raft_state ") && l.ends_with(" 2")).count();
    }
    assert_eq!(leaders, 1);
    let log = std::fs::read_to_string(reader_dir.with_extension("log")).unwrap();
    assert!(log.contains("no --query-backends, so this process reads blocks from the bucket itself"), "{log}");
    reader.stop();
    writer.stop();
    for v in voters {
        v.stop();
    }
}
