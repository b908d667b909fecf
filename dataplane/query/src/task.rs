//! Spawned query work that stops when nobody waits for it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::task::{JoinError, JoinHandle};

/// A spawned task, aborted when dropped: when a query fails or its client
/// goes away, the plan nodes and leaves it started stop instead of running
/// to completion on the backends.
pub(crate) struct Task<T>(JoinHandle<T>);

impl<T: Send + 'static> Task<T> {
    pub(crate) fn spawn(f: impl Future<Output = T> + Send + 'static) -> Self {
        Self(tokio::spawn(f))
    }
}

impl<T> Future for Task<T> {
    type Output = Result<T, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use super::Task;

    #[tokio::test]
    async fn a_dropped_task_stops() {
        let finished = Arc::new(AtomicBool::new(false));
        let f = Arc::clone(&finished);
        let task = Task::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            f.store(true, Ordering::SeqCst);
        });
        drop(task);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!finished.load(Ordering::SeqCst));
        // An awaited one runs to its end.
        let v = Task::spawn(async { 7 }).await.unwrap();
        assert_eq!(v, 7);
    }
}
