//! One core's part of a tenant's head: the series whose label hash routes them to this core,
//! found by hash and by postings, appended to and read only on this core's thread.

use std::collections::HashSet;
use std::ops::Range;

use hashbrown::HashTable;

use super::exemplars::Exemplar;
use super::histograms::HistogramValue;
use super::labels::SeriesLabels;
use super::postings::{Postings, ValueSource};
use super::refs::RefMap;
use super::series::{AppendBounds, Appended, MemSeries};
use super::slab::Slab;
use super::stream::{HeadRead, ReadSeries};
use crate::block::cut::{CutChunk, CutOptions};
use crate::block::histogram_cut::CutHistogramChunk;
use crate::chunk::{HistogramBatch, SampleBatch, is_stale_nan};
use crate::labels::{Labels, MatchType, Matcher};
use crate::query::Series;
use crate::wal::record::RefSample;

/// Series and samples bound for one core, copied out of a request so the request buffer can
/// be freed (or reused) at once: every series' labels packed as the head keeps them
/// ([`SeriesLabels`]) in one buffer, no allocation per series.
#[derive(Debug, Default, Clone)]
pub struct AppendBatch {
    packed: Vec<u8>,
    series: Vec<BatchSeries>,
    samples: Vec<(i64, f64)>,
    histograms: Vec<(i64, HistogramValue)>,
    exemplars: Vec<Exemplar>,
}

#[derive(Debug, Clone)]
struct BatchSeries {
    hash: u64,
    labels: Range<u32>,
    samples: Range<u32>,
    histograms: Range<u32>,
    exemplars: Range<u32>,
}

/// A histogram sample the head stored, for the WAL: series ref, timestamp (ms), histogram.
pub(crate) type StoredHistogram = (u64, i64, HistogramValue);

impl AppendBatch {
    /// An empty batch.
    pub fn new() -> Self {
        AppendBatch::default()
    }

    /// Adds a series (labels sorted by name, validated by the caller; `hash` from
    /// [`crate::labels::hash_pairs`]) with its samples (ms, value).
    pub fn push_series<'a>(
        &mut self,
        hash: u64,
        labels: impl IntoIterator<Item = (&'a str, &'a str)>,
        samples: impl IntoIterator<Item = (i64, f64)>,
    ) {
        self.push_series_with_histograms(hash, labels, samples, []);
    }

    /// Adds a series as [`AppendBatch::push_series`] does, with its native histogram samples
    /// (ms, histogram) too. The floats are appended first, then the histograms, as
    /// Prometheus's receiver appends a series of a request.
    pub fn push_series_with_histograms<'a>(
        &mut self,
        hash: u64,
        labels: impl IntoIterator<Item = (&'a str, &'a str)>,
        samples: impl IntoIterator<Item = (i64, f64)>,
        histograms: impl IntoIterator<Item = (i64, HistogramValue)>,
    ) {
        let l0 = self.packed.len() as u32;
        SeriesLabels::pack_into(&mut self.packed, labels);
        let s0 = self.samples.len() as u32;
        self.samples.extend(samples);
        let h0 = self.histograms.len() as u32;
        self.histograms.extend(histograms);
        self.series.push(BatchSeries {
            hash,
            labels: l0..self.packed.len() as u32,
            samples: s0..self.samples.len() as u32,
            histograms: h0..self.histograms.len() as u32,
            exemplars: self.exemplars.len() as u32..self.exemplars.len() as u32,
        });
    }

    /// Adds exemplars to the series pushed last (none pushed: they are dropped). They are
    /// stored after the series' samples, when the series exists by then.
    pub fn push_exemplars(&mut self, exemplars: impl IntoIterator<Item = Exemplar>) {
        if let Some(s) = self.series.last_mut() {
            self.exemplars.extend(exemplars);
            s.exemplars.end = self.exemplars.len() as u32;
        }
    }

    /// Number of exemplars added.
    pub fn exemplars_len(&self) -> usize {
        self.exemplars.len()
    }

    /// The labels and exemplars of the batch's series `i` (an index into the series pushed).
    pub(crate) fn series_exemplars(&self, i: usize) -> Option<(SeriesLabels, &[Exemplar])> {
        let s = self.series.get(i)?;
        let ex = &self.exemplars[s.exemplars.start as usize..s.exemplars.end as usize];
        Some((SeriesLabels::from_packed(self.series_labels(s)), ex))
    }

    /// Number of histogram samples added.
    pub fn histograms_len(&self) -> usize {
        self.histograms.len()
    }

    /// Number of series added.
    pub fn series_len(&self) -> usize {
        self.series.len()
    }

    /// Number of samples added.
    pub fn samples_len(&self) -> usize {
        self.samples.len()
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// The packed labels of series `s`.
    fn series_labels(&self, s: &BatchSeries) -> &[u8] {
        &self.packed[s.labels.start as usize..s.labels.end as usize]
    }
}

/// What became of the samples of an append, summed over series.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AppendReport {
    /// Samples stored in order.
    pub appended: u64,
    /// Samples stored out of order, within the out-of-order window.
    pub appended_ooo: u64,
    /// Samples identical to stored ones (ignored, not errors).
    pub duplicates: u64,
    /// Samples older than their series' newest, outside the out-of-order window.
    pub out_of_order: u64,
    /// Samples at a stored timestamp with another value.
    pub duplicate_timestamp: u64,
    /// Of the samples stored (in order or not), native histogram samples.
    pub appended_histograms: u64,
    /// Histogram samples refused because they do not validate.
    pub invalid_histograms: u64,
    /// Samples older than the head accepts (already cut into a block, or too far behind).
    pub too_old: u64,
    /// Samples further in the future than `--tsdb.too-far-in-future.time-window`.
    pub too_new: u64,
    /// Samples of new series refused because the tenant is at its series limit.
    pub series_limited: u64,
    /// Series created.
    pub new_series: u64,
    /// Exemplars stored.
    pub exemplars_appended: u64,
    /// Exemplars refused as out of order for their series.
    pub exemplars_out_of_order: u64,
    /// Exemplars refused for their labels' length.
    pub exemplars_invalid: u64,
    /// Newest timestamp stored, ms (`i64::MIN` when none).
    pub max_time: i64,
    /// Oldest timestamp stored, ms (`i64::MAX` when none).
    pub min_time: i64,
}

impl AppendReport {
    pub(crate) fn empty() -> Self {
        AppendReport {
            max_time: i64::MIN,
            min_time: i64::MAX,
            ..AppendReport::default()
        }
    }

    /// Adds another core's report.
    pub fn merge(&mut self, o: &AppendReport) {
        self.appended += o.appended;
        self.appended_ooo += o.appended_ooo;
        self.duplicates += o.duplicates;
        self.out_of_order += o.out_of_order;
        self.duplicate_timestamp += o.duplicate_timestamp;
        self.appended_histograms += o.appended_histograms;
        self.invalid_histograms += o.invalid_histograms;
        self.too_old += o.too_old;
        self.too_new += o.too_new;
        self.series_limited += o.series_limited;
        self.new_series += o.new_series;
        self.exemplars_appended += o.exemplars_appended;
        self.exemplars_out_of_order += o.exemplars_out_of_order;
        self.exemplars_invalid += o.exemplars_invalid;
        self.max_time = self.max_time.max(o.max_time);
        self.min_time = self.min_time.min(o.min_time);
    }

    /// Samples refused for their timestamps (Thanos answers these with 409).
    pub fn conflicts(&self) -> u64 {
        self.out_of_order + self.duplicate_timestamp + self.too_old + self.too_new
    }
}

/// Memory a head holds, by part, in bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HeadMemory {
    /// Chunk payloads and out-of-order samples.
    pub chunk_bytes: u64,
    /// The series' label sets.
    pub label_bytes: u64,
    /// Series records, the hash index and the postings.
    pub index_bytes: u64,
}

impl HeadMemory {
    /// Adds another core's part.
    pub fn merge(&mut self, o: &HeadMemory) {
        self.chunk_bytes += o.chunk_bytes;
        self.label_bytes += o.label_bytes;
        self.index_bytes += o.index_bytes;
    }

    /// Every part.
    pub fn total(&self) -> u64 {
        self.chunk_bytes + self.label_bytes + self.index_bytes
    }
}

/// The limits and bounds one append is checked against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AppendCheck {
    /// In-order samples must be at or after this, ms.
    pub min_valid: i64,
    /// Out-of-order samples at or after this are kept (`i64::MAX`: none).
    pub ooo_min: i64,
    /// Samples after this are refused as too far in the future (`i64::MAX`: no limit).
    pub max_valid: i64,
}

/// A new series and its WAL ref, for the series record.
pub(crate) type Created = (u64, SeriesLabels);

/// The postings read the values they index from the series themselves.
impl ValueSource for Slab {
    fn value(&self, id: u32, name: &[u8]) -> Option<&[u8]> {
        self.get(id)?.labels.get_raw(name)
    }
}

/// A series in the hash index: its id and the low half of its label hash, from which the
/// index's own hash is rebuilt when the table grows (a 32-bit fingerprint collides for a few
/// pairs in a million; the labels decide then).
#[derive(Debug, Clone, Copy)]
struct HashEntry {
    id: u32,
    fingerprint: u32,
}

/// The table hash of a label hash's fingerprint: the bits spread over the whole word, as the
/// table takes its bucket from the low bits and its tag from the high ones.
fn table_hash(fingerprint: u32) -> u64 {
    u64::from(fingerprint).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The series one core owns for one tenant.
#[derive(Debug, Default)]
pub(crate) struct HeadShard {
    /// Series by id; ids of removed series are reused ([`HeadShard::free`]).
    series: Slab,
    free: Vec<u32>,
    by_hash: HashTable<HashEntry>,
    /// Label name → value → ids of the series holding that pair.
    postings: Postings,
    /// WAL ref → id; filled only while the WAL is replayed.
    by_ref: RefMap<u32>,
    /// The order of a replay batch's samples and the sort's scratch; kept from batch to
    /// batch while the WAL is replayed.
    replay_order: (Vec<u64>, Vec<u64>),
    live: usize,
}

impl HeadShard {
    /// Number of series held.
    pub fn len(&self) -> usize {
        self.live
    }

    /// The series with `packed` labels ([`SeriesLabels::packed`]), whose hash is `hash`.
    fn find(&self, hash: u64, packed: &[u8]) -> Option<u32> {
        let fingerprint = hash as u32;
        self.by_hash
            .find(table_hash(fingerprint), |e| {
                e.fingerprint == fingerprint
                    && self
                        .series
                        .get(e.id)
                        .is_some_and(|s| s.labels.packed() == packed)
            })
            .map(|e| e.id)
    }

    /// Reads, ahead of the appends, the memory each series of `batch` will need: its hash
    /// slot, its record, its labels and the end of its open chunk. Each series of a request is
    /// another series, mostly out of cache in a large head: read for the whole batch first, the
    /// reads of different series overlap in the CPU, where in the append loop each waits for
    /// the one before it.
    fn warm(&self, batch: &AppendBatch) {
        let ids: Vec<u32> = batch
            .series
            .iter()
            .filter_map(|s| {
                let fingerprint = s.hash as u32;
                self.by_hash
                    .find(table_hash(fingerprint), |e| e.fingerprint == fingerprint)
                    .map(|e| e.id)
            })
            .collect();
        let mut sink = 0u8;
        for id in ids {
            if let Some(s) = self.series.get(id) {
                let labels = s.labels.packed();
                for b in [labels.first(), labels.last()].into_iter().flatten() {
                    sink = sink.wrapping_add(*b);
                }
            }
            sink = sink.wrapping_add(self.touch_open_chunk(id));
        }
        std::hint::black_box(sink);
    }

    /// Reads series `id`'s record and the last byte of its open chunk (0 when there is
    /// none), so that an append soon after finds them in cache.
    #[inline]
    fn touch_open_chunk(&self, id: u32) -> u8 {
        self.series
            .get(id)
            .and_then(|s| s.open.open().and_then(|o| o.2.last().copied()))
            .unwrap_or(0)
    }

    /// Adds a series; returns its id.
    pub fn create(&mut self, hash: u64, labels: SeriesLabels, r: u64) -> u32 {
        let series = MemSeries::new(labels, r);
        let id = match self.free.pop() {
            Some(id) => {
                self.series.replace(id, Some(series));
                id
            }
            None => self.series.push(series),
        };
        let HeadShard {
            series, postings, ..
        } = self;
        let pairs = series
            .get(id)
            .map(|s| s.labels.raw_pairs())
            .into_iter()
            .flatten();
        postings.add(id, pairs, series);
        let fingerprint = hash as u32;
        self.by_hash.insert_unique(
            table_hash(fingerprint),
            HashEntry { id, fingerprint },
            |e| table_hash(e.fingerprint),
        );
        self.live += 1;
        id
    }

    /// Appends a batch: finds or creates each series, checks and stores its samples. A new
    /// series is created when `reserve_series` grants it room under the tenant's limit; it
    /// gets its ref from `next_ref` and is pushed to `created`. Stored samples go as
    /// (ref, t, v) to `stored` when in order (for the WAL) and to `stored_ooo` when out of
    /// order (for the WBL); stored histograms to `stored_hist` and `stored_ooo_hist` alike.
    #[allow(clippy::too_many_arguments)]
    pub fn append(
        &mut self,
        batch: &AppendBatch,
        check: AppendCheck,
        opts: &CutOptions,
        reserve_series: &dyn Fn() -> bool,
        next_ref: &dyn Fn() -> u64,
        created: &mut Vec<Created>,
        stored: &mut Vec<RefSample>,
        stored_ooo: &mut Vec<RefSample>,
        stored_hist: &mut Vec<StoredHistogram>,
        stored_ooo_hist: &mut Vec<StoredHistogram>,
        exemplar_series: &mut Vec<(usize, u64)>,
    ) -> AppendReport {
        let mut rep = AppendReport::empty();
        let bounds = AppendBounds {
            ooo_min: check.ooo_min,
        };
        self.warm(batch);
        for (i, s) in batch.series.iter().enumerate() {
            let samples = &batch.samples[s.samples.start as usize..s.samples.end as usize];
            let hists = &batch.histograms[s.histograms.start as usize..s.histograms.end as usize];
            let id = match self.find(s.hash, batch.series_labels(s)) {
                Some(id) => id,
                None if samples.is_empty() && hists.is_empty() => continue,
                None if !reserve_series() => {
                    rep.series_limited += (samples.len() + hists.len()) as u64;
                    continue;
                }
                None => {
                    let labels = SeriesLabels::from_packed(batch.series_labels(s));
                    let r = next_ref();
                    created.push((r, labels.clone()));
                    rep.new_series += 1;
                    self.create(s.hash, labels, r)
                }
            };
            #[allow(
                clippy::expect_used,
                reason = "the id was just looked up or created in this map"
            )]
            let series = self.series.get_mut(id).expect("found series are live");
            if !s.exemplars.is_empty() {
                exemplar_series.push((i, series.r));
            }
            for &(t, v) in samples {
                if is_stale_nan(v)
                    && t >= check.min_valid
                    && t <= check.max_valid
                    && let Some(last) = series.last_histogram()
                {
                    // A stale marker for a series whose newest sample is a histogram is a
                    // histogram stale marker, as in Prometheus's head.
                    let h = last.stale_like();
                    let outcome = series.append_histogram(t, h.clone(), opts, bounds);
                    if count_histogram(&mut rep, outcome, t) {
                        let log = match outcome {
                            Appended::OutOfOrder => &mut *stored_ooo_hist,
                            _ => &mut *stored_hist,
                        };
                        log.push((series.r, t, h));
                    }
                    continue;
                }
                let outcome = if t > check.max_valid {
                    rep.too_new += 1;
                    continue;
                } else if t < check.min_valid {
                    if t < check.ooo_min {
                        rep.too_old += 1;
                        continue;
                    }
                    // Below the in-order bound but inside the window: out of order for the
                    // head, whatever the series' own newest sample is.
                    series.append_ooo(t, v)
                } else {
                    series.append(t, v, opts, bounds)
                };
                match outcome {
                    Appended::InOrder | Appended::OutOfOrder => {
                        if outcome == Appended::InOrder {
                            rep.appended += 1;
                            stored.push(RefSample { r: series.r, t, v });
                        } else {
                            rep.appended_ooo += 1;
                            stored_ooo.push(RefSample { r: series.r, t, v });
                        }
                        rep.max_time = rep.max_time.max(t);
                        rep.min_time = rep.min_time.min(t);
                    }
                    Appended::Duplicate => rep.duplicates += 1,
                    Appended::RefusedOutOfOrder => rep.out_of_order += 1,
                    Appended::RefusedTooOld => rep.too_old += 1,
                    Appended::RefusedDuplicateTimestamp => rep.duplicate_timestamp += 1,
                    Appended::RefusedInvalid => rep.invalid_histograms += 1,
                }
            }
            for (t, h) in hists {
                let t = *t;
                if t > check.max_valid {
                    rep.too_new += 1;
                    continue;
                }
                let outcome = if t < check.min_valid {
                    if t < check.ooo_min {
                        rep.too_old += 1;
                        continue;
                    }
                    // Below the in-order bound but inside the window, as for floats.
                    series.append_ooo_histogram(t, h.clone(), opts)
                } else {
                    series.append_histogram(t, h.clone(), opts, bounds)
                };
                if count_histogram(&mut rep, outcome, t) {
                    let log = match outcome {
                        Appended::OutOfOrder => &mut *stored_ooo_hist,
                        _ => &mut *stored_hist,
                    };
                    log.push((series.r, t, h.clone()));
                }
            }
        }
        rep
    }

    /// Replay: appends histogram samples by ref, in log order.
    pub fn replay_histograms(
        &mut self,
        hists: &mut Vec<StoredHistogram>,
        check: AppendCheck,
        opts: &CutOptions,
    ) -> AppendReport {
        let mut rep = AppendReport::empty();
        let bounds = AppendBounds {
            ooo_min: check.ooo_min,
        };
        for (r, t, h) in hists.drain(..) {
            let Some(series) = self.by_ref.get(r).and_then(|id| self.series.get_mut(id)) else {
                rep.too_old += 1;
                continue;
            };
            if t < check.min_valid {
                rep.too_old += 1;
                continue;
            }
            let outcome = series.append_histogram(t, h, opts, bounds);
            count_histogram(&mut rep, outcome, t);
        }
        rep
    }

    /// Replay: adds a series read from the WAL under its ref (a ref seen before keeps its
    /// series: Prometheus may log a series again after a checkpoint).
    pub fn replay_series(&mut self, hash: u64, packed: &[u8], r: u64) {
        if self.by_ref.contains(r) {
            return;
        }
        let id = match self.find(hash, packed) {
            Some(id) => id,
            None => self.create(hash, SeriesLabels::from_packed(packed), r),
        };
        self.by_ref.insert(r, id);
    }

    /// Replay: appends samples by ref; returns (stored, dropped) counts and the time range
    /// stored.
    pub fn replay_samples(
        &mut self,
        samples: &[RefSample],
        check: AppendCheck,
        opts: &CutOptions,
    ) -> AppendReport {
        let mut rep = AppendReport::empty();
        let bounds = AppendBounds {
            ooo_min: check.ooo_min,
        };
        // Appended series by series (each series' samples in log order): interleaved, every
        // sample would touch another series' chunk and miss the cache.
        let (mut order, mut scratch) = std::mem::take(&mut self.replay_order);
        order.clear();
        let mut max_id = 0;
        for (i, &RefSample { r, .. }) in samples.iter().enumerate() {
            match self.by_ref.get(r) {
                Some(id) => {
                    max_id = max_id.max(id);
                    order.push(((id as u64) << 32) | i as u64);
                }
                None => rep.too_old += 1,
            }
        }
        sort_by_id(&mut order, &mut scratch, max_id);
        // In a large head each sample is another series, out of cache: its record and its
        // chunk's end are read for a window of samples first, so that those reads overlap in
        // the CPU instead of each append waiting for its own.
        for window in order.chunks(REPLAY_WARM_WINDOW) {
            let mut sink = 0u8;
            for &key in window {
                sink = sink.wrapping_add(self.touch_open_chunk((key >> 32) as u32));
            }
            std::hint::black_box(sink);
            for &key in window {
                let (id, i) = ((key >> 32) as u32, key as u32);
                let RefSample { t, v, .. } = samples[i as usize];
                let Some(series) = self.series.get_mut(id) else {
                    rep.too_old += 1;
                    continue;
                };
                if t < check.min_valid {
                    rep.too_old += 1;
                    continue;
                }
                match series.append(t, v, opts, bounds) {
                    Appended::InOrder => rep.appended += 1,
                    Appended::OutOfOrder => rep.appended_ooo += 1,
                    Appended::Duplicate => rep.duplicates += 1,
                    Appended::RefusedOutOfOrder => rep.out_of_order += 1,
                    Appended::RefusedTooOld => rep.too_old += 1,
                    Appended::RefusedDuplicateTimestamp => rep.duplicate_timestamp += 1,
                    Appended::RefusedInvalid => rep.invalid_histograms += 1,
                }
                rep.max_time = rep.max_time.max(t);
                rep.min_time = rep.min_time.min(t);
            }
        }
        self.replay_order = (order, scratch);
        rep
    }

    /// Replay: the labels of the series among `refs` this core holds (by the replay's ref
    /// map, so before [`HeadShard::end_replay`]).
    pub fn labels_by_ref(&self, refs: &[u64]) -> Vec<(u64, Labels)> {
        refs.iter()
            .filter_map(|&r| {
                let s = self.by_ref.get(r).and_then(|id| self.series.get(id))?;
                Some((r, s.labels.to_labels()))
            })
            .collect()
    }

    /// Ends replay: the ref map and the batch order are no longer needed.
    pub fn end_replay(&mut self) {
        self.by_ref = RefMap::default();
        self.replay_order = Default::default();
    }

    /// Ids of the series matching every matcher, ascending.
    ///
    /// The postings only narrow the candidates; every candidate is then checked against
    /// every matcher on its own labels. So the narrowest equality list is the start, and
    /// another list is read only while it can still cut the candidates down cheaply: a
    /// rule's `metric{instance="…"}` reads the instance's few ids, not the metric's tens of
    /// thousands.
    fn select_ids(&self, matchers: &[Matcher]) -> Vec<u32> {
        let held = &self.series;
        let narrowing: Vec<&Matcher> = matchers.iter().filter(|m| !m.matches("")).collect();
        if narrowing.iter().any(|m| !self.postings.has_name(&m.name)) {
            return Vec::new();
        }
        // Equality lists, narrowest first; the other matchers' lists cost a pass over every
        // value of their label, so they come after.
        let mut equal: Vec<&[u32]> = Vec::new();
        for m in narrowing.iter().filter(|m| m.typ == MatchType::Equal) {
            match self.postings.get(&m.name, &m.value, held) {
                Some(list) => equal.push(list),
                None => return Vec::new(),
            }
        }
        equal.sort_by_key(|l| l.len());
        let mut candidates: Option<Vec<u32>> = None;
        for list in equal {
            candidates = Some(match candidates {
                None => sorted_ids(list.to_vec()),
                Some(c) if worth_intersecting(c.len(), list.len()) => {
                    intersect(c, sorted_ids(list.to_vec()))
                }
                Some(c) => c,
            });
        }
        for m in narrowing.iter().filter(|m| m.typ != MatchType::Equal) {
            if candidates
                .as_ref()
                .is_some_and(|c| c.len() <= CHECK_LABELS_UNDER)
            {
                break;
            }
            let mut ids: Vec<u32> = Vec::new();
            for (v, list) in self.postings.values(&m.name, held) {
                if m.matches(v) {
                    ids.extend_from_slice(list);
                }
            }
            let ids = sorted_ids(ids);
            candidates = Some(match candidates {
                None => ids,
                Some(c) => intersect(c, ids),
            });
        }
        let ids: Vec<u32> = match candidates {
            Some(c) => c,
            None => (0..self.series.ids()).collect(),
        };
        ids.into_iter()
            .filter(|&id| {
                self.series.get(id).is_some_and(|s| {
                    matchers
                        .iter()
                        .all(|m| m.matches(s.labels.get(&m.name).unwrap_or("")))
                })
            })
            .collect()
    }

    fn matching(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> impl Iterator<Item = &MemSeries> + '_ {
        self.select_ids(matchers)
            .into_iter()
            .filter_map(|id| self.series.get(id))
            .filter(move |s| s.overlaps(mint, maxt))
    }

    /// Series matching `matchers` with samples in `[mint, maxt]`, with those samples.
    pub fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<Series> {
        let mut out = Vec::new();
        for s in self.matching(matchers, mint, maxt) {
            let mut samples = SampleBatch::new();
            s.samples_into(mint, maxt, &mut samples);
            let mut histograms = HistogramBatch::new();
            s.histograms_into(mint, maxt, &mut histograms);
            if !samples.is_empty() || !histograms.is_empty() {
                out.push(Series {
                    labels: s.labels.to_labels(),
                    samples,
                    histograms,
                });
            }
        }
        out
    }

    /// Has the postings tell `shared` of the label names they hold, now and as they change.
    pub fn share_names(&mut self, shared: std::sync::Arc<super::postings::SharedNames>) {
        self.postings.share_names(shared);
    }

    /// Ids of the series matching `matchers` with data in `[mint, maxt]` (by chunk bounds),
    /// each with its WAL ref, in id order: what [`Self::sort_by_labels`] puts in label order.
    pub fn matching_refs(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<(u32, u64)> {
        self.select_ids(matchers)
            .into_iter()
            .filter_map(|id| Some((id, self.series.get(id)?)))
            .filter(|(_, s)| s.overlaps(mint, maxt))
            .map(|(id, s)| (id, s.r))
            .collect()
    }

    /// `picked` (ids with the WAL refs they had when picked) in label order, leaving out the
    /// series no longer held: where a [`super::stream::HeadStream`] starts. Sorted here, by
    /// the labels in place, so that no label set is copied out.
    pub fn sort_by_labels(&self, picked: Vec<(u32, u64)>) -> Vec<(u32, u64)> {
        let mut held: Vec<(u32, &MemSeries)> = picked
            .into_iter()
            .filter_map(|(id, r)| Some((id, self.series.get(id).filter(|s| s.r == r)?)))
            .collect();
        // Bytes order as strings do: no UTF-8 check per comparison.
        held.sort_unstable_by(|a, b| a.1.labels.raw_pairs().cmp(b.1.labels.raw_pairs()));
        held.into_iter().map(|(id, s)| (id, s.r)).collect()
    }

    /// The series `picked` (ids with the WAL refs they had when picked) that are still held,
    /// in that order, read as `read` asks in `[mint, maxt]`. A series removed since it was
    /// picked is left out, and so is one whose id now holds another series.
    pub fn read(
        &self,
        picked: &[(u32, u64)],
        mint: i64,
        maxt: i64,
        read: HeadRead,
    ) -> Vec<ReadSeries> {
        let mut out = Vec::with_capacity(picked.len());
        for &(id, r) in picked {
            let Some(s) = self.series.get(id).filter(|s| s.r == r) else {
                continue;
            };
            let mut samples = SampleBatch::new();
            let mut histograms = HistogramBatch::new();
            let mut histogram_chunks = Vec::new();
            match read {
                HeadRead::Labels => {}
                HeadRead::Samples => {
                    s.samples_into(mint, maxt, &mut samples);
                    s.histograms_into(mint, maxt, &mut histograms);
                }
                HeadRead::Stored => {
                    s.samples_into(mint, maxt, &mut samples);
                    if let Some(h) = &s.hist {
                        histogram_chunks = h.chunks_in(mint, maxt);
                    }
                }
            }
            let empty = samples.is_empty() && histograms.is_empty() && histogram_chunks.is_empty();
            if read == HeadRead::Labels || !empty {
                out.push(ReadSeries {
                    labels: s.labels.to_labels(),
                    samples,
                    histograms,
                    histogram_chunks,
                });
            }
        }
        out
    }

    /// Series matching `matchers` with native histograms in `[mint, maxt]`, with the chunks
    /// holding them ([`HistSeries::chunks_in`](super::histograms::HistSeries::chunks_in)).
    pub fn histogram_chunks(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Vec<(Labels, Vec<CutHistogramChunk>)> {
        self.matching(matchers, mint, maxt)
            .filter_map(|s| {
                let chunks = s.hist.as_ref()?.chunks_in(mint, maxt);
                (!chunks.is_empty()).then(|| (s.labels.to_labels(), chunks))
            })
            .collect()
    }

    /// Label names of the matching series with data in range.
    pub fn label_names(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> HashSet<String> {
        let mut out = HashSet::new();
        for s in self.matching(matchers, mint, maxt) {
            for (name, _) in s.labels.iter() {
                if !out.contains(name) {
                    out.insert(name.to_string());
                }
            }
        }
        out
    }

    /// Values of label `name` over the matching series with data in range.
    pub fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> HashSet<String> {
        let mut out = HashSet::new();
        for s in self.matching(matchers, mint, maxt) {
            if let Some(v) = s.labels.get(name)
                && !out.contains(v)
            {
                out.insert(v.to_string());
            }
        }
        out
    }

    /// Ids (with WAL refs) of every series with data in `[mint, maxt)`, in label order: the
    /// series a block of that range holds, for [`HeadShard::block_series`] to read a run at a
    /// time.
    pub fn sorted_in_range(&self, mint: i64, maxt: i64) -> Vec<(u32, u64)> {
        let mut picked: Vec<(u32, &MemSeries)> = (0..self.series.ids())
            .filter_map(|id| Some((id, self.series.get(id)?)))
            .filter(|(_, s)| s.overlaps(mint, maxt - 1))
            .collect();
        picked.sort_unstable_by(|a, b| a.1.labels.iter().cmp(b.1.labels.iter()));
        picked.into_iter().map(|(id, s)| (id, s.r)).collect()
    }

    /// The series `picked` (ids with their WAL refs, as [`HeadShard::sorted_in_range`] gave
    /// them) with their float and histogram chunks in `[mint, maxt)` for a block, in that
    /// order; series left without chunks there are left out.
    pub fn block_series(
        &self,
        picked: &[(u32, u64)],
        mint: i64,
        maxt: i64,
        opts: &CutOptions,
    ) -> Vec<BlockSeries> {
        picked
            .iter()
            .filter_map(|&(id, r)| self.series.get(id).filter(|s| s.r == r))
            .map(|s| {
                let (floats, hists) = s.block_all_chunks(mint, maxt, opts);
                (s.labels.to_labels(), floats, hists)
            })
            .filter(|(_, c, h)| !c.is_empty() || !h.is_empty())
            .collect()
    }

    /// Drops every sample before `mint` and the series left without samples; returns the
    /// number of series removed.
    pub fn truncate_before(&mut self, mint: i64) -> usize {
        let mut removed: Vec<u32> = Vec::new();
        for (id, s) in self.series.iter_mut() {
            if !s.truncate_before(mint) {
                removed.push(id);
            }
        }
        if removed.is_empty() {
            return 0;
        }
        let gone: HashSet<u32> = removed.iter().copied().collect();
        let HeadShard {
            series,
            free,
            by_hash,
            postings,
            live,
            ..
        } = self;
        {
            let held = |id: u32| series.get(id);
            // Each list is filtered once, however many of its series go.
            let touched: HashSet<(&[u8], &[u8])> = removed
                .iter()
                .filter_map(|&id| held(id))
                .flat_map(|s| s.labels.raw_pairs())
                .collect();
            postings.remove(touched, &|i| gone.contains(&i), series);
            for &id in &removed {
                let Some(s) = held(id) else { continue };
                let fingerprint = s.labels.hash() as u32;
                if let Ok(e) = by_hash.find_entry(table_hash(fingerprint), |e| e.id == id) {
                    e.remove();
                }
            }
        }
        for &id in &removed {
            series.replace(id, None);
        }
        free.extend(removed.iter().rev());
        *live -= removed.len();
        removed.len()
    }

    /// WAL refs of every series held.
    pub fn refs(&self) -> Vec<u64> {
        self.series.values().map(|s| s.r).collect()
    }

    /// Oldest sample held, ms.
    pub fn min_time(&self) -> Option<i64> {
        self.series.values().filter_map(|s| s.min_time()).min()
    }

    /// What the shard's memory holds, by part (estimated from sizes and capacities).
    pub fn memory(&self) -> HeadMemory {
        let mut m = HeadMemory::default();
        for s in self.series.values() {
            m.chunk_bytes += s.data_bytes() as u64;
            m.label_bytes += s.labels.heap_bytes() as u64;
        }
        let slots = self.series.heap_bytes()
            + self.free.capacity() * 4
            + self.by_hash.capacity() * (std::mem::size_of::<HashEntry>() + 1);
        m.index_bytes = (slots + self.postings.heap_bytes()) as u64;
        m
    }
}

/// One series of a block: labels, float chunks, histogram chunks.
pub(crate) type BlockSeries = (Labels, Vec<CutChunk>, Vec<CutHistogramChunk>);

/// Counts a histogram append's outcome; returns whether the sample was stored.
fn count_histogram(rep: &mut AppendReport, outcome: Appended, t: i64) -> bool {
    match outcome {
        Appended::InOrder | Appended::OutOfOrder => {
            if outcome == Appended::InOrder {
                rep.appended += 1;
            } else {
                rep.appended_ooo += 1;
            }
            rep.appended_histograms += 1;
            rep.max_time = rep.max_time.max(t);
            rep.min_time = rep.min_time.min(t);
            return true;
        }
        Appended::Duplicate => rep.duplicates += 1,
        Appended::RefusedOutOfOrder => rep.out_of_order += 1,
        Appended::RefusedTooOld => rep.too_old += 1,
        Appended::RefusedDuplicateTimestamp => rep.duplicate_timestamp += 1,
        Appended::RefusedInvalid => rep.invalid_histograms += 1,
    }
    false
}

/// Samples of a replay batch whose series are read ahead together.
const REPLAY_WARM_WINDOW: usize = 32;

/// Sorts `keys` by their high 32 bits (a series id, at most `max_id`), keeping the order of
/// equal ids: a least-significant-digit radix sort, 11 bits a pass and as many passes as
/// `max_id` needs, with `scratch` as the second buffer. For a replay batch of a million
/// samples it takes a fraction of a comparison sort's time.
pub(crate) fn sort_by_id(keys: &mut Vec<u64>, scratch: &mut Vec<u64>, max_id: u32) {
    const BITS: u32 = 11;
    const MASK: u64 = (1 << BITS) - 1;
    let passes = (u32::BITS - max_id.leading_zeros()).div_ceil(BITS);
    scratch.clear();
    scratch.resize(keys.len(), 0);
    for pass in 0..passes {
        let shift = 32 + pass * BITS;
        let mut starts = [0usize; 1 << BITS];
        for &k in keys.iter() {
            starts[((k >> shift) & MASK) as usize] += 1;
        }
        let mut sum = 0;
        for s in starts.iter_mut() {
            let n = *s;
            *s = sum;
            sum += n;
        }
        for &k in keys.iter() {
            let d = ((k >> shift) & MASK) as usize;
            scratch[starts[d]] = k;
            starts[d] += 1;
        }
        std::mem::swap(keys, scratch);
    }
}

/// Below this many candidates a series' own labels are checked rather than another
/// matcher's postings expanded (a pass over every value of its label).
const CHECK_LABELS_UNDER: usize = 1024;

/// Whether intersecting `candidates` ids with another equality list of `list` ids is
/// cheaper than checking each candidate's labels: not for a handful of candidates, nor when
/// the list dwarfs them.
fn worth_intersecting(candidates: usize, list: usize) -> bool {
    candidates > 64 && list <= candidates.saturating_mul(8)
}

/// `ids` ascending, each once (a postings list is in no order: ids are reused).
fn sorted_ids(mut ids: Vec<u32>) -> Vec<u32> {
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The ids in both ascending lists, ascending.
fn intersect(a: Vec<u32>, b: Vec<u32>) -> Vec<u32> {
    let mut out = Vec::with_capacity(a.len().min(b.len()));
    let mut j = 0;
    for x in a {
        while j < b.len() && b[j] < x {
            j += 1;
        }
        match b.get(j) {
            None => break,
            Some(&y) if y == x => out.push(x),
            Some(_) => {}
        }
    }
    out
}
