//! Aliases in `/etc/aliases` syntax: the parser, and [`AliasFile`], the table reloaded
//! when the file (or an `:include:` file) changes.
//!
//! ```text
//! # comment
//! postmaster: root
//! staff:      alice, bob@example.org,
//!             :include:/etc/hamail/staff.list
//! root:       \alice
//! ```
//!
//! Names are case-insensitive. Targets are local names (expanded again by the
//! [`Directory`](super::Directory)), `\name` (that user's mailbox, not expanded further),
//! addresses, and `:include:/path` (read at load time, one target per line or comma).
//! Command (`|...`), file (`/...`) and other `kind:` targets are not supported: they are
//! skipped with a warning, since delivering to programs or files from a cluster of hosts
//! is not something an aliases file should switch on by accident.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::reload::{Loaded, Reloading, DEFAULT_RECHECK};
use super::AuthError;

/// `:include:` files may include others, down to this depth.
const MAX_INCLUDE_DEPTH: usize = 10;

/// One deliverable alias target.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AliasTarget {
    /// A local name (lower-cased), itself possibly an alias.
    Local(String),
    /// `\name`: the mailbox of user `name` (lower-cased), not expanded further.
    Mailbox(String),
    /// `local@domain`, as written; a local domain is resolved again by its local part.
    Address(String),
}

/// A parsed aliases file.
#[derive(Debug, Default)]
pub struct AliasTable {
    map: HashMap<String, Vec<AliasTarget>>,
}

impl AliasTable {
    /// The targets of alias `name` (matched case-insensitively); `Some(&[])` for an alias
    /// whose targets were all unsupported.
    pub fn get(&self, name: &str) -> Option<&[AliasTarget]> {
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            self.map.get(&name.to_ascii_lowercase()).map(Vec::as_slice)
        } else {
            self.map.get(name).map(Vec::as_slice)
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Alias names (lower-case), in no particular order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(String::as_str)
    }
}

/// The parse result: the table, one message per skipped item, and the `:include:` files
/// that were (or were tried to be) read.
#[derive(Debug, Default)]
pub struct ParsedAliases {
    pub table: AliasTable,
    pub warnings: Vec<String>,
    pub includes: Vec<PathBuf>,
}

/// Parse aliases text with no file access: every `:include:` is skipped with a warning.
pub fn parse_str(text: &str) -> ParsedAliases {
    parse(text, &mut |_| {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "includes not available here",
        ))
    })
}

/// Parse aliases text; `read_include` reads an `:include:` file. Never fails: bad entries
/// are skipped and reported in `warnings`. Duplicate names: the first entry wins.
pub fn parse(
    text: &str,
    read_include: &mut dyn FnMut(&Path) -> io::Result<String>,
) -> ParsedAliases {
    let mut r = Reader {
        read_include,
        cache: HashMap::new(),
        out: ParsedAliases::default(),
    };
    for (n, line) in logical_lines(text, &mut r.out.warnings) {
        let Some((name, value)) = line.split_once(':') else {
            r.out
                .warnings
                .push(format!("line {n}: no ':' after the alias name, skipped"));
            continue;
        };
        let name = name.trim().to_ascii_lowercase();
        if name.is_empty() || name.contains(char::is_whitespace) || name.contains('"') {
            r.out
                .warnings
                .push(format!("line {n}: bad alias name {name:?}, skipped"));
            continue;
        }
        if r.out.table.map.contains_key(&name) {
            r.out.warnings.push(format!(
                "line {n}: duplicate alias {name:?}, the first entry wins"
            ));
            continue;
        }
        let mut entry = Entry::default();
        r.add_targets(value, &format!("line {n}"), &mut entry);
        if entry.targets.is_empty() {
            r.out.warnings.push(format!(
                "line {n}: alias {name:?} has no deliverable target"
            ));
        }
        r.out.table.map.insert(name, entry.targets);
    }
    r.out
}

/// Join continuation lines (leading whitespace) onto their entry; drop comments and blank
/// lines. Yields (first line number, entry text).
fn logical_lines(text: &str, warnings: &mut Vec<String>) -> Vec<(usize, String)> {
    let mut entries: Vec<(usize, String)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            match entries.last_mut() {
                Some((_, e)) => {
                    e.push(' ');
                    e.push_str(line.trim());
                }
                None => warnings.push(format!(
                    "line {}: continuation line without an alias, skipped",
                    i + 1
                )),
            }
        } else {
            entries.push((i + 1, line.to_string()));
        }
    }
    entries
}

/// Split on commas outside double quotes.
fn split_targets(value: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// Parsing state shared by all entries: each include file is read once per parse.
struct Reader<'r> {
    read_include: &'r mut dyn FnMut(&Path) -> io::Result<String>,
    cache: HashMap<PathBuf, Result<Arc<str>, String>>,
    out: ParsedAliases,
}

/// The entry being built.
#[derive(Default)]
struct Entry {
    targets: Vec<AliasTarget>,
    seen: HashSet<AliasTarget>,
    /// Include files being read, innermost last: loop detection and depth.
    chain: Vec<PathBuf>,
    /// Include files already expanded into this entry. Expanding one again adds nothing,
    /// and skipping it keeps files that include each other from costing factorial time.
    expanded: HashSet<PathBuf>,
}

impl Reader<'_> {
    /// Classify each target of `value` into `entry`, reading includes.
    fn add_targets(&mut self, value: &str, place: &str, entry: &mut Entry) {
        for raw in split_targets(value) {
            let t = match raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
                Some(inner) => inner.trim(),
                None => raw,
            };
            if let Some(path) = strip_prefix_ci(t, ":include:") {
                self.include(path.trim(), place, entry);
                continue;
            }
            match classify(t) {
                Ok(target) => {
                    if entry.seen.insert(target.clone()) {
                        entry.targets.push(target);
                    }
                }
                Err(why) => self
                    .out
                    .warnings
                    .push(format!("{place}: target {raw:?} skipped: {why}")),
            }
        }
    }

    fn include(&mut self, path: &str, place: &str, entry: &mut Entry) {
        let path = PathBuf::from(path);
        if !path.is_absolute() {
            self.out.warnings.push(format!(
                "{place}: :include:{} skipped: the path must be absolute",
                path.display()
            ));
            return;
        }
        if entry.chain.contains(&path) || entry.chain.len() >= MAX_INCLUDE_DEPTH {
            self.out.warnings.push(format!(
                "{place}: :include:{} skipped: include loop or nesting deeper than {MAX_INCLUDE_DEPTH}",
                path.display()
            ));
            return;
        }
        if !entry.expanded.insert(path.clone()) {
            return;
        }
        let text = match self.read(&path) {
            Ok(t) => t,
            Err(e) => {
                self.out
                    .warnings
                    .push(format!("{place}: :include:{} skipped: {e}", path.display()));
                return;
            }
        };
        entry.chain.push(path.clone());
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let here = format!("{}:{}", path.display(), i + 1);
            self.add_targets(line, &here, entry);
        }
        entry.chain.pop();
    }

    fn read(&mut self, path: &Path) -> Result<Arc<str>, String> {
        if let Some(r) = self.cache.get(path) {
            return r.clone();
        }
        self.out.includes.push(path.to_path_buf());
        let r = (self.read_include)(path)
            .map(Arc::from)
            .map_err(|e| e.to_string());
        self.cache.insert(path.to_path_buf(), r.clone());
        r
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn has_unquoted_blank(t: &str) -> bool {
    let mut quoted = false;
    t.chars().any(|c| {
        if c == '"' {
            quoted = !quoted;
        }
        !quoted && c.is_whitespace()
    })
}

fn classify(t: &str) -> Result<AliasTarget, &'static str> {
    if t.starts_with('|') {
        return Err("command targets are not supported");
    }
    if t.starts_with('/') {
        return Err("file targets are not supported");
    }
    let t = match t.strip_prefix('<').and_then(|r| r.strip_suffix('>')) {
        Some(inner) => inner.trim(),
        None => t,
    };
    // Remote targets end up in `RCPT TO:<...>`: no controls or brackets, and blanks only
    // inside a quoted local part.
    if t.is_empty() || t.contains(|c: char| c.is_control() || c == '<' || c == '>') {
        return Err("not an address or name");
    }
    if has_unquoted_blank(t) {
        return Err("not an address or name");
    }
    if let Some(name) = t.strip_prefix('\\') {
        if name.is_empty() || name.contains(['@', ':', '\\']) {
            return Err("bad \\mailbox target");
        }
        return Ok(AliasTarget::Mailbox(name.to_ascii_lowercase()));
    }
    if t.contains(':') {
        return Err("unsupported target type");
    }
    match t.rsplit_once('@') {
        Some((local, domain)) if !local.is_empty() && !domain.is_empty() => {
            Ok(AliasTarget::Address(t.to_string()))
        }
        Some(_) => Err("incomplete address"),
        None => Ok(AliasTarget::Local(t.to_ascii_lowercase())),
    }
}

fn load(path: &Path) -> io::Result<Loaded<AliasTable>> {
    let text = std::fs::read_to_string(path)?;
    let parsed = parse(&text, &mut |p| std::fs::read_to_string(p));
    for w in &parsed.warnings {
        tracing::warn!(path = %path.display(), "{w}");
    }
    Ok(Loaded {
        value: parsed.table,
        also_watch: parsed.includes,
    })
}

/// An aliases file, reloaded when it or one of its `:include:` files changes. A missing
/// configured file is `Unavailable` (mail to aliases waits rather than bounces).
#[derive(Debug, Clone)]
pub struct AliasFile {
    file: Arc<Reloading<AliasTable>>,
}

impl AliasFile {
    pub fn new(path: PathBuf) -> Self {
        Self::with_recheck(path, DEFAULT_RECHECK)
    }

    /// Like [`new`](Self::new), checking for changes at most every `recheck`.
    pub fn with_recheck(path: PathBuf, recheck: Duration) -> Self {
        AliasFile {
            file: Arc::new(Reloading::new(path, recheck, load)),
        }
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// The current table (stat'ing and re-reading in a blocking thread when due).
    pub async fn current(&self) -> Result<Arc<AliasTable>, AuthError> {
        let file = self.file.clone();
        crate::blocking::run(move || file.get()).await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AliasTarget::*;

    fn local(s: &str) -> AliasTarget {
        Local(s.to_string())
    }

    #[test]
    fn basic_syntax_comments_continuations_case() {
        let p = parse_str(
            "# the team\n\
             Staff: alice, Bob,\n\
             \tcarol@Example.ORG\n\
             \n\
             root: \\Alice\n\
             owner: <dave@example.test>\n",
        );
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        assert_eq!(
            p.table.get("staff").unwrap(),
            &[
                local("alice"),
                local("bob"),
                Address("carol@Example.ORG".into())
            ]
        );
        assert_eq!(p.table.get("STAFF"), p.table.get("staff"));
        assert_eq!(p.table.get("root").unwrap(), &[Mailbox("alice".into())]);
        assert_eq!(
            p.table.get("owner").unwrap(),
            &[Address("dave@example.test".into())]
        );
        assert_eq!(p.table.len(), 3);
    }

    #[test]
    fn quotes_and_unsupported_targets() {
        let p = parse_str(
            "a: \"|/usr/bin/vacation alice\", \"alice\", /var/log/mail, error:nope, \"x, y\"@example.org\n",
        );
        assert_eq!(
            p.table.get("a").unwrap(),
            &[local("alice"), Address("\"x, y\"@example.org".into())]
        );
        assert_eq!(p.warnings.len(), 3, "{:?}", p.warnings);
    }

    #[test]
    fn bad_lines_are_skipped_with_warnings_and_first_wins() {
        let p =
            parse_str("  orphan continuation\nnocolon\nbad name: x\nx: one\nX: two\nonly: |cmd\n");
        assert_eq!(p.table.get("x").unwrap(), &[local("one")]);
        assert_eq!(p.table.get("only").unwrap(), &[] as &[AliasTarget]);
        assert!(p.table.get("bad name").is_none());
        // orphan, nocolon, bad name, duplicate, |cmd, no deliverable target
        assert_eq!(p.warnings.len(), 6, "{:?}", p.warnings);
    }

    #[test]
    fn includes_are_read_nested_and_loops_stopped() {
        let files: HashMap<PathBuf, &str> = [
            (
                PathBuf::from("/inc/a"),
                "# members\nbob\ncarol, dave@example.org\n:include:/inc/b\n",
            ),
            (PathBuf::from("/inc/b"), "erin\n:include:/inc/a\n"),
        ]
        .into_iter()
        .collect();
        let p = parse(
            "list: alice, :include:/inc/a, :INCLUDE:/inc/missing, :include:relative\n",
            &mut |path| {
                files
                    .get(path)
                    .map(|s| s.to_string())
                    .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
            },
        );
        assert_eq!(
            p.table.get("list").unwrap(),
            &[
                local("alice"),
                local("bob"),
                local("carol"),
                Address("dave@example.org".into()),
                local("erin"),
            ]
        );
        // loop back to /inc/a, missing file, relative path
        assert_eq!(p.warnings.len(), 3, "{:?}", p.warnings);
        assert_eq!(
            p.includes,
            [
                PathBuf::from("/inc/a"),
                PathBuf::from("/inc/b"),
                PathBuf::from("/inc/missing")
            ]
        );
    }

    #[test]
    fn mutually_including_files_cost_linear_time() {
        // 12 files each including all the others: without per-entry memo this is 12!
        // expansions; with it, each file is expanded once per alias and read once.
        let mut reads = 0;
        let all: String = (0..12).map(|i| format!(":include:/inc/{i}\n")).collect();
        let p = parse("a: :include:/inc/0\nb: :include:/inc/5\n", &mut |path| {
            reads += 1;
            Ok(format!(
                "{}\n{all}",
                path.display().to_string().replace("/inc/", "u")
            ))
        });
        assert_eq!(reads, 12);
        assert_eq!(p.table.get("a").unwrap().len(), 12);
        assert_eq!(p.table.get("b").unwrap().len(), 12);
    }

    #[tokio::test]
    async fn alias_file_reloads_on_change_and_on_include_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aliases");
        let inc = dir.path().join("list");
        std::fs::write(&inc, "bob\n").unwrap();
        std::fs::write(&path, format!("team: :include:{}\n", inc.display())).unwrap();
        let f = AliasFile::with_recheck(path.clone(), Duration::ZERO);
        assert_eq!(
            f.current().await.unwrap().get("team").unwrap(),
            &[local("bob")]
        );

        std::fs::write(&inc, "bob\ncarol\n").unwrap();
        assert_eq!(
            f.current().await.unwrap().get("team").unwrap(),
            &[local("bob"), local("carol")]
        );

        std::fs::write(&path, "team: dave\n").unwrap();
        assert_eq!(
            f.current().await.unwrap().get("team").unwrap(),
            &[local("dave")]
        );

        std::fs::remove_file(&path).unwrap();
        assert!(matches!(f.current().await, Err(AuthError::Unavailable(_))));
    }
}
