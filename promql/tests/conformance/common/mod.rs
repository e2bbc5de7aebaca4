//! What the parser's tests share: the query scripts' queries, a seeded generator of queries
//! from the grammar, and a real Prometheus 3 to compare against.

#![allow(dead_code)]

pub mod generate;
pub mod prometheus;

use std::path::PathBuf;

use gauntlet_promql::parser::{DurationExpr, Expr, Offset, VectorSelector};

/// `e` as the printer's round trip must keep it: spans cleared, matchers in the printer's
/// (sorted) order, a range or step that is one literal as its value alone (`[100]` prints as
/// `[1m40s]`). Compared by its `Debug` text, so NaN equals NaN.
pub fn canonical(e: &Expr) -> String {
    // A duration literal of minus zero (`-0m`) prints as `0s`, as in Prometheus, whose
    // printing of it reads back as plus zero too.
    fn zero(d: &mut DurationExpr) {
        match d {
            DurationExpr::Number(n) if n.duration && n.value == 0.0 => n.value = 0.0,
            DurationExpr::Unary { expr, .. } | DurationExpr::Paren { expr, .. } => zero(expr),
            DurationExpr::Binary { lhs, rhs, .. } => {
                zero(lhs);
                zero(rhs);
            }
            DurationExpr::MinMax { args, .. } => {
                zero(&mut args.0);
                zero(&mut args.1);
            }
            _ => {}
        }
    }
    fn offset(o: &mut Offset) {
        if let Offset::Expr(d) = o {
            zero(d);
        }
    }
    fn literal(d: &mut DurationExpr) {
        zero(d);
        if let DurationExpr::Number(n) = d {
            n.duration = false;
        }
    }
    fn selector(v: &mut VectorSelector) {
        v.matchers.sort_by(|a, b| {
            (&a.name, a.op.as_str(), &a.value).cmp(&(&b.name, b.op.as_str(), &b.value))
        });
        if let Offset::Expr(DurationExpr::Number(_)) = v.offset {
            v.offset = Offset::None;
        }
        offset(&mut v.offset);
    }
    fn walk(e: &mut Expr) {
        match e {
            Expr::Vector(v) => selector(v),
            Expr::Matrix(m) => {
                selector(&mut m.selector);
                literal(&mut m.range);
            }
            Expr::Subquery(s) => {
                walk(&mut s.expr);
                offset(&mut s.offset);
                literal(&mut s.range);
                if let Some(st) = &mut s.step {
                    literal(st);
                }
            }
            Expr::Paren(p) => walk(&mut p.expr),
            Expr::Unary(u) => walk(&mut u.expr),
            Expr::Binary(b) => {
                walk(&mut b.lhs);
                walk(&mut b.rhs);
            }
            Expr::Call(c) => c.args.iter_mut().for_each(walk),
            // Minus zero as a duration literal, as in `zero`.
            Expr::Number(n) if n.duration && n.value == 0.0 => n.value = 0.0,
            Expr::Aggregate(a) => {
                walk(&mut a.expr);
                if let Some(p) = &mut a.param {
                    walk(p);
                }
            }
            _ => {}
        }
    }
    let mut e = e.clone();
    e.clear_spans();
    walk(&mut e);
    format!("{e:?}")
}

/// The repository's root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate sits in the repository")
        .to_path_buf()
}

/// One `eval` of a promqltest script: its query, and whether the script expects it to fail.
#[derive(Debug)]
pub struct ScriptQuery {
    pub file: String,
    pub line: usize,
    pub query: String,
    pub expect_fail: bool,
}

/// Every `eval` query of the `.test` scripts in `dir`.
pub fn script_queries(dir: &str) -> Vec<ScriptQuery> {
    let dir = repo_root().join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "test"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            let t = l.trim_start();
            let Some((cmd, rest)) = t.split_once(' ') else {
                continue;
            };
            if !cmd.starts_with("eval") {
                continue;
            }
            let words: Vec<&str> = rest.split_whitespace().collect();
            let skip = match words.first() {
                Some(&"instant") => 3,
                Some(&"range") => 7,
                _ => continue,
            };
            // The query is the rest of the line after the time words.
            let mut q = rest;
            for _ in 0..skip {
                q = q.trim_start();
                q = &q[q.find(char::is_whitespace).unwrap_or(q.len())..];
            }
            let mut expect_fail = cmd == "eval_fail";
            for next in &lines[i + 1..] {
                if next.trim().is_empty() || !next.starts_with([' ', '\t']) {
                    break;
                }
                if next.trim_start().starts_with("expect fail") {
                    expect_fail = true;
                }
            }
            out.push(ScriptQuery {
                file: f.file_name().unwrap().to_string_lossy().into_owned(),
                line: i + 1,
                query: q.trim().to_string(),
                expect_fail,
            });
        }
    }
    out
}
