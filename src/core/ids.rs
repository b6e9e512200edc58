//! Names from the pci.ids database, looked up only for the IDs a host actually has.

use std::collections::{HashMap, HashSet};

use crate::root::HostRoot;

/// Where pci.ids lives on Debian (pci.ids), Fedora and Arch (hwdata).
pub const PCI_IDS_PATHS: &[&str] = &[
    "/usr/share/hwdata/pci.ids",
    "/usr/share/misc/pci.ids",
    "/usr/share/pci.ids",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdsSource {
    /// The database under the host root.
    Host,
    /// The running system's, because the root has none (a fixture without one).
    RunningSystem,
    /// No database at all: devices are shown by their IDs.
    None,
}

/// The names needed for one host.
#[derive(Debug, Default, Clone)]
pub struct PciNames {
    vendors: HashMap<u16, String>,
    devices: HashMap<(u16, u16), String>,
    subsystems: HashMap<(u16, u16, u16, u16), String>,
    classes: HashMap<u16, String>,
}

/// What to look up: (vendor, device, subsystem) triples and class codes (class<<8 | subclass).
#[derive(Debug, Default)]
pub struct Wanted {
    pub devices: HashSet<(u16, u16)>,
    pub subsystems: HashSet<(u16, u16, u16, u16)>,
    pub classes: HashSet<u16>,
}

impl PciNames {
    pub fn vendor(&self, v: u16) -> Option<&str> {
        self.vendors.get(&v).map(String::as_str)
    }
    pub fn device(&self, v: u16, d: u16) -> Option<&str> {
        self.devices.get(&(v, d)).map(String::as_str)
    }
    pub fn subsystem(&self, v: u16, d: u16, sv: u16, sd: u16) -> Option<&str> {
        self.subsystems.get(&(v, d, sv, sd)).map(String::as_str)
    }
    pub fn class(&self, class: u16) -> Option<&str> {
        self.classes.get(&class).map(String::as_str)
    }

    /// Loads the names in `wanted` from the root's database, else the running system's.
    pub fn load(root: &HostRoot, wanted: &Wanted) -> (Self, IdsSource) {
        if let Some(text) = PCI_IDS_PATHS.iter().find_map(|p| root.read_string(p).ok()) {
            return (Self::parse(&text, wanted), IdsSource::Host);
        }
        if !root.is_live() {
            let live = HostRoot::default();
            if let Some(text) = PCI_IDS_PATHS.iter().find_map(|p| live.read_string(p).ok()) {
                return (Self::parse(&text, wanted), IdsSource::RunningSystem);
            }
        }
        (Self::default(), IdsSource::None)
    }

    /// One pass over the file, keeping only what is wanted.
    pub fn parse(text: &str, wanted: &Wanted) -> Self {
        let vendors_wanted: HashSet<u16> = wanted.devices.iter().map(|(v, _)| *v).collect();
        let mut names = Self::default();
        let mut vendor: Option<u16> = None;
        let mut device: Option<u16> = None;
        let mut class: Option<u8> = None;
        for line in text.lines() {
            let bytes = line.as_bytes();
            if bytes.is_empty() || bytes[0] == b'#' {
                continue;
            }
            if let Some(rest) = line.strip_prefix("C ") {
                vendor = None;
                device = None;
                class = u8::from_str_radix(rest.get(..2).unwrap_or(""), 16).ok();
                continue;
            }
            if bytes[0] != b'\t' {
                class = None;
                device = None;
                vendor = hex4(line).filter(|v| vendors_wanted.contains(v));
                if let (Some(v), Some(name)) = (vendor, name_after(line, 4)) {
                    names.vendors.insert(v, name.to_owned());
                }
                continue;
            }
            if let Some(c) = class {
                if bytes.get(1) != Some(&b'\t') {
                    if let Some(sub) = line.get(1..3).and_then(|s| u8::from_str_radix(s, 16).ok()) {
                        let code = u16::from(c) << 8 | u16::from(sub);
                        if wanted.classes.contains(&code) {
                            if let Some(name) = name_after(&line[1..], 2) {
                                names.classes.insert(code, name.to_owned());
                            }
                        }
                    }
                }
                continue;
            }
            let Some(v) = vendor else { continue };
            if bytes.get(1) == Some(&b'\t') {
                // Subsystem line: "\t\tSSSS DDDD  name"
                let Some(d) = device else { continue };
                let body = &line[2..];
                if let (Some(sv), Some(sd)) = (hex4(body), body.get(5..).and_then(hex4)) {
                    if wanted.subsystems.contains(&(v, d, sv, sd)) {
                        if let Some(name) = name_after(body, 9) {
                            names.subsystems.insert((v, d, sv, sd), name.to_owned());
                        }
                    }
                }
            } else {
                let body = &line[1..];
                device = hex4(body);
                if let Some(d) = device {
                    if wanted.devices.contains(&(v, d)) {
                        if let Some(name) = name_after(body, 4) {
                            names.devices.insert((v, d), name.to_owned());
                        }
                    }
                }
            }
        }
        names
    }
}

fn hex4(s: &str) -> Option<u16> {
    let h = s.get(..4)?;
    if h.bytes().all(|b| b.is_ascii_hexdigit()) {
        u16::from_str_radix(h, 16).ok()
    } else {
        None
    }
}

fn name_after(s: &str, id_len: usize) -> Option<&str> {
    let name = s.get(id_len..)?.trim();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDS: &str = "# comment\n10de  NVIDIA Corporation\n\t1c02  GP106 [GeForce GTX 1060 3GB]\n\t\t19da 2438  ZOTAC GTX 1060 3GB\n\t10f1  GP106 High Definition Audio Controller\n1022  Advanced Micro Devices, Inc. [AMD]\n\t1483  Starship/Matisse GPP Bridge\nC 03  Display controller\n\t00  VGA compatible controller\n\t\t00  VGA controller\n\t02  3D controller\n";

    #[test]
    fn looks_up_only_what_is_wanted() {
        let mut w = Wanted::default();
        w.devices.insert((0x10de, 0x1c02));
        w.subsystems.insert((0x10de, 0x1c02, 0x19da, 0x2438));
        w.classes.insert(0x0300);
        w.classes.insert(0x0302);
        let n = PciNames::parse(IDS, &w);
        assert_eq!(n.vendor(0x10de), Some("NVIDIA Corporation"));
        assert_eq!(
            n.device(0x10de, 0x1c02),
            Some("GP106 [GeForce GTX 1060 3GB]")
        );
        assert_eq!(n.device(0x10de, 0x10f1), None, "not wanted");
        assert_eq!(n.vendor(0x1022), None, "not wanted");
        assert_eq!(
            n.subsystem(0x10de, 0x1c02, 0x19da, 0x2438),
            Some("ZOTAC GTX 1060 3GB")
        );
        assert_eq!(n.class(0x0300), Some("VGA compatible controller"));
        assert_eq!(n.class(0x0302), Some("3D controller"));
    }

    #[test]
    fn garbage_lines_are_skipped() {
        let mut w = Wanted::default();
        w.devices.insert((0x10de, 0x1c02));
        let n = PciNames::parse("zzzz  nope\n\t\t\n\tqq\n10de\n\t1c02\n", &w);
        assert_eq!(n.vendor(0x10de), None);
        assert_eq!(n.device(0x10de, 0x1c02), None);
    }
}
