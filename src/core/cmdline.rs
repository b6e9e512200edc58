//! The kernel command line, parsed into the arguments that matter for passthrough.

use serde::Serialize;

/// One `key[=value]` word of the command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KernelArg {
    pub key: String,
    pub value: Option<String>,
}

impl KernelArg {
    /// The key with module-parameter dashes normalized (`vfio-pci.ids` = `vfio_pci.ids`).
    pub fn normalized_key(&self) -> String {
        normalize_key(&self.key)
    }
}

impl std::fmt::Display for KernelArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.value {
            Some(v) if v.contains(' ') => write!(f, "{}=\"{}\"", self.key, v),
            Some(v) => write!(f, "{}={}", self.key, v),
            None => f.write_str(&self.key),
        }
    }
}

/// The kernel treats `-` and `_` alike in the module-name part of a parameter.
pub fn normalize_key(key: &str) -> String {
    match key.split_once('.') {
        Some((module, param)) => format!("{}.{}", module.replace('-', "_"), param),
        None => key.replace('-', "_"),
    }
}

/// The parsed command line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KernelCmdline {
    pub raw: String,
    pub args: Vec<KernelArg>,
}

/// The arguments Passthrough cares about, picked out of the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PassthroughArgs {
    pub intel_iommu: Option<String>,
    pub amd_iommu: Option<String>,
    pub iommu: Option<String>,
    /// `vfio-pci.ids` / `vfio_pci.ids`, split at commas (`10de:1c02`).
    pub vfio_pci_ids: Vec<String>,
    pub pcie_acs_override: Option<String>,
    /// `video=` values (`efifb:off`, `vesafb:off`, …).
    pub video: Vec<String>,
    pub initcall_blacklist: Vec<String>,
    pub kvm_ignore_msrs: Option<String>,
    pub rd_driver_pre: Vec<String>,
}

impl KernelCmdline {
    /// Splits like the kernel does: whitespace separates words, double quotes may surround a
    /// value (`key="a b"`), and everything after a lone `--` belongs to init.
    pub fn parse(raw: &str) -> Self {
        let raw = raw.trim().to_owned();
        let mut args = Vec::new();
        let mut word = String::new();
        let mut in_quotes = false;
        let mut words = Vec::new();
        for ch in raw.chars() {
            match ch {
                '"' => in_quotes = !in_quotes,
                c if c.is_whitespace() && !in_quotes => {
                    if !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                }
                c => word.push(c),
            }
        }
        if !word.is_empty() {
            words.push(word);
        }
        for w in words {
            if w == "--" {
                break;
            }
            let (key, value) = match w.split_once('=') {
                Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                None => (w, None),
            };
            args.push(KernelArg { key, value });
        }
        Self { raw, args }
    }

    /// The last value given for a key (the kernel lets a later one win).
    pub fn get(&self, key: &str) -> Option<&KernelArg> {
        let key = normalize_key(key);
        self.args.iter().rev().find(|a| a.normalized_key() == key)
    }

    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    fn all_values(&self, key: &str) -> Vec<String> {
        let key = normalize_key(key);
        self.args
            .iter()
            .filter(|a| a.normalized_key() == key)
            .filter_map(|a| a.value.as_deref())
            .flat_map(|v| v.split(','))
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .collect()
    }

    pub fn passthrough_args(&self) -> PassthroughArgs {
        let value = |k: &str| self.get(k).map(|a| a.value.clone().unwrap_or_default());
        PassthroughArgs {
            intel_iommu: value("intel_iommu"),
            amd_iommu: value("amd_iommu"),
            iommu: value("iommu"),
            vfio_pci_ids: self.all_values("vfio_pci.ids"),
            pcie_acs_override: value("pcie_acs_override"),
            video: self.all_values("video"),
            initcall_blacklist: self.all_values("initcall_blacklist"),
            kvm_ignore_msrs: value("kvm.ignore_msrs"),
            rd_driver_pre: self.all_values("rd.driver.pre"),
        }
    }

    /// The arguments that matter here, in command-line order, as written.
    pub fn relevant(&self) -> Vec<&KernelArg> {
        const KEYS: &[&str] = &[
            "intel_iommu",
            "amd_iommu",
            "iommu",
            "vfio_pci.ids",
            "pcie_acs_override",
            "video",
            "initcall_blacklist",
            "kvm.ignore_msrs",
            "kvm.report_ignored_msrs",
            "rd.driver.pre",
            "modprobe.blacklist",
        ];
        self.args
            .iter()
            .filter(|a| KEYS.contains(&a.normalized_key().as_str()))
            .collect()
    }
}

impl PassthroughArgs {
    /// `amd_iommu=on` is not a value the kernel knows (it accepts `off`, `fullflush`,
    /// `force_isolation`, …); the IOMMU is on by default on AMD.
    pub fn has_invalid_amd_iommu_on(&self) -> bool {
        self.amd_iommu.as_deref() == Some("on")
    }

    pub fn intel_iommu_on(&self) -> bool {
        self.intel_iommu
            .as_deref()
            .is_some_and(|v| v.split(',').any(|p| p == "on"))
    }

    pub fn iommu_disabled(&self) -> bool {
        self.intel_iommu.as_deref() == Some("off")
            || self.amd_iommu.as_deref() == Some("off")
            || self.iommu.as_deref() == Some("off")
    }

    pub fn efifb_off(&self) -> bool {
        self.video.iter().any(|v| v == "efifb:off")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOG: &str = "BOOT_IMAGE=/boot/vmlinuz-5.19.17 root=UUID=5d812412-e8a8-47c5-9dc0-505a28fc0eb9 ro quiet splash amd_iommu=on kvm.ignore_msrs=1 vfio_pci.ids=10de:1c02,10de:10f1 pcie_acs_override=multifunction vt.handoff=7\n";

    #[test]
    fn blog_command_line() {
        let c = KernelCmdline::parse(BLOG);
        let a = c.passthrough_args();
        assert_eq!(a.amd_iommu.as_deref(), Some("on"));
        assert!(a.has_invalid_amd_iommu_on());
        assert_eq!(a.vfio_pci_ids, ["10de:1c02", "10de:10f1"]);
        assert_eq!(a.pcie_acs_override.as_deref(), Some("multifunction"));
        assert_eq!(a.kvm_ignore_msrs.as_deref(), Some("1"));
        assert_eq!(c.relevant().len(), 4);
        assert!(c.has("quiet"));
        assert_eq!(c.get("quiet").unwrap().value, None);
    }

    #[test]
    fn dash_and_underscore_are_one_key_and_later_wins() {
        let c =
            KernelCmdline::parse("vfio-pci.ids=1002:67ff intel_iommu=off intel_iommu=on,igfx_off");
        assert_eq!(c.passthrough_args().vfio_pci_ids, ["1002:67ff"]);
        assert!(c.passthrough_args().intel_iommu_on());
        assert!(!c.passthrough_args().iommu_disabled());
    }

    #[test]
    fn quotes_and_init_arguments() {
        let c = KernelCmdline::parse(
            "a=\"x y\" video=efifb:off video=vesafb:off -- --init-arg iommu=off",
        );
        assert_eq!(c.args[0].value.as_deref(), Some("x y"));
        assert_eq!(c.args[0].to_string(), "a=\"x y\"");
        assert_eq!(c.passthrough_args().video, ["efifb:off", "vesafb:off"]);
        assert!(c.passthrough_args().efifb_off());
        assert_eq!(
            c.passthrough_args().iommu,
            None,
            "arguments after -- go to init"
        );
    }
}
