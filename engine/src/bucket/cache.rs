//! A byte-budgeted cache of immutable byte ranges (postings lists, series entries, symbol
//! pages), evicting entries once the budget is exceeded with the second-chance (CLOCK) rule,
//! an approximation of least-recently-used that makes a hit one hash lookup and a bit set
//! instead of a reordering. Each engine core owns its own (no lock); its counters are atomics
//! so /metrics can read them from any thread.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
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

/// A multiply-rotate hasher for the cache's small fixed-size keys (SipHash's resistance to
/// chosen keys is not needed: keys are block ids and offsets, not client input).
#[derive(Debug, Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(w));
        }
    }

    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7C_C1_B7_27_22_0A_95);
    }

    #[inline]
    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }

    #[inline]
    fn write_u8(&mut self, v: u8) {
        self.write_u64(u64::from(v));
    }

    #[inline]
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }

    #[inline]
    fn write_u128(&mut self, v: u128) {
        self.write_u64(v as u64);
        self.write_u64((v >> 64) as u64);
    }
}

#[derive(Debug)]
struct Slot<K> {
    key: K,
    value: Bytes,
    /// Used since the hand last passed.
    used: bool,
}

/// A cache whose entries' byte sizes sum to at most `budget` bytes.
#[derive(Debug)]
pub struct ByteCache<K> {
    budget: u64,
    map: HashMap<K, usize, BuildHasherDefault<KeyHasher>>,
    slots: Vec<Option<Slot<K>>>,
    free: Vec<usize>,
    hand: usize,
    bytes: u64,
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
            map: HashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            hand: 0,
            bytes: 0,
            stats,
        }
    }

    /// The cached value of `k`, marking it used.
    pub fn get(&mut self, k: &K) -> Option<Bytes> {
        match self.map.get(k) {
            Some(&i) => {
                let slot = self.slots[i]
                    .as_mut()
                    .unwrap_or_else(|| unreachable!("mapped slots are filled"));
                slot.used = true;
                self.stats.hits.fetch_add(1, Relaxed);
                Some(slot.value.clone())
            }
            None => {
                self.stats.misses.fetch_add(1, Relaxed);
                None
            }
        }
    }

    /// Stores `v` under `k`, evicting other entries to stay within budget; values larger than
    /// the whole budget are not stored. The value should own its bytes (not be a slice of a
    /// larger buffer), or the cache holds more memory than it counts.
    pub fn insert(&mut self, k: K, v: Bytes) {
        let size = v.len() as u64;
        if size > self.budget {
            return;
        }
        if let Some(&i) = self.map.get(&k) {
            let slot = self.slots[i]
                .as_mut()
                .unwrap_or_else(|| unreachable!("mapped slots are filled"));
            self.bytes = self.bytes - slot.value.len() as u64 + size;
            slot.value = v;
        } else {
            let slot = Slot {
                key: k.clone(),
                value: v,
                used: false,
            };
            let i = match self.free.pop() {
                Some(i) => {
                    self.slots[i] = Some(slot);
                    i
                }
                None => {
                    self.slots.push(Some(slot));
                    self.slots.len() - 1
                }
            };
            self.map.insert(k, i);
            self.bytes += size;
        }
        self.evict();
        self.stats.bytes.store(self.bytes, Relaxed);
        self.stats.items.store(self.map.len() as u64, Relaxed);
    }

    fn evict(&mut self) {
        while self.bytes > self.budget && !self.map.is_empty() {
            if self.hand >= self.slots.len() {
                self.hand = 0;
            }
            let i = self.hand;
            self.hand += 1;
            let Some(slot) = self.slots[i].as_mut() else {
                continue;
            };
            if slot.used {
                slot.used = false;
                continue;
            }
            if let Some(slot) = self.slots[i].take() {
                self.map.remove(&slot.key);
                self.bytes -= slot.value.len() as u64;
                self.free.push(i);
                self.stats.evictions.fetch_add(1, Relaxed);
            }
        }
    }

    /// Drops every entry whose key `keep` rejects (a block no longer served).
    pub fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) {
        for i in 0..self.slots.len() {
            let drop = self.slots[i].as_ref().is_some_and(|s| !keep(&s.key));
            if drop && let Some(slot) = self.slots[i].take() {
                self.map.remove(&slot.key);
                self.bytes -= slot.value.len() as u64;
                self.free.push(i);
            }
        }
        self.stats.bytes.store(self.bytes, Relaxed);
        self.stats.items.store(self.map.len() as u64, Relaxed);
    }

    /// Bytes held now.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.map.len()
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
    fn stays_within_budget_and_evicts_entries_not_used_recently() {
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
