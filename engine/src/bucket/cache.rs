//! A byte-budgeted cache of immutable byte ranges (postings lists, series entries), evicting
//! the least recently used entries once the budget is exceeded. Each engine core owns its own
//! (no lock); its counters are atomics so /metrics can read them from any thread.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use bytes::Bytes;

/// Counters of a cache since start.
#[derive(Debug, Default)]
pub struct CacheStats {
    /// Lookups that found the entry.
    pub hits: AtomicU64,
    /// Lookups that did not.
    pub misses: AtomicU64,
    /// Entries evicted to stay under budget.
    pub evictions: AtomicU64,
    /// Bytes held now.
    pub bytes: AtomicU64,
    /// Entries held now.
    pub items: AtomicU64,
}

#[derive(Debug)]
struct Inner<K> {
    map: HashMap<K, (Bytes, u64)>,
    /// Use stamp → key; the first entry is the least recently used.
    order: BTreeMap<u64, K>,
    next: u64,
    bytes: u64,
}

/// An LRU cache whose entries' byte sizes sum to at most `budget` bytes.
#[derive(Debug)]
pub struct ByteCache<K> {
    budget: u64,
    inner: Inner<K>,
    stats: Arc<CacheStats>,
}

impl<K: Hash + Eq + Clone> ByteCache<K> {
    /// A cache holding at most `budget` bytes of values; 0 disables caching.
    pub fn new(budget: u64) -> Self {
        Self::with_stats(budget, Arc::default())
    }

    /// A cache counting into `stats` (shared with whoever exports them).
    pub fn with_stats(budget: u64, stats: Arc<CacheStats>) -> Self {
        ByteCache {
            budget,
            inner: Inner {
                map: HashMap::new(),
                order: BTreeMap::new(),
                next: 0,
                bytes: 0,
            },
            stats,
        }
    }

    /// The cached value of `k`, marking it recently used.
    pub fn get(&mut self, k: &K) -> Option<Bytes> {
        let inner = &mut self.inner;
        let stamp = inner.next;
        match inner.map.get_mut(k) {
            Some((v, s)) => {
                inner.order.remove(s);
                *s = stamp;
                inner.order.insert(stamp, k.clone());
                inner.next += 1;
                self.stats.hits.fetch_add(1, Relaxed);
                Some(v.clone())
            }
            None => {
                self.stats.misses.fetch_add(1, Relaxed);
                None
            }
        }
    }

    /// Stores `v` under `k`, evicting older entries to stay within budget; values larger than
    /// the whole budget are not stored. The value should own its bytes (not be a slice of a
    /// larger buffer), or the cache holds more memory than it counts.
    pub fn insert(&mut self, k: K, v: Bytes) {
        let size = v.len() as u64;
        if size > self.budget {
            return;
        }
        let inner = &mut self.inner;
        let stamp = inner.next;
        inner.next += 1;
        if let Some((old, s)) = inner.map.insert(k.clone(), (v, stamp)) {
            inner.order.remove(&s);
            inner.bytes -= old.len() as u64;
        }
        inner.order.insert(stamp, k);
        inner.bytes += size;
        while inner.bytes > self.budget {
            let Some((_, victim)) = inner.order.pop_first() else {
                break;
            };
            if let Some((v, _)) = inner.map.remove(&victim) {
                inner.bytes -= v.len() as u64;
                self.stats.evictions.fetch_add(1, Relaxed);
            }
        }
        self.stats.bytes.store(inner.bytes, Relaxed);
        self.stats.items.store(inner.map.len() as u64, Relaxed);
    }

    /// Drops every entry whose key `keep` rejects (a block no longer served).
    pub fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) {
        let inner = &mut self.inner;
        inner.map.retain(|k, (v, s)| {
            let kept = keep(k);
            if !kept {
                inner.bytes -= v.len() as u64;
                inner.order.remove(s);
            }
            kept
        });
        self.stats.bytes.store(inner.bytes, Relaxed);
        self.stats.items.store(inner.map.len() as u64, Relaxed);
    }

    /// Bytes held now.
    pub fn bytes(&self) -> u64 {
        self.inner.bytes
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.inner.map.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The byte budget.
    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// Hit, miss, eviction and size counters.
    pub fn stats(&self) -> &Arc<CacheStats> {
        &self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_within_budget_and_evicts_least_recently_used() {
        let mut c: ByteCache<u32> = ByteCache::new(100);
        c.insert(1, Bytes::from(vec![0; 40]));
        c.insert(2, Bytes::from(vec![0; 40]));
        assert!(c.get(&1).is_some());
        c.insert(3, Bytes::from(vec![0; 40]));
        assert_eq!(c.bytes(), 80);
        assert!(c.get(&2).is_none(), "2 was least recently used");
        assert!(c.get(&1).is_some() && c.get(&3).is_some());
        c.insert(4, Bytes::from(vec![0; 101]));
        assert!(c.get(&4).is_none(), "larger than the budget: not stored");
        c.insert(1, Bytes::from(vec![0; 10]));
        assert_eq!(c.bytes(), 50);
        assert_eq!(c.stats().evictions.load(Relaxed), 1);
        assert_eq!(c.stats().bytes.load(Relaxed), 50);
        c.retain(|k| *k != 1);
        assert_eq!((c.bytes(), c.len()), (40, 1));
        let mut off: ByteCache<u32> = ByteCache::new(0);
        off.insert(1, Bytes::from_static(b"x"));
        assert!(off.is_empty());
    }
}
