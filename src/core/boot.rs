//! Which boot loader and which initramfs generator the host uses, told from files under the
//! root. Later steps edit their configuration; this module only recognizes them.

use serde::Serialize;

use crate::root::HostRoot;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BootLoaderKind {
    /// GRUB with `/etc/default/grub` and `update-grub`/`grub-mkconfig` (Debian, Ubuntu, Arch).
    Grub,
    /// GRUB in Fedora's `grub2` layout, kernel arguments through `grubby`.
    Grubby,
    SystemdBoot,
    /// Pop!_OS: systemd-boot entries written by kernelstub.
    Kernelstub,
    /// Fedora Silverblue/Kinoite and other image-based systems: `rpm-ostree kargs`.
    RpmOstree,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BootLoader {
    pub kind: BootLoaderKind,
    /// The file that holds the kernel arguments (host path), when there is one.
    pub config: Option<String>,
    /// The generated GRUB menu (host path), for GRUB layouts.
    pub grub_cfg: Option<String>,
    /// The command that applies a change, as the user would type it.
    pub apply_command: Option<String>,
}

impl BootLoaderKind {
    /// The name people use for it.
    pub fn display_name(self) -> &'static str {
        match self {
            Self::Grub => "GRUB",
            Self::Grubby => "GRUB (grubby)",
            Self::SystemdBoot => "systemd-boot",
            Self::Kernelstub => "kernelstub (systemd-boot)",
            Self::RpmOstree => "rpm-ostree",
            Self::Unknown => "?",
        }
    }
}

const GRUB_CFGS: &[&str] = &[
    "/boot/grub/grub.cfg",
    "/boot/grub2/grub.cfg",
    "/boot/efi/EFI/fedora/grub.cfg",
];
const SDBOOT_MARKERS: &[&str] = &[
    "/etc/kernel/cmdline",
    "/boot/loader/loader.conf",
    "/efi/loader/loader.conf",
    "/boot/efi/loader/loader.conf",
];

impl BootLoader {
    pub fn detect(root: &HostRoot) -> Self {
        let any = |paths: &[&str]| root.first_existing(paths).map(str::to_owned);
        let grub_cfg = any(GRUB_CFGS);
        if root.exists("/run/ostree-booted") {
            return Self {
                kind: BootLoaderKind::RpmOstree,
                config: None,
                grub_cfg: None,
                apply_command: Some("rpm-ostree kargs".into()),
            };
        }
        if root.exists("/etc/kernelstub/configuration") {
            return Self {
                kind: BootLoaderKind::Kernelstub,
                config: Some("/etc/kernelstub/configuration".into()),
                grub_cfg: None,
                apply_command: Some("kernelstub".into()),
            };
        }
        let default_grub = root
            .exists("/etc/default/grub")
            .then(|| "/etc/default/grub".to_owned());
        if root
            .first_existing(&["/usr/sbin/grubby", "/usr/bin/grubby", "/sbin/grubby"])
            .is_some()
            && (grub_cfg.is_some() || default_grub.is_some())
        {
            return Self {
                kind: BootLoaderKind::Grubby,
                config: default_grub,
                grub_cfg,
                apply_command: Some("grubby --update-kernel=ALL".into()),
            };
        }
        if default_grub.is_some() || grub_cfg.is_some() {
            let fedora_layout = grub_cfg.as_deref().is_some_and(|c| c.contains("grub2"));
            let apply = if root
                .first_existing(&["/usr/sbin/update-grub", "/sbin/update-grub"])
                .is_some()
            {
                "update-grub".to_owned()
            } else if fedora_layout {
                format!(
                    "grub2-mkconfig -o {}",
                    grub_cfg.as_deref().unwrap_or("/boot/grub2/grub.cfg")
                )
            } else {
                format!(
                    "grub-mkconfig -o {}",
                    grub_cfg.as_deref().unwrap_or("/boot/grub/grub.cfg")
                )
            };
            return Self {
                kind: BootLoaderKind::Grub,
                config: default_grub,
                grub_cfg,
                apply_command: Some(apply),
            };
        }
        if let Some(marker) = any(SDBOOT_MARKERS) {
            let config = if root.exists("/etc/kernel/cmdline") {
                "/etc/kernel/cmdline".to_owned()
            } else {
                marker
            };
            return Self {
                kind: BootLoaderKind::SystemdBoot,
                config: Some(config),
                grub_cfg: None,
                apply_command: Some("kernel-install".into()),
            };
        }
        Self {
            kind: BootLoaderKind::Unknown,
            config: None,
            grub_cfg: None,
            apply_command: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InitramfsKind {
    InitramfsTools,
    Dracut,
    Mkinitcpio,
    Booster,
    Unknown,
}

impl InitramfsKind {
    pub fn detect(root: &HostRoot) -> Self {
        let has = |paths: &[&str]| root.first_existing(paths).is_some();
        if has(&["/usr/bin/booster", "/etc/booster.yaml"]) {
            Self::Booster
        } else if has(&["/usr/bin/mkinitcpio", "/etc/mkinitcpio.conf"]) {
            Self::Mkinitcpio
        } else if has(&[
            "/usr/bin/dracut",
            "/usr/sbin/dracut",
            "/etc/dracut.conf.d",
            "/etc/dracut.conf",
        ]) {
            Self::Dracut
        } else if has(&["/usr/sbin/update-initramfs", "/etc/initramfs-tools"]) {
            Self::InitramfsTools
        } else {
            Self::Unknown
        }
    }

    pub fn display_name(self) -> &'static str {
        match self {
            Self::InitramfsTools => "initramfs-tools",
            Self::Dracut => "dracut",
            Self::Mkinitcpio => "mkinitcpio",
            Self::Booster => "booster",
            Self::Unknown => "?",
        }
    }
}

/// The running kernel's release (`6.1.0-13-amd64`), from `/proc/sys/kernel/osrelease`.
pub fn kernel_release(root: &HostRoot) -> Option<String> {
    root.read_value("/proc/sys/kernel/osrelease")
        .ok()
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn root_with(files: &[&str]) -> (tempfile::TempDir, HostRoot) {
        let dir = tempfile::tempdir().unwrap();
        for f in files {
            let p = dir.path().join(f.trim_start_matches('/'));
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, "").unwrap();
        }
        let root = HostRoot::new(dir.path());
        (dir, root)
    }

    #[test]
    fn debian_grub() {
        let (_d, r) = root_with(&[
            "/etc/default/grub",
            "/boot/grub/grub.cfg",
            "/usr/sbin/update-grub",
        ]);
        let b = BootLoader::detect(&r);
        assert_eq!(b.kind, BootLoaderKind::Grub);
        assert_eq!(b.apply_command.as_deref(), Some("update-grub"));
    }

    #[test]
    fn arch_grub_and_fedora_grubby() {
        let (_d, r) = root_with(&["/etc/default/grub", "/boot/grub/grub.cfg"]);
        assert_eq!(
            BootLoader::detect(&r).apply_command.as_deref(),
            Some("grub-mkconfig -o /boot/grub/grub.cfg")
        );
        let (_d, r) = root_with(&["/etc/default/grub", "/boot/grub2/grub.cfg"]);
        assert_eq!(
            BootLoader::detect(&r).apply_command.as_deref(),
            Some("grub2-mkconfig -o /boot/grub2/grub.cfg")
        );
        let (_d, r) = root_with(&[
            "/etc/default/grub",
            "/boot/grub2/grub.cfg",
            "/usr/sbin/grubby",
        ]);
        assert_eq!(BootLoader::detect(&r).kind, BootLoaderKind::Grubby);
    }

    #[test]
    fn others() {
        let (_d, r) = root_with(&["/etc/kernel/cmdline", "/boot/loader/loader.conf"]);
        assert_eq!(BootLoader::detect(&r).kind, BootLoaderKind::SystemdBoot);
        let (_d, r) = root_with(&[
            "/etc/kernelstub/configuration",
            "/boot/efi/loader/loader.conf",
        ]);
        assert_eq!(BootLoader::detect(&r).kind, BootLoaderKind::Kernelstub);
        let (_d, r) = root_with(&["/run/ostree-booted", "/boot/grub2/grub.cfg"]);
        assert_eq!(BootLoader::detect(&r).kind, BootLoaderKind::RpmOstree);
        let (_d, r) = root_with(&[]);
        assert_eq!(BootLoader::detect(&r).kind, BootLoaderKind::Unknown);
    }

    #[test]
    fn initramfs_systems() {
        let cases = [
            (
                &["/usr/sbin/update-initramfs"][..],
                InitramfsKind::InitramfsTools,
            ),
            (
                &["/usr/bin/dracut", "/etc/initramfs-tools/modules"][..],
                InitramfsKind::Dracut,
            ),
            (&["/etc/mkinitcpio.conf"][..], InitramfsKind::Mkinitcpio),
            (&["/usr/bin/booster"][..], InitramfsKind::Booster),
            (&[][..], InitramfsKind::Unknown),
        ];
        for (files, want) in cases {
            let (_d, r) = root_with(files);
            assert_eq!(InitramfsKind::detect(&r), want, "{files:?}");
        }
    }
}
