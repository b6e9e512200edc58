//! Argument validation. Every argument a caller sends is checked here before the helper acts
//! on it: the plan's JSON shape (no unknown fields, so a typo or a newer client's intent is
//! never silently dropped), each PCI address's format, that each address is a GPU on this
//! host (and, for `ResetGpu`, one the host's drivers do not use), the transaction IDs, and
//! `ReadLog`'s log kind and VM name (one file-name component, never a path).
//! No argument names a path; the paths a rendered plan touches are checked against
//! [`PLAN_WRITABLE`], the same list the systemd unit makes writable (with
//! [`DEVICE_WRITABLE`] for `ResetGpu`).

use passthrough_core::dbus::{HelperError, MAX_ARGUMENT_LEN};
use passthrough_core::i18n::gettext_f;
use passthrough_core::pci::{PciAddress, PciDevice};
use passthrough_core::plan::{Plan, Rendered};
use passthrough_core::HostReport;
use serde_json::Value;

use passthrough_core::network::render::NetworkChange;
use passthrough_core::network::{netplan_yaml, validate_interface_name, Renderer};

use crate::logs::LogRequest;

/// Where a plan may change files (host paths): the boot-loader, initramfs, modprobe and udev
/// configuration and the boot partitions. `data/passthrough-helper.service` has exactly these
/// (plus [`STATE_DIR`] and [`COMMAND_WRITABLE`]) as `ReadWritePaths`; a test keeps the two in
/// step.
pub const PLAN_WRITABLE: &[&str] = &[
    "/etc/default",
    "/etc/kernel",
    "/etc/kernelstub",
    "/etc/mkinitcpio.conf.d",
    "/etc/mkinitcpio.conf",
    "/etc/initramfs-tools",
    "/etc/dracut.conf.d",
    "/etc/booster.yaml",
    "/etc/modprobe.d",
    "/etc/udev/rules.d",
    "/boot",
    "/efi",
    // The network bridge (`ApplyNetwork`).
    "/etc/netplan",
    "/etc/systemd/network",
];

/// The helper's own state: the transaction journal and backups.
pub const STATE_DIR: &str = "/var/lib/passthrough";

/// Written by the commands themselves, never by a plan's file edits: update-initramfs
/// records the checksum of each initramfs it builds there, and `bootctl set-oneshot` (a
/// trial boot) writes an EFI variable.
pub const COMMAND_WRITABLE: &[&str] = &["/var/lib/initramfs-tools", "/sys/firmware/efi/efivars"];

/// Written by `ResetGpu` (the boot-GPU fix): `/sys/bus/pci/rescan`, and each device's
/// `remove`. `/sys/bus/pci/devices/ADDR` is a symlink into `/sys/devices/pci…/…/ADDR`, so
/// the file written is under `/sys/devices`: `/sys/bus/pci` alone would leave it read-only.
pub const DEVICE_WRITABLE: &[&str] = &["/sys/bus/pci/rescan", "/sys/devices"];

/// The driver a graphics card reserved for virtual machines is bound to.
pub const VFIO_DRIVER: &str = "vfio-pci";

/// The most GPUs one plan may reserve or release (a desktop has a handful).
pub const MAX_DEVICES: usize = 16;

fn invalid(text: String) -> HelperError {
    HelperError::InvalidArgument(text)
}

/// Parses a plan's JSON strictly: an object with only the fields [`Plan`] has, well-formed
/// PCI addresses, no address both reserved and released.
pub fn plan_syntax(json: &str) -> Result<Plan, HelperError> {
    if json.len() > MAX_ARGUMENT_LEN {
        return Err(invalid(gettext_f(
            "The plan is too large ({size} bytes).",
            &[("size", &json.len().to_string())],
        )));
    }
    let value: Value = serde_json::from_str(json).map_err(|e| {
        invalid(gettext_f(
            "The plan is not valid JSON: {error}",
            &[("error", &e.to_string())],
        ))
    })?;
    let Value::Object(fields) = &value else {
        return Err(invalid(gettext_f("The plan must be a JSON object.", &[])));
    };
    let known = known_fields();
    if let Some(unknown) = fields.keys().find(|k| !known.contains(k)) {
        return Err(invalid(gettext_f(
            "The plan has a field this helper does not know: “{field}”.",
            &[("field", unknown)],
        )));
    }
    for list in ["reserve", "release"] {
        if let Some(Value::Array(items)) = fields.get(list) {
            if items.len() > MAX_DEVICES {
                return Err(invalid(gettext_f(
                    "The plan names too many devices (at most {max}).",
                    &[("max", &MAX_DEVICES.to_string())],
                )));
            }
            for item in items {
                pci_address(item)?;
            }
        }
    }
    let plan: Plan = serde_json::from_value(value).map_err(|e| {
        invalid(gettext_f(
            "The plan is not valid: {error}",
            &[("error", &e.to_string())],
        ))
    })?;
    if let Some(both) = plan.reserve.iter().find(|a| plan.release.contains(a)) {
        return Err(invalid(gettext_f(
            "The plan both reserves and releases {address}.",
            &[("address", &both.to_string())],
        )));
    }
    Ok(plan)
}

/// The JSON field names of [`Plan`], from its own serialization (so they cannot drift).
fn known_fields() -> Vec<String> {
    match serde_json::to_value(Plan::default()) {
        Ok(Value::Object(fields)) => fields.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

fn pci_address(item: &Value) -> Result<PciAddress, HelperError> {
    match item {
        Value::String(s) => address_syntax(s),
        other => Err(invalid(gettext_f(
            "{value} is not a PCI address (expected DDDD:BB:DD.F).",
            &[("value", &other.to_string())],
        ))),
    }
}

/// A PCI address in sysfs form (`0000:08:00.0`), and nothing else: no path, no pattern.
pub fn address_syntax(text: &str) -> Result<PciAddress, HelperError> {
    text.parse().map_err(|_| {
        invalid(gettext_f(
            "“{value}” is not a PCI address (expected DDDD:BB:DD.F).",
            &[("value", &text.chars().take(64).collect::<String>())],
        ))
    })
}

/// `address` is a graphics card on this host; returns its device.
fn gpu_device(report: &HostReport, address: PciAddress) -> Result<&PciDevice, HelperError> {
    let Some(device) = report.pci.devices.iter().find(|d| d.address == address) else {
        return Err(invalid(gettext_f(
            "There is no PCI device {address} on this computer.",
            &[("address", &address.to_string())],
        )));
    };
    if !device.is_gpu() || !report.gpus.iter().any(|g| g.address == address) {
        let class = device
            .class_name
            .clone()
            .or_else(|| device.class.map(|c| format!("{:04x}", c >> 8)))
            .unwrap_or_else(|| "?".to_owned());
        return Err(invalid(gettext_f(
            "{address} is not a graphics card ({class}).",
            &[("address", &address.to_string()), ("class", &class)],
        )));
    }
    Ok(device)
}

/// Every address the plan names is a graphics card on this host.
pub fn plan_devices(plan: &Plan, report: &HostReport) -> Result<(), HelperError> {
    for address in plan.reserve.iter().chain(&plan.release) {
        gpu_device(report, *address)?;
    }
    Ok(())
}

/// The argument of `ResetGpu`: a PCI address of a graphics card on this host that no driver
/// of the host uses (bound to vfio-pci, or to nothing). Removing a card that drives the
/// host's screen would take the desktop away.
pub fn resettable_gpu(text: &str, report: &HostReport) -> Result<PciAddress, HelperError> {
    let address = address_syntax(text)?;
    let device = gpu_device(report, address)?;
    match device.driver.as_deref() {
        None | Some(VFIO_DRIVER) => Ok(address),
        Some(driver) => Err(invalid(gettext_f(
            "{address} is in use by the driver {driver} of this computer: only a graphics card reserved for virtual machines (vfio-pci) is reset.",
            &[("address", &address.to_string()), ("driver", driver)],
        ))),
    }
}

/// The shortest and longest time `ApplyNetwork` waits for `ConfirmNetwork`, in seconds.
pub const CONFIRM_WITHIN: std::ops::RangeInclusive<u32> = 2..=600;

/// Parses a network change's JSON strictly (no unknown fields, valid interface names, valid
/// addresses); the host is checked when it is rendered.
pub fn network_change(
    json: &str,
    confirm_within: Option<u32>,
) -> Result<NetworkChange, HelperError> {
    if json.len() > MAX_ARGUMENT_LEN {
        return Err(invalid(gettext_f(
            "The network change is too large ({size} bytes).",
            &[("size", &json.len().to_string())],
        )));
    }
    if let Some(seconds) = confirm_within {
        if !CONFIRM_WITHIN.contains(&seconds) {
            return Err(invalid(gettext_f(
                "The time to confirm the network change must be {min} to {max} seconds, not {seconds}.",
                &[
                    ("min", &CONFIRM_WITHIN.start().to_string()),
                    ("max", &CONFIRM_WITHIN.end().to_string()),
                    ("seconds", &seconds.to_string()),
                ],
            )));
        }
    }
    let change: NetworkChange = serde_json::from_str(json).map_err(|e| {
        invalid(gettext_f(
            "The network change is not valid: {error}",
            &[("error", &e.to_string())],
        ))
    })?;
    validate_interface_name(change.bridge()).map_err(invalid)?;
    if let NetworkChange::Create { plan } = &change {
        validate_interface_name(&plan.port).map_err(invalid)?;
        // Every address and name, before the host is even read.
        netplan_yaml(plan, Renderer::Networkd).map_err(invalid)?;
    }
    Ok(change)
}

/// Parses and checks a plan against this host.
pub fn plan(json: &str, report: &HostReport) -> Result<Plan, HelperError> {
    let plan = plan_syntax(json)?;
    plan_devices(&plan, report)?;
    Ok(plan)
}

/// A transaction ID: 1 to 64 of `[0-9A-Za-z-]`.
pub fn transaction_id(id: &str) -> Result<&str, HelperError> {
    let ok =
        (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(id)
    } else {
        Err(invalid(gettext_f(
            "“{id}” is not a transaction ID.",
            &[("id", &id.chars().take(64).collect::<String>())],
        )))
    }
}

/// The longest VM name `ReadLog` accepts, in characters.
pub const MAX_VM_NAME: usize = 100;

/// `ReadLog(kind, vm)`: `kind` is `kernel` (and `vm` empty) or `qemu` with `vm` a libvirt
/// domain name that is one file-name component: not empty, at most [`MAX_VM_NAME`]
/// characters, no `/`, no control character, not `.` or `..`. Spaces, quotes and any
/// script are fine (libvirt allows them).
pub fn log_request(kind: &str, vm: &str) -> Result<LogRequest, HelperError> {
    match kind {
        "kernel" if vm.is_empty() => Ok(LogRequest::Kernel),
        "kernel" => Err(invalid(gettext_f(
            "The kernel log belongs to no virtual machine: the name must be empty.",
            &[],
        ))),
        "qemu" if vm.is_empty() => Err(invalid(gettext_f(
            "A virtual machine name is needed to read its QEMU log.",
            &[],
        ))),
        "qemu" => {
            let ok = vm.chars().count() <= MAX_VM_NAME
                && !vm.contains('/')
                && !vm.chars().any(char::is_control)
                && vm != "."
                && vm != "..";
            if ok {
                Ok(LogRequest::Qemu(vm.to_owned()))
            } else {
                Err(invalid(gettext_f(
                    "“{name}” is not a virtual machine name (at most 100 characters, no “/”, no control characters, not “.” or “..”).",
                    &[("name", &shown(vm))],
                )))
            }
        }
        _ => Err(invalid(gettext_f(
            "“{kind}” is not a log Passthrough reads (expected “kernel” or “qemu”).",
            &[("kind", &shown(kind))],
        ))),
    }
}

/// An argument as an error message quotes it: at most [`MAX_VM_NAME`] characters, control
/// characters as U+FFFD.
fn shown(text: &str) -> String {
    text.chars()
        .take(MAX_VM_NAME)
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

/// True when `path` is a normal absolute host path inside one of [`PLAN_WRITABLE`]: no empty,
/// `.` or `..` segment, no trailing slash.
pub fn is_plan_writable(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    let normal = rest
        .split('/')
        .all(|seg| !seg.is_empty() && seg != "." && seg != "..");
    normal
        && PLAN_WRITABLE.iter().any(|dir| {
            path == *dir
                || path
                    .strip_prefix(dir)
                    .is_some_and(|rest| rest.starts_with('/'))
        })
}

/// Defence in depth: a rendered plan only touches files the helper is meant to write.
pub fn rendered_paths(rendered: &Rendered) -> Result<(), HelperError> {
    match rendered.files.iter().find(|f| !is_plan_writable(&f.path)) {
        Some(file) => Err(HelperError::Failed(gettext_f(
            "The plan would change {path}, which Passthrough never changes.",
            &[("path", &file.path)],
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use passthrough_core::plan::FileChange;
    use passthrough_core::{HostRoot, ScanOptions};
    use std::path::PathBuf;

    fn fixture(name: &str) -> HostReport {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/roots")
            .join(name);
        HostReport::scan(&HostRoot::new(root), &ScanOptions::default())
    }

    fn plan_json(extra: &str) -> String {
        let mut v = serde_json::to_value(Plan::default()).unwrap();
        let extra: Value = serde_json::from_str(extra).unwrap();
        for (k, val) in extra.as_object().unwrap() {
            v[k] = val.clone();
        }
        v.to_string()
    }

    fn is_invalid(r: Result<impl std::fmt::Debug, HelperError>) -> String {
        match r {
            Err(HelperError::InvalidArgument(text)) => text,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn a_plain_plan_parses() {
        let plan = plan_syntax(&plan_json(
            r#"{"enable_iommu": true, "reserve": ["0000:08:00.0"]}"#,
        ))
        .unwrap();
        assert!(plan.enable_iommu);
        assert_eq!(plan.reserve[0].to_string(), "0000:08:00.0");
    }

    #[test]
    fn malformed_plans_are_refused() {
        for bad in ["", "{", "[]", "null", "42", "\"plan\""] {
            is_invalid(plan_syntax(bad));
        }
        let text = is_invalid(plan_syntax(&plan_json(r#"{"write_file": "/etc/shadow"}"#)));
        assert!(text.contains("write_file"), "{text}");
        // A missing field or a wrong type is refused too.
        is_invalid(plan_syntax(r#"{"enable_iommu": true}"#));
        is_invalid(plan_syntax(&plan_json(r#"{"enable_iommu": "yes"}"#)));
        is_invalid(plan_syntax(&plan_json(r#"{"bind_by": "sideways"}"#)));
        is_invalid(plan_syntax(&" ".repeat(MAX_ARGUMENT_LEN + 1)));
    }

    #[test]
    fn addresses_must_be_pci_addresses() {
        for bad in [
            r#"["../../etc"]"#,
            r#"["/sys/bus/pci/devices/0000:08:00.0"]"#,
            r#"["0000:08:00.0/../../x"]"#,
            r#"["0000:08:20.0"]"#,
            r#"["0000:08:00.8"]"#,
            r#"[8]"#,
            r#"[null]"#,
        ] {
            let text = is_invalid(plan_syntax(&plan_json(&format!(r#"{{"reserve": {bad}}}"#))));
            assert!(text.contains("PCI address"), "{bad}: {text}");
        }
        let many: Vec<String> = (0..=MAX_DEVICES)
            .map(|i| format!("\"0000:{i:02x}:00.0\""))
            .collect();
        is_invalid(plan_syntax(&plan_json(&format!(
            r#"{{"reserve": [{}]}}"#,
            many.join(",")
        ))));
        is_invalid(plan_syntax(&plan_json(
            r#"{"reserve": ["0000:08:00.0"], "release": ["0000:08:00.0"]}"#,
        )));
    }

    #[test]
    fn addresses_must_be_gpus_on_this_host() {
        let report = fixture("b550-blog");
        plan(&plan_json(r#"{"reserve": ["0000:08:00.0"]}"#), &report).unwrap();
        plan(&plan_json(r#"{"release": ["0000:04:00.0"]}"#), &report).unwrap();
        let text = is_invalid(plan(
            &plan_json(r#"{"reserve": ["0000:42:00.0"]}"#),
            &report,
        ));
        assert!(text.contains("no PCI device"), "{text}");
        // The GPU's HDMI audio function exists but is not a graphics card.
        let text = is_invalid(plan(
            &plan_json(r#"{"reserve": ["0000:08:00.1"]}"#),
            &report,
        ));
        assert!(text.contains("not a graphics card"), "{text}");
    }

    #[test]
    fn only_a_reserved_gpu_is_resettable() {
        let report = fixture("b550-blog");
        assert_eq!(
            resettable_gpu("0000:08:00.0", &report).unwrap().to_string(),
            "0000:08:00.0"
        );
        let text = is_invalid(resettable_gpu("0000:08:00.1", &report));
        assert!(text.contains("not a graphics card"), "{text}");
        let text = is_invalid(resettable_gpu("0000:42:00.0", &report));
        assert!(text.contains("no PCI device"), "{text}");
        // The host's own card (amdgpu drives the desktop) is never removed.
        let text = is_invalid(resettable_gpu("0000:04:00.0", &report));
        assert!(text.contains("amdgpu"), "{text}");
        for bad in [
            "",
            "08:00.0 ",
            "../../../../etc",
            "0000:08:00.0/../../x",
            "/sys/bus/pci/devices/0000:08:00.0",
            "0000:08:00.*",
            &"0".repeat(MAX_ARGUMENT_LEN + 1),
        ] {
            let text = is_invalid(resettable_gpu(bad, &report));
            assert!(
                text.contains("PCI address") && text.len() < 200,
                "{bad:?}: {text}"
            );
        }
    }

    #[test]
    fn transaction_ids() {
        transaction_id("20240101-120000-ab12").unwrap();
        transaction_id(&"a".repeat(64)).unwrap();
        for bad in ["", "../x", "a/b", "a b", "a.b", "é", &"a".repeat(65), "a\0"] {
            is_invalid(transaction_id(bad));
        }
    }

    #[test]
    fn the_unit_makes_exactly_these_paths_writable() {
        let unit = std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/passthrough-helper.service"),
        )
        .unwrap();
        let mut in_unit: Vec<&str> = unit
            .lines()
            .filter_map(|l| l.strip_prefix("ReadWritePaths="))
            .flat_map(str::split_whitespace)
            .map(|p| p.trim_start_matches('-'))
            .collect();
        let mut here: Vec<&str> = PLAN_WRITABLE
            .iter()
            .chain(COMMAND_WRITABLE)
            .chain(DEVICE_WRITABLE)
            .copied()
            .chain([STATE_DIR])
            .collect();
        in_unit.sort_unstable();
        here.sort_unstable();
        assert_eq!(in_unit, here);
    }

    #[test]
    fn rendered_paths_stay_in_the_writable_dirs() {
        for ok in [
            "/etc/default/grub",
            "/etc/kernel/cmdline",
            "/etc/modprobe.d/passthrough.conf",
            "/boot/loader/entries/arch.conf",
            "/etc/mkinitcpio.conf",
        ] {
            assert!(is_plan_writable(ok), "{ok}");
        }
        for bad in [
            "/etc/shadow",
            "etc/default/grub",
            "/etc/default/../shadow",
            "/etc/default/./grub",
            "/etc/defaults/grub",
            "/etc/mkinitcpio.conf.bak",
            "/var/lib/passthrough/x",
            "/boot/",
            "//boot/x",
        ] {
            assert!(!is_plan_writable(bad), "{bad}");
        }
        let rendered = Rendered {
            files: vec![FileChange {
                path: "/etc/passwd".into(),
                before: None,
                after: Some(String::new()),
            }],
            ..Rendered::default()
        };
        assert!(matches!(
            rendered_paths(&rendered),
            Err(HelperError::Failed(_))
        ));
    }

    #[test]
    fn log_requests() {
        assert_eq!(log_request("kernel", ""), Ok(LogRequest::Kernel));
        for name in [
            "win11",
            "Game's \"VM\" 游戏",
            "a b",
            "...",
            ".hidden",
            &"名".repeat(MAX_VM_NAME),
        ] {
            assert_eq!(
                log_request("qemu", name),
                Ok(LogRequest::Qemu(name.to_owned())),
                "{name}"
            );
        }
        for (kind, vm) in [
            ("", ""),
            ("Kernel", ""),
            ("kernel ", ""),
            ("journal", ""),
            ("qemu/../kernel", ""),
            ("kernel", "win11"),
            ("qemu", ""),
            ("qemu", "."),
            ("qemu", ".."),
            ("qemu", "../x"),
            ("qemu", "a/b"),
            ("qemu", "/etc/shadow"),
            ("qemu", "a\nb"),
            ("qemu", "a\0b"),
            ("qemu", "tab\there"),
            ("qemu", "del\u{7f}"),
            ("qemu", "c1\u{85}"),
        ] {
            let Err(HelperError::InvalidArgument(text)) = log_request(kind, vm) else {
                panic!("{kind:?} {vm:?} accepted");
            };
            assert!(text.ends_with('.') && !text.contains('\n'), "{text}");
        }
        let long = "a".repeat(MAX_VM_NAME + 1);
        let Err(HelperError::InvalidArgument(text)) = log_request("qemu", &long) else {
            panic!("a long name accepted");
        };
        assert!(!text.contains(&long), "{text}");
    }
}
