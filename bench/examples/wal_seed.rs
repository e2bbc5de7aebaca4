//! Writes fuzz seeds for `fuzz/fuzz_targets/wal_reader.rs`: WAL segments made by Gauntlet's
//! writer (plain and snappy-compressed, a record spanning pages, series, samples with NaN and
//! stale markers, tombstones, a record of another type) and single records. Used by
//! `fuzz/run.sh`.
//!
//! `cargo run -p gauntlet-bench --example wal_seed -- OUT_DIR`

use std::path::PathBuf;

use gauntlet_engine::wal::record::{self, RefSample, Tombstone};
use gauntlet_engine::wal::{WalOptions, WalWriter, segment_name};

fn records() -> Vec<Vec<u8>> {
    let mut series = Vec::new();
    record::begin_series(&mut series);
    for r in 1..=40u64 {
        let instance = format!("host-{r:02}");
        record::encode_series_pairs(
            &mut series,
            r,
            [
                ("__name__", "http_requests_total"),
                ("instance", instance.as_str()),
                ("job", "api"),
            ],
        );
    }
    let mut samples = Vec::new();
    let values = [
        1.0,
        0.5,
        f64::NAN,
        f64::from_bits(0x7ff0_0000_0000_0002),
        1e300,
    ];
    let s: Vec<RefSample> = (0..3000u64)
        .map(|i| RefSample {
            r: i % 40 + 1,
            t: 1_735_689_600_000 + (i / 40) as i64 * 15_000,
            v: values[i as usize % values.len()],
        })
        .collect();
    record::encode_samples(&mut samples, &s);
    let mut stones = Vec::new();
    record::encode_tombstones(
        &mut stones,
        &[Tombstone {
            r: 3,
            mint: 0,
            maxt: 1_735_689_900_000,
        }],
    );
    vec![series, samples, stones, vec![6, 1, 2, 3]]
}

fn main() -> anyhow::Result<()> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [out] = args.as_slice() else {
        anyhow::bail!("usage: wal_seed OUT_DIR");
    };
    std::fs::create_dir_all(out)?;
    let recs = records();
    let refs: Vec<&[u8]> = recs.iter().map(|r| &r[..]).collect();
    for compress in [false, true] {
        let tmp = tempfile::tempdir()?;
        let mut w = WalWriter::open(
            tmp.path(),
            WalOptions {
                compress,
                ..WalOptions::default()
            },
        )?;
        w.log(&refs)?;
        w.close()?;
        std::fs::copy(
            segment_name(tmp.path(), 0),
            out.join(format!(
                "segment-{}",
                if compress { "snappy" } else { "plain" }
            )),
        )?;
    }
    for (i, rec) in recs.iter().enumerate() {
        std::fs::write(out.join(format!("record{i}")), rec)?;
    }
    Ok(())
}
