//! A JFR recording of OpenJDK 17 (`testdata/captures`) through
//! `/ingest?format=jfr`, as a raw body and as the Java agent's multipart form.
#![allow(clippy::unwrap_used)]

use phlox_e2e::*;

/// What one CPU sample is worth: 1e9 / sampleRate, the upload's default 100
/// (as in Pyroscope; the recording's own 10 ms setting is not used).
const PERIOD: i64 = 10_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jfr_recordings_yield_java_frames_with_their_sample_counts() {
    let (_tmp, dir) = data_dir();
    // The recording is days old: the upload's from/until date it, not the
    // recording's own clock (no --reject-older-than needed).
    let server = Phlox::start(&dir, &["--ingestion-rate-mb", "0"]);
    let sent_at = now_nanos();
    let jfr = std::fs::read(captures_dir().join("jdk17-burn-profile-settings.jfr")).unwrap();
    let http = reqwest::Client::new();
    let r = http
        .post(format!(
            "{}/ingest?format=jfr&name=java.raw{{env=prod}}&spyName=javaspy&from=now-10&until=now",
            server.http
        ))
        .header("Content-Type", "application/octet-stream")
        .body(jfr.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
    // The agent's form: a `jfr` file part (gzip is detected inside it).
    let mut form = Vec::new();
    form.extend_from_slice(b"--b0undary\r\nContent-Disposition: form-data; name=\"jfr\"; filename=\"jfr\"\r\nContent-Type: application/octet-stream\r\n\r\n");
    form.extend_from_slice(&gzip(&jfr));
    form.extend_from_slice(b"\r\n--b0undary--\r\n");
    let r = http
        .post(format!("{}/ingest?format=jfr&name=java.form&spyName=javaspy&sampleRate=50", server.http))
        .header("Content-Type", "multipart/form-data; boundary=b0undary")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
    let r = http
        .post(format!("{}/ingest?format=jfr&name=java.bad", server.http))
        .body(b"FLR\0garbage".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    server.stop();

    let got = dump(&dir, &["anonymous"]);
    // java.form was sent with sampleRate=50: each sample is worth 20 ms.
    for (service, period) in [("java.raw", PERIOD), ("java.form", 2 * PERIOD)] {
        let s = got["series"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["labels"]["service_name"] == service && s["labels"]["__name__"] == "process_cpu")
            .unwrap_or_else(|| panic!("no CPU series for {service}: {got}"));
        assert_eq!(s["labels"]["__profile_type__"], "process_cpu:cpu:nanoseconds:cpu:nanoseconds");
        assert_eq!(s["labels"]["pyroscope_spy"], "javaspy");
        // The JDK's recorder has no async-profiler `event` setting: no `jfr_event` label.
        assert!(s["labels"].get("jfr_event").is_none(), "{s}");
        let mut total = 0;
        let mut burning = 0;
        for p in s["profiles"].as_array().unwrap() {
            let t = p["time_nanos"].as_i64().unwrap();
            assert!((sent_at - 15_000_000_000..=now_nanos()).contains(&t), "{service}: dated {t}, sent at {sent_at}");
            for (stack, v) in p["stacks"].as_object().unwrap() {
                let v = v.as_i64().unwrap();
                total += v;
                if stack.ends_with("Burn.burnJavaCycles") {
                    burning += v;
                }
            }
        }
        // 656 jdk.ExecutionSample events, as `jfr print` counts them, all in Burn.burnJavaCycles.
        assert_eq!(total, 656 * period, "{service}");
        assert_eq!(burning, total, "{service}");
    }
    let raw = got["series"].as_array().unwrap().iter().find(|s| s["labels"]["service_name"] == "java.raw").unwrap();
    assert_eq!(raw["labels"]["env"], "prod");
}
