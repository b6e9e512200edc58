//! `vm::libvirt` against a real libvirtd with QEMU (TCG), OVMF and swtpm (PLATFORM.md): a
//! Windows 11 VM from the wizard's own domain XML (`vm::xml::domain_xml`, `kvm: false`, no
//! GPU, Secure Boot, TPM, QXL + SPICE) on a qcow2 disk made by `create_volume` in a storage
//! pool of its own; started, shut down, forced off, undefined with its NVRAM and TPM state.
//! Then the network on a host bridge (`define_bridge_network`, `<forward mode="bridge"/>`) on
//! a bridge the test makes: defined, autostarted, started, reused, removed.
//!
//! Needs root (it starts the daemons as root). When a libvirtd already answers on
//! `qemu:///system`, the test uses it and leaves it running. Otherwise it starts `virtlogd`
//! and `libvirtd` itself (`-d -p PIDFILE`: there is no systemd to start them) in a mount and
//! network namespace of their own: libvirt's state directories there are empty copies inside
//! the test's temp dir, so the host's VMs, hooks and configuration are never seen nor changed
//! and the networks it makes exist only in that namespace (with a network hook of the test's
//! own that refuses to start networks named `pt-nostart-…`). The client connects to
//! `qemu:///system` through the daemon's socket in the temp dir. Nothing is installed here:
//! `build-aux/deps test` installs the packages.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{chmod, have, is_root, out_text, skip};
use passthrough_core::vm::libvirt::{DomainState, Libvirt};
use passthrough_core::vm::xml::{domain_xml, volume_name};
use passthrough_core::vm::{Display, NetworkChoice, Storage, VmSpec, WindowsVersion};

const TEST: &str = "a_windows_11_vm_on_a_real_libvirtd";
const LIBVIRTD: &str = "/usr/sbin/libvirtd";
const VIRTLOGD: &str = "/usr/sbin/virtlogd";
const QEMU: &str = "/usr/bin/qemu-system-x86_64";
const SYSTEM: &str = "qemu:///system";

/// The directories libvirtd, virtlogd and swtpm keep state, logs and sockets in; the
/// namespace of our own daemons gets empty copies of them (same owners and modes).
const STATE_DIRS: &[&str] = &[
    "/etc/libvirt",
    "/run/libvirt",
    "/var/lib/libvirt",
    "/var/cache/libvirt",
    "/var/log/libvirt",
    "/var/log/swtpm",
    "/var/lib/swtpm-localca",
];

/// Runs inside `unshare --mount --net --propagation private` as
/// `bash -c SCRIPT bash DIR STATE_DIRS…`.
const START_DAEMONS: &str = r#"set -eu
dir=$1
shift
# The state directories: their skeleton (directories only, owners and modes kept) in the
# temp dir, mounted over the real ones. From /etc/libvirt only the daemons' *.conf files:
# no VM, network or pool definitions of the host, and none of its hooks.
for d in "$@"; do
    [ -d "$d" ] || continue
    copy="$dir/state$d"
    (cd "$d" && find . -type d) | while IFS= read -r sub; do
        mkdir -p "$copy/$sub"
        chown --reference="$d/$sub" "$copy/$sub"
        chmod --reference="$d/$sub" "$copy/$sub"
    done
    mount --bind "$copy" "$d"
done
for conf in "$dir"/etc-conf/*.conf; do
    [ -e "$conf" ] && cp -p "$conf" /etc/libvirt/
done
# One hook of our own (libvirtd looks for hooks when it starts): networks named
# pt-nostart-… fail to start, as a network can on a real host.
mkdir -p /etc/libvirt/hooks
cat >/etc/libvirt/hooks/network <<'HOOK'
#!/bin/sh
cat >/dev/null
case "$1 $2 $3" in
"pt-nostart-"*" start begin") echo "the test's hook refuses to start $1" >&2; exit 1 ;;
esac
exit 0
HOOK
chmod 0755 /etc/libvirt/hooks/network
# /dev/kvm as udev makes it on a desktop (root:kvm 0660), here only: libvirt probes QEMU
# again on every call when its probe (run as root) saw KVM that the qemu user cannot open.
if [ -c /dev/kvm ] && getent group kvm >/dev/null; then
    major_minor=$(stat -c '%t %T' /dev/kvm)
    mknod "$dir/kvm" c $((0x${major_minor% *})) $((0x${major_minor#* }))
    chown root:kvm "$dir/kvm"
    chmod 0660 "$dir/kvm"
    mount --bind "$dir/kvm" /dev/kvm
fi
# The network namespace: loopback, and one address that is not loopback (on a veth pair
# that leads nowhere), because QEMU's SPICE server resolves 127.0.0.1 with AI_ADDRCONFIG.
ip link set lo up
ip link add ptveth0 type veth peer name ptveth1
ip addr add 192.0.2.1/32 dev ptveth0
ip link set ptveth0 up
ip link set ptveth1 up
/usr/sbin/virtlogd -d -p "$dir/virtlogd.pid"
exec /usr/sbin/libvirtd -d -p "$dir/libvirtd.pid"
"#;

/// virtlogd and libvirtd started by this test, stopped by their PIDs when dropped.
struct OwnDaemons {
    dir: PathBuf,
}

impl OwnDaemons {
    fn start(dir: &Path) -> Self {
        // Only the daemons' own configuration files go into the namespace's /etc/libvirt.
        let conf = dir.join("etc-conf");
        std::fs::create_dir(&conf).unwrap();
        for entry in std::fs::read_dir("/etc/libvirt").unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() && path.extension().is_some_and(|e| e == "conf") {
                std::fs::copy(&path, conf.join(path.file_name().unwrap())).unwrap();
            }
        }
        let out = Command::new("unshare")
            .args(["--mount", "--net", "--propagation", "private"])
            .args(["bash", "-c", START_DAEMONS, "bash"])
            .arg(dir)
            .args(STATE_DIRS)
            .stdin(Stdio::null())
            .output()
            .expect("unshare (util-linux)");
        let daemons = Self {
            dir: dir.to_owned(),
        };
        assert!(
            out.status.success(),
            "cannot start libvirtd and virtlogd: {}",
            out_text(&out)
        );
        daemons
    }

    fn uri(&self) -> String {
        format!(
            "{SYSTEM}?socket={}",
            self.state("/run/libvirt/libvirt-sock").display()
        )
    }

    /// Where a host path of the daemons' state is seen from here.
    fn state(&self, host_path: &str) -> PathBuf {
        self.dir
            .join("state")
            .join(host_path.trim_start_matches('/'))
    }

    fn pid(&self, name: &str) -> Option<u32> {
        std::fs::read_to_string(self.dir.join(format!("{name}.pid")))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for OwnDaemons {
    fn drop(&mut self) {
        for name in ["libvirtd", "virtlogd"] {
            if let Some(pid) = self.pid(name) {
                stop(pid, name);
            }
        }
    }
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

/// SIGTERM, up to 10 s to exit, then SIGKILL.
fn stop(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let start = Instant::now();
    while alive(pid) && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    if alive(pid) {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    eprintln!("stopped {name} (pid {pid})");
}

/// `virsh -c URI ARGS…` (in the C locale), which must succeed; its standard output.
fn virsh(uri: &str, args: &[&str]) -> String {
    let out = Command::new("virsh")
        .arg("-c")
        .arg(uri)
        .args(args)
        .env("LC_ALL", "C")
        .output()
        .expect("virsh (libvirt-clients)");
    assert!(out.status.success(), "virsh {args:?}: {}", out_text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ip ARGS…` in the network namespace of libvirtd (ours: `nsenter` into it by its PID; a
/// libvirtd that ran already: the host's).
fn ip(libvirtd: Option<u32>, args: &[&str]) -> std::process::Output {
    let mut command = match libvirtd {
        Some(pid) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--target={pid}")).args(["--net", "ip"]);
            c
        }
        None => Command::new("ip"),
    };
    command.args(args).output().expect("ip (iproute2)")
}

/// A bridge device made by the test in libvirtd's network namespace, deleted when dropped.
struct TestBridge {
    name: String,
    libvirtd: Option<u32>,
}

impl TestBridge {
    fn add(name: &str, libvirtd: Option<u32>) -> Self {
        let out = ip(libvirtd, &["link", "add", name, "type", "bridge"]);
        assert!(
            out.status.success(),
            "ip link add {name} type bridge: {}",
            out_text(&out)
        );
        Self {
            name: name.to_owned(),
            libvirtd,
        }
    }
}

impl Drop for TestBridge {
    fn drop(&mut self) {
        let _ = ip(self.libvirtd, &["link", "del", &self.name]);
    }
}

/// The value of `Key:` in `virsh net-info` output.
fn info_field<'a>(info: &'a str, key: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
}

/// virsh commands run when dropped, last added first, whatever happened before: the test's
/// libvirt objects never outlive it.
struct Undo {
    uri: String,
    steps: Vec<Vec<String>>,
}

impl Undo {
    fn push(&mut self, args: &[&str]) {
        self.steps
            .push(args.iter().map(|s| (*s).to_owned()).collect());
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        while let Some(args) = self.steps.pop() {
            let _ = Command::new("virsh")
                .arg("-c")
                .arg(&self.uri)
                .args(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Files a run leaves in the host's libvirt directories when it used a libvirtd that was
/// already running (ours keep theirs in the temp dir): the VM's logs.
struct HostLogs(Vec<PathBuf>);

impl Drop for HostLogs {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn wait_for_state(lv: &Libvirt, uuid: &str, want: DomainState, limit: Duration) -> DomainState {
    let start = Instant::now();
    loop {
        let state = lv.find(uuid).unwrap().expect("the VM exists").state;
        if state == want || start.elapsed() >= limit {
            return state;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The text of the first `<nvram>` element of a domain XML.
fn nvram_path(xml: &str) -> Option<String> {
    let start = xml.find("<nvram")?;
    let rest = &xml[start..];
    let open_end = rest.find('>')?;
    if rest[..open_end].ends_with('/') {
        return None;
    }
    let text = &rest[open_end + 1..];
    Some(text[..text.find('<')?].trim().to_owned())
}

#[test]
fn a_windows_11_vm_on_a_real_libvirtd() {
    let started = Instant::now();
    if !is_root() {
        skip(
            TEST,
            "needs root: it starts libvirtd and virtlogd, and QEMU as the qemu user",
        );
        return;
    }
    for path in [
        LIBVIRTD,
        VIRTLOGD,
        QEMU,
        "/usr/bin/swtpm",
        "/usr/bin/qemu-img",
    ] {
        assert!(
            Path::new(path).exists(),
            "{path} is missing: build-aux/deps test installs it"
        );
    }
    for program in ["virsh", "unshare", "nsenter", "ip", "swtpm_setup"] {
        assert!(
            have(program),
            "{program} is missing: build-aux/deps test installs it"
        );
    }
    assert!(
        Path::new("/usr/share/qemu/firmware").is_dir(),
        "no firmware descriptors for OVMF: build-aux/deps test installs ovmf"
    );

    let temp = tempfile::tempdir().unwrap();
    // The qemu user reaches the disk and the NVRAM under it.
    chmod(temp.path(), 0o755);
    let tag = std::process::id();
    let vm = format!("pt-real-win11-{tag}");
    let pool = format!("pt-real-pool-{tag}");
    let network = format!("pt-real-net-{tag}");

    // A libvirtd that answers already is used as it is; else ours, in its namespaces.
    let (own, uri) = match Libvirt::open(SYSTEM) {
        Ok(_) => {
            eprintln!("{TEST}: using the libvirtd that is already running");
            (None, SYSTEM.to_owned())
        }
        Err(_) => {
            let daemons = OwnDaemons::start(temp.path());
            let uri = daemons.uri();
            (Some(daemons), uri)
        }
    };
    let host_path = |path: &str| match &own {
        Some(daemons) => daemons.state(path),
        None => PathBuf::from(path),
    };
    let _logs = HostLogs(if own.is_none() {
        vec![
            PathBuf::from(format!("/var/log/libvirt/qemu/{vm}.log")),
            PathBuf::from(format!("/var/log/swtpm/libvirt/qemu/{vm}-swtpm.log")),
        ]
    } else {
        Vec::new()
    });

    let lv = {
        let start = Instant::now();
        loop {
            match Libvirt::open(&uri) {
                Ok(lv) => break lv,
                Err(_) if start.elapsed() < Duration::from_secs(20) => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("{}", e.message()),
            }
        }
    };
    assert!(lv.uri().starts_with(SYSTEM), "{}", lv.uri());
    let mut undo = Undo {
        uri: uri.clone(),
        steps: Vec::new(),
    };

    // A directory pool in the temp dir.
    let pool_dir = temp.path().join("pool");
    std::fs::create_dir(&pool_dir).unwrap();
    chmod(&pool_dir, 0o755);
    virsh(
        &uri,
        &[
            "pool-define-as",
            &pool,
            "dir",
            "--target",
            pool_dir.to_str().unwrap(),
        ],
    );
    undo.push(&["pool-undefine", &pool]);
    virsh(&uri, &["pool-start", &pool]);
    undo.push(&["pool-destroy", &pool]);
    assert!(lv.pools().unwrap().contains(&pool));

    // The system disk, by create_volume: a qcow2 file in the pool's directory.
    let disk = lv.create_volume(&pool, &volume_name(&vm), 1).unwrap();
    undo.push(&["vol-delete", &volume_name(&vm), "--pool", &pool]);
    assert_eq!(
        PathBuf::from(&disk),
        pool_dir.join(volume_name(&vm)),
        "{disk}"
    );
    let header = std::fs::read(&disk).unwrap();
    assert!(header.starts_with(b"QFI\xfb"), "{disk} is not qcow2");
    let error = lv.create_volume(&pool, &volume_name(&vm), 1).unwrap_err();
    assert!(error.libvirt_message().is_some(), "{error:?}");

    // A network: an active one of a libvirtd that ran already, else an isolated one of ours
    // (in our daemons' network namespace).
    let existing = if own.is_none() {
        lv.networks()
            .unwrap()
            .into_iter()
            .find(|n| n.active)
            .map(|n| n.name)
    } else {
        None
    };
    let network = match existing {
        Some(name) => name,
        None => {
            let bridge = format!("ptbr{}", tag % 100_000);
            let xml = temp.path().join("network.xml");
            std::fs::write(
                &xml,
                format!("<network><name>{network}</name><bridge name='{bridge}'/></network>"),
            )
            .unwrap();
            virsh(&uri, &["net-define", xml.to_str().unwrap()]);
            undo.push(&["net-undefine", &network]);
            virsh(&uri, &["net-start", &network]);
            undo.push(&["net-destroy", &network]);
            let info = lv
                .networks()
                .unwrap()
                .into_iter()
                .find(|n| n.name == network)
                .expect("our network is listed");
            assert!(info.active);
            assert_eq!(info.bridge.as_deref(), Some(bridge.as_str()));
            assert_eq!(info.forward, None);
            network
        }
    };

    // The wizard's Windows 11 VM, emulated (TCG): no GPU here, a PCI hostdev cannot start.
    let spec = VmSpec {
        name: vm.clone(),
        windows: WindowsVersion::Windows11,
        memory_mib: 1024,
        vcpus: 1,
        topology: None,
        install_iso: None,
        virtio_iso: None,
        storage: Storage::NewVolume {
            pool: pool.clone(),
            size_gib: 1,
        },
        network: NetworkChoice::Network(network.clone()),
        gpu: None,
        code43: Default::default(),
        display: Display::QxlSpice,
        kvm: false,
    };
    let xml = domain_xml(&spec).unwrap_or_else(|e| panic!("{}", e.message()));
    let defined = lv
        .define(&xml)
        .unwrap_or_else(|e| panic!("{}\n{xml}", e.message()));
    undo.push(&["undefine", &vm, "--nvram", "--tpm"]);
    undo.push(&["destroy", &vm]);
    assert_eq!(defined.name, vm);
    assert_eq!(defined.state, DomainState::ShutOff);
    assert!(defined.persistent);
    let uuid = defined.uuid.clone();
    assert_eq!(lv.find(&vm).unwrap().as_ref(), Some(&defined));
    assert_eq!(lv.find(&uuid).unwrap().as_ref(), Some(&defined));

    let qemu_log = host_path(&format!("/var/log/libvirt/qemu/{vm}.log"));
    lv.start(&uuid).unwrap_or_else(|e| {
        panic!(
            "{}\n--- QEMU log:\n{}\n--- domain XML:\n{xml}",
            e.message(),
            std::fs::read_to_string(&qemu_log).unwrap_or_default()
        )
    });
    let running = lv.find(&uuid).unwrap().unwrap();
    assert_eq!(running.state, DomainState::Running);
    assert!(lv.domains().unwrap().contains(&running));

    // UEFI variables (a copy of OVMF's Secure Boot template) and the TPM's state exist now.
    let persistent_xml = lv.xml(&uuid).unwrap();
    for part in ["secure='yes'", "tpm-crb", "type='qxl'", "type='spice'"] {
        assert!(
            persistent_xml.contains(part),
            "{part} not in\n{persistent_xml}"
        );
    }
    let nvram = nvram_path(&persistent_xml)
        .unwrap_or_else(|| format!("/var/lib/libvirt/qemu/nvram/{vm}_VARS.fd"));
    let nvram = host_path(&nvram);
    let tpm_state = host_path(&format!("/var/lib/libvirt/swtpm/{uuid}"));
    assert!(nvram.is_file(), "no NVRAM at {}", nvram.display());
    assert!(
        tpm_state.is_dir(),
        "no TPM state at {}",
        tpm_state.display()
    );

    // The power button: an OS-less guest (OVMF's shell) may ignore it; then force it off.
    lv.shutdown(&uuid)
        .unwrap_or_else(|e| panic!("{}", e.message()));
    let state = wait_for_state(&lv, &uuid, DomainState::ShutOff, Duration::from_secs(2));
    if state != DomainState::ShutOff {
        lv.force_off(&uuid).unwrap();
    }
    assert_eq!(lv.find(&uuid).unwrap().unwrap().state, DomainState::ShutOff);

    lv.undefine(&uuid).unwrap();
    assert_eq!(lv.find(&uuid).unwrap(), None);
    assert_eq!(lv.find(&vm).unwrap(), None);
    assert!(!nvram.exists(), "{} is left", nvram.display());
    assert!(!tpm_state.exists(), "{} is left", tpm_state.display());
    let error = lv.start(&uuid).unwrap_err();
    assert!(error.is_not_found(), "{error:?}");

    // The network on a host bridge, as the reference post makes for br0, with a name that
    // holds XML's special characters. (libvirt 9.0 starts such a network whether the bridge
    // exists or not; VMs fail to start on a missing one.)
    let bridge = format!("ptlan{}", tag % 100_000);
    let lan = format!("pt-real-lan'\"&-{tag}");
    let libvirtd = own
        .as_ref()
        .map(|d| d.pid("libvirtd").expect("libvirtd's PID file"));
    let config = |name: &str| {
        (
            host_path(&format!("/etc/libvirt/qemu/networks/{name}.xml")),
            host_path(&format!("/etc/libvirt/qemu/networks/autostart/{name}.xml")),
        )
    };
    let (network_file, autostart_link) = config(&lan);
    let test_bridge = TestBridge::add(&bridge, libvirtd);
    undo.push(&["net-undefine", &lan]);
    undo.push(&["net-destroy", &lan]);
    let made = lv
        .define_bridge_network(&lan, &bridge)
        .unwrap_or_else(|e| panic!("{}", e.message()));
    assert_eq!(made.name, lan);
    assert_eq!(made.forward.as_deref(), Some("bridge"));
    assert_eq!(made.bridge.as_deref(), Some(bridge.as_str()));
    assert!(made.active && made.autostart, "{made:?}");
    let info = virsh(&uri, &["net-info", &lan]);
    for (key, want) in [
        ("Name", lan.as_str()),
        ("Active", "yes"),
        ("Persistent", "yes"),
        ("Autostart", "yes"),
        ("Bridge", bridge.as_str()),
    ] {
        assert_eq!(info_field(&info, key), Some(want), "{key} in\n{info}");
    }
    assert!(network_file.is_file(), "no {}", network_file.display());
    assert!(
        autostart_link.symlink_metadata().is_ok(),
        "no {}",
        autostart_link.display()
    );
    // Again: reused as it is. Under the name of the other network: refused, which stays.
    assert_eq!(lv.define_bridge_network(&lan, &bridge).unwrap(), made);
    let other_before = lv
        .networks()
        .unwrap()
        .into_iter()
        .find(|n| n.name == network);
    let error = lv.define_bridge_network(&network, &bridge).unwrap_err();
    assert!(error.is_name_taken(), "{error:?}");
    let other_after = lv
        .networks()
        .unwrap()
        .into_iter()
        .find(|n| n.name == network);
    assert_eq!(other_after, other_before);

    lv.remove_network(&lan)
        .unwrap_or_else(|e| panic!("{}", e.message()));
    assert!(!lv.networks().unwrap().iter().any(|n| n.name == lan));
    assert!(lv.remove_network(&lan).unwrap_err().is_not_found());
    assert!(!network_file.exists(), "{} is left", network_file.display());
    assert!(
        autostart_link.symlink_metadata().is_err(),
        "{} is left",
        autostart_link.display()
    );

    // A network that libvirt defines but cannot start (our daemons' hook refuses it) is
    // undefined again: no definition, no autostart link.
    if own.is_some() {
        let refused = format!("pt-nostart-{tag}");
        undo.push(&["net-undefine", &refused]);
        let error = lv.define_bridge_network(&refused, &bridge).unwrap_err();
        assert!(
            error
                .message()
                .starts_with(&format!("Cannot start the network {refused}: ")),
            "{}",
            error.message()
        );
        assert!(
            error.libvirt_message().is_some_and(|m| m.contains("hook")),
            "{error:?}"
        );
        assert!(!lv.networks().unwrap().iter().any(|n| n.name == refused));
        let (file, link) = config(&refused);
        assert!(!file.exists(), "{} is left", file.display());
        assert!(
            link.symlink_metadata().is_err(),
            "{} is left",
            link.display()
        );
    }

    drop(test_bridge);
    let out = ip(libvirtd, &["link", "show", &bridge]);
    assert!(!out.status.success(), "{bridge} is left");

    // Everything else goes in order: the volume, the network, the pool, the connection,
    // then our daemons, then the temp dir.
    drop(undo);
    drop(lv);
    assert!(!Path::new(&disk).exists(), "{disk} is left");
    drop(own);
    let elapsed = started.elapsed();
    eprintln!("{TEST}: {:.1} s", elapsed.as_secs_f64());
    assert!(
        elapsed < Duration::from_secs(90),
        "the run took {elapsed:?}: is libvirt probing QEMU again on every call?"
    );
}
