//! Splitting a range query into parts that each stay within one interval of Unix time, as
//! Thanos's query frontend does: the parts keep the query's step grid, so that their answers
//! put together are the answer of the whole, and a part is the same request every time a
//! dashboard asks for a window that covers its interval (which is what makes it cacheable).

/// Start and end (ms) moved down onto the step grid (`--query-range.align-range-with-step`):
/// Grafana asks that way already, and aligned queries share cache entries.
pub fn align(start: i64, end: i64, step: i64) -> (i64, i64) {
    if step <= 0 {
        return (start, end);
    }
    // Go's integer division truncates toward zero, as Rust's does.
    ((start / step) * step, (end / step) * step)
}

/// The `[start, end]` parts (ms, both inclusive) of a range query from `start` to `end` with
/// `step`, cut at multiples of `interval` (ms) since the epoch. Every part starts on the
/// query's step grid; consecutive parts do not share a step. An interval of 0, or a query of
/// one instant, gives the query itself.
pub fn split(start: i64, end: i64, step: i64, interval: i64) -> Vec<(i64, i64)> {
    if interval <= 0 || step <= 0 || start >= end {
        return vec![(start, end)];
    }
    let mut parts = Vec::new();
    let mut s = start;
    while s < end {
        let mut e = next_interval_boundary(s, step, interval);
        if e + step >= end {
            e = end;
        }
        parts.push((s, e));
        s = e + step;
    }
    parts
}

/// The last step of the grid through `t` that falls before the next multiple of `interval`
/// after `t`.
fn next_interval_boundary(t: i64, step: i64, interval: i64) -> i64 {
    let next = (t.div_euclid(interval) + 1) * interval;
    let target = next - (next - t) % step;
    if target == next {
        target - step
    } else {
        target
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;
    const M: i64 = 60_000;

    #[test]
    fn a_query_within_one_interval_is_not_split() {
        assert_eq!(split(0, H - M, M, H), vec![(0, H - M)]);
        assert_eq!(split(10 * M, 10 * M, M, H), vec![(10 * M, 10 * M)]);
    }

    #[test]
    fn parts_end_before_each_interval_boundary_on_the_step_grid() {
        // 5h at 1m steps, split by 1h: five parts, each ending one step before the hour.
        let parts = split(0, 5 * H, M, H);
        assert_eq!(
            parts,
            vec![
                (0, H - M),
                (H, 2 * H - M),
                (2 * H, 3 * H - M),
                (3 * H, 4 * H - M),
                (4 * H, 5 * H),
            ]
        );
    }

    #[test]
    fn an_unaligned_start_keeps_its_step_grid() {
        // Start 7s past the hour, 1m steps: each part's start is start + k*step.
        let start = 7_000;
        let parts = split(start, 3 * H, M, H);
        for (s, e) in &parts {
            assert_eq!((s - start) % M, 0, "part {s}..{e} off the grid");
            assert!(s <= e);
        }
        for w in parts.windows(2) {
            assert_eq!(w[0].1 + M, w[1].0, "a step skipped or repeated");
        }
        assert_eq!(parts.last().map(|p| p.1), Some(3 * H));
        // The boundary part ends at the last grid point before the hour.
        assert_eq!(parts[0], (start, H - M + start));
    }

    #[test]
    fn a_step_longer_than_the_interval_gives_one_part_per_step() {
        let parts = split(0, 6 * H, 2 * H, H);
        assert_eq!(parts, vec![(0, 0), (2 * H, 2 * H), (4 * H, 6 * H)]);
    }

    #[test]
    fn no_interval_means_no_split() {
        assert_eq!(split(0, 5 * H, M, 0), vec![(0, 5 * H)]);
    }

    #[test]
    fn align_moves_start_and_end_down_onto_the_grid() {
        assert_eq!(align(61_500, 130_000, 60_000), (60_000, 120_000));
        assert_eq!(align(60_000, 120_000, 60_000), (60_000, 120_000));
    }
}
