//! Conformance: Prometheus's own promqltest scripts run against Gauntlet's PromQL engine.

use std::path::Path;

use gauntlet_promql::promqltest::{ScriptReport, run_script};
use gauntlet_promql::{Engine, EngineOptions};

fn run_dir(dir: &str) -> (usize, Vec<String>, usize) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "test"))
        .collect();
    files.sort();
    // Prometheus's test engine runs with delayed name removal and every gated syntax; its
    // scripts expect them.
    let engine = Engine::new(EngineOptions {
        delayed_name_removal: true,
        newer_syntax: true,
        ..EngineOptions::default()
    });
    let (mut passed, mut failed, mut skipped) = (0, Vec::new(), 0);
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read script");
        let name = f
            .file_name()
            .expect("file name")
            .to_string_lossy()
            .to_string();
        let r: ScriptReport = run_script(&name, &text, &engine);
        println!(
            "{name}: {} passed, {} failed, {} skipped",
            r.passed,
            r.failed.len(),
            r.skipped
        );
        passed += r.passed;
        skipped += r.skipped;
        failed.extend(r.failed);
    }
    (passed, failed, skipped)
}

#[test]
fn prometheus_v3_5_3_scripts_pass() {
    let (passed, failed, skipped) = run_dir("testdata/promql/v3.5.3");
    if let Ok(p) = std::env::var("PROMQLTEST_FAILS") {
        std::fs::write(p, failed.join("\n")).expect("write failures");
    }
    for f in &failed {
        println!("FAIL {f}");
    }
    println!(
        "promqltest v3.5.3: {passed} passed, {} failed, {skipped} skipped",
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "{} promqltest evals failed",
        failed.len()
    );
}

/// Gauntlet's own scripts (answers taken from Prometheus 3.5.3) must pass as well.
#[test]
fn gauntlet_scripts_pass() {
    let (passed, failed, _) = run_dir("testdata/promql/gauntlet");
    for f in &failed {
        println!("FAIL {f}");
    }
    assert!(
        passed > 0 && failed.is_empty(),
        "{} evals failed",
        failed.len()
    );
}

/// Not gating yet: prints the figure for the newer script set.
#[test]
fn prometheus_v3_14_0_scripts_figure() {
    let (passed, failed, skipped) = run_dir("testdata/promql/v3.14.0");
    for f in &failed {
        println!("FAIL {f}");
    }
    println!(
        "promqltest v3.14.0: {passed} passed, {} failed, {skipped} skipped",
        failed.len()
    );
}
