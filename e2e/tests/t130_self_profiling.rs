//! Phlox profiles itself: `/debug/pprof/profile` and `/debug/pprof/heap`
//! from the real binary under load answer gzipped pprof as Go's
//! net/http/pprof does (what Alloy's `pyroscope.scrape` reads), holding
//! Phlox's own functions; with self-profiling on, the same profiles pushed
//! into Phlox give CPU and memory flame graphs of `service_name="phlox"`.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use phlox_e2e::*;
use phlox_pprof::Profile;

/// A profile as the endpoints serve it: gzip, then pprof.
fn decode(body: &[u8]) -> Profile {
    assert_eq!(&body[..2], &[0x1f, 0x8b], "not gzip");
    Profile::decode(&phlox_pprof::gunzip_capped(body, 256 << 20).unwrap()).unwrap()
}

fn sample_types(p: &Profile) -> Vec<String> {
    p.sample_types.iter().map(|t| format!("{}/{}", p.strings.str(t.r#type), p.strings.str(t.unit))).collect()
}

/// Function names of the samples with a non-zero value of type `t`.
fn functions_with_value(p: &Profile, t: usize) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for s in 0..p.sample_count() {
        if p.sample_value(s, t) == 0 {
            continue;
        }
        for &id in p.sample_location_ids(s) {
            let loc = p.location(id).unwrap();
            for line in &p.lines[loc.lines.start as usize..loc.lines.end as usize] {
                names.insert(p.strings.str(p.function(line.function_id).unwrap().name).to_owned());
            }
        }
    }
    names
}

fn phlox_own(names: &std::collections::BTreeSet<String>) -> Vec<&String> {
    names.iter().filter(|n| n.starts_with("phlox_") || n.starts_with("phlox::") || n.contains("<phlox_")).collect()
}

async fn get(url: &str) -> (u16, String, Vec<u8>) {
    let r = reqwest::get(url).await.unwrap();
    let status = r.status().as_u16();
    let content_type = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (status, content_type, r.bytes().await.unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_process_serves_its_profiles_and_pushes_them_into_itself() {
    let (tmp, data) = data_dir();
    let config = tmp.path().join("phlox.yaml");
    std::fs::write(&config, "self_profiling:\n  enabled: true\n  interval: 2s\n").unwrap();
    // The SDK captures are old: accept them (and at any rate).
    let phlox = Phlox::start(
        &data,
        &["--config", config.to_str().unwrap(), "--reject-older-than", "100000h", "--ingestion-rate-mb", "0"],
    );

    // Load: real SDK pushes from four clients, back to back, while the CPU
    // profile is taken.
    let captures = python_captures();
    let url = phlox.push_url();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..4)
        .map(|client_id| {
            let (stop, captures, url) = (std::sync::Arc::clone(&stop), captures.clone(), url.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut acked = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let mut req = captures[(acked % 2) as usize].clone();
                    for s in &mut req.series {
                        for sample in &mut s.samples {
                            sample.id = format!("load-{client_id}-{acked}");
                        }
                    }
                    let (status, body) = push(&client, &url, &req).await.unwrap();
                    assert_eq!(status, 200, "{body}");
                    acked += 1;
                }
                acked
            })
        })
        .collect();

    // Self-profiling takes its own CPU profiles at the same time: the
    // sampler is shared, and this request still gets its two seconds.
    let (status, content_type, body) = get(&format!("{}/debug/pprof/profile?seconds=2", phlox.http)).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(content_type, "application/octet-stream");
    let cpu = decode(&body);
    assert_eq!(sample_types(&cpu), ["samples/count", "cpu/nanoseconds"]);
    assert_eq!(cpu.period, 10_000_000);
    assert!((1_900_000_000..=3_000_000_000).contains(&cpu.duration_nanos), "{}", cpu.duration_nanos);
    let own = functions_with_value(&cpu, 0);
    assert!(!phlox_own(&own).is_empty(), "no Phlox frame among {} functions: {own:?}", own.len());

    let (status, _, body) = get(&format!("{}/debug/pprof/heap", phlox.http)).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let heap = decode(&body);
    assert_eq!(
        sample_types(&heap),
        ["alloc_objects/count", "alloc_space/bytes", "inuse_objects/count", "inuse_space/bytes"]
    );
    let live = functions_with_value(&heap, 3);
    assert!(!phlox_own(&live).is_empty(), "no Phlox frame holds live memory: {live:?}");

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for l in load {
        assert!(l.await.unwrap() > 0, "a client's pushes were never acknowledged");
    }

    // Bounded: a length out of range is refused, naming the range.
    for bad in ["0", "61", "ten"] {
        let (status, _, body) = get(&format!("{}/debug/pprof/profile?seconds={bad}", phlox.http)).await;
        assert_eq!(status, 400, "seconds={bad}");
        assert!(String::from_utf8_lossy(&body).contains("from 1 to 60"), "{}", String::from_utf8_lossy(&body));
    }

    // What self-profiling pushed is queryable as flame graphs of the
    // process's own code.
    let end = now_nanos() / 1_000_000 + 60_000;
    let start = end - 600_000;
    let flame = |profile_type: &'static str| {
        let http = phlox.http.clone();
        async move {
            let r: phlox_proto::querier::v1::SelectMergeStacktracesResponse = query(
                &http,
                "anonymous",
                "SelectMergeStacktraces",
                &phlox_proto::querier::v1::SelectMergeStacktracesRequest {
                    profile_type_id: profile_type.into(),
                    label_selector: "{service_name=\"phlox\", target=\"all\"}".into(),
                    start,
                    end,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
            r.flamegraph.filter(|f| f.total > 0 && f.names.iter().any(|n| n.starts_with("phlox")))
        }
    };
    let cpu = eventually("a CPU flame graph of phlox", Duration::from_secs(60), Duration::from_secs(1), || {
        flame("process_cpu:cpu:nanoseconds:cpu:nanoseconds")
    })
    .await;
    assert!(cpu.total % 10_000_000 == 0, "CPU total {} is not whole 10 ms samples", cpu.total);
    let memory = eventually("a memory flame graph of phlox", Duration::from_secs(60), Duration::from_secs(1), || {
        flame("memory:inuse_space:bytes:space:bytes")
    })
    .await;
    assert!(memory.total > 1 << 20, "phlox holds {} bytes of live memory?", memory.total);

    let metrics = reqwest::get(format!("{}/metrics", phlox.http)).await.unwrap().text().await.unwrap();
    assert!(metric(&metrics, "phlox_self_profiling_pushes_total{outcome=\"ok\"}") >= 1.0, "{metrics}");
    phlox.stop();
}
