//! Discovery files watched between refreshes: the ruler's query and Alertmanager discovery
//! files are looked at every [`LOOK_EVERY`] (the names the patterns match, and each file's
//! modification time and size), and a change (a file added, removed, rewritten or touched)
//! brings the refresh forward instead of waiting out its interval. Looking is a `stat` per
//! file; nothing is read until something changed.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

/// How often watched files are looked at.
pub const LOOK_EVERY: Duration = Duration::from_secs(1);

/// What the watched files looked like at one look: each file with its modification time and
/// size (`None` when it could not be read), sorted by path.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Stamps(Vec<(PathBuf, Option<(SystemTime, u64)>)>);

impl Stamps {
    /// The stamps of `files` now.
    pub fn of(files: impl IntoIterator<Item = PathBuf>) -> Self {
        let mut stamps: Vec<_> = files
            .into_iter()
            .map(|f| {
                let meta = std::fs::metadata(&f)
                    .ok()
                    .and_then(|m| Some((m.modified().ok()?, m.len())));
                (f, meta)
            })
            .collect();
        stamps.sort();
        stamps.dedup();
        Stamps(stamps)
    }
}

/// The files `patterns` (shell globs, as `file_sd_configs` and `--query.sd-files` take them)
/// match now; a pattern that is not a valid glob matches nothing.
pub fn glob_files(patterns: &[String]) -> Vec<PathBuf> {
    patterns
        .iter()
        .filter_map(|p| glob::glob(p).ok())
        .flat_map(|paths| paths.filter_map(Result::ok))
        .collect()
}

/// Calls `refresh` every `every`, and as soon as a look (every [`LOOK_EVERY`], or `every` if
/// shorter) finds the files `files` lists changed, forever; the caller's task owns the loop
/// and ends it by being dropped. The first refresh is the caller's.
pub async fn refresh_loop<Files, Refresh, Fut>(every: Duration, files: Files, mut refresh: Refresh)
where
    Files: Fn() -> Vec<PathBuf>,
    Refresh: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let every = every.max(Duration::from_millis(100));
    let mut seen = Stamps::of(files());
    let mut last = Instant::now();
    loop {
        tokio::time::sleep(LOOK_EVERY.min(every)).await;
        let now = Stamps::of(files());
        let changed = now != seen;
        if changed || last.elapsed() >= every {
            if changed {
                tracing::debug!("discovery files changed; looking again now");
            }
            seen = now;
            last = Instant::now();
            refresh().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn stamps_change_with_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.json");
        let pattern = vec![dir.path().join("*.json").display().to_string()];
        let look = || Stamps::of(glob_files(&pattern));
        let empty = look();
        std::fs::write(&a, "[]").unwrap();
        let one = look();
        assert_ne!(one, empty, "a file added");
        assert_eq!(look(), one, "nothing changed");
        std::fs::write(&a, "[{}]").unwrap();
        assert_ne!(look(), one, "rewritten");
        std::fs::write(dir.path().join("b.txt"), "x").unwrap();
        let two = look();
        std::fs::remove_file(&a).unwrap();
        assert_eq!(look(), empty, "removed again");
        assert_ne!(two, empty);
    }

    /// A change is picked up within about a look, long before the interval.
    #[tokio::test]
    async fn a_change_brings_the_refresh_forward() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("targets.json");
        std::fs::write(&file, "[]").unwrap();
        let count = Arc::new(AtomicUsize::new(0));
        let (f, c) = (file.clone(), count.clone());
        let task = tokio::spawn(refresh_loop(
            Duration::from_secs(3600),
            move || vec![f.clone()],
            move || {
                let c = c.clone();
                async move {
                    c.fetch_add(1, Ordering::SeqCst);
                }
            },
        ));
        tokio::time::sleep(LOOK_EVERY * 2).await;
        assert_eq!(count.load(Ordering::SeqCst), 0, "nothing changed");
        std::fs::write(&file, "[{\"targets\": [\"a:1\"]}]").unwrap();
        let deadline = Instant::now() + LOOK_EVERY * 5;
        while count.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            count.load(Ordering::SeqCst),
            1,
            "refreshed once after the change"
        );
        task.abort();
    }

    /// Without a change it refreshes every interval.
    #[tokio::test]
    async fn the_interval_still_refreshes() {
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        let task = tokio::spawn(refresh_loop(
            Duration::from_millis(200),
            Vec::new,
            move || {
                let c = c.clone();
                async move {
                    c.fetch_add(1, Ordering::SeqCst);
                }
            },
        ));
        tokio::time::sleep(Duration::from_millis(1100)).await;
        task.abort();
        let n = count.load(Ordering::SeqCst);
        assert!((3..=6).contains(&n), "{n} refreshes in 1.1 s at 200 ms");
    }
}
