//! UEFI firmware (OVMF) for the VM, from QEMU's firmware descriptors, and the virtio-win ISO.

use serde::Serialize;

use crate::note::Note;
use crate::root::HostRoot;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Firmware {
    pub description: String,
    /// The code image (host path).
    pub code: String,
    pub vars_template: Option<String>,
    pub secure_boot: bool,
    pub enrolled_keys: bool,
    /// The descriptor it came from, or `None` for a well-known path found without one.
    pub descriptor: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FirmwareInfo {
    /// x86_64 UEFI builds usable with q35, best first (descriptor order).
    pub ovmf: Vec<Firmware>,
    pub notes: Vec<Note>,
}

const DESCRIPTOR_DIRS: &[&str] = &["/etc/qemu/firmware", "/usr/share/qemu/firmware"];

/// Well-known OVMF code paths of distributions whose package ships no descriptor.
const FALLBACKS: &[&str] = &[
    "/usr/share/OVMF/OVMF_CODE_4M.fd",
    "/usr/share/OVMF/OVMF_CODE.fd",
    "/usr/share/edk2/ovmf/OVMF_CODE.fd",
    "/usr/share/edk2/x64/OVMF_CODE.4m.fd",
    "/usr/share/edk2-ovmf/x64/OVMF_CODE.fd",
    "/usr/share/edk2/x64/OVMF_CODE.fd",
    "/usr/share/qemu/ovmf-x86_64-code.bin",
];

impl FirmwareInfo {
    pub fn detect(root: &HostRoot) -> Self {
        let mut info = Self::default();
        // A file in /etc overrides the one with the same name in /usr/share (QEMU's rule).
        let mut files: Vec<(String, String)> = Vec::new();
        for dir in DESCRIPTOR_DIRS {
            for name in root.list_dir(dir).unwrap_or_default() {
                if !name.ends_with(".json") || files.iter().any(|(n, _)| n == &name) {
                    continue;
                }
                files.push((name.clone(), format!("{dir}/{name}")));
            }
        }
        files.sort();
        for (_, path) in files {
            let text = match root.read_string(&path) {
                Ok(t) => t,
                Err(e) => {
                    info.notes.push(Note::warning(
                        "firmware-descriptor-unreadable",
                        crate::i18n::gettext_f(
                            "Cannot read the firmware descriptor {path}: {error}",
                            &[("path", &path), ("error", &e.to_string())],
                        ),
                    ));
                    continue;
                }
            };
            match parse_descriptor(&text) {
                Ok(Some(mut fw)) => {
                    if root.exists(&fw.code) {
                        fw.descriptor = Some(path);
                        info.ovmf.push(fw);
                    }
                }
                Ok(None) => {}
                Err(e) => info.notes.push(Note::warning(
                    "firmware-descriptor-invalid",
                    crate::i18n::gettext_f(
                        "The firmware descriptor {path} is not valid JSON and was skipped: {error}",
                        &[("path", &path), ("error", &e)],
                    ),
                )),
            }
        }
        if info.ovmf.is_empty() {
            if let Some(code) = root.first_existing(FALLBACKS) {
                info.ovmf.push(Firmware {
                    description: "OVMF".into(),
                    code: code.to_owned(),
                    vars_template: None,
                    secure_boot: code.contains("secboot") || code.contains(".ms."),
                    enrolled_keys: code.contains(".ms."),
                    descriptor: None,
                });
            }
        }
        info
    }

    pub fn secure_boot_available(&self) -> bool {
        self.ovmf.iter().any(|f| f.secure_boot)
    }
}

/// Parses one QEMU firmware descriptor (docs/interop/firmware.json). Returns `Ok(None)` for a
/// valid descriptor that is not x86_64 UEFI on q35 (BIOS, aarch64, AMD SEV images).
fn parse_descriptor(text: &str) -> Result<Option<Firmware>, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let strings = |key: &str| -> Vec<&str> {
        v.get(key)
            .and_then(|x| x.as_array())
            .map(|a| a.iter().filter_map(|s| s.as_str()).collect())
            .unwrap_or_default()
    };
    if !strings("interface-types").contains(&"uefi") {
        return Ok(None);
    }
    let targets = v
        .get("targets")
        .and_then(|t| t.as_array())
        .cloned()
        .unwrap_or_default();
    let x86_q35 = targets.iter().any(|t| {
        t.get("architecture").and_then(|a| a.as_str()) == Some("x86_64")
            && t.get("machines")
                .and_then(|m| m.as_array())
                .is_some_and(|m| {
                    m.iter()
                        .filter_map(|s| s.as_str())
                        .any(|s| s.contains("q35"))
                })
    });
    let features = strings("features");
    // "amd-sev" among the features means the build supports SEV, not that it needs it
    // (Debian's Secure Boot builds list it); only the q35 x86_64 target matters here.
    if !x86_q35 {
        return Ok(None);
    }
    let mapping = v.get("mapping").ok_or("no mapping")?;
    let code = mapping
        .pointer("/executable/filename")
        .and_then(|f| f.as_str())
        .ok_or("no mapping.executable.filename")?;
    let vars = mapping
        .pointer("/nvram-template/filename")
        .and_then(|f| f.as_str());
    Ok(Some(Firmware {
        description: v
            .get("description")
            .and_then(|d| d.as_str())
            .unwrap_or("UEFI")
            .to_owned(),
        code: code.to_owned(),
        vars_template: vars.map(str::to_owned),
        secure_boot: features.contains(&"secure-boot"),
        enrolled_keys: features.contains(&"enrolled-keys"),
        descriptor: None,
    }))
}

/// Where distributions and users usually keep the virtio-win driver ISO.
pub fn find_virtio_win(root: &HostRoot, home: Option<&str>) -> Option<String> {
    let mut dirs = vec![
        "/usr/share/virtio-win".to_owned(),
        "/var/lib/libvirt/images".to_owned(),
        "/var/lib/libvirt/boot".to_owned(),
    ];
    if let Some(home) = home {
        dirs.push(format!("{home}/Downloads"));
        dirs.push(home.to_owned());
    }
    for dir in dirs {
        let names = root.list_dir(&dir).unwrap_or_default();
        if let Some(name) = names.iter().find(|n| {
            let n = n.to_ascii_lowercase();
            n.starts_with("virtio-win") && n.ends_with(".iso")
        }) {
            return Some(format!("{dir}/{name}"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN_SECURE: &str = r#"{
        "description": "OVMF with SB+SMM, SB enabled, MS certs enrolled",
        "interface-types": ["uefi"],
        "mapping": {"device": "flash",
            "executable": {"filename": "/usr/share/OVMF/OVMF_CODE_4M.ms.fd", "format": "raw"},
            "nvram-template": {"filename": "/usr/share/OVMF/OVMF_VARS_4M.ms.fd", "format": "raw"}},
        "targets": [{"architecture": "x86_64", "machines": ["pc-q35-*"]}],
        "features": ["acpi-s3", "enrolled-keys", "requires-smm", "secure-boot", "verbose-dynamic"],
        "tags": []}"#;

    #[test]
    fn descriptor_parses() {
        let fw = parse_descriptor(DEBIAN_SECURE).unwrap().unwrap();
        assert_eq!(fw.code, "/usr/share/OVMF/OVMF_CODE_4M.ms.fd");
        assert!(fw.secure_boot && fw.enrolled_keys);
        assert_eq!(
            fw.vars_template.as_deref(),
            Some("/usr/share/OVMF/OVMF_VARS_4M.ms.fd")
        );
    }

    #[test]
    fn non_uefi_and_broken_descriptors() {
        assert_eq!(
            parse_descriptor(r#"{"interface-types": ["bios"]}"#),
            Ok(None)
        );
        let aarch = DEBIAN_SECURE.replace("x86_64", "aarch64");
        assert_eq!(parse_descriptor(&aarch), Ok(None));
        assert!(parse_descriptor("{ not json").is_err());
        assert!(parse_descriptor(r#"{"interface-types": ["uefi"], "targets": [{"architecture": "x86_64", "machines": ["pc-q35-*"]}]}"#).is_err());
    }
}
