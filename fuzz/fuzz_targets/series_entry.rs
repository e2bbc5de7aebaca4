//! Decodes arbitrary bytes as a series entry of the index the way the store's hot loop does;
//! any outcome but a panic (or a huge allocation) is fine. Entries with a valid CRC are
//! reached by fixing the CRC of the input once it fails on it.
#![no_main]
use gauntlet_engine::index::IndexError;
use gauntlet_engine::store::entry::decode_entry;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, entry)) = data.split_first() else {
        return;
    };
    // A small symbol count and a time window taken from the first byte, so both the
    // reference check and the time filter are exercised.
    let num_symbols = u32::from(knobs & 0x3F) + 1;
    let window = if knobs & 0x40 != 0 {
        (0, 1000)
    } else {
        (i64::MIN, i64::MAX)
    };
    let run = |buf: &[u8]| {
        let (mut labels, mut chunks) = (Vec::new(), Vec::new());
        decode_entry(
            buf,
            16,
            num_symbols,
            window,
            "fuzz",
            &mut labels,
            &mut chunks,
        )
    };
    if let Err(IndexError::Crc { .. }) = run(entry) {
        // Put the expected CRC after the body the length varint announces, and decode again.
        let mut fixed = entry.to_vec();
        let (mut len, mut shift, mut n) = (0usize, 0, 0);
        for &b in entry.iter().take(5) {
            len |= usize::from(b & 0x7F) << shift;
            n += 1;
            if b < 0x80 {
                break;
            }
            shift += 7;
        }
        if let Some(body) = entry.get(n..n + len) {
            let crc = gauntlet_engine::encoding::crc32c(body);
            fixed.truncate(n + len);
            fixed.extend_from_slice(&crc.to_be_bytes());
            let _ = run(&fixed);
        }
    }
});
