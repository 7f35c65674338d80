//! The code's structure, checked on every test run (the website's "Architecture" page describes
//! it):
//!
//! - forge-runtime's component folders import only folders below them ([`LAYERS`]): the job
//!   engine never reaches up into the gateway, the gateway never into the dashboard;
//! - in every crate, no file depends on another that depends back on it, directly or through
//!   others (a module's `mod.rs` re-exporting a child counts as depending on it).
//!
//! A reference is a `super::…` or `crate::…` path outside comments and `#[cfg(test)] mod tests`,
//! resolved to the file that defines the item (following `pub use` re-exports).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use regex::Regex;

/// forge-runtime's folders (and top-level files), lowest first: each may import only those
/// before it. The other top-level files (`lib.rs`) may import anything.
const LAYERS: [&str; 14] = [
    "db",
    "observability",
    "jobs",
    "cron",
    "workflows",
    "functions",
    "cluster",
    "gateway",
    "realtime",
    "api",
    "dashboard",
    "error",
    "forge",
    "testing",
];

/// One crate's source: each file's code (comments and unit tests removed), by path relative to
/// `src/`, and each module path's file.
struct Crate {
    files: BTreeMap<String, String>,
    modules: HashMap<Vec<String>, String>,
}

impl Crate {
    fn read(src: &Path) -> Self {
        let mut files = BTreeMap::new();
        let mut stack = vec![src.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("read_dir") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let rel = path.strip_prefix(src).expect("under src").to_string_lossy().replace('\\', "/");
                    files.insert(rel, code_of(&std::fs::read_to_string(&path).expect("read")));
                }
            }
        }
        let modules = files.keys().map(|rel| (module_path(rel), rel.clone())).collect();
        Self { files, modules }
    }

    /// The file defining `name` in module `module` (a submodule, an item, or an item a
    /// `pub use` there re-exports from a child); `None` for what comes from elsewhere.
    fn resolve(&self, module: &[String], name: &str, depth: usize) -> Option<String> {
        let mut sub = module.to_vec();
        sub.push(name.to_owned());
        if let Some(file) = self.modules.get(&sub) {
            return Some(file.clone());
        }
        let file = self.modules.get(module)?;
        let code = &self.files[file];
        let defines =
            Regex::new(&format!(r"\b(struct|enum|fn|const|type|trait|static|union)\s+{}\b", regex::escape(name)))
                .expect("regex");
        if defines.is_match(code) {
            return Some(file.clone());
        }
        if depth > 8 {
            return None;
        }
        let reexport = Regex::new(r"pub(?:\([a-z]+\))?\s+use\s+([^;]+);").expect("regex");
        let word = Regex::new(&format!(r"\b{}\b", regex::escape(name))).expect("regex");
        for m in reexport.captures_iter(code) {
            let body = &m[1];
            if !word.is_match(body) {
                continue;
            }
            let segments: Vec<&str> = body.split("::").map(|s| s.trim_matches(|c| c == '{' || c == ' ')).collect();
            let first = if segments[0] == "self" { segments.get(1).copied().unwrap_or("") } else { segments[0] };
            let mut child = module.to_vec();
            child.push(first.to_owned());
            if self.modules.contains_key(&child) {
                return self.resolve(&child, name, depth + 1);
            }
        }
        None
    }

    /// The file `path` (segments after `base`) leads to.
    fn walk(&self, base: &[String], path: &[String]) -> Option<String> {
        let mut module = base.to_vec();
        for (i, segment) in path.iter().enumerate() {
            let mut sub = module.clone();
            sub.push(segment.clone());
            if i + 1 < path.len() && self.modules.contains_key(&sub) {
                module = sub;
                continue;
            }
            return self.resolve(&module, segment, 0);
        }
        self.modules.get(&module).cloned()
    }

    /// Each file's dependencies on the crate's other files.
    fn edges(&self) -> BTreeMap<String, BTreeSet<String>> {
        let path = Regex::new(r"\b(super|crate)::((?:[A-Za-z_][A-Za-z0-9_]*::)*)(\{[^}]*\}|[A-Za-z_][A-Za-z0-9_]*)")
            .expect("regex");
        let child = Regex::new(r"(?:^|[^:\w])([a-z_][a-z0-9_]*)::").expect("regex");
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (file, code) in &self.files {
            let module = module_path(file);
            let parent = &module[..module.len().saturating_sub(1)];
            let out = edges.entry(file.clone()).or_default();
            for m in path.captures_iter(code) {
                let base: &[String] = if &m[1] == "super" { parent } else { &[] };
                let middle: Vec<String> = m[2].split("::").filter(|s| !s.is_empty()).map(str::to_owned).collect();
                let last = &m[3];
                let names: Vec<String> = match last.strip_prefix('{') {
                    Some(group) => group
                        .trim_end_matches('}')
                        .split(',')
                        .filter_map(|n| {
                            n.trim().split("::").next().map(|n| n.split(' ').next().unwrap_or("").to_owned())
                        })
                        .filter(|n| !n.is_empty())
                        .collect(),
                    None => vec![last.to_owned()],
                };
                for name in names {
                    let target = if name == "self" {
                        self.walk(base, &middle)
                    } else {
                        let mut full = middle.clone();
                        full.push(name);
                        self.walk(base, &full)
                    };
                    if let Some(target) = target.filter(|t| t != file) {
                        out.insert(target);
                    }
                }
            }
            // `child::…` of a submodule of this file's module.
            for m in child.captures_iter(code) {
                let mut sub = module.clone();
                sub.push(m[1].to_owned());
                if let Some(target) = self.modules.get(&sub).filter(|t| *t != file) {
                    out.insert(target.clone());
                }
            }
        }
        edges
    }
}

/// `jobs/worker/mod.rs` → `[jobs, worker]`; `jobs/sql.rs` → `[jobs, sql]`; `lib.rs` → `[]`.
fn module_path(rel: &str) -> Vec<String> {
    let mut parts: Vec<String> = rel.trim_end_matches(".rs").split('/').map(str::to_owned).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    parts
}

/// The code of a file: without comment lines and without its `#[cfg(test)] mod tests`.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

/// The files taking part in a cycle, each cycle as a sorted list.
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    // Tarjan's strongly connected components.
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: HashMap<&'a str, usize>,
        low: HashMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        next: usize,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        let edges = s.edges;
        for w in edges.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.found.push(component);
            }
        }
    }
    let mut state = State {
        edges,
        index: HashMap::new(),
        low: HashMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        found: Vec::new(),
    };
    for v in edges.keys() {
        if !state.index.contains_key(v.as_str()) {
            visit(&mut state, v);
        }
    }
    state.found
}

fn crates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("crates/").to_path_buf()
}

#[test]
fn no_two_files_depend_on_each_other() {
    for name in ["forge-core", "forge-macros", "forge-runtime", "forge", "forge-bench"] {
        let krate = Crate::read(&crates_dir().join(name).join("src"));
        let edges = krate.edges();
        let found = cycles(&edges);
        let described: Vec<String> = found
            .iter()
            .map(|cycle| {
                let links: Vec<String> = cycle
                    .iter()
                    .flat_map(|a| edges[a].iter().filter(|b| cycle.contains(b)).map(move |b| format!("{a} -> {b}")))
                    .collect();
                format!("{}: {}", name, links.join(", "))
            })
            .collect();
        assert!(found.is_empty(), "files that depend on each other:\n{}", described.join("\n"));
    }
}

#[test]
fn runtime_components_import_only_the_layers_below_them() {
    let src = crates_dir().join("forge-runtime/src");
    let krate = Crate::read(&src);
    let reference = Regex::new(r"\bcrate::([a-z_]+)").expect("regex");
    let mut wrong = Vec::new();
    for (file, code) in &krate.files {
        let own = file.split('/').next().unwrap_or_default().trim_end_matches(".rs");
        let Some(rank) = LAYERS.iter().position(|l| *l == own) else { continue };
        for m in reference.captures_iter(code) {
            let target = &m[1];
            if let Some(target_rank) = LAYERS.iter().position(|l| *l == target)
                && target_rank > rank
            {
                wrong.push(format!("{file} imports crate::{target}"));
            }
        }
    }
    wrong.sort();
    wrong.dedup();
    assert!(wrong.is_empty(), "imports pointing up (order: {}):\n{}", LAYERS.join(" < "), wrong.join("\n"));
}

#[test]
fn the_checks_see_a_cycle_and_an_upward_import() {
    // A crate made up for the occasion: a <-> b through a re-export, c alone.
    let mut files = BTreeMap::new();
    files.insert("lib.rs".to_owned(), "mod a;\nmod b;\nmod c;\npub use b::Thing;".to_owned());
    files.insert("a.rs".to_owned(), "use crate::Thing;\npub struct Other;".to_owned());
    files.insert("b.rs".to_owned(), "use super::a::Other;\npub struct Thing;".to_owned());
    files.insert("c.rs".to_owned(), "use crate::a::Other;".to_owned());
    let modules = files.keys().map(|rel| (module_path(rel), rel.clone())).collect();
    let krate = Crate { files, modules };
    let found = cycles(&krate.edges());
    assert_eq!(found, vec![vec!["a.rs".to_owned(), "b.rs".to_owned()]]);
    assert!(code_of("// crate::x\nfn f() {}\n#[cfg(test)]\nmod tests { use crate::y; }").find("crate::").is_none());
}
