//! Translations: every file with strings is in POTFILES.in, the catalog is complete, and
//! xgettext's C parser (used for Rust) really extracts every string the code translates.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn top() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn potfiles() -> Vec<String> {
    std::fs::read_to_string(top().join("po/POTFILES.in"))
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// Rust string literals given to the gettext helpers (first argument).
fn rust_msgids(text: &str) -> Vec<String> {
    let re =
        regex::Regex::new(r#"\b(?:gettext|gettext_f|ngettext|ngettext_f)\(\s*"((?:[^"\\]|\\.)*)""#)
            .unwrap();
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    re.captures_iter(&code)
        .map(|c| c[1].replace("\\\"", "\"").replace("\\n", "\n"))
        .collect()
}

fn has_strings(path: &Path, text: &str) -> bool {
    match path.extension().and_then(|e| e.to_str()) {
        Some("rs") => !rust_msgids(text).is_empty(),
        Some("ui") => text.contains("translatable=\"yes\""),
        Some("in") => true,
        Some("xml") => text.contains("<summary>"),
        _ => false,
    }
}

#[test]
fn potfiles_lists_exactly_the_files_with_strings() {
    let mut files = Vec::new();
    walk(&top().join("src"), &mut files);
    walk(&top().join("data"), &mut files);
    let mut want = BTreeSet::new();
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        if has_strings(&f, &text) {
            want.insert(
                f.strip_prefix(top())
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    let listed = potfiles();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(listed, sorted, "POTFILES.in is sorted");
    let listed: BTreeSet<String> = listed.into_iter().collect();
    let missing: Vec<_> = want.difference(&listed).collect();
    let stale: Vec<_> = listed.difference(&want).collect();
    assert!(
        missing.is_empty(),
        "files with strings missing from po/POTFILES.in: {missing:?}"
    );
    assert!(
        stale.is_empty(),
        "po/POTFILES.in lists files without strings: {stale:?}"
    );
}

fn fresh_pot(dir: &Path) -> String {
    // Run po-update on a copy, so the test never rewrites the checked-in catalogs.
    let copy = dir.join("tree");
    std::fs::create_dir_all(&copy).unwrap();
    for sub in ["src", "data", "po", "build-aux"] {
        let ok = Command::new("cp")
            .arg("-r")
            .arg(top().join(sub))
            .arg(&copy)
            .status()
            .unwrap()
            .success();
        assert!(ok, "cannot copy {sub}");
    }
    let out = Command::new("bash")
        .arg(copy.join("build-aux/po-update"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "po-update failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(copy.join("po/passthrough.pot")).unwrap()
}

fn unescape_po(s: &str) -> String {
    s.replace("\\\"", "\"")
        .replace("\\n", "\n")
        .replace("\\t", "\t")
        .replace("\\\\", "\\")
}

/// msgids of a .po/.pot file (multi-line strings joined).
fn po_msgids(text: &str) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let mut cur: Option<String> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("msgid \"") {
            cur = Some(unescape_po(rest.trim_end_matches('"')));
        } else if let (Some(c), Some(rest)) = (cur.as_mut(), line.strip_prefix('"')) {
            c.push_str(&unescape_po(rest.trim_end_matches('"')));
        } else if let Some(c) = cur.take() {
            if !c.is_empty() {
                ids.insert(c);
            }
        }
    }
    ids
}

#[test]
fn every_rust_string_is_extracted_and_zh_cn_is_complete_and_current() {
    let dir = tempfile::tempdir().unwrap();
    let pot = fresh_pot(dir.path());
    let extracted = po_msgids(&pot);
    let mut lost = Vec::new();
    for f in potfiles().iter().filter(|f| f.ends_with(".rs")) {
        let text = std::fs::read_to_string(top().join(f)).unwrap();
        for id in rust_msgids(&text) {
            if !extracted.contains(&id) {
                lost.push(format!("{f}: {id}"));
            }
        }
    }
    assert!(
        lost.is_empty(),
        "xgettext did not extract these strings:\n{}",
        lost.join("\n")
    );

    // The merged catalog (what po-update produced in the copy) is complete: the checked-in
    // zh_CN.po has a translation for every current string, none fuzzy.
    let merged = dir.path().join("tree/po/zh_CN.po");
    let out = Command::new("msgfmt")
        .args(["--check", "--statistics", "-o", "/dev/null"])
        .arg(&merged)
        .output()
        .unwrap();
    let stats = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "msgfmt --check: {stats}");
    assert!(
        !stats.contains("untranslated") && !stats.contains("fuzzy"),
        "po/zh_CN.po is incomplete: {stats}"
    );
    let checked_in = std::fs::read_to_string(top().join("po/zh_CN.po")).unwrap();
    let translated = po_msgids(&checked_in);
    let stale: Vec<_> = extracted.difference(&translated).collect();
    assert!(
        stale.is_empty(),
        "po/zh_CN.po lacks current strings (run build-aux/po-update): {stale:?}"
    );
}

#[test]
fn zh_cn_keeps_placeholders() {
    // A translation that drops or renames {name} would print a raw or missing value.
    let text = std::fs::read_to_string(top().join("po/zh_CN.po")).unwrap();
    let re = regex::Regex::new(r"\{[a-z_]+\}").unwrap();
    let mut id = String::new();
    let mut bad = Vec::new();
    let mut mode = "";
    let mut strs = String::new();
    let flush = |id: &str, s: &str, bad: &mut Vec<String>| {
        if s.is_empty() || id.is_empty() {
            return;
        }
        let a: BTreeSet<_> = re.find_iter(id).map(|m| m.as_str().to_owned()).collect();
        let b: BTreeSet<_> = re.find_iter(s).map(|m| m.as_str().to_owned()).collect();
        if a != b {
            bad.push(format!("{id:?} -> {s:?}"));
        }
    };
    for line in text.lines() {
        if let Some(r) = line.strip_prefix("msgid \"") {
            flush(&id, &strs, &mut bad);
            strs.clear();
            id = r.trim_end_matches('"').to_owned();
            mode = "id";
        } else if let Some(r) = line.strip_prefix("msgid_plural \"") {
            // One plural form in Chinese: it must carry the plural's placeholders ({n}).
            id = r.trim_end_matches('"').to_owned();
            mode = "plural";
        } else if let Some(r) = line.strip_prefix("msgstr") {
            mode = "str";
            let r = r.split_once('"').map(|x| x.1).unwrap_or("");
            strs.push_str(r.trim_end_matches('"'));
        } else if let Some(r) = line.strip_prefix('"') {
            match mode {
                "id" | "plural" => id.push_str(r.trim_end_matches('"')),
                "str" => strs.push_str(r.trim_end_matches('"')),
                _ => {}
            }
        }
    }
    flush(&id, &strs, &mut bad);
    assert!(bad.is_empty(), "placeholders differ:\n{}", bad.join("\n"));
}
