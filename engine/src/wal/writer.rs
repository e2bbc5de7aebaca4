//! Appending records to segments, page by page, as Prometheus's `wlog.WL` lays them out.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::segment::{segment_name, segment_range};
use super::{DEFAULT_SEGMENT_SIZE, HEADER_SIZE, PAGE_SIZE, WalError, frag};
use crate::encoding::crc32c;

/// How a [`WalWriter`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalOptions {
    /// Bytes per segment; a whole number of [`PAGE_SIZE`] pages. A record that does not fit in
    /// the rest of a segment starts the next one.
    pub segment_size: usize,
    /// Snappy-compress each record whose compressed form is smaller, as Prometheus does with
    /// `--storage.tsdb.wal-compression` (on by default since 2.20).
    pub compress: bool,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_size: DEFAULT_SEGMENT_SIZE,
            compress: true,
        }
    }
}

/// Writes records into a WAL directory: each record cut into fragments that never cross a
/// 32 KiB page, the page buffered until it fills or the batch ends, then written with
/// `write(2)`. The byte layout is Prometheus's, page padding and segment cuts included.
pub struct WalWriter {
    dir: PathBuf,
    opts: WalOptions,
    file: File,
    path: PathBuf,
    segment: u32,
    /// Pages of the current segment already written whole.
    done_pages: usize,
    /// The page being filled; bytes past `alloc` are zero.
    page: Box<[u8]>,
    /// Bytes of `page` holding fragments.
    alloc: usize,
    /// Bytes of `page` already written to the file.
    flushed: usize,
    compressed: Vec<u8>,
    encoder: snap::raw::Encoder,
}

impl fmt::Debug for WalWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WalWriter")
            .field("path", &self.path)
            .field("opts", &self.opts)
            .field("done_pages", &self.done_pages)
            .field("alloc", &self.alloc)
            .finish()
    }
}

/// The writer's state where a record began (see [`WalWriter::roll_back`]).
struct RecordStart {
    done_pages: usize,
    alloc: usize,
    flushed: usize,
    /// The page's bytes before the record.
    page: Vec<u8>,
}

impl WalWriter {
    /// Opens `dir` (creating it): like Prometheus's `wlog.New`, writing starts in a new segment
    /// numbered after the last existing one (0 in an empty directory).
    pub fn open(dir: &Path, opts: WalOptions) -> Result<Self, WalError> {
        if opts.segment_size == 0 || !opts.segment_size.is_multiple_of(PAGE_SIZE) {
            return Err(WalError::InvalidArgument(format!(
                "WAL segment size {} is not a positive multiple of the {PAGE_SIZE}-byte page",
                opts.segment_size
            )));
        }
        std::fs::create_dir_all(dir).map_err(WalError::io(dir))?;
        let segment = match segment_range(dir)? {
            Some((_, last)) => last.checked_add(1).ok_or_else(|| {
                WalError::InvalidArgument(format!("{}: segment numbers exhausted", dir.display()))
            })?,
            None => 0,
        };
        let (file, path, done_pages) = create_segment(dir, segment)?;
        Ok(WalWriter {
            dir: dir.to_path_buf(),
            opts,
            file,
            path,
            segment,
            done_pages,
            page: vec![0; PAGE_SIZE].into_boxed_slice(),
            alloc: 0,
            flushed: 0,
            compressed: Vec::new(),
            encoder: snap::raw::Encoder::new(),
        })
    }

    /// Appends each buffer as one record, then writes what is buffered to the file before
    /// returning: a killed process loses nothing logged, a crashed machine what was not synced.
    pub fn log(&mut self, records: &[&[u8]]) -> Result<(), WalError> {
        for (i, rec) in records.iter().enumerate() {
            self.log_one(rec, i + 1 == records.len())?;
        }
        Ok(())
    }

    fn log_one(&mut self, rec: &[u8], last_of_batch: bool) -> Result<(), WalError> {
        // Only a failed flush leaves a full page behind.
        if self.page_full() {
            self.flush_page(true)?;
        }
        let mut compressed = std::mem::take(&mut self.compressed);
        let snappy = self.opts.compress && self.compress_into(rec, &mut compressed);
        let enc = if snappy { &compressed[..] } else { rec };
        let result = self.write_fragments(enc, if snappy { frag::SNAPPY } else { 0 });
        self.compressed = compressed;
        result?;
        if last_of_batch && self.alloc > 0 {
            self.flush_page(false)?;
        }
        Ok(())
    }

    /// Snappy block format of `rec` into `out`; false when that is not smaller (short records
    /// grow) or `rec` is beyond snappy's 4 GiB limit.
    fn compress_into(&mut self, rec: &[u8], out: &mut Vec<u8>) -> bool {
        let max = snap::raw::max_compress_len(rec.len());
        if max == 0 {
            return false;
        }
        out.resize(max, 0);
        match self.encoder.compress(rec, out) {
            Ok(n) if n < rec.len() => {
                out.truncate(n);
                true
            }
            _ => false,
        }
    }

    fn write_fragments(&mut self, enc: &[u8], flags: u8) -> Result<(), WalError> {
        // Room for the record in this segment: the rest of this page and every page left, each
        // less a header. Prometheus counts the same way, so records cut segments where its do.
        let pages = (self.opts.segment_size / PAGE_SIZE) as i64;
        let room = (PAGE_SIZE - self.alloc - HEADER_SIZE) as i64
            + (PAGE_SIZE - HEADER_SIZE) as i64 * (pages - self.done_pages as i64 - 1);
        if enc.len() as i64 > room {
            self.next_segment()?;
        }
        // Where the record starts, to take back whatever of it was written when a later write
        // fails: left in the file, its first fragments would sit before the next record's, and
        // a reader would cut the log there, losing every record written after it.
        let start = RecordStart {
            done_pages: self.done_pages,
            alloc: self.alloc,
            flushed: self.flushed,
            page: self.page[..self.alloc].to_vec(),
        };
        let written = self.write_record(enc, flags);
        if written.is_err() {
            self.roll_back(start)?;
        }
        written
    }

    /// Puts the segment and the page back as they were before a record whose writing failed:
    /// the file cut to the bytes that preceded the record, the page holding what it held.
    fn roll_back(&mut self, start: RecordStart) -> Result<(), WalError> {
        let len = (start.done_pages * PAGE_SIZE + start.flushed) as u64;
        self.file.set_len(len).map_err(WalError::io(&self.path))?;
        self.page.fill(0);
        self.page[..start.alloc].copy_from_slice(&start.page);
        self.done_pages = start.done_pages;
        self.alloc = start.alloc;
        self.flushed = start.flushed;
        Ok(())
    }

    fn write_record(&mut self, enc: &[u8], flags: u8) -> Result<(), WalError> {
        let mut rest = enc;
        let mut first = true;
        loop {
            // With exactly a header's room left this writes an empty fragment, as Prometheus
            // does; the page is then full and the record goes on in the next.
            let n = rest.len().min(PAGE_SIZE - self.alloc - HEADER_SIZE);
            let (part, tail) = rest.split_at(n);
            let typ = match (first, tail.is_empty()) {
                (true, true) => frag::FULL,
                (true, false) => frag::FIRST,
                (false, false) => frag::MIDDLE,
                (false, true) => frag::LAST,
            };
            let a = self.alloc;
            self.page[a] = typ | flags;
            self.page[a + 1..a + 3].copy_from_slice(&(n as u16).to_be_bytes());
            self.page[a + 3..a + 7].copy_from_slice(&crc32c(part).to_be_bytes());
            self.page[a + HEADER_SIZE..a + HEADER_SIZE + n].copy_from_slice(part);
            self.alloc += HEADER_SIZE + n;
            if self.page_full() {
                self.flush_page(true)?;
            }
            rest = tail;
            first = false;
            if rest.is_empty() {
                return Ok(());
            }
        }
    }

    /// Too little room for another fragment header: the rest of the page will be zeros.
    fn page_full(&self) -> bool {
        PAGE_SIZE - self.alloc < HEADER_SIZE
    }

    /// Writes the page's unwritten bytes. When no header fits any more, or `clear` asks, the
    /// page is written to its end (zeros after the fragments) and a fresh page begins.
    fn flush_page(&mut self, clear: bool) -> Result<(), WalError> {
        let clear = clear || self.page_full();
        if clear {
            self.alloc = PAGE_SIZE;
        }
        while self.flushed < self.alloc {
            // Count what reached the file, so a retry after an error does not write it twice.
            match self.file.write(&self.page[self.flushed..self.alloc]) {
                Ok(0) => {
                    return Err(WalError::Io {
                        path: self.path.clone(),
                        source: std::io::ErrorKind::WriteZero.into(),
                    });
                }
                Ok(n) => self.flushed += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(WalError::Io {
                        path: self.path.clone(),
                        source,
                    });
                }
            }
        }
        if clear {
            self.page.fill(0);
            self.alloc = 0;
            self.flushed = 0;
            self.done_pages += 1;
        }
        Ok(())
    }

    /// fsync of the current segment.
    pub fn sync(&mut self) -> Result<(), WalError> {
        self.file.sync_all().map_err(WalError::io(&self.path))
    }

    /// Closes the current segment (its last page padded with zeros to the page's end, as
    /// Prometheus pads a segment it closes, then fsynced) and starts the next; returns the
    /// number of the segment that was closed.
    pub fn next_segment(&mut self) -> Result<u32, WalError> {
        if self.alloc > 0 {
            self.flush_page(true)?;
        }
        let closed = self.segment;
        let next = closed.checked_add(1).ok_or_else(|| {
            WalError::InvalidArgument(format!("{}: segment numbers exhausted", self.dir.display()))
        })?;
        let (file, path, done_pages) = create_segment(&self.dir, next)?;
        let prev = std::mem::replace(&mut self.file, file);
        let prev_path = std::mem::replace(&mut self.path, path);
        self.segment = next;
        self.done_pages = done_pages;
        prev.sync_all().map_err(WalError::io(prev_path))?;
        Ok(closed)
    }

    /// Pads the last page as Prometheus does when it closes the log, and fsyncs the segment.
    pub fn close(mut self) -> Result<(), WalError> {
        if self.alloc > 0 {
            self.flush_page(true)?;
        }
        self.sync()
    }

    /// The number of the segment being written.
    pub fn segment(&self) -> u32 {
        self.segment
    }

    /// The WAL directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Opens segment `n` for appending, creating it; returns it with the whole pages it holds.
fn create_segment(dir: &Path, n: u32) -> Result<(File, PathBuf, usize), WalError> {
    let path = segment_name(dir, n);
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(WalError::io(&path))?;
    let len = file.metadata().map_err(WalError::io(&path))?.len();
    Ok((file, path, (len / PAGE_SIZE as u64) as usize))
}
