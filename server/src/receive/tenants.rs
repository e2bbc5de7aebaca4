//! The receiver's tenants: one head and one directory of blocks each under the root
//! (`--tsdb.path`; `<data-dir>/.gauntlet/receive` inside `gauntlet all`), every directory found
//! opened at start and new tenants on their first write.
//!
//! Any UTF-8 name of 1 to [`MAX_TENANT_BYTES`] bytes is a tenant, as Thanos takes any string;
//! [`requested_tenant`] is the one rule, for the HTTP header, forwarded gRPC writes and start
//! alike. A name becomes a directory name ([`dir_name`]): a name that is already one safe path
//! component (not hidden, no `/`, `\`, `%` or control character, at most [`PLAIN_DIR_BYTES`]
//! bytes) is its own directory name, as in a Thanos receiver's directory; any other name is
//! percent-escaped (`%XX` per byte), and past [`PLAIN_DIR_BYTES`] cut and ended by
//! `%h<sha256 hex>` of the whole name, so it can never be the name of another tenant's
//! directory. Every directory Gauntlet creates holds the name in a file ([`NAME_FILE`]),
//! written durably before the WAL; at start a directory's tenant is that file's content, or
//! the directory's own name when there is none (directories of Thanos and of earlier Gauntlet
//! versions). The map from names to directories is kept in memory: nothing else derives a
//! directory from a name.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{ErrorKind, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use gauntlet_engine::block::meta::{BlockMeta, ThanosMeta};
use gauntlet_engine::head::{Head, HeadOptions, HeadRuntime, ReplayReport};
use gauntlet_engine::labels::{Label, Labels};
use gauntlet_engine::query::{LocalBlocks, Merged, Queryable};
use sha2::{Digest, Sha256};

/// Longest tenant name taken, bytes: far past any name in use, short enough that a header or
/// label of it costs nothing.
pub const MAX_TENANT_BYTES: usize = 1024;

/// Longest directory name made from a tenant name, bytes (file systems allow 255).
pub const PLAIN_DIR_BYTES: usize = 200;

/// Bytes of an escaped name kept before `%h<sha256 hex>` when the whole is too long.
const HASHED_PREFIX_BYTES: usize = PLAIN_DIR_BYTES - 2 - 64;

/// Most directories tried for one new tenant whose directory name is taken.
const MAX_DIR_TRIES: usize = 1000;

/// The file in a tenant's directory holding its name (UTF-8, no newline).
pub const NAME_FILE: &str = "tenant-name";

/// [`NAME_FILE`] being written.
const NAME_FILE_TMP: &str = "tenant-name.tmp";

/// Why a tenant name is refused: answered with 400 over HTTP, `InvalidArgument` over gRPC.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidTenant {
    /// The name's bytes are not UTF-8, so it cannot be a label value; the client should send
    /// it UTF-8-encoded.
    #[error("tenant name is not UTF-8")]
    NotUtf8,
    /// The name is empty and so is the default tenant (`--receive.default-tenant-id`).
    #[error("tenant name is empty")]
    Empty,
    /// The name is longer than [`MAX_TENANT_BYTES`]; the client should use a shorter one.
    #[error("tenant name is {0} bytes, over the {MAX_TENANT_BYTES} allowed")]
    TooLong(usize),
}

/// Whether `name` may be a tenant: 1 to [`MAX_TENANT_BYTES`] bytes. Any character is allowed.
pub fn valid_tenant(name: &str) -> Result<(), InvalidTenant> {
    match name.len() {
        0 => Err(InvalidTenant::Empty),
        n if n > MAX_TENANT_BYTES => Err(InvalidTenant::TooLong(n)),
        _ => Ok(()),
    }
}

/// The tenant a write names: `value` (the tenant header's bytes, or a forwarded write's
/// tenant) decoded as UTF-8, or `default` when it is missing or empty, as Thanos does.
pub fn requested_tenant(value: Option<&[u8]>, default: &str) -> Result<String, InvalidTenant> {
    let name = match value {
        None | Some(b"") => default,
        Some(bytes) => std::str::from_utf8(bytes).map_err(|_| InvalidTenant::NotUtf8)?,
    };
    valid_tenant(name)?;
    Ok(name.to_string())
}

/// Characters a directory name made from a tenant name never holds as they are.
fn escaped_char(c: char) -> bool {
    c == '%' || c == '/' || c == '\\' || c.is_control()
}

/// Whether `name` is its own directory name.
fn plain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= PLAIN_DIR_BYTES
        && !name.starts_with('.')
        && !name.chars().any(escaped_char)
}

/// The directory name first offered to the tenant `name`: `name` itself when it is one safe
/// path component of at most [`PLAIN_DIR_BYTES`] bytes; else `name` with `%`, `/`, `\`, control
/// characters and a leading `.` escaped as `%XX` per byte, and when that is longer than
/// [`PLAIN_DIR_BYTES`], its first bytes followed by `%h` and the SHA-256 of `name` in hex.
/// Distinct names give distinct directory names: plain ones hold no `%`, escaped ones hold `%`
/// followed by two upper-case hex digits only, hashed ones hold `%h`.
pub fn dir_name(name: &str) -> String {
    if plain(name) {
        return name.to_string();
    }
    if name.is_empty() {
        // Never a tenant; a lone `%` is no other name's directory.
        return "%".to_string();
    }
    let mut out = String::with_capacity(name.len() + 8);
    for (i, c) in name.char_indices() {
        if escaped_char(c) || (i == 0 && c == '.') {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "%{b:02X}");
            }
        } else {
            out.push(c);
        }
    }
    if out.len() <= PLAIN_DIR_BYTES {
        return out;
    }
    let mut cut = HASHED_PREFIX_BYTES;
    while !out.is_char_boundary(cut) {
        cut -= 1;
    }
    // Not inside an escape: every `%` of `out` starts one of three bytes.
    if let Some(p) = out[..cut].rfind('%')
        && p + 3 > cut
    {
        cut = p;
    }
    format!("{}%h{:x}", &out[..cut], Sha256::digest(name.as_bytes()))
}

/// A directory `create_dir` left behind when the tenant's name file was not yet in place: it
/// holds nothing, or only the name file being written, so no sample was ever taken there.
fn unfinished(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .filter_map(Result::ok)
            .all(|e| e.file_name() == NAME_FILE_TMP)
    }) && !dir.join(NAME_FILE).exists()
}

/// Writes `name` into `dir`'s [`NAME_FILE`] through a temporary file, syncing file and
/// directory, so after a crash the file is either whole or missing.
fn write_name_file(dir: &Path, name: &str) -> std::io::Result<()> {
    let tmp = dir.join(NAME_FILE_TMP);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(name.as_bytes())?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, dir.join(NAME_FILE))?;
    sync_dir(dir)
}

/// Flushes a directory's entries (new directories, renamed files) to disk.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// One tenant: its head, its local blocks and its external labels.
#[derive(Debug)]
pub struct Tenant {
    /// The tenant's name as writes give it: the value of its tenant label.
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
    /// The `source` its blocks' Thanos section names (`receive`, or `ruler`).
    source: &'static str,
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
            source: self.source.to_string(),
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
    source: &'static str,
    map: RwLock<BTreeMap<String, Arc<Tenant>>>,
    /// Serialises opening tenants, so two first writes do not both replay one WAL or claim
    /// one directory.
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
            source: "receive",
            map: RwLock::new(BTreeMap::new()),
            opening: Mutex::new(()),
        }
    }

    /// These tenants for another role that keeps its results in a head (the ruler): their
    /// blocks name `source`, and with an empty tenant label their series carry only the
    /// role's own external labels.
    pub fn for_role(mut self, source: &'static str) -> Self {
        self.source = source;
        self
    }

    /// The receive role's memory budget, which the tenants' heads and the reads and writes of
    /// them reserve from.
    pub fn budget(&self) -> &Arc<gauntlet_engine::budget::MemoryBudget> {
        &self.opts.budget
    }

    /// Opens every tenant directory under the root, replaying their WALs. Every directory is
    /// a tenant, named by its [`NAME_FILE`] or else by its own name; directories whose name is
    /// no valid tenant name (not UTF-8) are left alone with a warning, as are empty ones.
    /// Blocking.
    pub fn open_existing(&self) -> anyhow::Result<Vec<(String, ReplayReport)>> {
        std::fs::create_dir_all(&self.root)
            .with_context(|| format!("creating {}", self.root.display()))?;
        let mut found: BTreeMap<String, PathBuf> = BTreeMap::new();
        let entries = std::fs::read_dir(&self.root)
            .with_context(|| format!("listing {}", self.root.display()))?;
        for entry in entries {
            let dir = entry
                .with_context(|| format!("listing {}", self.root.display()))?
                .path();
            if !dir.is_dir() {
                continue;
            }
            let Some(name) = existing_name(&dir)? else {
                continue;
            };
            if let Some(other) = found.insert(name.clone(), dir.clone()) {
                anyhow::bail!(
                    "{} and {} both hold tenant {name:?}; move one of them out of {}",
                    other.display(),
                    dir.display(),
                    self.root.display()
                );
            }
        }
        let mut out = Vec::new();
        for (name, dir) in found {
            let _guard = self.opening.lock().unwrap_or_else(|p| p.into_inner());
            let (_, rep) = self.open_in(&name, dir)?;
            out.push((name, rep));
        }
        Ok(out)
    }

    /// The tenant named `name`, opened (and its WAL replayed, or its directory made) if it is
    /// not yet. Blocking on first use of a tenant.
    pub fn get_or_open(&self, name: &str) -> anyhow::Result<Arc<Tenant>> {
        if let Some(t) = self.get(name) {
            return Ok(t);
        }
        valid_tenant(name)?;
        let _guard = self.opening.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = self.get(name) {
            return Ok(t);
        }
        let dir = self.new_dir(name)?;
        Ok(self.open_in(name, dir)?.0)
    }

    /// The tenant named `name` if it is open.
    pub fn get(&self, name: &str) -> Option<Arc<Tenant>> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Makes the directory of the new tenant `name`, its name file in it: [`dir_name`], or when
    /// another tenant (or anything else) has that, `<dir_name>%c<k>` for the first free `k`.
    /// Called with `opening` held.
    fn new_dir(&self, name: &str) -> anyhow::Result<PathBuf> {
        let taken: BTreeSet<OsString> = self
            .all()
            .iter()
            .filter_map(|t| t.dir().file_name().map(|n| n.to_os_string()))
            .collect();
        let first = dir_name(name);
        for k in 0..MAX_DIR_TRIES {
            let candidate = if k == 0 {
                first.clone()
            } else {
                format!("{first}%c{k}")
            };
            if taken.contains(std::ffi::OsStr::new(&candidate)) {
                continue;
            }
            let dir = self.root.join(&candidate);
            match std::fs::create_dir(&dir) {
                Ok(()) => {}
                // What a crash between making the directory and naming it left.
                Err(e) if e.kind() == ErrorKind::AlreadyExists && unfinished(&dir) => {}
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(e).with_context(|| format!("creating {}", dir.display()));
                }
            }
            write_name_file(&dir, name)
                .with_context(|| format!("writing {}", dir.join(NAME_FILE).display()))?;
            sync_dir(&self.root).with_context(|| format!("syncing {}", self.root.display()))?;
            if k > 0 {
                tracing::info!(tenant = name, dir = %dir.display(), "the tenant's directory name was taken; its data goes to another");
            }
            return Ok(dir);
        }
        anyhow::bail!(
            "no free directory for tenant {:?} under {} after {MAX_DIR_TRIES} tries",
            gauntlet_engine::error::clip(name, 64),
            self.root.display()
        )
    }

    /// The external labels tenant `name` serves its series with: the receiver's `--label`s
    /// plus the tenant label.
    pub fn external_labels(&self, name: &str) -> Labels {
        let mut ext: Vec<Label> = self.labels.iter().cloned().collect();
        if !self.tenant_label.is_empty() {
            ext.retain(|l| l.name != self.tenant_label.as_str());
            ext.push(Label::new(self.tenant_label.as_str(), name));
        }
        ext.sort();
        Labels::from_sorted(ext)
    }

    /// Opens the tenant `name` in `dir`. Called with `opening` held.
    fn open_in(&self, name: &str, dir: PathBuf) -> anyhow::Result<(Arc<Tenant>, ReplayReport)> {
        let (head, rep) = Head::open(self.rt.clone(), &dir, self.opts.clone())?;
        let shipped = super::ship::read_shipper_file(&dir);
        let t = Arc::new(Tenant {
            name: name.to_string(),
            head: Arc::new(head),
            blocks: RwLock::new(Arc::new(LocalBlocks::open(&dir)?)),
            external: self.external_labels(name),
            shipped: Mutex::new(shipped),
            series_limited_requests: AtomicU64::new(0),
            source: self.source,
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

/// The tenant an existing directory holds: its [`NAME_FILE`]'s content, else the directory's
/// own name; `None` for a directory that holds no tenant (empty, or named by no valid tenant
/// name).
fn existing_name(dir: &Path) -> anyhow::Result<Option<String>> {
    let file = dir.join(NAME_FILE);
    match std::fs::read(&file) {
        Ok(bytes) => {
            let name = String::from_utf8(bytes)
                .map_err(|_| InvalidTenant::NotUtf8)
                .and_then(|n| valid_tenant(&n).map(|()| n))
                .with_context(|| format!("reading the tenant's name in {}", file.display()))?;
            Ok(Some(name))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            if unfinished(dir) {
                tracing::info!(dir = %dir.display(), "an empty directory is no tenant; left alone");
                return Ok(None);
            }
            match dir.file_name().map(|n| n.to_str()) {
                Some(Some(name)) if valid_tenant(name).is_ok() => Ok(Some(name.to_string())),
                _ => {
                    tracing::warn!(dir = %dir.display(), "the directory's name is not a tenant name (not UTF-8); its data is not served");
                    Ok(None)
                }
            }
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", file.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use gauntlet_engine::shard::{IoChoice, RuntimeConfig};
    use proptest::prelude::*;

    /// `dir`'s escapes undone; `None` for a hashed or collision directory name.
    fn unescape(dir: &str) -> Option<String> {
        let mut bytes = Vec::new();
        let mut rest = dir.as_bytes();
        while let Some((&b, tail)) = rest.split_first() {
            if b == b'%' {
                let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
                if !hex
                    .bytes()
                    .all(|h| h.is_ascii_digit() || (b'A'..=b'F').contains(&h))
                {
                    return None;
                }
                bytes.push(u8::from_str_radix(hex, 16).ok()?);
                rest = &tail[2..];
            } else {
                bytes.push(b);
                rest = tail;
            }
        }
        String::from_utf8(bytes).ok()
    }

    /// One path component that is not hidden: what every directory under the root must be.
    fn one_safe_component(dir: &str) -> bool {
        !dir.is_empty()
            && dir.len() <= PLAIN_DIR_BYTES
            && !dir.starts_with('.')
            && !dir.chars().any(|c| c == '/' || c == '\\' || c.is_control())
            && Path::new(dir).components().count() == 1
    }

    #[test]
    fn the_valid_set_is_every_utf8_name_of_1_to_1024_bytes() {
        let long = "x".repeat(MAX_TENANT_BYTES);
        for ok in [
            "default-tenant",
            ".",
            "..",
            ".*",
            "a/b",
            "a\0b",
            "%2E",
            long.as_str(),
        ] {
            assert_eq!(valid_tenant(ok), Ok(()), "{ok:?}");
        }
        assert_eq!(valid_tenant(""), Err(InvalidTenant::Empty));
        let over = "x".repeat(MAX_TENANT_BYTES + 1);
        assert_eq!(valid_tenant(&over), Err(InvalidTenant::TooLong(1025)));
        assert!(InvalidTenant::TooLong(1025).to_string().contains("1024"));
    }

    #[test]
    fn a_missing_or_empty_name_is_the_default_tenant() {
        assert_eq!(requested_tenant(None, "dflt").unwrap(), "dflt");
        assert_eq!(requested_tenant(Some(b""), "dflt").unwrap(), "dflt");
        assert_eq!(
            requested_tenant(Some("Ünïcode ☃".as_bytes()), "dflt").unwrap(),
            "Ünïcode ☃"
        );
        assert_eq!(
            requested_tenant(Some(b"\xff\xfe"), "dflt"),
            Err(InvalidTenant::NotUtf8)
        );
        assert_eq!(requested_tenant(None, ""), Err(InvalidTenant::Empty));
    }

    #[test]
    fn safe_names_keep_their_name_and_others_are_escaped() {
        for plain in [
            "default-tenant",
            "a b",
            "a|b",
            "Ünïcode ☃",
            "a.b",
            "a..",
            "*",
        ] {
            assert_eq!(dir_name(plain), plain);
        }
        for (name, dir) in [
            (".", "%2E"),
            ("..", "%2E."),
            (".*", "%2E*"),
            (".hidden", "%2Ehidden"),
            ("a/b", "a%2Fb"),
            ("a\\b", "a%5Cb"),
            ("../../etc", "%2E.%2F..%2Fetc"),
            ("%2E", "%252E"),
            ("a\nb", "a%0Ab"),
            ("\u{85}", "%C2%85"),
        ] {
            assert_eq!(dir_name(name), dir, "{name:?}");
        }
        let long = "é".repeat(150);
        let dir = dir_name(&long);
        assert!(one_safe_component(&dir), "{dir}");
        assert!(
            dir.starts_with(&"é".repeat(HASHED_PREFIX_BYTES / 2)),
            "{dir}"
        );
        assert!(dir.contains("%h"), "{dir}");
        // A cut never splits an escape.
        let slashes = "/".repeat(100);
        let dir = dir_name(&slashes);
        assert!(one_safe_component(&dir), "{dir}");
        assert!(dir.ends_with(&format!("%2F%h{:x}", Sha256::digest(slashes.as_bytes()))));
    }

    /// Names drawn mostly from the characters the mapping treats specially.
    fn awkward_name() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just(".".to_string()),
            Just("/".to_string()),
            Just("\\".to_string()),
            Just("%".to_string()),
            Just("%2E".to_string()),
            Just("%h".to_string()),
            Just("%c1".to_string()),
            Just("\0".to_string()),
            Just(" ".to_string()),
            Just("☃".to_string()),
            "[a-z]{1,3}",
            any::<char>().prop_map(String::from),
        ];
        prop_oneof![
            proptest::collection::vec(piece.clone(), 1..12).prop_map(|p| p.concat()),
            proptest::collection::vec(piece, 60..200).prop_map(|p| p.concat()),
        ]
    }

    proptest! {
        #[test]
        fn every_directory_name_is_one_safe_component_and_names_its_tenant(name in awkward_name()) {
            let dir = dir_name(&name);
            prop_assert!(one_safe_component(&dir), "{:?} -> {:?}", name, dir);
            if dir.contains("%h") {
                prop_assert!(name.len() > PLAIN_DIR_BYTES / 3);
            } else {
                prop_assert_eq!(unescape(&dir), Some(name.clone()));
            }
        }

        #[test]
        fn distinct_names_get_distinct_directories(a in awkward_name(), b in awkward_name()) {
            prop_assume!(a != b);
            prop_assert_ne!(dir_name(&a), dir_name(&b));
        }

        #[test]
        fn a_name_and_its_escape_differ(a in awkward_name()) {
            let dir = dir_name(&a);
            prop_assume!(dir != a);
            prop_assert_ne!(dir_name(&dir), dir);
        }
    }

    fn tenants(root: &Path) -> Tenants {
        let rt = HeadRuntime::start(&RuntimeConfig {
            cores: 1,
            io: IoChoice::Pread,
            pin: false,
            name: "test-tenants".into(),
        })
        .unwrap();
        Tenants::new(
            root,
            rt,
            HeadOptions::default(),
            Labels::default(),
            "tenant_id".into(),
        )
    }

    /// Tenant name → directory name, of every open tenant.
    fn layout(t: &Tenants) -> BTreeMap<String, String> {
        t.all()
            .iter()
            .map(|t| {
                let dir = t.dir().file_name().unwrap().to_str().unwrap().to_string();
                (t.name.clone(), dir)
            })
            .collect()
    }

    #[test]
    fn every_name_reopens_from_its_own_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let names = [
            ".",
            "..",
            ".*",
            "a/b",
            "../../etc",
            "%2E",
            "a b",
            "Ünïcode ☃",
        ];
        let long = "t".repeat(300);
        let first = tenants(&root);
        first.open_existing().unwrap();
        for n in names.iter().copied().chain([long.as_str()]) {
            let t = first.get_or_open(n).unwrap();
            assert_eq!(t.dir().parent().unwrap(), root, "{n:?}");
            assert_eq!(
                std::fs::read(t.dir().join(NAME_FILE)).unwrap(),
                n.as_bytes()
            );
            assert!(t.external.get("tenant_id") == Some(n), "{n:?}");
        }
        let before = layout(&first);
        assert_eq!(before.len(), names.len() + 1);
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), names.len() + 1);
        // Only the tenant directories, nothing beside the root.
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
        let again = tenants(&root);
        let opened: Vec<String> = again
            .open_existing()
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(opened, before.keys().cloned().collect::<Vec<_>>());
        assert_eq!(layout(&again), before);
    }

    #[test]
    fn old_directories_keep_their_names_and_new_names_step_around_them() {
        let tmp = tempfile::tempdir().unwrap();
        // As earlier versions left them: named by the tenant, no name file, a WAL inside.
        for old in [".*", "%2E", "a%2Fb"] {
            std::fs::create_dir_all(tmp.path().join(old).join("wal")).unwrap();
        }
        let first = tenants(tmp.path());
        first.open_existing().unwrap();
        // "." escapes to the old tenant "%2E"'s directory, "a/b" to "a%2Fb"'s.
        let dot = first.get_or_open(".").unwrap();
        assert_eq!(dot.dir(), tmp.path().join("%2E%c1"));
        let slash = first.get_or_open("a/b").unwrap();
        assert_eq!(slash.dir(), tmp.path().join("a%2Fb%c1"));
        let want: BTreeMap<String, String> = [
            (".*", ".*"),
            ("%2E", "%2E"),
            ("a%2Fb", "a%2Fb"),
            (".", "%2E%c1"),
            ("a/b", "a%2Fb%c1"),
        ]
        .into_iter()
        .map(|(n, d)| (n.to_string(), d.to_string()))
        .collect();
        assert_eq!(layout(&first), want);
        let again = tenants(tmp.path());
        again.open_existing().unwrap();
        assert_eq!(layout(&again), want);
    }

    #[test]
    fn a_directory_left_before_its_name_file_is_no_tenant_and_is_taken_again() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("%2E")).unwrap();
        std::fs::write(tmp.path().join("%2E").join(NAME_FILE_TMP), b".").unwrap();
        let t = tenants(tmp.path());
        assert!(t.open_existing().unwrap().is_empty());
        assert_eq!(t.get_or_open(".").unwrap().dir(), tmp.path().join("%2E"));
    }

    #[test]
    fn names_no_tenant_can_have_are_refused_at_start_too() {
        use std::os::unix::ffi::OsStrExt as _;
        let tmp = tempfile::tempdir().unwrap();
        // Not UTF-8: left alone, with a warning.
        let raw = tmp.path().join(std::ffi::OsStr::from_bytes(b"\xffold"));
        std::fs::create_dir_all(raw.join("wal")).unwrap();
        let t = tenants(tmp.path());
        assert!(t.open_existing().unwrap().is_empty());
        // A name file of an invalid name stops the start, naming the file.
        let bad = tmp.path().join("bad");
        std::fs::create_dir(&bad).unwrap();
        std::fs::write(bad.join(NAME_FILE), "x".repeat(MAX_TENANT_BYTES + 1)).unwrap();
        let err = format!("{:#}", tenants(tmp.path()).open_existing().unwrap_err());
        assert!(
            err.contains(NAME_FILE) && err.contains("1025 bytes"),
            "{err}"
        );
        // So do two directories holding one tenant.
        std::fs::write(bad.join(NAME_FILE), "twice").unwrap();
        std::fs::create_dir_all(tmp.path().join("twice").join("wal")).unwrap();
        let err = format!("{:#}", tenants(tmp.path()).open_existing().unwrap_err());
        assert!(err.contains("both hold tenant \"twice\""), "{err}");
    }
}
