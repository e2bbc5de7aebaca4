//! The write-behind log (`<tenant>/wbl/`): the out-of-order samples and native histograms the
//! head stores, in the WAL's segment, page and record format (float samples, and histogram
//! records 7-10 as Prometheus 3 writes them there), as Prometheus keeps them beside `wal/`
//! since 2.39.
//! Series records stay in the WAL only; a WBL samples record refers to refs the WAL declared.
//!
//! Prometheus drops every WBL segment once it has compacted its whole out-of-order head into
//! blocks. Gauntlet cuts one block range at a time, so a segment may hold samples both inside
//! the range just cut and after it: the log remembers the newest sample of each segment and,
//! at a cut, drops the oldest segments whose samples all lie before the cut's end (they are in
//! the block). A segment it keeps may hold samples the block has too; replay drops those, as
//! it drops every sample before the newest block's end.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::wal::{self, WalError, WalOptions, WalWriter};

/// The WBL writer, opened at the first out-of-order sample (or when the head opens with an
/// out-of-order window), and what each segment holds.
#[derive(Debug)]
pub(super) struct Wbl {
    dir: PathBuf,
    opts: WalOptions,
    writer: Option<WalWriter>,
    /// Records written since the last fsync.
    dirty: bool,
    /// Newest sample timestamp of each segment, ms; a segment without samples has no entry.
    newest: BTreeMap<u32, i64>,
}

impl Wbl {
    /// The log in `dir`, whose segments replay found holding samples up to `newest` (ms per
    /// segment); the writer opens at the first [`Wbl::log`] or [`Wbl::open_writer`].
    pub fn new(dir: &Path, opts: WalOptions, newest: BTreeMap<u32, i64>) -> Self {
        Wbl {
            dir: dir.to_path_buf(),
            opts,
            writer: None,
            dirty: false,
            newest,
        }
    }

    /// Opens the writer (creating the directory) unless it is open: writing starts in a new
    /// segment after the existing ones.
    pub fn open_writer(&mut self) -> Result<&mut WalWriter, WalError> {
        let w = match self.writer.take() {
            Some(w) => w,
            None => WalWriter::open(&self.dir, self.opts)?,
        };
        Ok(self.writer.insert(w))
    }

    /// Writes sample records (floats or histograms), each with its newest sample's
    /// timestamp (ms).
    pub fn log(&mut self, recs: &[(&[u8], i64)]) -> Result<(), WalError> {
        for &(rec, newest) in recs {
            let w = self.open_writer()?;
            w.log(&[rec])?;
            // A record never spans segments: it is in the one being written now.
            let seg = w.segment();
            self.dirty = true;
            let n = self.newest.entry(seg).or_insert(newest);
            *n = (*n).max(newest);
        }
        Ok(())
    }

    /// fsyncs what was written since the last call.
    pub fn sync(&mut self) -> Result<(), WalError> {
        if let Some(w) = &mut self.writer
            && self.dirty
        {
            w.sync()?;
            self.dirty = false;
        }
        Ok(())
    }

    /// After a block of everything before `end` (ms) is in place: closes the segment being
    /// written (padded and fsynced, as Prometheus cuts a segment before it compacts its
    /// out-of-order head) and deletes the oldest segments whose samples are all before `end`.
    /// Only a prefix goes, so the segments left still run without a gap. Returns the number
    /// of segments deleted.
    pub fn truncate(&mut self, end: i64) -> Result<usize, WalError> {
        let closed = match &mut self.writer {
            Some(w) => Some(w.next_segment()?),
            None if self.dir.is_dir() => wal::segment_range(&self.dir)?.map(|(_, last)| last),
            None => None,
        };
        let Some(closed) = closed else {
            return Ok(0);
        };
        let Some((first, _)) = wal::segment_range(&self.dir)? else {
            return Ok(0);
        };
        let mut keep = first;
        while keep <= closed && self.newest.get(&keep).is_none_or(|&t| t < end) {
            keep += 1;
        }
        if keep > first {
            wal::delete_segments_before(&self.dir, keep)?;
            self.newest.retain(|&n, _| n >= keep);
        }
        Ok((keep - first) as usize)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
