//! The io_uring ring of one core: positioned reads into buffers owned by the ring's slots until
//! the kernel has completed them.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use io_uring::{IoUring, opcode, types};

use crate::buffers::{BufferPool, pooled_bytes};

enum State {
    /// Submitted (or queued for submission); the waker of the task awaiting it.
    Pending(Option<Waker>),
    /// Completed; the result is waiting for the task.
    Done(std::io::Result<()>),
    /// Collected by its task; the slot is free.
    Free,
}

struct Slot {
    file: Option<Arc<File>>,
    /// Taken from the pool with capacity for the read, its length set to 0: the kernel fills
    /// it, and its length is set to what was filled once the read completes.
    buf: Vec<u8>,
    /// Bytes the read asks for.
    want: usize,
    offset: u64,
    filled: usize,
    state: State,
    /// The task dropped its future: free the slot once the kernel is done.
    abandoned: bool,
}

/// A ring and its read slots.
pub(crate) struct Uring {
    ring: IoUring,
    /// Buffers reads land in, back from the bytes handed out once those are dropped.
    pool: Arc<BufferPool>,
    slots: Vec<Slot>,
    free: Vec<usize>,
    in_flight: usize,
    unsubmitted: usize,
}

impl std::fmt::Debug for Uring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uring")
            .field("in_flight", &self.in_flight)
            .finish()
    }
}

impl Uring {
    /// Creates and drops a ring of `entries`: fails where io_uring cannot be used.
    pub(crate) fn probe(entries: u32) -> std::io::Result<()> {
        IoUring::new(entries).map(drop)
    }

    /// A ring of `entries` whose reads land in buffers from `pool`.
    pub(crate) fn new(entries: u32, pool: Arc<BufferPool>) -> std::io::Result<Self> {
        Ok(Uring {
            ring: IoUring::new(entries)?,
            pool,
            slots: Vec::new(),
            free: Vec::new(),
            in_flight: 0,
            unsubmitted: 0,
        })
    }

    /// Queues a read of `len` bytes at `offset`; returns its slot.
    pub(crate) fn submit_read(
        &mut self,
        file: Arc<File>,
        offset: u64,
        len: usize,
    ) -> std::io::Result<usize> {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(Slot {
                    file: None,
                    buf: Vec::new(),
                    want: 0,
                    offset: 0,
                    filled: 0,
                    state: State::Free,
                    abandoned: false,
                });
                self.slots.len() - 1
            }
        };
        // Not zeroed: page-cache reads are memcpy-bound and zeroing first would double that.
        let mut buf = self.pool.take(len);
        buf.clear();
        buf.reserve(len);
        let s = &mut self.slots[slot];
        s.file = Some(file);
        s.buf = buf;
        s.want = len;
        s.offset = offset;
        s.filled = 0;
        s.abandoned = false;
        s.state = State::Pending(None);
        if len == 0 {
            s.state = State::Done(Ok(()));
            return Ok(slot);
        }
        self.push(slot)?;
        Ok(slot)
    }

    /// Puts the unfilled rest of `slot`'s buffer on the submission queue.
    fn push(&mut self, slot: usize) -> std::io::Result<()> {
        // Keep completions within the completion queue: wait for some before adding more.
        let cq_cap = self.ring.params().cq_entries() as usize;
        while self.in_flight >= cq_cap {
            self.reap(true);
        }
        if self.ring.submission().is_full() {
            self.ring.submit()?;
            self.unsubmitted = 0;
        }
        let s = &mut self.slots[slot];
        let fd = s.file.as_ref().map_or(-1, |f| f.as_raw_fd());
        debug_assert!(s.buf.capacity() >= s.want && s.filled < s.want);
        // SAFETY: `filled < want <= capacity`, so the pointer stays inside the allocation.
        let rest = unsafe { s.buf.as_mut_ptr().add(s.filled) };
        let entry = opcode::Read::new(types::Fd(fd), rest, (s.want - s.filled) as u32)
            .offset(s.offset + s.filled as u64)
            .build()
            .user_data(slot as u64);
        // SAFETY: the buffer is the heap allocation of `slots[slot].buf` (capacity `want`),
        // which is neither freed, resized nor handed out until this entry's completion has
        // been reaped (the slot stays `Pending` until then, and `Drop` waits for every read in
        // flight); the kernel writes at most `want - filled` bytes from `rest`; the file
        // descriptor is kept open by the `Arc<File>` held in the same slot.
        let pushed = unsafe { self.ring.submission().push(&entry) };
        if pushed.is_err() {
            self.ring.submit()?;
            // SAFETY: as above; the queue was just drained by the submit.
            unsafe { self.ring.submission().push(&entry) }
                .map_err(|_| std::io::Error::other("io_uring submission queue stays full"))?;
        }
        self.in_flight += 1;
        self.unsubmitted += 1;
        Ok(())
    }

    /// Submits queued entries.
    pub(crate) fn flush(&mut self) {
        if self.unsubmitted > 0 {
            match self.ring.submit() {
                Ok(_) => self.unsubmitted = 0,
                Err(e) => tracing::warn!(error = %e, "io_uring submit failed; retrying"),
            }
        }
    }

    /// Reaps completions (after blocking for one when `wait` and reads are in flight); returns
    /// whether reads remain in flight.
    pub(crate) fn reap(&mut self, wait: bool) -> bool {
        if wait && self.in_flight > 0 {
            match self.ring.submit_and_wait(1) {
                Ok(_) => self.unsubmitted = 0,
                Err(e) if e.raw_os_error() == Some(nix::libc::EINTR) => {}
                Err(e) => tracing::warn!(error = %e, "io_uring wait failed; retrying"),
            }
        } else {
            self.flush();
        }
        let done: Vec<(usize, i32)> = self
            .ring
            .completion()
            .map(|c| (c.user_data() as usize, c.result()))
            .collect();
        for (slot, res) in done {
            self.in_flight -= 1;
            self.complete(slot, res);
        }
        self.in_flight > 0
    }

    fn complete(&mut self, slot: usize, res: i32) {
        let s = &mut self.slots[slot];
        let outcome = if res < 0 {
            Some(Err(std::io::Error::from_raw_os_error(-res)))
        } else if res == 0 {
            Some(Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "read of {} bytes at offset {} ended at end of file",
                    s.want, s.offset
                ),
            )))
        } else {
            s.filled += res as usize;
            (s.filled >= s.want).then_some(Ok(()))
        };
        let Some(outcome) = outcome else {
            // A short read: ask for the rest.
            if let Err(e) = self.push(slot) {
                self.finish(slot, Err(e));
            }
            return;
        };
        self.finish(slot, outcome);
    }

    fn finish(&mut self, slot: usize, outcome: std::io::Result<()>) {
        let s = &mut self.slots[slot];
        if s.abandoned {
            self.release(slot);
            return;
        }
        let prev = std::mem::replace(&mut s.state, State::Done(outcome));
        if let State::Pending(Some(w)) = prev {
            w.wake();
        }
    }

    fn release(&mut self, slot: usize) {
        let s = &mut self.slots[slot];
        s.file = None;
        s.buf = Vec::new();
        s.state = State::Free;
        s.abandoned = false;
        self.free.push(slot);
    }

    /// The result of `slot` once complete.
    pub(crate) fn poll_read(
        &mut self,
        slot: usize,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<Bytes>> {
        let s = &mut self.slots[slot];
        match &mut s.state {
            State::Pending(w) => {
                *w = Some(cx.waker().clone());
                Poll::Pending
            }
            State::Done(_) => {
                let State::Done(r) = std::mem::replace(&mut s.state, State::Free) else {
                    unreachable!("matched Done above")
                };
                let mut buf = std::mem::take(&mut s.buf);
                let filled = s.filled.min(s.want);
                s.file = None;
                self.free.push(slot);
                Poll::Ready(r.map(|()| {
                    // SAFETY: the read completed: the kernel wrote `filled` bytes from the
                    // start of the buffer (short reads were resubmitted for the rest), and
                    // `filled <= want <= capacity`.
                    unsafe { buf.set_len(filled) };
                    pooled_bytes(buf, filled, &self.pool)
                }))
            }
            State::Free => Poll::Ready(Err(std::io::Error::other(
                "io_uring read polled after completion",
            ))),
        }
    }

    /// The future of `slot` was dropped: free it now if done, else when the kernel is done.
    pub(crate) fn abandon(&mut self, slot: usize) {
        match self.slots[slot].state {
            State::Pending(_) => self.slots[slot].abandoned = true,
            State::Done(_) => self.release(slot),
            State::Free => {}
        }
    }
}

impl Drop for Uring {
    fn drop(&mut self) {
        // The kernel may still write into buffers of reads in flight: wait for them.
        while self.in_flight > 0 {
            self.reap(true);
        }
    }
}
