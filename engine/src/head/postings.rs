//! One core's postings: for each label name, the ids of the series holding each of its
//! values. A value's text is not kept here: it is read from the first series of its list
//! (every series on the list holds it), so a value only one series has (a pod name, an
//! instance, a container id) costs a sixteen-byte entry and a control byte, not a second copy
//! of its text. Each entry keeps 32 bits of its value's hash: the table grows without reading
//! a value, and a lookup reads one only when those bits match (for a value no series has yet,
//! nearly never).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use hashbrown::HashTable;

/// The label names a tenant's series hold, over all of its cores: for each name, how many
/// cores hold a series with it. The cores keep it as their postings gain and lose names, so a
/// reader asks it in place of a call to every core (each read of a tenant with external labels
/// asks whether a series carries one of their names).
#[derive(Debug, Default)]
pub(crate) struct SharedNames(RwLock<HashMap<Box<[u8]>, u32>>);

impl SharedNames {
    /// Whether any core holds a series with label `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(name.as_bytes())
    }

    fn gained(&self, name: &[u8]) {
        let mut names = self.0.write().unwrap_or_else(|p| p.into_inner());
        *names.entry(name.into()).or_default() += 1;
    }

    fn lost(&self, name: &[u8]) {
        let mut names = self.0.write().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = names.get_mut(name) {
            *n -= 1;
            if *n == 0 {
                names.remove(name);
            }
        }
    }
}

/// Series ids holding one label pair, in no particular order (ids are reused). Nearly every
/// list of a high-cardinality label has one id, kept inline.
// The box makes the field one thin pointer, where a `Vec` would take three words.
#[allow(clippy::box_collection)]
#[derive(Debug, Clone)]
pub(crate) enum Ids {
    One {
        fingerprint: u32,
        id: u32,
    },
    Many {
        fingerprint: u32,
        ids: Box<Vec<u32>>,
    },
}

impl Ids {
    pub fn as_slice(&self) -> &[u32] {
        match self {
            Ids::One { id, .. } => std::slice::from_ref(id),
            Ids::Many { ids, .. } => ids,
        }
    }

    /// The low 32 bits of the value's hash.
    fn fingerprint(&self) -> u32 {
        match self {
            Ids::One { fingerprint, .. } | Ids::Many { fingerprint, .. } => *fingerprint,
        }
    }

    /// The first id: a series whose labels hold the pair (lists are never empty).
    pub fn first(&self) -> u32 {
        self.as_slice()[0]
    }

    /// Adds `id`, not on the list yet.
    pub fn push(&mut self, id: u32) {
        match self {
            Ids::One { fingerprint, id: a } => {
                *self = Ids::Many {
                    fingerprint: *fingerprint,
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
            Ids::Many {
                fingerprint,
                ids: v,
            } => {
                v.retain(|&i| keep(i));
                match v.as_slice() {
                    [] => false,
                    [one] => {
                        *self = Ids::One {
                            fingerprint: *fingerprint,
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

/// Where the postings read the text of the values they index.
pub(crate) trait ValueSource {
    /// Label `name`'s value of series `id`.
    fn value(&self, id: u32, name: &[u8]) -> Option<&[u8]>;
}

/// The low 32 bits of a value's hash, which its entry keeps.
fn fingerprint(v: &[u8]) -> u32 {
    xxhash_rust::xxh64::xxh64(v, 0) as u32
}

/// The table hash of a fingerprint: its bits spread over the word, as the table takes its
/// bucket from the low bits and its tag from the high ones.
fn table_hash(fingerprint: u32) -> u64 {
    u64::from(fingerprint).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Whether an entry is the one of `name="value"`: its fingerprint first, the value itself
/// (read from a series on its list) only when that matches.
fn same_value<'a, S: ValueSource + ?Sized>(
    fp: u32,
    name: &'a [u8],
    value: &'a [u8],
    src: &'a S,
) -> impl Fn(&Ids) -> bool + 'a {
    move |ids| ids.fingerprint() == fp && src.value(ids.first(), name) == Some(value)
}

/// Label name → value → series ids.
#[derive(Debug, Default)]
pub(crate) struct Postings {
    /// Names and values as bytes: the series hold them as UTF-8 checked when they arrived, and
    /// building postings need not check them again.
    names: HashMap<Box<[u8]>, HashTable<Ids>>,
    /// Told of every name these postings gain or lose, when set.
    shared: Option<Arc<SharedNames>>,
}

impl Postings {
    /// Has these postings tell `shared` of the names they hold, now and as they change.
    pub fn share_names(&mut self, shared: Arc<SharedNames>) {
        for name in self.names.keys() {
            shared.gained(name);
        }
        if let Some(old) = self.shared.replace(shared) {
            for name in self.names.keys() {
                old.lost(name);
            }
        }
    }

    /// Indexes series `id` (not indexed yet) under each of its `pairs`.
    /// `src` must already answer for `id`.
    pub fn add<'a>(
        &mut self,
        id: u32,
        pairs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
        src: &(impl ValueSource + ?Sized),
    ) {
        for (name, value) in pairs {
            let table = match self.names.get_mut(name) {
                Some(t) => t,
                None => {
                    if let Some(shared) = &self.shared {
                        shared.gained(name);
                    }
                    self.names.entry(name.into()).or_default()
                }
            };
            let fp = fingerprint(value);
            match table.find_mut(table_hash(fp), same_value(fp, name, value, src)) {
                Some(ids) => ids.push(id),
                None => {
                    let entry = Ids::One {
                        fingerprint: fp,
                        id,
                    };
                    table.insert_unique(table_hash(fp), entry, |e| table_hash(e.fingerprint()));
                }
            }
        }
    }

    /// Removes the ids `gone` accepts from the lists of `pairs`, dropping lists left empty.
    /// `src` must still answer for every id on those lists.
    pub fn remove<'a>(
        &mut self,
        pairs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
        gone: &dyn Fn(u32) -> bool,
        src: &(impl ValueSource + ?Sized),
    ) {
        for (name, value) in pairs {
            let Some(table) = self.names.get_mut(name) else {
                continue;
            };
            let fp = fingerprint(value);
            if let Ok(entry) = table.find_entry(table_hash(fp), same_value(fp, name, value, src)) {
                let mut entry = entry;
                if !entry.get_mut().retain(|i| !gone(i)) {
                    entry.remove();
                }
            }
            if table.is_empty() {
                self.names.remove(name);
                if let Some(shared) = &self.shared {
                    shared.lost(name);
                }
            }
        }
    }

    /// The series holding `name="value"`.
    pub fn get(
        &self,
        name: &str,
        value: &str,
        src: &(impl ValueSource + ?Sized),
    ) -> Option<&[u32]> {
        let (name, value) = (name.as_bytes(), value.as_bytes());
        let table = self.names.get(name)?;
        let fp = fingerprint(value);
        table
            .find(table_hash(fp), same_value(fp, name, value, src))
            .map(Ids::as_slice)
    }

    /// Whether any series has label `name`.
    pub fn has_name(&self, name: &str) -> bool {
        self.names.contains_key(name.as_bytes())
    }

    /// Every value of `name` with its series.
    pub fn values<'s, S: ValueSource + ?Sized>(
        &'s self,
        name: &'s str,
        src: &'s S,
    ) -> impl Iterator<Item = (&'s str, &'s [u32])> + 's {
        let name = name.as_bytes();
        self.names.get(name).into_iter().flat_map(move |t| {
            t.iter().map(move |ids| {
                let value = src.value(ids.first(), name).unwrap_or_default();
                // Every value was UTF-8 checked when its series arrived.
                (
                    std::str::from_utf8(value).unwrap_or_default(),
                    ids.as_slice(),
                )
            })
        })
    }

    /// Heap bytes the postings take (names, tables and id lists).
    pub fn heap_bytes(&self) -> usize {
        self.names
            .iter()
            .map(|(n, t)| {
                n.len()
                    + 48
                    + t.capacity() * (std::mem::size_of::<Ids>() + 1)
                    + t.iter().map(Ids::heap_bytes).sum::<usize>()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        pairs.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes()))
    }

    #[test]
    fn lists_read_their_values_from_the_series() {
        struct Held(Vec<Vec<(&'static str, &'static str)>>);
        impl ValueSource for Held {
            fn value(&self, id: u32, name: &[u8]) -> Option<&[u8]> {
                let pairs = self.0.get(id as usize)?;
                let found = pairs.iter().find(|p| p.0.as_bytes() == name);
                found.map(|p| p.1.as_bytes())
            }
        }
        let series = vec![
            vec![("job", "a"), ("pod", "p0")],
            vec![("job", "a"), ("pod", "p1")],
            vec![("job", "b"), ("pod", "p2")],
        ];
        let held = Held(series.clone());
        let mut p = Postings::default();
        for (id, s) in series.iter().enumerate() {
            p.add(id as u32, bytes(s), &held);
        }
        assert_eq!(p.get("job", "a", &held), Some(&[0, 1][..]));
        assert_eq!(p.get("pod", "p2", &held), Some(&[2][..]));
        assert_eq!(p.get("pod", "p3", &held), None);
        let mut jobs: Vec<(&str, Vec<u32>)> = p
            .values("job", &held)
            .map(|(v, ids)| (v, ids.to_vec()))
            .collect();
        jobs.sort();
        assert_eq!(jobs, vec![("a", vec![0, 1]), ("b", vec![2])]);

        // Series 0 goes: its unique pod value goes with it, and job="a" is read from series 1.
        p.remove(bytes(&series[0]), &|i| i == 0, &held);
        assert_eq!(p.get("job", "a", &held), Some(&[1][..]));
        assert_eq!(p.get("pod", "p0", &held), None);
        p.remove(bytes(&series[2]), &|i| i == 2, &held);
        assert_eq!(p.values("job", &held).count(), 1);
        assert!(p.has_name("pod"));
        p.remove(bytes(&series[1]), &|i| i == 1, &held);
        assert!(!p.has_name("job"));
    }
}
