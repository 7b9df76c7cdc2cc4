//! Every Markdown file a comment or a document names exists in the repository, so a
//! reference such as "`docs/processing.md` §3" always leads somewhere. A name is
//! looked up at the repository root, under `docs/` and next to the file naming it.

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
    let b = text.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'-';
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(k) = text[i..].find(".md") {
        let at = i + k;
        i = at + 3;
        if b.get(at + 3).is_some_and(|&c| word(c)) {
            continue;
        }
        let mut start = at;
        while start > 0 && (word(b[start - 1]) || b[start - 1] == b'/' || b[start - 1] == b'.') {
            start -= 1;
        }
        let name = text[start..at + 3].trim_start_matches(['.', '/']);
        if name.len() > 3 && !name.starts_with(".md") {
            out.push(name.to_string());
        }
    }
    out
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
fn every_named_markdown_file_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut all = Vec::new();
    for s in SCANNED {
        files(&root.join(s), &mut all);
    }
    assert!(all.len() > 50, "scanned only {} files", all.len());
    let mut missing = Vec::new();
    for f in &all {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        for (n, line) in text.lines().enumerate() {
            for name in md_names(line) {
                if !exists(root, f, &name) {
                    let rel = f.strip_prefix(root).unwrap().display();
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
}
