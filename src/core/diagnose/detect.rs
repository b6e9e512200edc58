//! The detectors: each looks at one source (the host report, the kernel log, the QEMU log,
//! the domain XML) and reports `(entry id, evidence, fix)` for what it recognizes.

use crate::gpu::{GpuVerdict, Verdict};
use crate::i18n::gettext_f;
use crate::plan::Plan;
use crate::plan_render::parse_kernel_version;
use crate::report::HostReport;
use crate::root::HostRoot;
use crate::vm::code43;
use crate::vm::features::{self, Edit};

use super::patterns::{boot_gpu_id, found, scan, Finding, KERNEL_PATTERNS, QEMU_PATTERNS};
use super::types::FixAction;

fn hex(v: Option<u16>) -> String {
    v.map(|v| format!("{v:04x}")).unwrap_or_default()
}

/// The card is meant for a VM: vfio-pci holds it or vfio-pci.ids names it.
fn reserved(r: &HostReport, g: &GpuVerdict) -> bool {
    g.driver.as_deref() == Some("vfio-pci")
        || g.ids()
            .is_some_and(|ids| r.args.vfio_pci_ids.contains(&ids))
}

/// The boot GPU fix, unless the command line already has it.
fn boot_gpu_plan(r: &HostReport) -> Option<FixAction> {
    let has_fix = r.args.efifb_off() || r.args.initcall_blacklist.iter().any(|v| v == "sysfb_init");
    (!has_fix).then(|| {
        FixAction::Plan(Plan {
            boot_gpu_fix: true,
            ..Plan::default()
        })
    })
}

fn boot_gpu_finding(r: &HostReport, g: &GpuVerdict) -> Finding {
    found(
        boot_gpu_id(g),
        gettext_f(
            "{address} ({name}) is the boot GPU (boot_vga = 1) and is given to the VM.",
            &[
                ("address", &g.address.to_string()),
                ("name", &g.display_name()),
            ],
        ),
        boot_gpu_plan(r),
    )
}

/// The host's initramfs and module-loading files that can list modules.
fn module_lists(root: &HostRoot) -> Vec<(String, String)> {
    let mut paths: Vec<String> = [
        "/etc/initramfs-tools/modules",
        "/etc/mkinitcpio.conf",
        "/etc/modules",
        "/etc/booster.yaml",
    ]
    .iter()
    .map(|p| (*p).to_owned())
    .collect();
    for dir in [
        "/etc/mkinitcpio.conf.d",
        "/etc/dracut.conf.d",
        "/etc/modules-load.d",
    ] {
        if let Ok(names) = root.list_dir(dir) {
            paths.extend(names.into_iter().map(|n| format!("{dir}/{n}")));
        }
    }
    paths
        .into_iter()
        .filter_map(|p| {
            let text = root.read_string(&p).ok()?;
            Some((p, text))
        })
        .collect()
}

fn has_word(text: &str, word: &str) -> bool {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .any(|l| {
            l.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                .any(|w| w == word)
        })
}

/// Findings from the host report (and the configuration files under its root).
pub fn host(r: &HostReport) -> Vec<Finding> {
    let root = HostRoot::new(&r.root);
    let mut out = Vec::new();
    if !r.kvm {
        out.push(found(
            "kvm-missing",
            gettext_f("/dev/kvm does not exist.", &[]),
            None,
        ));
    }
    if !r.pci.iommu_enabled {
        let intel = r.cpu.as_ref().map(|c| c.vendor) == Some(crate::cpu::CpuVendor::Intel);
        let fix = (r.args.iommu_disabled() || (intel && !r.args.intel_iommu_on())).then(|| {
            FixAction::Plan(Plan {
                enable_iommu: true,
                ..Plan::default()
            })
        });
        out.push(found(
            "iommu-off",
            gettext_f("/sys/kernel/iommu_groups holds no group.", &[]),
            fix,
        ));
    }
    let any_isolated = r.gpus.iter().any(|g| g.verdict == Verdict::Isolated);
    for g in &r.gpus {
        let address = g.address.to_string();
        let name = g.display_name();
        let meant = reserved(r, g);
        if g.verdict == Verdict::Shared && (meant || !any_isolated) {
            let devices: Vec<String> = g.blockers.iter().map(|b| b.to_string()).collect();
            out.push(found(
                "group-shared",
                gettext_f(
                    "IOMMU group {group} of {address} ({name}) also holds {devices}.",
                    &[
                        (
                            "group",
                            &g.iommu_group.map(|n| n.to_string()).unwrap_or_default(),
                        ),
                        ("address", &address),
                        ("name", &name),
                        ("devices", &devices.join(", ")),
                    ],
                ),
                None,
            ));
        }
        if !meant {
            continue;
        }
        if g.boot_vga {
            out.push(boot_gpu_finding(r, g));
        }
        if let Some(width) = g.link.current_width.filter(|w| *w > 0 && *w <= 4) {
            out.push(found(
                "chipset-x4",
                gettext_f(
                    "{address} ({name}) runs at PCIe x{width} ({lanes}).",
                    &[
                        ("address", &address),
                        ("name", &name),
                        ("width", &width.to_string()),
                        ("lanes", &crate::markdown::lanes_label(g.lanes)),
                    ],
                ),
                None,
            ));
        }
        if let Some(family) = code43::reset_bug_family(&hex(g.vendor_id), &hex(g.device_id)) {
            out.push(found(
                "amd-reset-bug",
                gettext_f(
                    "{address} ({name}) belongs to the {family} family, which has the reset bug.",
                    &[("address", &address), ("name", &name), ("family", &family)],
                ),
                None,
            ));
        }
    }
    let persistenced = [
        "/etc/systemd/system/multi-user.target.wants/nvidia-persistenced.service",
        "/etc/systemd/system/default.target.wants/nvidia-persistenced.service",
    ]
    .into_iter()
    .find(|p| root.exists(p));
    if let Some(unit) = persistenced {
        let nvidia_to_pass = r.gpus.len() > 1
            && r.gpus.iter().any(|g| {
                g.vendor_id == Some(0x10de)
                    && g.driver.as_deref() == Some("nvidia")
                    && g.verdict == Verdict::Isolated
                    && !g.boot_vga
            });
        if nvidia_to_pass {
            out.push(found(
                "nvidia-persistenced",
                gettext_f(
                    "nvidia-persistenced is enabled ({unit}) while the nvidia driver holds a card that can be passed through.",
                    &[("unit", unit)],
                ),
                None,
            ));
        }
    }
    let new_kernel = r
        .kernel_release
        .as_deref()
        .and_then(parse_kernel_version)
        .is_some_and(|v| v >= (6, 2));
    let lists = module_lists(&root);
    if new_kernel {
        if let Some((path, _)) = lists.iter().find(|(_, text)| has_word(text, "vfio_virqfd")) {
            let reserve: Vec<_> = r
                .gpus
                .iter()
                .filter(|g| g.driver.as_deref() == Some("vfio-pci"))
                .map(|g| g.address)
                .collect();
            let fix = (!reserve.is_empty()).then(|| {
                FixAction::Plan(Plan {
                    reserve,
                    ..Plan::default()
                })
            });
            out.push(found(
                "vfio-virqfd",
                gettext_f(
                    "{path} lists vfio_virqfd, but the kernel is {release}.",
                    &[
                        ("path", path),
                        ("release", r.kernel_release.as_deref().unwrap_or_default()),
                    ],
                ),
                fix,
            ));
        }
    }
    if let Some((path, _)) = lists.iter().find(|(path, text)| {
        path.starts_with("/etc/dracut.conf.d/") && !path.ends_with(".conf") && text.contains("vfio")
    }) {
        out.push(found(
            "dracut-no-conf",
            gettext_f(
                "{path} mentions vfio but dracut ignores it: its name does not end in .conf.",
                &[("path", path)],
            ),
            None,
        ));
    }
    if r.libvirt.installed && r.firmware.ovmf.is_empty() {
        out.push(found(
            "ovmf-missing",
            gettext_f("libvirt is installed but no OVMF firmware was found.", &[]),
            None,
        ));
    }
    if let (true, true, Some(user), None) = (
        r.libvirt.installed,
        r.libvirt.group_exists,
        r.libvirt.user.as_deref(),
        r.libvirt.user_group.as_deref(),
    ) {
        out.push(found(
            "libvirt-group",
            gettext_f("{user} is not in the libvirt group.", &[("user", user)]),
            None,
        ));
    }
    if let Some(value) = &r.args.pcie_acs_override {
        out.push(found(
            "acs-override",
            gettext_f(
                "The kernel command line has pcie_acs_override={value}.",
                &[("value", value)],
            ),
            None,
        ));
    }
    if r.args.has_invalid_amd_iommu_on() {
        out.push(found(
            "amd-iommu-on",
            gettext_f("The kernel command line has amd_iommu=on.", &[]),
            Some(FixAction::Plan(Plan {
                enable_iommu: true,
                ..Plan::default()
            })),
        ));
    }
    out
}

/// Findings from the kernel log; the boot GPU fix goes with the framebuffer's BAR.
pub fn kernel_log(r: &HostReport, log: &str) -> Vec<Finding> {
    let mut out = scan(log, KERNEL_PATTERNS);
    for f in &mut out {
        match f.id {
            "framebuffer-bar" => f.fix = boot_gpu_plan(r),
            "amd-iommu-on" => {
                f.fix = Some(FixAction::Plan(Plan {
                    enable_iommu: true,
                    ..Plan::default()
                }))
            }
            _ => {}
        }
    }
    out
}

/// Findings from libvirt's QEMU log of a VM.
pub fn qemu_log(r: &HostReport, log: &str) -> Vec<Finding> {
    let mut out = scan(log, QEMU_PATTERNS);
    for f in &mut out {
        if f.id == "boot-gpu-tdr" {
            f.fix = boot_gpu_plan(r);
        }
    }
    out
}

/// The edits that bring a domain's code 43 settings up to a vendor's recommendation.
fn code43_edits(have: &crate::vm::Code43, want: &crate::vm::Code43) -> Vec<Edit> {
    let mut edits = Vec::new();
    if want.vendor_id.is_some() && have.vendor_id.is_none() {
        edits.push(Edit::VendorId(want.vendor_id.clone()));
    }
    if want.kvm_hidden && !have.kvm_hidden {
        edits.push(Edit::KvmHidden(true));
    }
    if want.ioapic_kvm && !have.ioapic_kvm {
        edits.push(Edit::IoapicKvm(true));
    }
    if want.ignore_msrs && !have.ignore_msrs {
        edits.push(Edit::IgnoreMsrs(true));
    }
    edits
}

fn edit_names(edits: &[Edit]) -> String {
    edits
        .iter()
        .map(|e| match e {
            Edit::VendorId(_) => "<hyperv><vendor_id>",
            Edit::KvmHidden(_) => "<kvm><hidden>",
            Edit::IoapicKvm(_) => "<ioapic driver='kvm'>",
            Edit::IgnoreMsrs(_) => "<msrs unknown='ignore'>",
            _ => "",
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Findings from the VM's domain XML (read with the host report's PCI devices).
pub fn domain_xml(r: &HostReport, xml: &str) -> Vec<Finding> {
    let Ok(settings) = features::read(xml) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for address in &settings.hostdevs {
        let Some(g) = r.gpus.iter().find(|g| g.address == *address) else {
            continue;
        };
        let name = g.display_name();
        let vendor = hex(g.vendor_id);
        let id = match vendor.as_str() {
            code43::NVIDIA => "code43-nvidia",
            code43::AMD => "code43-amd",
            _ => "",
        };
        if !id.is_empty() {
            let want = code43::recommended(&vendor, &hex(g.device_id));
            let edits = code43_edits(&settings.code43, &want);
            if !edits.is_empty() {
                out.push(found(
                    id,
                    gettext_f(
                        "The VM passes through {address} ({name}) without {settings}.",
                        &[
                            ("address", &address.to_string()),
                            ("name", &name),
                            ("settings", &edit_names(&edits)),
                        ],
                    ),
                    Some(FixAction::VmEdits(edits)),
                ));
            }
        }
        if g.boot_vga {
            out.push(boot_gpu_finding(r, g));
        }
    }
    let windows11 = xml.contains("microsoft.com/win/11");
    if windows11 && !(settings.efi && settings.secure_boot && settings.tpm) {
        let mut missing = Vec::new();
        if !settings.efi {
            missing.push("UEFI");
        }
        if !settings.secure_boot {
            missing.push("Secure Boot");
        }
        if !settings.tpm {
            missing.push("TPM");
        }
        out.push(found(
            "win11-secure-boot-tpm",
            gettext_f(
                "The Windows 11 VM has no {missing}.",
                &[("missing", &missing.join(", "))],
            ),
            None,
        ));
    }
    out
}
