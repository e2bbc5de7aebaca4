//! One core's symbol table: every label name and value its series hold, each text kept once
//! and named by a small number. Most label text repeats (names, metric names, jobs,
//! namespaces, a node's instance on a few hundred series), so a series keeps the numbers of
//! its pairs instead of their text, and the postings key on them. A symbol counts the series
//! holding it and is dropped with the last one; its number is then handed out again.

use hashbrown::HashTable;

/// One symbol: its text and how many series hold it (once per pair it appears in).
#[derive(Debug)]
struct Symbol {
    /// Empty for a number not in use.
    text: Box<[u8]>,
    refs: u32,
}

/// A symbol in the lookup table: its number and the low half of its text's hash, from which
/// the table's own hash is rebuilt when it grows (no text is read then).
#[derive(Debug, Clone, Copy)]
struct Entry {
    id: u32,
    fingerprint: u32,
}

/// Texts ↔ numbers, with reference counts.
#[derive(Debug, Default)]
pub(crate) struct Symbols {
    symbols: Vec<Symbol>,
    /// Numbers of dropped symbols, handed out again first.
    free: Vec<u32>,
    by_text: HashTable<Entry>,
    /// Bytes of text held.
    text_bytes: usize,
}

/// The low 32 bits of a text's hash.
fn fingerprint(text: &[u8]) -> u32 {
    xxhash_rust::xxh64::xxh64(text, 0) as u32
}

/// The table hash of a fingerprint: its bits spread over the word, as the table takes its
/// bucket from the low bits and its tag from the high ones.
fn table_hash(fingerprint: u32) -> u64 {
    u64::from(fingerprint).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

impl Symbols {
    /// The text of symbol `id` (empty for a number not in use).
    #[inline]
    pub fn text(&self, id: u32) -> &[u8] {
        self.symbols.get(id as usize).map_or(&[], |s| &s.text)
    }

    /// The number of `text`, if a series holds it.
    pub fn lookup(&self, text: &[u8]) -> Option<u32> {
        let fp = fingerprint(text);
        self.by_text
            .find(table_hash(fp), |e| {
                e.fingerprint == fp && *self.symbols[e.id as usize].text == *text
            })
            .map(|e| e.id)
    }

    /// The number of `text`, made if needed, with one more reference.
    pub fn intern(&mut self, text: &[u8]) -> u32 {
        let fp = fingerprint(text);
        let Symbols {
            symbols,
            free,
            by_text,
            text_bytes,
        } = self;
        let found = by_text.find(table_hash(fp), |e| {
            e.fingerprint == fp && *symbols[e.id as usize].text == *text
        });
        if let Some(e) = found {
            symbols[e.id as usize].refs += 1;
            return e.id;
        }
        let symbol = Symbol {
            text: text.into(),
            refs: 1,
        };
        *text_bytes += text.len();
        let id = match free.pop() {
            Some(id) => {
                symbols[id as usize] = symbol;
                id
            }
            None => {
                symbols.push(symbol);
                (symbols.len() - 1) as u32
            }
        };
        by_text.insert_unique(
            table_hash(fp),
            Entry {
                id,
                fingerprint: fp,
            },
            |e| table_hash(e.fingerprint),
        );
        id
    }

    /// Drops one reference to symbol `id`, and the symbol with its last.
    pub fn release(&mut self, id: u32) {
        let Some(s) = self.symbols.get_mut(id as usize) else {
            return;
        };
        debug_assert!(s.refs > 0, "symbol {id} released more often than interned");
        s.refs = s.refs.saturating_sub(1);
        if s.refs > 0 {
            return;
        }
        let text = std::mem::take(&mut s.text);
        self.text_bytes -= text.len();
        let fp = fingerprint(&text);
        if let Ok(e) = self.by_text.find_entry(table_hash(fp), |e| e.id == id) {
            e.remove();
        }
        self.free.push(id);
    }

    /// Number of symbols held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.symbols.len() - self.free.len()
    }

    /// Heap bytes the table takes: texts, records, the lookup table and the free list.
    pub fn heap_bytes(&self) -> usize {
        self.text_bytes
            + self.symbols.capacity() * std::mem::size_of::<Symbol>()
            + self.by_text.capacity() * (std::mem::size_of::<Entry>() + 1)
            + self.free.capacity() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_kept_once_and_dropped_with_their_last_reference() {
        let mut s = Symbols::default();
        let job = s.intern(b"job");
        assert_eq!(s.intern(b"job"), job);
        let node = s.intern(b"node");
        let empty = s.intern(b"");
        assert_ne!(job, node);
        assert_eq!(s.text(node), b"node");
        assert_eq!(s.text(empty), b"");
        assert_eq!(s.lookup(b"job"), Some(job));
        assert_eq!(s.lookup(b"jobs"), None);
        assert_eq!(s.len(), 3);

        s.release(job);
        assert_eq!(s.lookup(b"job"), Some(job));
        s.release(job);
        assert_eq!(s.lookup(b"job"), None);
        assert_eq!(s.len(), 2);
        // The number is handed out again, to another text.
        assert_eq!(s.intern(b"pod"), job);
        assert_eq!(s.text(job), b"pod");
        assert_eq!(s.lookup(b"node"), Some(node));
    }

    #[test]
    fn many_symbols_survive_the_table_growing() {
        let mut s = Symbols::default();
        let ids: Vec<u32> = (0..10_000)
            .map(|i| s.intern(format!("v{i}").as_bytes()))
            .collect();
        for (i, &id) in ids.iter().enumerate() {
            assert_eq!(s.lookup(format!("v{i}").as_bytes()), Some(id));
            assert_eq!(s.text(id), format!("v{i}").as_bytes());
        }
        for &id in &ids[..5_000] {
            s.release(id);
        }
        assert_eq!(s.len(), 5_000);
        assert_eq!(s.lookup(b"v0"), None);
        assert_eq!(s.lookup(b"v9999"), Some(ids[9_999]));
        assert!(s.heap_bytes() > 5_000 * 5);
    }
}
