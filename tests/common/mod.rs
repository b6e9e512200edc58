//! Setup shared by the integration tests that need real system parts: a private system bus
//! (`dbus-daemon` with a system-type configuration) with a real `polkitd` on it, the polkit test
//! policy and rule installed in polkit's fixed directories (removed by Drop guards), the
//! helper binary, and copies of fixture roots whose regeneration commands are recorders.
//!
//! Each test crate uses part of it (`mod common;`).
#![allow(dead_code)]

pub mod nm;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use passthrough_core::dbus::{BUS_NAME, INTERFACE, OBJECT_PATH};

pub const POLKITD: &str = "/usr/lib/polkit-1/polkitd";
pub const POLKIT_ACTIONS: &str = "/usr/share/polkit-1/actions";
pub const POLKIT_RULES: &str = "/etc/polkit-1/rules.d";

pub fn top() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn data(name: &str) -> PathBuf {
    top().join("data").join(name)
}

pub fn skip(test: &str, reason: &str) {
    // Printed, so a skipped check never passes silently.
    eprintln!("SKIPPED {test}: {reason}");
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

pub fn have(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub fn out_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The helper binary, built by `cargo build --workspace` into the same target directory as
/// this test (`target/debug/deps/helper_bus-…` → `target/debug/passthrough-helper`).
pub fn helper_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap();
    let dir = if dir.ends_with("deps") {
        dir.parent().unwrap()
    } else {
        dir
    };
    let bin = dir.join("passthrough-helper");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace` first (build-aux/test does)",
        bin.display()
    );
    // A helper built before the last change of its sources would test old code.
    let built = std::fs::metadata(&bin).unwrap().modified().unwrap();
    let mut sources = Vec::new();
    newest_rs(&top().join("src/helper"), &mut sources);
    newest_rs(&top().join("src/core"), &mut sources);
    if let Some(newer) = sources.iter().find(|(_, t)| *t > built) {
        panic!(
            "{} is older than {}: run `cargo build --workspace` first (build-aux/test does)",
            bin.display(),
            newer.0.display()
        );
    }
    bin
}

/// Every `.rs` file under `dir` (but its tests) with its modification time.
pub fn newest_rs(dir: &Path, out: &mut Vec<(PathBuf, std::time::SystemTime)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if !path.ends_with("tests") {
                newest_rs(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push((
                path.clone(),
                std::fs::metadata(&path).unwrap().modified().unwrap(),
            ));
        }
    }
}

/// A child process that is killed and reaped when dropped.
pub struct Daemon {
    pub name: &'static str,
    pub child: Child,
}

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Waits up to `limit` for the process to exit by itself.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            eprintln!("stopped {} (pid {})", self.name, self.child.id());
        }
    }
}

/// A file installed outside the temp dir, removed when dropped.
pub struct Installed(PathBuf);

impl Installed {
    pub fn write(path: impl Into<PathBuf>, content: &[u8]) -> Self {
        // The names are the test's own (no package installs them), so a file left by a
        // killed run is simply replaced.
        let path = path.into();
        // The guard exists before the file, so a failed write cannot leave it behind.
        let guard = Self(path);
        std::fs::write(&guard.0, content).unwrap();
        guard
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The polkit policy as installed: the template translated with msgfmt.
pub fn translated_policy(dir: &Path) -> PathBuf {
    let out = dir.join("io.github.passthrough.policy");
    let result = Command::new("msgfmt")
        .arg("--xml")
        .arg("-d")
        .arg(top().join("po"))
        .arg("--template")
        .arg(data("io.github.passthrough.policy.in"))
        .arg("-o")
        .arg(&out)
        .output()
        .expect("msgfmt");
    assert!(result.status.success(), "msgfmt: {}", out_text(&result));
    out
}

/// The test rule: root may do our actions, everyone else may not (no agent is asked).
pub const RULES: &str = r#"// Installed by the tests (tests/common) while they run; removed afterwards.
polkit.addRule(function(action, subject) {
    if (action.id == "io.github.passthrough.configure-host" ||
        action.id == "io.github.passthrough.manage-devices" ||
        action.id == "io.github.passthrough.read-logs") {
        return subject.user == "root" ? polkit.Result.YES : polkit.Result.NO;
    }
});
"#;

/// A private system bus with polkitd on it, our bus policy and polkit policy and rule.
pub struct Bus {
    // Dropped in this order: the daemons, then the installed files, then the temp dir.
    pub polkitd: Daemon,
    pub daemon: Daemon,
    _rules: Installed,
    _policy: Installed,
    pub address: String,
    pub dir: tempfile::TempDir,
}

impl Bus {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        // polkitd (its own user) and `nobody` must reach the socket.
        chmod(dir.path(), 0o755);
        let policy_dir = dir.path().join("system.d");
        std::fs::create_dir(&policy_dir).unwrap();
        chmod(&policy_dir, 0o755);
        std::fs::copy(
            data("io.github.passthrough.Helper1.conf"),
            policy_dir.join("io.github.passthrough.Helper1.conf"),
        )
        .unwrap();
        let polkit_conf = "/usr/share/dbus-1/system.d/org.freedesktop.PolicyKit1.conf";
        std::fs::copy(
            polkit_conf,
            policy_dir.join("org.freedesktop.PolicyKit1.conf"),
        )
        .unwrap_or_else(|e| panic!("{polkit_conf}: {e} (is polkitd installed?)"));
        let socket = dir.path().join("system_bus_socket");
        let config = dir.path().join("system.conf");
        std::fs::write(&config, system_conf(&socket, &policy_dir)).unwrap();

        let policy = Installed::write(
            Path::new(POLKIT_ACTIONS).join("io.github.passthrough.test.policy"),
            &std::fs::read(translated_policy(dir.path())).unwrap(),
        );
        let rules = Installed::write(
            Path::new(POLKIT_RULES).join("00-passthrough-test.rules"),
            RULES.as_bytes(),
        );

        let (child, line) = start_dbus_daemon(&config, Stdio::null());
        let daemon = Daemon {
            name: "dbus-daemon",
            child,
        };
        let address = line.trim().to_owned();
        assert!(address.starts_with("unix:"), "dbus-daemon said {address:?}");

        let polkitd = Daemon {
            name: "polkitd",
            child: Command::new(POLKITD)
                .arg("--no-debug")
                .env("DBUS_SYSTEM_BUS_ADDRESS", &address)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.path().join("polkitd.log")).unwrap())
                .spawn()
                .expect("polkitd (package polkitd)"),
        };
        let bus = Self {
            polkitd,
            daemon,
            _rules: rules,
            _policy: policy,
            address,
            dir,
        };
        bus.wait_for_name("org.freedesktop.PolicyKit1", Duration::from_secs(10));
        bus
    }

    pub fn connect(&self) -> zbus::Connection {
        zbus::block_on(zbus::connection::Builder::address(self.address.as_str()).build())
            .expect("connect to the private bus")
    }

    pub fn has_owner(&self, name: &str) -> bool {
        let conn = self.connect();
        zbus::block_on(async {
            let dbus = zbus::fdo::DBusProxy::new(&conn).await?;
            dbus.name_has_owner(name.try_into()?).await
        })
        .unwrap()
    }

    pub fn wait_for_name(&self, name: &str, limit: Duration) {
        let start = Instant::now();
        while !self.has_owner(name) {
            assert!(
                start.elapsed() < limit,
                "{name} did not appear on the bus within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the helper as root on this bus.
    pub fn helper(&self, root: &Path, idle_timeout: u64) -> Daemon {
        self.helper_with_env(root, idle_timeout, &[])
    }

    /// Starts the helper as root on this bus, with more environment (its language).
    pub fn helper_with_env(&self, root: &Path, idle_timeout: u64, env: &[(&str, &str)]) -> Daemon {
        let log = self.dir.path().join("helper.log");
        Daemon {
            name: "passthrough-helper",
            child: Command::new(helper_binary())
                .arg("--root")
                .arg(root)
                .arg("--idle-timeout")
                .arg(idle_timeout.to_string())
                .envs(env.iter().copied())
                .env("DBUS_SYSTEM_BUS_ADDRESS", &self.address)
                .env("PASSTHROUGH_LOG", "debug,zbus=warn")
                .stdout(Stdio::null())
                .stderr(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(log)
                        .unwrap(),
                )
                .spawn()
                .unwrap(),
        }
    }

    pub fn helper_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("helper.log")).unwrap_or_default()
    }

    /// A method of the helper called as `nobody` through gdbus.
    pub fn call_helper_as_nobody(&self, method: &str, args: &[&str]) -> Output {
        self.call_as_nobody(
            BUS_NAME,
            OBJECT_PATH,
            &format!("{INTERFACE}.{method}"),
            args,
        )
    }

    /// `gdbus call` as `nobody` on this bus.
    pub fn call_as_nobody(&self, dest: &str, path: &str, method: &str, args: &[&str]) -> Output {
        Command::new("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            .args(["gdbus", "call", "--system", "--dest", dest])
            .args(["--object-path", path, "--method", method])
            .args(args)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.address)
            .output()
            .expect("setpriv (util-linux) and gdbus (libglib2.0-bin)")
    }
}

pub fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A system-type bus like Debian's system.conf, listening in the temp dir, with our policy
/// and polkit's included from a temp directory.
pub fn system_conf(socket: &Path, policy_dir: &Path) -> String {
    format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <auth>EXTERNAL</auth>
  <listen>unix:path={socket}</listen>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <includedir>{policy}</includedir>
</busconfig>
"#,
        socket = socket.display(),
        policy = policy_dir.display()
    )
}

/// Starts `dbus-daemon --config-file=CONFIG --nofork` and returns it with the first line it
/// prints: its address, or nothing when it refused the configuration.
pub fn start_dbus_daemon(config: &Path, stderr: Stdio) -> (Child, String) {
    let mut child = Command::new("dbus-daemon")
        .arg(format!("--config-file={}", config.display()))
        .arg("--nofork")
        .arg("--print-address=1")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("dbus-daemon (package dbus)");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line)
}

/// dbus-daemon's own parser on a policy directory: a system-type bus whose configuration
/// includes `policy_dir` starts (it exits at once with the reason on a file it cannot use),
/// and is stopped again. The DTD dbus ships (1.14) is stale — it lacks `send_destination`,
/// `send_interface` and the other attributes dbus-daemon(1) documents — so it cannot be the
/// validator.
pub fn bus_accepts_policy(policy_dir: &Path) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("system.conf");
    // Each file by <include>: errors in an <includedir> file are only logged.
    let mut includes = String::new();
    let mut names: Vec<PathBuf> = std::fs::read_dir(policy_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    names.sort();
    for file in names {
        includes.push_str(&format!("  <include>{}</include>\n", file.display()));
    }
    let conf = system_conf(&dir.path().join("socket"), policy_dir).replace(
        &format!("  <includedir>{}</includedir>\n", policy_dir.display()),
        &includes,
    );
    assert!(
        conf.contains("<include>"),
        "no .conf file in {}",
        policy_dir.display()
    );
    std::fs::write(&config, conf).unwrap();
    let (mut child, line) = start_dbus_daemon(&config, Stdio::piped());
    if line.trim().starts_with("unix:") {
        let _ = child.kill();
        let _ = child.wait();
        Ok(())
    } else {
        let out = child.wait_with_output().unwrap();
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A copy of a fixture root in a temp dir (symlinks kept as symlinks).
pub fn root_copy(fixture: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let ok = Command::new("cp")
        .arg("-a")
        .arg(top().join("tests/fixtures/roots").join(fixture))
        .arg(dir.path().join("root"))
        .status()
        .unwrap()
        .success();
    assert!(ok, "cannot copy {fixture}");
    // The fixture's regeneration commands are empty placeholders: make them recorders that
    // log their arguments inside the root and print a line (for Progress).
    let sbin = dir.path().join("root/usr/sbin");
    for name in ["update-grub", "update-initramfs"] {
        let path = sbin.join(name);
        std::fs::write(&path, RECORDER).unwrap();
        chmod(&path, 0o755);
    }
    dir
}

/// The sysfs files the helper's `ResetGpu` writes, empty, as a real /sys has them: the
/// device's `remove` (in its directory under sys/devices, which sys/bus/pci/devices/ADDR links
/// to) and sys/bus/pci/rescan. Fixture roots hold neither. Returns both paths.
pub fn add_pci_reset_files(root: &Path, address: &str) -> (PathBuf, PathBuf) {
    let remove = root
        .join("sys/bus/pci/devices")
        .join(address)
        .join("remove");
    let rescan = root.join("sys/bus/pci/rescan");
    std::fs::write(&remove, "").unwrap();
    std::fs::write(&rescan, "").unwrap();
    (remove, rescan)
}

pub const RECORDER: &str = r#"#!/bin/sh
mkdir -p "$PASSTHROUGH_ROOT/var/log"
echo "$(basename "$0") $*" >> "$PASSTHROUGH_ROOT/var/log/recorded-commands"
echo "recorder: $(basename "$0") ran"
"#;

/// What a transaction may leave behind in a root besides the files it changes: its journal
/// and the recorders' log.
pub fn outside_var(snapshot: BTreeMap<PathBuf, Vec<u8>>) -> BTreeMap<PathBuf, Vec<u8>> {
    snapshot
        .into_iter()
        .filter(|(path, _)| !path.starts_with("var"))
        .collect()
}

/// Every file, directory and symlink under `dir` with its content, mode or target.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        use std::os::unix::fs::PermissionsExt;
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let rel = path.strip_prefix(base).unwrap().to_owned();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode().to_le_bytes().to_vec();
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                out.insert(rel, target.as_os_str().as_encoded_bytes().to_vec());
            } else if meta.is_dir() {
                out.insert(rel, mode);
                walk(base, &path, out);
            } else {
                let mut content = mode;
                content.extend(std::fs::read(&path).unwrap());
                out.insert(rel, content);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}
