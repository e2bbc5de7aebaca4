//! Writes an index the way Prometheus 2.42 does: header, symbol table, 16-byte aligned series,
//! legacy label indices, postings, legacy label offset table, postings offset table, TOC.
//!
//! Symbols and series stream to the output as they are added. The postings (one entry per
//! label of every series) gather in a spool that keeps a bounded buffer in memory and sorts
//! the rest into a run file beside the index (`spool.rs`), so the memory an index takes to
//! write does not grow with its series; [`IndexWriter::finish`] merges them back in order.

use super::ChunkMeta;
use super::error::IndexError;
use super::reader::{MAGIC, SERIES_ALIGN};
use super::spool::{ByteSpool, PostingsSpool, RefSpool, SPOOL_ENTRIES, SortedPostings};
use super::symbols::SymbolTable;
use super::toc::Toc;
use crate::encoding::{Encbuf, crc32c, crc32c_append};
use crate::labels::Labels;
use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// The largest index the format can address: 32-bit series refs times the 16-byte alignment.
pub const MAX_INDEX_SIZE: u64 = 16 * u32::MAX as u64;

enum Sink {
    File(BufWriter<File>),
    Memory(Vec<u8>),
}

/// Builds an index file (or an in-memory index) from sorted symbols and sorted series.
pub struct IndexWriter {
    path: PathBuf,
    sink: Sink,
    /// Bytes written so far.
    pos: u64,
    toc: Toc,
    /// The encoded symbol table section, kept for lookups while series are added.
    sym_section: Vec<u8>,
    symbols: Option<SymbolTable>,
    /// (name, value) symbol refs of the last series, to check order and to skip symbol searches
    /// for labels it shares with the next one.
    last_ids: Vec<(u32, u32)>,
    last_chunk_ref: u64,
    /// Every series ref, ascending.
    refs: RefSpool,
    /// (name symbol, value symbol, series ref) of every label of every series.
    postings: PostingsSpool,
    /// Bytes of the postings offset table held in memory before it spills.
    pot_spool_bytes: usize,
    buf: Encbuf,
    ids: Vec<(u32, u32)>,
}

impl fmt::Debug for IndexWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IndexWriter")
            .field("path", &self.path)
            .field("pos", &self.pos)
            .field("series", &self.refs.len())
            .finish_non_exhaustive()
    }
}

impl IndexWriter {
    /// Creates (or truncates) the index file at `path` and writes the header.
    pub fn create(path: &Path) -> Result<Self, IndexError> {
        Self::create_with_spool(path, SPOOL_ENTRIES)
    }

    /// [`IndexWriter::create`] with a postings spool holding `entries` in memory.
    pub(crate) fn create_with_spool(path: &Path, entries: usize) -> Result<Self, IndexError> {
        let file = File::create(path).map_err(|source| IndexError::Io {
            path: path.to_path_buf(),
            op: "create",
            source,
        })?;
        let spill = |ext: &str| spill_path_for(path, ext);
        let mut w = Self::with_sink(
            path.to_path_buf(),
            Sink::File(BufWriter::with_capacity(1 << 20, file)),
        )?;
        w.postings = PostingsSpool::new(spill(".postings-spool"), entries);
        // The postings offset table takes about 2 bytes for each entry of the postings
        // spool (1 MiB with the default buffer).
        w.pot_spool_bytes = entries.saturating_mul(2);
        w.refs = RefSpool::new(spill(".refs-spool"), entries);
        Ok(w)
    }

    /// A writer that builds the index in memory; collect it with [`IndexWriter::finish_to_vec`].
    #[allow(clippy::expect_used, reason = "writing to a Vec cannot fail")]
    pub fn in_memory() -> Self {
        Self::with_sink(PathBuf::from("<memory>"), Sink::Memory(Vec::new()))
            .expect("writing the header to memory cannot fail")
    }

    fn with_sink(path: PathBuf, sink: Sink) -> Result<Self, IndexError> {
        let mut w = IndexWriter {
            path,
            sink,
            pos: 0,
            toc: Toc::default(),
            sym_section: Vec::new(),
            symbols: None,
            last_ids: Vec::new(),
            last_chunk_ref: 0,
            // In memory, nothing spills: such indexes are small.
            refs: RefSpool::new(None, usize::MAX),
            postings: PostingsSpool::new(None, usize::MAX),
            pot_spool_bytes: usize::MAX,
            buf: Encbuf::with_capacity(4096),
            ids: Vec::new(),
        };
        let mut header = Vec::with_capacity(5);
        header.extend_from_slice(&MAGIC.to_be_bytes());
        header.push(2);
        w.write(&header)?;
        Ok(w)
    }

    fn write(&mut self, b: &[u8]) -> Result<(), IndexError> {
        let end = self.pos + b.len() as u64;
        if end > MAX_INDEX_SIZE {
            return Err(IndexError::TooLarge {
                path: self.path.clone(),
                what: "index",
                size: end,
                limit: MAX_INDEX_SIZE,
                offset: self.pos,
            });
        }
        match &mut self.sink {
            Sink::File(f) => f.write_all(b).map_err(|source| IndexError::Io {
                path: self.path.clone(),
                op: "write",
                source,
            })?,
            Sink::Memory(v) => v.extend_from_slice(b),
        }
        self.pos = end;
        Ok(())
    }

    /// Writes the scratch buffer.
    fn flush_buf(&mut self) -> Result<(), IndexError> {
        let buf = std::mem::take(&mut self.buf);
        let r = self.write(buf.get());
        self.buf = buf;
        self.buf.reset();
        r
    }

    fn pad(&mut self, align: u64) -> Result<(), IndexError> {
        let rem = self.pos % align;
        if rem != 0 {
            self.write(&[0u8; 16][..(align - rem) as usize])?;
        }
        Ok(())
    }

    /// Writes the symbol table: every label name and value the series will use, sorted
    /// byte-wise and unique. Must be called once, before [`IndexWriter::add_series`].
    pub fn add_symbols<'a>(
        &mut self,
        sorted_unique: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), IndexError> {
        if self.symbols.is_some() {
            return Err(self.wrong_stage("add_symbols called twice"));
        }
        self.toc.symbols = self.pos;
        let mut e = Encbuf::new();
        e.put_be32(0); // length, patched below
        e.put_be32(0); // count, patched below
        let mut count: u64 = 0;
        let mut prev: Option<&str> = None;
        for s in sorted_unique {
            if let Some(p) = prev
                && p >= s
            {
                return Err(IndexError::UnorderedSymbols {
                    path: self.path.clone(),
                    symbol: s.to_string(),
                    previous: p.to_string(),
                    offset: self.toc.symbols,
                });
            }
            prev = Some(s);
            e.put_uvarint_bytes(s.as_bytes());
            count += 1;
        }
        let len = e.len() as u64 - 4;
        if len > u64::from(u32::MAX) {
            return Err(IndexError::TooLarge {
                path: self.path.clone(),
                what: "symbol table",
                size: len,
                limit: u64::from(u32::MAX),
                offset: self.toc.symbols,
            });
        }
        // The count fits: every symbol took at least one of the u32::MAX bytes.
        e.patch_be32(0, len as u32);
        e.patch_be32(4, count as u32);
        let crc = crc32c(&e.get()[4..]);
        e.put_be32(crc);
        let table = SymbolTable::parse(e.get(), 0, e.len() as u64, 2, &self.path)?;
        self.write(e.get())?;
        self.sym_section = e.buf;
        self.symbols = Some(table);
        self.toc.series = self.pos;
        Ok(())
    }

    /// Adds a series with its chunk metas; series must come in strictly ascending label-set
    /// order and chunk refs must not decrease. Returns the series ref (offset / 16).
    pub fn add_series(&mut self, labels: &Labels, chunks: &[ChunkMeta]) -> Result<u32, IndexError> {
        let Some(symbols) = self.symbols.as_ref() else {
            return Err(self.wrong_stage("add_symbols must be called before add_series"));
        };
        let offset = self.pos.next_multiple_of(SERIES_ALIGN);
        self.ids.clear();
        for (i, l) in labels.iter().enumerate() {
            let mut pair = [0u32; 2];
            for (k, s) in [&l.name, &l.value].into_iter().enumerate() {
                // Neighbouring series share most labels: try the previous series' symbol first.
                let hint = self.last_ids.get(i).map(|p| if k == 0 { p.0 } else { p.1 });
                let id = match hint {
                    Some(h) if symbols.lookup(&self.sym_section, h, &self.path, 0)? == s => h,
                    _ => symbols
                        .reverse_lookup(&self.sym_section, s, &self.path)?
                        .ok_or_else(|| IndexError::UnknownSymbol {
                            path: self.path.clone(),
                            symbol: s.to_string(),
                            offset,
                        })?,
                };
                pair[k] = id;
            }
            self.ids.push((pair[0], pair[1]));
        }
        let ids = std::mem::take(&mut self.ids);
        let r = self.push_series(&ids, chunks);
        self.ids = ids;
        r
    }

    /// Adds a series given as symbol references of this index's table ((name, value) pairs,
    /// the positions in the sorted symbols given to [`IndexWriter::add_symbols`]): what a merge
    /// that maps its inputs' references to the merged table writes, with no string looked up.
    /// The same order rules as [`IndexWriter::add_series`] hold.
    pub fn add_series_refs(
        &mut self,
        refs: &[(u32, u32)],
        chunks: &[ChunkMeta],
    ) -> Result<u32, IndexError> {
        let Some(symbols) = self.symbols.as_ref() else {
            return Err(self.wrong_stage("add_symbols must be called before add_series"));
        };
        if let Some(&bad) = refs
            .iter()
            .flat_map(|&(n, v)| [n, v])
            .find(|&r| r >= symbols.len())
            .as_ref()
        {
            return Err(IndexError::SymbolOutOfRange {
                path: self.path.clone(),
                symbol: bad,
                offset: self.pos,
                limit: u64::from(symbols.len()),
            });
        }
        self.push_series(refs, chunks)
    }

    /// Writes a series entry from checked symbol references and records its postings.
    fn push_series(&mut self, ids: &[(u32, u32)], chunks: &[ChunkMeta]) -> Result<u32, IndexError> {
        let offset = self.pos.next_multiple_of(SERIES_ALIGN);
        // Symbols are sorted, so comparing refs compares the strings they stand for.
        if ids.is_empty() || ids <= self.last_ids.as_slice() {
            return Err(IndexError::UnorderedSeries {
                path: self.path.clone(),
                labels: self.labels_of(ids),
                previous: self.labels_of(&self.last_ids),
                offset,
            });
        }
        let mut last_ref = self.last_chunk_ref;
        let mut last_max = 0i64;
        for (i, c) in chunks.iter().enumerate() {
            let reason = if c.chunk_ref < last_ref {
                Some(format!(
                    "chunk ref {} below previous ref {last_ref}",
                    c.chunk_ref
                ))
            } else if i > 0 && c.min_time <= last_max {
                Some(format!(
                    "chunk min time {} not after previous max time {last_max}",
                    c.min_time
                ))
            } else if c.max_time < c.min_time {
                Some(format!(
                    "chunk max time {} below min time {}",
                    c.max_time, c.min_time
                ))
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(IndexError::UnorderedChunks {
                    path: self.path.clone(),
                    labels: self.labels_of(ids),
                    offset,
                    reason,
                });
            }
            last_ref = c.chunk_ref;
            last_max = c.max_time;
        }

        self.pad(SERIES_ALIGN)?;
        let series_ref = (self.pos / SERIES_ALIGN) as u32;
        let mut body = Encbuf::with_capacity(16 + ids.len() * 4 + chunks.len() * 8);
        body.put_uvarint(ids.len() as u64);
        for &(n, v) in ids {
            body.put_uvarint(u64::from(n));
            body.put_uvarint(u64::from(v));
        }
        body.put_uvarint(chunks.len() as u64);
        if let Some((first, rest)) = chunks.split_first() {
            body.put_varint(first.min_time);
            body.put_uvarint(first.max_time.wrapping_sub(first.min_time) as u64);
            body.put_uvarint(first.chunk_ref);
            let (mut t0, mut r0) = (first.max_time, first.chunk_ref);
            for c in rest {
                body.put_uvarint(c.min_time.wrapping_sub(t0) as u64);
                body.put_uvarint(c.max_time.wrapping_sub(c.min_time) as u64);
                body.put_varint(c.chunk_ref.wrapping_sub(r0) as i64);
                (t0, r0) = (c.max_time, c.chunk_ref);
            }
        }
        self.buf.reset();
        self.buf.put_uvarint(body.len() as u64);
        self.buf.put_bytes(body.get());
        self.buf.put_be32(crc32c(body.get()));
        self.flush_buf()?;

        let spool_err = |source| IndexError::Io {
            path: self.path.clone(),
            op: "spool postings",
            source,
        };
        self.refs.push(series_ref).map_err(spool_err)?;
        for &(n, v) in ids {
            self.postings.push([n, v, series_ref]).map_err(spool_err)?;
        }
        self.last_ids.clear();
        self.last_ids.extend_from_slice(ids);
        self.last_chunk_ref = last_ref;
        Ok(series_ref)
    }

    /// The label set that symbol references stand for, for error messages.
    fn labels_of(&self, ids: &[(u32, u32)]) -> String {
        let Some(symbols) = &self.symbols else {
            return "{}".to_string();
        };
        let pairs = ids.iter().map(|&(n, v)| {
            let get = |r| {
                symbols
                    .lookup(&self.sym_section, r, &self.path, 0)
                    .unwrap_or("?")
            };
            (get(n), get(v))
        });
        Labels::from_pairs(pairs).to_string()
    }

    fn wrong_stage(&self, reason: &'static str) -> IndexError {
        IndexError::WrongStage {
            path: self.path.clone(),
            reason,
            offset: self.pos,
        }
    }

    /// Writes label indices, postings, the label offset table, the postings offset table and
    /// the TOC, then flushes and fsyncs the file (and its directory).
    pub fn finish(mut self) -> Result<(), IndexError> {
        self.write_tail()?;
        let path = self.path.clone();
        let io = |op, source| IndexError::Io {
            path: path.clone(),
            op,
            source,
        };
        if let Sink::File(f) = self.sink {
            let file = f.into_inner().map_err(|e| io("flush", e.into_error()))?;
            file.sync_all().map_err(|e| io("fsync", e))?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| io("fsync directory", e))?;
            }
        }
        Ok(())
    }

    /// Finishes an in-memory index and returns its bytes; a file writer gets an error.
    pub fn finish_to_vec(mut self) -> Result<Vec<u8>, IndexError> {
        if matches!(self.sink, Sink::File(_)) {
            return Err(self.wrong_stage("finish_to_vec called on a file writer"));
        }
        self.write_tail()?;
        match self.sink {
            Sink::Memory(v) => Ok(v),
            Sink::File(_) => Ok(Vec::new()),
        }
    }

    fn write_tail(&mut self) -> Result<(), IndexError> {
        if self.symbols.is_none() {
            self.add_symbols([])?;
        }
        let spool_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| IndexError::Io {
                path,
                op: "read spooled postings",
                source,
            }
        };
        let spool = std::mem::replace(&mut self.postings, PostingsSpool::new(None, usize::MAX));
        let sorted = spool.finish().map_err(spool_err(&self.path))?;
        // One walk finds each name's distinct values and each (name, value)'s number of
        // series: the sizes the sections below are framed with.
        let mut names: Vec<(u32, usize, usize)> = Vec::new();
        let mut values: Vec<u32> = Vec::new();
        let mut counts: Vec<u32> = Vec::new();
        {
            let mut it = sorted.iter();
            let mut last: Option<(u32, u32)> = None;
            while let Some([n, v, _]) = it.next_entry().map_err(spool_err(&self.path))? {
                if last.is_none_or(|(ln, _)| ln != n) {
                    names.push((n, values.len(), 0));
                }
                if last != Some((n, v)) {
                    values.push(v);
                    counts.push(0);
                    #[allow(
                        clippy::expect_used,
                        reason = "a name is pushed before its first value"
                    )]
                    let name = names.last_mut().expect("pushed above");
                    name.2 += 1;
                }
                #[allow(clippy::expect_used, reason = "a count is pushed with each value")]
                let count = counts.last_mut().expect("pushed above");
                *count += 1;
                last = Some((n, v));
            }
        }

        // Legacy label indices: one per name, listing its value symbols.
        self.toc.label_indices = self.pos;
        let mut label_indices: Vec<(u32, u64)> = Vec::with_capacity(names.len());
        for &(name, first, n) in &names {
            self.pad(4)?;
            label_indices.push((name, self.pos));
            let vals = &values[first..first + n];
            self.write_framed_u32s(
                &[1, n as u32],
                vals.len(),
                vals.iter().copied().map(Ok),
                "label index",
            )?;
        }

        // Postings: the all-postings list first, then by name and value.
        self.toc.postings = self.pos;
        self.pad(4)?;
        let mut pot = ByteSpool::new(self.spill_path(".pot-spool"), self.pot_spool_bytes);
        let mut pot_count: u64 = 0;
        let mut refs = std::mem::replace(&mut self.refs, RefSpool::new(None, usize::MAX));
        self.write_all_postings(&mut pot, &mut refs)?;
        drop(refs);
        pot_count += 1;
        let sym_section = std::mem::take(&mut self.sym_section);
        #[allow(
            clippy::expect_used,
            reason = "the symbol table is written before the postings"
        )]
        let symbols = self.symbols.take().expect("written above");
        self.write_postings_lists(
            &sorted,
            &names,
            &values,
            &counts,
            &mut pot,
            &symbols,
            &sym_section,
        )?;
        pot_count += values.len() as u64;
        drop(sorted);

        // Legacy label offset table.
        self.toc.label_offset_table = self.pos;
        self.buf.reset();
        self.buf.put_be32(0);
        self.buf.put_be32(label_indices.len() as u32);
        for &(name, off) in &label_indices {
            self.buf.put_uvarint(1);
            self.buf.put_uvarint_bytes(
                symbols
                    .lookup(&sym_section, name, &self.path, 0)?
                    .as_bytes(),
            );
            self.buf.put_uvarint(off);
        }
        self.finish_sized_section("label offset table")?;

        // Postings offset table, streamed from its spool.
        self.toc.postings_offset_table = self.pos;
        let len = 4 + pot.len();
        if len > u64::from(u32::MAX) {
            return Err(IndexError::TooLarge {
                path: self.path.clone(),
                what: "postings offset table",
                size: len,
                limit: u64::from(u32::MAX),
                offset: self.pos,
            });
        }
        self.write(&(len as u32).to_be_bytes())?;
        // At most one entry per series label, and refs are 32-bit.
        let count = (pot_count as u32).to_be_bytes();
        self.write(&count)?;
        let mut crc = crc32c(&count);
        self.stream_spool(&mut pot, &mut crc)?;
        self.write(&crc.to_be_bytes())?;

        let mut e = Encbuf::with_capacity(52);
        self.toc.encode(&mut e);
        self.write(e.get())?;
        self.sym_section = sym_section;
        self.symbols = Some(symbols);
        Ok(())
    }

    /// Writes the all-postings list (key `""=""`) from the spooled refs.
    fn write_all_postings(
        &mut self,
        pot: &mut ByteSpool,
        refs: &mut RefSpool,
    ) -> Result<(), IndexError> {
        let n = refs.len();
        self.pad(4)?;
        self.put_pot_entry(pot, "", "", self.pos)?;
        self.begin_framed(&[n as u32], n as usize, "postings list")?;
        let mut crc = crc32c(&(n as u32).to_be_bytes());
        let path = self.path.clone();
        let mut failed = None;
        let r = refs.for_each_slice(|s| match self.framed_body_u32s(s, &mut crc) {
            Ok(()) => Ok(()),
            Err(e) => {
                failed = Some(e);
                Err(std::io::Error::other("index write failed"))
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        r.map_err(|source| IndexError::Io {
            path,
            op: "read spooled postings",
            source,
        })?;
        self.write(&crc.to_be_bytes())
    }

    /// Writes one postings list per (name, value), walking the sorted postings once.
    #[allow(clippy::too_many_arguments)]
    fn write_postings_lists(
        &mut self,
        sorted: &SortedPostings,
        names: &[(u32, usize, usize)],
        values: &[u32],
        counts: &[u32],
        pot: &mut ByteSpool,
        symbols: &SymbolTable,
        sym_section: &[u8],
    ) -> Result<(), IndexError> {
        let mut it = sorted.iter();
        let mut chunk: Vec<u32> = Vec::with_capacity(16 * 1024);
        for &(name, first, n) in names {
            let name_str = symbols.lookup(sym_section, name, &self.path, 0)?;
            for k in first..first + n {
                let value = symbols.lookup(sym_section, values[k], &self.path, 0)?;
                let count = counts[k] as usize;
                if (count as u64 + 1) * 4 > u64::from(u32::MAX) {
                    return Err(IndexError::TooLarge {
                        path: self.path.clone(),
                        what: "postings list",
                        size: (count as u64 + 1) * 4,
                        limit: u64::from(u32::MAX),
                        offset: self.pos,
                    });
                }
                self.pad(4)?;
                self.put_pot_entry(pot, name_str, value, self.pos)?;
                self.begin_framed(&[count as u32], count, "postings list")?;
                let mut crc = crc32c(&(count as u32).to_be_bytes());
                let mut left = count;
                while left > 0 {
                    chunk.clear();
                    while chunk.len() < chunk.capacity() && left > 0 {
                        let Some([_, _, r]) = it.next_entry().map_err(|source| IndexError::Io {
                            path: self.path.clone(),
                            op: "read spooled postings",
                            source,
                        })?
                        else {
                            return Err(self.wrong_stage("spooled postings ended early"));
                        };
                        chunk.push(r);
                        left -= 1;
                    }
                    self.framed_body_u32s(&chunk, &mut crc)?;
                }
                self.write(&crc.to_be_bytes())?;
            }
        }
        Ok(())
    }

    /// Appends a postings offset table entry (two strings, then the list's offset) to `pot`.
    fn put_pot_entry(
        &mut self,
        pot: &mut ByteSpool,
        name: &str,
        value: &str,
        offset: u64,
    ) -> Result<(), IndexError> {
        let mut e = Encbuf::with_capacity(8 + name.len() + value.len());
        e.put_uvarint(2);
        e.put_uvarint_bytes(name.as_bytes());
        e.put_uvarint_bytes(value.as_bytes());
        e.put_uvarint(offset);
        pot.push(e.get()).map_err(|source| IndexError::Io {
            path: self.path.clone(),
            op: "spool postings offset table",
            source,
        })
    }

    /// Where a spool of this index spills (beside the file); `None` for an in-memory index.
    fn spill_path(&self, ext: &str) -> Option<PathBuf> {
        match self.sink {
            Sink::File(_) => spill_path_for(&self.path, ext),
            Sink::Memory(_) => None,
        }
    }

    /// Writes what `spool` holds, folding it into `crc`.
    fn stream_spool(&mut self, spool: &mut ByteSpool, crc: &mut u32) -> Result<(), IndexError> {
        let mut failed = None;
        let r = spool.for_each_slice(|b| {
            *crc = crc32c_append(*crc, b);
            self.write(b).map_err(|e| {
                failed = Some(e);
                std::io::Error::other("index write failed")
            })
        });
        if let Some(e) = failed {
            return Err(e);
        }
        r.map_err(|source| IndexError::Io {
            path: self.path.clone(),
            op: "read spooled postings offset table",
            source,
        })
    }

    /// Writes a section framed as `BE32 len`, body, `BE32 CRC` whose body is the big-endian
    /// words of `prefix` then `n` more from `items`; the CRC is computed as the body streams.
    fn write_framed_u32s(
        &mut self,
        prefix: &[u32],
        n: usize,
        items: impl Iterator<Item = Result<u32, IndexError>>,
        what: &'static str,
    ) -> Result<(), IndexError> {
        self.begin_framed(prefix, n, what)?;
        let mut crc = 0u32;
        for (i, p) in prefix.iter().enumerate() {
            let b = p.to_be_bytes();
            crc = if i == 0 {
                crc32c(&b)
            } else {
                crc32c_append(crc, &b)
            };
        }
        let mut chunk: Vec<u32> = Vec::with_capacity(16 * 1024);
        for item in items {
            chunk.push(item?);
            if chunk.len() == chunk.capacity() {
                self.framed_body_u32s(&chunk, &mut crc)?;
                chunk.clear();
            }
        }
        self.framed_body_u32s(&chunk, &mut crc)?;
        self.write(&crc.to_be_bytes())
    }

    /// Writes the length field and `prefix` of a framed section of `prefix.len() + n` words.
    fn begin_framed(
        &mut self,
        prefix: &[u32],
        n: usize,
        what: &'static str,
    ) -> Result<(), IndexError> {
        let len = (prefix.len() as u64 + n as u64) * 4;
        if len > u64::from(u32::MAX) {
            return Err(IndexError::TooLarge {
                path: self.path.clone(),
                what,
                size: len,
                limit: u64::from(u32::MAX),
                offset: self.pos,
            });
        }
        self.buf.reset();
        self.buf.put_be32(len as u32);
        for &p in prefix {
            self.buf.put_be32(p);
        }
        self.flush_buf()
    }

    /// Writes words of a framed section's body, folding them into its CRC.
    fn framed_body_u32s(&mut self, words: &[u32], crc: &mut u32) -> Result<(), IndexError> {
        self.buf.reset();
        for &w in words {
            self.buf.put_be32(w);
        }
        *crc = crc32c_append(*crc, self.buf.get());
        self.flush_buf()
    }

    /// Patches the length field at the start of the scratch buffer, appends the CRC over what
    /// follows it and writes the section.
    fn finish_sized_section(&mut self, what: &'static str) -> Result<(), IndexError> {
        let len = self.buf.len() as u64 - 4;
        if len > u64::from(u32::MAX) {
            return Err(IndexError::TooLarge {
                path: self.path.clone(),
                what,
                size: len,
                limit: u64::from(u32::MAX),
                offset: self.pos,
            });
        }
        self.buf.patch_be32(0, len as u32);
        let crc = crc32c(&self.buf.get()[4..]);
        self.buf.put_be32(crc);
        self.flush_buf()
    }
}

/// The file a spool of the index at `path` spills to: the index's name with `ext` added.
fn spill_path_for(path: &Path, ext: &str) -> Option<PathBuf> {
    let mut p = path.as_os_str().to_owned();
    p.push(ext);
    Some(PathBuf::from(p))
}
