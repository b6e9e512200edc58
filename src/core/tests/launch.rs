//! The app-grid launcher and the one-click launch: desktop entries checked by
//! desktop-file-validate, launchers installed and removed in a temporary XDG_DATA_HOME, the
//! launch's order of steps on a fixture host whose passed-through card is the boot GPU, and
//! `passthroughctl launch` against libvirt's test driver with a recording viewer.

mod common;

use std::cell::RefCell;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{fixture, scan, top};
use passthrough_core::pci::PciAddress;
use passthrough_core::vm::launcher::{
    self, desktop_entry, install, installed, launch_with, remove, stale, Domains, FoundVm,
    LaunchEvent, LaunchHooks, Viewer, VmDevices, VmState,
};
use passthrough_core::vm::libvirt::{DomainState, Libvirt};

const UUID: &str = "6f1c2a4e-93b1-4c55-8a0e-2b7d5c9e1f30";
const OTHER: &str = "0b7e1a55-2f4c-4d1e-9a6b-3c8d7e6f5a40";

/// Names that need escaping or that a careless writer would mangle.
const NAMES: &[&str] = &[
    "Windows 11",
    "win \"gaming\" 'vm'",
    "<b>bold</b> & co",
    "  spaces around  ",
    "two\nlines\r\tand a tab",
    "back\\slash; semi;colon",
    "游戏虚拟机 Windows 10",
    "=equals= [brackets] #hash",
];

fn validate(path: &Path) -> String {
    let out = Command::new("desktop-file-validate")
        .arg(path)
        .output()
        .expect("desktop-file-validate is installed (build-aux/deps test)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{}:\n{text}", path.display());
    text
}

/// The value of `key` in the entry, unescaped as GLib's key-file reader does.
fn value(entry: &str, key: &str) -> String {
    let raw = entry
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key} in\n{entry}"));
    let mut out = String::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('s') => out.push(' '),
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            other => panic!("bad escape \\{other:?} in {raw}"),
        }
    }
    out
}

#[test]
fn generated_entries_validate_and_keep_the_name() {
    let dir = tempfile::tempdir().unwrap();
    for name in NAMES {
        let path = install(dir.path(), name, UUID).unwrap();
        let text = validate(&path);
        assert!(
            !text.contains("error") && !text.contains("warning"),
            "{name:?}: {text}"
        );
        let entry = std::fs::read_to_string(&path).unwrap();
        assert_eq!(entry, desktop_entry(name, UUID).unwrap());
        assert_eq!(value(&entry, "Name"), *name, "{entry}");
        assert_eq!(
            value(&entry, "Exec"),
            format!("passthrough --launch-vm {UUID}")
        );
        assert_eq!(value(&entry, "X-Passthrough-VM"), UUID);
        assert!(
            value(&entry, "Comment").contains(name.trim()),
            "the comment names the VM: {entry}"
        );
    }
}

#[test]
fn install_remove_installed_and_stale_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("data");
    assert!(installed(&home).is_empty(), "no applications directory yet");
    let a = install(&home, "A", UUID).unwrap();
    assert_eq!(
        a,
        home.join(format!(
            "applications/io.github.passthrough.Passthrough.vm-{UUID}.desktop"
        ))
    );
    let b = install(&home, "B", &OTHER.to_uppercase()).unwrap();
    assert!(b.ends_with(format!(
        "io.github.passthrough.Passthrough.vm-{OTHER}.desktop"
    )));
    // Others' files in the same directory are not launchers.
    std::fs::write(
        home.join("applications/io.github.passthrough.Passthrough.desktop"),
        "[Desktop Entry]\n",
    )
    .unwrap();
    std::fs::write(home.join("applications/firefox.desktop"), "").unwrap();
    assert_eq!(
        installed(&home),
        vec![(OTHER.to_owned(), b.clone()), (UUID.to_owned(), a.clone())]
    );
    // A second install replaces the first, and leaves no temporary file behind.
    install(&home, "A renamed", UUID).unwrap();
    assert!(std::fs::read_to_string(&a)
        .unwrap()
        .contains("Name=A renamed\n"));
    let names: Vec<String> = std::fs::read_dir(home.join("applications"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 4, "{names:?}");
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");

    assert_eq!(
        stale(&home, &[UUID.to_owned(), OTHER.to_owned()]),
        Vec::<PathBuf>::new()
    );
    assert_eq!(stale(&home, &[UUID.to_uppercase()]), vec![b.clone()]);
    assert_eq!(stale(&home, &[]), vec![b.clone(), a.clone()]);

    assert!(remove(&home, OTHER).unwrap());
    assert!(!remove(&home, OTHER).unwrap(), "already gone");
    assert!(!b.exists());
    assert_eq!(installed(&home), vec![(UUID.to_owned(), a.clone())]);
    assert!(remove(&home, &UUID.to_uppercase()).unwrap());
    assert!(installed(&home).is_empty());
}

#[test]
fn bad_uuids_are_refused_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [
        "test",
        "",
        "../../../etc/x",
        "6f1c2a4e-93b1-4c55-8a0e-2b7d5c9e1f30/../x",
        "6f1c2a4e-93b1-4c55-8a0e-2b7d5c9e1f30; rm -rf ~",
        "6f1c2a4e-93b1-4c55-8a0e-2b7d5c9e1f3",
    ] {
        let e = install(dir.path(), "x", bad).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{bad:?}");
        assert!(e.to_string().contains("UUID"), "{e}");
        assert_eq!(
            remove(dir.path(), bad).unwrap_err().kind(),
            std::io::ErrorKind::InvalidInput
        );
    }
    assert!(!dir.path().join("applications").exists(), "nothing written");
}

/// A libvirt stand-in that records what is asked of it.
struct FakeDomains {
    vm: Option<FoundVm>,
    hostdevs: Vec<PciAddress>,
    display: bool,
    start_error: Option<String>,
    log: RefCell<Vec<String>>,
}

impl FakeDomains {
    fn new(state: VmState, hostdevs: &[&str]) -> Self {
        Self {
            vm: Some(FoundVm {
                name: "win10".into(),
                uuid: UUID.into(),
                state,
            }),
            hostdevs: hostdevs.iter().map(|a| a.parse().unwrap()).collect(),
            display: true,
            start_error: None,
            log: RefCell::new(Vec::new()),
        }
    }
}

impl Domains for FakeDomains {
    fn find_vm(&self, name_or_uuid: &str) -> Result<Option<FoundVm>, String> {
        self.log.borrow_mut().push(format!("find {name_or_uuid}"));
        Ok(self
            .vm
            .clone()
            .filter(|vm| vm.name == name_or_uuid || vm.uuid == name_or_uuid))
    }
    fn devices(&self, uuid: &str) -> Result<VmDevices, String> {
        self.log.borrow_mut().push(format!("devices {uuid}"));
        Ok(VmDevices {
            hostdevs: self.hostdevs.clone(),
            emulated_display: self.display,
        })
    }
    fn start_vm(&self, uuid: &str) -> Result<(), String> {
        self.log.borrow_mut().push(format!("start {uuid}"));
        match &self.start_error {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }
}

/// Runs a launch with recording hooks; returns the result, the events (as one shared log
/// with the libvirt calls, the resets and the viewer's start, in order).
fn run(
    domains: &FakeDomains,
    fixture_name: &str,
    target: &str,
    viewer: &Viewer,
    reset_result: Result<(), String>,
) -> (Result<launcher::Launched, String>, Vec<String>) {
    let report = scan(fixture_name);
    let log = RefCell::new(Vec::new());
    let mut reset = |a: &PciAddress| {
        domains.log.borrow_mut().push(format!("reset {a}"));
        reset_result.clone()
    };
    let mut spawn = |argv: &[String]| {
        domains
            .log
            .borrow_mut()
            .push(format!("spawn {}", argv.join(" ")));
        Ok(4242)
    };
    let mut event = |e: &LaunchEvent, vm: &str| {
        domains.log.borrow_mut().push(format!("event {e:?}"));
        log.borrow_mut().push(format!("{vm}: {}", e.message(vm)));
    };
    let result = launch_with(
        domains,
        "test:///default",
        target,
        &report,
        viewer,
        LaunchHooks {
            reset_gpu: &mut reset,
            spawn: &mut spawn,
            event: &mut event,
        },
    );
    let _ = log;
    let steps = domains.log.borrow().clone();
    (result, steps)
}

fn virt_viewer() -> Viewer {
    Viewer::VirtViewer(PathBuf::from("/usr/bin/virt-viewer"))
}

#[test]
fn the_boot_gpu_is_reset_through_the_helper_before_the_start() {
    // b550-blog: the GTX 1060 at 08:00.0 is the boot VGA (the post's "remove + rescan").
    let report = scan("b550-blog");
    let boot = report.pci.get(&"0000:08:00.0".parse().unwrap()).unwrap();
    assert_eq!(boot.boot_vga, Some(true), "the fixture's boot GPU");
    let domains = FakeDomains::new(VmState::ShutOff, &["0000:08:00.0", "0000:08:00.1"]);
    let (result, steps) = run(&domains, "b550-blog", "win10", &virt_viewer(), Ok(()));
    let launched = result.unwrap();
    assert_eq!(launched.vm.uuid, UUID);
    assert_eq!(launched.viewer_pid, Some(4242));
    assert_eq!(
        steps,
        [
            "event Checking".to_owned(),
            "find win10".into(),
            format!("devices {UUID}"),
            "event ResettingGpu(PciAddress { domain: 0, bus: 8, device: 0, function: 0 })".into(),
            "reset 0000:08:00.0".into(),
            "event Starting".into(),
            format!("start {UUID}"),
            "event Started".into(),
            "event OpeningViewer(\"virt-viewer\")".into(),
            format!(
                "spawn /usr/bin/virt-viewer --connect test:///default --wait --attach --reconnect --uuid -- {UUID}"
            ),
        ]
    );
}

#[test]
fn a_card_that_is_not_the_boot_gpu_is_not_reset() {
    // The same host's RX card at 04:00.0 has boot_vga=0.
    let domains = FakeDomains::new(VmState::ShutOff, &["0000:04:00.0"]);
    let (result, steps) = run(&domains, "b550-blog", UUID, &virt_viewer(), Ok(()));
    assert!(result.is_ok());
    assert!(!steps.iter().any(|s| s.contains("reset")), "{steps:?}");
    assert!(steps.contains(&format!("start {UUID}")));
}

#[test]
fn a_failed_reset_stops_before_the_start() {
    let domains = FakeDomains::new(VmState::ShutOff, &["0000:08:00.0"]);
    let (result, steps) = run(
        &domains,
        "b550-blog",
        "win10",
        &virt_viewer(),
        Err("You are not allowed to manage devices.".into()),
    );
    let why = result.unwrap_err();
    assert!(
        why.contains("0000:08:00.0") && why.contains("not allowed"),
        "{why}"
    );
    assert!(!steps.iter().any(|s| s.starts_with("start")), "{steps:?}");
    assert_eq!(steps.last().unwrap(), &format!("event Failed({why:?})"));
}

#[test]
fn a_running_vm_only_gets_its_viewer() {
    let domains = FakeDomains::new(VmState::Running, &["0000:08:00.0"]);
    let (result, steps) = run(&domains, "b550-blog", "win10", &virt_viewer(), Ok(()));
    assert!(result.is_ok());
    assert_eq!(
        steps[..5],
        [
            "event Checking".to_owned(),
            "find win10".into(),
            format!("devices {UUID}"),
            "event AlreadyRunning".into(),
            "event OpeningViewer(\"virt-viewer\")".into(),
        ]
    );
    assert!(!steps
        .iter()
        .any(|s| s.starts_with("reset") || s.starts_with("start")));
}

#[test]
fn no_viewer_gives_the_remote_play_hint() {
    let domains = FakeDomains::new(VmState::ShutOff, &[]);
    let (result, steps) = run(&domains, "b550-blog", "win10", &Viewer::None, Ok(()));
    assert_eq!(result.unwrap().viewer_pid, None);
    let last = steps.last().unwrap();
    assert!(last.starts_with("event NoViewer("), "{last}");
    for word in ["Parsec", "HDMI", "RDP", "Steam Link", "unlocked"] {
        assert!(last.contains(word), "{word} in {last}");
    }
}

#[test]
fn virt_viewer_is_not_opened_on_a_vm_without_an_emulated_display() {
    let mut domains = FakeDomains::new(VmState::ShutOff, &["0000:04:00.0"]);
    domains.display = false;
    let (result, steps) = run(&domains, "b550-blog", "win10", &virt_viewer(), Ok(()));
    assert_eq!(result.unwrap().viewer_pid, None);
    assert!(!steps.iter().any(|s| s.starts_with("spawn")), "{steps:?}");
    let last = steps.last().unwrap();
    assert!(
        last.starts_with("event NoViewer(") && last.contains("no emulated display"),
        "{last}"
    );
    // Looking Glass needs none.
    let lg = Viewer::LookingGlass(PathBuf::from("/usr/bin/looking-glass-client"));
    let (result, steps) = run(&domains, "b550-blog", "win10", &lg, Ok(()));
    assert!(result.unwrap().viewer_pid.is_some());
    assert_eq!(steps.last().unwrap(), "spawn /usr/bin/looking-glass-client");
}

#[test]
fn unknown_paused_and_failing_vms_are_sentences() {
    let domains = FakeDomains::new(VmState::ShutOff, &[]);
    let (result, steps) = run(&domains, "b550-blog", "nosuchvm", &virt_viewer(), Ok(()));
    let why = result.unwrap_err();
    assert!(
        why.contains("nosuchvm") && why.contains("test:///default"),
        "{why}"
    );
    assert_eq!(steps.len(), 3, "{steps:?}");

    let domains = FakeDomains::new(VmState::Paused, &[]);
    let why = run(&domains, "b550-blog", "win10", &virt_viewer(), Ok(()))
        .0
        .unwrap_err();
    assert!(
        why.contains("paused") && why.contains("virsh resume win10"),
        "{why}"
    );

    let mut domains = FakeDomains::new(VmState::ShutOff, &[]);
    domains.start_error =
        Some("Cannot start the virtual machine win10: internal error: no passthrough".into());
    let why = run(&domains, "b550-blog", "win10", &virt_viewer(), Ok(()))
        .0
        .unwrap_err();
    assert_eq!(
        why,
        "Cannot start the virtual machine win10: internal error: no passthrough"
    );
}

#[test]
fn the_launcher_icon_is_valid_svg_and_renders() {
    let svg = top().join(format!(
        "data/icons/hicolor/scalable/apps/{}.svg",
        launcher::ICON
    ));
    let ok = |cmd: &mut Command| {
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{cmd:?}: {out:?}");
    };
    ok(Command::new("xmllint").arg("--noout").arg(&svg));
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("icon.png");
    ok(Command::new("rsvg-convert")
        .args(["-w", "48", "-h", "48", "-o"])
        .arg(&png)
        .arg(&svg));
    assert_eq!(&std::fs::read(&png).unwrap()[1..4], b"PNG");
}

#[test]
fn the_real_virt_viewer_knows_every_option_we_pass() {
    let help = Command::new("virt-viewer")
        .arg("--help")
        .env("LC_ALL", "C")
        .output()
        .expect("virt-viewer is installed (build-aux/deps test)");
    let help = String::from_utf8_lossy(&help.stdout);
    let argv = launcher::viewer_command(
        &Viewer::VirtViewer(PathBuf::from("virt-viewer")),
        "qemu:///system",
        UUID,
    )
    .unwrap();
    for option in argv.iter().filter(|a| a.starts_with("--") && *a != "--") {
        assert!(
            help.lines().any(|l| {
                l.split_whitespace().any(|w| {
                    w.trim_end_matches(',') == option || w.starts_with(&format!("{option}="))
                })
            }),
            "virt-viewer --help has no {option}:\n{help}"
        );
    }
    assert!(help.contains("-- ID|UUID|DOMAIN-NAME"), "{help}");
}

// ---------------------------------------------------------------------------------------
// The real libvirt test driver, with a recording viewer.

/// A directory holding a `virt-viewer` that writes its arguments, one per line, to
/// `record` and exits.
fn recorder(dir: &Path, record: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = bin.join("virt-viewer");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$0\" \"$@\" > '{0}.tmp' && mv '{0}.tmp' '{0}'\n",
            record.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

/// The recorder's lines, once it has run (it is not waited for).
fn recorded(record: &Path) -> Vec<String> {
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

const DEFINED_UUID: &str = "5d2c9a7e-1b3f-4e6a-9c8d-7f6e5d4c3b2a";

/// A shut-off VM for the test driver that passes through b550-blog's boot GPU.
fn boot_gpu_domain(name: &str) -> String {
    format!(
        "<domain type='test'><name>{name}</name><uuid>{DEFINED_UUID}</uuid>\
         <memory>1048576</memory><vcpu>2</vcpu><os><type arch='x86_64'>hvm</type></os>\
         <devices><hostdev mode='subsystem' type='pci' managed='yes'><source>\
         <address domain='0x0000' bus='0x08' slot='0x00' function='0x0'/></source></hostdev>\
         <hostdev mode='subsystem' type='pci' managed='yes'><source>\
         <address domain='0x0000' bus='0x08' slot='0x00' function='0x1'/></source></hostdev>\
         <graphics type='spice' autoport='yes'/><video><model type='qxl'/></video>\
         </devices></domain>"
    )
}

#[test]
fn a_defined_vm_is_started_after_the_boot_gpu_reset_and_shown_in_the_viewer() {
    // test:///default forgets everything when its connection closes: define and launch on
    // one connection.
    let conn = Libvirt::open("test:///default").unwrap();
    let vm = conn.define(&boot_gpu_domain("win10-launch")).unwrap();
    assert_eq!(vm.state, DomainState::ShutOff);
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("argv");
    let bin = recorder(dir.path(), &record);
    let viewer = launcher::find_viewer(bin.as_os_str());
    assert_eq!(viewer, Viewer::VirtViewer(bin.join("virt-viewer")));

    let report = scan("b550-blog");
    let steps = RefCell::new(Vec::new());
    let mut reset = |a: &PciAddress| {
        // The VM is still off when the card is reset.
        let state = conn.find(DEFINED_UUID).unwrap().unwrap().state;
        steps
            .borrow_mut()
            .push(format!("reset {a} while {state:?}"));
        Ok(())
    };
    let mut spawn = |argv: &[String]| launcher::spawn_detached(argv, &[]);
    let mut event = |e: &LaunchEvent, vm: &str| {
        steps
            .borrow_mut()
            .push(format!("{}: {}", e.kind(), e.message(vm)));
    };
    let launched = launch_with(
        &conn,
        "test:///default",
        "win10-launch",
        &report,
        &viewer,
        LaunchHooks {
            reset_gpu: &mut reset,
            spawn: &mut spawn,
            event: &mut event,
        },
    )
    .unwrap();
    assert!(launched.viewer_pid.is_some());
    assert_eq!(
        steps.into_inner(),
        [
            "checking: Looking for the virtual machine win10-launch…",
            "resetting-gpu: Resetting the graphics card 0000:08:00.0 before the start: it is the card the computer started on, so it is removed and found again…",
            "reset 0000:08:00.0 while ShutOff",
            "starting: Starting win10-launch…",
            "started: win10-launch is running.",
            "opening-viewer: Opening the screen of win10-launch in virt-viewer.",
        ]
    );
    assert_eq!(
        conn.find("win10-launch").unwrap().unwrap().state,
        DomainState::Running
    );
    assert_eq!(
        recorded(&record),
        [
            bin.join("virt-viewer").display().to_string(),
            "--connect".into(),
            "test:///default".into(),
            "--wait".into(),
            "--attach".into(),
            "--reconnect".into(),
            "--uuid".into(),
            "--".into(),
            DEFINED_UUID.into(),
        ]
    );
}

#[test]
fn a_connection_that_cannot_be_opened_is_a_failed_launch() {
    let mut events = Vec::new();
    let result = launcher::launch(
        "test:///no/such/node.xml",
        "win10",
        &scan("b550-blog"),
        &Viewer::None,
        LaunchHooks {
            reset_gpu: &mut |_| Ok(()),
            spawn: &mut |_| Ok(1),
            event: &mut |e, _| events.push(e.clone()),
        },
    );
    let why = result.unwrap_err();
    assert!(why.contains("test:///no/such/node.xml"), "{why}");
    assert_eq!(events, [LaunchEvent::Checking, LaunchEvent::Failed(why)]);
}

#[test]
fn launchers_of_deleted_vms_are_cleaned() {
    let dir = tempfile::tempdir().unwrap();
    let conn = Libvirt::open(&format!("test://{}", node().display())).unwrap();
    // The node file's two VMs, and one that is not there.
    let gone = OTHER.replace('0', "1");
    let kept = [
        install(dir.path(), "Windows 11", UUID).unwrap(),
        install(dir.path(), "win10", OTHER).unwrap(),
    ];
    let removed = install(dir.path(), "gone", &gone).unwrap();
    assert_eq!(launcher::clean_stale(&conn, dir.path()).unwrap(), [removed]);
    assert_eq!(
        installed(dir.path())
            .into_iter()
            .map(|(_, p)| p)
            .collect::<Vec<_>>(),
        [kept[1].clone(), kept[0].clone()]
    );
    assert!(launcher::clean_stale(&conn, dir.path()).unwrap().is_empty());
}

/// The test driver's host of the launch tests (one running VM, one off with the boot GPU).
fn node() -> PathBuf {
    top().join("tests/fixtures/libvirt/launch.xml")
}

// ---------------------------------------------------------------------------------------
// passthroughctl launch.

const NODE_RUNNING: &str = "6f1c2a4e-93b1-4c55-8a0e-2b7d5c9e1f30";

/// passthroughctl with a recording viewer first in PATH, in English, without a libvirt URI
/// or a system bus from the environment.
fn ctl_launch(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let bin = recorder(dir, &dir.join("argv"));
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let out = Command::new(env!("CARGO_BIN_EXE_passthroughctl"))
        .args(args)
        .current_dir(top())
        .env("PATH", path)
        .env("LC_ALL", "C.UTF-8")
        .env_remove("LANGUAGE")
        .env_remove(launcher::URI_ENV)
        // No helper here: a reset cannot be asked for.
        .env(
            "DBUS_SYSTEM_BUS_ADDRESS",
            "unix:path=/nonexistent/system_bus",
        )
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn ctl_launch_on_the_default_test_driver() {
    // test:///default's running domain `test` has no emulated display: no viewer, the hint.
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = ctl_launch(
        dir.path(),
        &["launch", "test", "--uri", "test:///default"],
        &[],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[..2],
        [
            "Looking for the virtual machine test…",
            "test is already running."
        ]
    );
    assert!(
        lines[2].starts_with("The virtual machine has no emulated display"),
        "{out}"
    );
    assert!(lines[2].contains("Parsec") && lines[2].contains("Steam Link"));
    assert_eq!(lines.len(), 3, "{out}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(!dir.path().join("argv").exists(), "no viewer was started");

    // An unknown VM: exit 1 with one clear line on stderr.
    let (code, out, err) = ctl_launch(
        dir.path(),
        &["launch", "no-such-vm", "--uri=test:///default"],
        &[],
    );
    assert_eq!(code, Some(1), "{out}{err}");
    assert_eq!(out, "Looking for the virtual machine no-such-vm…\n");
    assert_eq!(
        err,
        "passthroughctl: There is no virtual machine named or with the UUID “no-such-vm” on test:///default.\n"
    );
}

#[test]
fn ctl_launch_opens_the_viewer_of_a_running_vm() {
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("test://{}", node().display());
    // The URI from the environment, as the tests of the app give it.
    let (code, out, err) = ctl_launch(
        dir.path(),
        &["launch", "Windows 11 游戏"],
        &[(launcher::URI_ENV, &uri)],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(
        out,
        "Looking for the virtual machine Windows 11 游戏…\nWindows 11 游戏 is already running.\nOpening the screen of Windows 11 游戏 in virt-viewer.\n"
    );
    let argv = recorded(&dir.path().join("argv"));
    assert_eq!(
        argv[1..],
        [
            "--connect",
            &uri,
            "--wait",
            "--attach",
            "--reconnect",
            "--uuid",
            "--",
            NODE_RUNNING
        ]
    );
}

#[test]
fn ctl_launch_stops_when_the_boot_gpu_cannot_be_reset() {
    // win10 of the node file passes through 08:00.0, b550-blog's boot GPU; with no helper
    // to reset it, the VM is not started.
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("test://{}", node().display());
    let root = fixture("b550-blog");
    let (code, out, err) = ctl_launch(
        dir.path(),
        &[
            "--root",
            root.to_str().unwrap(),
            "launch",
            "win10",
            "--uri",
            &uri,
            "--json",
        ],
        &[],
    );
    assert_eq!(code, Some(1), "{out}{err}");
    let events: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["checking", "resetting-gpu", "failed"], "{out}");
    assert_eq!(events[1]["address"], "0000:08:00.0");
    assert_eq!(events[2]["vm"], "win10");
    let why = events[2]["message"].as_str().unwrap();
    assert!(
        why.starts_with(
            "win10 was not started: the graphics card 0000:08:00.0 could not be reset."
        ) && why.contains("system bus"),
        "{why}"
    );
    assert!(!dir.path().join("argv").exists());
}

#[test]
fn ctl_launch_usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for (args, says) in [
        (&["launch"][..], "launch needs the name or UUID"),
        (&["launch", "a", "b"][..], "unexpected argument b"),
        (
            &["gpus", "--uri", "test:///default"][..],
            "--uri is an option of launch",
        ),
        (&["launch", "x", "--uri"][..], "--uri needs a value"),
    ] {
        let (code, out, err) = ctl_launch(dir.path(), args, &[]);
        assert_eq!(code, Some(2), "{args:?}: {out}{err}");
        assert!(
            err.starts_with("passthroughctl: ") && err.contains(says),
            "{args:?}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}
