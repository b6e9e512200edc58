//! The host model on fixture roots built from real listings (tests/fixtures/listings).

mod common;

use common::scan;
use passthrough_core::boot::{BootLoaderKind, InitramfsKind};
use passthrough_core::checks::{self, Status};
use passthrough_core::gpu::{GpuVerdict, Lanes, Verdict};
use passthrough_core::HostReport;

fn gpu<'a>(r: &'a HostReport, addr: &str) -> &'a GpuVerdict {
    r.gpus
        .iter()
        .find(|g| g.address.to_string() == addr)
        .unwrap_or_else(|| panic!("no GPU {addr}"))
}

fn addrs(v: &[passthrough_core::pci::PciAddress]) -> Vec<String> {
    v.iter().map(|a| a.to_string()).collect()
}

fn codes(g: &GpuVerdict) -> Vec<&'static str> {
    g.notes.iter().map(|n| n.code).collect()
}

#[test]
fn b550_blog_without_acs_override() {
    let r = scan("b550-blog");
    assert!(r.pci.iommu_enabled);
    assert_eq!(r.pci.groups().len(), 22, "groups 0–21 as in the post");
    assert_eq!(r.gpus.len(), 2);

    let gtx = gpu(&r, "0000:08:00.0");
    assert_eq!(gtx.verdict, Verdict::Isolated);
    assert_eq!(gtx.iommu_group, Some(16));
    assert_eq!(addrs(&gtx.companions), ["0000:08:00.1"]);
    assert!(gtx.blockers.is_empty());
    assert_eq!(gtx.lanes, Lanes::Cpu);
    assert!(gtx.boot_vga);
    assert_eq!(gtx.driver.as_deref(), Some("vfio-pci"));
    assert_eq!(gtx.ids().as_deref(), Some("10de:1c02"));
    assert_eq!(gtx.name.as_deref(), Some("GP106 [GeForce GTX 1060 3GB]"));
    assert!(codes(gtx).contains(&"boot-gpu"));
    assert!(!codes(gtx).contains(&"narrow-link"));

    let rx = gpu(&r, "0000:04:00.0");
    assert_eq!(rx.verdict, Verdict::Shared);
    assert_eq!(rx.iommu_group, Some(15));
    assert_eq!(addrs(&rx.companions), ["0000:04:00.1"]);
    // The chipset's USB, SATA, second NVMe, Wi-Fi and Ethernet; its bridges do not count.
    assert_eq!(
        addrs(&rx.blockers),
        [
            "0000:02:00.0",
            "0000:02:00.1",
            "0000:05:00.0",
            "0000:06:00.0",
            "0000:07:00.0"
        ]
    );
    assert_eq!(rx.lanes, Lanes::Chipset);
    assert!(
        codes(rx).contains(&"narrow-link"),
        "slot 2 is PCIe 3.0 x4: {:?}",
        codes(rx)
    );
    assert!(codes(rx).contains(&"chipset-lanes"));
    assert_eq!(
        rx.options.len(),
        3,
        "other slot, newer kernel/BIOS, ACS override"
    );
    assert!(rx.options[2].contains("pcie_acs_override"));
    assert!(
        rx.explanation.contains("0000:07:00.0"),
        "{}",
        rx.explanation
    );
    assert_eq!(
        addrs(&rx.bridges),
        ["0000:00:01.2", "0000:02:00.2", "0000:03:00.0"]
    );

    assert_eq!(r.boot_loader.kind, BootLoaderKind::Grub);
    assert_eq!(r.boot_loader.apply_command.as_deref(), Some("update-grub"));
    assert_eq!(r.initramfs, InitramfsKind::InitramfsTools);
    assert!(r.args.has_invalid_amd_iommu_on());
    assert_eq!(r.args.vfio_pci_ids, ["10de:1c02", "10de:10f1"]);
    assert_eq!(r.libvirt.user_group.as_deref(), Some("libvirt"));
    assert!(r.firmware.secure_boot_available());
    assert!(r.kvm);
    let checks = checks::run(&r);
    let iommu = checks.iter().find(|c| c.id == "iommu").unwrap();
    assert_eq!(iommu.status, Status::Ok);
    assert!(
        iommu.detail.contains("amd_iommu=on"),
        "the invalid value is explained"
    );
}

#[test]
fn b550_blog_with_acs_override() {
    let r = scan("b550-blog-acs");
    assert_eq!(r.pci.groups().len(), 29, "groups 0–28 as in the post");
    let rx = gpu(&r, "0000:04:00.0");
    assert_eq!(
        rx.verdict,
        Verdict::Isolated,
        "group 18 now holds a bridge and the card"
    );
    assert_eq!(rx.iommu_group, Some(18));
    assert!(codes(rx).contains(&"acs-override-active"));
    let gtx = gpu(&r, "0000:08:00.0");
    assert_eq!(gtx.verdict, Verdict::Isolated);
    assert_eq!(gtx.iommu_group, Some(22));
    assert!(
        codes(gtx).contains(&"companions-split"),
        "its audio function sits in group 23"
    );
    let checks = checks::run(&r);
    assert_eq!(
        checks
            .iter()
            .find(|c| c.id == "kernel-args")
            .unwrap()
            .status,
        Status::Warning
    );
}

#[test]
fn intel_igpu_and_nvidia_card() {
    let r = scan("intel-igpu-nvidia");
    let igpu = gpu(&r, "0000:00:02.0");
    assert!(igpu.boot_vga);
    assert!(codes(igpu).contains(&"integrated-gpu"));
    let gtx = gpu(&r, "0000:01:00.0");
    assert_eq!(
        gtx.verdict,
        Verdict::Isolated,
        "the CPU root port in its group stays with the host"
    );
    assert!(gtx.explanation.contains("0000:00:01.0"));
    assert_eq!(gtx.lanes, Lanes::Cpu);
    assert!(!gtx.boot_vga);
    assert_eq!(r.boot_loader.kind, BootLoaderKind::Grubby);
    assert_eq!(r.initramfs, InitramfsKind::Dracut);
    assert!(r.libvirt.running);
    assert!(r.virtio_win.is_some());
    assert!(r.args.intel_iommu_on());
}

#[test]
fn nvidia_3d_controller_counts_as_gpu() {
    let r = scan("nvidia-3d-controller");
    let dgpu = r
        .gpus
        .iter()
        .find(|g| g.class.as_deref() == Some("0302"))
        .expect("class 0302 is a GPU");
    assert_eq!(dgpu.verdict, Verdict::Isolated);
    assert_eq!(r.boot_loader.kind, BootLoaderKind::SystemdBoot);
    assert_eq!(r.initramfs, InitramfsKind::Mkinitcpio);
    assert!(
        !r.firmware.ovmf.is_empty(),
        "Arch's OVMF path is found without descriptors"
    );
    let checks = checks::run(&r);
    assert_eq!(
        checks
            .iter()
            .find(|c| c.id == "libvirt-group")
            .unwrap()
            .status,
        Status::Warning
    );
}

#[test]
fn iommu_off() {
    let r = scan("iommu-off");
    assert!(!r.pci.iommu_enabled);
    assert!(r.gpus.len() >= 2);
    assert!(r
        .gpus
        .iter()
        .all(|g| g.verdict == Verdict::NoIommu && g.iommu_group.is_none()));
    assert!(r
        .gpus
        .iter()
        .all(|g| g.options.iter().any(|o| o.contains("AMD-Vi"))));
    let checks = checks::run(&r);
    let status = |id: &str| checks.iter().find(|c| c.id == id).unwrap().status;
    assert_eq!(status("iommu"), Status::Error);
    assert_eq!(status("cpu"), Status::Error, "svm is off in the firmware");
    assert_eq!(status("kvm"), Status::Error);
    assert_eq!(checks::worst(&checks), Status::Error);
}

#[test]
fn two_identical_gpus() {
    let r = scan("two-identical-gpus");
    assert_eq!(r.gpus.len(), 2);
    assert_eq!(r.gpus[0].ids(), r.gpus[1].ids());
    for g in &r.gpus {
        assert_eq!(g.verdict, Verdict::Isolated, "{}", g.address);
        assert_eq!(g.companions.len(), 3, "audio, USB and UCSI functions");
        assert_eq!(g.lanes, Lanes::Cpu);
    }
    // The slot's link is the on-card switch's upstream port, not the card's internal link.
    let widths: Vec<_> = r.gpus.iter().map(|g| g.link.current_width).collect();
    assert!(
        widths.contains(&Some(16)) && widths.contains(&Some(8)),
        "{widths:?}"
    );
    assert!(r.gpus.iter().any(|g| codes(g).contains(&"reduced-link")));
    assert_eq!(r.boot_loader.kind, BootLoaderKind::Kernelstub);
    assert_eq!(r.initramfs, InitramfsKind::Booster);
}

#[test]
fn pci_domain_0001() {
    let r = scan("domain-0001");
    let g = gpu(&r, "0001:01:00.0");
    assert_eq!(
        addrs(&g.companions),
        ["0001:01:00.1", "0001:01:00.2", "0001:01:00.3"]
    );
    assert_eq!(g.verdict, Verdict::Isolated);
    assert_eq!(r.boot_loader.kind, BootLoaderKind::RpmOstree);
}

#[test]
fn broken_tree_reports_problems_on_the_right_devices() {
    let r = scan("broken-tree");
    let all_notes: Vec<_> = r
        .pci
        .devices
        .iter()
        .flat_map(|d| d.notes.iter().map(move |n| (d.address.to_string(), n.code)))
        .collect();
    for code in ["sysfs-missing", "sysfs-garbage", "sysfs-broken-link"] {
        assert!(
            all_notes.iter().any(|(_, c)| *c == code),
            "expected a {code} note: {all_notes:?}"
        );
    }
    assert!(r.notes.iter().any(|n| n.code == "cmdline-unreadable"));
    assert!(r
        .firmware
        .notes
        .iter()
        .any(|n| n.code == "firmware-descriptor-invalid"));
    // Devices untouched by the damage are still fully known.
    let healthy = r.pci.devices.iter().filter(|d| d.notes.is_empty()).count();
    assert!(healthy >= 5, "{healthy} healthy devices");
    assert!(r
        .pci
        .devices
        .iter()
        .filter(|d| d.notes.is_empty())
        .all(|d| d.vendor_id.is_some() && d.class.is_some()));
}

#[test]
fn truncated_tree_still_reports() {
    let r = scan("truncated-tree");
    assert!(r.cpu.is_none() && r.cmdline.is_none());
    assert!(!r.pci.devices.is_empty());
    let md = passthrough_core::markdown::report(&r);
    assert!(md.contains("IOMMU"));
}
