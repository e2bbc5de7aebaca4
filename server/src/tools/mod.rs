//! `gauntlet tools …`: offline commands over local blocks, the counterparts of `promtool tsdb`,
//! and over the blocks of a bucket, the counterparts of `thanos tools bucket`.

mod block;
mod bucket;
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
    /// Commands over the blocks of an object-storage bucket, as Thanos's `tools bucket`.
    Bucket {
        #[command(subcommand)]
        cmd: bucket::BucketCmd,
    },
}

/// Runs one tool command.
pub fn run(tool: Tool) -> anyhow::Result<()> {
    match tool {
        Tool::Block { cmd } => block::run(cmd),
        Tool::Bucket { cmd } => bucket::run(cmd),
    }
}
