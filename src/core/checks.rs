//! The System check: one verdict per fact, with what it means and what to do next.

use serde::Serialize;

use crate::boot::{BootLoaderKind, InitramfsKind};
use crate::cpu::CpuVendor;
use crate::gpu::Verdict;
use crate::i18n::{gettext_f, ngettext_f};
use crate::report::HostReport;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Info,
    Warning,
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub id: &'static str,
    pub status: Status,
    pub title: String,
    /// What was found, in one line.
    pub summary: String,
    /// What it means and what to do next.
    pub detail: String,
}

fn check(
    id: &'static str,
    status: Status,
    title: String,
    summary: String,
    detail: String,
) -> Check {
    Check {
        id,
        status,
        title,
        summary,
        detail,
    }
}

pub fn run(r: &HostReport) -> Vec<Check> {
    let mut out = vec![cpu(r), kvm(r), iommu(r)];
    out.extend(kernel_args(r));
    out.push(boot_loader(r));
    out.push(initramfs(r));
    out.push(libvirt(r));
    out.push(libvirt_group(r));
    out.push(firmware(r));
    out.push(virtio_win(r));
    out.push(gpus(r));
    out
}

/// The worst status among the checks: `passthroughctl check` fails on `Error`.
pub fn worst(checks: &[Check]) -> Status {
    checks.iter().map(|c| c.status).max().unwrap_or(Status::Ok)
}

fn cpu(r: &HostReport) -> Check {
    let title = gettext_f("Processor virtualization", &[]);
    let Some(cpu) = &r.cpu else {
        return check(
            "cpu",
            Status::Warning,
            title,
            gettext_f("Unknown processor", &[]),
            gettext_f(
                "/proc/cpuinfo could not be read, so hardware virtualization could not be checked.",
                &[],
            ),
        );
    };
    let model = cpu
        .model_name
        .clone()
        .unwrap_or_else(|| cpu.vendor_id.clone());
    let (tech, setting) = match cpu.vendor {
        CpuVendor::Amd => ("AMD-V (SVM)", "SVM Mode"),
        CpuVendor::Intel => ("Intel VT-x", "Intel Virtualization Technology"),
        CpuVendor::Other => ("SVM/VT-x", "SVM / VT-x"),
    };
    match &cpu.virt_flag {
        Some(_) => {
            let mut detail = gettext_f(
                "{tech} is on, so KVM can run virtual machines at full speed.",
                &[("tech", tech)],
            );
            if cpu.in_vm {
                detail.push(' ');
                detail.push_str(&gettext_f(
                    "This host is itself a virtual machine: passthrough needs nested virtualization and a physical GPU given to this VM.",
                    &[],
                ));
            }
            check(
                "cpu",
                Status::Ok,
                title,
                gettext_f(
                    "{model}: {tech} available",
                    &[("model", &model), ("tech", tech)],
                ),
                detail,
            )
        }
        None => check(
            "cpu",
            Status::Error,
            title,
            gettext_f(
                "{model}: {tech} is off",
                &[("model", &model), ("tech", tech)],
            ),
            if cpu.in_vm {
                gettext_f("This host is a virtual machine without nested virtualization: its hypervisor must expose {tech} to it.", &[("tech", tech)])
            } else {
                gettext_f(
                    "Turn on “{setting}” in the firmware setup (BIOS/UEFI, often under Advanced → CPU Configuration), then restart.",
                    &[("setting", setting)],
                )
            },
        ),
    }
}

fn kvm(r: &HostReport) -> Check {
    let title = gettext_f("KVM", &[]);
    if r.kvm {
        check(
            "kvm",
            Status::Ok,
            title,
            gettext_f("/dev/kvm is present", &[]),
            gettext_f("The kernel's hypervisor is loaded.", &[]),
        )
    } else {
        check(
            "kvm",
            Status::Error,
            title,
            gettext_f("/dev/kvm is missing", &[]),
            gettext_f(
                "The kvm module is not loaded: usually because processor virtualization is off in the firmware setup. Turn it on and restart.",
                &[],
            ),
        )
    }
}

fn iommu(r: &HostReport) -> Check {
    let title = gettext_f("IOMMU", &[]);
    let amd = r.cpu.as_ref().map(|c| c.vendor) == Some(CpuVendor::Amd);
    let mut detail_extra = String::new();
    if r.args.has_invalid_amd_iommu_on() {
        detail_extra = format!(
            " {}",
            gettext_f(
                "The command line has amd_iommu=on, which is not a value the kernel knows: it is ignored and harmless, because the IOMMU is on by default on AMD. Passthrough never writes it.",
                &[]
            )
        );
    }
    if r.pci.iommu_enabled {
        let groups = r.pci.groups().len() as u32;
        let mut detail = gettext_f("The kernel isolates devices with the IOMMU; the groups are listed in the Graphics card step.", &[]);
        detail.push_str(&detail_extra);
        return check(
            "iommu",
            Status::Ok,
            title,
            ngettext_f("On, {n} IOMMU group", "On, {n} IOMMU groups", groups, &[]),
            detail,
        );
    }
    let mut detail = if r.args.iommu_disabled() {
        gettext_f("The kernel command line turns the IOMMU off. Remove that argument in the Boot configuration step.", &[])
    } else if amd {
        gettext_f(
            "Turn on the IOMMU (often called “IOMMU” or “AMD-Vi”, under AMD CBS) and SVM in the firmware setup, then restart. No kernel argument is needed on AMD.",
            &[],
        )
    } else if r.args.intel_iommu_on() {
        gettext_f("intel_iommu=on is set, yet there are no groups: turn on VT-d in the firmware setup, then restart.", &[])
    } else {
        gettext_f(
            "Turn on VT-d in the firmware setup, then add intel_iommu=on in the Boot configuration step and restart.",
            &[],
        )
    };
    detail.push_str(&detail_extra);
    check(
        "iommu",
        Status::Error,
        title,
        gettext_f("Off: no IOMMU groups", &[]),
        detail,
    )
}

fn kernel_args(r: &HostReport) -> Option<Check> {
    let cmdline = r.cmdline.as_ref()?;
    let relevant: Vec<String> = cmdline.relevant().iter().map(|a| a.to_string()).collect();
    let title = gettext_f("Kernel arguments", &[]);
    let summary = if relevant.is_empty() {
        gettext_f("No passthrough arguments", &[])
    } else {
        relevant.join(" ")
    };
    let mut status = Status::Ok;
    let mut parts = Vec::new();
    if !r.args.vfio_pci_ids.is_empty() {
        parts.push(gettext_f(
            "vfio-pci reserves {ids} at boot.",
            &[("ids", &r.args.vfio_pci_ids.join(", "))],
        ));
    }
    if let Some(acs) = &r.args.pcie_acs_override {
        status = Status::Warning;
        parts.push(gettext_f(
            "pcie_acs_override={value} splits IOMMU groups by assumption, not by hardware: devices can still reach each other by peer-to-peer DMA.",
            &[("value", acs)],
        ));
    }
    if r.args.has_invalid_amd_iommu_on() {
        status = status.max(Status::Info);
        parts.push(gettext_f(
            "amd_iommu=on is not a valid value and does nothing.",
            &[],
        ));
    }
    if parts.is_empty() {
        parts.push(gettext_f(
            "The arguments that matter for passthrough, as the running kernel was started.",
            &[],
        ));
    }
    Some(check(
        "kernel-args",
        status,
        title,
        summary,
        parts.join(" "),
    ))
}

fn boot_loader(r: &HostReport) -> Check {
    let title = gettext_f("Boot loader", &[]);
    let b = &r.boot_loader;
    if b.kind == BootLoaderKind::Unknown {
        return check(
            "boot-loader",
            Status::Warning,
            title,
            gettext_f("Not recognized", &[]),
            gettext_f(
                "Passthrough knows GRUB, systemd-boot, kernelstub, grubby and rpm-ostree. With another boot loader, kernel arguments must be added by hand.",
                &[],
            ),
        );
    }
    let detail = match (&b.config, &b.apply_command) {
        (Some(cfg), Some(cmd)) => gettext_f(
            "Kernel arguments live in {file}; changes are applied with {command}.",
            &[("file", cfg), ("command", cmd)],
        ),
        (None, Some(cmd)) => gettext_f(
            "Kernel arguments are changed with {command}.",
            &[("command", cmd)],
        ),
        _ => String::new(),
    };
    check(
        "boot-loader",
        Status::Ok,
        title,
        b.kind.display_name().to_owned(),
        detail,
    )
}

fn initramfs(r: &HostReport) -> Check {
    let title = gettext_f("Initramfs", &[]);
    if r.initramfs == InitramfsKind::Unknown {
        return check(
            "initramfs",
            Status::Warning,
            title,
            gettext_f("Not recognized", &[]),
            gettext_f(
                "vfio-pci must load from the initramfs to claim the card before its host driver. Passthrough knows initramfs-tools, dracut, mkinitcpio and booster.",
                &[],
            ),
        );
    }
    check(
        "initramfs",
        Status::Ok,
        title,
        r.initramfs.display_name().to_owned(),
        gettext_f(
            "vfio-pci will be added to it so it claims the card early in boot.",
            &[],
        ),
    )
}

fn libvirt(r: &HostReport) -> Check {
    let title = gettext_f("libvirt", &[]);
    let l = &r.libvirt;
    match (l.installed, l.running) {
        (true, true) => check(
            "libvirt",
            Status::Ok,
            title,
            gettext_f("Installed and running", &[]),
            gettext_f("Virtual machines are created and started through libvirt (qemu:///system).", &[]),
        ),
        (true, false) => check(
            "libvirt",
            Status::Warning,
            title,
            gettext_f("Installed, not running", &[]),
            gettext_f("Start it with “systemctl enable --now libvirtd” (or virtqemud.socket on newer systems).", &[]),
        ),
        (false, _) => check(
            "libvirt",
            Status::Error,
            title,
            gettext_f("Not installed", &[]),
            gettext_f(
                "Install libvirt and QEMU: on Debian and Ubuntu “libvirt-daemon-system qemu-system-x86”, on Fedora “@virtualization”, on Arch “libvirt qemu-desktop”.",
                &[],
            ),
        ),
    }
}

fn libvirt_group(r: &HostReport) -> Check {
    let title = gettext_f("libvirt group", &[]);
    let l = &r.libvirt;
    let user = l.user.clone().unwrap_or_else(|| "?".into());
    match &l.user_group {
        Some(g) => check(
            "libvirt-group",
            Status::Ok,
            title,
            gettext_f("{user} is in the {group} group", &[("user", &user), ("group", g)]),
            gettext_f("You can manage system virtual machines without a password prompt.", &[]),
        ),
        None if !l.group_exists => check(
            "libvirt-group",
            Status::Info,
            title,
            gettext_f("No libvirt group on this host", &[]),
            gettext_f("The group appears when libvirt is installed; until then libvirt asks for a password each time.", &[]),
        ),
        None => check(
            "libvirt-group",
            Status::Warning,
            title,
            gettext_f("{user} is not in the libvirt group", &[("user", &user)]),
            gettext_f(
                "Without it every libvirt action asks for a password. Add yourself with “sudo usermod -aG libvirt {user}”, then log out and back in.",
                &[("user", &user)],
            ),
        ),
    }
}

fn firmware(r: &HostReport) -> Check {
    let title = gettext_f("UEFI firmware (OVMF)", &[]);
    match r.firmware.ovmf.first() {
        Some(fw) => {
            let detail = if r.firmware.secure_boot_available() {
                gettext_f("Found {path}. A Secure Boot build is available too, which Windows 11 needs.", &[("path", &fw.code)])
            } else {
                gettext_f("Found {path}. No Secure Boot build was found: Windows 11 needs one.", &[("path", &fw.code)])
            };
            let status = if r.firmware.secure_boot_available() { Status::Ok } else { Status::Info };
            check("firmware", status, title, fw.description.clone(), detail)
        }
        None => check(
            "firmware",
            Status::Error,
            title,
            gettext_f("Not found", &[]),
            gettext_f(
                "GPU passthrough needs UEFI firmware for the VM. Install “ovmf” (Debian, Ubuntu), “edk2-ovmf” (Fedora, Arch).",
                &[],
            ),
        ),
    }
}

fn virtio_win(r: &HostReport) -> Check {
    let title = gettext_f("virtio-win drivers", &[]);
    match &r.virtio_win {
        Some(path) => check(
            "virtio-win",
            Status::Ok,
            title,
            path.clone(),
            gettext_f("Windows needs these drivers for the fast virtio disk and network, and the QXL display driver.", &[]),
        ),
        None => check(
            "virtio-win",
            Status::Info,
            title,
            gettext_f("No virtio-win ISO found", &[]),
            gettext_f(
                "Download virtio-win.iso from the Fedora project (fedorapeople.org) into Downloads; the Virtual machine step finds it there.",
                &[],
            ),
        ),
    }
}

fn gpus(r: &HostReport) -> Check {
    let title = gettext_f("Graphics cards", &[]);
    let total = r.gpus.len() as u32;
    let passable = r.passable_gpus().count() as u32;
    if total == 0 {
        return check(
            "gpus",
            Status::Error,
            title,
            gettext_f("No graphics card found", &[]),
            gettext_f("No PCI display controller is visible on this host.", &[]),
        );
    }
    let summary = ngettext_f("{n} graphics card", "{n} graphics cards", total, &[]);
    let (status, detail) = if passable > 0 {
        (
            Status::Ok,
            ngettext_f(
                "{n} of them can be passed through as it is. Pick one in the Graphics card step.",
                "{n} of them can be passed through as they are. Pick one in the Graphics card step.",
                passable,
                &[],
            ),
        )
    } else if r.gpus.iter().all(|g| g.verdict == Verdict::NoIommu) {
        (
            Status::Warning,
            gettext_f(
                "Turn on the IOMMU first; then their groups can be checked.",
                &[],
            ),
        )
    } else {
        (
            Status::Warning,
            gettext_f("None is alone in its IOMMU group. The Graphics card step explains why and what you can do.", &[]),
        )
    };
    check("gpus", status, title, summary, detail)
}
