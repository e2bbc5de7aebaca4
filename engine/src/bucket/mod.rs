//! Object storage: the bucket a Thanos deployment writes blocks to, reached through
//! `object_store` (filesystem, S3, GCS, Azure) and configured with Thanos's objstore YAML;
//! ranged reads coalesced into few requests; byte-budgeted caches.

mod azure;
mod cache;
mod config;

pub use cache::{ByteCache, CacheStats};
pub use config::{BucketConfig, Provider};

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt};

/// Ranges closer than this many bytes are fetched in one request: a request costs more than
/// reading a few KiB more.
pub const DEFAULT_COALESCE_GAP: u64 = 16 * 1024;

/// What went wrong talking to the bucket.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BucketError {
    /// The objstore configuration is invalid; the message names the key. Fix the file.
    #[error("objstore config: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// The object does not exist (deleted, or a partial upload).
    #[error("{path}: object not found")]
    NotFound {
        /// Object path in the bucket.
        path: String,
    },
    /// The store failed the request (network, permissions, a vanished directory); retrying
    /// later may help.
    #[error("{path}: {source}")]
    Store {
        /// Object path (or prefix) in the bucket.
        path: String,
        /// The client's error.
        #[source]
        source: object_store::Error,
    },
    /// The bucket itself is gone (a FILESYSTEM bucket's directory was removed or unmounted).
    #[error("bucket {path} does not exist")]
    Missing {
        /// The bucket's directory.
        path: String,
    },
    /// A ranged read returned fewer bytes than asked: the object is shorter than its index
    /// says, so it is truncated or was replaced.
    #[error("{path}: range {start}..{end} returned {got} bytes")]
    ShortRead {
        /// Object path.
        path: String,
        /// Requested start, bytes.
        start: u64,
        /// Requested end, bytes (exclusive).
        end: u64,
        /// Bytes returned.
        got: usize,
    },
    /// A local read of a FILESYSTEM bucket object failed on an engine core; retrying later may
    /// help.
    #[error("{path}: {source}")]
    Io {
        /// Object path in the bucket.
        path: String,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
}

impl BucketError {
    fn store(path: &ObjPath, source: object_store::Error) -> Self {
        match source {
            object_store::Error::NotFound { .. } => BucketError::NotFound {
                path: path.to_string(),
            },
            source => BucketError::Store {
                path: path.to_string(),
                source,
            },
        }
    }
}

/// An object listed in the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Path relative to the bucket (and its prefix).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification, ms since the epoch.
    pub modified_ms: i64,
}

/// A bucket: an `object_store` client and the counters of what was read through it.
#[derive(Debug, Clone)]
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    name: String,
    coalesce_gap: u64,
    stats: Arc<BucketStats>,
    /// The root directory of a FILESYSTEM bucket: a missing root is an error, not an empty
    /// bucket, so a vanished mount does not unload every block.
    root: Option<std::path::PathBuf>,
}

/// Counters of bucket operations since start.
#[derive(Debug, Default)]
pub struct BucketStats {
    /// Requests issued (gets, ranged gets, lists).
    pub requests: std::sync::atomic::AtomicU64,
    /// Failed requests.
    pub failures: std::sync::atomic::AtomicU64,
    /// Bytes received.
    pub bytes: std::sync::atomic::AtomicU64,
}

impl Bucket {
    /// Opens the bucket `cfg` describes (no request is made yet).
    pub fn open(cfg: &BucketConfig) -> Result<Self, BucketError> {
        let mut b = Self::from_store(cfg.build()?, cfg.describe());
        b.root = cfg.root_dir();
        Ok(b)
    }

    /// Wraps an existing client; `name` is used in logs.
    pub fn from_store(store: Arc<dyn ObjectStore>, name: String) -> Self {
        Bucket {
            store,
            name,
            coalesce_gap: DEFAULT_COALESCE_GAP,
            stats: Arc::default(),
            root: None,
        }
    }

    /// The name given at open, for logs.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Ranges closer than this many bytes are read as one, bytes.
    pub fn coalesce_gap(&self) -> u64 {
        self.coalesce_gap
    }

    /// The root directory of a FILESYSTEM bucket, whose objects are plain files under it.
    pub fn local_root(&self) -> Option<&std::path::Path> {
        self.root.as_deref()
    }

    /// Operation counters.
    pub fn stats(&self) -> &BucketStats {
        &self.stats
    }

    fn count<T>(&self, r: &Result<T, BucketError>, bytes: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        self.stats.requests.fetch_add(1, Relaxed);
        match r {
            Ok(_) => self.stats.bytes.fetch_add(bytes as u64, Relaxed),
            Err(_) => self.stats.failures.fetch_add(1, Relaxed),
        };
    }

    /// Reads a whole object.
    pub async fn get(&self, path: &str) -> Result<Bytes, BucketError> {
        let p = ObjPath::from(path);
        let r = async {
            let res = self
                .store
                .get(&p)
                .await
                .map_err(|e| BucketError::store(&p, e))?;
            res.bytes().await.map_err(|e| BucketError::store(&p, e))
        }
        .await;
        self.count(&r, r.as_ref().map_or(0, Bytes::len));
        r
    }

    /// Whether an object exists.
    pub async fn exists(&self, path: &str) -> Result<bool, BucketError> {
        let p = ObjPath::from(path);
        let r = self
            .store
            .head(&p)
            .await
            .map_err(|e| BucketError::store(&p, e));
        self.count(&r, 0);
        match r {
            Ok(_) => Ok(true),
            Err(BucketError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Size of an object, bytes.
    pub async fn size(&self, path: &str) -> Result<u64, BucketError> {
        let p = ObjPath::from(path);
        let r = self
            .store
            .head(&p)
            .await
            .map_err(|e| BucketError::store(&p, e));
        self.count(&r, 0);
        Ok(r?.size)
    }

    /// Reads `range` of an object; fails if fewer bytes come back.
    pub async fn get_range(&self, path: &str, range: Range<u64>) -> Result<Bytes, BucketError> {
        let p = ObjPath::from(path);
        let r = self
            .store
            .get_range(&p, range.clone())
            .await
            .map_err(|e| BucketError::store(&p, e));
        self.count(&r, r.as_ref().map_or(0, Bytes::len));
        let b = r?;
        if (b.len() as u64) < range.end - range.start {
            return Err(BucketError::ShortRead {
                path: path.to_string(),
                start: range.start,
                end: range.end,
                got: b.len(),
            });
        }
        Ok(b)
    }

    /// Reads several ranges of one object, merging those closer than the coalescing gap into
    /// one request each; returns the bytes of each range in the order given.
    pub async fn get_ranges(
        &self,
        path: &str,
        ranges: &[Range<u64>],
    ) -> Result<Vec<Bytes>, BucketError> {
        let merged = coalesce(ranges, self.coalesce_gap);
        let fetched =
            futures::future::try_join_all(merged.iter().map(|m| self.get_range(path, m.clone())))
                .await?;
        Ok(ranges
            .iter()
            .map(|r| {
                // Every range lies inside exactly one merged range, found by its start.
                let i = merged.partition_point(|m| m.end < r.end.max(r.start + 1));
                let m = &merged[i.min(merged.len() - 1)];
                fetched[i.min(merged.len() - 1)]
                    .slice((r.start - m.start) as usize..(r.end - m.start) as usize)
            })
            .collect())
    }

    /// Lists every object under `prefix` (recursively).
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, BucketError> {
        let p = ObjPath::from(prefix);
        let r: Result<Vec<_>, _> = self
            .store
            .list(if prefix.is_empty() { None } else { Some(&p) })
            .map_ok(|m| ObjectInfo {
                path: m.location.to_string(),
                size: m.size,
                modified_ms: m.last_modified.timestamp_millis(),
            })
            .try_collect()
            .await
            .map_err(|e| BucketError::store(&p, e));
        self.count(&r, 0);
        r
    }

    /// Lists the top-level "directories" under `prefix` (one level, like `ls`).
    pub async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, BucketError> {
        if let Some(root) = &self.root
            && !root.is_dir()
        {
            self.count(
                &Err::<(), _>(BucketError::NotFound {
                    path: String::new(),
                }),
                0,
            );
            return Err(BucketError::Missing {
                path: root.display().to_string(),
            });
        }
        let p = ObjPath::from(prefix);
        let r = self
            .store
            .list_with_delimiter(if prefix.is_empty() { None } else { Some(&p) })
            .await
            .map_err(|e| BucketError::store(&p, e));
        self.count(&r, 0);
        Ok(r?
            .common_prefixes
            .into_iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect())
    }

    /// Writes an object (used by tests and tools that upload blocks).
    pub async fn put(&self, path: &str, data: Bytes) -> Result<(), BucketError> {
        let p = ObjPath::from(path);
        let r = self
            .store
            .put(&p, data.into())
            .await
            .map(|_| ())
            .map_err(|e| BucketError::store(&p, e));
        self.count(&r, 0);
        r
    }

    /// Uploads the local file `local` as object `path`, streaming: files over
    /// [`UPLOAD_PART_BYTES`] go up in parts of that size, so a 512 MiB chunk segment never sits
    /// in memory whole. Returns the bytes uploaded.
    pub async fn upload_file(
        &self,
        local: &std::path::Path,
        path: &str,
    ) -> Result<u64, BucketError> {
        use tokio::io::AsyncReadExt;
        let io = |source| BucketError::Io {
            path: local.display().to_string(),
            source,
        };
        if let Some(n) = self.link_in(local, path).await {
            return Ok(n);
        }
        let mut file = tokio::fs::File::open(local).await.map_err(io)?;
        let size = file.metadata().await.map_err(io)?.len();
        if size <= UPLOAD_PART_BYTES as u64 {
            let mut data = Vec::with_capacity(size as usize);
            file.read_to_end(&mut data).await.map_err(io)?;
            let n = data.len() as u64;
            self.put(path, Bytes::from(data)).await?;
            return Ok(n);
        }
        let p = ObjPath::from(path);
        let upload = self
            .store
            .put_multipart(&p)
            .await
            .map_err(|e| BucketError::store(&p, e));
        self.count(&upload, 0);
        let mut writer =
            object_store::WriteMultipart::new_with_chunk_size(upload?, UPLOAD_PART_BYTES);
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = file.read(&mut buf).await.map_err(io)?;
            if n == 0 {
                break;
            }
            // At most a couple of parts in flight at once.
            writer
                .wait_for_capacity(2)
                .await
                .map_err(|e| BucketError::store(&p, e))?;
            writer.write(&buf[..n]);
            total += n as u64;
        }
        let r = writer
            .finish()
            .await
            .map(|_| ())
            .map_err(|e| BucketError::store(&p, e));
        self.count(&r, total as usize);
        r.map(|()| total)
    }

    /// Downloads object `path` into the local file `local` (created or truncated), streaming.
    /// Returns the bytes written.
    pub async fn download_file(
        &self,
        path: &str,
        local: &std::path::Path,
    ) -> Result<u64, BucketError> {
        use tokio::io::AsyncWriteExt;
        let p = ObjPath::from(path);
        let io = |source| BucketError::Io {
            path: local.display().to_string(),
            source,
        };
        if let Some(n) = self.link_out(path, local).await {
            return Ok(n);
        }
        let got = self
            .store
            .get(&p)
            .await
            .map_err(|e| BucketError::store(&p, e));
        self.count(&got, 0);
        let mut stream = got?.into_stream();
        let mut file = tokio::fs::File::create(local).await.map_err(io)?;
        let mut total = 0u64;
        while let Some(piece) = stream
            .try_next()
            .await
            .map_err(|e| BucketError::store(&p, e))?
        {
            file.write_all(&piece).await.map_err(io)?;
            total += piece.len() as u64;
        }
        file.flush().await.map_err(io)?;
        self.stats
            .bytes
            .fetch_add(total, std::sync::atomic::Ordering::Relaxed);
        Ok(total)
    }

    /// A FILESYSTEM bucket on the same filesystem as `local` takes an upload as a hard link
    /// (block files are never written after they are made, so the bucket's object and the
    /// local file may share their bytes), made under a temporary name and renamed into place
    /// as a plain upload would be. `None` when that cannot be done (another kind of bucket,
    /// another filesystem): the caller copies.
    async fn link_in(&self, local: &std::path::Path, path: &str) -> Option<u64> {
        let dst = self.local_object(path)?;
        let local = local.to_path_buf();
        self.linked(move || {
            let size = std::fs::metadata(&local)?.len();
            if let Some(parent) = dst.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let mut tmp = dst.clone().into_os_string();
            tmp.push(".gauntlet-link");
            let tmp = std::path::PathBuf::from(tmp);
            let _ = std::fs::remove_file(&tmp);
            std::fs::hard_link(&local, &tmp)?;
            if let Err(e) = std::fs::rename(&tmp, &dst) {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
            Ok(size)
        })
        .await
    }

    /// A download from a FILESYSTEM bucket on the same filesystem as `local`, as a hard link
    /// (see [`Bucket::link_in`]); `None` when the caller must copy.
    async fn link_out(&self, path: &str, local: &std::path::Path) -> Option<u64> {
        let src = self.local_object(path)?;
        let local = local.to_path_buf();
        self.linked(move || {
            let size = std::fs::metadata(&src)?.len();
            let _ = std::fs::remove_file(&local);
            std::fs::hard_link(&src, &local)?;
            Ok(size)
        })
        .await
    }

    /// Runs a linking step off the async threads and counts it as a request of the bytes it
    /// returns; `None` when it failed (the caller copies instead).
    async fn linked(
        &self,
        step: impl FnOnce() -> std::io::Result<u64> + Send + 'static,
    ) -> Option<u64> {
        let n = tokio::task::spawn_blocking(step).await.ok()?.ok()?;
        self.count(&Ok::<(), BucketError>(()), n as usize);
        Some(n)
    }

    /// The file holding object `path` in a FILESYSTEM bucket; `None` for other buckets, and
    /// for a path with characters the store would escape or that could leave the root (block
    /// paths are ULIDs and plain file names).
    fn local_object(&self, path: &str) -> Option<std::path::PathBuf> {
        let root = self.root.as_ref()?;
        let plain = |seg: &str| {
            !seg.is_empty()
                && !seg.starts_with('.')
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
        };
        let safe = path.split('/').all(plain);
        safe.then(|| root.join(path))
    }

    /// Deletes object `path`; an object already gone is not an error.
    pub async fn delete(&self, path: &str) -> Result<(), BucketError> {
        let p = ObjPath::from(path);
        let r = match self.store.delete(&p).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(BucketError::store(&p, e)),
        };
        self.count(&r, 0);
        r
    }
}

/// Part size of streamed uploads (S3 takes parts of 5 MiB and more).
pub const UPLOAD_PART_BYTES: usize = 16 << 20;

/// Sorts and merges ranges whose gap is at most `gap` bytes; empty input gives empty output.
pub fn coalesce(ranges: &[Range<u64>], gap: u64) -> Vec<Range<u64>> {
    let mut out: Vec<Range<u64>> = Vec::new();
    let mut sorted_copy;
    let sorted = if ranges.is_sorted_by_key(|r| r.start) {
        ranges
    } else {
        sorted_copy = ranges.to_vec();
        sorted_copy.sort_by_key(|r| r.start);
        &sorted_copy[..]
    };
    for r in sorted.iter().cloned() {
        match out.last_mut() {
            Some(last) if r.start <= last.end.saturating_add(gap) => {
                last.end = last.end.max(r.end);
            }
            _ => out.push(r),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalesce_merges_near_and_overlapping_ranges() {
        assert_eq!(coalesce(&[], 10), Vec::<Range<u64>>::new());
        assert_eq!(
            coalesce(&[50..60, 0..10, 15..20, 100..120, 105..110], 5),
            vec![0..20, 50..60, 100..120]
        );
        assert_eq!(coalesce(&[0..10, 11..12], 0), vec![0..10, 11..12]);
        assert_eq!(coalesce(&[0..10, 10..12], 0), vec![0..12]);
    }

    #[tokio::test]
    async fn ranged_reads_return_each_range_from_merged_requests() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = BucketConfig::filesystem(dir.path()).unwrap();
        let b = Bucket::open(&cfg).unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        b.put("blk/obj", Bytes::from(data.clone())).await.unwrap();
        let ranges = [90_000..90_010, 0..5, 3..40, 50_000..50_001, 99_990..100_000];
        let got = b.get_ranges("blk/obj", &ranges).await.unwrap();
        for (r, g) in ranges.iter().zip(&got) {
            assert_eq!(&g[..], &data[r.start as usize..r.end as usize]);
        }
        // Three merged requests (0..40, 50_000.., 90_000..100_000) plus the put.
        use std::sync::atomic::Ordering::Relaxed;
        assert_eq!(b.stats().requests.load(Relaxed), 4);
        assert!(matches!(
            b.get_range("blk/obj", 99_990..100_100).await,
            Err(BucketError::ShortRead { .. }) | Err(BucketError::Store { .. })
        ));
        assert!(matches!(
            b.get("nope").await,
            Err(BucketError::NotFound { .. })
        ));
        assert!(!b.exists("nope").await.unwrap());
        assert_eq!(b.list_dirs("").await.unwrap(), vec!["blk".to_string()]);
        assert_eq!(b.list("blk").await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_filesystem_bucket_links_uploads_and_downloads_and_copies_what_it_cannot_link() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("bucket");
        std::fs::create_dir_all(&root).unwrap();
        let b = Bucket::open(&BucketConfig::filesystem(&root).unwrap()).unwrap();
        let local = dir.path().join("index");
        std::fs::write(&local, b"block bytes").unwrap();
        assert_eq!(b.upload_file(&local, "01ABC/index").await.unwrap(), 11);
        let stored = root.join("01ABC/index");
        let ino = |p: &std::path::Path| std::fs::metadata(p).unwrap().ino();
        assert_eq!(ino(&stored), ino(&local), "the upload is a link");
        assert_eq!(b.get("01ABC/index").await.unwrap(), &b"block bytes"[..]);
        let back = dir.path().join("back");
        assert_eq!(b.download_file("01ABC/index", &back).await.unwrap(), 11);
        assert_eq!(ino(&back), ino(&stored), "the download is a link");
        // Deleting the local copies leaves the object whole.
        std::fs::remove_file(&local).unwrap();
        std::fs::remove_file(&back).unwrap();
        assert_eq!(b.get("01ABC/index").await.unwrap(), &b"block bytes"[..]);
        // A name the store would escape is copied through the store instead.
        std::fs::write(&local, b"other").unwrap();
        b.upload_file(&local, "01ABC/we ird").await.unwrap();
        assert_eq!(b.get("01ABC/we ird").await.unwrap(), &b"other"[..]);
        // No temporary link is left behind.
        let names: Vec<String> = std::fs::read_dir(root.join("01ABC"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().all(|n| !n.ends_with(".gauntlet-link")),
            "{names:?}"
        );
    }
}
