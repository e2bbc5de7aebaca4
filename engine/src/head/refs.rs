//! Series refs mapped to small values during WAL replay. Prometheus and Gauntlet both hand
//! out refs from a counter, so they are small and dense: a vector indexed by ref is several
//! times faster than hashing tens of millions of lookups. Refs past [`DENSE_REFS`] (a WAL from
//! some other writer) go to a map.

use std::collections::HashMap;

/// Refs below this are kept in the vector (64 Mi refs: at most 256 MiB for 4-byte values,
/// reached only by a WAL that declared that many series).
const DENSE_REFS: u64 = 1 << 26;

/// Series ref → `V`.
#[derive(Debug, Default)]
pub(crate) struct RefMap<V> {
    dense: Vec<Option<V>>,
    sparse: HashMap<u64, V>,
}

impl<V: Copy> RefMap<V> {
    pub fn insert(&mut self, r: u64, v: V) {
        if r < DENSE_REFS {
            let i = r as usize;
            if i >= self.dense.len() {
                self.dense.resize((i + 1).next_power_of_two(), None);
            }
            self.dense[i] = Some(v);
        } else {
            self.sparse.insert(r, v);
        }
    }

    pub fn get(&self, r: u64) -> Option<V> {
        if r < DENSE_REFS {
            self.dense.get(r as usize).copied().flatten()
        } else {
            self.sparse.get(&r).copied()
        }
    }

    pub fn contains(&self, r: u64) -> bool {
        self.get(r).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::RefMap;

    #[test]
    fn dense_and_sparse_refs() {
        let mut m = RefMap::default();
        for r in [0u64, 1, 5, 1000, 1 << 40, u64::MAX] {
            assert_eq!(m.get(r), None);
            m.insert(r, r as u32);
        }
        for r in [0u64, 1, 5, 1000, 1 << 40, u64::MAX] {
            assert_eq!(m.get(r), Some(r as u32));
        }
        assert!(!m.contains(6));
        m.insert(5, 7);
        assert_eq!(m.get(5), Some(7));
    }
}
