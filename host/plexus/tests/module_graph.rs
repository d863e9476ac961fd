//! The modules of the `plexus` crate depend on each other one way: no module reaches,
//! through any chain of `crate::` and `super::` paths, back to itself. A cycle is where a
//! concern has settled in the wrong module (a stored record defined by the plugin, the
//! plugin starting processes through the CLI); this test names it when one comes back.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Which top-level module uses which, from the crate's sources.
type Graph = BTreeMap<String, BTreeSet<String>>;

#[test]
fn the_top_level_modules_form_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    assert!(
        graph.len() > 10,
        "too few modules read from {}: {graph:?}",
        src.display()
    );
    let cycles = cycles(&graph);
    assert!(
        cycles.is_empty(),
        "modules that depend on each other in a circle: {cycles:?}\nthe graph: {graph:#?}"
    );
}

fn module_graph(src: &Path) -> Graph {
    let mut graph = Graph::new();
    for file in rust_files(src) {
        let relative = file.strip_prefix(src).expect("a file under src");
        let Some(module) = top_module(relative) else {
            continue;
        };
        let is_top_file = relative.components().count() == 1 || relative.ends_with("mod.rs");
        let text = fs::read_to_string(&file).expect("read a source file");
        let used = graph.entry(module.clone()).or_default();
        for line in text.lines().map(str::trim) {
            if line.starts_with("//") {
                continue;
            }
            used.extend(paths_after(line, "crate::"));
            // In a top module's own file `super` is the crate root; deeper, it is a
            // module of the same top module.
            if is_top_file {
                used.extend(paths_after(line, "super::"));
            }
        }
        used.remove(&module);
    }
    graph
}

/// The top-level module a source file belongs to; `None` for the crate root.
fn top_module(relative: &Path) -> Option<String> {
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_owned())
}

/// The first segment of every path that starts with `prefix` in `line`, including each
/// name of a `prefix{a, b::c}` group.
fn paths_after(line: &str, prefix: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (at, _) in line.match_indices(prefix) {
        let before = line[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &line[at + prefix.len()..];
        match rest.strip_prefix('{') {
            Some(group) => names.extend(group_heads(group)),
            None => names.extend(identifier(rest)),
        }
    }
    names
}

/// The first names of the entries of a `{...}` group (its text after the `{`).
fn group_heads(group: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut entry_start = true;
    for (at, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => entry_start = true,
            c if entry_start && depth == 0 && !c.is_whitespace() => {
                heads.extend(identifier(&group[at..]));
                entry_start = false;
            }
            _ => {}
        }
    }
    heads
}

fn identifier(text: &str) -> Option<String> {
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    let name = &text[..end];
    (!name.is_empty() && name != "self").then(|| name.to_owned())
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).expect("read a source directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files
}

/// The strongly connected components of more than one module (Tarjan's algorithm).
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    struct Search<'a> {
        graph: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        cycles: Vec<Vec<String>>,
    }
    impl<'a> Search<'a> {
        fn visit(&mut self, module: &'a str) {
            let index = self.index.len();
            self.index.insert(module, index);
            self.low.insert(module, index);
            self.stack.push(module);
            for used in self.graph.get(module).into_iter().flatten() {
                let used = used.as_str();
                if !self.index.contains_key(used) {
                    self.visit(used);
                    let low = self.low[module].min(self.low[used]);
                    self.low.insert(module, low);
                } else if self.stack.contains(&used) {
                    let low = self.low[module].min(self.index[used]);
                    self.low.insert(module, low);
                }
            }
            if self.low[module] == self.index[module] {
                let at = self
                    .stack
                    .iter()
                    .rposition(|&on| on == module)
                    .expect("a module being visited is on the stack");
                let component: Vec<String> = self.stack.drain(at..).map(str::to_owned).collect();
                if component.len() > 1 {
                    self.cycles.push(component);
                }
            }
        }
    }
    let mut search = Search {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        cycles: Vec::new(),
    };
    for module in graph.keys() {
        if !search.index.contains_key(module.as_str()) {
            search.visit(module);
        }
    }
    search.cycles
}

#[test]
fn a_circle_of_modules_is_found() {
    let graph: Graph = [
        ("plugin", vec!["state", "error"]),
        ("state", vec!["plugin"]),
        ("error", vec![]),
    ]
    .into_iter()
    .map(|(module, used)| {
        (
            module.to_owned(),
            used.into_iter().map(str::to_owned).collect(),
        )
    })
    .collect();
    let mut found = cycles(&graph);
    found.iter_mut().for_each(|cycle| cycle.sort());
    assert_eq!(found, vec![vec!["plugin".to_owned(), "state".to_owned()]]);
}

#[test]
fn paths_are_read_from_uses_and_expressions() {
    assert_eq!(
        paths_after("use crate::{config::X, state::{A, B}, vm};", "crate::"),
        ["config", "state", "vm"]
    );
    assert_eq!(
        paths_after("let x = crate::pod::parse(a) + notcrate::y;", "crate::"),
        ["pod"]
    );
}
