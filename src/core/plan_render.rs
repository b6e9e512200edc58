//! Turns a [`Plan`] into the concrete change of one host: the new text of every file it
//! touches and the regeneration commands ([`Rendered`]), and shows it as a unified diff.
//!
//! Rendering reads the host's files through the [`HostRoot`] and compares the plan with
//! them, so a plan that is already in effect renders to nothing, and releasing the GPUs a
//! plan reserved gives back the files as they were.
//!
//! What goes where:
//!
//! | boot loader | files | command |
//! |---|---|---|
//! | GRUB | `/etc/default/grub` (`GRUB_CMDLINE_LINUX_DEFAULT`) | `update-grub`, else `grub-mkconfig -o …` / `grub2-mkconfig -o …` |
//! | systemd-boot | `/etc/kernel/cmdline` when present, and every loader entry | `kernel-install add VER IMAGE` per installed kernel, when `/etc/kernel/cmdline` exists |
//! | kernelstub | `/etc/kernelstub/configuration` | `kernelstub` |
//! | grubby | none | `grubby --update-kernel=ALL --args=… --remove-args=…` |
//! | rpm-ostree | none | `rpm-ostree kargs --delete-if-present=… --append-if-missing=…` |
//!
//! | initramfs | files | command |
//! |---|---|---|
//! | initramfs-tools | `/etc/initramfs-tools/modules` | `update-initramfs -u -k all` |
//! | dracut | `/etc/dracut.conf.d/passthrough-vfio.conf` | `dracut --regenerate-all --force` |
//! | mkinitcpio | a `MODULES+=` drop-in in `/etc/mkinitcpio.conf.d` (mkinitcpio 36+), else `MODULES` of `/etc/mkinitcpio.conf`; a `FILES` line for the udev rule | `mkinitcpio -P` |
//! | booster | `modules_force_load` of `/etc/booster.yaml` | `booster build --force --kernel-version VER /boot/booster-PKG.img` per kernel |
//!
//! and, for every one, `/etc/modprobe.d/passthrough-vfio.conf` (`options vfio-pci ids=` and
//! the softdeps) and, for GPUs bound by address, `/etc/udev/rules.d/90-passthrough-vfio.rules`.

use std::collections::BTreeSet;
use std::fmt;
use std::io;

use crate::boot::{kernel_release, BootLoaderKind, InitramfsKind};
use crate::bootcfg::{
    apply_ops, booster, dracut, grub, initramfs_tools, kernel_cmdline, kernelstub, loader_entry,
    mkinitcpio, modprobe, EditError,
};
use crate::cmdline::normalize_key;
use crate::cpu::CpuVendor;
use crate::gpu::{GpuVerdict, Verdict};
use crate::i18n::gettext_f;
use crate::pci::PciAddress;
use crate::plan::{BindBy, FileChange, KargOp, Plan, Rendered};
use crate::report::HostReport;
use crate::root::HostRoot;
use crate::trial;

/// Passthrough's udev rule for GPUs bound by address.
pub const UDEV_RULE_PATH: &str = "/etc/udev/rules.d/90-passthrough-vfio.rules";

/// Passthrough's mkinitcpio drop-in that puts the udev rule into the initramfs.
pub const MKINITCPIO_DROPIN_PATH: &str = "/etc/mkinitcpio.conf.d/passthrough-vfio.conf";

/// Where systemd-boot's entries may be (the ESP mounted at `/boot`, `/efi` or `/boot/efi`).
pub const LOADER_ENTRY_DIRS: &[&str] = &[
    "/boot/loader/entries",
    "/efi/loader/entries",
    "/boot/efi/loader/entries",
];

const VFIO_IDS_KEY: &str = "vfio-pci.ids";
const ACS_VALUE: &str = "downstream,multifunction";
/// `vfio_virqfd` was merged into `vfio` in Linux 6.2.
const VIRQFD: &str = "vfio_virqfd";

const UDEV_HEADER: &str = "\
# Written by Passthrough: bind these devices to vfio-pci by their PCI address.
# Another device of this host has the same vendor:device IDs (two identical cards), so
# vfio-pci.ids would take it too. driver_override makes only these addresses use vfio-pci;
# the rule runs when the kernel announces a device, before udev loads a driver for it.
";

const MKINITCPIO_DROPIN: &str = "\
# Written by Passthrough: put the vfio-pci udev rule into the initramfs, so that it applies
# before a graphics driver loaded from the initramfs can take the card.
FILES+=(/etc/udev/rules.d/90-passthrough-vfio.rules)
";

/// The modules part of Passthrough's mkinitcpio drop-in.
fn mkinitcpio_modules_dropin(modules: &[&str]) -> String {
    format!(
        "# Written by Passthrough: load vfio-pci early so it claims the reserved GPU.\nMODULES+=({})\n",
        modules.join(" ")
    )
}

const DRACUT_UDEV_LINE: &str = "install_items+=\" /etc/udev/rules.d/90-passthrough-vfio.rules \"\n";

/// Why a plan cannot be rendered on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    /// No PCI device has this address.
    UnknownDevice(PciAddress),
    /// The device is not a graphics card.
    NotAGpu(PciAddress),
    /// The plan both reserves and releases this GPU.
    ReserveAndRelease(PciAddress),
    /// The GPU shares its IOMMU group (`reason` says with what), and the plan has no ACS
    /// override.
    SharedGroup { address: PciAddress, reason: String },
    /// The boot loader is not one Passthrough knows: the user must add these by hand.
    UnknownBootLoader {
        add: Vec<String>,
        remove: Vec<String>,
    },
    /// A configuration file cannot be edited safely.
    Edit(EditError),
    /// A configuration file cannot be read.
    Read { path: String, error: String },
    /// The plan asks for a trial boot and this host cannot have one (why, translated).
    Trial(String),
}

impl PlanError {
    /// A translated sentence for the user.
    pub fn message(&self) -> String {
        match self {
            Self::UnknownDevice(a) => gettext_f(
                "There is no PCI device {address} on this host.",
                &[("address", &a.to_string())],
            ),
            Self::NotAGpu(a) => gettext_f(
                "{address} is not a graphics card; reserve the card itself, its other functions go with it.",
                &[("address", &a.to_string())],
            ),
            Self::ReserveAndRelease(a) => gettext_f(
                "The plan both reserves and releases {address}.",
                &[("address", &a.to_string())],
            ),
            Self::SharedGroup { address, reason } => gettext_f(
                "{address} cannot be reserved alone: {reason} Choose the ACS override to pass it through anyway.",
                &[("address", &address.to_string()), ("reason", reason)],
            ),
            Self::UnknownBootLoader { add, remove } => {
                let mut parts = Vec::new();
                if !add.is_empty() {
                    parts.push(gettext_f("add {args}", &[("args", &add.join(" "))]));
                }
                if !remove.is_empty() {
                    parts.push(gettext_f("remove {args}", &[("args", &remove.join(" "))]));
                }
                gettext_f(
                    "Passthrough does not know this host's boot loader, so it cannot change the kernel command line. Change it by hand in your boot loader's configuration: {changes}.",
                    &[("changes", &parts.join("; "))],
                )
            }
            Self::Edit(e) => match e.line {
                Some(line) => gettext_f(
                    "{path}, line {line}: {error}",
                    &[("path", e.file), ("line", &line.to_string()), ("error", &e.message)],
                ),
                None => gettext_f(
                    "{path}: {error}",
                    &[("path", e.file), ("error", &e.message)],
                ),
            },
            Self::Read { path, error } => gettext_f(
                "Cannot read {path}: {error}",
                &[("path", path), ("error", error)],
            ),
            Self::Trial(reason) => gettext_f(
                "This system cannot try the new settings once: {reason}",
                &[("reason", reason)],
            ),
        }
    }
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for PlanError {}

impl From<EditError> for PlanError {
    fn from(e: EditError) -> Self {
        Self::Edit(e)
    }
}

// ---------------------------------------------------------------------------------------

/// Reads a host file; `None` when it does not exist.
fn read(root: &HostRoot, path: &str) -> Result<Option<String>, PlanError> {
    match root.read_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(PlanError::Read {
            path: path.to_owned(),
            error: e.to_string(),
        }),
    }
}

/// `(major, minor)` of a kernel release such as `6.5.6-300.fc39.x86_64`.
pub fn parse_kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The running kernel's release: `/proc/sys/kernel/osrelease`, else the version in the
/// `BOOT_IMAGE=…/vmlinuz-VERSION` of the command line.
fn running_kernel(root: &HostRoot, report: &HostReport) -> Option<String> {
    kernel_release(root)
        .or_else(|| report.kernel_release.clone())
        .or_else(|| {
            let cmdline = report.cmdline.as_ref()?;
            let image = cmdline.get("BOOT_IMAGE")?.value.as_deref()?;
            let version = image.rsplit_once("vmlinuz-")?.1;
            parse_kernel_version(version).map(|_| version.to_owned())
        })
}

/// Kernels installed under `/usr/lib/modules` with their image (`/usr/lib/modules/VER/vmlinuz`
/// or `/boot/vmlinuz-VER`), sorted.
fn installed_kernels(root: &HostRoot) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for version in root.list_dir("/usr/lib/modules").unwrap_or_default() {
        let own = format!("/usr/lib/modules/{version}/vmlinuz");
        let boot = format!("/boot/vmlinuz-{version}");
        if root.exists(&own) {
            out.push((version, own));
        } else if root.exists(&boot) {
            out.push((version, boot));
        }
    }
    out
}

/// Every systemd-boot entry (host paths), sorted by directory then name; a trial entry
/// (`trial.rs`) is not one of them.
pub fn loader_entry_paths(root: &HostRoot) -> Vec<String> {
    let mut out = Vec::new();
    for dir in LOADER_ENTRY_DIRS {
        for name in root.list_dir(dir).unwrap_or_default() {
            if name.ends_with(".conf") && !name.starts_with('.') && name != trial::LOADER_ENTRY_NAME
            {
                out.push(format!("{dir}/{name}"));
            }
        }
    }
    out
}

fn lower(s: &str) -> String {
    s.to_ascii_lowercase()
}

/// The `vfio-pci.ids` of a list of kernel arguments (both spellings), lowercased.
fn vfio_ids_of(words: &[String]) -> Vec<String> {
    let key = normalize_key(VFIO_IDS_KEY);
    words
        .iter()
        .filter_map(|w| w.split_once('='))
        .filter(|(k, _)| normalize_key(k) == key)
        .flat_map(|(_, v)| v.split(','))
        .filter(|id| !id.is_empty())
        .map(lower)
        .collect()
}

/// The comma-separated values of every `key=` argument.
fn values_of(words: &[String], key: &str) -> Vec<String> {
    let key = normalize_key(key);
    words
        .iter()
        .filter_map(|w| w.split_once('='))
        .filter(|(k, _)| normalize_key(k) == key)
        .flat_map(|(_, v)| v.split(','))
        .map(str::to_owned)
        .collect()
}

fn push_unique(list: &mut Vec<String>, item: String) {
    if !list.contains(&item) {
        list.push(item);
    }
}

/// The addresses named in a udev rule file like the one [`render_udev`] writes.
fn udev_addresses(text: &str) -> Vec<PciAddress> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#') && l.contains("driver_override"))
        .filter_map(|l| {
            let start = l.find("KERNEL==\"")? + "KERNEL==\"".len();
            let end = start + l[start..].find('"')?;
            l[start..end].parse().ok()
        })
        .collect()
}

fn render_udev(addresses: &BTreeSet<PciAddress>) -> String {
    let mut out = UDEV_HEADER.to_owned();
    for a in addresses {
        out.push_str(&format!(
            "ACTION==\"add\", SUBSYSTEM==\"pci\", KERNEL==\"{a}\", ATTR{{driver_override}}=\"vfio-pci\"\n"
        ));
    }
    out
}

/// What the plan wants of the kernel command line, decided per list of arguments.
struct KargIntent {
    /// Ops for every list (filtered per list to those that change it).
    ops: Vec<KargOp>,
    /// `intel_iommu=on`, unless the list already turns it on with other options.
    intel_iommu_on: bool,
    /// `initcall_blacklist=sysfb_init`, unless it is already among the values.
    sysfb_blacklist: bool,
}

impl KargIntent {
    fn ops_for(&self, words: &[String]) -> Vec<KargOp> {
        let mut ops = Vec::new();
        if self.intel_iommu_on && !values_of(words, "intel_iommu").iter().any(|v| v == "on") {
            ops.push(KargOp::SetKey {
                key: "intel_iommu".into(),
                value: Some("on".into()),
            });
        }
        ops.extend(self.ops.iter().cloned());
        if self.sysfb_blacklist
            && !values_of(words, "initcall_blacklist")
                .iter()
                .any(|v| v == "sysfb_init")
        {
            ops.push(KargOp::AddExact {
                arg: "initcall_blacklist=sysfb_init".into(),
            });
        }
        ops.retain(|op| apply_ops(words, std::slice::from_ref(op)) != words);
        ops
    }
}

/// Words in `after` and not in `before` (added), and the reverse (removed).
fn word_diff(before: &[String], after: &[String]) -> (Vec<String>, Vec<String>) {
    let added = after
        .iter()
        .filter(|w| !before.contains(w))
        .cloned()
        .collect();
    let removed = before
        .iter()
        .filter(|w| !after.contains(w))
        .cloned()
        .collect();
    (added, removed)
}

struct Renderer<'a> {
    root: &'a HostRoot,
    report: &'a HostReport,
    plan: &'a Plan,
    out: Rendered,
}

impl Renderer<'_> {
    fn note(&mut self, text: String) {
        if !self.out.notes.contains(&text) {
            self.out.notes.push(text);
        }
    }

    /// Records a file's new text when it differs.
    fn change(&mut self, path: &str, before: Option<String>, after: Option<String>) -> bool {
        if before == after {
            return false;
        }
        self.out.files.push(FileChange {
            path: path.to_owned(),
            before,
            after,
        });
        true
    }

    fn summarize(&mut self, added: Vec<String>, removed: Vec<String>) {
        for w in added {
            push_unique(&mut self.out.kernel_args.add, w);
        }
        for w in removed {
            push_unique(&mut self.out.kernel_args.remove, w);
        }
    }

    fn command(&mut self, argv: Vec<String>) {
        if !self.out.commands.contains(&argv) {
            self.out.commands.push(argv);
        }
    }

    fn gpu(&self, address: &PciAddress) -> Result<&GpuVerdict, PlanError> {
        if self.report.pci.get(address).is_none() {
            return Err(PlanError::UnknownDevice(*address));
        }
        self.report
            .gpus
            .iter()
            .find(|g| g.address == *address)
            .ok_or(PlanError::NotAGpu(*address))
    }
}

/// A GPU and its companions, with their IDs.
struct Card {
    addresses: Vec<PciAddress>,
    ids: Vec<String>,
}

fn card(report: &HostReport, gpu: &GpuVerdict) -> Card {
    let addresses: Vec<PciAddress> = std::iter::once(gpu.address)
        .chain(gpu.companions.iter().copied())
        .collect();
    let mut ids = Vec::new();
    for a in &addresses {
        if let Some(id) = report.pci.get(a).and_then(|d| d.ids()) {
            push_unique(&mut ids, lower(&id));
        }
    }
    Card { addresses, ids }
}

/// Renders `plan` on the host under `root` (whose facts are `report`).
/// The kernel arguments the boot configuration gives the next boot: what the files say,
/// which differs from the running kernel's command line until the host restarts.
pub fn configured_args(root: &HostRoot, report: &HostReport) -> Result<Vec<String>, PlanError> {
    let plan = Plan::default();
    let r = Renderer {
        root,
        report,
        plan: &plan,
        out: Rendered::default(),
    };
    current_boot_words(&r)
}

pub fn render(root: &HostRoot, report: &HostReport, plan: &Plan) -> Result<Rendered, PlanError> {
    let mut r = Renderer {
        root,
        report,
        plan,
        out: Rendered::default(),
    };
    // Validate the devices first.
    let mut reserve = Vec::new();
    for a in &plan.reserve {
        if plan.release.contains(a) {
            return Err(PlanError::ReserveAndRelease(*a));
        }
        let g = r.gpu(a)?;
        if g.verdict == Verdict::Shared && !plan.acs_override {
            return Err(PlanError::SharedGroup {
                address: *a,
                reason: g.explanation.clone(),
            });
        }
        reserve.push(g.clone());
    }
    let mut release = Vec::new();
    for a in &plan.release {
        release.push(r.gpu(a)?.clone());
    }
    let reservation = !reserve.is_empty() || !release.is_empty();

    // The reservation as it will be: IDs and addresses.
    let boot_words = current_boot_words(&r)?;
    let modprobe_before = read(root, modprobe::PATH)?;
    let udev_before = read(root, UDEV_RULE_PATH)?;
    let mut ids: Vec<String> = Vec::new();
    for id in vfio_ids_of(&boot_words) {
        push_unique(&mut ids, id);
    }
    if let Some(text) = &modprobe_before {
        for id in modprobe::parse(text).ids {
            push_unique(&mut ids, lower(&id));
        }
    }
    let mut addresses: BTreeSet<PciAddress> = udev_before
        .as_deref()
        .map(udev_addresses)
        .unwrap_or_default()
        .into_iter()
        .collect();
    let reserved_addresses: Vec<PciAddress> = reserve
        .iter()
        .flat_map(|g| card(report, g).addresses)
        .collect();
    let mut no_ids = Vec::new();
    for g in &reserve {
        let c = card(report, g);
        let shared = report.pci.devices.iter().any(|d| {
            !reserved_addresses.contains(&d.address)
                && d.ids().is_some_and(|id| c.ids.contains(&lower(&id)))
        });
        let by_address = match plan.bind_by {
            BindBy::Address => true,
            BindBy::Auto => shared,
            BindBy::Ids => false,
        };
        if g.verdict == Verdict::NoIommu {
            r.note(gettext_f(
                "The IOMMU is off now, so {address} has no IOMMU group yet: vfio-pci can hold it only after the IOMMU is on (firmware setup and kernel command line) and the host has rebooted.",
                &[("address", &g.address.to_string())],
            ));
        }
        if by_address && plan.try_once {
            return Err(PlanError::Trial(gettext_f(
                "{address} is reserved by its address (a udev rule), which applies at every boot, not only a trial one.",
                &[("address", &g.address.to_string())],
            )));
        }
        if by_address {
            addresses.extend(c.addresses.iter().copied());
            no_ids.extend(c.ids.iter().cloned());
            if shared {
                r.note(gettext_f(
                    "Another device of this host has the same IDs as {address} (two identical cards), so it is reserved by its address (driver_override in a udev rule) instead of by IDs, which would take both.",
                    &[("address", &g.address.to_string())],
                ));
            }
        } else {
            for id in &c.ids {
                push_unique(&mut ids, id.clone());
            }
            if shared {
                r.note(gettext_f(
                    "Another device of this host has the same IDs as {address}: reserving by IDs reserves it too.",
                    &[("address", &g.address.to_string())],
                ));
            }
        }
    }
    for g in &release {
        let c = card(report, g);
        for a in &c.addresses {
            addresses.remove(a);
        }
        no_ids.extend(c.ids);
    }
    ids.retain(|id| !no_ids.contains(id));
    let reserved_any = !ids.is_empty() || !addresses.is_empty();

    // Kernel arguments.
    let intent = karg_intent(&mut r, &boot_words, reservation.then_some(&ids));
    if plan.try_once {
        trial_entry(&mut r, &intent)?;
    } else {
        boot_loader(&mut r, &intent)?;
        // A trial entry left from an earlier trial goes: these settings are now permanent.
        for (path, before, after) in trial::leftovers(root) {
            r.change(&path, Some(before), after);
        }
    }
    let boot_changed = !r.out.files.is_empty() || !r.out.commands.is_empty();
    let boot_commands = std::mem::take(&mut r.out.commands);

    // Initramfs, modprobe and udev.
    if reservation {
        // A trial carries the IDs on its own command line only.
        let modprobe_ids = if plan.try_once {
            Vec::new()
        } else {
            ids.clone()
        };
        initramfs(
            &mut r,
            reserved_any,
            &modprobe_ids,
            &addresses,
            modprobe_before,
            udev_before,
        )?;
    }
    let initramfs_commands = std::mem::take(&mut r.out.commands);
    let initramfs_changed = !initramfs_commands.is_empty();
    r.out.commands = initramfs_commands;
    for c in boot_commands {
        r.command(c);
    }
    // kernelstub copies the initramfs to the ESP: run it after a rebuilt initramfs too.
    if initramfs_changed && !boot_changed && report.boot_loader.kind == BootLoaderKind::Kernelstub {
        r.command(vec!["kernelstub".into()]);
    }
    if plan.try_once && !r.out.is_empty() {
        r.out.permanent = Some(Plan {
            try_once: false,
            ..plan.clone()
        });
    }
    Ok(r.out)
}

/// A trial boot entry with the new arguments, and the command that boots it once.
fn trial_entry(r: &mut Renderer<'_>, intent: &KargIntent) -> Result<(), PlanError> {
    let target = trial::target(r.root, r.report).map_err(PlanError::Trial)?;
    let words = trial::base_args(r.root, &target)?;
    let ops = intent.ops_for(&words);
    let path = target.path();
    let before = read(r.root, &path)?;
    let after = trial::render(r.root, &target, &ops, before.as_deref())?;
    let (added, removed) = word_diff(&words, &apply_ops(&words, &ops));
    if added.is_empty() && removed.is_empty() {
        return Ok(());
    }
    r.change(&path, before, Some(after));
    r.summarize(added, removed);
    r.command(target.one_shot());
    r.note(gettext_f(
        "Only the next start uses the new kernel arguments ({entry} in the boot menu). If it fails, restart again: the start after it uses the old ones. Passthrough then offers to make them permanent.",
        &[("entry", trial::TITLE)],
    ));
    Ok(())
}

/// The kernel arguments the boot configuration holds now, from every file the plan would
/// edit (or the entries and `/proc/cmdline` where a command edits them).
fn current_boot_words(r: &Renderer<'_>) -> Result<Vec<String>, PlanError> {
    let mut words = Vec::new();
    match r.report.boot_loader.kind {
        BootLoaderKind::Grub => {
            if let Some(text) = read(r.root, grub::PATH)? {
                words.extend(grub::linux_args(&text)?);
                words.extend(grub::kernel_args(&text)?);
            }
        }
        BootLoaderKind::Kernelstub => {
            if let Some(text) = read(r.root, kernelstub::PATH)? {
                words.extend(kernelstub::kernel_args(&text)?);
            }
        }
        BootLoaderKind::SystemdBoot | BootLoaderKind::Grubby | BootLoaderKind::RpmOstree => {
            if r.report.boot_loader.kind == BootLoaderKind::SystemdBoot {
                if let Some(text) = read(r.root, kernel_cmdline::PATH)? {
                    words.extend(kernel_cmdline::kernel_args(&text)?);
                }
            }
            for entry in loader_entry_paths(r.root) {
                if let Some(text) = read(r.root, &entry)? {
                    words.extend(loader_entry::kernel_args(&text)?);
                }
            }
            if words.is_empty() {
                words.extend(proc_cmdline_words(r.report));
            }
        }
        BootLoaderKind::Unknown => words.extend(proc_cmdline_words(r.report)),
    }
    Ok(words)
}

fn proc_cmdline_words(report: &HostReport) -> Vec<String> {
    report
        .cmdline
        .as_ref()
        .map(|c| c.args.iter().map(|a| a.to_string()).collect())
        .unwrap_or_default()
}

fn karg_intent(
    r: &mut Renderer<'_>,
    words: &[String],
    vfio_ids: Option<&Vec<String>>,
) -> KargIntent {
    let plan = r.plan;
    let vendor = r.report.cpu.as_ref().map(|c| c.vendor);
    let mut ops = Vec::new();
    let mut intel_iommu_on = false;
    if plan.enable_iommu {
        match vendor {
            Some(CpuVendor::Amd) => {
                r.note(gettext_f(
                    "On AMD processors the kernel turns the IOMMU on by itself when it is enabled in the firmware setup (SVM and IOMMU/AMD-Vi); no kernel argument is needed.",
                    &[],
                ));
                if words.iter().any(|w| w == "amd_iommu=on") {
                    ops.push(KargOp::RemoveExact {
                        arg: "amd_iommu=on".into(),
                    });
                    r.note(gettext_f(
                        "amd_iommu=on is removed: “on” is not a value the kernel knows for amd_iommu (it is often copied from guides); it does nothing.",
                        &[],
                    ));
                }
                if words.iter().any(|w| w == "amd_iommu=off") {
                    ops.push(KargOp::RemoveExact {
                        arg: "amd_iommu=off".into(),
                    });
                }
            }
            _ => intel_iommu_on = true,
        }
        if words.iter().any(|w| w == "iommu=off") && !plan.iommu_pt {
            ops.push(KargOp::RemoveExact {
                arg: "iommu=off".into(),
            });
        }
    }
    if plan.iommu_pt {
        ops.push(KargOp::SetKey {
            key: "iommu".into(),
            value: Some("pt".into()),
        });
    }
    if plan.acs_override {
        ops.push(KargOp::SetKey {
            key: "pcie_acs_override".into(),
            value: Some(ACS_VALUE.into()),
        });
        r.note(gettext_f(
            "The ACS override needs a kernel with the ACS patch (for example linux-zen or XanMod); other kernels ignore it. It tells the kernel to assume an isolation the hardware does not provide: devices it separates can still reach each other by peer-to-peer DMA, outside the IOMMU's control. Use it only for a guest you trust.",
            &[],
        ));
    }
    if plan.ignore_msrs {
        ops.push(KargOp::SetKey {
            key: "kvm.ignore_msrs".into(),
            value: Some("1".into()),
        });
        ops.push(KargOp::SetKey {
            key: "kvm.report_ignored_msrs".into(),
            value: Some("0".into()),
        });
    }
    let mut sysfb_blacklist = false;
    if plan.boot_gpu_fix {
        let release = running_kernel(r.root, r.report);
        let simpledrm = release.as_deref().map(|rel| {
            match read(r.root, &format!("/boot/config-{rel}")).ok().flatten() {
                Some(config) => config.lines().any(|l| l == "CONFIG_DRM_SIMPLEDRM=y"),
                None => parse_kernel_version(rel).is_some_and(|v| v >= (5, 15)),
            }
        });
        match simpledrm {
            Some(true) => {
                sysfb_blacklist = true;
                r.note(gettext_f(
                    "This kernel ({release}) draws the boot screen with simpledrm, which video=efifb:off does not stop: initcall_blacklist=sysfb_init keeps the firmware framebuffer off the boot GPU instead.",
                    &[("release", release.as_deref().unwrap_or_default())],
                ));
            }
            Some(false) => ops.push(KargOp::AddExact {
                arg: "video=efifb:off".into(),
            }),
            None => {
                sysfb_blacklist = true;
                ops.push(KargOp::AddExact {
                    arg: "video=efifb:off".into(),
                });
                r.note(gettext_f(
                    "The kernel version is unknown, so both video=efifb:off (kernels with efifb) and initcall_blacklist=sysfb_init (kernels with simpledrm, 5.15 and later) are added; each kernel ignores the one it does not use.",
                    &[],
                ));
            }
        }
    }
    if let Some(ids) = vfio_ids {
        ops.push(if ids.is_empty() {
            KargOp::RemoveKey {
                key: VFIO_IDS_KEY.into(),
            }
        } else {
            KargOp::SetKey {
                key: VFIO_IDS_KEY.into(),
                value: Some(ids.join(",")),
            }
        });
    }
    KargIntent {
        ops,
        intel_iommu_on,
        sysfb_blacklist,
    }
}

/// Edits one file's kernel arguments; returns whether it changed.
fn edit_karg_file(
    r: &mut Renderer<'_>,
    path: &str,
    text: String,
    words: &[String],
    ops: &[KargOp],
    edit: fn(&str, &[KargOp]) -> Result<String, EditError>,
) -> Result<bool, PlanError> {
    if ops.is_empty() {
        return Ok(false);
    }
    let after = edit(&text, ops)?;
    let (added, removed) = word_diff(words, &apply_ops(words, ops));
    let changed = r.change(path, Some(text), Some(after));
    if changed {
        r.summarize(added, removed);
    }
    Ok(changed)
}

fn boot_loader(r: &mut Renderer<'_>, intent: &KargIntent) -> Result<(), PlanError> {
    let kind = r.report.boot_loader.kind;
    match kind {
        BootLoaderKind::Grub => {
            let Some(text) = read(r.root, grub::PATH)? else {
                return unknown_loader(r, intent);
            };
            let linux = grub::linux_args(&text)?;
            let default = grub::kernel_args(&text)?;
            let all: Vec<String> = linux.iter().chain(&default).cloned().collect();
            let ops = intent.ops_for(&all);
            // Only GRUB_CMDLINE_LINUX_DEFAULT is edited; what GRUB_CMDLINE_LINUX holds stays.
            let stuck: Vec<&String> = linux
                .iter()
                .filter(|w| !apply_ops(&linux, &ops).contains(w))
                .collect();
            if !stuck.is_empty() {
                let list: Vec<&str> = stuck.iter().map(|s| s.as_str()).collect();
                r.note(gettext_f(
                    "GRUB_CMDLINE_LINUX in /etc/default/grub holds {args}; Passthrough changes only GRUB_CMDLINE_LINUX_DEFAULT, so remove them there by hand.",
                    &[("args", &list.join(" "))],
                ));
            }
            if edit_karg_file(r, grub::PATH, text, &default, &ops, grub::edit)? {
                let argv: Vec<String> = r
                    .report
                    .boot_loader
                    .apply_command
                    .as_deref()
                    .unwrap_or("update-grub")
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect();
                r.command(argv);
            }
        }
        BootLoaderKind::SystemdBoot => {
            let mut cmdline_changed = false;
            if let Some(text) = read(r.root, kernel_cmdline::PATH)? {
                let words = kernel_cmdline::kernel_args(&text)?;
                let ops = intent.ops_for(&words);
                cmdline_changed = edit_karg_file(
                    r,
                    kernel_cmdline::PATH,
                    text,
                    &words,
                    &ops,
                    kernel_cmdline::edit,
                )?;
            }
            let entries = loader_entry_paths(r.root);
            if entries.is_empty() && !r.root.exists(kernel_cmdline::PATH) {
                return unknown_loader(r, intent);
            }
            for entry in entries {
                let Some(text) = read(r.root, &entry)? else {
                    continue;
                };
                let words = loader_entry::kernel_args(&text)?;
                let ops = intent.ops_for(&words);
                edit_karg_file(r, &entry, text, &words, &ops, loader_entry::edit)?;
            }
            if cmdline_changed {
                for (version, image) in installed_kernels(r.root) {
                    r.command(vec!["kernel-install".into(), "add".into(), version, image]);
                }
            }
        }
        BootLoaderKind::Kernelstub => {
            let Some(text) = read(r.root, kernelstub::PATH)? else {
                return unknown_loader(r, intent);
            };
            let words = kernelstub::kernel_args(&text)?;
            let ops = intent.ops_for(&words);
            if edit_karg_file(r, kernelstub::PATH, text, &words, &ops, kernelstub::edit)? {
                r.command(vec!["kernelstub".into()]);
            }
        }
        BootLoaderKind::Grubby | BootLoaderKind::RpmOstree => {
            let (add, remove) = command_karg_changes(r, intent)?;
            if add.is_empty() && remove.is_empty() {
                return Ok(());
            }
            r.summarize(add.clone(), remove.clone());
            if kind == BootLoaderKind::Grubby {
                // grubby --args replaces the value of a key it already has.
                let added_keys: Vec<String> = add.iter().map(|w| key_of(w)).collect();
                let remove: Vec<String> = remove
                    .into_iter()
                    .filter(|w| !added_keys.contains(&key_of(w)))
                    .collect();
                let mut argv = vec!["grubby".to_owned(), "--update-kernel=ALL".to_owned()];
                if !add.is_empty() {
                    argv.push(format!("--args={}", add.join(" ")));
                }
                if !remove.is_empty() {
                    argv.push(format!("--remove-args={}", remove.join(" ")));
                }
                r.command(argv);
            } else {
                let mut argv = vec!["rpm-ostree".to_owned(), "kargs".to_owned()];
                argv.extend(remove.iter().map(|w| format!("--delete-if-present={w}")));
                argv.extend(add.iter().map(|w| format!("--append-if-missing={w}")));
                r.command(argv);
            }
        }
        BootLoaderKind::Unknown => return unknown_loader(r, intent),
    }
    Ok(())
}

fn key_of(word: &str) -> String {
    normalize_key(word.split_once('=').map_or(word, |(k, _)| k))
}

/// The words a command-driven boot loader must add and remove, over every entry (or the
/// running command line when there are none).
fn command_karg_changes(
    r: &Renderer<'_>,
    intent: &KargIntent,
) -> Result<(Vec<String>, Vec<String>), PlanError> {
    let mut lists = Vec::new();
    for entry in loader_entry_paths(r.root) {
        if let Some(text) = read(r.root, &entry)? {
            lists.push(loader_entry::kernel_args(&text)?);
        }
    }
    if lists.is_empty() {
        lists.push(proc_cmdline_words(r.report));
    }
    let (mut add, mut remove) = (Vec::new(), Vec::new());
    for words in lists {
        let ops = intent.ops_for(&words);
        let (a, rm) = word_diff(&words, &apply_ops(&words, &ops));
        a.into_iter().for_each(|w| push_unique(&mut add, w));
        rm.into_iter().for_each(|w| push_unique(&mut remove, w));
    }
    Ok((add, remove))
}

fn unknown_loader(r: &mut Renderer<'_>, intent: &KargIntent) -> Result<(), PlanError> {
    let words = proc_cmdline_words(r.report);
    let ops = intent.ops_for(&words);
    if ops.is_empty() {
        return Ok(());
    }
    let (add, remove) = word_diff(&words, &apply_ops(&words, &ops));
    Err(PlanError::UnknownBootLoader { add, remove })
}

/// An editor of a module list: `edit(text, add, remove)`.
type ListEdit = fn(&str, &[&str], &[&str]) -> Result<String, EditError>;

fn initramfs(
    r: &mut Renderer<'_>,
    reserved_any: bool,
    ids: &[String],
    addresses: &BTreeSet<PciAddress>,
    modprobe_before: Option<String>,
    udev_before: Option<String>,
) -> Result<(), PlanError> {
    let old_kernel = running_kernel(r.root, r.report)
        .as_deref()
        .and_then(parse_kernel_version)
        .is_some_and(|v| v < (6, 2));
    let mut modules: Vec<&str> = dracut::MODULES.to_vec();
    if old_kernel {
        modules.push(VIRQFD);
    }
    let all_modules: Vec<&str> = dracut::MODULES.iter().copied().chain([VIRQFD]).collect();
    let (add, remove): (&[&str], &[&str]) = if reserved_any {
        (&modules, &[])
    } else {
        (&[], &all_modules)
    };
    let by_address = !addresses.is_empty();
    let mut changed = false;

    // Passthrough's own files.
    let modprobe_after = reserved_any.then(|| {
        modprobe::render(&modprobe::VfioModprobe {
            ids: ids.to_vec(),
            softdeps: modprobe::SOFTDEP_DRIVERS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        })
    });
    changed |= r.change(modprobe::PATH, modprobe_before, modprobe_after);
    let udev_after = by_address.then(|| render_udev(addresses));
    let udev_changed = r.change(UDEV_RULE_PATH, udev_before, udev_after);
    changed |= udev_changed;

    let kind = r.report.initramfs;
    let edit_list = |r: &mut Renderer<'_>, path: &str, edit: ListEdit| -> Result<bool, PlanError> {
        let Some(text) = read(r.root, path)? else {
            if add.is_empty() {
                return Ok(false);
            }
            let after = edit("", add, remove)?;
            return Ok(r.change(path, None, Some(after)));
        };
        let after = edit(&text, add, remove)?;
        // A file that held only Passthrough's modules goes, as it came.
        let after = if after != text && after.trim().is_empty() {
            None
        } else {
            Some(after)
        };
        Ok(r.change(path, Some(text), after))
    };
    match kind {
        InitramfsKind::InitramfsTools => {
            changed |= edit_list(r, initramfs_tools::PATH, initramfs_tools::edit)?;
            if by_address {
                r.note(gettext_f(
                    "initramfs-tools does not copy udev rules into the initramfs: the address binding works when the graphics driver of the card is not loaded from the initramfs (the usual case unless it was added to /etc/initramfs-tools/modules).",
                    &[],
                ));
            }
            if changed {
                r.command(argv(&["update-initramfs", "-u", "-k", "all"]));
            }
        }
        InitramfsKind::Dracut => {
            let before = read(r.root, dracut::PATH)?;
            let after = reserved_any.then(|| {
                let mut text = dracut::render(&modules);
                if by_address {
                    text.push_str(DRACUT_UDEV_LINE);
                }
                text
            });
            changed |= r.change(dracut::PATH, before, after);
            if changed {
                r.command(argv(&["dracut", "--regenerate-all", "--force"]));
            }
        }
        InitramfsKind::Mkinitcpio => {
            // mkinitcpio 36 and later read /etc/mkinitcpio.conf.d: there Passthrough's own
            // drop-in carries the modules and /etc/mkinitcpio.conf stays as the user wrote
            // it (the helper's sandbox can only rewrite /etc/mkinitcpio.conf in place, not
            // replace it atomically).
            // Older mkinitcpio has no such directory: then MODULES is edited in place.
            // Where the modules went before stays where they go, so a re-render never moves
            // them (our own FILES drop-in can create the directory on an older system).
            let conf_has_modules = read(r.root, mkinitcpio::PATH)?.is_some_and(|text| {
                let present = mkinitcpio::modules(&text);
                dracut::MODULES
                    .iter()
                    .all(|m| present.iter().any(|p| p == m))
            });
            let dropin_dir = r.root.path("/etc/mkinitcpio.conf.d").is_dir() && !conf_has_modules;
            let mut dropin = String::new();
            if dropin_dir && reserved_any {
                dropin.push_str(&mkinitcpio_modules_dropin(&modules));
            } else {
                changed |= edit_list(r, mkinitcpio::PATH, mkinitcpio::edit)?;
            }
            if by_address {
                dropin.push_str(MKINITCPIO_DROPIN);
            }
            let before = read(r.root, MKINITCPIO_DROPIN_PATH)?;
            let after = (!dropin.is_empty()).then_some(dropin);
            changed |= r.change(MKINITCPIO_DROPIN_PATH, before, after);
            if changed {
                r.command(argv(&["mkinitcpio", "-P"]));
            }
        }
        InitramfsKind::Booster => {
            changed |= edit_list(r, booster::PATH, booster_edit)?;
            if by_address {
                r.note(gettext_f(
                    "booster does not run udev rules in its initramfs: the address binding works when the graphics driver of the card is not loaded from the initramfs.",
                    &[],
                ));
            }
            if changed {
                let kernels = installed_kernels(r.root);
                if kernels.is_empty() {
                    r.command(argv(&[
                        "booster",
                        "build",
                        "--force",
                        "/boot/booster-linux.img",
                    ]));
                }
                for (version, _) in kernels {
                    let base = r
                        .root
                        .read_value(format!("/usr/lib/modules/{version}/pkgbase"))
                        .ok()
                        .filter(|b| !b.is_empty() && !b.contains('/'))
                        .unwrap_or_else(|| version.clone());
                    r.command(vec![
                        "booster".into(),
                        "build".into(),
                        "--force".into(),
                        "--kernel-version".into(),
                        version,
                        format!("/boot/booster-{base}.img"),
                    ]);
                }
            }
        }
        InitramfsKind::Unknown => {
            if reserved_any {
                r.note(gettext_f(
                    "Passthrough does not know how this host builds its initramfs: make sure it loads vfio_pci, vfio and vfio_iommu_type1 before the graphics drivers.",
                    &[],
                ));
            }
        }
    }
    Ok(())
}

/// [`booster::edit`], dropping a `modules_force_load:` line left with no module, so that
/// releasing gives back the file as it was before Passthrough added the line.
fn booster_edit(text: &str, add: &[&str], remove: &[&str]) -> Result<String, EditError> {
    let out = booster::edit(text, add, remove)?;
    if out == text || !booster::modules(&out).is_empty() {
        return Ok(out);
    }
    let empty = |line: &str| {
        line.strip_prefix("modules_force_load:")
            .is_some_and(|v| matches!(v.trim(), "" | "\"\"" | "''"))
    };
    Ok(out
        .split_inclusive('\n')
        .filter(|l| !empty(l.trim_end_matches(['\n', '\r'])))
        .collect())
}

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

// ---------------------------------------------------------------------------------------

/// The plan as a unified diff of every file (`--- a/etc/default/grub`, `/dev/null` for a
/// new or removed file), then the commands as `$ update-grub` lines.
pub fn unified_diff(r: &Rendered) -> String {
    let mut out = String::new();
    for f in &r.files {
        let rel = f.path.trim_start_matches('/');
        let old_name = match f.before {
            Some(_) => format!("a/{rel}"),
            None => "/dev/null".to_owned(),
        };
        let new_name = match f.after {
            Some(_) => format!("b/{rel}"),
            None => "/dev/null".to_owned(),
        };
        let old = f.before.as_deref().unwrap_or("");
        let new = f.after.as_deref().unwrap_or("");
        let diff = similar::TextDiff::from_lines(old, new);
        let text = diff
            .unified_diff()
            .context_radius(3)
            .header(&old_name, &new_name)
            .to_string();
        if text.is_empty() {
            // Both empty: a new or removed empty file.
            out.push_str(&format!("--- {old_name}\n+++ {new_name}\n"));
        }
        out.push_str(&text);
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    for c in &r.commands {
        out.push_str("$ ");
        out.push_str(&shell_join(c));
        out.push('\n');
    }
    out
}

/// Joins argv for display, quoting words a shell would split.
fn shell_join(argv: &[String]) -> String {
    argv.iter()
        .map(|w| {
            let plain = !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_=.,:/+@%".contains(&b));
            if plain {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions() {
        assert_eq!(parse_kernel_version("6.5.6-300.fc39.x86_64"), Some((6, 5)));
        assert_eq!(parse_kernel_version("5.19.17"), Some((5, 19)));
        assert_eq!(parse_kernel_version("6.1.0-13-amd64"), Some((6, 1)));
        assert_eq!(parse_kernel_version("linux"), None);
    }

    #[test]
    fn udev_rules_round_trip() {
        let set: BTreeSet<PciAddress> = ["0000:42:00.0", "0000:42:00.1"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let text = render_udev(&set);
        assert!(text.contains(
            "ACTION==\"add\", SUBSYSTEM==\"pci\", KERNEL==\"0000:42:00.0\", ATTR{driver_override}=\"vfio-pci\"\n"
        ));
        assert_eq!(udev_addresses(&text), set.into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn vfio_ids_in_both_spellings() {
        let words: Vec<String> = [
            "quiet",
            "vfio_pci.ids=10DE:1c02,10de:10f1",
            "vfio-pci.ids=1002:67ff",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(vfio_ids_of(&words), ["10de:1c02", "10de:10f1", "1002:67ff"]);
    }

    #[test]
    fn commands_are_shown_quoted() {
        let argv = vec!["grubby".to_owned(), "--args=a b".to_owned()];
        assert_eq!(shell_join(&argv), "grubby '--args=a b'");
    }
}
