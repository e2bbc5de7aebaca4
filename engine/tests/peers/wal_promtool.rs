//! What Gauntlet's WAL writer writes, a real `promtool tsdb dump` (Prometheus 2.42) replays:
//! a few hundred series with an hour of samples (NaN, stale markers, ±Inf and awkward floats
//! among them), compressed and not, with records spanning several pages and segment changes
//! both asked for and forced by a small segment size, must dump as exactly the samples
//! written. A checkpoint must dump as exactly what it kept.

use std::path::{Path, PathBuf};
use std::process::Command;

use gauntlet_engine::go_format::{FloatFormat, format_float};
use gauntlet_engine::labels::Labels;
use gauntlet_engine::wal::record::{self, Record, RefSample};
use gauntlet_engine::wal::{
    PAGE_SIZE, WalOptions, WalReader, WalWriter, checkpoint, delete_segments_before, segment_range,
};

const SERIES: u64 = 300;
const STEP_MS: i64 = 15_000;
/// Samples per series: an hour at 15 s.
const STEPS: i64 = 241;
const STALE: u64 = 0x7ff0_0000_0000_0002;

fn promtool() -> Option<PathBuf> {
    crate::common::require_or_skip("promtool", "wal_promtool")
}

/// Series refs start at 1, as Prometheus's do.
fn labels(r: u64) -> Labels {
    let i = r - 1;
    let mut pairs = vec![
        (
            "__name__".to_string(),
            format!("gauntlet_wal_test_{}", i % 7),
        ),
        ("instance".to_string(), format!("host-{i:03}")),
        ("job".to_string(), "wal".to_string()),
        // Long values make the series record span pages.
        (
            "path".to_string(),
            format!("/api/v1/{}", "segment/".repeat(12 + i as usize % 5)),
        ),
    ];
    if i.is_multiple_of(10) {
        pairs.push(("note".into(), format!("quote \" tab \t é {i}")));
    }
    Labels::from_pairs(pairs)
}

fn value(r: u64, step: i64) -> f64 {
    let k = r as i64 * 31 + step;
    match k % 101 {
        0 => f64::NAN,
        1 => f64::from_bits(STALE),
        2 => f64::INFINITY,
        3 => f64::NEG_INFINITY,
        4 => 1e21 + k as f64,
        5 => 5e-324,
        6 => -0.0,
        _ => (k as f64) / 7.0 + r as f64 * 1e6,
    }
}

/// One dump line as promtool prints it: `{labels} value timestamp`.
fn line(l: &Labels, t: i64, v: f64) -> String {
    format!("{l} {} {t}", format_float(v, FloatFormat::G))
}

/// The start of the hour written: now, less an hour, on a step.
fn start_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    now / STEP_MS * STEP_MS - (STEPS - 1) * STEP_MS
}

/// Writes the series record, one samples record with the first 40 steps of every series
/// (several pages), then a record per step; a segment change is asked for half way. Returns
/// the dump lines written, each with its series ref and step.
fn write_wal(wal: &Path, opts: WalOptions, t0: i64) -> Vec<(u64, i64, String)> {
    let mut w = WalWriter::open(wal, opts).unwrap();
    let all: Vec<(u64, Labels)> = (1..=SERIES).map(|r| (r, labels(r))).collect();
    let mut rec = Vec::new();
    record::encode_series(&mut rec, all.iter().map(|(r, l)| (*r, l)));
    assert!(rec.len() > PAGE_SIZE, "the series record spans pages");
    w.log(&[&rec]).unwrap();
    let mut lines = Vec::new();
    let mut samples = Vec::new();
    fn flush(w: &mut WalWriter, samples: &mut Vec<RefSample>) {
        let mut rec = Vec::new();
        record::encode_samples(&mut rec, samples);
        w.log(&[&rec]).unwrap();
        samples.clear();
    }
    for step in 0..STEPS {
        let t = t0 + step * STEP_MS;
        for (r, l) in &all {
            let v = value(*r, step);
            samples.push(RefSample { r: *r, t, v });
            lines.push((*r, step, line(l, t, v)));
        }
        if step >= 39 {
            flush(&mut w, &mut samples);
        }
        if step == STEPS / 2 {
            w.next_segment().unwrap();
        }
    }
    w.close().unwrap();
    lines
}

fn promtool_dump(promtool: &Path, db: &Path) -> Vec<String> {
    let out = crate::common::run_ok(Command::new(promtool).args(["tsdb", "dump"]).arg(db));
    let mut lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

fn assert_same(what: &str, mut want: Vec<String>, got: Vec<String>) {
    want.sort();
    assert_eq!(want.len(), got.len(), "{what}: samples written vs dumped");
    if let Some((w, g)) = want.iter().zip(&got).find(|(w, g)| w != g) {
        panic!("{what}: first difference\n want: {w}\n  got: {g}");
    }
}

#[test]
fn promtool_dumps_the_wal_gauntlet_wrote() {
    let Some(promtool) = promtool() else { return };
    let t0 = start_ms();
    for (what, opts) in [
        (
            "uncompressed, 4-page segments",
            WalOptions {
                segment_size: 4 * PAGE_SIZE,
                compress: false,
            },
        ),
        ("snappy, default segments", WalOptions::default()),
        (
            "snappy, 2-page segments",
            WalOptions {
                segment_size: 2 * PAGE_SIZE,
                compress: true,
            },
        ),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let wal = tmp.path().join("wal");
        let lines = write_wal(&wal, opts, t0);
        let (first, last) = segment_range(&wal).unwrap().unwrap();
        assert!(last - first >= 1, "{what}: segments {first}..={last}");
        assert_same(
            what,
            lines.into_iter().map(|l| l.2).collect(),
            promtool_dump(&promtool, tmp.path()),
        );
    }
}

/// Segments 0..=2 are checkpointed keeping the even refs and the samples from the middle of
/// the hour on, then deleted as the head would: a replay reads the checkpoint and then the
/// segments after it only, and promtool dumps exactly that.
#[test]
fn promtool_dumps_a_wal_checkpoint() {
    let Some(promtool) = promtool() else { return };
    let t0 = start_ms();
    let tmp = tempfile::tempdir().unwrap();
    let wal = tmp.path().join("wal");
    let lines = write_wal(
        &wal,
        WalOptions {
            segment_size: 4 * PAGE_SIZE,
            compress: true,
        },
        t0,
    );
    let (_, last) = segment_range(&wal).unwrap().unwrap();
    let to = 2;
    assert!(last > to + 1);
    // The first step each segment after the checkpoint holds.
    let mut r = WalReader::open(&wal).unwrap();
    let mut first_step_after = None;
    while r.advance().unwrap() {
        let seg: u32 = r
            .segment()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        if let (true, Ok(Record::Samples(s))) = (seg > to, record::decode(r.record())) {
            first_step_after.get_or_insert((s[0].t - t0) / STEP_MS);
        }
    }
    let first_step_after = first_step_after.unwrap();
    let mint_step = first_step_after / 2;
    let mint = t0 + mint_step * STEP_MS;
    let keep = |r: u64| r.is_multiple_of(2);
    let stats = checkpoint(&wal, 0, to, &keep, mint).unwrap();
    assert_eq!(stats.total_series, SERIES);
    assert_eq!(stats.dropped_series, SERIES / 2);
    delete_segments_before(&wal, to + 1).unwrap();

    // The replay: the checkpoint's records, then the later segments'.
    let mut r = WalReader::open(&wal).unwrap();
    let (mut series, mut samples) = (Vec::new(), Vec::new());
    while let Some(rec) = r.next().unwrap() {
        match record::decode(rec).unwrap() {
            Record::Series(s) => series.extend(s.iter().map(|s| s.r)),
            Record::Samples(s) => samples.extend(s.iter().map(|s| (s.r, (s.t - t0) / STEP_MS))),
            other => panic!("unexpected record {other:?}"),
        }
    }
    assert_eq!(
        series,
        (1..=SERIES).filter(|r| keep(*r)).collect::<Vec<_>>()
    );
    let mut want: Vec<(u64, i64)> = (mint_step..first_step_after)
        .flat_map(|step| (1..=SERIES).filter(|r| keep(*r)).map(move |r| (r, step)))
        .collect();
    want.extend((first_step_after..STEPS).flat_map(|step| (1..=SERIES).map(move |r| (r, step))));
    assert_eq!(samples, want);

    // Samples of the dropped series in later segments have no series record: a replay
    // drops them.
    let kept = lines
        .into_iter()
        .filter(|(r, step, _)| keep(*r) && *step >= mint_step)
        .map(|l| l.2)
        .collect();
    assert_same("checkpoint", kept, promtool_dump(&promtool, tmp.path()));
}
