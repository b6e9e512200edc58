//! The gaming VM's domain XML (`vm::xml`), the code 43 settings (`vm::code43`) and the
//! Passthrough panel's reading and editing of existing domains (`vm::features`), checked
//! against the real validators: libvirt's schema (`virt-xml-validate FILE domain`) and
//! libvirt's test driver (`virsh -c test:///default define FILE`, then `dumpxml` in the same
//! virsh process, since each virsh process starts a fresh test driver).

mod common;

use std::path::Path;
use std::process::Command;

use passthrough_core::pci::PciAddress;
use passthrough_core::vm::code43::{self, Code43Setting};
use passthrough_core::vm::features::{self, Edit, PassthroughSettings};
use passthrough_core::vm::xml::domain_xml;
use passthrough_core::vm::{
    Code43, Display, GpuAssignment, NetworkChoice, SpecError, Storage, VmSpec, WindowsVersion,
};
use proptest::prelude::*;
use xmltree::Element;

use common::ctl;

const FIXTURE: &str = "tests/fixtures/vm/win11-virt-manager.xml";

fn fixture_xml() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE)).unwrap()
}

fn addr(s: &str) -> PciAddress {
    s.parse().unwrap()
}

fn parse(xml: &str) -> Element {
    Element::parse(xml.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{xml}"))
}

/// The element at `path` ("features/hyperv/vendor_id"), first match at each step.
fn at<'a>(e: &'a Element, path: &str) -> Option<&'a Element> {
    path.split('/').try_fold(e, |e, step| e.get_child(step))
}

fn attr<'a>(e: &'a Element, path: &str, name: &str) -> Option<&'a str> {
    at(e, path)?.attributes.get(name).map(String::as_str)
}

fn text(e: &Element, path: &str) -> Option<String> {
    at(e, path)?.get_text().map(|t| t.into_owned())
}

fn children<'a>(e: &'a Element, name: &'a str) -> Vec<&'a Element> {
    e.children
        .iter()
        .filter_map(|n| n.as_element())
        .filter(|c| c.name == name)
        .collect()
}

fn names(e: &Element) -> Vec<String> {
    e.children
        .iter()
        .filter_map(|n| n.as_element())
        .map(|c| c.name.clone())
        .collect()
}

fn devices<'a>(d: &'a Element, name: &'a str) -> Vec<&'a Element> {
    children(at(d, "devices").unwrap(), name)
}

/// `virt-xml-validate FILE domain` must exit 0 and say so.
fn validate(label: &str, xml: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("domain.xml");
    std::fs::write(&file, xml).unwrap();
    let out = Command::new("virt-xml-validate")
        .arg(&file)
        .arg("domain")
        .output()
        .expect("virt-xml-validate (libvirt-clients + libxml2-utils) is installed");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.contains(" validates"),
        "{label}: virt-xml-validate refused it:\n{said}\n{xml}"
    );
}

/// A string as one double-quoted argument of a virsh command line.
fn virsh_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Defines `xml` on libvirt's test driver and returns libvirt's own inactive XML of it,
/// read back by `dumpxml` in the same virsh process.
fn define(label: &str, xml: &str, name: &str) -> Element {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("domain.xml");
    std::fs::write(&file, xml).unwrap();
    let script = format!(
        "define --file {}; dumpxml --inactive --domain {}",
        virsh_quote(&file.to_string_lossy()),
        virsh_quote(name)
    );
    let out = Command::new("virsh")
        .args(["-c", "test:///default", &script])
        .env("LC_ALL", "C.UTF-8")
        .output()
        .expect("virsh (libvirt-clients) is installed");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && stdout.contains(&format!("Domain '{name}' defined")),
        "{label}: virsh define failed:\n{stdout}{}\n{xml}",
        String::from_utf8_lossy(&out.stderr)
    );
    let start = stdout.find("<domain").expect("dumpxml printed the domain");
    parse(&stdout[start..])
}

/// Validates and defines; returns libvirt's XML of it.
fn validate_and_define(label: &str, xml: &str, name: &str) -> Element {
    validate(label, xml);
    define(label, xml, name)
}

fn gpu(rom: Option<&str>) -> GpuAssignment {
    GpuAssignment {
        addresses: vec![addr("0000:08:00.0"), addr("0000:08:00.1")],
        rom_file: rom.map(str::to_owned),
    }
}

fn all_code43() -> Code43 {
    Code43 {
        vendor_id: Some("randomid".into()),
        kvm_hidden: true,
        ioapic_kvm: true,
        ignore_msrs: true,
    }
}

/// Every choice the wizard offers, each at least once.
fn variants() -> Vec<(&'static str, VmSpec)> {
    let base = VmSpec {
        install_iso: Some("/var/lib/libvirt/images/Win11_23H2_Chinese_Simplified_x64.iso".into()),
        virtio_iso: Some("/var/lib/libvirt/images/virtio-win-0.1.240.iso".into()),
        ..VmSpec::default()
    };
    let mut v = vec![
        ("windows-11-defaults", base.clone()),
        (
            "windows-10",
            VmSpec {
                windows: WindowsVersion::Windows10,
                name: "win10".into(),
                ..base.clone()
            },
        ),
        (
            "no-isos",
            VmSpec {
                install_iso: None,
                virtio_iso: None,
                ..base.clone()
            },
        ),
        (
            "only-virtio-iso",
            VmSpec {
                install_iso: None,
                ..base.clone()
            },
        ),
        (
            "new-volume-other-pool",
            VmSpec {
                storage: Storage::NewVolume {
                    pool: "games".into(),
                    size_gib: 512,
                },
                ..base.clone()
            },
        ),
        (
            "qcow2-file",
            VmSpec {
                storage: Storage::Path {
                    path: "/home/user/VMs/win11.qcow2".into(),
                },
                ..base.clone()
            },
        ),
        (
            "raw-file",
            VmSpec {
                storage: Storage::Path {
                    path: "/srv/vm/win11.img".into(),
                },
                ..base.clone()
            },
        ),
        (
            "block-device",
            VmSpec {
                storage: Storage::Path {
                    path: "/dev/disk/by-id/nvme-KIOXIA-EXCERIA_SSD_X0KA1234".into(),
                },
                ..base.clone()
            },
        ),
        (
            "nvme-passthrough",
            VmSpec {
                storage: Storage::Nvme {
                    address: addr("0000:01:00.0"),
                },
                ..base.clone()
            },
        ),
        (
            "bridge",
            VmSpec {
                network: NetworkChoice::Bridge("br0".into()),
                ..base.clone()
            },
        ),
        (
            "network",
            VmSpec {
                network: NetworkChoice::Network("lan-nat".into()),
                ..base.clone()
            },
        ),
        (
            "gpu",
            VmSpec {
                gpu: Some(gpu(None)),
                code43: all_code43(),
                ..base.clone()
            },
        ),
        (
            "gpu-with-rom",
            VmSpec {
                gpu: Some(gpu(Some("/usr/share/vgabios/RX5600XT.rom"))),
                code43: code43::recommended("1002", "731f"),
                ..base.clone()
            },
        ),
        (
            "gpu-only-display",
            VmSpec {
                gpu: Some(gpu(None)),
                display: Display::None,
                code43: all_code43(),
                ..base.clone()
            },
        ),
        (
            "display-none-no-gpu",
            VmSpec {
                display: Display::None,
                ..base.clone()
            },
        ),
        (
            "no-kvm",
            VmSpec {
                kvm: false,
                ..base.clone()
            },
        ),
        (
            "topology",
            VmSpec {
                vcpus: 12,
                topology: Some((1, 6, 2)),
                memory_mib: 16384,
                ..base.clone()
            },
        ),
        (
            "name-with-quotes-and-markup",
            VmSpec {
                name: "Game's \"VM\" <1> & co".into(),
                install_iso: Some("/isos/Win 11 & \"Co\" <x>'s.iso".into()),
                ..base.clone()
            },
        ),
        (
            "chinese-name",
            VmSpec {
                name: "游戏 虚拟机".into(),
                install_iso: Some("/home/用户/下载/Win11_中文.iso".into()),
                ..base.clone()
            },
        ),
        (
            "everything",
            VmSpec {
                name: "全部 'all' \"&<>\"".into(),
                windows: WindowsVersion::Windows10,
                storage: Storage::Nvme {
                    address: addr("0000:01:00.0"),
                },
                network: NetworkChoice::Bridge("br0".into()),
                gpu: Some(gpu(Some("/var/lib/libvirt/vbios/gp106 (boot).rom"))),
                display: Display::None,
                code43: all_code43(),
                kvm: false,
                topology: Some((2, 2, 1)),
                ..base.clone()
            },
        ),
    ];
    // Each code 43 flag alone, and none.
    let flags: [(&str, Code43); 5] = [
        ("code43-none", Code43::default()),
        (
            "code43-vendor-id",
            Code43 {
                vendor_id: Some("012345678ab".into()),
                ..Code43::default()
            },
        ),
        (
            "code43-kvm-hidden",
            Code43 {
                kvm_hidden: true,
                ..Code43::default()
            },
        ),
        (
            "code43-ioapic",
            Code43 {
                ioapic_kvm: true,
                ..Code43::default()
            },
        ),
        (
            "code43-msrs",
            Code43 {
                ignore_msrs: true,
                ..Code43::default()
            },
        ),
    ];
    for (label, code43) in flags {
        v.push((
            label,
            VmSpec {
                gpu: Some(gpu(None)),
                code43,
                ..base.clone()
            },
        ));
    }
    v
}

fn hostdev_address(h: &Element) -> PciAddress {
    let a = at(h, "source/address").unwrap();
    let n = |k: &str| {
        let v = a.attributes[k].trim_start_matches("0x");
        u32::from_str_radix(v, 16).unwrap()
    };
    PciAddress {
        domain: n("domain"),
        bus: n("bus") as u8,
        device: n("slot") as u8,
        function: n("function") as u8,
    }
}

/// What must hold of a spec's XML, whether ours or libvirt's dump of it.
fn check_semantics(label: &str, spec: &VmSpec, d: &Element) {
    assert_eq!(d.name, "domain", "{label}");
    assert_eq!(
        d.attributes["type"],
        if spec.kvm { "kvm" } else { "qemu" },
        "{label}"
    );
    assert_eq!(
        text(d, "name").as_deref(),
        Some(spec.name.as_str()),
        "{label}"
    );
    let kib = (spec.memory_mib * 1024).to_string();
    assert_eq!(text(d, "memory").as_deref(), Some(kib.as_str()), "{label}");
    assert_eq!(attr(d, "memory", "unit"), Some("KiB"), "{label}");
    assert_eq!(text(d, "currentMemory").as_deref(), Some(kib.as_str()));
    assert_eq!(text(d, "vcpu"), Some(spec.vcpus.to_string()), "{label}");
    assert_eq!(attr(d, "os", "firmware"), Some("efi"), "{label}");
    assert_eq!(attr(d, "os/type", "arch"), Some("x86_64"));
    assert!(
        attr(d, "os/type", "machine").unwrap().contains("q35"),
        "{label}"
    );
    assert_eq!(text(d, "os/type").as_deref(), Some("hvm"));
    let win11 = spec.windows == WindowsVersion::Windows11;
    assert_eq!(
        attr(d, "os/loader", "secure") == Some("yes"),
        win11,
        "{label}"
    );
    let fw: Vec<(String, String)> = at(d, "os/firmware")
        .map(|f| {
            children(f, "feature")
                .into_iter()
                .map(|x| {
                    (
                        x.attributes["name"].clone(),
                        x.attributes["enabled"].clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if win11 {
        assert!(
            fw.contains(&("secure-boot".into(), "yes".into())),
            "{label}"
        );
        assert!(
            fw.contains(&("enrolled-keys".into(), "yes".into())),
            "{label}"
        );
    } else {
        assert!(fw.is_empty(), "{label}");
    }
    assert_eq!(
        attr(d, "features/smm", "state") == Some("on"),
        win11,
        "{label}"
    );
    assert_eq!(!devices(d, "tpm").is_empty(), win11, "{label}");
    if win11 {
        assert_eq!(attr(d, "devices/tpm", "model"), Some("tpm-crb"));
        assert_eq!(attr(d, "devices/tpm/backend", "type"), Some("emulator"));
        assert_eq!(attr(d, "devices/tpm/backend", "version"), Some("2.0"));
    }

    // Hyper-V and the code 43 settings.
    assert_eq!(
        attr(d, "features/hyperv/spinlocks", "retries"),
        Some("8191")
    );
    for f in [
        "relaxed",
        "vapic",
        "spinlocks",
        "runtime",
        "reset",
        "frequencies",
    ] {
        assert_eq!(
            attr(d, &format!("features/hyperv/{f}"), "state"),
            Some("on"),
            "{label}: {f}"
        );
    }
    // QEMU without KVM cannot set the VP index, which synic and stimer need.
    for f in ["vpindex", "synic", "stimer"] {
        let want = spec.kvm.then_some("on");
        assert_eq!(
            attr(d, &format!("features/hyperv/{f}"), "state"),
            want,
            "{label}: {f}"
        );
    }
    if spec.kvm {
        assert_eq!(
            attr(d, "features/hyperv/stimer/direct", "state"),
            Some("on")
        );
    }
    assert_eq!(
        attr(d, "features/hyperv/vendor_id", "value"),
        spec.code43.vendor_id.as_deref(),
        "{label}"
    );
    assert_eq!(
        attr(d, "features/kvm/hidden", "state") == Some("on"),
        spec.code43.kvm_hidden,
        "{label}"
    );
    assert_eq!(at(d, "features/kvm").is_some(), spec.code43.kvm_hidden);
    assert_eq!(
        attr(d, "features/ioapic", "driver") == Some("kvm"),
        spec.code43.ioapic_kvm,
        "{label}"
    );
    assert_eq!(
        attr(d, "features/msrs", "unknown") == Some("ignore"),
        spec.code43.ignore_msrs,
        "{label}"
    );
    assert_eq!(attr(d, "features/vmport", "state"), Some("off"));
    assert!(at(d, "features/acpi").is_some() && at(d, "features/apic").is_some());

    // CPU and clock.
    // QEMU's emulation cannot pass the host's CPU through: libvirt refuses to start that.
    let cpu_mode = if spec.kvm {
        "host-passthrough"
    } else {
        "maximum"
    };
    assert_eq!(attr(d, "cpu", "mode"), Some(cpu_mode), "{label}");
    let (s, c, t) = spec.topology.unwrap_or((1, spec.vcpus, 1));
    assert_eq!(
        attr(d, "cpu/topology", "sockets"),
        Some(s.to_string().as_str())
    );
    assert_eq!(
        attr(d, "cpu/topology", "cores"),
        Some(c.to_string().as_str())
    );
    assert_eq!(
        attr(d, "cpu/topology", "threads"),
        Some(t.to_string().as_str())
    );
    assert_eq!(attr(d, "clock", "offset"), Some("localtime"));
    let timers: Vec<Vec<(String, String)>> = children(at(d, "clock").unwrap(), "timer")
        .into_iter()
        .map(|t| {
            t.attributes
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .collect();
    for want in [
        ("rtc", "tickpolicy", "catchup"),
        ("pit", "tickpolicy", "delay"),
        ("hpet", "present", "no"),
        ("hypervclock", "present", "yes"),
    ] {
        assert!(
            timers
                .iter()
                .any(|t| t.contains(&("name".into(), want.0.into()))
                    && t.contains(&(want.1.into(), want.2.into()))),
            "{label}: timer {want:?}"
        );
    }
    assert_eq!(text(d, "on_poweroff").as_deref(), Some("destroy"));
    assert_eq!(text(d, "on_reboot").as_deref(), Some("restart"));
    assert_eq!(text(d, "on_crash").as_deref(), Some("destroy"));
    assert_eq!(attr(d, "pm/suspend-to-mem", "enabled"), Some("no"));
    assert_eq!(attr(d, "pm/suspend-to-disk", "enabled"), Some("no"));

    // Disks and boot order: the installation CD first, then the system disk.
    let disks = devices(d, "disk");
    let cdroms: Vec<_> = disks
        .iter()
        .filter(|x| x.attributes["device"] == "cdrom")
        .collect();
    let isos: Vec<&String> = [&spec.install_iso, &spec.virtio_iso]
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(cdroms.len(), isos.len(), "{label}");
    for (cd, iso) in cdroms.iter().zip(&isos) {
        assert_eq!(attr(cd, "source", "file"), Some(iso.as_str()), "{label}");
        assert_eq!(attr(cd, "target", "bus"), Some("sata"));
        assert!(at(cd, "readonly").is_some());
    }
    let disk_boot = if spec.install_iso.is_some() { "2" } else { "1" };
    if spec.install_iso.is_some() {
        assert_eq!(attr(cdroms[0], "boot", "order"), Some("1"), "{label}");
    }
    if spec.virtio_iso.is_some() {
        assert!(at(cdroms.last().unwrap(), "boot").is_none(), "{label}");
    }
    let system: Vec<_> = disks
        .iter()
        .filter(|x| x.attributes["device"] == "disk")
        .collect();
    let hostdevs = devices(d, "hostdev");
    match &spec.storage {
        Storage::NewVolume { pool, .. } => {
            assert_eq!(system.len(), 1);
            assert_eq!(system[0].attributes["type"], "volume");
            assert_eq!(attr(system[0], "source", "pool"), Some(pool.as_str()));
            let vol = format!("{}.qcow2", spec.name);
            assert_eq!(attr(system[0], "source", "volume"), Some(vol.as_str()));
            assert_eq!(attr(system[0], "driver", "type"), Some("qcow2"));
        }
        Storage::Path { path } if path.starts_with("/dev/") => {
            assert_eq!(system[0].attributes["type"], "block", "{label}");
            assert_eq!(attr(system[0], "source", "dev"), Some(path.as_str()));
            assert_eq!(attr(system[0], "driver", "type"), Some("raw"));
        }
        Storage::Path { path } => {
            assert_eq!(system[0].attributes["type"], "file", "{label}");
            assert_eq!(attr(system[0], "source", "file"), Some(path.as_str()));
            let format = if path.ends_with(".qcow2") {
                "qcow2"
            } else {
                "raw"
            };
            assert_eq!(attr(system[0], "driver", "type"), Some(format));
        }
        Storage::Nvme { address } => {
            assert!(system.is_empty(), "{label}");
            let nvme = hostdevs
                .iter()
                .find(|h| hostdev_address(h) == *address)
                .expect("the NVMe controller is a hostdev");
            assert_eq!(attr(nvme, "boot", "order"), Some(disk_boot), "{label}");
            assert_eq!(nvme.attributes["managed"], "yes");
        }
    }
    if !system.is_empty() {
        assert_eq!(attr(system[0], "target", "bus"), Some("virtio"), "{label}");
        assert_eq!(attr(system[0], "boot", "order"), Some(disk_boot), "{label}");
    }

    // Network.
    let iface = devices(d, "interface");
    assert_eq!(iface.len(), 1);
    assert_eq!(attr(iface[0], "model", "type"), Some("virtio"));
    match &spec.network {
        NetworkChoice::Bridge(b) => {
            assert_eq!(iface[0].attributes["type"], "bridge");
            assert_eq!(attr(iface[0], "source", "bridge"), Some(b.as_str()));
        }
        NetworkChoice::Network(n) => {
            assert_eq!(iface[0].attributes["type"], "network");
            assert_eq!(attr(iface[0], "source", "network"), Some(n.as_str()));
        }
    }
    assert!(devices(d, "controller")
        .iter()
        .any(|c| c.attributes["type"] == "usb"
            && c.attributes.get("model").map(String::as_str) == Some("qemu-xhci")));

    // Display.
    let video = devices(d, "video");
    assert_eq!(video.len(), 1, "{label}");
    match spec.display {
        Display::QxlSpice => {
            assert_eq!(attr(video[0], "model", "type"), Some("qxl"), "{label}");
            let g = devices(d, "graphics");
            assert_eq!(g.len(), 1);
            assert_eq!(g[0].attributes["type"], "spice");
            assert_eq!(attr(g[0], "image", "compression"), Some("off"));
            assert!(devices(d, "input")
                .iter()
                .any(|i| i.attributes["type"] == "tablet" && i.attributes["bus"] == "usb"));
            assert!(devices(d, "channel")
                .iter()
                .any(|c| c.attributes["type"] == "spicevmc"
                    && attr(c, "target", "name") == Some("com.redhat.spice.0")));
        }
        Display::None => {
            assert_eq!(attr(video[0], "model", "type"), Some("none"), "{label}");
            assert!(devices(d, "graphics").is_empty(), "{label}");
            assert!(devices(d, "channel").is_empty(), "{label}");
            assert!(devices(d, "redirdev").is_empty(), "{label}");
        }
    }

    // The GPU's group, then the NVMe controller.
    let mut want: Vec<PciAddress> = spec.gpu.iter().flat_map(|g| g.addresses.clone()).collect();
    if let Storage::Nvme { address } = spec.storage {
        want.push(address);
    }
    let got: Vec<PciAddress> = hostdevs.iter().map(|h| hostdev_address(h)).collect();
    assert_eq!(got, want, "{label}");
    for h in &hostdevs {
        assert_eq!(h.attributes["mode"], "subsystem");
        assert_eq!(h.attributes["type"], "pci");
        assert_eq!(h.attributes["managed"], "yes");
    }
    if let Some(g) = &spec.gpu {
        assert_eq!(
            attr(hostdevs[0], "rom", "file"),
            g.rom_file.as_deref(),
            "{label}"
        );
        assert!(hostdevs[1..].iter().all(|h| at(h, "rom").is_none()));
    }
    let balloon = if spec.gpu.is_some() { "none" } else { "virtio" };
    assert_eq!(
        attr(d, "devices/memballoon", "model"),
        Some(balloon),
        "{label}"
    );
}

#[test]
fn every_variant_is_valid_for_libvirt_and_keeps_its_choices() {
    let variants = variants();
    assert!(variants.len() >= 25, "{}", variants.len());
    for (label, spec) in &variants {
        let xml = domain_xml(spec).unwrap_or_else(|e| panic!("{label}: {e}"));
        let ours = parse(&xml);
        check_semantics(label, spec, &ours);
        let libvirts = validate_and_define(label, &xml, &spec.name);
        check_semantics(&format!("{label} (libvirt's dumpxml)"), spec, &libvirts);
    }
    eprintln!(
        "virt-xml-validate and virsh define checked {} variants",
        variants.len()
    );
}

#[test]
fn the_xml_is_a_tree_and_its_data_stays_data() {
    let spec = VmSpec {
        name: "a'b\"c<d>e&f 游戏 ]]> <!-- x -->".into(),
        install_iso: Some("/i/'\"<>&.iso".into()),
        ..VmSpec::default()
    };
    let xml = domain_xml(&spec).unwrap();
    assert!(!xml.contains("<!--"), "{xml}");
    assert!(!xml.contains("]]>"), "{xml}");
    let d = parse(&xml);
    assert_eq!(text(&d, "name").unwrap(), spec.name);
    assert_eq!(
        devices(&d, "disk")
            .iter()
            .filter_map(|x| attr(x, "source", "file"))
            .collect::<Vec<_>>(),
        vec!["/i/'\"<>&.iso"]
    );
    // No uuid: libvirt chooses it. libosinfo metadata, as virt-manager writes it.
    assert!(at(&d, "uuid").is_none());
    let info = at(&d, "metadata/libosinfo").unwrap();
    assert_eq!(
        info.namespace.as_deref(),
        Some("http://libosinfo.org/xmlns/libvirt/domain/1.0")
    );
    assert_eq!(attr(info, "os", "id"), Some("http://microsoft.com/win/11"));
    assert!(xml.ends_with("</domain>\n"));
}

#[test]
fn hyperv_order_and_features_are_virt_managers() {
    let d = parse(
        &domain_xml(&VmSpec {
            code43: all_code43(),
            ..VmSpec::default()
        })
        .unwrap(),
    );
    assert_eq!(
        names(at(&d, "features/hyperv").unwrap()),
        [
            "relaxed",
            "vapic",
            "spinlocks",
            "vpindex",
            "runtime",
            "synic",
            "stimer",
            "reset",
            "vendor_id",
            "frequencies"
        ]
    );
    assert_eq!(
        names(at(&d, "features").unwrap()),
        ["acpi", "apic", "hyperv", "kvm", "vmport", "smm", "ioapic", "msrs"]
    );
    assert_eq!(attr(&d, "features/hyperv", "mode"), Some("custom"));
    let d10 = parse(
        &domain_xml(&VmSpec {
            windows: WindowsVersion::Windows10,
            ..VmSpec::default()
        })
        .unwrap(),
    );
    assert_eq!(
        names(at(&d10, "features").unwrap()),
        ["acpi", "apic", "hyperv", "vmport"]
    );
    assert!(at(&d10, "os/firmware").is_none() && at(&d10, "os/loader").is_none());
}

#[test]
fn a_spec_is_checked_before_any_xml() {
    let bad = [
        VmSpec {
            name: "a/b".into(),
            ..VmSpec::default()
        },
        VmSpec {
            code43: Code43 {
                vendor_id: Some("much-too-long-id".into()),
                ..Code43::default()
            },
            ..VmSpec::default()
        },
        VmSpec {
            gpu: Some(GpuAssignment {
                addresses: vec![],
                rom_file: None,
            }),
            ..VmSpec::default()
        },
        VmSpec {
            gpu: Some(gpu(Some("vbios.rom"))),
            ..VmSpec::default()
        },
        VmSpec {
            network: NetworkChoice::Bridge("br0'; rm".into()),
            ..VmSpec::default()
        },
    ];
    for spec in bad {
        let e = domain_xml(&spec).unwrap_err();
        assert_eq!(spec.check().unwrap_err(), e);
        assert!(!e.message().is_empty());
    }
}

#[test]
fn code43_recommendations_and_explanations() {
    let nv = code43::recommended("10de", "1c02");
    assert_eq!(nv, all_code43());
    let amd = code43::recommended("1002", "731f");
    assert_eq!(
        amd,
        Code43 {
            vendor_id: Some("randomid".into()),
            kvm_hidden: false,
            ioapic_kvm: true,
            ignore_msrs: true,
        }
    );
    assert_eq!(
        code43::recommended("8086", "56a0"),
        Code43 {
            ignore_msrs: true,
            ..Code43::default()
        }
    );
    // Every recommendation is a valid spec, and libvirt takes it.
    for (v, dev) in [("10de", "1c02"), ("1002", "731f"), ("8086", "56a0")] {
        let spec = VmSpec {
            name: format!("code43-{v}"),
            gpu: Some(gpu(None)),
            code43: code43::recommended(v, dev),
            ..VmSpec::default()
        };
        let xml = domain_xml(&spec).unwrap();
        validate_and_define(v, &xml, &spec.name);
    }
    for s in [
        Code43Setting::VendorId,
        Code43Setting::KvmHidden,
        Code43Setting::IoapicKvm,
        Code43Setting::IgnoreMsrs,
        Code43Setting::RomFile,
    ] {
        assert!(code43::explain(s).len() > 100, "{s:?}");
    }
    let rom = code43::explain(Code43Setting::RomFile);
    for part in [
        "echo 1 > /sys/bus/pci/devices/ADDR/rom",
        "cat /sys/bus/pci/devices/ADDR/rom > vbios.rom",
        "echo 0 > /sys/bus/pci/devices/ADDR/rom",
        "GPU-Z",
        "TechPowerUp",
        "5600 XT",
    ] {
        assert!(rom.contains(part), "{part}: {rom}");
    }
    assert!(code43::explain(Code43Setting::VendorId).contains("465"));
    assert!(code43::explain(Code43Setting::VendorId).contains("12"));
    assert!(code43::explain(Code43Setting::KvmHidden).contains("CPUID"));
    // The reset bug: the post's RX 5600 XT (Navi 10) and RX 550 (Polaris 11); RX 470/480/
    // 570/580 (67df), RX 590 (6fdf), Vega 64 (687f), Radeon VII (66af), RX 5500 (7340).
    for dev in [
        "731f", "67ff", "67df", "6fdf", "687f", "66af", "7340", "7360", "699f",
    ] {
        let hint = code43::reset_bug_hint("1002", dev).unwrap_or_else(|| panic!("{dev}"));
        assert!(hint.contains("github.com/gnif/vendor-reset"), "{hint}");
        assert!(hint.contains("second time"), "{hint}");
    }
    // RDNA 2/3 cards and other vendors do not have it.
    for (v, dev) in [
        ("1002", "73bf"),
        ("1002", "744c"),
        ("10de", "1c02"),
        ("8086", "56a0"),
    ] {
        assert!(code43::reset_bug_hint(v, dev).is_none(), "{v}:{dev}");
    }
}

// ----------------------------------------------------------------------------------------
// The Passthrough panel: read and edit.

fn fixture_settings() -> PassthroughSettings {
    PassthroughSettings {
        code43: Code43::default(),
        hostdevs: vec![],
        rom_files: vec![],
        emulated_display: true,
        efi: true,
        secure_boot: true,
        tpm: true,
        machine_q35: true,
        memballoon: true,
    }
}

#[test]
fn read_a_virt_manager_windows_11_domain() {
    assert_eq!(features::read(&fixture_xml()).unwrap(), fixture_settings());
}

#[test]
fn read_our_own_domains() {
    for (label, spec) in variants() {
        let s = features::read(&domain_xml(&spec).unwrap()).unwrap();
        assert_eq!(s.code43, spec.code43, "{label}");
        let mut hostdevs: Vec<PciAddress> =
            spec.gpu.iter().flat_map(|g| g.addresses.clone()).collect();
        if let Storage::Nvme { address } = spec.storage {
            hostdevs.push(address);
        }
        assert_eq!(s.hostdevs, hostdevs, "{label}");
        let roms: Vec<(PciAddress, String)> = spec
            .gpu
            .iter()
            .filter_map(|g| Some((g.addresses[0], g.rom_file.clone()?)))
            .collect();
        assert_eq!(s.rom_files, roms, "{label}");
        assert_eq!(
            s.emulated_display,
            spec.display == Display::QxlSpice,
            "{label}"
        );
        assert!(s.efi && s.machine_q35, "{label}");
        let win11 = spec.windows == WindowsVersion::Windows11;
        assert_eq!((s.secure_boot, s.tpm), (win11, win11), "{label}");
        assert_eq!(s.memballoon, spec.gpu.is_none(), "{label}");
    }
}

fn enable_all() -> Vec<Edit> {
    vec![
        Edit::VendorId(Some("randomid".into())),
        Edit::KvmHidden(true),
        Edit::IoapicKvm(true),
        Edit::IgnoreMsrs(true),
        Edit::AddHostdevs(vec![addr("0000:08:00.0"), addr("0000:08:00.1")]),
        Edit::RomFile {
            address: addr("0000:08:00.0"),
            file: Some("/usr/share/vgabios/gp106.rom".into()),
        },
    ]
}

fn disable_all() -> Vec<Edit> {
    vec![
        Edit::VendorId(None),
        Edit::KvmHidden(false),
        Edit::IoapicKvm(false),
        Edit::IgnoreMsrs(false),
        Edit::RomFile {
            address: addr("0000:08:00.0"),
            file: None,
        },
        Edit::RemoveHostdevs(vec![addr("0000:08:00.0"), addr("0000:08:00.1")]),
    ]
}

#[test]
fn editing_nothing_keeps_the_whole_domain() {
    let original = fixture_xml();
    let out = features::edit(&original, &[]).unwrap();
    assert_eq!(parse(&out), parse(&original));
    // The namespaced qemu:commandline, the libosinfo metadata, the description, the UUID.
    let d = parse(&out);
    let cmdline = at(&d, "commandline").unwrap();
    assert_eq!(cmdline.prefix.as_deref(), Some("qemu"));
    assert_eq!(
        cmdline.namespace.as_deref(),
        Some("http://libvirt.org/schemas/domain/qemu/1.0")
    );
    assert_eq!(children(cmdline, "arg").len(), 2);
    assert!(out.contains("xmlns:qemu=\"http://libvirt.org/schemas/domain/qemu/1.0\""));
    assert!(out.contains("<qemu:arg value=\"opt/ovmf/X-PciMmio64Mb,string=65536\"/>"));
    assert_eq!(
        text(&d, "description").as_deref(),
        Some("Games & streaming — 游戏")
    );
    validate("fixture, no edits", &out);
    // Writing is a fixed point.
    assert_eq!(features::edit(&out, &[]).unwrap(), out);
}

#[test]
fn edits_on_a_virt_manager_domain() {
    let original = fixture_xml();
    let normalized = features::edit(&original, &[]).unwrap();
    let on = features::edit(&original, &enable_all()).unwrap();
    let d = validate_and_define("fixture, all on", &on, "win11");
    // libvirt kept every setting.
    assert_eq!(
        attr(&d, "features/hyperv/vendor_id", "value"),
        Some("randomid")
    );
    assert_eq!(attr(&d, "features/kvm/hidden", "state"), Some("on"));
    assert_eq!(attr(&d, "features/ioapic", "driver"), Some("kvm"));
    assert_eq!(attr(&d, "features/msrs", "unknown"), Some("ignore"));
    assert_eq!(devices(&d, "hostdev").len(), 2);
    let read = features::read(&on).unwrap();
    assert_eq!(
        read,
        PassthroughSettings {
            code43: all_code43(),
            hostdevs: vec![addr("0000:08:00.0"), addr("0000:08:00.1")],
            rom_files: vec![(addr("0000:08:00.0"), "/usr/share/vgabios/gp106.rom".into())],
            ..fixture_settings()
        }
    );
    // Nothing else changed: every other device and element is still there.
    let (before, after) = (parse(&normalized), parse(&on));
    let mut other = names(at(&after, "devices").unwrap());
    other.retain(|n| n != "hostdev");
    assert_eq!(other, names(at(&before, "devices").unwrap()));
    assert_eq!(names(&after), names(&before));
    // New features go where libvirt writes them; the hyperv element keeps its order.
    assert_eq!(
        names(at(&after, "features").unwrap()),
        ["acpi", "apic", "hyperv", "kvm", "vmport", "smm", "ioapic", "msrs"]
    );
    let hyperv = names(at(&after, "features/hyperv").unwrap());
    let pos = |n: &str| hyperv.iter().position(|x| x == n).unwrap();
    assert_eq!(pos("vendor_id"), pos("reset") + 1);
    // The new hostdevs come after the existing devices of their kind's place: before the
    // redirdevs and memballoon, after the video.
    let devs = names(at(&after, "devices").unwrap());
    let first_hostdev = devs.iter().position(|n| n == "hostdev").unwrap();
    assert_eq!(devs[first_hostdev - 1], "video");
    assert_eq!(devs[first_hostdev + 2], "redirdev");

    // Again: nothing changes.
    assert_eq!(features::edit(&on, &enable_all()).unwrap(), on);
    // Removing every setting gives back the original domain exactly.
    let off = features::edit(&on, &disable_all()).unwrap();
    assert_eq!(off, normalized);
    assert_eq!(features::read(&off).unwrap(), fixture_settings());
    assert_eq!(features::edit(&off, &disable_all()).unwrap(), off);
    validate("fixture, all off again", &off);
}

#[test]
fn removing_the_emulated_display() {
    let original = fixture_xml();
    let out = features::edit(&original, &[Edit::RemoveEmulatedDisplay]).unwrap();
    let d = validate_and_define("fixture without display", &out, "win11");
    assert!(devices(&d, "graphics").is_empty());
    assert!(devices(&d, "redirdev").is_empty());
    assert!(devices(&d, "channel").is_empty());
    let video = devices(&d, "video");
    assert_eq!(video.len(), 1);
    assert_eq!(attr(video[0], "model", "type"), Some("none"));
    assert_eq!(attr(&d, "devices/audio", "type"), Some("none"));
    let s = features::read(&out).unwrap();
    assert_eq!(
        s,
        PassthroughSettings {
            emulated_display: false,
            ..fixture_settings()
        }
    );
    // Everything else stays: disks, controllers, interface, serial, inputs, TPM, sound.
    let mine = parse(&out);
    let all = names(at(&mine, "devices").unwrap());
    for kept in [
        "emulator",
        "disk",
        "controller",
        "interface",
        "serial",
        "console",
        "input",
        "tpm",
        "sound",
        "audio",
        "memballoon",
    ] {
        assert!(all.iter().any(|n| n == kept), "{kept}");
    }
    assert_eq!(
        devices(&mine, "controller").len(),
        devices(&parse(&original), "controller").len()
    );
    assert_eq!(
        features::edit(&out, &[Edit::RemoveEmulatedDisplay]).unwrap(),
        out
    );
    // Our own GPU-only VM has no emulated display to remove.
    let gpu_only = domain_xml(&VmSpec {
        gpu: Some(gpu(None)),
        display: Display::None,
        ..VmSpec::default()
    })
    .unwrap();
    assert_eq!(
        features::edit(&gpu_only, &[Edit::RemoveEmulatedDisplay]).unwrap(),
        gpu_only
    );
}

#[test]
fn edits_of_our_own_domain_round_trip() {
    let spec = VmSpec {
        name: "Game's \"VM\" <1> & 游戏".into(),
        gpu: Some(gpu(Some("/usr/share/vgabios/gp106.rom"))),
        code43: all_code43(),
        ..VmSpec::default()
    };
    let xml = domain_xml(&spec).unwrap();
    // Our XML is already in the editor's form.
    assert_eq!(features::edit(&xml, &[]).unwrap(), xml);
    assert_eq!(features::edit(&xml, &enable_all()).unwrap(), xml);
    let off = features::edit(&xml, &disable_all()).unwrap();
    let s = features::read(&off).unwrap();
    assert_eq!(s.code43, Code43::default());
    assert!(s.hostdevs.is_empty() && s.rom_files.is_empty());
    let d = validate_and_define("ours, all off", &off, &spec.name);
    // The hyperv element stays (it has its enlightenments); kvm is gone with its only child.
    assert!(at(&d, "features/hyperv/relaxed").is_some());
    assert!(at(&d, "features/kvm").is_none());
    assert!(at(&parse(&off), "features/kvm").is_none());
    // Back on: the same settings as the wizard's.
    let again = features::edit(&off, &enable_all()).unwrap();
    let s = features::read(&again).unwrap();
    assert_eq!(s.code43, spec.code43);
    assert_eq!(s.hostdevs, spec.gpu.as_ref().unwrap().addresses);
    validate("ours, on again", &again);
}

#[test]
fn emptied_containers_go_and_others_stay() {
    // A domain without <features> or <devices>: the edit adds them, and removing the
    // setting gives the original back.
    let bare = "<domain type='kvm'><name>bare</name><memory>1048576</memory><os><type>hvm</type></os><on_crash>destroy</on_crash></domain>";
    let normalized = features::edit(bare, &[]).unwrap();
    let on = features::edit(bare, &[Edit::KvmHidden(true)]).unwrap();
    let d = parse(&on);
    assert_eq!(names(&d), ["name", "memory", "os", "features", "on_crash"]);
    assert_eq!(attr(&d, "features/kvm/hidden", "state"), Some("on"));
    assert_eq!(
        features::edit(&on, &[Edit::KvmHidden(false)]).unwrap(),
        normalized
    );
    for e in [
        Edit::VendorId(Some("abc".into())),
        Edit::IoapicKvm(true),
        Edit::IgnoreMsrs(true),
    ] {
        let on = features::edit(bare, std::slice::from_ref(&e)).unwrap();
        validate(&format!("bare + {e:?}"), &on);
        let undo = match e {
            Edit::VendorId(_) => Edit::VendorId(None),
            Edit::IoapicKvm(_) => Edit::IoapicKvm(false),
            _ => Edit::IgnoreMsrs(false),
        };
        assert_eq!(features::edit(&on, &[undo]).unwrap(), normalized, "{e:?}");
    }
    let with_dev = features::edit(bare, &[Edit::AddHostdevs(vec![addr("0000:01:00.0")])]).unwrap();
    assert_eq!(
        features::read(&with_dev).unwrap().hostdevs,
        [addr("0000:01:00.0")]
    );

    // Settings that are not ours to remove stay: a kvm element with another child, a
    // hidden state='off', an ioapic driver='qemu', msrs unknown='fail', hyperv passthrough.
    let other = "<domain type='kvm'><name>x</name><features><hyperv mode='passthrough'><vendor_id state='on' value='abc'/></hyperv><kvm><hidden state='off'/><hint-dedicated state='on'/></kvm><ioapic driver='qemu'/><msrs unknown='fail'/></features></domain>";
    let s = features::read(other).unwrap();
    assert_eq!(
        s.code43,
        Code43 {
            vendor_id: Some("abc".into()),
            ..Code43::default()
        }
    );
    let out = features::edit(
        other,
        &[
            Edit::VendorId(None),
            Edit::KvmHidden(false),
            Edit::IoapicKvm(false),
            Edit::IgnoreMsrs(false),
        ],
    )
    .unwrap();
    let d = parse(&out);
    assert_eq!(attr(&d, "features/hyperv", "mode"), Some("passthrough"));
    assert!(at(&d, "features/hyperv/vendor_id").is_none());
    assert_eq!(attr(&d, "features/kvm/hidden", "state"), Some("off"));
    assert!(at(&d, "features/kvm/hint-dedicated").is_some());
    assert_eq!(attr(&d, "features/ioapic", "driver"), Some("qemu"));
    assert_eq!(attr(&d, "features/msrs", "unknown"), Some("fail"));
    // Turning them on changes the existing elements in place.
    let on = features::edit(&out, &[Edit::KvmHidden(true), Edit::IoapicKvm(true)]).unwrap();
    let d = parse(&on);
    assert_eq!(
        names(at(&d, "features/kvm").unwrap()),
        ["hidden", "hint-dedicated"]
    );
    assert_eq!(attr(&d, "features/kvm/hidden", "state"), Some("on"));
    assert_eq!(attr(&d, "features/ioapic", "driver"), Some("kvm"));
}

#[test]
fn unknown_elements_comments_and_namespaces_are_kept() {
    let xml = r#"<?xml version="1.0"?>
<!-- made by hand -->
<domain type="kvm" xmlns:qemu="http://libvirt.org/schemas/domain/qemu/1.0">
  <name>hand &amp; made</name>
  <!-- keep me -->
  <frobnicate level="11"><inner>text &lt; here</inner></frobnicate>
  <metadata>
    <app:settings xmlns:app="https://example.org/app"><app:launch fullscreen="yes"/></app:settings>
  </metadata>
  <devices>
    <hostdev mode="subsystem" type="pci" managed="yes">
      <source><address domain="0" bus="8" slot="0" function="0"/></source>
      <rom bar="on"/>
    </hostdev>
    <disk type="file" device="disk"><source file="/a b.img"/><target dev="vda"/></disk>
  </devices>
  <qemu:commandline><qemu:env name="QEMU_AUDIO_DRV" value="pa"/></qemu:commandline>
</domain>
"#;
    let s = features::read(xml).unwrap();
    assert_eq!(s.hostdevs, [addr("0000:08:00.0")]);
    assert!(s.rom_files.is_empty());
    assert!(!s.efi && !s.secure_boot && !s.tpm && !s.machine_q35 && s.memballoon);
    let rom = Edit::RomFile {
        address: addr("0000:08:00.0"),
        file: Some("/roms/a'b.rom".into()),
    };
    let out = features::edit(xml, &[rom.clone(), Edit::KvmHidden(true)]).unwrap();
    for kept in [
        "<!-- keep me -->",
        "<frobnicate level=\"11\">",
        "<inner>text &lt; here</inner>",
        "<app:settings xmlns:app=\"https://example.org/app\">",
        "<app:launch fullscreen=\"yes\"/>",
        "<qemu:env name=\"QEMU_AUDIO_DRV\" value=\"pa\"/>",
        "xmlns:qemu=\"http://libvirt.org/schemas/domain/qemu/1.0\"",
        "<name>hand &amp; made</name>",
        "<source file=\"/a b.img\"/>",
        "<rom bar=\"on\" file=\"/roms/a&apos;b.rom\"/>",
    ] {
        assert!(out.contains(kept), "{kept} is missing:\n{out}");
    }
    let s = features::read(&out).unwrap();
    assert_eq!(
        s.rom_files,
        [(addr("0000:08:00.0"), "/roms/a'b.rom".into())]
    );
    // Removing the ROM file keeps the rest of <rom>.
    let out = features::edit(
        &out,
        &[Edit::RomFile {
            address: addr("0000:08:00.0"),
            file: None,
        }],
    )
    .unwrap();
    assert!(out.contains("<rom bar=\"on\"/>"), "{out}");
    // Legacy virt-manager UEFI (a pflash loader without firmware='efi').
    let legacy = "<domain type='kvm'><name>old</name><os><type arch='x86_64' machine='pc-q35-6.2'>hvm</type><loader readonly='yes' secure='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.ms.fd</loader></os><devices><video><model type='vga'/></video><memballoon model='none'/></devices></domain>";
    let s = features::read(legacy).unwrap();
    assert!(s.efi && s.secure_boot && s.machine_q35 && s.emulated_display && !s.memballoon);
}

#[test]
fn refused_edits_and_malformed_xml() {
    let xml = fixture_xml();
    let e = features::edit(
        &xml,
        &[Edit::RomFile {
            address: addr("0000:08:00.0"),
            file: Some("/r.rom".into()),
        }],
    )
    .unwrap_err();
    assert!(matches!(e, SpecError::Gpu(_)), "{e:?}");
    assert!(e.message().contains("0000:08:00.0"));
    let e = features::edit(&xml, &[Edit::VendorId(Some("with space".into()))]).unwrap_err();
    assert!(matches!(e, SpecError::VendorId(_)));
    let e = features::edit(
        &xml,
        &[
            Edit::AddHostdevs(vec![addr("0000:08:00.0")]),
            Edit::RomFile {
                address: addr("0000:08:00.0"),
                file: Some("relative.rom".into()),
            },
        ],
    )
    .unwrap_err();
    assert!(matches!(e, SpecError::Path(_)));
    for bad in [
        "",
        "<domain>",
        "<domain><name>x</domain>",
        "<network><name>default</name></network>",
        "<domain type='kvm'>&undefined;</domain>",
        "\u{0}",
    ] {
        let e = features::read(bad).unwrap_err();
        assert!(matches!(e, SpecError::Xml(_)), "{bad:?}");
        assert!(
            e.message()
                .starts_with("The virtual machine's XML cannot be read")
                || e.message().starts_with("This XML is not a libvirt domain"),
            "{bad:?}: {e}"
        );
    }
    // Every cut of a real domain is an error or a domain, never a panic.
    for cut in (0..xml.len())
        .step_by(7)
        .filter(|i| xml.is_char_boundary(*i))
    {
        let _ = features::read(&xml[..cut]);
        let _ = features::edit(&xml[..cut], &enable_all());
    }
}

// ----------------------------------------------------------------------------------------
// Property: read(edit(x, edits)) is what the edits say, on the fixture and on our own XML.

fn pool() -> Vec<PciAddress> {
    [
        "0000:08:00.0",
        "0000:08:00.1",
        "0000:01:00.0",
        "0000:0a:00.3",
    ]
    .into_iter()
    .map(addr)
    .collect()
}

fn edit_strategy() -> impl Strategy<Value = Edit> {
    let a = (0..4usize).prop_map(|i| pool()[i]);
    let addrs = proptest::collection::vec(0..4usize, 0..4)
        .prop_map(|v| v.into_iter().map(|i| pool()[i]).collect::<Vec<_>>());
    prop_oneof![
        proptest::option::of(prop_oneof![
            Just("randomid".to_owned()),
            Just("012345678ab".to_owned()),
            "[A-Za-z0-9]{1,12}",
        ])
        .prop_map(Edit::VendorId),
        any::<bool>().prop_map(Edit::KvmHidden),
        any::<bool>().prop_map(Edit::IoapicKvm),
        any::<bool>().prop_map(Edit::IgnoreMsrs),
        (
            a,
            proptest::option::of(prop_oneof![
                Just("/usr/share/vgabios/a.rom".to_owned()),
                Just("/roms/游戏 'b'.rom".to_owned()),
            ])
        )
            .prop_map(|(address, file)| Edit::RomFile { address, file }),
        Just(Edit::RemoveEmulatedDisplay),
        addrs.clone().prop_map(Edit::AddHostdevs),
        addrs.prop_map(Edit::RemoveHostdevs),
    ]
}

/// What the panel must read after `edits`; None when an edit must be refused.
fn model(mut s: PassthroughSettings, edits: &[Edit]) -> Option<PassthroughSettings> {
    for e in edits {
        match e {
            Edit::VendorId(v) => s.code43.vendor_id = v.clone(),
            Edit::KvmHidden(b) => s.code43.kvm_hidden = *b,
            Edit::IoapicKvm(b) => s.code43.ioapic_kvm = *b,
            Edit::IgnoreMsrs(b) => s.code43.ignore_msrs = *b,
            Edit::RomFile { address, file } => {
                if !s.hostdevs.contains(address) {
                    if file.is_some() {
                        return None;
                    }
                    continue;
                }
                s.rom_files.retain(|(a, _)| a != address);
                if let Some(f) = file {
                    s.rom_files.push((*address, f.clone()));
                }
            }
            Edit::RemoveEmulatedDisplay => s.emulated_display = false,
            Edit::AddHostdevs(list) => {
                for a in list {
                    if !s.hostdevs.contains(a) {
                        s.hostdevs.push(*a);
                    }
                }
            }
            Edit::RemoveHostdevs(list) => {
                s.hostdevs.retain(|a| !list.contains(a));
                s.rom_files.retain(|(a, _)| !list.contains(a));
            }
        }
    }
    // ROM files are read in the hostdevs' order.
    let order = |a: &PciAddress| s.hostdevs.iter().position(|h| h == a);
    s.rom_files.sort_by_key(|(a, _)| order(a));
    Some(s)
}

fn bases() -> Vec<String> {
    vec![
        fixture_xml(),
        domain_xml(&VmSpec {
            gpu: Some(gpu(Some("/usr/share/vgabios/gp106.rom"))),
            code43: all_code43(),
            ..VmSpec::default()
        })
        .unwrap(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn read_of_edit_reflects_the_edits(
        base in 0..2usize,
        edits in proptest::collection::vec(edit_strategy(), 0..8),
    ) {
        let xml = &bases()[base];
        let before = features::read(xml).unwrap();
        match (model(before, &edits), features::edit(xml, &edits)) {
            (Some(want), Ok(out)) => {
                let got = features::read(&out).unwrap();
                prop_assert_eq!(&got, &want);
                // Applying the same edits again: the model again (refused when a later edit
                // took away what an earlier one needs, e.g. a ROM file's hostdev), and the
                // very same XML unless the edits both remove and add a hostdev (which moves
                // it to the end of the hostdevs).
                let removed: Vec<&PciAddress> = edits
                    .iter()
                    .flat_map(|e| match e {
                        Edit::RemoveHostdevs(l) => l.iter().collect(),
                        _ => vec![],
                    })
                    .collect();
                let moves = edits.iter().any(|e| {
                    matches!(e, Edit::AddHostdevs(l) if l.iter().any(|a| removed.contains(&a)))
                });
                match (model(got, &edits), features::edit(&out, &edits)) {
                    (Some(want), Ok(again)) => {
                        prop_assert_eq!(features::read(&again).unwrap(), want);
                        if !moves {
                            prop_assert_eq!(again, out);
                        }
                    }
                    (None, again) => prop_assert!(again.is_err()),
                    (Some(_), Err(e)) => prop_assert!(false, "refused again: {:?}", e),
                }
            }
            (None, Err(e)) => prop_assert!(matches!(e, SpecError::Gpu(_)), "{:?}", e),
            (want, got) => prop_assert!(false, "model {:?}, edit {:?}", want, got),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Any text, and any text spliced into a real domain, is read or refused, never a panic.
    #[test]
    fn any_input_is_read_or_refused(
        junk in ".{0,200}",
        at in 0..4000usize,
        edits in proptest::collection::vec(edit_strategy(), 0..3),
    ) {
        let _ = features::read(&junk);
        let _ = features::edit(&junk, &edits);
        let xml = fixture_xml();
        let mut at = at.min(xml.len());
        while !xml.is_char_boundary(at) {
            at -= 1;
        }
        let spliced = format!("{}{junk}{}", &xml[..at], &xml[at..]);
        if let Ok(out) = features::edit(&spliced, &edits) {
            prop_assert!(features::read(&out).is_ok());
        }
    }
}

proptest! {
    // Each case runs virt-xml-validate: fewer cases.
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn edited_domains_stay_valid(
        base in 0..2usize,
        edits in proptest::collection::vec(edit_strategy(), 1..8),
    ) {
        if let Ok(out) = features::edit(&bases()[base], &edits) {
            validate(&format!("{edits:?}"), &out);
        }
    }
}

// ----------------------------------------------------------------------------------------
// passthroughctl vm-xml

const B550: &str = "tests/fixtures/roots/b550-blog";

#[test]
fn passthroughctl_vm_xml_on_the_blogs_machine() {
    let out = ctl(&[
        "vm-xml",
        "--root",
        B550,
        "--name",
        "win11",
        "--gpu",
        "0000:08:00.0",
        "--iso",
        "/var/lib/libvirt/images/Win11_23H2_x64.iso",
        "--virtio-iso",
        "/var/lib/libvirt/images/virtio-win.iso",
        "--network",
        "bridge:br0",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stderr.is_empty());
    let xml = String::from_utf8(out.stdout).unwrap();
    insta::assert_snapshot!("vm-xml-b550-blog-gpu", xml);
    // The GTX 1060 with its HDMI audio (group 16), NVIDIA's code 43 settings.
    let spec = VmSpec {
        name: "win11".into(),
        install_iso: Some("/var/lib/libvirt/images/Win11_23H2_x64.iso".into()),
        virtio_iso: Some("/var/lib/libvirt/images/virtio-win.iso".into()),
        network: NetworkChoice::Bridge("br0".into()),
        gpu: Some(gpu(None)),
        code43: code43::recommended("10de", "1c02"),
        ..VmSpec::default()
    };
    assert_eq!(xml, domain_xml(&spec).unwrap());
    let d = validate_and_define("passthroughctl vm-xml", &xml, "win11");
    check_semantics("passthroughctl vm-xml (libvirt)", &spec, &d);

    // --json carries the same XML and the spec.
    let out = ctl(&[
        "--json",
        "vm-xml",
        "--root",
        B550,
        "--name",
        "win11",
        "--gpu",
        "0000:08:00.0",
        "--iso",
        "/var/lib/libvirt/images/Win11_23H2_x64.iso",
        "--virtio-iso",
        "/var/lib/libvirt/images/virtio-win.iso",
        "--network",
        "bridge:br0",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["xml"], xml);
    assert_eq!(
        v["spec"]["gpu"]["addresses"],
        serde_json::json!(["0000:08:00.0", "0000:08:00.1"])
    );
}

#[test]
fn passthroughctl_vm_xml_choices() {
    let out = ctl(&[
        "vm-xml",
        "--name",
        "游戏 'VM' & <co>",
        "--windows",
        "10",
        "--memory",
        "16384",
        "--vcpus",
        "6",
        "--disk",
        "/dev/nvme1n1",
        "--network",
        "network:default",
        "--no-kvm",
        "--root",
        B550,
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let xml = String::from_utf8(out.stdout).unwrap();
    let spec = VmSpec {
        name: "游戏 'VM' & <co>".into(),
        windows: WindowsVersion::Windows10,
        memory_mib: 16384,
        vcpus: 6,
        storage: Storage::Path {
            path: "/dev/nvme1n1".into(),
        },
        kvm: false,
        ..VmSpec::default()
    };
    assert_eq!(xml, domain_xml(&spec).unwrap());
    validate_and_define("vm-xml choices", &xml, &spec.name);
    let out = ctl(&["vm-xml", "--name", "w", "--disk-size", "64", "--root", B550]);
    let xml = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        xml,
        domain_xml(&VmSpec {
            name: "w".into(),
            storage: Storage::NewVolume {
                pool: "default".into(),
                size_gib: 64
            },
            ..VmSpec::default()
        })
        .unwrap()
    );
}

#[test]
fn passthroughctl_vm_xml_refusals_exit_2() {
    let shared = ctl(&[
        "vm-xml",
        "--root",
        B550,
        "--name",
        "win11",
        "--gpu",
        "0000:04:00.0",
    ]);
    assert_eq!(shared.status.code(), Some(2));
    assert!(shared.stdout.is_empty());
    insta::assert_snapshot!(
        "vm-xml-b550-blog-shared-group",
        String::from_utf8_lossy(&shared.stderr)
    );
    for args in [
        // The GPU's HDMI audio function is not a GPU.
        &[
            "vm-xml",
            "--root",
            B550,
            "--name",
            "w",
            "--gpu",
            "0000:08:00.1",
        ][..],
        &[
            "vm-xml",
            "--root",
            "tests/fixtures/roots/iommu-off",
            "--name",
            "w",
            "--gpu",
            "0000:04:00.0",
        ][..],
        &["vm-xml", "--root", B550][..],
        &["vm-xml", "--root", B550, "--name"][..],
        &["vm-xml", "--root", B550, "--name", "w", "--gpu", "08:00"][..],
        &[
            "vm-xml",
            "--root",
            B550,
            "--name",
            "w",
            "--gpu",
            "0000:08:00.0",
            "--gpu",
            "0000:04:00.0",
        ][..],
        &["vm-xml", "--root", B550, "--name", "w", "--windows", "7"][..],
        &["vm-xml", "--root", B550, "--name", "w", "--memory", "lots"][..],
        &["vm-xml", "--root", B550, "--name", "w", "--memory", "512"][..],
        &["vm-xml", "--root", B550, "--name", "w", "--vcpus", "0"][..],
        &[
            "vm-xml",
            "--root",
            B550,
            "--name",
            "w",
            "--disk",
            "/a.img",
            "--disk-size",
            "9",
        ][..],
        &["vm-xml", "--root", B550, "--name", "w", "--disk", "a.img"][..],
        &["vm-xml", "--root", B550, "--name", "w", "--iso", "win.iso"][..],
        &["vm-xml", "--root", B550, "--name", "w", "--network", "br0"][..],
        &[
            "vm-xml",
            "--root",
            B550,
            "--name",
            "w",
            "--network",
            "bridge:br 0",
        ][..],
        &["vm-xml", "--root", B550, "--name", "a/b"][..],
        &["vm-xml", "--root", "/nonexistent/root", "--name", "w"][..],
        &["gpus", "--root", B550, "--name", "w"][..],
        &["check", "--root", B550, "--gpu", "0000:08:00.0"][..],
        &["plan", "--root", B550, "--no-kvm"][..],
    ] {
        let o = ctl(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("passthroughctl: "), "{args:?}: {err}");
        assert!(o.stdout.is_empty(), "{args:?}");
    }
    let help = String::from_utf8(ctl(&["--help"]).stdout).unwrap();
    for line in [
        "vm-xml",
        "Options of vm-xml:",
        "--disk-size GIB",
        "--no-kvm",
    ] {
        assert!(help.contains(line), "{line}");
    }
}
