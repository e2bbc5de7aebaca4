//! Latency percentiles and process figures read from `/proc`.

use std::path::Path;

/// Linux's `USER_HZ`: `/proc/PID/stat` counts CPU time in 1/100 s on every architecture
/// Gauntlet runs on.
const TICKS_PER_S: f64 = 100.0;

/// The `q`-quantile (0..=1) of `sorted`, by nearest rank; 0 for an empty slice.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Sorts `v` (no NaNs expected) and returns (p50, p99).
pub fn p50_p99(v: &mut [f64]) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (quantile(v, 0.50), quantile(v, 0.99))
}

/// CPU time and memory of a process, from `/proc/PID/stat` and `/proc/PID/status`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcStats {
    /// User + system CPU time, s.
    pub cpu_s: f64,
    /// Peak resident set size (`VmHWM`), bytes.
    pub peak_rss_bytes: u64,
    /// Current resident set size (`VmRSS`), bytes.
    pub rss_bytes: u64,
}

impl ProcStats {
    /// Reads the figures of process `pid` (`"self"` for this process).
    pub fn read(pid: &str) -> std::io::Result<ProcStats> {
        let dir = Path::new("/proc").join(pid);
        let stat = std::fs::read_to_string(dir.join("stat"))?;
        // The command name may hold spaces and parentheses; fields resume after the last ')'.
        let rest = stat
            .rfind(')')
            .map(|i| &stat[i + 1..])
            .ok_or_else(|| std::io::Error::other("malformed /proc stat"))?;
        let f: Vec<&str> = rest.split_whitespace().collect();
        // After the name, field 3 (state) is index 0, so utime (14) and stime (15) are 11, 12.
        let tick = |i: usize| -> std::io::Result<f64> {
            f.get(i)
                .and_then(|s| s.parse::<u64>().ok())
                .map(|v| v as f64 / TICKS_PER_S)
                .ok_or_else(|| std::io::Error::other("malformed /proc stat"))
        };
        let cpu_s = tick(11)? + tick(12)?;
        let status = std::fs::read_to_string(dir.join("status"))?;
        let kb = |key: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
                * 1024
        };
        Ok(ProcStats {
            cpu_s,
            peak_rss_bytes: kb("VmHWM:"),
            rss_bytes: kb("VmRSS:"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles() {
        let mut v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(p50_p99(&mut v), (50.0, 99.0));
        assert_eq!(quantile(&[], 0.5), 0.0);
        assert_eq!(quantile(&[3.0], 0.99), 3.0);
    }

    #[test]
    fn reads_own_process() {
        let s = ProcStats::read("self").unwrap();
        assert!(s.peak_rss_bytes > 0 && s.rss_bytes > 0);
        assert!(s.cpu_s >= 0.0);
    }
}
