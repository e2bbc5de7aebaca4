//! Serving a Parquet shard from a bucket.
//!
//! Opening reads each file's footer (metadata and page indexes) by a suffix read. A select then
//! works a row group at a time:
//! - row groups are pruned by the label columns' statistics and the metric name's bloom
//!   filter, for the equality matchers;
//! - the pages of the label columns the matchers name that the page bounds admit are read;
//!   the matchers run a column at a time over the rows still kept, each evaluated once per
//!   dictionary value, keeping or dropping runs of codes;
//! - of the kept rows, the column lists, the other label columns they use and the chunk
//!   columns overlapping the asked time are read, and of the row-indexed columns only the
//!   pages holding kept rows are fetched (the offset index says where they are), in
//!   coalesced ranged reads.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use parquet::bloom_filter::Sbbf;
use parquet::column::reader::ColumnReaderImpl;
use parquet::data_type::{ByteArray, ByteArrayType};
use parquet::file::metadata::{
    ColumnChunkMetaData, PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader,
};
use parquet::file::page_index::column_index::ColumnIndexMetaData;
use parquet::file::page_index::offset_index::PageLocation;
use parquet::file::serialized_reader::SerializedPageReader;

use super::codes::{
    CodedColumn, ColumnRead, NULL, Ranges, SKIPPED, byte_array_rows, chunk_range,
    decode_label_column, match_label_column,
};
use super::{
    COL_INDEXES_COLUMN, DATA_COL_DURATION_KEY, DATA_COLUMN_PREFIX, LABEL_COLUMN_PREFIX, MAX_T_KEY,
    MIN_T_KEY, ParquetError, chunks_file, decode_chunks, decode_col_indexes, guarded, labels_file,
};
use crate::bucket::Bucket;
use crate::labels::{Label, Labels, METRIC_NAME, MatchType, Matcher};
use crate::store::RawChunk;

/// Most rows a row group may claim: 64 times the usual million, and a bound on what a file
/// whose metadata lies can make a reader allocate per row group.
const MAX_ROW_GROUP_ROWS: i64 = 1 << 26;

/// First suffix read of a file's footer, bytes.
const FOOTER_GUESS: u64 = 256 << 10;

/// One file of a shard: its bucket path, size and metadata.
#[derive(Debug)]
struct PFile {
    path: String,
    len: u64,
    meta: ParquetMetaData,
}

/// One shard of a Parquet block: its labels and chunks files, opened.
#[derive(Debug)]
pub struct ParquetShard {
    labels: PFile,
    chunks: PFile,
    /// Label name to its column in the labels file.
    label_cols: BTreeMap<String, usize>,
    /// Per column of the labels file: its label name, for label columns.
    col_label: Vec<Option<String>>,
    col_indexes: usize,
    /// Per chunk column number: its column in the chunks file.
    data_cols: Vec<usize>,
    /// Start of the converted range, ms.
    pub min_time: i64,
    /// End of the converted range, ms.
    pub max_time: i64,
    /// The time each chunk column spans, ms.
    pub col_duration_ms: i64,
}

/// A series a select found: its labels (as stored, sorted by name) and chunks.
#[derive(Debug, Clone, PartialEq)]
pub struct ParquetSeries {
    /// The labels, sorted by name.
    pub labels: Labels,
    /// The chunks overlapping the asked range, in time order.
    pub chunks: Vec<RawChunk>,
}

async fn open_file(bucket: &Bucket, path: String) -> Result<PFile, ParquetError> {
    let len = bucket.size(&path).await?;
    let mut want = FOOTER_GUESS.min(len);
    loop {
        let tail = bucket.get_range(&path, len - want..len).await?;
        let parsed = guarded(&path, || {
            let mut r =
                ParquetMetaDataReader::new().with_page_index_policy(PageIndexPolicy::Optional);
            match r.try_parse_sized(&tail, len) {
                Ok(()) => Ok(Ok(r
                    .finish()
                    .map_err(|e| ParquetError::format(&path, e))?)),
                Err(e) => Ok(Err(e)),
            }
        })?;
        match parsed {
            Ok(meta) => return Ok(PFile { path, len, meta }),
            Err(parquet::errors::ParquetError::NeedMoreData(n))
                if (n as u64) > want && (n as u64) <= len =>
            {
                want = n as u64;
            }
            Err(e) => return Err(ParquetError::format(&path, e)),
        }
    }
}

impl PFile {
    fn leaf(&self, i: usize) -> String {
        self.meta
            .file_metadata()
            .schema_descr()
            .column(i)
            .name()
            .to_string()
    }

    fn num_columns(&self) -> usize {
        self.meta.file_metadata().schema_descr().num_columns()
    }

    fn kv(&self, key: &str) -> Option<&str> {
        self.meta
            .file_metadata()
            .key_value_metadata()?
            .iter()
            .find(|kv| kv.key == key)?
            .value
            .as_deref()
    }

    fn column(&self, rg: usize, col: usize) -> &ColumnChunkMetaData {
        self.meta.row_group(rg).column(col)
    }

    fn page_locations(&self, rg: usize, col: usize) -> Option<Vec<PageLocation>> {
        self.meta
            .page_index_for_row_group(rg)
            .page_locations(col)
            .cloned()
    }
}

impl ParquetShard {
    /// Opens shard `shard` of the block whose files lie under `dir` (no trailing slash).
    pub async fn open(bucket: &Bucket, dir: &str, shard: usize) -> Result<Self, ParquetError> {
        let (labels, chunks) = futures::try_join!(
            open_file(bucket, format!("{dir}/{}", labels_file(shard))),
            open_file(bucket, format!("{dir}/{}", chunks_file(shard))),
        )?;
        Self::from_files(labels, chunks)
    }

    fn from_files(labels: PFile, chunks: PFile) -> Result<Self, ParquetError> {
        let mut label_cols = BTreeMap::new();
        let mut col_label = vec![None; labels.num_columns()];
        let mut col_indexes = None;
        for (i, slot) in col_label.iter_mut().enumerate() {
            let name = labels.leaf(i);
            if let Some(l) = name.strip_prefix(LABEL_COLUMN_PREFIX) {
                label_cols.insert(l.to_string(), i);
                *slot = Some(l.to_string());
            } else if name == COL_INDEXES_COLUMN {
                col_indexes = Some(i);
            }
        }
        let col_indexes = col_indexes.ok_or_else(|| {
            ParquetError::layout(&labels.path, format!("no {COL_INDEXES_COLUMN} column"))
        })?;
        let num = |f: &PFile, key: &str| -> Result<i64, ParquetError> {
            f.kv(key)
                .ok_or_else(|| ParquetError::layout(&f.path, format!("no {key} in the metadata")))?
                .parse()
                .map_err(|_| ParquetError::layout(&f.path, format!("{key} is not a number")))
        };
        let (min_time, max_time) = (num(&labels, MIN_T_KEY)?, num(&labels, MAX_T_KEY)?);
        let col_duration_ms = num(&labels, DATA_COL_DURATION_KEY)?;
        if col_duration_ms <= 0 || min_time > max_time {
            return Err(ParquetError::layout(
                &labels.path,
                "bad time range in the metadata",
            ));
        }
        let mut numbered = Vec::new();
        for i in 0..chunks.num_columns() {
            if let Some(n) = chunks.leaf(i).strip_prefix(DATA_COLUMN_PREFIX) {
                let n: usize = n.parse().map_err(|_| {
                    ParquetError::layout(&chunks.path, format!("chunk column {}", chunks.leaf(i)))
                })?;
                numbered.push((n, i));
            }
        }
        numbered.sort_unstable();
        if numbered.iter().enumerate().any(|(k, &(n, _))| k != n) {
            return Err(ParquetError::layout(
                &chunks.path,
                "chunk columns are not numbered 0..n",
            ));
        }
        let data_cols = numbered.into_iter().map(|(_, i)| i).collect();
        let (lr, cr) = (labels.meta.row_groups(), chunks.meta.row_groups());
        if let Some(rg) = lr
            .iter()
            .find(|rg| !(0..=MAX_ROW_GROUP_ROWS).contains(&rg.num_rows()))
        {
            return Err(ParquetError::layout(
                &labels.path,
                format!(
                    "a row group of {} rows (at most {MAX_ROW_GROUP_ROWS} are read)",
                    rg.num_rows()
                ),
            ));
        }
        if lr.len() != cr.len() || lr.iter().zip(cr).any(|(a, b)| a.num_rows() != b.num_rows()) {
            return Err(ParquetError::layout(
                &chunks.path,
                "row groups differ from the labels file's",
            ));
        }
        Ok(ParquetShard {
            labels,
            chunks,
            label_cols,
            col_label,
            col_indexes,
            data_cols,
            min_time,
            max_time,
            col_duration_ms,
        })
    }

    /// Rows in the shard.
    pub fn num_rows(&self) -> u64 {
        self.labels.meta.file_metadata().num_rows().max(0) as u64
    }

    /// The label names any row has a value for.
    pub fn label_names(&self) -> impl Iterator<Item = &str> {
        self.label_cols.keys().map(String::as_str)
    }

    /// Series matching every matcher with samples in `[mint, maxt]` (with `skip_chunks`: their
    /// labels only), in the file's order.
    pub async fn select(
        &self,
        bucket: &Bucket,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        skip_chunks: bool,
    ) -> Result<Vec<ParquetSeries>, ParquetError> {
        let mut out = Vec::new();
        if maxt < self.min_time || mint > self.max_time {
            return Ok(out);
        }
        for rg in 0..self.labels.meta.num_row_groups() {
            self.select_row_group(bucket, rg, matchers, (mint, maxt), skip_chunks, &mut out)
                .await?;
        }
        Ok(out)
    }

    /// The values of label `name` over the series matching `matchers`, sorted, distinct.
    pub async fn label_values(
        &self,
        bucket: &Bucket,
        name: &str,
        matchers: &[Matcher],
    ) -> Result<Vec<String>, ParquetError> {
        let Some(&col) = self.label_cols.get(name) else {
            return Ok(Vec::new());
        };
        let mut seen = std::collections::BTreeSet::new();
        for rg in 0..self.labels.meta.num_row_groups() {
            let Some((rows, mut coded)) = self.matching_rows(bucket, rg, matchers, &[col]).await?
            else {
                continue;
            };
            let Some(c) = coded.remove(&col) else {
                continue;
            };
            let mut used = vec![false; c.dict.len()];
            for r in rows {
                let code = c.code(r as usize);
                if code != NULL && code != SKIPPED {
                    used[code as usize] = true;
                }
            }
            for (v, _) in c.dict.iter().zip(used).filter(|(_, u)| *u) {
                seen.insert(String::from_utf8_lossy(v).into_owned());
            }
        }
        Ok(seen.into_iter().collect())
    }

    /// The rows of row group `rg` every matcher keeps, with the coded label columns read for
    /// them and for `also`; `None` when the row group is pruned.
    async fn matching_rows(
        &self,
        bucket: &Bucket,
        rg: usize,
        matchers: &[Matcher],
        also: &[usize],
    ) -> Result<Option<(Vec<u32>, HashMap<usize, CodedColumn>)>, ParquetError> {
        let rows = self.labels.meta.row_group(rg).num_rows().max(0) as usize;
        // Matchers on labels no row has see the empty value on every row.
        let mut cols = Vec::new();
        for m in matchers {
            match self.label_cols.get(&m.name) {
                Some(&c) => cols.push(c),
                None if m.matches("") => {}
                None => return Ok(None),
            }
        }
        if self.pruned(bucket, rg, matchers).await? {
            return Ok(None);
        }
        cols.extend_from_slice(also);
        cols.sort_unstable();
        cols.dedup();
        // Only the pages whose bounds admit every equality matcher's value are read.
        let cand = self.candidate_rows(rg, matchers, rows);
        if cand.is_empty() {
            return Ok(Some((Vec::new(), HashMap::new())));
        }
        let file = self.fetch_coded(bucket, rg, &cols, rows, &cand).await?;
        // Each matcher narrows the rows the next one reads, equality matchers first: a
        // column's pages and runs holding none of the rows left are stepped over.
        let mut order: Vec<&Matcher> = matchers
            .iter()
            .filter(|m| self.label_cols.contains_key(&m.name))
            .collect();
        order.sort_by_key(|m| m.typ != MatchType::Equal);
        let mut sel = cand;
        for m in order {
            let col = self.label_cols[&m.name];
            let accepts = |v: &[u8]| matches_bytes(m, v);
            sel = guarded(&self.labels.path, || {
                match_label_column(
                    self.column_read(rg, col, &file, rows, &sel),
                    &accepts,
                    m.matches(""),
                )
            })?;
            if sel.is_empty() {
                return Ok(Some((Vec::new(), HashMap::new())));
            }
        }
        // The columns read, decoded for the kept rows alone.
        let coded = self.decode_coded(rg, &cols, &file, rows, &sel)?;
        let rows = sel
            .iter()
            .flat_map(|r| r.start as u32..r.end as u32)
            .collect();
        Ok(Some((rows, coded)))
    }

    /// The rows of row group `rg` (as ascending, disjoint ranges) that can hold a row every
    /// equality matcher accepts, by the page bounds of the matchers' columns (their column
    /// and offset indexes); every row when nothing narrows them.
    fn candidate_rows(&self, rg: usize, matchers: &[Matcher], rows: usize) -> Vec<Range<usize>> {
        let mut cand = std::iter::once(0..rows).collect::<Vec<_>>();
        let pi = self.labels.meta.page_index_for_row_group(rg);
        for m in matchers
            .iter()
            .filter(|m| m.typ == MatchType::Equal && !m.value.is_empty())
        {
            let Some(&col) = self.label_cols.get(&m.name) else {
                continue;
            };
            let (Some(ColumnIndexMetaData::BYTE_ARRAY(ci)), Some(locs)) =
                (pi.column_index(col), pi.page_locations(col))
            else {
                continue;
            };
            if ci.num_pages() as usize != locs.len() {
                continue;
            }
            let v = m.value.as_bytes();
            let mut keep: Vec<Range<usize>> = Vec::new();
            for (i, loc) in locs.iter().enumerate() {
                let lo = (loc.first_row_index.max(0) as usize).min(rows);
                let hi = locs
                    .get(i + 1)
                    .map_or(rows, |n| (n.first_row_index.max(0) as usize).min(rows));
                if ci.is_null_page(i) || lo >= hi {
                    continue;
                }
                let inside = match (ci.min_value(i), ci.max_value(i)) {
                    (Some(lo_v), Some(hi_v)) => lo_v <= v && v <= hi_v,
                    _ => true,
                };
                if inside {
                    match keep.last_mut() {
                        Some(last) if last.end == lo => last.end = hi,
                        _ => keep.push(lo..hi),
                    }
                }
            }
            cand = intersect(&cand, &keep);
            if cand.is_empty() {
                break;
            }
        }
        cand
    }

    /// Whether row group `rg` holds no row an equality matcher accepts, by the column's
    /// statistics and bloom filter.
    async fn pruned(
        &self,
        bucket: &Bucket,
        rg: usize,
        matchers: &[Matcher],
    ) -> Result<bool, ParquetError> {
        for m in matchers
            .iter()
            .filter(|m| m.typ == MatchType::Equal && !m.value.is_empty())
        {
            let Some(&col) = self.label_cols.get(&m.name) else {
                continue;
            };
            let c = self.labels.column(rg, col);
            if let Some(s) = c.statistics() {
                let v = m.value.as_bytes();
                if s.min_bytes_opt().is_some_and(|lo| v < lo)
                    || s.max_bytes_opt().is_some_and(|hi| v > hi)
                {
                    return Ok(true);
                }
            }
            if let (Some(off), Some(len)) = (c.bloom_filter_offset(), c.bloom_filter_length()) {
                let (Ok(off), Ok(len)) = (u64::try_from(off), u64::try_from(len)) else {
                    continue;
                };
                if off.checked_add(len).is_none_or(|e| e > self.labels.len) {
                    return Err(ParquetError::layout(
                        &self.labels.path,
                        "bloom filter past the file's end",
                    ));
                }
                let raw = bucket.get_range(&self.labels.path, off..off + len).await?;
                let ranges = Ranges::new(vec![(off, raw)], self.labels.len);
                let sbbf = Sbbf::read_from_column_chunk(c, &ranges)
                    .map_err(|e| ParquetError::format(&self.labels.path, e))?;
                if sbbf.is_some_and(|f| !f.check(&ByteArray::from(m.value.as_str()))) {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// The pages of label columns `cols` of row group `rg` holding `wanted` rows (with their
    /// dictionaries), fetched in coalesced reads; whole chunks when every row is wanted or
    /// no offset index says where pages are.
    async fn fetch_coded(
        &self,
        bucket: &Bucket,
        rg: usize,
        cols: &[usize],
        rows: usize,
        wanted: &[Range<usize>],
    ) -> Result<Arc<Ranges>, ParquetError> {
        let whole = covers_all(wanted, rows);
        let mut ranges: Vec<Range<u64>> = Vec::new();
        for &c in cols {
            let meta = self.labels.column(rg, c);
            let locs = if whole {
                None
            } else {
                self.labels.page_locations(rg, c)
            };
            match &locs {
                // The dictionary page (from the chunk's start to its first data page) and
                // the data pages holding wanted rows.
                Some(l) if !l.is_empty() => {
                    let start = chunk_range(meta).start;
                    let first = l[0].offset.max(0) as u64;
                    if first > start {
                        ranges.push(start..first);
                    }
                    ranges.extend(pages_for_ranges(l, wanted, rows));
                }
                _ => ranges.push(chunk_range(meta)),
            }
        }
        ranges.sort_by_key(|r| r.start);
        Ok(Arc::new(self.fetch(bucket, &self.labels, &ranges).await?))
    }

    /// How label column `col` of row group `rg` is read from `file` for `wanted` rows.
    fn column_read<'a>(
        &'a self,
        rg: usize,
        col: usize,
        file: &Arc<Ranges>,
        rows: usize,
        wanted: &'a [Range<usize>],
    ) -> ColumnRead<'a> {
        ColumnRead {
            path: &self.labels.path,
            file: file.clone(),
            meta: self.labels.column(rg, col),
            rows,
            locations: self
                .labels
                .page_locations(rg, col)
                .filter(|l| !l.is_empty()),
            wanted,
        }
    }

    /// Label columns `cols` of row group `rg`, fetched in `file`, decoded into codes for the
    /// `wanted` rows.
    fn decode_coded(
        &self,
        rg: usize,
        cols: &[usize],
        file: &Arc<Ranges>,
        rows: usize,
        wanted: &[Range<usize>],
    ) -> Result<HashMap<usize, CodedColumn>, ParquetError> {
        let mut out = HashMap::with_capacity(cols.len());
        for &c in cols {
            let coded = guarded(&self.labels.path, || {
                decode_label_column(self.column_read(rg, c, file, rows, wanted))
            })?;
            out.insert(c, coded);
        }
        Ok(out)
    }

    /// Reads `ranges` of `f` (after checking they lie in it), coalesced.
    async fn fetch(
        &self,
        bucket: &Bucket,
        f: &PFile,
        ranges: &[Range<u64>],
    ) -> Result<Ranges, ParquetError> {
        if ranges.iter().any(|r| r.start > r.end || r.end > f.len) {
            return Err(ParquetError::layout(
                &f.path,
                "a column chunk lies past the file's end",
            ));
        }
        let merged = crate::bucket::coalesce(ranges, bucket.coalesce_gap());
        let parts = bucket.get_ranges(&f.path, &merged).await?;
        Ok(Ranges::new(
            merged.iter().map(|r| r.start).zip(parts).collect(),
            f.len,
        ))
    }

    /// Values of byte-array column `col` of row group `rg` of `f` at `rows` (ascending),
    /// fetching only the pages that hold them when the offset index says where pages are.
    async fn read_rows(
        &self,
        bucket: &Bucket,
        f: &PFile,
        rg: usize,
        col: usize,
        rows: &[u32],
    ) -> Result<Vec<Bytes>, ParquetError> {
        let meta = f.column(rg, col);
        let total = f.meta.row_group(rg).num_rows().max(0) as usize;
        let locations = f.page_locations(rg, col);
        let ranges = match &locations {
            Some(locs) => pages_for_rows(locs, rows, total),
            None => vec![chunk_range(meta)],
        };
        let file = Arc::new(self.fetch(bucket, f, &ranges).await?);
        guarded(&f.path, || {
            match byte_array_rows(&f.path, file.clone(), meta, total, locations.clone(), rows)? {
                Some(v) => Ok(v),
                None => decode_rows(f, meta, file, total, locations, rows),
            }
        })
    }

    /// The rows of row group `rg` every matcher keeps, with what their labels are read from
    /// (their column lists and the label columns those name); `None` when none is kept.
    pub async fn kept_rows(
        &self,
        bucket: &Bucket,
        rg: usize,
        matchers: &[Matcher],
    ) -> Result<Option<KeptRows>, ParquetError> {
        match self.matched(bucket, rg, matchers).await? {
            Some(m) => self.with_labels(bucket, m).await.map(Some),
            None => Ok(None),
        }
    }

    /// The rows of row group `rg` every matcher keeps, before their labels are read (so that
    /// their chunks can be fetched meanwhile); `None` when none is kept.
    pub async fn matched(
        &self,
        bucket: &Bucket,
        rg: usize,
        matchers: &[Matcher],
    ) -> Result<Option<Matched>, ParquetError> {
        let Some((rows, coded)) = self.matching_rows(bucket, rg, matchers, &[]).await? else {
            return Ok(None);
        };
        if rows.is_empty() {
            return Ok(None);
        }
        Ok(Some(Matched { rg, rows, coded }))
    }

    /// Matched rows with what their labels are read from: their column lists and the label
    /// columns those name.
    pub async fn with_labels(&self, bucket: &Bucket, m: Matched) -> Result<KeptRows, ParquetError> {
        let Matched {
            rg,
            rows,
            mut coded,
        } = m;
        // Which label columns each kept row uses.
        let lists = self
            .read_rows(bucket, &self.labels, rg, self.col_indexes, &rows)
            .await?;
        let mut cols = Vec::with_capacity(rows.len() * 4);
        let mut col_ends = Vec::with_capacity(rows.len());
        let mut one = Vec::new();
        let mut needed = Vec::new();
        for (k, l) in lists.iter().enumerate() {
            decode_col_indexes(l, &mut one).map_err(|what| ParquetError::Chunks {
                path: self.labels.path.clone(),
                row: u64::from(rows[k]),
                what,
            })?;
            for &c in &one {
                if self.col_label.get(c as usize).is_none_or(Option::is_none) {
                    return Err(ParquetError::Chunks {
                        path: self.labels.path.clone(),
                        row: u64::from(rows[k]),
                        what: format!("column {c} is not a label column"),
                    });
                }
                needed.push(c as usize);
            }
            cols.extend_from_slice(&one);
            col_ends.push(cols.len() as u32);
        }
        needed.sort_unstable();
        needed.dedup();
        needed.retain(|c| !coded.contains_key(c));
        let total = self.labels.meta.row_group(rg).num_rows().max(0) as usize;
        let spans = row_spans(&rows);
        if !needed.is_empty() {
            let file = self.fetch_coded(bucket, rg, &needed, total, &spans).await?;
            coded.extend(self.decode_coded(rg, &needed, &file, total, &spans)?);
        }
        let mut by_col: Vec<Option<CodedColumn>> = Vec::new();
        by_col.resize_with(self.col_label.len(), || None);
        for (c, col) in coded {
            if let Some(slot) = by_col.get_mut(c) {
                *slot = Some(col);
            }
        }
        let mut kept = KeptRows {
            rg,
            rows,
            cols,
            col_ends,
            coded: by_col,
        };
        kept.make_utf8();
        Ok(kept)
    }

    /// Whether series served with external labels `ext` attached and labels `removed` taken
    /// off keep the order of the rows. The rows sort by metric name, then by label set, which
    /// is label-set order unless a label name sorts before `__name__`. Taking a label off, or
    /// setting one a row may already have, can move a series anywhere. Adding a label keeps
    /// the order when it lands at the same place in every row: when every label column
    /// sorting before it has a value in every row (by the row groups' null counts).
    pub fn serves_in_row_order(&self, ext: &Labels, removed: &[String]) -> bool {
        if self.label_cols.keys().any(|n| n.as_str() < METRIC_NAME) {
            return false;
        }
        if removed.iter().any(|r| self.label_cols.contains_key(r)) {
            return false;
        }
        let always_set =
            |col: usize| {
                self.labels.meta.row_groups().iter().all(|rg| {
                    rg.column(col).statistics().and_then(|s| s.null_count_opt()) == Some(0)
                })
            };
        ext.iter()
            .filter(|l| !removed.iter().any(|r| *r == l.name))
            .all(|l| {
                !self.label_cols.contains_key(l.name.as_str())
                    && self
                        .label_cols
                        .iter()
                        .take_while(|(n, _)| n.as_str() < l.name.as_str())
                        .all(|(_, &c)| always_set(c))
            })
    }

    /// Row groups in the shard.
    pub fn num_row_groups(&self) -> usize {
        self.labels.meta.num_row_groups()
    }

    /// Rows in row group `rg`.
    pub fn row_group_rows(&self, rg: usize) -> usize {
        self.labels.meta.row_group(rg).num_rows().max(0) as usize
    }

    /// The chunks file's columns whose stretch of time overlaps `[mint, maxt]`, in time order.
    pub fn chunk_columns(&self, mint: i64, maxt: i64) -> Vec<usize> {
        let mut out = Vec::new();
        for (n, &col) in self.data_cols.iter().enumerate() {
            let lo = self
                .min_time
                .saturating_add((n as i64).saturating_mul(self.col_duration_ms));
            let hi = lo.saturating_add(self.col_duration_ms);
            if hi > mint && lo <= maxt {
                out.push(col);
            }
        }
        out
    }

    /// Compressed bytes a row of row group `rg` takes in chunk columns `cols`, on average.
    pub fn chunk_bytes_per_row(&self, rg: usize, cols: &[usize]) -> u64 {
        let rows = self.chunks.meta.row_group(rg).num_rows().max(1) as u64;
        cols.iter()
            .map(|&c| self.chunks.column(rg, c).compressed_size().max(0) as u64)
            .sum::<u64>()
            / rows
    }

    /// The first row of each page of chunk column `col` in row group `rg`, when the offset
    /// index says.
    pub fn chunk_page_starts(&self, rg: usize, col: usize) -> Option<Vec<usize>> {
        let locs = self.chunks.page_locations(rg, col)?;
        Some(
            locs.iter()
                .map(|l| l.first_row_index.max(0) as usize)
                .collect(),
        )
    }

    /// Reads the pages of chunk column `col` of row group `rg` holding `rows` (ascending), in
    /// coalesced ranged reads.
    pub async fn fetch_chunk_pages(
        &self,
        bucket: &Bucket,
        rg: usize,
        col: usize,
        rows: &[u32],
    ) -> Result<ChunkPages, ParquetError> {
        let total = self.chunks.meta.row_group(rg).num_rows().max(0) as usize;
        let locations = self.chunks.page_locations(rg, col);
        let ranges = match &locations {
            Some(locs) => pages_for_rows(locs, rows, total),
            None => vec![chunk_range(self.chunks.column(rg, col))],
        };
        let file = Arc::new(self.fetch(bucket, &self.chunks, &ranges).await?);
        Ok(ChunkPages { file, locations })
    }

    /// The values of chunk column `col` of row group `rg` at `rows` (ascending), from `pages`
    /// (fetched for rows including these): slices of the decompressed pages where the
    /// column is plain or delta-length coded, copies otherwise.
    pub fn chunk_values(
        &self,
        rg: usize,
        col: usize,
        pages: &ChunkPages,
        rows: &[u32],
    ) -> Result<Vec<Bytes>, ParquetError> {
        guarded(&self.chunks.path, || {
            match self.chunk_values_direct(rg, col, pages, rows)? {
                Some(v) => Ok(v),
                None => self.chunk_values_copied(rg, col, pages, rows),
            }
        })
    }

    /// [`ParquetShard::chunk_values`] through the library's column reader (values copied).
    pub(crate) fn chunk_values_copied(
        &self,
        rg: usize,
        col: usize,
        pages: &ChunkPages,
        rows: &[u32],
    ) -> Result<Vec<Bytes>, ParquetError> {
        let f = &self.chunks;
        let total = f.meta.row_group(rg).num_rows().max(0) as usize;
        decode_rows(
            f,
            f.column(rg, col),
            pages.file.clone(),
            total,
            pages.locations.clone(),
            rows,
        )
    }

    /// [`ParquetShard::chunk_values`] sliced out of the pages; `None` where the column is
    /// not one this reads (see [`byte_array_rows`]).
    pub(crate) fn chunk_values_direct(
        &self,
        rg: usize,
        col: usize,
        pages: &ChunkPages,
        rows: &[u32],
    ) -> Result<Option<Vec<Bytes>>, ParquetError> {
        let f = &self.chunks;
        let total = f.meta.row_group(rg).num_rows().max(0) as usize;
        byte_array_rows(
            &f.path,
            pages.file.clone(),
            f.column(rg, col),
            total,
            pages.locations.clone(),
            rows,
        )
    }

    /// The chunks file's path in the bucket.
    pub fn chunks_path(&self) -> &str {
        &self.chunks.path
    }

    async fn select_row_group(
        &self,
        bucket: &Bucket,
        rg: usize,
        matchers: &[Matcher],
        (mint, maxt): (i64, i64),
        skip_chunks: bool,
        out: &mut Vec<ParquetSeries>,
    ) -> Result<(), ParquetError> {
        let Some(kept) = self.kept_rows(bucket, rg, matchers).await? else {
            return Ok(());
        };
        // Chunk columns overlapping the range, read for the kept rows.
        let mut chunk_vals: Vec<Vec<Bytes>> = Vec::new();
        if !skip_chunks {
            for col in self.chunk_columns(mint, maxt) {
                let pages = self.fetch_chunk_pages(bucket, rg, col, &kept.rows).await?;
                chunk_vals.push(self.chunk_values(rg, col, &pages, &kept.rows)?);
            }
        }
        let mut chunks = Vec::new();
        for k in 0..kept.rows.len() {
            chunks.clear();
            for vals in &chunk_vals {
                self.row_chunks(&vals[k], kept.rows[k], mint, maxt, &mut chunks)?;
            }
            if !skip_chunks && chunks.is_empty() {
                continue;
            }
            out.push(ParquetSeries {
                labels: kept.labels(self, k),
                chunks: chunks.clone(),
            });
        }
        Ok(())
    }

    /// Appends the chunks of chunk column value `value` (of row `row`) overlapping
    /// `[mint, maxt]` to `out`.
    pub fn row_chunks(
        &self,
        value: &Bytes,
        row: u32,
        mint: i64,
        maxt: i64,
        out: &mut Vec<RawChunk>,
    ) -> Result<(), ParquetError> {
        let found = decode_chunks(value, mint, maxt).map_err(|what| ParquetError::Chunks {
            path: self.chunks.path.clone(),
            row: u64::from(row),
            what,
        })?;
        out.extend(found);
        Ok(())
    }
}

/// The pages of a chunk column fetched for some rows, and where its pages lie.
#[derive(Debug, Clone)]
pub struct ChunkPages {
    file: Arc<Ranges>,
    locations: Option<Vec<PageLocation>>,
}

/// The rows of one row group every matcher keeps, their labels not yet read.
#[derive(Debug)]
pub struct Matched {
    /// The row group.
    pub rg: usize,
    /// The kept rows, ascending.
    pub rows: Vec<u32>,
    coded: HashMap<usize, CodedColumn>,
}

/// The rows of one row group a select keeps, and what their labels are read from. Their
/// chunks are read apart ([`ParquetShard::fetch_chunk_pages`], [`ParquetShard::chunk_values`]),
/// so that a large selection can be cut into stripes read in parallel.
#[derive(Debug)]
pub struct KeptRows {
    /// The row group.
    pub rg: usize,
    /// The kept rows, ascending.
    pub rows: Vec<u32>,
    /// The label columns of every kept row, one after another.
    cols: Vec<u32>,
    /// Where each kept row's label columns end in `cols`.
    col_ends: Vec<u32>,
    /// Per column of the labels file: its codes, for the label columns read.
    coded: Vec<Option<CodedColumn>>,
}

impl KeptRows {
    /// The stored labels of kept row `k` (the `k`th of `rows`) as name and value bytes,
    /// sorted by name, into `out` (cleared first). Values are valid UTF-8: a select replaces
    /// what is not, as the labels of [`KeptRows::labels`] would.
    pub fn label_pairs<'a>(
        &'a self,
        shard: &'a ParquetShard,
        k: usize,
        out: &mut Vec<(&'a [u8], &'a [u8])>,
    ) {
        out.clear();
        let from = k.checked_sub(1).map_or(0, |p| self.col_ends[p] as usize);
        let row = self.rows[k] as usize;
        for &c in &self.cols[from..self.col_ends[k] as usize] {
            let (Some(Some(name)), Some(Some(coded))) =
                (shard.col_label.get(c as usize), self.coded.get(c as usize))
            else {
                continue;
            };
            // Columns are decoded for the kept rows alone, so the kth kept row is the kth
            // decoded one.
            let code = if coded.decoded() == self.rows.len() {
                coded.code_at(k)
            } else {
                coded.code(row)
            };
            if code == NULL || code == SKIPPED {
                continue;
            }
            out.push((name.as_bytes(), &coded.dict[code as usize]));
        }
        if !out.is_sorted_by(|a, b| a.0 <= b.0) {
            out.sort_by(|a, b| a.0.cmp(b.0));
        }
    }

    /// The stored labels of kept row `k` (the `k`th of `rows`), sorted by name.
    pub fn labels(&self, shard: &ParquetShard, k: usize) -> Labels {
        let mut pairs = Vec::new();
        self.label_pairs(shard, k, &mut pairs);
        Labels::from_sorted(
            pairs
                .into_iter()
                .map(|(n, v)| Label::from_bytes(n, v))
                .collect(),
        )
    }

    /// Replaces dictionary values that are not UTF-8 with their lossy reading, once per
    /// distinct value rather than once per row.
    fn make_utf8(&mut self) {
        for c in self.coded.iter_mut().flatten() {
            for v in &mut c.dict {
                if std::str::from_utf8(v).is_err() {
                    *v = Bytes::from(String::from_utf8_lossy(v).into_owned());
                }
            }
        }
    }
}

/// Values of byte-array column chunk `meta` of `f` at `rows` (ascending), from `file` (the
/// fetched pages; `locations` says where they are when only some were fetched).
fn decode_rows(
    f: &PFile,
    meta: &ColumnChunkMetaData,
    file: Arc<Ranges>,
    total: usize,
    locations: Option<Vec<PageLocation>>,
    rows: &[u32],
) -> Result<Vec<Bytes>, ParquetError> {
    let fmt = |e| ParquetError::format(&f.path, e);
    let pages = SerializedPageReader::new(file, meta, total, locations).map_err(fmt)?;
    let mut r = ColumnReaderImpl::<ByteArrayType>::new(meta.column_descr_ptr(), Box::new(pages));
    // Every value is copied once into one buffer, which the answers then share.
    let mut buf: Vec<u8> = Vec::new();
    let mut ends: Vec<usize> = Vec::with_capacity(rows.len());
    let mut pos = 0usize;
    let mut vals: Vec<ByteArray> = Vec::new();
    let mut i = 0;
    while i < rows.len() {
        let start = rows[i] as usize;
        let mut end = start + 1;
        while i + (end - start) < rows.len() && rows[i + (end - start)] as usize == end {
            end += 1;
        }
        if start > pos {
            let skipped = r.skip_records(start - pos).map_err(fmt)?;
            if skipped != start - pos {
                return Err(ParquetError::layout(
                    &f.path,
                    "column ends before its row group",
                ));
            }
        }
        let want = end - start;
        vals.clear();
        let mut got = 0;
        while got < want {
            let (n, _, _) = r
                .read_records(want - got, None, None, &mut vals)
                .map_err(fmt)?;
            if n == 0 {
                return Err(ParquetError::layout(
                    &f.path,
                    "column ends before its row group",
                ));
            }
            got += n;
        }
        for v in vals.drain(..) {
            buf.extend_from_slice(v.data());
            ends.push(buf.len());
        }
        pos = end;
        i += want;
    }
    let buf = Bytes::from(buf);
    let mut start = 0;
    Ok(ends
        .into_iter()
        .map(|end| {
            let v = buf.slice(start..end);
            start = end;
            v
        })
        .collect())
}

/// Whether matcher `m` accepts a value given as bytes (invalid UTF-8 is compared lossily).
fn matches_bytes(m: &Matcher, v: &[u8]) -> bool {
    match std::str::from_utf8(v) {
        Ok(s) => m.matches(s),
        Err(_) => m.matches(&String::from_utf8_lossy(v)),
    }
}

/// Whether `ranges` is the one range of every row.
fn covers_all(ranges: &[Range<usize>], rows: usize) -> bool {
    matches!(ranges, [r] if r.start == 0 && r.end == rows)
}

/// Ascending rows as ranges of consecutive rows.
fn row_spans(rows: &[u32]) -> Vec<Range<usize>> {
    let mut out: Vec<Range<usize>> = Vec::new();
    for &r in rows {
        let r = r as usize;
        match out.last_mut() {
            Some(last) if last.end == r => last.end = r + 1,
            _ => out.push(r..r + 1),
        }
    }
    out
}

/// The intersection of two sets of ascending, disjoint ranges.
fn intersect(a: &[Range<usize>], b: &[Range<usize>]) -> Vec<Range<usize>> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() && j < b.len() {
        let lo = a[i].start.max(b[j].start);
        let hi = a[i].end.min(b[j].end);
        if lo < hi {
            out.push(lo..hi);
        }
        if a[i].end < b[j].end {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// The byte ranges of the pages of a column chunk that hold rows of `wanted` (ascending,
/// disjoint ranges).
fn pages_for_ranges(
    locs: &[PageLocation],
    wanted: &[Range<usize>],
    total: usize,
) -> Vec<Range<u64>> {
    let mut out = Vec::new();
    for (p, loc) in locs.iter().enumerate() {
        let first = loc.first_row_index.max(0) as usize;
        let end = locs
            .get(p + 1)
            .map_or(total, |n| n.first_row_index.max(0) as usize);
        if wanted.iter().any(|w| w.start < end && first < w.end) {
            let start = loc.offset.max(0) as u64;
            out.push(start..start + loc.compressed_page_size.max(0) as u64);
        }
    }
    out
}

/// The byte ranges of the pages of a column chunk that hold any of `rows` (ascending).
fn pages_for_rows(locs: &[PageLocation], rows: &[u32], total: usize) -> Vec<Range<u64>> {
    let mut out = Vec::new();
    let mut i = 0;
    for (p, loc) in locs.iter().enumerate() {
        let first = loc.first_row_index.max(0) as usize;
        let end = locs
            .get(p + 1)
            .map_or(total, |n| n.first_row_index.max(0) as usize);
        while i < rows.len() && (rows[i] as usize) < first {
            i += 1;
        }
        if i < rows.len() && (rows[i] as usize) < end {
            let start = loc.offset.max(0) as u64;
            out.push(start..start + loc.compressed_page_size.max(0) as u64);
        }
    }
    out
}

/// Sorted, distinct label names over the series matching `matchers` in a shard.
pub async fn label_names_matching(
    shard: &ParquetShard,
    bucket: &Bucket,
    matchers: &[Matcher],
) -> Result<Vec<String>, ParquetError> {
    if matchers.is_empty() {
        return Ok(shard.label_names().map(str::to_string).collect());
    }
    let series = shard
        .select(bucket, matchers, shard.min_time, shard.max_time, true)
        .await?;
    let mut names: Vec<String> = series
        .iter()
        .flat_map(|s| s.labels.iter().map(|l| l.name.to_string()))
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}
