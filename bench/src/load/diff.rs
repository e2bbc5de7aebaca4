//! Comparison of two Prometheus HTTP API answers for the differential query mode: same status,
//! same result type, same series (by label set), same timestamps, values equal within a
//! relative tolerance, NaN equal to NaN.

use std::collections::BTreeMap;

use serde_json::Value;

/// A query whose answers differ.
#[derive(Clone, Debug, PartialEq)]
pub struct Difference {
    /// Line of the query in its file.
    pub line: usize,
    /// The expression.
    pub expr: String,
    /// The first difference found.
    pub what: String,
}

/// Compares two answers given as (status, body); `None` when they agree.
pub fn compare_answers(a: (u16, &[u8]), b: (u16, &[u8]), tol: f64) -> Option<String> {
    if a.0 != b.0 {
        return Some(format!("status {} vs {}", a.0, b.0));
    }
    let (ja, jb) = match (
        serde_json::from_slice::<Value>(a.1),
        serde_json::from_slice::<Value>(b.1),
    ) {
        (Ok(x), Ok(y)) => (x, y),
        _ => return (a.1 != b.1).then(|| "bodies differ and are not JSON".to_string()),
    };
    if a.0 != 200 {
        // Error texts differ between implementations; the status is what must agree.
        return None;
    }
    let (da, db) = (&ja["data"], &jb["data"]);
    if let (Some(la), Some(lb)) = (da.as_array(), db.as_array()) {
        // `/api/v1/series` (and label lists): order is not part of the contract.
        let key = |v: &Value| format!("{:?}", label_set(v));
        let mut ka: Vec<String> = la.iter().map(key).collect();
        let mut kb: Vec<String> = lb.iter().map(key).collect();
        ka.sort_unstable();
        kb.sort_unstable();
        return (ka != kb).then(|| format!("{} vs {} entries, sets differ", ka.len(), kb.len()));
    }
    let (ta, tb) = (da["resultType"].as_str(), db["resultType"].as_str());
    if ta != tb {
        return Some(format!("result type {ta:?} vs {tb:?}"));
    }
    match ta {
        Some("vector") | Some("matrix") => {
            let sa = series_map(&da["result"]);
            let sb = series_map(&db["result"]);
            for (k, va) in &sa {
                let Some(vb) = sb.get(k) else {
                    return Some(format!("series {k} only in the first answer"));
                };
                if va.len() != vb.len() {
                    return Some(format!("series {k}: {} vs {} points", va.len(), vb.len()));
                }
                for (pa, pb) in va.iter().zip(vb) {
                    if pa.0 != pb.0 {
                        return Some(format!("series {k}: timestamp {} vs {}", pa.0, pb.0));
                    }
                    if !close(pa.1, pb.1, tol) {
                        return Some(format!("series {k} at {}: {} vs {}", pa.0, pa.1, pb.1));
                    }
                }
            }
            sb.keys()
                .find(|k| !sa.contains_key(*k))
                .map(|k| format!("series {k} only in the second answer"))
        }
        Some("scalar") | Some("string") => {
            let (pa, pb) = (point(&da["result"]), point(&db["result"]));
            (pa.0 != pb.0 || !close(pa.1, pb.1, tol)).then(|| format!("{pa:?} vs {pb:?}"))
        }
        _ => (da != db).then(|| "data differs".to_string()),
    }
}

/// Equal within relative tolerance; NaN equals NaN; infinities must match exactly.
pub fn close(a: f64, b: f64, tol: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a == b {
        return true;
    }
    if a.is_infinite() || b.is_infinite() {
        return false;
    }
    (a - b).abs() <= tol * a.abs().max(b.abs())
}

fn point(v: &Value) -> (i64, f64) {
    let ts = v[0]
        .as_f64()
        .map_or(i64::MIN, |t| (t * 1000.0).round() as i64);
    let val = v[1].as_str().map_or(f64::NAN, parse_value);
    (ts, val)
}

fn parse_value(s: &str) -> f64 {
    match s {
        "NaN" => f64::NAN,
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        _ => s.parse().unwrap_or(f64::NAN),
    }
}

/// Series of a vector or matrix result keyed by their label set rendered in name order.
fn series_map(result: &Value) -> BTreeMap<String, Vec<(i64, f64)>> {
    let mut out = BTreeMap::new();
    for s in result.as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let key = format!("{:?}", label_set(&s["metric"]));
        let points = if let Some(vs) = s["values"].as_array() {
            vs.iter().map(point).collect()
        } else {
            vec![point(&s["value"])]
        };
        out.insert(key, points);
    }
    out
}

/// A JSON label object (or plain string) as a sorted map, for comparing label sets.
fn label_set(v: &Value) -> BTreeMap<String, String> {
    match v {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
            .collect(),
        other => BTreeMap::from([(String::new(), other.to_string())]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vec_body(v: &str) -> String {
        format!(
            r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{"a":"1","b":"2"}},"value":[1700000000.5,"{v}"]}}]}}}}"#
        )
    }

    #[test]
    fn tolerance_nan_and_labels() {
        let a = vec_body("1.0000000");
        let ok = vec_body("1.0000005");
        let bad = vec_body("1.00001");
        assert_eq!(
            compare_answers((200, a.as_bytes()), (200, ok.as_bytes()), 1e-6),
            None
        );
        assert!(compare_answers((200, a.as_bytes()), (200, bad.as_bytes()), 1e-6).is_some());
        let n = vec_body("NaN");
        assert_eq!(
            compare_answers((200, n.as_bytes()), (200, n.as_bytes()), 1e-6),
            None
        );
        assert!(compare_answers((200, n.as_bytes()), (200, a.as_bytes()), 1e-6).is_some());
        // Same series with labels in another order is the same series.
        let swapped = a.replace(r#""a":"1","b":"2""#, r#""b":"2","a":"1""#);
        assert_eq!(
            compare_answers((200, a.as_bytes()), (200, swapped.as_bytes()), 1e-6),
            None
        );
        let other = a.replace(r#""b":"2""#, r#""b":"3""#);
        assert!(compare_answers((200, a.as_bytes()), (200, other.as_bytes()), 1e-6).is_some());
        assert!(compare_answers((200, a.as_bytes()), (400, a.as_bytes()), 1e-6).is_some());
    }
}
