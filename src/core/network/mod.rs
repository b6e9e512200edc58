//! The host's network as the Network step sees it, and the netplan YAML of a bridge.
//!
//! Detection reads only the [`HostRoot`]: interfaces from `/sys/class/net`, the default route
//! from `/proc/net/route` (and `/proc/net/ipv6_route`), and who manages the network from
//! `/etc/netplan`, `/etc/NetworkManager` and `/etc/systemd/network`. Addresses and live
//! connection state come later from NetworkManager over D-Bus.
//!
//! [`netplan_yaml`] turns a [`BridgePlan`] into the file [`NETPLAN_FILE`]; every input is
//! validated first and the YAML is written by a serializer, never by pasting strings.

use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};
use serde_yaml::{Mapping, Value};

use crate::i18n::gettext_f;
use crate::HostRoot;

pub mod current;
pub mod nm;
pub mod render;

/// The file the bridge's netplan configuration goes to (a host path). The `90-` prefix makes
/// it override the distribution's own file (e.g. `01-netcfg.yaml`) for the port.
pub const NETPLAN_FILE: &str = "/etc/netplan/90-passthrough-bridge.yaml";

/// The bridge name proposed when the user picks none.
pub const DEFAULT_BRIDGE: &str = "br0";

/// Which netplan back end writes the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Renderer {
    #[serde(rename = "networkd")]
    Networkd,
    #[serde(rename = "NetworkManager")]
    NetworkManager,
}

impl Renderer {
    /// The value of netplan's `renderer:` key.
    pub fn as_str(self) -> &'static str {
        match self {
            Renderer::Networkd => "networkd",
            Renderer::NetworkManager => "NetworkManager",
        }
    }
}

/// Who manages the host's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Manager {
    /// netplan files in `/etc/netplan`, rendered by networkd or NetworkManager.
    Netplan { renderer: Renderer },
    /// NetworkManager without netplan.
    NetworkManager,
    /// systemd-networkd alone (`/etc/systemd/network/*.network`).
    Networkd,
    /// Nothing Passthrough can manage (ifupdown, a hand-written setup, or nothing).
    None,
}

/// What an interface is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InterfaceKind {
    Wired,
    Wifi,
    Bridge,
}

/// A network interface the Network step can show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Interface {
    pub name: String,
    pub kind: InterfaceKind,
    /// The MAC address (`address` in sysfs).
    pub mac: Option<String>,
    /// A cable is plugged in (`carrier` = 1); `None` when the interface is down and the
    /// kernel does not say.
    pub carrier: Option<bool>,
    /// `operstate`: `up`, `down`, `dormant`, …
    pub operstate: Option<String>,
    /// The bridge this interface is a port of.
    pub master: Option<String>,
    /// For a bridge: its ports (`brif/`), virtual ones (vnet0) included.
    pub ports: Vec<String>,
}

/// What [`scan`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetworkReport {
    pub manager: Manager,
    /// Wired, Wi-Fi and bridge interfaces, sorted by name; loopback and other virtual
    /// interfaces are left out.
    pub interfaces: Vec<Interface>,
    /// The interface of the default route (IPv4 first, else IPv6).
    pub default_route: Option<String>,
}

impl NetworkReport {
    pub fn interface(&self, name: &str) -> Option<&Interface> {
        self.interfaces.iter().find(|i| i.name == name)
    }
}

/// Reads the network state of the host at `root`. Missing files mean "not there".
pub fn scan(root: &HostRoot) -> NetworkReport {
    let interfaces = root
        .list_dir("/sys/class/net")
        .unwrap_or_default()
        .into_iter()
        .filter_map(|name| interface(root, &name))
        .collect();
    NetworkReport {
        manager: manager(root),
        interfaces,
        default_route: default_route(root),
    }
}

fn interface(root: &HostRoot, name: &str) -> Option<Interface> {
    let dir = format!("/sys/class/net/{name}");
    let attr = |a: &str| root.read_attr(format!("{dir}/{a}")).ok();
    let kind = if root.exists(format!("{dir}/bridge")) {
        InterfaceKind::Bridge
    } else if root.exists(format!("{dir}/wireless")) || root.exists(format!("{dir}/phy80211")) {
        InterfaceKind::Wifi
    } else if root.exists(format!("{dir}/device"))
        && attr("type").is_none_or(|t| t == "1" /* ARPHRD_ETHER */)
    {
        InterfaceKind::Wired
    } else {
        // Loopback, veth, tun/tap, docker0's peers, …: nothing to bridge.
        return None;
    };
    let ports = if kind == InterfaceKind::Bridge {
        root.list_dir(format!("{dir}/brif")).unwrap_or_default()
    } else {
        Vec::new()
    };
    let master = root
        .read_link(format!("{dir}/master"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    Some(Interface {
        name: name.to_owned(),
        kind,
        mac: attr("address"),
        carrier: attr("carrier").map(|c| c == "1"),
        operstate: attr("operstate"),
        master,
        ports,
    })
}

/// The interface of the default route with the lowest metric.
fn default_route(root: &HostRoot) -> Option<String> {
    let v4 = root.read_string("/proc/net/route").ok().and_then(|text| {
        text.lines()
            .skip(1)
            .filter_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                // Iface Destination Gateway Flags RefCnt Use Metric Mask …
                let flags = u32::from_str_radix(f.get(3)?, 16).ok()?;
                let metric: u32 = f.get(6)?.parse().ok()?;
                (f[1] == "00000000" && *f.get(7)? == "00000000" && flags & 1 != 0)
                    .then(|| (metric, f[0].to_owned()))
            })
            .min()
            .map(|(_, iface)| iface)
    });
    v4.or_else(|| {
        let text = root.read_string("/proc/net/ipv6_route").ok()?;
        text.lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                // dest plen src plen next-hop metric refcnt use flags iface
                let iface = *f.get(9)?;
                let metric = u32::from_str_radix(f.get(5)?, 16).ok()?;
                let flags = u32::from_str_radix(f.get(8)?, 16).ok()?;
                let default = f[0].bytes().all(|b| b == b'0') && f[1] == "00";
                // RTF_UP, and not the kernel's unreachable default on lo (RTF_REJECT).
                (default && iface != "lo" && flags & 1 != 0 && flags & 0x200 == 0)
                    .then(|| (metric, iface.to_owned()))
            })
            .min()
            .map(|(_, iface)| iface)
    })
}

fn manager(root: &HostRoot) -> Manager {
    let netplan: Vec<String> = root
        .list_dir("/etc/netplan")
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
        .collect();
    if !netplan.is_empty() {
        // netplan's default renderer is networkd; a later file overrides an earlier one.
        let mut renderer = Renderer::Networkd;
        for name in &netplan {
            let Ok(text) = root.read_string(format!("/etc/netplan/{name}")) else {
                continue;
            };
            let Ok(value) = serde_yaml::from_str::<Value>(&text) else {
                continue;
            };
            match value
                .get("network")
                .and_then(|n| n.get("renderer"))
                .and_then(Value::as_str)
            {
                Some("NetworkManager") => renderer = Renderer::NetworkManager,
                Some("networkd") => renderer = Renderer::Networkd,
                _ => {}
            }
        }
        return Manager::Netplan { renderer };
    }
    let nm_connections = root
        .list_dir("/etc/NetworkManager/system-connections")
        .is_ok_and(|l| !l.is_empty());
    if root.exists("/etc/NetworkManager/NetworkManager.conf") || nm_connections {
        return Manager::NetworkManager;
    }
    let networkd = root
        .list_dir("/etc/systemd/network")
        .unwrap_or_default()
        .iter()
        .any(|n| n.ends_with(".network"));
    if networkd {
        return Manager::Networkd;
    }
    Manager::None
}

/// Whether `iface` can be the port of a bridge; the error says why not and what to do.
pub fn can_bridge(iface: &Interface) -> Result<(), String> {
    let name = [("name", iface.name.as_str())];
    match (iface.kind, &iface.master) {
        (InterfaceKind::Wifi, _) => Err(gettext_f(
            "{name} is a Wi-Fi interface and cannot be put in a bridge: the access point drops frames sent from any MAC address other than the card's own, so the VM would get no network. Use libvirt's NAT network (“default”) instead, or macvtap on {name}, with the caveat that the host and the VM cannot reach each other through macvtap.",
            &name,
        )),
        (InterfaceKind::Bridge, _) => Err(gettext_f(
            "{name} is already a bridge: attach the VM to it instead of making a new one.",
            &name,
        )),
        (InterfaceKind::Wired, Some(master)) => Err(gettext_f(
            "{name} is already a port of the bridge {bridge}: attach the VM to {bridge} instead.",
            &[("name", iface.name.as_str()), ("bridge", master.as_str())],
        )),
        (InterfaceKind::Wired, None) => Ok(()),
    }
}

/// How the bridge gets its IPv4 address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ipv4 {
    Dhcp,
    /// Addresses in CIDR notation (`192.168.1.10/24`) and the default gateway.
    Static {
        addresses: Vec<String>,
        gateway: Option<String>,
    },
}

/// How the bridge gets its IPv6 addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ipv6 {
    /// DHCPv6 (with router advertisements).
    Dhcp,
    /// Router advertisements only (SLAAC).
    Ra,
    Static {
        addresses: Vec<String>,
        gateway: Option<String>,
    },
    Off,
}

/// A bridge with one wired port that takes over the port's IP configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgePlan {
    pub bridge: String,
    pub port: String,
    pub ipv4: Ipv4,
    pub ipv6: Ipv6,
    /// DNS servers (IPv4 or IPv6 addresses).
    pub dns: Vec<String>,
}

impl BridgePlan {
    /// `br0` over `port`, by DHCP for IPv4 and router advertisements for IPv6.
    pub fn new(port: &str) -> Self {
        Self {
            bridge: DEFAULT_BRIDGE.to_owned(),
            port: port.to_owned(),
            ipv4: Ipv4::Dhcp,
            ipv6: Ipv6::Ra,
            dns: Vec::new(),
        }
    }
}

/// Checks an interface name by the kernel's rules (`dev_valid_name`): 1 to 15 bytes, not
/// `.` or `..`, no `/`, `:` or whitespace (and no control characters).
pub fn validate_interface_name(name: &str) -> Result<(), String> {
    let bad = name.is_empty()
        || name.len() > 15
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if bad {
        Err(gettext_f(
            "“{name}” is not a valid interface name: it must have 1 to 15 characters, must not be “.” or “..”, and must not contain “/”, “:” or spaces.",
            &[("name", name)],
        ))
    } else {
        Ok(())
    }
}

fn bad_address(text: &str) -> String {
    gettext_f(
        "“{address}” is not a valid address with a prefix length, such as 192.168.1.10/24 or 2001:db8::10/64.",
        &[("address", text)],
    )
}

/// Parses `ADDR/PREFIX` of the given family (`v6`), with the prefix length in range.
fn cidr(text: &str, v6: bool) -> Result<String, String> {
    let (addr, prefix) = text
        .trim()
        .split_once('/')
        .ok_or_else(|| bad_address(text))?;
    let addr: IpAddr = addr.parse().map_err(|_| bad_address(text))?;
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| (1..=if addr.is_ipv6() { 128 } else { 32 }).contains(p))
        .ok_or_else(|| bad_address(text))?;
    if addr.is_unspecified() || addr.is_multicast() || addr == IpAddr::V4(Ipv4Addr::BROADCAST) {
        return Err(bad_address(text));
    }
    family(text, addr, v6)?;
    Ok(format!("{addr}/{prefix}"))
}

fn family(text: &str, addr: IpAddr, v6: bool) -> Result<(), String> {
    match (addr.is_ipv6(), v6) {
        (false, true) => Err(gettext_f(
            "{address} is an IPv4 address in the IPv6 settings.",
            &[("address", text)],
        )),
        (true, false) => Err(gettext_f(
            "{address} is an IPv6 address in the IPv4 settings.",
            &[("address", text)],
        )),
        _ => Ok(()),
    }
}

pub(crate) fn ip(text: &str) -> Result<IpAddr, String> {
    text.trim().parse().map_err(|_| {
        gettext_f(
            "“{address}” is not a valid IP address.",
            &[("address", text)],
        )
    })
}

/// Validated static addresses and gateway of one family.
pub(crate) fn static_config(
    addresses: &[String],
    gateway: &Option<String>,
    v6: bool,
) -> Result<(Vec<String>, Option<String>), String> {
    if addresses.is_empty() {
        return Err(gettext_f(
            "Static addressing needs at least one address.",
            &[],
        ));
    }
    let addresses = addresses
        .iter()
        .map(|a| cidr(a, v6))
        .collect::<Result<Vec<_>, _>>()?;
    let gateway = match gateway {
        Some(g) => {
            let addr = ip(g)?;
            family(g, addr, v6)?;
            Some(addr.to_string())
        }
        None => None,
    };
    Ok((addresses, gateway))
}

fn map<const N: usize>(entries: [(&str, Value); N]) -> Value {
    let mut m = Mapping::new();
    for (k, v) in entries {
        m.insert(Value::String(k.to_owned()), v);
    }
    Value::Mapping(m)
}

fn strings(list: Vec<String>) -> Value {
    Value::Sequence(list.into_iter().map(Value::String).collect())
}

/// The netplan YAML of `plan` for `renderer`, after validating every input.
///
/// The bridge has STP off and no forward delay, so it forwards at once; the port has no
/// address of its own and the bridge takes over its IPv4/IPv6 configuration and DNS.
pub fn netplan_yaml(plan: &BridgePlan, renderer: Renderer) -> Result<String, String> {
    validate_interface_name(&plan.bridge)?;
    validate_interface_name(&plan.port)?;
    if plan.bridge == plan.port {
        return Err(gettext_f(
            "The bridge cannot have the same name as its port {name}.",
            &[("name", &plan.port)],
        ));
    }
    let mut addresses = Vec::new();
    let mut routes = Vec::new();
    let mut bridge = Mapping::new();
    let mut set = |k: &str, v: Value| {
        bridge.insert(Value::String(k.to_owned()), v);
    };
    set("interfaces", strings(vec![plan.port.clone()]));
    set(
        "parameters",
        map([
            ("stp", Value::Bool(false)),
            ("forward-delay", Value::Number(0.into())),
        ]),
    );
    match &plan.ipv4 {
        Ipv4::Dhcp => set("dhcp4", Value::Bool(true)),
        Ipv4::Static {
            addresses: list,
            gateway,
        } => {
            let (list, gateway) = static_config(list, gateway, false)?;
            set("dhcp4", Value::Bool(false));
            addresses.extend(list);
            routes.extend(gateway);
        }
    }
    match &plan.ipv6 {
        Ipv6::Dhcp => {
            set("dhcp6", Value::Bool(true));
            set("accept-ra", Value::Bool(true));
        }
        Ipv6::Ra => {
            set("dhcp6", Value::Bool(false));
            set("accept-ra", Value::Bool(true));
        }
        Ipv6::Static {
            addresses: list,
            gateway,
        } => {
            let (list, gateway) = static_config(list, gateway, true)?;
            set("dhcp6", Value::Bool(false));
            set("accept-ra", Value::Bool(false));
            addresses.extend(list);
            routes.extend(gateway);
        }
        Ipv6::Off => {
            set("dhcp6", Value::Bool(false));
            set("accept-ra", Value::Bool(false));
            set("link-local", Value::Sequence(Vec::new()));
        }
    }
    let dns = plan
        .dns
        .iter()
        .map(|d| ip(d).map(|a| a.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    if !addresses.is_empty() {
        set("addresses", strings(addresses));
    }
    if !routes.is_empty() {
        let routes = routes
            .into_iter()
            .map(|via| {
                map([
                    ("to", Value::String("default".into())),
                    ("via", Value::String(via)),
                ])
            })
            .collect();
        set("routes", Value::Sequence(routes));
    }
    if !dns.is_empty() {
        set("nameservers", map([("addresses", strings(dns))]));
    }
    let port = map([
        ("dhcp4", Value::Bool(false)),
        ("dhcp6", Value::Bool(false)),
        ("accept-ra", Value::Bool(false)),
    ]);
    let mut ethernets = Mapping::new();
    ethernets.insert(Value::String(plan.port.clone()), port);
    let mut bridges = Mapping::new();
    bridges.insert(Value::String(plan.bridge.clone()), Value::Mapping(bridge));
    let doc = map([(
        "network",
        map([
            ("version", Value::Number(2.into())),
            ("renderer", Value::String(renderer.as_str().into())),
            ("ethernets", Value::Mapping(ethernets)),
            ("bridges", Value::Mapping(bridges)),
        ]),
    )]);
    let body = serde_yaml::to_string(&doc).map_err(|e| e.to_string())?;
    Ok(format!(
        "# Written by Passthrough: the bridge {} for virtual machines.\n{body}",
        plan.bridge
    ))
}

/// The netplan file for `plan` on the host of `report`: checks that the port exists and can
/// be bridged and that netplan manages the network, then returns the host path and the YAML.
pub fn netplan_file(report: &NetworkReport, plan: &BridgePlan) -> Result<(String, String), String> {
    let Manager::Netplan { renderer } = report.manager else {
        return Err(gettext_f(
            "This host's network is not managed by netplan.",
            &[],
        ));
    };
    validate_interface_name(&plan.port)?;
    let port = report.interface(&plan.port).ok_or_else(|| {
        gettext_f(
            "There is no interface named {name} on this host.",
            &[("name", &plan.port)],
        )
    })?;
    can_bridge(port)?;
    Ok((NETPLAN_FILE.to_owned(), netplan_yaml(plan, renderer)?))
}

/// The report as text, for `passthroughctl network`.
pub fn markdown(report: &NetworkReport) -> String {
    let manager = match report.manager {
        Manager::Netplan {
            renderer: Renderer::Networkd,
        } => gettext_f("netplan with systemd-networkd", &[]),
        Manager::Netplan {
            renderer: Renderer::NetworkManager,
        } => gettext_f("netplan with NetworkManager", &[]),
        Manager::NetworkManager => gettext_f("NetworkManager", &[]),
        Manager::Networkd => gettext_f("systemd-networkd", &[]),
        Manager::None => gettext_f(
            "nothing Passthrough can manage: make the bridge by hand",
            &[],
        ),
    };
    let mut out = format!(
        "## {}\n\n- {}\n- {}\n",
        gettext_f("Network", &[]),
        gettext_f("Managed by: {manager}", &[("manager", &manager)]),
        gettext_f(
            "Default route: {iface}",
            &[(
                "iface",
                report
                    .default_route
                    .as_deref()
                    .unwrap_or(&gettext_f("none", &[]))
            )]
        ),
    );
    out.push_str(&format!("\n### {}\n\n", gettext_f("Interfaces", &[])));
    if report.interfaces.is_empty() {
        out.push_str(&format!("{}\n", gettext_f("No interface found.", &[])));
    }
    for i in &report.interfaces {
        let mut facts = vec![match i.kind {
            InterfaceKind::Wired => gettext_f("wired", &[]),
            InterfaceKind::Wifi => gettext_f("Wi-Fi (cannot be bridged)", &[]),
            InterfaceKind::Bridge => gettext_f("bridge", &[]),
        }];
        match i.carrier {
            Some(true) if i.kind == InterfaceKind::Wired => {
                facts.push(gettext_f("cable connected", &[]))
            }
            Some(true) if i.kind == InterfaceKind::Wifi => facts.push(gettext_f("connected", &[])),
            Some(false) => facts.push(gettext_f("no carrier", &[])),
            _ => {}
        }
        if i.kind == InterfaceKind::Bridge {
            let ports = if i.ports.is_empty() {
                gettext_f("none", &[])
            } else {
                i.ports.join(", ")
            };
            facts.push(gettext_f("ports: {ports}", &[("ports", &ports)]));
        }
        if let Some(master) = &i.master {
            facts.push(gettext_f("port of {bridge}", &[("bridge", master)]));
        }
        if report.default_route.as_deref() == Some(i.name.as_str()) {
            facts.push(gettext_f("default route", &[]));
        }
        out.push_str(&format!("- `{}`: {}\n", i.name, facts.join(", ")));
    }
    out
}

/// What a bridge plan sets, one translated line per fact, for the Network step's preview.
pub fn describe(plan: &BridgePlan) -> Vec<String> {
    let statics = |addresses: &[String], gateway: &Option<String>| match gateway {
        Some(g) => gettext_f(
            "{addresses}, gateway {gateway}",
            &[("addresses", &addresses.join(", ")), ("gateway", g)],
        ),
        None => addresses.join(", "),
    };
    let ipv4 = match &plan.ipv4 {
        Ipv4::Dhcp => gettext_f("automatic (DHCP)", &[]),
        Ipv4::Static { addresses, gateway } => statics(addresses, gateway),
    };
    let ipv6 = match &plan.ipv6 {
        Ipv6::Dhcp => gettext_f("automatic (DHCPv6)", &[]),
        Ipv6::Ra => gettext_f("automatic (router advertisements)", &[]),
        Ipv6::Static { addresses, gateway } => statics(addresses, gateway),
        Ipv6::Off => gettext_f("off", &[]),
    };
    let dns = if plan.dns.is_empty() {
        gettext_f("from the network (DHCP)", &[])
    } else {
        plan.dns.join(", ")
    };
    vec![
        gettext_f(
            "Bridge {bridge}, spanning tree (STP) off so that it forwards at once",
            &[("bridge", &plan.bridge)],
        ),
        gettext_f(
            "Port {port}: joins the bridge and gives its addresses to it",
            &[("port", &plan.port)],
        ),
        gettext_f("IPv4: {setting}", &[("setting", &ipv4)]),
        gettext_f("IPv6: {setting}", &[("setting", &ipv6)]),
        gettext_f("DNS: {servers}", &[("servers", &dns)]),
    ]
}
