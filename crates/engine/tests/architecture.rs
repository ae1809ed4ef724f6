//! The engine's module map as a checked rule (see docs/architecture.md): the modules of
//! `crates/engine/src` reference each other without a cycle, and no source file is over
//! [`MAX_LINES`] lines.
//!
//! The graph is built from the source text: every `crate::a::b…`, `super::…` and `self::…`
//! path (including `use crate::{a, b::{c}}` groups), and in a directory module (`a/mod.rs`)
//! every path starting with a submodule it declares, is resolved to the deepest module file
//! it names (`a/b.rs` is module `a::b`), and a name the crate root re-exports (`crate::Db`)
//! to the module it comes from. A directory module is thus a node of its own: `a/mod.rs`
//! may use its submodules (as their facade or scheduler), or they may use it, not both. Comments, string literals and the `#[cfg(test)] mod tests`
//! block at the end of a file are not part of the map: unit tests may use anything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The longest a source file may be.
const MAX_LINES: usize = 600;

/// Files exempt from the length rule (never from the cycle rule). Empty: keep it so.
const LENGTH_EXEMPT: &[&str] = &[];

/// The engine's sources; `ARCHITECTURE_SRC` names another tree to check (e.g. an older
/// checkout's `crates/engine/src`, to see the rules fail on it).
fn src_dir() -> PathBuf {
    match std::env::var_os("ARCHITECTURE_SRC") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
    }
}

/// Every `.rs` file under `dir`, sorted, as paths relative to `root`.
fn rust_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(root, &p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p.strip_prefix(root).expect("under src").to_path_buf());
        }
    }
}

/// The module path of a file: `lib.rs` is the root (empty), `a.rs` and `a/mod.rs` are `a`,
/// `a/b.rs` is `a::b`.
fn module_of(rel: &Path) -> String {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    let file = parts.pop().expect("a file name");
    let stem = file.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    parts.join("::")
}

/// The source without comments, string and character literals (each replaced by a space),
/// and without the trailing unit-test module.
fn code_of(src: &str) -> String {
    let src = match find_test_module(src) {
        Some(at) => &src[..at],
        None => src,
    };
    let b: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0usize;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
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
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !ident_before(&b, i) {
            // A raw string: r"…" or r#…#"…"#…#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                match b.get(j) {
                    None => break,
                    Some('"') if (1..=hashes).all(|k| b.get(j + k) == Some(&'#')) => {
                        j += 1 + hashes;
                        break;
                    }
                    _ => j += 1,
                }
            }
            i = j;
            out.push(' ');
        } else if c == '"' {
            i += 1;
            while i < b.len() && b[i] != '"' {
                i += if b[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push(' ');
        } else if c == '\'' && (next == Some('\\') || b.get(i + 2) == Some(&'\'')) {
            // A character literal ('x', '\n', '\''); a lifetime ('a) is left alone.
            i += 1;
            while i < b.len() && b[i] != '\'' {
                i += if b[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push(' ');
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn ident_before(b: &[char], i: usize) -> bool {
    i > 0 && (b[i - 1].is_alphanumeric() || b[i - 1] == '_')
}

/// Where a `#[cfg(test)]` line followed by `mod tests` starts.
fn find_test_module(src: &str) -> Option<usize> {
    let mut offset = 0;
    let mut lines = src.split_inclusive('\n').peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]"
            && lines
                .peek()
                .is_some_and(|l| l.trim_start().starts_with("mod tests"))
        {
            return Some(offset);
        }
        offset += line.len();
    }
    None
}

/// Every path the code names from `crate`, `super` or `self`, with `{…}` groups expanded:
/// `crate::{a, b::{c, d}}` gives `crate::a`, `crate::b::c`, `crate::b::d`.
fn paths_in(code: &str) -> Vec<Vec<String>> {
    paths_from(code, &BTreeSet::new())
}

/// The child modules a file declares (`mod x;`, `pub(crate) mod x;`).
fn declared_children(code: &str) -> BTreeSet<String> {
    code.split(';')
        .filter_map(|stmt| {
            let words: Vec<&str> = stmt.split_whitespace().collect();
            match words.as_slice() {
                [.., "mod", name] if !name.contains('{') => Some(name.to_string()),
                _ => None,
            }
        })
        .collect()
}

/// [`paths_in`], and also the paths that start with one of `children` (a directory module
/// naming its submodules directly: `child::f()`, `pub use child::X`), as `self::child::…`.
fn paths_from(code: &str, children: &BTreeSet<String>) -> Vec<Vec<String>> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_alphabetic() || chars[i] == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let after_path_sep = start >= 2 && chars[start - 2] == ':' && chars[start - 1] == ':';
            // Only a path counts: `pub(crate)`, `pub(super)` and a `self` value do not.
            let starts_path = {
                let mut j = i;
                skip_ws(&chars, &mut j);
                chars.get(j) == Some(&':') && chars.get(j + 1) == Some(&':')
            };
            let is_child = children.contains(&word);
            if starts_path
                && (matches!(word.as_str(), "crate" | "super" | "self") || is_child)
                && !after_path_sep
            {
                let mut j = i;
                let mut prefix = if is_child {
                    vec!["self".to_string(), word]
                } else {
                    vec![word]
                };
                parse_tail(&chars, &mut j, &mut prefix, &mut out);
                i = j;
            }
        } else {
            i += 1;
        }
    }
    out
}

fn skip_ws(chars: &[char], j: &mut usize) {
    while *j < chars.len() && chars[*j].is_whitespace() {
        *j += 1;
    }
}

/// Reads `::seg::seg…`, `::{…}` or nothing after `prefix`, pushing every complete path.
fn parse_tail(chars: &[char], j: &mut usize, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    loop {
        skip_ws(chars, j);
        if !(chars.get(*j) == Some(&':') && chars.get(*j + 1) == Some(&':')) {
            out.push(prefix.clone());
            return;
        }
        *j += 2;
        skip_ws(chars, j);
        if chars.get(*j) == Some(&'{') {
            *j += 1;
            loop {
                skip_ws(chars, j);
                match chars.get(*j) {
                    None => return,
                    Some('}') => {
                        *j += 1;
                        return;
                    }
                    Some(',') => *j += 1,
                    Some(c) if c.is_alphabetic() || *c == '_' || *c == '*' || *c == '{' => {
                        if *c == '{' {
                            // `a::{{b}}` is not Rust; treat as the prefix itself.
                            *j += 1;
                            continue;
                        }
                        let start = *j;
                        while *j < chars.len()
                            && (chars[*j].is_alphanumeric() || chars[*j] == '_' || chars[*j] == '*')
                        {
                            *j += 1;
                        }
                        let seg: String = chars[start..*j].iter().collect();
                        let mut inner = prefix.clone();
                        if seg != "self" && seg != "*" {
                            inner.push(seg);
                        }
                        parse_tail(chars, j, &mut inner, out);
                        // Skip an `as alias`.
                        skip_ws(chars, j);
                        let rest: String = chars[*j..chars.len().min(*j + 3)].iter().collect();
                        if rest.starts_with("as")
                            && rest.chars().nth(2).is_some_and(char::is_whitespace)
                        {
                            *j += 2;
                            skip_ws(chars, j);
                            while *j < chars.len()
                                && (chars[*j].is_alphanumeric() || chars[*j] == '_')
                            {
                                *j += 1;
                            }
                        }
                    }
                    Some(_) => *j += 1,
                }
            }
        }
        let start = *j;
        while *j < chars.len() && (chars[*j].is_alphanumeric() || chars[*j] == '_') {
            *j += 1;
        }
        if start == *j {
            out.push(prefix.clone());
            return;
        }
        prefix.push(chars[start..*j].iter().collect());
    }
}

/// The engine's module graph: module → modules it references (never itself).
struct Graph {
    modules: BTreeSet<String>,
    edges: BTreeMap<String, BTreeSet<String>>,
}

/// The module a name re-exported by the crate root comes from (`Db` → `db`), read from the
/// root's `pub use a::{X, Y}` lines.
fn root_reexports(root_code: &str) -> BTreeMap<String, Vec<String>> {
    let mut map = BTreeMap::new();
    for stmt in root_code.split(';') {
        let s = stmt.trim();
        let Some(at) = s.find("pub use ") else {
            continue;
        };
        let body = format!("crate::{}", s[at + "pub use ".len()..].trim());
        for path in paths_in(&body) {
            if let Some(name) = path.last() {
                map.insert(name.clone(), path[1..path.len() - 1].to_vec());
            }
        }
    }
    map
}

fn build_graph() -> Graph {
    let dir = src_dir();
    let mut files = Vec::new();
    rust_files(&dir, &dir, &mut files);
    let mut code = BTreeMap::new();
    for rel in &files {
        let text = std::fs::read_to_string(dir.join(rel)).expect("read source");
        code.insert(module_of(rel), (rel.clone(), code_of(&text)));
    }
    let modules: BTreeSet<String> = code.keys().cloned().collect();
    let reexports = root_reexports(&code[""].1);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, (rel, text)) in &code {
        let is_dir_module = rel.ends_with("mod.rs") || rel.ends_with("lib.rs");
        let here: Vec<String> = if module.is_empty() {
            Vec::new()
        } else {
            module.split("::").map(str::to_string).collect()
        };
        // The crate root only declares and re-exports: its `pub use` lines are no dependency.
        let children = if is_dir_module && !module.is_empty() {
            declared_children(text)
        } else {
            BTreeSet::new()
        };
        for path in paths_from(text, &children) {
            let mut abs: Vec<String> = match path[0].as_str() {
                "crate" => Vec::new(),
                "self" if is_dir_module => here.clone(),
                // `self::x` in a file module `a::b` is `a::b::x` (an inline module of it).
                "self" => here.clone(),
                _ => {
                    // `super` in `a/b.rs` is `a`; in `a/mod.rs` it is the crate root.
                    let mut base = here.clone();
                    base.pop();
                    base
                }
            };
            let mut rest = &path[1..];
            while rest.first().is_some_and(|s| s == "super") {
                abs.pop();
                rest = &rest[1..];
            }
            abs.extend(rest.iter().cloned());
            if let Some(target) = resolve(&abs, &modules, &reexports)
                && &target != module
                && !target.is_empty()
            {
                edges.entry(module.clone()).or_default().insert(target);
            }
        }
    }
    Graph { modules, edges }
}

/// The deepest module file `path` falls in, following the root's re-exports.
fn resolve(
    path: &[String],
    modules: &BTreeSet<String>,
    reexports: &BTreeMap<String, Vec<String>>,
) -> Option<String> {
    for n in (1..=path.len()).rev() {
        let candidate = path[..n].join("::");
        if modules.contains(&candidate) {
            return Some(candidate);
        }
    }
    let first = path.first()?;
    let from = reexports.get(first)?;
    resolve(from, modules, reexports)
}

/// A cycle in the graph, as the modules along it (first repeated at the end).
fn find_cycle(g: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut mark: BTreeMap<&str, Mark> =
        g.modules.iter().map(|m| (m.as_str(), Mark::New)).collect();
    fn visit<'a>(
        g: &'a Graph,
        m: &'a str,
        mark: &mut BTreeMap<&'a str, Mark>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        mark.insert(m, Mark::Open);
        stack.push(m);
        for next in g.edges.get(m).into_iter().flatten() {
            match mark.get(next.as_str()).copied().unwrap_or(Mark::Done) {
                Mark::Open => {
                    let from = stack.iter().position(|s| *s == next).expect("on the stack");
                    let mut cycle: Vec<String> =
                        stack[from..].iter().map(|s| s.to_string()).collect();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(g, next, mark, stack) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        mark.insert(m, Mark::Done);
        None
    }
    let modules: Vec<&str> = g.modules.iter().map(String::as_str).collect();
    for m in modules {
        if mark[m] == Mark::New {
            let mut stack = Vec::new();
            if let Some(c) = visit(g, m, &mut mark, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn engine_modules_reference_each_other_without_a_cycle() {
    let g = build_graph();
    let edges: Vec<String> = g
        .edges
        .iter()
        .map(|(m, to)| {
            format!(
                "  {m} -> {}",
                to.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        })
        .collect();
    // Shown with `--nocapture`: the map docs/architecture.md describes.
    eprintln!("the engine's module graph:\n{}", edges.join("\n"));
    if let Some(cycle) = find_cycle(&g) {
        panic!(
            "import cycle among the engine's modules: {}\nthe module graph:\n{}",
            cycle.join(" -> "),
            edges.join("\n")
        );
    }
}

#[test]
fn no_engine_source_file_is_over_the_line_limit() {
    let dir = src_dir();
    let mut files = Vec::new();
    rust_files(&dir, &dir, &mut files);
    let too_long: Vec<String> = files
        .iter()
        .filter(|rel| !LENGTH_EXEMPT.iter().any(|x| Path::new(x) == rel.as_path()))
        .filter_map(|rel| {
            let lines = std::fs::read_to_string(dir.join(rel))
                .expect("read source")
                .lines()
                .count();
            (lines > MAX_LINES).then(|| format!("{} ({lines} lines)", rel.display()))
        })
        .collect();
    assert!(
        too_long.is_empty(),
        "engine source files over {MAX_LINES} lines: {}",
        too_long.join(", ")
    );
}

/// The checker itself: a cycle through a `use` group and a `super::` path is found, a
/// reference inside a comment or string is not.
#[test]
fn the_checker_sees_groups_super_paths_and_ignores_comments() {
    let code = code_of(concat!(
        "pub(crate) use crate::{a::X, b::{c::Y, Z}};\n",
        "// crate::hidden\n",
        "let s = \"crate::also_hidden\";\n",
        "pub(super) fn f(&self) { super::sib::f(); }\n",
        "let c = '\"'; crate::d::g();\n",
    ));
    let paths = paths_in(&code);
    let joined: Vec<String> = paths.iter().map(|p| p.join("::")).collect();
    assert_eq!(
        joined,
        [
            "crate::a::X",
            "crate::b::c::Y",
            "crate::b::Z",
            "super::sib::f",
            "crate::d::g"
        ]
    );
    let g = Graph {
        modules: ["a", "b", "c"].iter().map(|s| s.to_string()).collect(),
        edges: [
            ("a".to_string(), ["b".to_string()].into()),
            ("b".to_string(), ["c".to_string()].into()),
            ("c".to_string(), ["a".to_string()].into()),
        ]
        .into(),
    };
    assert_eq!(
        find_cycle(&g).map(|c| c.join(" -> ")).as_deref(),
        Some("a -> b -> c -> a")
    );
}
