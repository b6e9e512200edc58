//! `passthrough --launch-vm UUID`, as an app-grid launcher runs it, under the test display
//! and session bus of build-aux/test: against libvirt's test driver with a recording
//! viewer, with a notification service of the test's own on the session bus (and without).

mod common;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One app (and one notification service) at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The running VM of the test driver's host (a Chinese name and a SPICE display).
const RUNNING: &str = "6f1c2a4e-93b1-4c55-8a0e-2b7d5c9e1f30";
const RUNNING_NAME: &str = "Windows 11 游戏";
/// A UUID no VM has.
const UNKNOWN: &str = "deadbeef-0000-4000-8000-000000000001";

fn top() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn uri() -> String {
    format!(
        "test://{}",
        top().join("tests/fixtures/libvirt/launch.xml").display()
    )
}

/// A `virt-viewer` that records its arguments in `dir/argv` and its startup-notification
/// ID in `dir/startup`; returns its directory.
fn recorder(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let record = dir.join("argv");
    let script = bin.join("virt-viewer");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s' \"${{DESKTOP_STARTUP_ID-}}\" > '{1}'\n\
             printf '%s\\n' \"$@\" > '{0}.tmp' && mv '{0}.tmp' '{0}'\n",
            record.display(),
            dir.join("startup").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

fn recorded(dir: &Path) -> Vec<String> {
    let record = dir.join("argv");
    let start = Instant::now();
    while !record.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the viewer was not started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::read_to_string(record)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The app with the test's display, data files, language, libvirt URI, viewer directory
/// and data home (where launchers live).
fn app(lang: &str, dir: &Path) -> Command {
    assert!(
        std::env::var_os("DISPLAY").is_some(),
        "the app tests need an X display: run them through build-aux/test (xvfb-run)"
    );
    let share = top().join("target/dev/share");
    assert!(
        share
            .join("locale/zh_CN/LC_MESSAGES/passthrough.mo")
            .is_file(),
        "run build-aux/dev-data first"
    );
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_passthrough"));
    let path = format!(
        "{}:{}",
        recorder(dir).display(),
        std::env::var("PATH").unwrap_or_default()
    );
    cmd.env(
        "XDG_DATA_DIRS",
        format!("{}:/usr/local/share:/usr/share", share.display()),
    )
    .env("XDG_DATA_HOME", dir.join("data"))
    .env("PASSTHROUGH_LOCALEDIR", share.join("locale"))
    .env("PASSTHROUGH_LIBVIRT_URI", uri())
    .env("PATH", path)
    .env("GTK_A11Y", "none")
    .env("NO_AT_BRIDGE", "1")
    .env_remove("LC_ALL")
    .env_remove("LC_MESSAGES");
    match lang {
        "zh_CN" => cmd.env("LANGUAGE", "zh_CN").env("LANG", "zh_CN.UTF-8"),
        _ => cmd.env("LANGUAGE", "en").env("LANG", "C.UTF-8"),
    };
    cmd
}

/// Runs the app to its end (within a minute).
fn run(mut cmd: Command) -> (Output, Duration) {
    let start = Instant::now();
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let guard = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(60));
        // Still running after a minute: end it so the test fails instead of hanging.
        let _ = Command::new("kill").arg(pid.to_string()).status();
    });
    drop(guard);
    let out = child.wait_with_output().unwrap();
    (out, start.elapsed())
}

fn stderr_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        // GLib's own warnings and the tracing log are not the app's lines.
        .filter(|l| !l.is_empty() && !l.starts_with('(') && !l.contains(" WARN "))
        .map(str::to_owned)
        .collect()
}

/// The translation of `msgid` in `lang` as the installed catalog has it (gettext(1)), filled.
fn translated(lang: &str, msgid: &str, args: &[(&str, &str)]) -> String {
    let out = Command::new("gettext")
        .args(["-d", "passthrough", "--", msgid])
        .env("TEXTDOMAINDIR", top().join("target/dev/share/locale"))
        .env("LANGUAGE", lang)
        .env("LANG", "C.UTF-8")
        .env_remove("LC_ALL")
        .output()
        .expect("gettext(1), from gettext-base");
    let mut text = String::from_utf8(out.stdout).unwrap();
    for (k, v) in args {
        text = text.replace(&format!("{{{k}}}"), v);
    }
    text
}

/// One Notify call as the service received it.
#[derive(Debug, Clone)]
struct Notified {
    replaces_id: u32,
    summary: String,
    body: String,
}

struct Notifications {
    seen: Arc<Mutex<Vec<Notified>>>,
    next: u32,
}

#[zbus::interface(name = "org.freedesktop.Notifications")]
impl Notifications {
    #[allow(clippy::too_many_arguments)]
    fn notify(
        &mut self,
        _app_name: String,
        replaces_id: u32,
        _app_icon: String,
        summary: String,
        body: String,
        _actions: Vec<String>,
        _hints: HashMap<String, zbus::OwnedVariant>,
        _expire_timeout: i32,
    ) -> u32 {
        self.seen.lock().unwrap().push(Notified {
            replaces_id,
            summary,
            body,
        });
        if replaces_id != 0 {
            return replaces_id;
        }
        self.next += 1;
        self.next
    }

    fn get_capabilities(&self) -> Vec<String> {
        vec!["body".into()]
    }

    fn get_server_information(&self) -> (String, String, String, String) {
        (
            "launch-test".into(),
            "passthrough".into(),
            "1".into(),
            "1.2".into(),
        )
    }

    fn close_notification(&self, _id: u32) {}
}

/// A notification service on the session bus for as long as it lives.
struct Listener {
    seen: Arc<Mutex<Vec<Notified>>>,
    _connection: zbus::Connection,
}

impl Listener {
    fn start() -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let server = Notifications {
            seen: seen.clone(),
            next: 0,
        };
        let connection = zbus::block_on(async {
            zbus::connection::Builder::session()
                .name("org.freedesktop.Notifications")
                .serve_at("/org/freedesktop/Notifications", server)
                .build()
                .await
        })
        .expect("the session bus of dbus-run-session (build-aux/test)");
        Self {
            seen,
            _connection: connection,
        }
    }

    fn seen(&self) -> Vec<Notified> {
        self.seen.lock().unwrap().clone()
    }
}

#[test]
fn launching_a_running_vm_opens_its_viewer_and_notifies() {
    let _serial = serial();
    let listener = Listener::start();
    let dir = tempfile::tempdir().unwrap();
    let (out, took) = run({
        let mut cmd = app("en", dir.path());
        // As the desktop starts an app with StartupNotify=true on X11.
        cmd.args(["--launch-vm", RUNNING])
            .env("DESKTOP_STARTUP_ID", "launch-test_TIME42");
        cmd
    });
    eprintln!("passthrough --launch-vm: {took:?}");
    let lines = stderr_lines(&out);
    assert_eq!(out.status.code(), Some(0), "{lines:#?}");
    assert_eq!(
        recorded(dir.path()),
        [
            "--connect",
            &uri(),
            "--wait",
            "--attach",
            "--reconnect",
            "--uuid",
            "--",
            RUNNING
        ]
    );
    // The viewer's window ends the desktop's launch feedback.
    assert_eq!(
        std::fs::read_to_string(dir.path().join("startup")).unwrap(),
        "launch-test_TIME42"
    );
    let expected = [
        format!("Looking for the virtual machine {RUNNING}…"),
        format!("{RUNNING_NAME} is already running."),
        format!("Opening the screen of {RUNNING_NAME} in virt-viewer."),
    ];
    assert_eq!(lines, expected);
    // The steps as one notification, replaced as the launch goes on; the steps that
    // followed within milliseconds are skipped, the last is shown. The title is the VM's
    // name once it is found, the app's before.
    let seen = listener.seen();
    assert_eq!(
        seen.iter().map(|n| n.body.as_str()).collect::<Vec<_>>(),
        [&expected[0], &expected[2]],
        "{seen:#?}"
    );
    assert_eq!(seen[0].summary, "Passthrough");
    assert_eq!(seen[1].summary, RUNNING_NAME);
    assert_eq!(seen[0].replaces_id, 0);
    assert_eq!(seen[1].replaces_id, 1, "{seen:#?}");
}

#[test]
fn an_unknown_vm_fails_with_a_translated_sentence() {
    let _serial = serial();
    for lang in ["en", "zh_CN"] {
        let listener = Listener::start();
        let dir = tempfile::tempdir().unwrap();
        let (out, _) = run({
            let mut cmd = app(lang, dir.path());
            cmd.args(["--launch-vm", UNKNOWN]);
            cmd
        });
        let lines = stderr_lines(&out);
        assert_eq!(out.status.code(), Some(1), "{lang}: {lines:#?}");
        let expected = translated(
            lang,
            "There is no virtual machine named or with the UUID “{vm}” on {uri}.",
            &[("vm", UNKNOWN), ("uri", &uri())],
        );
        assert_eq!(lines.last(), Some(&expected), "{lang}: {lines:#?}");
        let seen = listener.seen();
        assert_eq!(
            seen.last().map(|n| n.body.as_str()),
            Some(expected.as_str())
        );
        assert!(!dir.path().join("argv").exists(), "no viewer");
    }
}

#[test]
fn launchers_of_deleted_vms_are_removed_when_one_is_clicked() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    passthrough_core::vm::launcher::install(&data, "deleted", UNKNOWN).unwrap();
    // Another VM deleted outside the app: its launcher goes too.
    passthrough_core::vm::launcher::install(&data, "also deleted", &UNKNOWN.replace('1', "2"))
        .unwrap();
    passthrough_core::vm::launcher::install(&data, RUNNING_NAME, RUNNING).unwrap();
    let (out, _) = run({
        let mut cmd = app("en", dir.path());
        cmd.args(["--launch-vm", UNKNOWN]);
        cmd
    });
    assert_eq!(out.status.code(), Some(1));
    let lines = stderr_lines(&out);
    assert_eq!(
        lines.last().unwrap(),
        "The virtual machine no longer exists, so its launcher was removed from the app grid."
    );
    let left = passthrough_core::vm::launcher::installed(&data);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].0, RUNNING);
}

#[test]
fn without_a_notification_service_the_launch_still_works() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (out, _) = run({
        let mut cmd = app("en", dir.path());
        cmd.args(["--launch-vm", RUNNING]);
        cmd
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("no notification service is running"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{RUNNING_NAME} is already running.")),
        "{stderr}"
    );
    assert_eq!(recorded(dir.path()).last().unwrap(), RUNNING);

    // Nor without a session bus at all.
    let dir = tempfile::tempdir().unwrap();
    let (out, _) = run({
        let mut cmd = app("en", dir.path());
        cmd.args(["--launch-vm", RUNNING])
            .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus");
        cmd
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(recorded(dir.path()).last().unwrap(), RUNNING);
}

#[test]
fn an_empty_launch_target_is_bad_usage() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (out, _) = run({
        let mut cmd = app("en", dir.path());
        cmd.args(["--launch-vm", ""]);
        cmd
    });
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--launch-vm needs"));
}

#[test]
fn the_boot_gpu_is_reset_through_the_real_helper_before_the_start() {
    // b550-blog's boot GPU (08:00.0, vfio-pci) passed through by win10 of the test driver's
    // host: the app asks the helper (on a private system bus with polkitd, serving a copy of
    // the fixture) to remove the card and rescan, then starts the VM and opens the viewer.
    const TEST: &str = "the_boot_gpu_is_reset_through_the_real_helper_before_the_start";
    if !common::is_root() {
        common::skip(
            TEST,
            "needs root: it starts polkitd and installs a polkit rule",
        );
        return;
    }
    let _serial = serial();
    let _listener = Listener::start();
    let bus = common::Bus::start();
    let temp = common::root_copy("b550-blog");
    let root = temp.path().join("root");
    let (remove, rescan) = common::add_pci_reset_files(&root, "0000:08:00.0");
    let _helper = bus.helper(&root, 0);
    bus.wait_for_name(passthrough_core::dbus::BUS_NAME, Duration::from_secs(10));

    let dir = tempfile::tempdir().unwrap();
    let (out, took) = run({
        let mut cmd = app("en", dir.path());
        cmd.arg("--root")
            .arg(&root)
            .args(["--launch-vm", "0b7e1a55-2f4c-4d1e-9a6b-3c8d7e6f5a40"])
            .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address);
        cmd
    });
    eprintln!("passthrough --launch-vm with a reset: {took:?}");
    let lines = stderr_lines(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{lines:#?}\n{}",
        bus.helper_log()
    );
    assert_eq!(
        lines,
        [
            "Looking for the virtual machine 0b7e1a55-2f4c-4d1e-9a6b-3c8d7e6f5a40…",
            "Resetting the graphics card 0000:08:00.0 before the start: it is the card the computer started on, so it is removed and found again…",
            "Starting win10…",
            "win10 is running.",
            "Opening the screen of win10 in virt-viewer.",
        ]
    );
    assert_eq!(std::fs::read_to_string(&remove).unwrap(), "1");
    assert_eq!(std::fs::read_to_string(&rescan).unwrap(), "1");
    assert!(
        bus.helper_log().contains("ResetGpu"),
        "{}",
        bus.helper_log()
    );
    assert_eq!(
        recorded(dir.path()).last().unwrap(),
        "0b7e1a55-2f4c-4d1e-9a6b-3c8d7e6f5a40"
    );
}
