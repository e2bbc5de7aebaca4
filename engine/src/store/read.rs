//! The producers of a streamed Series answer: an engine core reading its stripes of a block's
//! selection batch by batch (series entries, symbol pages, chunks, all by coalesced reads)
//! and writing each batch in the answer's form ([`StreamBatch`]).

use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use bytes::Bytes;

use super::block::{BucketBlock, RawChunk};
use super::core::StoreCore;
use super::entry::decode_entry;
use super::form::{ReadBatch, ReadChunk, Served, StreamBatch};
use super::postings::PackedRefs;
use super::select::served_chunk;
use super::series::{MAX_SAMPLES_PER_CHUNK, SeriesQuery, merge_chunks, recut_chunks};
use super::symbols::SymbolPages;
use super::{Limits, StoreError};
use crate::chunk::Encoding;
use crate::chunk::xor::xor_num_samples;
use crate::index::ChunkMeta;
use crate::labels::Labels;
use crate::shard::Core;

/// Most series in one batch.
pub(super) const BATCH_SERIES: usize = 1024;

/// What one request has used so far, checked against [`Limits`].
#[derive(Debug, Default)]
pub(super) struct Usage {
    series: AtomicU64,
    samples: AtomicU64,
    bytes: AtomicU64,
}

impl Usage {
    fn add(counter: &AtomicU64, n: u64, max: u64, limit: &'static str) -> Result<(), StoreError> {
        if n == 0 {
            return Ok(());
        }
        let value = counter.fetch_add(n, Relaxed) + n;
        if max > 0 && value > max {
            return Err(StoreError::LimitExceeded { limit, value, max });
        }
        Ok(())
    }
}

/// The request as every producer sees it.
#[derive(Debug)]
pub(super) struct Prepared<B: StreamBatch> {
    pub(super) q: SeriesQuery,
    pub(super) limits: Limits,
    pub(super) usage: Usage,
    pub(super) batch_bytes: usize,
    /// Bytes of symbol pages a producer keeps between its batches.
    pub(super) symbol_bytes: usize,
    /// The form of the answer's batches.
    pub(super) form: B::Form,
}

/// A batch of a stripe, and whether it is the stripe's last.
pub(super) type PartResult<B> = Result<(B, bool), StoreError>;

/// What one core reads of a block: every `step`-th stripe from `first`.
pub(super) struct Part {
    pub(super) block: Arc<BucketBlock>,
    pub(super) refs: Arc<PackedRefs>,
    pub(super) stripe: usize,
    pub(super) first: usize,
    pub(super) step: usize,
    pub(super) cache_entries: bool,
    pub(super) cache_chunks: bool,
    pub(super) reorder: bool,
}

/// Reusable buffers of one producer.
struct Scratch<W> {
    refs: Vec<u32>,
    labels: Vec<(u32, u32)>,
    /// Per entry: end of its labels in `labels`, end of its chunks in `metas`.
    spans: Vec<(u32, u32)>,
    metas: Vec<ChunkMeta>,
    /// Symbol references to look up for the batch.
    fresh: Vec<u32>,
    /// Labels of the served series, one after another.
    served: Vec<Served>,
    /// Per served series: end of its labels in `served`, its entry's chunks in `metas`.
    series: Vec<(u32, u32, u32)>,
    /// The label ends of `series`.
    ends: Vec<u32>,
    /// Chunks of the served series, one after another, and where each series' end.
    chunks: Vec<ReadChunk>,
    chunk_ends: Vec<u32>,
    shard: Vec<u8>,
    /// Bytes the last batch wrote, to size the next.
    bytes_hint: usize,
    writer: W,
}

impl<W: Default> Default for Scratch<W> {
    fn default() -> Self {
        Scratch {
            refs: Vec::new(),
            labels: Vec::new(),
            spans: Vec::new(),
            metas: Vec::new(),
            fresh: Vec::new(),
            served: Vec::new(),
            series: Vec::new(),
            ends: Vec::new(),
            chunks: Vec::new(),
            chunk_ends: Vec::new(),
            shard: Vec::new(),
            bytes_hint: 0,
            writer: W::default(),
        }
    }
}

/// Reads this part's stripes of a block on this core and sends them in batches; stops early
/// when the reader goes away.
pub(super) async fn produce<B: StreamBatch>(
    core: Rc<Core<StoreCore>>,
    part: Part,
    p: Arc<Prepared<B>>,
    tx: flume::Sender<PartResult<B>>,
) {
    let b = &part.block;
    let mut syms = SymbolPages::new(b.header.num_pages(), p.symbol_bytes);
    let mut sc: Scratch<B::Writer> = Scratch::default();
    let n = part.refs.len();
    let stripes = n.div_ceil(part.stripe);
    // Series per batch, adapted to what the last batch weighed so a batch stays near the byte
    // target whatever the series' chunk counts.
    let mut per_batch = part.stripe;
    let mut k = part.first;
    while k < stripes {
        let mut refs = std::mem::take(&mut sc.refs);
        refs.clear();
        part.refs
            .decode_range(k * part.stripe..(k + 1) * part.stripe, &mut refs);
        let mut start = 0;
        loop {
            let step = per_batch.min(refs.len() - start);
            let res = read_batch(
                &core,
                &part,
                &p,
                &refs[start..start + step],
                &mut syms,
                &mut sc,
            )
            .await;
            start += step;
            let end = start >= refs.len();
            let batch = match res {
                Ok(batch) => {
                    let batch = if part.reorder && !batch.is_sorted() {
                        batch.sorted()
                    } else {
                        batch
                    };
                    let per_series = batch.bytes() / step.max(1) + 1;
                    per_batch = (p.batch_bytes / per_series).clamp(16, BATCH_SERIES);
                    batch
                }
                Err(e) => {
                    let _ = tx.send_async(Err(e)).await;
                    return;
                }
            };
            if (end || !batch.is_empty()) && tx.send_async(Ok((batch, end))).await.is_err() {
                return;
            }
            if end {
                break;
            }
        }
        sc.refs = refs;
        k += part.step;
    }
}

/// Reads the series entries of `refs` and their chunks into a batch of served series.
async fn read_batch<B: StreamBatch>(
    core: &Core<StoreCore>,
    part: &Part,
    p: &Prepared<B>,
    refs: &[u32],
    syms: &mut SymbolPages,
    sc: &mut Scratch<B::Writer>,
) -> Result<B, StoreError> {
    let q = &p.q;
    let b = &part.block;
    let entries = b.series_entries(core, refs, part.cache_entries).await?;
    let path = b.index_path();
    let num_symbols = b.header.num_symbols();
    sc.labels.clear();
    sc.spans.clear();
    sc.metas.clear();
    let window = if q.whole_blocks && q.skip_chunks {
        (i64::MIN, i64::MAX)
    } else {
        (q.min_time, q.max_time)
    };
    // The symbols of the labels an entry does not share with the one before (sorted series
    // mostly repeat those) are the ones to look up.
    sc.fresh.clear();
    let mut prev = 0..0;
    for (i, &r) in refs.iter().enumerate() {
        let start = sc.labels.len();
        decode_entry(
            entries.get(i),
            u64::from(r) * 16,
            num_symbols,
            window,
            &path,
            &mut sc.labels,
            &mut sc.metas,
        )?;
        let end = sc.labels.len();
        let shared = sc.labels[start..end]
            .iter()
            .zip(&sc.labels[prev.clone()])
            .take_while(|(a, b)| a == b)
            .count();
        for &(n, v) in &sc.labels[start + shared..end] {
            sc.fresh.extend_from_slice(&[n, v]);
        }
        prev = start..end;
        sc.spans.push((end as u32, sc.metas.len() as u32));
    }
    drop(entries);
    syms.load(core, b, sc.fresh.iter().copied()).await?;

    // The series served: those with chunks in the window, in this shard, labels as served.
    sc.served.clear();
    sc.series.clear();
    let ext = &b.ext_labels;
    let (mut l0, mut c0) = (0u32, 0u32);
    let mut samples = 0u64;
    for &(l1, c1) in &sc.spans {
        let (labels, chunks) = (l0 as usize..l1 as usize, c0..c1);
        (l0, c0) = (l1, c1);
        if chunks.is_empty() {
            continue;
        }
        let from = sc.served.len();
        served_labels(
            &sc.labels[labels],
            syms,
            ext,
            &q.without_replica_labels,
            &mut sc.served,
        );
        if let Some(s) = &q.shard {
            let read = ReadBatch {
                syms,
                ext,
                bufs: &[],
                served: &[],
                ends: &[],
            };
            let pairs = sc.served[from..].iter().map(|&l| read.label(l));
            if !s.matches_pairs(pairs, &mut sc.shard) {
                sc.served.truncate(from);
                continue;
            }
        }
        samples += u64::from(chunks.end - chunks.start) * MAX_SAMPLES_PER_CHUNK as u64;
        sc.series
            .push((sc.served.len() as u32, chunks.start, chunks.end));
    }
    Usage::add(
        &p.usage.series,
        sc.series.len() as u64,
        p.limits.series,
        "series",
    )?;
    Usage::add(&p.usage.samples, samples, p.limits.samples, "samples")?;

    // The chunks of the served series, in series order (and so in file order).
    sc.chunks.clear();
    sc.chunk_ends.clear();
    let mut bufs: Vec<Bytes> = Vec::new();
    if !q.skip_chunks && !sc.series.is_empty() {
        let mut wanted: Vec<ChunkMeta> = Vec::new();
        let all_served = sc.series.len() == sc.spans.len();
        if all_served {
            std::mem::swap(&mut wanted, &mut sc.metas);
        } else {
            for &(_, a, z) in &sc.series {
                wanted.extend_from_slice(&sc.metas[a as usize..z as usize]);
            }
        }
        let data = b.chunks(core, &wanted, part.cache_chunks).await?;
        let bytes: u64 = data.at.iter().map(|c| u64::from(c.2)).sum();
        Usage::add(&p.usage.bytes, bytes, p.limits.bytes, "bytes")?;
        bufs = data.bufs;
        let mut at = 0usize;
        let mut l0 = 0usize;
        for &(l1, a, z) in &sc.series {
            let served = &sc.served[l0..l1 as usize];
            l0 = l1 as usize;
            let n = (z - a) as usize;
            let metas = &wanted[at..at + n];
            let got = &data.at[at..at + n];
            at += n;
            let sorted = metas.windows(2).all(|w| w[0].max_time < w[1].min_time);
            let long = got.iter().any(|&(buf, s, len, enc)| {
                let data = &bufs[buf as usize][s as usize..(s + len) as usize];
                enc == Encoding::Xor as u8
                    && xor_num_samples(data).is_ok_and(|n| n > MAX_SAMPLES_PER_CHUNK)
            });
            let aggr = got.iter().any(|g| g.3 == Encoding::Aggr as u8);
            if sorted && !long && !aggr {
                for (m, &(buf, start, len, encoding)) in metas.iter().zip(got) {
                    sc.chunks.push(ReadChunk {
                        min_time: m.min_time,
                        max_time: m.max_time,
                        encoding,
                        buf,
                        start,
                        len,
                    });
                }
                sc.chunk_ends.push(sc.chunks.len() as u32);
                continue;
            }
            // Rare: chunks longer than 120 samples, or overlapping ones, are re-cut;
            // downsampled chunks keep only the aggregates asked for.
            let read = ReadBatch {
                syms,
                ext,
                bufs: &bufs,
                served: &[],
                ends: &[],
            };
            let series_err = || read.labels_text(served);
            let mut own: Vec<RawChunk> = Vec::with_capacity(n);
            for (m, &(buf, s, len, enc)) in metas.iter().zip(got) {
                let c = RawChunk {
                    min_time: m.min_time,
                    max_time: m.max_time,
                    encoding: enc,
                    data: bufs[buf as usize].slice(s as usize..(s + len) as usize),
                };
                own.push(served_chunk(c, &q.aggregates).map_err(|source| {
                    StoreError::Aggregate {
                        block: b.id().to_string(),
                        series: series_err(),
                        source,
                    }
                })?);
            }
            let chunk_err = |source| StoreError::Chunk {
                block: b.id().to_string(),
                series: series_err(),
                source,
            };
            let fixed = if sorted {
                let mut v = Vec::new();
                for c in own {
                    v.extend(recut_chunks(c).map_err(chunk_err)?);
                }
                v
            } else {
                merge_chunks(own).map_err(chunk_err)?
            };
            for c in fixed {
                let len = c.data.len() as u32;
                bufs.push(c.data);
                sc.chunks.push(ReadChunk {
                    min_time: c.min_time,
                    max_time: c.max_time,
                    encoding: c.encoding,
                    buf: bufs.len() as u32 - 1,
                    start: 0,
                    len,
                });
            }
            sc.chunk_ends.push(sc.chunks.len() as u32);
        }
        if all_served {
            std::mem::swap(&mut wanted, &mut sc.metas);
        }
    } else {
        sc.chunk_ends.resize(sc.series.len(), 0);
    }

    sc.ends.clear();
    sc.ends.extend(sc.series.iter().map(|s| s.0));
    let read = ReadBatch {
        syms,
        ext,
        bufs: &bufs,
        served: &sc.served,
        ends: &sc.ends,
    };
    let mut batch = B::empty(&p.form);
    batch.start_read(&mut sc.writer, &read, sc.bytes_hint);
    let (mut l0, mut c0) = (0usize, 0usize);
    for (&(l1, _, _), &c1) in sc.series.iter().zip(&sc.chunk_ends) {
        let (l1, c1) = (l1 as usize, c1 as usize);
        batch.push_read(
            &mut sc.writer,
            &read,
            &sc.served[l0..l1],
            &sc.chunks[c0..c1],
        );
        (l0, c0) = (l1, c1);
    }
    sc.bytes_hint = batch.bytes() + batch.bytes() / 8;
    Ok(batch)
}

/// Appends a block series' labels as served, by symbol reference: external labels attached
/// (their values win), replica labels removed, sorted by name.
fn served_labels(
    refs: &[(u32, u32)],
    syms: &SymbolPages,
    ext: &Labels,
    without: &[String],
    out: &mut Vec<Served>,
) {
    let ext = ext.as_slice();
    if ext.is_empty() && without.is_empty() {
        out.extend(refs.iter().map(|&(name, value)| Served { name, value }));
        return;
    }
    let skip = |n: &[u8]| without.iter().any(|w| w.as_bytes() == n);
    let mut e = 0;
    let push_ext = |out: &mut Vec<Served>, e: usize| {
        if !skip(ext[e].name.as_bytes()) {
            out.push(Served {
                name: Served::EXT,
                value: e as u32,
            });
        }
    };
    for &(nr, vr) in refs {
        let name = syms.get(nr);
        while e < ext.len() && ext[e].name.as_bytes() < name {
            push_ext(out, e);
            e += 1;
        }
        if e < ext.len() && ext[e].name.as_bytes() == name {
            continue; // the external label's value wins, added in the loop above next time
        }
        if skip(name) {
            continue;
        }
        out.push(Served {
            name: nr,
            value: vr,
        });
    }
    while e < ext.len() {
        push_ext(out, e);
        e += 1;
    }
}
