//! The bridge as a change of the host's files, applied by the helper as a transaction of
//! the same kind as the boot configuration ([`crate::transaction`]).
//!
//! | manager | files | commands |
//! |---|---|---|
//! | netplan (either renderer) | [`NETPLAN_FILE`](super::NETPLAN_FILE), mode 0600, and the user's files in `/etc/netplan` that give the port fixed IP settings | `netplan apply` |
//! | systemd-networkd alone | `05-passthrough-BR.netdev`, `05-passthrough-BR.network`, `05-passthrough-PORT.network` in `/etc/systemd/network` | `networkctl reload`, `networkctl reconfigure PORT` |
//!
//! networkd uses the first `.network` file, in lexical order, that matches an interface, so
//! the `05-` prefix puts the port's file before a distribution's `10-…`/`20-wired.network`.
//! Removing the bridge deletes exactly these files (only when they carry Passthrough's
//! header) and runs the same commands (plus `networkctl delete BR` for networkd: netplan
//! removes the bridges it no longer defines itself).
//!
//! netplan merges its files by appending their lists (`addresses`, `routes`, DNS servers),
//! and no later file can delete a key, so a port with static settings in the user's own file
//! would keep them next to the bridge. Making the bridge therefore also removes the port's IP
//! settings from those files in `/etc/netplan` (refused for `/lib/netplan` and
//! `/run/netplan`), and removing it puts them back byte for byte from the transaction's
//! backup (refused when the user changed them since).
//!
//! NetworkManager hosts are changed over D-Bus by the app (`nm.rs`), with NetworkManager's
//! own checkpoint; this module refuses them.
//!
//! [`check_with_netplan`] runs the real `netplan generate` on a copy of the host's netplan
//! files with the change made, before anything is written.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use super::{
    can_bridge, netplan_yaml, static_config, validate_interface_name, BridgePlan, Ipv4, Ipv6,
    Manager, NetworkReport, NETPLAN_FILE,
};
use crate::i18n::gettext_f;
use crate::plan::{FileChange, Rendered};
use crate::HostRoot;

/// Where the networkd files go (host path, with the trailing slash the allow-list uses).
pub const NETWORKD_DIR: &str = "/etc/systemd/network/";

/// The name prefix of Passthrough's networkd files.
pub const NETWORKD_PREFIX: &str = "05-passthrough-";

/// The first line of every file Passthrough writes for the bridge.
const HEADER: &str = "# Written by Passthrough";

/// What the Network step asks the helper to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case", deny_unknown_fields)]
pub enum NetworkChange {
    /// Make the bridge of the plan, with its port.
    Create { plan: BridgePlan },
    /// Remove the bridge Passthrough made, giving the port its earlier configuration back.
    Remove { bridge: String },
}

impl NetworkChange {
    /// The bridge it is about.
    pub fn bridge(&self) -> &str {
        match self {
            NetworkChange::Create { plan } => &plan.bridge,
            NetworkChange::Remove { bridge } => bridge,
        }
    }
}

fn read(root: &HostRoot, host_path: &str) -> Option<String> {
    root.read_string(host_path).ok()
}

fn file_change(root: &HostRoot, path: String, after: Option<String>) -> Option<FileChange> {
    let before = read(root, &path);
    (before != after).then_some(FileChange {
        path,
        before,
        after,
    })
}

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

fn not_ours(bridge: &str) -> String {
    gettext_f(
        "There is no bridge {name} made by Passthrough on this host: Passthrough removes only what it made.",
        &[("name", bridge)],
    )
}

/// The change of the host's files and the commands that apply it, checked against the host.
pub fn render(
    root: &HostRoot,
    report: &NetworkReport,
    change: &NetworkChange,
) -> Result<Rendered, String> {
    validate_interface_name(change.bridge())?;
    let mut rendered = Rendered::default();
    match (report.manager, change) {
        (Manager::Netplan { .. }, NetworkChange::Create { plan }) => {
            let ours = read(root, NETPLAN_FILE).is_some_and(|t| t.starts_with(HEADER));
            check_bridge_name(report, plan, ours)?;
            let (path, yaml) = super::netplan_file(report, plan)?;
            rendered.files.extend(file_change(root, path, Some(yaml)));
            rendered.files.extend(netplan_port_edits(root, plan)?);
            rendered.commands.push(argv(&["netplan", "apply"]));
        }
        (Manager::Netplan { .. }, NetworkChange::Remove { bridge }) => {
            let text = read(root, NETPLAN_FILE)
                .filter(|t| t.starts_with(HEADER))
                .ok_or_else(|| not_ours(bridge))?;
            if !netplan_defines_bridge(&text, bridge) {
                return Err(not_ours(bridge));
            }
            rendered.files.extend(file_change(root, NETPLAN_FILE.to_owned(), None));
            rendered.files.extend(netplan_restores(root, bridge)?);
            rendered.commands.push(argv(&["netplan", "apply"]));
        }
        (Manager::Networkd, NetworkChange::Create { plan }) => {
            let ours = !own_networkd_files(root, &plan.bridge).is_empty();
            check_bridge_name(report, plan, ours)?;
            let port = report.interface(&plan.port).ok_or_else(|| {
                gettext_f(
                    "There is no interface named {name} on this host.",
                    &[("name", &plan.port)],
                )
            })?;
            can_bridge(port)?;
            for (path, text) in networkd_files(plan)? {
                rendered.files.extend(file_change(root, path, Some(text)));
            }
            rendered.commands.push(argv(&["networkctl", "reload"]));
            rendered
                .commands
                .push(argv(&["networkctl", "reconfigure", &plan.port]));
        }
        (Manager::Networkd, NetworkChange::Remove { bridge }) => {
            let files = own_networkd_files(root, bridge);
            if files.is_empty() {
                return Err(not_ours(bridge));
            }
            let mut ports = Vec::new();
            for (path, text) in files {
                if path.ends_with(".network") && !path.ends_with(&format!("-{bridge}.network")) {
                    ports.extend(ini_value(&text, "Match", "Name"));
                }
                rendered.files.extend(file_change(root, path, None));
            }
            rendered.commands.push(argv(&["networkctl", "reload"]));
            for port in ports {
                if validate_interface_name(&port).is_ok() {
                    rendered
                        .commands
                        .push(argv(&["networkctl", "reconfigure", &port]));
                }
            }
            rendered
                .commands
                .push(argv(&["networkctl", "delete", bridge]));
        }
        (Manager::NetworkManager, _) => {
            return Err(gettext_f(
                "NetworkManager manages this host's network, and it is not answering on the system bus. Start NetworkManager and try again.",
                &[],
            ))
        }
        (Manager::None, _) => return Err(by_hand()),
    }
    if rendered.files.is_empty() {
        return Err(gettext_f(
            "The network is already set up this way: there is nothing to apply.",
            &[],
        ));
    }
    Ok(rendered)
}

/// The sentence for a host whose network Passthrough cannot change.
pub fn by_hand() -> String {
    gettext_f(
        "Passthrough cannot change this host's network: neither NetworkManager, netplan nor systemd-networkd manages it. Make a bridge named br0 with your wired interface as its port by hand (see your distribution's documentation), then come back: the virtual machine can use it.",
        &[],
    )
}

/// Refuses a bridge name that another interface already has, unless Passthrough made it.
fn check_bridge_name(report: &NetworkReport, plan: &BridgePlan, ours: bool) -> Result<(), String> {
    if report.interface(&plan.bridge).is_some() && !ours {
        return Err(gettext_f(
            "An interface named {name} exists already. Use it for the virtual machine as it is, or pick another name for the new bridge.",
            &[("name", &plan.bridge)],
        ));
    }
    Ok(())
}

/// The netplan directories in the order netplan reads them: a file shadows the files of the
/// same name in the directories before it.
const NETPLAN_DIRS: [&str; 3] = ["/lib/netplan", "/etc/netplan", "/run/netplan"];

/// The directory of the netplan files Passthrough edits (the others belong to the system).
const NETPLAN_ETC: &str = "/etc/netplan";

/// The keys of a port's netplan entry that give it IP settings: all of them are removed from
/// the user's files when the bridge takes the port's IP configuration.
const PORT_IP_KEYS: &[&str] = &[
    "addresses",
    "gateway4",
    "gateway6",
    "routes",
    "nameservers",
    "dhcp4",
    "dhcp6",
    "dhcp4-overrides",
    "dhcp6-overrides",
    "accept-ra",
    "link-local",
];

/// Those that Passthrough's later file cannot take back: netplan appends lists (`addresses`,
/// `routes`, `nameservers`), a `null` does not delete a key, and Passthrough's file sets no
/// `gateway4`/`gateway6`. A file is edited only when the port's entry has one of them; the
/// others (`dhcp4: true`, …) Passthrough's file overrides.
const PORT_STATIC_KEYS: &[&str] = &["addresses", "gateway4", "gateway6", "routes", "nameservers"];

/// The host paths of the netplan files netplan reads (the last of each name across
/// [`NETPLAN_DIRS`]), sorted by name, without Passthrough's own file.
fn netplan_host_files(root: &HostRoot) -> Vec<String> {
    let own = NETPLAN_FILE.rsplit('/').next().unwrap_or(NETPLAN_FILE);
    let mut by_name = std::collections::BTreeMap::new();
    for dir in NETPLAN_DIRS {
        for name in root.list_dir(dir).unwrap_or_default() {
            if name.ends_with(".yaml") && name != own {
                by_name.insert(name.clone(), format!("{dir}/{name}"));
            }
        }
    }
    by_name.into_values().collect()
}

/// Removes the IP settings ([`PORT_IP_KEYS`]) of `port` from a netplan document: from
/// `network.ethernets.PORT` and from every ethernet entry whose `set-name` is `port`, when
/// the entry has one of [`PORT_STATIC_KEYS`]. True when it removed anything.
fn strip_port_ip(doc: &mut serde_yaml::Value, port: &str) -> bool {
    use serde_yaml::Value;
    let Some(ethernets) = doc
        .get_mut("network")
        .and_then(|n| n.get_mut("ethernets"))
        .and_then(Value::as_mapping_mut)
    else {
        return false;
    };
    let mut changed = false;
    for (id, entry) in ethernets.iter_mut() {
        let named = id.as_str() == Some(port)
            || entry.get("set-name").and_then(Value::as_str) == Some(port);
        let Some(entry) = entry.as_mapping_mut().filter(|_| named) else {
            continue;
        };
        if !PORT_STATIC_KEYS.iter().any(|k| entry.contains_key(*k)) {
            continue;
        }
        for key in PORT_IP_KEYS {
            changed |= entry.remove(*key).is_some();
        }
    }
    changed
}

/// The comment lines a file starts with (blank lines between them kept), each with its `\n`.
fn leading_comments(text: &str) -> String {
    let mut out = String::new();
    let mut pending_blank = String::new();
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            pending_blank.push_str(line);
        } else if trimmed.starts_with('#') {
            out.push_str(&pending_blank);
            pending_blank.clear();
            out.push_str(line);
            if !line.ends_with('\n') {
                out.push('\n');
            }
        } else {
            break;
        }
    }
    out
}

/// The user's netplan files rewritten without the IP settings of the bridge's port: netplan
/// merges files by appending their lists, so Passthrough's later file cannot take the port's
/// static addresses, routes and DNS servers away, and the port would keep them next to the
/// bridge. Only the files in `/etc/netplan` are edited (their mode kept by the transaction);
/// such settings in `/lib/netplan` or `/run/netplan` are refused. Files that do not parse
/// are left to `netplan generate` ([`check_with_netplan`]) to report.
fn netplan_port_edits(root: &HostRoot, plan: &BridgePlan) -> Result<Vec<FileChange>, String> {
    let own = NETPLAN_FILE.rsplit('/').next().unwrap_or(NETPLAN_FILE);
    let mut out = Vec::new();
    for path in netplan_host_files(root) {
        let Some(text) = read(root, &path) else {
            continue;
        };
        let Ok(mut doc) = serde_yaml::from_str::<serde_yaml::Value>(&text) else {
            continue;
        };
        if !strip_port_ip(&mut doc, &plan.port) {
            continue;
        }
        if !path.starts_with(&format!("{NETPLAN_ETC}/")) {
            return Err(gettext_f(
                "{path} gives {port} fixed IP settings (addresses, routes or DNS servers), and Passthrough edits only the files in /etc/netplan: {port} would keep them next to the bridge. Move the settings of {port} to a file in /etc/netplan, then try again.",
                &[("path", &path), ("port", &plan.port)],
            ));
        }
        let body = serde_yaml::to_string(&doc).map_err(|e| e.to_string())?;
        let edited = format!(
            "# Edited by Passthrough: the IP settings of {port} moved to the bridge {br} in {own}; removing the bridge in Passthrough restores this file.\n{comments}{body}",
            port = plan.port,
            br = plan.bridge,
            comments = leading_comments(&text),
        );
        out.extend(file_change(root, path, Some(edited)));
    }
    Ok(out)
}

/// The user's netplan files as they were before Passthrough moved the port's IP settings to
/// `bridge` ([`netplan_port_edits`]), from the transactions' backups: the applied
/// transactions that wrote Passthrough's file, newest first, back to the one that created it
/// (making the bridge again with other settings is a transaction of its own). A file keeps
/// the content it had before the first of them that changed it. Refused when a file changed
/// since the last of them wrote it: restoring it would undo the user's edits. Nothing when
/// no journal tells (a bridge made by an older Passthrough, or journals deleted).
fn netplan_restores(root: &HostRoot, bridge: &str) -> Result<Vec<FileChange>, String> {
    use crate::transaction::{self, TransactionState};
    let journal = |e: transaction::ApplyError| e.message();
    let mut before = std::collections::BTreeMap::new();
    let mut written = std::collections::BTreeMap::new();
    let records = transaction::list(root).map_err(journal)?;
    for record in records.iter().filter(|r| {
        r.state == TransactionState::Applied && r.files.iter().any(|f| f == NETPLAN_FILE)
    }) {
        // A removal of the bridge: the current file was not made by any of these.
        if transaction::sha256_after(root, &record.id, NETPLAN_FILE)
            .map_err(journal)?
            .is_none()
        {
            break;
        }
        for path in &record.files {
            let user = path
                .strip_prefix(NETPLAN_ETC)
                .is_some_and(|name| name.starts_with('/'));
            if !user || path == NETPLAN_FILE {
                continue;
            }
            let content = transaction::content_before(root, &record.id, path).map_err(journal)?;
            before.insert(path.clone(), content);
            if !written.contains_key(path) {
                let after = transaction::sha256_after(root, &record.id, path).map_err(journal)?;
                written.insert(path.clone(), after);
            }
        }
        if transaction::content_before(root, &record.id, NETPLAN_FILE)
            .map_err(journal)?
            .is_none()
        {
            break;
        }
    }
    let mut out = Vec::new();
    for (path, content) in before {
        let now = transaction::current_sha256(root, &path).map_err(journal)?;
        if written.get(&path) != Some(&now) {
            return Err(gettext_f(
                "{path} changed after Passthrough moved its IP settings to the bridge {bridge}, and putting it back as it was would undo those changes. Nothing was changed. Undo your changes to {path}, or remove the bridge by hand: restore the IP settings in {path} and delete {file}.",
                &[("path", &path), ("bridge", bridge), ("file", NETPLAN_FILE)],
            ));
        }
        out.extend(file_change(root, path, content));
    }
    Ok(out)
}

fn netplan_defines_bridge(text: &str, bridge: &str) -> bool {
    serde_yaml::from_str::<serde_yaml::Value>(text)
        .ok()
        .and_then(|v| v.get("network")?.get("bridges")?.get(bridge).cloned())
        .is_some()
}

/// Passthrough's networkd files about `bridge` (its .netdev and .network, and the .network
/// of every port that names it), with their text.
fn own_networkd_files(root: &HostRoot, bridge: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut names = root.list_dir(NETWORKD_DIR).unwrap_or_default();
    names.sort();
    for name in names {
        if !name.starts_with(NETWORKD_PREFIX) {
            continue;
        }
        let path = format!("{NETWORKD_DIR}{name}");
        let Some(text) = read(root, &path).filter(|t| t.starts_with(HEADER)) else {
            continue;
        };
        let own = name == format!("{NETWORKD_PREFIX}{bridge}.netdev")
            || name == format!("{NETWORKD_PREFIX}{bridge}.network");
        let port = ini_value(&text, "Network", "Bridge").as_deref() == Some(bridge);
        if own || port {
            out.push((path, text));
        }
    }
    out
}

/// The value of `key` in `[section]` of a systemd unit-style file (the first one).
fn ini_value(text: &str, section: &str, key: &str) -> Option<String> {
    let mut current = "";
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name;
        } else if current == section {
            if let Some((k, v)) = line.split_once('=') {
                if k.trim() == key {
                    return Some(v.trim().to_owned());
                }
            }
        }
    }
    None
}

/// The systemd-networkd files of `plan`: the bridge's .netdev and .network and the port's
/// .network, as (host path, text).
pub fn networkd_files(plan: &BridgePlan) -> Result<Vec<(String, String)>, String> {
    // The same validation as the netplan YAML.
    netplan_yaml(plan, super::Renderer::Networkd)?;
    let br = &plan.bridge;
    let header = format!("{HEADER}: the bridge {br} for virtual machines.\n");
    let netdev = format!(
        "{header}[NetDev]\nName={br}\nKind=bridge\n\n[Bridge]\nSTP=false\nForwardDelaySec=0\n"
    );
    let mut network = format!("{header}[Match]\nName={br}\n\n[Network]\n");
    let dhcp = match (plan.ipv4 == Ipv4::Dhcp, plan.ipv6 == Ipv6::Dhcp) {
        (true, true) => "yes",
        (true, false) => "ipv4",
        (false, true) => "ipv6",
        (false, false) => "no",
    };
    let _ = writeln!(network, "DHCP={dhcp}");
    let accept_ra = matches!(plan.ipv6, Ipv6::Dhcp | Ipv6::Ra);
    let _ = writeln!(
        network,
        "IPv6AcceptRA={}",
        if accept_ra { "yes" } else { "no" }
    );
    if plan.ipv6 == Ipv6::Off {
        network.push_str("LinkLocalAddressing=no\n");
    }
    let mut gateways = Vec::new();
    if let Ipv4::Static { addresses, gateway } = &plan.ipv4 {
        let (list, gw) = static_config(addresses, gateway, false)?;
        for a in list {
            let _ = writeln!(network, "Address={a}");
        }
        gateways.extend(gw);
    }
    if let Ipv6::Static { addresses, gateway } = &plan.ipv6 {
        let (list, gw) = static_config(addresses, gateway, true)?;
        for a in list {
            let _ = writeln!(network, "Address={a}");
        }
        gateways.extend(gw);
    }
    for g in gateways {
        let _ = writeln!(network, "Gateway={g}");
    }
    for d in &plan.dns {
        let _ = writeln!(network, "DNS={}", super::ip(d)?);
    }
    let port = format!(
        "{header}[Match]\nName={}\n\n[Network]\nBridge={br}\nLinkLocalAddressing=no\n",
        plan.port
    );
    Ok(vec![
        (
            format!("{NETWORKD_DIR}{NETWORKD_PREFIX}{br}.netdev"),
            netdev,
        ),
        (
            format!("{NETWORKD_DIR}{NETWORKD_PREFIX}{br}.network"),
            network,
        ),
        (
            format!("{NETWORKD_DIR}{NETWORKD_PREFIX}{}.network", plan.port),
            port,
        ),
    ])
}

/// The `netplan` program used to check a change (the host's own one).
fn netplan_program() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into(), "/usr/bin".into()])
        .map(|d| d.join("netplan"))
        .find(|p| p.is_file())
}

/// A private directory that is removed when dropped.
struct Stage(PathBuf);

impl Stage {
    fn new() -> std::io::Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "passthrough-netplan-{}-{nanos}",
            std::process::id()
        ));
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        Ok(Self(dir))
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the real `netplan generate` on a copy of the host's netplan files (`/lib`, `/etc`
/// and `/run/netplan`) with `rendered`'s netplan files changed, in a private directory:
/// netplan merges every file, so a clash with the distribution's own file shows here. Does
/// nothing for changes without netplan files. Writes nothing outside that directory.
pub fn check_with_netplan(root: &HostRoot, rendered: &Rendered) -> Result<(), String> {
    let netplan_files: Vec<&FileChange> = rendered
        .files
        .iter()
        .filter(|f| f.path.starts_with("/etc/netplan/"))
        .collect();
    if netplan_files.is_empty() {
        return Ok(());
    }
    let program = netplan_program().ok_or_else(|| {
        gettext_f(
            "The netplan program is missing, so the new network configuration cannot be checked. Install netplan.io.",
            &[],
        )
    })?;
    let io = |e: std::io::Error| {
        gettext_f(
            "The new network configuration cannot be checked: {error}",
            &[("error", &e.to_string())],
        )
    };
    let stage = Stage::new().map_err(io)?;
    for dir in ["/lib/netplan", "/etc/netplan", "/run/netplan"] {
        for name in root.list_dir(dir).unwrap_or_default() {
            if !name.ends_with(".yaml") {
                continue;
            }
            let host = format!("{dir}/{name}");
            if let Ok(text) = root.read_string(&host) {
                write_private(&stage.0, &host, &text).map_err(io)?;
            }
        }
    }
    for f in netplan_files {
        let target = stage.0.join(f.path.trim_start_matches('/'));
        match &f.after {
            Some(text) => write_private(&stage.0, &f.path, text).map_err(io)?,
            None => {
                let _ = std::fs::remove_file(target);
            }
        }
    }
    let out = Command::new(program)
        .arg("generate")
        .arg("--root-dir")
        .arg(&stage.0)
        .env("LC_ALL", "C.UTF-8")
        .output()
        .map_err(io)?;
    if out.status.success() {
        return Ok(());
    }
    let stage_text = stage.0.to_string_lossy().into_owned();
    let message: String = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(6)
        .map(|l| l.replace(&stage_text, ""))
        .collect::<Vec<_>>()
        .join("\n");
    Err(gettext_f(
        "netplan rejects the new network configuration, so nothing was changed: {error}",
        &[("error", &message)],
    ))
}

fn write_private(stage: &Path, host_path: &str, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = stage.join(host_path.trim_start_matches('/'));
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    std::io::Write::write_all(&mut f, text.as_bytes())
}

/// The bridges Passthrough made on this host through its files (netplan or networkd), which
/// it may remove again.
pub fn own_bridges(root: &HostRoot) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(text) = read(root, NETPLAN_FILE).filter(|t| t.starts_with(HEADER)) {
        if let Ok(value) = serde_yaml::from_str::<serde_yaml::Value>(&text) {
            if let Some(map) = value
                .get("network")
                .and_then(|n| n.get("bridges"))
                .and_then(|b| b.as_mapping())
            {
                out.extend(map.keys().filter_map(|k| k.as_str().map(str::to_owned)));
            }
        }
    }
    let mut names = root.list_dir(NETWORKD_DIR).unwrap_or_default();
    names.sort();
    for name in names {
        let Some(bridge) = name
            .strip_prefix(NETWORKD_PREFIX)
            .and_then(|n| n.strip_suffix(".netdev"))
        else {
            continue;
        };
        let path = format!("{NETWORKD_DIR}{name}");
        if read(root, &path).is_some_and(|t| t.starts_with(HEADER))
            && !out.iter().any(|b| b == bridge)
        {
            out.push(bridge.to_owned());
        }
    }
    out
}
