//! Chunk segment reading on arbitrary bytes behind a valid header: walking all records and
//! reading at arbitrary refs never panics, and every record the walk returns reads back the
//! same by its ref.
#![no_main]
use std::path::PathBuf;

use gauntlet_engine::block::SegmentReader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (refs, body) = data.split_at(data.len().min(16));
    let mut seg = vec![0x85, 0xBD, 0x40, 0xDD, 0x01, 0, 0, 0];
    seg.extend_from_slice(body);
    let Ok(r) = SegmentReader::from_segments(vec![seg], PathBuf::from("fuzz/chunks")) else {
        return;
    };
    for item in r.iter() {
        let Ok((cref, enc, payload)) = item else {
            break;
        };
        assert_eq!(r.chunk(cref).unwrap(), (enc, payload));
    }
    for w in refs.chunks(8) {
        let mut b = [0u8; 8];
        b[..w.len()].copy_from_slice(w);
        let cref = u64::from_le_bytes(b);
        let _ = r.chunk(cref);
        let _ = r.chunk(cref & 0xFFFF);
        let _ = r.chunk_unchecked_crc(cref & 0xFFFF);
    }
});
