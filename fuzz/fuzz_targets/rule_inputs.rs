//! What the ruler reads from others: a query endpoint's JSON answer (instant or range, with
//! native histograms read back from their bucket bounds) and a `--remote-write.config`
//! document. The first byte picks which; any input must give values or an error, never panic.

#![no_main]

use gauntlet::rule::query::{parse_matrix, parse_result};
use gauntlet::rule::remote_write::config::parse_remote_write;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    match pick % 3 {
        0 | 1 => {
            let Ok(answer) = serde_json::from_slice::<serde_json::Value>(rest) else {
                return;
            };
            if pick % 3 == 0 {
                let _ = parse_result(&answer["data"]);
            } else {
                let _ = parse_matrix(&answer["data"]);
            }
        }
        _ => {
            if let Ok(text) = std::str::from_utf8(rest) {
                let _ = parse_remote_write("--remote-write.config", text);
            }
        }
    }
});
