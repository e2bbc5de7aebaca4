//! The Series call's types and the chunk merge and re-cut rules. Block selection is in
//! `select.rs`; the answer itself is streamed (`stream.rs`); [`BucketStore::series`] collects
//! the stream for callers that want it whole.

use bytes::Bytes;

use super::block::{BucketBlock, RawChunk};
use super::{BucketStore, StoreError};
use crate::chunk::xor::xor_num_samples;
use crate::chunk::{AggrType, Encoding, SampleBatch, decode_xor_into, encode_xor};
use crate::labels::{Labels, Matcher};
use crate::query::merge_samples;

/// Samples per chunk on the wire, as Thanos and Prometheus cut them.
pub const MAX_SAMPLES_PER_CHUNK: usize = 120;

/// Vertical sharding of a request (`thanos.ShardInfo`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardInfo {
    /// This shard, `0..total`.
    pub index: u64,
    /// Number of shards; below 1 means no sharding.
    pub total: u64,
    /// Hash the labels named in `labels` (true) or all labels but those (false).
    pub by: bool,
    /// Sharding labels.
    pub labels: Vec<String>,
}

impl ShardInfo {
    /// Whether a series with `labels` belongs to this shard: xxhash64 of `name 0xFF value 0xFF`
    /// over the selected labels, modulo `total`.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matches_except(labels, &[])
    }

    /// [`ShardInfo::matches`] for `labels` without the labels named in `except` (the replica
    /// labels a store takes off before it hashes, as it sends the series without them).
    pub fn matches_except(&self, labels: &Labels, except: &[String]) -> bool {
        if self.total < 1 {
            return true;
        }
        let mut buf = Vec::with_capacity(256);
        for l in labels.iter() {
            if except.iter().any(|n| *n == l.name) {
                continue;
            }
            let named = self.labels.iter().any(|n| *n == l.name);
            if named != self.by {
                continue;
            }
            buf.extend_from_slice(l.name.as_bytes());
            buf.push(0xFF);
            buf.extend_from_slice(l.value.as_bytes());
            buf.push(0xFF);
        }
        xxhash_rust::xxh64::xxh64(&buf, 0) % self.total == self.index
    }

    /// [`ShardInfo::matches`] for a series given as its `(name, value)` pairs, sorted;
    /// `buf` is scratch space.
    pub fn matches_pairs<'a>(
        &self,
        labels: impl Iterator<Item = (&'a [u8], &'a [u8])>,
        buf: &mut Vec<u8>,
    ) -> bool {
        if self.total < 1 {
            return true;
        }
        buf.clear();
        for (n, v) in labels {
            let named = self.labels.iter().any(|l| l.as_bytes() == n);
            if named != self.by {
                continue;
            }
            buf.extend_from_slice(n);
            buf.push(0xFF);
            buf.extend_from_slice(v);
            buf.push(0xFF);
        }
        xxhash_rust::xxh64::xxh64(buf, 0) % self.total == self.index
    }
}

/// A Series request in engine terms.
#[derive(Debug, Clone, Default)]
pub struct SeriesQuery {
    /// Start, ms inclusive.
    pub min_time: i64,
    /// End, ms inclusive.
    pub max_time: i64,
    /// All must match; matchers on external labels are checked against the block's.
    pub matchers: Vec<Matcher>,
    /// Return label sets only.
    pub skip_chunks: bool,
    /// Label names removed from every returned series.
    pub without_replica_labels: Vec<String>,
    /// Vertical sharding, when asked.
    pub shard: Option<ShardInfo>,
    /// At most this many series (0 = all).
    pub limit: u64,
    /// Fail the call on a block error instead of returning a warning.
    pub abort_on_error: bool,
    /// Coarsest downsampling resolution accepted, ms; 0 = raw blocks only.
    pub max_resolution_window: i64,
    /// Aggregates to serve from downsampled chunks (raw chunks are served whole).
    pub aggregates: Vec<AggrType>,
    /// Read the blocks of every resolution in range instead of choosing one (label queries).
    pub every_resolution: bool,
    /// With `skip_chunks`: serve every matching series of the blocks overlapping the range,
    /// whether or not a chunk of it does (Prometheus's label APIs work at block granularity;
    /// Thanos's store, and Series, at chunk granularity).
    pub whole_blocks: bool,
}

/// One series of the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreSeries {
    /// Labels with external labels attached, sorted.
    pub labels: Labels,
    /// Chunks sorted by min time, each of at most 120 samples; empty with `skip_chunks`.
    pub chunks: Vec<RawChunk>,
}

/// The answer to a Series request.
#[derive(Debug, Clone, Default)]
pub struct SeriesResult {
    /// Series sorted by labels.
    pub series: Vec<StoreSeries>,
    /// Problems with single blocks (partial response).
    pub warnings: Vec<String>,
    /// ULIDs of the blocks queried.
    pub queried_blocks: Vec<String>,
}

impl BucketStore {
    /// Answers a Series request whole: the stream of [`BucketStore::series_stream`] collected.
    pub async fn series(&self, q: &SeriesQuery) -> Result<SeriesResult, StoreError> {
        let mut stream = self.series_stream(q).await?;
        let mut out = SeriesResult::default();
        while let Some(b) = stream.next_batch().await? {
            out.series.extend(b.all_series());
        }
        out.warnings = std::mem::take(&mut stream.warnings);
        out.queried_blocks = std::mem::take(&mut stream.queried_blocks);
        Ok(out)
    }
}

/// The block's matchers after checking those on external labels: `None` when an external
/// label rules the block out.
pub(super) fn block_matchers(b: &BucketBlock, matchers: &[Matcher]) -> Option<Vec<Matcher>> {
    crate::labels::external_matchers(&b.ext_labels, matchers)
}

/// Sorts a series' chunks from several blocks by time and re-cuts them to at most 120 samples;
/// chunks that overlap in time are decoded, merged (later block wins on equal timestamps) and
/// re-encoded. Non-XOR chunks are passed through unchanged.
pub fn merge_chunks(mut chunks: Vec<RawChunk>) -> Result<Vec<RawChunk>, crate::chunk::ChunkError> {
    chunks.sort_by_key(|c| (c.min_time, c.max_time));
    let overlapping = chunks.windows(2).any(|w| w[1].min_time <= w[0].max_time);
    let xor = Encoding::Xor as u8;
    if overlapping && chunks.iter().all(|c| c.encoding == xor) {
        let mut parts = Vec::with_capacity(chunks.len());
        for c in &chunks {
            let mut b = SampleBatch::new();
            decode_xor_into(&c.data, &mut b)?;
            parts.push(b);
        }
        let all = merge_samples(&parts.iter().collect::<Vec<_>>());
        return Ok(encode_batch(&all));
    }
    let mut out = Vec::with_capacity(chunks.len());
    for c in chunks {
        out.extend(recut_chunks(c)?);
    }
    Ok(out)
}

/// Splits an XOR chunk of more than 120 samples into chunks of at most 120.
pub fn recut_chunks(c: RawChunk) -> Result<Vec<RawChunk>, crate::chunk::ChunkError> {
    if c.encoding != Encoding::Xor as u8 || xor_num_samples(&c.data)? <= MAX_SAMPLES_PER_CHUNK {
        return Ok(vec![c]);
    }
    let mut b = SampleBatch::new();
    decode_xor_into(&c.data, &mut b)?;
    Ok(encode_batch(&b))
}

/// Samples as XOR chunks of at most 120 samples each, as a store serves them.
pub fn encode_batch(b: &SampleBatch) -> Vec<RawChunk> {
    b.ts.chunks(MAX_SAMPLES_PER_CHUNK)
        .zip(b.val.chunks(MAX_SAMPLES_PER_CHUNK))
        .map(|(ts, val)| RawChunk {
            min_time: ts[0],
            max_time: ts[ts.len() - 1],
            encoding: Encoding::Xor as u8,
            data: Bytes::from(encode_xor(ts, val)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(ts: &[i64]) -> RawChunk {
        let val: Vec<f64> = ts.iter().map(|&t| t as f64).collect();
        RawChunk {
            min_time: ts[0],
            max_time: *ts.last().unwrap(),
            encoding: 1,
            data: Bytes::from(encode_xor(ts, &val)),
        }
    }

    fn decode(chunks: &[RawChunk]) -> Vec<i64> {
        let mut b = SampleBatch::new();
        for c in chunks {
            assert!(xor_num_samples(&c.data).unwrap() <= 120);
            decode_xor_into(&c.data, &mut b).unwrap();
        }
        b.ts
    }

    #[test]
    fn long_chunks_are_recut_and_overlaps_merged() {
        let ts: Vec<i64> = (0..300).collect();
        let out = recut_chunks(chunk(&ts)).unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!((out[2].min_time, out[2].max_time), (240, 299));
        assert_eq!(decode(&out), ts);

        let a: Vec<i64> = (0..100).map(|i| i * 2).collect();
        let b: Vec<i64> = (50..150).collect();
        let out = merge_chunks(vec![chunk(&b), chunk(&a)]).unwrap();
        let mut want: Vec<i64> = a.iter().chain(&b).copied().collect();
        want.sort();
        want.dedup();
        assert_eq!(decode(&out), want);

        let out = merge_chunks(vec![chunk(&[10, 11]), chunk(&[1, 2])]).unwrap();
        assert_eq!(decode(&out), vec![1, 2, 10, 11]);
    }

    #[test]
    fn shard_rule_hashes_selected_labels() {
        let l = Labels::from_pairs([("__name__", "up"), ("job", "a"), ("i", "1")]);
        let by = |labels: &[&str], total| {
            (0..total)
                .filter(|&i| {
                    ShardInfo {
                        index: i,
                        total,
                        by: true,
                        labels: labels.iter().map(|s| s.to_string()).collect(),
                    }
                    .matches(&l)
                })
                .count()
        };
        // Exactly one shard takes each series.
        assert_eq!(by(&["job"], 5), 1);
        let h = xxhash_rust::xxh64::xxh64(b"job\xffa\xff", 0);
        let s = ShardInfo {
            index: h % 7,
            total: 7,
            by: true,
            labels: vec!["job".into()],
        };
        assert!(s.matches(&l));
        let without = ShardInfo {
            index: xxhash_rust::xxh64::xxh64(b"__name__\xffup\xffi\xff1\xff", 0) % 3,
            total: 3,
            by: false,
            labels: vec!["job".into()],
        };
        assert!(without.matches(&l));
    }

    /// Labels left out (replica labels a store takes off) do not count in the hash.
    #[test]
    fn shard_rule_skips_excepted_labels() {
        let with_replica = Labels::from_pairs([("__name__", "up"), ("i", "1"), ("replica", "a")]);
        let without_replica = Labels::from_pairs([("__name__", "up"), ("i", "1")]);
        for index in 0..4 {
            let s = ShardInfo {
                index,
                total: 4,
                by: false,
                labels: vec!["job".into()],
            };
            assert_eq!(
                s.matches_except(&with_replica, &["replica".into()]),
                s.matches(&without_replica)
            );
        }
    }

    /// The shard of a series is Thanos's (`storepb.ShardMatcher`): the hashes below are what
    /// Go's `xxhash.Sum64` (github.com/cespare/xxhash/v2, which Thanos v0.42.4 uses) gives for
    /// the same bytes, taken from a Go program run once.
    #[test]
    fn shard_hash_is_thanos_xxhash() {
        let shard_of = |labels: &[(&str, &str)], by: bool, names: &[&str], total: u64| {
            let l = Labels::from_pairs(labels.iter().copied());
            let hit: Vec<u64> = (0..total)
                .filter(|&index| {
                    ShardInfo {
                        index,
                        total,
                        by,
                        labels: names.iter().map(|s| s.to_string()).collect(),
                    }
                    .matches(&l)
                })
                .collect();
            assert_eq!(hit.len(), 1, "{l} is in shards {hit:?}");
            hit[0]
        };
        let node = [
            ("__name__", "node_cpu_seconds_total"),
            ("cluster", "eu1"),
            ("cpu", "0"),
            ("instance", "host-0000:9100"),
            ("job", "node"),
            ("mode", "idle"),
        ];
        // xxhash("__name__\xffnode_cpu_seconds_total\xffcluster\xffeu1\xff…mode\xffidle\xff")
        // = 7578877821676903877.
        assert_eq!(shard_of(&node, false, &[], 4), 7578877821676903877 % 4);
        assert_eq!(shard_of(&node, false, &[], 2), 1);
        // xxhash("job\xffa\xff") = 5958410927473998470: 2 of 4.
        assert_eq!(shard_of(&[("job", "a"), ("x", "1")], true, &["job"], 4), 2);
        // `without (job)`: xxhash("__name__\xffup\xffi\xff1\xff") = 8065608936763472527.
        let up = [("__name__", "up"), ("i", "1"), ("job", "a")];
        assert_eq!(shard_of(&up, false, &["job"], 4), 3);
        // Nothing hashed (`by` a label the series lacks): xxhash("") = 17241709254077376921.
        assert_eq!(shard_of(&up, true, &["zone"], 4), 17241709254077376921 % 4);
    }
}
