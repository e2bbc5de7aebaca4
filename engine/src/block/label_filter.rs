//! A per-block filter of label name/value pairs (an `xorf` BinaryFuse8 over a hash of every
//! pair in the block's postings offset table): a store asks it whether a block can hold a
//! series matching `name="value"` (or `name=~"a|b|c"`) before fetching any postings, and skips
//! the block when the answer is no. 1.1 to 1.4 bytes per pair (less for larger blocks); an
//! absent pair is wrongly reported present about 0.4 % of the time, a present pair never
//! reported absent.
//!
//! Built once when a block is loaded and kept on local disk beside the index-header; the file
//! format is in `LABEL_FILTER.md` beside this file.

use std::path::{Path, PathBuf};

use xorf::{BinaryFuse8, Descriptor, Filter};

use crate::encoding::crc32c;
use crate::index::{IndexError, IndexReader};
use crate::labels::{MatchType, Matcher};

/// File name of the filter inside `<data-dir>/<ULID>/`.
pub const LABEL_FILTER_FILENAME: &str = "gauntlet-label-filter";
/// First four bytes of a filter file ("GLBF").
pub const MAGIC: u32 = 0x474C_4246;
/// The format version written and read.
pub const VERSION: u8 = 1;
/// Key function 1: xxhash64 (seed 0) of `name 0xFF value`.
const KEY_XXH64_FF: u8 = 1;
/// Bytes before the fingerprints.
const HEADER_LEN: usize = 48;
/// Bytes after them: the CRC.
const CRC_LEN: usize = 4;
/// Set matchers with more alternatives than this are not checked (each costs a hash).
const MAX_SET_LOOKUPS: usize = 64;

/// Why a filter could not be read, written or built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabelFilterError {
    /// The filter file could not be read or written; it is rebuilt on the next load.
    #[error("{}: {source}", path.display())]
    Io {
        /// The filter file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a valid filter (truncated, bad magic or version, checksum mismatch,
    /// inconsistent sizes) or belongs to another index; it is rebuilt, never trusted.
    #[error("{}: corrupt label filter: {reason}", path.display())]
    Corrupt {
        /// The filter file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The block's index-header could not be read while building.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The filter construction gave up (xorf's peeling failed); the block is served unfiltered.
    #[error("building the label filter failed: {0}")]
    Build(&'static str),
}

/// The key of a label pair: xxhash64 (seed 0) of the name, a 0xFF byte, and the value. 0xFF
/// never occurs in UTF-8, so distinct pairs give distinct byte strings.
pub fn pair_key(name: &str, value: &str) -> u64 {
    let len = name.len() + 1 + value.len();
    if len <= 256 {
        let mut buf = [0u8; 256];
        buf[..name.len()].copy_from_slice(name.as_bytes());
        buf[name.len()] = 0xFF;
        buf[name.len() + 1..len].copy_from_slice(value.as_bytes());
        xxhash_rust::xxh64::xxh64(&buf[..len], 0)
    } else {
        let mut h = xxhash_rust::xxh64::Xxh64::new(0);
        h.update(name.as_bytes());
        h.update(&[0xFF]);
        h.update(value.as_bytes());
        h.digest()
    }
}

/// The filter of one block.
#[derive(Debug, Clone)]
pub struct LabelFilter {
    filter: BinaryFuse8,
    keys: u64,
    index_size: u64,
}

impl LabelFilter {
    /// Builds the filter of every label pair in `index` (an index or an index-header) of a
    /// block whose full index is `index_size` bytes.
    pub fn build<B: AsRef<[u8]>>(
        index: &IndexReader<B>,
        index_size: u64,
    ) -> Result<Self, LabelFilterError> {
        let mut keys = Vec::with_capacity(index.num_postings_entries());
        for name in index.label_names() {
            for value in index.label_values(&name)? {
                keys.push(pair_key(&name, &value));
            }
        }
        Self::from_keys(keys, index_size)
    }

    /// Builds the filter of the given pairs (duplicates allowed).
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
        index_size: u64,
    ) -> Result<Self, LabelFilterError> {
        Self::from_keys(
            pairs.into_iter().map(|(n, v)| pair_key(n, v)).collect(),
            index_size,
        )
    }

    /// Builds the filter of the given pair keys ([`pair_key`]; duplicates allowed), as a reader
    /// that hashes the pairs while it walks them builds it without holding the pairs.
    pub fn from_keys(mut keys: Vec<u64>, index_size: u64) -> Result<Self, LabelFilterError> {
        // The construction needs distinct keys.
        keys.sort_unstable();
        keys.dedup();
        let filter = BinaryFuse8::try_from(&keys).map_err(LabelFilterError::Build)?;
        Ok(LabelFilter {
            filter,
            keys: keys.len() as u64,
            index_size,
        })
    }

    /// Whether the block may hold the pair `name="value"` (false: it certainly does not).
    pub fn contains(&self, name: &str, value: &str) -> bool {
        self.filter.contains(&pair_key(name, value))
    }

    /// Whether a series of the block may satisfy all `matchers`: false when an equality
    /// matcher (non-empty value) or a set regex like `a|b|c` (not matching the empty value)
    /// names only pairs the block does not have. Matchers on external labels must be left out
    /// by the caller, as the block's index does not hold them.
    pub fn may_match<'a>(&self, matchers: impl IntoIterator<Item = &'a Matcher>) -> bool {
        for m in matchers {
            if !matches!(m.typ, MatchType::Equal | MatchType::Regexp) || m.matches_empty() {
                continue;
            }
            let Some(values) = m.set_matches() else {
                continue;
            };
            if values.len() <= MAX_SET_LOOKUPS && !values.iter().any(|v| self.contains(&m.name, v))
            {
                return false;
            }
        }
        true
    }

    /// Number of distinct pairs (keys) in the filter.
    pub fn num_keys(&self) -> u64 {
        self.keys
    }

    /// Size of the index the filter was built from, bytes.
    pub fn index_size(&self) -> u64 {
        self.index_size
    }

    /// Size of the encoded filter, bytes.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.filter.fingerprints.len() + CRC_LEN
    }

    /// The file bytes (format in `LABEL_FILTER.md`).
    pub fn encode(&self) -> Vec<u8> {
        let fp = &self.filter.fingerprints;
        let d = &self.filter.descriptor;
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(&MAGIC.to_be_bytes());
        out.extend_from_slice(&[VERSION, KEY_XXH64_FF, 0, 0]);
        out.extend_from_slice(&self.index_size.to_be_bytes());
        out.extend_from_slice(&self.keys.to_be_bytes());
        out.extend_from_slice(&d.seed.to_be_bytes());
        out.extend_from_slice(&d.segment_length.to_be_bytes());
        out.extend_from_slice(&d.segment_length_mask.to_be_bytes());
        out.extend_from_slice(&d.segment_count_length.to_be_bytes());
        out.extend_from_slice(&(fp.len() as u32).to_be_bytes());
        out.extend_from_slice(fp);
        let crc = crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Reads a filter file's bytes, checking everything a lookup relies on, so no file can make
    /// a lookup read out of bounds; `path` names the file in errors.
    pub fn decode(b: &[u8], path: &Path) -> Result<Self, LabelFilterError> {
        let corrupt = |reason: String| LabelFilterError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        if b.len() < HEADER_LEN + CRC_LEN {
            return Err(corrupt(format!(
                "{} bytes is shorter than the header",
                b.len()
            )));
        }
        let be32 = |o: usize| u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let be64 = |o: usize| (u64::from(be32(o)) << 32) | u64::from(be32(o + 4));
        if be32(0) != MAGIC {
            return Err(corrupt(format!("bad magic {:#010x}", be32(0))));
        }
        if b[4] != VERSION || b[5] != KEY_XXH64_FF {
            return Err(corrupt(format!(
                "unsupported version {} / key function {}",
                b[4], b[5]
            )));
        }
        if b[6] != 0 || b[7] != 0 {
            return Err(corrupt("reserved bytes 6..8 are not zero".into()));
        }
        let body_end = b.len() - CRC_LEN;
        let (stored, computed) = (be32(body_end), crc32c(&b[..body_end]));
        if stored != computed {
            return Err(corrupt(format!(
                "CRC mismatch: stored {stored:#010x}, computed {computed:#010x}"
            )));
        }
        let n = be32(44) as usize;
        if HEADER_LEN + n != body_end {
            return Err(corrupt(format!(
                "{n} fingerprint bytes announced, {} present",
                body_end - HEADER_LEN
            )));
        }
        let descriptor = Descriptor {
            seed: be64(24),
            segment_length: be32(32),
            segment_length_mask: be32(36),
            segment_count_length: be32(40),
        };
        check_descriptor(&descriptor, n).map_err(corrupt)?;
        Ok(LabelFilter {
            filter: BinaryFuse8 {
                descriptor,
                fingerprints: b[HEADER_LEN..body_end].into(),
            },
            keys: be64(16),
            index_size: be64(8),
        })
    }

    /// Reads the filter at `path` if it is valid and was built from an index of `index_size`
    /// bytes; otherwise builds it from `index` and writes it (through a temporary file and a
    /// rename). Returns the filter and whether it was (re)built.
    pub fn open_or_build<B: AsRef<[u8]>>(
        path: &Path,
        index: &IndexReader<B>,
        index_size: u64,
    ) -> Result<(Self, bool), LabelFilterError> {
        if let Some(f) = Self::open_valid(path, index_size) {
            return Ok((f, false));
        }
        let f = Self::build(index, index_size)?;
        f.write(path)?;
        Ok((f, true))
    }

    /// The filter at `path` when it is valid and was built from an index of `index_size`
    /// bytes; `None` (with the reason logged) when it is missing, damaged or stale.
    pub fn open_valid(path: &Path, index_size: u64) -> Option<Self> {
        match std::fs::read(path) {
            Ok(b) => match Self::decode(&b, path) {
                Ok(f) if f.index_size == index_size => return Some(f),
                Ok(f) => tracing::warn!(
                    path = %path.display(),
                    built_for = f.index_size,
                    index_size,
                    "label filter belongs to another index; rebuilding"
                ),
                Err(e) => tracing::warn!(error = %e, "rebuilding label filter"),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "rebuilding label filter"),
        }
        None
    }

    /// Writes the filter to `path` through a temporary file and a rename.
    pub fn write(&self, path: &Path) -> Result<(), LabelFilterError> {
        let io = |source| LabelFilterError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, self.encode()).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }
}

/// Checks that lookups stay inside `n` fingerprint bytes: every probe `h0 < scl`,
/// `h1 < h0 + 2·sl`, `h2 <= (h0 / sl + 3)·sl - 1`, so with `sl` a power of two, `scl` a
/// positive multiple of it and `scl + 2·sl <= n` (fitting u32, where the probes are added),
/// every index is in bounds.
fn check_descriptor(d: &Descriptor, n: usize) -> Result<(), String> {
    let (sl, mask, scl) = (
        u64::from(d.segment_length),
        u64::from(d.segment_length_mask),
        u64::from(d.segment_count_length),
    );
    if sl == 0 || !sl.is_power_of_two() || mask != sl - 1 {
        return Err(format!("segment length {sl} with mask {mask}"));
    }
    if scl == 0 || scl % sl != 0 {
        return Err(format!(
            "segment count length {scl} for segment length {sl}"
        ));
    }
    let need = scl + 2 * sl;
    if need > u64::from(u32::MAX) || need > n as u64 {
        return Err(format!("{n} fingerprint bytes, lookups reach {need}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(n: usize) -> Vec<(String, String)> {
        (0..n)
            .map(|i| (format!("l{}", i % 7), format!("v{i}")))
            .collect()
    }

    fn filter(n: usize) -> LabelFilter {
        let p = pairs(n);
        LabelFilter::from_pairs(p.iter().map(|(a, b)| (a.as_str(), b.as_str())), 1234).unwrap()
    }

    #[test]
    fn present_pairs_always_match_and_absent_ones_rarely() {
        let f = filter(5000);
        assert_eq!(f.num_keys(), 5000);
        for (n, v) in pairs(5000) {
            assert!(f.contains(&n, &v));
        }
        let fp = (0..100_000)
            .filter(|i| f.contains("l1", &format!("absent{i}")))
            .count();
        assert!(fp < 1000, "{fp} false positives in 100000");
        // About 11 bits per key at this size (9 for a million keys).
        assert!(f.encoded_len() < 5000 * 14 / 10, "{}", f.encoded_len());
        assert_eq!(filter(0).num_keys(), 0);
        assert!(filter(1).contains("l0", "v0"));
    }

    /// False positives on real blocks: every pair of the index is found; pairs that are not
    /// there (real names with made-up values, made-up names) are reported about 1 time in 256.
    #[test]
    fn false_positive_rate_on_real_blocks_is_near_one_in_256() {
        let root =
            std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/tsdb"));
        for (block, min_pairs) in [
            ("promtool-200series-2h/01M80EDTXX3TS2DC5H3CJBESG9", 50),
            (
                "prometheus-head-compacted-remote-write/01M80DHKBGW4BG7BQKCYXB7PAV",
                10_000,
            ),
        ] {
            let index = IndexReader::open(&root.join(block).join("index")).unwrap();
            let f = LabelFilter::build(&index, index.size()).unwrap();
            let names = index.label_names();
            let mut pairs = 0;
            for n in &names {
                for v in index.label_values(n).unwrap() {
                    assert!(f.contains(n, &v), "{block}: {n}={v} missing");
                    pairs += 1;
                }
            }
            assert_eq!(f.num_keys(), pairs);
            assert!(pairs >= min_pairs, "{block}: {pairs} pairs");
            let probes = 400_000;
            let hits = (0..probes)
                .filter(|i| {
                    let name = if i % 2 == 0 {
                        names[i % names.len()].as_str()
                    } else {
                        "absent_label"
                    };
                    f.contains(name, &format!("absent-{i}"))
                })
                .count();
            let rate = hits as f64 / probes as f64;
            // Expected 2^-8 = 0.39 %; with 400 000 probes the count is within ±4σ of 1562
            // (σ ≈ 39) well inside these bounds.
            assert!(
                (0.003..0.005).contains(&rate),
                "{block}: false-positive rate {rate}"
            );
        }
    }

    #[test]
    fn matchers_rule_a_block_out_only_when_no_pair_can_match() {
        let f =
            LabelFilter::from_pairs([("job", "api"), ("code", "200"), ("code", "500")], 1).unwrap();
        let m = |t, n: &str, v: &str| Matcher::new(t, n, v).unwrap();
        let yes = |ms: &[Matcher]| f.may_match(ms);
        assert!(yes(&[m(MatchType::Equal, "job", "api")]));
        assert!(!yes(&[
            m(MatchType::Equal, "job", "web"),
            m(MatchType::Equal, "code", "200")
        ]));
        assert!(yes(&[m(MatchType::Regexp, "code", "404|500")]));
        assert!(!yes(&[m(MatchType::Regexp, "code", "404|503")]));
        // Empty-matching matchers select series without the label: never ruled out.
        assert!(yes(&[m(MatchType::Equal, "team", "")]));
        assert!(yes(&[m(MatchType::Regexp, "code", "404|")]));
        // Only sets and equality are checked.
        assert!(yes(&[m(MatchType::Regexp, "code", "4.*")]));
        assert!(yes(&[m(MatchType::NotEqual, "job", "api")]));
        assert!(yes(&[]));
    }

    #[test]
    fn files_round_trip_and_damage_is_detected() {
        let f = filter(3000);
        let bytes = f.encode();
        assert_eq!(bytes.len(), f.encoded_len());
        let p = Path::new("x");
        let g = LabelFilter::decode(&bytes, p).unwrap();
        assert_eq!((g.num_keys(), g.index_size()), (3000, 1234));
        for (n, v) in pairs(3000) {
            assert!(g.contains(&n, &v));
        }
        for cut in [0, 10, 51, bytes.len() - 1] {
            assert!(
                LabelFilter::decode(&bytes[..cut], p).is_err(),
                "cut at {cut}"
            );
        }
        for i in [0, 4, 5, 20, 33, 60, bytes.len() - 2] {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            assert!(LabelFilter::decode(&b, p).is_err(), "flip at {i}");
        }
        // A consistent CRC over non-zero reserved bytes or an inconsistent descriptor is still
        // refused.
        let with_crc = |mut b: Vec<u8>| {
            let end = b.len() - 4;
            let crc = crc32c(&b[..end]);
            b[end..].copy_from_slice(&crc.to_be_bytes());
            b
        };
        let mut b = bytes.clone();
        b[7] = 0x80;
        assert!(LabelFilter::decode(&with_crc(b), p).is_err());
        let mut b = bytes.clone();
        b[40..44].copy_from_slice(&(u32::MAX - 7).to_be_bytes());
        let end = b.len() - 4;
        let crc = crc32c(&b[..end]);
        b[end..].copy_from_slice(&crc.to_be_bytes());
        let e = LabelFilter::decode(&b, p).unwrap_err();
        assert!(e.to_string().contains("segment count length"), "{e}");
    }
}
