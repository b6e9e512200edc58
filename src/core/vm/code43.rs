//! The "code 43" workarounds by GPU vendor, what each one does in plain words, and the AMD
//! reset bug.
//!
//! Windows shows "This device has stopped because it has reported problems. (Code 43)" when
//! a graphics driver refuses to start. NVIDIA's drivers before R465 did so on purpose when
//! they saw a hypervisor; AMD's do so when the card's VBIOS copy is unusable (the reference
//! post's RX 5600 XT, the host's boot GPU) or the card was not reset.

use super::spec::Code43;
use crate::i18n::gettext_f;

/// PCI vendor IDs.
pub const NVIDIA: &str = "10de";
pub const AMD: &str = "1002";
pub const INTEL: &str = "8086";

/// The vendor ID that [`recommended`] puts in `<hyperv><vendor_id>` (at most 12 characters).
pub const DEFAULT_VENDOR_ID: &str = "randomid";

/// One of the settings of [`Code43`] (and the ROM file of a GPU), for [`explain`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code43Setting {
    VendorId,
    KvmHidden,
    IoapicKvm,
    IgnoreMsrs,
    RomFile,
}

impl Code43Setting {
    pub const ALL: [Self; 5] = [
        Self::VendorId,
        Self::KvmHidden,
        Self::IoapicKvm,
        Self::IgnoreMsrs,
        Self::RomFile,
    ];
}

/// `"10DE"`, `"0x10de"` and `"10de"` all become `"10de"`.
fn normalize(id: &str) -> String {
    let id = id.trim().to_ascii_lowercase();
    id.strip_prefix("0x").unwrap_or(&id).to_owned()
}

/// The settings that keep the vendor's Windows driver from refusing the card in a VM.
///
/// - NVIDIA: a Hyper-V vendor ID, KVM hidden, the in-kernel IOAPIC and ignored MSRs.
///   Drivers before R465 need the vendor ID and KVM hidden; newer ones do not mind them.
/// - AMD: a Hyper-V vendor ID, the in-kernel IOAPIC and ignored MSRs.
/// - Intel and others: ignored MSRs only.
pub fn recommended(vendor_id: &str, _device_id: &str) -> Code43 {
    match normalize(vendor_id).as_str() {
        NVIDIA => Code43 {
            vendor_id: Some(DEFAULT_VENDOR_ID.into()),
            kvm_hidden: true,
            ioapic_kvm: true,
            ignore_msrs: true,
        },
        AMD => Code43 {
            vendor_id: Some(DEFAULT_VENDOR_ID.into()),
            kvm_hidden: false,
            ioapic_kvm: true,
            ignore_msrs: true,
        },
        _ => Code43 {
            ignore_msrs: true,
            ..Code43::default()
        },
    }
}

/// What a setting does and why it helps, in plain words (translated).
pub fn explain(setting: Code43Setting) -> String {
    match setting {
        Code43Setting::VendorId => gettext_f(
            "Hyper-V vendor ID: the virtual machine tells Windows that its hypervisor is made by “{example}” instead of “Microsoft Hv”. NVIDIA drivers before version 465 stop the graphics card with error code 43 when they recognize a virtual machine, and this is one of the two things they check; some AMD drivers check it too. Newer drivers do not mind either way. libvirt takes at most {max} letters or digits.",
            &[
                ("example", DEFAULT_VENDOR_ID),
                ("max", &super::spec::MAX_VENDOR_ID_LEN.to_string()),
            ],
        ),
        Code43Setting::KvmHidden => gettext_f(
            "Hide KVM: removes KVM's signature from the processor information (CPUID) that the graphics driver reads, so NVIDIA drivers before version 465 do not refuse the card with error code 43. Windows itself still knows that it runs in a virtual machine; only the driver's check is answered differently.",
            &[],
        ),
        Code43Setting::IoapicKvm => gettext_f(
            "KVM interrupt controller: the virtual machine's I/O APIC is emulated in the Linux kernel instead of in QEMU. With the q35 machine type of QEMU 4.0 and newer, graphics drivers can fail with error code 43 without it, mainly together with “Hide KVM”.",
            &[],
        ),
        Code43Setting::IgnoreMsrs => gettext_f(
            "Ignore unknown MSRs: when Windows, a driver or a game reads a processor register (MSR) that KVM does not emulate, it gets zero instead of an error. Without it, monitoring tools, anti-cheat software and some drivers make Windows crash with a blue screen.",
            &[],
        ),
        Code43Setting::RomFile => gettext_f(
            "ROM file: the graphics card's own firmware (VBIOS) as a file. When the card shows the host's boot screen (the boot GPU), the PC's firmware works on a copy of the VBIOS and changes it; the Windows driver can reject that copy with error code 43 or a black screen, as with the Radeon RX 5600 XT in the reference post. Another fix is to make another card the boot GPU, or to start the host without a monitor on this card. To save the VBIOS on Linux, as root and while no driver uses the card (ADDR is its address, e.g. 0000:08:00.0): echo 1 > /sys/bus/pci/devices/ADDR/rom; cat /sys/bus/pci/devices/ADDR/rom > vbios.rom; echo 0 > /sys/bus/pci/devices/ADDR/rom. On Windows, GPU-Z can save it. TechPowerUp's VBIOS database is the last resort: the file must be for exactly your card. Keep the file where libvirt may read it, e.g. /usr/share/vgabios/.",
            &[],
        ),
    }
}

/// AMD GPUs with the reset bug: after the VM shuts down, the card does not reset and cannot
/// be started again. The IDs are those that the vendor-reset module handles (its
/// device-db.h): Polaris 10/11/12 (RX 470/480/570/580/590, RX 460/550/560, RX 540/550),
/// Vega 10/20 (RX Vega 56/64, Radeon VII), Navi 10/12/14 (RX 5600/5700, Pro 5600M,
/// RX 5500) and Arcturus (Instinct MI100).
const RESET_BUG: &[(u16, &str)] = &[
    // Polaris 10 (Ellesmere): RX 470/480/570/580, Polaris 30 (RX 590: 6fdf).
    (0x67c0, "Polaris 10"),
    (0x67c1, "Polaris 10"),
    (0x67c2, "Polaris 10"),
    (0x67c4, "Polaris 10"),
    (0x67c7, "Polaris 10"),
    (0x67c8, "Polaris 10"),
    (0x67c9, "Polaris 10"),
    (0x67ca, "Polaris 10"),
    (0x67cc, "Polaris 10"),
    (0x67cf, "Polaris 10"),
    (0x67d0, "Polaris 10"),
    (0x67df, "Polaris 10"),
    (0x6fdf, "Polaris 10"),
    // Polaris 11 (Baffin): RX 460/560, RX 550 640SP (67ff, the reference post's RX 550).
    (0x67e0, "Polaris 11"),
    (0x67e1, "Polaris 11"),
    (0x67e3, "Polaris 11"),
    (0x67e7, "Polaris 11"),
    (0x67e8, "Polaris 11"),
    (0x67e9, "Polaris 11"),
    (0x67eb, "Polaris 11"),
    (0x67ef, "Polaris 11"),
    (0x67ff, "Polaris 11"),
    // Polaris 12 (Lexa): RX 540/550.
    (0x6980, "Polaris 12"),
    (0x6981, "Polaris 12"),
    (0x6985, "Polaris 12"),
    (0x6986, "Polaris 12"),
    (0x6987, "Polaris 12"),
    (0x6995, "Polaris 12"),
    (0x6997, "Polaris 12"),
    (0x699f, "Polaris 12"),
    // Vega 10: RX Vega 56/64, Vega Frontier Edition.
    (0x6860, "Vega 10"),
    (0x6861, "Vega 10"),
    (0x6862, "Vega 10"),
    (0x6863, "Vega 10"),
    (0x6864, "Vega 10"),
    (0x6867, "Vega 10"),
    (0x6868, "Vega 10"),
    (0x6869, "Vega 10"),
    (0x686a, "Vega 10"),
    (0x686b, "Vega 10"),
    (0x686c, "Vega 10"),
    (0x686d, "Vega 10"),
    (0x686e, "Vega 10"),
    (0x686f, "Vega 10"),
    (0x687f, "Vega 10"),
    // Vega 20: Radeon VII, Instinct MI50/MI60.
    (0x66a0, "Vega 20"),
    (0x66a1, "Vega 20"),
    (0x66a2, "Vega 20"),
    (0x66a3, "Vega 20"),
    (0x66a4, "Vega 20"),
    (0x66a7, "Vega 20"),
    (0x66af, "Vega 20"),
    // Arcturus: Instinct MI100.
    (0x738c, "Arcturus"),
    // Navi 10: RX 5600/5600 XT/5700/5700 XT (731f: the reference post's RX 5600 XT).
    (0x7310, "Navi 10"),
    (0x7312, "Navi 10"),
    (0x7318, "Navi 10"),
    (0x7319, "Navi 10"),
    (0x731a, "Navi 10"),
    (0x731b, "Navi 10"),
    (0x731e, "Navi 10"),
    (0x731f, "Navi 10"),
    // Navi 12: Radeon Pro 5600M, V520.
    (0x7360, "Navi 12"),
    (0x7362, "Navi 12"),
    // Navi 14: RX 5300/5500/5500 XT, Pro W5500.
    (0x7340, "Navi 14"),
    (0x7341, "Navi 14"),
    (0x7347, "Navi 14"),
    (0x734f, "Navi 14"),
];

/// The GPU family with the AMD reset bug that `vendor_id:device_id` belongs to, if any.
pub fn reset_bug_family(vendor_id: &str, device_id: &str) -> Option<String> {
    if normalize(vendor_id) != AMD {
        return None;
    }
    let device = u16::from_str_radix(&normalize(device_id), 16).ok()?;
    RESET_BUG
        .iter()
        .find(|(id, _)| *id == device)
        .map(|(_, family)| (*family).to_owned())
}

/// For an AMD GPU known to have the reset bug: a sentence recommending the vendor-reset
/// kernel module (translated).
pub fn reset_bug_hint(vendor_id: &str, device_id: &str) -> Option<String> {
    let family = reset_bug_family(vendor_id, device_id)?;
    Some(gettext_f(
        "This AMD graphics card ({family}) has the reset bug: it does not reset properly when the virtual machine shuts down, so the virtual machine cannot start with it a second time (the card stays black or Windows shows error code 43) until the host restarts. The vendor-reset kernel module (github.com/gnif/vendor-reset) resets it properly: install it (many distributions package it with DKMS), load it at boot, and on Linux 5.15 or newer also set the card's reset method to device_specific.",
        &[("family", &family)],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_vendor() {
        let nv = recommended("10de", "1c02");
        assert_eq!(nv.vendor_id.as_deref(), Some("randomid"));
        assert!(nv.kvm_hidden && nv.ioapic_kvm && nv.ignore_msrs);
        assert_eq!(recommended("10DE", "1C02"), nv);
        let amd = recommended("1002", "731f");
        assert_eq!(amd.vendor_id.as_deref(), Some("randomid"));
        assert!(!amd.kvm_hidden && amd.ioapic_kvm && amd.ignore_msrs);
        for other in ["8086", "1a03", ""] {
            assert_eq!(
                recommended(other, "0000"),
                Code43 {
                    ignore_msrs: true,
                    ..Code43::default()
                }
            );
        }
        super::super::spec::check_vendor_id(DEFAULT_VENDOR_ID).unwrap();
    }

    #[test]
    fn reset_bug() {
        let family = |v: &str, d: &str| reset_bug_family(v, d);
        assert_eq!(family("1002", "731f").as_deref(), Some("Navi 10"));
        assert_eq!(family("1002", "67ff").as_deref(), Some("Polaris 11"));
        assert_eq!(family("1002", "67DF").as_deref(), Some("Polaris 10"));
        assert_eq!(family("1002", "6fdf").as_deref(), Some("Polaris 10"));
        assert_eq!(family("1002", "687f").as_deref(), Some("Vega 10"));
        assert_eq!(family("1002", "66af").as_deref(), Some("Vega 20"));
        assert_eq!(family("1002", "7340").as_deref(), Some("Navi 14"));
        assert_eq!(family("1002", "7360").as_deref(), Some("Navi 12"));
        // RDNA2 (RX 6800, 73bf) resets properly; NVIDIA never needs it.
        assert_eq!(reset_bug_family("1002", "73bf"), None);
        assert_eq!(reset_bug_family("10de", "731f"), None);
        assert_eq!(reset_bug_family("1002", "zz"), None);
        let hint = reset_bug_hint("1002", "731f").unwrap();
        assert!(hint.contains("vendor-reset") && hint.contains("Navi 10"));
        assert!(reset_bug_hint("10de", "1c02").is_none());
        let mut ids: Vec<u16> = RESET_BUG.iter().map(|(id, _)| *id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), RESET_BUG.len(), "no ID twice");
    }

    #[test]
    fn every_setting_is_explained() {
        for s in Code43Setting::ALL {
            assert!(explain(s).len() > 80, "{s:?}");
        }
        assert!(explain(Code43Setting::RomFile).contains("/sys/bus/pci/devices/ADDR/rom"));
        assert!(explain(Code43Setting::VendorId).contains("12"));
    }
}
