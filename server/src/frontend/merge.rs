//! Range-query answers (Prometheus's JSON matrix) read, cut to a time window and put back
//! together: the parts of a split query, and cached extents with freshly asked pieces. Each
//! point is kept as the querier wrote it (its timestamp and value text untouched); points are
//! told apart by their timestamp, so the step two pieces both answered appears once.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// One series of a matrix: its labels and its float and histogram points by timestamp (ms).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The `metric` object as the querier wrote it.
    pub metric: Map<String, Value>,
    /// `[ts, "value"]` points by timestamp, ms.
    pub values: BTreeMap<i64, Value>,
    /// `[ts, {histogram}]` points by timestamp, ms.
    pub histograms: BTreeMap<i64, Value>,
}

impl Series {
    fn is_empty(&self) -> bool {
        self.values.is_empty() && self.histograms.is_empty()
    }
}

/// A successful range-query answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Matrix {
    /// Series by their labels, in Prometheus's order of label sets.
    pub series: BTreeMap<Vec<(String, String)>, Series>,
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

/// Reads a successful range-query answer.
pub fn parse(body: &[u8]) -> Result<Matrix, MatrixError> {
    let v: Value = serde_json::from_slice(body)?;
    if v["status"] != "success" {
        return Err(MatrixError::Shape("status is not success"));
    }
    if v["data"]["resultType"] != "matrix" {
        return Err(MatrixError::Shape("resultType is not matrix"));
    }
    let Some(result) = v["data"]["result"].as_array() else {
        return Err(MatrixError::Shape("no result array"));
    };
    let mut m = Matrix {
        warnings: strings(&v["warnings"]),
        infos: strings(&v["infos"]),
        ..Matrix::default()
    };
    for s in result {
        let metric = s["metric"].as_object().cloned().unwrap_or_default();
        let series = Series {
            values: points(&s["values"])?,
            histograms: points(&s["histograms"])?,
            metric,
        };
        m.series.insert(key(&series.metric), series);
    }
    Ok(m)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// `[[ts, x], ...]` by timestamp, ms.
fn points(v: &Value) -> Result<BTreeMap<i64, Value>, MatrixError> {
    let mut out = BTreeMap::new();
    let Some(a) = v.as_array() else {
        return Ok(out);
    };
    for p in a {
        let t = p[0]
            .as_f64()
            .ok_or(MatrixError::Shape("a point without a timestamp"))?;
        out.insert((t * 1000.0).round() as i64, p.clone());
    }
    Ok(out)
}

/// The label set of `metric`, sorted by name: the order Prometheus sorts series in.
fn key(metric: &Map<String, Value>) -> Vec<(String, String)> {
    let mut k: Vec<(String, String)> = metric
        .iter()
        .map(|(n, v)| (n.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    k.sort();
    k
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
            values: s
                .values
                .range(start..=end)
                .map(|(t, p)| (*t, p.clone()))
                .collect(),
            histograms: s
                .histograms
                .range(start..=end)
                .map(|(t, p)| (*t, p.clone()))
                .collect(),
        };
        if !cut.is_empty() {
            out.series.insert(k.clone(), cut);
        }
    }
    out
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
                    for (t, p) in s.values {
                        have.values.entry(t).or_insert(p);
                    }
                    for (t, p) in s.histograms {
                        have.histograms.entry(t).or_insert(p);
                    }
                }
            }
        }
    }
    out
}

/// The answer's JSON, as Prometheus writes a range query's.
pub fn encode(m: &Matrix) -> Vec<u8> {
    let result: Vec<Value> = m
        .series
        .values()
        .map(|s| {
            let mut o = Map::new();
            o.insert("metric".into(), Value::Object(s.metric.clone()));
            if !s.values.is_empty() {
                o.insert(
                    "values".into(),
                    Value::Array(s.values.values().cloned().collect()),
                );
            }
            if !s.histograms.is_empty() {
                o.insert(
                    "histograms".into(),
                    Value::Array(s.histograms.values().cloned().collect()),
                );
            }
            Value::Object(o)
        })
        .collect();
    let mut top = Map::new();
    top.insert("status".into(), "success".into());
    let mut data = Map::new();
    data.insert("resultType".into(), "matrix".into());
    data.insert("result".into(), Value::Array(result));
    top.insert("data".into(), Value::Object(data));
    if !m.warnings.is_empty() {
        top.insert("warnings".into(), m.warnings.clone().into());
    }
    if !m.infos.is_empty() {
        top.insert("infos".into(), m.infos.clone().into());
    }
    // Serialising a tree of JSON values cannot fail.
    serde_json::to_vec(&Value::Object(top)).unwrap_or_default()
}

/// Roughly the bytes `m` holds, for the cache's budget.
pub fn size_of(m: &Matrix) -> usize {
    m.series
        .values()
        .map(|s| {
            let labels: usize = s
                .metric
                .iter()
                .map(|(k, v)| k.len() + v.to_string().len())
                .sum();
            labels + 64 + (s.values.len() + s.histograms.len()) * 48
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
        let a = parse(&answer(&[("b", &[(60.0, "1"), (120.0, "2")])])).unwrap();
        let b = parse(&answer(&[
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
        let m = parse(&answer(&[
            ("a", &[(60.0, "1"), (120.0, "2"), (180.0, "3")]),
            ("b", &[(60.0, "1")]),
        ]))
        .unwrap();
        let cut = extract(&m, 120_000, 180_000);
        assert_eq!(cut.series.len(), 1);
        let a = cut.series.values().next().unwrap();
        assert_eq!(
            a.values.keys().copied().collect::<Vec<_>>(),
            vec![120_000, 180_000]
        );
    }

    #[test]
    fn timestamps_with_fractions_keep_their_text() {
        let m = parse(&answer(&[("a", &[(1.5, "1")])])).unwrap();
        let text = String::from_utf8(encode(&m)).unwrap();
        assert!(text.contains("[1.5,\"1\"]"), "{text}");
        assert_eq!(
            m.series.values().next().unwrap().values.keys().next(),
            Some(&1500)
        );
    }

    #[test]
    fn an_error_answer_is_not_a_matrix() {
        let body = br#"{"status":"error","errorType":"bad_data","error":"x"}"#;
        assert!(parse(body).is_err());
    }
}
