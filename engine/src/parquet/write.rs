//! Converting a TSDB block on local disk into Parquet shards.
//!
//! Series are read in the files' order (metric name, then label set): for each metric name in
//! the index, its postings, whose refs ascend in label order. They are written a row group at
//! a time to the labels and chunks files side by side, so memory holds one row group (cut
//! early when its chunks pass a byte cap), never the block.
//!
//! Chunks are copied as they are when each lies within one chunk column; a series with a
//! chunk across a column boundary, or with deleted samples, is decoded and encoded again per
//! column, floats in chunks of at most [`SAMPLES_PER_CHUNK`] samples.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::basic::{
    Compression, Encoding, LogicalType, Repetition, Type as PhysicalType, ZstdLevel,
};
use parquet::data_type::{ByteArray, ByteArrayType};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::{ColumnPath, Type};

use super::{
    COL_INDEXES_COLUMN, DATA_COL_DURATION_KEY, DEFAULT_COL_DURATION_MS, DEFAULT_ROW_GROUP_ROWS,
    MAX_T_KEY, MIN_T_KEY, ParquetError, SAMPLES_PER_CHUNK, SERIES_HASH_COLUMN, chunks_file,
    data_column, encode_col_indexes, label_column, labels_file, put_chunk,
};
use crate::block::histogram_cut::HistogramChunkCutter;
use crate::block::reader::{Block, BlockSample};
use crate::chunk::XorAppender;
use crate::index::ChunkMeta;
use crate::labels::{Label, METRIC_NAME, hash_pairs};

/// How a block is converted.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    /// Most rows in a row group.
    pub row_group_rows: usize,
    /// A row group is cut early once its chunk bytes pass this.
    pub row_group_bytes: usize,
    /// Most rows in a shard (a labels and a chunks file); past it a new shard starts.
    pub shard_rows: usize,
    /// Time one chunk column spans, ms.
    pub col_duration_ms: i64,
    /// zstd level of every column.
    pub zstd_level: i32,
    /// Most rows in a data page (`None`: the Parquet writer's default, 20,000).
    pub page_rows: Option<usize>,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            row_group_rows: DEFAULT_ROW_GROUP_ROWS,
            row_group_bytes: 256 << 20,
            shard_rows: usize::MAX,
            col_duration_ms: DEFAULT_COL_DURATION_MS,
            zstd_level: 3,
            page_rows: None,
        }
    }
}

/// What a conversion wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConvertReport {
    /// Files written, in order: `0.labels.parquet`, `0.chunks.parquet`, `1.labels...`.
    pub files: Vec<PathBuf>,
    /// Shards written.
    pub shards: usize,
    /// Rows (series) written.
    pub series: u64,
    /// Row groups per file, summed over shards.
    pub row_groups: usize,
    /// Bytes of all files.
    pub bytes: u64,
}

/// Bytes of a page's bounds kept in the column index (longer values are truncated, still
/// bounding the page).
const COLUMN_INDEX_BOUND_BYTES: usize = 64;

/// One buffered row.
struct Row {
    /// (label column number, value) in column order.
    labels: Vec<(u32, Vec<u8>)>,
    hash: u64,
    /// Per chunk column, its encoded chunks (empty when none).
    chunks: Vec<Vec<u8>>,
}

/// Converts `block` into shards in `out_dir` (created when missing), over the block's time
/// range.
pub fn convert_block(
    block: &Block,
    out_dir: &Path,
    opts: &ConvertOptions,
) -> Result<ConvertReport, ParquetError> {
    if opts.col_duration_ms <= 0 || opts.row_group_rows == 0 || opts.shard_rows == 0 {
        return Err(ParquetError::layout(
            &out_dir.display().to_string(),
            "column duration, row group rows and shard rows must be positive",
        ));
    }
    std::fs::create_dir_all(out_dir).map_err(|source| ParquetError::Io {
        path: out_dir.display().to_string(),
        source,
    })?;
    let meta = block.meta();
    // The files' range is closed: the block's end is exclusive.
    let (mint, maxt) = (
        meta.min_time,
        meta.max_time.saturating_sub(1).max(meta.min_time),
    );
    let n_cols = ((maxt.saturating_sub(mint)) / opts.col_duration_ms + 1) as usize;
    let index = block.index();
    let mut names = index.label_names();
    names.sort();
    let refs = series_in_file_order(block)?;

    let mut report = ConvertReport::default();
    let mut shard: Option<ShardWriter> = None;
    let mut rows: Vec<Row> = Vec::new();
    let mut row_bytes = 0usize;
    let mut in_shard = 0usize;
    let mut labels = Vec::new();
    let mut metas = Vec::new();
    for r in refs {
        labels.clear();
        metas.clear();
        block.series(r, &mut labels, &mut metas)?;
        let chunks = column_chunks(block, r, &metas, mint, n_cols, opts.col_duration_ms)?;
        if chunks.iter().all(Vec::is_empty) {
            continue;
        }
        let row = Row {
            labels: labels
                .iter()
                .map(|l| {
                    let col = names
                        .binary_search_by(|n| n.as_str().cmp(&l.name))
                        .unwrap_or(0);
                    (col as u32, l.value.as_bytes().to_vec())
                })
                .collect(),
            hash: hash_pairs(
                labels
                    .iter()
                    .map(|l: &Label| (l.name.as_str(), l.value.as_str())),
            ),
            chunks,
        };
        row_bytes += row.chunks.iter().map(Vec::len).sum::<usize>();
        rows.push(row);
        if shard.is_none() {
            shard = Some(ShardWriter::create(
                out_dir,
                report.shards,
                &names,
                n_cols,
                mint,
                maxt,
                opts,
            )?);
        }
        in_shard += 1;
        if rows.len() >= opts.row_group_rows
            || row_bytes >= opts.row_group_bytes
            || in_shard >= opts.shard_rows
        {
            if let Some(w) = shard.as_mut() {
                w.write_row_group(&rows, &names, n_cols)?;
                report.row_groups += 1;
                report.series += rows.len() as u64;
            }
            rows.clear();
            row_bytes = 0;
        }
        if in_shard >= opts.shard_rows {
            if let Some(w) = shard.take() {
                w.finish(&mut report)?;
            }
            in_shard = 0;
        }
    }
    if let Some(w) = shard.as_mut().filter(|_| !rows.is_empty()) {
        w.write_row_group(&rows, &names, n_cols)?;
        report.row_groups += 1;
        report.series += rows.len() as u64;
    }
    if let Some(w) = shard.take() {
        w.finish(&mut report)?;
    }
    Ok(report)
}

/// The block's series refs by metric name, then label set: the postings of each metric name
/// in turn (refs ascend in label order), after the series without one.
fn series_in_file_order(block: &Block) -> Result<Vec<u32>, ParquetError> {
    let index = block.index();
    let names = index
        .label_values(METRIC_NAME)
        .map_err(crate::error::Error::from)?;
    let mut out = Vec::with_capacity(index.num_series());
    let mut buf = Vec::new();
    for v in &names {
        buf.clear();
        index
            .postings(METRIC_NAME, v, &mut buf)
            .map_err(crate::error::Error::from)?;
        out.extend_from_slice(&buf);
    }
    if out.len() < index.num_series() {
        // Series without a metric name sort first ("" before any name).
        let mut named = out.clone();
        named.sort_unstable();
        let mut all = Vec::new();
        index
            .all_postings(&mut all)
            .map_err(crate::error::Error::from)?;
        let mut first: Vec<u32> = all
            .into_iter()
            .filter(|r| named.binary_search(r).is_err())
            .collect();
        first.append(&mut out);
        out = first;
    }
    Ok(out)
}

/// A series' chunks grouped by chunk column and encoded as column values.
fn column_chunks(
    block: &Block,
    series_ref: u32,
    metas: &[ChunkMeta],
    mint: i64,
    n_cols: usize,
    col_ms: i64,
) -> Result<Vec<Vec<u8>>, ParquetError> {
    let col_of = |t: i64| (((t - mint).max(0) / col_ms) as usize).min(n_cols - 1);
    let mut out = vec![Vec::new(); n_cols];
    let deleted = !block.tombstones().get(u64::from(series_ref)).is_empty();
    let straddles = metas
        .iter()
        .any(|c| col_of(c.min_time) != col_of(c.max_time));
    if !deleted && !straddles {
        let mut sorted: Vec<&ChunkMeta> = metas.iter().collect();
        sorted.sort_by_key(|c| (c.min_time, c.max_time));
        for c in sorted {
            let (enc, data) = block
                .chunks()
                .chunk(c.chunk_ref)
                .map_err(crate::error::Error::from)?;
            put_chunk(
                &mut out[col_of(c.min_time)],
                enc,
                c.min_time,
                c.max_time,
                data,
            );
        }
        return Ok(out);
    }
    let mut samples = Vec::new();
    block.read_typed(series_ref, metas, i64::MIN, i64::MAX, &mut samples)?;
    samples.sort_by_key(|s| s.0);
    let mut start = 0;
    while start < samples.len() {
        let col = col_of(samples[start].0);
        let end = start + samples[start..].partition_point(|s| col_of(s.0) == col);
        encode_samples(&samples[start..end], &mut out[col]).map_err(|what| {
            ParquetError::Chunks {
                path: block.dir().display().to_string(),
                row: u64::from(series_ref),
                what,
            }
        })?;
        start = end;
    }
    Ok(out)
}

/// Encodes samples of one chunk column (in time order), runs of one kind at a time.
fn encode_samples(samples: &[(i64, BlockSample)], out: &mut Vec<u8>) -> Result<(), String> {
    let kind = |s: &BlockSample| match s {
        BlockSample::Float(_) => 0,
        BlockSample::Histogram(_) => 1,
        BlockSample::FloatHistogram(_) => 2,
    };
    let mut start = 0;
    while start < samples.len() {
        let k = kind(&samples[start].1);
        let end = start + samples[start..].partition_point(|s| kind(&s.1) == k);
        let run = &samples[start..end];
        match k {
            0 => {
                for part in run.chunks(SAMPLES_PER_CHUNK) {
                    let mut app = XorAppender::new();
                    for (t, s) in part {
                        if let BlockSample::Float(v) = s {
                            app.append(*t, *v);
                        }
                    }
                    let (lo, hi) = (part[0].0, part[part.len() - 1].0);
                    put_chunk(
                        out,
                        crate::chunk::Encoding::Xor.as_u8(),
                        lo,
                        hi,
                        app.bytes(),
                    );
                }
            }
            _ => {
                // A run is of one kind: integer or float histograms, cut as the head cuts.
                let mut cut = HistogramChunkCutter::new(i64::MAX / 4);
                for (t, s) in run {
                    match s {
                        BlockSample::Histogram(h) => cut.append_histogram(*t, h),
                        BlockSample::FloatHistogram(h) => cut.append_float_histogram(*t, h),
                        BlockSample::Float(_) => Ok(()),
                    }
                    .map_err(|e| e.to_string())?;
                }
                for c in cut.finish() {
                    put_chunk(out, c.encoding.as_u8(), c.min_time, c.max_time, &c.data);
                }
            }
        }
        start = end;
    }
    Ok(())
}

/// The two files of one shard being written.
struct ShardWriter {
    labels: SerializedFileWriter<BufWriter<File>>,
    chunks: SerializedFileWriter<BufWriter<File>>,
    paths: [PathBuf; 2],
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ParquetError + '_ {
    move |source| ParquetError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl ShardWriter {
    fn create(
        dir: &Path,
        shard: usize,
        names: &[String],
        n_cols: usize,
        mint: i64,
        maxt: i64,
        opts: &ConvertOptions,
    ) -> Result<Self, ParquetError> {
        let lp = dir.join(labels_file(shard));
        let cp = dir.join(chunks_file(shard));
        let lpath = lp.display().to_string();
        let cpath = cp.display().to_string();
        let fmt = |p: &str| {
            let p = p.to_string();
            move |e| ParquetError::format(&p, e)
        };
        let zstd = ZstdLevel::try_new(opts.zstd_level).map_err(fmt(&lpath))?;
        let kv = vec![
            KeyValue::new(
                DATA_COL_DURATION_KEY.into(),
                opts.col_duration_ms.to_string(),
            ),
            KeyValue::new(MAX_T_KEY.into(), maxt.to_string()),
            KeyValue::new(MIN_T_KEY.into(), mint.to_string()),
        ];
        let base = || {
            let b = WriterProperties::builder();
            let b = match opts.page_rows {
                Some(n) => b
                    .set_data_page_row_count_limit(n.max(1))
                    .set_write_batch_size(n.max(1)),
                None => b,
            };
            b.set_writer_version(WriterVersion::PARQUET_2_0)
                .set_compression(Compression::ZSTD(zstd))
                .set_dictionary_enabled(false)
                // Every column gets a column index, which readers page through; the chunk
                // and series columns' bounds are cut short (they bound nothing useful).
                .set_statistics_enabled(EnabledStatistics::Page)
                .set_column_index_truncate_length(Some(COLUMN_INDEX_BOUND_BYTES))
                .set_max_row_group_row_count(None)
                .set_key_value_metadata(Some(kv.clone()))
        };

        // Labels file: label columns (sorted by name), then the column list and the hash.
        let mut fields = Vec::with_capacity(names.len() + 2);
        let mut lprops = base();
        for n in names {
            let col = label_column(n);
            fields.push(Arc::new(
                Type::primitive_type_builder(&col, PhysicalType::BYTE_ARRAY)
                    .with_repetition(Repetition::OPTIONAL)
                    .with_logical_type(Some(LogicalType::String))
                    .build()
                    .map_err(fmt(&lpath))?,
            ));
            let path = ColumnPath::from(col.as_str());
            lprops = lprops
                .set_column_dictionary_enabled(path.clone(), true)
                .set_column_statistics_enabled(path.clone(), EnabledStatistics::Page);
            if n == METRIC_NAME {
                lprops = lprops
                    .set_column_bloom_filter_enabled(path.clone(), true)
                    .set_column_bloom_filter_fpp(path, 0.01);
            }
        }
        for (name, enc) in [
            (COL_INDEXES_COLUMN, Encoding::DELTA_BYTE_ARRAY),
            (SERIES_HASH_COLUMN, Encoding::PLAIN),
        ] {
            fields.push(Arc::new(
                Type::primitive_type_builder(name, PhysicalType::BYTE_ARRAY)
                    .with_repetition(Repetition::REQUIRED)
                    .build()
                    .map_err(fmt(&lpath))?,
            ));
            lprops = lprops.set_column_encoding(ColumnPath::from(name), enc);
        }
        if let Ok(i) = names.binary_search_by(|n| n.as_str().cmp(METRIC_NAME)) {
            lprops = lprops.set_sorting_columns(Some(vec![SortingColumn {
                column_idx: i as i32,
                descending: false,
                nulls_first: true,
            }]));
        }
        let lschema = Arc::new(
            Type::group_type_builder("tsdb")
                .with_fields(fields)
                .build()
                .map_err(fmt(&lpath))?,
        );

        // Chunks file: one column per stretch of time, sorted by name as text.
        let mut cols: Vec<String> = (0..n_cols).map(data_column).collect();
        cols.sort();
        let mut cprops = base();
        let mut cfields = Vec::with_capacity(n_cols);
        for c in &cols {
            cfields.push(Arc::new(
                Type::primitive_type_builder(c, PhysicalType::BYTE_ARRAY)
                    .with_repetition(Repetition::REQUIRED)
                    .build()
                    .map_err(fmt(&cpath))?,
            ));
            cprops = cprops.set_column_encoding(
                ColumnPath::from(c.as_str()),
                Encoding::DELTA_LENGTH_BYTE_ARRAY,
            );
        }
        let cschema = Arc::new(
            Type::group_type_builder("tsdb")
                .with_fields(cfields)
                .build()
                .map_err(fmt(&cpath))?,
        );
        let lfile = BufWriter::new(File::create(&lp).map_err(io_err(&lp))?);
        let cfile = BufWriter::new(File::create(&cp).map_err(io_err(&cp))?);
        Ok(ShardWriter {
            labels: SerializedFileWriter::new(lfile, lschema, Arc::new(lprops.build()))
                .map_err(fmt(&lpath))?,
            chunks: SerializedFileWriter::new(cfile, cschema, Arc::new(cprops.build()))
                .map_err(fmt(&cpath))?,
            paths: [lp, cp],
        })
    }

    fn write_row_group(
        &mut self,
        rows: &[Row],
        names: &[String],
        n_cols: usize,
    ) -> Result<(), ParquetError> {
        let lpath = self.paths[0].display().to_string();
        let fmt = |p: &str| {
            let p = p.to_string();
            move |e| ParquetError::format(&p, e)
        };
        let mut rg = self.labels.next_row_group().map_err(fmt(&lpath))?;
        let mut values: Vec<ByteArray> = Vec::with_capacity(rows.len());
        let mut defs: Vec<i16> = Vec::with_capacity(rows.len());
        // Each row's position in its label list: rows hold labels in column order, so one
        // cursor per row walks them as the columns go by.
        let mut cursor = vec![0usize; rows.len()];
        for col in 0..names.len() {
            values.clear();
            defs.clear();
            for (row, at) in rows.iter().zip(cursor.iter_mut()) {
                match row.labels.get(*at) {
                    Some((c, v)) if *c as usize == col => {
                        values.push(ByteArray::from(v.clone()));
                        defs.push(1);
                        *at += 1;
                    }
                    _ => defs.push(0),
                }
            }
            let mut w = rg.next_column().map_err(fmt(&lpath))?.ok_or_else(|| {
                ParquetError::layout(&lpath, "schema ended before the label columns")
            })?;
            w.typed::<ByteArrayType>()
                .write_batch(&values, Some(&defs), None)
                .map_err(fmt(&lpath))?;
            w.close().map_err(fmt(&lpath))?;
        }
        let col_lists: Vec<ByteArray> = rows
            .iter()
            .map(|r| {
                let cols: Vec<u32> = r.labels.iter().map(|l| l.0).collect();
                ByteArray::from(encode_col_indexes(&cols))
            })
            .collect();
        let hashes: Vec<ByteArray> = rows
            .iter()
            .map(|r| ByteArray::from(r.hash.to_be_bytes().to_vec()))
            .collect();
        for vals in [&col_lists, &hashes] {
            let mut w = rg.next_column().map_err(fmt(&lpath))?.ok_or_else(|| {
                ParquetError::layout(&lpath, "schema ended before the series columns")
            })?;
            w.typed::<ByteArrayType>()
                .write_batch(vals, None, None)
                .map_err(fmt(&lpath))?;
            w.close().map_err(fmt(&lpath))?;
        }
        rg.close().map_err(fmt(&lpath))?;

        let cpath = self.paths[1].display().to_string();
        let mut order: Vec<(String, usize)> = (0..n_cols).map(|i| (data_column(i), i)).collect();
        order.sort();
        let mut rg = self.chunks.next_row_group().map_err(fmt(&cpath))?;
        for (_, i) in order {
            let vals: Vec<ByteArray> = rows
                .iter()
                .map(|r| ByteArray::from(r.chunks[i].clone()))
                .collect();
            let mut w = rg.next_column().map_err(fmt(&cpath))?.ok_or_else(|| {
                ParquetError::layout(&cpath, "schema ended before the chunk columns")
            })?;
            w.typed::<ByteArrayType>()
                .write_batch(&vals, None, None)
                .map_err(fmt(&cpath))?;
            w.close().map_err(fmt(&cpath))?;
        }
        rg.close().map_err(fmt(&cpath))?;
        Ok(())
    }

    fn finish(self, report: &mut ConvertReport) -> Result<(), ParquetError> {
        for (w, p) in [(self.labels, &self.paths[0]), (self.chunks, &self.paths[1])] {
            let path = p.display().to_string();
            let inner = w.into_inner().map_err(|e| ParquetError::format(&path, e))?;
            let file = inner.into_inner().map_err(|e| ParquetError::Io {
                path: path.clone(),
                source: e.into_error(),
            })?;
            drop(file);
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(p)
                .map_err(io_err(p))?;
            zero_false_null_pages(&mut file, &path)?;
            file.sync_all().map_err(io_err(p))?;
            report.bytes += file.metadata().map_err(io_err(p))?.len();
            report.files.push(p.clone());
        }
        report.shards += 1;
        Ok(())
    }
}

/// Rewrites, in every column index of a finished file, the `false` entries of `null_pages`
/// from 2 to 0.
///
/// Thrift's compact protocol writes a boolean inside a list as one byte, and writers differ on
/// `false`: the Parquet writer used here writes 2 (as Thrift's Java library does), while the Go
/// Parquet library that Prometheus-on-Parquet readers are built on reads any byte but 0 as
/// `true`, so to it every page would be all nulls and every selection empty. 0 is what the Go
/// writer itself writes and what every reader reads as `false`. The bytes keep their length,
/// so no offset moves.
fn zero_false_null_pages(file: &mut File, path: &str) -> Result<(), ParquetError> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let io = |source| ParquetError::Io {
        path: path.to_string(),
        source,
    };
    let len = file.seek(SeekFrom::End(0)).map_err(io)?;
    let mut tail = [0u8; 8];
    file.seek(SeekFrom::Start(len.saturating_sub(8)))
        .map_err(io)?;
    file.read_exact(&mut tail).map_err(io)?;
    let meta_len = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
    let start = len
        .checked_sub(8 + meta_len)
        .ok_or_else(|| ParquetError::layout(path, "footer longer than the file"))?;
    let mut footer = vec![0u8; meta_len as usize];
    file.seek(SeekFrom::Start(start)).map_err(io)?;
    file.read_exact(&mut footer).map_err(io)?;
    let meta = parquet::file::metadata::ParquetMetaDataReader::decode_metadata(&footer)
        .map_err(|e| ParquetError::format(path, e))?;
    for rg in meta.row_groups() {
        for c in rg.columns() {
            let Some(r) = c.column_index_range() else {
                continue;
            };
            let mut buf = vec![0u8; (r.end - r.start) as usize];
            file.seek(SeekFrom::Start(r.start)).map_err(io)?;
            file.read_exact(&mut buf).map_err(io)?;
            if patch_null_pages(&mut buf).map_err(|what| ParquetError::layout(path, what))? {
                file.seek(SeekFrom::Start(r.start)).map_err(io)?;
                file.write_all(&buf).map_err(io)?;
            }
        }
    }
    Ok(())
}

/// Sets the `false` entries (2) of `null_pages`, field 1 of a compact-protocol column index,
/// to 0; whether anything changed.
pub(super) fn patch_null_pages(buf: &mut [u8]) -> Result<bool, String> {
    // Field 1, a list: the field header's delta is 1 and its type 9.
    if buf.first() != Some(&0x19) {
        return Err("column index does not start with its null_pages list".into());
    }
    let header = *buf.get(1).ok_or("truncated column index")?;
    let elem = header & 0x0F;
    if elem != 1 && elem != 2 {
        return Err(format!("null_pages holds thrift type {elem}, not booleans"));
    }
    let (count, mut at) = if header >> 4 == 0x0F {
        let (n, k) = super::uvarint(&buf[2..]).ok_or("truncated null_pages size")?;
        (n as usize, 2 + k)
    } else {
        (usize::from(header >> 4), 2)
    };
    let end = at
        .checked_add(count)
        .filter(|&e| e <= buf.len())
        .ok_or("null_pages runs past the column index")?;
    let mut changed = false;
    while at < end {
        match buf[at] {
            0 | 1 => {}
            2 => {
                buf[at] = 0;
                changed = true;
            }
            b => return Err(format!("null_pages entry {b} is not a boolean")),
        }
        at += 1;
    }
    Ok(changed)
}
