//! Merging the samples of one series that come from several sources (overlapping blocks,
//! replicas already chosen, the head and a block).

use crate::chunk::SampleBatch;

/// Merges time-sorted batches into one time-sorted batch; on equal timestamps the batch that
/// comes later in `parts` wins.
pub fn merge_samples(parts: &[&SampleBatch]) -> SampleBatch {
    let non_empty: Vec<&SampleBatch> = parts.iter().copied().filter(|b| !b.is_empty()).collect();
    match non_empty.as_slice() {
        [] => return SampleBatch::new(),
        [one] => return (*one).clone(),
        _ => {}
    }
    // Disjoint, ordered parts (the usual case: consecutive blocks) are a concatenation.
    if non_empty
        .windows(2)
        .all(|w| w[0].ts.last() < w[1].ts.first())
    {
        let total = non_empty.iter().map(|b| b.len()).sum();
        let mut out = SampleBatch::with_capacity(total);
        for b in &non_empty {
            out.ts.extend_from_slice(&b.ts);
            out.val.extend_from_slice(&b.val);
        }
        return out;
    }
    let total = non_empty.iter().map(|b| b.len()).sum();
    let mut out = SampleBatch::with_capacity(total);
    let mut pos = vec![0usize; non_empty.len()];
    loop {
        // The smallest next timestamp; among equals, the last part.
        let mut best: Option<(i64, usize)> = None;
        for (i, b) in non_empty.iter().enumerate() {
            if let Some(&t) = b.ts.get(pos[i])
                && best.is_none_or(|(bt, _)| t <= bt)
            {
                best = Some((t, i));
            }
        }
        let Some((t, winner)) = best else { break };
        out.push(t, non_empty[winner].val[pos[winner]]);
        for (i, b) in non_empty.iter().enumerate() {
            if b.ts.get(pos[i]) == Some(&t) {
                pos[i] += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(s: &[(i64, f64)]) -> SampleBatch {
        let mut b = SampleBatch::new();
        for &(t, v) in s {
            b.push(t, v);
        }
        b
    }

    #[test]
    fn disjoint_parts_concatenate() {
        let a = batch(&[(1, 1.0), (2, 2.0)]);
        let b = batch(&[(3, 3.0)]);
        assert_eq!(
            merge_samples(&[&a, &b]),
            batch(&[(1, 1.0), (2, 2.0), (3, 3.0)])
        );
    }

    #[test]
    fn overlapping_parts_interleave_and_later_wins() {
        let a = batch(&[(1, 1.0), (3, 3.0), (5, 5.0)]);
        let b = batch(&[(2, 20.0), (3, 30.0), (6, 60.0)]);
        assert_eq!(
            merge_samples(&[&a, &b]),
            batch(&[(1, 1.0), (2, 20.0), (3, 30.0), (5, 5.0), (6, 60.0)])
        );
        assert!(merge_samples(&[]).is_empty());
    }
}
