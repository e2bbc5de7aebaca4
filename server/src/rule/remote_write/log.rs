//! The stateless ruler's write-ahead log: every round's samples are appended (and fsynced)
//! before any endpoint is sent them, so samples an endpoint has not taken survive its outage
//! and a crash of the ruler, and are sent again after a restart.
//!
//! The log is a Prometheus WAL directory (`--data-dir/wal`, 32 KiB pages, CRC-checked
//! fragments, snappy records): each batch is a series record declaring the series the batch
//! is the first in its segment to use, then one samples record. Series refs are never reused,
//! and each segment declares the series it uses, so a segment can be deleted once every
//! endpoint has sent its batches without later segments losing their labels.
//!
//! A batch's place in the log is its [`Position`]: its segment and the number of samples
//! records before it in that segment. Each endpoint keeps, in a small file under
//! `--data-dir/remote_write/`, the position of the first batch it has not sent yet
//! ([`read_progress`], [`write_progress`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use gauntlet_engine::labels::Labels;
use gauntlet_engine::wal::record::{self, RefSample};
use gauntlet_engine::wal::{
    WalError, WalOptions, WalReader, WalWriter, delete_segments_before, parse_segment_name, repair,
    segment_name,
};

/// One recorded float sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series, as the rule gave it (no external labels yet).
    pub labels: Labels,
    /// Timestamp, ms.
    pub t: i64,
    /// Value (a stale marker is Prometheus's stale NaN).
    pub v: f64,
}

/// Where a batch is in the log: later batches have greater positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// The segment holding the batch.
    pub segment: u32,
    /// Samples records before the batch in its segment.
    pub index: u32,
}

impl Position {
    /// The position right after this one: where an endpoint resumes once this batch is sent.
    pub fn next(self) -> Position {
        Position {
            segment: self.segment,
            index: self.index + 1,
        }
    }
}

/// One round's samples, as logged.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Its place in the log.
    pub pos: Position,
    /// Its samples, in the order they were appended.
    pub samples: Arc<[Sample]>,
}

/// The log being written.
#[derive(Debug)]
pub struct SampleLog {
    dir: PathBuf,
    writer: WalWriter,
    /// Refs of the series declared in the segment being written.
    declared: HashMap<Labels, u64>,
    next_ref: u64,
    /// Samples records in the segment being written.
    index: u32,
    /// A segment is closed once it holds this many bytes, so sent ones can be deleted.
    cut_bytes: u64,
    buf: Vec<u8>,
}

impl SampleLog {
    /// Opens the log in `dir` (created if missing): replays what is there (a torn tail left by
    /// a crash is cut off, as Prometheus repairs its WAL, and logged), then starts a new
    /// segment. Returns the log and every batch found, oldest first.
    pub fn open(dir: &Path, cut_bytes: u64) -> Result<(SampleLog, Vec<Batch>), WalError> {
        std::fs::create_dir_all(dir).map_err(|source| WalError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let (batches, max_ref) = loop {
            match replay(dir) {
                Ok(found) => break found,
                Err(e @ WalError::Corrupt { .. }) => {
                    tracing::warn!(error = %e, "remote-write WAL has a torn or corrupt tail; cutting it off");
                    repair(dir, &e)?;
                }
                Err(e) => return Err(e),
            }
        };
        let writer = WalWriter::open(dir, WalOptions::default())?;
        Ok((
            SampleLog {
                dir: dir.to_path_buf(),
                writer,
                declared: HashMap::new(),
                next_ref: max_ref + 1,
                index: 0,
                cut_bytes,
                buf: Vec::new(),
            },
            batches,
        ))
    }

    /// The position the next batch will have.
    pub fn next_position(&self) -> Position {
        Position {
            segment: self.writer.segment(),
            index: self.index,
        }
    }

    /// Appends `samples` as one batch and fsyncs it; returns the batch. On error nothing of
    /// it counts as logged.
    pub fn append(&mut self, samples: Vec<Sample>) -> Result<Batch, WalError> {
        self.buf.clear();
        record::begin_series(&mut self.buf);
        let mut refs = Vec::with_capacity(samples.len());
        let mut fresh: Vec<(Labels, u64)> = Vec::new();
        for s in &samples {
            let r = match self.declared.get(&s.labels) {
                Some(r) => *r,
                None => match fresh.iter().find(|(l, _)| *l == s.labels) {
                    Some((_, r)) => *r,
                    None => {
                        let r = self.next_ref;
                        self.next_ref += 1;
                        record::encode_series_pairs(
                            &mut self.buf,
                            r,
                            s.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())),
                        );
                        fresh.push((s.labels.clone(), r));
                        r
                    }
                },
            };
            refs.push(RefSample { r, t: s.t, v: s.v });
        }
        let series = std::mem::take(&mut self.buf);
        let mut samples_rec = Vec::new();
        record::encode_samples(&mut samples_rec, &refs);
        let pos = self.next_position();
        let logged = if fresh.is_empty() {
            self.writer.log(&[&samples_rec])
        } else {
            self.writer.log(&[&series, &samples_rec])
        };
        self.buf = series;
        logged?;
        self.writer.sync()?;
        self.declared.extend(fresh);
        self.index += 1;
        if self.segment_bytes() >= self.cut_bytes {
            self.writer.next_segment()?;
            self.declared.clear();
            self.index = 0;
        }
        Ok(Batch {
            pos,
            samples: samples.into(),
        })
    }

    /// Deletes the segments numbered below `segment` (never the one being written): every
    /// endpoint has sent all their batches.
    pub fn delete_before(&self, segment: u32) -> Result<(), WalError> {
        delete_segments_before(&self.dir, segment.min(self.writer.segment()))
    }

    /// Closes the segment being written (its last page padded, fsynced).
    pub fn close(self) -> Result<(), WalError> {
        self.writer.close()
    }

    fn segment_bytes(&self) -> u64 {
        std::fs::metadata(segment_name(&self.dir, self.writer.segment()))
            .map(|m| m.len())
            .unwrap_or(0)
    }
}

/// Every batch of the log in `dir`, and the greatest series ref seen.
fn replay(dir: &Path) -> Result<(Vec<Batch>, u64), WalError> {
    let mut reader = WalReader::open(dir)?;
    let mut labels: HashMap<u64, Labels> = HashMap::new();
    let mut batches = Vec::new();
    let mut max_ref = 0;
    let mut segment = None;
    let mut index = 0;
    let mut unknown = 0usize;
    while reader.advance()? {
        let seg = reader
            .segment()
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(parse_segment_name)
            .unwrap_or(0);
        if segment != Some(seg) {
            segment = Some(seg);
            index = 0;
        }
        let decoded = record::decode(reader.record()).map_err(|e| WalError::Corrupt {
            segment: reader.segment().to_path_buf(),
            offset: reader.offset(),
            reason: e.to_string(),
        })?;
        match decoded {
            record::Record::Series(series) => {
                for s in series {
                    max_ref = max_ref.max(s.r);
                    labels.insert(s.r, Labels::from_pairs(s.labels));
                }
            }
            record::Record::Samples(refs) => {
                let samples: Vec<Sample> = refs
                    .iter()
                    .filter_map(|s| match labels.get(&s.r) {
                        Some(l) => Some(Sample {
                            labels: l.clone(),
                            t: s.t,
                            v: s.v,
                        }),
                        None => {
                            unknown += 1;
                            None
                        }
                    })
                    .collect();
                batches.push(Batch {
                    pos: Position {
                        segment: seg,
                        index,
                    },
                    samples: samples.into(),
                });
                index += 1;
            }
            _ => {}
        }
    }
    if unknown > 0 {
        tracing::warn!(
            samples = unknown,
            "remote-write WAL samples name series no record declares; they are skipped"
        );
    }
    Ok((batches, max_ref))
}

/// The file keeping endpoint `name`'s progress.
fn progress_path(dir: &Path, name: &str) -> PathBuf {
    let safe = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if safe {
        dir.join(format!("{name}.position"))
    } else {
        let h = xxhash_rust::xxh64::xxh64(name.as_bytes(), 0);
        dir.join(format!("{h:016x}.position"))
    }
}

/// Where endpoint `name` resumes: the first batch it has not sent, or `None` when it has no
/// progress file yet (a new endpoint).
pub fn read_progress(dir: &Path, name: &str) -> std::io::Result<Option<Position>> {
    let path = progress_path(dir, name);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut it = text.split_whitespace().map(str::parse::<u32>);
    match (it.next(), it.next()) {
        (Some(Ok(segment)), Some(Ok(index))) => Ok(Some(Position { segment, index })),
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: not \"segment index\": {text:?}", path.display()),
        )),
    }
}

/// Keeps `pos` as endpoint `name`'s progress: written to a temporary file, fsynced, renamed
/// over the old one, so a crash leaves the old or the new position, never a torn one.
pub fn write_progress(dir: &Path, name: &str, pos: Position) -> std::io::Result<()> {
    use std::io::Write as _;
    std::fs::create_dir_all(dir)?;
    let path = progress_path(dir, name);
    let tmp = path.with_extension("position.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    writeln!(f, "{} {}", pos.segment, pos.index)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str, t: i64, v: f64) -> Sample {
        Sample {
            labels: Labels::from_pairs([("__name__", name), ("job", "j")]),
            t,
            v,
        }
    }

    #[test]
    fn batches_come_back_after_a_reopen_at_their_positions() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("wal");
        let (mut log, found) = SampleLog::open(&wal, 1 << 20).unwrap();
        assert!(found.is_empty());
        let a = log
            .append(vec![sample("a", 1000, 1.0), sample("b", 1000, 2.0)])
            .unwrap();
        let b = log
            .append(vec![sample("a", 2000, 3.0), sample("c", 2000, 4.0)])
            .unwrap();
        assert_eq!(a.pos.next(), b.pos);
        // No close: as after a SIGKILL.
        drop(log);
        let (mut log, found) = SampleLog::open(&wal, 1 << 20).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].pos, a.pos);
        assert_eq!(&*found[0].samples, &*a.samples);
        assert_eq!(found[1].pos, b.pos);
        assert_eq!(&*found[1].samples, &*b.samples);
        // Writing goes on in a new segment, with refs not reused.
        let c = log.append(vec![sample("d", 3000, 5.0)]).unwrap();
        assert!(c.pos > b.pos);
        assert_eq!(c.pos.index, 0);
        drop(log);
        let (_, found) = SampleLog::open(&wal, 1 << 20).unwrap();
        assert_eq!(found.len(), 3);
        assert_eq!(found[2].samples[0], sample("d", 3000, 5.0));
    }

    #[test]
    fn sent_segments_are_deleted_and_the_rest_still_replays() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("wal");
        // Tiny segments: every batch closes its segment.
        let (mut log, _) = SampleLog::open(&wal, 1).unwrap();
        let mut last = None;
        for i in 0..5 {
            last = Some(log.append(vec![sample("a", i * 1000, i as f64)]).unwrap());
        }
        let last = last.unwrap();
        log.delete_before(last.pos.segment).unwrap();
        drop(log);
        let (_, found) = SampleLog::open(&wal, 1).unwrap();
        assert_eq!(found.len(), 1, "only the last batch's segment is left");
        assert_eq!(found[0].pos, last.pos);
        assert_eq!(found[0].samples[0], sample("a", 4000, 4.0));
    }

    #[test]
    fn a_torn_tail_is_cut_and_the_batches_before_it_survive() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("wal");
        let (mut log, _) = SampleLog::open(&wal, 1 << 20).unwrap();
        let a = log.append(vec![sample("a", 1000, 1.0)]).unwrap();
        let seg = a.pos.segment;
        drop(log);
        // A half-written record after the first: a fragment header promising more bytes.
        let path = segment_name(&wal, seg);
        let mut bytes = std::fs::read(&path).unwrap();
        let end = bytes.len();
        bytes.extend_from_slice(&[1, 0, 200, 0, 0, 0, 0, 9, 9]);
        assert!(end < 32 * 1024);
        std::fs::write(&path, &bytes).unwrap();
        let (_, found) = SampleLog::open(&wal, 1 << 20).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].samples[0], sample("a", 1000, 1.0));
    }

    #[test]
    fn progress_survives_and_odd_names_get_safe_files() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_progress(dir.path(), "recv").unwrap(), None);
        let p = Position {
            segment: 3,
            index: 7,
        };
        write_progress(dir.path(), "recv", p).unwrap();
        assert_eq!(read_progress(dir.path(), "recv").unwrap(), Some(p));
        write_progress(dir.path(), "../evil/name", p.next()).unwrap();
        assert_eq!(
            read_progress(dir.path(), "../evil/name").unwrap(),
            Some(p.next())
        );
        assert!(progress_path(dir.path(), "../evil/name").starts_with(dir.path()));
    }
}
