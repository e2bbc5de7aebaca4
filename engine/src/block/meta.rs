//! `meta.json`: the block's identity, time range, stats and compaction history, plus the
//! optional `thanos` section (`docs/formats/tsdb-block.md`, meta.json and The thanos section).
//!
//! Output is byte-for-byte what the Go writers produce: keys in Go struct order, tab
//! indentation, Go's string escaping. Prometheus writes no trailing newline; Thanos (whose
//! encoder appends one) always writes a `thanos` section, so the newline follows that section's
//! presence. Unknown keys inside `stats`, `compaction` and `thanos` (the objects that have grown
//! over time) are kept and written back after the known ones, so a rewrite does not drop what a
//! newer writer added there; unknown top-level keys are dropped, as Go's decoder drops them.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use ulid::Ulid;

use super::{BlockError, sync_dir};

/// File name of the block metadata inside a block directory.
pub const META_FILENAME: &str = "meta.json";
/// The only `version` of meta.json that Prometheus and Thanos read.
pub const META_VERSION: u32 = 1;
/// The only `thanos.version` Thanos reads (0 or absent means 1).
pub const THANOS_META_VERSION: u32 = 1;

/// The contents of a block's `meta.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockMeta {
    /// Block ID; equal to the directory name.
    #[serde(with = "ulid_str")]
    pub ulid: Ulid,
    /// First timestamp covered, ms since epoch (inclusive).
    #[serde(rename = "minTime")]
    pub min_time: i64,
    /// End of the covered range, ms since epoch (exclusive).
    #[serde(rename = "maxTime")]
    pub max_time: i64,
    /// Counts of what the block holds.
    #[serde(default, deserialize_with = "nullable")]
    pub stats: BlockStats,
    /// How the block came to be.
    #[serde(default, deserialize_with = "nullable")]
    pub compaction: Compaction,
    /// Meta format version; always [`META_VERSION`].
    pub version: u32,
    /// Thanos's section: external labels, resolution, source, file list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thanos: Option<ThanosMeta>,
}

/// The `stats` object: counts of what the block holds (zero counts are omitted on write).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BlockStats {
    /// All samples, float and histogram.
    #[serde(rename = "numSamples", default, skip_serializing_if = "is_zero_u64")]
    pub num_samples: u64,
    /// Float samples.
    #[serde(
        rename = "numFloatSamples",
        default,
        skip_serializing_if = "is_zero_u64"
    )]
    pub num_float_samples: u64,
    /// Native histogram samples.
    #[serde(
        rename = "numHistogramSamples",
        default,
        skip_serializing_if = "is_zero_u64"
    )]
    pub num_histogram_samples: u64,
    /// Series.
    #[serde(rename = "numSeries", default, skip_serializing_if = "is_zero_u64")]
    pub num_series: u64,
    /// Chunks.
    #[serde(rename = "numChunks", default, skip_serializing_if = "is_zero_u64")]
    pub num_chunks: u64,
    /// Tombstone intervals.
    #[serde(rename = "numTombstones", default, skip_serializing_if = "is_zero_u64")]
    pub num_tombstones: u64,
    /// Keys this code does not know, kept for the round trip.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// The `compaction` object: level, source blocks and direct parents.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Compaction {
    /// 1 for blocks cut from a head; max(parent levels) + 1 after compaction.
    #[serde(default)]
    pub level: u32,
    /// All level-1 blocks merged into this one, sorted.
    #[serde(default, with = "ulid_list", skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<Ulid>,
    /// The compaction produced no samples; the block is to be deleted.
    #[serde(default, skip_serializing_if = "is_false")]
    pub deletable: bool,
    /// Direct inputs of the compaction that made this block.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub parents: Vec<BlockDesc>,
    /// A compaction involving this block failed.
    #[serde(default, skip_serializing_if = "is_false")]
    pub failed: bool,
    /// Hints such as `from-out-of-order`.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub hints: Vec<String>,
    /// Keys this code does not know, kept for the round trip.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// A block named by ID and time range (an entry of `compaction.parents`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockDesc {
    /// Block ID.
    #[serde(with = "ulid_str")]
    pub ulid: Ulid,
    /// First timestamp covered, ms since epoch.
    #[serde(rename = "minTime", default)]
    pub min_time: i64,
    /// End of the covered range, ms since epoch (exclusive).
    #[serde(rename = "maxTime", default)]
    pub max_time: i64,
}

/// The `thanos` section of meta.json.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ThanosMeta {
    /// Section version; 0 (absent) and 1 both mean 1.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub version: u32,
    /// External labels of the producer (written even when empty).
    #[serde(default, deserialize_with = "nullable")]
    pub labels: BTreeMap<String, String>,
    /// Downsampling resolution.
    #[serde(default, deserialize_with = "nullable")]
    pub downsample: ThanosDownsample,
    /// Which component made the block: `sidecar`, `receive`, `compactor`, …
    #[serde(default, deserialize_with = "nullable")]
    pub source: String,
    /// Deprecated list of chunk file names.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub segment_files: Vec<String>,
    /// Files of the block sorted by path, with sizes.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub files: Vec<ThanosFile>,
    /// Rewrites (deletions, relabels) applied to the block.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub rewrites: Vec<Rewrite>,
    /// Largest series entry and chunk, for sizing range reads; `None` when the key is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_stats: Option<IndexStats>,
    /// Free-form extensions (e.g. `parquet_migrated`); `None` when absent or null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Value>,
    /// Upload time as written (RFC 3339), kept verbatim; `None` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_time: Option<String>,
    /// Keys this code does not know, kept for the round trip.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// `thanos.downsample`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThanosDownsample {
    /// Resolution in ms: 0 (raw), 300000 (5m) or 3600000 (1h).
    #[serde(default)]
    pub resolution: i64,
}

/// An entry of `thanos.files`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThanosFile {
    /// Path relative to the block directory, e.g. `chunks/000001`.
    pub rel_path: String,
    /// File size in bytes; 0 (omitted) for meta.json.
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub size_bytes: i64,
    /// Optional content hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<ObjectHash>,
}

impl ThanosFile {
    /// An entry for `rel_path` with its size in bytes (`None` for meta.json, whose size
    /// Thanos does not record).
    pub fn new(rel_path: String, size_bytes: Option<u64>) -> Self {
        ThanosFile {
            rel_path,
            size_bytes: size_bytes.map_or(0, |s| i64::try_from(s).unwrap_or(i64::MAX)),
            hash: None,
        }
    }

    /// The `thanos.files` list of a block being written in `dir`: its chunk `segments`
    /// (relative path and size, as the segment writer reports them), `index` with the size
    /// it has in `dir`, and `meta.json`.
    pub fn block_files(
        dir: &std::path::Path,
        segments: &[(String, u64)],
    ) -> std::io::Result<Vec<ThanosFile>> {
        let index_size = std::fs::metadata(dir.join("index"))?.len();
        Ok(segments
            .iter()
            .map(|(p, size)| ThanosFile::new(p.clone(), Some(*size)))
            .chain([
                ThanosFile::new("index".into(), Some(index_size)),
                ThanosFile::new("meta.json".into(), None),
            ])
            .collect())
    }
}

/// A file hash as Thanos records it: `{"hashFunc":"SHA256","value":"<hex>"}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectHash {
    /// Hash function name, e.g. `SHA256`.
    #[serde(rename = "hashFunc", default)]
    pub hash_func: String,
    /// Hex digest.
    #[serde(default)]
    pub value: String,
}

/// An entry of `thanos.rewrites`. Deletion requests and relabel configs are kept as JSON, since
/// only Thanos's own tools interpret them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Rewrite {
    /// Source blocks of the rewritten block.
    #[serde(default, with = "ulid_list", skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<Ulid>,
    /// Deletion requests applied, in order.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub deletions_applied: Vec<Value>,
    /// Relabel configs applied.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub relabels_applied: Vec<Value>,
}

/// `thanos.index_stats`: sizes the store gateway uses to plan range reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexStats {
    /// Largest series entry in the index, bytes.
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub series_max_size: i64,
    /// Largest chunk record, bytes.
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub chunk_max_size: i64,
}

impl BlockMeta {
    /// Downsampling resolution from the Thanos section, ms (0 = raw, also without one).
    pub fn resolution(&self) -> i64 {
        self.thanos.as_ref().map_or(0, |t| t.downsample.resolution)
    }

    /// External labels from the Thanos section, sorted (none without one).
    pub fn external_labels(&self) -> crate::labels::Labels {
        crate::labels::Labels::from_pairs(
            self.thanos
                .as_ref()
                .map(|t| t.labels.clone())
                .unwrap_or_default(),
        )
    }

    /// A level-1 meta for a new block covering `[min_time, max_time)` ms, its own only source.
    pub fn new(ulid: Ulid, min_time: i64, max_time: i64) -> Self {
        BlockMeta {
            ulid,
            min_time,
            max_time,
            stats: BlockStats::default(),
            compaction: Compaction {
                level: 1,
                sources: vec![ulid],
                ..Compaction::default()
            },
            version: META_VERSION,
            thanos: None,
        }
    }

    /// Reads and validates `<dir>/meta.json`.
    pub fn read(dir: &Path) -> Result<Self, BlockError> {
        let path = dir.join(META_FILENAME);
        let bytes = std::fs::read(&path).map_err(|e| BlockError::io(&path, e))?;
        Self::parse(&bytes, &path)
    }

    /// Parses and validates meta.json bytes; `path` only names the file in errors.
    ///
    /// Rejects `version` ≠ 1, `thanos.version` other than 0/1, and `minTime > maxTime`.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Self, BlockError> {
        let meta: BlockMeta = serde_json::from_slice(bytes).map_err(|source| BlockError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        meta.validate(path)?;
        Ok(meta)
    }

    fn validate(&self, path: &Path) -> Result<(), BlockError> {
        if self.version != META_VERSION {
            return Err(BlockError::UnsupportedVersion {
                path: path.to_path_buf(),
                what: "meta",
                version: i64::from(self.version),
            });
        }
        if let Some(t) = &self.thanos
            && t.version != 0
            && t.version != THANOS_META_VERSION
        {
            return Err(BlockError::UnsupportedVersion {
                path: path.to_path_buf(),
                what: "thanos meta",
                version: i64::from(t.version),
            });
        }
        if self.min_time > self.max_time {
            return Err(BlockError::InvalidMeta {
                path: path.to_path_buf(),
                reason: format!(
                    "minTime {} is after maxTime {}",
                    self.min_time, self.max_time
                ),
            });
        }
        Ok(())
    }

    /// The JSON text the Go writers would produce: tab-indented, Go key order; a trailing
    /// newline only when a `thanos` section is present (Thanos's encoder adds one).
    pub fn to_json(&self) -> String {
        let mut out = go_json::to_string_pretty(self);
        if self.thanos.is_some() {
            out.push('\n');
        }
        out
    }

    /// Writes `<dir>/meta.json` atomically: to `meta.json.tmp`, fsync, rename, fsync the
    /// directory.
    pub fn write(&self, dir: &Path) -> Result<(), BlockError> {
        write_atomic(dir, META_FILENAME, self.to_json().as_bytes())
    }
}

/// Writes `dir/name` through `name.tmp`, syncing file and directory so a crash leaves either
/// the old or the new content.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), BlockError> {
    let path = dir.join(name);
    let tmp: PathBuf = dir.join(format!("{name}.tmp"));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(|e| BlockError::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| BlockError::io(&tmp, e))?;
        f.sync_all().map_err(|e| BlockError::io(&tmp, e))?;
        drop(f);
        std::fs::rename(&tmp, &path).map_err(|e| BlockError::io(&path, e))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        // Best effort: the error that matters is the one being returned.
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}

fn is_false(v: &bool) -> bool {
    !*v
}

/// Reads `null` as the default value, as Go's decoder leaves a field untouched on `null`.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Parses a ULID the way Go's `oklog/ulid` does: 26 Crockford base32 characters, either case,
/// first character at most '7' (larger values overflow 128 bits).
pub(crate) fn parse_ulid(s: &str) -> Result<Ulid, String> {
    if s.len() != ulid::ULID_LEN {
        return Err(format!("invalid ULID {s:?}: length {} != 26", s.len()));
    }
    if s.as_bytes()[0] > b'7' {
        return Err(format!("invalid ULID {s:?}: value overflows 128 bits"));
    }
    Ulid::from_string(s).map_err(|e| format!("invalid ULID {s:?}: {e}"))
}

pub(crate) mod ulid_str {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(u: &Ulid, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; ulid::ULID_LEN];
        s.serialize_str(u.array_to_str(&mut buf))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Ulid, D::Error> {
        let s = String::deserialize(d)?;
        parse_ulid(&s).map_err(serde::de::Error::custom)
    }
}

mod ulid_list {
    use super::*;

    pub(super) fn serialize<S: Serializer>(v: &[Ulid], s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(v.len()))?;
        let mut buf = [0u8; ulid::ULID_LEN];
        for u in v {
            seq.serialize_element(u.array_to_str(&mut buf))?;
        }
        seq.end()
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Ulid>, D::Error> {
        let strs: Vec<String> = nullable(d)?;
        strs.iter()
            .map(|s| parse_ulid(s).map_err(serde::de::Error::custom))
            .collect()
    }
}

/// JSON output that matches Go's `encoding/json` byte for byte for the values we write.
pub(crate) mod go_json {
    use std::io;

    use serde::Serialize;
    use serde_json::ser::{CompactFormatter, Formatter, PrettyFormatter};

    /// Tab-indented, like `json.MarshalIndent(v, "", "\t")`.
    pub(crate) fn to_string_pretty<T: Serialize>(v: &T) -> String {
        to_string_with(v, GoFormatter(PrettyFormatter::with_indent(b"\t")))
    }

    /// Compact, like `json.Marshal(v)`.
    pub(crate) fn to_string_compact<T: Serialize>(v: &T) -> String {
        to_string_with(v, GoFormatter(CompactFormatter))
    }

    #[allow(
        clippy::expect_used,
        reason = "serializing our meta types into a Vec cannot fail (see below)"
    )]
    fn to_string_with<T: Serialize, F: Formatter>(v: &T, f: GoFormatter<F>) -> String {
        let mut out = Vec::with_capacity(512);
        let mut ser = serde_json::Serializer::with_formatter(&mut out, f);
        // Our types serialize only strings, integers, bools, string-keyed maps and JSON values:
        // nothing serde_json can refuse, and writing to a Vec cannot fail.
        v.serialize(&mut ser)
            .expect("meta types always serialize to JSON");
        String::from_utf8(out).expect("serde_json writes UTF-8")
    }

    /// Wraps a serde_json formatter to escape and format like Go: `<`, `>`, `&`, U+2028 and
    /// U+2029 become `\u` escapes, and floats use Go's shortest form (`1e+21`, `1e-7`).
    struct GoFormatter<F>(F);

    impl<F: Formatter> Formatter for GoFormatter<F> {
        fn write_string_fragment<W: ?Sized + io::Write>(
            &mut self,
            w: &mut W,
            fragment: &str,
        ) -> io::Result<()> {
            let mut start = 0;
            for (i, c) in fragment.char_indices() {
                let esc: &[u8] = match c {
                    '<' => b"\\u003c",
                    '>' => b"\\u003e",
                    '&' => b"\\u0026",
                    '\u{2028}' => b"\\u2028",
                    '\u{2029}' => b"\\u2029",
                    _ => continue,
                };
                w.write_all(&fragment.as_bytes()[start..i])?;
                w.write_all(esc)?;
                start = i + c.len_utf8();
            }
            w.write_all(&fragment.as_bytes()[start..])
        }

        fn write_f64<W: ?Sized + io::Write>(&mut self, w: &mut W, v: f64) -> io::Result<()> {
            let mut s = String::with_capacity(24);
            crate::go_format::push_json_float(&mut s, v);
            w.write_all(s.as_bytes())
        }

        fn begin_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
            self.0.begin_array(w)
        }
        fn end_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
            self.0.end_array(w)
        }
        fn begin_array_value<W: ?Sized + io::Write>(
            &mut self,
            w: &mut W,
            first: bool,
        ) -> io::Result<()> {
            self.0.begin_array_value(w, first)
        }
        fn end_array_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
            self.0.end_array_value(w)
        }
        fn begin_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
            self.0.begin_object(w)
        }
        fn end_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
            self.0.end_object(w)
        }
        fn begin_object_key<W: ?Sized + io::Write>(
            &mut self,
            w: &mut W,
            first: bool,
        ) -> io::Result<()> {
            self.0.begin_object_key(w, first)
        }
        fn end_object_key<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
            self.0.end_object_key(w)
        }
        fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
            self.0.begin_object_value(w)
        }
        fn end_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
            self.0.end_object_value(w)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_root() -> PathBuf {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/tsdb"))
    }

    fn fixture_meta_paths() -> Vec<PathBuf> {
        let mut out = Vec::new();
        for set in std::fs::read_dir(fixture_root()).unwrap() {
            let set = set.unwrap().path();
            if !set.is_dir() {
                continue;
            }
            for block in std::fs::read_dir(&set).unwrap() {
                let p = block.unwrap().path().join(META_FILENAME);
                if p.is_file() {
                    out.push(p);
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn unknown_fields_with_hard_floats_write_a_fixed_point() {
        // Found by the meta_json fuzz target: a float read one ulp off was written back
        // differently each time until JSON floats were read exactly.
        let text = br#"{"ulid":"01M80DHKBCW4BG7BQKCYXB7PAS","minTime":1,"maxTime":2,"stats":{"numSample":1.7953103888888893e+41,"x":[0.1,2.2250738585072014e-308,1e23]},"compaction":{"level":1},"version":1}"#;
        let p = Path::new("meta.json");
        let j1 = BlockMeta::parse(text, p).unwrap().to_json();
        let j2 = BlockMeta::parse(j1.as_bytes(), p).unwrap().to_json();
        assert_eq!(j1, j2);
        assert!(j1.contains("1.7953103888888893e+41"), "{j1}");
    }

    #[test]
    fn every_fixture_meta_round_trips_byte_identical() {
        let paths = fixture_meta_paths();
        assert_eq!(paths.len(), 5, "expected the five fixture blocks");
        for p in paths {
            let bytes = std::fs::read(&p).unwrap();
            let meta = BlockMeta::parse(&bytes, &p).unwrap();
            let dir_name = p.parent().unwrap().file_name().unwrap().to_str().unwrap();
            assert_eq!(meta.ulid.to_string(), dir_name);
            assert!(meta.thanos.is_none());
            assert_eq!(meta.to_json().as_bytes(), &bytes[..], "{}", p.display());
        }
    }

    #[test]
    fn compacted_fixture_has_parents_and_sources() {
        let dir =
            fixture_root().join("prometheus-compacted-200series-10h/01M80EJD593276B0WSCA6NM0B3");
        let meta = BlockMeta::read(&dir).unwrap();
        assert_eq!(meta.compaction.level, 2);
        assert_eq!(meta.compaction.sources.len(), 3);
        assert_eq!(meta.compaction.parents.len(), 3);
        assert_eq!(meta.compaction.parents[0].min_time, 1735689600000);
        assert_eq!(meta.stats.num_samples, 288000);
        assert_eq!(meta.stats.num_chunks, 2400);
    }

    const THANOS_SAMPLE: &str = "{
\t\"ulid\": \"01M80EJD593276B0WSCA6NM0B3\",
\t\"minTime\": 1735689600000,
\t\"maxTime\": 1735711185001,
\t\"stats\": {
\t\t\"numSamples\": 288000,
\t\t\"numFloatSamples\": 288000,
\t\t\"numSeries\": 200,
\t\t\"numChunks\": 2400,
\t\t\"numTombstones\": 2
\t},
\t\"compaction\": {
\t\t\"level\": 2,
\t\t\"sources\": [
\t\t\t\"01M80EGH635YEWB366XZEJRVJE\",
\t\t\t\"01M80EGHENV7QBPXJEG3YT8FXW\"
\t\t],
\t\t\"deletable\": true,
\t\t\"parents\": [
\t\t\t{
\t\t\t\t\"ulid\": \"01M80EGH635YEWB366XZEJRVJE\",
\t\t\t\t\"minTime\": 1735689600000,
\t\t\t\t\"maxTime\": 1735696785001
\t\t\t}
\t\t],
\t\t\"failed\": true,
\t\t\"hints\": [
\t\t\t\"from-out-of-order\"
\t\t]
\t},
\t\"version\": 1,
\t\"thanos\": {
\t\t\"version\": 1,
\t\t\"labels\": {
\t\t\t\"cluster\": \"eu\\u0026us\",
\t\t\t\"replica\": \"\\u003ca\\u003e\",
\t\t\t\"tenant_id\": \"default-tenant\"
\t\t},
\t\t\"downsample\": {
\t\t\t\"resolution\": 300000
\t\t},
\t\t\"source\": \"compactor\",
\t\t\"segment_files\": [
\t\t\t\"000001\"
\t\t],
\t\t\"files\": [
\t\t\t{
\t\t\t\t\"rel_path\": \"chunks/000001\",
\t\t\t\t\"size_bytes\": 1234,
\t\t\t\t\"hash\": {
\t\t\t\t\t\"hashFunc\": \"SHA256\",
\t\t\t\t\t\"value\": \"ab12\"
\t\t\t\t}
\t\t\t},
\t\t\t{
\t\t\t\t\"rel_path\": \"index\",
\t\t\t\t\"size_bytes\": 999
\t\t\t},
\t\t\t{
\t\t\t\t\"rel_path\": \"meta.json\"
\t\t\t}
\t\t],
\t\t\"rewrites\": [
\t\t\t{
\t\t\t\t\"sources\": [
\t\t\t\t\t\"01M80EGH635YEWB366XZEJRVJE\"
\t\t\t\t],
\t\t\t\t\"deletions_applied\": [
\t\t\t\t\t{
\t\t\t\t\t\t\"intervals\": [
\t\t\t\t\t\t\t{
\t\t\t\t\t\t\t\t\"Maxt\": 20,
\t\t\t\t\t\t\t\t\"Mint\": 10
\t\t\t\t\t\t\t}
\t\t\t\t\t\t],
\t\t\t\t\t\t\"matchers\": \"{job=\\\"x\\\"}\"
\t\t\t\t\t}
\t\t\t\t]
\t\t\t}
\t\t],
\t\t\"index_stats\": {
\t\t\t\"series_max_size\": 65536,
\t\t\t\"chunk_max_size\": 16000
\t\t},
\t\t\"extensions\": {
\t\t\t\"parquet_migrated\": true,
\t\t\t\"ratio\": 0.5,
\t\t\t\"tiny\": 1e-7,
\t\t\t\"huge\": 1e+21
\t\t},
\t\t\"upload_time\": \"2025-01-01T12:00:00.123Z\"
\t}
}
";

    #[test]
    fn thanos_meta_with_every_field_round_trips_byte_identical() {
        let path = Path::new("thanos/meta.json");
        let meta = BlockMeta::parse(THANOS_SAMPLE.as_bytes(), path).unwrap();
        let t = meta.thanos.as_ref().unwrap();
        assert_eq!(t.labels["tenant_id"], "default-tenant");
        assert_eq!(t.labels["cluster"], "eu&us");
        assert_eq!(t.downsample.resolution, 300_000);
        assert_eq!(t.files.len(), 3);
        assert_eq!(t.files[2].size_bytes, 0);
        assert_eq!(t.files[0].hash.as_ref().unwrap().hash_func, "SHA256");
        assert_eq!(t.index_stats.unwrap().chunk_max_size, 16000);
        assert_eq!(t.rewrites[0].sources.len(), 1);
        assert_eq!(meta.stats.num_tombstones, 2);
        assert!(meta.compaction.deletable && meta.compaction.failed);
        // Extension keys are sorted on output, as Go sorts map keys; the sample is not, so
        // compare through a second round trip after checking the sorted form once.
        let out = meta.to_json();
        let expected = THANOS_SAMPLE.replace(
            "\t\t\t\"parquet_migrated\": true,\n\t\t\t\"ratio\": 0.5,\n\t\t\t\"tiny\": 1e-7,\n\t\t\t\"huge\": 1e+21\n",
            "\t\t\t\"huge\": 1e+21,\n\t\t\t\"parquet_migrated\": true,\n\t\t\t\"ratio\": 0.5,\n\t\t\t\"tiny\": 1e-7\n",
        );
        assert_eq!(out, expected);
        let again = BlockMeta::parse(out.as_bytes(), path).unwrap();
        assert_eq!(again, meta);
        assert_eq!(again.to_json(), out);
    }

    #[test]
    fn thanos_minimal_section_keeps_empty_labels_and_trailing_newline() {
        let mut meta = BlockMeta::new(Ulid::from_parts(1, 2), 0, 7_200_000);
        meta.thanos = Some(ThanosMeta {
            source: "receive".into(),
            ..ThanosMeta::default()
        });
        let out = meta.to_json();
        meta.thanos.as_mut().unwrap().files = vec![
            ThanosFile::new("chunks/000001".into(), Some(10)),
            ThanosFile::new("meta.json".into(), None),
        ];
        let with_files = meta.to_json();
        assert!(with_files.contains("\t\t\"files\": [\n\t\t\t{\n\t\t\t\t\"rel_path\": \"chunks/000001\",\n\t\t\t\t\"size_bytes\": 10\n\t\t\t},\n\t\t\t{\n\t\t\t\t\"rel_path\": \"meta.json\"\n\t\t\t}\n\t\t]\n"), "{with_files}");
        meta.thanos.as_mut().unwrap().files.clear();
        assert!(out.ends_with("}\n"));
        assert!(out.contains("\t\t\"labels\": {},\n\t\t\"downsample\": {\n\t\t\t\"resolution\": 0\n\t\t},\n\t\t\"source\": \"receive\"\n"), "{out}");
        assert!(out.contains("\t\"stats\": {},\n"));
        assert_eq!(
            BlockMeta::parse(out.as_bytes(), Path::new("m")).unwrap(),
            meta
        );
    }

    #[test]
    fn unknown_keys_in_stats_and_compaction_survive_a_round_trip() {
        let src = br#"{"ulid":"01M80EGJ40FMQVJA9XBXSA3V0H","minTime":1,"maxTime":2,
            "stats":{"numSamples":3,"numFancy":7},"compaction":{"level":1,"future":[1,2]},
            "version":1,"zzz":{"b":1,"a":"x"}}"#;
        let meta = BlockMeta::parse(src, Path::new("m")).unwrap();
        assert_eq!(meta.stats.extra["numFancy"], 7);
        let out = meta.to_json();
        assert!(
            !out.contains("zzz"),
            "unknown top-level keys are dropped, as in Go"
        );
        assert!(out.contains("\"numFancy\": 7"));
        assert!(out.contains("\"future\": [\n\t\t\t1,\n\t\t\t2\n\t\t]"));
        assert_eq!(
            BlockMeta::parse(out.as_bytes(), Path::new("m")).unwrap(),
            meta
        );
    }

    #[test]
    fn nulls_read_as_empty_like_go() {
        let src = br#"{"ulid":"01M80EGJ40FMQVJA9XBXSA3V0H","minTime":1,"maxTime":2,"stats":null,
            "compaction":{"level":1,"sources":null,"parents":null},"version":1,
            "thanos":{"labels":null,"source":"x","files":null,"extensions":null}}"#;
        let meta = BlockMeta::parse(src, Path::new("m")).unwrap();
        let t = meta.thanos.unwrap();
        assert!(t.labels.is_empty() && t.files.is_empty() && t.extensions.is_none());
    }

    #[test]
    fn wrong_versions_are_rejected() {
        let m = |v: &str, tv: &str| {
            format!(
                r#"{{"ulid":"01M80EGJ40FMQVJA9XBXSA3V0H","minTime":1,"maxTime":2,"version":{v}{tv}}}"#
            )
        };
        for (v, tv, what) in [
            ("2", "", "meta"),
            ("0", "", "meta"),
            ("1", r#","thanos":{"version":2,"labels":{}}"#, "thanos meta"),
        ] {
            let err = BlockMeta::parse(m(v, tv).as_bytes(), Path::new("b/meta.json")).unwrap_err();
            match err {
                BlockError::UnsupportedVersion { what: w, path, .. } => {
                    assert_eq!(w, what);
                    assert_eq!(path, Path::new("b/meta.json"));
                }
                other => panic!("unexpected {other}"),
            }
        }
        for tv in [
            "",
            r#","thanos":{"version":0}"#,
            r#","thanos":{"version":1}"#,
        ] {
            BlockMeta::parse(m("1", tv).as_bytes(), Path::new("m")).unwrap();
        }
    }

    #[test]
    fn inverted_time_range_is_rejected() {
        let src = br#"{"ulid":"01M80EGJ40FMQVJA9XBXSA3V0H","minTime":5,"maxTime":2,"version":1}"#;
        assert!(matches!(
            BlockMeta::parse(src, Path::new("m")),
            Err(BlockError::InvalidMeta { .. })
        ));
    }

    #[test]
    fn garbage_json_names_the_file() {
        for src in [
            &b"{not json"[..],
            b"",
            b"[]",
            br#"{"ulid":"short","minTime":1,"maxTime":2,"version":1}"#,
            br#"{"ulid":"ZZZZZZZZZZZZZZZZZZZZZZZZZZ","minTime":1,"maxTime":2,"version":1}"#,
            br#"{"ulid":"01M80EGJ40FMQVJA9XBXSA3V0H","minTime":"1","maxTime":2,"version":1}"#,
            br#"{"ulid":"01M80EGJ40FMQVJA9XBXSA3V0H","ulid":"01M80EGJ40FMQVJA9XBXSA3V0H","minTime":1,"maxTime":2,"version":1}"#,
        ] {
            let err = BlockMeta::parse(src, Path::new("/blocks/X/meta.json")).unwrap_err();
            assert!(matches!(err, BlockError::Json { .. }), "{err}");
            assert!(err.to_string().starts_with("/blocks/X/meta.json: "), "{err}");
        }
    }

    #[test]
    fn missing_meta_file_is_an_io_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = BlockMeta::read(dir.path()).unwrap_err();
        assert!(matches!(err, BlockError::Io { ref path, .. } if path.ends_with("meta.json")));
    }

    #[test]
    fn write_then_read_leaves_no_tmp_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut meta = BlockMeta::new(Ulid::from_parts(1_735_689_600_000, 42), 10, 20);
        meta.stats.num_series = 3;
        meta.write(dir.path()).unwrap();
        assert!(!dir.path().join("meta.json.tmp").exists());
        assert_eq!(BlockMeta::read(dir.path()).unwrap(), meta);
        let text = std::fs::read_to_string(dir.path().join("meta.json")).unwrap();
        assert!(!text.ends_with('\n'));
    }

    #[test]
    fn go_float_formatting() {
        let v: Value =
            serde_json::from_str("[1.0, 1e21, 1.5e-7, 123456.789, 1e20, 0.000001, -0.0]").unwrap();
        assert_eq!(
            go_json::to_string_compact(&v),
            "[1,1e+21,1.5e-7,123456.789,100000000000000000000,0.000001,-0]"
        );
    }
}
