//! Label sets and label matchers, ordered and compared exactly as Prometheus does.

mod go_regex;
mod matcher;

pub use go_regex::go_to_rust;
pub use matcher::{MatchType, Matcher, MatcherError, RegexShape};

use std::cmp::Ordering;
use std::fmt;

/// Name of the label that holds the metric name.
pub const METRIC_NAME: &str = "__name__";

pub use compact_str::CompactString;

/// One label: a name and a value.
///
/// Both are [`CompactString`]s, which keep up to 24 bytes inline: nearly every label name and
/// value fits, so building a label set per series costs one allocation (the vector) instead of
/// one per string. They order, hash and print as `str` does.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label {
    /// Label name.
    pub name: CompactString,
    /// Label value.
    pub value: CompactString,
}

impl Label {
    /// A label from anything string-like.
    pub fn new(name: impl Into<CompactString>, value: impl Into<CompactString>) -> Self {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }

    /// A label from raw name and value bytes, as stored in blocks and on the wire; invalid UTF-8
    /// is replaced with U+FFFD as `String::from_utf8_lossy` does.
    pub fn from_bytes(name: &[u8], value: &[u8]) -> Self {
        Label {
            name: compact_from_utf8_lossy(name),
            value: compact_from_utf8_lossy(value),
        }
    }
}

/// The matchers left for a source's own series once those naming one of its external labels
/// `ext` are decided against it (as Thanos's stores decide them), or `None` when an external
/// label rules the source out. When every matcher was on an external label, the source's
/// every series is asked for (`__name__=~".*"`).
pub fn external_matchers(ext: &Labels, matchers: &[Matcher]) -> Option<Vec<Matcher>> {
    let mut out = Vec::with_capacity(matchers.len());
    for m in matchers {
        match ext.get(&m.name) {
            Some(v) if !m.matches(v) => return None,
            Some(_) => {}
            None => out.push(m.clone()),
        }
    }
    if out.is_empty() {
        out.push(Matcher::new(MatchType::Regexp, METRIC_NAME, ".*").ok()?);
    }
    Some(out)
}

/// Prometheus's hash of a label set (`labels.Hash`): xxhash64 of every name and value, each
/// followed by a 0xFF byte, in label order. The head finds series by it and routes them to
/// their core with it.
pub fn hash_pairs<'a, I>(pairs: I) -> u64
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
    I::IntoIter: Clone,
{
    hash_byte_pairs(pairs.into_iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
}

/// [`hash_pairs`] over names and values as bytes.
pub fn hash_byte_pairs<'a>(pairs: impl Iterator<Item = (&'a [u8], &'a [u8])> + Clone) -> u64 {
    // Most label sets fit a small buffer, hashed in one call: the streaming hasher pays a
    // call and a copy for each of the four pieces of every label.
    let mut buf = [0u8; 512];
    let mut n = 0;
    for (a, b) in pairs.clone() {
        let end = n + a.len() + b.len() + 2;
        if end > buf.len() {
            return hash_pairs_streaming(pairs);
        }
        buf[n..n + a.len()].copy_from_slice(a);
        n += a.len();
        buf[n] = 0xFF;
        buf[n + 1..n + 1 + b.len()].copy_from_slice(b);
        buf[end - 1] = 0xFF;
        n = end;
    }
    xxhash_rust::xxh64::xxh64(&buf[..n], 0)
}

/// [`hash_pairs`] for label sets of any size.
fn hash_pairs_streaming<'a>(pairs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> u64 {
    let mut h = xxhash_rust::xxh64::Xxh64::new(0);
    for (n, v) in pairs {
        h.update(n);
        h.update(&[0xFF]);
        h.update(v);
        h.update(&[0xFF]);
    }
    h.digest()
}

/// `bytes` as a string, invalid UTF-8 replaced with U+FFFD. Valid input (the norm: symbol tables
/// are checked) is copied straight in, inline when it fits.
pub fn compact_from_utf8_lossy(bytes: &[u8]) -> CompactString {
    match std::str::from_utf8(bytes) {
        Ok(s) => CompactString::from(s),
        Err(_) => CompactString::from(String::from_utf8_lossy(bytes)),
    }
}

/// A label set sorted by name with unique names; compared pairwise (name, then value), a shorter
/// prefix sorting first, as Prometheus's `labels.Compare` does.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Labels(Vec<Label>);

impl Labels {
    /// An empty label set.
    pub fn empty() -> Self {
        Labels(Vec::new())
    }

    /// Builds a label set from pairs in any order; later duplicates of a name replace earlier ones.
    pub fn from_pairs<N: Into<CompactString>, V: Into<CompactString>>(
        pairs: impl IntoIterator<Item = (N, V)>,
    ) -> Self {
        Self::from_vec(pairs.into_iter().map(|(n, v)| Label::new(n, v)).collect())
    }

    /// A label set of labels in any order, as [`Labels::from_pairs`] takes them: later
    /// duplicates of a name replace earlier ones. Labels already sorted with unique names (the
    /// norm on the wire) are kept as they are.
    pub fn from_vec(mut v: Vec<Label>) -> Self {
        if v.windows(2).all(|w| w[0].name < w[1].name) {
            return Labels(v);
        }
        // Stable: equal names stay in their given order, and the last of each run is kept
        // (moved into the place of the first, which `dedup_by` retains).
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v.dedup_by(|later, kept| {
            let same = later.name == kept.name;
            if same {
                std::mem::swap(later, kept);
            }
            same
        });
        Labels(v)
    }

    /// Wraps labels that are already sorted by name with unique names.
    pub fn from_sorted(v: Vec<Label>) -> Self {
        debug_assert!(v.windows(2).all(|w| w[0].name < w[1].name));
        Labels(v)
    }

    /// The labels, sorted by name.
    pub fn as_slice(&self) -> &[Label] {
        &self.0
    }

    /// Consumes the set into its sorted labels.
    pub fn into_vec(self) -> Vec<Label> {
        self.0
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the set has no labels.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// These labels with the external labels `ext` attached, an external label replacing a
    /// label of the same name, as a store serves its series.
    pub fn with_external(&self, ext: &Labels) -> Labels {
        let mut v: Vec<Label> = self
            .iter()
            .filter(|x| ext.get(&x.name).is_none())
            .cloned()
            .collect();
        v.extend(ext.iter().cloned());
        v.sort();
        Labels(v)
    }

    /// The value of `name`, or `None` when absent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|l| l.name.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].value.as_str())
    }

    /// Iterates over the labels in name order.
    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.0.iter()
    }
}

impl Ord for Labels {
    fn cmp(&self, other: &Self) -> Ordering {
        for (a, b) in self.0.iter().zip(other.0.iter()) {
            match a.name.cmp(&b.name) {
                Ordering::Equal => {}
                o => return o,
            }
            match a.value.cmp(&b.value) {
                Ordering::Equal => {}
                o => return o,
            }
        }
        self.0.len().cmp(&other.0.len())
    }
}

impl PartialOrd for Labels {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = &'a Label;
    type IntoIter = std::slice::Iter<'a, Label>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Formats as Prometheus's `labels.String()`: `{a="1", b="2"}` with Go-quoted values.
impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::with_capacity(self.0.len() * 24);
        s.push('{');
        for (i, l) in self.0.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            s.push_str(&l.name);
            s.push('=');
            crate::go_format::push_quoted(&mut s, &l.value);
        }
        s.push('}');
        f.write_str(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_pairs_is_the_streaming_hash_for_small_and_large_sets() {
        let long = "x".repeat(600);
        for pairs in [
            vec![],
            vec![("__name__", "up"), ("job", "node")],
            vec![("__name__", "up"), ("big", long.as_str())],
            vec![("a", &long[..250]), ("b", &long[..250])],
        ] {
            assert_eq!(
                hash_pairs(pairs.iter().copied()),
                hash_pairs_streaming(pairs.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
            );
        }
        // Go's labels.Hash of {__name__="up", job="node"} as Prometheus computes it: xxhash64
        // of "__name__\xffup\xffjob\xffnode\xff".
        assert_eq!(
            hash_pairs([("__name__", "up"), ("job", "node")]),
            xxhash_rust::xxh64::xxh64(b"__name__\xffup\xffjob\xffnode\xff", 0)
        );
    }

    #[test]
    fn display_matches_prometheus() {
        let l = Labels::from_pairs([("job", "api"), ("__name__", "up"), ("q", "a\"b\\c\n")]);
        assert_eq!(
            l.to_string(),
            r#"{__name__="up", job="api", q="a\"b\\c\n"}"#
        );
        assert_eq!(Labels::empty().to_string(), "{}");
    }

    #[test]
    fn order_is_pairwise_then_length() {
        let a = Labels::from_pairs([("a", "1")]);
        let b = Labels::from_pairs([("a", "1"), ("b", "0")]);
        let c = Labels::from_pairs([("a", "2")]);
        assert!(a < b && b < c);
    }

    proptest::proptest! {
        #[test]
        fn label_bytes_read_as_from_utf8_lossy(
            n in proptest::collection::vec(proptest::num::u8::ANY, 0..40),
            v in proptest::collection::vec(proptest::num::u8::ANY, 0..40),
            s in "\\PC{0,30}",
        ) {
            let l = Label::from_bytes(&n, &v);
            proptest::prop_assert_eq!(l.name.as_str(), String::from_utf8_lossy(&n));
            proptest::prop_assert_eq!(l.value.as_str(), String::from_utf8_lossy(&v));
            proptest::prop_assert_eq!(compact_from_utf8_lossy(s.as_bytes()), s.as_str());
            // Labels order byte-wise, as the strings they replaced did.
            let (a, b) = (String::from_utf8_lossy(&n), String::from_utf8_lossy(&v));
            proptest::prop_assert_eq!(l.name.cmp(&l.value), a.cmp(&b));
        }
    }

    #[test]
    fn from_pairs_keeps_last_duplicate() {
        let l = Labels::from_pairs([("a", "1"), ("b", "x"), ("a", "2")]);
        assert_eq!(l.get("a"), Some("2"));
        assert_eq!(l.len(), 2);
    }
}
