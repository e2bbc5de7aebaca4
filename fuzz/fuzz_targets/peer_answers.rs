//! What Gauntlet reads from peers it calls: a streamed remote-read body from Prometheus (the
//! sidecar), a memcached or Redis server's replies (the query frontend's shared cache), and a
//! StoreAPI Series answer message (the querier). The first byte picks which; any input must
//! give series, replies or an error, never a panic or an allocation larger than the input
//! calls for.

#![no_main]

use gauntlet::frontend::remote_cache::{decode_entry, read_cache_replies};
use gauntlet::query::series_wire::decode_series_response;
use gauntlet::sidecar::prometheus::decode_streamed_read;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    match pick % 4 {
        0 => {
            let _ = decode_streamed_read(rest);
        }
        1 => {
            let _ = read_cache_replies(rest);
        }
        3 => {
            let _ = decode_series_response(&bytes::Bytes::copy_from_slice(rest));
        }
        _ => {
            // A cache entry read back (a frontend trusts no entry: another may have written it).
            let _ = decode_entry("fe:t:up:15000:86400000:0:", rest);
        }
    }
});
