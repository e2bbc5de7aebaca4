//! `--query-range.request-downsampled`: a range query asked with `max_source_resolution=auto`
//! whose answer starts after the query's start (the raw data there is gone, compacted away by
//! retention) is asked again for the missing front at the next coarser resolution, 5m then 1h,
//! as Thanos's frontend does; the answers are merged. An empty answer is asked again whole.

use std::future::Future;

use super::merge::Matrix;

/// The downsampled resolutions asked in turn, ms.
const RESOLUTIONS_MS: [i64; 2] = [300_000, 3_600_000];

/// The earliest point of any series of `m`, ms; `None` when it has no point.
fn earliest(m: &Matrix) -> Option<i64> {
    m.series
        .values()
        .filter_map(super::merge::Series::first_t)
        .min()
}

/// The answers of a query over `[start, end]` every `step` (ms) asked first with `auto` and
/// then, while the answer misses its front, at each coarser resolution for what is missing:
/// `ask(end, resolution)` runs the query up to `end` with `max_source_resolution` set to
/// `resolution` (ms; `None` for `auto`).
pub(super) async fn answers<E, F, Fut>(
    start: i64,
    end: i64,
    step: i64,
    mut ask: F,
) -> Result<Vec<Matrix>, E>
where
    F: FnMut(i64, Option<i64>) -> Fut,
    Fut: Future<Output = Result<Matrix, E>>,
{
    let mut out = Vec::new();
    let mut resolution: Option<i64> = None;
    // What `auto` means to the querier: a fifth of the step.
    let mut max_resolution = step / 5;
    let mut end = end;
    let mut next = 0;
    while next < RESOLUTIONS_MS.len() {
        let m = ask(end, resolution).await?;
        let first = earliest(&m);
        out.push(m);
        while next < RESOLUTIONS_MS.len() {
            if max_resolution < RESOLUTIONS_MS[next] {
                max_resolution = RESOLUTIONS_MS[next];
                resolution = Some(max_resolution);
                break;
            }
            next += 1;
        }
        match first {
            Some(t) if t == start => break,
            // Nothing at all: the whole window again, coarser.
            None => continue,
            Some(t) => end = t - step,
        }
        if start > end {
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::merge;

    const M: i64 = 60_000;

    fn matrix(points: &[i64]) -> Matrix {
        let values: Vec<serde_json::Value> = points
            .iter()
            .map(|t| serde_json::json!([*t as f64 / 1000.0, "1"]))
            .collect();
        let body = serde_json::json!({"status": "success", "data": {"resultType": "matrix",
            "result": if points.is_empty() { serde_json::json!([]) } else {
                serde_json::json!([{"metric": {"job": "a"}, "values": values}]) }}});
        merge::parse(serde_json::to_vec(&body).unwrap()).unwrap()
    }

    /// Runs the loop over answers that hold points from `from(resolution)` on (None: none).
    fn run(
        start: i64,
        end: i64,
        step: i64,
        from: impl Fn(Option<i64>) -> Option<i64>,
    ) -> Vec<(i64, Option<i64>)> {
        let mut asked = Vec::new();
        let got: Result<Vec<Matrix>, ()> =
            futures::executor::block_on(answers(start, end, step, |e, r| {
                asked.push((e, r));
                let pts: Vec<i64> = match from(r) {
                    Some(f) => (0..)
                        .map(|i| start + i * step)
                        .take_while(|t| *t <= e)
                        .filter(|t| *t >= f)
                        .collect(),
                    None => Vec::new(),
                };
                std::future::ready(Ok(matrix(&pts)))
            }));
        assert_eq!(got.unwrap().len(), asked.len());
        asked
    }

    #[test]
    fn a_whole_answer_is_asked_once() {
        assert_eq!(run(0, 600 * M, M, |_| Some(0)), vec![(600 * M, None)]);
    }

    #[test]
    fn a_missing_front_is_asked_at_5m_then_1h() {
        // Raw data from 400m, 5m data from 200m, 1h data from the start.
        let from = |r: Option<i64>| match r {
            None => Some(400 * M),
            Some(300_000) => Some(200 * M),
            _ => Some(0),
        };
        assert_eq!(
            run(0, 600 * M, M, from),
            vec![
                (600 * M, None),
                (399 * M, Some(300_000)),
                (199 * M, Some(3_600_000))
            ]
        );
    }

    #[test]
    fn an_empty_answer_is_asked_again_whole_and_coarser_stops_at_1h() {
        assert_eq!(
            run(0, 600 * M, M, |_| None),
            vec![
                (600 * M, None),
                (600 * M, Some(300_000)),
                (600 * M, Some(3_600_000))
            ]
        );
    }

    #[test]
    fn a_step_whose_fifth_is_past_5m_goes_straight_to_1h() {
        // Step 30m: auto means 6m, so 5m is not coarser.
        let step = 30 * M;
        assert_eq!(
            run(0, 20 * step, step, |r| r.map(|_| 0).or(Some(10 * step))),
            vec![(20 * step, None), (9 * step, Some(3_600_000))]
        );
    }
}
