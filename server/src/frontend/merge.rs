//! Range-query answers (Prometheus's JSON matrix) read, cut to a time window and put back
//! together: the parts of a split query, and cached extents with freshly asked pieces. Each
//! point is kept as the querier wrote it (its timestamp and value text untouched, a slice of
//! the answer's bytes, so copying a point is a reference count); points are told apart by
//! their timestamp, so the step two pieces both answered appears once.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// One point of a series: its timestamp (ms) and its JSON text (`[ts, "value"]` or
/// `[ts, {histogram}]`) as the querier wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// The timestamp, ms.
    pub t: i64,
    /// The point's JSON text.
    pub text: Bytes,
}

/// One series of a matrix: its labels and its float and histogram points by timestamp.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The `metric` object's JSON text as the querier wrote it.
    pub metric: Bytes,
    /// `[ts, "value"]` points, ascending by timestamp, one per timestamp.
    pub values: Vec<Point>,
    /// `[ts, {histogram}]` points, ascending by timestamp, one per timestamp.
    pub histograms: Vec<Point>,
}

impl Series {
    fn is_empty(&self) -> bool {
        self.values.is_empty() && self.histograms.is_empty()
    }

    /// The earliest timestamp of any point, ms.
    pub fn first_t(&self) -> Option<i64> {
        let f = self.values.first().map(|p| p.t);
        let h = self.histograms.first().map(|p| p.t);
        match (f, h) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A series' label set, sorted by name: the order Prometheus sorts series in.
pub type SeriesKey = Arc<[(String, String)]>;

/// A successful range-query answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Matrix {
    /// Series by their labels, in Prometheus's order of label sets.
    pub series: BTreeMap<SeriesKey, Series>,
    /// The answer's `warnings`.
    pub warnings: Vec<String>,
    /// The answer's `infos`.
    pub infos: Vec<String>,
}

/// Why an answer is not a matrix this module can take apart.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MatrixError {
    /// The body is not JSON.
    #[error("the downstream answer is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The JSON is not a successful matrix answer.
    #[error("the downstream answer is not a matrix: {0}")]
    Shape(&'static str),
}

/// A range-query answer as read: the points left as borrowed JSON text.
#[derive(Deserialize)]
struct Answer<'a> {
    status: Option<String>,
    #[serde(borrow)]
    data: Option<Data<'a>>,
    warnings: Option<Vec<Value>>,
    infos: Option<Vec<Value>>,
}

#[derive(Deserialize)]
struct Data<'a> {
    #[serde(rename = "resultType")]
    result_type: Option<String>,
    #[serde(borrow)]
    result: Option<Vec<RawSeries<'a>>>,
}

#[derive(Deserialize)]
struct RawSeries<'a> {
    #[serde(borrow)]
    metric: Option<&'a RawValue>,
    #[serde(borrow, default)]
    values: Option<Vec<&'a RawValue>>,
    #[serde(borrow, default)]
    histograms: Option<Vec<&'a RawValue>>,
}

/// Reads a successful range-query answer.
pub fn parse(body: impl Into<Bytes>) -> Result<Matrix, MatrixError> {
    let body: Bytes = body.into();
    let a: Answer<'_> = serde_json::from_slice(&body)?;
    if a.status.as_deref() != Some("success") {
        return Err(MatrixError::Shape("status is not success"));
    }
    let Some(data) = a.data else {
        return Err(MatrixError::Shape("no data"));
    };
    if data.result_type.as_deref() != Some("matrix") {
        return Err(MatrixError::Shape("resultType is not matrix"));
    }
    let Some(result) = data.result else {
        return Err(MatrixError::Shape("no result array"));
    };
    let mut m = Matrix {
        warnings: strings(a.warnings),
        infos: strings(a.infos),
        ..Matrix::default()
    };
    for s in result {
        let (key, metric) = match s.metric {
            Some(raw) => {
                let labels: Map<String, Value> = serde_json::from_str(raw.get())
                    .map_err(|_| MatrixError::Shape("a metric that is not an object"))?;
                (key(&labels), body.slice_ref(raw.get().as_bytes()))
            }
            None => (key(&Map::new()), Bytes::from_static(b"{}")),
        };
        let series = Series {
            metric,
            values: points(&body, s.values)?,
            histograms: points(&body, s.histograms)?,
        };
        m.series.insert(key, series);
    }
    Ok(m)
}

fn strings(v: Option<Vec<Value>>) -> Vec<String> {
    v.unwrap_or_default()
        .into_iter()
        .filter_map(|s| match s {
            Value::String(s) => Some(s),
            _ => None,
        })
        .collect()
}

/// `[[ts, x], ...]` as points ascending by timestamp, one per timestamp (the first written
/// wins).
fn points(body: &Bytes, raw: Option<Vec<&RawValue>>) -> Result<Vec<Point>, MatrixError> {
    let raw = raw.unwrap_or_default();
    let mut out = Vec::with_capacity(raw.len());
    for p in raw {
        let text = p.get();
        let t = timestamp(text).ok_or(MatrixError::Shape("a point without a timestamp"))?;
        out.push(Point {
            t,
            text: body.slice_ref(text.as_bytes()),
        });
    }
    if !out.windows(2).all(|w| w[0].t < w[1].t) {
        out.sort_by_key(|p| p.t);
        out.dedup_by_key(|p| p.t);
    }
    Ok(out)
}

/// The timestamp (ms) of a point's JSON text `[ts, ...]`.
fn timestamp(text: &str) -> Option<i64> {
    let rest = text.trim_start().strip_prefix('[')?;
    let end = rest.find(',')?;
    let t: f64 = rest[..end].trim().parse().ok()?;
    t.is_finite().then(|| (t * 1000.0).round() as i64)
}

/// The label set of `metric`, sorted by name.
pub(super) fn key(metric: &Map<String, Value>) -> SeriesKey {
    let mut k: Vec<(String, String)> = metric
        .iter()
        .map(|(n, v)| (n.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    k.sort();
    k.into()
}

/// The points of `points` from `start` to `end` (ms, inclusive).
fn window(points: &[Point], start: i64, end: i64) -> &[Point] {
    let from = points.partition_point(|p| p.t < start);
    let to = points.partition_point(|p| p.t <= end);
    &points[from..to.max(from)]
}

/// The points of `m` from `start` to `end` (ms, inclusive); series left without a point
/// are dropped.
pub fn extract(m: &Matrix, start: i64, end: i64) -> Matrix {
    let mut out = Matrix {
        warnings: m.warnings.clone(),
        infos: m.infos.clone(),
        ..Matrix::default()
    };
    if start > end {
        return out;
    }
    for (k, s) in &m.series {
        let cut = Series {
            metric: s.metric.clone(),
            values: window(&s.values, start, end).to_vec(),
            histograms: window(&s.histograms, start, end).to_vec(),
        };
        if !cut.is_empty() {
            out.series.insert(k.clone(), cut);
        }
    }
    out
}

/// `more` merged into `have` (both ascending, one point per timestamp): `have`'s point wins
/// where both have one.
fn merge_points(have: &mut Vec<Point>, more: Vec<Point>) {
    let Some(first) = more.first() else {
        return;
    };
    // The usual case: the next part starts after this one ends.
    if have.last().is_none_or(|l| l.t < first.t) {
        have.extend(more);
        return;
    }
    let old = std::mem::take(have);
    let mut out = Vec::with_capacity(old.len() + more.len());
    let mut a = old.into_iter().peekable();
    let mut b = more.into_iter().peekable();
    loop {
        match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if x.t == y.t => {
                out.extend(a.next());
                b.next();
            }
            (Some(x), Some(y)) if x.t < y.t => out.extend(a.next()),
            (Some(_), Some(_)) => out.extend(b.next()),
            (Some(_), None) => out.extend(a.by_ref()),
            (None, Some(_)) => out.extend(b.by_ref()),
            (None, None) => break,
        }
    }
    *have = out;
}

/// `parts` put together: each series' points from every part, one per timestamp (the first
/// part's wins), warnings and infos once each.
pub fn merge(parts: impl IntoIterator<Item = Matrix>) -> Matrix {
    let mut out = Matrix::default();
    for part in parts {
        for w in part.warnings {
            if !out.warnings.contains(&w) {
                out.warnings.push(w);
            }
        }
        for i in part.infos {
            if !out.infos.contains(&i) {
                out.infos.push(i);
            }
        }
        for (k, s) in part.series {
            match out.series.get_mut(&k) {
                None => {
                    out.series.insert(k, s);
                }
                Some(have) => {
                    merge_points(&mut have.values, s.values);
                    merge_points(&mut have.histograms, s.histograms);
                }
            }
        }
    }
    out
}

/// `points` as a JSON array of their texts.
fn point_array(out: &mut Vec<u8>, points: &[Point]) {
    out.push(b'[');
    for (i, p) in points.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&p.text);
    }
    out.push(b']');
}

/// The answer's JSON, as Prometheus writes a range query's.
pub fn encode(m: &Matrix) -> Vec<u8> {
    let texts: usize = m
        .series
        .values()
        .map(|s| text_len(s) + s.values.len() + s.histograms.len() + 40)
        .sum();
    let mut out = Vec::with_capacity(texts + 128);
    out.extend_from_slice(br#"{"status":"success","data":{"resultType":"matrix","result":["#);
    for (i, s) in m.series.values().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(br#"{"metric":"#);
        out.extend_from_slice(&s.metric);
        if !s.values.is_empty() {
            out.extend_from_slice(br#","values":"#);
            point_array(&mut out, &s.values);
        }
        if !s.histograms.is_empty() {
            out.extend_from_slice(br#","histograms":"#);
            point_array(&mut out, &s.histograms);
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    end_answer(&mut out, &m.warnings, &m.infos);
    out
}

/// The rest of an answer after its `data`: `warnings` and `infos` when there are any, and
/// the closing brace.
pub(super) fn end_answer(out: &mut Vec<u8>, warnings: &[String], infos: &[String]) {
    for (name, list) in [("warnings", warnings), ("infos", infos)] {
        if !list.is_empty() {
            out.extend_from_slice(format!(r#","{name}":"#).as_bytes());
            // Writing strings into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, list);
        }
    }
    out.push(b'}');
}

/// The bytes of a series' metric and point texts.
fn text_len(s: &Series) -> usize {
    s.metric.len()
        + s.values
            .iter()
            .chain(&s.histograms)
            .map(|p| p.text.len())
            .sum::<usize>()
}

/// `m` with its texts copied into one buffer of their own: what a cache keeps, so that a
/// kept window does not hold on to the whole answer it was cut from.
pub fn compacted(m: &Matrix) -> Matrix {
    let texts: usize = m.series.values().map(text_len).sum();
    let mut buf = BytesMut::with_capacity(texts);
    for s in m.series.values() {
        buf.extend_from_slice(&s.metric);
        for p in s.values.iter().chain(&s.histograms) {
            buf.extend_from_slice(&p.text);
        }
    }
    let buf = buf.freeze();
    let mut at = 0;
    let mut take = |len: usize| {
        let b = buf.slice(at..at + len);
        at += len;
        b
    };
    let series = m
        .series
        .iter()
        .map(|(k, s)| {
            let metric = take(s.metric.len());
            let mut copy = |points: &[Point]| -> Vec<Point> {
                points
                    .iter()
                    .map(|p| Point {
                        t: p.t,
                        text: take(p.text.len()),
                    })
                    .collect()
            };
            let values = copy(&s.values);
            let histograms = copy(&s.histograms);
            (
                k.clone(),
                Series {
                    metric,
                    values,
                    histograms,
                },
            )
        })
        .collect();
    Matrix {
        series,
        warnings: m.warnings.clone(),
        infos: m.infos.clone(),
    }
}

/// Roughly the bytes `m` holds, for the cache's budget.
pub fn size_of(m: &Matrix) -> usize {
    m.series
        .iter()
        .map(|(k, s)| {
            let labels: usize = k.iter().map(|(n, v)| n.len() + v.len() + 48).sum();
            let points: usize = s
                .values
                .iter()
                .chain(&s.histograms)
                .map(|p| p.text.len() + std::mem::size_of::<Point>())
                .sum();
            labels + s.metric.len() + points + 96
        })
        .sum::<usize>()
        + 64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(series: &[(&str, &[(f64, &str)])]) -> Vec<u8> {
        let result: Vec<Value> = series
            .iter()
            .map(|(job, pts)| {
                let values: Vec<Value> =
                    pts.iter().map(|(t, v)| serde_json::json!([t, v])).collect();
                serde_json::json!({"metric": {"__name__": "up", "job": job}, "values": values})
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "status": "success",
            "data": {"resultType": "matrix", "result": result}
        }))
        .unwrap()
    }

    #[test]
    fn parts_merge_without_a_repeated_point_and_in_label_order() {
        let a = parse(answer(&[("b", &[(60.0, "1"), (120.0, "2")])])).unwrap();
        let b = parse(answer(&[
            ("b", &[(120.0, "2"), (180.0, "3")]),
            ("a", &[(180.0, "7")]),
        ]))
        .unwrap();
        let m = merge([a, b]);
        let v: Value = serde_json::from_slice(&encode(&m)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"status": "success", "data": {"resultType": "matrix", "result": [
                {"metric": {"__name__": "up", "job": "a"}, "values": [[180.0, "7"]]},
                {"metric": {"__name__": "up", "job": "b"}, "values": [[60.0, "1"], [120.0, "2"], [180.0, "3"]]},
            ]}})
        );
    }

    #[test]
    fn extract_keeps_the_window_and_drops_emptied_series() {
        let m = parse(answer(&[
            ("a", &[(60.0, "1"), (120.0, "2"), (180.0, "3")]),
            ("b", &[(60.0, "1")]),
        ]))
        .unwrap();
        let cut = extract(&m, 120_000, 180_000);
        assert_eq!(cut.series.len(), 1);
        let a = cut.series.values().next().unwrap();
        assert_eq!(
            a.values.iter().map(|p| p.t).collect::<Vec<_>>(),
            vec![120_000, 180_000]
        );
    }

    #[test]
    fn timestamps_with_fractions_keep_their_text() {
        let m = parse(answer(&[("a", &[(1.5, "1")])])).unwrap();
        let text = String::from_utf8(encode(&m)).unwrap();
        assert!(text.contains("[1.5,\"1\"]"), "{text}");
        assert_eq!(
            m.series
                .values()
                .next()
                .unwrap()
                .values
                .first()
                .map(|p| p.t),
            Some(1500)
        );
    }

    #[test]
    fn overlapping_parts_keep_the_first_part_s_point_and_stay_in_order() {
        let a = parse(answer(&[("a", &[(60.0, "1"), (180.0, "3")])])).unwrap();
        let b = parse(answer(&[(
            "a",
            &[(0.0, "0"), (60.0, "x"), (120.0, "2"), (240.0, "4")],
        )]))
        .unwrap();
        let text = String::from_utf8(encode(&merge([a, b]))).unwrap();
        assert_eq!(
            text,
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"up","job":"a"},"values":[[0.0,"0"],[60.0,"1"],[120.0,"2"],[180.0,"3"],[240.0,"4"]]}]}}"#
        );
    }

    #[test]
    fn points_out_of_order_are_sorted_and_a_repeated_timestamp_kept_once() {
        let m = parse(answer(&[("a", &[(120.0, "2"), (60.0, "1"), (120.0, "9")])])).unwrap();
        let s = m.series.values().next().unwrap();
        let got: Vec<(i64, &[u8])> = s.values.iter().map(|p| (p.t, &p.text[..])).collect();
        assert_eq!(
            got,
            vec![
                (60_000, &br#"[60.0,"1"]"#[..]),
                (120_000, &br#"[120.0,"2"]"#[..])
            ]
        );
    }

    #[test]
    fn the_answer_is_written_as_read_with_warnings_after_the_data() {
        let body = br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"\u00e9\"q"},"values":[[1, "1e+05"]],"histograms":[[2,{"count":"1","sum":"2","buckets":[[0,"0.5","1","1"]]}]]}]},"warnings":["w \"1\""],"infos":["i"]}"#;
        let m = parse(Bytes::from_static(body)).unwrap();
        let want = br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"\u00e9\"q"},"values":[[1, "1e+05"]],"histograms":[[2,{"count":"1","sum":"2","buckets":[[0,"0.5","1","1"]]}]]}]},"warnings":["w \"1\""],"infos":["i"]}"#;
        assert_eq!(
            String::from_utf8(encode(&m)).unwrap(),
            std::str::from_utf8(want).unwrap()
        );
        let k = m.series.keys().next().unwrap();
        assert_eq!(&k[..], &[("a".to_string(), "é\"q".to_string())]);
    }

    #[test]
    fn a_compacted_window_equals_the_window_and_holds_only_its_own_bytes() {
        let pts: Vec<(f64, &str)> = (0..100).map(|i| (f64::from(i) * 60.0, "1")).collect();
        let m = parse(answer(&[("a", &pts), ("b", &pts)])).unwrap();
        let cut = extract(&m, 600_000, 1_200_000);
        let kept = compacted(&cut);
        assert_eq!(kept, cut);
        assert_eq!(encode(&kept), encode(&cut));
        assert!(size_of(&kept) < size_of(&m));
        drop(m);
        drop(cut);
        assert_eq!(
            kept.series.values().map(|s| s.values.len()).sum::<usize>(),
            22
        );
    }

    #[test]
    fn an_error_answer_is_not_a_matrix() {
        let body = br#"{"status":"error","errorType":"bad_data","error":"x"}"#;
        assert!(parse(Bytes::from_static(body)).is_err());
        for bad in [
            &br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#[..],
            br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[["x","1"]]}]}}"#,
            br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":[],"values":[]}]}}"#,
            br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1"#,
        ] {
            assert!(parse(Bytes::copy_from_slice(bad)).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
