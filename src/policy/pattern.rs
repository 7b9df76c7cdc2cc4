//! Image path patterns of policy rules and token grants: a plain path is a prefix
//! (whole path components), anything with `*`, `?`, `[` or `{` is a glob.

use globset::{GlobBuilder, GlobMatcher};

/// A path pattern, relative to `FILESYSTEM_PREFIX`.
#[derive(Debug, Clone)]
pub enum Pattern {
    /// Matches the path itself and everything below it; empty matches everything.
    Prefix(String),
    /// `*` stays within one path component, `**` crosses them.
    Glob(GlobMatcher),
}

/// A pattern that cannot be compiled.
#[derive(Debug, thiserror::Error)]
#[error("path pattern {pattern:?}: {reason}")]
pub struct PatternError {
    pattern: String,
    reason: String,
}

impl Pattern {
    pub fn new(text: &str) -> Result<Pattern, PatternError> {
        let t = normalise(text);
        if !t.contains(['*', '?', '[', '{']) {
            return Ok(Pattern::Prefix(t.trim_end_matches('/').to_owned()));
        }
        GlobBuilder::new(&t)
            .literal_separator(true)
            .build()
            .map(|g| Pattern::Glob(g.compile_matcher()))
            .map_err(|e| PatternError {
                pattern: text.to_owned(),
                reason: e.kind().to_string(),
            })
    }

    /// Whether `path` (normalised by [`normalise`]) is covered.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            Pattern::Prefix(p) => {
                p.is_empty()
                    || path
                        .strip_prefix(p.as_str())
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            }
            Pattern::Glob(g) => g.is_match(path),
        }
    }
}

/// An image path as rules see it: no leading `/`, no empty or `.` components, so
/// that `//a.tif` or `./a.tif` cannot slip past a rule for `a.tif`.
pub fn normalise(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    let mut s = parts.join("/");
    if path.ends_with('/') && !s.is_empty() {
        s.push('/');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_whole_components() {
        let p = Pattern::new("/manuscripts/").unwrap();
        assert!(p.matches("manuscripts"));
        assert!(p.matches("manuscripts/a/b.tif"));
        assert!(!p.matches("manuscripts2/a.tif"));
        assert!(Pattern::new("").unwrap().matches("anything.tif"));
        assert!(Pattern::new("a.tif")
            .unwrap()
            .matches(&normalise("//./a.tif")));
    }

    #[test]
    fn globs() {
        let p = Pattern::new("secret/*.tif").unwrap();
        assert!(p.matches("secret/a.tif"));
        assert!(!p.matches("secret/sub/a.tif"));
        let p = Pattern::new("**/*.tif").unwrap();
        assert!(p.matches("a.tif") && p.matches("x/y/a.tif"));
        assert!(Pattern::new("a[").is_err());
    }
}
