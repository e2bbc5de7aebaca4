//! One core's postings: for each label name, the ids of the series holding each of its
//! values. Names and values are the core's symbol numbers ([`super::symbols::Symbols`]), so
//! an entry is a value's number and its list, and a value only one series has (a pod name, an
//! instance, a container id) costs a sixteen-byte entry and a control byte.

use std::collections::HashMap;

use hashbrown::HashTable;

/// Series ids holding one label pair, with the pair's value number, in no particular order
/// (ids are reused). Nearly every list of a high-cardinality label has one id, kept inline.
// The box makes the field one thin pointer, where a `Vec` would take three words.
#[allow(clippy::box_collection)]
#[derive(Debug, Clone)]
pub(crate) enum Ids {
    One { value: u32, id: u32 },
    Many { value: u32, ids: Box<Vec<u32>> },
}

impl Ids {
    pub fn as_slice(&self) -> &[u32] {
        match self {
            Ids::One { id, .. } => std::slice::from_ref(id),
            Ids::Many { ids, .. } => ids,
        }
    }

    /// The value's symbol number.
    fn value(&self) -> u32 {
        match self {
            Ids::One { value, .. } | Ids::Many { value, .. } => *value,
        }
    }

    /// Adds `id`, not on the list yet.
    pub fn push(&mut self, id: u32) {
        match self {
            Ids::One { value, id: a } => {
                *self = Ids::Many {
                    value: *value,
                    ids: Box::new(vec![*a, id]),
                }
            }
            Ids::Many { ids, .. } => ids.push(id),
        }
    }

    /// Keeps the ids `keep` accepts; returns whether any is left.
    pub fn retain(&mut self, keep: impl Fn(u32) -> bool) -> bool {
        match self {
            Ids::One { id, .. } => keep(*id),
            Ids::Many { value, ids: v } => {
                v.retain(|&i| keep(i));
                match v.as_slice() {
                    [] => false,
                    [one] => {
                        *self = Ids::One {
                            value: *value,
                            id: *one,
                        };
                        true
                    }
                    _ => {
                        if v.capacity() > 2 * v.len() {
                            v.shrink_to_fit();
                        }
                        true
                    }
                }
            }
        }
    }

    /// Heap bytes the list takes beyond its entry.
    fn heap_bytes(&self) -> usize {
        match self {
            Ids::One { .. } => 0,
            Ids::Many { ids, .. } => 24 + ids.capacity() * 4,
        }
    }
}

/// The table hash of a value number: its bits spread over the word, as the table takes its
/// bucket from the low bits and its tag from the high ones.
fn table_hash(value: u32) -> u64 {
    u64::from(value).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Label name → value → series ids, all by symbol number.
#[derive(Debug, Default)]
pub(crate) struct Postings {
    names: HashMap<u32, HashTable<Ids>>,
}

impl Postings {
    /// Indexes series `id` (not indexed yet) under each of its (name, value) `pairs`.
    pub fn add(&mut self, id: u32, pairs: impl IntoIterator<Item = (u32, u32)>) {
        for (name, value) in pairs {
            let table = self.names.entry(name).or_default();
            match table.find_mut(table_hash(value), |e| e.value() == value) {
                Some(ids) => ids.push(id),
                None => {
                    table.insert_unique(table_hash(value), Ids::One { value, id }, |e| {
                        table_hash(e.value())
                    });
                }
            }
        }
    }

    /// Removes the ids `gone` accepts from the lists of `pairs`, dropping lists left empty.
    pub fn remove(
        &mut self,
        pairs: impl IntoIterator<Item = (u32, u32)>,
        gone: &dyn Fn(u32) -> bool,
    ) {
        for (name, value) in pairs {
            let Some(table) = self.names.get_mut(&name) else {
                continue;
            };
            if let Ok(mut entry) = table.find_entry(table_hash(value), |e| e.value() == value)
                && !entry.get_mut().retain(|i| !gone(i))
            {
                entry.remove();
            }
            if table.is_empty() {
                self.names.remove(&name);
            }
        }
    }

    /// The series holding `name="value"`.
    pub fn get(&self, name: u32, value: u32) -> Option<&[u32]> {
        self.names
            .get(&name)?
            .find(table_hash(value), |e| e.value() == value)
            .map(Ids::as_slice)
    }

    /// Whether any series has the label named `name`.
    pub fn has_name(&self, name: u32) -> bool {
        self.names.contains_key(&name)
    }

    /// Every value number of label `name` with its series.
    pub fn values(&self, name: u32) -> impl Iterator<Item = (u32, &[u32])> + '_ {
        self.names
            .get(&name)
            .into_iter()
            .flat_map(|t| t.iter().map(|ids| (ids.value(), ids.as_slice())))
    }

    /// Heap bytes the postings take (tables and id lists).
    pub fn heap_bytes(&self) -> usize {
        self.names
            .values()
            .map(|t| {
                48 + t.capacity() * (std::mem::size_of::<Ids>() + 1)
                    + t.iter().map(Ids::heap_bytes).sum::<usize>()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_follow_their_series() {
        // Names 0 (job) and 1 (pod); values 10, 11 (jobs) and 20-22 (pods).
        let series: [[(u32, u32); 2]; 3] =
            [[(0, 10), (1, 20)], [(0, 10), (1, 21)], [(0, 11), (1, 22)]];
        let mut p = Postings::default();
        for (id, s) in series.iter().enumerate() {
            p.add(id as u32, s.iter().copied());
        }
        assert_eq!(p.get(0, 10), Some(&[0, 1][..]));
        assert_eq!(p.get(1, 22), Some(&[2][..]));
        assert_eq!(p.get(1, 23), None);
        let mut jobs: Vec<(u32, Vec<u32>)> =
            p.values(0).map(|(v, ids)| (v, ids.to_vec())).collect();
        jobs.sort();
        assert_eq!(jobs, vec![(10, vec![0, 1]), (11, vec![2])]);

        // Series 0 goes: its unique pod value goes with it.
        p.remove(series[0].iter().copied(), &|i| i == 0);
        assert_eq!(p.get(0, 10), Some(&[1][..]));
        assert_eq!(p.get(1, 20), None);
        p.remove(series[2].iter().copied(), &|i| i == 2);
        assert_eq!(p.values(0).count(), 1);
        assert!(p.has_name(1));
        p.remove(series[1].iter().copied(), &|i| i == 1);
        assert!(!p.has_name(0));
    }
}
