//! What the VM wizard (and `passthroughctl vm-xml`) chooses, checked before anything is
//! built from it.

use serde::{Deserialize, Serialize};

use crate::i18n::gettext_f;
use crate::pci::PciAddress;

/// libvirt refuses longer `<hyperv><vendor_id value=…>`s.
pub const MAX_VENDOR_ID_LEN: usize = 12;
/// Domain names longer than this are refused (libvirt has no hard limit, but file names of
/// its logs and NVRAM are built from the name).
pub const MAX_NAME_LEN: usize = 100;

/// The guest's Windows version: 11 needs Secure Boot and a TPM.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum WindowsVersion {
    #[serde(rename = "10")]
    Windows10,
    #[default]
    #[serde(rename = "11")]
    Windows11,
}

/// Where the guest's system disk comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Storage {
    /// A new qcow2 volume of `size_gib` in the libvirt storage pool `pool` (named after the VM).
    NewVolume { pool: String, size_gib: u64 },
    /// An existing image file, or a whole disk or partition (`/dev/…`), as a virtio disk.
    Path { path: String },
    /// An NVMe controller passed through (its IOMMU group must be isolated).
    Nvme { address: PciAddress },
}

/// The guest's network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "name")]
pub enum NetworkChoice {
    /// A host bridge (`<interface type='bridge'>`), e.g. `br0`.
    Bridge(String),
    /// A libvirt network (`<interface type='network'>`), e.g. `default` (NAT).
    Network(String),
}

/// The GPU's whole IOMMU group as managed hostdevs, and its ROM file if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuAssignment {
    /// The GPU function first, then the rest of its group (companions), in order.
    pub addresses: Vec<PciAddress>,
    /// A VBIOS file for the GPU function (`<rom file=…>`), e.g. for the boot GPU.
    pub rom_file: Option<String>,
}

/// The "code 43" workarounds; `code43::recommended` chooses them by vendor and driver.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Code43 {
    /// `<hyperv><vendor_id state='on' value=…/>` (1 to 12 letters or digits).
    pub vendor_id: Option<String>,
    /// `<kvm><hidden state='on'/></kvm>`.
    pub kvm_hidden: bool,
    /// `<ioapic driver='kvm'/>`.
    pub ioapic_kvm: bool,
    /// `<msrs unknown='ignore'/>`.
    pub ignore_msrs: bool,
}

/// The emulated display for installing Windows (removed later by "remove emulated display").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Display {
    /// QXL video + SPICE graphics (and a USB tablet).
    #[default]
    QxlSpice,
    /// No emulated display: the passed-through GPU is the only one.
    None,
}

/// The wizard's choices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmSpec {
    pub name: String,
    pub windows: WindowsVersion,
    pub memory_mib: u64,
    pub vcpus: u32,
    /// Sockets, cores, threads (their product is `vcpus`); `None`: one socket, `vcpus` cores.
    pub topology: Option<(u32, u32, u32)>,
    /// The Windows installation ISO.
    pub install_iso: Option<String>,
    /// The virtio-win drivers ISO.
    pub virtio_iso: Option<String>,
    pub storage: Storage,
    pub network: NetworkChoice,
    pub gpu: Option<GpuAssignment>,
    pub code43: Code43,
    pub display: Display,
    /// `<domain type='kvm'>`; `false` gives `type='qemu'` (TCG), for machines without KVM
    /// (the tests').
    pub kvm: bool,
}

impl Default for VmSpec {
    fn default() -> Self {
        Self {
            name: "win11".into(),
            windows: WindowsVersion::Windows11,
            memory_mib: 8192,
            vcpus: 4,
            topology: None,
            install_iso: None,
            virtio_iso: None,
            storage: Storage::NewVolume {
                pool: "default".into(),
                size_gib: 128,
            },
            network: NetworkChoice::Network("default".into()),
            gpu: None,
            code43: Code43::default(),
            display: Display::QxlSpice,
            kvm: true,
        }
    }
}

/// Why a spec cannot become a VM (each with a translated sentence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecError {
    Name(String),
    VendorId(String),
    Memory(String),
    Cpus(String),
    Path(String),
    Gpu(String),
    Network(String),
    /// A domain XML that cannot be read or written (malformed, not a domain, …).
    Xml(String),
}

impl SpecError {
    pub fn message(&self) -> &str {
        match self {
            Self::Name(m)
            | Self::VendorId(m)
            | Self::Memory(m)
            | Self::Cpus(m)
            | Self::Path(m)
            | Self::Gpu(m)
            | Self::Network(m)
            | Self::Xml(m) => m,
        }
    }
}

impl std::fmt::Display for SpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for SpecError {}

/// Checks a VM name: libvirt takes any text but `/` (its files are named after it), so
/// quotes, `<`, `&`, spaces and Chinese characters are fine.
pub fn check_name(name: &str) -> Result<(), SpecError> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(SpecError::Name(gettext_f(
            "The virtual machine needs a name.",
            &[],
        )));
    }
    if trimmed != name {
        return Err(SpecError::Name(gettext_f(
            "The name cannot begin or end with a space.",
            &[],
        )));
    }
    if name.contains('/') {
        return Err(SpecError::Name(gettext_f(
            "The name cannot contain “/”: libvirt names the virtual machine's files after it.",
            &[],
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(SpecError::Name(gettext_f(
            "The name cannot contain line breaks or other control characters.",
            &[],
        )));
    }
    if name.chars().count() > MAX_NAME_LEN {
        return Err(SpecError::Name(gettext_f(
            "The name is too long: at most {max} characters.",
            &[("max", &MAX_NAME_LEN.to_string())],
        )));
    }
    Ok(())
}

/// Checks a Hyper-V vendor ID: 1 to 12 ASCII letters or digits (libvirt's limit).
pub fn check_vendor_id(id: &str) -> Result<(), SpecError> {
    if id.is_empty()
        || id.len() > MAX_VENDOR_ID_LEN
        || !id.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(SpecError::VendorId(gettext_f(
            "The Hyper-V vendor ID must be 1 to {max} letters or digits, for example “randomid”.",
            &[("max", &MAX_VENDOR_ID_LEN.to_string())],
        )));
    }
    Ok(())
}

/// Checks a path the VM uses (ISO, disk, ROM file): absolute, no control characters.
pub fn check_path(path: &str) -> Result<(), SpecError> {
    if !path.starts_with('/') || path.chars().any(char::is_control) {
        return Err(SpecError::Path(gettext_f(
            "“{path}” is not a full path to a file (it must begin with “/”).",
            &[("path", path)],
        )));
    }
    Ok(())
}

impl VmSpec {
    /// Checks every choice; the first problem is returned with its sentence.
    pub fn check(&self) -> Result<(), SpecError> {
        check_name(&self.name)?;
        if self.memory_mib < 1024 {
            return Err(SpecError::Memory(gettext_f(
                "Windows needs at least 1024 MiB of memory; 8192 MiB or more for games.",
                &[],
            )));
        }
        if self.vcpus == 0 || self.vcpus > 512 {
            return Err(SpecError::Cpus(gettext_f(
                "The number of processors must be between 1 and 512.",
                &[],
            )));
        }
        if let Some((s, c, t)) = self.topology {
            if s == 0 || c == 0 || t == 0 || s.saturating_mul(c).saturating_mul(t) != self.vcpus {
                return Err(SpecError::Cpus(gettext_f(
                    "Sockets × cores × threads must equal the number of processors ({vcpus}).",
                    &[("vcpus", &self.vcpus.to_string())],
                )));
            }
        }
        for path in [&self.install_iso, &self.virtio_iso].into_iter().flatten() {
            check_path(path)?;
        }
        match &self.storage {
            Storage::Path { path } => check_path(path)?,
            Storage::NewVolume { pool, size_gib } => {
                if pool.is_empty() || pool.contains('/') || *size_gib == 0 {
                    return Err(SpecError::Path(gettext_f(
                        "Choose a storage pool and a disk size of at least 1 GiB.",
                        &[],
                    )));
                }
            }
            Storage::Nvme { .. } => {}
        }
        match &self.network {
            NetworkChoice::Bridge(n) | NetworkChoice::Network(n) => {
                if n.is_empty()
                    || !n
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
                {
                    return Err(SpecError::Network(gettext_f(
                        "“{name}” is not a network or bridge name.",
                        &[("name", n)],
                    )));
                }
            }
        }
        if let Some(gpu) = &self.gpu {
            if gpu.addresses.is_empty() {
                return Err(SpecError::Gpu(gettext_f(
                    "The graphics card to pass through has no address.",
                    &[],
                )));
            }
            if let Some(rom) = &gpu.rom_file {
                check_path(rom)?;
            }
        }
        if let Some(id) = &self.code43.vendor_id {
            check_vendor_id(id)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["win11", "Game's \"VM\" <1> & co", "游戏 虚拟机", "a"] {
            check_name(ok).unwrap();
        }
        for bad in ["", " x", "x ", "a/b", "a\nb", &"x".repeat(101)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn vendor_ids() {
        check_vendor_id("randomid").unwrap();
        check_vendor_id("012345678ab").unwrap();
        check_vendor_id("123456789012").unwrap();
        for bad in ["", "1234567890123", "a b", "a'b", "随机"] {
            assert!(check_vendor_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn specs() {
        VmSpec::default().check().unwrap();
        let bad = VmSpec {
            topology: Some((1, 2, 1)),
            ..VmSpec::default()
        };
        assert!(matches!(bad.check(), Err(SpecError::Cpus(_))));
        let bad = VmSpec {
            install_iso: Some("win.iso".into()),
            ..VmSpec::default()
        };
        assert!(matches!(bad.check(), Err(SpecError::Path(_))));
    }
}
