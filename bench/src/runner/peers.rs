//! The other systems the runner measures beside Gauntlet and Prometheus: upstream Thanos's
//! components (every one from the one `thanos` binary) and VictoriaMetrics single-node, built by
//! `tests/peers/build.sh` into `.tools/peers/bin/`. Each is started on loopback with free ports
//! and its log under the work dir, as [`Server`]s, so it is measured as every side is.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::scenarios::READY_WAIT;
use super::server::{Server, free_port, version_of};
use super::{RunError, RunOptions};

/// Where `tests/peers/build.sh` puts the peers, relative to the repository root.
const PEERS_DIR: &str = ".tools/peers/bin";

/// How long a querier may take to see its StoreAPI endpoints healthy and holding data.
const ENDPOINT_WAIT: Duration = Duration::from_secs(120);

/// The peer binary `name` (`thanos`, `victoria-metrics`) when it is there: under
/// `$GAUNTLET_PEERS_BIN` when set (as the tests read it), else under `.tools/peers/bin/` of the
/// directory the runner is started in (the repository root).
pub fn default_bin(name: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("GAUNTLET_PEERS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(PEERS_DIR));
    let bin = dir.join(name);
    bin.is_file()
        .then(|| std::path::absolute(&bin).unwrap_or(bin))
}

/// `thanos 0.42.4` from `thanos --version` (`thanos, version 0.42.4 (branch: …)`).
pub fn thanos_version(bin: &Path) -> String {
    let v = version_of(bin);
    v.split_whitespace()
        .skip_while(|w| *w != "version")
        .nth(1)
        .map_or(v.clone(), |ver| format!("thanos {ver}"))
}

/// `thanos COMPONENT 0.42.4`: the name of a Thanos component in the tables.
pub fn thanos_name(bin: &Path, component: &str) -> String {
    let v = thanos_version(bin);
    match v.strip_prefix("thanos ") {
        Some(ver) => format!("thanos {component} {ver}"),
        None => format!("{v} {component}"),
    }
}

/// `victoria-metrics v1.151.0` from `victoria-metrics --version`
/// (`victoria-metrics-20261125-172806-tags-v1.151.0`).
pub fn victoria_version(bin: &Path) -> String {
    let v = version_of(bin);
    match v.rsplit_once("-tags-") {
        Some((_, tag)) => format!("victoria-metrics {tag}"),
        None => v,
    }
}

/// A Thanos component started by [`thanos`]: the server (its URL is the HTTP one) and its
/// gRPC address (`127.0.0.1:PORT`, empty for components without one).
#[derive(Debug)]
pub struct ThanosProcess {
    /// The process and its HTTP API.
    pub server: Server,
    /// `host:port` of its gRPC server, as `--endpoint` names it.
    pub grpc: String,
}

/// Starts `thanos COMPONENT ARGS… --http-address=… [--grpc-address=…]` on free loopback ports
/// (its log in `<work dir>/<dir>/log.txt`) and waits until `/-/ready` answers 200. The name in
/// the tables is `thanos COMPONENT VERSION`, with `label` after it when given.
pub fn thanos(
    o: &RunOptions,
    dir: &str,
    component: &str,
    label: &str,
    args: &[String],
) -> Result<ThanosProcess, RunError> {
    let bin = o
        .thanos_bin
        .as_ref()
        .ok_or_else(|| RunError::Start("no Thanos binary (--thanos-bin)".into()))?;
    let (http, grpc) = (free_port()?, free_port()?);
    let has_grpc = !matches!(component, "compact" | "query-frontend");
    let mut cmd = Command::new(bin);
    cmd.arg(component)
        .args(args)
        .arg(format!("--http-address=127.0.0.1:{http}"));
    if has_grpc {
        cmd.arg(format!("--grpc-address=127.0.0.1:{grpc}"));
    }
    let log_dir = o.work_dir.join(dir);
    std::fs::create_dir_all(&log_dir)?;
    let name = match label {
        "" => thanos_name(bin, component),
        l => format!("{} {l}", thanos_name(bin, component)),
    };
    let server = Server::start(
        &name,
        cmd,
        format!("http://127.0.0.1:{http}"),
        &log_dir.join("log.txt"),
        READY_WAIT,
    )?;
    Ok(ThanosProcess {
        server,
        grpc: if has_grpc {
            format!("127.0.0.1:{grpc}")
        } else {
            String::new()
        },
    })
}

/// `thanos query` over the StoreAPI `endpoints` (`host:port`) with `extra` flags, once it sees
/// every endpoint healthy and holding data (see [`wait_endpoints`]).
pub fn thanos_query(
    o: &RunOptions,
    dir: &str,
    label: &str,
    endpoints: &[String],
    extra: &[String],
) -> Result<Server, RunError> {
    let mut args: Vec<String> = endpoints
        .iter()
        .map(|e| format!("--endpoint={e}"))
        .collect();
    args.extend(extra.iter().cloned());
    let q = thanos(o, dir, "query", label, &args)?;
    wait_endpoints(&q.server, endpoints, ENDPOINT_WAIT)?;
    Ok(q.server)
}

/// Waits until the querier `q` (a Thanos or Gauntlet querier's HTTP API) lists every one of
/// `endpoints` on `/api/v1/stores` without an error and with a time range (a store that has
/// not loaded its blocks yet announces none), polling every 100 ms.
pub fn wait_endpoints(q: &Server, endpoints: &[String], wait: Duration) -> Result<(), RunError> {
    let deadline = Instant::now() + wait;
    loop {
        let healthy = q
            .get("/api/v1/stores")
            .ok()
            .filter(|(st, _)| *st == 200)
            .and_then(|(_, body)| serde_json::from_slice::<serde_json::Value>(&body).ok())
            .map(|v| healthy_endpoints(&v))
            .unwrap_or_default();
        if endpoints.iter().all(|e| healthy.contains(e)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(RunError::Start(format!(
                "{} did not see {endpoints:?} healthy within {wait:?} (healthy: {healthy:?}); see {}",
                q.name,
                q.log
                    .as_ref()
                    .map_or(String::new(), |l| l.display().to_string())
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The names of the endpoints an `/api/v1/stores` answer lists without an error and with data
/// (`minTime` ≤ `maxTime`), over every component type, sorted.
fn healthy_endpoints(v: &serde_json::Value) -> Vec<String> {
    let Some(types) = v["data"].as_object() else {
        return Vec::new();
    };
    let mut out: Vec<String> = types
        .values()
        .filter_map(|list| list.as_array())
        .flatten()
        .filter(|e| e["lastError"].is_null())
        .filter(|e| match (e["minTime"].as_i64(), e["maxTime"].as_i64()) {
            (Some(lo), Some(hi)) => lo <= hi,
            _ => false,
        })
        .filter_map(|e| e["name"].as_str().map(str::to_string))
        .collect();
    out.sort();
    out
}

/// Starts VictoriaMetrics single-node over `data` with `extra` flags on a free loopback port
/// (its log in `<work dir>/<dir>/log.txt`) and waits until `/-/ready` answers 200. Always
/// given: `-search.latencyOffset=0s` (fresh samples visible at once, as on the other sides)
/// and `-search.disableCache` (no rollup result cache: the other sides cache no answers).
pub fn victoria(
    o: &RunOptions,
    dir: &str,
    data: &Path,
    extra: &[String],
) -> Result<Server, RunError> {
    let bin = o
        .victoria_bin
        .as_ref()
        .ok_or_else(|| RunError::Start("no VictoriaMetrics binary".into()))?;
    let http = free_port()?;
    let log_dir = o.work_dir.join(dir);
    std::fs::create_dir_all(&log_dir)?;
    let mut cmd = Command::new(bin);
    cmd.arg(format!("-httpListenAddr=127.0.0.1:{http}"))
        .arg(format!("-storageDataPath={}", data.display()))
        .arg("-search.latencyOffset=0s")
        .arg("-search.disableCache")
        .args(extra);
    Server::start(
        &victoria_version(bin),
        cmd,
        format!("http://127.0.0.1:{http}"),
        &log_dir.join("log.txt"),
        READY_WAIT,
    )
}

/// Makes VictoriaMetrics write what it holds in memory to searchable parts
/// (`/internal/force_flush`), so counts and queries see every sample taken.
pub fn victoria_flush(vm: &Server) -> Result<(), RunError> {
    let (status, body) = vm.get("/internal/force_flush")?;
    if status != 200 {
        return Err(RunError::Other(format!(
            "{}: force_flush: status {status}: {}",
            vm.name,
            String::from_utf8_lossy(&body)
        )));
    }
    Ok(())
}

/// The series VictoriaMetrics holds, by its own count (`/api/v1/series/count`).
pub fn victoria_series(vm: &Server) -> Option<u64> {
    let (status, body) = vm.get("/api/v1/series/count").ok()?;
    if status != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
    v["data"][0].as_u64()
}

/// What a process run to its end cost.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Exited {
    /// Wall time from the spawn to the exit, s.
    pub wall_s: f64,
    /// User + system CPU time of the process (all its threads), s.
    pub cpu_s: f64,
    /// Peak resident set (`VmHWM`), bytes, as last read before the exit.
    pub peak_rss_bytes: u64,
    /// Whether it exited with status 0.
    pub success: bool,
}

/// How often [`run_to_exit`] reads a running process's `VmHWM`.
const HWM_EVERY: Duration = Duration::from_millis(20);

/// Runs `cmd` to its end (output to `log`) and measures it: wall time, CPU time from the
/// kernel's accounting of reaped children (`getrusage(RUSAGE_CHILDREN)` just before and just
/// after it is reaped, so exact), and peak RSS from its `VmHWM` read every 20 ms while it runs
/// (the high-water mark only grows, so only a peak in its last 20 ms could be missed). It is
/// killed when it runs past `limit`.
pub fn run_to_exit(mut cmd: Command, log: &Path, limit: Duration) -> Result<Exited, RunError> {
    use nix::sys::resource::{UsageWho, getrusage};
    let cpu = || -> f64 {
        getrusage(UsageWho::RUSAGE_CHILDREN).map_or(0.0, |u| {
            let s = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
            s(u.user_time()) + s(u.system_time())
        })
    };
    let out = std::fs::File::create(log)?;
    let t = Instant::now();
    let mut child = cmd
        .stdout(out.try_clone()?)
        .stderr(out)
        .stdin(std::process::Stdio::null())
        .spawn()
        .map_err(|e| RunError::Start(format!("{cmd:?}: {e}")))?;
    let status_path = Path::new("/proc")
        .join(child.id().to_string())
        .join("status");
    let mut peak = 0u64;
    loop {
        let before = cpu();
        if let Some(status) = child.try_wait()? {
            return Ok(Exited {
                wall_s: t.elapsed().as_secs_f64(),
                cpu_s: cpu() - before,
                peak_rss_bytes: peak,
                success: status.success(),
            });
        }
        if let Some(hwm) = std::fs::read_to_string(&status_path)
            .ok()
            .and_then(|s| crate::load::stats::status_bytes(&s, "VmHWM:"))
        {
            peak = peak.max(hwm);
        }
        if t.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(RunError::Other(format!(
                "{cmd:?} ran past {limit:?}; see {}",
                log.display()
            )));
        }
        std::thread::sleep(HWM_EVERY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_endpoints_have_no_error_and_a_time_range() {
        let v: serde_json::Value = serde_json::from_str(
            r#"{"status":"success","data":{
                "store":[
                    {"name":"127.0.0.1:1","lastError":null,"minTime":10,"maxTime":20},
                    {"name":"127.0.0.1:2","lastError":"rpc error","minTime":10,"maxTime":20},
                    {"name":"127.0.0.1:3","lastError":null,"minTime":9223372036854775807,"maxTime":-9223372036854775808}
                ],
                "receive":[{"name":"127.0.0.1:4","lastError":null,"minTime":0,"maxTime":0}]}}"#,
        )
        .unwrap();
        assert_eq!(healthy_endpoints(&v), ["127.0.0.1:1", "127.0.0.1:4"]);
        assert!(healthy_endpoints(&serde_json::json!({"status": "error"})).is_empty());
    }

    #[test]
    fn a_process_run_to_its_end_is_measured() {
        let dir = tempfile::tempdir().unwrap();
        // A second of CPU in a shell loop, bounded by its own clock.
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "end=$(( $(date +%s) + 2 )); while [ $(date +%s) -lt $end ]; do :; done",
        ]);
        let e = run_to_exit(cmd, &dir.path().join("log"), Duration::from_secs(30)).unwrap();
        assert!(e.success);
        assert!(e.wall_s >= 1.0 && e.wall_s < 30.0, "{e:?}");
        assert!(e.cpu_s > 0.5 && e.cpu_s <= e.wall_s + 0.5, "{e:?}");
        assert!(e.peak_rss_bytes > 0, "{e:?}");
        let fail = run_to_exit(
            Command::new("false"),
            &dir.path().join("log2"),
            Duration::from_secs(30),
        )
        .unwrap();
        assert!(!fail.success);
    }
}
