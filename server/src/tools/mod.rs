//! `gauntlet tools …`: offline commands over local blocks, the counterparts of `promtool tsdb`,
//! over the blocks of a bucket, the counterparts of `thanos tools bucket`, and over rule files,
//! the counterparts of `promtool check rules` and `test rules`.

mod block;
mod bucket;
mod downsample;
mod label_filter;
mod rules;
mod sample;

use clap::Subcommand;

/// A tool to run.
#[derive(Debug, Subcommand)]
pub enum Tool {
    /// Commands over TSDB blocks in a local directory.
    Block {
        /// The block command to run.
        #[command(subcommand)]
        cmd: block::BlockCmd,
    },
    /// Commands over the blocks of an object-storage bucket, as Thanos's `tools bucket`.
    Bucket {
        /// The bucket command to run.
        #[command(subcommand)]
        cmd: bucket::BucketCmd,
    },
    /// Rule files checked and rule unit tests run, as promtool's `check rules` and
    /// `test rules`.
    Rules {
        /// The rules command to run.
        #[command(subcommand)]
        cmd: rules::RulesCmd,
    },
}

/// Runs one tool command.
pub fn run(tool: Tool) -> anyhow::Result<()> {
    match tool {
        Tool::Block { cmd } => block::run(cmd),
        Tool::Bucket { cmd } => bucket::run(cmd),
        Tool::Rules { cmd } => rules::run(cmd),
    }
}

/// A progress bar of `len` steps on stderr (a spinner when `len` is 0), hidden when stderr is
/// no terminal, so scripts and logs see only the results.
pub(crate) fn progress_bar(len: u64, what: &'static str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let (bar, template) = if len == 0 {
        (
            indicatif::ProgressBar::new_spinner(),
            "{prefix} {spinner} {elapsed} {wide_msg}",
        )
    } else {
        (
            indicatif::ProgressBar::new(len),
            "{prefix} [{bar:30}] {pos}/{len} {elapsed} {wide_msg}",
        )
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(what);
    if len == 0 {
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
    }
    bar
}
