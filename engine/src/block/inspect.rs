//! A block's vital statistics, measured from its files (not copied from meta.json): series,
//! samples, chunks, bytes per sample and label cardinality.

use super::reader::Block;
use crate::chunk::Encoding;
use crate::error::Result;
use crate::index::ChunkMeta;

/// Cardinality of one label name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelCardinality {
    /// The label name.
    pub name: String,
    /// Distinct values of the name.
    pub values: usize,
    /// Series that carry the name.
    pub series: usize,
}

/// What [`inspect`] measured.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockReport {
    /// Series in the index.
    pub series: u64,
    /// Chunks referenced by the index.
    pub chunks: u64,
    /// Samples in those chunks (from each chunk's sample count), of every kind.
    pub samples: u64,
    /// Chunks holding native histograms (encodings 2 and 3).
    pub histogram_chunks: u64,
    /// Native histogram samples among `samples`.
    pub histogram_samples: u64,
    /// Payload bytes of those chunks.
    pub chunk_bytes: u64,
    /// Size of the index file, bytes.
    pub index_bytes: u64,
    /// Size of all chunk segment files, bytes.
    pub segment_bytes: u64,
    /// Earliest chunk start, ms.
    pub min_time: i64,
    /// Latest chunk end, ms (inclusive).
    pub max_time: i64,
    /// Every label name with its cardinality, most values first.
    pub labels: Vec<LabelCardinality>,
}

impl BlockReport {
    /// Chunk payload bytes per sample.
    pub fn bytes_per_sample(&self) -> f64 {
        if self.samples == 0 {
            0.0
        } else {
            self.chunk_bytes as f64 / self.samples as f64
        }
    }
}

/// Walks every series and chunk header of `block`.
pub fn inspect(block: &Block) -> Result<BlockReport> {
    let ix = block.index();
    let mut refs = Vec::new();
    ix.all_postings(&mut refs)?;
    let mut labels = Vec::new();
    let mut metas: Vec<ChunkMeta> = Vec::new();
    let mut r = BlockReport {
        series: refs.len() as u64,
        chunks: 0,
        samples: 0,
        histogram_chunks: 0,
        histogram_samples: 0,
        chunk_bytes: 0,
        index_bytes: std::fs::metadata(block.dir().join("index")).map_or(0, |m| m.len()),
        segment_bytes: block.chunks().total_bytes(),
        min_time: i64::MAX,
        max_time: i64::MIN,
        labels: Vec::new(),
    };
    for &s in &refs {
        labels.clear();
        block.series(s, &mut labels, &mut metas)?;
        for c in &metas {
            let (enc, data) = block.chunks().chunk(c.chunk_ref)?;
            let n = data
                .get(..2)
                .map_or(0, |b| u16::from_be_bytes([b[0], b[1]])) as u64;
            r.chunks += 1;
            r.chunk_bytes += data.len() as u64;
            r.samples += n;
            if enc == Encoding::Histogram as u8 || enc == Encoding::FloatHistogram as u8 {
                r.histogram_chunks += 1;
                r.histogram_samples += n;
            }
            r.min_time = r.min_time.min(c.min_time);
            r.max_time = r.max_time.max(c.max_time);
        }
    }
    let mut postings = Vec::new();
    for name in ix.label_names() {
        let values = ix.label_values(&name)?;
        let mut series = 0;
        for v in &values {
            ix.postings(&name, v, &mut postings)?;
            series += postings.len();
        }
        r.labels.push(LabelCardinality {
            name,
            values: values.len(),
            series,
        });
    }
    r.labels
        .sort_by(|a, b| b.values.cmp(&a.values).then_with(|| a.name.cmp(&b.name)));
    Ok(r)
}
