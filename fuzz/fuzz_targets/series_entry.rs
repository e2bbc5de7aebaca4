//! Decodes arbitrary bytes as a series entry of the index the way the store's hot loop does;
//! any outcome but a panic (or a huge allocation) is fine. Entries with a valid CRC are
//! reached by putting the CRC the decoder computed in place once the input fails on it.
#![no_main]
use gauntlet_engine::index::IndexError;
use gauntlet_engine::store::entry::{decode_entry, entry_len};
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
    if let Err(IndexError::Crc { actual, .. }) = run(entry) {
        // The CRC was read, so the whole entry is in the input: put the CRC of its body (which
        // the decoder reports) in its place and decode again.
        if let Some(whole) = entry_len(entry).and_then(|n| entry.get(..n)) {
            let mut fixed = whole.to_vec();
            let crc_at = fixed.len() - 4;
            fixed[crc_at..].copy_from_slice(&actual.to_be_bytes());
            let _ = run(&fixed);
        }
    }
});
