//! `gauntlet tools …`: offline commands over local blocks, the counterparts of `promtool tsdb`.

mod block;
mod downsample;
mod label_filter;
mod sample;

use clap::Subcommand;

/// A tool to run.
#[derive(Debug, Subcommand)]
pub enum Tool {
    /// Commands over TSDB blocks in a local directory.
    Block {
        #[command(subcommand)]
        cmd: block::BlockCmd,
    },
}

/// Runs one tool command.
pub fn run(tool: Tool) -> anyhow::Result<()> {
    match tool {
        Tool::Block { cmd } => block::run(cmd),
    }
}
