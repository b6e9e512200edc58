//! libvirt on the host: installed, running, and whether the user may use `qemu:///system`.

use serde::Serialize;

use crate::root::HostRoot;

const DAEMONS: &[&str] = &[
    "/usr/sbin/libvirtd",
    "/usr/sbin/virtqemud",
    "/usr/bin/libvirtd",
    "/usr/bin/virtqemud",
];
const SOCKETS: &[&str] = &[
    "/run/libvirt/libvirt-sock",
    "/run/libvirt/virtqemud-sock",
    "/var/run/libvirt/libvirt-sock",
    "/var/run/libvirt/virtqemud-sock",
];
/// Group names that grant access to `qemu:///system` (Ubuntu 16.04 used `libvirtd`).
const GROUPS: &[&str] = &["libvirt", "libvirtd"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LibvirtInfo {
    pub installed: bool,
    /// The daemon's socket exists: it runs, or systemd listens for it.
    pub running: bool,
    pub daemon: Option<String>,
    pub user: Option<String>,
    /// The libvirt group the user is in, if any.
    pub user_group: Option<String>,
    /// Whether a libvirt group exists at all.
    pub group_exists: bool,
}

impl LibvirtInfo {
    pub fn detect(root: &HostRoot, user: Option<&str>) -> Self {
        let daemon = root.first_existing(DAEMONS).map(str::to_owned);
        let running = root.first_existing(SOCKETS).is_some();
        let groups = root.read_string("/etc/group").unwrap_or_default();
        let passwd = root.read_string("/etc/passwd").unwrap_or_default();
        let primary_gid = user.and_then(|u| passwd_entry(&passwd, u)).map(|e| e.gid);
        let mut group_exists = false;
        let mut user_group = None;
        for line in groups.lines() {
            let fields: Vec<&str> = line.split(':').collect();
            let [name, _, gid, members] = fields[..] else {
                continue;
            };
            if !GROUPS.contains(&name) {
                continue;
            }
            group_exists = true;
            let member = user.is_some_and(|u| members.split(',').any(|m| m.trim() == u))
                || (primary_gid.is_some() && gid.parse::<u32>().ok() == primary_gid);
            if member && user_group.is_none() {
                user_group = Some(name.to_owned());
            }
        }
        Self {
            installed: daemon.is_some(),
            running,
            daemon,
            user: user.map(str::to_owned),
            user_group,
            group_exists,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

fn parse_passwd_line(line: &str) -> Option<PasswdEntry> {
    let f: Vec<&str> = line.split(':').collect();
    if f.len() < 7 {
        return None;
    }
    Some(PasswdEntry {
        name: f[0].to_owned(),
        uid: f[2].parse().ok()?,
        gid: f[3].parse().ok()?,
        home: f[5].to_owned(),
    })
}

pub fn passwd_entry(passwd: &str, user: &str) -> Option<PasswdEntry> {
    passwd
        .lines()
        .filter_map(parse_passwd_line)
        .find(|e| e.name == user)
}

/// The user whose point of view the report takes.
///
/// On the live system that is the user running the program. On a fixture root, where that
/// user usually does not exist, it is the first regular user (uid 1000–59999) of the fixture.
pub fn current_user(root: &HostRoot) -> Option<String> {
    let passwd = root.read_string("/etc/passwd").unwrap_or_default();
    let mine = std::env::var("USER")
        .ok()
        .or_else(|| std::env::var("LOGNAME").ok());
    if let Some(name) = &mine {
        if root.is_live() || passwd_entry(&passwd, name).is_some() {
            return mine;
        }
    }
    if root.is_live() {
        return None;
    }
    passwd
        .lines()
        .filter_map(parse_passwd_line)
        .find(|e| (1000..60000).contains(&e.uid))
        .map(|e| e.name)
}

/// The user's home directory under the root.
pub fn home_of(root: &HostRoot, user: &str) -> Option<String> {
    let passwd = root.read_string("/etc/passwd").ok()?;
    passwd_entry(&passwd, user).map(|e| e.home)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn group_membership_by_list_and_by_primary_gid() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("etc")).unwrap();
        fs::create_dir_all(dir.path().join("usr/sbin")).unwrap();
        fs::write(dir.path().join("usr/sbin/libvirtd"), "").unwrap();
        fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/bash\nyuan:x:1000:1000:,,,:/home/yuan:/bin/zsh\nvm:x:1001:133::/home/vm:/bin/sh\n",
        )
        .unwrap();
        fs::write(
            dir.path().join("etc/group"),
            "yuan:x:1000:\nlibvirt:x:133:yuan,other\n",
        )
        .unwrap();
        let root = HostRoot::new(dir.path());
        let info = LibvirtInfo::detect(&root, Some("yuan"));
        assert!(info.installed && !info.running && info.group_exists);
        assert_eq!(info.user_group.as_deref(), Some("libvirt"));
        assert_eq!(
            LibvirtInfo::detect(&root, Some("vm")).user_group.as_deref(),
            Some("libvirt")
        );
        assert_eq!(LibvirtInfo::detect(&root, Some("root")).user_group, None);
        assert_eq!(LibvirtInfo::detect(&root, Some("yua")).user_group, None);
        assert_eq!(home_of(&root, "yuan").as_deref(), Some("/home/yuan"));
    }
}
