//! Every Markdown file a comment or a document names exists in the repository, so a
//! reference such as "`docs/processing.md` §3" always leads somewhere. A name is
//! looked up at the repository root, under `docs/` and next to the file naming it.
//! Source files named in comments and documents (`src/render/offload.rs`,
//! `worker/conn.rs`) exist too, so a file that moves takes its references along.

use std::path::{Path, PathBuf};

/// Where names are looked for: sources, tests, benches, the fuzz targets, the docs.
const SCANNED: &[&str] = &[
    "src",
    "shm",
    "tests",
    "fuzz",
    "benches",
    "docs",
    "README.md",
];

fn files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            let p = entry.unwrap().path();
            // Build output and fuzz corpora are not the repository's text.
            if !matches!(
                p.file_name().and_then(|n| n.to_str()),
                Some("target" | "corpus" | "artifacts")
            ) {
                files(&p, out);
            }
        }
    } else if path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e, "rs" | "md" | "sh" | "py" | "toml"))
    {
        out.push(path.to_path_buf());
    }
}

/// The `*.md` names in `text`: a run of word characters, `-`, `/` or `.` ending in
/// `.md` that no further word character follows (so `self.mdat` is no name).
fn md_names(text: &str) -> Vec<String> {
    names_ending(text, ".md")
}

/// The names ending in `ext` in `text`, read as [`md_names`] reads `.md` names.
fn names_ending(text: &str, ext: &str) -> Vec<String> {
    let b = text.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'-';
    let mut out = Vec::new();
    let mut i = 0;
    let n = ext.len();
    while let Some(k) = text[i..].find(ext) {
        let at = i + k;
        i = at + n;
        if b.get(at + n).is_some_and(|&c| word(c)) {
            continue;
        }
        let mut start = at;
        while start > 0 && (word(b[start - 1]) || b[start - 1] == b'/' || b[start - 1] == b'.') {
            start -= 1;
        }
        let name = text[start..at + n].trim_start_matches(['.', '/']);
        if name.len() > n && !name.starts_with(ext) {
            out.push(name.to_string());
        }
    }
    out
}

/// Whether source file `name` is in the repository: a path from the root, from `src/`
/// or `shm/src/`, or from the naming file's directory or its parents'; a bare file
/// name anywhere among `sources`.
fn source_exists(root: &Path, from: &Path, name: &str, sources: &[PathBuf]) -> bool {
    if !name.contains('/') {
        return sources
            .iter()
            .any(|p| p.file_name().is_some_and(|f| f == name));
    }
    let mut bases = vec![root.to_path_buf(), root.join("src"), root.join("shm/src")];
    bases.extend(from.ancestors().skip(1).map(Path::to_path_buf));
    bases.iter().any(|b| b.join(name).is_file())
}

fn exists(root: &Path, from: &Path, name: &str) -> bool {
    [
        root.join(name),
        root.join("docs").join(name),
        from.parent().unwrap().join(name),
    ]
    .iter()
    .any(|p| p.is_file())
}

#[test]
fn every_named_file_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut all = Vec::new();
    for s in SCANNED {
        files(&root.join(s), &mut all);
    }
    assert!(all.len() > 50, "scanned only {} files", all.len());
    let sources: Vec<PathBuf> = all
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .cloned()
        .collect();
    let mut missing = Vec::new();
    for f in &all {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        let is_rust = f.extension().is_some_and(|e| e == "rs");
        for (n, line) in text.lines().enumerate() {
            let rel = f.strip_prefix(root).unwrap().display();
            for name in md_names(line) {
                if !exists(root, f, &name) {
                    missing.push(format!("{rel}:{}: {name}", n + 1));
                }
            }
            // In Rust files only comments count (code may build names of files to make).
            if is_rust && !line.trim_start().starts_with("//") {
                continue;
            }
            for name in names_ending(line, ".rs") {
                if !source_exists(root, f, &name, &sources) {
                    missing.push(format!("{rel}:{}: {name}", n + 1));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "named but not in the repository:\n{}",
        missing.join("\n")
    );
}

#[test]
fn names_are_read_as_written() {
    let line = "see `docs/processing.md` §4, docs/sources.md and (README.md); self.mdat; x.md5";
    let names = ["docs/processing.md", "docs/sources.md", "README.md"];
    assert_eq!(md_names(line), names);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let here = root.join("tests/doc_links.rs");
    assert!(names.iter().all(|n| exists(root, &here, n)));
    assert!(exists(root, &here, "sources.md"), "found under docs/");
    // Built from pieces, so that this file does not itself name a missing note.
    assert!(!exists(root, &here, &format!("no-such-note{}", ".md")));
    let sources = [root.join("src/worker/conn.rs")];
    assert_eq!(
        names_ending("in `worker/conn.rs` and src/lib.rs, not x.rsa", ".rs"),
        ["worker/conn.rs", "src/lib.rs"]
    );
    assert!(source_exists(root, &here, "worker/conn.rs", &sources));
    assert!(source_exists(root, &here, "conn.rs", &sources));
    assert!(!source_exists(
        root,
        &here,
        &format!("worker/gone{}", ".rs"),
        &sources
    ));
    assert!(!source_exists(
        root,
        &here,
        &format!("gone{}", ".rs"),
        &sources
    ));
}
