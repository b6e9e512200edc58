//! The Debian package, built by `build-aux/deb` (a release build) and installed on this
//! machine with apt, proven to work as installed:
//! - its control data: the shared-library dependencies dpkg-shlibdeps found, dbus and
//!   polkitd, and the recommended virtualization packages;
//! - a system-type dbus-daemon that reads only the installed configuration
//!   (`/usr/share/dbus-1/system.d`, `/usr/share/dbus-1/system-services`) activates the
//!   installed helper; a real polkitd reads the installed policy; an allowed caller (root)
//!   gets the helper's answer, a denied one (`nobody`) gets NotAuthorized — with calls that
//!   change nothing (the helper serves this machine's `/`);
//! - the installed app opens under Xvfb, in Chinese from the installed catalog, with the
//!   installed (trigger-compiled) GSettings schema;
//! - `apt purge` leaves nothing behind: /usr, /etc and /var/lib are as before.
//!
//! Needs root and Debian/Ubuntu; skipped with a reason otherwise, or when the package is
//! already installed (this test would remove it). Every daemon it starts is stopped by PID.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const TEST: &str = "the_package_installs_works_and_purges_cleanly";

fn sh(program: &str, args: &[&str]) -> std::process::Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

fn installed() -> bool {
    let out = sh("dpkg-query", &["-W", "-f=${Status}", "passthrough"]);
    String::from_utf8_lossy(&out.stdout).contains("install ok installed")
}

/// Paths and sizes+mtimes under the directories a package may touch, without the package
/// manager's own state and logs.
fn system_snapshot() -> BTreeMap<PathBuf, String> {
    let skip = [
        "/var/lib/dpkg",
        "/var/lib/apt",
        "/var/cache",
        "/var/log",
        "/var/lib/polkit-1",
        "/var/lib/systemd",
        "/etc/ld.so.cache",
        "/var/lib/ucf",
        // Caches that dpkg triggers rebuild (their content changes, the set does not).
        "/usr/share/glib-2.0/schemas/gschemas.compiled",
        "/usr/share/icons/hicolor/icon-theme.cache",
        "/usr/share/applications/mimeinfo.cache",
    ];
    let mut out = BTreeMap::new();
    for top in ["/usr", "/etc", "/var/lib", "/run/dbus"] {
        let mut stack = vec![PathBuf::from(top)];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                if skip.iter().any(|s| p.starts_with(s)) {
                    continue;
                }
                let Ok(meta) = std::fs::symlink_metadata(&p) else {
                    continue;
                };
                if meta.is_dir() {
                    stack.push(p.clone());
                    out.insert(p, "dir".into());
                } else {
                    out.insert(p, format!("{}", meta.len()));
                }
            }
        }
    }
    out
}

/// A system-type bus that reads the installed D-Bus configuration only, on a private
/// socket (this machine's own system bus, if any, is not touched).
struct InstalledBus {
    /// Stopped by its PID when dropped.
    _daemon: Daemon,
    address: String,
    dir: tempfile::TempDir,
}

impl InstalledBus {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        chmod(dir.path(), 0o755);
        let socket = dir.path().join("system_bus_socket");
        let config = dir.path().join("system.conf");
        // The defaults of Debian's /usr/share/dbus-1/system.conf, on our socket, with the
        // installed policy and activation directories and no launch helper (it would read
        // the machine's own bus configuration).
        let conf = system_conf(&socket, Path::new("/usr/share/dbus-1/system.d")).replace(
            "<includedir>",
            "<servicedir>/usr/share/dbus-1/system-services</servicedir>\n  <includedir>",
        );
        std::fs::write(&config, conf).unwrap();
        let log = std::fs::File::create(dir.path().join("bus.log")).unwrap();
        let (child, line) = start_dbus_daemon(&config, log.into());
        Self {
            _daemon: Daemon {
                name: "dbus-daemon",
                child,
            },
            address: line.trim().to_owned(),
            dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("bus.log")).unwrap_or_default()
    }

    fn gdbus(&self, nobody: bool, args: &[&str]) -> std::process::Output {
        let mut cmd = if nobody {
            let mut c = Command::new("setpriv");
            c.args([
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
                "gdbus",
            ]);
            c
        } else {
            Command::new("gdbus")
        };
        cmd.arg("call")
            .arg("--address")
            .arg(&self.address)
            .args(args)
            .output()
            .unwrap()
    }

    /// The PID of the connection that owns `name`, if any.
    fn owner_pid(&self, name: &str) -> Option<u32> {
        let out = self.gdbus(
            false,
            &[
                "--dest",
                "org.freedesktop.DBus",
                "--object-path",
                "/org/freedesktop/DBus",
                "--method",
                "org.freedesktop.DBus.GetConnectionUnixProcessID",
                name,
            ],
        );
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.trim()
            .trim_start_matches("(uint32 ")
            .trim_end_matches(",)")
            .parse()
            .ok()
    }
}

/// Removes the package when dropped (even when the test fails), so the machine is left as
/// it was.
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        if installed() {
            let _ = Command::new("apt-get")
                .args(["purge", "-y", "-q", "passthrough"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .output();
        }
    }
}

fn stop_pid(pid: u32) {
    let _ = Command::new("kill").arg(pid.to_string()).status();
    let start = Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists() && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_package_installs_works_and_purges_cleanly() {
    if !is_root() {
        skip(TEST, "needs root: it installs the package with apt");
        return;
    }
    if !Path::new("/etc/debian_version").exists() || !have("dpkg-deb") || !have("apt-get") {
        skip(TEST, "not a Debian or Ubuntu machine");
        return;
    }
    if installed() {
        skip(
            TEST,
            "the passthrough package is installed already: this test would remove it",
        );
        return;
    }
    assert!(
        std::env::var_os("DISPLAY").is_some(),
        "needs an X display: run it through build-aux/test (xvfb-run)"
    );

    // Build (release) and inspect.
    let started = Instant::now();
    let out = sh(top().join("build-aux/deb").to_str().unwrap(), &[]);
    assert!(out.status.success(), "build-aux/deb: {}", out_text(&out));
    let deb = String::from_utf8_lossy(&out.stdout)
        .trim()
        .lines()
        .last()
        .unwrap()
        .to_owned();
    eprintln!(
        "{TEST}: built {deb} in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let field = |name: &str| {
        let out = sh("dpkg-deb", &["-f", &deb, name]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let depends = field("Depends");
    for lib in [
        "libgtk-4-1",
        "libadwaita-1-0",
        "libvirt0",
        "libc6",
        "dbus",
        "polkitd",
    ] {
        assert!(depends.contains(lib), "Depends lacks {lib}: {depends}");
    }
    let recommends = field("Recommends");
    for pkg in [
        "libvirt-daemon-system",
        "qemu-system-x86",
        "ovmf",
        "swtpm",
        "virt-viewer",
    ] {
        assert!(
            recommends.contains(pkg),
            "Recommends lacks {pkg}: {recommends}"
        );
    }
    let listing = String::from_utf8_lossy(&sh("dpkg-deb", &["-c", &deb]).stdout).to_string();
    for path in [
        "./usr/bin/passthrough",
        "./usr/libexec/passthrough-helper",
        "./usr/share/dbus-1/system-services/io.github.passthrough.Helper1.service",
        "./usr/share/polkit-1/actions/io.github.passthrough.policy",
        "./usr/lib/systemd/system/passthrough-helper.service",
        "./usr/share/doc/passthrough/copyright",
    ] {
        assert!(
            listing.contains(path),
            "{path} is not in the package:\n{listing}"
        );
    }
    assert!(
        !listing.contains("./etc/"),
        "no conffiles expected:\n{listing}"
    );
    // lintian, Debian's package checker: no error and no warning (its root warning aside).
    let out = sh("lintian", &["--tag-display-limit", "0", &deb]);
    let tags: Vec<String> = out_text(&out)
        .lines()
        .filter(|l| l.starts_with("E: ") || l.starts_with("W: "))
        .map(str::to_owned)
        .collect();
    assert!(tags.is_empty(), "lintian: {tags:#?}");
    assert!(!listing.contains("install-manifest"), "{listing}");

    // Install with apt.
    let before = system_snapshot();
    let _purge = Purge;
    let out = Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends", &deb])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .unwrap();
    assert!(out.status.success(), "apt-get install: {}", out_text(&out));
    assert!(installed());

    // The schema was compiled by the trigger: GSettings finds it where GNOME looks.
    let out = Command::new("gsettings")
        .args(["list-keys", "io.github.passthrough.Passthrough"])
        .env_remove("XDG_DATA_DIRS")
        .env("GSETTINGS_BACKEND", "memory")
        .output()
        .unwrap();
    assert!(
        out.status.success() && out_text(&out).contains("libvirt-uri"),
        "the installed schema is not compiled: {}",
        out_text(&out)
    );

    // The installed helper, activated by a bus that reads the installed configuration,
    // with polkitd reading the installed policy.
    {
        let bus = InstalledBus::start();
        let polkitd = Daemon {
            name: "polkitd",
            child: Command::new(POLKITD)
                .arg("--no-debug")
                .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        };
        let limit = Instant::now() + Duration::from_secs(10);
        while bus.owner_pid("org.freedesktop.PolicyKit1").is_none() && Instant::now() < limit {
            std::thread::sleep(Duration::from_millis(100));
        }
        let path = "/io/github/passthrough/Helper1";
        let dest = "io.github.passthrough.Helper1";
        // Anyone may read the version: this call activates the helper.
        let out = bus.gdbus(
            true,
            &[
                "--dest",
                dest,
                "--object-path",
                path,
                "--method",
                "org.freedesktop.DBus.Properties.Get",
                "io.github.passthrough.Helper1",
                "Version",
            ],
        );
        assert!(
            out.status.success() && out_text(&out).contains(env!("CARGO_PKG_VERSION")),
            "Version: {}\n{}",
            out_text(&out),
            bus.log()
        );
        assert!(
            bus.log()
                .contains("Successfully activated service 'io.github.passthrough.Helper1'"),
            "{}",
            bus.log()
        );
        let helper_pid = bus
            .owner_pid(dest)
            .expect("the activated helper owns its name");
        let exe = std::fs::read_link(format!("/proc/{helper_pid}/exe")).unwrap();
        assert_eq!(exe, Path::new("/usr/libexec/passthrough-helper"));
        // polkitd knows the installed actions.
        let out = Command::new("pkaction")
            .args([
                "--action-id",
                "io.github.passthrough.configure-host",
                "--verbose",
            ])
            .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
            .output()
            .unwrap();
        assert!(out.status.success(), "pkaction: {}", out_text(&out));
        // A call that needs polkit and changes nothing: keep a network change that does
        // not exist. root is allowed by polkit and gets the helper's own answer; nobody is
        // refused before the helper looks at the argument.
        let confirm = [
            "--dest",
            dest,
            "--object-path",
            path,
            "--method",
            "io.github.passthrough.Helper1.ConfirmNetwork",
            "20990101-000000-abcdef",
        ];
        let root_out = bus.gdbus(false, &confirm);
        let text = out_text(&root_out);
        assert!(
            text.contains("io.github.passthrough.Helper1.Error.Failed")
                && text.contains("no longer waiting"),
            "root: {text}"
        );
        let nobody_out = bus.gdbus(true, &confirm);
        let text = out_text(&nobody_out);
        assert!(
            text.contains("io.github.passthrough.Helper1.Error.NotAuthorized"),
            "nobody: {text}"
        );
        stop_pid(helper_pid);
        drop(polkitd);
        drop(bus);
    }

    // The installed app under Xvfb, in Chinese from the installed catalog.
    {
        let home = tempfile::tempdir().unwrap();
        let shot = top().join("target/screenshots/installed-app-zh_CN.png");
        let _ = std::fs::remove_file(&shot);
        std::fs::create_dir_all(shot.parent().unwrap()).unwrap();
        let mut app = Command::new("/usr/bin/passthrough")
            .args([
                "--root",
                top()
                    .join("tests/fixtures/roots/b550-blog")
                    .to_str()
                    .unwrap(),
            ])
            .env_remove("XDG_DATA_DIRS")
            .env_remove("PASSTHROUGH_LOCALEDIR")
            .env_remove("LC_ALL")
            .env("LANGUAGE", "zh_CN")
            .env("LANG", "zh_CN.UTF-8")
            .env("HOME", home.path())
            .env("XDG_CONFIG_HOME", home.path().join("config"))
            .env("GSETTINGS_BACKEND", "memory")
            .env("GTK_A11Y", "none")
            .env("NO_AT_BRIDGE", "1")
            .env("PASSTHROUGH_TEST_REPORT", "1")
            .env("PASSTHROUGH_TEST_SCREENSHOT", &shot)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let limit = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = app.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < limit, "the installed app did not finish");
            std::thread::sleep(Duration::from_millis(100));
        };
        let out = app.wait_with_output().unwrap();
        assert!(status.success(), "{}", out_text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("ready: gpus=2"), "{stdout}");
        assert!(shot.is_file(), "no screenshot: {stdout}");
        // Translated: `passthroughctl` from the package speaks Chinese too.
        let out = Command::new("/usr/bin/passthroughctl")
            .args([
                "--root",
                top()
                    .join("tests/fixtures/roots/b550-blog")
                    .to_str()
                    .unwrap(),
                "network",
            ])
            .env_remove("PASSTHROUGH_LOCALEDIR")
            .env("LANGUAGE", "zh_CN")
            .env("LANG", "zh_CN.UTF-8")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("网络"), "not translated: {text}");
    }

    // Purge: nothing is left.
    let out = Command::new("apt-get")
        .args(["purge", "-y", "-q", "passthrough"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .unwrap();
    assert!(out.status.success(), "apt-get purge: {}", out_text(&out));
    assert!(!installed());
    let after = system_snapshot();
    let added: Vec<&PathBuf> = after.keys().filter(|p| !before.contains_key(*p)).collect();
    let removed: Vec<&PathBuf> = before.keys().filter(|p| !after.contains_key(*p)).collect();
    assert!(
        added.is_empty() && removed.is_empty(),
        "purge left {added:?}, removed {removed:?}"
    );
    eprintln!("{TEST}: {:.0} s", started.elapsed().as_secs_f64());
}
