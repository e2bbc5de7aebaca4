//! The `gauntlet` binary: the command line, dispatching to the role or tool it names.

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use gauntlet::logging::{self, LogFormat, LogLevel};
use gauntlet::{all, compact, query, receive, store, tools};
use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// Gauntlet: a thread-per-core time-series store that reads and writes what Prometheus and
/// Thanos do.
#[derive(Debug, Parser)]
#[command(name = "gauntlet", version, about)]
struct Cli {
    /// The least severe level logged (`RUST_LOG`, when set, filters instead).
    #[arg(long = "log.level", value_enum, default_value = "info", global = true)]
    log_level: LogLevel,
    /// How each log line is written.
    #[arg(
        long = "log.format",
        value_enum,
        default_value = "logfmt",
        global = true
    )]
    log_format: LogFormat,
    /// The process's memory budget (`4GiB`, `512MB`; 0: none): while its resident memory is
    /// over it, new queries, reads and writes are refused (503, `ResourceExhausted`) rather
    /// than taken on.
    #[arg(
        long = "memory.limit",
        default_value = "0",
        global = true,
        value_parser = gauntlet::store::parse_bytes
    )]
    memory_limit: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Store and query in one process over a filesystem bucket (`./data`).
    All(all::AllArgs),
    /// A querier over StoreAPI endpoints, with replica dedup, serving Prometheus's HTTP API.
    Query(query::cmd::QueryArgs),
    /// Receive: remote write into per-tenant heads with a WAL, served over the StoreAPI and
    /// cut into blocks shipped to the bucket.
    Receive(Box<receive::ReceiveArgs>),
    /// Store gateway: serve the blocks of an object-storage bucket over the Thanos StoreAPI.
    Store(store::StoreArgs),
    /// Compactor: compacts, deduplicates, downsamples and applies retention to the blocks of
    /// a bucket, as Thanos's compactor does.
    Compact(Box<compact::CompactArgs>),
    /// Offline tools over blocks and buckets.
    Tools {
        #[command(subcommand)]
        tool: tools::Tool,
    },
}

fn main() -> std::process::ExitCode {
    gauntlet_engine::alloc::tune();
    let matches = Cli::command().get_matches();
    let cli =
        Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut Cli::command()).exit());
    logging::init(cli.log_level, cli.log_format);
    gauntlet::memory::init(cli.memory_limit);
    // The flags as given and defaulted, for `/api/v1/status/flags`.
    if let Some((name, sub)) = matches.subcommand()
        && let Some(cmd) = Cli::command().find_subcommand(name)
    {
        gauntlet::http::status::record_flags(cmd, sub);
    }
    let res = match cli.command {
        Command::All(args) => all::run(args),
        Command::Query(args) => query::cmd::run(args),
        Command::Receive(args) => receive::run(*args),
        Command::Store(args) => store::run(args),
        Command::Compact(args) => compact::run(*args),
        Command::Tools { tool } => tools::run(tool),
    };
    match res {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
