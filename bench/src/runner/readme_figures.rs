//! The headline figures of the repository's README, rendered from the current tables of
//! `perf/RESULTS.md`: one row per scenario (its throughput at its largest input) between the
//! markers [`BEGIN`] and [`END`], so the README quotes what was last measured and a check can
//! tell when the two drift apart.

use std::fmt::Write as _;

use super::current::{self, Row};

/// The line after which the README's figures block starts.
pub const BEGIN: &str = "<!-- figures:begin -->";

/// The line before which the README's figures block ends.
pub const END: &str = "<!-- figures:end -->";

/// Why the README's figures could not be rendered or placed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FiguresError {
    /// The README lacks the markers, or has them out of order or twice: put one `BEGIN` line and
    /// one `END` line after it where the figures go.
    #[error("the README has no single `{BEGIN}` … `{END}` block: add the two markers, in order")]
    Markers,
    /// None of the headline figures is in the results file's current tables: check that the
    /// file given is the results file and that its `## Current figures` section is intact.
    #[error("the results file's current tables hold none of the headline figures")]
    NoFigures,
}

/// A scenario's headline: which row of its current table the README quotes.
struct Headline {
    /// The scenario, as its table is headed (`### `run query``).
    scenario: &'static str,
    /// The name the README gives it.
    label: &'static str,
    /// The start of the figure's name in the table.
    figure: &'static str,
}

/// The README's rows, in order: each scenario's throughput.
const HEADLINES: [Headline; 7] = [
    Headline {
        scenario: "query",
        label: "PromQL range and instant queries",
        figure: "queries/s at concurrency",
    },
    Headline {
        scenario: "series",
        label: "StoreAPI Series",
        figure: "series/s, `",
    },
    Headline {
        scenario: "ingest",
        label: "remote-write ingest",
        figure: "acknowledged samples/s",
    },
    Headline {
        scenario: "compact",
        label: "compaction",
        figure: "samples merged per compaction second",
    },
    Headline {
        scenario: "compact",
        label: "compaction, deduplication and downsampling, as `thanos compact`",
        figure: "HA pair, dedup by `replica`, downsampling, one pass: input samples",
    },
    Headline {
        scenario: "histogram",
        label: "native-histogram queries",
        figure: "queries/s at concurrency",
    },
    Headline {
        scenario: "store",
        label: "store gateway behind `thanos query`",
        figure: "queries/s through `thanos query`",
    },
];

/// A cell without a figure.
const NONE: &str = "–";

/// The README's figures block rendered from the results file's text `results`: a blank line, a
/// Markdown table of each scenario's headline figure, the line `link` names the results file by
/// (`perf/RESULTS.md`, relative to the README) in, and a blank line. It goes between the
/// [`BEGIN`] and [`END`] lines.
pub fn render(results: &str, link: &str) -> Result<String, FiguresError> {
    let picked: Vec<(&Headline, Row)> = HEADLINES
        .iter()
        .filter_map(|h| pick(&current::rows(results, h.scenario), h.figure).map(|r| (h, r)))
        .collect();
    if picked.is_empty() {
        return Err(FiguresError::NoFigures);
    }
    let thanos = picked.iter().any(|(_, r)| r.thanos != NONE);
    let mut header = vec!["scenario", "figure", "Gauntlet", "Prometheus"];
    if thanos {
        header.push("Thanos");
    }
    header.push("Gauntlet / Prometheus");
    if thanos {
        header.push("Gauntlet / Thanos");
    }
    let mut out = String::from("\n");
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(header.len()));
    for (h, r) in &picked {
        let scenario = format!(
            "[{}]({link}#{})",
            h.label,
            current::slug(&format!("`run {}`", h.scenario))
        );
        let figure = match size(&r.input) {
            Some(size) => format!("{}, {size}", r.figure),
            None => format!("{}, {}", r.figure, input_key(&r.input)),
        };
        let mut cells = vec![scenario, figure, short(&r.gauntlet), short(&r.prometheus)];
        if thanos {
            cells.push(short(&r.thanos));
        }
        cells.push(r.ratio.clone());
        if thanos {
            cells.push(r.ratio_thanos.clone());
        }
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    let _ = writeln!(
        out,
        "\nEach scenario's throughput at its largest input, from the current tables of \
         [{link}]({link}), which give every figure's date, commit, machine and command."
    );
    out.push('\n');
    Ok(out)
}

/// The text between the README's [`BEGIN`] and [`END`] lines (from after the first's line end
/// to the start of the second).
pub fn block(readme: &str) -> Result<&str, FiguresError> {
    let (start, end) = bounds(readme)?;
    Ok(&readme[start..end])
}

/// `readme` with the text between its markers replaced by `rendered`.
pub fn replace(readme: &str, rendered: &str) -> Result<String, FiguresError> {
    let (start, end) = bounds(readme)?;
    Ok(format!("{}{rendered}{}", &readme[..start], &readme[end..]))
}

/// Where the block between the markers starts and ends in `readme`.
fn bounds(readme: &str) -> Result<(usize, usize), FiguresError> {
    let [Some(begin), Some(end)] = [BEGIN, END].map(|m| readme.find(m)) else {
        return Err(FiguresError::Markers);
    };
    let once = |m: &str, at: usize| !readme[at + m.len()..].contains(m);
    if begin + BEGIN.len() > end || !once(BEGIN, begin) || !once(END, end) {
        return Err(FiguresError::Markers);
    }
    Ok((begin + BEGIN.len(), end))
}

/// The row of `figure` (the start of its name) a README quotes: at the largest input, paced
/// inputs left out when another has it (their throughput is the pace, not a measure), the first
/// such row on a tie; only rows with a Gauntlet figure.
fn pick(rows: &[Row], figure: &str) -> Option<Row> {
    let with: Vec<&Row> = rows
        .iter()
        .filter(|r| r.figure.starts_with(figure) && number(&r.gauntlet).is_some())
        .collect();
    let unpaced: Vec<&Row> = with
        .iter()
        .copied()
        .filter(|r| !input_key(&r.input).contains("samples/s"))
        .collect();
    let candidates = if unpaced.is_empty() { with } else { unpaced };
    let mut best: Option<&Row> = None;
    for r in candidates {
        if best.is_none_or(|b| magnitude(&r.input) > magnitude(&b.input)) {
            best = Some(r);
        }
    }
    best.cloned()
}

/// How large an input is: its series count (`(1.78M series)`), else its targets × pods per
/// target (`400 targets × 8 pods, 24 h`), else 0.
fn magnitude(input: &str) -> f64 {
    if let Some(n) = size(input).and_then(|s| number(s.trim_end_matches(" series"))) {
        return n;
    }
    let count = |unit: &str| {
        let words: Vec<&str> = input.split_whitespace().collect();
        words
            .windows(2)
            .find(|w| w[1].trim_end_matches(',') == unit)
            .and_then(|w| number(w[0]))
    };
    match (count("targets"), count("pods")) {
        (Some(t), Some(p)) => t * p,
        (Some(t), None) => t,
        _ => 0.0,
    }
}

/// The series count an input's name ends with (`1.78M series`), when it has one.
fn size(input: &str) -> Option<&str> {
    let inner = input.rsplit_once(" (")?.1.strip_suffix(')')?;
    inner.ends_with(" series").then_some(inner)
}

/// The part of an input's name before any parenthesis.
fn input_key(input: &str) -> &str {
    input.split(" (").next().unwrap_or(input).trim()
}

/// A number cell's value; `k` and `M` suffixes are thousands and millions.
fn number(cell: &str) -> Option<f64> {
    let c = cell.trim().replace(',', "");
    let (digits, scale) = match c.strip_suffix('M') {
        Some(d) => (d, 1e6),
        None => match c.strip_suffix('k') {
            Some(d) => (d, 1e3),
            None => (c.as_str(), 1.0),
        },
    };
    digits.parse::<f64>().ok().map(|v| v * scale)
}

/// A figure cell shortened for the README: from 10 000 on, three significant digits with `k`
/// or `M` (`1706956` is `1.71M`); other cells as they are.
fn short(cell: &str) -> String {
    let Ok(v) = cell.trim().parse::<f64>() else {
        return cell.to_string();
    };
    let (x, suffix) = if v >= 1e6 {
        (v / 1e6, "M")
    } else if v >= 1e4 {
        (v / 1e3, "k")
    } else {
        return cell.to_string();
    };
    let decimals = if x >= 100.0 {
        0
    } else if x >= 10.0 {
        1
    } else {
        2
    };
    format!("{x:.decimals$}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "| input | figure | Gauntlet | Prometheus | ratio Gauntlet / Prometheus | date | commit |\n|---|---|---|---|---|---|---|\n";

    fn results(query: &str, ingest: &str) -> String {
        format!(
            "# Measured figures\n\n## Current figures\n\n### `run query`\n\n{HEAD}{query}\n### `run ingest`\n\nProse.\n\n{HEAD}{ingest}"
        )
    }

    const QUERY: &str = "| 680 targets × 8 pods, 2 h (124k series) | queries/s at concurrency 2 | 43.1 | 8.4 | 5.14x | 2026-11-25 12:37 UTC | 7220bc9 |\n| 2000 targets × 75 pods, 2 h (1.78M series) | latency p50, ms | 73.1 | 251.4 | 0.29x | 2026-11-23 08:34 UTC | 2ff7796 |\n| 2000 targets × 75 pods, 2 h (1.78M series) | queries/s at concurrency 2 | 5.4 | 0.8 | 6.96x | 2026-11-23 08:34 UTC | 2ff7796 |\n";

    const INGEST: &str = "| 680 targets × 8 pods, 15 min (116k series) | acknowledged samples/s | 2933682.7 | 514768.9 | 5.70x | 2026-11-25 14:34 UTC | 7220bc9 |\n| 6800 targets × 8 pods, 15 min, at 300k samples/s (1.16M series) | acknowledged samples/s | 300469.9 | 300255.7 | 1.00x | 2026-11-24 14:23 UTC | 6d64d03 |\n| 6800 targets × 8 pods, 15 min (1.16M series) | acknowledged samples/s | 4104687.8 | 450187.3 | 9.12x | 2026-11-24 14:26 UTC | 6d64d03-dirty |\n";

    #[test]
    fn each_scenario_gives_its_throughput_at_its_largest_unpaced_input() {
        let out = render(&results(QUERY, INGEST), "perf/RESULTS.md").unwrap();
        assert_eq!(
            out,
            "\n| scenario | figure | Gauntlet | Prometheus | Gauntlet / Prometheus |\n|---|---|---|---|---|\n\
             | [PromQL range and instant queries](perf/RESULTS.md#run-query) | queries/s at concurrency 2, 1.78M series | 5.4 | 0.8 | 6.96x |\n\
             | [remote-write ingest](perf/RESULTS.md#run-ingest) | acknowledged samples/s, 1.16M series | 4.10M | 450k | 9.12x |\n\
             \nEach scenario's throughput at its largest input, from the current tables of [perf/RESULTS.md](perf/RESULTS.md), which give every figure's date, commit, machine and command.\n\n"
        );
    }

    #[test]
    fn thanos_columns_appear_when_a_headline_has_a_thanos_figure() {
        let store = "\n### `run store`\n\n| input | figure | Gauntlet | Prometheus | Thanos | VictoriaMetrics | ratio Gauntlet / Prometheus | ratio Gauntlet / Thanos | ratio Gauntlet / VictoriaMetrics | date | commit |\n|---|---|---|---|---|---|---|---|---|---|---|\n| 4 copies of 680 targets × 8 pods, 2 h | queries/s through `thanos query` at concurrency 2 | 12.0 | – | 6.0 | – | – | 2.00x | – | 2026-11-25 | abc |\n";
        let out = render(&(results(QUERY, "") + store), "RESULTS.md").unwrap();
        assert!(
            out.contains("| scenario | figure | Gauntlet | Prometheus | Thanos | Gauntlet / Prometheus | Gauntlet / Thanos |\n"),
            "{out}"
        );
        assert!(out.contains("| 5.4 | 0.8 | – | 6.96x | – |\n"), "{out}");
        assert!(
            out.contains("| [store gateway behind `thanos query`](RESULTS.md#run-store) | queries/s through `thanos query` at concurrency 2, 4 copies of 680 targets × 8 pods, 2 h | 12.0 | – | 6.0 | – | 2.00x |\n"),
            "{out}"
        );
    }

    #[test]
    fn the_block_between_the_markers_is_read_and_replaced() {
        let readme = format!("# G\n\nIntro.\n\n{BEGIN}\nold\n{END}\n\nMore.\n");
        assert_eq!(block(&readme).unwrap(), "\nold\n");
        let out = replace(&readme, "\nnew\n").unwrap();
        assert_eq!(
            out,
            format!("# G\n\nIntro.\n\n{BEGIN}\nnew\n{END}\n\nMore.\n")
        );
        assert_eq!(block(&out).unwrap(), "\nnew\n");
        for bad in [
            "# G\n".to_string(),
            format!("{END}\n{BEGIN}\n"),
            format!("{BEGIN}\n{END}\n{BEGIN}\n{END}\n"),
            format!("{BEGIN}\n"),
        ] {
            assert!(matches!(block(&bad), Err(FiguresError::Markers)), "{bad}");
        }
        assert!(matches!(
            render("# nothing\n", "RESULTS.md"),
            Err(FiguresError::NoFigures)
        ));
    }

    #[test]
    fn large_figures_are_shortened_and_others_kept() {
        assert_eq!(short("1706956"), "1.71M");
        assert_eq!(short("189089107.5"), "189M");
        assert_eq!(short("93601"), "93.6k");
        assert_eq!(short("9999"), "9999");
        assert_eq!(short("43.1"), "43.1");
        assert_eq!(short("–"), "–");
        assert_eq!(magnitude("100 targets × 8 pods, 24 h"), 800.0);
        assert_eq!(magnitude("x (1.78M series)"), 1.78e6);
        assert_eq!(magnitude("x (124k series)"), 124e3);
    }
}
