//! Conformance: Prometheus's own promqltest scripts run against Gauntlet's PromQL engine.

use std::path::Path;

use gauntlet_promql::promqltest::{ScriptReport, run_script};
use gauntlet_promql::{Compat, Engine, EngineOptions, Features};

fn run_dir(dir: &str, compat: Compat) -> ScriptReport {
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
        features: Features::all(),
        compat,
        ..EngineOptions::default()
    });
    let mut all = ScriptReport::default();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read script");
        let name = f
            .file_name()
            .expect("file name")
            .to_string_lossy()
            .to_string();
        let r: ScriptReport = run_script(&name, &text, &engine);
        println!(
            "{name}: {} passed, {} failed ({} over experimental features), {} skipped",
            r.passed,
            r.failed.len(),
            r.experimental_failed.len(),
            r.skipped
        );
        all.passed += r.passed;
        all.skipped += r.skipped;
        all.failed.extend(r.failed);
        all.experimental_failed.extend(r.experimental_failed);
    }
    all
}

#[test]
fn prometheus_v3_5_3_scripts_pass() {
    let r = run_dir("testdata/promql/v3.5.3", Compat::Prometheus3_5);
    if let Ok(p) = std::env::var("PROMQLTEST_FAILS") {
        std::fs::write(p, r.failed.join("\n")).expect("write failures");
    }
    for f in &r.failed {
        println!("FAIL {f}");
    }
    println!(
        "promqltest v3.5.3: {} passed, {} failed, {} skipped",
        r.passed,
        r.failed.len(),
        r.skipped
    );
    assert!(
        r.failed.is_empty(),
        "{} promqltest evals failed",
        r.failed.len()
    );
}

/// Gauntlet's own scripts (answers taken from Prometheus 3.5.3) must pass as well.
#[test]
fn gauntlet_scripts_pass() {
    let r = run_dir("testdata/promql/gauntlet", Compat::Prometheus3_5);
    for f in &r.failed {
        println!("FAIL {f}");
    }
    assert!(
        r.passed > 0 && r.failed.is_empty(),
        "{} evals failed",
        r.failed.len()
    );
}

/// The v3.14.0 scripts with 3.14's answers: every eval passes but those over a feature
/// Prometheus 3.14 marks experimental, which are listed and counted.
#[test]
fn prometheus_v3_14_0_scripts_pass_but_experimental_features() {
    let r = run_dir("testdata/promql/v3.14.0", Compat::Prometheus3_14);
    if let Ok(p) = std::env::var("PROMQLTEST_FAILS") {
        std::fs::write(p, r.failed.join("\n")).expect("write failures");
    }
    let gating: Vec<&String> = r
        .failed
        .iter()
        .filter(|f| {
            !r.experimental_failed
                .iter()
                .any(|e| e.starts_with(f.as_str()))
        })
        .collect();
    for f in &r.experimental_failed {
        println!("EXPERIMENTAL FAIL {f}");
    }
    for f in &gating {
        println!("FAIL {f}");
    }
    println!(
        "promqltest v3.14.0: {} passed, {} failed, of which {} over experimental features, {} skipped",
        r.passed,
        r.failed.len(),
        r.experimental_failed.len(),
        r.skipped
    );
    assert!(
        gating.is_empty(),
        "{} promqltest evals not over experimental features failed",
        gating.len()
    );
}
