//! The postings of an index being written, held in bounded memory.
//!
//! Each label of each series added is one entry (name symbol, value symbol, series ref). The
//! entries gather in a buffer; a full buffer is sorted by (name, value), series refs kept in
//! the order they came (ascending), and appended to a run file next to the index. When the
//! index is finished the runs are merged back in order, as often as the writer needs to walk
//! them. Memory is the buffer, whatever the number of series; an index with fewer entries than
//! the buffer holds never touches the disk.
//!
//! The all-postings list (every series ref, ascending) is spooled the same way, without the
//! sort.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// One postings entry: name symbol, value symbol, series ref.
pub(crate) type Entry = [u32; 3];

const ENTRY_BYTES: usize = 12;

/// Entries a spool holds in memory before it writes a run: 6 MiB, and as much again for the
/// sort's scratch space.
pub(crate) const SPOOL_ENTRIES: usize = 512 * 1024;

/// Bytes read from a run at a time while merging: whole entries (and whole refs).
const RUN_READ: usize = ENTRY_BYTES * 5 * 1024;

/// A temporary file deleted when dropped.
#[derive(Debug)]
struct TempFile {
    path: PathBuf,
    file: File,
}

impl TempFile {
    fn create(path: PathBuf) -> std::io::Result<TempFile> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        Ok(TempFile { path, file })
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Postings entries in arrival order, sorted on the way out.
#[derive(Debug)]
pub(crate) struct PostingsSpool {
    buf: Vec<Entry>,
    scratch: Vec<Entry>,
    cap: usize,
    /// Where a run file goes; `None` keeps everything in memory.
    spill_path: Option<PathBuf>,
    runs_file: Option<(TempFile, BufWriter<File>)>,
    /// Each written run: first entry and number of entries.
    runs: Vec<(u64, u64)>,
    spilled: u64,
}

impl PostingsSpool {
    /// A spool that writes runs to `spill_path` once it holds `cap` entries; with no path it
    /// never spills.
    pub(crate) fn new(spill_path: Option<PathBuf>, cap: usize) -> Self {
        PostingsSpool {
            buf: Vec::new(),
            scratch: Vec::new(),
            cap: cap.max(1),
            spill_path,
            runs_file: None,
            runs: Vec::new(),
            spilled: 0,
        }
    }

    /// Adds an entry; series refs must arrive in ascending order.
    pub(crate) fn push(&mut self, e: Entry) -> std::io::Result<()> {
        if self.buf.len() >= self.cap && self.spill_path.is_some() {
            self.spill()?;
        }
        self.buf.push(e);
        Ok(())
    }

    /// Sorts the buffer and appends it to the run file as one run.
    fn spill(&mut self) -> std::io::Result<()> {
        sort_entries(&mut self.buf, &mut self.scratch);
        let (_, w) = match &mut self.runs_file {
            Some(open) => open,
            slot @ None => {
                let Some(path) = self.spill_path.clone() else {
                    return Err(std::io::Error::other("spilling without a spill path"));
                };
                let tmp = TempFile::create(path)?;
                let w = BufWriter::with_capacity(1 << 20, tmp.file.try_clone()?);
                slot.insert((tmp, w))
            }
        };
        for e in &self.buf {
            let mut b = [0u8; ENTRY_BYTES];
            b[0..4].copy_from_slice(&e[0].to_le_bytes());
            b[4..8].copy_from_slice(&e[1].to_le_bytes());
            b[8..12].copy_from_slice(&e[2].to_le_bytes());
            w.write_all(&b)?;
        }
        self.runs.push((self.spilled, self.buf.len() as u64));
        self.spilled += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Ends the adding: what is left in memory is sorted and the run file flushed.
    pub(crate) fn finish(mut self) -> std::io::Result<SortedPostings> {
        sort_entries(&mut self.buf, &mut self.scratch);
        let file = match self.runs_file.take() {
            Some((tmp, mut w)) => {
                w.flush()?;
                drop(w);
                Some(tmp)
            }
            None => None,
        };
        Ok(SortedPostings {
            mem: self.buf,
            runs: self.runs,
            file,
        })
    }
}

/// Sorts entries by (name, value), keeping the arrival order of equal pairs (least significant
/// digit radix sort, 16 bits a pass; passes whose digit is the same for every entry are
/// skipped).
fn sort_entries(buf: &mut Vec<Entry>, scratch: &mut Vec<Entry>) {
    if buf.len() < 2 {
        return;
    }
    // Value low and high halves, then name low and high halves.
    let digits: [(usize, u32); 4] = [(1, 0), (1, 16), (0, 0), (0, 16)];
    for (field, shift) in digits {
        let digit = |e: &Entry| ((e[field] >> shift) & 0xFFFF) as usize;
        let first = digit(&buf[0]);
        if buf.iter().all(|e| digit(e) == first) {
            continue;
        }
        let mut counts = vec![0usize; 1 << 16];
        for e in buf.iter() {
            counts[digit(e)] += 1;
        }
        let mut sum = 0;
        for c in counts.iter_mut() {
            let n = *c;
            *c = sum;
            sum += n;
        }
        scratch.clear();
        scratch.resize(buf.len(), [0; 3]);
        for e in buf.iter() {
            let d = digit(e);
            scratch[counts[d]] = *e;
            counts[d] += 1;
        }
        std::mem::swap(buf, scratch);
    }
    scratch.clear();
    scratch.shrink_to_fit();
}

/// The spooled entries, sorted, ready to be walked any number of times.
#[derive(Debug)]
pub(crate) struct SortedPostings {
    mem: Vec<Entry>,
    runs: Vec<(u64, u64)>,
    file: Option<TempFile>,
}

impl SortedPostings {
    /// Walks every entry in (name, value, series ref) order.
    pub(crate) fn iter(&self) -> SortedIter<'_> {
        let mut readers: Vec<RunReader<'_>> = Vec::with_capacity(self.runs.len());
        if let Some(tmp) = &self.file {
            for &(start, len) in &self.runs {
                readers.push(RunReader {
                    file: &tmp.file,
                    path: &tmp.path,
                    next: start * ENTRY_BYTES as u64,
                    end: (start + len) * ENTRY_BYTES as u64,
                    buf: Vec::new(),
                    at: 0,
                });
            }
        }
        SortedIter {
            mem: &self.mem,
            mem_pos: 0,
            readers,
            heap: BinaryHeap::new(),
            primed: false,
        }
    }
}

/// Reads the entries of one run.
struct RunReader<'a> {
    file: &'a File,
    path: &'a Path,
    next: u64,
    end: u64,
    buf: Vec<u8>,
    at: usize,
}

impl RunReader<'_> {
    fn next_entry(&mut self) -> std::io::Result<Option<Entry>> {
        if self.at + ENTRY_BYTES > self.buf.len() {
            if self.next >= self.end {
                return Ok(None);
            }
            let n = (self.end - self.next).min(RUN_READ as u64) as usize;
            self.buf.resize(n, 0);
            self.file
                .read_exact_at(&mut self.buf, self.next)
                .map_err(|e| {
                    std::io::Error::new(e.kind(), format!("{}: {e}", self.path.display()))
                })?;
            self.next += n as u64;
            self.at = 0;
        }
        let b = &self.buf[self.at..self.at + ENTRY_BYTES];
        self.at += ENTRY_BYTES;
        let word = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Ok(Some([word(0), word(4), word(8)]))
    }
}

/// Merges the in-memory entries with the runs.
pub(crate) struct SortedIter<'a> {
    mem: &'a [Entry],
    mem_pos: usize,
    readers: Vec<RunReader<'a>>,
    /// The next entry of each run, smallest first.
    heap: BinaryHeap<Reverse<(Entry, usize)>>,
    primed: bool,
}

impl SortedIter<'_> {
    /// The next entry, or `None` at the end.
    pub(crate) fn next_entry(&mut self) -> std::io::Result<Option<Entry>> {
        if self.readers.is_empty() {
            let e = self.mem.get(self.mem_pos).copied();
            self.mem_pos += 1;
            return Ok(e);
        }
        if !self.primed {
            self.primed = true;
            for i in 0..self.readers.len() {
                if let Some(e) = self.readers[i].next_entry()? {
                    self.heap.push(Reverse((e, i)));
                }
            }
        }
        let from_runs = self.heap.peek().map(|r| r.0.0);
        let from_mem = self.mem.get(self.mem_pos).copied();
        match (from_runs, from_mem) {
            (None, None) => Ok(None),
            (Some(r), Some(m)) if m < r => {
                self.mem_pos += 1;
                Ok(Some(m))
            }
            (None, Some(m)) => {
                self.mem_pos += 1;
                Ok(Some(m))
            }
            (Some(_), _) => {
                #[allow(clippy::expect_used, reason = "the match peeked an entry on the heap")]
                let Reverse((e, i)) = self.heap.pop().expect("peeked");
                if let Some(n) = self.readers[i].next_entry()? {
                    self.heap.push(Reverse((n, i)));
                }
                Ok(Some(e))
            }
        }
    }
}

/// Bytes appended in order, spooled to a file once more than a bound has gathered.
#[derive(Debug)]
pub(crate) struct ByteSpool {
    buf: Vec<u8>,
    cap: usize,
    spill_path: Option<PathBuf>,
    file: Option<(TempFile, BufWriter<File>)>,
    spilled: u64,
}

impl ByteSpool {
    /// A spool that moves its bytes to `spill_path` whenever it holds `cap`; with no path it
    /// keeps everything in memory.
    pub(crate) fn new(spill_path: Option<PathBuf>, cap: usize) -> Self {
        ByteSpool {
            buf: Vec::new(),
            cap: cap.max(1),
            spill_path,
            file: None,
            spilled: 0,
        }
    }

    pub(crate) fn push(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.buf.len() >= self.cap
            && let Some(path) = &self.spill_path
        {
            let (_, w) = match &mut self.file {
                Some(open) => open,
                slot @ None => {
                    let tmp = TempFile::create(path.clone())?;
                    let w = BufWriter::with_capacity(1 << 20, tmp.file.try_clone()?);
                    slot.insert((tmp, w))
                }
            };
            w.write_all(&self.buf)?;
            self.spilled += self.buf.len() as u64;
            self.buf.clear();
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    /// Bytes pushed so far.
    pub(crate) fn len(&self) -> u64 {
        self.spilled + self.buf.len() as u64
    }

    /// Calls `f` with the bytes in order, a slice of at most [`RUN_READ`] at a time (past the
    /// spooled part, what is in memory comes whole).
    pub(crate) fn for_each_slice(
        &mut self,
        mut f: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        if let Some((tmp, w)) = &mut self.file {
            w.flush()?;
            let mut bytes = vec![0u8; RUN_READ];
            let mut off = 0u64;
            while off < self.spilled {
                let n = (self.spilled - off).min(RUN_READ as u64) as usize;
                tmp.file.read_exact_at(&mut bytes[..n], off)?;
                f(&bytes[..n])?;
                off += n as u64;
            }
        }
        f(&self.buf)
    }
}

/// Series refs in ascending order, spooled to a file past a bound.
#[derive(Debug)]
pub(crate) struct RefSpool {
    bytes: ByteSpool,
    refs: Vec<u32>,
}

impl RefSpool {
    /// A spool holding up to `cap` refs in memory.
    pub(crate) fn new(spill_path: Option<PathBuf>, cap: usize) -> Self {
        RefSpool {
            bytes: ByteSpool::new(spill_path, cap.saturating_mul(4)),
            refs: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, r: u32) -> std::io::Result<()> {
        self.bytes.push(&r.to_le_bytes())
    }

    /// Refs added so far.
    pub(crate) fn len(&self) -> u64 {
        self.bytes.len() / 4
    }

    /// Calls `f` with the refs in order, a slice at a time.
    pub(crate) fn for_each_slice(
        &mut self,
        mut f: impl FnMut(&[u32]) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let refs = &mut self.refs;
        self.bytes.for_each_slice(|b| {
            // Slices hold whole refs: the spool moves whole multiples of 4 bytes.
            for chunk in b.chunks(RUN_READ) {
                refs.clear();
                refs.extend(
                    chunk
                        .chunks_exact(4)
                        .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]])),
                );
                f(refs)?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn walk(s: &SortedPostings) -> Vec<Entry> {
        let mut it = s.iter();
        let mut out = Vec::new();
        while let Some(e) = it.next_entry().unwrap() {
            out.push(e);
        }
        out
    }

    proptest! {
        #[test]
        fn entries_come_back_sorted_whatever_the_buffer(
            pairs in proptest::collection::vec((0u32..5, 0u32..70_000), 0..400),
            labels in 1usize..4,
            cap in 1usize..64,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let mut spool = PostingsSpool::new(Some(dir.path().join("spool")), cap);
            let mut all = Vec::new();
            for (series, &(n, v)) in pairs.iter().enumerate() {
                for k in 0..labels as u32 {
                    let e = [n * 4 + k, v.wrapping_mul(k + 1) % 70_000, series as u32];
                    spool.push(e).unwrap();
                    all.push(e);
                }
            }
            all.sort();
            let sorted = spool.finish().unwrap();
            prop_assert_eq!(walk(&sorted), all.clone());
            // A second walk sees the same.
            prop_assert_eq!(walk(&sorted), all);
        }
    }

    #[test]
    fn runs_longer_than_a_read_come_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = PostingsSpool::new(Some(dir.path().join("spool")), 20_000);
        let mut all = Vec::new();
        for series in 0..50_000u32 {
            for name in 0..3 {
                let e = [name, (series * 7919 + name) % 1000, series];
                spool.push(e).unwrap();
                all.push(e);
            }
        }
        all.sort();
        assert_eq!(walk(&spool.finish().unwrap()), all);
    }

    #[test]
    fn the_run_file_is_removed_when_done() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool");
        let mut spool = PostingsSpool::new(Some(path.clone()), 2);
        for i in 0..10 {
            spool.push([1, 10 - i, i]).unwrap();
        }
        let sorted = spool.finish().unwrap();
        assert!(path.exists());
        assert_eq!(walk(&sorted).len(), 10);
        drop(sorted);
        assert!(!path.exists());
    }

    #[test]
    fn refs_spill_and_come_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut refs = RefSpool::new(Some(dir.path().join("refs")), 3);
        for r in 0..100_000u32 {
            refs.push(r * 2).unwrap();
        }
        assert_eq!(refs.len(), 100_000);
        let mut got = Vec::new();
        refs.for_each_slice(|s| {
            got.extend_from_slice(s);
            Ok(())
        })
        .unwrap();
        assert_eq!(got, (0..100_000u32).map(|r| r * 2).collect::<Vec<_>>());
    }
}
