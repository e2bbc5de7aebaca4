//! The `gauntlet` binary: the command line, dispatching to the role or tool it names.

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use gauntlet::logging::{self, LogFormat, LogLevel};
use gauntlet::{all, compact, frontend, query, receive, rule, sidecar, store, tools};
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

// Each variant's first doc paragraph is its line in `gauntlet --help`: it names what the
// command runs (the tests below hold `all`'s and the roles' lines to that).
#[derive(Debug, Subcommand)]
enum Command {
    /// Every role in one process over a filesystem bucket (`./data`): receive (remote write
    /// with a WAL), store and query (the StoreAPI, Prometheus's HTTP API and the web UI) and
    /// compact (background compaction and downsampling).
    All(Box<all::AllArgs>),
    /// Querier: evaluates PromQL over StoreAPI endpoints, deduplicating replicas, and serves
    /// Prometheus's HTTP API, the web UI and the StoreAPI, as Thanos Query does.
    Query(query::cmd::QueryArgs),
    /// Query frontend: in front of a querier's HTTP API, splits range queries by interval,
    /// runs the parts in parallel, caches their results and retries failures, as Thanos
    /// Query Frontend does.
    QueryFrontend(Box<frontend::FrontendArgs>),
    /// Receiver: takes remote write into per-tenant heads with a WAL, serves them over the
    /// StoreAPI and ships the blocks it cuts to a bucket, as Thanos Receive does.
    Receive(Box<receive::ReceiveArgs>),
    /// Store gateway: serves the blocks of an object-storage bucket over the Thanos StoreAPI.
    Store(store::StoreArgs),
    /// Compactor: compacts, deduplicates, downsamples and applies retention to the blocks of
    /// a bucket, as Thanos's compactor does (one pass, or one every interval with `--wait`).
    Compact(Box<compact::CompactArgs>),
    /// Ruler: evaluates recording and alerting rules through query APIs, keeps their results
    /// in its own head served over the StoreAPI, and sends alerts to Alertmanager, as Thanos
    /// Rule does.
    Rule(Box<rule::cmd::RuleArgs>),
    /// Sidecar: beside a running Prometheus, serves its blocks and head over the StoreAPI
    /// and uploads the blocks it cuts to a bucket, as Thanos Sidecar does.
    Sidecar(Box<sidecar::SidecarArgs>),
    /// Offline tools over local blocks (as `promtool tsdb`), over a bucket's blocks (as
    /// `thanos tools bucket`) and over rule files (as `promtool check rules` and `test
    /// rules`); they serve nothing.
    Tools {
        #[command(subcommand)]
        tool: tools::Tool,
    },
}

fn main() -> std::process::ExitCode {
    gauntlet_engine::alloc::tune();
    // object_store's HTTP client (reqwest, built without a provider of its own) takes rustls's
    // process-wide crypto provider, and object_store gives no way to hand it one; every TLS
    // configuration Gauntlet builds itself names ring explicitly (`tls::provider`). Err: one
    // is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let matches = Cli::command().get_matches();
    let cli =
        Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut Cli::command()).exit());
    logging::init(cli.log_level, cli.log_format);
    // The process's memory budget, handed to the role (split among the roles of `all`).
    let budget = gauntlet::memory::start(cli.memory_limit);
    // The flags as given and defaulted, for `/api/v1/status/flags`.
    if let Some((name, sub)) = matches.subcommand()
        && let Some(cmd) = Cli::command().find_subcommand(name)
    {
        gauntlet::http::status::record_flags(cmd, sub);
    }
    let res = match cli.command {
        Command::All(args) => all::run(*args, budget),
        Command::Query(args) => query::cmd::run(args, budget),
        Command::QueryFrontend(args) => frontend::run(*args, budget),
        Command::Receive(args) => receive::run(*args, budget),
        Command::Store(args) => store::run(args, budget),
        Command::Compact(args) => compact::run(*args, budget),
        Command::Rule(args) => rule::cmd::run(*args, budget),
        Command::Sidecar(args) => sidecar::run(*args, budget),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-line description `--help` prints for `path` (`["tools", "bucket"]`).
    fn about(path: &[&str]) -> String {
        let mut cmd = Cli::command();
        for name in path {
            cmd = cmd
                .find_subcommand(name)
                .unwrap_or_else(|| panic!("no subcommand {name}"))
                .clone();
        }
        cmd.get_about()
            .map(|a| a.to_string().to_lowercase())
            .unwrap_or_default()
    }

    #[track_caller]
    fn assert_names(path: &[&str], words: &[&str]) {
        let line = about(path);
        for w in words {
            assert!(
                line.contains(w),
                "`gauntlet {} --help` says {line:?}, which does not name {w:?}",
                path.join(" ")
            );
        }
    }

    #[test]
    fn each_role_names_what_it_runs() {
        // `all` starts the receiver, serves the bucket and the heads, answers queries and
        // compacts in the background: a line naming only some of them misleads.
        assert_names(
            &["all"],
            &[
                "receive",
                "store",
                "query",
                "compact",
                "downsampl",
                "web ui",
            ],
        );
        assert_names(&["query"], &["storeapi", "promql", "http api", "dedup"]);
        assert_names(&["query-frontend"], &["split", "cache", "retr", "querier"]);
        assert_names(&["receive"], &["remote write", "wal", "storeapi", "bucket"]);
        assert_names(&["store"], &["bucket", "storeapi"]);
        assert_names(&["sidecar"], &["prometheus", "storeapi", "bucket"]);
        assert_names(&["compact"], &["compact", "downsample", "retention"]);
        assert_names(&["tools"], &["block", "bucket"]);
        assert_names(&["tools", "block"], &["block"]);
        assert_names(&["tools", "bucket"], &["bucket"]);
    }

    #[test]
    fn every_command_has_a_first_line() {
        fn walk(cmd: &clap::Command, path: &str) {
            for sub in cmd.get_subcommands() {
                let path = format!("{path} {}", sub.get_name());
                let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
                assert!(!about.trim().is_empty(), "`{path}` has no help line");
                walk(sub, &path);
            }
        }
        let cli = Cli::command();
        cli.clone().debug_assert();
        walk(&cli, "gauntlet");
    }
}
