//! Writes an index the way Prometheus 2.42 does: header, symbol table, 16-byte aligned series,
//! legacy label indices, postings, legacy label offset table, postings offset table, TOC.
//!
//! Symbols and series stream to the output as they are added; the postings (one `u32` pair per
//! label of every series) are held in memory until [`IndexWriter::finish`].

use super::ChunkMeta;
use super::error::IndexError;
use super::reader::{MAGIC, SERIES_ALIGN};
use super::symbols::SymbolTable;
use super::toc::Toc;
use crate::encoding::{Encbuf, crc32c};
use crate::labels::Labels;
use std::collections::HashMap;
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
    refs: Vec<u32>,
    /// Name symbol -> (value symbol, series ref) in the order added.
    postings: HashMap<u32, Vec<(u32, u32)>>,
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
        let file = File::create(path).map_err(|source| IndexError::Io {
            path: path.to_path_buf(),
            op: "create",
            source,
        })?;
        Self::with_sink(
            path.to_path_buf(),
            Sink::File(BufWriter::with_capacity(1 << 20, file)),
        )
    }

    /// A writer that builds the index in memory; collect it with [`IndexWriter::finish_to_vec`].
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
            refs: Vec::new(),
            postings: HashMap::new(),
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
        // Symbols are sorted, so comparing refs compares the strings they stand for.
        if self.ids.is_empty() || self.ids <= self.last_ids {
            return Err(IndexError::UnorderedSeries {
                path: self.path.clone(),
                labels: labels.to_string(),
                previous: self.previous_labels(),
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
                    labels: labels.to_string(),
                    offset,
                    reason,
                });
            }
            last_ref = c.chunk_ref;
            last_max = c.max_time;
        }

        self.pad(SERIES_ALIGN)?;
        let series_ref = (self.pos / SERIES_ALIGN) as u32;
        let mut body = Encbuf::with_capacity(16 + self.ids.len() * 4 + chunks.len() * 8);
        body.put_uvarint(self.ids.len() as u64);
        for &(n, v) in &self.ids {
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

        self.refs.push(series_ref);
        for &(n, v) in &self.ids {
            self.postings.entry(n).or_default().push((v, series_ref));
        }
        std::mem::swap(&mut self.last_ids, &mut self.ids);
        self.last_chunk_ref = last_ref;
        Ok(series_ref)
    }

    fn previous_labels(&self) -> String {
        let Some(symbols) = &self.symbols else {
            return "{}".to_string();
        };
        let pairs = self.last_ids.iter().map(|&(n, v)| {
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
        let mut names: Vec<u32> = self.postings.keys().copied().collect();
        names.sort_unstable();
        let mut postings = std::mem::take(&mut self.postings);

        // Legacy label indices: one per name, listing its value symbols.
        self.toc.label_indices = self.pos;
        let mut label_indices: Vec<(u32, u64)> = Vec::with_capacity(names.len());
        for &name in &names {
            let pairs = postings.get_mut(&name).expect("name taken from the map");
            // Stable: refs of one value stay ascending.
            pairs.sort_by_key(|&(v, _)| v);
            self.pad(4)?;
            label_indices.push((name, self.pos));
            let mut values: Vec<u32> = pairs.iter().map(|&(v, _)| v).collect();
            values.dedup();
            self.buf.reset();
            self.buf.put_be32(0);
            self.buf.put_be32(1);
            self.buf.put_be32(values.len() as u32);
            for v in values {
                self.buf.put_be32(v);
            }
            self.finish_sized_section("label index")?;
        }

        // Postings: the all-postings list first, then by name and value.
        self.toc.postings = self.pos;
        self.pad(4)?;
        let mut pot = Encbuf::new();
        let mut pot_count: u64 = 0;
        let refs = std::mem::take(&mut self.refs);
        self.write_postings_list(&mut pot, "", "", refs.iter().copied(), refs.len())?;
        pot_count += 1;
        let sym_section = std::mem::take(&mut self.sym_section);
        let symbols = self.symbols.take().expect("written above");
        for &name in &names {
            let pairs = &postings[&name];
            let name_str = symbols.lookup(&sym_section, name, &self.path, 0)?;
            let mut start = 0;
            while start < pairs.len() {
                let v = pairs[start].0;
                let end = start + pairs[start..].partition_point(|p| p.0 == v);
                let value = symbols.lookup(&sym_section, v, &self.path, 0)?;
                let run = &pairs[start..end];
                self.write_postings_list(
                    &mut pot,
                    name_str,
                    value,
                    run.iter().map(|p| p.1),
                    run.len(),
                )?;
                pot_count += 1;
                start = end;
            }
        }

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

        // Postings offset table.
        self.toc.postings_offset_table = self.pos;
        self.buf.reset();
        self.buf.put_be32(0);
        // At most one entry per series label, and refs are 32-bit.
        self.buf.put_be32(pot_count as u32);
        self.buf.put_bytes(pot.get());
        self.finish_sized_section("postings offset table")?;

        let mut e = Encbuf::with_capacity(52);
        self.toc.encode(&mut e);
        self.write(e.get())?;
        self.sym_section = sym_section;
        self.symbols = Some(symbols);
        drop(postings);
        Ok(())
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

    fn write_postings_list(
        &mut self,
        pot: &mut Encbuf,
        name: &str,
        value: &str,
        refs: impl Iterator<Item = u32>,
        n: usize,
    ) -> Result<(), IndexError> {
        self.pad(4)?;
        pot.put_uvarint(2);
        pot.put_uvarint_bytes(name.as_bytes());
        pot.put_uvarint_bytes(value.as_bytes());
        pot.put_uvarint(self.pos);
        if (n as u64 + 1) * 4 > u64::from(u32::MAX) {
            return Err(IndexError::TooLarge {
                path: self.path.clone(),
                what: "postings list",
                size: (n as u64 + 1) * 4,
                limit: u64::from(u32::MAX),
                offset: self.pos,
            });
        }
        self.buf.reset();
        self.buf.put_be32(0);
        self.buf.put_be32(n as u32);
        for r in refs {
            self.buf.put_be32(r);
        }
        self.finish_sized_section("postings list")
    }
}
