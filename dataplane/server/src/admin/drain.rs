//! Draining a segment writer: it leaves the placement (its heartbeats say
//! `draining`, distributors stop routing to it), keeps acking what still
//! arrives for a grace period, flushes its last segments, and only then
//! reports itself drained (`GET /segment-writer/drain`,
//! `phlox_segment_writer_drained`). SIGTERM drains the same way.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use phlox_proto::metastore::v1::{HeartbeatRequest, SegmentWriterMember};
use phlox_proto::metastore_client::Metastore;
use phlox_segment_writer::SegmentWriter;
use prometheus::{IntGauge, Registry};
use tokio::sync::Notify;
use tracing::{info, warn};

/// How often a writer heartbeats.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(3);

/// One segment writer's membership and drain state.
pub(crate) struct Drain {
    writer: Arc<SegmentWriter>,
    metastore: Arc<dyn Metastore>,
    id: String,
    address: String,
    /// Time distributors get to see the draining flag (they re-read the
    /// membership every 2 s) before the last flush.
    grace: Duration,
    draining: AtomicBool,
    drained: AtomicBool,
    done: Notify,
    draining_gauge: IntGauge,
    drained_gauge: IntGauge,
}

impl Drain {
    pub(crate) fn new(
        writer: Arc<SegmentWriter>,
        metastore: Arc<dyn Metastore>,
        address: String,
        grace: Duration,
        registry: &Registry,
    ) -> anyhow::Result<Arc<Self>> {
        let draining_gauge = IntGauge::new("phlox_segment_writer_draining", "1 while this writer drains.")?;
        let drained_gauge =
            IntGauge::new("phlox_segment_writer_drained", "1 once this writer has left the placement and flushed.")?;
        registry.register(Box::new(draining_gauge.clone()))?;
        registry.register(Box::new(drained_gauge.clone()))?;
        Ok(Arc::new(Self {
            id: writer.id().to_owned(),
            writer,
            metastore,
            address,
            grace,
            draining: AtomicBool::new(false),
            drained: AtomicBool::new(false),
            done: Notify::new(),
            draining_gauge,
            drained_gauge,
        }))
    }

    async fn heartbeat(&self) {
        let request = HeartbeatRequest {
            member: Some(SegmentWriterMember {
                id: self.id.clone(),
                address: self.address.clone(),
                last_heartbeat: 0,
                draining: self.draining.load(Ordering::Acquire),
            }),
        };
        if let Err(e) = self.metastore.heartbeat(request).await {
            warn!(error = %e, "segment-writer heartbeat failed");
        }
    }

    /// Heartbeats every 3 s until the process ends.
    pub(crate) fn spawn_heartbeats(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(d) = me.upgrade() else { return };
                d.heartbeat().await;
                drop(d);
                tokio::time::sleep(HEARTBEAT_EVERY).await;
            }
        });
    }

    /// Drains (once; later calls wait for the first).
    pub(crate) async fn drain(self: &Arc<Self>) {
        if self.begin() {
            self.finish().await;
        } else {
            self.wait_drained().await;
        }
    }

    /// Marks the writer draining at once (so that the answer to a drain call
    /// already says so); true for the call that started the drain.
    fn begin(&self) -> bool {
        !self.draining.swap(true, Ordering::AcqRel)
    }

    async fn wait_drained(&self) {
        while !self.drained.load(Ordering::Acquire) {
            let notified = self.done.notified();
            if self.drained.load(Ordering::Acquire) {
                break;
            }
            notified.await;
        }
    }

    /// Leaves the placement, flushes, and reports drained.
    async fn finish(&self) {
        info!(writer = %self.id, "draining: leaving the placement");
        self.draining_gauge.set(1);
        self.heartbeat().await;
        tokio::time::sleep(self.grace).await;
        // Whatever still arrives now fails over to another writer.
        self.writer.shutdown().await;
        self.drained.store(true, Ordering::Release);
        self.drained_gauge.set(1);
        self.done.notify_waiters();
        info!(writer = %self.id, "drained");
    }

    fn state(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "draining": self.draining.load(Ordering::Acquire),
            "drained": self.drained.load(Ordering::Acquire),
        })
    }
}

/// `POST /segment-writer/drain`: starts draining, answers 202 at once.
pub(crate) async fn start(State(d): State<Arc<Drain>>) -> Response {
    if d.begin() {
        let task = Arc::clone(&d);
        tokio::spawn(async move { task.finish().await });
    }
    (StatusCode::ACCEPTED, Json(d.state())).into_response()
}

/// `GET /segment-writer/drain`: `{"draining": .., "drained": ..}`.
pub(crate) async fn status(State(d): State<Arc<Drain>>) -> Response {
    Json(d.state()).into_response()
}
