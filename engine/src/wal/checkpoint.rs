//! Checkpoints (`wal/checkpoint.NNNNNNNN/`): what is still alive of a run of segments,
//! rewritten in the same segment format so a replay reads it before the segments after it, as
//! Prometheus's `wlog.Checkpoint` does. And the deletions that follow a checkpoint.

use std::path::{Path, PathBuf};

use super::WalError;
use super::reader::WalReader;
use super::record::{self, RecordType, RefSample, RefSeries, Tombstone};
use super::segment::{list_segments, parse_segment_name, sync_dir};
use super::writer::{WalOptions, WalWriter};

const PREFIX: &str = "checkpoint.";
const TMP_SUFFIX: &str = ".tmp";

/// Records are handed to the checkpoint's writer in batches of about this many bytes.
const BATCH_BYTES: usize = 1 << 20;

/// What a checkpoint kept and dropped; `total_*` counts everything read, kept or not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckpointStats {
    /// Series entries read.
    pub total_series: u64,
    /// Series entries dropped because `keep` refused their ref.
    pub dropped_series: u64,
    /// Float samples read.
    pub total_samples: u64,
    /// Samples dropped: older than `mint`, or of a series not kept.
    pub dropped_samples: u64,
    /// Tombstone ranges read.
    pub total_tombstones: u64,
    /// Ranges dropped: ending before `mint`, or of a series not kept.
    pub dropped_tombstones: u64,
    /// Records of other types (exemplars, metadata, histograms…) read; none are carried into
    /// the checkpoint, since Gauntlet's head does not keep them yet.
    pub dropped_other_records: u64,
}

/// Writes `wal_dir/checkpoint.{to:08}` from segments `from..=to` (after the previous
/// checkpoint's contents, if there is one): series records of the refs `keep` accepts, their
/// samples with `t >= mint` (ms), and their tombstones reaching `mint` or later. It is written
/// into `checkpoint.{to:08}.tmp` and renamed when complete, as Prometheus does; nothing is
/// deleted but leftover `.tmp` directories and an older copy of the same checkpoint.
///
/// Prometheus keeps the samples and tombstones of refs whose series it drops (a replay
/// ignores them); Gauntlet drops them with their series. Corruption in the segments read is
/// an error: a checkpoint cannot be repaired, since the head would not know what it lost.
pub fn checkpoint(
    wal_dir: &Path,
    from: u32,
    to: u32,
    keep: &dyn Fn(u64) -> bool,
    mint: i64,
) -> Result<CheckpointStats, WalError> {
    let mut sources = Vec::new();
    let mut from = from;
    if let Some((dir, n)) = last_checkpoint(wal_dir)? {
        let next = n.saturating_add(1);
        if from > next {
            return Err(WalError::InvalidArgument(format!(
                "checkpoint from segment {from:08} would skip segments after checkpoint.{n:08}"
            )));
        }
        // Segments the previous checkpoint covers should be gone already; they are not read
        // twice.
        from = next;
        sources.extend(list_segments(&dir)?.into_iter().map(|s| s.1));
    }
    if to < from {
        return Err(WalError::InvalidArgument(format!(
            "checkpoint of segments {from:08}..={to:08}: the range is empty"
        )));
    }
    sources.extend(
        list_segments(wal_dir)?
            .into_iter()
            .filter(|s| (from..=to).contains(&s.0))
            .map(|s| s.1),
    );

    delete_temp_checkpoints(wal_dir)?;
    let dir = checkpoint_dir(wal_dir, to);
    let tmp = PathBuf::from(format!("{}{TMP_SUFFIX}", dir.display()));
    let written = write_checkpoint(&tmp, sources, keep, mint);
    let stats = match written {
        Ok(stats) => stats,
        Err(e) => {
            // Best effort: the error that stopped the checkpoint is the one to report.
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    sync_dir(&tmp)?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(WalError::io(&dir))?;
    }
    std::fs::rename(&tmp, &dir).map_err(WalError::io(&dir))?;
    sync_dir(wal_dir)?;
    Ok(stats)
}

/// Filters the records of `sources` into a new log in `tmp`.
fn write_checkpoint(
    tmp: &Path,
    sources: Vec<PathBuf>,
    keep: &dyn Fn(u64) -> bool,
    mint: i64,
) -> Result<CheckpointStats, WalError> {
    let mut stats = CheckpointStats::default();
    let mut w = WalWriter::open(tmp, WalOptions::default())?;
    let mut r = WalReader::from_segments(sources);
    let mut samples: Vec<RefSample> = Vec::new();
    let mut stones: Vec<Tombstone> = Vec::new();
    let mut exemplars = Vec::new();
    let mut hists = Vec::new();
    let mut fhists = Vec::new();
    let mut extra_ends = Vec::new();
    // Encoded records back to back, and where each ends.
    let mut buf = Vec::new();
    let mut ends = Vec::new();
    while let Some(rec) = r.next()? {
        let start = buf.len();
        let decoded = match record::record_type(rec) {
            Some(RecordType::Series) => {
                // Labels borrow from the record, so this vector cannot outlive it.
                let mut series: Vec<RefSeries<'_>> = Vec::new();
                record::decode_series_into(rec, &mut series).map(|()| {
                    let n = series.len();
                    series.retain(|s| keep(s.r));
                    stats.total_series += n as u64;
                    stats.dropped_series += (n - series.len()) as u64;
                    if !series.is_empty() {
                        record::begin_series(&mut buf);
                        for s in &series {
                            record::encode_series_pairs(&mut buf, s.r, s.labels.iter().copied());
                        }
                    }
                })
            }
            Some(RecordType::Samples | RecordType::SamplesV2) => {
                samples.clear();
                record::decode_samples_into(rec, &mut samples).map(|()| {
                    let n = samples.len();
                    samples.retain(|s| s.t >= mint && keep(s.r));
                    stats.total_samples += n as u64;
                    stats.dropped_samples += (n - samples.len()) as u64;
                    if !samples.is_empty() {
                        record::encode_samples(&mut buf, &samples);
                    }
                })
            }
            Some(RecordType::HistogramSamples | RecordType::CustomBucketsHistogramSamples) => {
                hists.clear();
                record::decode_histogram_samples_into(rec, &mut hists).map(|_| {
                    let n = hists.len();
                    hists.retain(|s| s.t >= mint && keep(s.r));
                    stats.total_samples += n as u64;
                    stats.dropped_samples += (n - hists.len()) as u64;
                    let ends = record::encode_histogram_samples(&mut buf, &hists);
                    // Two records may come of one (a Prometheus record of type 7 whose first
                    // sample uses custom buckets); the first ends where the next begins.
                    if let Some((_, rest)) = ends.split_last() {
                        extra_ends.extend_from_slice(rest);
                    }
                })
            }
            Some(
                RecordType::FloatHistogramSamples | RecordType::CustomBucketsFloatHistogramSamples,
            ) => {
                fhists.clear();
                record::decode_float_histogram_samples_into(rec, &mut fhists).map(|_| {
                    let n = fhists.len();
                    fhists.retain(|s| s.t >= mint && keep(s.r));
                    stats.total_samples += n as u64;
                    stats.dropped_samples += (n - fhists.len()) as u64;
                    let ends = record::encode_float_histogram_samples(&mut buf, &fhists);
                    if let Some((_, rest)) = ends.split_last() {
                        extra_ends.extend_from_slice(rest);
                    }
                })
            }
            Some(RecordType::Exemplars) => {
                exemplars.clear();
                record::decode_exemplars_into(rec, &mut exemplars).map(|()| {
                    // As Prometheus's checkpoint: exemplars of kept series from `mint` on.
                    exemplars.retain(|e| e.t >= mint && keep(e.r));
                    if !exemplars.is_empty() {
                        record::encode_exemplars(&mut buf, &exemplars);
                    }
                })
            }
            Some(RecordType::Tombstones) => {
                stones.clear();
                record::decode_tombstones_into(rec, &mut stones).map(|()| {
                    let n = stones.len();
                    stones.retain(|s| s.maxt >= mint && keep(s.r));
                    stats.total_tombstones += n as u64;
                    stats.dropped_tombstones += (n - stones.len()) as u64;
                    if !stones.is_empty() {
                        record::encode_tombstones(&mut buf, &stones);
                    }
                })
            }
            _ => {
                stats.dropped_other_records += 1;
                Ok(())
            }
        };
        decoded.map_err(|e| WalError::Corrupt {
            segment: r.segment().to_path_buf(),
            offset: r.offset(),
            reason: e.to_string(),
        })?;
        ends.append(&mut extra_ends);
        if buf.len() > start {
            ends.push(buf.len());
        }
        if buf.len() > BATCH_BYTES {
            log_batch(&mut w, &buf, &ends)?;
            buf.clear();
            ends.clear();
        }
    }
    log_batch(&mut w, &buf, &ends)?;
    w.close()?;
    Ok(stats)
}

fn log_batch(w: &mut WalWriter, buf: &[u8], ends: &[usize]) -> Result<(), WalError> {
    let mut start = 0;
    let recs: Vec<&[u8]> = ends
        .iter()
        .map(|&end| {
            let rec = &buf[start..end];
            start = end;
            rec
        })
        .collect();
    w.log(&recs)
}

/// The directory of checkpoint `n`.
fn checkpoint_dir(wal_dir: &Path, n: u32) -> PathBuf {
    wal_dir.join(format!("{PREFIX}{n:08}"))
}

/// Checkpoints of `wal_dir` by number, oldest first; leftover `.tmp` directories are not
/// among them.
fn list_checkpoints(wal_dir: &Path) -> Result<Vec<(u32, PathBuf)>, WalError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(wal_dir).map_err(WalError::io(wal_dir))? {
        let entry = entry.map_err(WalError::io(wal_dir))?;
        let name = entry.file_name();
        let Some(n) = name
            .to_str()
            .and_then(|s| s.strip_prefix(PREFIX))
            .and_then(parse_segment_name)
        else {
            continue;
        };
        if !entry
            .file_type()
            .map_err(WalError::io(entry.path()))?
            .is_dir()
        {
            return Err(WalError::Layout {
                path: entry.path(),
                reason: "a checkpoint that is not a directory".into(),
            });
        }
        out.push((n, entry.path()));
    }
    out.sort_unstable_by_key(|c| c.0);
    Ok(out)
}

/// The newest checkpoint of `wal_dir` (its directory and the last segment it covers), or
/// `None` when there is none.
pub fn last_checkpoint(wal_dir: &Path) -> Result<Option<(PathBuf, u32)>, WalError> {
    Ok(list_checkpoints(wal_dir)?.pop().map(|(n, p)| (p, n)))
}

/// Deletes the segments of `wal_dir` numbered below `n`, oldest first, as Prometheus
/// truncates its log once a checkpoint covers them.
pub fn delete_segments_before(wal_dir: &Path, n: u32) -> Result<(), WalError> {
    for (m, path) in list_segments(wal_dir)? {
        if m >= n {
            break;
        }
        std::fs::remove_file(&path).map_err(WalError::io(&path))?;
    }
    Ok(())
}

/// Deletes the checkpoints of `wal_dir` numbered below `n`. Every one is tried; the first
/// failure is returned.
pub fn delete_checkpoints_before(wal_dir: &Path, n: u32) -> Result<(), WalError> {
    let mut first_err = None;
    for (m, path) in list_checkpoints(wal_dir)? {
        if m >= n {
            break;
        }
        if let Err(e) = std::fs::remove_dir_all(&path) {
            first_err.get_or_insert(WalError::Io { path, source: e });
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// Removes `checkpoint.*.tmp` directories a crashed checkpoint left behind.
fn delete_temp_checkpoints(wal_dir: &Path) -> Result<(), WalError> {
    for entry in std::fs::read_dir(wal_dir).map_err(WalError::io(wal_dir))? {
        let entry = entry.map_err(WalError::io(wal_dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with(PREFIX) && name.ends_with(TMP_SUFFIX) {
            let path = entry.path();
            std::fs::remove_dir_all(&path).map_err(WalError::io(&path))?;
        }
    }
    Ok(())
}
