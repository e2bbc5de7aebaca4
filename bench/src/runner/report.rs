//! The row a scenario appends to `perf/RESULTS.md`: figures of each side, ratios, machine,
//! versions and the exact command.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
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
/// table of `results` (read when the file exists); with `append`, appends the section to
/// `results` and rewrites the scenario's rows of the current table, else prints those rows.
pub fn record(rec: &super::current::Recorded, results: &Path, append: bool) -> std::io::Result<()> {
    use super::current;
    let text = std::fs::read_to_string(results).unwrap_or_default();
    let date = rec
        .section
        .lines()
        .find_map(|l| l.strip_prefix("## ")?.split(" — ").next())
        .map_or_else(utc_now, str::to_string);
    let rows = current::rows_of(rec, &date, &current::commit());
    let last = current::rows(&text, rec.scenario);
    let mut section = rec.section.clone();
    let _ = write!(
        section,
        "\nAgainst the last recorded figures (the current table of `run {}` on {}):\n\n{}",
        rec.scenario,
        rec.input,
        current::compare(&last, &rows)
    );
    print!("{section}");
    if append {
        let mut out = current::update(&text, rec.scenario, &rows);
        out.push_str(&section);
        let mut f = std::fs::File::create(results)?;
        f.write_all(out.as_bytes())?;
    } else {
        println!(
            "\nRows for the current table (not written: --no-append):\n\n{}",
            current::render_table(&rows)
        );
    }
    Ok(())
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
    use super::*;

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
