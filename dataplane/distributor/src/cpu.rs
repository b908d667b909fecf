//! The decode pool: decompression, decoding, conversion and the per-series
//! split of ingested profiles run here, on blocking threads, never on the
//! async runtime's workers (which also answer `/ready`, `/metrics` and, in
//! `--target all`, Raft heartbeats). At most one request per CPU runs at a
//! time; requests beyond wait in a bounded queue, and beyond the queue are
//! refused with 429 so a client backs off instead of piling up memory.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Semaphore;

use crate::PushError;
use crate::metrics::DistributorMetrics;

/// Bounded CPU pool for ingest work.
#[derive(Debug)]
pub struct CpuPool {
    permits: Semaphore,
    waiting: AtomicUsize,
    max_waiting: usize,
    metrics: DistributorMetrics,
}

impl CpuPool {
    /// `threads` requests run at once (the CPU limit); `max_waiting` more may wait.
    pub(crate) fn new(threads: usize, max_waiting: usize, metrics: DistributorMetrics) -> Self {
        CpuPool { permits: Semaphore::new(threads.max(1)), waiting: AtomicUsize::new(0), max_waiting, metrics }
    }

    /// The CPUs this process may use (its cgroup quota included).
    pub(crate) fn default_threads() -> usize {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    }

    /// Runs `work` on a blocking thread once a CPU is free; refuses with 429
    /// when the queue is full.
    pub async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, PushError> {
        let waiting = self.waiting.fetch_add(1, Ordering::AcqRel);
        if waiting >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            self.metrics.cpu_rejected.inc();
            return Err(PushError::ResourceExhausted(format!(
                "ingest is saturated: {waiting} requests are waiting for a CPU; retry later"
            )));
        }
        self.metrics.cpu_queued.inc();
        let permit = self.permits.acquire().await;
        self.metrics.cpu_queued.dec();
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        // The semaphore is never closed; a closed one would only lift the limit.
        let _permit = permit.ok();
        self.metrics.cpu_running.inc();
        let result = tokio::task::spawn_blocking(work).await;
        self.metrics.cpu_running.dec();
        result.map_err(|e| PushError::Unavailable(format!("decoding failed: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn runs_within_the_limit_and_refuses_beyond_the_queue() {
        let metrics = DistributorMetrics::new(&prometheus::Registry::new()).unwrap();
        let pool = Arc::new(CpuPool::new(1, 1, metrics.clone()));
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(std::sync::Mutex::new(gate));
        // One runs (blocked on the gate), one waits, the third is refused.
        let running = {
            let (pool, gate) = (Arc::clone(&pool), Arc::clone(&gate));
            tokio::spawn(async move { pool.run(move || gate.lock().unwrap().recv().unwrap()).await })
        };
        while metrics.cpu_running.get() == 0 {
            tokio::task::yield_now().await;
        }
        let waiting = {
            let pool = Arc::clone(&pool);
            tokio::spawn(async move { pool.run(|| 7).await })
        };
        while metrics.cpu_queued.get() == 0 {
            tokio::task::yield_now().await;
        }
        let refused = pool.run(|| 8).await.unwrap_err();
        assert_eq!(refused.http_status(), 429);
        assert_eq!(metrics.cpu_rejected.get(), 1);
        release.send(()).unwrap();
        running.await.unwrap().unwrap();
        assert_eq!(waiting.await.unwrap().unwrap(), 7);
        assert_eq!((metrics.cpu_queued.get(), metrics.cpu_running.get()), (0, 0));
    }
}
