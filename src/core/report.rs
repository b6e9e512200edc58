//! [`HostReport`]: every fact Passthrough knows about a host, read in one pass.

use serde::Serialize;

use crate::boot::{kernel_release, BootLoader, InitramfsKind};
use crate::cmdline::{KernelCmdline, PassthroughArgs};
use crate::cpu::CpuInfo;
use crate::firmware::{find_virtio_win, FirmwareInfo};
use crate::gpu::{verdicts, GpuVerdict, VerdictContext};
use crate::i18n::gettext_f;
use crate::libvirt::{current_user, home_of, LibvirtInfo};
use crate::note::Note;
use crate::pci::PciScan;
use crate::root::HostRoot;

#[derive(Debug, Clone, Default)]
pub struct ScanOptions {
    /// Whose libvirt group membership and home directory to look at; by default the user
    /// running the program (or a fixture's first regular user).
    pub user: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostReport {
    pub root: String,
    pub cpu: Option<CpuInfo>,
    pub kvm: bool,
    pub kernel_release: Option<String>,
    pub cmdline: Option<KernelCmdline>,
    pub args: PassthroughArgs,
    pub boot_loader: BootLoader,
    pub initramfs: InitramfsKind,
    pub libvirt: LibvirtInfo,
    pub firmware: FirmwareInfo,
    pub virtio_win: Option<String>,
    pub pci: PciScan,
    pub gpus: Vec<GpuVerdict>,
    /// Problems with the host as a whole (unreadable files and such).
    pub notes: Vec<Note>,
}

impl HostReport {
    pub fn scan(root: &HostRoot, options: &ScanOptions) -> Self {
        let mut notes = Vec::new();
        let cpu = CpuInfo::read(root);
        if cpu.is_none() {
            notes.push(Note::warning(
                "cpuinfo-unreadable",
                gettext_f(
                    "Cannot read the processor's details from /proc/cpuinfo.",
                    &[],
                ),
            ));
        }
        let cmdline = match root.read_string("/proc/cmdline") {
            Ok(text) => Some(KernelCmdline::parse(&text)),
            Err(e) => {
                notes.push(Note::warning(
                    "cmdline-unreadable",
                    gettext_f(
                        "Cannot read the kernel command line (/proc/cmdline): {error}",
                        &[("error", &e.to_string())],
                    ),
                ));
                None
            }
        };
        let args = cmdline
            .as_ref()
            .map(KernelCmdline::passthrough_args)
            .unwrap_or_default();
        let user = options.user.clone().or_else(|| current_user(root));
        let libvirt = LibvirtInfo::detect(root, user.as_deref());
        let home = user.as_deref().and_then(|u| home_of(root, u));
        let pci = PciScan::read(root);
        let ctx = VerdictContext {
            args: &args,
            cpu_vendor: cpu.as_ref().map(|c| c.vendor),
        };
        let gpus = verdicts(&pci, &ctx);
        Self {
            root: root.base().display().to_string(),
            kvm: root.exists("/dev/kvm"),
            kernel_release: kernel_release(root),
            boot_loader: BootLoader::detect(root),
            initramfs: InitramfsKind::detect(root),
            firmware: FirmwareInfo::detect(root),
            virtio_win: find_virtio_win(root, home.as_deref()),
            cpu,
            cmdline,
            args,
            libvirt,
            pci,
            gpus,
            notes,
        }
    }

    /// GPUs that can be passed through as they are.
    pub fn passable_gpus(&self) -> impl Iterator<Item = &GpuVerdict> {
        self.gpus
            .iter()
            .filter(|g| g.verdict == crate::gpu::Verdict::Isolated)
    }
}
