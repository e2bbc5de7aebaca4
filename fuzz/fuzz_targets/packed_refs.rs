//! The store's bitpacked refs, as read back from a postings cache: arbitrary bytes either are
//! refused or decode without panicking, reading all and reading a range agree. The input read
//! as `u32`s, sorted, packs and reads back the same whichever way it is read.
#![no_main]
use bytes::Bytes;
use gauntlet_engine::store::postings::{PackedRefs, pack};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = PackedRefs::from_bytes(Bytes::copy_from_slice(data)) {
        // Bytes Gauntlet did not write can hold refs out of order, so only safety and
        // agreement between the readers of positions are checked here.
        let mut all = Vec::new();
        p.decode_all(&mut all);
        assert_eq!(all.len(), p.len());
        let mut part = Vec::new();
        p.decode_range(p.len() / 3..p.len() / 2, &mut part);
        assert_eq!(part[..], all[p.len() / 3..p.len() / 2]);
        let mut within = Vec::new();
        p.decode_within(1000, 1_000_000, &mut within);
        p.retain(&[0, 5, 77, 4096, 1 << 20, u32::MAX], &mut within);
    }
    let mut refs: Vec<u32> = data
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    refs.sort_unstable();
    refs.dedup();
    let p = pack(&refs);
    let back = PackedRefs::from_bytes(p.bytes().clone()).expect("own output must read");
    let mut all = Vec::new();
    back.decode_all(&mut all);
    assert_eq!(all, refs);
    if let (Some(&lo), Some(&hi)) = (refs.first(), refs.last()) {
        let mut within = Vec::new();
        back.decode_within(lo, hi, &mut within);
        assert_eq!(within, refs);
        let mut kept = Vec::new();
        back.retain(&refs, &mut kept);
        assert_eq!(kept, refs);
        let mid = refs[refs.len() / 2];
        back.decode_within(mid, mid, &mut within);
        assert_eq!(within.last(), Some(&mid));
    }
});
