//! A head's exemplars, kept as Prometheus's TSDB keeps them (`tsdb/exemplar.go`): one circular
//! buffer of a fixed number of exemplars per head (`--tsdb.max-exemplars`), the oldest
//! overwritten first, with each series' exemplars chained oldest to newest through the buffer
//! and found by the series' labels.
//!
//! An exemplar is refused when its labels are longer than 128 characters (names and values
//! counted in UTF-8 characters) or when it is out of order for its series: older than the
//! series' newest exemplar, or at the same timestamp with a smaller value (or the same value
//! and a smaller label hash), as Prometheus orders exemplars with no out-of-order window.
//! One equal to the series' newest is a duplicate, ignored without error.
//!
//! The store is shared by the head's cores behind a lock held for one request's exemplars at
//! a time; exemplars are few next to samples (one per series and scrape at most, in practice
//! far fewer), so the lock is not on the samples' path.

use std::collections::HashMap;

use crate::labels::{Labels, Matcher, hash_pairs};

/// The longest label set an exemplar may carry, in UTF-8 characters of names and values
/// (Prometheus's `ExemplarMaxLabelSetLength`).
pub const EXEMPLAR_MAX_LABEL_SET_LENGTH: usize = 128;

/// No entry: the end of a series' chain.
const NONE: u32 = u32::MAX;

/// One exemplar: its labels (a trace id, typically), value and timestamp (ms).
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    /// The exemplar's own labels (may be empty).
    pub labels: Labels,
    /// The value observed.
    pub value: f64,
    /// Timestamp, ms since the epoch.
    pub ts: i64,
}

impl Exemplar {
    /// Whether `o` is the same exemplar (Prometheus's `Exemplar.Equals`): labels, timestamp
    /// and value all equal.
    fn same(&self, o: &Exemplar) -> bool {
        self.ts == o.ts && self.value == o.value && self.labels == o.labels
    }

    /// Prometheus's order of exemplars sharing a timestamp: by value, then by label hash.
    fn before_same_ts(&self, newest: &Exemplar) -> bool {
        self.value < newest.value
            || (self.value == newest.value && label_hash(&self.labels) < label_hash(&newest.labels))
    }
}

/// The exemplars of one series, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesExemplars {
    /// The series' labels.
    pub series: Labels,
    /// Its exemplars in the range asked for, oldest first.
    pub exemplars: Vec<Exemplar>,
}

/// Why an exemplar was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExemplarError {
    /// Exemplar storage is off (`--tsdb.max-exemplars=0`); every exemplar is dropped.
    #[error("exemplar storage is disabled")]
    Disabled,
    /// The exemplar's labels are longer than [`EXEMPLAR_MAX_LABEL_SET_LENGTH`] characters;
    /// the sender should shorten them.
    #[error("exemplar label set is longer than {EXEMPLAR_MAX_LABEL_SET_LENGTH} characters")]
    LabelLength,
    /// The exemplar is older than its series' newest exemplar; the sender sent it late or
    /// twice with another value.
    #[error("out of order exemplar")]
    OutOfOrder,
}

/// What a store holds and has done, for `/metrics` (Prometheus's
/// `prometheus_tsdb_exemplar_*` figures).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExemplarStats {
    /// The buffer's size in exemplars (`--tsdb.max-exemplars`).
    pub max_exemplars: u64,
    /// Exemplars held.
    pub exemplars: u64,
    /// Series with at least one exemplar held.
    pub series: u64,
    /// Exemplars stored since start, replay included.
    pub appended: u64,
    /// Exemplars refused as out of order since start.
    pub out_of_order: u64,
    /// Timestamp of the newest exemplar stored, ms (0 when none).
    pub last_ts: i64,
    /// Timestamp of the oldest exemplar held, ms (`i64::MAX` when none).
    pub min_ts: i64,
}

/// One slot of the buffer.
#[derive(Debug)]
struct Entry {
    exemplar: Exemplar,
    /// The next (newer) entry of the same series, or [`NONE`].
    next: u32,
    /// The series the entry belongs to, an index into [`ExemplarStore::series`].
    series: u32,
}

/// A series' chain through the buffer.
#[derive(Debug)]
struct SeriesEntry {
    labels: Labels,
    oldest: u32,
    newest: u32,
}

/// The circular buffer of a head's exemplars.
#[derive(Debug, Default)]
pub struct ExemplarStore {
    max: usize,
    /// Grows to `max` entries, then each new exemplar overwrites the oldest.
    entries: Vec<Entry>,
    /// The slot the next exemplar goes to once the buffer is full.
    next: usize,
    index: HashMap<Labels, u32>,
    series: Vec<Option<SeriesEntry>>,
    free: Vec<u32>,
    appended: u64,
    out_of_order: u64,
    last_ts: i64,
}

impl ExemplarStore {
    /// A store of at most `max` exemplars (0: storage off), capped at `u32::MAX - 1`.
    pub fn new(max: u64) -> Self {
        ExemplarStore {
            max: max.min(u64::from(NONE - 1)) as usize,
            ..ExemplarStore::default()
        }
    }

    /// Whether the store keeps anything.
    pub fn enabled(&self) -> bool {
        self.max > 0
    }

    /// Stores `e` as the newest exemplar of series `series`. `Ok(false)` for a duplicate of the
    /// series' newest exemplar, which is ignored.
    pub fn add(&mut self, series: &Labels, e: Exemplar) -> Result<bool, ExemplarError> {
        if self.max == 0 {
            return Err(ExemplarError::Disabled);
        }
        let len: usize = e
            .labels
            .iter()
            .map(|l| l.name.chars().count() + l.value.chars().count())
            .sum();
        if len > EXEMPLAR_MAX_LABEL_SET_LENGTH {
            return Err(ExemplarError::LabelLength);
        }
        if let Some(&s) = self.index.get(series)
            && let Some(entry) = self.series_entry(s)
        {
            let newest = &self.entries[entry.newest as usize].exemplar;
            if newest.same(&e) {
                return Ok(false);
            }
            if e.ts < newest.ts || (e.ts == newest.ts && e.before_same_ts(newest)) {
                self.out_of_order += 1;
                return Err(ExemplarError::OutOfOrder);
            }
        }
        let slot = self.take_slot();
        let s = self.series_slot(series);
        let ts = e.ts;
        let entry = Entry {
            exemplar: e,
            next: NONE,
            series: s,
        };
        if slot as usize == self.entries.len() {
            self.entries.push(entry);
        } else {
            self.entries[slot as usize] = entry;
        }
        if let Some(se) = self.series.get_mut(s as usize).and_then(Option::as_mut) {
            if se.newest == NONE {
                se.oldest = slot;
            } else {
                self.entries[se.newest as usize].next = slot;
            }
            se.newest = slot;
        }
        self.appended += 1;
        self.last_ts = ts;
        Ok(true)
    }

    /// The slot the next exemplar goes to: a new one while the buffer grows, else the oldest,
    /// unlinked from its series (a series left with none is forgotten).
    fn take_slot(&mut self) -> u32 {
        if self.entries.len() < self.max {
            return self.entries.len() as u32;
        }
        let slot = self.next;
        self.next = (self.next + 1) % self.max;
        let (s, next) = {
            let old = &self.entries[slot];
            (old.series, old.next)
        };
        let emptied = match self.series.get_mut(s as usize).and_then(Option::as_mut) {
            // The slot is the globally oldest entry, so it is its series' oldest.
            Some(se) => {
                se.oldest = next;
                if next == NONE {
                    se.newest = NONE;
                }
                next == NONE
            }
            None => false,
        };
        if emptied && let Some(se) = self.series[s as usize].take() {
            self.index.remove(&se.labels);
            self.free.push(s);
        }
        slot as u32
    }

    /// The index of series `labels`, created when the store has none.
    fn series_slot(&mut self, labels: &Labels) -> u32 {
        if let Some(&s) = self.index.get(labels) {
            return s;
        }
        let entry = SeriesEntry {
            labels: labels.clone(),
            oldest: NONE,
            newest: NONE,
        };
        let s = match self.free.pop() {
            Some(s) => {
                self.series[s as usize] = Some(entry);
                s
            }
            None => {
                self.series.push(Some(entry));
                (self.series.len() - 1) as u32
            }
        };
        self.index.insert(labels.clone(), s);
        s
    }

    fn series_entry(&self, s: u32) -> Option<&SeriesEntry> {
        self.series
            .get(s as usize)
            .and_then(Option::as_ref)
            .filter(|se| se.newest != NONE)
    }

    /// The exemplars from `start` to `end` (ms, inclusive) of the series matching every
    /// matcher of at least one of `matcher_sets`, sorted by series labels (Prometheus's
    /// `Select`). No sets selects nothing.
    pub fn select(
        &self,
        start: i64,
        end: i64,
        matcher_sets: &[Vec<Matcher>],
    ) -> Vec<SeriesExemplars> {
        let mut out = Vec::new();
        for se in self.series.iter().flatten() {
            if se.newest == NONE
                || self.entries[se.oldest as usize].exemplar.ts > end
                || self.entries[se.newest as usize].exemplar.ts < start
                || !matcher_sets.iter().any(|set| matches_all(&se.labels, set))
            {
                continue;
            }
            let mut exemplars = Vec::new();
            let mut i = se.oldest;
            while i != NONE {
                let e = &self.entries[i as usize];
                if e.exemplar.ts > end {
                    break;
                }
                if e.exemplar.ts >= start {
                    exemplars.push(e.exemplar.clone());
                }
                i = e.next;
            }
            if !exemplars.is_empty() {
                out.push(SeriesExemplars {
                    series: se.labels.clone(),
                    exemplars,
                });
            }
        }
        out.sort_by(|a, b| a.series.cmp(&b.series));
        out
    }

    /// The store's figures.
    pub fn stats(&self) -> ExemplarStats {
        let min_ts = self
            .series
            .iter()
            .flatten()
            .filter(|se| se.oldest != NONE)
            .map(|se| self.entries[se.oldest as usize].exemplar.ts)
            .min()
            .unwrap_or(i64::MAX);
        ExemplarStats {
            max_exemplars: self.max as u64,
            exemplars: self.entries.len() as u64,
            series: self.index.len() as u64,
            appended: self.appended,
            out_of_order: self.out_of_order,
            last_ts: self.last_ts,
            min_ts,
        }
    }
}

/// Whether `labels` satisfy every matcher of `set` (an absent label matches as "").
fn matches_all(labels: &Labels, set: &[Matcher]) -> bool {
    set.iter()
        .all(|m| m.matches(labels.get(&m.name).unwrap_or("")))
}

/// Prometheus's hash of a label set.
fn label_hash(labels: &Labels) -> u64 {
    hash_pairs(labels.iter().map(|l| (l.name.as_str(), l.value.as_str())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(trace: &str, value: f64, ts: i64) -> Exemplar {
        Exemplar {
            labels: Labels::from_pairs([("trace_id", trace)]),
            value,
            ts,
        }
    }

    fn series(name: &str) -> Labels {
        Labels::from_pairs([("__name__", name)])
    }

    fn all() -> Vec<Vec<Matcher>> {
        vec![vec![
            Matcher::new(crate::labels::MatchType::Regexp, "__name__", ".+").unwrap(),
        ]]
    }

    #[test]
    fn disabled_store_refuses() {
        let mut s = ExemplarStore::new(0);
        assert_eq!(
            s.add(&series("a"), ex("1", 1.0, 1)),
            Err(ExemplarError::Disabled)
        );
        assert!(s.select(i64::MIN, i64::MAX, &all()).is_empty());
    }

    #[test]
    fn buffer_is_bounded_and_drops_the_oldest() {
        let mut s = ExemplarStore::new(3);
        for i in 0..5 {
            let name = if i % 2 == 0 { "a" } else { "b" };
            assert_eq!(
                s.add(&series(name), ex(&i.to_string(), i as f64, i)),
                Ok(true)
            );
        }
        let got = s.select(i64::MIN, i64::MAX, &all());
        let flat: Vec<(String, i64)> = got
            .iter()
            .flat_map(|se| {
                let name = se.series.get("__name__").unwrap_or("").to_string();
                se.exemplars.iter().map(move |e| (name.clone(), e.ts))
            })
            .collect();
        assert_eq!(
            flat,
            vec![("a".into(), 2), ("a".into(), 4), ("b".into(), 3)]
        );
        let st = s.stats();
        assert_eq!((st.exemplars, st.series, st.appended), (3, 2, 5));
        assert_eq!(st.min_ts, 2);
    }

    #[test]
    fn a_series_whose_exemplars_are_all_overwritten_is_forgotten() {
        let mut s = ExemplarStore::new(2);
        s.add(&series("a"), ex("1", 1.0, 1)).unwrap();
        s.add(&series("b"), ex("2", 1.0, 2)).unwrap();
        s.add(&series("b"), ex("3", 1.0, 3)).unwrap();
        assert_eq!(s.stats().series, 1);
        s.add(&series("b"), ex("4", 1.0, 4)).unwrap();
        let got = s.select(0, 10, &all());
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].exemplars.iter().map(|e| e.ts).collect::<Vec<_>>(),
            vec![3, 4]
        );
        // A forgotten series accepts any timestamp again.
        s.add(&series("a"), ex("5", 1.0, 0)).unwrap();
    }

    #[test]
    fn ordering_and_duplicates_follow_prometheus() {
        let mut s = ExemplarStore::new(10);
        let a = series("a");
        assert_eq!(s.add(&a, ex("1", 5.0, 100)), Ok(true));
        assert_eq!(s.add(&a, ex("1", 5.0, 100)), Ok(false), "duplicate ignored");
        assert_eq!(s.add(&a, ex("1", 5.0, 99)), Err(ExemplarError::OutOfOrder));
        assert_eq!(
            s.add(&a, ex("1", 4.0, 100)),
            Err(ExemplarError::OutOfOrder),
            "same timestamp, smaller value"
        );
        assert_eq!(
            s.add(&a, ex("1", 6.0, 100)),
            Ok(true),
            "same timestamp, larger value"
        );
        assert_eq!(
            s.add(&series("b"), ex("1", 1.0, 1)),
            Ok(true),
            "other series"
        );
        assert_eq!(s.stats().out_of_order, 2);
        assert_eq!(s.stats().exemplars, 3);
    }

    #[test]
    fn label_set_length_is_counted_in_characters() {
        let mut s = ExemplarStore::new(10);
        // 8 + 120 = 128 characters: allowed, though more bytes.
        let ok = Labels::from_pairs([("trace_id", "é".repeat(120))]);
        let long = Labels::from_pairs([("trace_id", "é".repeat(121))]);
        let e = |labels: Labels, ts| Exemplar {
            labels,
            value: 1.0,
            ts,
        };
        assert_eq!(s.add(&series("a"), e(ok, 1)), Ok(true));
        assert_eq!(
            s.add(&series("a"), e(long, 2)),
            Err(ExemplarError::LabelLength)
        );
    }

    #[test]
    fn select_filters_by_time_and_matcher_sets() {
        let mut s = ExemplarStore::new(10);
        for t in [10, 20, 30] {
            s.add(&series("a"), ex("x", 1.0, t)).unwrap();
            s.add(&series("b"), ex("y", 1.0, t)).unwrap();
        }
        let only_b = vec![vec![Matcher::equal("__name__", "b")]];
        let got = s.select(15, 30, &only_b);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].series, series("b"));
        assert_eq!(
            got[0].exemplars.iter().map(|e| e.ts).collect::<Vec<_>>(),
            vec![20, 30]
        );
        assert!(s.select(31, 40, &all()).is_empty());
        let both = vec![vec![Matcher::equal("__name__", "a")], only_b[0].clone()];
        assert_eq!(s.select(0, 100, &both).len(), 2);
    }
}
