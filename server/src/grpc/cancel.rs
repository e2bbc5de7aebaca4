//! A streamed answer that cancels its producer when the transport drops it: tonic drops a
//! response stream when its client cancels the call, its deadline passes or its connection
//! closes, and the producer (a blocking thread reading series) polls the token between
//! batches.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use gauntlet_engine::query::CancelOnDrop;

/// `inner`'s items; dropping it trips the token behind `guard`.
pub(crate) struct CancelOnClose<S> {
    inner: S,
    _guard: CancelOnDrop,
}

impl<S> CancelOnClose<S> {
    /// Wraps `inner`; `guard` cancels when the wrapper is dropped.
    pub(crate) fn new(inner: S, guard: CancelOnDrop) -> Self {
        CancelOnClose {
            inner,
            _guard: guard,
        }
    }
}

impl<S: Stream + Unpin> Stream for CancelOnClose<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        Pin::new(&mut self.inner).poll_next(cx)
    }
}
