//! A configuration Gauntlet cannot use stops the process before it serves anything: it exits
//! non-zero, never panics, and the error names the flag, and for a file the file and the line
//! (with the column where the parser knows it).

use std::path::Path;
use std::time::Duration;

use crate::common::*;

/// Runs `gauntlet args…` (on loopback ports nobody uses, in `dir`) and returns its stderr,
/// asserting it exited non-zero within 30 s without a panic.
fn refused(dir: &Path, args: &[&str]) -> String {
    let [http, grpc, rw] = free_ports();
    let mut cmd = gauntlet();
    cmd.current_dir(dir).args(args);
    // Roles bind their listeners only after their configuration is read; the ports are there
    // so that a configuration taken by mistake does not reach for the default ones.
    let role = args[0];
    if matches!(role, "all" | "store" | "query" | "receive") {
        cmd.arg(format!("--http-address=127.0.0.1:{http}"))
            .arg(format!("--grpc-address=127.0.0.1:{grpc}"));
    }
    if matches!(role, "all" | "receive") {
        cmd.arg(format!("--remote-write.address=127.0.0.1:{rw}"));
    }
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("gauntlet {args:?} still runs after 30 s: the configuration was taken");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "gauntlet {args:?} exited 0:\n{err}");
    assert!(
        !err.contains("panicked"),
        "gauntlet {args:?} panicked:\n{err}"
    );
    err
}

fn assert_names(err: &str, parts: &[&str]) {
    for p in parts {
        assert!(err.contains(p), "{p:?} missing from:\n{err}");
    }
}

#[test]
fn configuration_errors_name_the_flag_and_the_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };

    // Objstore YAML: a syntax error on line 4, an unknown type on line 1.
    let broken = write(
        "bucket.yml",
        "type: FILESYSTEM\nconfig:\n  directory: ./b\n  x: [\n",
    );
    let err = refused(dir, &["store", &format!("--objstore.config-file={broken}")]);
    assert_names(&err, &["--objstore.config-file", &broken, "line 5"]);
    let unknown = write("bucket2.yml", "type: FS\nconfig:\n  directory: ./b\n");
    let err = refused(
        dir,
        &["compact", &format!("--objstore.config-file={unknown}")],
    );
    assert_names(&err, &["--objstore.config-file", &unknown, "line 1", "FS"]);
    let err = refused(dir, &["store", "--objstore.config=type: [S3"]);
    assert_names(&err, &["--objstore.config", "line 1"]);
    let missing = dir.join("none.yml").display().to_string();
    let err = refused(
        dir,
        &["store", &format!("--objstore.config-file={missing}")],
    );
    assert_names(&err, &["--objstore.config-file", &missing]);

    // The querier's endpoint files and addresses.
    let sd = write("stores.yml", "- targets: ['a:1']\n- targets: [b:2\n");
    let err = refused(dir, &["query", &format!("--endpoint.sd-files={sd}")]);
    assert_names(&err, &["--endpoint.sd-files", &sd, "line 3"]);
    let sd = write(
        "stores.json",
        "[{\"targets\": [\"a:1\"]},\n {\"targetz\": []}]",
    );
    let err = refused(dir, &["query", &format!("--endpoint.sd-files={sd}")]);
    assert_names(&err, &["--endpoint.sd-files", &sd, "line 2", "targetz"]);
    let sd = write("stores.txt", "a:1\nb:two\n");
    let err = refused(dir, &["query", &format!("--endpoint.sd-files={sd}")]);
    assert_names(&err, &["--endpoint.sd-files", &sd, "line 2", "b:two"]);
    let err = refused(dir, &["query", "--endpoint=store-without-port"]);
    assert_names(&err, &["--endpoint", "store-without-port"]);

    // The receiver's hashrings, as a file and inline.
    let rings = write(
        "hashrings.json",
        "[{\"endpoints\": [\"a:1\"]},\n {\"endpoints\": 5}]",
    );
    let tsdb = format!("--tsdb.path={}", dir.join("recv").display());
    let err = refused(
        dir,
        &[
            "receive",
            &tsdb,
            &format!("--receive.hashrings-file={rings}"),
        ],
    );
    assert_names(&err, &["--receive.hashrings-file", &rings, "line 2"]);
    assert_eq!(err.matches("not parsable").count(), 1, "said once:\n{err}");
    let err = refused(dir, &["receive", &tsdb, "--receive.hashrings=[{"]);
    assert_names(&err, &["--receive.hashrings", "line 1"]);

    // Values the flags' own parsers refuse, and values checked against each other.
    let err = refused(dir, &["query", "--endpoint=a:1", "--query.timeout=soon"]);
    assert_names(&err, &["--query.timeout", "soon"]);
    let err = refused(
        dir,
        &[
            "compact",
            "--objstore.config=type: FILESYSTEM\nconfig:\n  directory: ./b\n",
            "--deduplication.func=fastest",
        ],
    );
    assert_names(&err, &["--deduplication.func", "fastest"]);
    let data = format!("--data-dir={}", dir.join("data").display());
    let err = refused(dir, &["all", &data, "--compact.cpu-share=2"]);
    assert_names(&err, &["--compact.cpu-share"]);
    let err = refused(dir, &["receive", &tsdb, "--receive.replication-factor=0"]);
    assert_names(&err, &["--receive.replication-factor"]);
    let err = refused(dir, &["store", "--index-cache-size=lots"]);
    assert_names(&err, &["--index-cache-size", "lots"]);
}
