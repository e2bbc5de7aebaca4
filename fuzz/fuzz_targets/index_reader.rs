//! Opens arbitrary bytes as an index and reads everything reachable from it; any outcome but a
//! panic is fine.
//!
//! Random bytes rarely carry valid CRCs, which would stop every run at the first checksum. So
//! after reading the input as given, the target repairs each checksum the reader complains
//! about and reads again, letting the fuzzer reach the decoders behind the CRCs.
#![no_main]
use gauntlet_engine::encoding::{Decbuf, crc32c};
use gauntlet_engine::index::{IndexError, IndexReader, postings_for_matchers};
use gauntlet_engine::labels::{MatchType, Matcher};
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;

fuzz_target!(|data: &[u8]| {
    if exercise(data).is_none() {
        return;
    }
    let mut fixed = data.to_vec();
    for _ in 0..16 {
        let Some((section, offset)) = exercise(&fixed) else {
            return;
        };
        if !repair(&mut fixed, section, offset) {
            return;
        }
    }
});

/// Reads everything; returns the first CRC error's section and offset.
fn exercise(data: &[u8]) -> Option<(&'static str, u64)> {
    let crc = |e: IndexError| match e {
        IndexError::Crc {
            section, offset, ..
        } => Some((section, offset)),
        _ => None,
    };
    let ix = match IndexReader::from_bytes(data, PathBuf::from("fuzz")) {
        Ok(ix) => ix,
        Err(e) => return crc(e),
    };
    let _ = ix.version();
    for s in ix.symbols().take(10_000) {
        if s.is_err() {
            break;
        }
    }
    let _ = ix.symbol(0);
    let _ = ix.symbol(u32::MAX);
    let mut first_crc = None;
    let mut note = |r: Result<(), IndexError>| {
        if let Err(e) = r
            && first_crc.is_none()
        {
            first_crc = crc(e);
        }
    };
    let mut refs = Vec::new();
    for (i, name) in ix.label_names().iter().enumerate() {
        let Ok(values) = ix.label_values(name) else {
            continue;
        };
        for v in values.iter().take(1000) {
            note(ix.postings(name, v, &mut refs));
        }
        if let Some(v) = values.first() {
            for typ in [MatchType::Equal, MatchType::NotEqual] {
                let m = Matcher::new(typ, name.as_str(), v.as_str()).unwrap();
                note(postings_for_matchers(&ix, &[m]).map(drop));
            }
        }
        // Compiling a regex costs more than the rest of a run: one per input.
        if i == 0 {
            let m = Matcher::new(MatchType::Regexp, name.as_str(), ".+").unwrap();
            note(postings_for_matchers(&ix, &[m]).map(drop));
        }
    }
    let (mut labels, mut chunks) = (Vec::new(), Vec::new());
    let all = ix.all_postings(&mut refs);
    let ok = all.is_ok();
    note(all);
    if ok {
        for &r in refs.iter().take(10_000) {
            note(ix.series(r, &mut labels, &mut chunks));
        }
    }
    for r in [0, 1, 2, u32::MAX] {
        let _ = ix.series(r, &mut labels, &mut chunks);
    }
    first_crc
}

/// Rewrites the stored CRC of the section at `offset`; false if it cannot be located.
fn repair(data: &mut [u8], section: &str, offset: u64) -> bool {
    let Ok(at) = usize::try_from(offset) else {
        return false;
    };
    let (body, crc_at) = match section {
        "TOC" => (at..at.saturating_add(48), at.saturating_add(48)),
        "series" => {
            let Some(rest) = data.get(at..) else {
                return false;
            };
            let mut d = Decbuf::new(rest, offset);
            let Ok(len) = d.uvarint() else {
                return false;
            };
            let start = at + d.position();
            let Some(end) = usize::try_from(len).ok().and_then(|l| start.checked_add(l)) else {
                return false;
            };
            (start..end, end)
        }
        _ => {
            let Some(len) = data.get(at..at.saturating_add(4)) else {
                return false;
            };
            let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
            (at + 4..at + 4 + len, at + 4 + len)
        }
    };
    if crc_at.saturating_add(4) > data.len() {
        return false;
    }
    let crc = crc32c(&data[body]);
    data[crc_at..crc_at + 4].copy_from_slice(&crc.to_be_bytes());
    true
}
