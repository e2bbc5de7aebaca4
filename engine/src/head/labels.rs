//! A head series' label set in two forms. [`SeriesLabels`]: each name and value as a uvarint
//! length and its bytes, in label order (the pairs of a WAL series record), the form requests
//! and the WAL carry. [`LabelRefs`]: the numbers of the same strings in the core's
//! [`Symbols`], the form a series keeps: a million series share most of their label text,
//! and a set of ten labels fits in the series record.

use super::symbols::Symbols;
use crate::encoding::{put_uvarint, read_uvarint};
use crate::labels::{Label, Labels};

/// A label set sorted by name, packed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SeriesLabels(Box<[u8]>);

impl SeriesLabels {
    /// Packs `pairs` (sorted by name, unique names: the caller's invariant).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut out = Vec::new();
        Self::pack_into(&mut out, pairs);
        SeriesLabels(out.into_boxed_slice())
    }

    /// Appends `pairs` packed to `out`: what [`SeriesLabels::packed`] gives back.
    pub fn pack_into<'a>(out: &mut Vec<u8>, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) {
        for (n, v) in pairs {
            put_uvarint(out, n.len() as u64);
            out.extend_from_slice(n.as_bytes());
            put_uvarint(out, v.len() as u64);
            out.extend_from_slice(v.as_bytes());
        }
    }

    /// A set from bytes [`SeriesLabels::pack_into`] wrote.
    pub fn from_packed(packed: &[u8]) -> Self {
        SeriesLabels(packed.into())
    }

    /// The packed bytes: two sets are equal exactly when these are.
    pub fn packed(&self) -> &[u8] {
        &self.0
    }

    /// Packs a label set.
    pub fn from_labels(labels: &Labels) -> Self {
        Self::from_pairs(labels.iter().map(|l| (l.name.as_str(), l.value.as_str())))
    }

    /// The pairs as raw bytes, in order.
    fn raw(&self) -> RawPairs<'_> {
        RawPairs { buf: &self.0 }
    }

    /// The pairs (name, value), in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + Clone + '_ {
        self.raw().map(|(n, v)| (as_str(n), as_str(v)))
    }

    /// Prometheus's hash of the set ([`crate::labels::hash_pairs`]).
    pub fn hash(&self) -> u64 {
        crate::labels::hash_byte_pairs(self.raw())
    }
}

/// Most bytes of symbol numbers kept in the series record itself.
const INLINE_REFS: usize = 22;

/// A label set sorted by name, as its names' and values' numbers in the core's [`Symbols`]
/// (uvarints, name then value, in label order). Ten pairs of symbols below 128 (the names and
/// the most common values) fit in the record; longer sets spill to the heap.
#[derive(Debug, Clone)]
pub(crate) enum LabelRefs {
    Inline { len: u8, bytes: [u8; INLINE_REFS] },
    Heap(Box<[u8]>),
}

impl LabelRefs {
    /// Interns every string of `packed` ([`SeriesLabels::packed`]) and keeps their numbers.
    pub fn intern(packed: &[u8], syms: &mut Symbols) -> Self {
        let mut out = Vec::with_capacity(INLINE_REFS);
        for (n, v) in (RawPairs { buf: packed }) {
            put_uvarint(&mut out, u64::from(syms.intern(n)));
            put_uvarint(&mut out, u64::from(syms.intern(v)));
        }
        if out.len() <= INLINE_REFS {
            let mut bytes = [0; INLINE_REFS];
            bytes[..out.len()].copy_from_slice(&out);
            LabelRefs::Inline {
                len: out.len() as u8,
                bytes,
            }
        } else {
            LabelRefs::Heap(out.into_boxed_slice())
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            LabelRefs::Inline { len, bytes } => &bytes[..usize::from(*len)],
            LabelRefs::Heap(b) => b,
        }
    }

    /// The (name, value) symbol numbers, in label order.
    #[inline]
    pub fn ids(&self) -> impl Iterator<Item = (u32, u32)> + Clone + '_ {
        let mut buf = self.bytes();
        std::iter::from_fn(move || Some((take_id(&mut buf)?, take_id(&mut buf)?)))
    }

    /// The pairs (name, value) as bytes, in order.
    pub fn raw_pairs<'a>(
        &'a self,
        syms: &'a Symbols,
    ) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + Clone + 'a {
        self.ids().map(|(n, v)| (syms.text(n), syms.text(v)))
    }

    /// The pairs (name, value), in order.
    pub fn iter<'a>(&'a self, syms: &'a Symbols) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.raw_pairs(syms).map(|(n, v)| (as_str(n), as_str(v)))
    }

    /// Whether the set is the one `packed` ([`SeriesLabels::packed`]) holds.
    #[inline]
    pub fn eq_packed(&self, syms: &Symbols, packed: &[u8]) -> bool {
        let mut theirs = RawPairs { buf: packed };
        for (n, v) in self.ids() {
            match theirs.next() {
                Some((tn, tv)) if syms.text(n) == tn && syms.text(v) == tv => {}
                _ => return false,
            }
        }
        theirs.buf.is_empty()
    }

    /// The value number of the label whose name is symbol `name`.
    #[inline]
    pub fn value_of(&self, name: u32) -> Option<u32> {
        self.ids().find(|&(n, _)| n == name).map(|(_, v)| v)
    }

    /// The value of label `name`, if the set has it.
    pub fn get<'a>(&'a self, syms: &'a Symbols, name: &str) -> Option<&'a str> {
        self.raw_pairs(syms)
            .find(|(n, _)| *n == name.as_bytes())
            .map(|(_, v)| as_str(v))
    }

    /// The label set as the query path's [`Labels`].
    pub fn to_labels(&self, syms: &Symbols) -> Labels {
        Labels::from_sorted(self.iter(syms).map(|(n, v)| Label::new(n, v)).collect())
    }

    /// Prometheus's hash of the set ([`crate::labels::hash_pairs`]).
    pub fn hash(&self, syms: &Symbols) -> u64 {
        crate::labels::hash_byte_pairs(self.raw_pairs(syms))
    }

    /// Gives back the set's references to its symbols.
    pub fn release(&self, syms: &mut Symbols) {
        for (n, v) in self.ids() {
            syms.release(n);
            syms.release(v);
        }
    }

    /// Heap bytes the set takes beyond the series record.
    pub fn heap_bytes(&self) -> usize {
        match self {
            LabelRefs::Inline { .. } => 0,
            LabelRefs::Heap(b) => b.len(),
        }
    }
}

/// The next symbol number of `buf`, moving `buf` past it.
#[inline]
fn take_id(buf: &mut &[u8]) -> Option<u32> {
    let (&first, rest) = buf.split_first()?;
    if first < 0x80 {
        *buf = rest;
        return Some(u32::from(first));
    }
    let (id, n) = read_uvarint(buf).ok()?;
    *buf = &buf[n..];
    u32::try_from(id).ok()
}

/// The packed bytes were all written from `&str`s, so each string is valid UTF-8; a failure
/// would be a bug, and reads as an empty string rather than a panic on a serving thread.
pub(crate) fn as_str(b: &[u8]) -> &str {
    debug_assert!(std::str::from_utf8(b).is_ok());
    std::str::from_utf8(b).unwrap_or_default()
}

#[derive(Clone)]
struct RawPairs<'a> {
    buf: &'a [u8],
}

/// The next length-prefixed string of `buf`, moving `buf` past it. Lengths under 128 (nearly
/// all) take one byte, read without the general varint decoder: label lookups walk these
/// strings for every series indexed.
#[inline]
fn take_string<'a>(buf: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (&first, rest) = buf.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let (len, n) = read_uvarint(buf).ok()?;
        (usize::try_from(len).ok()?, &buf[n..])
    };
    let s = rest.get(..len)?;
    *buf = &rest[len..];
    Some(s)
}

impl<'a> Iterator for RawPairs<'a> {
    type Item = (&'a [u8], &'a [u8]);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() {
            return None;
        }
        let n = take_string(&mut self.buf)?;
        let v = take_string(&mut self.buf)?;
        Some((n, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_round_trip_and_compare_as_bytes() {
        let long = "v".repeat(300);
        let pairs = [
            ("__name__", "up"),
            ("a", ""),
            ("job", long.as_str()),
            ("zé", "ü"),
        ];
        let l = SeriesLabels::from_pairs(pairs);
        assert_eq!(l.iter().collect::<Vec<_>>(), pairs);
        assert_eq!(SeriesLabels::from_packed(l.packed()), l);
        let mut two = Vec::new();
        SeriesLabels::pack_into(&mut two, pairs[..3].iter().copied());
        assert_ne!(two.as_slice(), l.packed());
        SeriesLabels::pack_into(&mut two, [("a", "b")]);
        assert_eq!(&two[..two.len() - 4], &l.packed()[..two.len() - 4]);
        assert_eq!(l.hash(), crate::labels::hash_pairs(pairs));
        // The text is 320 bytes; each length takes a byte, the 300-byte one two.
        assert_eq!(l.packed().len(), 328);
        assert!(SeriesLabels::from_pairs([]).iter().next().is_none());
    }

    #[test]
    fn symbol_numbers_stand_for_the_text_and_share_it() {
        let long = "v".repeat(300);
        let pairs = [
            ("__name__", "up"),
            ("a", ""),
            ("job", long.as_str()),
            ("zé", "ü"),
        ];
        let packed = SeriesLabels::from_pairs(pairs);
        let mut syms = Symbols::default();
        let l = LabelRefs::intern(packed.packed(), &mut syms);
        assert!(matches!(l, LabelRefs::Inline { .. }));
        assert_eq!(l.heap_bytes(), 0);
        assert_eq!(l.iter(&syms).collect::<Vec<_>>(), pairs);
        assert!(l.eq_packed(&syms, packed.packed()));
        let shorter = SeriesLabels::from_pairs(pairs[..3].iter().copied());
        assert!(!l.eq_packed(&syms, shorter.packed()));
        let mut longer = packed.packed().to_vec();
        SeriesLabels::pack_into(&mut longer, [("zz", "1")]);
        assert!(!l.eq_packed(&syms, &longer));
        let other = SeriesLabels::from_pairs([("__name__", "up"), ("a", "x")]);
        assert!(!l.eq_packed(&syms, other.packed()));
        assert_eq!(l.get(&syms, "job"), Some(long.as_str()));
        assert_eq!(l.get(&syms, "a"), Some(""));
        assert_eq!(l.get(&syms, "b"), None);
        let job = syms.lookup(b"job").unwrap();
        assert_eq!(l.value_of(job).map(|v| syms.text(v)), Some(long.as_bytes()));
        assert_eq!(l.hash(&syms), packed.hash());
        assert_eq!(l.to_labels(&syms), Labels::from_pairs(pairs));

        // A second set shares the text; each keeps it alive.
        let l2 = LabelRefs::intern(other.packed(), &mut syms);
        l.release(&mut syms);
        assert_eq!(syms.lookup(long.as_bytes()), None);
        assert_eq!(
            l2.iter(&syms).collect::<Vec<_>>(),
            [("__name__", "up"), ("a", "x")]
        );
        l2.release(&mut syms);
        assert_eq!(syms.len(), 0);
    }

    #[test]
    fn sets_past_the_record_spill_to_the_heap() {
        let names: Vec<String> = (0..200).map(|i| format!("l{i:03}")).collect();
        let pairs: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
        let packed = SeriesLabels::from_pairs(pairs.iter().copied());
        let mut syms = Symbols::default();
        let l = LabelRefs::intern(packed.packed(), &mut syms);
        // The value is number 1 and the names 0, 2, 3, …, 200: the 73 names past 127 take
        // two bytes.
        assert!(matches!(l, LabelRefs::Heap(_)));
        assert_eq!(l.heap_bytes(), 200 + 127 + 2 * 73);
        assert_eq!(l.iter(&syms).collect::<Vec<_>>(), pairs);
        assert!(l.eq_packed(&syms, packed.packed()));
    }
}
