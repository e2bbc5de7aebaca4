//! `gauntlet tools rules check|test`: rule files checked, and rule unit tests run, as
//! `promtool check rules` and `promtool test rules` do, with their output and exit codes.

use std::io::Write as _;
use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};
use gauntlet_promql::Engine;
use gauntlet_promql::rules::check::{self, Report, Stream};
use gauntlet_promql::rules::file::ParseOptions;
use gauntlet_promql::rules::unittest;

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
        RulesCmd::Test { files } => {
            let engine = Engine::default();
            let mut failed = false;
            for f in &files {
                let errs = unittest::run_file(
                    f,
                    &engine,
                    &PrometheusTemplates::default(),
                    Some(&parse_check),
                );
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
            }
            i32::from(failed)
        }
    };
    if code != 0 {
        let _ = std::io::stdout().flush();
        std::process::exit(code);
    }
    Ok(())
}

fn print(report: &Report) {
    for (stream, line) in &report.lines {
        match stream {
            Stream::Stdout => println!("{line}"),
            Stream::Stderr => eprintln!("{line}"),
        }
    }
}
