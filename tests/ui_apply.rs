//! Apply from the real app, end to end: the app (under Xvfb, driven by its test actions)
//! examines a copy of a fixture host (`--root COPY`), and its Apply goes over a private
//! system bus to the real `passthrough-helper --root COPY`, which asks a real polkitd.
//!
//! It needs root, like tests/helper_bus.rs: polkitd runs as root, the polkit test policy and
//! rule (root may, everyone else may not) are installed in polkit's fixed directories while it
//! runs and removed by Drop guards, even when it fails. polkit always authorizes root, so the
//! refusal is shown by the same app run as `nobody`. Every process it starts (dbus-daemon,
//! polkitd, the helpers, the apps) is stopped by its PID. All scenarios run in one test
//! function: the daemons start once, and nothing else uses the polkit directories meanwhile.
//!
//! Screenshots of the finished Apply (en, zh_CN) and of the refusals land in
//! target/screenshots/boot-apply-*.png.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use passthrough_core::dbus::{Helper1Proxy, BUS_NAME};
use passthrough_core::plan::{Plan, Rendered};
use passthrough_core::transaction::{self, TransactionState};
use passthrough_core::HostRoot;

/// The blog's B550 machine with the ACS override: its Radeon (the host's card in the post)
/// is isolated and not reserved yet, so reserving it changes GRUB's defaults, the vfio-pci
/// modprobe options and the initramfs modules, then runs update-initramfs and update-grub.
const FIXTURE: &str = "b550-blog-acs";
const CARD: &str = "0000:04:00.0";
/// Reserve and apply, permanently (Try Once First is on by default where the host can).
const ACTIONS: &str = "win.reserve-gpu::0000:04:00.0;win.try-once(false);win.apply-changes";
/// Reserve and apply as a trial start.
const TRIAL_ACTIONS: &str = "win.reserve-gpu::0000:04:00.0;win.apply-changes";

/// What the app says after a change is refused because of polkit (core's `user_message`).
const NOT_ALLOWED: &str = "You are not allowed to change the system configuration: authentication was refused or cancelled. Nothing was changed.";
const NO_HELPER: &str =
    "The Passthrough helper is not installed or could not be started. Nothing was changed.";
const OTHER_ROOT: &str =
    "This is a copy of another computer: the changes are shown but cannot be applied here.";

/// Who runs the app.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum User {
    Root,
    Nobody,
}

/// What one run of the app printed.
#[derive(Debug)]
struct AppRun {
    ready: String,
    label: String,
    progress: Vec<String>,
    output: String,
}

impl AppRun {
    fn field(&self, key: &str) -> String {
        self.ready
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{key}=")))
            .unwrap_or_default()
            .to_owned()
    }
}

fn uid_gid_of_nobody() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id").args([flag, "nobody"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    (id("-u"), id("-g"))
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            chown_tree(&entry.unwrap().path(), uid, gid);
        }
    }
}

/// Starts the app on `root` with the test actions, waits until it has taken its screenshot
/// and quit, and returns what it printed. The app is stopped by its PID if it does not.
fn run_app(bus: &Bus, lang: &str, root: &Path, user: User, screenshot: &str) -> (AppRun, PathBuf) {
    run_app_with(bus, lang, root, user, screenshot, ACTIONS)
}

fn run_app_with(
    bus: &Bus,
    lang: &str,
    root: &Path,
    user: User,
    screenshot: &str,
    actions: &str,
) -> (AppRun, PathBuf) {
    run_app_env(bus, lang, root, user, screenshot, actions, &[])
}

/// [`run_app_with`] with more environment variables for the app.
fn run_app_env(
    bus: &Bus,
    lang: &str,
    root: &Path,
    user: User,
    screenshot: &str,
    actions: &str,
    env: &[(&str, &str)],
) -> (AppRun, PathBuf) {
    let share = top().join("target/dev/share");
    assert!(
        share
            .join("locale/zh_CN/LC_MESSAGES/passthrough.mo")
            .is_file(),
        "run build-aux/dev-data first"
    );
    // The app's own files: settings (a window tall enough for the whole step), and for
    // `nobody` its home, runtime dir and a copy of the X cookie.
    let home = tempfile::tempdir().unwrap();
    chmod(home.path(), 0o700);
    let settings = home.path().join("config/glib-2.0/settings");
    std::fs::create_dir_all(&settings).unwrap();
    std::fs::write(
        settings.join("keyfile"),
        "[io/github/passthrough/Passthrough]\nwindow-height=1900\nwindow-width=1100\n",
    )
    .unwrap();
    let runtime = home.path().join("run");
    std::fs::create_dir(&runtime).unwrap();
    chmod(&runtime, 0o700);
    let shot = home.path().join("shot.png");

    let mut cmd = match user {
        User::Root => Command::new(env!("CARGO_BIN_EXE_passthrough")),
        User::Nobody => {
            let mut cmd = Command::new("setpriv");
            cmd.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
                .arg(env!("CARGO_BIN_EXE_passthrough"));
            if let Some(cookie) = std::env::var_os("XAUTHORITY") {
                let copy = home.path().join("Xauthority");
                std::fs::copy(&cookie, &copy).unwrap();
                cmd.env("XAUTHORITY", &copy);
            }
            // Not root's session bus (nobody may not use it), and no autolaunched one.
            cmd.env(
                "DBUS_SESSION_BUS_ADDRESS",
                format!("unix:path={}", home.path().join("no-session-bus").display()),
            );
            let (uid, gid) = uid_gid_of_nobody();
            chown_tree(home.path(), uid, gid);
            cmd
        }
    };
    cmd.arg("--root")
        .arg(root)
        .args(["--page", "boot"])
        .env(
            "XDG_DATA_DIRS",
            format!("{}:/usr/local/share:/usr/share", share.display()),
        )
        .env("PASSTHROUGH_LOCALEDIR", share.join("locale"))
        .env("GTK_A11Y", "none")
        .env("NO_AT_BRIDGE", "1")
        .env("GSETTINGS_BACKEND", "keyfile")
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path().join("config"))
        .env("XDG_CACHE_HOME", home.path().join("cache"))
        .env("XDG_RUNTIME_DIR", &runtime)
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .env("PASSTHROUGH_TEST_REPORT", "1")
        .env("PASSTHROUGH_TEST_ACTIONS", actions)
        .env("PASSTHROUGH_TEST_SCREENSHOT", &shot)
        .envs(env.iter().copied())
        .env_remove("LC_ALL")
        .env_remove("LC_MESSAGES");
    match lang {
        "zh_CN" => cmd.env("LANGUAGE", "zh_CN").env("LANG", "zh_CN.UTF-8"),
        _ => cmd.env("LANGUAGE", "en").env("LANG", "C.UTF-8"),
    };
    let stderr_path = bus.dir.path().join(format!("app-{screenshot}.log"));
    let mut app = Daemon {
        name: "passthrough",
        child: cmd
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap(),
    };
    let stdout = app.child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    });
    let status = app.wait_exit(Duration::from_secs(120));
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let Some(status) = status else {
        drop(app); // stops it by its PID
        panic!(
            "{screenshot}: the app did not finish within 120 s\n{stderr}\n--- helper ---\n{}",
            bus.helper_log()
        );
    };
    let lines = reader.join().unwrap();
    let output = format!("{}\n--- stderr ---\n{stderr}", lines.join("\n"));
    assert!(status.success(), "{screenshot}: {status}\n{output}");
    let ready = lines
        .iter()
        .find(|l| l.starts_with("ready:"))
        .unwrap_or_else(|| panic!("{screenshot}: no ready line\n{output}"))
        .clone();
    let label = lines
        .iter()
        .find_map(|l| l.strip_prefix("boot-progress-label: "))
        .unwrap_or_else(|| panic!("{screenshot}: no progress label\n{output}"))
        .to_owned();
    let progress = lines
        .iter()
        .filter_map(|l| l.strip_prefix("boot-progress: "))
        .map(str::to_owned)
        .collect();
    assert!(
        lines.iter().any(|l| l.starts_with("screenshot: ")),
        "{screenshot}: no screenshot\n{output}"
    );

    let dir = top().join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let saved = dir.join(format!("{screenshot}-{lang}.png"));
    std::fs::copy(&shot, &saved).unwrap();
    if env
        .iter()
        .any(|(k, _)| *k == "PASSTHROUGH_TEST_SCREENSHOT_DIALOG")
    {
        check_dialog_picture(&saved);
    } else {
        check_picture(&saved);
    }
    (
        AppRun {
            ready,
            label,
            progress,
            output,
        },
        saved,
    )
}

/// A real picture of the window: big enough, and not blank (a blank or half-drawn window
/// has few colours; imagemagick counts them).
fn check_picture(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[1..4], b"PNG", "{} is a PNG", path.display());
    let be = |o: usize| u32::from_be_bytes(bytes[o..o + 4].try_into().unwrap());
    let (w, h) = (be(16), be(20));
    assert!(w >= 800 && h >= 1200, "{}: {w}x{h}", path.display());
    let out = Command::new("identify")
        .args(["-format", "%k"])
        .arg(path)
        .output()
        .expect("identify (imagemagick)");
    let colours: u32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    assert!(colours > 200, "{}: the window looks empty", path.display());
}

/// A real picture of a dialog: smaller than the window, not blank.
fn check_dialog_picture(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[1..4], b"PNG", "{} is a PNG", path.display());
    let be = |o: usize| u32::from_be_bytes(bytes[o..o + 4].try_into().unwrap());
    let (w, h) = (be(16), be(20));
    assert!(w >= 200 && h >= 100, "{}: {w}x{h}", path.display());
}

/// A fresh copy of the fixture, readable by `nobody` too.
fn fresh_copy() -> (tempfile::TempDir, PathBuf) {
    let temp = root_copy(FIXTURE);
    chmod(temp.path(), 0o755);
    let root = temp.path().join("root");
    (temp, root)
}

/// The plan the app sends: the card, and on this AMD host with the IOMMU on the IOMMU
/// "enabled" too, which removes the post's invalid amd_iommu=on.
fn plan() -> Plan {
    Plan {
        reserve: vec![CARD.parse().unwrap()],
        enable_iommu: true,
        ..Plan::default()
    }
}

/// Stops a helper by its PID and waits until the bus has let go of its name, so the next
/// helper can own it.
fn stop_helper(bus: &Bus, helper: Daemon) {
    drop(helper);
    let start = Instant::now();
    while bus.has_owner(BUS_NAME) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the bus still lists the stopped helper"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn journal(root: &Path) -> Vec<transaction::TransactionRecord> {
    transaction::list(&HostRoot::new(root)).unwrap()
}

#[test]
fn apply_from_the_app_through_the_helper_and_polkit() {
    const TEST: &str = "apply_from_the_app_through_the_helper_and_polkit";
    if !is_root() {
        skip(
            TEST,
            "needs root: it starts polkitd and installs a polkit rule",
        );
        return;
    }
    assert!(
        std::env::var_os("DISPLAY").is_some(),
        "the UI tests need an X display: run them through build-aux/test (xvfb-run)"
    );
    for program in ["dbus-daemon", "setpriv", "msgfmt", "identify"] {
        assert!(
            have(program),
            "{program} is missing: build-aux/deps test installs it"
        );
    }
    assert!(
        Path::new(POLKITD).exists(),
        "{POLKITD} is missing: build-aux/deps test installs polkitd"
    );
    let started = Instant::now();
    let bus = Bus::start();
    let conn = bus.connect();

    // 1. No helper on the bus: the app says so, and nothing changes.
    {
        let (_temp, root) = fresh_copy();
        let before = snapshot(&root);
        let (run, _) = run_app(&bus, "en", &root, User::Root, "boot-apply-no-helper");
        assert_eq!(run.field("apply-outcome"), "not-sent", "{}", run.output);
        assert_eq!(run.field("applied"), "-", "{}", run.output);
        assert_eq!(run.label, NO_HELPER, "{}", run.output);
        assert!(run.progress.is_empty(), "{:?}", run.progress);
        assert!(
            before == snapshot(&root),
            "the root changed without a helper"
        );
    }

    // 2. A helper that serves another copy is asked for its Root and sent nothing: its copy
    //    and the app's stay as they were, and it journals nothing.
    {
        let (_served_temp, served) = fresh_copy();
        let (_temp, root) = fresh_copy();
        let served_before = snapshot(&served);
        let before = snapshot(&root);
        let helper = bus.helper(&served, 0);
        bus.wait_for_name(BUS_NAME, Duration::from_secs(10));
        let proxy = zbus::block_on(Helper1Proxy::new(&conn)).unwrap();
        assert_eq!(
            zbus::block_on(proxy.root()).unwrap(),
            served.display().to_string()
        );
        let (run, _) = run_app(&bus, "en", &root, User::Root, "boot-apply-other-root");
        assert_eq!(run.field("apply-outcome"), "other-root", "{}", run.output);
        assert_eq!(run.field("applied"), "-", "{}", run.output);
        assert_eq!(run.label, OTHER_ROOT, "{}", run.output);
        assert!(run.progress.is_empty(), "{:?}", run.progress);
        assert_eq!(zbus::block_on(proxy.transactions()).unwrap(), "[]");
        assert!(before == snapshot(&root), "the app's copy changed");
        assert!(
            served_before == snapshot(&served),
            "the helper's copy changed"
        );
        assert!(
            !bus.helper_log().contains("method=Apply"),
            "Apply reached the helper:\n{}",
            bus.helper_log()
        );
        stop_helper(&bus, helper);
    }

    // 3. The helper serves the app's copy and polkit allows root: the app applies, shows the
    //    helper's progress, and the copy holds exactly what the helper previewed.
    for lang in ["en", "zh_CN"] {
        let (_temp, root) = fresh_copy();
        let locale = share_locale();
        let lang_env: [(&str, &str); 3] = match lang {
            "zh_CN" => [
                ("LANGUAGE", "zh_CN"),
                ("LANG", "zh_CN.UTF-8"),
                ("PASSTHROUGH_LOCALEDIR", &locale),
            ],
            _ => [
                ("LANGUAGE", "en"),
                ("LANG", "C.UTF-8"),
                ("PASSTHROUGH_LOCALEDIR", &locale),
            ],
        };
        let mut helper = bus.helper_with_env(&root, 0, &lang_env);
        bus.wait_for_name(BUS_NAME, Duration::from_secs(10));
        let proxy = zbus::block_on(Helper1Proxy::new(&conn)).unwrap();
        assert_eq!(
            zbus::block_on(proxy.root()).unwrap(),
            root.display().to_string()
        );
        let rendered: Rendered = zbus::block_on(proxy.preview_plan(&plan()))
            .unwrap_or_else(|e| panic!("Preview: {e}\n{}", bus.helper_log()));
        assert_eq!(rendered.files.len(), 3, "{rendered:?}");
        assert_eq!(rendered.commands.len(), 2, "{rendered:?}");
        assert!(journal(&root).is_empty());

        let (run, shot) = run_app(&bus, lang, &root, User::Root, "boot-apply-done");
        let out = &run.output;
        assert_eq!(run.field("apply-outcome"), "applied", "{out}");
        let id = run.field("applied");
        assert_ne!(id, "-", "{out}");
        assert!(run.label.contains(&id), "{lang}: {}\n{out}", run.label);
        if lang == "en" {
            assert_eq!(
                run.label,
                format!("Done. Change {id} is recorded in the history.")
            );
        }
        assert_eq!(run.field("history"), "1", "{out}");
        assert_eq!(run.field("boot"), "restart", "{out}");

        // The files hold exactly what Preview said.
        for file in &rendered.files {
            let now = std::fs::read_to_string(root.join(file.path.trim_start_matches('/'))).ok();
            assert_eq!(now, file.after, "{lang}: {} is not as previewed", file.path);
        }
        let recorded = std::fs::read_to_string(root.join("var/log/recorded-commands")).unwrap();
        assert_eq!(
            recorded.lines().map(str::trim_end).collect::<Vec<_>>(),
            ["update-initramfs -u -k all", "update-grub"],
            "{lang}"
        );
        // The journal has the transaction, applied; the helper lists it.
        let records = journal(&root);
        assert_eq!(records.len(), 1, "{records:?}");
        assert_eq!(records[0].id.to_string(), id);
        assert_eq!(records[0].state, TransactionState::Applied);
        let listed: serde_json::Value =
            serde_json::from_str(&zbus::block_on(proxy.transactions()).unwrap()).unwrap();
        assert_eq!(listed[0]["id"], id.as_str(), "{listed}");

        // Every Progress signal became a line in the app, in order: a step per file, then a
        // step per command followed by the recorder's output line.
        let lines = &run.progress;
        let expected = rendered.files.len() + 2 * rendered.commands.len();
        assert_eq!(run.field("progress-lines"), expected.to_string(), "{out}");
        assert_eq!(lines.len(), expected, "{lines:#?}");
        for (line, file) in lines.iter().zip(&rendered.files) {
            assert!(
                line.contains(&file.path),
                "{lang}: {line:?} for {}",
                file.path
            );
        }
        for (pair, argv) in lines[rendered.files.len()..]
            .chunks(2)
            .zip(&rendered.commands)
        {
            assert!(pair[0].contains(&argv.join(" ")), "{lang}: {pair:?}");
            assert_eq!(pair[1], format!("    recorder: {} ran", argv[0]), "{lang}");
        }
        // The log line that scenario 2 checks is absent.
        assert!(
            bus.helper_log().contains("method=Apply"),
            "{}",
            bus.helper_log()
        );
        eprintln!("{lang}: applied {id}; screenshot {}", shot.display());
        assert!(
            helper.exited().is_none(),
            "helper died:\n{}",
            bus.helper_log()
        );
        stop_helper(&bus, helper);
    }

    // 4. polkit refuses `nobody`: the same app run as nobody shows the refusal, and nothing
    //    on disk changes (not even a journal).
    {
        let (_temp, root) = fresh_copy();
        let before = snapshot(&root);
        let helper = bus.helper(&root, 0);
        bus.wait_for_name(BUS_NAME, Duration::from_secs(10));
        let (run, _) = run_app(&bus, "en", &root, User::Nobody, "boot-apply-denied");
        assert_eq!(run.field("apply-outcome"), "refused", "{}", run.output);
        assert_eq!(run.field("applied"), "-", "{}", run.output);
        assert_eq!(run.label, NOT_ALLOWED, "{}", run.output);
        assert_eq!(run.field("progress-lines"), "0", "{}", run.output);
        assert!(
            before == snapshot(&root),
            "a refused Apply changed the root"
        );
        assert!(
            bus.helper_log().contains("not authorized"),
            "{}",
            bus.helper_log()
        );
        stop_helper(&bus, helper);
    }

    // 5. Try once: the app applies a trial start (a GRUB custom.cfg entry and grub-reboot),
    //    then shows how it went after a restart (fell back, or worked), and Make Permanent
    //    writes GRUB's defaults and removes the trial entry.
    {
        let (_temp, root) = fresh_copy();
        let reboot = root.join("usr/sbin/grub-reboot");
        std::fs::write(&reboot, RECORDER).unwrap();
        chmod(&reboot, 0o755);
        let grub_before = std::fs::read_to_string(root.join("etc/default/grub")).unwrap();
        let cmdline_before = std::fs::read_to_string(root.join("proc/cmdline")).unwrap();
        let helper = bus.helper(&root, 0);
        bus.wait_for_name(BUS_NAME, Duration::from_secs(10));
        let proxy = zbus::block_on(Helper1Proxy::new(&conn)).unwrap();
        let trial_plan = Plan {
            try_once: true,
            ..plan()
        };
        let rendered: Rendered = zbus::block_on(proxy.preview_plan(&trial_plan)).unwrap();
        assert!(
            rendered
                .files
                .iter()
                .any(|f| f.path == "/boot/grub/custom.cfg"),
            "{rendered:?}"
        );

        let (run, _) = run_app_with(
            &bus,
            "en",
            &root,
            User::Root,
            "boot-trial-applied",
            TRIAL_ACTIONS,
        );
        let out = &run.output;
        assert_eq!(run.field("apply-outcome"), "applied", "{out}");
        assert_eq!(run.field("boot"), "trial-pending", "{out}");
        for file in &rendered.files {
            let now = std::fs::read_to_string(root.join(file.path.trim_start_matches('/'))).ok();
            assert_eq!(now, file.after, "{} is not as previewed", file.path);
        }
        assert_eq!(
            std::fs::read_to_string(root.join("etc/default/grub")).unwrap(),
            grub_before,
            "a trial leaves GRUB's defaults alone"
        );
        let recorded = || -> Vec<String> {
            std::fs::read_to_string(root.join("var/log/recorded-commands"))
                .unwrap()
                .lines()
                .map(|l| l.trim_end().to_owned())
                .collect()
        };
        assert_eq!(
            recorded(),
            [
                "update-initramfs -u -k all",
                "grub-reboot passthrough-trial"
            ]
        );
        let record = journal(&root).remove(0);
        assert!(record.is_trial());
        let finished = record.finished.unwrap();

        // The computer restarted with the old arguments: the trial did not come up.
        std::fs::write(
            root.join("proc/stat"),
            format!("cpu 1 1 1 1\nbtime {}\n", finished + 30),
        )
        .unwrap();
        for lang in ["en", "zh_CN"] {
            let (run, _) = run_app_with(&bus, lang, &root, User::Root, "boot-trial-failed", "");
            assert_eq!(run.field("boot"), "trial-failed", "{}", run.output);
        }

        // It restarted into the trial entry: its arguments are on the running command line.
        let mut words: Vec<String> = cmdline_before
            .split_whitespace()
            .filter(|w| !record.kernel_args.remove.iter().any(|r| r == w))
            .map(str::to_owned)
            .collect();
        words.extend(record.kernel_args.add.iter().cloned());
        std::fs::write(root.join("proc/cmdline"), words.join(" ") + "\n").unwrap();
        for lang in ["en", "zh_CN"] {
            let (run, _) = run_app_with(&bus, lang, &root, User::Root, "boot-trial-worked", "");
            assert_eq!(run.field("boot"), "trial-worked", "{}", run.output);
        }

        // Make Permanent: GRUB's defaults get the arguments, the trial entry goes.
        let (run, _) = run_app_with(
            &bus,
            "en",
            &root,
            User::Root,
            "boot-trial-permanent",
            "win.make-permanent",
        );
        let out = &run.output;
        assert_eq!(run.field("apply-outcome"), "applied", "{out}");
        assert_eq!(run.field("boot"), "restart", "{out}");
        assert!(!root.join("boot/grub/custom.cfg").exists());
        let grub = std::fs::read_to_string(root.join("etc/default/grub")).unwrap();
        for arg in &record.kernel_args.add {
            assert!(grub.contains(arg.as_str()), "{arg} not in {grub}");
        }
        assert_eq!(
            recorded()[2..],
            ["update-initramfs -u -k all", "update-grub"],
            "{out}"
        );
        let records = journal(&root);
        assert_eq!(records.len(), 2);
        assert!(records.iter().all(|r| r.state == TransactionState::Applied));
        stop_helper(&bus, helper);
    }

    // 6. Troubleshooting: a kernel log only root may read. Root's app reads it and finds the
    //    BAR problem in it; nobody's app cannot, offers the helper, and the helper (polkit
    //    read-logs) refuses nobody with the reason.
    {
        let (_temp, root) = fresh_copy();
        let log = root.join("var/log/kern.log");
        std::fs::create_dir_all(log.parent().unwrap()).unwrap();
        std::fs::write(
            &log,
            "[    2.101010] vfio-pci 0000:08:00.0: BAR 3: can't reserve [mem 0xe0000000-0xe1ffffff 64bit pref]\n",
        )
        .unwrap();
        chmod(&log, 0o600);
        let helper = bus.helper(&root, 0);
        bus.wait_for_name(BUS_NAME, Duration::from_secs(10));
        let (run, _) = run_app_with(
            &bus,
            "en",
            &root,
            User::Root,
            "troubleshoot-kernel-log",
            "win.show-page::troubleshoot",
        );
        let line = run
            .output
            .lines()
            .find(|l| l.starts_with("troubleshoot: "))
            .unwrap_or_default()
            .to_owned();
        assert!(line.contains("kernel-log=true"), "{line}");
        assert!(line.contains("framebuffer-bar"), "{line}");
        let (run, _) = run_app_with(
            &bus,
            "en",
            &root,
            User::Nobody,
            "troubleshoot-helper-denied",
            "win.show-page::troubleshoot;troubleshoot.read-with-helper",
        );
        let line = run
            .output
            .lines()
            .find(|l| l.starts_with("troubleshoot: "))
            .unwrap_or_default()
            .to_owned();
        assert!(line.contains("kernel-log=false"), "{line}\n{}", run.output);
        assert!(
            run.output
                .lines()
                .any(|l| l.starts_with("troubleshoot-error: ") && l.contains("not allowed")),
            "{}",
            run.output
        );
        assert!(bus.helper_log().contains("ReadLog"), "{}", bus.helper_log());
        stop_helper(&bus, helper);
    }

    // 7. The Network step (the post's host: enp7s0 wired with the default route, wlp6s0
    //    Wi-Fi, netplan over NetworkManager; NetworkManager is not on this bus, so the
    //    helper writes netplan's file). A `netplan` recorder stands for `netplan apply`.
    network_scenarios(&bus);

    eprintln!(
        "{TEST}: {:.1} s (bus at {}, polkitd pid {}, dbus-daemon pid {})",
        started.elapsed().as_secs_f64(),
        bus.address,
        bus.polkitd.pid(),
        bus.daemon.pid()
    );
}

/// A copy of the post's host with a `netplan` recorder, readable by `nobody`.
fn network_copy() -> (tempfile::TempDir, PathBuf) {
    let temp = root_copy("b550-blog");
    chmod(temp.path(), 0o755);
    let root = temp.path().join("root");
    let recorder = root.join("usr/sbin/netplan");
    std::fs::write(&recorder, RECORDER).unwrap();
    chmod(&recorder, 0o755);
    (temp, root)
}

fn network_line(run: &AppRun) -> String {
    run.output
        .lines()
        .find(|l| l.starts_with("network: "))
        .unwrap_or_else(|| panic!("no network line\n{}", run.output))
        .to_owned()
}

fn recorded(root: &Path) -> String {
    std::fs::read_to_string(root.join("var/log/recorded-commands")).unwrap_or_default()
}

/// The Network step through the helper: Create Bridge, then Keep (the file is what the
/// helper previews, `netplan apply` ran, libvirt gets a bridge network on test:///default);
/// then Remove and Keep (the root is as before). In Chinese: Create Bridge and no answer,
/// the app quits (the user was cut off): the helper undoes it at the deadline by itself.
/// Create Bridge and Undo Now: undone at once. nobody: refused by polkit, nothing changes.
fn network_scenarios(bus: &Bus) {
    use passthrough_core::network::NETPLAN_FILE;
    let conn = bus.connect();
    let (_temp, root) = network_copy();
    let file = root.join(NETPLAN_FILE.trim_start_matches('/'));
    let before = snapshot(&root);
    let helper = bus.helper(&root, 0);
    bus.wait_for_name(BUS_NAME, Duration::from_secs(10));
    let proxy = zbus::block_on(Helper1Proxy::new(&conn)).unwrap();
    let change = r#"{"action":"create","plan":{"bridge":"br0","port":"enp7s0","ipv4":"dhcp","ipv6":"ra","dns":[]}}"#;
    let preview: Rendered =
        serde_json::from_str(&zbus::block_on(proxy.preview_network(change)).unwrap()).unwrap();
    let libvirt = [("PASSTHROUGH_LIBVIRT_URI", "test:///default")];

    // Create and keep.
    let (run, _) = run_app_env(
        bus,
        "en",
        &root,
        User::Root,
        "network-kept",
        "win.show-page::network;network.apply;network.keep",
        &libvirt,
    );
    let line = network_line(&run);
    assert!(
        line.contains("route=helper") && line.contains("outcome=kept"),
        "{line}\n{}",
        run.output
    );
    assert!(line.contains("own-bridges=br0"), "{line}");
    assert!(line.contains("libvirt=br0:br0"), "{line}\n{}", run.output);
    assert!(
        line.contains("The bridge br0 is set up and kept."),
        "{line}"
    );
    assert_eq!(
        std::fs::read_to_string(&file).ok(),
        preview.files[0].after,
        "not as previewed"
    );
    assert_eq!(recorded(&root), "netplan apply\n");
    let records = journal(&root);
    assert_eq!(records[0].state, TransactionState::Applied);
    assert_eq!(records[0].confirm_by, None, "kept: nothing waits any more");

    // nobody may not remove it: polkit refuses, nothing changes.
    let kept = snapshot(&root);
    let (run, _) = run_app_env(
        bus,
        "en",
        &root,
        User::Nobody,
        "network-denied",
        "win.show-page::network;network.remove::br0",
        &[],
    );
    let line = network_line(&run);
    assert!(
        line.contains("outcome=failed") && line.contains("not allowed"),
        "{line}"
    );
    assert!(
        kept == snapshot(&root),
        "a refused removal changed the root"
    );

    // Remove and keep: the root is as it was.
    let (run, _) = run_app_env(
        bus,
        "en",
        &root,
        User::Root,
        "network-removed",
        "win.show-page::network;network.remove::br0;network.keep",
        &libvirt,
    );
    let line = network_line(&run);
    assert!(
        line.contains("outcome=kept") && line.contains("own-bridges= "),
        "{line}"
    );
    assert!(!file.exists());
    assert!(outside_var(before.clone()) == outside_var(snapshot(&root)));

    // Create and undo at once.
    let (run, _) = run_app_env(
        bus,
        "en",
        &root,
        User::Root,
        "network-undone",
        "win.show-page::network;network.apply;network.revert",
        &[],
    );
    let line = network_line(&run);
    assert!(line.contains("outcome=undone"), "{line}");
    assert!(!file.exists());

    // In both languages: create, show the question, and quit without an answer: the
    // helper undoes the change at the deadline although nobody talks to it any more.
    for lang in ["en", "zh_CN"] {
        let (run, _) = run_app_env(
            bus,
            lang,
            &root,
            User::Root,
            "network-keep-question",
            "win.show-page::network;network.apply",
            &[
                ("PASSTHROUGH_TEST_NETWORK_CONFIRM", "4"),
                ("PASSTHROUGH_TEST_SCREENSHOT_DIALOG", "1"),
            ],
        );
        let line = network_line(&run);
        assert!(
            !line.contains("pending=-"),
            "a change waits for its answer: {line}"
        );
        let limit = Instant::now() + Duration::from_secs(15);
        while file.exists() && Instant::now() < limit {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            !file.exists(),
            "the helper did not undo it:\n{}",
            bus.helper_log()
        );
        assert!(outside_var(before.clone()) == outside_var(snapshot(&root)));
    }
    stop_helper(bus, helper);
}

fn share_locale() -> String {
    top().join("target/dev/share/locale").display().to_string()
}
