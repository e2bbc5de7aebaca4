//! The receiver's tenants: one head and one directory of blocks each, under
//! `<tsdb.path>/<tenant>/`, opened at start for every directory found and on first write for
//! new tenants.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use gauntlet_engine::block::meta::{BlockMeta, ThanosMeta};
use gauntlet_engine::head::{Head, HeadOptions, HeadRuntime, ReplayReport};
use gauntlet_engine::labels::{Label, Labels};
use gauntlet_engine::query::{LocalBlocks, Merged, Queryable};

/// Why a tenant name is refused (answered with 400, as Thanos Receive answers it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tenant name not valid: {0:?}")]
pub struct InvalidTenant(pub String);

/// Checks a tenant name as Thanos does: it becomes a directory name, so it may not hold a
/// path separator or be `.`/`..`; it must also be non-empty and printable.
pub fn valid_tenant(name: &str) -> Result<(), InvalidTenant> {
    let bad = name.is_empty()
        || name == "."
        || name == ".."
        || name.len() > 255
        || name.contains('/')
        || name.contains('\\')
        || name.chars().any(char::is_control);
    if bad {
        let shown = gauntlet_engine::error::clip(name, 64).into_owned();
        return Err(InvalidTenant(shown));
    }
    Ok(())
}

/// One tenant: its head, its local blocks and its external labels.
#[derive(Debug)]
pub struct Tenant {
    /// The tenant's name (its directory).
    pub name: String,
    /// The head samples are appended to.
    pub head: Arc<Head>,
    /// The blocks cut so far that are still kept locally, reopened after every change.
    blocks: RwLock<Arc<LocalBlocks>>,
    /// The receiver's `--label`s plus the tenant label: every series this tenant serves
    /// carries them, and the blocks it uploads name them.
    pub external: Labels,
    /// Blocks uploaded so far (for `thanos.shipper.json`).
    pub shipped: Mutex<Vec<String>>,
    /// Requests refused for the tenant's series limit.
    pub series_limited_requests: AtomicU64,
    /// Samples appended (in order and out of order) as seen at recent moments, oldest first:
    /// what the ingest rate is measured over.
    ingested: Mutex<VecDeque<(Instant, u64)>>,
}

/// How far back the ingest rate looks.
const INGEST_RATE_WINDOW: Duration = Duration::from_secs(120);

impl Tenant {
    /// Notes the samples appended so far and returns the ingest rate (samples a second) over
    /// the last two minutes of such notes; `None` until two notes a second or more apart.
    pub fn ingest_rate(&self) -> Option<f64> {
        let stats = self.head.stats();
        let total = stats.appended + stats.appended_ooo;
        let now = Instant::now();
        let mut seen = self.ingested.lock().unwrap_or_else(|p| p.into_inner());
        if seen
            .back()
            .is_none_or(|(t, _)| now.duration_since(*t) >= Duration::from_secs(1))
        {
            seen.push_back((now, total));
        }
        while seen.len() > 2
            && seen
                .get(1)
                .is_some_and(|(t, _)| now.duration_since(*t) >= INGEST_RATE_WINDOW)
        {
            seen.pop_front();
        }
        let (first_t, first_n) = *seen.front()?;
        let secs = now.duration_since(first_t).as_secs_f64();
        (secs >= 1.0).then(|| total.saturating_sub(first_n) as f64 / secs)
    }

    /// The tenant's directory.
    pub fn dir(&self) -> &Path {
        self.head.dir()
    }

    /// The local blocks as last opened.
    pub fn local_blocks(&self) -> Arc<LocalBlocks> {
        self.blocks
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Head and local blocks read as one source.
    pub fn source(&self) -> Merged {
        let blocks: Arc<dyn Queryable> = self
            .blocks
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Merged::new(vec![blocks, self.head.clone() as Arc<dyn Queryable>])
    }

    /// The metas of the local blocks.
    pub fn block_metas(&self) -> Vec<BlockMeta> {
        self.blocks
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .blocks()
            .iter()
            .map(|b| b.meta().clone())
            .collect()
    }

    /// Reopens the local blocks after a cut or a deletion.
    pub fn reload_blocks(&self) -> gauntlet_engine::Result<()> {
        let fresh = Arc::new(LocalBlocks::open(self.dir())?);
        *self.blocks.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    /// The Thanos section of a block this tenant cuts.
    pub fn thanos_meta(&self) -> ThanosMeta {
        ThanosMeta {
            labels: self
                .external
                .iter()
                .map(|l| (l.name.to_string(), l.value.to_string()))
                .collect(),
            source: "receive".to_string(),
            ..ThanosMeta::default()
        }
    }

    /// Oldest sample served (blocks and head), ms.
    pub fn min_time(&self) -> i64 {
        let blocks = self
            .block_metas()
            .iter()
            .map(|m| m.min_time)
            .min()
            .unwrap_or(i64::MAX);
        blocks.min(self.head.stats().min_time)
    }
}

/// Every tenant of the receiver.
#[derive(Debug)]
pub struct Tenants {
    root: PathBuf,
    rt: Arc<HeadRuntime>,
    opts: HeadOptions,
    labels: Labels,
    tenant_label: String,
    map: RwLock<BTreeMap<String, Arc<Tenant>>>,
    /// Serialises opening tenants, so two first writes do not both replay one WAL.
    opening: Mutex<()>,
}

impl Tenants {
    /// The tenants under `root`, each with the receiver's `labels` plus
    /// `tenant_label=<name>`; none is opened yet (see [`Tenants::open_existing`]).
    pub fn new(
        root: &Path,
        rt: Arc<HeadRuntime>,
        opts: HeadOptions,
        labels: Labels,
        tenant_label: String,
    ) -> Self {
        Tenants {
            root: root.to_path_buf(),
            rt,
            opts,
            labels,
            tenant_label,
            map: RwLock::new(BTreeMap::new()),
            opening: Mutex::new(()),
        }
    }

    /// Opens every tenant directory under the root, replaying their WALs. Blocking.
    pub fn open_existing(&self) -> anyhow::Result<Vec<(String, ReplayReport)>> {
        std::fs::create_dir_all(&self.root)?;
        let mut out = Vec::new();
        let mut names: Vec<String> = std::fs::read_dir(&self.root)?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| valid_tenant(n).is_ok() && !n.starts_with('.'))
            .collect();
        names.sort();
        for name in names {
            let (_, rep) = self.open(&name)?;
            out.push((name, rep));
        }
        Ok(out)
    }

    /// The tenant named `name`, opened (and its WAL replayed) if it is not yet. Blocking on
    /// first use of a tenant.
    pub fn get_or_open(&self, name: &str) -> anyhow::Result<Arc<Tenant>> {
        if let Some(t) = self.get(name) {
            return Ok(t);
        }
        Ok(self.open(name)?.0)
    }

    /// The tenant named `name` if it is open.
    pub fn get(&self, name: &str) -> Option<Arc<Tenant>> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    fn open(&self, name: &str) -> anyhow::Result<(Arc<Tenant>, ReplayReport)> {
        let _guard = self.opening.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = self.get(name) {
            return Ok((t, ReplayReport::default()));
        }
        let dir = self.root.join(name);
        let (head, rep) = Head::open(self.rt.clone(), &dir, self.opts.clone())?;
        let mut ext: Vec<Label> = self.labels.iter().cloned().collect();
        ext.retain(|l| l.name != self.tenant_label.as_str());
        ext.push(Label::new(self.tenant_label.as_str(), name));
        ext.sort();
        let shipped = super::ship::read_shipper_file(&dir);
        let t = Arc::new(Tenant {
            name: name.to_string(),
            head: Arc::new(head),
            blocks: RwLock::new(Arc::new(LocalBlocks::open(&dir)?)),
            external: Labels::from_sorted(ext),
            shipped: Mutex::new(shipped),
            series_limited_requests: AtomicU64::new(0),
            ingested: Mutex::new(VecDeque::new()),
        });
        tracing::info!(
            tenant = name,
            dir = %dir.display(),
            series = rep.series,
            samples = rep.samples,
            wbl_samples = rep.wbl_samples,
            dropped = rep.dropped,
            repaired = rep.repaired.as_deref().unwrap_or("no"),
            wbl_repaired = rep.wbl_repaired.as_deref().unwrap_or("no"),
            replay_ms = rep.millis,
            "tenant opened"
        );
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), t.clone());
        Ok((t, rep))
    }

    /// Every open tenant, by name.
    pub fn all(&self) -> Vec<Arc<Tenant>> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Requests refused for series limits, all tenants.
    pub fn series_limited_requests(&self) -> u64 {
        self.all()
            .iter()
            .map(|t| t.series_limited_requests.load(Relaxed))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::valid_tenant;

    #[test]
    fn tenant_names_that_are_not_one_directory_are_refused() {
        for ok in ["default-tenant", "team_a", "a.b", "Ünïcode"] {
            assert!(valid_tenant(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "../x", "/etc", "a\\b", "a\nb"] {
            assert!(valid_tenant(bad).is_err(), "{bad:?}");
        }
    }
}
