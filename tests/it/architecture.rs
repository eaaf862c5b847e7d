//! The shape of the source tree, checked on every `cargo test`: no module imports another in a
//! circle, and the groups of the library depend one way only, in the order ARCHITECTURE.md
//! draws. Run with `--nocapture` to see the graph between the groups.
//!
//! It reads the source the compiler reads: every path through `crate::`, `ledgit::` or
//! `super::` outside a `#[cfg(test)] mod tests` is an edge from the module that writes it to
//! the deepest module the path names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The groups from the bottom up. A group may use groups of a lower rank only; two groups of
/// one rank may not use each other.
const LAYERS: &[(&str, u32)] = &[
    ("error", 0),
    ("finding", 0),
    ("support", 1),
    ("model", 2),
    ("token", 3),
    ("git", 4),
    ("receipt", 5),
    ("review", 6),
    ("reconcile", 6),
    ("view", 7),
    ("server", 8),
    ("cli", 9),
    ("main", 10),
];

/// A module's path (`model::record`), from its file under `src/`.
fn module_of(rel: &Path) -> String {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    match last.as_str() {
        "mod.rs" | "lib.rs" => {}
        name => parts.push(name.trim_end_matches(".rs").to_string()),
    }
    parts.join("::")
}

/// The text of a file without its unit tests (an inline `#[cfg(test)] mod tests`, possibly
/// `pub(super)` for a sibling's tests, to the end of the file, as every module here writes
/// them) and without comments.
fn code(text: &str) -> String {
    let cut = [
        "#[cfg(test)]\nmod tests {",
        "#[cfg(test)]\npub(super) mod tests {",
    ]
    .iter()
    .filter_map(|m| text.find(m))
    .min()
    .unwrap_or(text.len());
    text[..cut]
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every module path written after `prefix` (`crate::`, `super::`), with the identifiers of
/// a braced list (`crate::{a, b::c}`) each on their own.
fn paths_after(text: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = text[from..].find(prefix).map(|i| from + i) {
        let before = text[..i].chars().last();
        from = i + prefix.len();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let rest = &text[from..];
        if let Some(list) = rest.strip_prefix('{') {
            let end = list.find('}').unwrap_or(list.len());
            for item in list[..end].split(',') {
                out.push(ident_path(item.trim()));
            }
        } else {
            out.push(ident_path(rest));
        }
    }
    out
}

fn ident_path(text: &str) -> String {
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(text.len());
    text[..end].trim_end_matches(':').to_string()
}

/// The deepest known module that `path` starts with.
fn resolve(path: &str, modules: &BTreeSet<String>) -> Option<String> {
    let parts: Vec<&str> = path.split("::").collect();
    (1..=parts.len())
        .rev()
        .map(|n| parts[..n].join("::"))
        .find(|m| modules.contains(m))
}

struct Graph {
    /// Module to the modules it uses.
    edges: BTreeMap<String, BTreeSet<String>>,
}

fn graph() -> Graph {
    let src = crate::common::project_root().join("src");
    let mut files = BTreeMap::new();
    for entry in walkdir::WalkDir::new(&src) {
        let entry = entry.unwrap();
        let path = entry.path();
        // A module of unit tests in a file of its own is test code too.
        if path.extension().is_some_and(|e| e == "rs")
            && path.file_stem().is_some_and(|s| s != "tests")
        {
            let rel = path.strip_prefix(&src).unwrap();
            files.insert(module_of(rel), std::fs::read_to_string(path).unwrap());
        }
    }
    let modules: BTreeSet<String> = files.keys().cloned().collect();
    let mut edges = BTreeMap::new();
    for (module, text) in &files {
        let code = code(text);
        let in_binary = module == "main" || module.starts_with("cli");
        let mut used = BTreeSet::new();
        let add = |used: &mut BTreeSet<String>, path: String| {
            if let Some(to) = resolve(&path, &modules)
                && &to != module
                && !to.is_empty()
            {
                used.insert(to);
            }
        };
        for p in paths_after(&code, "ledgit::") {
            add(&mut used, p);
        }
        for p in paths_after(&code, "crate::") {
            // In the binary, `crate::` is the binary's own root (main.rs and cli/).
            add(
                &mut used,
                if in_binary && !p.starts_with("cli") {
                    format!("main::{p}")
                } else {
                    p
                },
            );
        }
        // `super::` names the parent module, whether the module is a file or a mod.rs; each
        // further `super::` one more up.
        let parts: Vec<&str> = module.split("::").collect();
        for p in paths_after(&code, "super::") {
            let mut rest = p.as_str();
            let mut up = 1;
            while let Some(r) = rest.strip_prefix("super::") {
                rest = r;
                up += 1;
            }
            let base = parts[..parts.len().saturating_sub(up)].join("::");
            add(
                &mut used,
                if base.is_empty() {
                    rest.to_string()
                } else {
                    format!("{base}::{rest}")
                },
            );
        }
        // A child declared with `mod name;` is named without a prefix: `name::item`.
        for line in code.lines() {
            let line = line.trim_start().trim_start_matches("pub ");
            if let Some(child) = line.strip_prefix("mod ").and_then(|l| l.strip_suffix(';')) {
                for p in paths_after(&code, &format!("{child}::")) {
                    let full = if module.is_empty() {
                        format!("{child}::{p}")
                    } else {
                        format!("{module}::{child}::{p}")
                    };
                    if let Some(to) = resolve(&full, &modules) {
                        used.insert(to);
                    }
                }
            }
        }
        edges.insert(module.clone(), used);
    }
    Graph { edges }
}

fn group(module: &str) -> &str {
    module.split("::").next().unwrap()
}

fn rank(group: &str) -> u32 {
    LAYERS
        .iter()
        .find(|(g, _)| *g == group)
        .unwrap_or_else(|| panic!("the group `{group}` is not in LAYERS: place it there"))
        .1
}

/// Tarjan's strongly connected components with more than one module: the import cycles.
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.edges.get(v).into_iter().flatten() {
            if !s.index.contains_key(w.as_str()) {
                visit(s, w);
                let lw = s.low[w.as_str()];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w.as_str()) {
                let iw = s.index[w.as_str()];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.out.push(component);
            }
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[test]
fn no_module_imports_in_a_circle_and_groups_depend_one_way() {
    let g = graph();
    let found = cycles(&g.edges);
    assert!(
        found.is_empty(),
        "import cycles (each line: modules that reach each other):\n{}",
        found
            .iter()
            .map(|c| c.join(" <-> "))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let mut between: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut wrong = Vec::new();
    for (from, tos) in &g.edges {
        for to in tos {
            let (a, b) = (group(from), group(to));
            // The crate root declares the groups; it is above them all.
            if a == b || from.is_empty() {
                continue;
            }
            between.entry(a).or_default().insert(b);
            if rank(a) <= rank(b) {
                wrong.push(format!("{from} uses {to}"));
            }
        }
    }
    for (a, bs) in &between {
        println!(
            "{a} -> {}",
            bs.iter().copied().collect::<Vec<_>>().join(", ")
        );
    }
    assert!(
        wrong.is_empty(),
        "uses against the layering (a group may use lower groups only):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_checker_sees_a_cycle_and_resolves_paths() {
    let mut edges = BTreeMap::new();
    edges.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    edges.insert("b".to_string(), BTreeSet::from(["c".to_string()]));
    edges.insert("c".to_string(), BTreeSet::from(["a".to_string()]));
    edges.insert("d".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(cycles(&edges), vec![vec!["a", "b", "c"]]);
    let text = "use crate::{model::record::X, support};\nlet x = crate::git::history::build();";
    assert_eq!(
        paths_after(text, "crate::"),
        ["model::record::X", "support", "git::history::build"]
    );
    // `super::super::x` is one path (two levels up), not also `super::x`.
    assert_eq!(
        paths_after("use super::super::x::Y;", "super::"),
        ["super::x::Y"]
    );
    let modules = BTreeSet::from(["git".to_string(), "git::history".to_string()]);
    assert_eq!(
        resolve("git::history::build", &modules).as_deref(),
        Some("git::history")
    );
    assert_eq!(module_of(Path::new("model/mod.rs")), "model");
    assert_eq!(module_of(Path::new("model/record.rs")), "model::record");
    let graph = graph();
    // What the tree holds today is seen: the model's validation reads records.
    assert!(graph.edges["model::validate"].contains("model::record"));
    assert!(graph.edges["cli::token"].contains("token"));
}

#[test]
fn the_library_never_prints_and_its_errors_are_typed() {
    let src = crate::common::project_root().join("src");
    let mut wrong = Vec::new();
    for entry in walkdir::WalkDir::new(&src) {
        let entry = entry.unwrap();
        let rel = entry.path().strip_prefix(&src).unwrap().to_path_buf();
        let front_end = rel.starts_with("cli") || rel == Path::new("main.rs");
        if front_end || entry.path().extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap();
        // The lines `code` keeps, numbered as in the file.
        let kept = code(&text);
        let mut kept = kept.lines().peekable();
        for (i, line) in text.lines().enumerate() {
            if kept.peek() != Some(&line) {
                continue;
            }
            kept.next();
            let prints = ["println!", "eprintln!", "print!(", "eprint!(", "dbg!("]
                .iter()
                .any(|m| line.contains(m));
            let stringly = (line.contains("Result<") && line.contains(", String>"))
                || line.contains("type Err = String");
            if prints || stringly {
                wrong.push(format!("src/{}:{}: {}", rel.display(), i + 1, line.trim()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "the library prints or returns a string for an error (the front ends print; errors are types):\n{}",
        wrong.join("\n")
    );
}

/// Every file under `tests/it/` is a module of this binary: a test file nobody declared would
/// never run, and nobody would notice (jj keeps the same guard).
#[test]
fn no_test_file_is_forgotten() {
    let root = crate::common::project_root().join("tests/it");
    let mut forgotten = Vec::new();
    for dir in [root.clone(), root.join("common")] {
        let parent = if dir == root { "main.rs" } else { "mod.rs" };
        let declared = std::fs::read_to_string(dir.join(parent)).unwrap();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let Some(stem) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .filter(|_| path.extension().is_some_and(|e| e == "rs"))
            else {
                continue;
            };
            if stem == "main" || stem == "mod" {
                continue;
            }
            let declares = declared.lines().any(|l| {
                l.trim() == format!("mod {stem};") || l.trim() == format!("pub mod {stem};")
            });
            if !declares {
                forgotten.push(path.strip_prefix(&root).unwrap().display().to_string());
            }
        }
    }
    assert!(
        forgotten.is_empty(),
        "test files no module declares (they never run): {forgotten:?}"
    );
}
