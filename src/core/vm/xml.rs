//! The libvirt domain XML of the wizard's choices, in virt-manager's style for Windows:
//! q35 + UEFI (Secure Boot and a TPM for Windows 11), Hyper-V enlightenments, virtio disk
//! and network, SATA CD-ROMs, the GPU's IOMMU group as managed PCI hostdevs and the
//! "code 43" settings. Built as a tree and written by xmltree's serializer, so any name is
//! data.

use xmltree::{Element, Namespace};

use super::spec::{Display, NetworkChoice, SpecError, Storage, VmSpec, WindowsVersion};
use super::tree::{self, el, Build};
use crate::pci::PciAddress;

/// libosinfo's namespace, in which virt-manager and GNOME Boxes record the guest OS.
pub const LIBOSINFO_NS: &str = "http://libosinfo.org/xmlns/libvirt/domain/1.0";

/// The domain XML for `spec`, after [`VmSpec::check`].
pub fn domain_xml(spec: &VmSpec) -> Result<String, SpecError> {
    spec.check()?;
    tree::write(&domain(spec))
}

/// The name of the new system disk's volume in its pool: the VM's name + `.qcow2`.
pub fn volume_name(vm_name: &str) -> String {
    format!("{vm_name}.qcow2")
}

/// libvirt's way of writing PCI address parts: `domain='0x0000' bus='0x08' slot='0x00'
/// function='0x0'`.
pub(crate) fn pci_address_element(a: &PciAddress) -> Element {
    el("address")
        .attr("domain", format!("0x{:04x}", a.domain))
        .attr("bus", format!("0x{:02x}", a.bus))
        .attr("slot", format!("0x{:02x}", a.device))
        .attr("function", format!("0x{:x}", a.function))
}

/// A managed PCI hostdev (libvirt binds it to vfio-pci while the VM runs).
pub(crate) fn pci_hostdev(a: &PciAddress) -> Element {
    el("hostdev")
        .attr("mode", "subsystem")
        .attr("type", "pci")
        .attr("managed", "yes")
        .child(el("source").child(pci_address_element(a)))
}

fn state_on(name: &str) -> Element {
    el(name).attr("state", "on")
}

fn domain(spec: &VmSpec) -> Element {
    let kib = (spec.memory_mib.saturating_mul(1024)).to_string();
    el("domain")
        .attr("type", if spec.kvm { "kvm" } else { "qemu" })
        .child(el("name").text(spec.name.clone()))
        .child(metadata(spec.windows))
        .child(el("memory").attr("unit", "KiB").text(kib.clone()))
        .child(el("currentMemory").attr("unit", "KiB").text(kib))
        .child(
            el("vcpu")
                .attr("placement", "static")
                .text(spec.vcpus.to_string()),
        )
        .child(os(spec.windows))
        .child(features(spec))
        .child(cpu(spec))
        .child(clock())
        .child(el("on_poweroff").text("destroy"))
        .child(el("on_reboot").text("restart"))
        .child(el("on_crash").text("destroy"))
        .child(
            el("pm")
                .child(el("suspend-to-mem").attr("enabled", "no"))
                .child(el("suspend-to-disk").attr("enabled", "no")),
        )
        .child(devices(spec))
}

fn metadata(windows: WindowsVersion) -> Element {
    let mut ns = Namespace::empty();
    ns.put("libosinfo", LIBOSINFO_NS);
    let mut info = el("libosinfo");
    info.prefix = Some("libosinfo".into());
    info.namespace = Some(LIBOSINFO_NS.into());
    info.namespaces = Some(ns);
    let mut os = el("os").attr(
        "id",
        match windows {
            WindowsVersion::Windows10 => "http://microsoft.com/win/10",
            WindowsVersion::Windows11 => "http://microsoft.com/win/11",
        },
    );
    os.prefix = Some("libosinfo".into());
    os.namespace = Some(LIBOSINFO_NS.into());
    el("metadata").child(info.child(os))
}

fn os(windows: WindowsVersion) -> Element {
    let win11 = windows == WindowsVersion::Windows11;
    el("os")
        .attr("firmware", "efi")
        .child(
            el("type")
                .attr("arch", "x86_64")
                .attr("machine", "q35")
                .text("hvm"),
        )
        .child_if(win11, || {
            el("firmware")
                .child(
                    el("feature")
                        .attr("enabled", "yes")
                        .attr("name", "enrolled-keys"),
                )
                .child(
                    el("feature")
                        .attr("enabled", "yes")
                        .attr("name", "secure-boot"),
                )
        })
        .child_if(win11, || el("loader").attr("secure", "yes"))
}

/// The Hyper-V enlightenments and the code 43 settings. Without KVM, QEMU cannot set the
/// virtual processor index ("kernel doesn't allow setting HyperV VP_INDEX"), so `vpindex`
/// and what needs it (`synic`, `stimer`) are left out.
fn features(spec: &VmSpec) -> Element {
    let c = &spec.code43;
    let hyperv = el("hyperv")
        .attr("mode", "custom")
        .child(state_on("relaxed"))
        .child(state_on("vapic"))
        .child(state_on("spinlocks").attr("retries", "8191"))
        .child_if(spec.kvm, || state_on("vpindex"))
        .child(state_on("runtime"))
        .child_if(spec.kvm, || state_on("synic"))
        .child_if(spec.kvm, || state_on("stimer").child(state_on("direct")))
        .child(state_on("reset"))
        .child_opt(
            c.vendor_id
                .as_ref()
                .map(|v| state_on("vendor_id").attr("value", v.clone())),
        )
        .child(state_on("frequencies"));
    el("features")
        .child(el("acpi"))
        .child(el("apic"))
        .child(hyperv)
        .child_if(c.kvm_hidden, || el("kvm").child(state_on("hidden")))
        .child(el("vmport").attr("state", "off"))
        .child_if(spec.windows == WindowsVersion::Windows11, || {
            state_on("smm")
        })
        .child_if(c.ioapic_kvm, || el("ioapic").attr("driver", "kvm"))
        .child_if(c.ignore_msrs, || el("msrs").attr("unknown", "ignore"))
}

/// `host-passthrough` under KVM; QEMU's emulation (TCG) cannot pass the host CPU through
/// (libvirt refuses to start such a VM), so it gets the most it can emulate (`maximum`).
fn cpu(spec: &VmSpec) -> Element {
    let (sockets, cores, threads) = spec.topology.unwrap_or((1, spec.vcpus, 1));
    let mode = if spec.kvm {
        "host-passthrough"
    } else {
        "maximum"
    };
    el("cpu")
        .attr("mode", mode)
        .attr("check", "none")
        .attr("migratable", "on")
        .child(
            el("topology")
                .attr("sockets", sockets.to_string())
                .attr("cores", cores.to_string())
                .attr("threads", threads.to_string()),
        )
}

fn clock() -> Element {
    el("clock")
        .attr("offset", "localtime")
        .child(
            el("timer")
                .attr("name", "rtc")
                .attr("tickpolicy", "catchup"),
        )
        .child(el("timer").attr("name", "pit").attr("tickpolicy", "delay"))
        .child(el("timer").attr("name", "hpet").attr("present", "no"))
        .child(
            el("timer")
                .attr("name", "hypervclock")
                .attr("present", "yes"),
        )
}

fn boot(order: u32) -> Element {
    el("boot").attr("order", order.to_string())
}

fn cdrom(path: &str, dev: &str, boot_order: Option<u32>) -> Element {
    el("disk")
        .attr("type", "file")
        .attr("device", "cdrom")
        .child(el("driver").attr("name", "qemu").attr("type", "raw"))
        .child(el("source").attr("file", path))
        .child(el("target").attr("dev", dev).attr("bus", "sata"))
        .child(el("readonly"))
        .child_opt(boot_order.map(boot))
}

/// The image format of a disk image file, by its name: qcow2 or raw.
fn image_format(path: &str) -> &'static str {
    let lower = path.to_ascii_lowercase();
    if lower.ends_with(".qcow2") || lower.ends_with(".qcow") {
        "qcow2"
    } else {
        "raw"
    }
}

fn system_disk(spec: &VmSpec, order: u32) -> Element {
    let target = el("target").attr("dev", "vda").attr("bus", "virtio");
    match &spec.storage {
        Storage::NewVolume { pool, .. } => el("disk")
            .attr("type", "volume")
            .attr("device", "disk")
            .child(
                el("driver")
                    .attr("name", "qemu")
                    .attr("type", "qcow2")
                    .attr("discard", "unmap"),
            )
            .child(
                el("source")
                    .attr("pool", pool.clone())
                    .attr("volume", volume_name(&spec.name)),
            )
            .child(target)
            .child(boot(order)),
        Storage::Path { path } if path.starts_with("/dev/") => el("disk")
            .attr("type", "block")
            .attr("device", "disk")
            .child(
                el("driver")
                    .attr("name", "qemu")
                    .attr("type", "raw")
                    .attr("cache", "none")
                    .attr("io", "native")
                    .attr("discard", "unmap"),
            )
            .child(el("source").attr("dev", path.clone()))
            .child(target)
            .child(boot(order)),
        Storage::Path { path } => el("disk")
            .attr("type", "file")
            .attr("device", "disk")
            .child(
                el("driver")
                    .attr("name", "qemu")
                    .attr("type", image_format(path))
                    .attr("discard", "unmap"),
            )
            .child(el("source").attr("file", path.clone()))
            .child(target)
            .child(boot(order)),
        Storage::Nvme { address } => pci_hostdev(address).child(boot(order)),
    }
}

fn devices(spec: &VmSpec) -> Element {
    let mut devices = el("devices");
    let disk_order = if spec.install_iso.is_some() { 2 } else { 1 };
    if !matches!(spec.storage, Storage::Nvme { .. }) {
        devices = devices.child(system_disk(spec, disk_order));
    }
    if let Some(iso) = &spec.install_iso {
        devices = devices.child(cdrom(iso, "sda", Some(1)));
    }
    if let Some(iso) = &spec.virtio_iso {
        let dev = if spec.install_iso.is_some() {
            "sdb"
        } else {
            "sda"
        };
        devices = devices.child(cdrom(iso, dev, None));
    }
    devices = devices.child(
        el("controller")
            .attr("type", "usb")
            .attr("model", "qemu-xhci")
            .attr("ports", "15"),
    );
    let (kind, attr, source) = match &spec.network {
        NetworkChoice::Bridge(b) => ("bridge", "bridge", b),
        NetworkChoice::Network(n) => ("network", "network", n),
    };
    devices = devices.child(
        el("interface")
            .attr("type", kind)
            .child(el("source").attr(attr, source.clone()))
            .child(el("model").attr("type", "virtio")),
    );
    let spice = spec.display == Display::QxlSpice;
    if spice {
        devices = devices
            .child(
                el("channel").attr("type", "spicevmc").child(
                    el("target")
                        .attr("type", "virtio")
                        .attr("name", "com.redhat.spice.0"),
                ),
            )
            .child(el("input").attr("type", "tablet").attr("bus", "usb"))
            .child(
                el("graphics")
                    .attr("type", "spice")
                    .attr("autoport", "yes")
                    .child(el("listen").attr("type", "address"))
                    .child(el("image").attr("compression", "off")),
            )
            .child(el("sound").attr("model", "ich9"))
            .child(el("audio").attr("id", "1").attr("type", "spice"))
            .child(
                el("video").child(
                    el("model")
                        .attr("type", "qxl")
                        .attr("ram", "65536")
                        .attr("vram", "65536")
                        .attr("vgamem", "16384")
                        .attr("heads", "1")
                        .attr("primary", "yes"),
                ),
            );
    } else {
        devices = devices.child(el("video").child(el("model").attr("type", "none")));
    }
    if let Some(gpu) = &spec.gpu {
        for (i, a) in gpu.addresses.iter().enumerate() {
            let rom = gpu.rom_file.as_ref().filter(|_| i == 0);
            devices = devices
                .child(pci_hostdev(a).child_opt(rom.map(|f| el("rom").attr("file", f.clone()))));
        }
    }
    if let Storage::Nvme { .. } = spec.storage {
        devices = devices.child(system_disk(spec, disk_order));
    }
    if spice {
        for _ in 0..2 {
            devices = devices.child(el("redirdev").attr("bus", "usb").attr("type", "spicevmc"));
        }
    }
    if spec.windows == WindowsVersion::Windows11 {
        devices = devices.child(
            el("tpm").attr("model", "tpm-crb").child(
                el("backend")
                    .attr("type", "emulator")
                    .attr("version", "2.0"),
            ),
        );
    }
    let balloon = if spec.gpu.is_some() { "none" } else { "virtio" };
    devices.child(el("memballoon").attr("model", balloon))
}
