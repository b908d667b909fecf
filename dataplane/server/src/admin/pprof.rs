//! `/debug/pprof/*` as Go's `net/http/pprof` serves them, so that Grafana
//! Alloy's `pyroscope.scrape` (`process_cpu` and `memory`) and `go tool
//! pprof` read Phlox unchanged: gzipped protobuf profiles, `seconds` for the
//! CPU profile (default 30, at most 60; one at a time, 409 while another is
//! taken, as by self-profiling).

use std::time::Duration;

use axum::extract::Query;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use phlox_introspect::{IntrospectError, MAX_CPU_PROFILE};
use serde::Deserialize;

/// Go's default CPU profile length.
const DEFAULT_SECONDS: u64 = 30;

pub(super) async fn index() -> Response {
    let text = "Profiles of this process (gzipped pprof):\n\
        /debug/pprof/profile?seconds=N  CPU, sampled at 100 Hz for N seconds (default 30, at most 60)\n\
        /debug/pprof/heap               heap: allocations since the start and live memory, sampled by jemalloc\n";
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}

#[derive(Debug, Deserialize)]
pub(super) struct CpuParams {
    seconds: Option<String>,
}

pub(super) async fn profile(Query(p): Query<CpuParams>) -> Response {
    let seconds = match p.seconds.as_deref().map(str::parse::<u64>) {
        None => DEFAULT_SECONDS,
        Some(Ok(s)) if (1..=MAX_CPU_PROFILE.as_secs()).contains(&s) => s,
        Some(_) => {
            let max = MAX_CPU_PROFILE.as_secs();
            return (StatusCode::BAD_REQUEST, format!("seconds must be a whole number from 1 to {max}\n"))
                .into_response();
        }
    };
    match phlox_introspect::cpu_profiler().profile(Duration::from_secs(seconds)).await {
        Ok(profile) => pprof_response("profile", &profile),
        Err(e) => error(e),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct HeapParams {
    debug: Option<String>,
}

pub(super) async fn heap(Query(p): Query<HeapParams>) -> Response {
    if p.debug.as_deref().is_some_and(|d| d != "0") {
        return (StatusCode::BAD_REQUEST, "only the protobuf form is served (debug=0)\n").into_response();
    }
    let taken = tokio::task::spawn_blocking(|| phlox_introspect::heap_profile()?.to_pprof(None)).await;
    match taken {
        Ok(Ok(profile)) => pprof_response("heap", &profile),
        Ok(Err(e)) => error(e),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("heap profile: {e}\n")).into_response(),
    }
}

fn pprof_response(name: &str, profile: &phlox_pprof::Profile) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        ],
        phlox_introspect::gzip(profile),
    )
        .into_response()
}

fn error(e: IntrospectError) -> Response {
    let status = match e {
        IntrospectError::Busy => StatusCode::CONFLICT,
        IntrospectError::HeapProfilingOff => StatusCode::NOT_IMPLEMENTED,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, format!("{e}\n")).into_response()
}
