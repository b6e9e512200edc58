//! Shared helpers for core's integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

use passthrough_core::{HostReport, HostRoot, ScanOptions};

/// The repository's top directory (fixtures live in tests/fixtures there).
pub fn top() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

pub fn fixture(name: &str) -> PathBuf {
    let p = top().join("tests/fixtures/roots").join(name);
    assert!(
        p.is_dir(),
        "fixture {name} is missing; run build-aux/mkfixture.py --all"
    );
    p
}

/// A copy of a whole fixture root in a temporary directory (symlinks kept).
pub fn copy_fixture(name: &str) -> (tempfile::TempDir, HostRoot) {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("root");
    let status = Command::new("cp")
        .arg("-a")
        .arg(fixture(name))
        .arg(&dest)
        .status()
        .unwrap();
    assert!(status.success());
    (dir, HostRoot::new(dest))
}

pub fn fixture_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(top().join("tests/fixtures/roots"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

pub fn scan(name: &str) -> HostReport {
    HostReport::scan(&HostRoot::new(fixture(name)), &ScanOptions::default())
}

/// Runs passthroughctl in English from the repository top, with no user in the
/// environment (so a fixture's own first user is taken) and relative fixture paths.
pub fn ctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_passthroughctl"))
        .args(args)
        .current_dir(top())
        .env_remove("USER")
        .env_remove("LOGNAME")
        .env_remove("LANGUAGE")
        .env("LC_ALL", "C.UTF-8")
        .output()
        .expect("passthroughctl runs")
}

/// The `netplan` program (package netplan.io), which the network tests use as the validator.
pub fn netplan() -> PathBuf {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d: PathBuf| d.join("netplan"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("the netplan binary is missing: install netplan.io (build-aux/deps test)")
        })
}
