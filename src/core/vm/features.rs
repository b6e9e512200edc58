//! The "Passthrough" panel of an existing VM (one made by the wizard, or in virt-manager):
//! the passthrough-related settings read from its domain XML, and edits of exactly those
//! settings that keep everything else (other devices, metadata, `qemu:commandline`,
//! elements Passthrough does not know) as it was.
//!
//! Every edit sets a state, so applying the same edits again changes nothing. Removing a
//! setting removes its element, and the element that held it when nothing else is left in
//! it (`<kvm>` without `<hidden>`, `<features>` without children).

use serde::{Deserialize, Serialize};
use xmltree::{Element, XMLNode};

use super::spec::{check_path, check_vendor_id, Code43, SpecError};
use super::tree::{self, attr, el, first, first_mut, named, Build};
use super::xml::pci_hostdev;
use crate::i18n::gettext_f;
use crate::pci::PciAddress;

/// What the panel shows of a domain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassthroughSettings {
    pub code43: Code43,
    /// Every PCI hostdev, in the domain's order.
    pub hostdevs: Vec<PciAddress>,
    /// The hostdevs with a `<rom file=…>`.
    pub rom_files: Vec<(PciAddress, String)>,
    /// Any `<graphics>`, or a `<video>` whose model is not `none`.
    pub emulated_display: bool,
    /// UEFI: `<os firmware='efi'>`, or a pflash `<loader>`.
    pub efi: bool,
    /// Secure Boot: the firmware feature `secure-boot`, else `<loader secure='yes'>`.
    pub secure_boot: bool,
    pub tpm: bool,
    /// The q35 machine type (`q35`, `pc-q35-7.2`, …).
    pub machine_q35: bool,
    /// A memory balloon: any model but `none`; none in the XML means libvirt adds one.
    pub memballoon: bool,
}

/// One change the panel makes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Edit {
    /// `<hyperv><vendor_id state='on' value=…/>`, or its removal.
    VendorId(Option<String>),
    /// `<kvm><hidden state='on'/></kvm>`, or its removal.
    KvmHidden(bool),
    /// `<ioapic driver='kvm'/>`, or its removal.
    IoapicKvm(bool),
    /// `<msrs unknown='ignore'/>`, or its removal.
    IgnoreMsrs(bool),
    /// The `<rom file=…>` of the hostdev at `address`, which must be in the domain for a
    /// file (removing the file of a device that is not there changes nothing).
    RomFile {
        address: PciAddress,
        file: Option<String>,
    },
    /// Removes the SPICE/VNC graphics and what needs them (SPICE channels and USB
    /// redirection; SPICE audio becomes `none`) and makes the video model `none`, so the
    /// passed-through GPU is the only display.
    RemoveEmulatedDisplay,
    /// Adds managed PCI hostdevs for the addresses not in the domain yet.
    AddHostdevs(Vec<PciAddress>),
    /// Removes the PCI hostdevs at these addresses.
    RemoveHostdevs(Vec<PciAddress>),
}

/// Reads the panel's settings from a domain XML.
pub fn read(xml: &str) -> Result<PassthroughSettings, SpecError> {
    let domain = tree::parse_domain(xml)?;
    Ok(settings(&domain))
}

/// Applies `edits` in order to a domain XML and returns the new XML.
pub fn edit(xml: &str, edits: &[Edit]) -> Result<String, SpecError> {
    let mut domain = tree::parse_domain(xml)?;
    for e in edits {
        apply(&mut domain, e)?;
    }
    tree::write(&domain)
}

/// libvirt's numbers in PCI addresses: `0x…` hexadecimal, `0…` octal, else decimal.
fn number(text: &str) -> Option<u32> {
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        u32::from_str_radix(hex, 16).ok()
    } else if text.len() > 1 && text.starts_with('0') {
        u32::from_str_radix(&text[1..], 8).ok()
    } else {
        text.parse().ok()
    }
    .filter(|_| !text.starts_with('+') && !text.contains(['+', '-']))
}

fn address_of(source_address: &Element) -> Option<PciAddress> {
    let part = |name: &str| attr(source_address, name).and_then(number);
    let domain = match attr(source_address, "domain") {
        Some(d) => number(d)?,
        None => 0,
    };
    let (bus, device, function) = (part("bus")?, part("slot")?, part("function")?);
    Some(PciAddress {
        domain,
        bus: u8::try_from(bus).ok()?,
        device: u8::try_from(device).ok().filter(|d| *d < 32)?,
        function: u8::try_from(function).ok().filter(|f| *f < 8)?,
    })
}

/// The host address of a PCI hostdev element.
fn hostdev_address(hostdev: &Element) -> Option<PciAddress> {
    if hostdev.name != "hostdev"
        || attr(hostdev, "type") != Some("pci")
        || attr(hostdev, "mode").is_some_and(|m| m != "subsystem")
    {
        return None;
    }
    address_of(first(first(hostdev, "source")?, "address")?)
}

fn settings(domain: &Element) -> PassthroughSettings {
    let features = first(domain, "features");
    let feature = |name: &str| features.and_then(|f| first(f, name));
    let vendor_id = feature("hyperv")
        .and_then(|h| first(h, "vendor_id"))
        .filter(|v| attr(v, "state") == Some("on"))
        .and_then(|v| attr(v, "value"))
        .map(str::to_owned);
    let kvm_hidden = feature("kvm")
        .and_then(|k| first(k, "hidden"))
        .is_some_and(|h| attr(h, "state") == Some("on"));
    let ioapic_kvm = feature("ioapic").is_some_and(|i| attr(i, "driver") == Some("kvm"));
    let ignore_msrs = feature("msrs").is_some_and(|m| attr(m, "unknown") == Some("ignore"));

    let mut s = PassthroughSettings {
        code43: Code43 {
            vendor_id,
            kvm_hidden,
            ioapic_kvm,
            ignore_msrs,
        },
        memballoon: true,
        ..PassthroughSettings::default()
    };
    if let Some(os) = first(domain, "os") {
        let loader = first(os, "loader");
        s.efi = attr(os, "firmware") == Some("efi")
            || loader.is_some_and(|l| attr(l, "type") == Some("pflash"));
        let sb_feature = first(os, "firmware").and_then(|f| {
            named(f, "feature")
                .find(|x| attr(x, "name") == Some("secure-boot"))
                .map(|x| attr(x, "enabled") == Some("yes"))
        });
        s.secure_boot =
            sb_feature.unwrap_or_else(|| loader.is_some_and(|l| attr(l, "secure") == Some("yes")));
        s.machine_q35 = first(os, "type")
            .and_then(|t| attr(t, "machine"))
            .is_some_and(|m| m.contains("q35"));
    }
    if let Some(devices) = first(domain, "devices") {
        for d in tree::elements(devices).filter(|d| d.namespace.is_none()) {
            match d.name.as_str() {
                "hostdev" => {
                    if let Some(a) = hostdev_address(d) {
                        s.hostdevs.push(a);
                        if let Some(file) = first(d, "rom").and_then(|r| attr(r, "file")) {
                            s.rom_files.push((a, file.to_owned()));
                        }
                    }
                }
                "graphics" => s.emulated_display = true,
                "video" if first(d, "model").and_then(|m| attr(m, "type")) != Some("none") => {
                    s.emulated_display = true;
                }
                "tpm" => s.tpm = true,
                "memballoon" => s.memballoon = attr(d, "model") != Some("none"),
                _ => {}
            }
        }
    }
    s
}

/// libvirt's order of `<features>` children (new ones go where libvirt would write them).
const FEATURES_ORDER: &[&str] = &[
    "acpi",
    "apic",
    "pae",
    "hap",
    "viridian",
    "privnet",
    "hyperv",
    "kvm",
    "xen",
    "pvspinlock",
    "pmu",
    "vmport",
    "gic",
    "smm",
    "ioapic",
    "hpt",
    "vmcoreinfo",
    "htm",
    "nested-hv",
    "msrs",
];

/// libvirt's order of `<hyperv>` children.
const HYPERV_ORDER: &[&str] = &[
    "relaxed",
    "vapic",
    "spinlocks",
    "vpindex",
    "runtime",
    "synic",
    "stimer",
    "reset",
    "vendor_id",
    "frequencies",
    "reenlightenment",
    "tlbflush",
    "ipi",
    "evmcs",
    "avic",
];

/// Where a new `name` goes among `parent`'s children: before the first child that comes
/// later in `order`, else at the end.
fn ordered_position(parent: &Element, name: &str, order: &[&str]) -> Option<usize> {
    let rank = order.iter().position(|n| *n == name)?;
    parent.children.iter().position(|n| {
        n.as_element().is_some_and(|c| {
            c.namespace.is_none()
                && order
                    .iter()
                    .position(|o| *o == c.name)
                    .is_some_and(|r| r > rank)
        })
    })
}

/// Where a new top-level `name` goes: before the first of `before`, else at the end.
fn before_first(parent: &Element, before: &[&str]) -> Option<usize> {
    parent.children.iter().position(|n| {
        n.as_element()
            .is_some_and(|c| c.namespace.is_none() && before.contains(&c.name.as_str()))
    })
}

fn features_mut(domain: &mut Element) -> &mut Element {
    tree::ensure(
        domain,
        "features",
        || el("features"),
        |d| {
            before_first(
                d,
                &[
                    "cpu",
                    "clock",
                    "on_poweroff",
                    "on_reboot",
                    "on_crash",
                    "pm",
                    "devices",
                ],
            )
        },
    )
}

fn feature_mut<N: AsRef<str>>(domain: &mut Element, name: N) -> &mut Element {
    let name = name.as_ref();
    let features = features_mut(domain);
    tree::ensure(
        features,
        name,
        || el(name),
        |f| ordered_position(f, name, FEATURES_ORDER),
    )
}

fn set_attr(e: &mut Element, name: &str, value: &str) {
    if attr(e, name) != Some(value) {
        e.attributes.insert(name.to_owned(), value.to_owned());
    }
}

/// Removes the first child `name` of `parent` if `remove(child)`; true when one was removed.
fn remove_child_if(parent: &mut Element, name: &str, remove: impl Fn(&Element) -> bool) -> bool {
    match tree::position(parent, name) {
        Some(i) if parent.children[i].as_element().is_some_and(remove) => {
            parent.children.remove(i);
            true
        }
        _ => false,
    }
}

/// Removes the feature `name`'s child `child` if `remove(child)`, then `name` if that left
/// it empty (and without attributes but `keep_attrs`), then `<features>` if empty.
fn remove_feature_child(
    domain: &mut Element,
    name: &str,
    child: &str,
    keep_attrs: &[(&str, &str)],
    remove: impl Fn(&Element) -> bool,
) {
    let Some(features) = first_mut(domain, "features") else {
        return;
    };
    let Some(feature) = first_mut(features, name) else {
        return;
    };
    if !remove_child_if(feature, child, remove) {
        return;
    }
    let only_default_attrs = feature
        .attributes
        .iter()
        .all(|(k, v)| keep_attrs.contains(&(k.as_str(), v.as_str())));
    if tree::is_empty(feature) && only_default_attrs {
        remove_child_if(features, name, |_| true);
    }
    remove_empty_features(domain);
}

/// Removes the feature `name` itself if `remove(feature)`, then `<features>` if empty.
fn remove_feature(domain: &mut Element, name: &str, remove: impl Fn(&Element) -> bool) {
    let Some(features) = first_mut(domain, "features") else {
        return;
    };
    if remove_child_if(features, name, remove) {
        remove_empty_features(domain);
    }
}

fn remove_empty_features(domain: &mut Element) {
    remove_child_if(domain, "features", |f| {
        tree::is_empty(f) && f.attributes.is_empty()
    });
}

fn devices_mut(domain: &mut Element) -> &mut Element {
    tree::ensure(domain, "devices", || el("devices"), |_| None)
}

fn not_passed_through(address: &PciAddress) -> SpecError {
    SpecError::Gpu(gettext_f(
        "The device {address} is not passed through to this virtual machine, so it cannot have a ROM file.",
        &[("address", &address.to_string())],
    ))
}

fn apply(domain: &mut Element, edit: &Edit) -> Result<(), SpecError> {
    match edit {
        Edit::VendorId(Some(id)) => {
            check_vendor_id(id)?;
            let hyperv = feature_mut(domain, "hyperv");
            let vendor = tree::ensure(
                hyperv,
                "vendor_id",
                || el("vendor_id"),
                |h| ordered_position(h, "vendor_id", HYPERV_ORDER),
            );
            set_attr(vendor, "state", "on");
            set_attr(vendor, "value", id);
        }
        Edit::VendorId(None) => {
            remove_feature_child(domain, "hyperv", "vendor_id", &[("mode", "custom")], |v| {
                attr(v, "state") == Some("on")
            });
        }
        Edit::KvmHidden(true) => {
            let kvm = feature_mut(domain, "kvm");
            let hidden = tree::ensure(kvm, "hidden", || el("hidden"), |_| Some(0));
            set_attr(hidden, "state", "on");
        }
        Edit::KvmHidden(false) => {
            remove_feature_child(domain, "kvm", "hidden", &[], |h| {
                attr(h, "state") == Some("on")
            });
        }
        Edit::IoapicKvm(true) => set_attr(feature_mut(domain, "ioapic"), "driver", "kvm"),
        Edit::IoapicKvm(false) => {
            remove_feature(domain, "ioapic", |i| attr(i, "driver") == Some("kvm"));
        }
        Edit::IgnoreMsrs(true) => set_attr(feature_mut(domain, "msrs"), "unknown", "ignore"),
        Edit::IgnoreMsrs(false) => {
            remove_feature(domain, "msrs", |m| attr(m, "unknown") == Some("ignore"));
        }
        Edit::RomFile { address, file } => {
            if let Some(f) = file {
                check_path(f)?;
            }
            let mut found = false;
            let no_devices = &mut Vec::new();
            let nodes = match first_mut(domain, "devices") {
                Some(devices) => &mut devices.children,
                None => no_devices,
            };
            for node in nodes.iter_mut() {
                let Some(hostdev) = node.as_mut_element() else {
                    continue;
                };
                if hostdev.namespace.is_some() || hostdev_address(hostdev) != Some(*address) {
                    continue;
                }
                found = true;
                match file {
                    Some(f) => {
                        let rom = tree::ensure(
                            hostdev,
                            "rom",
                            || el("rom"),
                            |h| tree::position(h, "address"),
                        );
                        set_attr(rom, "file", f);
                    }
                    None => {
                        if let Some(rom) = first_mut(hostdev, "rom") {
                            rom.attributes.shift_remove("file");
                        }
                        remove_child_if(hostdev, "rom", |r| {
                            r.attributes.is_empty() && tree::is_empty(r)
                        });
                    }
                }
            }
            // Removing the ROM file of a device that is not there leaves nothing to do.
            if !found && file.is_some() {
                return Err(not_passed_through(address));
            }
        }
        Edit::RemoveEmulatedDisplay => remove_emulated_display(domain),
        Edit::AddHostdevs(addresses) => {
            let devices = devices_mut(domain);
            for a in addresses {
                let present = tree::elements(devices).any(|d| hostdev_address(d) == Some(*a));
                if present {
                    continue;
                }
                let last_hostdev = devices
                    .children
                    .iter()
                    .rposition(|n| n.as_element().is_some_and(|d| hostdev_address(d).is_some()));
                let at = match last_hostdev {
                    Some(i) => i + 1,
                    None => before_first(
                        devices,
                        &[
                            "redirdev",
                            "redirfilter",
                            "hub",
                            "watchdog",
                            "memballoon",
                            "rng",
                            "panic",
                            "shmem",
                            "memory",
                            "iommu",
                            "vsock",
                            "crypto",
                        ],
                    )
                    .unwrap_or(devices.children.len()),
                };
                devices
                    .children
                    .insert(at, XMLNode::Element(pci_hostdev(a)));
            }
        }
        Edit::RemoveHostdevs(addresses) => {
            if let Some(devices) = first_mut(domain, "devices") {
                devices.children.retain(|n| {
                    !n.as_element()
                        .and_then(hostdev_address)
                        .is_some_and(|a| addresses.contains(&a))
                });
            }
        }
    }
    Ok(())
}

fn remove_emulated_display(domain: &mut Element) {
    let Some(devices) = first_mut(domain, "devices") else {
        return;
    };
    let is = |n: &XMLNode, name: &str| {
        n.as_element()
            .is_some_and(|e| e.name == name && e.namespace.is_none())
    };
    let type_of = |n: &XMLNode| {
        n.as_element()
            .and_then(|e| attr(e, "type"))
            .map(str::to_owned)
    };
    devices.children.retain(|n| {
        let spice_type = matches!(type_of(n).as_deref(), Some("spicevmc" | "spiceport"));
        !(is(n, "graphics") || ((is(n, "channel") || is(n, "redirdev")) && spice_type))
    });
    for node in devices.children.iter_mut() {
        if let Some(audio) = node
            .as_mut_element()
            .filter(|e| e.name == "audio" && e.namespace.is_none())
        {
            if attr(audio, "type") == Some("spice") {
                set_attr(audio, "type", "none");
            }
        }
    }
    let emulated_video = devices.children.iter().any(|n| {
        is(n, "video")
            && n.as_element()
                .and_then(|v| first(v, "model"))
                .and_then(|m| attr(m, "type"))
                != Some("none")
    });
    if emulated_video {
        let at = devices.children.iter().position(|n| is(n, "video"));
        devices.children.retain(|n| !is(n, "video"));
        let none = el("video").child(el("model").attr("type", "none"));
        let at = at
            .unwrap_or(devices.children.len())
            .min(devices.children.len());
        devices.children.insert(at, XMLNode::Element(none));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_as_libvirt_reads_them() {
        assert_eq!(number("0x08"), Some(8));
        assert_eq!(number("0X1f"), Some(31));
        assert_eq!(number("8"), Some(8));
        assert_eq!(number("010"), Some(8));
        assert_eq!(number("0"), Some(0));
        assert_eq!(number("08"), None);
        assert_eq!(number(""), None);
        assert_eq!(number("-1"), None);
        assert_eq!(number("+1"), None);
        assert_eq!(number("0x"), None);
    }

    #[test]
    fn malformed_xml_is_an_error_not_a_panic() {
        for bad in [
            "",
            "<",
            "<domain>",
            "<domain></dom>",
            "not xml",
            "<network/>",
            "<?xml version='1.0'?>",
            "<domain a='1' a='2'/>",
            "<domain xmlns:x='u'><x:y x:z='1'/></domain>",
        ] {
            let e = read(bad).unwrap_err();
            assert!(matches!(e, SpecError::Xml(_)), "{bad:?}: {e:?}");
            assert!(edit(bad, &[Edit::KvmHidden(true)]).is_err(), "{bad:?}");
        }
        let deep = format!(
            "<domain>{}{}</domain>",
            "<a>".repeat(100_000),
            "</a>".repeat(100_000)
        );
        assert!(matches!(read(&deep), Err(SpecError::Xml(_))));
    }
}
