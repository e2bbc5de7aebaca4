//! Parses each line of standard input as a query and prints the outcome, one line each:
//! `OK: <the query as printed back>` or `ERR: <the error>`. With `--prometheus-3.5` the
//! features Prometheus 3.5 gates are enabled as `--enable-feature=promql-experimental-functions,
//! promql-duration-expr` enables them; otherwise all are.

use std::io::BufRead as _;

use gauntlet_promql::parser::{Options, parse};

fn main() {
    let v35 = std::env::args().any(|a| a == "--prometheus-3.5");
    let opts = if v35 {
        Options {
            experimental_functions: true,
            duration_expr: true,
            ..Options::default()
        }
    } else {
        Options::all_features()
    };
    for line in std::io::stdin().lock().lines() {
        let Ok(q) = line else { break };
        let q = q.replace("\\n", "\n");
        match parse(&q, &opts) {
            Ok(e) => println!("{q}\t=> OK: {e}"),
            Err(e) => println!("{q}\t=> ERR: invalid parameter \"query\": {e}"),
        }
    }
}
