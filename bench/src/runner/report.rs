//! The section a scenario appends to the month's file in `perf/history/` (figures of each side,
//! ratios, machine, versions and the exact command), and the recording of a run: that section
//! appended, its scenario's rows of the current tables in `perf/RESULTS.md` rewritten.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What was measured on one side.
#[derive(Clone, Debug, Default)]
pub struct Figures {
    /// System name and version.
    pub system: String,
    /// Main throughput figure (unit in the scenario's table header).
    pub throughput: f64,
    /// Latency p50, ms (0 when not applicable).
    pub p50_ms: f64,
    /// Latency p99, ms.
    pub p99_ms: f64,
    /// Server CPU time during the measured phase (user + system), s; `None` when remote.
    pub cpu_s: Option<f64>,
    /// Server peak RSS (`VmHWM`), bytes; `None` when remote.
    pub peak_rss_bytes: Option<u64>,
    /// Anything else worth a column: what the check counted, errors, etc.
    pub notes: String,
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "n/a".to_string(), f)
}

/// Machine line: CPU model and count, memory, kernel.
pub fn machine_description() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let mem_kb: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let uname = Command::new("uname")
        .arg("-srm")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    // Other work on the machine takes cores from the servers; the load average says how much.
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    format!(
        "{cpus} × {model}, {:.0} GiB, {uname}; load average {load} when the section was written",
        mem_kb as f64 / 1024.0 / 1024.0
    )
}

pub(super) fn utc_now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Renders a scenario's section: title, machine, input, command, one row per side and a ratio
/// row (target / baseline) when both sides ran.
pub fn render(
    scenario: &str,
    unit: &str,
    input: &str,
    command: &str,
    baseline: &Figures,
    target: Option<&Figures>,
) -> String {
    render_sides(scenario, unit, input, command, Some(baseline), target, &[])
}

/// [`render`] with further sides (`peers`: Thanos's components, VictoriaMetrics) after the
/// baseline and the target, each with a row of Gauntlet's ratio to it; without a baseline
/// (a scenario Prometheus has no part in) the target's rows lead.
pub fn render_sides(
    scenario: &str,
    unit: &str,
    input: &str,
    command: &str,
    baseline: Option<&Figures>,
    target: Option<&Figures>,
    peers: &[Figures],
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "\n## {} — `run {scenario}`\n", utc_now());
    let _ = writeln!(s, "Machine: {}.", machine_description());
    let _ = writeln!(s, "Input: {input}.");
    let _ = writeln!(s, "Command: `{command}`\n");
    let _ = writeln!(
        s,
        "| system | {unit} | p50 ms | p99 ms | server CPU s | peak RSS MiB | notes |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|");
    let row = |s: &mut String, f: &Figures| {
        let _ = writeln!(
            s,
            "| {} | {:.1} | {:.2} | {:.2} | {} | {} | {} |",
            f.system,
            f.throughput,
            f.p50_ms,
            f.p99_ms,
            opt(f.cpu_s, |v| format!("{v:.2}")),
            opt(f.peak_rss_bytes.map(|b| b as f64), |v| format!(
                "{:.0}",
                v / 1048576.0
            )),
            f.notes
        );
    };
    // `name`: a's figures over b's, one cell per column.
    let ratio_row = |s: &mut String, name: &str, a: &Figures, b: &Figures| {
        let _ = writeln!(
            s,
            "| {name} | {} | {} | {} | {} | {} | |",
            ratio(a.throughput, b.throughput),
            ratio(a.p50_ms, b.p50_ms),
            ratio(a.p99_ms, b.p99_ms),
            match (a.cpu_s, b.cpu_s) {
                (Some(x), Some(y)) => ratio(x, y),
                _ => "n/a".into(),
            },
            match (a.peak_rss_bytes, b.peak_rss_bytes) {
                (Some(x), Some(y)) => ratio(x as f64, y as f64),
                _ => "n/a".into(),
            },
        );
    };
    for f in baseline.iter().copied().chain(target).chain(peers) {
        row(&mut s, f);
    }
    match (baseline, target) {
        (Some(b), Some(t)) => ratio_row(&mut s, "ratio target / baseline", t, b),
        (_, Some(_)) => {}
        (_, None) => {
            let _ = writeln!(
                s,
                "\nNo target figures: Gauntlet's component for this scenario does not exist yet, or \
                 neither `--gauntlet-bin` nor `--target-url` was given; the others are recorded \
                 alone."
            );
        }
    }
    if let Some(t) = target {
        // Not named `ratio …`: the first such row is the run's headline against Prometheus
        // (perf/plot_ratios.py).
        for p in peers {
            ratio_row(&mut s, &format!("Gauntlet / {}", p.system), t, p);
        }
    }
    s
}

/// Prints a run's section with its figures next to the last recorded ones in the current
/// tables of `results` (read when the file exists); with `append`, appends the section to the
/// month's history file beside `results` ([`history_file`]) and rewrites the scenario's rows of
/// the current tables in `results`, else prints those rows.
pub fn record(rec: &super::current::Recorded, results: &Path, append: bool) -> std::io::Result<()> {
    let printed = record_as(rec, results, append, &super::current::commit())?;
    print!("{printed}");
    Ok(())
}

/// [`record`] with the commit measured given, returning what it would print.
pub fn record_as(
    rec: &super::current::Recorded,
    results: &Path,
    append: bool,
    commit: &str,
) -> std::io::Result<String> {
    use super::current;
    let text = read_if_any(results)?;
    let heading = rec
        .section
        .lines()
        .find_map(|l| l.strip_prefix("## "))
        .map(str::to_string);
    let date = heading
        .as_deref()
        .and_then(|h| h.split(" — ").next())
        .map_or_else(utc_now, str::to_string);
    let history = history_file(results, &date);
    let history_text = read_if_any(&history)?;
    // The date cell links to the section, relative to the results file, which `history/` sits
    // beside.
    let date_cell = match (&heading, history.file_name()) {
        (Some(h), Some(name)) if append => format!(
            "[{date}](history/{}#{})",
            name.to_string_lossy(),
            current::next_anchor(&history_text, h)
        ),
        _ => date.clone(),
    };
    let rows = current::rows_of(rec, &date_cell, commit);
    let last = current::rows(&text, rec.scenario);
    let mut section = rec.section.clone();
    let _ = write!(
        section,
        "\nAgainst the last recorded figures (the current table of `run {}` on {}):\n\n{}",
        rec.scenario,
        rec.input,
        current::compare(&last, &rows)
    );
    let mut printed = section.clone();
    if append {
        // The section first: a run whose history cannot be written leaves the current tables
        // as they were, not pointing at a section that is not there.
        append_history(&history, &history_text, &date, &section)?;
        std::fs::write(results, current::update(&text, rec.scenario, &rows))?;
        let _ = writeln!(
            printed,
            "\nAppended to {}; current table of `run {}` rewritten in {}.",
            history.display(),
            rec.scenario,
            results.display()
        );
    } else {
        let _ = write!(
            printed,
            "\nRows for the current table (not written: --no-append):\n\n{}",
            current::render_table(&rows)
        );
    }
    Ok(printed)
}

/// The history file of the runs of `date`'s month (`2026-11-24 10:00 UTC` gives
/// `history/2026-11.md`), in the directory of the results file `results`; the current month
/// (UTC) when `date` does not start with one.
pub fn history_file(results: &Path, date: &str) -> PathBuf {
    let month = |d: &str| {
        let m = d.get(..7)?;
        let b = m.as_bytes();
        (b[4] == b'-' && m.chars().filter(char::is_ascii_digit).count() == 6).then(|| m.to_string())
    };
    let month = month(date)
        .or_else(|| month(&utc_now()))
        .unwrap_or_else(|| "undated".into());
    results
        .parent()
        .unwrap_or(Path::new(""))
        .join("history")
        .join(format!("{month}.md"))
}

/// Appends `section` to the history file `path` whose text is `text`, creating the file, headed
/// with its month, when it is new.
fn append_history(path: &Path, text: &str, date: &str, section: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut add = String::new();
    if text.is_empty() {
        let month = path.file_stem().map_or_else(
            || date.get(..7).unwrap_or(date).to_string(),
            |s| s.to_string_lossy().into_owned(),
        );
        let _ = writeln!(add, "# Measured runs, {month}");
    } else if !text.ends_with('\n') {
        add.push('\n');
    }
    if !section.starts_with('\n') {
        add.push('\n');
    }
    add.push_str(section);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(add.as_bytes())
}

/// The text of the file at `path`; empty when there is none.
fn read_if_any(path: &Path) -> std::io::Result<String> {
    match std::fs::read_to_string(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        r => r,
    }
}

/// `a / b` as a ratio cell (`2.50x`), `n/a` when `b` is not positive.
pub(super) fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}x", a / b)
    } else {
        "n/a".into()
    }
}

#[cfg(test)]
mod tests {
    use super::super::current::{Figure, Recorded, rows};
    use super::*;

    /// A `run query` recorded at `date` with Gauntlet's queries/s `qps`; Thanos's 20 when
    /// `thanos`.
    fn run(date: &str, qps: f64, thanos: bool) -> Recorded {
        let peers = if thanos { Some(20.0) } else { None };
        Recorded {
            scenario: "query",
            input: "680 targets × 8 pods, 2 h (124k series)".into(),
            section: format!("\n## {date} — `run query`\n\nMachine: test.\n"),
            figures: vec![
                Figure::new("queries/s at concurrency 2", Some(qps), Some(8.0), 1)
                    .with_peers(peers, None),
                Figure::new("peak RSS, MiB", Some(370.0), Some(840.0), 0),
            ],
        }
    }

    const RESULTS: &str = "# Measured figures\n\nIntro.\n\n## Current figures\n\n### `run query`\n\nProse.\n\n| input | figure | Gauntlet | Prometheus | ratio Gauntlet / Prometheus | date | commit |\n|---|---|---|---|---|---|---|\n| 680 targets × 8 pods, 2 h (124k series) | queries/s at concurrency 2 | 40.0 | 8.0 | 5.00x | 2026-10-01 10:00 UTC | old1234 |\n";

    #[test]
    fn runs_go_to_their_months_history_file_and_replace_their_current_rows() {
        let dir = tempfile::tempdir().unwrap();
        let results = dir.path().join("RESULTS.md");
        std::fs::write(&results, RESULTS).unwrap();
        let nov = dir.path().join("history/2026-11.md");

        let printed = record_as(
            &run("2026-11-24 10:00 UTC", 44.0, false),
            &results,
            true,
            "abc",
        )
        .unwrap();
        assert!(
            printed.contains("Gauntlet 44.0 (last recorded 40.0, +10%)"),
            "{printed}"
        );
        let hist = std::fs::read_to_string(&nov).unwrap();
        assert_eq!(
            hist,
            "# Measured runs, 2026-11\n\n## 2026-11-24 10:00 UTC — `run query`\n\nMachine: test.\n\nAgainst the last recorded figures (the current table of `run query` on 680 targets × 8 pods, 2 h (124k series)):\n\n- queries/s at concurrency 2: Gauntlet 44.0 (last recorded 40.0, +10%); Prometheus 8.0 (last recorded 8.0, +0%) [recorded 2026-10-01 10:00 UTC, old1234]\n- peak RSS, MiB: Gauntlet 370 (none recorded); Prometheus 840 (none recorded)\n"
        );
        let text = std::fs::read_to_string(&results).unwrap();
        assert!(
            !text.contains("Machine: test."),
            "no section in the results file: {text}"
        );
        assert!(text.starts_with("# Measured figures\n\nIntro.\n\n## Current figures\n\n### `run query`\n\nProse.\n\n| input"));
        let q = rows(&text, "query");
        assert_eq!(q.len(), 2, "{text}");
        assert_eq!(
            q[0].date,
            "[2026-11-24 10:00 UTC](history/2026-11.md#2026-11-24-1000-utc--run-query)"
        );
        assert_eq!(
            (q[0].gauntlet.as_str(), q[0].commit.as_str()),
            ("44.0", "abc")
        );

        // A second run in the month: appended to the same file, its rows replacing the first's,
        // its link to its own section even when the heading repeats.
        record_as(
            &run("2026-11-24 10:00 UTC", 42.0, true),
            &results,
            true,
            "def",
        )
        .unwrap();
        let hist = std::fs::read_to_string(&nov).unwrap();
        assert_eq!(hist.matches("# Measured runs").count(), 1);
        assert_eq!(
            hist.matches("## 2026-11-24 10:00 UTC — `run query`")
                .count(),
            2
        );
        assert!(
            hist.contains("Gauntlet 42.0 (last recorded 44.0, -5%)"),
            "{hist}"
        );
        let text = std::fs::read_to_string(&results).unwrap();
        let q = rows(&text, "query");
        assert_eq!(q.len(), 2, "replaced, not duplicated: {text}");
        assert_eq!(q[0].gauntlet, "42.0");
        assert_eq!(
            q[0].date,
            "[2026-11-24 10:00 UTC](history/2026-11.md#2026-11-24-1000-utc--run-query-1)"
        );
        assert_eq!(
            super::super::current::anchors(&hist)[2],
            "2026-11-24-1000-utc--run-query-1"
        );
        // Thanos's figure widens the current table.
        assert!(
            text.contains("| input | figure | Gauntlet | Prometheus | Thanos | VictoriaMetrics | ratio Gauntlet / Prometheus | ratio Gauntlet / Thanos | ratio Gauntlet / VictoriaMetrics | date | commit |"),
            "{text}"
        );
        assert_eq!(
            (q[0].thanos.as_str(), q[0].ratio_thanos.as_str()),
            ("20.0", "2.10x")
        );
        assert_eq!(q[1].thanos, "–");

        // A run in another month starts that month's file.
        record_as(
            &run("2026-12-01 00:05 UTC", 43.0, true),
            &results,
            true,
            "0a1",
        )
        .unwrap();
        let dec = std::fs::read_to_string(dir.path().join("history/2026-12.md")).unwrap();
        assert!(
            dec.starts_with("# Measured runs, 2026-12\n\n## 2026-12-01 00:05 UTC — `run query`\n"),
            "{dec}"
        );
        assert_eq!(
            std::fs::read_to_string(&nov).unwrap(),
            hist,
            "November untouched"
        );
        let q = rows(&std::fs::read_to_string(&results).unwrap(), "query");
        assert_eq!(q.len(), 2);
        assert_eq!(
            q[0].date,
            "[2026-12-01 00:05 UTC](history/2026-12.md#2026-12-01-0005-utc--run-query)"
        );
        assert_eq!(q[0].date_text(), "2026-12-01 00:05 UTC");
    }

    #[test]
    fn without_append_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let results = dir.path().join("RESULTS.md");
        std::fs::write(&results, RESULTS).unwrap();
        let printed = record_as(
            &run("2026-11-24 10:00 UTC", 44.0, false),
            &results,
            false,
            "abc",
        )
        .unwrap();
        assert!(printed.contains("Rows for the current table (not written: --no-append)"));
        assert!(
            printed.contains("| 44.0 | 8.0 | 5.50x | 2026-11-24 10:00 UTC | abc |"),
            "{printed}"
        );
        assert_eq!(std::fs::read_to_string(&results).unwrap(), RESULTS);
        assert!(!dir.path().join("history").exists());
    }

    #[test]
    fn the_history_file_is_named_for_the_runs_month_beside_the_results_file() {
        assert_eq!(
            history_file(Path::new("perf/RESULTS.md"), "2026-11-24 10:00 UTC"),
            Path::new("perf/history/2026-11.md")
        );
        assert_eq!(
            history_file(Path::new("RESULTS.md"), "2027-01-02 03:04 UTC"),
            Path::new("history/2027-01.md")
        );
        let undated = history_file(Path::new("RESULTS.md"), "soon");
        assert_ne!(undated, Path::new("history/soon.md"));
    }

    fn side(system: &str, throughput: f64) -> Figures {
        Figures {
            system: system.into(),
            throughput,
            p50_ms: 2.0,
            p99_ms: 8.0,
            cpu_s: Some(4.0),
            peak_rss_bytes: Some(100 << 20),
            notes: String::new(),
        }
    }

    #[test]
    fn peers_follow_the_sides_with_gauntlets_ratio_to_each() {
        let (p, g, t) = (
            side("prometheus", 10.0),
            side("gauntlet", 40.0),
            side("thanos", 20.0),
        );
        let s = render_sides(
            "x",
            "q/s",
            "in",
            "cmd",
            Some(&p),
            Some(&g),
            std::slice::from_ref(&t),
        );
        let rows: Vec<&str> = s.lines().filter(|l| l.starts_with("| ")).collect();
        assert_eq!(
            rows[1..4]
                .iter()
                .map(|r| r.split(" | ").next().unwrap())
                .collect::<Vec<_>>(),
            ["| prometheus", "| gauntlet", "| thanos"]
        );
        assert!(
            rows[4].starts_with("| ratio target / baseline | 4.00x |"),
            "{s}"
        );
        assert!(rows[5].starts_with("| Gauntlet / thanos | 2.00x |"), "{s}");
        // Without Prometheus (`run store`): no baseline row, no baseline ratio.
        let s = render_sides("x", "q/s", "in", "cmd", None, Some(&g), &[t]);
        assert!(
            !s.contains("ratio target / baseline") && !s.contains("| prometheus"),
            "{s}"
        );
        assert!(s.contains("| Gauntlet / thanos | 2.00x |"), "{s}");
    }
}
