//! Chunk segment files `chunks/000001`, `000002`, … and chunk encoding bytes
//! (`docs/formats/tsdb-block.md`, Chunk segment files and Chunk encoding bytes).
//!
//! Each file: `BE32 magic 0x85BD40DD`, `u8 version 1`, 3 padding bytes, then records of
//! `uvarint len`, `u8 encoding`, `len` bytes of data, `BE32 CRC32C(encoding ‖ data)`.
//! A [`ChunkRef`] is `segment_index << 32 | record_offset`, the segment index 0-based.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::{BlockError, sync_dir};
use crate::chunk::Encoding;
use crate::encoding::{Decbuf, crc32c, crc32c_append, put_uvarint};

/// A chunk reference: segment index (0-based; file 000001 = 0) << 32 | byte offset of the
/// record in that file.
pub type ChunkRef = u64;

/// Magic number at the start of every segment file.
pub const SEGMENT_MAGIC: u32 = 0x85BD_40DD;
/// The segment format version Prometheus writes and reads.
pub const SEGMENT_VERSION: u8 = 1;
/// Bytes of the segment header: magic, version, 3 bytes of padding.
pub const SEGMENT_HEADER_SIZE: usize = 8;
/// Prometheus's default maximum segment size, bytes.
pub const DEFAULT_MAX_SEGMENT_SIZE: u64 = 512 * 1024 * 1024;
/// A chunk length is a uvarint of at most 32 bits, so at most 5 bytes.
const MAX_LEN_FIELD: usize = 5;
const CRC_SIZE: usize = 4;
/// Large buffer: the writer is fed millions of small records during compaction.
const WRITE_BUFFER_SIZE: usize = 1024 * 1024;

/// Builds a [`ChunkRef`] from a 0-based segment index and a record offset.
#[inline]
pub fn chunk_ref(segment: u32, offset: u32) -> ChunkRef {
    (u64::from(segment) << 32) | u64::from(offset)
}

/// Splits a [`ChunkRef`] into (0-based segment index, record offset).
#[inline]
pub fn split_ref(r: ChunkRef) -> (u32, u32) {
    ((r >> 32) as u32, r as u32)
}

/// File name of the segment with 0-based index `segment`: 6-digit, zero-padded, 1-based.
pub fn segment_file_name(segment: u32) -> String {
    format!("{:06}", u64::from(segment) + 1)
}

/// Bytes of one segment file: memory-mapped from disk, or owned (tests, fuzzing).
enum SegmentBytes {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl SegmentBytes {
    #[inline]
    fn as_slice(&self) -> &[u8] {
        match self {
            SegmentBytes::Mapped(m) => m,
            SegmentBytes::Owned(v) => v,
        }
    }
}

struct Segment {
    path: PathBuf,
    bytes: SegmentBytes,
}

/// Read access to all chunk segment files of one block.
pub struct SegmentReader {
    dir: PathBuf,
    segments: Vec<Segment>,
}

impl std::fmt::Debug for SegmentReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentReader")
            .field("dir", &self.dir)
            .field("num_segments", &self.segments.len())
            .field("total_bytes", &self.total_bytes())
            .finish()
    }
}

impl SegmentReader {
    /// Maps every segment file of `chunks_dir` ([`segment_paths`]) and checks its header.
    pub fn open(chunks_dir: &Path) -> Result<Self, BlockError> {
        let mut segments = Vec::new();
        for path in segment_paths(chunks_dir)? {
            let bytes = map_file(&path)?;
            check_header(bytes.as_slice(), &path)?;
            segments.push(Segment { path, bytes });
        }
        Ok(SegmentReader {
            dir: chunks_dir.to_path_buf(),
            segments,
        })
    }

    /// A reader over in-memory segment contents, the first being file `000001` in `dir`.
    /// Headers are checked as in [`SegmentReader::open`].
    pub fn from_segments(segments: Vec<Vec<u8>>, dir: PathBuf) -> Result<Self, BlockError> {
        if segments.len() as u64 > u64::from(u32::MAX) + 1 {
            return Err(BlockError::SegmentNumbering {
                dir,
                expected: u64::from(u32::MAX) + 1,
                found: format!("{} segments", segments.len()),
            });
        }
        let mut out = Vec::with_capacity(segments.len());
        for (i, bytes) in segments.into_iter().enumerate() {
            let path = dir.join(segment_file_name(i as u32));
            check_header(&bytes, &path)?;
            out.push(Segment {
                path,
                bytes: SegmentBytes::Owned(bytes),
            });
        }
        Ok(SegmentReader { dir, segments: out })
    }

    /// Returns (encoding byte, payload) of the chunk at `r`, checking the record's CRC32C.
    ///
    /// Errors name the file and offset when `r` names a missing segment, points outside the
    /// file, the record is truncated, or the checksum does not match.
    #[inline]
    pub fn chunk(&self, r: ChunkRef) -> Result<(u8, &[u8]), BlockError> {
        self.read_record(r, true)
    }

    /// Like [`SegmentReader::chunk`] but without the CRC check, for hot paths that trust the
    /// files (or verified them once).
    #[inline]
    pub fn chunk_unchecked_crc(&self, r: ChunkRef) -> Result<(u8, &[u8]), BlockError> {
        self.read_record(r, false)
    }

    /// Like [`SegmentReader::chunk`], with the encoding byte named; an encoding outside
    /// `docs/formats/tsdb-block.md`, Chunk encoding bytes, is a [`BlockError::UnknownEncoding`].
    pub fn chunk_encoded(&self, r: ChunkRef) -> Result<(Encoding, &[u8]), BlockError> {
        let (enc, data) = self.chunk(r)?;
        match Encoding::try_from(enc).ok() {
            Some(e) => Ok((e, data)),
            None => {
                let (seg, offset) = split_ref(r);
                Err(BlockError::UnknownEncoding {
                    path: self.segments[seg as usize].path.clone(),
                    offset: u64::from(offset),
                    encoding: enc,
                })
            }
        }
    }

    /// Drops the mapped pages from this process: they stay in the page cache and fault back
    /// in when read again. A walk over every chunk of a large block calls it now and then, so
    /// the pages it has passed do not pile up in its resident set.
    pub fn release_pages(&self) {
        for s in &self.segments {
            if let SegmentBytes::Mapped(m) = &s.bytes {
                crate::index::reader::release_mapped_pages(m);
            }
        }
    }

    /// Number of segment files.
    pub fn num_segments(&self) -> usize {
        self.segments.len()
    }

    /// Sum of the segment file sizes, bytes.
    pub fn total_bytes(&self) -> u64 {
        self.segments
            .iter()
            .map(|s| s.bytes.as_slice().len() as u64)
            .sum()
    }

    /// The chunks directory this reader was opened on.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Walks every record of every segment in file order, checking CRCs: a full scan for
    /// verification tools. Stops at the first error.
    pub fn iter(&self) -> SegmentIter<'_> {
        SegmentIter {
            reader: self,
            segment: 0,
            offset: SEGMENT_HEADER_SIZE,
            failed: false,
        }
    }

    fn read_record(&self, r: ChunkRef, check_crc: bool) -> Result<(u8, &[u8]), BlockError> {
        let (seg, offset) = split_ref(r);
        let Some(segment) = self.segments.get(seg as usize) else {
            return Err(BlockError::SegmentMissing {
                dir: self.dir.clone(),
                chunk_ref: r,
                segment: u64::from(seg),
                num_segments: self.segments.len(),
            });
        };
        let bytes = segment.bytes.as_slice();
        let offset = offset as usize;
        if offset < SEGMENT_HEADER_SIZE || offset >= bytes.len() {
            return Err(BlockError::ChunkOutOfBounds {
                path: segment.path.clone(),
                chunk_ref: r,
                offset: offset as u64,
                file_len: bytes.len() as u64,
            });
        }
        decode_record(&bytes[offset..], offset as u64, check_crc)
            .map(|(enc, data, _)| (enc, data))
            .map_err(|e| e.into_block_error(&segment.path))
    }
}

/// Iterator over all records of a [`SegmentReader`]: `(ref, encoding byte, payload)`.
pub struct SegmentIter<'a> {
    reader: &'a SegmentReader,
    segment: usize,
    offset: usize,
    failed: bool,
}

impl std::fmt::Debug for SegmentIter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentIter")
            .field("segment", &self.segment)
            .field("offset", &self.offset)
            .finish()
    }
}

impl<'a> Iterator for SegmentIter<'a> {
    type Item = Result<(ChunkRef, u8, &'a [u8]), BlockError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        loop {
            let seg = self.reader.segments.get(self.segment)?;
            let bytes = seg.bytes.as_slice();
            if self.offset >= bytes.len() {
                self.segment += 1;
                self.offset = SEGMENT_HEADER_SIZE;
                continue;
            }
            let r = chunk_ref(self.segment as u32, self.offset as u32);
            return Some(
                match decode_record(&bytes[self.offset..], self.offset as u64, true) {
                    Ok((enc, data, len)) => {
                        self.offset += len;
                        Ok((r, enc, data))
                    }
                    Err(e) => {
                        self.failed = true;
                        Err(e.into_block_error(&seg.path))
                    }
                },
            );
        }
    }
}

/// A record decoding failure, before the file path is attached.
enum RecordError {
    Decode(crate::encoding::DecodeError),
    Crc {
        offset: u64,
        expected: u32,
        actual: u32,
    },
}

impl RecordError {
    fn into_block_error(self, path: &Path) -> BlockError {
        match self {
            RecordError::Decode(e) => BlockError::decode(path, e),
            RecordError::Crc {
                offset,
                expected,
                actual,
            } => BlockError::CrcMismatch {
                path: path.to_path_buf(),
                offset,
                expected,
                actual,
            },
        }
    }
}

/// What [`read_chunk_record`] found at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordRead<'a> {
    /// A whole record, CRC checked: its encoding byte and payload.
    Chunk {
        /// The TSDB chunk encoding byte (`docs/formats/tsdb-block.md`, Chunk encoding bytes).
        encoding: u8,
        /// The chunk payload, without length, encoding or CRC.
        data: &'a [u8],
        /// The record's CRC32C over encoding and payload, checked.
        crc: u32,
    },
    /// The buffer ends inside the record, which needs this many bytes from its start.
    NeedBytes(u64),
}

/// Decodes the chunk record at the start of `buf`, a piece of the segment file at `path` read
/// from byte offset `base` (a ranged read), checking its CRC.
pub fn read_chunk_record<'a>(
    buf: &'a [u8],
    base: u64,
    path: &Path,
) -> Result<RecordRead<'a>, BlockError> {
    let (len, n) = match crate::encoding::read_uvarint(buf) {
        Ok(v) => v,
        Err(crate::encoding::UvarintError::Truncated) => {
            return Ok(RecordRead::NeedBytes(MAX_LEN_FIELD as u64 + 5));
        }
        Err(_) => {
            return Err(BlockError::decode(
                path,
                crate::encoding::DecodeError::Varint { offset: base },
            ));
        }
    };
    let need = n as u64 + 1 + len + 4;
    if need > buf.len() as u64 {
        return Ok(RecordRead::NeedBytes(need));
    }
    match decode_record(buf, base, true) {
        Ok((encoding, data, len)) => {
            // The record ends with its big-endian CRC.
            #[allow(clippy::expect_used, reason = "a four-byte range converts to [u8; 4]")]
            let crc = u32::from_be_bytes(buf[len - 4..len].try_into().expect("four bytes"));
            Ok(RecordRead::Chunk {
                encoding,
                data,
                crc,
            })
        }
        Err(e) => Err(e.into_block_error(path)),
    }
}

/// Decodes the record at the start of `buf` (which begins at file offset `base`), returning
/// encoding, payload and the record's total length.
#[inline]
fn decode_record(
    buf: &[u8],
    base: u64,
    check_crc: bool,
) -> Result<(u8, &[u8], usize), RecordError> {
    let mut d = Decbuf::new(buf, base);
    let len = d.uvarint32().map_err(RecordError::Decode)?;
    if d.position() > MAX_LEN_FIELD {
        return Err(RecordError::Decode(crate::encoding::DecodeError::Varint {
            offset: base,
        }));
    }
    let enc_pos = d.position();
    let enc = d.u8().map_err(RecordError::Decode)?;
    let data = d.bytes(len as usize).map_err(RecordError::Decode)?;
    let stored = d.be32().map_err(RecordError::Decode)?;
    if check_crc {
        let actual = crc32c(&buf[enc_pos..enc_pos + 1 + data.len()]);
        if actual != stored {
            return Err(RecordError::Crc {
                offset: base,
                expected: stored,
                actual,
            });
        }
    }
    Ok((enc, data, d.position()))
}

/// The segment files of `chunks_dir` in ref order. Files whose names are not all digits are
/// ignored, as Prometheus does; the numbered ones must run 1, 2, 3, … without gaps, because a
/// ref's segment index is the file's position.
pub fn segment_paths(chunks_dir: &Path) -> Result<Vec<PathBuf>, BlockError> {
    let mut numbered: Vec<(u64, String)> = Vec::new();
    let entries = std::fs::read_dir(chunks_dir).map_err(|e| BlockError::io(chunks_dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| BlockError::io(chunks_dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        // Digits that overflow u64 cannot be a valid segment number either.
        let n = name.parse::<u64>().unwrap_or(u64::MAX);
        numbered.push((n, name.to_string()));
    }
    numbered.sort();
    let mut segments = Vec::with_capacity(numbered.len());
    for (i, (n, name)) in numbered.into_iter().enumerate() {
        let expected = i as u64 + 1;
        if n != expected || expected > u64::from(u32::MAX) + 1 {
            return Err(BlockError::SegmentNumbering {
                dir: chunks_dir.to_path_buf(),
                expected,
                found: name,
            });
        }
        segments.push(chunks_dir.join(&name));
    }
    Ok(segments)
}

/// Opens the segment file at `path` for plain reads, checking its header; returns it with
/// its length.
pub fn open_segment_file(path: &Path) -> Result<(File, u64), BlockError> {
    let mut file = File::open(path).map_err(|e| BlockError::io(path, e))?;
    let len = file.metadata().map_err(|e| BlockError::io(path, e))?.len();
    let mut header = Vec::with_capacity(SEGMENT_HEADER_SIZE);
    std::io::Read::take(&mut file, SEGMENT_HEADER_SIZE as u64)
        .read_to_end(&mut header)
        .map_err(|e| BlockError::io(path, e))?;
    check_header(&header, path)?;
    Ok((file, len))
}

fn map_file(path: &Path) -> Result<SegmentBytes, BlockError> {
    let file = File::open(path).map_err(|e| BlockError::io(path, e))?;
    let len = file.metadata().map_err(|e| BlockError::io(path, e))?.len();
    if len < SEGMENT_HEADER_SIZE as u64 {
        // Too short to hold a header; read it so check_header reports the truncation.
        let bytes = std::fs::read(path).map_err(|e| BlockError::io(path, e))?;
        return Ok(SegmentBytes::Owned(bytes));
    }
    // SAFETY: the map is read-only and block files are immutable once written: Gauntlet and
    // Prometheus replace blocks by writing new directories, never by editing segment files in
    // place. If another process truncated the file anyway, reads past the new end would fault
    // (SIGBUS); that is the accepted cost of zero-copy reads, as in Prometheus's own reader.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| BlockError::io(path, e))?;
    Ok(SegmentBytes::Mapped(map))
}

fn check_header(bytes: &[u8], path: &Path) -> Result<(), BlockError> {
    let mut d = Decbuf::new(bytes, 0);
    let magic = d.be32().map_err(|e| BlockError::decode(path, e))?;
    if magic != SEGMENT_MAGIC {
        return Err(BlockError::BadMagic {
            path: path.to_path_buf(),
            offset: 0,
            expected: SEGMENT_MAGIC,
            actual: magic,
        });
    }
    let version = d.u8().map_err(|e| BlockError::decode(path, e))?;
    if version != SEGMENT_VERSION {
        return Err(BlockError::UnsupportedVersion {
            path: path.to_path_buf(),
            what: "chunk segment",
            version: i64::from(version),
        });
    }
    // Prometheus does not check the padding bytes; only require that they are there.
    d.skip(SEGMENT_HEADER_SIZE - 5)
        .map_err(|e| BlockError::decode(path, e))
}

/// Writes chunk records into numbered segment files, starting a new file when the next record
/// would make the current one exceed the maximum size.
pub struct SegmentWriter {
    dir: PathBuf,
    max_segment_size: u64,
    /// The open segment: its 0-based index, its writer, and bytes written so far.
    current: Option<(u32, BackgroundWriter, u64)>,
    /// Closed segments: (0-based index, size in bytes), kept for `finish`.
    done: Vec<(u32, u64)>,
    /// Scratch for one record's length, encoding and CRC fields.
    scratch: Vec<u8>,
}

impl std::fmt::Debug for SegmentWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentWriter")
            .field("dir", &self.dir)
            .field("max_segment_size", &self.max_segment_size)
            .field(
                "segments",
                &(self.done.len() + usize::from(self.current.is_some())),
            )
            .finish()
    }
}

impl SegmentWriter {
    /// A writer into `chunks_dir` (created if missing) with 512 MiB segments.
    pub fn create(chunks_dir: &Path) -> Result<Self, BlockError> {
        Self::with_max_segment_size(chunks_dir, DEFAULT_MAX_SEGMENT_SIZE)
    }

    /// A writer whose segments hold at most `max_bytes` (header included), unless a single
    /// record is larger: a record always fits in an empty segment. `max_bytes` is capped at
    /// 4 GiB because record offsets are 32-bit.
    pub fn with_max_segment_size(chunks_dir: &Path, max_bytes: u64) -> Result<Self, BlockError> {
        std::fs::create_dir_all(chunks_dir).map_err(|e| BlockError::io(chunks_dir, e))?;
        Ok(SegmentWriter {
            dir: chunks_dir.to_path_buf(),
            max_segment_size: max_bytes.min(u64::from(u32::MAX)),
            current: None,
            done: Vec::new(),
            scratch: Vec::with_capacity(16),
        })
    }

    /// Appends one chunk record and returns its ref.
    pub fn write_chunk(&mut self, encoding: u8, data: &[u8]) -> Result<ChunkRef, BlockError> {
        self.write_record(encoding, data, None)
    }

    /// Writes a chunk copied from another block's record whose CRC (over encoding and payload)
    /// was checked when it was read: the same bytes get the same CRC, so it is not computed
    /// again.
    pub fn copy_chunk(
        &mut self,
        encoding: u8,
        data: &[u8],
        crc: u32,
    ) -> Result<ChunkRef, BlockError> {
        self.write_record(encoding, data, Some(crc))
    }

    fn write_record(
        &mut self,
        encoding: u8,
        data: &[u8],
        crc: Option<u32>,
    ) -> Result<ChunkRef, BlockError> {
        let Ok(len) = u32::try_from(data.len()) else {
            return Err(BlockError::ChunkTooLarge {
                path: self.dir.clone(),
                len: data.len() as u64,
                reason: "chunk length field is 32 bits",
            });
        };
        self.scratch.clear();
        put_uvarint(&mut self.scratch, u64::from(len));
        let len_field = self.scratch.len();
        let record_size = (len_field + 1 + data.len() + CRC_SIZE) as u64;

        let needs_new = match &self.current {
            None => true,
            Some((_, _, size)) => {
                *size > SEGMENT_HEADER_SIZE as u64 && size + record_size > self.max_segment_size
            }
        };
        if needs_new {
            self.cut()?;
        }
        let Some((seg, w, size)) = self.current.as_mut() else {
            unreachable!("cut always opens a segment");
        };
        let offset = *size;
        let Ok(offset32) = u32::try_from(offset) else {
            return Err(BlockError::ChunkTooLarge {
                path: self.dir.join(segment_file_name(*seg)),
                len: data.len() as u64,
                reason: "record offset would not fit in 32 bits",
            });
        };
        let crc = crc.unwrap_or_else(|| crc32c_append(crc32c(&[encoding]), data));
        self.scratch.push(encoding);
        let path_of = |seg: u32| self.dir.join(segment_file_name(seg));
        w.write_all(&self.scratch)
            .and_then(|()| w.write_all(data))
            .and_then(|()| w.write_all(&crc.to_be_bytes()))
            .map_err(|e| BlockError::io(path_of(*seg), e))?;
        *size += record_size;
        Ok(chunk_ref(*seg, offset32))
    }

    /// Flushes and fsyncs every segment and the directory; returns each file's path relative
    /// to the block directory (`chunks/000001`, …) and its size in bytes. A writer that got
    /// no chunks leaves an empty directory, as Prometheus does.
    pub fn finish(mut self) -> Result<Vec<(String, u64)>, BlockError> {
        self.close_current()?;
        sync_dir(&self.dir)?;
        Ok(self
            .done
            .iter()
            .map(|&(seg, size)| (format!("chunks/{}", segment_file_name(seg)), size))
            .collect())
    }

    fn close_current(&mut self) -> Result<(), BlockError> {
        if let Some((seg, w, size)) = self.current.take() {
            let path = self.dir.join(segment_file_name(seg));
            let file = w.finish().map_err(|e| BlockError::io(&path, e))?;
            file.sync_all().map_err(|e| BlockError::io(&path, e))?;
            self.done.push((seg, size));
        }
        Ok(())
    }

    fn cut(&mut self) -> Result<(), BlockError> {
        let next = match (&self.current, self.done.last()) {
            (Some((seg, _, _)), _) => seg.checked_add(1),
            (None, Some((seg, _))) => seg.checked_add(1),
            (None, None) => Some(0),
        };
        self.close_current()?;
        let Some(seg) = next else {
            return Err(BlockError::ChunkTooLarge {
                path: self.dir.clone(),
                len: 0,
                reason: "more than 2^32 segment files",
            });
        };
        let path = self.dir.join(segment_file_name(seg));
        let file = File::create(&path).map_err(|e| BlockError::io(&path, e))?;
        let mut w =
            BackgroundWriter::new(file, WRITE_BUFFER_SIZE).map_err(|e| BlockError::io(&path, e))?;
        let mut header = [0u8; SEGMENT_HEADER_SIZE];
        header[..4].copy_from_slice(&SEGMENT_MAGIC.to_be_bytes());
        header[4] = SEGMENT_VERSION;
        w.write_all(&header).map_err(|e| BlockError::io(&path, e))?;
        self.current = Some((seg, w, SEGMENT_HEADER_SIZE as u64));
        Ok(())
    }
}

/// A file written by a thread of its own: writes fill a buffer, and each full buffer goes to
/// the thread, so that the kernel copying one buffer into the page cache overlaps the caller
/// filling the next (a compaction spent most of its time in that copy). At most three buffers
/// exist at once. A failed write is reported by the next write or by [`Self::finish`].
struct BackgroundWriter {
    buf: Vec<u8>,
    cap: usize,
    full: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    empty: std::sync::mpsc::Receiver<Vec<u8>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<File>>>,
}

impl BackgroundWriter {
    fn new(mut file: File, cap: usize) -> std::io::Result<Self> {
        let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(1);
        let (empty_tx, empty_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(1);
        let thread = std::thread::Builder::new()
            .name("gauntlet-write".into())
            .spawn(move || {
                for mut b in full_rx {
                    file.write_all(&b)?;
                    b.clear();
                    let _ = empty_tx.try_send(b);
                }
                Ok(file)
            })?;
        Ok(BackgroundWriter {
            buf: Vec::with_capacity(cap),
            cap,
            full: Some(full_tx),
            empty: empty_rx,
            thread: Some(thread),
        })
    }

    fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= self.cap {
            let next = self
                .empty
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(self.cap));
            let full = std::mem::replace(&mut self.buf, next);
            self.send(full)?;
        }
        Ok(())
    }

    fn send(&mut self, b: Vec<u8>) -> std::io::Result<()> {
        let sent = self.full.as_ref().map(|tx| tx.send(b));
        match sent {
            Some(Ok(())) => Ok(()),
            // The thread stopped: it failed a write, and says how when joined.
            _ => Err(self
                .join()
                .err()
                .unwrap_or_else(|| std::io::Error::other("the segment writer thread stopped"))),
        }
    }

    fn join(&mut self) -> std::io::Result<File> {
        self.full = None;
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(std::io::Error::other("the segment writer thread panicked")),
            None => Err(std::io::Error::other("the segment writer is closed")),
        }
    }

    /// Writes what is buffered, waits for the thread, and returns the file.
    fn finish(mut self) -> std::io::Result<File> {
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            self.send(rest)?;
        }
        self.join()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_background_writer_writes_everything_in_order_and_reports_a_failed_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut w = BackgroundWriter::new(File::create(&path).unwrap(), 16).unwrap();
        let mut want = Vec::new();
        for i in 0..1000u32 {
            let piece = i.to_be_bytes().repeat((i % 7) as usize);
            want.extend_from_slice(&piece);
            w.write_all(&piece).unwrap();
        }
        w.finish().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), want);

        // /dev/full fails every write: the error comes back by a later write or by finish.
        let Ok(full) = File::options().write(true).open("/dev/full") else {
            return;
        };
        let mut w = BackgroundWriter::new(full, 16).unwrap();
        let mut failed = false;
        for _ in 0..100 {
            if w.write_all(&[7u8; 32]).is_err() {
                failed = true;
                break;
            }
        }
        let finished = if failed {
            Err(())
        } else {
            w.finish().map(|_| ()).map_err(|_| ())
        };
        assert!(finished.is_err(), "a write to a full device must fail");
    }

    fn fixture_chunk_dirs() -> Vec<PathBuf> {
        let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/tsdb"));
        let mut out = Vec::new();
        for set in std::fs::read_dir(root).unwrap() {
            let set = set.unwrap().path();
            if !set.is_dir() {
                continue;
            }
            for block in std::fs::read_dir(&set).unwrap() {
                let p = block.unwrap().path().join("chunks");
                if p.is_dir() {
                    out.push(p);
                }
            }
        }
        out.sort();
        out
    }

    fn fixture_stats(chunks_dir: &Path) -> crate::block::BlockMeta {
        crate::block::BlockMeta::read(chunks_dir.parent().unwrap()).unwrap()
    }

    #[test]
    fn every_fixture_record_reads_with_valid_crc_and_matches_meta_chunk_count() {
        let dirs = fixture_chunk_dirs();
        assert_eq!(dirs.len(), 5);
        for dir in dirs {
            let r = SegmentReader::open(&dir).unwrap();
            assert!(r.num_segments() >= 1);
            let mut n = 0u64;
            let mut last = None;
            for item in r.iter() {
                let (cref, enc, data) = item.unwrap();
                assert_eq!(enc, Encoding::Xor.as_u8(), "{}", dir.display());
                // Random access by ref agrees with the walk.
                let (e2, d2) = r.chunk(cref).unwrap();
                assert_eq!((e2, d2), (enc, data));
                assert!(last < Some(cref));
                last = Some(cref);
                n += 1;
            }
            assert_eq!(n, fixture_stats(&dir).stats.num_chunks, "{}", dir.display());
            let on_disk: u64 = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().metadata().unwrap().len())
                .sum();
            assert_eq!(r.total_bytes(), on_disk);
        }
    }

    fn sample_chunks(n: usize) -> Vec<(u8, Vec<u8>)> {
        (0..n)
            .map(|i| {
                let len = (i * 37) % 300;
                let data: Vec<u8> = (0..len).map(|j| (i + j) as u8).collect();
                ((i % 3 + 1) as u8, data)
            })
            .collect()
    }

    #[test]
    fn write_then_read_many_chunks_in_one_segment() {
        let dir = tempfile::tempdir().unwrap();
        let chunks_dir = dir.path().join("chunks");
        let mut w = SegmentWriter::create(&chunks_dir).unwrap();
        let chunks = sample_chunks(5000);
        let refs: Vec<ChunkRef> = chunks
            .iter()
            .map(|(e, d)| w.write_chunk(*e, d).unwrap())
            .collect();
        let files = w.finish().unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].0, "chunks/000001");
        assert_eq!(
            files[0].1,
            std::fs::metadata(chunks_dir.join("000001")).unwrap().len()
        );
        assert_eq!(refs[0], SEGMENT_HEADER_SIZE as u64);
        assert!(refs.windows(2).all(|w| w[0] < w[1]));
        let r = SegmentReader::open(&chunks_dir).unwrap();
        for (cref, (e, d)) in refs.iter().zip(&chunks) {
            assert_eq!(r.chunk(*cref).unwrap(), (*e, &d[..]));
            assert_eq!(r.chunk_unchecked_crc(*cref).unwrap(), (*e, &d[..]));
        }
        assert_eq!(r.iter().count(), chunks.len());
    }

    #[test]
    fn segments_roll_over_at_max_size_and_refs_ascend() {
        let dir = tempfile::tempdir().unwrap();
        let chunks_dir = dir.path().join("chunks");
        let max = 1000u64;
        let mut w = SegmentWriter::with_max_segment_size(&chunks_dir, max).unwrap();
        let chunks = sample_chunks(200);
        let mut refs: Vec<ChunkRef> = chunks
            .iter()
            .map(|(e, d)| w.write_chunk(*e, d).unwrap())
            .collect();
        // A record larger than the limit still goes into a fresh segment of its own.
        let big = vec![7u8; 5000];
        refs.push(w.write_chunk(1, &big).unwrap());
        refs.push(w.write_chunk(1, b"after").unwrap());
        let files = w.finish().unwrap();
        assert!(files.len() > 10, "{files:?}");
        for (i, (name, size)) in files.iter().enumerate() {
            assert_eq!(name, &format!("chunks/{:06}", i + 1));
            let is_big = *size > 5000;
            assert!(is_big || *size <= max, "{name} {size}");
        }
        assert!(refs.windows(2).all(|w| w[0] < w[1]));
        let (big_seg, big_off) = split_ref(refs[200]);
        assert_eq!(big_off as usize, SEGMENT_HEADER_SIZE);
        assert_eq!(
            split_ref(refs[201]),
            (big_seg + 1, SEGMENT_HEADER_SIZE as u32)
        );

        let r = SegmentReader::open(&chunks_dir).unwrap();
        assert_eq!(r.num_segments(), files.len());
        for (cref, (e, d)) in refs.iter().zip(&chunks) {
            assert_eq!(r.chunk(*cref).unwrap(), (*e, &d[..]));
        }
        assert_eq!(r.chunk(refs[200]).unwrap().1, &big[..]);
        assert_eq!(r.chunk(refs[201]).unwrap().1, b"after");
        assert_eq!(r.total_bytes(), files.iter().map(|(_, s)| s).sum::<u64>());
    }

    #[test]
    fn writer_without_chunks_leaves_empty_dir_and_reader_accepts_it() {
        let dir = tempfile::tempdir().unwrap();
        let chunks_dir = dir.path().join("chunks");
        let files = SegmentWriter::create(&chunks_dir)
            .unwrap()
            .finish()
            .unwrap();
        assert!(files.is_empty());
        let r = SegmentReader::open(&chunks_dir).unwrap();
        assert_eq!(r.num_segments(), 0);
        assert!(matches!(r.chunk(8), Err(BlockError::SegmentMissing { .. })));
    }

    fn one_segment(records: &[(u8, &[u8])]) -> (Vec<u8>, Vec<ChunkRef>) {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SegmentWriter::create(dir.path()).unwrap();
        let refs = records
            .iter()
            .map(|(e, d)| w.write_chunk(*e, d).unwrap())
            .collect();
        w.finish().unwrap();
        (std::fs::read(dir.path().join("000001")).unwrap(), refs)
    }

    #[test]
    fn record_layout_matches_spec_bytes() {
        let (bytes, refs) = one_segment(&[(1, b"abc")]);
        let mut expected = vec![0x85, 0xBD, 0x40, 0xDD, 1, 0, 0, 0, 3, 1, b'a', b'b', b'c'];
        expected.extend_from_slice(&crc32c(&[1, b'a', b'b', b'c']).to_be_bytes());
        assert_eq!(bytes, expected);
        assert_eq!(refs, vec![8]);
    }

    #[test]
    fn flipped_byte_is_a_crc_mismatch_naming_file_and_offset() {
        let (mut bytes, refs) = one_segment(&[(1, b"first"), (1, b"second chunk")]);
        let second = refs[1] as usize;
        bytes[second + 3] ^= 0x40;
        let r = SegmentReader::from_segments(vec![bytes], PathBuf::from("/b/chunks")).unwrap();
        assert!(r.chunk(refs[0]).is_ok());
        match r.chunk(refs[1]).unwrap_err() {
            BlockError::CrcMismatch { path, offset, .. } => {
                assert_eq!(path, Path::new("/b/chunks/000001"));
                assert_eq!(offset, refs[1]);
            }
            other => panic!("unexpected {other}"),
        }
        // The unchecked path still returns the (damaged) bytes.
        assert!(r.chunk_unchecked_crc(refs[1]).is_ok());
        let err = r.chunk(refs[1]).unwrap_err().to_string();
        assert!(err.contains("/b/chunks/000001") && err.contains(&format!("offset {}", refs[1])));
        // The walk reports the same error and stops.
        let results: Vec<_> = r.iter().collect();
        assert_eq!(results.len(), 2);
        assert!(matches!(results[1], Err(BlockError::CrcMismatch { .. })));
    }

    #[test]
    fn refs_outside_the_file_are_typed_errors() {
        let (bytes, refs) = one_segment(&[(1, b"x")]);
        let len = bytes.len() as u64;
        let r = SegmentReader::from_segments(vec![bytes], PathBuf::from("c")).unwrap();
        for bad in [len, len + 100, 0xFFFF_FFFF, 0, 7] {
            assert!(
                matches!(r.chunk(bad), Err(BlockError::ChunkOutOfBounds { offset, .. }) if offset == bad),
                "{bad}"
            );
        }
        assert!(matches!(
            r.chunk(chunk_ref(1, 8)),
            Err(BlockError::SegmentMissing {
                segment: 1,
                num_segments: 1,
                ..
            })
        ));
        assert!(matches!(
            r.chunk(chunk_ref(u32::MAX, 8)),
            Err(BlockError::SegmentMissing { .. })
        ));
        assert!(r.chunk(refs[0]).is_ok());
    }

    #[test]
    fn truncated_records_are_decode_errors_without_huge_allocation() {
        let (bytes, refs) = one_segment(&[(1, b"0123456789")]);
        for cut in SEGMENT_HEADER_SIZE + 1..bytes.len() {
            let r = SegmentReader::from_segments(vec![bytes[..cut].to_vec()], PathBuf::from("c"))
                .unwrap();
            assert!(
                matches!(r.chunk(refs[0]), Err(BlockError::Decode { .. })),
                "cut at {cut}"
            );
        }
        // A length field claiming 4 GiB reads nothing and fails on the bytes actually there.
        let mut huge = bytes[..SEGMENT_HEADER_SIZE].to_vec();
        huge.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 1, 2, 3]);
        let r = SegmentReader::from_segments(vec![huge], PathBuf::from("c")).unwrap();
        assert!(matches!(r.chunk(8), Err(BlockError::Decode { .. })));
        // A length varint longer than 5 bytes is refused.
        let mut long = bytes[..SEGMENT_HEADER_SIZE].to_vec();
        long.extend_from_slice(&[0x81, 0x80, 0x80, 0x80, 0x80, 0x00, 1, 2, 3, 4, 5, 6]);
        let r = SegmentReader::from_segments(vec![long], PathBuf::from("c")).unwrap();
        assert!(matches!(r.chunk(8), Err(BlockError::Decode { .. })));
    }

    #[test]
    fn bad_headers_are_rejected() {
        let (good, _) = one_segment(&[(1, b"x")]);
        let mut bad_magic = good.clone();
        bad_magic[0] = 0;
        assert!(matches!(
            SegmentReader::from_segments(vec![bad_magic], PathBuf::from("c")),
            Err(BlockError::BadMagic {
                actual: 0x00BD40DD,
                ..
            })
        ));
        let mut bad_version = good.clone();
        bad_version[4] = 2;
        assert!(matches!(
            SegmentReader::from_segments(vec![good.clone(), bad_version], PathBuf::from("c")),
            Err(BlockError::UnsupportedVersion { version: 2, ref path, .. }) if path.ends_with("000002")
        ));
        for n in 0..SEGMENT_HEADER_SIZE {
            assert!(matches!(
                SegmentReader::from_segments(vec![good[..n].to_vec()], PathBuf::from("c")),
                Err(BlockError::Decode { .. } | BlockError::BadMagic { .. })
            ));
        }
    }

    #[test]
    fn open_requires_consecutive_numbering_and_ignores_other_names() {
        let dir = tempfile::tempdir().unwrap();
        let chunks_dir = dir.path().join("chunks");
        let mut w = SegmentWriter::with_max_segment_size(&chunks_dir, 16).unwrap();
        for i in 0..3u8 {
            w.write_chunk(1, &[i; 4]).unwrap();
        }
        assert_eq!(w.finish().unwrap().len(), 3);
        std::fs::write(chunks_dir.join("000002.tmp"), b"junk").unwrap();
        assert_eq!(SegmentReader::open(&chunks_dir).unwrap().num_segments(), 3);

        std::fs::remove_file(chunks_dir.join("000002")).unwrap();
        match SegmentReader::open(&chunks_dir).unwrap_err() {
            BlockError::SegmentNumbering {
                expected, found, ..
            } => {
                assert_eq!((expected, found.as_str()), (2, "000003"));
            }
            other => panic!("unexpected {other}"),
        }
        assert!(matches!(
            SegmentReader::open(&dir.path().join("missing")),
            Err(BlockError::Io { .. })
        ));
    }

    #[test]
    fn short_segment_file_on_disk_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("000001"), [0x85, 0xBD]).unwrap();
        assert!(matches!(
            SegmentReader::open(dir.path()),
            Err(BlockError::Decode { .. })
        ));
    }

    #[test]
    fn unknown_encoding_is_named() {
        let (bytes, refs) = one_segment(&[(1, b"a"), (9, b"b"), (0xFF, b"c")]);
        let r = SegmentReader::from_segments(vec![bytes], PathBuf::from("c")).unwrap();
        assert_eq!(r.chunk_encoded(refs[0]).unwrap().0, Encoding::Xor);
        assert!(matches!(
            r.chunk_encoded(refs[1]),
            Err(BlockError::UnknownEncoding { encoding: 9, .. })
        ));
        assert_eq!(r.chunk_encoded(refs[2]).unwrap().0, Encoding::Aggr);
        for b in 0..=255u8 {
            if let Ok(e) = Encoding::try_from(b) {
                assert_eq!(e.as_u8(), b);
            }
        }
    }

    #[test]
    fn arbitrary_refs_into_arbitrary_bytes_never_panic() {
        use proptest::prelude::*;
        let mut runner = proptest::test_runner::TestRunner::default();
        runner
            .run(
                &(proptest::collection::vec(any::<u8>(), 0..64), any::<u64>()),
                |(tail, r)| {
                    let mut seg = vec![0x85, 0xBD, 0x40, 0xDD, 1, 0, 0, 0];
                    seg.extend_from_slice(&tail);
                    let reader =
                        SegmentReader::from_segments(vec![seg], PathBuf::from("c")).unwrap();
                    let _ = reader.chunk(r);
                    let _ = reader.chunk(r & 0xFF);
                    let _ = reader.iter().count();
                    Ok(())
                },
            )
            .unwrap();
    }
}
