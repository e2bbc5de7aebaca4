//! The repository's performance records agree with each other: the README's headline figures
//! are what `perf/RESULTS.md`'s current tables render (`gauntlet-bench readme-figures --check`
//! in test form), every link from `perf/RESULTS.md` into `perf/history/` lands on a heading, and
//! every scenario's current table is readable.

use std::path::{Path, PathBuf};

use gauntlet_bench::runner::current;
use gauntlet_bench::runner::readme_figures;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(rel: &str) -> String {
    let path = repo().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_readme_figures_are_rendered_from_the_current_tables() {
    let rendered = readme_figures::render(&read("perf/RESULTS.md"), "perf/RESULTS.md")
        .unwrap_or_else(|e| panic!("perf/RESULTS.md: {e}"));
    let readme = read("README.md");
    let block = readme_figures::block(&readme).unwrap_or_else(|e| panic!("README.md: {e}"));
    assert!(
        block == rendered,
        "README.md's figures block differs from what perf/RESULTS.md renders; run `cargo run -p \
         gauntlet-bench -- readme-figures --write`.\n--- README.md\n{block}\n--- rendered\n{rendered}"
    );
}

#[test]
fn the_headline_scenarios_have_current_rows() {
    let results = read("perf/RESULTS.md");
    for scenario in ["query", "series", "ingest", "compact", "histogram"] {
        let rows = current::rows(&results, scenario);
        assert!(!rows.is_empty(), "no current table of `run {scenario}`");
        for r in &rows {
            assert!(
                r.date_text().starts_with("20") && !r.commit.is_empty(),
                "`run {scenario}`: {r:?}"
            );
        }
    }
}

#[test]
fn links_into_the_history_land_on_a_heading() {
    let results = read("perf/RESULTS.md");
    let mut checked = 0;
    for (file, anchor) in history_links(&results) {
        let text = read(&format!("perf/{file}"));
        assert!(
            current::anchors(&text).contains(&anchor.to_string()),
            "perf/RESULTS.md links to {file}#{anchor}, which has no such heading"
        );
        checked += 1;
    }
    assert!(checked > 0, "perf/RESULTS.md has no link into history/");
}

/// The `(history/…md#anchor)` link targets of the Markdown `text`: file and anchor.
fn history_links(text: &str) -> Vec<(&str, &str)> {
    text.match_indices("](history/")
        .filter_map(|(i, _)| {
            let target = &text[i + 2..];
            let target = &target[..target.find(')')?];
            target.split_once('#')
        })
        .collect()
}

#[test]
fn links_are_found_with_their_anchors() {
    let text = "a [x](history/2026-11.md#one) b [y](../other.md#no) [z](history/2026-12.md#two-1)";
    assert_eq!(
        history_links(text),
        [
            ("history/2026-11.md", "one"),
            ("history/2026-12.md", "two-1")
        ]
    );
}
