//! Segment files in a directory: their names and the numbers they run over.

use std::path::{Path, PathBuf};

use super::WalError;

/// The path of segment `n` in `dir`: eight digits with leading zeros, as Prometheus names them.
pub fn segment_name(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("{n:08}"))
}

/// The number a segment file name stands for, if the name is one (digits only).
pub fn parse_segment_name(name: &str) -> Option<u32> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok()
}

/// The segments of `dir` in order, checked to run without a gap as Prometheus requires.
pub(super) fn list_segments(dir: &Path) -> Result<Vec<(u32, PathBuf)>, WalError> {
    let mut segs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(WalError::io(dir))? {
        let entry = entry.map_err(WalError::io(dir))?;
        if let Some(n) = entry.file_name().to_str().and_then(parse_segment_name) {
            segs.push((n, entry.path()));
        }
    }
    segs.sort_unstable_by_key(|s| s.0);
    if let Some(w) = segs.windows(2).find(|w| w[1].0 != w[0].0 + 1) {
        return Err(WalError::Layout {
            path: dir.to_path_buf(),
            reason: format!(
                "segments are not sequential: {:08} is followed by {:08}",
                w[0].0, w[1].0
            ),
        });
    }
    Ok(segs)
}

/// The first and last segment numbers in `dir`, or `None` when it holds no segment.
pub fn segment_range(dir: &Path) -> Result<Option<(u32, u32)>, WalError> {
    let segs = list_segments(dir)?;
    Ok(segs.first().zip(segs.last()).map(|(f, l)| (f.0, l.0)))
}

/// Makes a rename or removal inside `dir` durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), WalError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(WalError::io(dir))
}
