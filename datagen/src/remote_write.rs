//! Generator output as a Prometheus remote-write 1.0 request body: a protobuf
//! `prometheus.WriteRequest` in snappy block format, as `gauntlet all --demo` posts its live
//! feed to its own receiver.

use gauntlet_engine::encoding::{put_uvarint, uvarint_len};

use super::{Sample, SeriesInfo};

/// The snappy-compressed `WriteRequest` holding `samples` (indexes into `series`, as a
/// [`Generator`](super::Generator) hands them out): one `TimeSeries` per series, its samples
/// in time order, series in order of first appearance. Stale markers travel as their NaN.
///
/// Panics if a sample names a series outside `series` (the caller's invariant).
#[allow(
    clippy::expect_used,
    reason = "Snappy refuses only inputs over 4 GiB; generated requests are far smaller"
)]
pub fn encode_write_request(series: &[SeriesInfo], samples: &[Sample]) -> Vec<u8> {
    let mut order: Vec<u32> = Vec::new();
    let mut of_series: std::collections::HashMap<u32, Vec<(i64, f64)>> =
        std::collections::HashMap::new();
    for s in samples {
        let v = of_series.entry(s.series).or_insert_with(|| {
            order.push(s.series);
            Vec::new()
        });
        v.push((s.ts_ms, s.value));
    }
    let mut raw = Vec::with_capacity(samples.len() * 96);
    let mut ts_body = Vec::with_capacity(256);
    for idx in order {
        let mut points = of_series.remove(&idx).unwrap_or_default();
        points.sort_by_key(|p| p.0);
        ts_body.clear();
        for l in series[idx as usize].labels.iter() {
            let (k, v) = (l.name.as_bytes(), l.value.as_bytes());
            let body = 1
                + uvarint_len(k.len() as u64)
                + k.len()
                + 1
                + uvarint_len(v.len() as u64)
                + v.len();
            ts_body.push(0x0a);
            put_uvarint(&mut ts_body, body as u64);
            ts_body.push(0x0a);
            put_uvarint(&mut ts_body, k.len() as u64);
            ts_body.extend_from_slice(k);
            ts_body.push(0x12);
            put_uvarint(&mut ts_body, v.len() as u64);
            ts_body.extend_from_slice(v);
        }
        for (ts, val) in points {
            // Sample: value (field 1, fixed64), timestamp (field 2, varint).
            let body = 1 + 8 + 1 + uvarint_len(ts as u64);
            ts_body.push(0x12);
            put_uvarint(&mut ts_body, body as u64);
            ts_body.push(0x09);
            ts_body.extend_from_slice(&val.to_bits().to_le_bytes());
            ts_body.push(0x10);
            put_uvarint(&mut ts_body, ts as u64);
        }
        raw.push(0x0a);
        put_uvarint(&mut raw, ts_body.len() as u64);
        raw.extend_from_slice(&ts_body);
    }
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .expect("a request body under 4 GiB compresses")
}

#[cfg(test)]
mod tests {
    use gauntlet_engine::remote_write::{Version, WriteBatch, decode, decompress};

    use super::*;
    use crate::{GenConfig, Generator};

    #[test]
    fn a_scrape_decodes_back_to_its_samples() {
        let cfg = GenConfig {
            targets: 2,
            duration_ms: 60_000,
            ..GenConfig::default()
        };
        let mut g = Generator::new(&cfg).unwrap();
        let mut samples = Vec::new();
        assert!(g.next_scrape(&mut samples));
        assert!(g.next_scrape(&mut samples));
        let body = encode_write_request(g.series(), &samples);
        let mut raw = Vec::new();
        decompress(&body, 64 << 20, &mut raw).unwrap();
        let mut batch = WriteBatch::default();
        decode(Version::V1, &raw, &mut batch).unwrap();
        assert!(!samples.is_empty());
        assert_eq!(batch.samples.len(), samples.len());
        let mut want: Vec<(i64, u64)> = samples
            .iter()
            .map(|s| (s.ts_ms, s.value.to_bits()))
            .collect();
        let mut got: Vec<(i64, u64)> = batch.samples.iter().map(|s| (s.t, s.v.to_bits())).collect();
        want.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, want);
        let distinct: std::collections::HashSet<u32> = samples.iter().map(|s| s.series).collect();
        assert_eq!(batch.series.len(), distinct.len());
        assert!(batch.labels.iter().any(|(n, _)| *n == "__name__"));
    }
}
