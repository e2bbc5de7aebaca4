//! How a histogram chunk takes a sample whose buckets differ from the chunk's layout: which
//! buckets the chunk must gain (it is then rewritten, "recoded", with the wider layout) and
//! which the sample must gain (empty buckets the chunk has and the sample lacks), exactly as
//! Prometheus decides it, since the decision shows in the bytes.

use crate::histogram::Span;

/// Walks the bucket indices `spans` cover, in order.
#[derive(Debug, Clone)]
pub(crate) struct BucketIndices<'a> {
    spans: &'a [Span],
    /// Span of the last index returned.
    span: usize,
    /// Position within that span (-1 before the first).
    bucket: i64,
    /// Last index returned.
    idx: i64,
}

impl<'a> BucketIndices<'a> {
    pub(crate) fn new(spans: &'a [Span]) -> Self {
        BucketIndices {
            spans,
            span: 0,
            bucket: -1,
            idx: -1 + spans.first().map_or(0, |s| i64::from(s.offset)),
        }
    }
}

impl Iterator for BucketIndices<'_> {
    type Item = i64;

    fn next(&mut self) -> Option<i64> {
        let cur = self.spans.get(self.span)?;
        if self.bucket < i64::from(cur.length) - 1 {
            self.bucket += 1;
            self.idx += 1;
            return Some(self.idx);
        }
        while self.span + 1 < self.spans.len() {
            self.span += 1;
            let s = self.spans[self.span];
            self.idx += i64::from(s.offset) + 1;
            self.bucket = 0;
            if s.length == 0 {
                // An empty span moves the index by its offset only.
                self.idx -= 1;
                continue;
            }
            return Some(self.idx);
        }
        None
    }
}

/// `num` new buckets go before bucket `pos` of the original list (at its end when `pos` is
/// its length); `bucket_idx` is the bucket index of the first of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Insert {
    pub pos: usize,
    pub num: usize,
    pub bucket_idx: i64,
}

/// A running absolute count over delta-encoded or absolute buckets.
trait Running {
    fn start(&self) -> Self;
    fn first(&mut self, i: usize);
    fn advance(&mut self, i: usize);
    fn greater_than(&self, other: &Self) -> bool;
    fn is_zero(&self) -> bool;
}

/// Running count of integer deltas, wrapping as Go's int64 does.
#[derive(Clone, Copy)]
struct IntRunning<'a> {
    deltas: &'a [i64],
    count: i64,
}

impl Running for IntRunning<'_> {
    fn start(&self) -> Self {
        IntRunning {
            deltas: self.deltas,
            count: 0,
        }
    }
    fn first(&mut self, i: usize) {
        self.count = self.deltas.get(i).copied().unwrap_or(0);
    }
    fn advance(&mut self, i: usize) {
        self.count = self
            .count
            .wrapping_add(self.deltas.get(i).copied().unwrap_or(0));
    }
    fn greater_than(&self, other: &Self) -> bool {
        self.count > other.count
    }
    fn is_zero(&self) -> bool {
        self.count == 0
    }
}

/// Current value of absolute float buckets.
#[derive(Clone, Copy)]
struct FloatRunning<'a> {
    counts: &'a [f64],
    count: f64,
}

impl Running for FloatRunning<'_> {
    fn start(&self) -> Self {
        FloatRunning {
            counts: self.counts,
            count: 0.0,
        }
    }
    fn first(&mut self, i: usize) {
        self.count = self.counts.get(i).copied().unwrap_or(0.0);
    }
    fn advance(&mut self, i: usize) {
        self.first(i);
    }
    fn greater_than(&self, other: &Self) -> bool {
        self.count > other.count
    }
    fn is_zero(&self) -> bool {
        self.count == 0.0
    }
}

/// For a counter histogram: the inserts that widen the chunk's spans `a` (buckets `a_counts`)
/// to take the sample's spans `b` (buckets `b_counts`) (forward), and those that widen the
/// sample to keep buckets only the chunk has (backward). `None` when the sample is a counter
/// reset: a bucket shrank, or a bucket in use in the chunk is missing from the sample.
pub(crate) fn expand_int_spans_and_buckets(
    a: &[Span],
    b: &[Span],
    a_deltas: &[i64],
    b_deltas: &[i64],
) -> Option<(Vec<Insert>, Vec<Insert>)> {
    expand_spans_and_buckets(
        a,
        b,
        IntRunning {
            deltas: a_deltas,
            count: 0,
        },
        IntRunning {
            deltas: b_deltas,
            count: 0,
        },
    )
}

/// [`expand_int_spans_and_buckets`] for absolute float counts.
pub(crate) fn expand_float_spans_and_buckets(
    a: &[Span],
    b: &[Span],
    a_counts: &[f64],
    b_counts: &[f64],
) -> Option<(Vec<Insert>, Vec<Insert>)> {
    expand_spans_and_buckets(
        a,
        b,
        FloatRunning {
            counts: a_counts,
            count: 0.0,
        },
        FloatRunning {
            counts: b_counts,
            count: 0.0,
        },
    )
}

/// Adds bucket index `idx` to the insert being gathered, closing it first when `idx` does not
/// continue it.
fn add_insert(inserts: &mut Vec<Insert>, cur: &mut Insert, idx: i64) {
    if cur.num == 0 {
        cur.bucket_idx = idx;
    } else if cur.bucket_idx + cur.num as i64 != idx {
        inserts.push(*cur);
        cur.num = 0;
        cur.bucket_idx = idx;
    }
    cur.num += 1;
}

fn expand_spans_and_buckets<R: Running>(
    a: &[Span],
    b: &[Span],
    a_run: R,
    b_run: R,
) -> Option<(Vec<Insert>, Vec<Insert>)> {
    let mut ai = BucketIndices::new(a);
    let mut bi = BucketIndices::new(b);
    // Inserts into a for buckets b has, and into b for (empty) buckets only a has.
    let mut a_inserts = Vec::new();
    let mut b_inserts = Vec::new();
    let mut a_inter = Insert::default();
    let mut b_inter = Insert::default();
    let mut a_idx = ai.next();
    let mut b_idx = bi.next();
    let (mut a_count, mut b_count) = (a_run.start(), b_run.start());
    let (mut a_pos, mut b_pos) = (0usize, 0usize);
    if a_idx.is_some() {
        a_count.first(0);
    }
    if b_idx.is_some() {
        b_count.first(0);
    }
    macro_rules! advance {
        ($inter:ident, $inserts:ident, $it:ident, $idx:ident, $pos:ident, $count:ident) => {{
            if $inter.num > 0 {
                $inserts.push($inter);
                $inter.num = 0;
            }
            $idx = $it.next();
            $inter.pos += 1;
            $pos += 1;
            if $idx.is_some() {
                $count.advance($pos);
            }
        }};
    }
    loop {
        match (a_idx, b_idx) {
            (Some(x), Some(y)) if x == y => {
                if a_count.greater_than(&b_count) {
                    return None;
                }
                advance!(a_inter, a_inserts, ai, a_idx, a_pos, a_count);
                advance!(b_inter, b_inserts, bi, b_idx, b_pos, b_count);
            }
            (Some(x), Some(y)) if x < y => {
                // b lacks a bucket of a: fine while it is empty in a.
                if !a_count.is_zero() {
                    return None;
                }
                add_insert(&mut b_inserts, &mut b_inter, x);
                advance!(a_inter, a_inserts, ai, a_idx, a_pos, a_count);
            }
            (Some(_), Some(y)) => {
                add_insert(&mut a_inserts, &mut a_inter, y);
                advance!(b_inter, b_inserts, bi, b_idx, b_pos, b_count);
            }
            (Some(x), None) => {
                if !a_count.is_zero() {
                    return None;
                }
                add_insert(&mut b_inserts, &mut b_inter, x);
                advance!(a_inter, a_inserts, ai, a_idx, a_pos, a_count);
            }
            (None, Some(y)) => {
                add_insert(&mut a_inserts, &mut a_inter, y);
                advance!(b_inter, b_inserts, bi, b_idx, b_pos, b_count);
            }
            (None, None) => {
                if a_inter.num > 0 {
                    a_inserts.push(a_inter);
                }
                if b_inter.num > 0 {
                    b_inserts.push(b_inter);
                }
                return Some((a_inserts, b_inserts));
            }
        }
    }
}

/// Appends bucket `b` to spans being built, `last` the previous bucket added.
fn add_bucket(merged: &mut Vec<Span>, last: &mut i64, b: i64) {
    let mut offset = b - *last - 1;
    match merged.last_mut() {
        Some(s) if offset == 0 => s.length += 1,
        _ => {
            if merged.is_empty() {
                offset += 1;
            }
            merged.push(Span {
                offset: offset as i32,
                length: 1,
            });
        }
    }
    *last = b;
}

/// For a gauge histogram, where buckets come and go freely: the inserts that widen the chunk's
/// spans `a` to cover the sample's `b` (forward), those that widen `b` to cover `a`
/// (backward), and the spans of the union.
pub(crate) fn expand_spans_both_ways(
    a: &[Span],
    b: &[Span],
) -> (Vec<Insert>, Vec<Insert>, Vec<Span>) {
    let mut ai = BucketIndices::new(a);
    let mut bi = BucketIndices::new(b);
    let mut f_inserts = Vec::new();
    let mut b_inserts = Vec::new();
    let mut merged = Vec::new();
    let mut last = 0i64;
    let mut f_inter = Insert::default();
    let mut b_inter = Insert::default();
    let mut av = ai.next();
    let mut bv = bi.next();
    loop {
        match (av, bv) {
            (Some(x), Some(y)) if x == y => {
                if f_inter.num > 0 {
                    f_inserts.push(f_inter);
                    f_inter.num = 0;
                }
                if b_inter.num > 0 {
                    b_inserts.push(b_inter);
                    b_inter.num = 0;
                }
                add_bucket(&mut merged, &mut last, x);
                av = ai.next();
                bv = bi.next();
                f_inter.pos += 1;
                b_inter.pos += 1;
            }
            (Some(x), Some(_)) if bv.is_some_and(|y| x < y) => {
                // b lacks a bucket of a.
                b_inter.num += 1;
                if f_inter.num > 0 {
                    f_inserts.push(f_inter);
                    f_inter.num = 0;
                }
                add_bucket(&mut merged, &mut last, x);
                f_inter.pos += 1;
                av = ai.next();
            }
            (Some(_), Some(y)) => {
                // a lacks a bucket of b.
                f_inter.num += 1;
                if b_inter.num > 0 {
                    b_inserts.push(b_inter);
                    b_inter.num = 0;
                }
                add_bucket(&mut merged, &mut last, y);
                b_inter.pos += 1;
                bv = bi.next();
            }
            (Some(x), None) => {
                b_inter.num += 1;
                add_bucket(&mut merged, &mut last, x);
                av = ai.next();
            }
            (None, Some(y)) => {
                f_inter.num += 1;
                add_bucket(&mut merged, &mut last, y);
                bv = bi.next();
            }
            (None, None) => {
                if f_inter.num > 0 {
                    f_inserts.push(f_inter);
                }
                if b_inter.num > 0 {
                    b_inserts.push(b_inter);
                }
                return (f_inserts, b_inserts, merged);
            }
        }
    }
}

/// The spans `spans` widened by `inserts` (whose `bucket_idx` say where).
pub(crate) fn adjust_for_inserts(spans: &[Span], inserts: &[Insert]) -> Vec<Span> {
    if inserts.is_empty() {
        return spans.to_vec();
    }
    let mut merged = Vec::new();
    let mut last = 0i64;
    let mut i = 0;
    let mut insert_idx = inserts[0].bucket_idx;
    let mut insert_num = inserts[0].num;
    let consume = |i: &mut usize, insert_idx: &mut i64, insert_num: &mut usize| {
        *insert_num = insert_num.saturating_sub(1);
        if *insert_num == 0 {
            *i += 1;
            if let Some(ins) = inserts.get(*i) {
                *insert_idx = ins.bucket_idx;
                *insert_num = ins.num;
            }
        } else {
            *insert_idx += 1;
        }
    };
    let mut it = BucketIndices::new(spans);
    let mut bucket = it.next();
    while let Some(b) = bucket {
        if i < inserts.len() && insert_idx < b {
            add_bucket(&mut merged, &mut last, insert_idx);
            consume(&mut i, &mut insert_idx, &mut insert_num);
        } else {
            add_bucket(&mut merged, &mut last, b);
            bucket = it.next();
        }
    }
    while i < inserts.len() {
        add_bucket(&mut merged, &mut last, insert_idx);
        consume(&mut i, &mut insert_idx, &mut insert_num);
    }
    merged
}

/// Bucket values of a layout after inserts: delta-encoded or absolute.
pub(crate) trait BucketValue: Copy + Default {
    fn add(self, other: Self) -> Self;
    fn neg(self) -> Self;
}

impl BucketValue for i64 {
    fn add(self, other: Self) -> Self {
        self.wrapping_add(other)
    }
    fn neg(self) -> Self {
        self.wrapping_neg()
    }
}

impl BucketValue for f64 {
    fn add(self, other: Self) -> Self {
        self + other
    }
    fn neg(self) -> Self {
        -self
    }
}

/// `input` with empty buckets inserted, into `out` (of the widened length). Delta-encoded
/// buckets (`deltas`) get a first inserted delta that brings the count back to 0 and a next
/// original delta that restores it; absolute ones get zeros. Several inserts may share a
/// position (new buckets on both sides of a gap the chunk does not cover).
pub(crate) fn insert<V: BucketValue>(input: &[V], out: &mut [V], inserts: &[Insert], deltas: bool) {
    let mut oi = 0;
    let mut v = V::default();
    let mut ii = 0;
    let mut put = |oi: &mut usize, x: V| {
        if let Some(slot) = out.get_mut(*oi) {
            *slot = x;
        }
        *oi += 1;
    };
    for (i, &d) in input.iter().enumerate() {
        if ii >= inserts.len() || i != inserts[ii].pos {
            put(&mut oi, d);
            v = v.add(d);
            continue;
        }
        let mut first = true;
        while ii < inserts.len() && i == inserts[ii].pos {
            put(
                &mut oi,
                if deltas && first {
                    v.neg()
                } else {
                    V::default()
                },
            );
            first = false;
            for _ in 1..inserts[ii].num {
                put(&mut oi, V::default());
            }
            ii += 1;
        }
        put(&mut oi, if deltas { d.add(v) } else { d });
        v = v.add(d);
    }
    // Inserts after the last original bucket.
    while ii < inserts.len() {
        put(&mut oi, if deltas { v.neg() } else { V::default() });
        for _ in 1..inserts[ii].num {
            put(&mut oi, V::default());
        }
        ii += 1;
        v = V::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(offset: i32, length: u32) -> Span {
        Span { offset, length }
    }

    #[test]
    fn bucket_indices_skip_gaps_and_empty_spans() {
        let spans = [s(-2, 2), s(0, 0), s(3, 1), s(0, 2)];
        let got: Vec<i64> = BucketIndices::new(&spans).collect();
        assert_eq!(got, [-2, -1, 3, 4, 5]);
        assert_eq!(BucketIndices::new(&[]).count(), 0);
        let leading_empty = [s(5, 0), s(1, 2)];
        let got: Vec<i64> = BucketIndices::new(&leading_empty).collect();
        assert_eq!(got, [6, 7]);
    }

    /// The worked example: old spans [0,2] [2,1] [3,2] [3,1] [1,1], new spans [0,3] [1,1]
    /// [1,4] [3,3].
    #[test]
    fn forward_inserts_and_recoded_deltas() {
        let a = [s(0, 2), s(2, 1), s(3, 2), s(3, 1), s(1, 1)];
        let b = [s(0, 3), s(1, 1), s(1, 4), s(3, 3)];
        let a_deltas = [6, -3, 0, -1, 2, 1, -4];
        // Same counts, zeros in the new buckets.
        let b_deltas = [6, -3, -3, 3, -3, 0, 2, 2, 1, -5, 1];
        let (fwd, back) = expand_int_spans_and_buckets(&a, &b, &a_deltas, &b_deltas).unwrap();
        assert!(back.is_empty());
        assert_eq!(
            fwd.iter().map(|i| (i.pos, i.num)).collect::<Vec<_>>(),
            [(2, 1), (3, 2), (6, 1)]
        );
        let mut out = [0i64; 11];
        insert(&a_deltas, &mut out, &fwd, true);
        assert_eq!(out, b_deltas);
    }

    #[test]
    fn shrinking_or_vanishing_buckets_are_resets_unless_empty() {
        let a = [s(0, 3)];
        assert!(expand_int_spans_and_buckets(&a, &a, &[2, 1, 0], &[2, 0, 0]).is_none());
        // Bucket 2 (count 0 in the chunk) may vanish: it becomes a backward insert.
        let b = [s(0, 2)];
        let (fwd, back) = expand_int_spans_and_buckets(&a, &b, &[2, -2, 0], &[3, -3]).unwrap();
        assert!(fwd.is_empty());
        assert_eq!(
            back,
            [Insert {
                pos: 2,
                num: 1,
                bucket_idx: 2
            }]
        );
        assert_eq!(adjust_for_inserts(&b, &back), [s(0, 3)]);
        // A bucket in use may not.
        assert!(expand_int_spans_and_buckets(&a, &b, &[2, 1, 0], &[3, 0]).is_none());
        // Float version, same rules.
        assert!(
            expand_float_spans_and_buckets(&a, &a, &[2.0, 3.0, 1.0], &[2.0, 2.0, 1.0]).is_none()
        );
    }

    #[test]
    fn both_ways_merges_spans() {
        let a = [s(0, 2), s(3, 1)]; // 0 1 5
        let b = [s(1, 2), s(1, 1)]; // 1 2 4
        let (fwd, back, merged) = expand_spans_both_ways(&a, &b);
        assert_eq!(merged, [s(0, 3), s(1, 2)]); // 0 1 2 4 5
        assert_eq!(
            fwd.iter().map(|i| (i.pos, i.num)).collect::<Vec<_>>(),
            [(2, 2)]
        );
        assert_eq!(
            back.iter().map(|i| (i.pos, i.num)).collect::<Vec<_>>(),
            [(0, 1), (3, 1)]
        );
        let mut out = [0.0; 5];
        insert(&[1.0, 2.0, 3.0], &mut out, &fwd, false);
        assert_eq!(out, [1.0, 2.0, 0.0, 0.0, 3.0]);
    }
}
