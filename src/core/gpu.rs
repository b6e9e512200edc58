//! GPU verdicts: can this card be passed through, what goes with it, what stands in the way.

use std::collections::HashMap;

use serde::{Serialize, Serializer};

use crate::cmdline::PassthroughArgs;
use crate::cpu::CpuVendor;
use crate::i18n::{gettext_f, ngettext_f};
use crate::note::Note;
use crate::pci::{speed_generation, speed_gts, Link, PciAddress, PciDevice, PciScan};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// No device in the card's groups other than its own functions and bridges.
    Isolated,
    /// Other devices share the group: they would have to go to the VM too.
    Shared,
    /// The IOMMU is off, or the kernel gave the card no group.
    NoIommu,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lanes {
    Cpu,
    Chipset,
    Unknown,
}

fn hex16<S: Serializer>(v: &Option<u16>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(&format_args!("{v:04x}")),
        None => s.serialize_none(),
    }
}

/// One GPU with its verdict, in the shape of `passthroughctl gpus --json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GpuVerdict {
    pub address: PciAddress,
    #[serde(serialize_with = "hex16")]
    pub vendor_id: Option<u16>,
    #[serde(serialize_with = "hex16")]
    pub device_id: Option<u16>,
    pub vendor: Option<String>,
    pub name: Option<String>,
    pub class: Option<String>,
    pub driver: Option<String>,
    pub boot_vga: bool,
    pub iommu_group: Option<u32>,
    pub verdict: Verdict,
    pub companions: Vec<PciAddress>,
    pub blockers: Vec<PciAddress>,
    /// The link of the slot: the card's own, or its on-card switch's upstream port.
    pub link: Link,
    pub lanes: Lanes,
    /// Why the verdict is what it is, in a sentence or two.
    pub explanation: String,
    /// What the user can do about a shared group or a missing IOMMU.
    pub options: Vec<String>,
    pub notes: Vec<Note>,
    /// Bridges between the root complex and the card, root-most first.
    pub bridges: Vec<PciAddress>,
}

impl GpuVerdict {
    /// `"10de:1c02"`, as vfio-pci.ids wants it.
    pub fn ids(&self) -> Option<String> {
        Some(format!("{:04x}:{:04x}", self.vendor_id?, self.device_id?))
    }

    pub fn display_name(&self) -> String {
        match (&self.vendor, &self.name) {
            (Some(v), Some(n)) => format!("{v} {n}"),
            _ => match self.ids() {
                Some(ids) => gettext_f("Device {ids}", &[("ids", &ids)]),
                None => self.address.to_string(),
            },
        }
    }
}

/// Switches that belong to AMD chipsets (400/500/X570/600 series): a device behind one uses
/// chipset lanes.
const AMD_CHIPSET_SWITCHES: &[u16] = &[
    0x43c6, 0x43c7, 0x43e9, 0x43ea, 0x57ad, 0x57a3, 0x57a4, 0x43f4, 0x43f5, 0x43b4, 0x43b6,
];

fn is_chipset_bridge(d: &PciDevice) -> bool {
    match (d.vendor_id, d.device_id) {
        (Some(0x1022), Some(id)) => AMD_CHIPSET_SWITCHES.contains(&id),
        // Intel PCH root ports sit at devices 1b–1d of bus 0; the CPU's at 01 and 06.
        (Some(0x8086), Some(_)) => d.address.bus == 0 && (0x1b..=0x1d).contains(&d.address.device),
        _ => false,
    }
}

/// Where the card's lanes come from.
pub fn lanes(dev: &PciDevice, scan: &PciScan) -> Lanes {
    if !dev.chain_known {
        return Lanes::Unknown;
    }
    let bridges: Vec<&PciDevice> = dev.parents.iter().filter_map(|a| scan.get(a)).collect();
    if bridges.len() != dev.parents.len() {
        return Lanes::Unknown;
    }
    if bridges.iter().any(|b| is_chipset_bridge(b)) {
        return Lanes::Chipset;
    }
    let host_vendor = |v: Option<u16>| matches!(v, Some(0x8086 | 0x1022));
    match bridges.first() {
        Some(root_port) if host_vendor(root_port.vendor_id) => Lanes::Cpu,
        None if dev.address.bus == 0 && host_vendor(dev.vendor_id) => Lanes::Cpu,
        _ => Lanes::Unknown,
    }
}

/// The device whose link is the slot's: the card itself, or the topmost bridge of the card's
/// own PCIe switch (Radeon RX 5000 and later put one on the card).
fn slot_device<'a>(dev: &'a PciDevice, scan: &'a PciScan) -> &'a PciDevice {
    let mut slot = dev;
    for parent in dev.parents.iter().rev().filter_map(|a| scan.get(a)) {
        if parent.vendor_id.is_some() && parent.vendor_id == dev.vendor_id && parent.is_bridge() {
            slot = parent;
        } else {
            break;
        }
    }
    slot
}

/// Context the verdicts need beyond the PCI scan.
pub struct VerdictContext<'a> {
    pub args: &'a PassthroughArgs,
    pub cpu_vendor: Option<CpuVendor>,
}

pub fn verdicts(scan: &PciScan, ctx: &VerdictContext<'_>) -> Vec<GpuVerdict> {
    let gpu_count = scan.devices.iter().filter(|d| d.is_gpu()).count();
    // Devices by group, built once, so the whole pass stays linear in the number of devices.
    let mut by_group: HashMap<u32, Vec<&PciDevice>> = HashMap::new();
    for d in &scan.devices {
        if let Some(g) = d.iommu_group {
            by_group.entry(g).or_default().push(d);
        }
    }
    scan.devices
        .iter()
        .filter(|d| d.is_gpu())
        .map(|d| verdict_for(d, scan, &by_group, ctx, gpu_count))
        .collect()
}

fn list_devices(scan: &PciScan, addrs: &[PciAddress]) -> String {
    addrs
        .iter()
        .map(|a| match scan.get(a) {
            Some(d) => format!("{a} {} ({})", d.short_name(), d.class_label()),
            None => a.to_string(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn verdict_for(
    dev: &PciDevice,
    scan: &PciScan,
    by_group: &HashMap<u32, Vec<&PciDevice>>,
    ctx: &VerdictContext<'_>,
    gpu_count: usize,
) -> GpuVerdict {
    // Devices are sorted by address, so the functions of one slot sit next to each other.
    let first = scan.devices.partition_point(|o| {
        (o.address.domain, o.address.bus, o.address.device)
            < (dev.address.domain, dev.address.bus, dev.address.device)
    });
    let companions: Vec<PciAddress> = scan.devices[first..]
        .iter()
        .take_while(|o| o.address.same_slot(&dev.address))
        .filter(|o| o.address != dev.address)
        .map(|o| o.address)
        .collect();
    let mut groups: Vec<u32> = std::iter::once(dev)
        .chain(companions.iter().filter_map(|a| scan.get(a)))
        .filter_map(|d| d.iommu_group)
        .collect();
    groups.sort_unstable();
    groups.dedup();
    let members: Vec<&PciDevice> = groups
        .iter()
        .flat_map(|g| by_group.get(g).into_iter().flatten().copied())
        .collect();
    let mut blockers: Vec<PciAddress> = members
        .iter()
        .filter(|o| o.address != dev.address && !companions.contains(&o.address) && !o.is_bridge())
        .map(|o| o.address)
        .collect();
    blockers.sort();
    let lanes = lanes(dev, scan);
    let slot = slot_device(dev, scan);
    let group_s = dev.iommu_group.map(|g| g.to_string()).unwrap_or_default();
    let acs = ctx.args.pcie_acs_override.clone();

    let mut options = Vec::new();
    let (verdict, explanation) = if !scan.iommu_enabled || dev.iommu_group.is_none() {
        let explanation = if scan.iommu_enabled {
            gettext_f(
                "The kernel put this card in no IOMMU group, so it cannot be passed through.",
                &[],
            )
        } else {
            gettext_f("The IOMMU is off, so the kernel made no IOMMU groups and no device can be passed through yet.", &[])
        };
        options.push(match ctx.cpu_vendor {
            Some(CpuVendor::Intel) => gettext_f(
                "Turn on VT-d in the firmware setup (BIOS/UEFI) and add intel_iommu=on to the kernel command line (the Boot configuration step does this).",
                &[],
            ),
            Some(CpuVendor::Amd) => gettext_f(
                "Turn on SVM and the IOMMU (AMD-Vi) in the firmware setup (BIOS/UEFI). On AMD the kernel enables the IOMMU by itself; amd_iommu=on is not needed.",
                &[],
            ),
            _ => gettext_f("Turn on the IOMMU (VT-d or AMD-Vi) in the firmware setup (BIOS/UEFI).", &[]),
        });
        (Verdict::NoIommu, explanation)
    } else if blockers.is_empty() {
        let mut bridges_in_group: Vec<PciAddress> = members
            .iter()
            .filter(|o| o.is_bridge())
            .map(|o| o.address)
            .collect();
        bridges_in_group.sort();
        let mut text = if companions.is_empty() {
            gettext_f(
                "IOMMU group {group} holds only this card, so it can be passed through as it is.",
                &[("group", &group_s)],
            )
        } else {
            gettext_f(
                "IOMMU group {group} holds only this card and its own functions, so it can be passed through as it is.",
                &[("group", &group_s)],
            )
        };
        if !bridges_in_group.is_empty() {
            text.push(' ');
            text.push_str(&ngettext_f(
                "The bridge in the group ({bridges}) stays with the host; the kernel allows that.",
                "The {n} bridges in the group ({bridges}) stay with the host; the kernel allows that.",
                bridges_in_group.len() as u32,
                &[("bridges", &bridges_in_group.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", "))],
            ));
        }
        (Verdict::Isolated, text)
    } else {
        let mut text = ngettext_f(
            "IOMMU group {group} also holds {n} device that is not part of this card: {devices}. A VM can only take a whole group, so it would have to leave the host too.",
            "IOMMU group {group} also holds {n} devices that are not part of this card: {devices}. A VM can only take a whole group, so they would have to leave the host too.",
            blockers.len() as u32,
            &[("group", &group_s), ("devices", &list_devices(scan, &blockers))],
        );
        text.push(' ');
        text.push_str(&if lanes == Lanes::Chipset {
            gettext_f(
                "The card sits behind the chipset, whose ports do not isolate their devices from each other (no PCIe ACS), so the kernel groups them together.",
                &[],
            )
        } else {
            gettext_f(
                "The PCIe ports on the way to the card do not isolate it from these devices (no PCIe ACS), so the kernel groups them together.",
                &[],
            )
        });
        options.push(gettext_f(
            "Move the card to another slot, ideally one wired to the processor (on most boards the top x16 slot): such slots usually have a group of their own.",
            &[],
        ));
        options.push(gettext_f(
            "Update the firmware (BIOS) or the kernel: newer versions sometimes split the groups differently.",
            &[],
        ));
        options.push(gettext_f(
            "Use the ACS override (pcie_acs_override=downstream,multifunction). It needs a kernel with the ACS patch (for example linux-zen or XanMod) and only tells the kernel to assume an isolation the hardware does not provide: the card could then reach the other devices of the group by peer-to-peer DMA, outside the IOMMU's control. Use it only for a guest you trust.",
            &[],
        ));
        (Verdict::Shared, text)
    };

    let mut notes = Vec::new();
    if verdict == Verdict::Isolated {
        if let Some(acs) = &acs {
            notes.push(Note::warning(
                "acs-override-active",
                gettext_f(
                    "pcie_acs_override={value} is on the kernel command line: this isolation may exist only because the kernel was told to assume it. Devices the override separated can still reach each other by peer-to-peer DMA.",
                    &[("value", acs)],
                ),
            ));
        }
        let mut companion_groups: Vec<u32> = groups.clone();
        companion_groups.retain(|g| Some(*g) != dev.iommu_group);
        if !companion_groups.is_empty() {
            notes.push(Note::info(
                "companions-split",
                gettext_f(
                    "The card's other functions are in separate groups ({groups}); they still go to the VM together with it.",
                    &[("groups", &companion_groups.iter().map(|g| g.to_string()).collect::<Vec<_>>().join(", "))],
                ),
            ));
        }
    }
    if dev.boot_vga == Some(true) {
        notes.push(Note::warning(
            "boot-gpu",
            gettext_f(
                "This is the boot GPU: the firmware draws its screens on it and works on a modified copy of its ROM. Passing it through often fails (code 43, VIDEO_TDR_FAILURE loops, “BAR 0: can't reserve”). If you can, choose the other card as primary display in the firmware setup or swap the cards; otherwise Passthrough removes and rescans it before the VM starts.",
                &[],
            ),
        ));
    }
    if gpu_count == 1 {
        notes.push(Note::warning(
            "only-gpu",
            gettext_f(
                "This is the only graphics card of this host: once it belongs to the VM the host has no display of its own. Keep a second card or the processor's integrated graphics for the host, or plan to reach the host over the network.",
                &[],
            ),
        ));
    } else if dev.address.bus == 0
        && dev.parents.is_empty()
        && dev.chain_known
        && lanes == Lanes::Cpu
    {
        notes.push(Note::info(
            "integrated-gpu",
            gettext_f("This is the processor's integrated graphics: usually it stays with the host and the add-in card goes to the VM.", &[]),
        ));
    }
    if let Some(w) = slot.link.current_width.filter(|w| *w > 0) {
        let max = slot.link.max_width.unwrap_or(w);
        let gen = slot
            .link
            .current_speed
            .as_deref()
            .and_then(speed_generation)
            .unwrap_or("?");
        let (w_s, max_s) = (w.to_string(), max.to_string());
        if w <= 4 {
            notes.push(Note::warning(
                "narrow-link",
                gettext_f(
                    "The slot gives the card only PCIe {gen} x{width} (the card can use x{max}). Graphics cards want x8 or more: expect lower frame rates, and some cards do not work at all.",
                    &[("gen", gen), ("width", &w_s), ("max", &max_s)],
                ),
            ));
        } else if w < max {
            notes.push(Note::info(
                "reduced-link",
                gettext_f("The card runs at x{width} of its x{max} lanes: the slot is shared or narrower.", &[
                    ("width", &w_s),
                    ("max", &max_s),
                ]),
            ));
        }
    }
    if let (Some(cur), Some(max)) = (&slot.link.current_speed, &slot.link.max_speed) {
        if let (Some(c), Some(m)) = (speed_gts(cur), speed_gts(max)) {
            if c < m {
                notes.push(Note::info(
                    "slow-link",
                    gettext_f(
                        "The link runs at {current} of {max}. Graphics cards slow their link when idle, so check this again under load.",
                        &[("current", cur), ("max", max)],
                    ),
                ));
            }
        }
    }
    if lanes == Lanes::Chipset {
        notes.push(Note::info(
            "chipset-lanes",
            gettext_f(
                "The card is connected through the chipset: it shares the chipset's link to the processor with USB, SATA, network and other slots.",
                &[],
            ),
        ));
    }
    let driver_note = match dev.driver.as_deref() {
        Some("vfio-pci") => Note::info("driver-vfio", gettext_f("Reserved: vfio-pci holds the card, ready for a VM.", &[])),
        Some(drv) => Note::info(
            "driver-host",
            gettext_f("The host uses the card now (driver {driver}). The Boot configuration step reserves it for vfio-pci.", &[
                ("driver", drv),
            ]),
        ),
        None => Note::info("driver-none", gettext_f("No driver holds the card.", &[])),
    };
    notes.push(driver_note);
    if args_reserve(ctx.args, dev) {
        if let Some(drv) = dev.driver.as_deref().filter(|d| *d != "vfio-pci") {
            notes.push(Note::warning(
                "vfio-ids-ignored",
                gettext_f(
                    "vfio-pci.ids on the kernel command line names this card, yet {driver} holds it: the host driver was loaded first. vfio-pci must be loaded before it, from the initramfs (the Boot configuration step sets this up).",
                    &[("driver", drv)],
                ),
            ));
        }
    }
    notes.extend(dev.notes.iter().cloned());
    for c in companions.iter().filter_map(|a| scan.get(a)) {
        notes.extend(c.notes.iter().cloned());
    }

    GpuVerdict {
        address: dev.address,
        vendor_id: dev.vendor_id,
        device_id: dev.device_id,
        vendor: dev.vendor_name.clone(),
        name: dev.device_name.clone(),
        class: dev.class_hex(),
        driver: dev.driver.clone(),
        boot_vga: dev.boot_vga == Some(true),
        iommu_group: dev.iommu_group,
        verdict,
        companions,
        blockers,
        link: slot.link.clone(),
        lanes,
        explanation,
        options,
        notes,
        bridges: dev.parents.clone(),
    }
}

/// Whether the kernel command line already reserves this device by ID.
pub fn args_reserve(args: &PassthroughArgs, dev: &PciDevice) -> bool {
    dev.ids().is_some_and(|ids| {
        args.vfio_pci_ids
            .iter()
            .any(|i| i.eq_ignore_ascii_case(&ids))
    })
}
