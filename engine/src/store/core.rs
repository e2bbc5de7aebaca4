//! What each engine core holds for the bucket store: the index cache of the blocks it owns,
//! the chunk pages it has read, the files it has open, and the reads of bucket objects
//! (through the core's io_uring ring or `pread` for a FILESYSTEM bucket, through
//! `object_store` on the network runtime otherwise).

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

/// Size of a cached chunk page: chunk segments are cached in aligned pages of this many bytes.
pub(super) const CHUNK_PAGE: u64 = 16 * 1024;

/// A cached page of a chunk segment: page `page` of segment `seg` (0-based) of `block`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct PageKey {
    block: Ulid,
    seg: u32,
    page: u32,
}

/// The state of one engine core.
#[derive(Debug)]
pub struct StoreCore {
    cache: RefCell<ByteCache<CacheKey>>,
    pages: RefCell<ByteCache<PageKey>>,
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
    pub(super) fn new(budgets: [(u64, Arc<CacheStats>); 2], reader: Reader) -> Self {
        let [(index, index_stats), (pages, page_stats)] = budgets;
        StoreCore {
            cache: RefCell::new(ByteCache::with_stats(index, index_stats)),
            pages: RefCell::new(ByteCache::with_stats(pages, page_stats)),
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
        self.pages.borrow_mut().retain(|k| k.block != block);
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

    /// The `len` bytes from absolute position `pos`, copied out of consecutive reads that
    /// together hold them (a record cut by a page boundary); `None` when they do not.
    pub(super) fn join(&self, pos: u64, len: u64) -> Option<Bytes> {
        let (mut i, off) = self.locate(pos)?;
        let len = usize::try_from(len).ok()?;
        let mut out = Vec::with_capacity(len);
        // Only the bytes asked for: the reads are whole cache pages, and a record cut by a
        // page boundary needs a few hundred bytes of the next one.
        let first = &self.bufs[i][off..];
        out.extend_from_slice(&first[..first.len().min(len)]);
        while out.len() < len {
            let end = self.starts[i] + self.bufs[i].len() as u64;
            i += 1;
            if self.starts.get(i) != Some(&end) {
                return None;
            }
            let next = &self.bufs[i];
            out.extend_from_slice(&next[..next.len().min(len - out.len())]);
        }
        Some(out.into())
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
    let merged = coalesce(ranges, core.state().reader.bucket.coalesce_gap());
    let starts = merged.iter().map(|m| m.start).collect();
    let bufs = read_exact(core, path, merged).await?;
    Ok(Fetched { bufs, starts })
}

/// Reads the pages of chunk segment `seg` of `block` (object `path`, `size` bytes) that
/// `ranges` (ascending by start) touch, from the core's page cache where it has them and from
/// the bucket otherwise (then cached): the chunks of a selection come back without a copy.
pub(super) async fn fetch_pages(
    core: &Core<StoreCore>,
    (block, seg, path): (Ulid, u32, &str),
    size: u64,
    ranges: &[Range<u64>],
) -> Result<Fetched, BucketError> {
    let mut pages: Vec<u32> = Vec::new();
    for r in ranges.iter().filter(|r| r.end > r.start) {
        let first = (r.start / CHUNK_PAGE) as u32;
        let from = pages.last().map_or(first, |&p| first.max(p + 1));
        pages.extend(from..=((r.end - 1) / CHUNK_PAGE) as u32);
    }
    let page_range = |p: u32| {
        let start = u64::from(p) * CHUNK_PAGE;
        start..(start + CHUNK_PAGE).min(size)
    };
    let mut bufs: Vec<Option<Bytes>> = {
        let mut cache = core.state().pages.borrow_mut();
        pages
            .iter()
            .map(|&page| cache.get(&PageKey { block, seg, page }))
            .collect()
    };
    let missing: Vec<usize> = (0..pages.len()).filter(|&i| bufs[i].is_none()).collect();
    if !missing.is_empty() {
        let want: Vec<Range<u64>> = missing.iter().map(|&i| page_range(pages[i])).collect();
        let read = if core.state().reader.local_root.is_some() {
            // Local reads land in page-sized buffers the cache can own as they are.
            read_exact(core, path, want).await?
        } else {
            // Object storage: coalesced requests, cut into pages the cache owns.
            read_ranges(core, path, &want)
                .await?
                .iter()
                .map(|b| Bytes::copy_from_slice(b))
                .collect()
        };
        let mut cache = core.state().pages.borrow_mut();
        for (&i, b) in missing.iter().zip(read) {
            cache.insert(
                PageKey {
                    block,
                    seg,
                    page: pages[i],
                },
                b.clone(),
            );
            bufs[i] = Some(b);
        }
    }
    Ok(Fetched {
        bufs: bufs.into_iter().flatten().collect(),
        starts: pages.iter().map(|&p| page_range(p).start).collect(),
    })
}

/// Reads each of `ranges` of object `path` as one request.
async fn read_exact(
    core: &Core<StoreCore>,
    path: &str,
    ranges: Vec<Range<u64>>,
) -> Result<Vec<Bytes>, BucketError> {
    let st = core.state();
    let Some(root) = &st.reader.local_root else {
        // Object storage: the requests run on the network runtime.
        let bucket = st.reader.bucket.clone();
        let (p, r) = (path.to_string(), ranges);
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
        return Ok(bufs);
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
        .read_many(&file, &ranges)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => BucketError::ShortRead {
                path: path.to_string(),
                start: ranges[0].start,
                end: ranges[ranges.len() - 1].end,
                got: 0,
            },
            _ => io_err(e),
        })?;
    stats.requests.fetch_add(ranges.len() as u64, Relaxed);
    stats
        .bytes
        .fetch_add(bufs.iter().map(|b| b.len() as u64).sum::<u64>(), Relaxed);
    Ok(bufs)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_cut_by_page_boundaries_is_joined_from_exactly_its_bytes() {
        let page = |b: u8| Bytes::from(vec![b; CHUNK_PAGE as usize]);
        let f = Fetched {
            bufs: vec![page(1), page(2), page(3), page(9)],
            starts: vec![0, CHUNK_PAGE, 2 * CHUNK_PAGE, 5 * CHUNK_PAGE],
        };
        // Three bytes before the first boundary and two after it.
        let j = f.join(CHUNK_PAGE - 3, 5).unwrap();
        assert_eq!(&j[..], &[1, 1, 1, 2, 2]);
        assert_eq!(j.len(), 5);
        // Across a whole page into the third.
        let j = f.join(CHUNK_PAGE - 1, CHUNK_PAGE + 2).unwrap();
        assert_eq!(j.len() as u64, CHUNK_PAGE + 2);
        assert_eq!(
            (
                j[0],
                j[1],
                j[CHUNK_PAGE as usize],
                j[CHUNK_PAGE as usize + 1]
            ),
            (1, 2, 2, 3)
        );
        // Inside one page, and past a gap between reads.
        assert_eq!(&f.join(10, 2).unwrap()[..], &[1, 1]);
        assert!(f.join(3 * CHUNK_PAGE - 1, 2).is_none());
        assert!(f.join(4 * CHUNK_PAGE, 1).is_none());
    }
}
