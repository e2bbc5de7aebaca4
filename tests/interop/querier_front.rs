//! Thanos's querier in front of Gauntlet: `thanos query --endpoint=<gauntlet store>` answers
//! as `thanos query --endpoint=<thanos store>` does over the same bucket, with and without
//! deduplication of an HA pair, and with Gauntlet's and Thanos's stores mixed behind one
//! querier.

use crate::common::GauntletServer;
use crate::common::peers::{thanos_query, thanos_store};
use crate::fixture::{assert_same, ha_bucket, query_paths};

#[test]
fn thanos_query_over_a_gauntlet_store_answers_as_over_thanos_store() {
    let tmp = tempfile::tempdir().unwrap();
    let b = ha_bucket(tmp.path());
    assert!(b.dir.join("").is_dir());
    let upstream = thanos_store(&b.objstore, &tmp.path().join("thanos-store"), &[]);
    let ours = GauntletServer::start(
        &[
            "store",
            &format!("--objstore.config-file={}", b.objstore.display()),
            &format!("--data-dir={}", tmp.path().join("gauntlet-store").display()),
        ],
        "/-/ready",
    );
    let ours_addr = format!("127.0.0.1:{}", ours.grpc_port);
    let paths = query_paths(b.start_ms, b.end_ms);

    // Deduplicated along `replica`, and each replica apart.
    let dedup = ["--query.replica-label=replica"];
    let want = thanos_query(&[upstream.grpc_addr()], &dedup);
    let got = thanos_query(std::slice::from_ref(&ours_addr), &dedup);
    let answered = assert_same("dedup", &want, &got, &paths);
    assert!(
        answered >= paths.len() - 2,
        "too few answers held data: {answered}"
    );
    let raw: Vec<String> = paths.iter().map(|p| format!("{p}&dedup=false")).collect();
    assert_same("no dedup", &want, &got, &raw);

    // Gauntlet's store and Thanos's, each serving the whole bucket: one querier deduplicates
    // the two stores' series as it does two of its own.
    let mixed = thanos_query(&[upstream.grpc_addr(), ours_addr], &dedup);
    assert_same("mixed stores", &want, &mixed, &paths);
}
