//! The library's layers, read from its source: every file of `src/` belongs to one layer
//! folder, imports only from its own layer or from lower ones, and no set of files imports
//! one another in a cycle. The imports are the `crate::…` and `super::…` paths written in
//! the code (unit-test modules excepted: a test may look anywhere).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers, highest first: a file may import from its own layer and those after it.
const LAYERS: &[(&str, &str)] = &[
    (
        "",
        "the root: the load hook and the process's lifecycle (lib.rs, lifecycle.rs)",
    ),
    ("interpose", "the exported shims"),
    (
        "consumers",
        "files, HTTP, push: they loop over the kinds' table",
    ),
    ("kinds", "the sources, one file per kind, and their table"),
    ("runtime", "signals, masks, threads, the guard, the log"),
    ("symbols", "maps, debuginfo, symbolize"),
    ("signal_safe", "what handlers and hooks reach"),
];

/// Files allowed at the top of `src/`.
const ROOT_FILES: &[&str] = &["lib", "lifecycle"];

type Module = Vec<String>;

fn modules(src: &Path) -> BTreeMap<Module, String> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let rel = p.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Module = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
                parts.pop();
            }
            out.insert(parts, std::fs::read_to_string(&p).unwrap());
        }
    }
    out
}

/// The code without its unit-test module (`#[cfg(test)] mod tests { … }`, always last).
fn without_tests(text: &str) -> &str {
    let mut at = 0;
    while let Some(i) = text[at..].find("#[cfg(test)]") {
        let i = at + i;
        let rest = text[i + "#[cfg(test)]".len()..].trim_start();
        if rest.starts_with("mod tests") {
            return &text[..i];
        }
        at = i + 1;
    }
    text
}

/// The longest module that `path` (segments after `crate::`) names: an item of no
/// module is the root's (lib.rs), except `config`, the `rprof_config` crate lib.rs renames.
fn resolve(all: &BTreeMap<Module, String>, path: &[String]) -> Option<Module> {
    if path.first().is_none_or(|p| p == "config") {
        return None;
    }
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|m| all.contains_key(m))
        .or(Some(Vec::new()))
}

fn path_after(text: &str, at: usize) -> Vec<String> {
    text[at..]
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .next()
        .unwrap_or("")
        .split("::")
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The items of a brace group `{a, b::c, d::{e, f}}` starting at `open`, as paths.
fn group_items(text: &str, open: usize) -> Vec<Vec<String>> {
    let mut depth = 0;
    let mut end = open;
    for (i, c) in text[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    end = open + i;
                    break;
                }
            }
            _ => {}
        }
    }
    let inner = &text[open + 1..end];
    let mut items = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in inner.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        if depth == 0 {
            cur.push(c);
        }
    }
    items.push(cur);
    items
        .iter()
        .map(|i| {
            i.trim()
                .trim_end_matches("::")
                .split("::")
                .map(|s| s.trim().split(' ').next().unwrap_or("").to_string())
                .filter(|s| !s.is_empty() && s != "self")
                .collect::<Vec<_>>()
        })
        .filter(|p| !p.is_empty())
        .collect()
}

fn imports(all: &BTreeMap<Module, String>, me: &Module, text: &str) -> BTreeSet<Module> {
    let text = without_tests(text);
    let mut out = BTreeSet::new();
    let mut add = |path: Vec<String>| {
        if let Some(t) = resolve(all, &path) {
            // A module's own children are part of it.
            if &t != me && !(t.len() < me.len() && me[..t.len()] == t[..]) {
                out.insert(t);
            }
        }
    };
    for (prefix, base) in [
        ("crate::", Vec::new()),
        ("super::", me[..me.len().saturating_sub(1)].to_vec()),
    ] {
        let mut at = 0;
        while let Some(i) = text[at..].find(prefix) {
            let start = at + i + prefix.len();
            at = start;
            // Not part of a longer name (`some_crate::`).
            let before = text[..start - prefix.len()].chars().last();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let head = path_after(text, start);
            let brace = start + head.iter().map(|s| s.len() + 2).sum::<usize>();
            if text[start..].starts_with('{')
                || text.get(brace..).is_some_and(|r| r.starts_with('{'))
            {
                let open = if text[start..].starts_with('{') {
                    start
                } else {
                    brace
                };
                for item in group_items(text, open) {
                    let mut p = base.clone();
                    p.extend(head.iter().cloned());
                    p.extend(item);
                    add(p);
                }
                continue;
            }
            let mut p = base.clone();
            p.extend(head);
            add(p);
        }
    }
    out
}

fn layer_of(m: &Module) -> Option<usize> {
    if m.is_empty() {
        return Some(0);
    }
    if m.len() == 1 && ROOT_FILES.contains(&m[0].as_str()) {
        return Some(0);
    }
    if m.len() == 1 && !LAYERS.iter().any(|(l, _)| *l == m[0]) {
        return None;
    }
    LAYERS.iter().position(|(l, _)| *l == m[0])
}

fn name(m: &Module) -> String {
    if m.is_empty() {
        "lib".into()
    } else {
        m.join("/")
    }
}

/// Strongly connected sets of more than one module (Tarjan).
fn cycles(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct T<'a> {
        edges: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<Module, usize>,
        low: BTreeMap<Module, usize>,
        on: BTreeSet<Module>,
        stack: Vec<Module>,
        out: Vec<Vec<Module>>,
    }
    fn visit(t: &mut T, v: &Module) {
        let n = t.index.len();
        t.index.insert(v.clone(), n);
        t.low.insert(v.clone(), n);
        t.stack.push(v.clone());
        t.on.insert(v.clone());
        for w in t.edges.get(v).into_iter().flatten() {
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            loop {
                let w = t.stack.pop().unwrap();
                t.on.remove(&w);
                let done = &w == v;
                comp.push(w);
                if done {
                    break;
                }
            }
            if comp.len() > 1 {
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        on: BTreeSet::new(),
        stack: Vec::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out
}

fn graph() -> (BTreeMap<Module, String>, BTreeMap<Module, BTreeSet<Module>>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let all = modules(&src);
    let edges = all
        .iter()
        .map(|(m, text)| (m.clone(), imports(&all, m, text)))
        .collect();
    (all, edges)
}

#[test]
fn every_file_is_in_a_layer_and_imports_only_downwards() {
    let (all, edges) = graph();
    let mut wrong = Vec::new();
    for m in all.keys() {
        if layer_of(m).is_none() {
            wrong.push(format!("{} is in no layer folder", name(m)));
        }
    }
    for (m, targets) in &edges {
        let Some(from) = layer_of(m) else { continue };
        for t in targets {
            let Some(to) = layer_of(t) else { continue };
            if to < from {
                wrong.push(format!(
                    "{} ({}) imports {} ({}), a higher layer",
                    name(m),
                    LAYERS[from].1,
                    name(t),
                    LAYERS[to].1
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn no_files_import_one_another_in_a_cycle() {
    let (_, edges) = graph();
    let found: Vec<String> = cycles(&edges)
        .iter()
        .map(|c| {
            let mut names: Vec<String> = c.iter().map(name).collect();
            names.sort();
            format!("cycle of {} files: {}", c.len(), names.join(", "))
        })
        .collect();
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn each_layer_states_its_contract_at_the_top() {
    let (all, _) = graph();
    for (layer, _) in &LAYERS[1..] {
        let m = vec![layer.to_string()];
        let text = all
            .get(&m)
            .unwrap_or_else(|| panic!("src/{layer}/mod.rs is missing"));
        assert!(
            text.starts_with("//!") && text.contains("Contract"),
            "src/{layer}/mod.rs does not begin with its contract"
        );
    }
}

/// The reader itself: a cycle and an upward import written in the forms the code uses are
/// seen.
#[test]
fn the_reader_sees_each_form_of_import() {
    let mut all = BTreeMap::new();
    let m = |s: &str| s.split('/').map(str::to_string).collect::<Module>();
    for f in [
        "kinds/cpu",
        "kinds/heap",
        "runtime/signals",
        "runtime/masks",
        "kinds",
    ] {
        all.insert(m(f), String::new());
    }
    let text = "use crate::kinds::{cpu, heap::X};\nuse super::masks;\nfn f() { crate::kinds::heap::y(); }\n#[cfg(test)]\nmod tests { use crate::kinds::cpu; }";
    let got = imports(&all, &m("runtime/signals"), text);
    assert_eq!(
        got,
        [m("kinds/cpu"), m("kinds/heap"), m("runtime/masks")]
            .into_iter()
            .collect()
    );
    assert_eq!(layer_of(&m("runtime/signals")), Some(4));
    let mut edges = BTreeMap::new();
    edges.insert(m("a"), [m("b")].into_iter().collect::<BTreeSet<_>>());
    edges.insert(m("b"), [m("a")].into_iter().collect());
    assert_eq!(cycles(&edges).len(), 1);
}
