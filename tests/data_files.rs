//! The installed data files, checked by the validators their specs name.

use std::path::{Path, PathBuf};
use std::process::Command;

const APP_ID: &str = "io.github.passthrough.Passthrough";

fn top() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{text}",
        out.status
    );
    text
}

fn translated(template: &str, kind: &str, dir: &Path) -> PathBuf {
    let name = template.trim_end_matches(".in");
    let out = dir.join(name);
    run(Command::new("msgfmt")
        .arg(kind)
        .arg("-d")
        .arg(top().join("po"))
        .arg("--template")
        .arg(top().join("data").join(template))
        .arg("-o")
        .arg(&out));
    out
}

#[test]
fn desktop_file_validates_and_is_translated() {
    let dir = tempfile::tempdir().unwrap();
    let desktop = translated(&format!("{APP_ID}.desktop.in"), "--desktop", dir.path());
    let text = run(Command::new("desktop-file-validate").arg(&desktop));
    assert!(!text.contains("error"), "{text}");
    let content = std::fs::read_to_string(&desktop).unwrap();
    assert!(
        content.contains("Name[zh_CN]=显卡直通"),
        "the app's Chinese name is fixed by DESIGN.md:\n{content}"
    );
    assert!(content.contains(&format!("Icon={APP_ID}")));
}

#[test]
fn metainfo_validates_pedantically() {
    let dir = tempfile::tempdir().unwrap();
    let meta = translated(&format!("{APP_ID}.metainfo.xml.in"), "--xml", dir.path());
    run(Command::new("appstreamcli")
        .args(["validate", "--no-net", "--pedantic"])
        .arg(&meta));
    let content = std::fs::read_to_string(&meta).unwrap();
    assert!(
        content.contains("xml:lang=\"zh_CN\""),
        "metainfo carries the Chinese translation"
    );
    // Every screenshot it names is in the repository, produced by the UI tests.
    for line in content.lines().filter(|l| l.contains("<image>")) {
        let url = line
            .trim()
            .trim_start_matches("<image>")
            .trim_end_matches("</image>");
        let file = url
            .rsplit_once("/main/")
            .expect("screenshot URL points into the repository")
            .1;
        assert!(top().join(file).is_file(), "screenshot {file} is missing");
    }
}

#[test]
fn gschema_compiles_strictly() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        top().join(format!("data/{APP_ID}.gschema.xml")),
        dir.path().join(format!("{APP_ID}.gschema.xml")),
    )
    .unwrap();
    run(Command::new("glib-compile-schemas")
        .args(["--strict", "--dry-run"])
        .arg(dir.path()));
}

#[test]
fn icons_are_valid_svg_and_render() {
    let dir = tempfile::tempdir().unwrap();
    for (path, size) in [
        (
            format!("data/icons/hicolor/scalable/apps/{APP_ID}.svg"),
            "128",
        ),
        (
            format!("data/icons/hicolor/symbolic/apps/{APP_ID}-symbolic.svg"),
            "16",
        ),
    ] {
        let svg = top().join(&path);
        run(Command::new("xmllint").arg("--noout").arg(&svg));
        let png = dir.path().join("icon.png");
        run(Command::new("rsvg-convert")
            .args(["-w", size, "-h", size, "-o"])
            .arg(&png)
            .arg(&svg));
        let bytes = std::fs::read(&png).unwrap();
        assert_eq!(&bytes[1..4], b"PNG", "{path} renders to a PNG");
    }
}

#[test]
fn ui_files_are_well_formed() {
    let mut found = 0;
    let mut stack = vec![top().join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "ui") {
                run(Command::new("xmllint").arg("--noout").arg(&path));
                found += 1;
            }
        }
    }
    assert!(
        found >= 3,
        "the window and its pages have .ui templates ({found} found)"
    );
}
