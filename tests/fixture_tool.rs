//! The fixture roots are what build-aux/mkfixture.py makes of the pasted listings: rebuilding
//! each listing gives the committed tree, file for file and link for link.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn top() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[derive(Debug, PartialEq)]
enum Entry {
    Dir,
    File(Vec<u8>),
    Link(PathBuf),
}

/// Every entry under `root`, never following symlinks (sysfs trees have cycles).
fn tree(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            let entry = if meta.file_type().is_symlink() {
                Entry::Link(std::fs::read_link(&p).unwrap())
            } else if meta.is_dir() {
                stack.push(p.clone());
                Entry::Dir
            } else {
                Entry::File(std::fs::read(&p).unwrap())
            };
            out.insert(rel, entry);
        }
    }
    out
}

#[test]
fn every_listing_rebuilds_its_committed_root() {
    let listings = top().join("tests/fixtures/listings");
    let mut count = 0;
    for e in std::fs::read_dir(&listings).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_none_or(|x| x != "txt") {
            continue;
        }
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join(&name);
        let st = Command::new("python3")
            .arg(top().join("build-aux/mkfixture.py"))
            .arg(&path)
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&st.stderr)
        );
        let committed = tree(&top().join("tests/fixtures/roots").join(&name));
        let rebuilt = tree(&out);
        let differ: Vec<_> = committed
            .keys()
            .chain(rebuilt.keys())
            .filter(|k| committed.get(*k) != rebuilt.get(*k))
            .take(5)
            .collect();
        assert!(
            differ.is_empty(),
            "{name}: the committed root differs from its listing at {differ:?}"
        );
        count += 1;
    }
    assert!(count >= 9, "{count} listings");
}

#[test]
fn the_tool_rejects_a_listing_it_cannot_place() {
    let dir = tempfile::tempdir().unwrap();
    let listing = dir.path().join("bad.txt");
    // A tree entry with no matching device line is an error, not a silent guess.
    std::fs::write(
        &listing,
        "# source: test\n== iommu ==\n== tree ==\n-[0000:00]-+-01.0  Mystery device\n",
    )
    .unwrap();
    let out = Command::new("python3")
        .arg(top().join("build-aux/mkfixture.py"))
        .arg(&listing)
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).is_empty());
}
