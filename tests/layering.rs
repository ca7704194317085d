//! Keeps docs/architecture.md's module map honest: every `crate::` path in src/ must be one the
//! map allows, and the map itself must be a layering (each module uses only modules above it),
//! so there is no import cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `layers` block of docs/architecture.md, in order: module → what it may use.
fn layers() -> Vec<(String, BTreeSet<String>)> {
    let doc = std::fs::read_to_string(root().join("docs/architecture.md")).expect("read docs");
    let start = doc.find("```layers\n").expect("a ```layers block") + "```layers\n".len();
    let end = start + doc[start..].find("```").expect("the block ends");
    doc[start..end]
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (m, deps) = l.split_once(':').expect("`module: deps`");
            let deps = deps.split_whitespace().map(str::to_string).collect();
            (m.trim().to_string(), deps)
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of src/ belongs to (`None` for lib.rs and main.rs).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).expect("under src");
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_string();
    (name != "lib" && name != "main").then_some(name)
}

/// Every module named as `crate::<module>` in the text.
fn crate_paths(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        let tail = &rest[i + "crate::".len()..];
        let name: String = tail
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.insert(name);
        }
        rest = tail;
    }
    out
}

#[test]
fn the_module_map_is_a_layering_without_cycles() {
    let mut above = BTreeSet::new();
    for (module, deps) in layers() {
        for d in &deps {
            assert!(
                above.contains(d),
                "docs/architecture.md: `{module}` may use `{d}`, which is not listed above it (a cycle, or a wrong order)"
            );
        }
        assert!(above.insert(module.clone()), "`{module}` is listed twice");
    }
}

#[test]
fn every_module_uses_only_what_the_map_allows() {
    let src = root().join("src");
    let map: BTreeMap<String, BTreeSet<String>> = layers().into_iter().collect();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    for file in files {
        let Some(module) = module_of(&src, &file) else {
            continue;
        };
        let allowed = map.get(&module).unwrap_or_else(|| {
            panic!(
                "src module `{module}` is missing from docs/architecture.md's module map ({})",
                file.display()
            )
        });
        let text = std::fs::read_to_string(&file).expect("read source");
        for used in crate_paths(&text) {
            if used != module && !allowed.contains(&used) {
                violations.push(format!(
                    "{}: `{module}` uses `crate::{used}`",
                    file.strip_prefix(root()).unwrap_or(&file).display()
                ));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports against docs/architecture.md's layering:\n{}",
        violations.join("\n")
    );
}

#[test]
fn every_module_in_the_map_exists() {
    let src = root().join("src");
    for (module, _) in layers() {
        assert!(
            src.join(format!("{module}.rs")).exists() || src.join(&module).join("mod.rs").exists(),
            "docs/architecture.md names `{module}`, which is not in src/"
        );
    }
}

#[test]
fn crate_paths_are_found_in_use_lines_and_inline_paths() {
    let found = crate_paths("use crate::spool::Spool;\nlet x = crate::mqtt::options(c);");
    assert_eq!(
        found,
        ["mqtt", "spool"].into_iter().map(String::from).collect()
    );
}
