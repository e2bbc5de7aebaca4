//! The repository stands alone: no file refers to material outside it (the sibling notes a
//! checkout may happen to sit next to), and every relative link in its markdown leads to a file
//! of the repository and, when it names a section, to a heading of that file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Spellings of paths into a sibling directory outside the repository. Built with `concat!` so
/// that this file does not match itself.
const OUTSIDE: [&str; 3] = [
    concat!("..", "/shared"),
    concat!("shared", "/spec"),
    concat!("shared", "/tools"),
];

/// Directories that hold build output or local data, never sources (also in `.gitignore`).
const NOT_SOURCES: [&str; 6] = [
    "target",
    ".git",
    "fuzz/target",
    "fuzz/corpus",
    "fuzz/artifacts",
    "data",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repository root")
}

/// Files of the repository, relative to its root: what git tracks plus untracked files that
/// are not ignored (so a file about to be added is checked too); without git, a walk of the
/// tree that skips build output.
fn repo_files(root: &Path) -> Vec<PathBuf> {
    let git = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(root)
        .output();
    let mut files: Vec<PathBuf> = match git {
        Ok(out) if out.status.success() => out
            .stdout
            .split(|&b| b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| PathBuf::from(String::from_utf8_lossy(p).into_owned()))
            .filter(|p| root.join(p).is_file())
            .collect(),
        _ => {
            let mut found = Vec::new();
            walk(root, Path::new(""), &mut found);
            found
        }
    };
    files.sort();
    files.dedup();
    files
}

fn walk(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(root.join(rel)) else {
        return;
    };
    for e in entries.flatten() {
        let path = rel.join(e.file_name());
        let Ok(kind) = e.file_type() else { continue };
        if kind.is_dir() {
            if !NOT_SOURCES.iter().any(|d| path == Path::new(d)) {
                walk(root, &path, out);
            }
        } else if kind.is_file() {
            out.push(path);
        }
    }
}

/// The file's text, or `None` for binary files (a NUL byte, or not UTF-8).
fn text_of(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    if bytes.contains(&0) {
        return None;
    }
    String::from_utf8(bytes).ok()
}

#[test]
fn no_file_refers_to_material_outside_the_repository() {
    let root = root();
    let files = repo_files(&root);
    assert!(
        files.iter().any(|f| f == Path::new("Cargo.toml")),
        "no files found under {}",
        root.display()
    );
    let mut found = Vec::new();
    for f in &files {
        let Some(text) = text_of(&root.join(f)) else {
            continue;
        };
        for (i, line) in text.lines().enumerate() {
            if let Some(p) = OUTSIDE.iter().find(|p| line.contains(*p)) {
                found.push(format!(
                    "{}:{}: `{p}` in: {}",
                    f.display(),
                    i + 1,
                    line.trim()
                ));
            }
        }
    }
    assert!(
        found.is_empty(),
        "files refer to paths outside the repository (write what is needed into docs/ or \
         tests/tools/ and point there):\n{}",
        found.join("\n")
    );
}

/// Markdown text with fenced code blocks and inline code spans blanked out (line breaks kept,
/// so line numbers still hold): links are not read inside code.
fn without_code(md: &str) -> String {
    let mut out = String::with_capacity(md.len());
    let mut fenced = false;
    for line in md.split_inclusive('\n') {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            out.push('\n');
            continue;
        }
        if fenced {
            out.push('\n');
            continue;
        }
        let mut in_code = false;
        for c in line.chars() {
            if c == '`' {
                in_code = !in_code;
                out.push(' ');
            } else if in_code && c != '\n' {
                out.push(' ');
            } else {
                out.push(c);
            }
        }
    }
    out
}

/// Inline link targets `[text](target)` of markdown text, each with its 1-based line.
fn links(md: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, line) in without_code(md).lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            let target = after[..end].trim();
            // `[link](target "title")`: the target is the first word.
            let target = target.split_whitespace().next().unwrap_or("");
            out.push((i + 1, target.to_string()));
            rest = &after[end + 1..];
        }
    }
    out
}

/// The anchors GitHub gives a markdown file's headings: lower case, characters other than
/// letters, digits, spaces, `-` and `_` dropped, spaces turned into `-`; a repeated heading
/// gets `-1`, `-2`, … appended.
fn anchors(md: &str) -> Vec<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = Vec::new();
    let mut fenced = false;
    for line in md.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if fenced || hashes == 0 || hashes > 6 || !line[hashes..].starts_with(' ') {
            continue;
        }
        let slug: String = line[hashes..]
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let n = seen.entry(slug.clone()).or_insert(0);
        out.push(if *n == 0 { slug } else { format!("{slug}-{n}") });
        *n += 1;
    }
    out
}

#[test]
fn relative_markdown_links_lead_to_files_and_headings() {
    let root = root();
    let docs: Vec<PathBuf> = repo_files(&root)
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "md"))
        .collect();
    assert!(
        docs.iter().any(|f| f == Path::new("docs/README.md")),
        "docs/README.md is missing"
    );
    let mut broken = Vec::new();
    let mut checked = 0;
    for f in &docs {
        let Some(text) = text_of(&root.join(f)) else {
            continue;
        };
        for (line, target) in links(&text) {
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (file, anchor) = match target.split_once('#') {
                Some((file, anchor)) => (file, Some(anchor)),
                None => (target.as_str(), None),
            };
            let dest = if file.is_empty() {
                root.join(f)
            } else {
                root.join(f)
                    .parent()
                    .expect("file in a directory")
                    .join(file)
            };
            let at = format!("{}:{line}: ({target})", f.display());
            let Ok(dest) = dest.canonicalize() else {
                broken.push(format!("{at}: no such file"));
                continue;
            };
            if !dest.starts_with(&root) {
                broken.push(format!("{at}: outside the repository"));
                continue;
            }
            let Some(anchor) = anchor else { continue };
            if dest.extension().is_none_or(|e| e != "md") {
                continue;
            }
            let heads = anchors(&std::fs::read_to_string(&dest).unwrap_or_default());
            if !heads.iter().any(|h| h == anchor) {
                broken.push(format!(
                    "{at}: no heading with anchor #{anchor} in {}",
                    dest.display()
                ));
            }
        }
    }
    assert!(checked > 0, "no relative links found in the markdown files");
    assert!(
        broken.is_empty(),
        "broken markdown links:\n{}",
        broken.join("\n")
    );
}

#[test]
fn heading_anchors_are_those_github_makes() {
    let md = "# Index (format v2)\n## Legacy `thanos.Store/Info`\n```\n# not a heading\n```\n\
              ## Caveats\n## Caveats\n#no space\n";
    assert_eq!(
        anchors(md),
        [
            "index-format-v2",
            "legacy-thanosstoreinfo",
            "caveats",
            "caveats-1"
        ]
    );
    assert_eq!(
        links("a [x](b.md#c) and `[y](not-a-link)` then [z](d \"title\")"),
        [(1, "b.md#c".to_string()), (1, "d".to_string())]
    );
}

/// The production binary does not link the benchmarks: the data generator behind `--demo` is
/// its own crate, and `gauntlet-bench` is only a dev-dependency of the server.
#[test]
fn the_server_does_not_depend_on_the_benchmarks() {
    let manifest = std::fs::read_to_string(root().join("server/Cargo.toml")).unwrap();
    let mut section = "";
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
            continue;
        }
        if matches!(section, "[dependencies]" | "[build-dependencies]") {
            assert!(
                !line.starts_with("gauntlet-bench"),
                "server/Cargo.toml {section} lists {line}"
            );
        }
    }
    assert!(manifest.contains("gauntlet-datagen"), "{manifest}");
}
