//! Columnar blocks: a TSDB block's series as Parquet files, in the layout Prometheus-on-Parquet
//! readers and writers share (`docs/formats/parquet.md`).
//!
//! A converted block is a set of shards, each a labels file (`N.labels.parquet`: one
//! dictionary-encoded column per label name, the label columns each row uses, the series
//! hash) and a chunks file (`N.chunks.parquet`: one column of encoded chunks per stretch of
//! time), with rows in the same order and row groups of the same sizes. Rows are sorted by
//! metric name, then by label set.
//!
//! [`write`] converts a block on local disk; [`read`] serves the files from a bucket,
//! evaluating matchers on the dictionary codes of the label columns they name.

pub mod codes;
pub mod read;
pub mod write;

use bytes::Bytes;

use crate::store::RawChunk;

/// Prefix of a label column's name: `l_` and the label name.
pub const LABEL_COLUMN_PREFIX: &str = "l_";
/// Prefix of a chunk column's name: `s_data_` and the column's number.
pub const DATA_COLUMN_PREFIX: &str = "s_data_";
/// The column listing, per row, the label columns the series has a value in.
pub const COL_INDEXES_COLUMN: &str = "s_col_indexes";
/// The column holding each series' label-set hash (8 bytes, big-endian).
pub const SERIES_HASH_COLUMN: &str = "s_series_hash";
/// Key-value metadata: the time each chunk column spans, ms.
pub const DATA_COL_DURATION_KEY: &str = "data_col_duration_ms";
/// Key-value metadata: the converted range's start, ms.
pub const MIN_T_KEY: &str = "minT";
/// Key-value metadata: the converted range's end, ms.
pub const MAX_T_KEY: &str = "maxT";
/// Default time a chunk column spans: 8 h.
pub const DEFAULT_COL_DURATION_MS: i64 = 8 * 3_600_000;
/// Default rows per row group.
pub const DEFAULT_ROW_GROUP_ROWS: usize = 1_000_000;
/// Most samples a re-encoded chunk holds.
pub const SAMPLES_PER_CHUNK: usize = 120;

/// A shard's labels file under its block's directory.
pub fn labels_file(shard: usize) -> String {
    format!("{shard}.labels.parquet")
}

/// A shard's chunks file under its block's directory.
pub fn chunks_file(shard: usize) -> String {
    format!("{shard}.chunks.parquet")
}

/// The name of the label column of `label`.
pub fn label_column(label: &str) -> String {
    format!("{LABEL_COLUMN_PREFIX}{label}")
}

/// The name of chunk column `i`.
pub fn data_column(i: usize) -> String {
    format!("{DATA_COLUMN_PREFIX}{i}")
}

/// Why a Parquet block could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ParquetError {
    /// The Parquet structure itself is bad (footer, page, dictionary, compression).
    #[error("{path}: {source}")]
    Format {
        /// The file.
        path: String,
        /// What the Parquet reader or writer said.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// The file is Parquet but not a Prometheus block (missing columns or metadata, values
    /// that do not decode).
    #[error("{path}: {what}")]
    Layout {
        /// The file.
        path: String,
        /// What is wrong.
        what: String,
    },
    /// A chunk column value does not decode.
    #[error("{path}: row {row}: {what}")]
    Chunks {
        /// The file.
        path: String,
        /// The row (in its row group) or series.
        row: u64,
        /// What is wrong.
        what: String,
    },
    /// Reading the bucket failed.
    #[error(transparent)]
    Bucket(#[from] crate::bucket::BucketError),
    /// Reading or writing local files failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The source block could not be read.
    #[error(transparent)]
    Block(#[from] crate::error::Error),
}

thread_local! {
    /// Whether this thread is inside [`guarded`].
    static GUARDED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, which drives the Parquet library's page and value decoders over bytes read from
/// a bucket, and turns a panic inside it into an error naming `path`: some of the library's
/// decoders slice by lengths read from the file without checking them (a negative
/// DELTA_LENGTH_BYTE_ARRAY length, say), and a corrupt file must fail its request, not take
/// a thread down. The panic's message still reaches the panic hook (the log).
pub(crate) fn guarded<T>(
    path: &str,
    f: impl FnOnce() -> Result<T, ParquetError>,
) -> Result<T, ParquetError> {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            GUARDED.with(|g| g.set(self.0));
        }
    }
    let _restore = Restore(GUARDED.with(|g| g.replace(true)));
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let why = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            Err(ParquetError::layout(
                path,
                format!("the Parquet decoder failed on corrupt data: {why}"),
            ))
        }
    }
}

/// Whether the current thread is decoding inside [`guarded`], where a panic becomes an error:
/// a panic hook that treats every panic as fatal (a fuzzer's) can let these through.
pub fn in_guarded_decode() -> bool {
    GUARDED.with(|g| g.get())
}

impl ParquetError {
    pub(crate) fn layout(path: &str, what: impl Into<String>) -> Self {
        ParquetError::Layout {
            path: path.to_string(),
            what: what.into(),
        }
    }

    pub(crate) fn format(path: &str, source: parquet::errors::ParquetError) -> Self {
        ParquetError::Format {
            path: path.to_string(),
            source,
        }
    }
}

/// Appends one chunk to a chunk column value: its encoding, first and last timestamps and
/// length as unsigned varints, then its payload.
pub fn put_chunk(out: &mut Vec<u8>, encoding: u8, min_time: i64, max_time: i64, data: &[u8]) {
    put_uvarint(out, u64::from(encoding));
    put_uvarint(out, min_time as u64);
    put_uvarint(out, max_time as u64);
    put_uvarint(out, data.len() as u64);
    out.extend_from_slice(data);
}

/// The chunks of a chunk column value overlapping `[mint, maxt]`, sharing `value`'s bytes.
pub fn decode_chunks(value: &Bytes, mint: i64, maxt: i64) -> Result<Vec<RawChunk>, String> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < value.len() {
        let mut next = || -> Result<u64, String> {
            let (v, n) = uvarint(&value[at..]).ok_or("truncated chunk header")?;
            at += n;
            Ok(v)
        };
        let encoding = next()?;
        let min_time = next()? as i64;
        let max_time = next()? as i64;
        let len = next()?;
        let end = (at as u64)
            .checked_add(len)
            .filter(|&e| e <= value.len() as u64)
            .ok_or_else(|| format!("chunk of {len} bytes runs past the value's end"))?
            as usize;
        let encoding =
            u8::try_from(encoding).map_err(|_| format!("chunk encoding {encoding} is unknown"))?;
        if !(1..=3).contains(&encoding) {
            return Err(format!("chunk encoding {encoding} is unknown"));
        }
        if min_time > max_time {
            return Err(format!(
                "chunk starts at {min_time}, after its end {max_time}"
            ));
        }
        if min_time <= maxt && max_time >= mint {
            out.push(RawChunk {
                min_time,
                max_time,
                encoding,
                data: value.slice(at..end),
            });
        }
        at = end;
    }
    out.sort_by_key(|c| (c.min_time, c.max_time));
    Ok(out)
}

/// The label column numbers a row uses, as written: the count, then each number ascending, as
/// zig-zag varints.
pub fn encode_col_indexes(cols: &[u32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(cols.len() + 2);
    put_uvarint(&mut out, zigzag(cols.len() as i64));
    for &c in cols {
        put_uvarint(&mut out, zigzag(i64::from(c)));
    }
    out
}

/// Decodes a row's label column numbers into `out`.
pub fn decode_col_indexes(b: &[u8], out: &mut Vec<u32>) -> Result<(), String> {
    out.clear();
    let (n, mut at) = uvarint(b).ok_or("truncated column list")?;
    let n = unzigzag(n);
    if n < 0 || n as usize > b.len() {
        return Err(format!("column list of {n} entries in {} bytes", b.len()));
    }
    for _ in 0..n {
        let (v, k) = uvarint(&b[at..]).ok_or("truncated column list")?;
        at += k;
        let v = unzigzag(v);
        out.push(u32::try_from(v).map_err(|_| format!("column number {v} out of range"))?);
    }
    Ok(())
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// An unsigned varint at the start of `b` and its length; `None` when truncated or longer
/// than 10 bytes.
fn uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7F) << (7 * i);
        if byte < 0x80 {
            return Some((v, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests;
