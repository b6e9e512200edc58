//! The app-grid launcher of a VM and its one-click launch.
//!
//! A launcher is a desktop entry in the user's `$XDG_DATA_HOME/applications`, named after the
//! VM's UUID (`io.github.passthrough.Passthrough.vm-<uuid>.desktop`), whose `Exec` runs
//! `passthrough --launch-vm <uuid>`. The launch ([`launch_with`]) finds the VM, resets the
//! boot graphics card through the helper when the VM holds it (the reference post's
//! "remove + rescan before start"), starts the VM and opens a viewer, reporting each step
//! as a [`LaunchEvent`]. It needs no GTK: `passthroughctl launch` and the app share it.

use std::ffi::OsStr;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::features;
use super::libvirt::{DomainState, Libvirt};
use crate::dbus::{user_message, Helper1Proxy};
use crate::i18n::gettext_f;
use crate::pci::PciAddress;
use crate::report::HostReport;
use crate::root::HostRoot;

/// The application ID; launchers are named after it.
pub const APP_ID: &str = "io.github.passthrough.Passthrough";
/// The file-name prefix of every launcher; the UUID and `.desktop` follow.
pub const FILE_PREFIX: &str = "io.github.passthrough.Passthrough.vm-";
/// The icon of a launcher (installed in hicolor with the app).
pub const ICON: &str = "io.github.passthrough.Passthrough.vm-windows";
/// The desktop-entry key that names the launcher's VM.
pub const VM_KEY: &str = "X-Passthrough-VM";
/// The libvirt connection a launcher uses.
pub const DEFAULT_URI: &str = "qemu:///system";
/// Overrides [`DEFAULT_URI`] (tests point it at `test:///default`).
pub const URI_ENV: &str = "PASSTHROUGH_LIBVIRT_URI";

/// The libvirt URI to use: `$PASSTHROUGH_LIBVIRT_URI`, else `qemu:///system`.
pub fn default_uri() -> String {
    std::env::var(URI_ENV)
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| DEFAULT_URI.to_owned())
}

/// The user's data directory: `$XDG_DATA_HOME` when it is absolute, else `~/.local/share`.
pub fn data_home() -> Option<PathBuf> {
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .map(|home| home.join(".local/share"))
        })
}

/// Whether `uuid` is a UUID as libvirt writes it: 8-4-4-4-12 hexadecimal digits. Upper
/// case is accepted (RFC 4122 reads either), nothing else: no braces, no spaces, no other
/// length.
pub fn is_uuid(uuid: &str) -> bool {
    let bytes = uuid.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// The UUID in lower case, or an `InvalidInput` error that says what is wrong.
fn checked_uuid(uuid: &str) -> io::Result<String> {
    if is_uuid(uuid) {
        Ok(uuid.to_ascii_lowercase())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            gettext_f(
                "“{uuid}” is not a virtual machine UUID (such as 6f1c2a4e-93b1-4c55-8a0e-2b7d5c9e1f30).",
                &[("uuid", uuid)],
            ),
        ))
    }
}

/// `io.github.passthrough.Passthrough.vm-<uuid>.desktop`; anything but a UUID is refused.
pub fn desktop_file_name(uuid: &str) -> io::Result<String> {
    Ok(format!("{FILE_PREFIX}{}.desktop", checked_uuid(uuid)?))
}

/// The UUID a launcher's file name holds, if it is one of ours.
fn uuid_of_file_name(file_name: &str) -> Option<String> {
    let uuid = file_name
        .strip_prefix(FILE_PREFIX)?
        .strip_suffix(".desktop")?;
    // Only the canonical (lower-case) names we write.
    (is_uuid(uuid) && uuid == uuid.to_ascii_lowercase()).then(|| uuid.to_owned())
}

/// A value of type string or localestring, escaped as the Desktop Entry spec says: `\\`,
/// `\n`, `\t`, `\r`, and `\s` for a space at either end (readers trim those). Other control
/// characters have no escape and are left out. Every other character stays as it is: UTF-8
/// is the file's encoding, and quotes, `<`, `&` and `;` mean nothing in a plain value.
pub fn escape_value(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    let first = chars.iter().position(|c| *c != ' ').unwrap_or(chars.len());
    let last = chars.iter().rposition(|c| *c != ' ').map_or(0, |i| i + 1);
    let mut out = String::with_capacity(value.len());
    for (i, c) in chars.into_iter().enumerate() {
        match c {
            ' ' if i < first || i >= last => out.push_str("\\s"),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// The launcher's desktop entry for the VM `name` with `uuid`.
pub fn desktop_entry(name: &str, uuid: &str) -> io::Result<String> {
    let uuid = checked_uuid(uuid)?;
    let shown = if name.trim().is_empty() {
        uuid.as_str()
    } else {
        name
    };
    let comment = gettext_f(
        "Start the virtual machine {name} with its graphics card",
        &[("name", shown)],
    );
    // The UUID is hexadecimal digits and dashes: nothing in it needs Exec quoting.
    Ok(format!(
        "[Desktop Entry]\n\
         Type=Application\n\
         Name={name}\n\
         Comment={comment}\n\
         Icon={ICON}\n\
         TryExec=passthrough\n\
         Exec=passthrough --launch-vm {uuid}\n\
         Categories=Game;\n\
         StartupNotify=true\n\
         {VM_KEY}={uuid}\n",
        name = escape_value(shown),
        comment = escape_value(&comment),
    ))
}

/// Writes the launcher of the VM into `data_home/applications` (made if missing), all at
/// once: a temporary file, flushed to disk, renamed over the old launcher. Returns its path.
pub fn install(data_home: &Path, name: &str, uuid: &str) -> io::Result<PathBuf> {
    let file_name = desktop_file_name(uuid)?;
    let text = desktop_entry(name, uuid)?;
    let dir = data_home.join("applications");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(&file_name);
    let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        // The rename reaches the disk with the directory.
        std::fs::File::open(&dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map(|()| path)
}

/// Removes the VM's launcher; `Ok(false)` when it had none.
pub fn remove(data_home: &Path, uuid: &str) -> io::Result<bool> {
    let path = data_home
        .join("applications")
        .join(desktop_file_name(uuid)?);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// The launchers in `data_home/applications`: (UUID, path), sorted by UUID. A directory
/// that cannot be read has none.
pub fn installed(data_home: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(data_home.join("applications")) else {
        return Vec::new();
    };
    let mut found: Vec<(String, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| {
            let uuid = uuid_of_file_name(e.file_name().to_str()?)?;
            Some((uuid, e.path()))
        })
        .collect();
    found.sort();
    found
}

/// The launchers whose VM is not among `existing_uuids` (deleted outside the app): to be
/// removed.
pub fn stale(data_home: &Path, existing_uuids: &[String]) -> Vec<PathBuf> {
    installed(data_home)
        .into_iter()
        .filter(|(uuid, _)| !existing_uuids.iter().any(|e| e.eq_ignore_ascii_case(uuid)))
        .map(|(_, path)| path)
        .collect()
}

/// A program that shows the VM's screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Viewer {
    /// `looking-glass-client`: the passed-through card's frames through shared memory.
    LookingGlass(PathBuf),
    /// `virt-viewer`: the VM's SPICE or VNC display through libvirt.
    VirtViewer(PathBuf),
    /// Neither is installed.
    None,
}

impl Viewer {
    /// The program's file name (`virt-viewer`), for messages.
    pub fn program(&self) -> Option<String> {
        match self {
            Self::LookingGlass(p) | Self::VirtViewer(p) => p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .or_else(|| Some(p.display().to_string())),
            Self::None => None,
        }
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn find_program(path_var: &OsStr, name: &str) -> Option<PathBuf> {
    std::env::split_paths(path_var)
        // An empty entry means the working directory: never look there.
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

/// The viewer to open, looked up in `path_var` (a `$PATH`): `looking-glass-client` first,
/// then `virt-viewer`. `remote-viewer`, from the same package as `virt-viewer`, is not used:
/// it takes a `spice://` or `vnc://` address instead of a libvirt connection and a VM.
pub fn find_viewer(path_var: &OsStr) -> Viewer {
    if let Some(p) = find_program(path_var, "looking-glass-client") {
        Viewer::LookingGlass(p)
    } else if let Some(p) = find_program(path_var, "virt-viewer") {
        Viewer::VirtViewer(p)
    } else {
        Viewer::None
    }
}

/// The command line that opens the VM `uuid` of the libvirt connection `uri` in `viewer`.
///
/// virt-viewer waits for the VM to be running (`--wait`), asks libvirt for the display's
/// socket instead of connecting to it itself (`--attach`, which falls back to a direct
/// connection), reconnects when Windows restarts (`--reconnect`), and takes the argument as
/// a UUID only (`--uuid`). Looking Glass needs no argument: it reads the shared memory the
/// VM's IVSHMEM device writes.
pub fn viewer_command(viewer: &Viewer, uri: &str, uuid: &str) -> Option<Vec<String>> {
    match viewer {
        Viewer::LookingGlass(p) => Some(vec![p.to_str()?.to_owned()]),
        Viewer::VirtViewer(p) => {
            if !is_uuid(uuid) {
                return None;
            }
            Some(
                [
                    p.to_str()?,
                    "--connect",
                    uri,
                    "--wait",
                    "--attach",
                    "--reconnect",
                    "--uuid",
                    "--",
                    uuid,
                ]
                .map(str::to_owned)
                .to_vec(),
            )
        }
        Viewer::None => None,
    }
}

/// What to use when no viewer is installed: the reference post's remote-play programs and
/// what each needs.
pub fn no_viewer_hint() -> String {
    gettext_f(
        "No viewer is installed (Looking Glass or virt-viewer), so the virtual machine's screen is not shown here. Use the monitor connected to its graphics card, or connect from a remote-play program: Parsec needs a display on the passed-through card (its virtual display, or an HDMI dummy plug); Remote Desktop (RDP) brings its own display adapter, so games see that one instead of the card, and Parsec works badly while an RDP session is open; Steam Link stops at Windows' secure-desktop prompt unless the Windows session stays unlocked.",
        &[],
    )
}

/// What to use when the VM has no emulated display (its graphics card is its only screen), so
/// virt-viewer has nothing to show.
pub fn no_display_hint() -> String {
    gettext_f(
        "The virtual machine has no emulated display, so virt-viewer has nothing to show: its screen is the monitor connected to its graphics card. To see it on this computer, use Looking Glass, or a remote-play program: Parsec needs a display on the passed-through card (its virtual display, or an HDMI dummy plug); Remote Desktop (RDP) brings its own display adapter, so games see that one instead of the card; Steam Link stops at Windows' secure-desktop prompt unless the Windows session stays unlocked.",
        &[],
    )
}

/// Starts `argv` as a program of its own (its own process group, so a Ctrl-C in the
/// terminal or the end of this process does not end it) and does not wait for it. Extra
/// variables in `env` are passed on (the desktop's startup-notification ID). Returns its
/// process ID.
pub fn spawn_detached(argv: &[String], env: &[(String, String)]) -> io::Result<u32> {
    use std::os::unix::process::CommandExt;
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
    let child = Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .process_group(0)
        .spawn()?;
    Ok(child.id())
}

/// The state of a VM, as far as a launch cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmState {
    Running,
    Paused,
    ShutOff,
    /// Crashed, shutting down, suspended, …: a start is attempted and libvirt says why not.
    Other,
}

/// A VM found by name or UUID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundVm {
    pub name: String,
    pub uuid: String,
    pub state: VmState,
}

/// The devices of a VM that a launch cares about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VmDevices {
    /// The PCI devices it passes through (its `<hostdev>`s).
    pub hostdevs: Vec<PciAddress>,
    /// Whether it has an emulated display (SPICE or VNC) that virt-viewer can show.
    pub emulated_display: bool,
}

/// What a launch needs from libvirt. Errors are whole sentences for people (saying what
/// failed), already translated.
pub trait Domains {
    /// The VM whose name or UUID is `name_or_uuid`, or `None` when there is none.
    fn find_vm(&self, name_or_uuid: &str) -> Result<Option<FoundVm>, String>;
    /// What the VM's definition holds that a launch cares about.
    fn devices(&self, uuid: &str) -> Result<VmDevices, String>;
    /// Starts the VM.
    fn start_vm(&self, uuid: &str) -> Result<(), String>;
}

/// One step of a launch, in the order they happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaunchEvent {
    /// Looking the VM up.
    Checking,
    /// The VM holds the host's boot graphics card: it is removed and the PCI bus rescanned
    /// (through the helper) before the start.
    ResettingGpu(PciAddress),
    Starting,
    Started,
    /// It was running already: only the viewer opens.
    AlreadyRunning,
    /// The viewer (its program name) was started.
    OpeningViewer(String),
    /// No viewer is installed; the hint says what else to use.
    NoViewer(String),
    /// The launch stopped; the sentence says why.
    Failed(String),
}

impl LaunchEvent {
    /// The event as a sentence for people, translated; `vm` is the VM's name (or what the
    /// user asked for, before it is found).
    pub fn message(&self, vm: &str) -> String {
        match self {
            Self::Checking => {
                gettext_f("Looking for the virtual machine {vm}…", &[("vm", vm)])
            }
            Self::ResettingGpu(address) => gettext_f(
                "Resetting the graphics card {address} before the start: it is the card the computer started on, so it is removed and found again…",
                &[("address", &address.to_string())],
            ),
            Self::Starting => gettext_f("Starting {vm}…", &[("vm", vm)]),
            Self::Started => gettext_f("{vm} is running.", &[("vm", vm)]),
            Self::AlreadyRunning => gettext_f("{vm} is already running.", &[("vm", vm)]),
            Self::OpeningViewer(program) => gettext_f(
                "Opening the screen of {vm} in {viewer}.",
                &[("vm", vm), ("viewer", program)],
            ),
            Self::NoViewer(hint) => hint.clone(),
            Self::Failed(why) => why.clone(),
        }
    }

    /// A stable name of the kind of event, for JSON output.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Checking => "checking",
            Self::ResettingGpu(_) => "resetting-gpu",
            Self::Starting => "starting",
            Self::Started => "started",
            Self::AlreadyRunning => "already-running",
            Self::OpeningViewer(_) => "opening-viewer",
            Self::NoViewer(_) => "no-viewer",
            Self::Failed(_) => "failed",
        }
    }

    /// Whether the launch stopped here without the VM running and shown.
    pub fn is_failure(&self) -> bool {
        matches!(self, Self::Failed(_))
    }
}

/// What a launch did, when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launched {
    pub vm: FoundVm,
    /// The viewer's process ID, when one was opened.
    pub viewer_pid: Option<u32>,
}

/// The host's boot graphics cards among `hostdevs`, according to `report`.
pub fn boot_vga_hostdevs(report: &HostReport, hostdevs: &[PciAddress]) -> Vec<PciAddress> {
    hostdevs
        .iter()
        .filter(|a| {
            report.pci.get(a).is_some_and(|d| d.boot_vga == Some(true))
                || report.gpus.iter().any(|g| g.address == **a && g.boot_vga)
        })
        .copied()
        .collect()
}

/// How a launch reaches the outside world: the helper's `ResetGpu`, the viewer's start and
/// the progress report. Errors are translated sentences.
pub struct LaunchHooks<'a> {
    /// Removes the device and rescans the PCI bus (the helper's `ResetGpu`).
    pub reset_gpu: &'a mut dyn FnMut(&PciAddress) -> Result<(), String>,
    /// Starts the viewer's command line without waiting for it; returns its process ID.
    pub spawn: &'a mut dyn FnMut(&[String]) -> io::Result<u32>,
    /// Each event, with the VM's name (or the name asked for, before the VM is found).
    pub event: &'a mut dyn FnMut(&LaunchEvent, &str),
}

/// Launches the VM `target` (a name or UUID) of the libvirt connection `uri`:
/// find it; when it runs already, open the viewer; else reset the boot graphics card through
/// the helper when the VM passes it through, start the VM, open the viewer. Every step is
/// reported through `hooks.event`; a failure is reported as [`LaunchEvent::Failed`] and
/// returned as the same sentence.
pub fn launch_with(
    domains: &dyn Domains,
    uri: &str,
    target: &str,
    report: &HostReport,
    viewer: &Viewer,
    hooks: LaunchHooks<'_>,
) -> Result<Launched, String> {
    let LaunchHooks {
        reset_gpu,
        spawn,
        event,
    } = hooks;
    let mut name = target.to_owned();
    let result = (|| {
        event(&LaunchEvent::Checking, &name);
        let vm = domains.find_vm(target)?.ok_or_else(|| {
            gettext_f(
                "There is no virtual machine named or with the UUID “{vm}” on {uri}.",
                &[("vm", target), ("uri", uri)],
            )
        })?;
        name = vm.name.clone();
        if vm.state == VmState::Paused {
            return Err(gettext_f(
                "{vm} is paused. Resume it (in Virtual Machine Manager, or with “virsh resume {vm}”), then launch it again.",
                &[("vm", &name)],
            ));
        }
        let devices = domains.devices(&vm.uuid)?;
        if vm.state == VmState::Running {
            event(&LaunchEvent::AlreadyRunning, &name);
        } else {
            for address in boot_vga_hostdevs(report, &devices.hostdevs) {
                event(&LaunchEvent::ResettingGpu(address), &name);
                reset_gpu(&address).map_err(|why| {
                    gettext_f(
                        "{vm} was not started: the graphics card {address} could not be reset. {reason}",
                        &[("vm", &name), ("address", &address.to_string()), ("reason", &why)],
                    )
                })?;
            }
            event(&LaunchEvent::Starting, &name);
            domains.start_vm(&vm.uuid)?;
            event(&LaunchEvent::Started, &name);
        }
        let command = match viewer {
            // virt-viewer shows the emulated display only: without one it has nothing to show.
            Viewer::VirtViewer(_) if !devices.emulated_display => None,
            _ => viewer_command(viewer, uri, &vm.uuid),
        };
        let viewer_pid = match command {
            Some(argv) => {
                let program = viewer.program().unwrap_or_else(|| argv[0].clone());
                event(&LaunchEvent::OpeningViewer(program.clone()), &name);
                let pid =
                    spawn(&argv).map_err(|e| {
                        gettext_f(
                        "{vm} is running, but its screen could not be opened in {viewer}: {error}",
                        &[("vm", &name), ("viewer", &program), ("error", &e.to_string())],
                    )
                    })?;
                Some(pid)
            }
            None if matches!(viewer, Viewer::VirtViewer(_)) => {
                event(&LaunchEvent::NoViewer(no_display_hint()), &name);
                None
            }
            None => {
                event(&LaunchEvent::NoViewer(no_viewer_hint()), &name);
                None
            }
        };
        Ok(Launched { vm, viewer_pid })
    })();
    if let Err(why) = &result {
        event(&LaunchEvent::Failed(why.clone()), &name);
    }
    result
}

impl Domains for Libvirt {
    fn find_vm(&self, name_or_uuid: &str) -> Result<Option<FoundVm>, String> {
        let found = self.find(name_or_uuid).map_err(|e| e.message())?;
        Ok(found.map(|d| FoundVm {
            name: d.name,
            uuid: d.uuid,
            state: match d.state {
                DomainState::Running => VmState::Running,
                DomainState::Paused => VmState::Paused,
                DomainState::ShutOff => VmState::ShutOff,
                DomainState::Other => VmState::Other,
            },
        }))
    }

    fn devices(&self, uuid: &str) -> Result<VmDevices, String> {
        let xml = self.xml(uuid).map_err(|e| e.message())?;
        let settings = features::read(&xml).map_err(|e| e.message().to_owned())?;
        Ok(VmDevices {
            hostdevs: settings.hostdevs,
            emulated_display: settings.emulated_display,
        })
    }

    fn start_vm(&self, uuid: &str) -> Result<(), String> {
        self.start(uuid).map_err(|e| e.message())
    }
}

/// Removes the launchers in `data_home` whose VM `connection` does not have (VMs deleted
/// outside the app); returns their paths. Nothing is removed when the VMs cannot be listed.
pub fn clean_stale(connection: &Libvirt, data_home: &Path) -> io::Result<Vec<PathBuf>> {
    let existing: Vec<String> = connection
        .domains()
        .map_err(|e| io::Error::other(e.message()))?
        .into_iter()
        .map(|d| d.uuid)
        .collect();
    let stale = stale(data_home, &existing);
    for path in &stale {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(stale)
}

/// [`launch_with`] on a new connection to `uri`; a connection that cannot be opened is a
/// failure like any other.
pub fn launch(
    uri: &str,
    target: &str,
    report: &HostReport,
    viewer: &Viewer,
    hooks: LaunchHooks<'_>,
) -> Result<Launched, String> {
    match Libvirt::open(uri) {
        Ok(connection) => launch_with(&connection, uri, target, report, viewer, hooks),
        Err(e) => {
            let why = e.message();
            (hooks.event)(&LaunchEvent::Checking, target);
            (hooks.event)(&LaunchEvent::Failed(why.clone()), target);
            Err(why)
        }
    }
}

/// Asks the privileged helper to reset the device at `address` (remove it and rescan the
/// PCI bus; polkit `manage-devices`). When `root` is a copy of a host rather than `/`, only a
/// helper that serves that same copy is asked: a fixture's boot GPU is never reset on the
/// real machine.
pub fn reset_gpu_with_helper(root: &HostRoot, address: &PciAddress) -> Result<(), String> {
    zbus::block_on(async {
        let connection = zbus::Connection::system()
            .await
            .map_err(|e| user_message(&e))?;
        let proxy = Helper1Proxy::builder(&connection)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .map_err(|e| user_message(&e))?;
        if !root.is_live() {
            let served = proxy.root().await.map_err(|e| user_message(&e))?;
            let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
            if canonical(Path::new(&served)) != canonical(root.base()) {
                return Err(gettext_f(
                    "The Passthrough helper works on {served}, not on the host root {root} examined here, so it was not asked to reset the card.",
                    &[("served", &served), ("root", &root.base().display().to_string())],
                ));
            }
        }
        proxy
            .reset_gpu(&address.to_string())
            .await
            .map_err(|e| user_message(&e))
    })
}

/// `passthroughctl launch`: launches `target` on `uri` with the viewer found in `$PATH`, the
/// helper's reset for the boot GPU of the host under `root`, and prints each event as a line
/// (text, or one JSON object per line), the failure on `err`. Returns the exit code: 0 when
/// the VM runs (with its viewer, or a hint when there is none), 1 when it does not.
pub fn run_cli(
    uri: &str,
    target: &str,
    root: &HostRoot,
    report: &HostReport,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let viewer = find_viewer(&std::env::var_os("PATH").unwrap_or_default());
    let mut reset = |address: &PciAddress| reset_gpu_with_helper(root, address);
    let mut spawn = |argv: &[String]| spawn_detached(argv, &[]);
    let mut event = |e: &LaunchEvent, vm: &str| {
        let message = e.message(vm);
        // A closed pipe (| head) is no reason to stop a launch.
        let _ = if json {
            let mut line = serde_json::json!({ "event": e.kind(), "vm": vm, "message": message });
            if let LaunchEvent::ResettingGpu(address) = e {
                line["address"] = serde_json::json!(address);
            }
            writeln!(out, "{line}")
        } else if e.is_failure() {
            writeln!(err, "passthroughctl: {}", one_line(&message))
        } else {
            writeln!(out, "{}", one_line(&message))
        };
        let _ = out.flush();
    };
    let hooks = LaunchHooks {
        reset_gpu: &mut reset,
        spawn: &mut spawn,
        event: &mut event,
    };
    match launch(uri, target, report, &viewer, hooks) {
        Ok(_) => 0,
        Err(_) => 1,
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "6f1c2a4e-93b1-4c55-8a0e-2b7d5c9e1f30";

    #[test]
    fn uuids_are_checked_strictly() {
        assert!(is_uuid(UUID));
        assert!(is_uuid(&UUID.to_uppercase()));
        for bad in [
            "",
            "test",
            "6f1c2a4e93b14c558a0e2b7d5c9e1f30",
            "{6f1c2a4e-93b1-4c55-8a0e-2b7d5c9e1f30}",
            " 6f1c2a4e-93b1-4c55-8a0e-2b7d5c9e1f30",
            "6f1c2a4e-93b1-4c55-8a0e-2b7d5c9e1f30 ",
            "6f1c2a4e-93b1-4c55-8a0e-2b7d5c9e1f3",
            "6f1c2a4e-93b1-4c55-8a0e-2b7d5c9e1f300",
            "6f1c2a4e-93b1-4c55-8a0e_2b7d5c9e1f30",
            "6f1c2a4g-93b1-4c55-8a0e-2b7d5c9e1f30",
            "../../../../etc/passwd-aaaa-aaaa-aaaa",
            "6f1c2a4e-93b1-4c55-8a0e-2b7d5c9e1f3\n",
            "6f1c2a4e-93b1-4c55-8a0e-2b7d5c9e1f3１",
        ] {
            assert!(!is_uuid(bad), "{bad:?}");
            assert!(desktop_file_name(bad).is_err(), "{bad:?}");
            assert!(desktop_entry("x", bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            desktop_file_name(&UUID.to_uppercase()).unwrap(),
            format!("io.github.passthrough.Passthrough.vm-{UUID}.desktop")
        );
    }

    #[test]
    fn values_are_escaped_as_the_spec_says() {
        assert_eq!(escape_value("Windows 11"), "Windows 11");
        assert_eq!(escape_value("  two  "), "\\s\\stwo\\s\\s");
        assert_eq!(escape_value(" "), "\\s");
        assert_eq!(escape_value("a\nb\tc\rd\\e"), "a\\nb\\tc\\rd\\\\e");
        assert_eq!(escape_value("\"<&>\";"), "\"<&>\";");
        assert_eq!(escape_value("游戏 虚拟机"), "游戏 虚拟机");
        assert_eq!(escape_value("bell\u{7}del\u{7f}"), "belldel");
    }

    #[test]
    fn the_entry_has_every_key() {
        let text = desktop_entry("Windows 11 \"gaming\"", UUID).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "[Desktop Entry]");
        for want in [
            "Type=Application",
            "Name=Windows 11 \"gaming\"",
            "Icon=io.github.passthrough.Passthrough.vm-windows",
            "TryExec=passthrough",
            &format!("Exec=passthrough --launch-vm {UUID}"),
            "Categories=Game;",
            "StartupNotify=true",
            &format!("X-Passthrough-VM={UUID}"),
        ] {
            assert!(lines.contains(&want), "{want} in\n{text}");
        }
        assert!(lines
            .iter()
            .any(|l| l.starts_with("Comment=") && l.contains("Windows 11 \"gaming\"")));
        // One line per key: a name with a newline stays on its line.
        let text = desktop_entry("a\nb", UUID).unwrap();
        assert!(text.contains("Name=a\\nb\n"), "{text}");
    }

    #[test]
    fn launcher_names_are_recognized() {
        assert_eq!(
            uuid_of_file_name(&desktop_file_name(UUID).unwrap()),
            Some(UUID.to_owned())
        );
        assert_eq!(
            uuid_of_file_name("io.github.passthrough.Passthrough.desktop"),
            None
        );
        assert_eq!(
            uuid_of_file_name(&format!("{FILE_PREFIX}{}.desktop", UUID.to_uppercase())),
            None
        );
        assert_eq!(uuid_of_file_name(&format!("{FILE_PREFIX}x.desktop")), None);
    }

    #[test]
    fn viewer_commands() {
        let vv = Viewer::VirtViewer(PathBuf::from("/usr/bin/virt-viewer"));
        assert_eq!(
            viewer_command(&vv, "qemu:///system", UUID).unwrap(),
            [
                "/usr/bin/virt-viewer",
                "--connect",
                "qemu:///system",
                "--wait",
                "--attach",
                "--reconnect",
                "--uuid",
                "--",
                UUID
            ]
        );
        assert_eq!(viewer_command(&vv, "qemu:///system", "--help"), None);
        let lg = Viewer::LookingGlass(PathBuf::from("/usr/bin/looking-glass-client"));
        assert_eq!(
            viewer_command(&lg, "qemu:///system", UUID).unwrap(),
            ["/usr/bin/looking-glass-client"]
        );
        assert_eq!(viewer_command(&Viewer::None, "qemu:///system", UUID), None);
        assert_eq!(vv.program().as_deref(), Some("virt-viewer"));
    }

    #[test]
    fn viewers_are_found_in_path_order_of_preference() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let make = |p: &Path, mode: u32| {
            std::fs::write(p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        let path = std::env::join_paths([&a, &b]).unwrap();
        assert_eq!(find_viewer(&path), Viewer::None);
        // Not executable: not a viewer.
        make(&a.join("virt-viewer"), 0o644);
        assert_eq!(find_viewer(&path), Viewer::None);
        make(&b.join("virt-viewer"), 0o755);
        assert_eq!(
            find_viewer(&path),
            Viewer::VirtViewer(b.join("virt-viewer"))
        );
        make(&b.join("looking-glass-client"), 0o755);
        assert_eq!(
            find_viewer(&path),
            Viewer::LookingGlass(b.join("looking-glass-client"))
        );
        // Relative entries (the working directory) are never searched.
        assert_eq!(find_viewer(OsStr::new(":.:b")), Viewer::None);
    }
}
