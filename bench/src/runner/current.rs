//! The current figures of `perf/RESULTS.md`: one table per scenario holding the latest recorded
//! run's figures for Gauntlet, Prometheus and, where they play the role, Thanos and
//! VictoriaMetrics, Gauntlet's ratio to each, the date and the commit measured. A run reads its
//! scenario's rows to print its figures next to the last recorded ones (so a regression shows in
//! the run that causes it), and rewrites those rows when it appends its dated section to the
//! month's file in `perf/history/`; the date cell of a row it writes links to that section.
//!
//! Tables are read by their header, so rows written before the Thanos and VictoriaMetrics
//! columns existed read as rows without those figures (`–`). A table is written with those
//! columns only when one of its rows has such a figure, so a scenario measured against
//! Prometheus alone keeps its seven columns.

use std::fmt::Write as _;
use std::process::Command;

/// The heading of the current figures, the first `## ` section of the results file.
pub const HEADING: &str = "## Current figures";

/// The column names of a current table, in order; the narrow table has the first five and the
/// last two.
const COLUMNS: [&str; 11] = [
    "input",
    "figure",
    "Gauntlet",
    "Prometheus",
    "Thanos",
    "VictoriaMetrics",
    "ratio Gauntlet / Prometheus",
    "ratio Gauntlet / Thanos",
    "ratio Gauntlet / VictoriaMetrics",
    "date",
    "commit",
];

/// A cell without a figure.
const NONE: &str = "–";

/// One figure a run measured, for each side that has it.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// What it is, with its unit (`peak RSS, MiB`).
    pub name: String,
    /// Gauntlet's figure.
    pub gauntlet: Option<f64>,
    /// Prometheus's figure.
    pub prometheus: Option<f64>,
    /// Thanos's figure (the Thanos component doing the same job).
    pub thanos: Option<f64>,
    /// VictoriaMetrics single-node's figure.
    pub victoria: Option<f64>,
    /// Decimals shown.
    pub decimals: usize,
}

impl Figure {
    /// A figure of Gauntlet and Prometheus.
    pub fn new(
        name: &str,
        gauntlet: Option<f64>,
        prometheus: Option<f64>,
        decimals: usize,
    ) -> Self {
        Figure {
            name: name.to_string(),
            gauntlet,
            prometheus,
            thanos: None,
            victoria: None,
            decimals,
        }
    }

    /// The same figure with Thanos's and VictoriaMetrics's values.
    pub fn with_peers(mut self, thanos: Option<f64>, victoria: Option<f64>) -> Self {
        self.thanos = thanos;
        self.victoria = victoria;
        self
    }
}

/// What a scenario run produced: its dated section and its figures for the current table.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The scenario (`query`, `series`, `ingest`, `compact`).
    pub scenario: &'static str,
    /// The input, as the current table names it (`680 targets × 8 pods, 2 h (124k series)`);
    /// rows are matched on the part before any parenthesis.
    pub input: String,
    /// The dated section appended to the month's history file; it starts with its
    /// `## YYYY-MM-DD HH:MM UTC — …` heading.
    pub section: String,
    /// The figures for the current table.
    pub figures: Vec<Figure>,
}

/// A row of a scenario's current table, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The input the figure was measured on.
    pub input: String,
    /// What the figure is.
    pub figure: String,
    /// Gauntlet's figure (`–` when it has none).
    pub gauntlet: String,
    /// Prometheus's figure.
    pub prometheus: String,
    /// Thanos's figure.
    pub thanos: String,
    /// VictoriaMetrics's figure.
    pub victoria: String,
    /// Gauntlet / Prometheus.
    pub ratio: String,
    /// Gauntlet / Thanos.
    pub ratio_thanos: String,
    /// Gauntlet / VictoriaMetrics.
    pub ratio_victoria: String,
    /// When it was measured (`2026-11-23 08:41 UTC`), or that date as a Markdown link to the
    /// run's section (`[2026-11-23 08:41 UTC](history/2026-11.md#…)`).
    pub date: String,
    /// The commit measured.
    pub commit: String,
}

impl Row {
    fn key(&self) -> (&str, &str) {
        (input_key(&self.input), self.figure.as_str())
    }

    /// The cells in [`COLUMNS`] order.
    fn cells(&self) -> [&str; 11] {
        [
            &self.input,
            &self.figure,
            &self.gauntlet,
            &self.prometheus,
            &self.thanos,
            &self.victoria,
            &self.ratio,
            &self.ratio_thanos,
            &self.ratio_victoria,
            &self.date,
            &self.commit,
        ]
    }

    /// A row from cells named by a table's header; missing columns are empty figures.
    fn from_cells(header: &[&str], cells: &[&str]) -> Row {
        let get = |name: &str| {
            header
                .iter()
                .position(|h| *h == name)
                .and_then(|i| cells.get(i))
                .map_or(NONE.to_string(), |c| c.to_string())
        };
        Row {
            input: get(COLUMNS[0]),
            figure: get(COLUMNS[1]),
            gauntlet: get(COLUMNS[2]),
            prometheus: get(COLUMNS[3]),
            thanos: get(COLUMNS[4]),
            victoria: get(COLUMNS[5]),
            ratio: get(COLUMNS[6]),
            ratio_thanos: get(COLUMNS[7]),
            ratio_victoria: get(COLUMNS[8]),
            date: get(COLUMNS[9]),
            commit: get(COLUMNS[10]),
        }
    }

    /// Whether it has a Thanos or VictoriaMetrics figure.
    fn has_peers(&self) -> bool {
        self.thanos != NONE || self.victoria != NONE
    }

    /// When it was measured, without the link to its section.
    pub fn date_text(&self) -> &str {
        link_text(&self.date)
    }
}

/// The text of a Markdown link cell (`[text](target)`), or the cell itself when it is no link.
fn link_text(cell: &str) -> &str {
    cell.strip_prefix('[')
        .and_then(|rest| rest.split_once("]("))
        .filter(|(_, target)| target.ends_with(')'))
        .map_or(cell, |(text, _)| text)
}

/// The anchor GitHub gives a Markdown heading's text: lowercased, spaces made hyphens, and
/// everything but letters, digits, hyphens and underscores dropped (`2026-11-24 19:20 UTC —
/// `run compact`` gives `2026-11-24-1920-utc--run-compact`).
pub fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of the headings of the Markdown `text`, in order; a repeated heading gets `-1`,
/// `-2`, … as on GitHub.
pub fn anchors(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut fence = false;
    for line in text.lines() {
        if line.starts_with("```") {
            fence = !fence;
        }
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if fence || !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        out.push(unique(&out, slug(&line[hashes..])));
    }
    out
}

/// `base`, or `base-N` with the smallest N that `taken` does not hold yet.
fn unique(taken: &[String], base: String) -> String {
    if !taken.contains(&base) {
        return base;
    }
    (1..)
        .map(|n| format!("{base}-{n}"))
        .find(|a| !taken.contains(a))
        .unwrap_or(base)
}

/// The anchor the heading `heading` (its text, without the `#`s) will have once appended to the
/// Markdown `text`.
pub fn next_anchor(text: &str, heading: &str) -> String {
    unique(&anchors(text), slug(heading))
}

/// Which of [`COLUMNS`] a table of `rows` shows: all, or without the Thanos and
/// VictoriaMetrics columns when no row has such a figure.
fn shown_columns(rows: &[Row]) -> Vec<usize> {
    if rows.iter().any(Row::has_peers) {
        (0..COLUMNS.len()).collect()
    } else {
        vec![0, 1, 2, 3, 6, 9, 10]
    }
}

/// `rows` as a markdown table with its header.
pub fn render_table(rows: &[Row]) -> String {
    let cols = shown_columns(rows);
    let line = |cells: Vec<&str>| format!("| {} |\n", cells.join(" | "));
    let mut out = line(cols.iter().map(|&i| COLUMNS[i]).collect());
    out.push_str(&line(cols.iter().map(|_| "---").collect()).replace(' ', ""));
    for r in rows {
        let cells = r.cells();
        out.push_str(&line(cols.iter().map(|&i| cells[i]).collect()));
    }
    out
}

/// The part of an input's name rows are matched on: before any parenthesis.
fn input_key(input: &str) -> &str {
    input.split(" (").next().unwrap_or(input).trim()
}

fn scenario_heading(scenario: &str) -> String {
    format!("### `run {scenario}`")
}

/// The rows of `scenario`'s current table in the results text `text` (none when it has none),
/// each read by the table's header.
pub fn rows(text: &str, scenario: &str) -> Vec<Row> {
    let Some(body) = scenario_body(text, scenario) else {
        return Vec::new();
    };
    let mut header: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    for line in body.lines() {
        let Some(cells) = table_cells(line) else {
            continue;
        };
        if cells.first() == Some(&COLUMNS[0]) {
            header = cells;
        } else if !header.is_empty() && cells.len() == header.len() && !cells[0].starts_with("---")
        {
            out.push(Row::from_cells(&header, &cells));
        }
    }
    out
}

/// The lines of `scenario`'s subsection of the current figures, heading excluded.
fn scenario_body<'a>(text: &'a str, scenario: &str) -> Option<&'a str> {
    let current = section(text)?;
    let heading = scenario_heading(scenario);
    let start = current
        .find(&format!("\n{heading}\n"))
        .map(|i| i + heading.len() + 2)?;
    let rest = &current[start..];
    let end = rest.find("\n### ").map_or(rest.len(), |i| i + 1);
    Some(&rest[..end])
}

/// The current figures section: from its heading to the next `## ` heading.
fn section(text: &str) -> Option<&str> {
    let start = text.find(&format!("\n{HEADING}\n"))? + 1;
    let rest = &text[start..];
    let end = rest[HEADING.len()..]
        .find("\n## ")
        .map_or(rest.len(), |i| HEADING.len() + i + 1);
    Some(&rest[..end])
}

/// The trimmed cells of a markdown table line; `None` for other lines.
fn table_cells(line: &str) -> Option<Vec<&str>> {
    Some(
        line.trim()
            .strip_prefix('|')?
            .strip_suffix('|')?
            .split('|')
            .map(str::trim)
            .collect(),
    )
}

/// The rows a run's figures make.
pub fn rows_of(rec: &Recorded, date: &str, commit: &str) -> Vec<Row> {
    let cell = |v: Option<f64>, d: usize| v.map_or(NONE.to_string(), |v| format!("{v:.d$}"));
    let ratio = |g: Option<f64>, other: Option<f64>| match (g, other) {
        (Some(g), Some(o)) if o > 0.0 => format!("{:.2}x", g / o),
        _ => NONE.into(),
    };
    rec.figures
        .iter()
        .map(|f| Row {
            input: rec.input.clone(),
            figure: f.name.clone(),
            gauntlet: cell(f.gauntlet, f.decimals),
            prometheus: cell(f.prometheus, f.decimals),
            thanos: cell(f.thanos, f.decimals),
            victoria: cell(f.victoria, f.decimals),
            ratio: ratio(f.gauntlet, f.prometheus),
            ratio_thanos: ratio(f.gauntlet, f.thanos),
            ratio_victoria: ratio(f.gauntlet, f.victoria),
            date: date.to_string(),
            commit: commit.to_string(),
        })
        .collect()
}

/// `text` with `scenario`'s rows of the same input and figure as `new` replaced by them (new
/// ones added at the end of its table); the scenario's table, and the current figures section,
/// are made when missing.
pub fn update(text: &str, scenario: &str, new: &[Row]) -> String {
    let mut kept = rows(text, scenario);
    for r in new {
        match kept.iter_mut().find(|k| k.key() == r.key()) {
            Some(k) => *k = r.clone(),
            None => kept.push(r.clone()),
        }
    }
    let table = render_table(&kept);
    let text = with_section(text);
    let current = section(&text).unwrap_or(&text[text.len()..]);
    let cur_start = offset(&text, current);
    let heading = scenario_heading(scenario);
    match scenario_body(&text, scenario) {
        Some(body) => {
            // Prose before the table stays; the table is rewritten; anything after it stays.
            let lines: Vec<&str> = body.lines().collect();
            let first = lines.iter().position(|l| l.starts_with('|'));
            let last = lines.iter().rposition(|l| l.starts_with('|'));
            let mut out = String::new();
            match (first, last) {
                (Some(a), Some(b)) => {
                    for l in &lines[..a] {
                        let _ = writeln!(out, "{l}");
                    }
                    out.push_str(&table);
                    for l in &lines[b + 1..] {
                        let _ = writeln!(out, "{l}");
                    }
                }
                _ => {
                    out.push_str(body);
                    if !out.ends_with("\n\n") {
                        out.push('\n');
                    }
                    out.push_str(&table);
                    out.push('\n');
                }
            }
            let body_start = offset(&text, body);
            format!(
                "{}{}{}",
                &text[..body_start],
                out,
                &text[body_start + body.len()..]
            )
        }
        None => {
            let end = cur_start + current.len();
            let mut add = String::new();
            if !text[..end].ends_with("\n\n") {
                add.push('\n');
            }
            let _ = write!(add, "{heading}\n\n{table}\n");
            format!("{}{}{}", &text[..end], add, &text[end..])
        }
    }
}

/// Where `part`, a slice of `whole`, starts in it.
fn offset(whole: &str, part: &str) -> usize {
    part.as_ptr() as usize - whole.as_ptr() as usize
}

/// `text` with an empty current figures section before its first dated section when it has
/// none.
fn with_section(text: &str) -> String {
    if section(text).is_some() {
        return text.to_string();
    }
    let intro = "The latest recorded run of each scenario: the figures to quote. The dated \
                 sections in `history/` hold each run's full tables, machine and command; \
                 `gauntlet-bench run` rewrites its scenario's rows here when it appends one \
                 there.\n\n";
    match text.find("\n## ") {
        Some(i) => format!("{}\n{HEADING}\n\n{intro}{}", &text[..i + 1], &text[i + 1..]),
        None => format!("{text}\n{HEADING}\n\n{intro}"),
    }
}

/// Each figure of `new` next to the last recorded one of the same input and figure, one line
/// per figure (`peak RSS, MiB: Gauntlet 412 (last recorded 399, +3%)`).
pub fn compare(prev: &[Row], new: &[Row]) -> String {
    let mut s = String::new();
    for r in new {
        let old = prev.iter().find(|p| p.key() == r.key());
        let side = |name: &str, now: &str, then: Option<&str>| -> Option<String> {
            let n = number(now)?;
            Some(match then.and_then(number) {
                Some(t) if t != 0.0 => format!(
                    "{name} {now} (last recorded {}, {:+.0}%)",
                    then.unwrap_or_default(),
                    (n / t - 1.0) * 100.0
                ),
                _ => format!("{name} {now} (none recorded)"),
            })
        };
        let parts: Vec<String> = [
            side("Gauntlet", &r.gauntlet, old.map(|o| o.gauntlet.as_str())),
            side(
                "Prometheus",
                &r.prometheus,
                old.map(|o| o.prometheus.as_str()),
            ),
            side("Thanos", &r.thanos, old.map(|o| o.thanos.as_str())),
            side(
                "VictoriaMetrics",
                &r.victoria,
                old.map(|o| o.victoria.as_str()),
            ),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !parts.is_empty() {
            let _ = writeln!(
                s,
                "- {}: {}{}",
                r.figure,
                parts.join("; "),
                old.map_or(String::new(), |o| format!(
                    " [recorded {}, {}]",
                    o.date_text(),
                    o.commit
                ))
            );
        }
    }
    s
}

fn number(cell: &str) -> Option<f64> {
    cell.split_whitespace()
        .next()?
        .replace(',', "")
        .parse()
        .ok()
}

/// The commit of the checkout the runner runs in (`abc1234`, with `-dirty` when tracked files
/// have changes); `unknown` outside a git checkout.
pub fn commit() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(h) => match git(&["status", "--porcelain", "--untracked-files=no"]) {
            Some(s) if !s.is_empty() => format!("{h}-dirty"),
            _ => h,
        },
        None => "unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# Measured figures\n\nIntro.\n\n## Current figures\n\nWhat these are.\n\n### `run query`\n\nOn one block.\n\n| input | figure | Gauntlet | Prometheus | ratio Gauntlet / Prometheus | date | commit |\n|---|---|---|---|---|---|---|\n| 680 targets × 8 pods, 2 h (124k series) | peak RSS, MiB | 399 | 840 | 0.48x | 2026-11-23 08:38 UTC | b3aa111 |\n| 680 targets × 8 pods, 2 h (124k series) | latency p50, ms | 22.52 | 75.09 | 0.30x | 2026-11-23 08:41 UTC | b3aa111 |\n\n### `run series`\n\n| input | figure | Gauntlet | Prometheus | ratio Gauntlet / Prometheus | date | commit |\n|---|---|---|---|---|---|---|\n| 2000 targets × 75 pods, 2 h | peak RSS, MiB | 280 | 562 | 0.50x | 2026-11-23 15:31 UTC | d2c8319 |\n\n## 2026-11-22 — kernels\n\nOld text.\n";

    fn rec(rss: f64) -> Recorded {
        Recorded {
            scenario: "query",
            input: "680 targets × 8 pods, 2 h (124k series)".into(),
            section: String::new(),
            figures: vec![
                Figure::new("peak RSS, MiB", Some(rss), Some(846.0), 0),
                Figure::new("queries/s", Some(40.0), Some(7.0), 1),
            ],
        }
    }

    #[test]
    fn the_results_files_current_tables_are_read() {
        let text = include_str!("../../../perf/RESULTS.md");
        for scenario in ["query", "series", "ingest", "compact"] {
            let rows = rows(text, scenario);
            assert!(!rows.is_empty(), "{scenario}");
            for r in &rows {
                assert!(
                    number(&r.gauntlet).is_some() || number(&r.prometheus).is_some(),
                    "{scenario}: {r:?}"
                );
                assert!(
                    r.date_text().starts_with("20") && !r.commit.is_empty(),
                    "{r:?}"
                );
            }
        }
        let rss = rows(text, "query").into_iter().find(|r| {
            r.figure == "peak RSS, MiB" && input_key(&r.input) == "680 targets × 8 pods, 2 h"
        });
        assert!(rss.is_some_and(|r| number(&r.gauntlet).is_some()));
    }

    #[test]
    fn rows_are_read_per_scenario() {
        let q = rows(TEXT, "query");
        assert_eq!(q.len(), 2);
        assert_eq!(q[0].gauntlet, "399");
        assert_eq!(q[1].date, "2026-11-23 08:41 UTC");
        assert_eq!(rows(TEXT, "series").len(), 1);
        assert!(rows(TEXT, "ingest").is_empty());
        assert!(rows("# nothing\n", "query").is_empty());
    }

    #[test]
    fn a_run_is_printed_next_to_the_last_recorded_figures() {
        let new = rows_of(&rec(412.0), "2026-11-24 10:00 UTC", "abc1234");
        let c = compare(&rows(TEXT, "query"), &new);
        assert!(
            c.contains(
                "- peak RSS, MiB: Gauntlet 412 (last recorded 399, +3%); Prometheus 846 (last recorded 840, +1%) [recorded 2026-11-23 08:38 UTC, b3aa111]"
            ),
            "{c}"
        );
        assert!(
            c.contains("- queries/s: Gauntlet 40.0 (none recorded)"),
            "{c}"
        );
    }

    #[test]
    fn rows_without_peer_columns_read_as_rows_without_peer_figures() {
        let q = rows(TEXT, "query");
        assert_eq!((q[0].thanos.as_str(), q[0].victoria.as_str()), ("–", "–"));
        assert_eq!(q[0].ratio_thanos, "–");
        assert_eq!(q[0].ratio, "0.48x");
    }

    #[test]
    fn a_run_with_peers_widens_the_table_and_older_rows_show_no_peer_figure() {
        let mut r = rec(412.0);
        r.figures[1] =
            Figure::new("queries/s", Some(40.0), Some(8.0), 1).with_peers(Some(20.0), Some(50.0));
        let new = rows_of(&r, "2026-11-24 10:00 UTC", "abc1234");
        assert_eq!(new[1].ratio_thanos, "2.00x");
        assert_eq!(new[1].ratio_victoria, "0.80x");
        assert_eq!(new[0].ratio_thanos, "–", "no Thanos figure, no ratio");
        let out = update(TEXT, "query", &new);
        assert!(
            out.contains(
                "| input | figure | Gauntlet | Prometheus | Thanos | VictoriaMetrics | ratio Gauntlet / Prometheus | ratio Gauntlet / Thanos | ratio Gauntlet / VictoriaMetrics | date | commit |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
            ),
            "{out}"
        );
        assert!(
            out.contains("| 680 targets × 8 pods, 2 h (124k series) | latency p50, ms | 22.52 | 75.09 | – | – | 0.30x | – | – | 2026-11-23 08:41 UTC | b3aa111 |"),
            "{out}"
        );
        let q = rows(&out, "query");
        assert_eq!(q.len(), 3);
        assert_eq!(
            (q[2].thanos.as_str(), q[2].victoria.as_str()),
            ("20.0", "50.0")
        );
        assert_eq!(
            rows(&out, "series"),
            rows(TEXT, "series"),
            "other tables untouched"
        );
        assert!(
            out.contains("### `run series`\n\n| input | figure | Gauntlet | Prometheus | ratio")
        );
        assert_eq!(update(&out, "query", &new), out, "idempotent");
        let c = compare(&q, &new);
        assert!(
            c.contains("Thanos 20.0 (last recorded 20.0, +0%); VictoriaMetrics 50.0 (last recorded 50.0, +0%)"),
            "{c}"
        );
    }

    #[test]
    fn updating_replaces_the_scenarios_rows_and_keeps_the_rest() {
        let new = rows_of(&rec(412.0), "2026-11-24 10:00 UTC", "abc1234");
        let out = update(TEXT, "query", &new);
        let q = rows(&out, "query");
        assert_eq!(q.len(), 3, "{out}");
        assert_eq!(q[0].gauntlet, "412");
        assert_eq!(q[0].ratio, "0.49x");
        assert_eq!(q[1].figure, "latency p50, ms", "kept in place");
        assert_eq!(q[2].figure, "queries/s", "added at the end");
        assert_eq!(rows(&out, "series"), rows(TEXT, "series"));
        assert!(out.contains("On one block.\n\n| input"), "{out}");
        assert!(
            out.ends_with("## 2026-11-22 — kernels\n\nOld text.\n"),
            "{out}"
        );
        assert_eq!(update(&out, "query", &new), out, "idempotent");
        // A scenario without a table gets one at the end of the section.
        let out = update(TEXT, "ingest", &new);
        assert_eq!(rows(&out, "ingest").len(), 2);
        assert!(out.contains("### `run ingest`\n\n| input"), "{out}");
        assert!(out.find("### `run ingest`") < out.find("## 2026-11-22"));
        // A file without the section gets one before its first dated section.
        let out = update(
            "# Measured figures\n\nIntro.\n\n## 2026-11-22 — x\n\ny\n",
            "query",
            &new,
        );
        assert_eq!(rows(&out, "query").len(), 2, "{out}");
        assert!(out.find(HEADING) < out.find("## 2026-11-22"));
    }
}
