//! The `tombstones` file: deleted time ranges per series (`docs/formats/tsdb-block.md`,
//! Tombstones).
//!
//! Layout: `BE32 magic 0x0130BA30`, `u8 version 1`, entries of (`uvarint64 series_ref`,
//! `varint64 mint`, `varint64 maxt`), then `BE32 CRC32C` over the entries only: the version
//! byte is not covered (Prometheus skips it "for compatibility"), so an empty file is the nine
//! bytes `01 30 BA 30 01 00 00 00 00`.

use std::collections::BTreeMap;
use std::path::Path;

use super::BlockError;
use super::meta::write_atomic;
use crate::encoding::{Decbuf, DecodeError, Encbuf, crc32c};

/// File name inside a block directory.
pub const TOMBSTONES_FILENAME: &str = "tombstones";
/// Magic number at the start of the file.
pub const TOMBSTONES_MAGIC: u32 = 0x0130_BA30;
/// The only format version.
pub const TOMBSTONES_VERSION: u8 = 1;
const HEADER_SIZE: usize = 5;
const CRC_SIZE: usize = 4;

/// A deleted time range, inclusive at both ends, ms since epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Interval {
    /// First deleted timestamp, ms.
    pub mint: i64,
    /// Last deleted timestamp, ms.
    pub maxt: i64,
}

impl Interval {
    /// The interval `[mint, maxt]`, both ends in ms and inclusive.
    pub fn new(mint: i64, maxt: i64) -> Self {
        Interval { mint, maxt }
    }

    /// Whether `t` (ms) falls inside the interval.
    #[inline]
    pub fn contains(&self, t: i64) -> bool {
        self.mint <= t && t <= self.maxt
    }
}

/// Deleted intervals per series ref, each list sorted, non-overlapping and non-adjacent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tombstones {
    by_series: BTreeMap<u64, Vec<Interval>>,
}

impl Tombstones {
    /// No deletions.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads a tombstones file; a missing file means no deletions, as in Prometheus.
    pub fn read(path: &Path) -> Result<Self, BlockError> {
        match std::fs::read(path) {
            Ok(bytes) => Self::parse(&bytes, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::new()),
            Err(e) => Err(BlockError::io(path, e)),
        }
    }

    /// Decodes tombstones file bytes, checking magic, version and CRC; `path` names the file
    /// in errors.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Self, BlockError> {
        let mut d = Decbuf::new(bytes, 0);
        let magic = d.be32().map_err(|e| BlockError::decode(path, e))?;
        if magic != TOMBSTONES_MAGIC {
            return Err(BlockError::BadMagic {
                path: path.to_path_buf(),
                offset: 0,
                expected: TOMBSTONES_MAGIC,
                actual: magic,
            });
        }
        let version = d.u8().map_err(|e| BlockError::decode(path, e))?;
        if version != TOMBSTONES_VERSION {
            return Err(BlockError::UnsupportedVersion {
                path: path.to_path_buf(),
                what: "tombstones",
                version: i64::from(version),
            });
        }
        let Some(entries_len) = bytes.len().checked_sub(HEADER_SIZE + CRC_SIZE) else {
            // Header is there but the trailer is not: report where the CRC should start.
            let err = DecodeError::Truncated {
                offset: HEADER_SIZE as u64,
                wanted: CRC_SIZE as u64,
                left: (bytes.len() - HEADER_SIZE) as u64,
            };
            return Err(BlockError::decode(path, err));
        };
        let entries = &bytes[HEADER_SIZE..HEADER_SIZE + entries_len];
        let crc_offset = HEADER_SIZE + entries_len;
        let stored = u32::from_be_bytes([
            bytes[crc_offset],
            bytes[crc_offset + 1],
            bytes[crc_offset + 2],
            bytes[crc_offset + 3],
        ]);
        let actual = crc32c(entries);
        if stored != actual {
            return Err(BlockError::CrcMismatch {
                path: path.to_path_buf(),
                offset: HEADER_SIZE as u64,
                expected: stored,
                actual,
            });
        }

        // Sort before merging so each interval lands at the end of its list: linear in the
        // entry count even when a writer emitted them in random order.
        let mut d = Decbuf::new(entries, HEADER_SIZE as u64);
        let mut raw: Vec<(u64, Interval)> = Vec::new();
        while d.remaining() > 0 {
            let series = d.uvarint().map_err(|e| BlockError::decode(path, e))?;
            let mint = d.varint().map_err(|e| BlockError::decode(path, e))?;
            let maxt = d.varint().map_err(|e| BlockError::decode(path, e))?;
            raw.push((series, Interval { mint, maxt }));
        }
        raw.sort_unstable();
        let mut t = Tombstones::new();
        for (series, iv) in raw {
            t.add(series, iv);
        }
        Ok(t)
    }

    /// The file bytes: header, entries in series-ref order, CRC.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encbuf::with_capacity(HEADER_SIZE + CRC_SIZE + self.len() * 8);
        e.put_be32(TOMBSTONES_MAGIC);
        e.put_u8(TOMBSTONES_VERSION);
        for (&series, ivs) in &self.by_series {
            for iv in ivs {
                e.put_uvarint(series);
                e.put_varint(iv.mint);
                e.put_varint(iv.maxt);
            }
        }
        let crc = crc32c(&e.get()[HEADER_SIZE..]);
        e.put_be32(crc);
        e.buf
    }

    /// Writes the file atomically (tmp file, fsync, rename, fsync directory).
    pub fn write(&self, path: &Path) -> Result<(), BlockError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            return Err(BlockError::io(
                path,
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path"),
            ));
        };
        write_atomic(dir, name, &self.encode())
    }

    /// Marks `iv` deleted for `series_ref`, merging it with overlapping or adjacent intervals
    /// (`maxt + 1 == mint`), as Prometheus does. An interval with `mint > maxt` covers nothing
    /// and is ignored.
    pub fn add(&mut self, series_ref: u64, iv: Interval) {
        if iv.mint > iv.maxt {
            return;
        }
        add_interval(self.by_series.entry(series_ref).or_default(), iv);
    }

    /// The deleted intervals of `series_ref`, sorted; empty if none.
    pub fn get(&self, series_ref: u64) -> &[Interval] {
        self.by_series.get(&series_ref).map_or(&[], Vec::as_slice)
    }

    /// Whether no interval is recorded.
    pub fn is_empty(&self) -> bool {
        self.by_series.is_empty()
    }

    /// Number of intervals over all series (Prometheus's `numTombstones`).
    pub fn len(&self) -> usize {
        self.by_series.values().map(Vec::len).sum()
    }

    /// Series refs with deletions and their intervals, in ref order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &[Interval])> {
        self.by_series.iter().map(|(&s, ivs)| (s, ivs.as_slice()))
    }
}

/// Inserts `n` into a sorted, merged interval list.
fn add_interval(list: &mut Vec<Interval>, n: Interval) {
    // First interval that overlaps or touches n from the left: maxt >= n.mint - 1.
    let lo = list.partition_point(|iv| iv.maxt < n.mint.saturating_sub(1));
    // One past the last interval that overlaps or touches n from the right: mint <= n.maxt + 1.
    let hi = list.partition_point(|iv| iv.mint <= n.maxt.saturating_add(1));
    if lo >= hi {
        list.insert(lo, n);
        return;
    }
    let merged = Interval {
        mint: n.mint.min(list[lo].mint),
        maxt: n.maxt.max(list[hi - 1].maxt),
    };
    list[lo] = merged;
    list.drain(lo + 1..hi);
}

/// Removes deleted samples from parallel timestamp/value columns in place. Timestamps must
/// ascend and both columns have the same length; `intervals` must be sorted and
/// non-overlapping (as [`Tombstones::get`] returns them), both ends inclusive.
pub fn apply_deletions(intervals: &[Interval], ts: &mut Vec<i64>, val: &mut Vec<f64>) {
    if intervals.is_empty() {
        return;
    }
    let n = ts.len().min(val.len());
    let mut out = 0;
    let mut iv = 0;
    for i in 0..n {
        let t = ts[i];
        // Timestamps ascend, so intervals that ended before t never matter again.
        while iv < intervals.len() && intervals[iv].maxt < t {
            iv += 1;
        }
        if iv < intervals.len() && intervals[iv].mint <= t {
            continue;
        }
        ts[out] = t;
        val[out] = val[i];
        out += 1;
    }
    ts.truncate(out);
    val.truncate(out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::path::PathBuf;

    const EMPTY: [u8; 9] = [0x01, 0x30, 0xBA, 0x30, 0x01, 0, 0, 0, 0];

    #[test]
    fn empty_set_encodes_to_the_fixture_bytes() {
        let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/tsdb"));
        let mut seen = 0;
        for set in std::fs::read_dir(root).unwrap() {
            let set = set.unwrap().path();
            if !set.is_dir() {
                continue;
            }
            for block in std::fs::read_dir(&set).unwrap() {
                let p = block.unwrap().path().join(TOMBSTONES_FILENAME);
                let bytes = std::fs::read(&p).unwrap();
                assert_eq!(bytes, EMPTY);
                assert!(Tombstones::read(&p).unwrap().is_empty());
                seen += 1;
            }
        }
        assert_eq!(seen, 5);
        assert_eq!(Tombstones::new().encode(), EMPTY);
    }

    #[test]
    fn encoding_matches_the_layout_byte_for_byte() {
        let mut t = Tombstones::new();
        t.add(300, Interval::new(-1, 2));
        t.add(5, Interval::new(10, 20));
        let bytes = t.encode();
        // Entries sorted by series: (5, 10, 20), (300, -1, 2).
        let entries = [5u8, 20, 40, 0xAC, 0x02, 1, 4];
        let mut expected = vec![0x01, 0x30, 0xBA, 0x30, 0x01];
        expected.extend_from_slice(&entries);
        expected.extend_from_slice(&crc32c(&entries).to_be_bytes());
        assert_eq!(bytes, expected);
    }

    #[test]
    fn write_read_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TOMBSTONES_FILENAME);
        let mut t = Tombstones::new();
        t.add(1, Interval::new(i64::MIN, -5));
        t.add(1, Interval::new(100, i64::MAX));
        t.add(u64::MAX, Interval::new(0, 0));
        t.add(16, Interval::new(7, 9));
        t.write(&path).unwrap();
        assert!(!dir.path().join("tombstones.tmp").exists());
        let back = Tombstones::read(&path).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.len(), 4);
        assert_eq!(
            back.get(1),
            &[Interval::new(i64::MIN, -5), Interval::new(100, i64::MAX)]
        );
        assert_eq!(back.get(2), &[]);
        assert!(
            Tombstones::read(&dir.path().join("nope"))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn overlapping_and_adjacent_intervals_merge() {
        let mut t = Tombstones::new();
        t.add(1, Interval::new(10, 20));
        t.add(1, Interval::new(30, 40));
        assert_eq!(t.get(1).len(), 2);
        t.add(1, Interval::new(21, 29)); // touches both neighbours
        assert_eq!(t.get(1), &[Interval::new(10, 40)]);
        t.add(1, Interval::new(42, 50)); // gap of one timestamp (41): stays separate
        t.add(1, Interval::new(0, 5));
        assert_eq!(
            t.get(1),
            &[
                Interval::new(0, 5),
                Interval::new(10, 40),
                Interval::new(42, 50)
            ]
        );
        t.add(1, Interval::new(3, 45)); // swallows several
        assert_eq!(t.get(1), &[Interval::new(0, 50)]);
        t.add(1, Interval::new(i64::MIN, i64::MAX));
        assert_eq!(t.get(1), &[Interval::new(i64::MIN, i64::MAX)]);
        t.add(2, Interval::new(5, 4)); // empty: ignored
        assert!(t.get(2).is_empty());
        assert_eq!(t.len(), 1);
    }

    fn naive_deleted(ivs: &[Interval], t: i64) -> bool {
        ivs.iter().any(|iv| iv.contains(t))
    }

    proptest! {
        #[test]
        fn add_keeps_lists_sorted_merged_and_covering_the_same_points(
            ivs in proptest::collection::vec((-50i64..50, 0i64..10), 0..20),
            probe in -70i64..70,
        ) {
            let mut t = Tombstones::new();
            let raw: Vec<Interval> = ivs.iter().map(|&(a, l)| Interval::new(a, a + l)).collect();
            for iv in &raw {
                t.add(7, *iv);
            }
            let got = t.get(7);
            for w in got.windows(2) {
                prop_assert!(w[0].maxt.saturating_add(1) < w[1].mint);
            }
            prop_assert_eq!(naive_deleted(got, probe), naive_deleted(&raw, probe));
            let back = Tombstones::parse(&t.encode(), Path::new("t")).unwrap();
            prop_assert_eq!(back, t.clone());
        }

        #[test]
        fn apply_deletions_matches_a_naive_filter(
            ivs in proptest::collection::vec((-50i64..50, 0i64..10), 0..6),
            mut ts in proptest::collection::vec(-60i64..60, 0..40),
        ) {
            ts.sort_unstable();
            let mut t = Tombstones::new();
            for &(a, l) in &ivs {
                t.add(1, Interval::new(a, a + l));
            }
            let ivs = t.get(1);
            let mut val: Vec<f64> = ts.iter().map(|&x| x as f64 * 0.5).collect();
            let expected: Vec<(i64, f64)> = ts
                .iter()
                .zip(&val)
                .filter(|(t, _)| !naive_deleted(ivs, **t))
                .map(|(t, v)| (*t, *v))
                .collect();
            let mut ts2 = ts.clone();
            apply_deletions(ivs, &mut ts2, &mut val);
            let got: Vec<(i64, f64)> = ts2.into_iter().zip(val).collect();
            prop_assert_eq!(got, expected);
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Tombstones::parse(&bytes, Path::new("t"));
            let mut framed = EMPTY[..5].to_vec();
            framed.extend_from_slice(&bytes);
            framed.extend_from_slice(&crc32c(&bytes).to_be_bytes());
            let _ = Tombstones::parse(&framed, Path::new("t"));
        }
    }

    #[test]
    fn apply_deletions_examples() {
        let mut ts = vec![1, 2, 3, 4, 5, 6, 7];
        let mut val = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0];
        apply_deletions(
            &[Interval::new(2, 3), Interval::new(6, 100)],
            &mut ts,
            &mut val,
        );
        assert_eq!(ts, vec![1, 4, 5]);
        assert_eq!(val, vec![1.0, 4.0, 5.0]);
        apply_deletions(&[], &mut ts, &mut val);
        assert_eq!(ts, vec![1, 4, 5]);
    }

    #[test]
    fn corrupt_crc_is_reported_with_offset() {
        let mut t = Tombstones::new();
        t.add(3, Interval::new(1, 2));
        let mut bytes = t.encode();
        bytes[6] ^= 1;
        match Tombstones::parse(&bytes, Path::new("/b/tombstones")).unwrap_err() {
            BlockError::CrcMismatch { path, offset, .. } => {
                assert_eq!(path, Path::new("/b/tombstones"));
                assert_eq!(offset, 5);
            }
            other => panic!("unexpected {other}"),
        }
        // Changing the version byte is not a CRC error (it is not covered) but a version error.
        let mut bytes = t.encode();
        bytes[4] = 2;
        assert!(matches!(
            Tombstones::parse(&bytes, Path::new("t")),
            Err(BlockError::UnsupportedVersion {
                what: "tombstones",
                version: 2,
                ..
            })
        ));
    }

    #[test]
    fn truncated_files_are_decode_errors() {
        let mut t = Tombstones::new();
        t.add(3, Interval::new(1, 2));
        let bytes = t.encode();
        for n in 0..HEADER_SIZE + CRC_SIZE {
            assert!(
                matches!(
                    Tombstones::parse(&bytes[..n], Path::new("t")),
                    Err(BlockError::Decode { .. })
                ),
                "len {n}"
            );
        }
        // Entries cut mid-varint, with a CRC that matches the cut bytes.
        let mut cut = bytes[..HEADER_SIZE + 2].to_vec();
        cut.push(0x80);
        let crc = crc32c(&cut[HEADER_SIZE..]);
        cut.extend_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            Tombstones::parse(&cut, Path::new("t")),
            Err(BlockError::Decode { .. })
        ));
    }

    #[test]
    fn bad_magic_is_rejected() {
        let mut bytes = EMPTY;
        bytes[0] = 0xFF;
        assert!(matches!(
            Tombstones::parse(&bytes, Path::new("t")),
            Err(BlockError::BadMagic {
                actual: 0xFF30BA30,
                ..
            })
        ));
    }
}
