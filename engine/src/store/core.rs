//! What each engine core holds for the bucket store: the index cache of the blocks it owns,
//! the files it has open, and the reads of bucket objects (through the core's io_uring ring or
//! `pread` for a FILESYSTEM bucket, through `object_store` on the network runtime otherwise).

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use ulid::Ulid;

use super::CacheKey;
use crate::bucket::{Bucket, BucketError, ByteCache, CacheStats, coalesce};
use crate::shard::Core;

/// Files kept open per core; past this the set is cleared (blocks come and go rarely).
const MAX_OPEN_FILES: usize = 1024;

/// The state of one engine core.
#[derive(Debug)]
pub struct StoreCore {
    cache: RefCell<ByteCache<CacheKey>>,
    files: RefCell<HashMap<String, Arc<File>>>,
    reader: Reader,
}

/// How bucket objects are read; the same on every core.
#[derive(Debug, Clone)]
pub(super) struct Reader {
    pub(super) bucket: Bucket,
    /// Root directory of a FILESYSTEM bucket: objects are files under it, read on the core.
    pub(super) local_root: Option<PathBuf>,
    /// The network runtime, for object-store reads.
    pub(super) runtime: tokio::runtime::Handle,
}

impl StoreCore {
    pub(super) fn new(budget: u64, stats: Arc<CacheStats>, reader: Reader) -> Self {
        StoreCore {
            cache: RefCell::new(ByteCache::with_stats(budget, stats)),
            files: RefCell::new(HashMap::new()),
            reader,
        }
    }

    /// A cached value.
    pub(super) fn cache_get(&self, k: &CacheKey) -> Option<Bytes> {
        self.cache.borrow_mut().get(k)
    }

    /// Caches a value (copied out of any larger buffer so the cache holds what it counts).
    pub(super) fn cache_put(&self, k: CacheKey, v: &[u8]) {
        self.cache.borrow_mut().insert(k, Bytes::copy_from_slice(v));
    }

    /// Caches a value that owns its bytes.
    pub(super) fn cache_put_owned(&self, k: CacheKey, v: Bytes) {
        self.cache.borrow_mut().insert(k, v);
    }

    /// Forgets what is cached and open for a block no longer served.
    pub(super) fn forget(&self, block: Ulid) {
        self.cache.borrow_mut().retain(|k| k.block() != block);
        let prefix = format!("{block}/");
        self.files
            .borrow_mut()
            .retain(|p, _| !p.starts_with(&prefix));
    }

    fn file(&self, root: &std::path::Path, path: &str) -> std::io::Result<Arc<File>> {
        if let Some(f) = self.files.borrow().get(path) {
            return Ok(f.clone());
        }
        let f = Arc::new(File::open(root.join(path))?);
        let mut files = self.files.borrow_mut();
        if files.len() >= MAX_OPEN_FILES {
            files.clear();
        }
        files.insert(path.to_string(), f.clone());
        Ok(f)
    }
}

/// Bytes read for a set of ranges: the merged reads, in file order.
#[derive(Debug, Default)]
pub(super) struct Fetched {
    /// The merged reads.
    pub(super) bufs: Vec<Bytes>,
    /// Absolute start of each read.
    starts: Vec<u64>,
}

impl Fetched {
    /// The read holding absolute position `pos` and `pos`'s offset in it; `None` when no
    /// read covers it.
    pub(super) fn locate(&self, pos: u64) -> Option<(usize, usize)> {
        let i = self.starts.partition_point(|&s| s <= pos).checked_sub(1)?;
        let off = (pos - self.starts[i]) as usize;
        (off < self.bufs[i].len()).then_some((i, off))
    }

    /// A cursor for looking up positions in ascending order without a search each.
    pub(super) fn walker(&self) -> Walker<'_> {
        Walker { f: self, i: 0 }
    }
}

/// Looks up positions of a [`Fetched`] given in ascending order.
#[derive(Debug)]
pub(super) struct Walker<'a> {
    f: &'a Fetched,
    i: usize,
}

impl<'a> Walker<'a> {
    /// The read holding `pos`, the offset of `pos` in it and the bytes from there to the
    /// read's end; `None` when no read covers it.
    #[inline]
    pub(super) fn at(&mut self, pos: u64) -> Option<(usize, usize, &'a [u8])> {
        let f = self.f;
        while self.i < f.bufs.len() && pos >= f.starts[self.i] + f.bufs[self.i].len() as u64 {
            self.i += 1;
        }
        let (i, off) = if self.i < f.bufs.len() && pos >= f.starts[self.i] {
            (self.i, (pos - f.starts[self.i]) as usize)
        } else {
            f.locate(pos)?
        };
        Some((i, off, &f.bufs[i][off..]))
    }
}

/// Reads `ranges` of object `path`, merging ranges closer than the bucket's coalescing gap into
/// one read each (callers bound their batches, which bounds the reads).
pub(super) async fn fetch(
    core: &Core<StoreCore>,
    path: &str,
    ranges: &[Range<u64>],
) -> Result<Fetched, BucketError> {
    if ranges.is_empty() {
        return Ok(Fetched::default());
    }
    let st = core.state();
    let merged = coalesce(ranges, st.reader.bucket.coalesce_gap());
    let starts = merged.iter().map(|m| m.start).collect();
    let Some(root) = &st.reader.local_root else {
        // Object storage: the requests run on the network runtime.
        let bucket = st.reader.bucket.clone();
        let (p, r) = (path.to_string(), merged.clone());
        let bufs = st
            .reader
            .runtime
            .spawn(async move {
                futures::future::try_join_all(r.into_iter().map(|m| bucket.get_range(&p, m))).await
            })
            .await
            .map_err(|e| BucketError::Io {
                path: path.to_string(),
                source: std::io::Error::other(e),
            })??;
        return Ok(Fetched { bufs, starts });
    };
    let stats = st.reader.bucket.stats();
    let io_err = |source: std::io::Error| {
        stats.failures.fetch_add(1, Relaxed);
        if source.kind() == std::io::ErrorKind::NotFound {
            BucketError::NotFound {
                path: path.to_string(),
            }
        } else {
            BucketError::Io {
                path: path.to_string(),
                source,
            }
        }
    };
    let file = st.file(root, path).map_err(io_err)?;
    let bufs = core
        .io()
        .read_many(&file, &merged)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => BucketError::ShortRead {
                path: path.to_string(),
                start: merged[0].start,
                end: merged[merged.len() - 1].end,
                got: 0,
            },
            _ => io_err(e),
        })?;
    stats.requests.fetch_add(merged.len() as u64, Relaxed);
    stats
        .bytes
        .fetch_add(bufs.iter().map(|b| b.len() as u64).sum::<u64>(), Relaxed);
    Ok(Fetched { bufs, starts })
}

/// Reads `ranges` of object `path` in coalesced reads; returns each range's bytes in the
/// order given.
pub(super) async fn read_ranges(
    core: &Core<StoreCore>,
    path: &str,
    ranges: &[Range<u64>],
) -> Result<Vec<Bytes>, BucketError> {
    let f = fetch(core, path, ranges).await?;
    Ok(ranges
        .iter()
        .map(|r| {
            // Every range lies inside one merged read: the last one starting at or before it.
            let i = f.starts.partition_point(|&s| s <= r.start) - 1;
            let s = f.starts[i];
            f.bufs[i].slice((r.start - s) as usize..(r.end - s) as usize)
        })
        .collect())
}

/// Reads one range of object `path`.
pub(super) async fn read_range(
    core: &Core<StoreCore>,
    path: &str,
    range: Range<u64>,
) -> Result<Bytes, BucketError> {
    let mut got = read_ranges(core, path, std::slice::from_ref(&range)).await?;
    Ok(got.swap_remove(0))
}
