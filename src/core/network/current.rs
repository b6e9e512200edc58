//! The port's current IP configuration as the host's configuration files say, turned into a
//! [`BridgePlan`] that moves it to the bridge.
//!
//! | manager | files read |
//! |---|---|
//! | netplan (either renderer) | `/lib/netplan`, `/etc/netplan`, `/run/netplan` `*.yaml`, merged as netplan does |
//! | systemd-networkd alone | the first matching `.network` file of `/etc`, `/run`, `/usr/local/lib`, `/usr/lib`, `/lib` `systemd/network`, with its drop-ins |
//! | anything else | nothing: DHCP and router advertisements ([`BridgePlan::new`]) |
//!
//! Nothing here fails: a file that cannot be read or parsed is skipped, an invalid address,
//! gateway or DNS server is dropped, and what is left always renders with
//! [`netplan_yaml`](super::netplan_yaml).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use serde_yaml::{Mapping, Value};

use super::render::NETWORKD_PREFIX;
use super::{
    cidr, netplan_yaml, BridgePlan, InterfaceKind, Ipv4, Ipv6, Manager, NetworkReport, Renderer,
    NETPLAN_FILE,
};
use crate::HostRoot;

/// netplan's directories, lowest priority first: a file in a later one shadows a file of
/// the same name in an earlier one.
const NETPLAN_DIRS: [&str; 3] = ["/lib/netplan", "/etc/netplan", "/run/netplan"];

/// systemd-networkd's directories, highest priority first: a file in an earlier one shadows
/// a file of the same name in a later one.
const NETWORKD_DIRS: [&str; 5] = [
    "/etc/systemd/network",
    "/run/systemd/network",
    "/usr/local/lib/systemd/network",
    "/usr/lib/systemd/network",
    "/lib/systemd/network",
];

/// The bridge plan ([`DEFAULT_BRIDGE`](super::DEFAULT_BRIDGE) over `port`) that moves the
/// port's current IP configuration, as the configuration files of the host's network manager
/// say, to the bridge.
///
/// A port the files do not mention, a manager other than netplan or systemd-networkd, and
/// unreadable files all give [`BridgePlan::new`] (DHCP and router advertisements). For a valid
/// interface name other than the bridge's, the plan always passes
/// [`netplan_yaml`](super::netplan_yaml).
pub fn plan_from_host(root: &HostRoot, report: &NetworkReport, port: &str) -> BridgePlan {
    let facts = PortFacts::read(root, report, port);
    let config = match report.manager {
        Manager::Netplan { .. } => netplan_config(root, &facts),
        Manager::Networkd => networkd_config(root, &facts),
        Manager::NetworkManager | Manager::None => None,
    };
    let plan = config.map_or_else(|| BridgePlan::new(port), |c| c.into_plan(port));
    if netplan_yaml(&plan, Renderer::Networkd).is_err() {
        // Cannot happen with the filtering of `into_plan`; the fallback is still valid.
        return BridgePlan::new(port);
    }
    plan
}

/// What a `match` needs to know about the port; `None` when the host does not say.
struct PortFacts<'a> {
    name: &'a str,
    mac: Option<String>,
    driver: Option<String>,
    /// networkd's `Type=` of it: `ether`, `wlan`, `bridge`.
    kind: Option<&'static str>,
}

impl<'a> PortFacts<'a> {
    fn read(root: &HostRoot, report: &NetworkReport, name: &'a str) -> Self {
        let iface = report.interface(name);
        let sys = format!("/sys/class/net/{name}");
        let mac = iface
            .and_then(|i| i.mac.clone())
            .or_else(|| root.read_attr(format!("{sys}/address")).ok())
            .map(|m| m.to_ascii_lowercase());
        let driver = root
            .read_link(format!("{sys}/device/driver"))
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
        let kind = iface.map(|i| match i.kind {
            InterfaceKind::Wired => "ether",
            InterfaceKind::Wifi => "wlan",
            InterfaceKind::Bridge => "bridge",
        });
        Self {
            name,
            mac,
            driver,
            kind,
        }
    }

    /// Whether `mac` is the port's MAC address (assumed when the host does not say).
    fn mac_is(&self, mac: &str) -> bool {
        self.mac
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(mac.trim()))
    }

    /// Whether the port's driver matches `pattern` (assumed when the host does not say).
    fn driver_matches(&self, pattern: &str) -> bool {
        self.driver.as_deref().is_none_or(|d| glob(pattern, d))
    }
}

/// The port's IP configuration as read from the files, before validation.
#[derive(Debug, Default)]
struct PortConfig {
    dhcp4: bool,
    dhcp6: bool,
    /// Addresses with a prefix length, of either family.
    addresses: Vec<String>,
    /// Default gateways, of either family, in the order they were declared.
    gateways: Vec<String>,
    dns: Vec<String>,
    /// IPv6 is switched off (no router advertisements or no IPv6 link-local address).
    ipv6_off: bool,
}

impl PortConfig {
    /// The plan for `port`, with every invalid value dropped: DHCP wins over static
    /// addresses of the same family, and a family without a valid address and without DHCP
    /// falls back to DHCP (IPv4) or router advertisements (IPv6), unless IPv6 is off.
    fn into_plan(self, port: &str) -> BridgePlan {
        let family = |v6: bool| {
            let mut addresses: Vec<String> = Vec::new();
            for a in self.addresses.iter().filter_map(|a| cidr(a, v6).ok()) {
                if !addresses.contains(&a) {
                    addresses.push(a);
                }
            }
            let gateway = self
                .gateways
                .iter()
                .filter_map(|g| g.trim().parse::<IpAddr>().ok())
                .find(|g| g.is_ipv6() == v6 && !g.is_unspecified() && !g.is_multicast())
                .map(|g| g.to_string());
            (addresses, gateway)
        };
        let mut plan = BridgePlan::new(port);
        let (v4, gateway4) = family(false);
        if !self.dhcp4 && !v4.is_empty() {
            plan.ipv4 = Ipv4::Static {
                addresses: v4,
                gateway: gateway4,
            };
        }
        let (v6, gateway6) = family(true);
        plan.ipv6 = if self.dhcp6 {
            Ipv6::Dhcp
        } else if !v6.is_empty() {
            Ipv6::Static {
                addresses: v6,
                gateway: gateway6,
            }
        } else if self.ipv6_off {
            Ipv6::Off
        } else {
            Ipv6::Ra
        };
        for server in self
            .dns
            .iter()
            .filter_map(|d| d.trim().parse::<IpAddr>().ok())
        {
            let server = server.to_string();
            if !plan.dns.contains(&server) {
                plan.dns.push(server);
            }
        }
        plan
    }
}

/// A shell-style pattern match: `*` (any run of characters), `?` (one character) and
/// `[...]` classes (with ranges and `!`/`^` negation); everything else is literal.
pub(crate) fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matching with backtracking to the last `*`.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        let step = match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
                continue;
            }
            Some('?') => Some(pi + 1),
            Some('[') => class(&p, pi, t[ti]),
            Some(&c) => (c == t[ti]).then_some(pi + 1),
            None => None,
        };
        match (step, star) {
            (Some(next), _) => {
                pi = next;
                ti += 1;
            }
            (None, Some((sp, st))) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            (None, None) => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Matches `c` against the class starting at `p[start]` (`[`); the index after the class
/// when it matches. An unclosed `[` is a literal.
fn class(p: &[char], start: usize, c: char) -> Option<usize> {
    let mut i = start + 1;
    let negate = matches!(p.get(i), Some('!' | '^'));
    if negate {
        i += 1;
    }
    let mut found = false;
    let mut first = true;
    loop {
        match p.get(i) {
            None => return (c == '[').then_some(start + 1),
            Some(']') if !first => break,
            Some(&lo) => {
                if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|&hi| hi != ']') {
                    found |= (lo..=p[i + 2]).contains(&c);
                    i += 3;
                } else {
                    found |= lo == c;
                    i += 1;
                }
            }
        }
        first = false;
    }
    (found != negate).then_some(i + 1)
}

// ---- netplan ----------------------------------------------------------------------------

/// The host paths of the netplan files in the order netplan reads them: sorted by name
/// across the directories, a later directory shadowing an earlier one. Passthrough's own
/// bridge file is left out: it describes the bridge, not the port's own configuration.
fn netplan_files(root: &HostRoot) -> Vec<String> {
    let own = NETPLAN_FILE.rsplit('/').next().unwrap_or(NETPLAN_FILE);
    let mut by_name = BTreeMap::new();
    for dir in NETPLAN_DIRS {
        for name in root.list_dir(dir).unwrap_or_default() {
            if name.ends_with(".yaml") {
                by_name.insert(name.clone(), format!("{dir}/{name}"));
            }
        }
    }
    by_name.remove(own);
    by_name.into_values().collect()
}

/// netplan's merge: mappings key by key, sequences concatenated, anything else replaced.
fn merge(into: &mut Value, new: Value) {
    match (into, new) {
        (Value::Mapping(old), Value::Mapping(new)) => {
            for (key, value) in new {
                match old.get_mut(&key) {
                    Some(slot) => merge(slot, value),
                    None => {
                        old.insert(key, value);
                    }
                }
            }
        }
        (Value::Sequence(old), Value::Sequence(new)) => old.extend(new),
        (slot, new) => *slot = new,
    }
}

/// All netplan files merged; files that cannot be read or parsed are skipped.
fn netplan_merged(root: &HostRoot) -> Value {
    let mut merged = Value::Mapping(Mapping::new());
    for path in netplan_files(root) {
        let Ok(text) = root.read_string(&path) else {
            continue;
        };
        match serde_yaml::from_str::<Value>(&text) {
            Ok(doc @ Value::Mapping(_)) => merge(&mut merged, doc),
            _ => continue,
        }
    }
    merged
}

fn yaml_bool(v: Option<&Value>) -> Option<bool> {
    match v? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "y" => Some(true),
            "false" | "no" | "off" | "n" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn yaml_str(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A sequence of strings (a lone string counts as one); an address item may be a mapping
/// `{ADDRESS: {lifetime: …, label: …}}`.
fn yaml_strings(v: Option<&Value>) -> Vec<String> {
    let items = match v {
        Some(Value::Sequence(items)) => items.iter().collect(),
        Some(one) => vec![one],
        None => Vec::new(),
    };
    items
        .into_iter()
        .filter_map(|item| match item {
            Value::Mapping(m) if m.len() == 1 => yaml_str(m.keys().next()),
            other => yaml_str(Some(other)),
        })
        .collect()
}

/// Whether a netplan `match:` selects the port. `set-name` naming the port selects it too:
/// the interface got its name from this entry.
fn netplan_matches(entry: &Value, facts: &PortFacts) -> bool {
    let Some(m) = entry.get("match") else {
        return false;
    };
    if yaml_str(entry.get("set-name")).as_deref() == Some(facts.name) {
        return true;
    }
    let Some(m) = m.as_mapping() else {
        return false;
    };
    if m.is_empty() {
        return false;
    }
    let name = yaml_str(m.get("name")).is_none_or(|p| glob(&p, facts.name));
    let mac = yaml_str(m.get("macaddress")).is_none_or(|a| facts.mac_is(&a));
    let drivers = yaml_strings(m.get("driver"));
    let driver = drivers.is_empty() || drivers.iter().any(|d| facts.driver_matches(d));
    name && mac && driver
}

/// The netplan entry of the port: `network.ethernets.PORT` without a `match:`, else the
/// first (by ID, as networkd reads netplan's output) whose `match:` selects the port.
fn netplan_entry<'v>(merged: &'v Value, facts: &PortFacts) -> Option<&'v Value> {
    let ethernets = merged.get("network")?.get("ethernets")?.as_mapping()?;
    if let Some(entry) = ethernets
        .get(facts.name)
        .filter(|e| e.get("match").is_none())
    {
        return Some(entry);
    }
    let mut matching: Vec<(String, &Value)> = ethernets
        .iter()
        .filter(|(_, e)| netplan_matches(e, facts))
        .filter_map(|(id, e)| Some((yaml_str(Some(id))?, e)))
        .collect();
    matching.sort_by(|a, b| a.0.cmp(&b.0));
    matching.into_iter().next().map(|(_, e)| e)
}

fn netplan_config(root: &HostRoot, facts: &PortFacts) -> Option<PortConfig> {
    let merged = netplan_merged(root);
    let entry = netplan_entry(&merged, facts)?;
    let mut config = PortConfig {
        dhcp4: yaml_bool(entry.get("dhcp4")) == Some(true),
        dhcp6: yaml_bool(entry.get("dhcp6")) == Some(true),
        addresses: yaml_strings(entry.get("addresses")),
        ..PortConfig::default()
    };
    // The deprecated keys first: netplan refuses a second default route of the same family.
    config.gateways.extend(yaml_str(entry.get("gateway4")));
    config.gateways.extend(yaml_str(entry.get("gateway6")));
    if let Some(Value::Sequence(routes)) = entry.get("routes") {
        for route in routes {
            let main = yaml_str(route.get("table")).is_none_or(|t| t == "254");
            let (Some(to), Some(via)) = (yaml_str(route.get("to")), yaml_str(route.get("via")))
            else {
                continue;
            };
            let via_v6 = via.contains(':');
            let default = match to.as_str() {
                "default" => true,
                "0.0.0.0/0" => !via_v6,
                "::/0" => via_v6,
                _ => false,
            };
            if main && default {
                config.gateways.push(via);
            }
        }
    }
    config.dns = yaml_strings(entry.get("nameservers").and_then(|n| n.get("addresses")));
    let link_local_v6 = match entry.get("link-local") {
        Some(Value::Sequence(_)) => yaml_strings(entry.get("link-local"))
            .iter()
            .any(|f| f == "ipv6"),
        _ => true,
    };
    config.ipv6_off = yaml_bool(entry.get("accept-ra")) == Some(false) || !link_local_v6;
    Some(config)
}

// ---- systemd-networkd -------------------------------------------------------------------

/// One `[Section]` of a unit-style file, its assignments in order.
struct Section {
    name: String,
    entries: Vec<(String, String)>,
}

impl Section {
    /// The last value of `key`.
    fn last(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses systemd's unit-file syntax: `[Section]` headers, `Key=value`, `#`/`;` comments
/// and lines continued by a trailing backslash.
fn parse_unit(text: &str, into: &mut Vec<Section>) {
    let mut logical = String::new();
    for raw in text.lines() {
        let line = raw.trim();
        if logical.is_empty() && (line.starts_with('#') || line.starts_with(';')) {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            logical.push_str(head);
            logical.push(' ');
            continue;
        }
        logical.push_str(line);
        let line = std::mem::take(&mut logical);
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            into.push(Section {
                name: name.trim().to_owned(),
                entries: Vec::new(),
            });
        } else if let (Some((key, value)), Some(section)) = (line.split_once('='), into.last_mut())
        {
            section
                .entries
                .push((key.trim().to_owned(), value.trim().to_owned()));
        }
    }
}

/// A file that masks the name: a symlink to `/dev/null` or an empty file.
fn masked(root: &HostRoot, path: &str, text: &str) -> bool {
    root.read_link(path)
        .is_ok_and(|t| t == std::path::Path::new("/dev/null"))
        || text.trim().is_empty()
}

/// `NAME -> host path` of the files ending in `suffix` of the given subdirectory of every
/// networkd directory, an earlier directory shadowing a later one.
fn networkd_files(root: &HostRoot, subdir: &str, suffix: &str) -> BTreeMap<String, String> {
    let mut by_name = BTreeMap::new();
    for dir in NETWORKD_DIRS {
        let dir = if subdir.is_empty() {
            dir.to_owned()
        } else {
            format!("{dir}/{subdir}")
        };
        for name in root.list_dir(&dir).unwrap_or_default() {
            if name.ends_with(suffix) {
                by_name
                    .entry(name.clone())
                    .or_insert_with(|| format!("{dir}/{name}"));
            }
        }
    }
    by_name
}

/// The sections of a `.network` file followed by those of its drop-ins
/// (`NAME.network.d/*.conf`, in name order). `None` when the file is masked or unreadable.
fn network_unit(root: &HostRoot, name: &str, path: &str) -> Option<Vec<Section>> {
    let text = root.read_string(path).ok()?;
    if masked(root, path, &text) {
        return None;
    }
    let mut sections = Vec::new();
    parse_unit(&text, &mut sections);
    for (_, dropin) in networkd_files(root, &format!("{name}.d"), ".conf") {
        if let Ok(text) = root.read_string(&dropin) {
            if !masked(root, &dropin, &text) {
                parse_unit(&text, &mut sections);
            }
        }
    }
    Some(sections)
}

/// Whether the `[Match]` sections select the port. Every listed condition must hold; a
/// condition Passthrough cannot check (`Path=`, `Host=`, …, or a fact the host does not
/// show) is taken as holding. No condition at all matches every interface, as in networkd.
fn networkd_matches(sections: &[Section], facts: &PortFacts) -> bool {
    // KEY -> (inverted, patterns); an empty assignment resets the list.
    let mut lists: HashMap<&str, (bool, Vec<String>)> = HashMap::new();
    for section in sections.iter().filter(|s| s.name == "Match") {
        for (key, value) in &section.entries {
            let list = lists.entry(key.as_str()).or_default();
            if value.is_empty() {
                *list = (false, Vec::new());
                continue;
            }
            let value = match value.strip_prefix('!') {
                Some(rest) => {
                    list.0 = true;
                    rest
                }
                None => value.as_str(),
            };
            list.1.extend(value.split_whitespace().map(str::to_owned));
        }
    }
    lists.iter().all(|(key, (inverted, patterns))| {
        if patterns.is_empty() {
            return true;
        }
        let any = |test: &dyn Fn(&str) -> bool| patterns.iter().any(|p| test(p));
        let hit = match *key {
            "Name" => any(&|p| glob(p, facts.name)),
            "MACAddress" | "PermanentMACAddress" => match &facts.mac {
                Some(_) => any(&|p| facts.mac_is(p)),
                None => return true,
            },
            "Type" => match facts.kind {
                Some(kind) => any(&|p| glob(p, kind)),
                None => return true,
            },
            "Driver" => match &facts.driver {
                Some(_) => any(&|p| facts.driver_matches(p)),
                None => return true,
            },
            _ => return true,
        };
        hit != *inverted
    })
}

/// systemd's boolean words.
fn unit_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "yes" | "y" | "true" | "t" | "on" => Some(true),
        "0" | "no" | "n" | "false" | "f" | "off" => Some(false),
        _ => None,
    }
}

/// The address of a `DNS=` item: `ADDR`, `ADDR:PORT`, `[ADDR6]:PORT`, each optionally
/// followed by `%IFNAME` and `#SERVER-NAME`.
fn dns_address(item: &str) -> String {
    let item = item.split('#').next().unwrap_or_default();
    let item = match item.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None if item.matches(':').count() == 1 => item.split(':').next().unwrap_or_default(),
        None => item,
    };
    item.split('%').next().unwrap_or_default().to_owned()
}

fn default_route_gateway(section: &Section) -> Option<String> {
    let main = section
        .last("Table")
        .is_none_or(|t| t == "main" || t == "254");
    let default = section
        .last("Destination")
        .is_none_or(|d| d.is_empty() || d == "0.0.0.0/0" || d == "::/0");
    let gateway = section.last("Gateway").filter(|g| !g.is_empty())?;
    (main && default).then(|| gateway.to_owned())
}

fn networkd_config(root: &HostRoot, facts: &PortFacts) -> Option<PortConfig> {
    let sections = networkd_files(root, "", ".network")
        .into_iter()
        .filter(|(name, _)| !name.starts_with(NETWORKD_PREFIX))
        .filter_map(|(name, path)| network_unit(root, &name, &path))
        .find(|sections| networkd_matches(sections, facts))?;
    let mut config = PortConfig::default();
    // List settings: an empty assignment empties the list.
    let reset_or_extend = |list: &mut Vec<String>, value: &str, split: bool| {
        if value.is_empty() {
            list.clear();
        } else if split {
            list.extend(value.split_whitespace().map(str::to_owned));
        } else {
            list.push(value.to_owned());
        }
    };
    let mut route_gateways = Vec::new();
    let mut link_local_v6 = true;
    for section in &sections {
        match section.name.as_str() {
            "Network" => {
                for (key, value) in &section.entries {
                    match key.as_str() {
                        "DHCP" => {
                            let (v4, v6) = match value.to_ascii_lowercase().as_str() {
                                "ipv4" | "v4" => (true, false),
                                "ipv6" | "v6" => (false, true),
                                "both" => (true, true),
                                other => {
                                    let on = unit_bool(other) == Some(true);
                                    (on, on)
                                }
                            };
                            config.dhcp4 = v4;
                            config.dhcp6 = v6;
                        }
                        "Address" => reset_or_extend(&mut config.addresses, value, false),
                        "Gateway" => reset_or_extend(&mut config.gateways, value, false),
                        "DNS" => reset_or_extend(&mut config.dns, value, true),
                        "IPv6AcceptRA" => {
                            config.ipv6_off = unit_bool(value) == Some(false);
                        }
                        "LinkLocalAddressing" => {
                            let v = value.to_ascii_lowercase();
                            link_local_v6 =
                                !(v == "ipv4" || v == "fallback" || unit_bool(&v) == Some(false));
                        }
                        _ => {}
                    }
                }
            }
            "Address" => config.addresses.extend(
                section
                    .last("Address")
                    .filter(|a| !a.is_empty())
                    .map(str::to_owned),
            ),
            "Route" => route_gateways.extend(default_route_gateway(section)),
            _ => {}
        }
    }
    config.gateways.extend(route_gateways);
    config.dns = config.dns.iter().map(|d| dns_address(d)).collect();
    config.ipv6_off |= !link_local_v6;
    Some(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("en*", "enp5s0"));
        assert!(glob("*", ""));
        assert!(glob("e?p5s0", "enp5s0"));
        assert!(glob("en[ops]*", "enp5s0"));
        assert!(!glob("en[!p]*", "enp5s0"));
        assert!(glob("*s0", "enp5s0"));
        assert!(glob("*5*0", "enp5s0"));
        assert!(!glob("eth*", "enp5s0"));
        assert!(!glob("enp5s", "enp5s0"));
        assert!(glob("en[a-z]5s0", "enp5s0"));
        assert!(glob("[", "["));
        assert!(glob("[]]", "]"));
    }

    #[test]
    fn dns_items() {
        assert_eq!(dns_address("1.1.1.1"), "1.1.1.1");
        assert_eq!(dns_address("1.1.1.1:53#one.one.one.one"), "1.1.1.1");
        assert_eq!(dns_address("[2606:4700::1111]:53%eth0"), "2606:4700::1111");
        assert_eq!(dns_address("2001:db8::53%enp5s0"), "2001:db8::53");
    }
}
