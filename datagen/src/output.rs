//! The generator's outputs: OpenMetrics text for `promtool tsdb create-blocks-from openmetrics`,
//! and blocks written directly with Gauntlet's block writer.

use std::io::{BufWriter, Write};
use std::path::Path;

use gauntlet_engine::block::{BlockMeta, CutOptions, SeriesSamples, ThanosMeta, write_blocks};
use gauntlet_engine::chunk::STALE_NAN_BITS;

use super::{GenConfig, GenError, Generator, Sample};

/// Block range of the written blocks, ms (Prometheus's 2 h).
pub const BLOCK_RANGE_MS: i64 = 2 * 3_600_000;

/// Writes the data of `cfg` as OpenMetrics text to `w` and returns the number of sample lines.
///
/// Stale markers are left out: OpenMetrics has no way to write one (a `NaN` there is an
/// ordinary NaN sample, which queries would return for five minutes), and an imported series
/// simply ends at its last sample.
pub fn write_openmetrics(cfg: &GenConfig, w: impl Write) -> Result<u64, GenError> {
    let mut g = Generator::new(cfg)?;
    let mut w = BufWriter::with_capacity(1 << 20, w);
    for f in g.families() {
        writeln!(w, "# TYPE {} {}", f.name, f.kind)?;
        writeln!(w, "# HELP {} {}", f.name, f.help)?;
    }
    let mut buf: Vec<Sample> = Vec::new();
    let mut line = String::with_capacity(256);
    let mut ts_text = String::new();
    let mut ts_of_text = None;
    let mut lines = 0u64;
    while {
        buf.clear();
        g.next_scrape(&mut buf)
    } {
        for s in &buf {
            if s.value.to_bits() == STALE_NAN_BITS {
                continue;
            }
            if ts_of_text != Some(s.ts_ms) {
                ts_text.clear();
                format_seconds(s.ts_ms, &mut ts_text);
                ts_of_text = Some(s.ts_ms);
            }
            line.clear();
            line.push_str(&g.series()[s.series as usize].text);
            line.push(' ');
            format_value(s.value, &mut line);
            line.push(' ');
            line.push_str(&ts_text);
            line.push('\n');
            w.write_all(line.as_bytes())?;
            lines += 1;
        }
    }
    w.write_all(b"# EOF\n")?;
    w.flush()?;
    Ok(lines)
}

/// Generates the data of `cfg` into memory, one entry per series (stale markers included), in
/// the order the series started.
pub fn collect_series(cfg: &GenConfig) -> Result<Vec<SeriesSamples>, GenError> {
    let mut g = Generator::new(cfg)?;
    let mut cols: Vec<(Vec<i64>, Vec<f64>)> = Vec::new();
    let mut buf: Vec<Sample> = Vec::new();
    while {
        buf.clear();
        g.next_scrape(&mut buf)
    } {
        if cols.len() < g.series().len() {
            cols.resize_with(g.series().len(), Default::default);
        }
        for s in &buf {
            let c = &mut cols[s.series as usize];
            c.0.push(s.ts_ms);
            c.1.push(s.value);
        }
    }
    Ok(g.series()
        .iter()
        .zip(cols)
        .filter(|(_, (ts, _))| !ts.is_empty())
        .map(|(info, (ts, val))| SeriesSamples {
            labels: info.labels.clone(),
            ts,
            val,
        })
        .collect())
}

/// Generates the data of `cfg` and writes it as 2 h blocks under `dir` (created if missing),
/// stale markers included; returns the metas of the blocks written.
pub fn write_blocks_dir(cfg: &GenConfig, dir: &Path) -> Result<Vec<BlockMeta>, GenError> {
    write_blocks_dir_with(cfg, dir, None)
}

/// [`write_blocks_dir`] with a Thanos section (external labels, source) in every block's
/// meta, as a Thanos component writing the same data would leave it.
pub fn write_blocks_dir_with(
    cfg: &GenConfig,
    dir: &Path,
    thanos: Option<ThanosMeta>,
) -> Result<Vec<BlockMeta>, GenError> {
    let series = collect_series(cfg)?;
    std::fs::create_dir_all(dir)?;
    Ok(write_blocks(
        dir,
        series,
        BLOCK_RANGE_MS,
        CutOptions::default(),
        thanos,
    )?)
}

/// Writes `ms` as seconds with up to three decimals.
fn format_seconds(ms: i64, out: &mut String) {
    use std::fmt::Write as _;
    let sign = if ms < 0 { "-" } else { "" };
    let abs = ms.unsigned_abs();
    let (s, frac) = (abs / 1000, abs % 1000);
    let _ = if frac == 0 {
        write!(out, "{sign}{s}")
    } else if frac % 100 == 0 {
        write!(out, "{sign}{s}.{}", frac / 100)
    } else if frac % 10 == 0 {
        write!(out, "{sign}{s}.{:02}", frac / 10)
    } else {
        write!(out, "{sign}{s}.{frac:03}")
    };
}

/// Writes `v` so that parsing it gives back the same bits (finite values and NaN only).
fn format_value(v: f64, out: &mut String) {
    use std::fmt::Write as _;
    // Most values are whole numbers; integer formatting is faster than float formatting.
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        let _ = write!(out, "{}", v as i64);
    } else if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{v}");
    }
}
