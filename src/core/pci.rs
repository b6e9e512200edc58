//! PCI devices as sysfs shows them under `/sys/bus/pci/devices`, with their IOMMU groups.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Serialize, Serializer};

use crate::i18n::gettext_f;
use crate::ids::{IdsSource, PciNames, Wanted};
use crate::note::Note;
use crate::root::{join_lexically, HostRoot};

/// `DDDD:BB:DD.F`. Domains above `ffff` exist (Intel VMD uses `10000`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciAddress {
    pub domain: u32,
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

impl PciAddress {
    /// The same slot: domain, bus and device equal (functions of one card).
    pub fn same_slot(&self, other: &Self) -> bool {
        self.domain == other.domain && self.bus == other.bus && self.device == other.device
    }
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

impl Serialize for PciAddress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for PciAddress {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl FromStr for PciAddress {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || format!("not a PCI address: {s:?} (expected DDDD:BB:DD.F)");
        let (rest, function) = s.rsplit_once('.').ok_or_else(err)?;
        let mut parts = rest.split(':');
        let (domain, bus, device) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(d), Some(b), Some(dev), None) => (d, b, dev),
            (Some(b), Some(dev), None, None) => ("0000", b, dev),
            _ => return Err(err()),
        };
        let hex_ok = |p: &str, min: usize, max: usize| {
            (min..=max).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_hexdigit())
        };
        if !hex_ok(domain, 4, 8)
            || !hex_ok(bus, 2, 2)
            || !hex_ok(device, 2, 2)
            || !hex_ok(function, 1, 1)
        {
            return Err(err());
        }
        let device = u8::from_str_radix(device, 16).map_err(|_| err())?;
        let function = u8::from_str_radix(function, 16).map_err(|_| err())?;
        if device > 0x1f || function > 7 {
            return Err(err());
        }
        Ok(Self {
            domain: u32::from_str_radix(domain, 16).map_err(|_| err())?,
            bus: u8::from_str_radix(bus, 16).map_err(|_| err())?,
            device,
            function,
        })
    }
}

/// PCIe link state of a device, as sysfs reports it. Absent files stay `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Link {
    pub current_width: Option<u8>,
    pub max_width: Option<u8>,
    pub current_speed: Option<String>,
    pub max_speed: Option<String>,
}

impl Link {
    pub fn is_empty(&self) -> bool {
        self.current_width.is_none() && self.max_width.is_none()
    }
}

/// `8.0 GT/s PCIe` -> 8.0; `Unknown` -> None.
pub fn speed_gts(speed: &str) -> Option<f32> {
    speed.split_whitespace().next()?.parse().ok()
}

/// The PCIe generation of a link speed, for people ("PCIe 3.0").
pub fn speed_generation(speed: &str) -> Option<&'static str> {
    let gts = speed_gts(speed)?;
    Some(match gts {
        g if g < 3.0 => "1.0",
        g if g < 6.0 => "2.0",
        g if g < 10.0 => "3.0",
        g if g < 20.0 => "4.0",
        g if g < 40.0 => "5.0",
        _ => "6.0",
    })
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PciDevice {
    pub address: PciAddress,
    pub vendor_id: Option<u16>,
    pub device_id: Option<u16>,
    /// The 24-bit class code (class, subclass, programming interface).
    pub class: Option<u32>,
    pub revision: Option<u8>,
    pub subsystem_vendor: Option<u16>,
    pub subsystem_device: Option<u16>,
    pub vendor_name: Option<String>,
    pub device_name: Option<String>,
    pub subsystem_name: Option<String>,
    pub class_name: Option<String>,
    pub driver: Option<String>,
    pub boot_vga: Option<bool>,
    pub link: Link,
    pub reset_methods: Vec<String>,
    /// Bridges between the root complex and this device, root-most first.
    pub parents: Vec<PciAddress>,
    /// Whether `parents` could be read (false for broken or plain-directory entries).
    #[serde(skip)]
    pub chain_known: bool,
    pub iommu_group: Option<u32>,
    pub notes: Vec<Note>,
}

impl PciDevice {
    fn empty(address: PciAddress) -> Self {
        Self {
            address,
            vendor_id: None,
            device_id: None,
            class: None,
            revision: None,
            subsystem_vendor: None,
            subsystem_device: None,
            vendor_name: None,
            device_name: None,
            subsystem_name: None,
            class_name: None,
            driver: None,
            boot_vga: None,
            link: Link::default(),
            reset_methods: Vec::new(),
            parents: Vec::new(),
            chain_known: false,
            iommu_group: None,
            notes: Vec::new(),
        }
    }

    /// Class and subclass (`0x0300`).
    pub fn class16(&self) -> Option<u16> {
        self.class.map(|c| (c >> 8) as u16)
    }

    /// `"0300"`, as lspci and the JSON contract print it.
    pub fn class_hex(&self) -> Option<String> {
        self.class16().map(|c| format!("{c:04x}"))
    }

    /// `"10de:1c02"`.
    pub fn ids(&self) -> Option<String> {
        Some(format!("{:04x}:{:04x}", self.vendor_id?, self.device_id?))
    }

    /// VGA (0x0300), 3D (0x0302) or other display controller (0x0380).
    pub fn is_gpu(&self) -> bool {
        matches!(self.class16(), Some(0x0300 | 0x0302 | 0x0380))
    }

    /// Host bridge, ISA bridge or PCI bridge: may stay with the host when its group is passed.
    pub fn is_bridge(&self) -> bool {
        matches!(self.class16(), Some(0x0600 | 0x0601 | 0x0604))
    }

    /// "NVIDIA Corporation GP106 [GeForce GTX 1060 3GB]", or the IDs when the names are unknown.
    pub fn display_name(&self) -> String {
        match (&self.vendor_name, &self.device_name) {
            (Some(v), Some(d)) => format!("{v} {d}"),
            (Some(v), None) => match self.device_id {
                Some(d) => gettext_f(
                    "{vendor} device {id}",
                    &[("vendor", v), ("id", &format!("{d:04x}"))],
                ),
                None => v.clone(),
            },
            _ => match self.ids() {
                Some(ids) => gettext_f("Device {ids}", &[("ids", &ids)]),
                None => gettext_f(
                    "Unreadable device {address}",
                    &[("address", &self.address.to_string())],
                ),
            },
        }
    }

    /// The device name without the vendor ("GP106 [GeForce GTX 1060 3GB]").
    pub fn short_name(&self) -> String {
        self.device_name
            .clone()
            .unwrap_or_else(|| self.display_name())
    }

    pub fn class_label(&self) -> String {
        match (&self.class_name, self.class_hex()) {
            (Some(n), _) => n.clone(),
            (None, Some(hex)) => gettext_f("Class {class}", &[("class", &hex)]),
            (None, None) => gettext_f("Unknown class", &[]),
        }
    }
}

/// The standard header at the start of a device's `config` file.
struct ConfigHeader {
    vendor: u16,
    device: u16,
    revision: u8,
    class: u32,
    /// Subsystem vendor and device; only type-0 (endpoint) headers carry them here.
    subsystem: Option<(u16, u16)>,
}

impl ConfigHeader {
    fn parse(c: &[u8]) -> Option<Self> {
        if c.len() < 0x30 {
            return None;
        }
        let u16_at = |o: usize| u16::from_le_bytes([c[o], c[o + 1]]);
        let vendor = u16_at(0);
        if vendor == 0xffff || vendor == 0 {
            return None;
        }
        let subsystem = (c[0x0e] & 0x7f == 0)
            .then(|| (u16_at(0x2c), u16_at(0x2e)))
            .filter(|s| s.0 != 0);
        Some(Self {
            vendor,
            device: u16_at(2),
            revision: c[8],
            class: u32::from(c[0x0b]) << 16 | u32::from(c[0x0a]) << 8 | u32::from(c[0x09]),
            subsystem,
        })
    }
}

/// Everything read from `/sys/bus/pci` and `/sys/kernel/iommu_groups`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PciScan {
    pub devices: Vec<PciDevice>,
    /// The kernel made IOMMU groups (the IOMMU is on and works).
    pub iommu_enabled: bool,
    pub notes: Vec<Note>,
    #[serde(skip)]
    pub ids_source: Option<IdsSource>,
}

const DEVICES_DIR: &str = "/sys/bus/pci/devices";
const GROUPS_DIR: &str = "/sys/kernel/iommu_groups";

impl PciScan {
    pub fn read(root: &HostRoot) -> Self {
        let mut scan = Self::default();
        let names = match root.list_dir(DEVICES_DIR) {
            Ok(n) => n,
            Err(e) => {
                scan.notes.push(Note::error(
                    "pci-unreadable",
                    gettext_f(
                        "Cannot read the PCI devices in {path}: {error}",
                        &[("path", DEVICES_DIR), ("error", &e.to_string())],
                    ),
                ));
                Vec::new()
            }
        };
        let group_numbers: HashSet<u32> = root
            .list_dir(GROUPS_DIR)
            .unwrap_or_default()
            .iter()
            .filter_map(|g| g.parse().ok())
            .collect();
        scan.iommu_enabled = !group_numbers.is_empty();
        for name in names {
            match name.parse::<PciAddress>() {
                Ok(address) => scan
                    .devices
                    .push(read_device(root, address, &group_numbers)),
                Err(_) => scan.notes.push(Note::warning(
                    "pci-odd-entry",
                    gettext_f(
                        "Skipped {name} in {path}: not a PCI address.",
                        &[("name", &name), ("path", DEVICES_DIR)],
                    ),
                )),
            }
        }
        scan.devices.sort_by_key(|d| d.address);
        if scan.iommu_enabled {
            scan.fill_groups_from_group_dirs(root);
        }
        scan.resolve_names(root);
        scan
    }

    /// Devices whose own `iommu_group` link is missing or broken may still be listed in a
    /// group directory; the kernel keeps both in step, a damaged tree may not.
    fn fill_groups_from_group_dirs(&mut self, root: &HostRoot) {
        if self.devices.iter().all(|d| d.iommu_group.is_some()) {
            return;
        }
        let mut by_address = BTreeMap::new();
        for group in root.list_dir(GROUPS_DIR).unwrap_or_default() {
            let Ok(number) = group.parse::<u32>() else {
                continue;
            };
            for dev in root
                .list_dir(format!("{GROUPS_DIR}/{group}/devices"))
                .unwrap_or_default()
            {
                if let Ok(addr) = dev.parse::<PciAddress>() {
                    by_address.insert(addr, number);
                }
            }
        }
        for dev in self.devices.iter_mut().filter(|d| d.iommu_group.is_none()) {
            if let Some(&group) = by_address.get(&dev.address) {
                dev.iommu_group = Some(group);
            } else if matches!(dev.class16(), Some(0x0600 | 0x0806)) {
                // The root complex and the IOMMU itself are never in a group; that is normal.
            } else {
                dev.notes.push(Note::warning(
                    "no-iommu-group",
                    gettext_f(
                        "The kernel put {address} in no IOMMU group, so it cannot be passed through. Its driver may not support the IOMMU, or the firmware excludes it.",
                        &[("address", &dev.address.to_string())],
                    ),
                ));
            }
        }
    }

    fn resolve_names(&mut self, root: &HostRoot) {
        let mut wanted = Wanted::default();
        for d in &self.devices {
            if let (Some(v), Some(id)) = (d.vendor_id, d.device_id) {
                wanted.devices.insert((v, id));
                if let (Some(sv), Some(sd)) = (d.subsystem_vendor, d.subsystem_device) {
                    wanted.devices.insert((sv, 0xffff));
                    wanted.subsystems.insert((v, id, sv, sd));
                }
            }
            if let Some(c) = d.class16() {
                wanted.classes.insert(c);
            }
        }
        if self.devices.is_empty() {
            return;
        }
        let (names, source) = PciNames::load(root, &wanted);
        self.ids_source = Some(source);
        match source {
            IdsSource::Host => {}
            IdsSource::RunningSystem => self.notes.push(Note::info(
                "pci-ids-running-system",
                gettext_f("The host root has no pci.ids database; device names come from this system's copy.", &[]),
            )),
            IdsSource::None => self.notes.push(Note::info(
                "pci-ids-missing",
                gettext_f(
                    "No pci.ids database was found (package pci.ids or hwdata), so devices are shown by their vendor and device IDs only.",
                    &[],
                ),
            )),
        }
        for d in &mut self.devices {
            if let Some(v) = d.vendor_id {
                d.vendor_name = names.vendor(v).map(str::to_owned);
                if let Some(id) = d.device_id {
                    d.device_name = names.device(v, id).map(str::to_owned);
                    if let (Some(sv), Some(sd)) = (d.subsystem_vendor, d.subsystem_device) {
                        d.subsystem_name = names.subsystem(v, id, sv, sd).map(str::to_owned);
                    }
                }
            }
            d.class_name = d.class16().and_then(|c| names.class(c)).map(str::to_owned);
        }
    }

    pub fn get(&self, address: &PciAddress) -> Option<&PciDevice> {
        self.devices
            .binary_search_by_key(address, |d| d.address)
            .ok()
            .map(|i| &self.devices[i])
    }

    /// IOMMU groups in numeric order, with their devices in address order.
    pub fn groups(&self) -> BTreeMap<u32, Vec<&PciDevice>> {
        let mut groups: BTreeMap<u32, Vec<&PciDevice>> = BTreeMap::new();
        for d in &self.devices {
            if let Some(g) = d.iommu_group {
                groups.entry(g).or_default().push(d);
            }
        }
        groups
    }
}

fn read_device(root: &HostRoot, address: PciAddress, groups: &HashSet<u32>) -> PciDevice {
    let mut dev = PciDevice::empty(address);
    let entry = format!("{DEVICES_DIR}/{address}");
    let addr_s = address.to_string();

    // The link target gives the chain of bridges: .../pci0000:00/0000:00:01.2/0000:02:00.2/<addr>
    // Attributes are then read from the resolved directory, sparing the kernel a symlink walk
    // per file.
    let mut dir = entry.clone();
    match root.read_link(&entry) {
        Ok(target) => {
            let full = join_lexically(Path::new(DEVICES_DIR), &target);
            dev.parents = full
                .components()
                .filter_map(|c| c.as_os_str().to_str()?.parse::<PciAddress>().ok())
                .filter(|a| *a != address)
                .collect();
            dev.chain_known = true;
            dir = full.display().to_string();
        }
        Err(_) if root.exists(&entry) => {
            // A plain directory (some test trees): no bridge chain can be told.
        }
        Err(e) => {
            dev.notes.push(Note::error(
                "sysfs-unreadable",
                gettext_f(
                    "Cannot read the sysfs entry of {address}: {error}",
                    &[("address", &addr_s), ("error", &e.to_string())],
                ),
            ));
            return dev;
        }
    }
    if dev.chain_known && !root.exists(&dir) {
        dev.chain_known = false;
        dev.parents.clear();
        dev.notes.push(Note::error(
            "sysfs-broken-link",
            gettext_f(
                "The sysfs entry of {address} is a broken link; nothing else is known about it.",
                &[("address", &addr_s)],
            ),
        ));
        return dev;
    }
    let entry = dir;

    let problems = std::cell::RefCell::new(Vec::new());
    let attr = |name: &str, required: bool| -> Option<String> {
        match root.read_attr(format!("{entry}/{name}")) {
            Ok(v) if !v.is_empty() => Some(v),
            // Optional attributes are absent on many devices (no PCIe link, no reset).
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => None,
            Ok(_) => {
                problems.borrow_mut().push(Note::warning(
                    "sysfs-empty",
                    gettext_f(
                        "{file} of {address} is empty.",
                        &[("file", name), ("address", &addr_s)],
                    ),
                ));
                None
            }
            Err(e) => {
                problems.borrow_mut().push(Note::warning(
                    "sysfs-missing",
                    gettext_f(
                        "Cannot read {file} of {address}: {error}",
                        &[
                            ("file", name),
                            ("address", &addr_s),
                            ("error", &e.to_string()),
                        ],
                    ),
                ));
                None
            }
        }
    };
    // The config header gives IDs, class, revision and subsystem in one read, as lspci does;
    // the text attributes are the fallback when it is missing, short or all ones.
    let header = root
        .read_small(format!("{entry}/config"))
        .ok()
        .and_then(|c| ConfigHeader::parse(&c));
    let text = |name: &str, required: bool| {
        if header.is_some() {
            None
        } else {
            attr(name, required)
        }
    };
    let vendor = text("vendor", true);
    let device = text("device", true);
    let class = text("class", true);
    let revision = text("revision", false);
    let sub_vendor = text("subsystem_vendor", false);
    let sub_device = text("subsystem_device", false);
    let cur_w = attr("current_link_width", false);
    let max_w = attr("max_link_width", false);
    let cur_s = attr("current_link_speed", false);
    let max_s = attr("max_link_speed", false);
    let reset = attr("reset_method", false);

    let bad = |file: &str, value: &str| {
        problems.borrow_mut().push(Note::warning(
            "sysfs-garbage",
            gettext_f(
                "{file} of {address} holds “{value}”, which is not a valid value; it was ignored.",
                &[
                    ("file", file),
                    ("address", &addr_s),
                    ("value", &value.escape_debug().to_string()),
                ],
            ),
        ));
    };
    let hex =
        |v: &Option<String>, bits: u32, file: &str, bad: &dyn Fn(&str, &str)| -> Option<u32> {
            let v = v.as_deref()?;
            let digits = v.strip_prefix("0x").unwrap_or(v);
            match u32::from_str_radix(digits, 16) {
                Ok(n) if n < (1u64 << bits) as u32 || bits == 32 => Some(n),
                _ => {
                    bad(file, v);
                    None
                }
            }
        };
    let (vendor_id, device_id, class_code, revision, subsystem_vendor, subsystem_device) =
        match &header {
            Some(h) => (
                Some(h.vendor),
                Some(h.device),
                Some(h.class),
                Some(h.revision),
                h.subsystem.map(|s| s.0),
                h.subsystem.map(|s| s.1),
            ),
            None => (
                hex(&vendor, 16, "vendor", &bad).map(|n| n as u16),
                hex(&device, 16, "device", &bad).map(|n| n as u16),
                hex(&class, 24, "class", &bad),
                hex(&revision, 8, "revision", &bad).map(|n| n as u8),
                hex(&sub_vendor, 16, "subsystem_vendor", &bad).map(|n| n as u16),
                hex(&sub_device, 16, "subsystem_device", &bad).map(|n| n as u16),
            ),
        };
    // Only display controllers have boot_vga.
    let boot_vga = if class_code.is_some_and(|c| c >> 16 == 0x03) {
        attr("boot_vga", false)
    } else {
        None
    };
    let boot_vga = match boot_vga.as_deref() {
        None => None,
        Some("1") => Some(true),
        Some("0") => Some(false),
        Some(other) => {
            bad("boot_vga", other);
            None
        }
    };
    let width = |v: &Option<String>, file: &str| -> Option<u8> {
        let v = v.as_deref()?;
        match v.parse::<u8>() {
            Ok(n) if n <= 32 => Some(n),
            _ => {
                bad(file, v);
                None
            }
        }
    };
    let current_width = width(&cur_w, "current_link_width");
    let max_width = width(&max_w, "max_link_width");
    let speed = |v: Option<String>, file: &str| -> Option<String> {
        let v = v?;
        if speed_gts(&v).is_some() || v == "Unknown" || v.starts_with("Unknown") {
            Some(v)
        } else {
            bad(file, &v);
            None
        }
    };
    let current_speed = speed(cur_s, "current_link_speed");
    let max_speed = speed(max_s, "max_link_speed");

    dev.notes.extend(problems.into_inner());
    dev.vendor_id = vendor_id;
    dev.device_id = device_id;
    dev.class = class_code;
    dev.revision = revision;
    dev.subsystem_vendor = subsystem_vendor;
    dev.subsystem_device = subsystem_device;
    dev.boot_vga = boot_vga;
    dev.link = Link {
        current_width,
        max_width,
        current_speed,
        max_speed,
    };
    dev.reset_methods = reset
        .map(|r| r.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    dev.driver = root
        .read_link(format!("{entry}/driver"))
        .ok()
        .and_then(|t| t.file_name().and_then(|n| n.to_str()).map(str::to_owned));

    if !groups.is_empty() {
        if let Ok(target) = root.read_link(format!("{entry}/iommu_group")) {
            let number = target
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse::<u32>().ok());
            match number {
                Some(n) if groups.contains(&n) => dev.iommu_group = Some(n),
                _ => dev.notes.push(Note::warning(
                    "iommu-group-broken-link",
                    gettext_f("The iommu_group link of {address} points to {target}, which does not exist.", &[
                        ("address", &addr_s),
                        ("target", &target.display().to_string()),
                    ]),
                )),
            }
        }
    }
    dev
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_and_print() {
        let a: PciAddress = "0000:08:00.1".parse().unwrap();
        assert_eq!((a.domain, a.bus, a.device, a.function), (0, 8, 0, 1));
        assert_eq!(a.to_string(), "0000:08:00.1");
        assert_eq!(
            "08:00.0".parse::<PciAddress>().unwrap().to_string(),
            "0000:08:00.0"
        );
        let vmd: PciAddress = "10000:e0:1d.0".parse().unwrap();
        assert_eq!(vmd.to_string(), "10000:e0:1d.0");
        for bad in [
            "",
            "0000:08:00",
            "0000:08:20.0",
            "0000:08:00.8",
            "00:08:00:0",
            "zzzz:08:00.0",
            "0000:8:00.0",
            "../../etc",
        ] {
            assert!(bad.parse::<PciAddress>().is_err(), "{bad}");
        }
        assert!(a.same_slot(&"0000:08:00.0".parse().unwrap()));
        assert!(!a.same_slot(&"0000:09:00.0".parse().unwrap()));
    }

    #[test]
    fn link_speeds() {
        assert_eq!(speed_gts("8.0 GT/s PCIe"), Some(8.0));
        assert_eq!(speed_generation("16.0 GT/s PCIe"), Some("4.0"));
        assert_eq!(speed_generation("2.5 GT/s PCIe"), Some("1.0"));
        assert_eq!(speed_gts("Unknown"), None);
    }
}
