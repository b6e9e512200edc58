//! The Flatpak manifest, checked without the Flathub runtimes (they cannot be downloaded
//! here): flatpak-builder itself parses it (with the cargo sources it includes), the
//! crates it lists are exactly Cargo.lock's with the same checksums, libvirt's meson
//! options exist in the libvirt release it builds, and its permissions are exactly the
//! ones the README documents.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::*;
use serde_json::Value;

const MANIFEST: &str = "flatpak/io.github.passthrough.Passthrough.json";

fn manifest() -> Value {
    serde_json::from_str(&std::fs::read_to_string(top().join(MANIFEST)).unwrap()).unwrap()
}

/// (name, version, checksum) of every crates.io package of Cargo.lock.
fn locked_crates() -> BTreeSet<(String, String, String)> {
    let text = std::fs::read_to_string(top().join("Cargo.lock")).unwrap();
    let mut out = BTreeSet::new();
    for block in text.split("[[package]]").skip(1) {
        let field = |key: &str| {
            block
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{key} = \"")))
                .map(|v| v.trim_end_matches('"').to_owned())
        };
        if let (Some(name), Some(version), Some(sum)) =
            (field("name"), field("version"), field("checksum"))
        {
            assert_eq!(
                field("source").as_deref(),
                Some("registry+https://github.com/rust-lang/crates.io-index")
            );
            out.insert((name, version, sum));
        }
    }
    out
}

#[test]
fn flatpak_builder_parses_the_manifest_and_its_sources() {
    if !have("flatpak-builder") {
        panic!("flatpak-builder is missing: build-aux/deps test installs it");
    }
    // flatpak-builder makes its state directory (.flatpak-builder) in its working
    // directory: a temporary one, so the tree stays clean.
    let work = tempfile::tempdir().unwrap();
    let out = Command::new("flatpak-builder")
        .arg("--show-manifest")
        .arg(top().join(MANIFEST))
        .current_dir(work.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", out_text(&out));
    // flatpak-builder drops (with a warning) what it cannot read into its types: none.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("WARNING") && !stderr.contains("Failed"),
        "{stderr}"
    );
    // flatpak-builder's own view: the included sources file expanded, nothing lost.
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ours = manifest();
    assert_eq!(shown["finish-args"], ours["finish-args"]);
    assert_eq!(
        shown["modules"][0], ours["modules"][0],
        "the libvirt module"
    );
    assert_eq!(shown["id"], "io.github.passthrough.Passthrough");
    let app = shown["modules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "passthrough")
        .unwrap();
    let archives = app["sources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["type"] == "archive")
        .count();
    assert_eq!(archives, locked_crates().len());
    // Broken manifests are refused by the same parser (so this check can fail): bad
    // JSON, and a module file that is not there.
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("syntax.json", r#"{"id": "x", "modules": [{"name": "a",}]}"#),
        (
            "missing.json",
            r#"{"id": "x", "modules": ["no-such-module.json"]}"#,
        ),
    ] {
        let broken = dir.path().join(name);
        std::fs::write(&broken, text).unwrap();
        let out = Command::new("flatpak-builder")
            .arg("--show-manifest")
            .arg(&broken)
            .current_dir(work.path())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{name} was accepted");
    }
}

#[test]
fn the_offline_sources_are_exactly_cargo_lock() {
    let out = Command::new(top().join("build-aux/flatpak-cargo-sources"))
        .arg("--check")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", out_text(&out));
    let sources: Value = serde_json::from_str(
        &std::fs::read_to_string(top().join("flatpak/cargo-sources.json")).unwrap(),
    )
    .unwrap();
    let mut listed = BTreeSet::new();
    for s in sources.as_array().unwrap() {
        if s["type"] != "archive" {
            continue;
        }
        let dest = s["dest"].as_str().unwrap();
        let url = s["url"].as_str().unwrap();
        let path = url
            .strip_prefix("https://static.crates.io/crates/")
            .unwrap();
        let (name, file) = path.split_once('/').unwrap();
        let version = file
            .strip_prefix(&format!("{name}-"))
            .and_then(|v| v.strip_suffix(".crate"))
            .unwrap();
        assert_eq!(dest, format!("cargo/vendor/{name}-{version}"));
        let (name, version) = (name.to_owned(), version.to_owned());
        listed.insert((name, version, s["sha256"].as_str().unwrap().to_owned()));
    }
    assert_eq!(listed, locked_crates());
    // cargo is pointed at the vendored sources.
    let config = sources
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["dest-filename"] == "config.toml")
        .unwrap();
    assert!(config["contents"]
        .as_str()
        .unwrap()
        .contains(r#"replace-with = "vendored-sources""#));
}

#[test]
fn libvirt_is_built_with_options_it_has() {
    let m = manifest();
    let libvirt = m["modules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "libvirt")
        .unwrap();
    let url = libvirt["sources"][0]["url"].as_str().unwrap();
    assert_eq!(url, "https://download.libvirt.org/libvirt-11.3.0.tar.xz");
    let sha = libvirt["sources"][0]["sha256"].as_str().unwrap();
    assert!(sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()));
    // meson_options.txt of that release (from its tarball, sha256 above).
    let options =
        std::fs::read_to_string(top().join("flatpak/libvirt-11.3.0-meson_options.txt")).unwrap();
    let known: BTreeSet<&str> = options
        .lines()
        .filter_map(|l| l.strip_prefix("option('"))
        .filter_map(|l| l.split('\'').next())
        .collect();
    assert!(known.len() > 50, "{known:?}");
    for opt in libvirt["config-opts"].as_array().unwrap() {
        let opt = opt.as_str().unwrap();
        let name = opt
            .strip_prefix("-D")
            .and_then(|o| o.split('=').next())
            .unwrap();
        assert!(known.contains(name), "libvirt 11.3.0 has no option {name}");
    }
    // The client library only: the remote driver in, the daemons out.
    let opts: Vec<&str> = libvirt["config-opts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_str().unwrap())
        .collect();
    assert!(opts.contains(&"-Ddriver_remote=enabled"));
    assert!(opts.contains(&"-Ddriver_libvirtd=disabled"));
    assert!(opts.contains(&"-Ddriver_qemu=disabled"));
}

#[test]
fn the_permissions_are_the_documented_ones_and_no_broader() {
    let m = manifest();
    assert_eq!(m["runtime"], "org.gnome.Platform");
    assert_eq!(m["sdk"], "org.gnome.Sdk");
    assert_eq!(m["command"], "passthrough");
    assert!(m["sdk-extensions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e == "org.freedesktop.Sdk.Extension.rust-stable"));
    let args: BTreeSet<String> = m["finish-args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    // The README's list (the code block in its Flatpak section).
    let readme = std::fs::read_to_string(top().join("README.md")).unwrap();
    let section = readme
        .split("### Flatpak")
        .nth(1)
        .unwrap()
        .split("\n## ")
        .next()
        .unwrap();
    let block = section
        .split("```\n")
        .nth(2)
        .expect("the permissions code block");
    let documented: BTreeSet<String> = block
        .split_whitespace()
        .filter(|w| w.starts_with("--"))
        .map(str::to_owned)
        .collect();
    assert_eq!(args, documented);
    // Nothing that opens the whole host or the whole system bus.
    for broad in [
        "--filesystem=host",
        "--filesystem=home",
        "--socket=system-bus",
        "--socket=session-bus",
        "--device=all",
        "--share=network",
        "--talk-name=org.freedesktop.Flatpak",
    ] {
        assert!(!args.contains(broad), "{broad}");
    }
    // The helper is the host's: the Flatpak drops its own copy and the system files.
    let app = m["modules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "passthrough")
        .unwrap();
    let commands = app["build-commands"].to_string();
    assert!(commands.contains("/app/libexec/passthrough-helper"));
    assert!(commands.contains("/app/share/polkit-1"));
}
