//! Property test: random damage to a real fixture tree never panics the scan, and the
//! report, the JSON and the checks can still be produced.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use passthrough_core::{checks, markdown, HostReport, HostRoot, ScanOptions};
use proptest::prelude::*;

fn files_of(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let meta = fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    out
}

fn copy_tree(from: &Path, to: &Path) {
    let ok = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[derive(Debug, Clone)]
enum Damage {
    Delete(usize),
    Garbage(usize, Vec<u8>),
    Truncate(usize, usize),
    Dangle(usize),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        any::<usize>().prop_map(Damage::Delete),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 0..40)
        )
            .prop_map(|(i, b)| Damage::Garbage(i, b)),
        (any::<usize>(), 0usize..8).prop_map(|(i, n)| Damage::Truncate(i, n)),
        any::<usize>().prop_map(Damage::Dangle),
    ]
}

fn apply(root: &Path, d: &Damage) {
    let files = files_of(root);
    if files.is_empty() {
        return;
    }
    let pick = |i: usize| &files[i % files.len()];
    let _ = match d {
        Damage::Delete(i) => {
            let p = pick(*i);
            if fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()) {
                fs::remove_dir_all(p)
            } else {
                fs::remove_file(p)
            }
        }
        Damage::Garbage(i, bytes) => {
            let p = pick(*i);
            let _ = fs::remove_file(p);
            fs::write(p, bytes)
        }
        Damage::Truncate(i, n) => {
            let p = pick(*i);
            match fs::read(p) {
                Ok(b) => fs::write(p, &b[..(*n).min(b.len())]),
                Err(e) => Err(e),
            }
        }
        Damage::Dangle(i) => {
            let p = pick(*i);
            let _ = if fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()) {
                fs::remove_dir_all(p)
            } else {
                fs::remove_file(p)
            };
            std::os::unix::fs::symlink("../../nowhere/at/all", p)
        }
    };
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_damage_never_panics(
        fixture in prop::sample::select(vec!["b550-blog", "b550-blog-acs", "intel-igpu-nvidia", "two-identical-gpus"]),
        damages in proptest::collection::vec(damage(), 1..12),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        copy_tree(&common::fixture(fixture), &root);
        for d in &damages {
            apply(&root, d);
        }
        let report = HostReport::scan(&HostRoot::new(&root), &ScanOptions::default());
        let md = markdown::report(&report);
        prop_assert!(md.contains("# Passthrough host report"));
        let _ = markdown::groups(&report);
        let _ = markdown::gpus(&report);
        prop_assert!(serde_json::to_string(&report).is_ok());
        prop_assert!(!checks::run(&report).is_empty());
        // A GPU never lists itself or its companions as blockers.
        for g in &report.gpus {
            prop_assert!(!g.blockers.contains(&g.address));
            prop_assert!(g.companions.iter().all(|c| !g.blockers.contains(c)));
        }
    }
}
