//! The crate's modules import each other without cycles, at two grains:
//!
//! - **Source files.** Each file under `src/` is one node (`image/tiff/mod.rs` and
//!   `image/tiff/decode.rs` are different nodes). An edge is any path that names
//!   another file's module: `use crate::…`, `crate::…::` in expressions, `super::…`,
//!   `self::…` and a declared child (`mod x;` then `x::…`). One kind of edge is not
//!   counted: a `mod.rs` naming its own descendants, since a directory module owns,
//!   re-exports and dispatches to its children while they share its types; counting
//!   it would make every such directory one cycle. Any other cycle fails, between
//!   siblings, cousins or across the tree.
//! - **Top-level modules** (`image`, `pipeline`, `protocol`…, each directory taken
//!   whole): the layers must form a line, so no image reader reaches into a protocol.
//!
//! Code under `#[cfg(test)]` is left out: tests may use any helper. A cycle means
//! files that can only be understood, moved or tested together; the test prints it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// File-level edges allowed to close a cycle, as (from, to) module paths, each with
/// its reason. Empty: there is no cycle left to excuse, and a new one fails.
const ALLOWED: &[(&str, &str)] = &[];

type Module = Vec<String>;

/// `src/worker/conn.rs` → `worker::conn`, `src/worker/mod.rs` → `worker`, `src/lib.rs` →
/// the root.
fn module_of(src: &Path, file: &Path) -> Module {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Module = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source with comments, string and char literals blanked out, so that paths
/// in them are not read as imports.
fn strip(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let rest = &src[i..];
        if rest.starts_with("//") {
            i += rest.find('\n').unwrap_or(rest.len());
        } else if rest.starts_with("/*") {
            let mut depth = 0;
            while i < b.len() {
                if src[i..].starts_with("/*") {
                    depth += 1;
                    i += 2;
                } else if src[i..].starts_with("*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if let Some(hashes) = raw_string_start(rest) {
            let close = format!("\"{}", "#".repeat(hashes));
            let body = i + 2 + hashes;
            i = src[body..]
                .find(&close)
                .map_or(b.len(), |k| body + k + close.len());
            out.push_str("\"\"");
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            if b.get(i + 1) == Some(&b'\\') {
                i += 2;
                while i < b.len() && b[i] != b'\'' {
                    i += 1;
                }
                i += 1;
            } else if let Some(c) = rest[1..].chars().next() {
                if rest[1 + c.len_utf8()..].starts_with('\'') {
                    i += 2 + c.len_utf8();
                } else {
                    i += 1;
                }
            } else {
                i += 1;
            }
            out.push(' ');
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// `r"`, `r#"`, `br"`… at the start of `s`: the number of hashes.
fn raw_string_start(s: &str) -> Option<usize> {
    let s = s.strip_prefix('b').unwrap_or(s);
    let s = s.strip_prefix('r')?;
    let hashes = s.len() - s.trim_start_matches('#').len();
    s[hashes..].starts_with('"').then_some(hashes)
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Path, // ::
    Punct(char),
}

/// The tokens of `src` without the items under `#[cfg(test)]`: tests may reach
/// for any helper, and they are not part of the crate that ships.
fn shipped_tokens(src: &str) -> Vec<Tok> {
    let toks = tokens(src);
    let gate = [
        Tok::Punct('#'),
        Tok::Punct('['),
        Tok::Ident("cfg".into()),
        Tok::Punct('('),
        Tok::Ident("test".into()),
        Tok::Punct(')'),
        Tok::Punct(']'),
    ];
    let mut out = Vec::with_capacity(toks.len());
    let mut i = 0;
    while i < toks.len() {
        if !toks[i..].starts_with(&gate) {
            out.push(toks[i].clone());
            i += 1;
            continue;
        }
        // Skip the gated item (or field, or statement): through its `;` or `,`, or
        // through its braced body, or up to the `}` that closes what holds it.
        i += gate.len();
        let mut depth = 0;
        while i < toks.len() {
            match toks[i] {
                Tok::Punct(';' | ',') if depth == 0 => {
                    i += 1;
                    break;
                }
                Tok::Punct('}') if depth == 0 => break,
                Tok::Punct('{' | '(' | '[') => depth += 1,
                Tok::Punct('}') if depth == 1 => {
                    i += 1;
                    break;
                }
                Tok::Punct('}' | ')' | ']') => depth -= 1,
                _ => {}
            }
            i += 1;
        }
    }
    out
}

fn tokens(src: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut chars = src.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c.is_alphanumeric() || c == '_' {
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = chars.peek() {
                if d.is_alphanumeric() || d == '_' {
                    end = j + d.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            out.push(Tok::Ident(src[i..end].to_string()));
        } else if c == ':' && chars.peek().map(|&(_, d)| d) == Some(':') {
            chars.next();
            out.push(Tok::Path);
        } else if !c.is_whitespace() {
            out.push(Tok::Punct(c));
        }
    }
    out
}

fn ident(t: Option<&Tok>) -> Option<&str> {
    match t {
        Some(Tok::Ident(s)) => Some(s),
        _ => None,
    }
}

/// Expands the use tree at `toks[*i]` into full paths, each prefixed by `prefix`.
fn use_tree(toks: &[Tok], i: &mut usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let mut path = prefix;
    loop {
        match toks.get(*i) {
            Some(Tok::Ident(s)) => {
                path.push(s.clone());
                *i += 1;
                if toks.get(*i) == Some(&Tok::Path) {
                    *i += 1;
                    continue;
                }
                if ident(toks.get(*i)) == Some("as") {
                    *i += 2;
                }
                out.push(path);
                return;
            }
            Some(Tok::Punct('{')) => {
                *i += 1;
                while !matches!(toks.get(*i), None | Some(Tok::Punct('}'))) {
                    use_tree(toks, i, path.clone(), out);
                    if toks.get(*i) == Some(&Tok::Punct(',')) {
                        *i += 1;
                    }
                }
                *i += 1;
                return;
            }
            Some(Tok::Punct('*')) => {
                *i += 1;
                out.push(path);
                return;
            }
            _ => {
                out.push(path);
                return;
            }
        }
    }
}

/// Every module path named in one file, made absolute (from the crate root).
fn references(file_mod: &Module, src: &str) -> Vec<Module> {
    let toks = shipped_tokens(&strip(src));
    // Inline `mod x { … }` blocks move `self` and `super` one level down.
    let mut inline: Vec<(String, i32)> = Vec::new();
    let mut depth = 0i32;
    let mut children: BTreeSet<String> = BTreeSet::new();
    let mut raw: Vec<(Module, Vec<String>)> = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let here = || {
            let mut m = file_mod.clone();
            m.extend(inline.iter().map(|(n, _)| n.clone()));
            m
        };
        match &toks[i] {
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => {
                depth -= 1;
                if inline.last().is_some_and(|&(_, d)| d == depth) {
                    inline.pop();
                }
            }
            Tok::Ident(k) if k == "mod" => {
                if let Some(name) = ident(toks.get(i + 1)) {
                    match toks.get(i + 2) {
                        Some(Tok::Punct('{')) => inline.push((name.to_string(), depth)),
                        Some(Tok::Punct(';')) if inline.is_empty() => {
                            children.insert(name.to_string());
                        }
                        _ => {}
                    }
                }
            }
            Tok::Ident(k) if k == "use" => {
                let mut j = i + 1;
                let mut paths = Vec::new();
                use_tree(&toks, &mut j, Vec::new(), &mut paths);
                let m = here();
                raw.extend(paths.into_iter().map(|p| (m.clone(), p)));
                i = j;
                continue;
            }
            Tok::Ident(s)
                if (i == 0 || toks[i - 1] != Tok::Path) && toks.get(i + 1) == Some(&Tok::Path) =>
            {
                let mut path = vec![s.clone()];
                let mut j = i + 2;
                while let Some(n) = ident(toks.get(j)) {
                    path.push(n.to_string());
                    if toks.get(j + 1) != Some(&Tok::Path) {
                        break;
                    }
                    j += 2;
                }
                raw.push((here(), path));
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    raw.into_iter()
        .filter_map(|(at, path)| absolute(file_mod, &children, at, path))
        .collect()
}

fn absolute(
    file_mod: &Module,
    children: &BTreeSet<String>,
    mut at: Module,
    path: Vec<String>,
) -> Option<Module> {
    let mut rest = path.as_slice();
    match rest.first().map(String::as_str) {
        Some("crate") => at.clear(),
        Some("super") => {
            while rest.first().map(String::as_str) == Some("super") {
                at.pop()?;
                rest = &rest[1..];
            }
            at.extend(rest.iter().cloned());
            return Some(at);
        }
        Some("self") => {}
        // A child declared with `mod x;` in this file, named from the file's level.
        Some(c) if at == *file_mod && children.contains(c) => {
            at.extend(rest.iter().cloned());
            return Some(at);
        }
        _ => return None,
    }
    rest = &rest[1..];
    at.extend(rest.iter().cloned());
    Some(at)
}

/// The file whose module is the longest prefix of `path`.
fn owner<'a>(modules: &'a BTreeSet<Module>, path: &[String]) -> Option<&'a Module> {
    (0..=path.len()).rev().find_map(|n| modules.get(&path[..n]))
}

fn name(m: &Module) -> String {
    if m.is_empty() {
        "crate".into()
    } else {
        m.join("::")
    }
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'g> {
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on: BTreeSet<&'g str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'g>(s: &mut State<'g>, v: &'g str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on.insert(v);
        for w in s.graph.get(v).into_iter().flatten() {
            if !s.index.contains_key(w.as_str()) {
                visit(s, w);
                let lw = s.low[w.as_str()];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on.contains(w.as_str()) {
                let iw = s.index[w.as_str()];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            loop {
                let w = s.stack.pop().unwrap();
                s.on.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.out.push(comp);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

/// One concrete cycle through the first module of `comp`, for the message.
fn one_cycle(graph: &BTreeMap<String, BTreeSet<String>>, comp: &[String]) -> Vec<String> {
    let inside: BTreeSet<&String> = comp.iter().collect();
    let start = &comp[0];
    // Breadth-first from start's successors back to start, inside the component.
    let mut prev: BTreeMap<&String, &String> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for w in graph.get(v).into_iter().flatten() {
            if !inside.contains(w) || prev.contains_key(w) {
                continue;
            }
            prev.insert(w, v);
            if w == start {
                let mut path = vec![start.clone()];
                let mut at = prev[start];
                while at != start {
                    path.push(at.clone());
                    at = prev[at];
                }
                path.push(start.clone());
                path.reverse();
                return path;
            }
            queue.push_back(w);
        }
    }
    comp.to_vec()
}

/// A file declared as `#[cfg(test)] mod x;` by its parent `mod.rs`.
fn test_only(file: &Path) -> bool {
    let stem = file.file_stem().unwrap().to_string_lossy();
    let parent = file.with_file_name("mod.rs");
    stem != "mod"
        && std::fs::read_to_string(parent)
            .is_ok_and(|t| t.contains(&format!("#[cfg(test)]\nmod {stem};")))
}

fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    // main.rs is the binary, a crate of its own that sees the library from outside.
    files.retain(|f| f.file_name().unwrap() != "main.rs" && !test_only(f));
    let modules: BTreeSet<Module> = files.iter().map(|f| module_of(&src, f)).collect();
    let mut graph = BTreeMap::new();
    for f in &files {
        let from = module_of(&src, f);
        let text = std::fs::read_to_string(f).unwrap();
        let edges: &mut BTreeSet<String> = graph.entry(name(&from)).or_default();
        for path in references(&from, &text) {
            if let Some(to) = owner(&modules, &path) {
                if *to != from && !to.starts_with(&from) {
                    edges.insert(name(to));
                }
            }
        }
    }
    graph
}

/// Fails listing each cycle of `graph` with one concrete loop through it.
fn assert_acyclic(graph: &BTreeMap<String, BTreeSet<String>>) {
    let found = cycles(graph);
    let report: Vec<String> = found
        .iter()
        .map(|c| {
            let path = one_cycle(graph, c).join(" -> ");
            format!("{} modules: {}\n  e.g. {path}", c.len(), c.join(", "))
        })
        .collect();
    assert!(found.is_empty(), "import cycles:\n{}", report.join("\n"));
}

#[test]
fn no_import_cycles_between_source_files() {
    let mut graph = module_graph();
    for (from, to) in ALLOWED {
        let edges = graph
            .get_mut(*from)
            .expect("allowed edge from a known module");
        assert!(
            edges.remove(*to),
            "allowed edge {from} -> {to} no longer exists"
        );
    }
    assert_acyclic(&graph);
}

/// The graph between the crate's top-level modules, each directory taken whole.
fn top_level(graph: &BTreeMap<String, BTreeSet<String>>) -> BTreeMap<String, BTreeSet<String>> {
    let top = |m: &str| m.split("::").next().unwrap().to_string();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, tos) in graph {
        let edges = out.entry(top(from)).or_default();
        edges.extend(tos.iter().map(|t| top(t)).filter(|t| *t != top(from)));
    }
    out
}

#[test]
fn no_import_cycles_between_top_level_modules() {
    assert_acyclic(&top_level(&module_graph()));
}

#[test]
fn the_graph_sees_the_imports_it_must() {
    // Guards the reader itself: a parser that found no edges would pass above.
    let graph = module_graph();
    let has = |a: &str, b: &str| graph.get(a).is_some_and(|e| e.contains(b));
    assert!(has("render", "model"), "{graph:#?}");
    assert!(has("protocol::iiif", "protocol::open"), "{graph:#?}");
    assert!(has("image::tiff::decode", "image"), "{graph:#?}");
    assert!(has("image::tiff::meta", "cnum"), "{graph:#?}");
    assert!(
        !has("image", "image::tiff"),
        "a parent's own children are not edges"
    );
    assert!(graph.len() > 40, "{} modules", graph.len());
}

#[test]
fn cycle_finder_finds_a_planted_cycle() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut edge = |a: &str, b: &str| {
        g.entry(a.into()).or_default().insert(b.into());
        g.entry(b.into()).or_default();
    };
    edge("a", "b");
    edge("b", "c");
    edge("c", "a");
    edge("c", "d");
    let found = cycles(&g);
    assert_eq!(found, vec![vec!["a".to_string(), "b".into(), "c".into()]]);
    assert_eq!(one_cycle(&g, &found[0]), ["a", "b", "c", "a"]);
}

#[test]
fn paths_resolve_from_the_file_they_are_in() {
    let here: Module = vec!["image".into(), "tiff".into()];
    let src = "mod decode;\nuse super::{Image, jp2::Jp2 as J};\nuse crate::pipeline::*;\n\
               fn f() { let _ = decode::run(); crate::cnum::fmt_g9(1.0); \"crate::x::y\"; }\n\
               mod tests { use super::*; }\n\
               #[cfg(test)]\nmod t2 { use crate::render::X; }\n#[cfg(test)]\nuse crate::http::Y;";
    let refs: BTreeSet<String> = references(&here, src).iter().map(name).collect();
    let want: BTreeSet<String> = [
        "image::Image",
        "image::jp2::Jp2",
        "pipeline",
        "image::tiff::decode::run",
        "cnum::fmt_g9",
        "image::tiff",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(refs, want);
}
