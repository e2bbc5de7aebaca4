//! Corrupt, truncated and hostile block files: `gauntlet tools block dump` fails with an error
//! naming the file and the offset, never a panic.

use std::path::{Path, PathBuf};

use crate::common::*;

/// A scratch copy of the fixture block; returns (guard, block dir).
fn scratch_block() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixtures().join("promtool-200series-2h");
    let block = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .unwrap();
    let dst = tmp.path().join(block.file_name().unwrap());
    copy_dir(&block, &dst);
    (tmp, dst)
}

/// Runs dump and returns its stderr, asserting it failed cleanly (exit 1, no panic).
fn dump_fails(dir: &Path) -> String {
    let out = gauntlet()
        .args(["tools", "block", "dump"])
        .arg(dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected a clean failure, got {}:\n{err}",
        out.status
    );
    assert!(
        !err.contains("panicked"),
        "panic instead of an error:\n{err}"
    );
    err
}

fn flip(path: &Path, offset: usize) {
    let mut b = std::fs::read(path).unwrap();
    b[offset] ^= 0x5a;
    std::fs::write(path, b).unwrap();
}

fn truncate(path: &Path, len: usize) {
    let b = std::fs::read(path).unwrap();
    std::fs::write(path, &b[..len]).unwrap();
}

#[test]
fn flipped_byte_in_the_symbol_table_is_a_crc_error() {
    let (_g, dir) = scratch_block();
    flip(&dir.join("index"), 20);
    let err = dump_fails(&dir);
    assert!(err.contains("index"), "{err}");
    assert!(
        err.to_lowercase().contains("crc") || err.contains("checksum"),
        "{err}"
    );
}

#[test]
fn wrong_index_magic() {
    let (_g, dir) = scratch_block();
    flip(&dir.join("index"), 0);
    let err = dump_fails(&dir);
    assert!(err.to_lowercase().contains("magic"), "{err}");
}

#[test]
fn truncated_index() {
    for keep in [0, 3, 5, 100, 4000] {
        let (_g, dir) = scratch_block();
        truncate(&dir.join("index"), keep);
        let err = dump_fails(&dir);
        assert!(err.contains("index"), "keep {keep}: {err}");
    }
}

#[test]
fn flipped_byte_in_a_chunk_names_segment_and_offset() {
    let (_g, dir) = scratch_block();
    flip(&dir.join("chunks/000001"), 5000);
    let err = dump_fails(&dir);
    assert!(err.contains("000001"), "{err}");
    assert!(err.contains("offset"), "{err}");
}

#[test]
fn chunk_reference_past_the_end_of_the_segment() {
    let (_g, dir) = scratch_block();
    let len = std::fs::metadata(dir.join("chunks/000001")).unwrap().len() as usize;
    truncate(&dir.join("chunks/000001"), len / 2);
    let err = dump_fails(&dir);
    assert!(err.contains("000001"), "{err}");
}

#[test]
fn wrong_segment_magic_and_missing_segment() {
    let (_g, dir) = scratch_block();
    flip(&dir.join("chunks/000001"), 1);
    assert!(dump_fails(&dir).to_lowercase().contains("magic"));
    let (_g, dir) = scratch_block();
    std::fs::remove_file(dir.join("chunks/000001")).unwrap();
    dump_fails(&dir);
}

#[test]
fn corrupt_meta_json() {
    let (_g, dir) = scratch_block();
    std::fs::write(dir.join("meta.json"), b"{\"ulid\": 12, ").unwrap();
    assert!(dump_fails(&dir).contains("meta.json"));
    std::fs::write(
        dir.join("meta.json"),
        br#"{"ulid":"01M80EDTXX3TS2DC5H3CJBESG9","minTime":0,"maxTime":1,"stats":{},"compaction":{"level":1},"version":7}"#,
    )
    .unwrap();
    assert!(dump_fails(&dir).contains("version"));
}

#[test]
fn absurd_lengths_do_not_allocate() {
    // A symbol table claiming 4 GiB: the reader must notice the file is smaller.
    let (_g, dir) = scratch_block();
    let path = dir.join("index");
    let mut b = std::fs::read(&path).unwrap();
    b[5..9].copy_from_slice(&u32::MAX.to_be_bytes());
    std::fs::write(&path, b).unwrap();
    dump_fails(&dir);
}

#[test]
fn corrupt_tombstones() {
    let (_g, dir) = scratch_block();
    std::fs::write(
        dir.join("tombstones"),
        [0x01, 0x30, 0xBA, 0x30, 1, 0xff, 0xff],
    )
    .unwrap();
    assert!(dump_fails(&dir).contains("tombstones"));
}
