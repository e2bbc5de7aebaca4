//! The active query log: Prometheus's `queries.active` file. Each running query writes its
//! text and start time into a slot of a fixed-size file and clears the slot when it ends, so
//! after a crash the file still names the queries that were running; they are logged at the
//! next start, as Prometheus logs them.
//!
//! Layout (as Prometheus lays it out, so its readers and ours agree): a `[`, then one slot of
//! [`SLOT_BYTES`] per concurrent query, each either spaces or a JSON object
//! `{"query":"…","timestamp_sec":N}` followed by a comma and padded with spaces, then a `]`.
//! Slots are written in place with one positioned write each, so a kill mid-write spoils at
//! most the slot being written.

use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Bytes of one slot: a query longer than fits is cut (at a character boundary).
pub const SLOT_BYTES: usize = 1000;

/// The file's name in its directory, Prometheus's.
pub const FILE_NAME: &str = "queries.active";

/// The open log.
#[derive(Debug)]
pub struct ActiveQueries {
    file: File,
    path: PathBuf,
    /// Which slots are taken.
    taken: Mutex<Vec<bool>>,
}

/// Why the log could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("active query log {path}: {source}")]
pub struct ActiveLogError {
    /// The file.
    pub path: PathBuf,
    /// What failed.
    pub source: std::io::Error,
}

/// A query's slot, cleared when dropped.
#[derive(Debug)]
pub struct ActiveQuery<'a> {
    log: &'a ActiveQueries,
    slot: Option<usize>,
}

impl Drop for ActiveQuery<'_> {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            self.log.write_slot(i, "");
            let mut taken = self.log.taken.lock().unwrap_or_else(|p| p.into_inner());
            taken[i] = false;
        }
    }
}

impl ActiveQueries {
    /// Opens `dir/queries.active` with `slots` slots, first logging (at `warn`) every query
    /// the file names from a run that did not end cleanly, then clearing it.
    pub fn open(dir: &Path, slots: usize) -> Result<ActiveQueries, ActiveLogError> {
        let path = dir.join(FILE_NAME);
        let err = |source| ActiveLogError {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(err)?;
        if let Ok(old) = std::fs::read(&path) {
            let unfinished = unfinished_queries(&old);
            if !unfinished.is_empty() {
                tracing::warn!(
                    file = %path.display(),
                    count = unfinished.len(),
                    "these queries did not finish in the last run"
                );
                for q in unfinished {
                    tracing::warn!(query = %q, "unfinished query");
                }
            }
        }
        let slots = slots.max(1);
        let file = File::create(&path).map_err(err)?;
        let mut blank = vec![b' '; 2 + slots * SLOT_BYTES];
        blank[0] = b'[';
        if let Some(last) = blank.last_mut() {
            *last = b']';
        }
        file.write_all_at(&blank, 0).map_err(err)?;
        Ok(ActiveQueries {
            file,
            path,
            taken: Mutex::new(vec![false; slots]),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records `query` as running until the returned guard drops. With every slot taken (more
    /// queries than the gate admits), the query runs unrecorded.
    pub fn enter(&self, query: &str, now_sec: i64) -> ActiveQuery<'_> {
        let slot = {
            let mut taken = self.taken.lock().unwrap_or_else(|p| p.into_inner());
            let free = taken.iter().position(|t| !t);
            if let Some(i) = free {
                taken[i] = true;
            }
            free
        };
        if let Some(i) = slot {
            self.write_slot(i, &entry(query, now_sec));
        }
        ActiveQuery { log: self, slot }
    }

    fn write_slot(&self, i: usize, text: &str) {
        let mut buf = vec![b' '; SLOT_BYTES];
        buf[..text.len()].copy_from_slice(text.as_bytes());
        // Losing a slot's write only loses the crash report, never the query.
        if let Err(e) = self.file.write_all_at(&buf, (1 + i * SLOT_BYTES) as u64) {
            tracing::debug!(error = %e, "writing the active query log");
        }
    }
}

/// One slot's text: the JSON entry and its comma, cut to fit the slot.
fn entry(query: &str, now_sec: i64) -> String {
    let tail = format!(",\"timestamp_sec\":{now_sec}}},");
    let room = SLOT_BYTES - tail.len() - "{\"query\":\"\"".len();
    let mut q = String::new();
    for c in query.chars() {
        let mut piece = String::new();
        match c {
            '"' => piece.push_str("\\\""),
            '\\' => piece.push_str("\\\\"),
            c if (c as u32) < 0x20 => piece.push_str(&format!("\\u{:04x}", c as u32)),
            c => piece.push(c),
        }
        if q.len() + piece.len() > room {
            break;
        }
        q.push_str(&piece);
    }
    format!("{{\"query\":\"{q}\"{tail}")
}

/// The queries a log file names, in slot order; unreadable slots are skipped.
pub fn unfinished_queries(file: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(file);
    let body = text.trim().trim_start_matches('[').trim_end_matches(']');
    let mut out = Vec::new();
    for piece in body.split("},") {
        let piece = piece.trim();
        if piece.is_empty() {
            continue;
        }
        let json = format!("{piece}}}");
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&json)
            && let Some(q) = v["query"].as_str()
        {
            out.push(q.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_queries_are_in_the_file_and_finished_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let log = ActiveQueries::open(dir.path(), 3).unwrap();
        let a = log.enter("sum(rate(x[5m]))", 100);
        let b = log.enter("up{job=\"a \\\"quoted\\\"\"}", 101);
        let read = || unfinished_queries(&std::fs::read(log.path()).unwrap());
        assert_eq!(
            read(),
            vec!["sum(rate(x[5m]))", "up{job=\"a \\\"quoted\\\"\"}"]
        );
        drop(a);
        assert_eq!(read(), vec!["up{job=\"a \\\"quoted\\\"\"}"]);
        let long = "x".repeat(5000);
        let c = log.enter(&long, 102);
        // The freed first slot is taken again, and the long query is cut to fit it.
        let cut = &read()[0];
        assert!(cut.len() < SLOT_BYTES && cut.starts_with("xxx"), "{cut}");
        drop((b, c));
        assert!(read().is_empty());
        let raw = std::fs::read(log.path()).unwrap();
        assert!(serde_json::from_slice::<serde_json::Value>(&raw).is_ok());
    }

    #[test]
    fn queries_left_by_a_crash_are_read_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let log = ActiveQueries::open(dir.path(), 2).unwrap();
        let running = log.enter("count(up)", 5);
        // A crash: the guard never runs.
        std::mem::forget(running);
        let left = unfinished_queries(&std::fs::read(log.path()).unwrap());
        assert_eq!(left, vec!["count(up)"]);
        drop(log);
        let reopened = ActiveQueries::open(dir.path(), 2).unwrap();
        assert!(unfinished_queries(&std::fs::read(reopened.path()).unwrap()).is_empty());
    }
}
