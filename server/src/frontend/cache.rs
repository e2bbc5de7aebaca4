//! The results cache of range queries, as Thanos's query frontend keeps it: per split part,
//! under a key of tenant, query, step and the part's split interval, a list of extents
//! (time windows already answered, with their answers). A request takes what its extents
//! cover and asks the querier only for the rest; the newest `max_freshness` is never kept,
//! since the data of the last minutes may still change.
//!
//! The same stores keep whole answers of label and series calls ([`Cached::Body`]) for the
//! labels cache (`--labels.response-cache-config`), under keys of their own.
//!
//! The store is in memory (`type: IN-MEMORY`): least recently used entries go first when
//! `max_size` bytes or `max_size_items` entries are passed; an entry older than `validity`
//! (when not 0) is not used. Or it is memcached or Redis ([`super::remote_cache`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::merge::{self, Matrix};

/// An extent's smallest useful length, ms: a tiny cached piece of a larger request is asked
/// again whole rather than kept (Cortex's `minCacheExtent`).
pub const MIN_EXTENT_MS: i64 = 5 * 60_000;

/// A time window of a part already answered, both ends inclusive (ms), and its answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Extent {
    /// First timestamp covered, ms.
    pub start: i64,
    /// Last timestamp covered, ms.
    pub end: i64,
    /// The answer over `[start, end]`.
    pub answer: Matrix,
}

/// What an entry holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Cached {
    /// A range-query part's extents.
    Extents(Vec<Extent>),
    /// A label or series answer, as the querier wrote it.
    Body(Bytes),
}

impl Cached {
    /// Bytes the entry takes in memory, about.
    fn size(&self) -> usize {
        match self {
            Cached::Extents(extents) => {
                extents.iter().map(|e| merge::size_of(&e.answer) + 16).sum()
            }
            Cached::Body(b) => b.len(),
        }
    }
}

/// What identifies one part's cache entry: everything that changes a range query's answer.
#[derive(Debug, Clone, Default)]
pub struct KeyParts<'a> {
    /// The tenant (Thanos's `THANOS-TENANT` header, or the default tenant).
    pub tenant: &'a str,
    /// The PromQL expression.
    pub query: &'a str,
    /// The step, ms.
    pub step: i64,
    /// The split interval, ms.
    pub split_interval: i64,
    /// The part's start, ms: the entry is the one of its split interval.
    pub start: i64,
    /// The part's shard as Thanos keys it (`total:index`), empty when not sharded: a shard's
    /// answer holds only its own series, so it is cached apart from the whole and from the
    /// other shards.
    pub shard: &'a str,
    /// `max_source_resolution`, `lookback_delta`, `engine`, `partial_response`,
    /// `replicaLabels[]` and `analyze` as the request gave them.
    pub options: &'a str,
}

/// The cache key of a part, as Thanos's key generator lays it out (`fe:` tenant, query, step,
/// split interval, the interval's number, the shard, then the options).
pub fn key(k: &KeyParts<'_>) -> String {
    let current = if k.split_interval > 0 {
        k.start.div_euclid(k.split_interval)
    } else {
        0
    };
    format!(
        "fe:{}:{}:{}:{}:{}:{}:{}",
        k.tenant, k.query, k.step, k.split_interval, current, k.shard, k.options
    )
}

/// The pieces of `[start, end]` (ms) the querier must be asked for, and the parts of the
/// cached `extents` (sorted by start) that answer the rest. A piece asked shares its edge
/// steps with the extents around it; merging keeps one point per timestamp.
pub fn partition(start: i64, end: i64, extents: &[Extent]) -> (Vec<(i64, i64)>, Vec<Matrix>) {
    let mut asks = Vec::new();
    let mut cached = Vec::new();
    let mut from = start;
    for e in extents {
        if e.end < from || e.start > end {
            continue;
        }
        // A tiny extent inside a larger request is not worth a separate ask around it.
        if start != end && end - start > MIN_EXTENT_MS && e.end - e.start < MIN_EXTENT_MS {
            continue;
        }
        if from < e.start {
            asks.push((from, e.start));
        }
        cached.push(merge::extract(&e.answer, from, end));
        from = e.end;
    }
    if from < end {
        asks.push((from, end));
    }
    if start == end && cached.is_empty() {
        asks.push((start, end));
    }
    (asks, cached)
}

/// `extents` sorted and joined where they overlap or touch (within a `step`).
pub fn merge_extents(mut extents: Vec<Extent>, step: i64) -> Vec<Extent> {
    extents.sort_by_key(|e| e.start);
    let mut out: Vec<Extent> = Vec::with_capacity(extents.len());
    for e in extents {
        match out.last_mut() {
            Some(acc) if acc.end + step >= e.start => {
                if e.end > acc.end {
                    acc.end = e.end;
                    let joined = merge::merge([std::mem::take(&mut acc.answer), e.answer]);
                    acc.answer = joined;
                }
            }
            _ => out.push(e),
        }
    }
    out
}

/// `extents` cut to end at `max_time` (ms, moved down onto the step grid): what is newer
/// may still change and is not kept. Extents left empty are dropped.
pub fn drop_recent(extents: Vec<Extent>, max_time: i64, step: i64) -> Vec<Extent> {
    let max = if step > 0 {
        max_time.div_euclid(step) * step
    } else {
        max_time
    };
    extents
        .into_iter()
        .filter_map(|mut e| {
            if e.start > max {
                return None;
            }
            if e.end > max {
                e.answer = merge::extract(&e.answer, e.start, max);
                e.end = max;
            }
            Some(e)
        })
        .collect()
}

/// Where a frontend keeps its extents.
#[derive(Debug)]
pub enum ResultsCache {
    /// In the process.
    Memory(MemoryCache),
    /// In memcached or Redis.
    Remote(std::sync::Arc<super::remote_cache::RemoteCache>),
}

/// A cache's counters and size, for `/metrics` (a remote cache's size is its own to say).
#[derive(Debug, Default, Clone, Copy)]
pub struct CacheCounts {
    /// Lookups.
    pub gets: u64,
    /// Lookups that found an entry.
    pub hits: u64,
    /// Entries stored.
    pub added: u64,
    /// Entries pushed out for room.
    pub evicted: u64,
    /// Entries held.
    pub entries: usize,
    /// Bytes held.
    pub bytes: u64,
    /// Lookups and stores that failed.
    pub failures: u64,
    /// Stores skipped.
    pub skipped: u64,
}

impl ResultsCache {
    /// The extents stored under `key`, if any.
    pub async fn get(&self, key: &str) -> Option<Vec<Extent>> {
        match self.get_value(key).await? {
            Cached::Extents(e) => Some(e),
            Cached::Body(_) => None,
        }
    }

    /// Stores `extents` under `key` (a remote cache in the background).
    pub fn put(&self, key: &str, extents: Vec<Extent>) {
        self.put_value(key, Cached::Extents(extents));
    }

    /// The answer stored under `key`, if any.
    pub async fn get_body(&self, key: &str) -> Option<Bytes> {
        match self.get_value(key).await? {
            Cached::Body(b) => Some(b),
            Cached::Extents(_) => None,
        }
    }

    /// Stores the answer `body` under `key` (a remote cache in the background).
    pub fn put_body(&self, key: &str, body: Bytes) {
        self.put_value(key, Cached::Body(body));
    }

    async fn get_value(&self, key: &str) -> Option<Cached> {
        match self {
            ResultsCache::Memory(m) => m.get_value(key),
            ResultsCache::Remote(r) => r.get(key).await,
        }
    }

    fn put_value(&self, key: &str, value: Cached) {
        match self {
            ResultsCache::Memory(m) => m.put_value(key, value),
            ResultsCache::Remote(r) => r.put(key, &value),
        }
    }

    /// The counters now.
    pub fn counts(&self) -> CacheCounts {
        match self {
            ResultsCache::Memory(m) => {
                let (entries, bytes) = m.usage();
                CacheCounts {
                    gets: m.gets.load(Relaxed),
                    hits: m.hits.load(Relaxed),
                    added: m.added.load(Relaxed),
                    evicted: m.evicted.load(Relaxed),
                    entries,
                    bytes,
                    ..CacheCounts::default()
                }
            }
            ResultsCache::Remote(r) => CacheCounts {
                gets: r.gets.load(Relaxed),
                hits: r.hits.load(Relaxed),
                added: r.added.load(Relaxed),
                failures: r.failures.load(Relaxed),
                skipped: r.skipped.load(Relaxed),
                ..CacheCounts::default()
            },
        }
    }
}

/// The in-memory store of extents, bounded in bytes and entries.
#[derive(Debug)]
pub struct MemoryCache {
    max_bytes: u64,
    max_items: usize,
    validity: Option<Duration>,
    inner: Mutex<Lru>,
    /// Lookups and the ones that found a usable entry.
    pub gets: AtomicU64,
    /// Lookups that found a usable entry.
    pub hits: AtomicU64,
    /// Entries stored.
    pub added: AtomicU64,
    /// Entries pushed out for room.
    pub evicted: AtomicU64,
}

#[derive(Debug, Default)]
struct Lru {
    entries: HashMap<String, Entry>,
    /// Entries by their last use.
    order: BTreeMap<u64, String>,
    tick: u64,
    bytes: u64,
}

#[derive(Debug)]
struct Entry {
    value: Cached,
    bytes: u64,
    stored: Instant,
    used: u64,
}

impl MemoryCache {
    /// A cache of at most `max_bytes` (0: no bound) and `max_items` entries (0: no bound),
    /// each usable for `validity` after it is stored (`None`: for ever).
    pub fn new(max_bytes: u64, max_items: usize, validity: Option<Duration>) -> MemoryCache {
        MemoryCache {
            max_bytes,
            max_items,
            validity,
            inner: Mutex::new(Lru::default()),
            gets: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            added: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
        }
    }

    /// The extents stored under `key`, if any and still valid.
    pub fn get(&self, key: &str) -> Option<Vec<Extent>> {
        match self.get_value(key)? {
            Cached::Extents(e) => Some(e),
            Cached::Body(_) => None,
        }
    }

    /// Stores `extents` under `key`, pushing out the least recently used entries for room.
    pub fn put(&self, key: &str, extents: Vec<Extent>) {
        self.put_value(key, Cached::Extents(extents));
    }

    /// The entry under `key`, if any and still valid.
    fn get_value(&self, key: &str) -> Option<Cached> {
        self.gets.fetch_add(1, Relaxed);
        let mut lru = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let expired = match lru.entries.get(key) {
            None => return None,
            Some(e) => self.validity.is_some_and(|v| e.stored.elapsed() > v),
        };
        if expired {
            lru.remove(key);
            return None;
        }
        lru.tick += 1;
        let tick = lru.tick;
        let e = lru.entries.get_mut(key)?;
        let old = std::mem::replace(&mut e.used, tick);
        let value = e.value.clone();
        lru.order.remove(&old);
        lru.order.insert(tick, key.to_string());
        self.hits.fetch_add(1, Relaxed);
        Some(value)
    }

    /// Stores `value` under `key`, pushing out the least recently used entries for room.
    fn put_value(&self, key: &str, value: Cached) {
        // Kept answers get buffers of their own: a window cut from a larger answer does not
        // hold the rest of it in memory, uncounted.
        let value = match value {
            Cached::Extents(extents) => Cached::Extents(
                extents
                    .into_iter()
                    .map(|e| Extent {
                        answer: merge::compacted(&e.answer),
                        ..e
                    })
                    .collect(),
            ),
            body => body,
        };
        let bytes = (key.len() + value.size()) as u64;
        if self.max_bytes > 0 && bytes > self.max_bytes {
            return;
        }
        let mut lru = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        lru.remove(key);
        while !lru.entries.is_empty()
            && ((self.max_bytes > 0 && lru.bytes + bytes > self.max_bytes)
                || (self.max_items > 0 && lru.entries.len() >= self.max_items))
        {
            let Some((_, oldest)) = lru.order.pop_first() else {
                break;
            };
            if let Some(e) = lru.entries.remove(&oldest) {
                lru.bytes -= e.bytes;
                self.evicted.fetch_add(1, Relaxed);
            }
        }
        lru.tick += 1;
        let tick = lru.tick;
        lru.order.insert(tick, key.to_string());
        lru.bytes += bytes;
        lru.entries.insert(
            key.to_string(),
            Entry {
                value,
                bytes,
                stored: Instant::now(),
                used: tick,
            },
        );
        self.added.fetch_add(1, Relaxed);
    }

    /// Entries and bytes held now.
    pub fn usage(&self) -> (usize, u64) {
        let lru = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        (lru.entries.len(), lru.bytes)
    }
}

impl Lru {
    fn remove(&mut self, key: &str) {
        if let Some(e) = self.entries.remove(key) {
            self.order.remove(&e.used);
            self.bytes -= e.bytes;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: i64 = 60_000;

    fn matrix(points: &[i64]) -> Matrix {
        let values: Vec<serde_json::Value> = points
            .iter()
            .map(|t| serde_json::json!([*t as f64 / 1000.0, "1"]))
            .collect();
        let body = serde_json::json!({"status": "success", "data": {"resultType": "matrix",
            "result": [{"metric": {"job": "a"}, "values": values}]}});
        merge::parse(serde_json::to_vec(&body).unwrap()).unwrap()
    }

    fn extent(start: i64, end: i64) -> Extent {
        let pts: Vec<i64> = (start / M..=end / M).map(|i| i * M).collect();
        Extent {
            start,
            end,
            answer: matrix(&pts),
        }
    }

    #[test]
    fn partition_asks_only_what_the_extents_miss() {
        let extents = vec![extent(10 * M, 30 * M), extent(50 * M, 70 * M)];
        let (asks, cached) = partition(0, 80 * M, &extents);
        assert_eq!(asks, vec![(0, 10 * M), (30 * M, 50 * M), (70 * M, 80 * M)]);
        assert_eq!(cached.len(), 2);
    }

    #[test]
    fn partition_of_a_covered_request_asks_nothing() {
        let extents = vec![extent(0, 60 * M)];
        let (asks, cached) = partition(10 * M, 20 * M, &extents);
        assert!(asks.is_empty());
        let pts: Vec<i64> = cached[0]
            .series
            .values()
            .next()
            .unwrap()
            .values
            .iter()
            .map(|p| p.t)
            .collect();
        assert_eq!(pts.first(), Some(&(10 * M)));
        assert_eq!(pts.last(), Some(&(20 * M)));
    }

    #[test]
    fn partition_skips_tiny_extents_of_a_larger_request() {
        let extents = vec![extent(10 * M, 11 * M)];
        let (asks, cached) = partition(0, 60 * M, &extents);
        assert_eq!(asks, vec![(0, 60 * M)]);
        assert!(cached.is_empty());
    }

    #[test]
    fn touching_and_overlapping_extents_are_joined() {
        let joined = merge_extents(
            vec![
                extent(20 * M, 30 * M),
                extent(0, 10 * M),
                extent(11 * M, 19 * M),
            ],
            M,
        );
        assert_eq!(joined.len(), 1);
        assert_eq!((joined[0].start, joined[0].end), (0, 30 * M));
        let n = joined[0]
            .answer
            .series
            .values()
            .next()
            .unwrap()
            .values
            .len();
        assert_eq!(n, 31);
        let apart = merge_extents(vec![extent(0, 10 * M), extent(20 * M, 30 * M)], M);
        assert_eq!(apart.len(), 2);
    }

    #[test]
    fn recent_data_is_cut_from_extents() {
        let kept = drop_recent(
            vec![extent(0, 30 * M), extent(40 * M, 50 * M)],
            20 * M + 5,
            M,
        );
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].end, 20 * M);
        let n = kept[0].answer.series.values().next().unwrap().values.len();
        assert_eq!(n, 21);
    }

    #[test]
    fn the_key_names_tenant_query_step_and_split_interval() {
        let mut k = KeyParts {
            tenant: "t",
            query: "up",
            step: 15_000,
            split_interval: 3_600_000,
            start: 7_200_000 + 5,
            shard: "",
            options: "",
        };
        assert_eq!(key(&k), "fe:t:up:15000:3600000:2::");
        let whole = key(&k);
        k.shard = "4:1";
        assert_eq!(key(&k), "fe:t:up:15000:3600000:2:4:1:");
        k.shard = "4:2";
        assert_ne!(key(&k), "fe:t:up:15000:3600000:2:4:1:");
        k.shard = "";
        assert_eq!(key(&k), whole);
        let same_interval = key(&k);
        k.start = 7_200_000 + 3_000_000;
        assert_eq!(key(&k), same_interval);
        k.start = 10_800_000;
        assert_ne!(key(&k), same_interval);
        k.tenant = "u";
        k.start = 7_200_000;
        assert_ne!(key(&k), same_interval);
    }

    #[test]
    fn the_least_recently_used_entry_goes_first() {
        let c = MemoryCache::new(0, 2, None);
        c.put("a", vec![extent(0, M)]);
        c.put("b", vec![extent(0, M)]);
        assert!(c.get("a").is_some());
        c.put("c", vec![extent(0, M)]);
        assert!(c.get("b").is_none());
        assert!(c.get("a").is_some());
        assert!(c.get("c").is_some());
        assert_eq!(c.usage().0, 2);
    }

    #[test]
    fn an_entry_past_its_validity_is_not_used() {
        let c = MemoryCache::new(0, 0, Some(Duration::from_millis(1)));
        c.put("a", vec![extent(0, M)]);
        std::thread::sleep(Duration::from_millis(5));
        assert!(c.get("a").is_none());
        assert_eq!(c.usage().0, 0);
    }
}
