//! A head series' label set in one allocation: each name and value as a uvarint length and
//! its bytes, in label order (the pairs of a WAL series record). A million series each
//! holding eight labels as separate strings would spend most of the head's memory on string
//! headers; this form costs the text, a byte or two per string and one pointer.

use crate::encoding::{put_uvarint, read_uvarint32};
use crate::labels::{Label, Labels};

/// A label set sorted by name, packed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SeriesLabels(Box<[u8]>);

impl SeriesLabels {
    /// Packs `pairs` (sorted by name, unique names: the caller's invariant).
    #[cfg(test)]
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

    /// The pairs as raw bytes, in order.
    fn raw(&self) -> RawPairs<'_> {
        RawPairs { buf: &self.0 }
    }

    /// The pairs (name, value), in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + Clone + '_ {
        self.raw().map(|(n, v)| (as_str(n), as_str(v)))
    }

    /// The pairs (name, value) as bytes, in order (each was UTF-8 when packed).
    pub fn raw_pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.raw()
    }

    /// The value of label `name` as bytes, if the set has it.
    pub fn get_raw(&self, name: &[u8]) -> Option<&[u8]> {
        self.raw().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The value of label `name`, if the set has it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.raw()
            .find(|(n, _)| *n == name.as_bytes())
            .map(|(_, v)| as_str(v))
    }

    /// The label set as the query path's [`Labels`].
    pub fn to_labels(&self) -> Labels {
        Labels::from_sorted(self.iter().map(|(n, v)| Label::new(n, v)).collect())
    }

    /// Prometheus's hash of the set ([`crate::labels::hash_pairs`]).
    pub fn hash(&self) -> u64 {
        crate::labels::hash_byte_pairs(self.raw())
    }

    /// Heap bytes the set takes.
    pub fn heap_bytes(&self) -> usize {
        self.0.len()
    }
}

/// The packed bytes were all written from `&str`s, so each string is valid UTF-8; a failure
/// would be a bug, and reads as an empty string rather than a panic on a serving thread.
fn as_str(b: &[u8]) -> &str {
    debug_assert!(std::str::from_utf8(b).is_ok());
    std::str::from_utf8(b).unwrap_or_default()
}

#[derive(Clone)]
struct RawPairs<'a> {
    buf: &'a [u8],
}

/// The next length-prefixed string of `buf`, moving `buf` past it (label lookups walk these
/// strings for every series indexed; lengths take a byte or two).
#[inline]
fn take_string<'a>(buf: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (len, n) = read_uvarint32(buf).ok()?;
    let rest = &buf[n..];
    let s = rest.get(..len as usize)?;
    *buf = &rest[len as usize..];
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
        assert_eq!(l.get("job"), Some(long.as_str()));
        assert_eq!(l.get("a"), Some(""));
        assert_eq!(l.get("b"), None);
        assert_eq!(l.hash(), crate::labels::hash_pairs(pairs));
        assert_eq!(l.to_labels(), Labels::from_pairs(pairs));
        // The text is 320 bytes; each length takes a byte, the 300-byte one two.
        assert_eq!(l.heap_bytes(), 328);
        assert!(SeriesLabels::from_pairs([]).iter().next().is_none());
    }
}
