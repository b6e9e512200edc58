//! CPU vendor and hardware virtualization, from `/proc/cpuinfo`.

use serde::Serialize;

use crate::root::HostRoot;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CpuVendor {
    Amd,
    Intel,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CpuInfo {
    pub vendor: CpuVendor,
    /// The raw `vendor_id` (`AuthenticAMD`, `GenuineIntel`, …).
    pub vendor_id: String,
    pub model_name: Option<String>,
    /// `svm` (AMD-V) or `vmx` (VT-x) when the CPU reports it; absent when the firmware
    /// turned it off or the CPU has none.
    pub virt_flag: Option<String>,
    /// The `hypervisor` flag: this host is itself a virtual machine.
    pub in_vm: bool,
    pub threads: u32,
}

impl CpuInfo {
    pub fn read(root: &HostRoot) -> Option<Self> {
        root.read_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| Self::parse(&text))
    }

    /// Parses `/proc/cpuinfo`. Returns `None` when it names no vendor at all.
    pub fn parse(text: &str) -> Option<Self> {
        let mut vendor_id = None;
        let mut model_name = None;
        let mut flags: Option<&str> = None;
        let mut threads = 0;
        for line in text.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let (key, value) = (key.trim(), value.trim());
            match key {
                "processor" => threads += 1,
                "vendor_id" if vendor_id.is_none() => vendor_id = Some(value.to_owned()),
                "model name" if model_name.is_none() && !value.is_empty() => {
                    model_name = Some(value.to_owned())
                }
                "flags" if flags.is_none() => flags = Some(value),
                _ => {}
            }
        }
        let vendor_id = vendor_id?;
        let vendor = match vendor_id.as_str() {
            "AuthenticAMD" | "HygonGenuine" => CpuVendor::Amd,
            "GenuineIntel" => CpuVendor::Intel,
            _ => CpuVendor::Other,
        };
        let flag_list: Vec<&str> = flags
            .map(|f| f.split_whitespace().collect())
            .unwrap_or_default();
        let virt_flag = ["svm", "vmx"]
            .into_iter()
            .find(|f| flag_list.contains(f))
            .map(str::to_owned);
        Some(Self {
            vendor,
            vendor_id,
            model_name,
            virt_flag,
            in_vm: flag_list.contains(&"hypervisor"),
            threads: threads.max(1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amd_with_svm() {
        let info = CpuInfo::parse(
            "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD Ryzen 7 5800X 8-Core Processor\nflags\t\t: fpu vme svm sse\n\nprocessor\t: 1\nvendor_id\t: AuthenticAMD\n",
        )
        .unwrap();
        assert_eq!(info.vendor, CpuVendor::Amd);
        assert_eq!(info.virt_flag.as_deref(), Some("svm"));
        assert_eq!(info.threads, 2);
        assert!(!info.in_vm);
    }

    #[test]
    fn intel_without_vmx_in_a_vm() {
        let info = CpuInfo::parse("vendor_id: GenuineIntel\nflags: fpu hypervisor sse2\n").unwrap();
        assert_eq!(info.vendor, CpuVendor::Intel);
        assert_eq!(info.virt_flag, None);
        assert!(info.in_vm);
    }

    #[test]
    fn garbage_is_none() {
        assert_eq!(CpuInfo::parse("garbage\n\0\u{1}"), None);
        // "vmx" must be a whole word.
        let info = CpuInfo::parse("vendor_id: GenuineIntel\nflags: vmxfoo\n").unwrap();
        assert_eq!(info.virt_flag, None);
    }
}
