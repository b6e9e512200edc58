//! The boot-GPU fix of the reference post: a graphics card that the computer started on keeps
//! the firmware's frame buffer claim on its memory, so QEMU cannot map it and the VM fails to
//! start. Removing the card from the PCI bus and rescanning the bus finds it again without
//! that claim:
//!
//! ```sh
//! echo 1 > /sys/bus/pci/devices/0000:08:00.0/remove && echo 1 > /sys/bus/pci/rescan
//! ```
//!
//! Both writes go through the [`HostRoot`]; the address has been validated
//! ([`validate::resettable_gpu`](crate::validate::resettable_gpu)) before.

use std::fs::OpenOptions;
use std::io::{self, Write};

use passthrough_core::dbus::HelperError;
use passthrough_core::i18n::gettext_f;
use passthrough_core::pci::PciAddress;
use passthrough_core::HostRoot;

/// Rescans every PCI bus when "1" is written to it.
pub const RESCAN: &str = "/sys/bus/pci/rescan";

/// The file that removes `address` from its bus when "1" is written to it.
pub fn remove_path(address: &PciAddress) -> String {
    format!("/sys/bus/pci/devices/{address}/remove")
}

/// Removes the device at `address` from the PCI bus, then rescans the bus. The rescan is
/// not tried when the removal failed.
pub fn reset(root: &HostRoot, address: &PciAddress) -> Result<(), HelperError> {
    let address_text = address.to_string();
    write_one(root, &remove_path(address)).map_err(|e| {
        HelperError::Failed(gettext_f(
            "Cannot remove the graphics card {address} from the PCI bus: {error}",
            &[("address", &address_text), ("error", &e.to_string())],
        ))
    })?;
    tracing::info!(address = %address_text, "removed from the PCI bus");
    write_one(root, RESCAN).map_err(|e| {
        HelperError::Failed(gettext_f(
            "The graphics card {address} was removed from the PCI bus, but the bus could not be rescanned to find it again ({error}). Restart the computer to get the card back.",
            &[("address", &address_text), ("error", &e.to_string())],
        ))
    })?;
    tracing::info!(address = %address_text, "PCI bus rescanned");
    Ok(())
}

/// Writes "1" to an existing sysfs attribute as `echo 1 >` does: never creates a file.
fn write_one(root: &HostRoot, host_path: &str) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(root.path(host_path))?;
    file.write_all(b"1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    fn sysfs_like() -> (tempfile::TempDir, HostRoot, PciAddress) {
        let dir = tempfile::tempdir().unwrap();
        let root = HostRoot::new(dir.path());
        let address: PciAddress = "0000:08:00.0".parse().unwrap();
        let device = root.path("/sys/devices/pci0000:00/0000:00:03.1/0000:08:00.0");
        std::fs::create_dir_all(&device).unwrap();
        std::fs::write(device.join("remove"), "").unwrap();
        std::fs::create_dir_all(root.path("/sys/bus/pci/devices")).unwrap();
        std::os::unix::fs::symlink(
            "../../../devices/pci0000:00/0000:00:03.1/0000:08:00.0",
            root.path("/sys/bus/pci/devices/0000:08:00.0"),
        )
        .unwrap();
        (dir, root, address)
    }

    #[test]
    fn removes_then_rescans() {
        let (_dir, root, address) = sysfs_like();
        std::fs::write(root.path(RESCAN), "").unwrap();
        reset(&root, &address).unwrap();
        assert_eq!(root.read_string(remove_path(&address)).unwrap(), "1");
        assert_eq!(
            root.read_string("/sys/devices/pci0000:00/0000:00:03.1/0000:08:00.0/remove")
                .unwrap(),
            "1"
        );
        assert_eq!(root.read_string(RESCAN).unwrap(), "1");
    }

    #[test]
    fn creates_nothing_and_says_what_failed() {
        let (_dir, root, address) = sysfs_like();
        // No rescan file: the removal happened, the rescan is reported with a way out.
        let Err(HelperError::Failed(text)) = reset(&root, &address) else {
            panic!("expected Failed");
        };
        assert!(
            text.contains("rescanned") && text.contains("0000:08:00.0"),
            "{text}"
        );
        assert!(!root.path(RESCAN).exists());
        // No such device: nothing is written at all.
        std::fs::write(root.path(RESCAN), "").unwrap();
        let other: PciAddress = "0000:09:00.0".parse().unwrap();
        let Err(HelperError::Failed(text)) = reset(&root, &other) else {
            panic!("expected Failed");
        };
        assert!(
            text.contains("Cannot remove") && text.contains("0000:09:00.0"),
            "{text}"
        );
        assert_eq!(root.read_string(RESCAN).unwrap(), "");
        assert!(!root.path(remove_path(&other)).exists());
    }

    const HARDENED_INNER: &str = "PASSTHROUGH_TEST_RESET_HARDENED";
    const HARDENED_TEST: &str = "reset::tests::the_hardened_unit_lets_the_reset_through";

    /// The `ReadWritePaths=` of data/passthrough-helper.service.
    fn unit_writable_paths() -> Vec<String> {
        let unit = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/passthrough-helper.service"),
        )
        .unwrap();
        assert!(unit.contains("\nProtectSystem=strict\n"));
        assert!(unit.contains("\nProtectKernelTunables=yes\n"));
        unit.lines()
            .filter_map(|l| l.strip_prefix("ReadWritePaths="))
            .flat_map(str::split_whitespace)
            .map(|p| p.trim_start_matches('-').to_owned())
            .collect()
    }

    /// The fixture root b550-blog with the sysfs files a reset writes (empty), and a file the
    /// unit must keep read-only.
    fn fixture_copy() -> (tempfile::TempDir, HostRoot) {
        let dir = tempfile::tempdir().unwrap();
        let fixture =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/roots/b550-blog");
        let ok = Command::new("cp")
            .arg("-a")
            .arg(&fixture)
            .arg(dir.path().join("root"))
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let root = HostRoot::new(dir.path().join("root"));
        let address: PciAddress = "0000:08:00.0".parse().unwrap();
        for file in [
            remove_path(&address).as_str(),
            RESCAN,
            "/sys/bus/pci/drivers_probe",
        ] {
            std::fs::write(root.path(file), "").unwrap();
        }
        (dir, root)
    }

    /// The reset inside the file-system view the unit gives the helper (everything read-only
    /// but its `ReadWritePaths=`), built with a user and mount namespace over a copy of a
    /// fixture root: the unit's paths let both writes through and nothing else under /sys;
    /// `/sys/bus/pci` alone would not (the device's `remove` is under `/sys/devices`).
    #[test]
    fn the_hardened_unit_lets_the_reset_through() {
        if let Ok(spec) = std::env::var(HARDENED_INNER) {
            return hardened_inner(&spec);
        }
        let probe = Command::new("unshare")
            .args(["--user", "--map-root-user", "--mount", "true"])
            .output()
            .expect("unshare (util-linux) runs");
        if !probe.status.success() {
            eprintln!(
                "SKIPPED {HARDENED_TEST}: this machine allows no user and mount namespaces: {}",
                String::from_utf8_lossy(&probe.stderr).trim()
            );
            return;
        }
        for (expect, writable) in [
            ("allowed", unit_writable_paths()),
            ("refused", vec!["/sys/bus/pci".to_owned()]),
        ] {
            let (_dir, root) = fixture_copy();
            let base = root.path("/");
            let base = base.to_str().unwrap().trim_end_matches('/');
            let mut script = format!(
                "set -e\nmount --bind '{base}' '{base}'\nmount -o remount,ro,bind '{base}'\n"
            );
            for p in writable.iter().filter(|p| root.path(p).exists()) {
                script.push_str(&format!(
                    "mount --bind '{base}{p}' '{base}{p}'\nmount -o remount,rw,bind '{base}{p}'\n"
                ));
            }
            script.push_str(&format!(
                "exec \"$0\" --exact {HARDENED_TEST} --nocapture\n"
            ));
            let status = Command::new("unshare")
                .args(["--user", "--map-root-user", "--mount", "sh", "-c", &script])
                .arg(std::env::current_exe().unwrap())
                .env(HARDENED_INNER, format!("{expect}:{base}"))
                .status()
                .expect("unshare (util-linux) runs");
            assert!(
                status.success(),
                "{expect}: the run inside the namespace failed"
            );
            // Outside the namespace: what the run wrote stayed written.
            let rescan = root.read_string(RESCAN).unwrap();
            assert_eq!(rescan, if expect == "allowed" { "1" } else { "" });
        }
    }

    fn hardened_inner(spec: &str) {
        let (expect, base) = spec.split_once(':').unwrap();
        let root = HostRoot::new(PathBuf::from(base));
        let address: PciAddress = "0000:08:00.0".parse().unwrap();
        let read_only = |path: &str| {
            let err = OpenOptions::new()
                .write(true)
                .open(root.path(path))
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::ReadOnlyFilesystem, "{path}");
        };
        read_only("/etc/group");
        match expect {
            "allowed" => {
                // The view is what the unit makes it: the rest of /sys/bus/pci is read-only.
                read_only("/sys/bus/pci/drivers_probe");
                reset(&root, &address).unwrap();
                assert_eq!(root.read_string(remove_path(&address)).unwrap(), "1");
                assert_eq!(root.read_string(RESCAN).unwrap(), "1");
            }
            _ => {
                let Err(HelperError::Failed(text)) = reset(&root, &address) else {
                    panic!("the removal went through /sys/bus/pci alone");
                };
                assert!(text.contains("Cannot remove"), "{text}");
                read_only(&remove_path(&address));
                assert_eq!(root.read_string(RESCAN).unwrap(), "");
            }
        }
    }
}
