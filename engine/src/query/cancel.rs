//! The end of a request's work: a [`Cancel`] token that the request's caller trips when its
//! client goes away (an HTTP connection closed, a gRPC call cancelled) and that also ends on
//! its own at the request's deadline. Every long loop of the read path (the evaluator, stores
//! reading blocks, the querier waiting on endpoints) checks it, so work nobody waits for stops
//! and gives back the memory it reserved.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Why a request's work was ended early.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Interrupted {
    /// The caller went away (its connection closed or its call was cancelled); nobody reads
    /// the answer, so none is made.
    #[error("request canceled by its client")]
    Canceled,
    /// The request's time (`--query.timeout` or the request's own `timeout`) ran out.
    #[error("request ran past its deadline of {0:?}")]
    DeadlineExceeded(Duration),
}

/// A cheap, cloneable token shared by everything working for one request. The default token
/// never ends: work that belongs to no request (compaction, tests) passes it.
#[derive(Debug, Clone, Default)]
pub struct Cancel {
    inner: Option<Arc<Inner>>,
}

#[derive(Debug)]
struct Inner {
    canceled: AtomicBool,
    /// When the work must end, with the timeout it came from (for the message).
    deadline: Option<(Instant, Duration)>,
}

impl Cancel {
    /// A token that ends when [`Cancel::cancel`] is called, or `timeout` from now when given.
    pub fn new(timeout: Option<Duration>) -> Cancel {
        Cancel {
            inner: Some(Arc::new(Inner {
                canceled: AtomicBool::new(false),
                deadline: timeout.map(|t| (Instant::now() + t, t)),
            })),
        }
    }

    /// A token that never ends.
    pub fn never() -> Cancel {
        Cancel::default()
    }

    /// Ends the work: every later [`Cancel::check`] fails with [`Interrupted::Canceled`].
    pub fn cancel(&self) {
        if let Some(i) = &self.inner {
            i.canceled.store(true, Ordering::Relaxed);
        }
    }

    /// Why the work must end now, if it must.
    pub fn interrupted(&self) -> Option<Interrupted> {
        let i = self.inner.as_ref()?;
        if i.canceled.load(Ordering::Relaxed) {
            return Some(Interrupted::Canceled);
        }
        match i.deadline {
            Some((at, timeout)) if Instant::now() >= at => {
                Some(Interrupted::DeadlineExceeded(timeout))
            }
            _ => None,
        }
    }

    /// Fails once the work must end.
    pub fn check(&self) -> Result<(), Interrupted> {
        self.interrupted().map_or(Ok(()), Err)
    }

    /// Whether the caller cancelled (the deadline aside).
    pub fn is_canceled(&self) -> bool {
        self.inner
            .as_ref()
            .is_some_and(|i| i.canceled.load(Ordering::Relaxed))
    }

    /// The time left before the deadline, `None` without one.
    pub fn remaining(&self) -> Option<Duration> {
        let (at, _) = self.inner.as_ref()?.deadline?;
        Some(at.saturating_duration_since(Instant::now()))
    }

    /// A guard that cancels this token when dropped unless [`CancelOnDrop::disarm`]ed: held by
    /// the part of a request that is dropped when its client leaves.
    pub fn on_drop(&self) -> CancelOnDrop {
        CancelOnDrop {
            token: Some(self.clone()),
        }
    }
}

/// Two tokens are the same when they are one request's (or both never end): what
/// [`crate::query::SelectHints`] compare.
impl PartialEq for Cancel {
    fn eq(&self, other: &Self) -> bool {
        match (&self.inner, &other.inner) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for Cancel {}

/// Cancels its token when dropped (see [`Cancel::on_drop`]).
#[derive(Debug)]
pub struct CancelOnDrop {
    token: Option<Cancel>,
}

impl CancelOnDrop {
    /// The work finished: dropping the guard no longer cancels it.
    pub fn disarm(mut self) {
        self.token = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(t) = &self.token {
            t.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_ends_when_cancelled_or_past_its_deadline() {
        assert_eq!(Cancel::never().check(), Ok(()));
        let t = Cancel::new(None);
        assert_eq!(t.check(), Ok(()));
        let seen_by_worker = t.clone();
        t.cancel();
        assert_eq!(seen_by_worker.check(), Err(Interrupted::Canceled));
        let late = Cancel::new(Some(Duration::ZERO));
        assert_eq!(
            late.check(),
            Err(Interrupted::DeadlineExceeded(Duration::ZERO))
        );
        assert!(!late.is_canceled());
    }

    #[test]
    fn the_guard_cancels_unless_disarmed() {
        let t = Cancel::new(None);
        drop(t.on_drop());
        assert!(t.is_canceled());
        let t = Cancel::new(None);
        t.on_drop().disarm();
        assert_eq!(t.check(), Ok(()));
    }
}
