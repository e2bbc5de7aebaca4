//! `gauntlet tools rules check|test`: rule files checked, and rule unit tests run, as
//! `promtool check rules` and `promtool test rules` do, with their output and exit codes.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context as _;

use clap::{Subcommand, ValueEnum};
use gauntlet_promql::Engine;
use gauntlet_promql::rules::check::{self, Report, Stream};
use gauntlet_promql::rules::file::ParseOptions;
use gauntlet_promql::rules::unittest;
use regex::Regex;

use gauntlet_promql::rules::expand::{PrometheusTemplates, parse_check};

/// promtool's exit code when a lint finding is fatal.
const LINT_EXIT_CODE: i32 = 3;

/// A rules command.
#[derive(Debug, Subcommand)]
pub enum RulesCmd {
    /// Checks rule files as `promtool check rules` does.
    Check {
        /// Rule files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Lints to run: `duplicate-rules`, `all` or `none`.
        #[arg(long, value_enum, default_value_t = Lint::DuplicateRules)]
        lint: Lint,
        /// Fail (exit 3) when a lint finds something.
        #[arg(long = "lint-fatal")]
        lint_fatal: bool,
        /// Ignore fields the rule-file format does not have instead of refusing them.
        #[arg(long = "ignore-unknown-fields")]
        ignore_unknown_fields: bool,
    },
    /// Runs rule unit tests (promtool's format) as `promtool test rules` does.
    Test {
        /// Unit-test files to run.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Run only the test groups whose name matches this regular expression (unanchored;
        /// repeatable, the expressions joined with `|`).
        #[arg(long = "run")]
        run: Vec<String>,
        /// Write the results as JUnit XML to this file.
        #[arg(long = "junit")]
        junit: Option<PathBuf>,
    },
}

/// Which lints `check` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Lint {
    /// Rules recording the same series.
    DuplicateRules,
    /// Every lint.
    All,
    /// None.
    None,
}

/// Runs one rules command; exits with promtool's status when it fails.
pub fn run(cmd: RulesCmd) -> anyhow::Result<()> {
    let code = match cmd {
        RulesCmd::Check {
            files,
            lint,
            lint_fatal,
            ignore_unknown_fields,
        } => {
            let mut report = Report::default();
            let opts = ParseOptions {
                ignore_unknown_fields,
                check_template: Some(&parse_check),
            };
            for f in &files {
                let text =
                    std::fs::read_to_string(f).map_err(|e| format!("open {}: {e}", f.display()));
                let name = f.display().to_string();
                check::check_file(
                    &mut report,
                    &name,
                    text.as_deref().map_err(Clone::clone),
                    opts,
                    lint != Lint::None,
                );
            }
            print(&report);
            if report.failed {
                1
            } else if report.linted && lint_fatal {
                LINT_EXIT_CODE
            } else {
                0
            }
        }
        RulesCmd::Test { files, run, junit } => test(&files, &run, junit.as_deref())?,
    };
    if code != 0 {
        let _ = std::io::stdout().flush();
        std::process::exit(code);
    }
    Ok(())
}

/// Runs the unit-test `files` (only the groups `run` selects) and prints promtool's report;
/// the exit code: 1 when any failed.
fn test(files: &[PathBuf], run: &[String], junit: Option<&Path>) -> anyhow::Result<i32> {
    let selected = if run.is_empty() {
        None
    } else {
        let joined = run.join("|");
        Some(Regex::new(&joined).with_context(|| format!("--run {joined:?}"))?)
    };
    let pick = |name: &str| selected.as_ref().is_none_or(|r| r.is_match(name));
    let engine = Engine::default();
    let mut reports = Vec::with_capacity(files.len());
    let mut failed = false;
    for f in files {
        let report = unittest::run_file(
            f,
            &engine,
            &PrometheusTemplates::default(),
            Some(&parse_check),
            &pick,
        );
        let errs = report.errors();
        if errs.is_empty() {
            println!("  SUCCESS");
        } else {
            eprintln!("  FAILED:");
            for e in errs {
                eprintln!("{e}");
                println!();
            }
            failed = true;
        }
        println!();
        reports.push((f.display().to_string(), report));
    }
    if let Some(path) = junit {
        let stamp = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        let stamp = stamp.trim_end_matches('Z');
        std::fs::write(path, unittest::junit::report(&reports, stamp))
            .with_context(|| format!("write JUnit XML to {}", path.display()))?;
    }
    Ok(i32::from(failed))
}

fn print(report: &Report) {
    for (stream, line) in &report.lines {
        match stream {
            Stream::Stdout => println!("{line}"),
            Stream::Stderr => eprintln!("{line}"),
        }
    }
}
