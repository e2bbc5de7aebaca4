//! Google Cloud Storage and Azure Blob Storage buckets on real emulators on loopback
//! (fake-gcs-server and Azurite, installed by `tests/run.sh`): blocks promtool wrote are
//! uploaded through each provider's API and `gauntlet store` serves them as promtool dumps
//! them; `gauntlet receive` ships the blocks it cuts there; `gauntlet compact` compacts them
//! there, marking and then deleting the sources. Each role reads a Thanos objstore file of
//! `type: GCS` or `type: AZURE`, in the form Thanos itself takes (GCS through
//! `STORAGE_EMULATOR_HOST`, Azure through a connection string) or naming the server in the
//! file (a service account key's `gcs_base_url`, Azure's `endpoint` URL).

use std::time::{Duration, Instant};

use crate::common::bucket::{block_dirs, promtool_blocks, upload};
use crate::common::emulators::{Cloud, Emulator, Gauntlet, Style, mirror, push};
use crate::common::receive::{Receiver, V1, now_ms, post, series, write_body};
use crate::common::storeapi::*;
use crate::common::*;
use gauntlet_engine::block::BlockMeta;
use gauntlet_proto::prometheus as pb;
use serde_json::{Value, json};

const START_MS: i64 = 1_735_689_600_000;

fn store_serves_blocks_uploaded_through_the_api(cloud: Cloud, test: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let Some(emu) = Emulator::start(cloud, &tmp.path().join("emulator"), test) else {
        return;
    };
    let ext = [("cluster", if cloud == Cloud::Gcs { "gcs" } else { "azure" })];
    // 2 instances × 200 series over 4 h: two 2 h blocks, as a sidecar uploads them.
    let src = promtool_blocks(tmp.path(), 2, 4);
    let staged = tmp.path().join("staged");
    assert_eq!(upload(&src, &staged, &ext).len(), 2);
    let dump = parse_dump(&promtool_dump(&staged, &[]), &ext);
    assert_eq!(dump.len(), 400);
    let files = push(&emu.bucket(), &staged);
    assert!(files >= 6, "{files} files uploaded");

    let cfg = tmp.path().join("objstore.yml");
    std::fs::write(&cfg, emu.objstore_yaml(Style::Thanos)).unwrap();
    let store = Gauntlet::start(
        &[
            "store",
            &format!("--objstore.config-file={}", cfg.display()),
            &format!("--data-dir={}", tmp.path().join("data").display()),
            "--sync-block-duration=1s",
        ],
        &emu.env(Style::Thanos),
    );
    let (_, body) = store.get("/metrics");
    let m = String::from_utf8_lossy(&body);
    assert!(m.contains("thanos_bucket_store_blocks_loaded 2"), "{m}");

    let end = START_MS + 4 * 3600 * 1000;
    let (w0, w1) = (START_MS + 1_234_567, START_MS + 3 * 3600 * 1000 + 777_777);
    let cases: Vec<(Value, i64, i64)> = vec![
        (
            json!([[0, "__name__", "http_requests_total"], [0, "code", "500"]]),
            START_MS,
            end,
        ),
        (
            json!([
                [2, "__name__", "http_requests_total|node_cpu_seconds_total"],
                [1, "instance", "host-00"]
            ]),
            w0,
            w1,
        ),
        (
            json!([
                [0, ext[0].0, ext[0].1],
                [0, "__name__", "temperature_celsius"]
            ]),
            w0,
            end,
        ),
        (
            json!([
                [0, "cluster", "elsewhere"],
                [0, "__name__", "temperature_celsius"]
            ]),
            START_MS,
            end,
        ),
    ];
    let calls: Vec<Value> = cases
        .iter()
        .map(|(m, a, b)| series_call(m, *a, *b))
        .collect();
    let results = python_calls(store.grpc, &Value::Array(calls));
    let mut total = 0;
    for ((ms, mint, maxt), res) in cases.iter().zip(&results) {
        let matchers: Vec<_> = ms.as_array().unwrap().iter().map(matcher).collect();
        let want = expected(&dump, &matchers, *mint, *maxt);
        let got = decoded(res, *mint, *maxt);
        assert_same_series(&ms.to_string(), &got, &want);
        assert!(res["warnings"].as_array().unwrap().is_empty(), "{res}");
        total += got.len();
    }
    assert!(total > 100, "cases select a fair share of series: {total}");
    let r = python_calls(
        store.grpc,
        &json!([
            {"method": "LabelValues", "label": "instance", "start": START_MS, "end": end},
            {"method": "LabelValues", "label": "cluster", "start": START_MS, "end": end},
        ]),
    );
    assert_eq!(r[0]["values"], json!(["host-00", "host-01"]));
    assert_eq!(r[1]["values"], json!([ext[0].1]));
    // Index and chunk reads went to the emulator.
    let (_, body) = store.get("/metrics");
    let m = String::from_utf8_lossy(&body);
    let ops: f64 = m
        .lines()
        .find_map(|l| l.strip_prefix("thanos_objstore_bucket_operations_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(ops > 10.0, "{m}");
}

fn receive_ships_cut_blocks(cloud: Cloud, test: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let Some(emu) = Emulator::start(cloud, &tmp.path().join("emulator"), test) else {
        return;
    };
    let cfg = tmp.path().join("objstore.yml");
    std::fs::write(&cfg, emu.objstore_yaml(Style::Direct)).unwrap();
    let dir = tmp.path().join("receive");
    let recv = Receiver::start(
        &dir,
        &[
            &format!("--objstore.config-file={}", cfg.display()),
            "--tsdb.min-block-duration=2m",
            "--tsdb.max-block-duration=2m",
            "--receive.cut-check-interval=100ms",
        ],
    );
    // Seven minutes of samples every 10 s for 20 series, in time order: two blocks are due.
    let minute = 60_000;
    let start = (now_ms() - 20 * minute) / (2 * minute) * (2 * minute);
    for k in 0..42 {
        let t = start + k * 10_000;
        let ts: Vec<pb::TimeSeries> = (0..20)
            .map(|i| {
                series(
                    &[("__name__", "cut"), ("i", &i.to_string())],
                    &[(t, (k * 100 + i) as f64)],
                )
            })
            .collect();
        let (code, _, msg) = post(recv.rw, "/api/v1/receive", &[V1], &write_body(ts)).unwrap();
        assert_eq!(code, 200, "{msg}");
    }
    let bucket = emu.bucket();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let metas = rt
            .block_on(bucket.list(""))
            .unwrap()
            .into_iter()
            .filter(|o| o.path.ends_with("/meta.json"))
            .count();
        if metas >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "{metas} blocks shipped in 60 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Read back from the emulator: whole blocks Prometheus's tools read, labelled as a
    // receiver labels them, and recorded as shipped.
    let back = tmp.path().join("back");
    assert!(mirror(&bucket, &back) >= 8);
    let blocks = block_dirs(&back);
    assert_eq!(blocks.len(), 2, "{blocks:?}");
    let shipped = std::fs::read_to_string(dir.join("default-tenant/thanos.shipper.json")).unwrap();
    for b in &blocks {
        let m = BlockMeta::read(b).unwrap();
        let t = m.thanos.clone().unwrap();
        assert_eq!(t.source, "receive");
        assert_eq!(t.labels["tenant_id"], "default-tenant");
        assert_eq!(t.labels["replica"], "r1");
        assert!(shipped.contains(&m.ulid.to_string()), "{shipped}");
        for f in &t.files {
            let local = b.join(&f.rel_path);
            assert!(local.is_file(), "{} missing", f.rel_path);
            if f.size_bytes > 0 {
                let size = std::fs::metadata(&local).unwrap().len();
                assert_eq!(size as i64, f.size_bytes, "{}", f.rel_path);
            }
        }
    }
    let in_bucket = parse_dump(&promtool_dump(&back, &[]), &[]);
    let samples: usize = in_bucket.values().map(Vec::len).sum();
    assert_eq!(
        samples,
        20 * 24,
        "two 2-minute blocks of 12 samples per series"
    );
    for (l, s) in &in_bucket {
        let i: i64 = l["i"].parse().unwrap();
        for &(t, v) in s {
            assert_eq!(v, ((t - start) / 10_000 * 100 + i) as f64);
        }
    }
}

fn compact_over_the_bucket(cloud: Cloud, test: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let Some(emu) = Emulator::start(cloud, &tmp.path().join("emulator"), test) else {
        return;
    };
    // 2 instances × 200 series over 10 h: five 2 h blocks.
    let src = promtool_blocks(tmp.path(), 2, 10);
    let reference = promtool_dump(&src, &[]);
    let staged = tmp.path().join("staged");
    let sources = upload(&src, &staged, &[("cluster", "eu1")]);
    assert_eq!(sources.len(), 5);
    let bucket = emu.bucket();
    push(&bucket, &staged);

    let cfg = tmp.path().join("objstore.yml");
    std::fs::write(&cfg, emu.objstore_yaml(Style::Thanos)).unwrap();
    let compact = |extra: &[&str]| {
        let out = gauntlet()
            .arg("compact")
            .arg("--objstore.config-file")
            .arg(&cfg)
            .arg("--data-dir")
            .arg(tmp.path().join("data"))
            .args(["--http-address", "127.0.0.1:0", "--consistency-delay", "0s"])
            .args(extra)
            .envs(emu.env(Style::Thanos))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    compact(&[]);
    let back = tmp.path().join("back1");
    mirror(&bucket, &back);
    let live: Vec<_> = block_dirs(&back)
        .into_iter()
        .filter(|d| !d.join("deletion-mark.json").exists())
        .collect();
    // The four older blocks fill an 8 h window; the newest waits.
    assert_eq!(live.len(), 2, "{live:?}");
    let metas: Vec<BlockMeta> = live.iter().map(|d| BlockMeta::read(d).unwrap()).collect();
    let merged = metas
        .iter()
        .find(|m| m.compaction.level == 2)
        .expect("a level-2 block");
    assert_eq!(merged.compaction.sources.len(), 4);
    assert_eq!(merged.max_time - merged.min_time, 8 * 3_600_000);
    let t = merged.thanos.clone().unwrap();
    assert_eq!(t.source, "compactor");
    assert_eq!(t.labels["cluster"], "eu1");
    // The sources are marked for deletion as Thanos marks them.
    for id in &sources[..4] {
        let mark: Value = serde_json::from_slice(
            &std::fs::read(back.join(id.to_string()).join("deletion-mark.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(mark["id"], id.to_string(), "{mark}");
        assert_eq!(mark["version"], 1, "{mark}");
    }
    // The live blocks hold exactly the sources' samples.
    let scratch = tmp.path().join("live");
    for d in &live {
        copy_dir(d, &scratch.join(d.file_name().unwrap()));
    }
    assert_same_dump("live blocks", &reference, &promtool_dump(&scratch, &[]));

    // Past the delete delay the marked sources are gone from the bucket.
    compact(&["--delete-delay", "0s"]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let left = rt.block_on(bucket.list("")).unwrap();
    for id in &sources[..4] {
        let id = id.to_string();
        assert!(
            !left.iter().any(|o| o.path.starts_with(&id)),
            "{id} still in the bucket"
        );
    }
    assert!(
        left.iter()
            .any(|o| o.path == format!("{}/meta.json", merged.ulid))
    );
    assert!(
        left.iter()
            .any(|o| o.path == format!("{}/meta.json", sources[4]))
    );
}

#[test]
fn gcs_store_serves_blocks_uploaded_through_the_api() {
    store_serves_blocks_uploaded_through_the_api(Cloud::Gcs, "gcs_store");
}

#[test]
fn azure_store_serves_blocks_uploaded_through_the_api() {
    store_serves_blocks_uploaded_through_the_api(Cloud::Azure, "azure_store");
}

#[test]
fn gcs_receive_ships_cut_blocks() {
    receive_ships_cut_blocks(Cloud::Gcs, "gcs_receive");
}

#[test]
fn azure_receive_ships_cut_blocks() {
    receive_ships_cut_blocks(Cloud::Azure, "azure_receive");
}

#[test]
fn gcs_compact_marks_then_deletes_sources() {
    compact_over_the_bucket(Cloud::Gcs, "gcs_compact");
}

#[test]
fn azure_compact_marks_then_deletes_sources() {
    compact_over_the_bucket(Cloud::Azure, "azure_compact");
}

/// Objstore files that cannot work are refused at start with the key named.
#[test]
fn bad_gcs_and_azure_configs_are_refused_with_reasons() {
    let tmp = tempfile::tempdir().unwrap();
    for (yaml, want) in [
        ("type: GCS\nconfig: {}\n", "bucket"),
        (
            "type: GCS\nconfig:\n  bucket: b\n  service_account: '{'\n",
            "service_account",
        ),
        ("type: AZURE\nconfig:\n  container: c\n", "storage_account"),
        ("type: AZURE\nconfig:\n  storage_account: a\n", "container"),
        (
            "type: AZURE\nconfig:\n  container: c\n  storage_connection_string: AccountName=a;AccountKey=a2V5\n  storage_account_key: a2V5\n",
            "cannot both",
        ),
    ] {
        let cfg = tmp.path().join("objstore.yml");
        std::fs::write(&cfg, yaml).unwrap();
        let out = gauntlet()
            .arg("compact")
            .arg("--objstore.config-file")
            .arg(&cfg)
            .arg("--data-dir")
            .arg(tmp.path().join("data"))
            .args(["--http-address", "127.0.0.1:0"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{yaml}");
        assert!(err.contains(want), "{yaml}: {err}");
        assert!(!err.contains("panicked"), "{yaml}: {err}");
    }
}
