//! Thanos marker files in a block directory (`docs/formats/compaction.md`, Marker files):
//! `deletion-mark.json`, `no-compact-mark.json`, `no-downsample-mark.json`.
//!
//! Thanos writes them with `json.Marshal` (compact, no trailing newline) and rejects any
//! `version` other than 1 on read; times are Unix **seconds**.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use ulid::Ulid;

use super::BlockError;
use super::meta::{go_json, ulid_str, write_atomic};

/// The only marker file version Thanos reads and writes.
pub const MARKER_VERSION: u32 = 1;

/// `no-compact-mark.json` reason: set by an operator.
pub const REASON_MANUAL: &str = "manual";
/// `no-compact-mark.json` reason: the compacted index would exceed the size limit.
pub const REASON_INDEX_SIZE_EXCEEDING: &str = "index-size-exceeding";
/// `no-compact-mark.json` reason: the index has out-of-order chunks.
pub const REASON_OUT_OF_ORDER_CHUNK: &str = "block-index-out-of-order-chunk";
/// `no-compact-mark.json` reason: vertical compaction of downsampled blocks is not possible.
pub const REASON_DOWNSAMPLE_VERTICAL_COMPACTION: &str = "downsample-vertical-compaction";

/// Marks a block for deletion after the compactor's delete delay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletionMark {
    /// The block's ID.
    #[serde(with = "ulid_str")]
    pub id: Ulid,
    /// File version; always [`MARKER_VERSION`].
    pub version: u32,
    /// Free text explaining why.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
    /// When the block was marked, Unix seconds.
    pub deletion_time: i64,
}

/// Excludes a block from compaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoCompactMark {
    /// The block's ID.
    #[serde(with = "ulid_str")]
    pub id: Ulid,
    /// File version; always [`MARKER_VERSION`].
    pub version: u32,
    /// Free text explaining why.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
    /// When the block was marked, Unix seconds.
    pub no_compact_time: i64,
    /// One of the `REASON_*` constants (others are kept as written).
    #[serde(default)]
    pub reason: String,
}

/// Excludes a block from downsampling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoDownsampleMark {
    /// The block's ID.
    #[serde(with = "ulid_str")]
    pub id: Ulid,
    /// File version; always [`MARKER_VERSION`].
    pub version: u32,
    /// Free text explaining why.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
    /// When the block was marked, Unix seconds.
    pub no_downsample_time: i64,
    /// Usually [`REASON_MANUAL`].
    #[serde(default)]
    pub reason: String,
}

/// What the three marker types share: a file name and a version field.
trait Marker: Serialize + DeserializeOwned {
    const FILENAME: &'static str;
    fn version(&self) -> u32;
}

impl Marker for DeletionMark {
    const FILENAME: &'static str = "deletion-mark.json";
    fn version(&self) -> u32 {
        self.version
    }
}

impl Marker for NoCompactMark {
    const FILENAME: &'static str = "no-compact-mark.json";
    fn version(&self) -> u32 {
        self.version
    }
}

impl Marker for NoDownsampleMark {
    const FILENAME: &'static str = "no-downsample-mark.json";
    fn version(&self) -> u32 {
        self.version
    }
}

fn parse<M: Marker>(bytes: &[u8], path: &Path) -> Result<M, BlockError> {
    let m: M = serde_json::from_slice(bytes).map_err(|source| BlockError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    if m.version() != MARKER_VERSION {
        return Err(BlockError::UnsupportedVersion {
            path: path.to_path_buf(),
            what: "marker",
            version: i64::from(m.version()),
        });
    }
    Ok(m)
}

fn read<M: Marker>(dir: &Path) -> Result<Option<M>, BlockError> {
    let path = dir.join(M::FILENAME);
    match std::fs::read(&path) {
        Ok(bytes) => parse(&bytes, &path).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(BlockError::io(path, e)),
    }
}

macro_rules! marker_api {
    ($ty:ty) => {
        impl $ty {
            /// File name inside the block directory.
            pub const FILENAME: &'static str = <$ty as Marker>::FILENAME;

            /// Reads the marker from `dir`; `Ok(None)` if the block has none.
            pub fn read(dir: &Path) -> Result<Option<Self>, BlockError> {
                read(dir)
            }

            /// Parses marker bytes, rejecting versions other than 1; `path` names the file in
            /// errors.
            pub fn parse(bytes: &[u8], path: &Path) -> Result<Self, BlockError> {
                parse(bytes, path)
            }

            /// The compact JSON Thanos writes.
            pub fn to_json(&self) -> String {
                go_json::to_string_compact(self)
            }

            /// Writes the marker into `dir` atomically (tmp file, fsync, rename).
            pub fn write(&self, dir: &Path) -> Result<(), BlockError> {
                write_atomic(dir, Self::FILENAME, self.to_json().as_bytes())
            }
        }
    };
}

marker_api!(DeletionMark);
marker_api!(NoCompactMark);
marker_api!(NoDownsampleMark);

impl DeletionMark {
    /// A version-1 deletion mark made at `unix_seconds`.
    pub fn new(id: Ulid, unix_seconds: i64, details: impl Into<String>) -> Self {
        DeletionMark {
            id,
            version: MARKER_VERSION,
            details: details.into(),
            deletion_time: unix_seconds,
        }
    }
}

impl NoCompactMark {
    /// A version-1 no-compact mark made at `unix_seconds`.
    pub fn new(id: Ulid, unix_seconds: i64, reason: &str, details: impl Into<String>) -> Self {
        NoCompactMark {
            id,
            version: MARKER_VERSION,
            details: details.into(),
            no_compact_time: unix_seconds,
            reason: reason.to_string(),
        }
    }
}

impl NoDownsampleMark {
    /// A version-1 no-downsample mark made at `unix_seconds`.
    pub fn new(id: Ulid, unix_seconds: i64, reason: &str, details: impl Into<String>) -> Self {
        NoDownsampleMark {
            id,
            version: MARKER_VERSION,
            details: details.into(),
            no_downsample_time: unix_seconds,
            reason: reason.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "01M80EGJ40FMQVJA9XBXSA3V0H";

    #[test]
    fn deletion_mark_json_matches_thanos_layout() {
        let id = Ulid::from_string(ID).unwrap();
        let m = DeletionMark::new(id, 1_735_689_600, "");
        assert_eq!(
            m.to_json(),
            format!(r#"{{"id":"{ID}","version":1,"deletion_time":1735689600}}"#)
        );
        let m = DeletionMark::new(id, 5, "retention <1d>");
        assert_eq!(
            m.to_json(),
            format!(
                r#"{{"id":"{ID}","version":1,"details":"retention \u003c1d\u003e","deletion_time":5}}"#
            )
        );
        assert_eq!(
            DeletionMark::parse(m.to_json().as_bytes(), Path::new("d")).unwrap(),
            m
        );
    }

    #[test]
    fn no_compact_and_no_downsample_marks_round_trip() {
        let id = Ulid::from_string(ID).unwrap();
        let nc = NoCompactMark::new(id, 7, REASON_INDEX_SIZE_EXCEEDING, "too big");
        assert_eq!(
            nc.to_json(),
            format!(
                r#"{{"id":"{ID}","version":1,"details":"too big","no_compact_time":7,"reason":"index-size-exceeding"}}"#
            )
        );
        let nd = NoDownsampleMark::new(id, 8, REASON_MANUAL, "");
        assert_eq!(
            nd.to_json(),
            format!(r#"{{"id":"{ID}","version":1,"no_downsample_time":8,"reason":"manual"}}"#)
        );
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(NoCompactMark::read(dir.path()).unwrap(), None);
        nc.write(dir.path()).unwrap();
        nd.write(dir.path()).unwrap();
        assert_eq!(NoCompactMark::read(dir.path()).unwrap(), Some(nc));
        assert_eq!(NoDownsampleMark::read(dir.path()).unwrap(), Some(nd));
        assert!(dir.path().join("no-compact-mark.json").is_file());
        assert!(dir.path().join("no-downsample-mark.json").is_file());
    }

    #[test]
    fn marker_with_other_version_is_rejected() {
        let src = format!(r#"{{"id":"{ID}","version":2,"deletion_time":1}}"#);
        let err =
            DeletionMark::parse(src.as_bytes(), Path::new("b/deletion-mark.json")).unwrap_err();
        assert!(matches!(
            err,
            BlockError::UnsupportedVersion {
                what: "marker",
                version: 2,
                ..
            }
        ));
        let err = DeletionMark::parse(b"{\"id\":", Path::new("b/deletion-mark.json")).unwrap_err();
        assert!(err.to_string().starts_with("b/deletion-mark.json: "));
    }
}
