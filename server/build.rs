//! Builds the web UI in `web/` with npm and writes the manifest `src/http/ui.rs` embeds, and
//! records what the binary was built from (git revision and branch, build time, compiler) for
//! `/api/v1/status/buildinfo` and `gauntlet_build_info`.
//!
//! Vite writes the built files into `$OUT_DIR/web-dist`, never into the source tree. npm runs
//! only when the UI's sources changed: a hash of them is kept beside the built files
//! (`$OUT_DIR/web-dist/.gauntlet-stamp`), and each build is kept under the target directory
//! by that hash (`target/web-ui/<hash>/`), so another profile, clippy or the tests of the same
//! sources copy it instead of running npm again. The installed packages stay in
//! `web/node_modules`, with a hash of `package-lock.json` beside them, for `npm ci` to run only
//! when it changed.
//!
//! Without npm the build stops and says what to install. `GAUNTLET_WEB_UI=skip` builds a
//! binary whose pages say the UI was not built, for machines that cannot run npm.

#![allow(
    clippy::expect_used,
    reason = "a build script fails by panicking; cargo shows the message with the build error"
)]

use std::collections::hash_map::DefaultHasher;
use std::fmt::Write as _;
use std::fs;
use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Inputs of the UI build; a change to any of them rebuilds it.
const INPUTS: [&str; 6] = [
    "src",
    "index.html",
    "package.json",
    "package-lock.json",
    "tsconfig.json",
    "vite.config.ts",
];

const STAMP: &str = ".gauntlet-stamp";

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    build_info(&manifest_dir);
    let web = manifest_dir.join("../web");
    let web = web.canonicalize().unwrap_or(web);
    for input in INPUTS {
        println!("cargo:rerun-if-changed={}", web.join(input).display());
    }
    println!("cargo:rerun-if-env-changed=GAUNTLET_WEB_UI");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join("web_ui.rs");

    if std::env::var("GAUNTLET_WEB_UI").is_ok_and(|v| v == "skip") {
        println!("cargo:warning=GAUNTLET_WEB_UI=skip: the web UI is not built; its pages say so");
        write(
            &out,
            "pub const BUILT: bool = false;\npub static FILES: &[File] = &[];\n",
        );
        return;
    }

    let out_dir = out.parent().expect("OUT_DIR is a directory");
    let dist = out_dir.join("web-dist");
    {
        // Two builds at once (two target directories, sharing web/node_modules) take turns.
        let lock = fs::File::create(web.join(".build.lock"))
            .unwrap_or_else(|e| fail(&format!("cannot create {}/.build.lock: {e}", web.display())));
        lock.lock()
            .unwrap_or_else(|e| fail(&format!("cannot lock web/.build.lock: {e}")));
        build(&web, &dist, &cache_dir(out_dir));
    }

    let mut files = Vec::new();
    collect(&dist, &dist, &mut files);
    files.sort();
    if !files.iter().any(|(rel, _)| rel == "index.html") {
        fail(&format!(
            "the web UI build produced no {}/index.html",
            dist.display()
        ));
    }
    let gz_dir = out.with_file_name("web_ui_gz");
    let mut code = String::from("pub const BUILT: bool = true;\npub static FILES: &[File] = &[\n");
    for (rel, path) in &files {
        let gzip = match gzipped(path, &gz_dir.join(rel)) {
            Some(gz) => format!("Some(include_bytes!({:?}))", gz.display()),
            None => "None".to_string(),
        };
        writeln!(
            code,
            "    File {{ path: {rel:?}, bytes: include_bytes!({path:?}), gzip: {gzip} }},",
            path = path.display()
        )
        .expect("writing to a String");
    }
    code.push_str("];\n");
    write(&out, &code);
}

/// Sets `GAUNTLET_REVISION`, `GAUNTLET_BRANCH`, `GAUNTLET_BUILD_DATE` and
/// `GAUNTLET_RUST_VERSION` for the crate: empty where unknown (a checkout without git). The
/// date is `SOURCE_DATE_EPOCH`'s when set, else the commit's (so that rerunning this script
/// leaves the crate's environment as it was and nothing is recompiled for it), else, without
/// git, the build's own.
fn build_info(manifest_dir: &Path) {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(manifest_dir)
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let revision = git(&["rev-parse", "HEAD"]);
    let branch = git(&["rev-parse", "--abbrev-ref", "HEAD"]);
    // A new commit or another branch checked out changes what the binary says it is.
    for path in ["HEAD", "packed-refs", &format!("refs/heads/{branch}")] {
        let p = git(&["rev-parse", "--git-path", path]);
        // A path that does not exist (no packed-refs yet) would make cargo rerun this
        // script on every build.
        if !p.is_empty() && manifest_dir.join(&p).exists() {
            println!("cargo:rerun-if-changed={}", manifest_dir.join(p).display());
        }
    }
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .or_else(|| git(&["log", "-1", "--format=%ct"]).parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        });
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let rust_version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    println!("cargo:rustc-env=GAUNTLET_REVISION={revision}");
    println!("cargo:rustc-env=GAUNTLET_BRANCH={branch}");
    println!("cargo:rustc-env=GAUNTLET_BUILD_DATE={}", rfc3339_utc(secs));
    println!("cargo:rustc-env=GAUNTLET_RUST_VERSION={rust_version}");
}

/// `secs` since the epoch as `YYYY-MM-DDThh:mm:ssZ`.
fn rfc3339_utc(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's days-to-civil algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Text files smaller than this are served as they are: compressing them saves too little.
const GZIP_MIN_BYTES: u64 = 1024;

/// Writes `src` compressed with gzip to `dst` when it is text worth compressing and comes out
/// smaller; returns `dst` then.
fn gzipped(src: &Path, dst: &Path) -> Option<PathBuf> {
    use std::io::Write as _;
    let text = matches!(
        src.extension().and_then(|e| e.to_str()),
        Some("js" | "css" | "html" | "svg" | "json" | "map")
    );
    let bytes = fs::read(src).ok()?;
    if !text || (bytes.len() as u64) < GZIP_MIN_BYTES {
        return None;
    }
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&bytes).ok()?;
    let gz = enc.finish().ok()?;
    if gz.len() >= bytes.len() {
        return None;
    }
    if let Some(dir) = dst.parent() {
        fs::create_dir_all(dir)
            .unwrap_or_else(|e| fail(&format!("cannot create {}: {e}", dir.display())));
    }
    let dst = dst.with_file_name(format!(
        "{}.gz",
        dst.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    fs::write(&dst, gz).unwrap_or_else(|e| fail(&format!("cannot write {}: {e}", dst.display())));
    Some(dst)
}

/// Builds kept for other output directories of this target directory, most recently used
/// first; older ones are removed.
const CACHED_BUILDS: usize = 4;

/// Where builds are kept by the hash of their sources: `web-ui/` in the target directory
/// (`OUT_DIR` is `<target>/<profile>/build/<package>-<hash>/out`), shared by its profiles.
fn cache_dir(out_dir: &Path) -> PathBuf {
    out_dir
        .ancestors()
        .nth(4)
        .map_or_else(|| out_dir.join("web-ui"), |target| target.join("web-ui"))
}

/// Fills `dist` with the UI built from the sources in `web`: as it is when it was built from
/// these sources, else a copy of the build kept in `cache` for them, else a new build by
/// `npm ci` (when the lock file changed) and `npm run build`, kept in `cache` then.
fn build(web: &Path, dist: &Path, cache: &Path) {
    let sources = hash_inputs(web);
    if read_stamp(dist) == Some(sources) && dist.join("index.html").is_file() {
        return;
    }
    let stamp = format!("{sources:016x}\n");
    let kept = cache.join(format!("{sources:016x}"));
    if read_stamp(&kept) == Some(sources) && kept.join("index.html").is_file() {
        let _ = fs::remove_dir_all(dist);
        copy_dir(&kept, dist).unwrap_or_else(|e| {
            fail(&format!(
                "cannot copy {} to {}: {e}",
                kept.display(),
                dist.display()
            ))
        });
        write(&dist.join(STAMP), &stamp);
        // Marks it as used, for pruning.
        write(&kept.join(STAMP), &stamp);
        return;
    }
    check_node();
    let modules = web.join("node_modules");
    let mut lock_hash = DefaultHasher::new();
    hash_file(&web.join("package-lock.json"), &mut lock_hash);
    let lock_hash = lock_hash.finish();
    if read_stamp(&modules) != Some(lock_hash) {
        npm(web, &["ci", "--no-audit", "--no-fund"]);
        write(&modules.join(STAMP), &format!("{lock_hash:016x}\n"));
    }
    let dist_arg = dist.to_string_lossy();
    npm(
        web,
        &["run", "build", "--", "--outDir", &dist_arg, "--emptyOutDir"],
    );
    write(&dist.join(STAMP), &stamp);
    keep(dist, cache, &kept, &stamp);
}

/// Copies the build in `dist` to `kept` in `cache` (whole or not at all: through a temporary
/// directory) and removes all but the `CACHED_BUILDS` most recently used builds there. A
/// failure here costs only a later rebuild, so it is not an error.
fn keep(dist: &Path, cache: &Path, kept: &Path, stamp: &str) {
    let Ok(entries) = fs::read_dir(cache).or_else(|_| {
        fs::create_dir_all(cache)?;
        fs::read_dir(cache)
    }) else {
        return;
    };
    let mut builds = Vec::new();
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().is_some_and(|x| x == "tmp") {
            // Left by a build that stopped half way (builds into this cache take turns).
            let _ = fs::remove_dir_all(&path);
        } else if let Ok(used) = fs::metadata(path.join(STAMP)).and_then(|m| m.modified()) {
            builds.push((used, path));
        }
    }
    builds.sort_by_key(|b| std::cmp::Reverse(b.0));
    for (_, old) in builds.iter().skip(CACHED_BUILDS - 1) {
        let _ = fs::remove_dir_all(old);
    }
    let tmp = kept.with_extension("tmp");
    let _ = fs::remove_dir_all(&tmp);
    let _ = fs::remove_dir_all(kept);
    let copied = copy_dir(dist, &tmp)
        .and_then(|()| fs::write(tmp.join(STAMP), stamp))
        .and_then(|()| fs::rename(&tmp, kept));
    if copied.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
}

/// Copies the files under `src` (stamps left out) to `dst`, which it creates.
fn copy_dir(src: &Path, dst: &Path) -> std::io::Result<()> {
    let mut files = Vec::new();
    collect(src, src, &mut files);
    for (rel, path) in files {
        let to = dst.join(&rel);
        if let Some(dir) = to.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::copy(&path, &to)?;
    }
    Ok(())
}

/// The oldest Node.js the UI's build tools run on (vite's requirement).
const NODE_MIN: (u32, u32) = (20, 19);

/// Stops the build with what to install when npm or a recent enough Node.js is missing.
fn check_node() {
    const INSTALL: &str = "install Node.js 20.19 or newer with npm (Debian 13's nodejs and npm \
                           packages are recent enough), or build \
                           without the UI with GAUNTLET_WEB_UI=skip";
    let npm = Command::new("npm")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !npm.is_ok_and(|s| s.success()) {
        fail(&format!(
            "npm is not installed, and the web UI in web/ is built with it: {INSTALL}"
        ));
    }
    let version = Command::new("node")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let mut parts = version.trim_start_matches('v').split('.');
    let mut next = || parts.next().and_then(|p| p.parse::<u32>().ok());
    match (next(), next()) {
        (Some(major), Some(minor)) if (major, minor) >= NODE_MIN => {}
        _ => fail(&format!(
            "the web UI's build needs Node.js {}.{} or newer, and `node --version` says \
             {version:?}: {INSTALL}",
            NODE_MIN.0, NODE_MIN.1
        )),
    }
}

fn npm(web: &Path, args: &[&str]) {
    // npm's own output goes to stderr: cargo reads a build script's stdout as instructions.
    let status = Command::new("npm")
        .args(args)
        .current_dir(web)
        .stdout(std::io::stderr())
        .status()
        .unwrap_or_else(|e| fail(&format!("running npm {}: {e}", args.join(" "))));
    if !status.success() {
        fail(&format!(
            "`npm {}` in {} failed ({status}); its output is above",
            args.join(" "),
            web.display()
        ));
    }
}

/// A hash of every input's path and contents.
fn hash_inputs(web: &Path) -> u64 {
    let mut h = DefaultHasher::new();
    for input in INPUTS {
        let mut files = Vec::new();
        let path = web.join(input);
        if path.is_dir() {
            collect(&path, web, &mut files);
        } else {
            files.push((input.to_string(), path));
        }
        files.sort();
        for (rel, path) in files {
            h.write(rel.as_bytes());
            hash_file(&path, &mut h);
        }
    }
    h.finish()
}

fn hash_file(path: &Path, h: &mut DefaultHasher) {
    match fs::read(path) {
        Ok(bytes) => {
            h.write_usize(bytes.len());
            h.write(&bytes);
        }
        Err(_) => h.write_u8(0),
    }
}

fn read_stamp(dir: &Path) -> Option<u64> {
    let text = fs::read_to_string(dir.join(STAMP)).ok()?;
    u64::from_str_radix(text.trim(), 16).ok()
}

/// Files under `dir` as (path relative to `base` with `/` separators, absolute path), stamps
/// left out.
fn collect(dir: &Path, base: &Path, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            collect(&path, base, out);
        } else if e.file_name() != STAMP {
            let rel = path.strip_prefix(base).expect("under base");
            let rel = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            out.push((rel, path.canonicalize().unwrap_or(path)));
        }
    }
}

fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        let _ = fs::create_dir_all(dir);
    }
    fs::write(path, text).unwrap_or_else(|e| fail(&format!("writing {}: {e}", path.display())));
}

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    println!("cargo:warning={msg}");
    std::process::exit(1);
}
