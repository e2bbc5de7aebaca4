//! Admission of query work (`--query.max-concurrent`, `--query.max-queued`): at most so many
//! queries and metadata reads run at once; the next ones wait in a bounded queue, in arrival
//! order, and past it are refused at once with 503, so a burst of heavy requests cannot pile
//! up without bound. A request that leaves the queue (its client gone) gives its place back.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use tokio::sync::{Semaphore, SemaphorePermit};

/// The gate every query and metadata request passes.
#[derive(Debug)]
pub struct Admission {
    slots: Semaphore,
    max_running: usize,
    max_queued: usize,
    queued: AtomicUsize,
    running: AtomicUsize,
    refused: AtomicU64,
    admitted: AtomicU64,
}

/// The queue was full: the request is refused with 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "too many queries: {running} running (--query.max-concurrent) and {queued} waiting (--query.max-queued); retry later"
)]
pub struct QueueFull {
    /// Queries running when it was refused.
    pub running: usize,
    /// Queries waiting when it was refused.
    pub queued: usize,
}

/// A running request's slot; given back when dropped.
#[derive(Debug)]
pub struct Admitted<'a> {
    _permit: SemaphorePermit<'a>,
    gate: &'a Admission,
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.gate.running.fetch_sub(1, Relaxed);
    }
}

/// Counts a waiting request until it is admitted or dropped.
struct Waiting<'a>(&'a Admission);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Relaxed);
    }
}

impl Admission {
    /// A gate running at most `max_running` requests (at least one) with `max_queued` more
    /// waiting.
    pub fn new(max_running: usize, max_queued: usize) -> Admission {
        let max_running = max_running.max(1);
        Admission {
            slots: Semaphore::new(max_running),
            max_running,
            max_queued,
            queued: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            admitted: AtomicU64::new(0),
        }
    }

    /// Waits for a slot, or fails at once when the queue is full.
    pub async fn enter(&self) -> Result<Admitted<'_>, QueueFull> {
        let permit = match self.slots.try_acquire() {
            Ok(p) => p,
            Err(_) => {
                let before = self.queued.fetch_add(1, Relaxed);
                let waiting = Waiting(self);
                if before >= self.max_queued {
                    drop(waiting);
                    self.refused.fetch_add(1, Relaxed);
                    return Err(QueueFull {
                        running: self.running.load(Relaxed),
                        queued: before,
                    });
                }
                // The semaphore is never closed, so acquiring only ends with a permit.
                let Ok(p) = self.slots.acquire().await else {
                    return Err(QueueFull {
                        running: self.running.load(Relaxed),
                        queued: before,
                    });
                };
                drop(waiting);
                p
            }
        };
        self.running.fetch_add(1, Relaxed);
        self.admitted.fetch_add(1, Relaxed);
        Ok(Admitted {
            _permit: permit,
            gate: self,
        })
    }

    /// Requests running now.
    pub fn running(&self) -> usize {
        self.running.load(Relaxed)
    }

    /// Requests waiting now.
    pub fn queued(&self) -> usize {
        self.queued.load(Relaxed)
    }
}

/// The gate's families, read at each scrape: Prometheus's engine gauges
/// (`prometheus_engine_queries`, `prometheus_engine_queries_concurrent_max`) and the queue's.
impl prometheus_client::collector::Collector for Admission {
    fn encode(&self, mut enc: prometheus_client::encoding::DescriptorEncoder) -> std::fmt::Result {
        use crate::metrics::{counter, gauge};
        let e = &mut enc;
        let (running, queued) = (self.running() as u64, self.queued() as u64);
        gauge(
            e,
            "prometheus_engine_queries",
            "The current number of queries being executed or waiting.",
            running + queued,
        )?;
        gauge(
            e,
            "prometheus_engine_queries_concurrent_max",
            "The max number of concurrent queries.",
            self.max_running as u64,
        )?;
        gauge(
            e,
            "gauntlet_query_running",
            "Queries and metadata reads running now.",
            running,
        )?;
        gauge(
            e,
            "gauntlet_query_queued",
            "Queries and metadata reads waiting for a slot (--query.max-concurrent).",
            queued,
        )?;
        gauge(
            e,
            "gauntlet_query_queue_limit",
            "Most requests that may wait (--query.max-queued).",
            self.max_queued as u64,
        )?;
        counter(
            e,
            "gauntlet_query_admitted_total",
            "Queries and metadata reads admitted.",
            self.admitted.load(Relaxed),
        )?;
        counter(
            e,
            "gauntlet_query_refused_total",
            "Queries and metadata reads refused with 503 because the queue was full.",
            self.refused.load(Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn past_the_slots_requests_wait_and_past_the_queue_they_are_refused() {
        let gate = std::sync::Arc::new(Admission::new(1, 1));
        let first = gate.enter().await.unwrap();
        assert_eq!(gate.running(), 1);
        let g = gate.clone();
        let waiter = tokio::spawn(async move {
            let _slot = g.enter().await.unwrap();
            g.running()
        });
        while gate.queued() == 0 {
            tokio::task::yield_now().await;
        }
        let full = gate.enter().await.unwrap_err();
        assert_eq!(full.queued, 1);
        drop(first);
        assert_eq!(waiter.await.unwrap(), 1);
        assert_eq!((gate.running(), gate.queued()), (0, 0));
    }

    #[tokio::test]
    async fn a_waiter_that_leaves_gives_its_place_back() {
        let gate = Admission::new(1, 1);
        let _first = gate.enter().await.unwrap();
        {
            let wait = gate.enter();
            tokio::pin!(wait);
            assert!(futures::poll!(wait.as_mut()).is_pending());
            assert_eq!(gate.queued(), 1);
        }
        assert_eq!(gate.queued(), 0);
    }
}
