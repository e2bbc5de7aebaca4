//! What both remote-write targets do with an input: the first byte picks whether the rest is
//! a snappy body (bit 0) and which label limits apply (bits 1-3); the body is decompressed,
//! decoded and every series validated. Whatever the decoder reads must be what prost (the
//! generated decoder of the same `.proto` files) reads; what prost refuses the decoder must
//! refuse; and the decoder may refuse more only for groups and unresolvable references.

use gauntlet_engine::remote_write::{
    DecodeError, LabelLimits, MetricType, Version, WriteBatch, decode, decompress, validate_labels,
};
use gauntlet_proto::io::prometheus::write::v2 as pb2;
use gauntlet_proto::prometheus as pb1;
use prost::Message;

/// Labels, samples (t, value bits, start timestamp), histograms, exemplars, type, help, unit.
type Series = (
    Vec<(String, String)>,
    Vec<(i64, u64, i64)>,
    u32,
    u32,
    MetricType,
    String,
    String,
);

pub fn run(version: Version, data: &[u8]) {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let mut raw = Vec::new();
    let buf = if mode & 1 == 1 {
        let limit = 1 << 20;
        let ours = decompress(body, limit, &mut raw);
        // snap allocates whatever length the body declares, which is what `decompress`
        // refuses to do: compare only below the limit.
        let declared = snap::raw::decompress_len(body).unwrap_or(usize::MAX);
        if declared <= limit {
            match (&ours, snap::raw::Decoder::new().decompress_vec(body)) {
                (Ok(()), Ok(want)) => assert_eq!(raw, want),
                (Ok(()), Err(e)) => panic!("decompressed what snap refuses: {e}"),
                (Err(_), Err(_)) => {}
                (Err(e), Ok(_)) => panic!("refused what snap decompresses: {e}"),
            }
        } else {
            assert!(ours.is_err());
        }
        if ours.is_err() {
            return;
        }
        raw.as_slice()
    } else {
        body
    };
    let limits = LabelLimits {
        max_labels: usize::from(mode >> 1 & 1) * 4,
        max_name_bytes: usize::from(mode >> 2 & 1) * 8,
        max_value_bytes: usize::from(mode >> 3 & 1) * 8,
        require_metric_name: mode & 0x10 != 0,
    };
    let mut batch = WriteBatch::new();
    let got = decode(version, buf, &mut batch).map(|()| {
        for i in 0..batch.len() {
            if let Err(e) = validate_labels(batch.series_labels(i), &limits) {
                assert!(e.to_string().len() < 1024);
            }
        }
        ours(&batch)
    });
    let want = match version {
        Version::V1 => pb1::WriteRequest::decode(buf).ok().map(|r| Ok(prost_v1(r))),
        Version::V2 => pb2::Request::decode(buf).ok().map(prost_v2),
    };
    match (&got, want) {
        (Ok(g), Some(Ok(w))) => assert_eq!(*g, w),
        (Ok(g), w) => panic!("decoded {g:?} where prost gives {w:?}"),
        (Err(_), None) => {}
        // Refusals beyond prost's: groups, which prost skips, symbol references, which
        // prost does not resolve (and truncates to 32 bits, where Gauntlet refuses them), and
        // bodies that decode to more entries than their size allows.
        (Err(e), Some(Err(()))) => assert!(group(e) || reference(e) || dense(e), "{e}"),
        (Err(e), Some(Ok(_))) => assert!(
            group(e) || dense(e) || matches!(e, DecodeError::BadSymbolRef { .. }),
            "refused what prost reads: {e}"
        ),
    }
    if let Err(e) = &got {
        assert!(e.to_string().len() < 1024, "{e}");
        assert!(batch.is_empty());
    }
}

/// A refusal for the memory the body would decode to ([`DecodeError::Dense`]).
fn dense(e: &DecodeError) -> bool {
    matches!(e, DecodeError::Dense { .. })
}

fn ours(b: &WriteBatch) -> Vec<Series> {
    (0..b.len())
        .map(|i| {
            let s = &b.series[i];
            let st = |k: usize| b.start_timestamps.get(k).copied().unwrap_or(0);
            (
                b.series_labels(i)
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect(),
                (s.samples.start as usize..s.samples.end as usize)
                    .map(|k| (b.samples[k].t, b.samples[k].v.to_bits(), st(k)))
                    .collect(),
                s.histograms,
                s.exemplars,
                s.metric_type,
                b.series_help(i).to_string(),
                b.series_unit(i).to_string(),
            )
        })
        .collect()
}

fn prost_v1(r: pb1::WriteRequest) -> Vec<Series> {
    r.timeseries
        .into_iter()
        .map(|t| {
            (
                t.labels.into_iter().map(|l| (l.name, l.value)).collect(),
                t.samples
                    .iter()
                    .map(|s| (s.timestamp, s.value.to_bits(), 0))
                    .collect(),
                t.histograms.len() as u32,
                t.exemplars.len() as u32,
                MetricType::Unknown,
                String::new(),
                String::new(),
            )
        })
        .collect()
}

/// References resolved as the receivers resolve them (0 is "" even in an empty table; label
/// names sorted, stably); `Err` when one does not resolve or a list is odd.
fn prost_v2(r: pb2::Request) -> Result<Vec<Series>, ()> {
    let sym = |i: u32| match r.symbols.get(i as usize) {
        Some(s) => Ok(s.clone()),
        None if i == 0 => Ok(String::new()),
        None => Err(()),
    };
    let pairs = |refs: &[u32]| -> Result<Vec<(String, String)>, ()> {
        if refs.len() % 2 != 0 {
            return Err(());
        }
        refs.chunks(2)
            .map(|p| Ok((sym(p[0])?, sym(p[1])?)))
            .collect()
    };
    r.timeseries
        .iter()
        .map(|t| {
            let mut labels = pairs(&t.labels_refs)?;
            labels.sort_by(|a, b| a.0.cmp(&b.0));
            for e in &t.exemplars {
                pairs(&e.labels_refs)?;
            }
            let md = t.metadata.unwrap_or_default();
            Ok((
                labels,
                t.samples
                    .iter()
                    .map(|s| (s.timestamp, s.value.to_bits(), s.start_timestamp))
                    .collect(),
                t.histograms.len() as u32,
                t.exemplars.len() as u32,
                MetricType::from_wire(md.r#type as u64),
                sym(md.help_ref)?,
                sym(md.unit_ref)?,
            ))
        })
        .collect()
}

fn group(e: &DecodeError) -> bool {
    e.to_string().contains("group (wire type 3 or 4)")
}

fn reference(e: &DecodeError) -> bool {
    matches!(
        e,
        DecodeError::BadSymbolRef { .. } | DecodeError::OddLabelRefs { .. }
    )
}
