//! `readme-figures`: renders the README's headline figures from the current tables of the
//! results file, and writes them between the README's markers or checks that they are there.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use gauntlet_bench::runner::readme_figures::{self, BEGIN, END};

/// The `readme-figures` flags.
#[derive(Args)]
pub(crate) struct ReadmeFiguresCmd {
    /// The README whose figures block is written or checked.
    #[arg(long, default_value = "README.md")]
    readme: PathBuf,
    /// The results file whose current tables the figures come from.
    #[arg(long, default_value = "perf/RESULTS.md")]
    results: PathBuf,
    /// Replace the README's figures block with the rendered one.
    #[arg(long, conflicts_with = "check")]
    write: bool,
    /// Exit non-zero when the README's figures block differs from the rendered one.
    #[arg(long)]
    check: bool,
}

/// Renders the figures; prints them, writes them into the README or checks the README's.
pub(crate) fn readme_figures(cmd: &ReadmeFiguresCmd) -> anyhow::Result<()> {
    let results = std::fs::read_to_string(&cmd.results)
        .with_context(|| format!("reading {}", cmd.results.display()))?;
    let link = relative_link(&cmd.readme, &cmd.results);
    let rendered = readme_figures::render(&results, &link)
        .with_context(|| format!("rendering from {}", cmd.results.display()))?;
    if !cmd.write && !cmd.check {
        println!("{BEGIN}{rendered}{END}");
        return Ok(());
    }
    let readme = std::fs::read_to_string(&cmd.readme)
        .with_context(|| format!("reading {}", cmd.readme.display()))?;
    let current =
        readme_figures::block(&readme).with_context(|| cmd.readme.display().to_string())?;
    if current == rendered {
        eprintln!("{}: figures up to date", cmd.readme.display());
        return Ok(());
    }
    if cmd.check {
        anyhow::bail!(
            "{}'s figures block differs from what {} renders; run `cargo run -p gauntlet-bench -- \
             readme-figures --write` and commit the result\n{}",
            cmd.readme.display(),
            cmd.results.display(),
            difference(current, &rendered)
        );
    }
    let out = readme_figures::replace(&readme, &rendered)?;
    std::fs::write(&cmd.readme, out)
        .with_context(|| format!("writing {}", cmd.readme.display()))?;
    eprintln!(
        "{}: figures written from {}",
        cmd.readme.display(),
        cmd.results.display()
    );
    Ok(())
}

/// The lines only one side has, `-` for the README's and `+` for the rendered block's.
fn difference(readme: &str, rendered: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (readme.lines().collect(), rendered.lines().collect());
    let mut out = String::new();
    for l in a.iter().filter(|l| !b.contains(l)) {
        out.push_str(&format!("- {l}\n"));
    }
    for l in b.iter().filter(|l| !a.contains(l)) {
        out.push_str(&format!("+ {l}\n"));
    }
    out
}

/// How the README at `readme` links to the results file at `results`: the path from the
/// README's directory when one is under the other, else `results` as given.
fn relative_link(readme: &Path, results: &Path) -> String {
    let dir = |p: &Path| {
        std::path::absolute(p)
            .ok()
            .and_then(|a| a.parent().map(Path::to_path_buf))
    };
    let file = std::path::absolute(results).ok();
    match (dir(readme), file) {
        (Some(d), Some(f)) => f.strip_prefix(&d).map_or_else(
            |_| results.display().to_string(),
            |rel| rel.display().to_string(),
        ),
        _ => results.display().to_string(),
    }
}
