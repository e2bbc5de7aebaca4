//! File reads on an engine core: through the core's io_uring ring, or with `pread` where
//! io_uring is unavailable. Both give the same answers; the backend is chosen once at start.

use std::cell::RefCell;
use std::fs::File;
use std::future::Future;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;

use super::uring::Uring;
use crate::buffers::BufferPool;

/// How file reads are done on the engine cores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IoBackend {
    /// One io_uring ring per core; reads of a batch are in flight together.
    IoUring,
    /// Plain positioned reads (`pread`) on the core's thread.
    Pread,
}

impl IoBackend {
    /// The name used in flags and logs: `io-uring` or `pread`.
    pub fn name(self) -> &'static str {
        match self {
            IoBackend::IoUring => "io-uring",
            IoBackend::Pread => "pread",
        }
    }
}

impl std::fmt::Display for IoBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the operator asked for (`--io-backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum IoChoice {
    /// io_uring when a ring can be created, else `pread`.
    #[default]
    Auto,
    /// io_uring or fail to start.
    IoUring,
    /// `pread` even where io_uring works.
    Pread,
}

impl std::str::FromStr for IoChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(IoChoice::Auto),
            "io-uring" | "io_uring" | "uring" => Ok(IoChoice::IoUring),
            "pread" => Ok(IoChoice::Pread),
            other => Err(format!(
                "unknown I/O backend {other:?}: want auto, io-uring or pread"
            )),
        }
    }
}

/// Ring size per core (submission entries; completions are twice that).
pub(crate) const RING_ENTRIES: u32 = 256;

/// Budget of the idle read buffers each core keeps, bytes. A core reads one batch of a
/// stream at a time, and a batch's chunk reads are at most the stream's batch target (8 MiB
/// for a request over one block on two cores): two batches' worth lets the next batch land in
/// the buffers the last one gave back, while cached chunk pages, which hold theirs until
/// evicted, count against the chunk cache's budget instead.
pub const READ_POOL_BYTES: u64 = 16 << 20;

/// The largest read buffer kept for reuse, bytes; larger reads are allocated as they come.
const READ_POOL_BUFFER_MAX: usize = 8 << 20;

/// A core's pool of idle read buffers, within [`READ_POOL_BYTES`].
pub(crate) fn read_pool() -> Arc<BufferPool> {
    Arc::new(BufferPool::new(READ_POOL_BYTES, READ_POOL_BUFFER_MAX))
}

/// Resolves `choice` to a backend by trying to create a ring; the error says why io_uring
/// cannot be used (memlock limit, seccomp, old kernel).
pub(crate) fn resolve(choice: IoChoice) -> Result<(IoBackend, Option<String>), std::io::Error> {
    match choice {
        IoChoice::Pread => Ok((IoBackend::Pread, None)),
        IoChoice::IoUring => {
            Uring::probe(RING_ENTRIES)?;
            Ok((IoBackend::IoUring, None))
        }
        IoChoice::Auto => match Uring::probe(RING_ENTRIES) {
            Ok(()) => Ok((IoBackend::IoUring, None)),
            Err(e) => Ok((IoBackend::Pread, Some(e.to_string()))),
        },
    }
}

/// The file reader of one core.
#[derive(Debug)]
pub struct CoreIo {
    uring: Option<RefCell<Uring>>,
}

impl CoreIo {
    /// A reader with `backend`; io_uring reads land in buffers from `pool`.
    pub(crate) fn new(backend: IoBackend, pool: Arc<BufferPool>) -> std::io::Result<Self> {
        Ok(CoreIo {
            uring: match backend {
                IoBackend::IoUring => Some(RefCell::new(Uring::new(RING_ENTRIES, pool)?)),
                IoBackend::Pread => None,
            },
        })
    }

    /// The backend this core reads with.
    pub fn backend(&self) -> IoBackend {
        if self.uring.is_some() {
            IoBackend::IoUring
        } else {
            IoBackend::Pread
        }
    }

    /// Reads exactly `len` bytes at `offset` of `file`; a file shorter than that is an
    /// `UnexpectedEof` error.
    pub async fn read_at(
        &self,
        file: &Arc<File>,
        offset: u64,
        len: usize,
    ) -> std::io::Result<Bytes> {
        match &self.uring {
            Some(u) => {
                let slot = u.borrow_mut().submit_read(file.clone(), offset, len)?;
                ReadOp { uring: u, slot }.await
            }
            None => pread(file, offset, len),
        }
    }

    /// Reads every range of `file` (each as [`CoreIo::read_at`]), all in flight at once on
    /// io_uring; returns them in the order given. Callers coalesce ranges first.
    pub async fn read_many(
        &self,
        file: &Arc<File>,
        ranges: &[Range<u64>],
    ) -> std::io::Result<Vec<Bytes>> {
        match &self.uring {
            Some(u) => {
                let mut ops = Vec::with_capacity(ranges.len());
                for r in ranges {
                    let len = (r.end - r.start) as usize;
                    let slot = u.borrow_mut().submit_read(file.clone(), r.start, len)?;
                    ops.push(ReadOp { uring: u, slot });
                }
                let mut out = Vec::with_capacity(ops.len());
                for op in ops {
                    out.push(op.await?);
                }
                Ok(out)
            }
            None => ranges
                .iter()
                .map(|r| pread(file, r.start, (r.end - r.start) as usize))
                .collect(),
        }
    }

    /// Reaps finished reads, waking their tasks; with `wait`, first blocks until at least one
    /// read finishes. Returns whether any read is still in flight.
    pub(crate) fn poll_completions(&self, wait: bool) -> bool {
        match &self.uring {
            Some(u) => u.borrow_mut().reap(wait),
            None => false,
        }
    }

    /// Submits queued reads to the kernel without waiting.
    pub(crate) fn flush(&self) {
        if let Some(u) = &self.uring {
            u.borrow_mut().flush();
        }
    }
}

fn pread(file: &File, offset: u64, len: usize) -> std::io::Result<Bytes> {
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, offset)?;
    Ok(Bytes::from(buf))
}

/// A read in flight on the ring; dropping it before completion leaves the buffer with the ring
/// until the kernel is done with it.
struct ReadOp<'a> {
    uring: &'a RefCell<Uring>,
    slot: usize,
}

impl Future for ReadOp<'_> {
    type Output = std::io::Result<Bytes>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.uring.borrow_mut().poll_read(self.slot, cx)
    }
}

impl Drop for ReadOp<'_> {
    fn drop(&mut self) {
        self.uring.borrow_mut().abandon(self.slot);
    }
}
