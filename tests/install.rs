//! `build-aux/install` into a temporary DESTDIR: every file lands where the freedesktop and
//! GNOME specifications say, each is checked by its validator (desktop-file-validate,
//! appstreamcli, glib-compile-schemas, xmllint with the D-Bus and polkit DTDs), the helper's
//! activation file and unit name the installed helper, and `--uninstall` removes exactly
//! what was installed. The debug builds are installed (`PASSTHROUGH_BINARIES`, `--no-build`):
//! the release build is the .deb test's.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const APP: &str = "io.github.passthrough.Passthrough";
const POLICY_DTD: &str = "/usr/share/polkit-1/policyconfig-1.dtd";

fn binaries() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_passthrough"))
        .parent()
        .unwrap()
        .to_path_buf();
    // The helper is another package's binary: `cargo build --workspace` (build-aux/test).
    let _fresh = helper_binary();
    dir
}

fn install(destdir: &Path, prefix: Option<&str>, extra: &[&str]) -> String {
    let mut cmd = Command::new(top().join("build-aux/install"));
    cmd.arg("--no-build")
        .args(extra)
        .env("DESTDIR", destdir)
        .env("PASSTHROUGH_BINARIES", binaries());
    match prefix {
        Some(p) => cmd.env("PREFIX", p),
        None => cmd.env_remove("PREFIX"),
    };
    let out = cmd.output().unwrap();
    let text = out_text(&out);
    assert!(out.status.success(), "build-aux/install {extra:?}: {text}");
    text
}

/// Every path (files, directories, symlinks) under `dir`, relative to it.
fn paths(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            out.insert(p.strip_prefix(dir).unwrap().to_path_buf());
            if p.is_dir() && !p.is_symlink() {
                stack.push(p);
            }
        }
    }
    out
}

fn run_ok(program: &str, args: &[&str], file: &Path) -> String {
    let out = Command::new(program)
        .args(args)
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (build-aux/deps test installs it)"));
    let text = out_text(&out);
    assert!(
        out.status.success(),
        "{program} {args:?} {}: {text}",
        file.display()
    );
    text
}

fn ini_value(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in\n{text}"))
        .to_owned()
}

#[test]
fn install_puts_every_file_where_the_specs_say_and_uninstall_removes_exactly_them() {
    let temp = tempfile::tempdir().unwrap();
    let dest = temp.path().join("stage");
    // Something that was there before must survive the uninstall.
    let other = dest.join("usr/share/applications/org.example.Other.desktop");
    std::fs::create_dir_all(other.parent().unwrap()).unwrap();
    std::fs::write(&other, "[Desktop Entry]\n").unwrap();
    let before = paths(&dest);

    install(&dest, Some("/usr"), &[]);
    let share = dest.join("usr/share");
    let expected = [
        "usr/bin/passthrough",
        "usr/bin/passthroughctl",
        "usr/bin/passthroughctl-launch",
        "usr/libexec/passthrough-helper",
        "usr/share/applications/io.github.passthrough.Passthrough.desktop",
        "usr/share/metainfo/io.github.passthrough.Passthrough.metainfo.xml",
        "usr/share/icons/hicolor/scalable/apps/io.github.passthrough.Passthrough.svg",
        "usr/share/icons/hicolor/symbolic/apps/io.github.passthrough.Passthrough-symbolic.svg",
        "usr/share/glib-2.0/schemas/io.github.passthrough.Passthrough.gschema.xml",
        "usr/share/locale/zh_CN/LC_MESSAGES/passthrough.mo",
        "usr/share/polkit-1/actions/io.github.passthrough.policy",
        "usr/share/dbus-1/system.d/io.github.passthrough.Helper1.conf",
        "usr/share/dbus-1/system-services/io.github.passthrough.Helper1.service",
        "usr/lib/systemd/system/passthrough-helper.service",
        "usr/share/man/man1/passthrough.1",
        "usr/share/man/man1/passthroughctl.1",
        "usr/share/man/man1/passthroughctl-launch.1",
        "usr/share/man/man8/passthrough-helper.8",
    ];
    for rel in expected {
        assert!(dest.join(rel).is_file(), "{rel} is not installed");
    }
    for bin in ["usr/bin/passthrough", "usr/libexec/passthrough-helper"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dest.join(bin))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755, "{bin}");
    }
    // A DESTDIR install leaves the schema cache to the package manager.
    assert!(!share.join("glib-2.0/schemas/gschemas.compiled").exists());

    // The validators.
    run_ok(
        "desktop-file-validate",
        &[],
        &share.join(format!("applications/{APP}.desktop")),
    );
    let text = run_ok(
        "appstreamcli",
        &["validate", "--no-net", "--pedantic"],
        &share.join(format!("metainfo/{APP}.metainfo.xml")),
    );
    assert!(!text.contains("E: "), "{text}");
    run_ok(
        "glib-compile-schemas",
        &["--strict", "--dry-run"],
        &share.join("glib-2.0/schemas"),
    );
    run_ok(
        "xmllint",
        &["--noout", "--dtdvalid", POLICY_DTD],
        &share.join("polkit-1/actions/io.github.passthrough.policy"),
    );
    run_ok(
        "xmllint",
        &["--noout"],
        &share.join("dbus-1/system.d/io.github.passthrough.Helper1.conf"),
    );
    bus_accepts_policy(&share.join("dbus-1/system.d"))
        .unwrap_or_else(|e| panic!("dbus-daemon refuses the installed policy: {e}"));
    // The manual pages format without a warning.
    for page in [
        "man1/passthrough.1",
        "man1/passthroughctl.1",
        "man1/passthroughctl-launch.1",
        "man8/passthrough-helper.8",
    ] {
        let out = Command::new("man")
            .args(["--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z"])
            .arg(share.join("man").join(page))
            .env("LC_ALL", "C.UTF-8")
            .env("MANWIDTH", "80")
            .output()
            .expect("man (package man-db)");
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{page}: {}",
            out_text(&out)
        );
    }
    // The translated files carry Chinese.
    let desktop =
        std::fs::read_to_string(share.join(format!("applications/{APP}.desktop"))).unwrap();
    assert!(desktop.contains("Name[zh_CN]="), "{desktop}");
    let policy =
        std::fs::read_to_string(share.join("polkit-1/actions/io.github.passthrough.policy"))
            .unwrap();
    assert!(policy.contains("xml:lang=\"zh_CN\""), "{policy}");

    // The activation file and the unit start the installed helper; nothing is left to fill.
    let activation = std::fs::read_to_string(
        share.join("dbus-1/system-services/io.github.passthrough.Helper1.service"),
    )
    .unwrap();
    assert_eq!(
        ini_value(&activation, "Exec"),
        "/usr/libexec/passthrough-helper"
    );
    assert_eq!(
        ini_value(&activation, "SystemdService"),
        "passthrough-helper.service"
    );
    let unit =
        std::fs::read_to_string(dest.join("usr/lib/systemd/system/passthrough-helper.service"))
            .unwrap();
    assert_eq!(
        ini_value(&unit, "ExecStart"),
        "/usr/libexec/passthrough-helper"
    );
    for text in [&activation, &unit, &desktop] {
        let unfilled = text.split('@').skip(1).step_by(2).any(|word| {
            !word.is_empty() && word.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        });
        assert!(!unfilled, "an unfilled @…@:\n{text}");
    }
    // The installed programs run.
    let out = Command::new(dest.join("usr/bin/passthroughctl"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", out_text(&out));

    // Uninstall: exactly what was installed goes, what was there stays.
    let out = Command::new(top().join("build-aux/install"))
        .arg("--uninstall")
        .env("DESTDIR", &dest)
        .env("PREFIX", "/usr")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", out_text(&out));
    assert_eq!(paths(&dest), before, "uninstall did not restore the tree");
    assert!(other.is_file());

    // Uninstalling twice says there is nothing to uninstall.
    let out = Command::new(top().join("build-aux/install"))
        .arg("--uninstall")
        .env("DESTDIR", &dest)
        .env("PREFIX", "/usr")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out_text(&out).contains("nothing to uninstall"));
}

#[test]
fn the_default_prefix_is_usr_local_and_says_what_the_system_bus_needs() {
    let temp = tempfile::tempdir().unwrap();
    let dest = temp.path().join("stage");
    let text = install(&dest, None, &[]);
    assert!(dest.join("usr/local/bin/passthrough").is_file());
    assert!(dest.join("usr/local/libexec/passthrough-helper").is_file());
    let activation = std::fs::read_to_string(
        dest.join("usr/local/share/dbus-1/system-services/io.github.passthrough.Helper1.service"),
    )
    .unwrap();
    assert_eq!(
        ini_value(&activation, "Exec"),
        "/usr/local/libexec/passthrough-helper"
    );
    assert!(text.contains("/etc/dbus-1/system.d"), "{text}");
    let out = Command::new(top().join("build-aux/install"))
        .arg("--uninstall")
        .env("DESTDIR", &dest)
        .env_remove("PREFIX")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", out_text(&out));
    assert!(paths(&dest).is_empty(), "{:?}", paths(&dest));

    // A relative PREFIX is refused.
    let out = Command::new(top().join("build-aux/install"))
        .arg("--no-build")
        .env("DESTDIR", &dest)
        .env("PREFIX", "usr")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", out_text(&out));
}

#[test]
fn an_install_without_destdir_refreshes_the_caches_and_the_uninstall_removes_them() {
    let temp = tempfile::tempdir().unwrap();
    let prefix = temp.path().join("prefix");
    let prefix_str = prefix.to_str().unwrap().to_owned();
    let out = Command::new(top().join("build-aux/install"))
        .arg("--no-build")
        .env_remove("DESTDIR")
        .env("PREFIX", &prefix_str)
        .env("PASSTHROUGH_BINARIES", binaries())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", out_text(&out));
    let share = prefix.join("share");
    // The schema is compiled where GSettings will read it, and it holds our schema.
    assert!(share.join("glib-2.0/schemas/gschemas.compiled").is_file());
    let keys = Command::new("gsettings")
        .args(["list-keys", APP])
        .env("GSETTINGS_SCHEMA_DIR", share.join("glib-2.0/schemas"))
        .env("GSETTINGS_BACKEND", "memory")
        .output()
        .unwrap();
    assert!(
        out_text(&keys).contains("window-width"),
        "{}",
        out_text(&keys)
    );
    assert!(share.join("icons/hicolor/icon-theme.cache").is_file());
    // The message says where the system bus looks (this prefix is not /usr).
    assert!(out_text(&out).contains("/usr/share/dbus-1/system-services"));

    let out = Command::new(top().join("build-aux/install"))
        .arg("--uninstall")
        .env_remove("DESTDIR")
        .env("PREFIX", &prefix_str)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", out_text(&out));
    assert!(
        !prefix.exists() || paths(&prefix).is_empty(),
        "left behind: {:?}",
        paths(&prefix)
    );
}
