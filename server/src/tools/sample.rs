//! A small deterministic sample block for first runs: a few hundred series of counters and
//! gauges over two hours at a 15 s interval.

use std::path::Path;

use gauntlet_engine::block::meta::BlockMeta;
use gauntlet_engine::block::{CutOptions, SeriesSamples, write_blocks};
use gauntlet_engine::labels::Labels;

const START_MS: i64 = 1_735_689_600_000;
const STEP_MS: i64 = 15_000;
const POINTS: i64 = 480;

/// Writes the sample block into `dir` and returns its meta.
pub fn write_sample_block(dir: &Path) -> anyhow::Result<BlockMeta> {
    let mut rng: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut series = Vec::new();
    for inst in 0..10 {
        let instance = format!("host-{inst:02}");
        for code in ["200", "404", "500"] {
            for handler in ["/api/a", "/api/b", "/api/c"] {
                let labels = Labels::from_pairs([
                    ("__name__", "http_requests_total"),
                    ("job", "api"),
                    ("instance", instance.as_str()),
                    ("code", code),
                    ("handler", handler),
                ]);
                let mut v = (next() % 1000) as f64;
                let rate = (next() % 20) as f64;
                let (ts, val) = (0..POINTS)
                    .map(|i| {
                        v += (next() % (rate as u64 * 15 + 1)) as f64;
                        (START_MS + i * STEP_MS, v)
                    })
                    .unzip();
                series.push(SeriesSamples { labels, ts, val });
            }
        }
        for sensor in 0..5 {
            let labels = Labels::from_pairs([
                ("__name__", "temperature_celsius".to_string()),
                ("job", "node".to_string()),
                ("instance", instance.clone()),
                ("sensor", format!("s{sensor}")),
            ]);
            let mut v = 20.0 + (next() % 600) as f64 / 10.0;
            let (ts, val) = (0..POINTS)
                .map(|i| {
                    if next() % 4 == 0 {
                        v += ((next() % 11) as f64 - 5.0) / 10.0;
                    }
                    (START_MS + i * STEP_MS, (v * 10.0).round() / 10.0)
                })
                .unzip();
            series.push(SeriesSamples { labels, ts, val });
        }
    }
    let metas = write_blocks(dir, series, 2 * 3_600_000, CutOptions::default(), None)?;
    metas
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("the sample produced no block"))
}
