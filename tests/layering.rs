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

/// The groups of src/: folders that only hold modules (`pipeline/`, `door/`, ...). A module in
/// one is named `group/module` in the map and `crate::group::module` in the code.
fn groups() -> BTreeSet<String> {
    layers()
        .into_iter()
        .filter_map(|(m, _)| m.split_once('/').map(|(g, _)| g.to_string()))
        .collect()
}

/// The module a file of src/ belongs to: `spool`, or `pipeline/spool` inside a group (`None` for
/// lib.rs, main.rs and a group's own mod.rs).
fn module_of(src: &Path, file: &Path, groups: &BTreeSet<String>) -> Option<String> {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts = rel
        .components()
        .map(|c| c.as_os_str().to_str().expect("UTF-8 path"))
        .map(|c| c.strip_suffix(".rs").unwrap_or(c).to_string());
    let first = parts.next()?;
    if groups.contains(&first) {
        let second = parts.next()?;
        return (second != "mod").then(|| format!("{first}/{second}"));
    }
    (first != "lib" && first != "main").then_some(first)
}

/// Every module named as `crate::<module>` (or `crate::<group>::<module>`) in the text.
fn crate_paths(text: &str, groups: &BTreeSet<String>) -> BTreeSet<String> {
    fn ident(s: &str) -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    }
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        let tail = &rest[i + "crate::".len()..];
        let name = ident(tail);
        if groups.contains(&name) {
            let inner = tail[name.len()..].strip_prefix("::").map(ident);
            match inner {
                Some(m) if !m.is_empty() => out.insert(format!("{name}/{m}")),
                // `crate::pipeline` alone: a group is not a module to depend on.
                _ => out.insert(name),
            };
        } else if !name.is_empty() {
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
    let groups = groups();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    for file in files {
        let Some(module) = module_of(&src, &file, &groups) else {
            continue;
        };
        let allowed = map.get(&module).unwrap_or_else(|| {
            panic!(
                "src module `{module}` is missing from docs/architecture.md's module map ({})",
                file.display()
            )
        });
        let text = std::fs::read_to_string(&file).expect("read source");
        for used in crate_paths(&text, &groups) {
            if used != module && !allowed.contains(&used) {
                violations.push(format!(
                    "{}: `{module}` uses `crate::{}`",
                    file.strip_prefix(root()).unwrap_or(&file).display(),
                    used.replace('/', "::")
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
    let groups: BTreeSet<String> = ["pipeline".to_string()].into();
    let found = crate_paths(
        "use crate::pipeline::spool::Spool;\nlet x = crate::config::load(c);",
        &groups,
    );
    assert_eq!(
        found,
        ["config", "pipeline/spool"]
            .into_iter()
            .map(String::from)
            .collect()
    );
}

#[test]
fn a_file_belongs_to_its_group_s_module() {
    let groups: BTreeSet<String> = ["pipeline".to_string()].into();
    let src = Path::new("/r/src");
    let of = |f: &str| module_of(src, &src.join(f), &groups);
    assert_eq!(
        of("pipeline/spool/writer.rs").as_deref(),
        Some("pipeline/spool")
    );
    assert_eq!(of("pipeline/record.rs").as_deref(), Some("pipeline/record"));
    assert_eq!(of("pipeline/mod.rs"), None);
    assert_eq!(of("config.rs").as_deref(), Some("config"));
    assert_eq!(of("cli/setup.rs").as_deref(), Some("cli"));
    assert_eq!(of("lib.rs"), None);
}
