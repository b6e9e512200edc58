//! The real app under Xvfb (build-aux/test starts it with xvfb-run and dbus-run-session):
//! screenshots in English and Chinese, driven through its actions.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One app at a time: several GTK apps starting at once on a loaded 2-core machine made
/// start-up timing, not the app, the thing under test.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn top() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> String {
    top()
        .join("tests/fixtures/roots")
        .join(name)
        .display()
        .to_string()
}

fn app(lang: &str) -> Command {
    assert!(
        std::env::var_os("DISPLAY").is_some(),
        "the UI tests need an X display: run them through build-aux/test (xvfb-run)"
    );
    let share = top().join("target/dev/share");
    assert!(
        share
            .join("locale/zh_CN/LC_MESSAGES/passthrough.mo")
            .is_file(),
        "run build-aux/dev-data first"
    );
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_passthrough"));
    cmd.env(
        "XDG_DATA_DIRS",
        format!("{}:/usr/local/share:/usr/share", share.display()),
    )
    .env("PASSTHROUGH_LOCALEDIR", share.join("locale"))
    .env("GTK_A11Y", "none")
    .env("NO_AT_BRIDGE", "1")
    .env_remove("LC_ALL")
    .env_remove("LANG")
    .env_remove("LC_MESSAGES");
    match lang {
        "zh_CN" => cmd.env("LANGUAGE", "zh_CN").env("LANG", "zh_CN.UTF-8"),
        _ => cmd.env("LANGUAGE", "en").env("LANG", "C.UTF-8"),
    };
    cmd
}

/// Waits for the child with a deadline; kills it when the deadline passes.
fn wait(mut child: Child, limit: Duration) -> (std::process::ExitStatus, String) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut out = String::new();
            if let Some(mut s) = child.stdout.take() {
                std::io::Read::read_to_string(&mut s, &mut out).unwrap();
            }
            if let Some(mut s) = child.stderr.take() {
                let mut err = String::new();
                std::io::Read::read_to_string(&mut s, &mut err).unwrap();
                if !status.success() {
                    out.push_str("\n--- stderr ---\n");
                    out.push_str(&err);
                }
            }
            return (status, out);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the app did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[1..4], b"PNG", "{} is a PNG", path.display());
    let be = |o: usize| u32::from_be_bytes(bytes[o..o + 4].try_into().unwrap());
    (be(16), be(20))
}

/// Distinct colours in the picture (imagemagick): a blank or half-drawn window has few.
fn colours(path: &Path) -> u32 {
    let out = Command::new("identify")
        .args(["-format", "%k"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

fn screenshot(lang: &str, root: &str, page: &str, name: &str, actions: Option<&str>) -> PathBuf {
    screenshot_with(lang, root, page, name, actions, None)
}

/// A window of `height` pixels: set through a keyfile settings backend in a temporary
/// config home, so long pages fit in one picture.
fn tall(cmd: &mut Command, config: &Path, height: u32) {
    let dir = config.join("glib-2.0/settings");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("keyfile"),
        format!("[io/github/passthrough/Passthrough]\nwindow-height={height}\nwindow-width=1100\n"),
    )
    .unwrap();
    cmd.env("GSETTINGS_BACKEND", "keyfile")
        .env("XDG_CONFIG_HOME", config);
}

fn screenshot_with(
    lang: &str,
    root: &str,
    page: &str,
    name: &str,
    actions: Option<&str>,
    height: Option<u32>,
) -> PathBuf {
    let dir = top().join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}-{lang}.png"));
    let _ = std::fs::remove_file(&path);
    let mut cmd = app(lang);
    cmd.env("PASSTHROUGH_TEST_SCREENSHOT", &path)
        .args(["--root", root, "--page", page]);
    if let Some(a) = actions {
        cmd.env("PASSTHROUGH_TEST_ACTIONS", a);
    }
    let config = tempfile::tempdir().unwrap();
    if let Some(h) = height {
        tall(&mut cmd, config.path(), h);
    }
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (status, out) = wait(child, Duration::from_secs(60));
    assert!(status.success(), "{name}/{lang}: {status} {out}");
    assert!(
        out.contains(&format!("screenshot: {}", path.display())),
        "{out}"
    );
    let (w, h) = png_size(&path);
    assert!(w >= 800 && h >= 600, "{name}/{lang}: {w}x{h}");
    assert!(
        colours(&path) > 200,
        "{name}/{lang}: the window looks empty"
    );
    path
}

#[test]
fn screenshots_of_the_first_two_steps_in_english_and_chinese() {
    let _serial = serial();
    let b550 = fixture("b550-blog");
    for lang in ["en", "zh_CN"] {
        screenshot(lang, &b550, "system", "system", None);
        screenshot(lang, &b550, "gpu", "gpu", None);
        screenshot(
            lang,
            &b550,
            "gpu",
            "groups",
            Some("win.show-page::groups;win.search-for::15"),
        );
    }
    screenshot("en", &fixture("iommu-off"), "gpu", "iommu-off", None);
    screenshot("en", &fixture("broken-tree"), "system", "broken-tree", None);
    screenshot("en", "/", "system", "this-machine", None);
}

/// Starts the app with the report hook, waits for its `ready:` line, runs `check` while it
/// is up, then stops it by PID.
fn with_running_app(cmd: &mut Command, check: impl FnOnce(&str, u32)) {
    let mut child = cmd
        .env("PASSTHROUGH_TEST_REPORT", "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("ready:") || line.starts_with("scan-failed") {
                let _ = tx.send(line);
            }
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(60));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let line = line.expect("the app reports ready");
        check(&line, pid);
    }));
    let _ = child.kill();
    let _ = child.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

fn field(line: &str, key: &str) -> String {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn the_app_shows_what_passthroughctl_finds() {
    let _serial = serial();
    for fixture_name in [
        "b550-blog",
        "iommu-off",
        "two-identical-gpus",
        "nvidia-3d-controller",
    ] {
        let root = fixture(fixture_name);
        let report = passthrough_core::HostReport::scan(
            &passthrough_core::HostRoot::new(&root),
            &passthrough_core::ScanOptions::default(),
        );
        let checks = passthrough_core::checks::run(&report);
        with_running_app(
            app("en").args(["--root", &root, "--page", "gpu"]),
            |line, _| {
                assert_eq!(
                    field(line, "gpus"),
                    report.gpus.len().to_string(),
                    "{fixture_name}: {line}"
                );
                assert_eq!(
                    field(line, "checks"),
                    checks.len().to_string(),
                    "{fixture_name}: {line}"
                );
                assert_eq!(field(line, "page"), "gpu");
            },
        );
    }
}

#[test]
fn actions_switch_steps_and_refresh_rescans() {
    let _serial = serial();
    let root = fixture("b550-blog");
    let mut cmd = app("en");
    cmd.args(["--root", &root]).env(
        "PASSTHROUGH_TEST_ACTIONS",
        "win.show-page::network;win.refresh",
    );
    with_running_app(&mut cmd, |line, _| {
        assert_eq!(field(line, "page"), "network", "{line}");
        assert_eq!(
            field(line, "scans"),
            "2",
            "refresh scanned the host again: {line}"
        );
    });
}

#[test]
fn the_window_title_is_translated() {
    let _serial = serial();
    for (lang, title) in [("en", "Passthrough"), ("zh_CN", "显卡直通")] {
        let root = fixture("b550-blog");
        with_running_app(app(lang).args(["--root", &root]), |_, pid| {
            let out = Command::new("xdotool")
                .args(["search", "--pid", &pid.to_string(), "--name", title])
                .output()
                .unwrap();
            let ids = String::from_utf8_lossy(&out.stdout);
            assert!(
                !ids.trim().is_empty(),
                "{lang}: no window titled {title:?} for pid {pid}"
            );
        });
    }
}

#[test]
fn bad_arguments_exit_2_without_a_window() {
    let out = app("en")
        .args(["--root", "/nonexistent/root"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let out = app("en").args(["--page", "nowhere"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn boot_configuration_preview_and_history() {
    let _serial = serial();
    use passthrough_core::plan::Plan;
    use passthrough_core::transaction::{self, HostRunner};
    use passthrough_core::{plan_render, HostReport, HostRoot, ScanOptions};

    // The preview of reserving the GTX 1080 on the Fedora-like fixture, diff unfolded.
    let fedora = fixture("intel-igpu-nvidia");
    for lang in ["en", "zh_CN"] {
        screenshot_with(
            lang,
            &fedora,
            "boot",
            "boot-preview",
            Some("win.reserve-gpu::0000:01:00.0;win.show-changes"),
            Some(1800),
        );
    }

    // A change applied by core's transaction engine (recorders instead of grub-mkconfig and
    // mkinitcpio) on a copy of the Arch fixture shows up in the history with Roll Back.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("root");
    let ok = Command::new("cp")
        .arg("-a")
        .arg(fixture("boot-grub-arch"))
        .arg(&copy)
        .status()
        .unwrap();
    assert!(ok.success());
    let root = HostRoot::new(&copy);
    let report = HostReport::scan(&root, &ScanOptions::default());
    let plan = Plan {
        reserve: vec!["0000:01:00.0".parse().unwrap()],
        ignore_msrs: true,
        ..Plan::default()
    };
    let rendered = plan_render::render(&root, &report, &plan).expect("the plan renders");
    let id = transaction::apply(
        &root,
        &rendered,
        &HostRunner::new(root.clone()),
        &mut |_| {},
    )
    .expect("applied");
    let copy_s = copy.display().to_string();
    for lang in ["en", "zh_CN"] {
        screenshot_with(lang, &copy_s, "boot", "boot-history", None, Some(1800));
    }
    let mut cmd = app("en");
    cmd.args(["--root", &copy_s, "--page", "boot"]);
    with_running_app(&mut cmd, |line, _| {
        assert_eq!(field(line, "history"), "1", "{line}");
        assert_eq!(field(line, "page"), "boot");
        // The boot files now differ from the running kernel's arguments.
        assert_eq!(field(line, "boot"), "restart", "{line}");
    });
    // After the reboot: the reference post's machine runs with its card held by vfio-pci and
    // boot files that match the running kernel, so the step confirms it.
    let mut cmd = app("en");
    cmd.args(["--root", &fixture("b550-blog"), "--page", "boot"]);
    with_running_app(&mut cmd, |line, _| {
        assert_eq!(field(line, "boot"), "ready", "{line}");
    });
    // Before any change: nothing reserved, nothing pending.
    let mut cmd = app("en");
    cmd.args(["--root", &fedora, "--page", "boot"]);
    with_running_app(&mut cmd, |line, _| {
        assert_eq!(field(line, "boot"), "choose", "{line}");
    });
    // A plan for a copy of another computer is previewed; Apply sends it only to a helper
    // that serves that copy (tests/ui_apply.rs), never to one that would apply it to this
    // machine. Here no helper serves it: pressing Apply sends nothing and changes nothing.
    let mut cmd = app("en");
    cmd.args(["--root", &fedora, "--page", "boot"]).env(
        "PASSTHROUGH_TEST_ACTIONS",
        "win.reserve-gpu::0000:01:00.0;win.apply-changes",
    );
    with_running_app(&mut cmd, |line, _| {
        assert_eq!(field(line, "preview"), "2", "the preview is there: {line}");
        let outcome = field(line, "apply-outcome");
        assert!(
            outcome == "not-sent" || outcome == "other-root",
            "the plan was not sent: {line}"
        );
        assert_eq!(field(line, "applied"), "-", "{line}");
        assert_eq!(field(line, "apply"), "true", "Apply stays offered: {line}");
    });
    assert!(
        transaction::list(&HostRoot::new(&fedora))
            .unwrap()
            .is_empty(),
        "the fixture has no journal"
    );
    assert_eq!(transaction::list(&root).unwrap()[0].id, id);
}

/// Runs the app on `page` of `root` with the report hook and a screenshot, and returns its
/// output once it has quit.
fn report_and_screenshot(lang: &str, root: &str, page: &str, name: &str) -> (String, PathBuf) {
    let dir = top().join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}-{lang}.png"));
    let _ = std::fs::remove_file(&path);
    let mut cmd = app(lang);
    let config = tempfile::tempdir().unwrap();
    tall(&mut cmd, config.path(), 1000);
    cmd.env("PASSTHROUGH_TEST_SCREENSHOT", &path)
        .env("PASSTHROUGH_TEST_REPORT", "1")
        .args(["--root", root, "--page", page]);
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (status, out) = wait(child, Duration::from_secs(60));
    assert!(status.success(), "{name}/{lang}: {status} {out}");
    assert!(
        colours(&path) > 200,
        "{name}/{lang}: the window looks empty"
    );
    (out, path)
}

#[test]
fn the_network_step_shows_the_host_and_proposes_the_bridge() {
    let _serial = serial();
    let b550 = fixture("b550-blog");
    for lang in ["en", "zh_CN"] {
        let (out, _) = report_and_screenshot(lang, &b550, "network", "network");
        let line = out
            .lines()
            .find(|l| l.starts_with("network: "))
            .unwrap_or_else(|| panic!("no network line: {out}"));
        // netplan hands the post's host to NetworkManager; NetworkManager of a copy of a
        // host is never asked, so the helper writes netplan's file.
        assert!(line.contains("manager=netplan route=helper"), "{line}");
        assert!(line.contains("interfaces=enp7s0,wlp6s0"), "{line}");
        // enp7s0 carries the default route: one warning.
        assert!(
            line.contains("apply=true warnings=1 pending=- outcome=-"),
            "{line}"
        );
    }
    // Over SSH: a second warning.
    let mut cmd = app("en");
    let shot = top().join("target/screenshots/network-ssh-en.png");
    cmd.env("PASSTHROUGH_TEST_SCREENSHOT", &shot)
        .env("PASSTHROUGH_TEST_REPORT", "1")
        .env("SSH_CONNECTION", "192.168.1.50 52144 192.168.1.20 22")
        .args(["--root", &b550, "--page", "network"]);
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (status, out) = wait(child, Duration::from_secs(60));
    assert!(status.success(), "{out}");
    let line = out.lines().find(|l| l.starts_with("network: ")).unwrap();
    assert!(line.contains("warnings=2"), "{line}");
    // A host with no network files: nothing to apply, and the by-hand sentence.
    let (out, _) = report_and_screenshot("en", &fixture("iommu-off"), "network", "network-by-hand");
    let line = out.lines().find(|l| l.starts_with("network: ")).unwrap();
    assert!(
        line.contains("route=none") && line.contains("apply=false"),
        "{line}"
    );
    assert!(
        line.contains("by hand") || line.contains("No wired interface"),
        "{line}"
    );
}
