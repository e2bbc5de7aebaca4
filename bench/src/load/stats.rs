//! Latency percentiles and process figures read from `/proc`.

use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

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
        Ok(ProcStats {
            cpu_s,
            peak_rss_bytes: status_bytes(&status, "VmHWM:").unwrap_or(0),
            rss_bytes: status_bytes(&status, "VmRSS:").unwrap_or(0),
        })
    }
}

/// The `key` line of a `/proc/PID/status` text (`VmRSS:\t  1234 kB`), in bytes.
pub fn status_bytes(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// The resident set of a process over a phase, as [`RssSampler`] measured it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RssPeak {
    /// Largest `VmRSS` sampled, bytes.
    pub sampled_bytes: u64,
    /// Samples taken.
    pub samples: u64,
    /// `VmHWM` at the end, bytes, when it could be reset at the start: then it is the exact
    /// peak of the phase, spikes between samples included.
    pub hwm_bytes: Option<u64>,
}

impl RssPeak {
    /// The peak of the phase, bytes: the larger of the sampled peak and the reset `VmHWM`.
    pub fn peak_bytes(&self) -> u64 {
        self.sampled_bytes.max(self.hwm_bytes.unwrap_or(0))
    }
}

/// Samples a process's `VmRSS` on a thread of its own while a phase runs, so the peak covers
/// that phase alone (not the process's start, nor what runs after). It also resets the
/// process's `VmHWM` at the start (`/proc/PID/clear_refs`, value 5) and reads it at the end,
/// which catches spikes shorter than the sampling period.
#[derive(Debug)]
pub struct RssSampler {
    pid: String,
    hwm_reset: bool,
    stop: mpsc::Sender<()>,
    thread: JoinHandle<(u64, u64)>,
}

impl RssSampler {
    /// Starts sampling process `pid` every `every`.
    pub fn start(pid: u32, every: Duration) -> RssSampler {
        let pid = pid.to_string();
        let dir = Path::new("/proc").join(&pid);
        let hwm_reset = std::fs::write(dir.join("clear_refs"), "5").is_ok();
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let (mut peak, mut samples) = (0u64, 0u64);
            loop {
                if let Some(rss) = std::fs::read_to_string(dir.join("status"))
                    .ok()
                    .and_then(|s| status_bytes(&s, "VmRSS:"))
                {
                    peak = peak.max(rss);
                    samples += 1;
                }
                if !matches!(
                    stopped.recv_timeout(every),
                    Err(mpsc::RecvTimeoutError::Timeout)
                ) {
                    return (peak, samples);
                }
            }
        });
        RssSampler {
            pid,
            hwm_reset,
            stop,
            thread,
        }
    }

    /// Takes a last sample and stops.
    pub fn finish(self) -> RssPeak {
        let _ = self.stop.send(());
        let (sampled_bytes, samples) = self.thread.join().unwrap_or((0, 0));
        let hwm_bytes = self
            .hwm_reset
            .then(|| ProcStats::read(&self.pid).ok())
            .flatten()
            .map(|s| s.peak_rss_bytes);
        RssPeak {
            sampled_bytes,
            samples,
            hwm_bytes,
        }
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
    fn status_lines_are_read_in_bytes() {
        let status = "Name:\tgauntlet\nVmPeak:\t 2000 kB\nVmHWM:\t    1536 kB\nVmRSS:\t  1024 kB\nThreads:\t9\n";
        assert_eq!(status_bytes(status, "VmHWM:"), Some(1536 * 1024));
        assert_eq!(status_bytes(status, "VmRSS:"), Some(1024 * 1024));
        assert_eq!(status_bytes(status, "VmSwap:"), None);
        assert_eq!(status_bytes("VmRSS:\tlots kB\n", "VmRSS:"), None);
    }

    #[test]
    fn the_sampler_sees_memory_touched_during_the_phase() {
        let before = ProcStats::read("self").unwrap().rss_bytes;
        let s = RssSampler::start(std::process::id(), Duration::from_millis(5));
        let mut big = vec![0u8; 64 << 20];
        for i in (0..big.len()).step_by(4096) {
            big[i] = 1;
        }
        std::thread::sleep(Duration::from_millis(50));
        drop(std::hint::black_box(big));
        let p = s.finish();
        assert!(p.samples >= 2, "{p:?}");
        assert!(p.peak_bytes() >= before + (60 << 20), "{p:?}, {before}");
    }

    #[test]
    fn reads_own_process() {
        let s = ProcStats::read("self").unwrap();
        assert!(s.peak_rss_bytes > 0 && s.rss_bytes > 0);
        assert!(s.cpu_s >= 0.0);
    }
}
