//! Reading records back out of segments, and cutting a torn tail off the log.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::checkpoint::last_checkpoint;
use super::segment::{list_segments, parse_segment_name, sync_dir};
use super::{HEADER_SIZE, PAGE_SIZE, WalError, frag};
use crate::encoding::crc32c;

/// Bytes read from a segment at a time: 16 pages, as Prometheus's reader buffers. Always a
/// whole number of pages, so a page is never split between two reads.
const READ_SIZE: usize = 16 * PAGE_SIZE;

/// The most a snappy block can expand: a 3-byte copy yields at most 64 bytes. A header
/// claiming more is corrupt, and is refused before anything that large is allocated.
const SNAPPY_MAX_RATIO: usize = 22;

/// Where the current record's bytes are.
#[derive(Debug, Clone)]
enum Rec {
    None,
    /// One uncompressed fragment, read in place.
    Buf(Range<usize>),
    /// Fragments joined in `acc`.
    Acc,
    /// Decompressed into `out[..n]`.
    Out(usize),
}

/// The fragment parser: one segment's bytes in, whole records out. Holds no source, so one
/// set of buffers serves every segment of a log.
struct Fragments {
    name: PathBuf,
    buf: Box<[u8]>,
    /// Bytes of `buf` holding segment data.
    end: usize,
    pos: usize,
    /// Segment offset of `buf[0]`: a multiple of [`READ_SIZE`].
    base: u64,
    eof: bool,
    /// Data of the fragments read so far of a record not yet complete, or of the last one.
    acc: Vec<u8>,
    out: Vec<u8>,
    rec: Rec,
    /// Segment offset of the current (or pending) record's first fragment.
    start: u64,
    /// Compression flags of a record whose first fragment has been read and last not yet.
    pending: Option<u8>,
    decoder: snap::raw::Decoder,
}

impl Fragments {
    fn new() -> Self {
        Fragments {
            name: PathBuf::new(),
            buf: vec![0; READ_SIZE].into_boxed_slice(),
            end: 0,
            pos: 0,
            base: 0,
            eof: false,
            acc: Vec::new(),
            out: Vec::new(),
            rec: Rec::None,
            start: 0,
            pending: None,
            decoder: snap::raw::Decoder::new(),
        }
    }

    /// Starts over at the beginning of segment `name`.
    fn reset(&mut self, name: PathBuf) {
        self.name = name;
        self.end = 0;
        self.pos = 0;
        self.base = 0;
        self.eof = false;
        self.rec = Rec::None;
        self.start = 0;
        self.pending = None;
    }

    fn corrupt(&self, offset: u64, reason: impl Into<String>) -> WalError {
        WalError::Corrupt {
            segment: self.name.clone(),
            offset,
            reason: reason.into(),
        }
    }

    fn refill(&mut self, src: &mut impl Read) -> Result<(), WalError> {
        self.base += self.end as u64;
        self.pos = 0;
        self.end = 0;
        while self.end < READ_SIZE {
            match src.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => self.end += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(WalError::Io {
                        path: self.name.clone(),
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    /// Reads fragments up to the end of the next whole record; false at the segment's end.
    fn advance(&mut self, src: &mut impl Read) -> Result<bool, WalError> {
        self.rec = Rec::None;
        loop {
            if self.pos == self.end {
                if !self.eof {
                    self.refill(src)?;
                    continue;
                }
                if self.pending.is_some() {
                    return Err(self.corrupt(
                        self.start,
                        "last record is torn: the segment ends before its last fragment",
                    ));
                }
                return Ok(false);
            }
            let off = self.base + self.pos as u64;
            let page_left = PAGE_SIZE - (off % PAGE_SIZE as u64) as usize;
            // A short read happens only at the end of the file: a segment's last page may be
            // partial, and reads as if the rest were zeros.
            let avail = (self.end - self.pos).min(page_left);
            let t = self.buf[self.pos];
            // The first byte that cannot be trusted: the record this fragment belongs to.
            let bad = if self.pending.is_some() {
                self.start
            } else {
                off
            };
            if t & frag::TYPE_MASK == frag::PAGE_TERM {
                let page = &self.buf[self.pos..self.pos + avail];
                if page.iter().any(|&b| b != 0) {
                    return Err(self.corrupt(bad, "non-zero byte in a page's zero padding"));
                }
                self.pos += avail;
                continue;
            }
            if t & !(frag::TYPE_MASK | frag::SNAPPY | frag::ZSTD) != 0
                || t & frag::TYPE_MASK > frag::LAST
            {
                return Err(self.corrupt(bad, format!("invalid fragment type byte {t:#04x}")));
            }
            if page_left < HEADER_SIZE {
                return Err(self.corrupt(bad, "fragment header crosses a page boundary"));
            }
            if avail < HEADER_SIZE {
                return Err(self.corrupt(bad, "torn fragment: the segment ends in its header"));
            }
            let h = &self.buf[self.pos..self.pos + HEADER_SIZE];
            let len = usize::from(u16::from_be_bytes([h[1], h[2]]));
            let crc = u32::from_be_bytes([h[3], h[4], h[5], h[6]]);
            if HEADER_SIZE + len > page_left {
                return Err(self.corrupt(
                    bad,
                    format!("fragment of {len} bytes crosses a page boundary"),
                ));
            }
            if HEADER_SIZE + len > avail {
                return Err(self.corrupt(bad, "torn fragment: the segment ends in its data"));
            }
            let data = self.pos + HEADER_SIZE..self.pos + HEADER_SIZE + len;
            let actual = crc32c(&self.buf[data.clone()]);
            if actual != crc {
                return Err(self.corrupt(
                    bad,
                    format!("fragment checksum {actual:#010x}, header says {crc:#010x}"),
                ));
            }
            let flags = t & (frag::SNAPPY | frag::ZSTD);
            if flags == frag::SNAPPY | frag::ZSTD {
                return Err(self.corrupt(bad, "fragment flagged both snappy and zstd"));
            }
            match (t & frag::TYPE_MASK, self.pending) {
                (frag::FULL, None) => {
                    self.start = off;
                    self.pos = data.end;
                    self.finish(flags, Some(data))?;
                    return Ok(true);
                }
                (frag::FIRST, None) => {
                    self.start = off;
                    self.pending = Some(flags);
                    self.acc.clear();
                    self.acc.extend_from_slice(&self.buf[data.clone()]);
                    self.pos = data.end;
                }
                (frag::MIDDLE | frag::LAST, Some(f)) if f != flags => {
                    return Err(self.corrupt(bad, "compression flags change within a record"));
                }
                (frag::MIDDLE, Some(_)) => {
                    self.acc.extend_from_slice(&self.buf[data.clone()]);
                    self.pos = data.end;
                }
                (frag::LAST, Some(_)) => {
                    self.acc.extend_from_slice(&self.buf[data.clone()]);
                    self.pos = data.end;
                    self.pending = None;
                    self.finish(flags, None)?;
                    return Ok(true);
                }
                (frag::FULL | frag::FIRST, Some(_)) => {
                    return Err(self.corrupt(bad, "a record starts before the previous one ended"));
                }
                _ => {
                    return Err(
                        self.corrupt(bad, "fragment continues a record that was never started")
                    );
                }
            }
        }
    }

    /// Sets the record just completed: the fragment `one` in place, or the joined fragments;
    /// decompressed when flagged.
    fn finish(&mut self, flags: u8, one: Option<Range<usize>>) -> Result<(), WalError> {
        if flags == 0 {
            self.rec = one.map_or(Rec::Acc, Rec::Buf);
            return Ok(());
        }
        if flags == frag::ZSTD {
            return Err(WalError::Zstd {
                segment: self.name.clone(),
                offset: self.start,
            });
        }
        let input = match &one {
            Some(r) => &self.buf[r.clone()],
            None => &self.acc[..],
        };
        let n = snap::raw::decompress_len(input)
            .map_err(|e| self.corrupt(self.start, format!("snappy: {e}")))?;
        if n > input.len().saturating_mul(SNAPPY_MAX_RATIO) {
            return Err(self.corrupt(
                self.start,
                format!(
                    "snappy header claims {n} bytes from {} compressed",
                    input.len()
                ),
            ));
        }
        if self.out.len() < n {
            self.out.resize(n, 0);
        }
        match self.decoder.decompress(input, &mut self.out[..n]) {
            Ok(m) if m == n => {
                self.rec = Rec::Out(n);
                Ok(())
            }
            Ok(m) => Err(self.corrupt(
                self.start,
                format!("snappy: {m} bytes decompressed, header says {n}"),
            )),
            Err(e) => Err(self.corrupt(self.start, format!("snappy: {e}"))),
        }
    }

    fn record(&self) -> &[u8] {
        match &self.rec {
            Rec::None => &[],
            Rec::Buf(r) => &self.buf[r.clone()],
            Rec::Acc => &self.acc,
            Rec::Out(n) => &self.out[..*n],
        }
    }
}

/// Reads the records of one segment from any byte source (a file, or bytes in memory).
pub struct SegmentReader<R> {
    src: R,
    frag: Fragments,
}

impl<R> fmt::Debug for SegmentReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SegmentReader")
            .field("segment", &self.frag.name)
            .field("offset", &(self.frag.base + self.frag.pos as u64))
            .finish()
    }
}

impl<R: Read> SegmentReader<R> {
    /// A reader at the start of the segment `src`; `name` is the path errors give.
    pub fn new(src: R, name: impl Into<PathBuf>) -> Self {
        let mut frag = Fragments::new();
        frag.reset(name.into());
        SegmentReader { src, frag }
    }

    /// The next whole record (decompressed), or `None` at the end of the segment. The slice
    /// lives until the next call.
    #[allow(
        clippy::should_implement_trait,
        reason = "the record borrows the reader, so it cannot be Iterator::next"
    )]
    pub fn next(&mut self) -> Result<Option<&[u8]>, WalError> {
        if self.frag.advance(&mut self.src)? {
            Ok(Some(self.frag.record()))
        } else {
            Ok(None)
        }
    }

    /// Byte offset in the segment where the last record returned starts.
    pub fn offset(&self) -> u64 {
        self.frag.start
    }
}

/// Reads a WAL directory as Prometheus replays it: the segments of the newest
/// `checkpoint.NNNNNNNN/` (if any) first, then the log's segments numbered after it, records
/// in order. Each record is checked fragment by fragment (CRC-32C, fragment order, page
/// padding) and decompressed.
pub struct WalReader {
    segments: Vec<PathBuf>,
    next: usize,
    file: Option<File>,
    frag: Fragments,
}

impl fmt::Debug for WalReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WalReader")
            .field("segments", &self.segments)
            .field("next", &self.next)
            .finish()
    }
}

impl WalReader {
    /// A reader over `wal_dir`'s newest checkpoint and the segments after it. Fails when the
    /// segments have a gap, or the first one after the checkpoint is missing.
    pub fn open(wal_dir: &Path) -> Result<Self, WalError> {
        let mut segments = Vec::new();
        let mut after = None;
        if let Some((dir, n)) = last_checkpoint(wal_dir)? {
            segments.extend(list_segments(&dir)?.into_iter().map(|s| s.1));
            after = Some(n);
        }
        let mut wal = list_segments(wal_dir)?;
        if let Some(n) = after {
            wal.retain(|s| s.0 > n);
            if let Some(first) = wal.first()
                && first.0 != n + 1
            {
                return Err(WalError::Layout {
                    path: wal_dir.to_path_buf(),
                    reason: format!(
                        "checkpoint.{n:08} is followed by segment {:08}, not {:08}",
                        first.0,
                        n + 1
                    ),
                });
            }
        }
        segments.extend(wal.into_iter().map(|s| s.1));
        Ok(Self::from_segments(segments))
    }

    /// A reader over the given segment files, in that order.
    pub(super) fn from_segments(segments: Vec<PathBuf>) -> Self {
        WalReader {
            segments,
            next: 0,
            file: None,
            frag: Fragments::new(),
        }
    }

    /// The next whole record (decompressed), or `None` at the end of the log. A torn or
    /// corrupt record gives [`WalError::Corrupt`] naming its segment and the offset where it
    /// starts. The slice lives until the next call.
    #[allow(
        clippy::should_implement_trait,
        reason = "the record borrows the reader, so it cannot be Iterator::next"
    )]
    pub fn next(&mut self) -> Result<Option<&[u8]>, WalError> {
        Ok(if self.advance()? {
            Some(self.frag.record())
        } else {
            None
        })
    }

    /// [`WalReader::next`] in two steps, for a caller that wants the record and its
    /// position at once: moves to the next record (false at the end of the log); the record
    /// is then [`WalReader::record`].
    pub fn advance(&mut self) -> Result<bool, WalError> {
        loop {
            let Some(file) = self.file.as_mut() else {
                let Some(path) = self.segments.get(self.next) else {
                    return Ok(false);
                };
                self.next += 1;
                self.file = Some(File::open(path).map_err(WalError::io(path))?);
                self.frag.reset(path.clone());
                continue;
            };
            if self.frag.advance(file)? {
                return Ok(true);
            }
            self.file = None;
        }
    }

    /// The record [`WalReader::advance`] moved to (empty before the first).
    pub fn record(&self) -> &[u8] {
        self.frag.record()
    }

    /// The segment file the last record returned came from.
    pub fn segment(&self) -> &Path {
        &self.frag.name
    }

    /// Byte offset in [`WalReader::segment`] where the last record returned starts.
    pub fn offset(&self) -> u64 {
        self.frag.start
    }
}

/// Repairs the log after `corrupt` (a [`WalError::Corrupt`] from reading `wal_dir`), as
/// Prometheus repairs a torn tail: every segment after the named one is deleted, and the
/// named one is cut at the offset, the rest of its last page zeros. The records before the
/// offset survive. Corruption inside a checkpoint is refused: the head could not know which
/// series it lost.
pub fn repair(wal_dir: &Path, corrupt: &WalError) -> Result<(), WalError> {
    let WalError::Corrupt {
        segment, offset, ..
    } = corrupt
    else {
        return Err(WalError::InvalidArgument(format!(
            "only a corrupt segment can be repaired, not: {corrupt}"
        )));
    };
    let n = segment
        .file_name()
        .and_then(|s| s.to_str())
        .and_then(parse_segment_name);
    let in_dir = segment
        .parent()
        .is_some_and(|p| same_dir(p, wal_dir).unwrap_or(false));
    let Some(n) = n.filter(|_| in_dir) else {
        return Err(WalError::InvalidArgument(format!(
            "{} is not a segment of {} (a checkpoint cannot be repaired)",
            segment.display(),
            wal_dir.display()
        )));
    };
    // Newest first, so a crash part way leaves the log without a gap.
    for (m, path) in list_segments(wal_dir)?.into_iter().rev() {
        if m > n {
            std::fs::remove_file(&path).map_err(WalError::io(&path))?;
        }
    }
    let file = OpenOptions::new()
        .write(true)
        .open(segment)
        .map_err(WalError::io(segment))?;
    let len = file.metadata().map_err(WalError::io(segment))?.len();
    if *offset > len {
        return Err(WalError::InvalidArgument(format!(
            "{}: repair offset {offset} is past the segment's end ({len} bytes)",
            segment.display()
        )));
    }
    // A whole last page, as Prometheus leaves a repaired segment: zeros read as its padding.
    let page = PAGE_SIZE as u64;
    file.set_len(*offset)
        .and_then(|()| file.set_len(offset.div_ceil(page) * page))
        .and_then(|()| file.sync_all())
        .map_err(WalError::io(segment))?;
    sync_dir(wal_dir)
}

fn same_dir(a: &Path, b: &Path) -> std::io::Result<bool> {
    Ok(a == b || a.canonicalize()? == b.canonicalize()?)
}
