//! The first pass over a request: how many series, labels, samples, histograms and symbols it
//! holds, counted from its fields' keys and lengths without decoding any of them. The batch's
//! vectors are then allocated once, at their exact sizes, and a request whose entries would
//! pass its limit is refused before anything is allocated; a body of empty messages (a
//! decompression bomb) costs a walk over its bytes, not its entries.
//!
//! Counts are what the decoder will push for a well-formed request: a field of another wire
//! type is not counted (the decoder refuses it), and a malformed request is counted up to
//! where it stops being well formed (the decoder stops there too, with an error).

use super::Version;
use super::batch::{FamilyMetadata, Sample, SeriesEntry};
use super::histogram::HistogramSample;
use super::wire::{Cursor, LEN, VARINT, key};

/// Entries a request holds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Counts {
    pub(super) series: usize,
    pub(super) labels: usize,
    /// Most labels of one series.
    pub(super) series_labels: usize,
    pub(super) samples: usize,
    pub(super) histograms: usize,
    /// 1.0 `metadata` entries.
    pub(super) metadata: usize,
    /// 2.0 symbols.
    pub(super) symbols: usize,
}

impl Counts {
    /// Bytes the batch's vectors take at these counts, for a request of `version`.
    pub(super) fn bytes(&self, version: Version) -> usize {
        // Scratch: 1.0 holds two spans per label of the series it reads, 2.0 a span per
        // symbol and each series' message range.
        let scratch = match version {
            Version::V1 => 2 * self.series_labels,
            Version::V2 => self.symbols + self.series,
        };
        self.series * size_of::<SeriesEntry>()
            + self.labels * size_of::<(&str, &str)>()
            + self.samples * size_of::<Sample>()
            + self.histograms * size_of::<HistogramSample>()
            + self.metadata * size_of::<FamilyMetadata>()
            + self.symbols * size_of::<&str>()
            + scratch * size_of::<(u32, u32)>()
    }
}

/// Counts the entries of a request of `version`.
pub(super) fn count(version: Version, buf: &[u8]) -> Counts {
    let mut n = Counts::default();
    let mut c = Cursor::new(buf);
    let (series_key, other_key) = match version {
        Version::V1 => (key(1, LEN), key(3, LEN)),
        Version::V2 => (key(5, LEN), key(4, LEN)),
    };
    while c.more() {
        let at = c.pos;
        let Ok(k) = c.varint() else { break };
        let (num, wire) = (k >> 3, (k & 7) as u8);
        if k == series_key {
            let Ok(m) = c.len_delim() else { break };
            n.series += 1;
            let labels = match version {
                Version::V1 => series_v1(m, &mut n),
                Version::V2 => series_v2(m, &mut n),
            };
            n.labels += labels;
            n.series_labels = n.series_labels.max(labels);
        } else if k == other_key {
            let Ok(_) = c.len_delim() else { break };
            match version {
                Version::V1 => n.metadata += 1,
                Version::V2 => n.symbols += 1,
            }
        } else if num == 0 || c.skip(wire, at).is_err() {
            break;
        }
    }
    n
}

/// Counts a 1.0 `TimeSeries`' samples and histograms into `n`; returns its labels.
fn series_v1(mut c: Cursor<'_>, n: &mut Counts) -> usize {
    let mut labels = 0;
    while c.more() {
        // Every field senders write has a one-byte key and, under 128 bytes, a one-byte
        // length: read those without the general varint reader.
        if let [k, len, ..] = c.buf[c.pos..c.end]
            && k & 0x87 == LEN
            && len < 0x80
        {
            match k {
                0x0a => labels += 1,
                0x12 => n.samples += 1,
                0x22 => n.histograms += 1,
                _ => {}
            }
            c.pos += 2 + usize::from(len);
            if c.pos > c.end {
                break;
            }
            continue;
        }
        let at = c.pos;
        let Ok(k) = c.varint() else { break };
        match k {
            k if k == key(1, LEN) => labels += 1,
            k if k == key(2, LEN) => n.samples += 1,
            k if k == key(4, LEN) => n.histograms += 1,
            _ => {}
        }
        if k >> 3 == 0 || c.skip((k & 7) as u8, at).is_err() {
            break;
        }
    }
    labels
}

/// Counts a 2.0 `TimeSeries`' samples and histograms into `n`; returns its labels (half its
/// label references: each varint ends with the one byte under 0x80).
fn series_v2(mut c: Cursor<'_>, n: &mut Counts) -> usize {
    let mut refs = 0;
    while c.more() {
        let at = c.pos;
        let Ok(k) = c.varint() else { break };
        match k {
            k if k == key(1, LEN) => {
                let Ok(m) = c.len_delim() else { break };
                refs += m.buf[m.pos..m.end].iter().filter(|&&b| b < 0x80).count();
                continue;
            }
            k if k == key(1, VARINT) => refs += 1,
            k if k == key(2, LEN) => n.samples += 1,
            k if k == key(3, LEN) => n.histograms += 1,
            _ => {}
        }
        if k >> 3 == 0 || c.skip((k & 7) as u8, at).is_err() {
            break;
        }
    }
    refs / 2
}
