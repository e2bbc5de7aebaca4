//! Serves arbitrary bytes as a Parquet shard (a labels file and a chunks file) from an
//! in-memory bucket: opening it, selecting with a few matchers, listing label values, and the
//! chunk-column and column-list decoders on their own. Any outcome but a panic (or a huge
//! allocation) is fine, except a panic inside the Parquet library's decoders, which the
//! reader catches and answers as an error (the hook below lets those through).
#![no_main]
use std::sync::Arc;

use gauntlet_engine::bucket::Bucket;
use gauntlet_engine::labels::{MatchType, Matcher};
use gauntlet_engine::parquet::read::ParquetShard;
use gauntlet_engine::parquet::{chunks_file, decode_chunks, decode_col_indexes, labels_file};
use libfuzzer_sys::fuzz_target;
use object_store::memory::InMemory;

/// The fuzzer's panic hook (which aborts) for every panic but those the reader turns into
/// errors.
fn contain_decoder_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let fatal = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !gauntlet_engine::parquet::in_guarded_decode() {
                fatal(info);
            }
        }));
    });
}

fuzz_target!(|data: &[u8]| {
    contain_decoder_panics();
    // The first four bytes say where the labels file ends and the chunks file begins.
    let Some((split, rest)) = data.split_first_chunk::<4>() else {
        return;
    };
    let at = (u32::from_le_bytes(*split) as usize).min(rest.len());
    let (labels, chunks) = rest.split_at(at);
    let _ = decode_chunks(&bytes::Bytes::copy_from_slice(chunks), i64::MIN, i64::MAX);
    let _ = decode_col_indexes(labels, &mut Vec::new());
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        let bucket = Bucket::from_store(Arc::new(InMemory::new()), "fuzz".into());
        for (name, b) in [(labels_file(0), labels), (chunks_file(0), chunks)] {
            let _ = bucket
                .put(&format!("blk/{name}"), bytes::Bytes::copy_from_slice(b))
                .await;
        }
        let Ok(shard) = ParquetShard::open(&bucket, "blk", 0).await else {
            return;
        };
        let selections = [
            vec![Matcher::new(MatchType::Regexp, "__name__", ".+").unwrap()],
            vec![
                Matcher::new(MatchType::Equal, "__name__", "up").unwrap(),
                Matcher::new(MatchType::NotEqual, "job", "").unwrap(),
            ],
            vec![Matcher::new(MatchType::Equal, "absent", "").unwrap()],
        ];
        for m in &selections {
            let _ = shard.select(&bucket, m, i64::MIN, i64::MAX, false).await;
            let _ = shard.select(&bucket, m, 0, 1, true).await;
        }
        let _ = shard.label_values(&bucket, "__name__", &[]).await;
        let _ = shard.label_values(&bucket, "job", &selections[1]).await;
    });
});
