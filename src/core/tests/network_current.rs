//! `network::current::plan_from_host`: the port's current IP configuration read from netplan
//! or systemd-networkd files on host roots built here. Every plan is rendered with
//! `netplan_yaml` and checked by the real `netplan generate --root-dir` (package netplan.io).

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use passthrough_core::network::current::plan_from_host;
use passthrough_core::network::{
    self, netplan_yaml, BridgePlan, Ipv4, Ipv6, Manager, NetworkReport, Renderer, NETPLAN_FILE,
};
use passthrough_core::HostRoot;
use proptest::prelude::*;

const PORT: &str = "enp5s0";
const MAC: &str = "04:42:1a:00:00:05";

fn write(root: &Path, path: &str, text: &str) {
    let p = root.join(path);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

/// A root with the wired port enp5s0 (and wired enp6s0) in sysfs and `files` written.
fn host(files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    for (name, mac) in [(PORT, MAC), ("enp6s0", "04:42:1a:00:00:06")] {
        let d = format!("sys/class/net/{name}");
        fs::create_dir_all(root.join(format!("{d}/device"))).unwrap();
        write(&root, &format!("{d}/type"), "1\n");
        write(&root, &format!("{d}/address"), &format!("{mac}\n"));
        write(&root, &format!("{d}/carrier"), "1\n");
    }
    for (path, text) in files {
        write(&root, path, text);
    }
    (dir, root)
}

/// Runs `netplan generate --root-dir ROOT` and fails the test when netplan refuses.
fn netplan_generate(root: &Path, what: &str) {
    for dir in ["etc/netplan", "run/netplan", "lib/netplan"] {
        for entry in fs::read_dir(root.join(dir)).into_iter().flatten() {
            let path = entry.unwrap().path();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
    let out = Command::new(common::netplan())
        .arg("generate")
        .arg("--root-dir")
        .arg(root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "netplan generate failed ({}):\n{}\n--- {what} ---",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The plan's netplan YAML, for both renderers, alone under a fresh root: accepted by the
/// real netplan.
fn netplan_accepts(plan: &BridgePlan) {
    for renderer in [Renderer::Networkd, Renderer::NetworkManager] {
        let yaml = netplan_yaml(plan, renderer).unwrap();
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), NETPLAN_FILE.trim_start_matches('/'), &yaml);
        netplan_generate(dir.path(), &yaml);
    }
}

/// Scans the root and returns the plan for enp5s0, checked by netplan.
fn plan_of(root: &Path) -> (NetworkReport, BridgePlan) {
    let host = HostRoot::new(root);
    let report = network::scan(&host);
    let plan = plan_from_host(&host, &report, PORT);
    netplan_accepts(&plan);
    (report, plan)
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn static4(addresses: &[&str], gateway: Option<&str>) -> Ipv4 {
    Ipv4::Static {
        addresses: strings(addresses),
        gateway: gateway.map(str::to_owned),
    }
}

fn static6(addresses: &[&str], gateway: Option<&str>) -> Ipv6 {
    Ipv6::Static {
        addresses: strings(addresses),
        gateway: gateway.map(str::to_owned),
    }
}

// ---- netplan ----------------------------------------------------------------------------

#[test]
fn ubuntu_desktop_renderer_only_gives_dhcp_and_ra() {
    let (_t, root) = host(&[(
        "etc/netplan/01-network-manager-all.yaml",
        "# Let NetworkManager manage all devices on this system\nnetwork:\n  version: 2\n  renderer: NetworkManager\n",
    )]);
    netplan_generate(&root, "host files");
    let (report, plan) = plan_of(&root);
    assert_eq!(
        report.manager,
        Manager::Netplan {
            renderer: Renderer::NetworkManager
        }
    );
    assert_eq!(plan, BridgePlan::new(PORT));
}

const UBUNTU_SERVER: &str = "\
# This is the network config written by 'subiquity'
network:
  ethernets:
    enp5s0:
      addresses:
      - 192.168.1.20/24
      - 2001:db8:1::20/64
      gateway4: 192.168.1.1
      nameservers:
        addresses:
        - 1.1.1.1
        - 8.8.8.8
        search: [lan]
      routes:
      - to: default
        via: 2001:db8:1::1
  version: 2
";

#[test]
fn ubuntu_server_static_addresses_gateways_and_dns() {
    let (_t, root) = host(&[("etc/netplan/00-installer-config.yaml", UBUNTU_SERVER)]);
    netplan_generate(&root, "host files");
    let (report, plan) = plan_of(&root);
    assert_eq!(
        report.manager,
        Manager::Netplan {
            renderer: Renderer::Networkd
        }
    );
    assert_eq!(
        plan,
        BridgePlan {
            bridge: "br0".into(),
            port: PORT.into(),
            ipv4: static4(&["192.168.1.20/24"], Some("192.168.1.1")),
            ipv6: static6(&["2001:db8:1::20/64"], Some("2001:db8:1::1")),
            dns: strings(&["1.1.1.1", "8.8.8.8"]),
        }
    );
    // Another interface of the same host is not configured there: DHCP and RA.
    let host = HostRoot::new(&root);
    let other = plan_from_host(&host, &network::scan(&host), "enp6s0");
    assert_eq!(other, BridgePlan::new("enp6s0"));
}

#[test]
fn routes_give_the_default_gateways_and_other_routes_are_ignored() {
    let (_t, root) = host(&[(
        "etc/netplan/50-cloud-init.yaml",
        "network:\n  version: 2\n  ethernets:\n    enp5s0:\n      dhcp4: no\n      addresses: [10.0.0.5/16]\n      routes:\n      - to: 172.16.0.0/12\n        via: 10.0.0.254\n      - to: 0.0.0.0/0\n        via: 10.0.0.1\n        metric: 100\n",
    )]);
    netplan_generate(&root, "host files");
    let (_, plan) = plan_of(&root);
    assert_eq!(plan.ipv4, static4(&["10.0.0.5/16"], Some("10.0.0.1")));
    assert_eq!(plan.ipv6, Ipv6::Ra);
    assert!(plan.dns.is_empty());
}

#[test]
fn later_files_override_earlier_ones_and_run_shadows_etc_shadows_lib() {
    let (_t, root) = host(&[
        // Shadowed by /etc/netplan/00-base.yaml: never read.
        (
            "lib/netplan/00-base.yaml",
            "network:\n  version: 2\n  ethernets:\n    enp5s0:\n      addresses: [10.9.9.9/24]\n",
        ),
        (
            "etc/netplan/00-base.yaml",
            "network:\n  version: 2\n  ethernets:\n    enp5s0:\n      dhcp4: true\n      nameservers:\n        addresses: [9.9.9.9]\n",
        ),
        // Later by name, though in /lib: overrides dhcp4, its nameservers are appended.
        (
            "lib/netplan/10-static.yaml",
            "network:\n  ethernets:\n    enp5s0:\n      dhcp4: false\n      addresses: [192.168.7.2/24]\n      gateway4: 192.168.7.1\n      nameservers:\n        addresses: [192.168.7.1]\n",
        ),
        // Shadowed by /run/netplan/20-v6.yaml.
        (
            "etc/netplan/20-v6.yaml",
            "network:\n  ethernets:\n    enp5s0:\n      dhcp6: true\n",
        ),
        (
            "run/netplan/20-v6.yaml",
            "network:\n  ethernets:\n    enp5s0:\n      accept-ra: false\n",
        ),
    ]);
    netplan_generate(&root, "host files");
    let (_, plan) = plan_of(&root);
    assert_eq!(plan.ipv4, static4(&["192.168.7.2/24"], Some("192.168.7.1")));
    assert_eq!(plan.ipv6, Ipv6::Off);
    assert_eq!(plan.dns, strings(&["9.9.9.9", "192.168.7.1"]));
}

#[test]
fn passthroughs_own_bridge_file_is_not_the_ports_configuration() {
    let (_t, root) = host(&[
        ("etc/netplan/00-installer-config.yaml", UBUNTU_SERVER),
        (
            NETPLAN_FILE.trim_start_matches('/'),
            "# Written by Passthrough: the bridge br0 for virtual machines.\nnetwork:\n  version: 2\n  ethernets:\n    enp5s0:\n      dhcp4: false\n      dhcp6: false\n      accept-ra: false\n      addresses: [10.1.1.1/8]\n",
        ),
    ]);
    let (_, plan) = plan_of(&root);
    assert_eq!(
        plan.ipv4,
        static4(&["192.168.1.20/24"], Some("192.168.1.1"))
    );
}

#[test]
fn match_by_name_glob_and_by_mac() {
    let (_t, root) = host(&[(
        "etc/netplan/01-netcfg.yaml",
        "network:\n  version: 2\n  ethernets:\n    wifi-like:\n      match:\n        name: \"wl*\"\n      addresses: [10.0.0.9/24]\n    wired:\n      match:\n        name: \"en*\"\n      dhcp4: false\n      addresses: [192.168.50.4/24]\n      routes:\n      - to: default\n        via: 192.168.50.1\n",
    )]);
    netplan_generate(&root, "host files");
    let (_, plan) = plan_of(&root);
    assert_eq!(
        plan.ipv4,
        static4(&["192.168.50.4/24"], Some("192.168.50.1"))
    );

    // cloud-init's style: a MAC address match, renamed with set-name.
    let (_t, root) = host(&[(
        "etc/netplan/50-cloud-init.yaml",
        &format!(
            "network:\n  version: 2\n  ethernets:\n    other:\n      match:\n        macaddress: \"04:42:1a:00:00:06\"\n      addresses: [10.6.6.6/24]\n    eth0:\n      match:\n        macaddress: \"{}\"\n      set-name: lan0\n      addresses: [10.5.5.5/24]\n",
            MAC.to_uppercase()
        ),
    )]);
    netplan_generate(&root, "host files");
    let (_, plan) = plan_of(&root);
    assert_eq!(plan.ipv4, static4(&["10.5.5.5/24"], None));
}

#[test]
fn dhcp4_and_dhcp6() {
    let (_t, root) = host(&[(
        "etc/netplan/01-netcfg.yaml",
        "network:\n  version: 2\n  renderer: networkd\n  ethernets:\n    enp5s0:\n      dhcp4: yes\n      dhcp6: true\n      nameservers:\n        addresses: [\"2606:4700:4700::1111\"]\n",
    )]);
    netplan_generate(&root, "host files");
    let (_, plan) = plan_of(&root);
    assert_eq!(
        plan,
        BridgePlan {
            ipv4: Ipv4::Dhcp,
            ipv6: Ipv6::Dhcp,
            dns: strings(&["2606:4700:4700::1111"]),
            ..BridgePlan::new(PORT)
        }
    );
}

#[test]
fn dhcp_wins_over_static_addresses_of_its_family_and_link_local_off_is_ipv6_off() {
    let (_t, root) = host(&[(
        "etc/netplan/01-netcfg.yaml",
        "network:\n  version: 2\n  ethernets:\n    enp5s0:\n      dhcp4: true\n      addresses: [192.168.1.30/24]\n      link-local: [ipv4]\n",
    )]);
    netplan_generate(&root, "host files");
    let (_, plan) = plan_of(&root);
    assert_eq!(plan.ipv4, Ipv4::Dhcp);
    assert_eq!(plan.ipv6, Ipv6::Off);
}

#[test]
fn malformed_yaml_is_skipped_and_invalid_values_are_dropped() {
    // A broken file next to a good one: the good one is still read.
    let (_t, root) = host(&[
        ("etc/netplan/00-broken.yaml", "network: [unclosed\n  - :\n"),
        (
            "etc/netplan/10-good.yaml",
            "network:\n  ethernets:\n    enp5s0:\n      addresses:\n      - 192.168.1.999/24\n      - 10.0.0.7\n      - 10.0.0.8/24\n      - \"2001:db8::8/200\"\n      - 224.0.0.1/4\n      - {10.0.0.9/24: {label: extra}}\n      gateway4: nonsense\n      gateway6: \"2001:db8::1\"\n      routes: not-a-list\n      nameservers:\n        addresses: [1.1.1.1, \"dns.example\", 300.1.1.1, \"1.1.1.1\"]\n",
        ),
    ]);
    let (_, plan) = plan_of(&root);
    assert_eq!(plan.ipv4, static4(&["10.0.0.8/24", "10.0.0.9/24"], None));
    // No valid IPv6 address: the v6 gateway alone does not make a static setup.
    assert_eq!(plan.ipv6, Ipv6::Ra);
    assert_eq!(plan.dns, strings(&["1.1.1.1"]));

    // Only garbage: DHCP and RA.
    for text in [
        "network: [unclosed\n",
        "- just\n- a list\n",
        "network:\n  ethernets: 42\n",
        "network:\n  ethernets:\n    enp5s0: oops\n",
        "network:\n  ethernets:\n    enp5s0:\n      addresses: [bad]\n      gateway4: 1.2.3.4\n",
        "\0\u{1}binary",
    ] {
        let (_t, root) = host(&[("etc/netplan/01-netcfg.yaml", text)]);
        let (_, plan) = plan_of(&root);
        assert_eq!(plan, BridgePlan::new(PORT), "{text:?}");
    }
}

// ---- systemd-networkd -------------------------------------------------------------------

fn networkd(root: &Path) -> (NetworkReport, BridgePlan) {
    let (report, plan) = plan_of(root);
    assert_eq!(report.manager, Manager::Networkd);
    (report, plan)
}

#[test]
fn networkd_dhcp_yes() {
    let (_t, root) = host(&[(
        "etc/systemd/network/20-wired.network",
        "[Match]\nName=en*\n\n[Network]\nDHCP=yes\n",
    )]);
    let (_, plan) = networkd(&root);
    assert_eq!(
        plan,
        BridgePlan {
            ipv6: Ipv6::Dhcp,
            ..BridgePlan::new(PORT)
        }
    );
}

const STATIC_NETWORK: &str = "\
# A hand-written static setup
[Match]
Name=eth0 enp5s0

[Network]
Address=192.168.1.20/24
Address=2001:db8:1::20/64
DNS=1.1.1.1:53#one.one.one.one [2606:4700:4700::1111]:53
DNS=8.8.8.8
IPv6AcceptRA=no

[Route]
Destination=10.8.0.0/16
Gateway=192.168.1.254

[Route]
Gateway=192.168.1.1

[Route]
Destination=::/0
Gateway=fe80::1
";

#[test]
fn networkd_static_with_routes() {
    let (_t, root) = host(&[
        // Lexically first, but for another interface.
        (
            "etc/systemd/network/10-other.network",
            "[Match]\nName=enp6s0\n\n[Network]\nDHCP=ipv4\n",
        ),
        ("etc/systemd/network/20-static.network", STATIC_NETWORK),
        // Matches too, but comes later.
        (
            "etc/systemd/network/99-fallback.network",
            "[Match]\nName=*\n\n[Network]\nDHCP=yes\n",
        ),
    ]);
    let (_, plan) = networkd(&root);
    assert_eq!(
        plan,
        BridgePlan {
            bridge: "br0".into(),
            port: PORT.into(),
            ipv4: static4(&["192.168.1.20/24"], Some("192.168.1.1")),
            ipv6: static6(&["2001:db8:1::20/64"], Some("fe80::1")),
            dns: strings(&["1.1.1.1", "2606:4700:4700::1111", "8.8.8.8"]),
        }
    );
}

#[test]
fn networkd_skips_passthroughs_own_files() {
    let (_t, root) = host(&[
        (
            "etc/systemd/network/05-passthrough-enp5s0.network",
            "# Written by Passthrough: the bridge br0 for virtual machines.\n[Match]\nName=enp5s0\n\n[Network]\nBridge=br0\n",
        ),
        (
            "etc/systemd/network/20-wired.network",
            "[Match]\nName=enp5s0\n\n[Network]\nAddress=10.20.0.2/24\nGateway=10.20.0.1\n",
        ),
    ]);
    let (_, plan) = networkd(&root);
    assert_eq!(plan.ipv4, static4(&["10.20.0.2/24"], Some("10.20.0.1")));
    assert_eq!(plan.ipv6, Ipv6::Ra);
}

#[test]
fn networkd_directory_priority_masks_drop_ins_and_match_conditions() {
    let (_t, root) = host(&[
        // The vendor file: shadowed by /etc's file of the same name.
        (
            "usr/lib/systemd/network/30-wired.network",
            "[Match]\nName=en*\n[Network]\nAddress=10.30.0.2/24\n",
        ),
        (
            "etc/systemd/network/30-wired.network",
            "[Match]\nName=en*\n[Network]\nDHCP=ipv4\n",
        ),
        // Its drop-in adds an address; the /run drop-in of the same name is shadowed.
        (
            "etc/systemd/network/30-wired.network.d/50-v6.conf",
            "[Network]\nAddress=2001:db8:30::2/64\nLinkLocalAddressing=ipv6\n[Address]\nAddress=2001:db8:30::3/64\n",
        ),
        (
            "run/systemd/network/30-wired.network.d/50-v6.conf",
            "[Network]\nDHCP=no\n",
        ),
        // A vendor file masked by an empty file in /etc.
        (
            "lib/systemd/network/10-vendor.network",
            "[Match]\nName=*\n[Network]\nAddress=10.10.0.2/24\n",
        ),
        ("etc/systemd/network/10-vendor.network", ""),
        // Match conditions that do not hold: an inverted name, another MAC, another type.
        (
            "etc/systemd/network/11-not-en.network",
            "[Match]\nName=!en*\n[Network]\nAddress=10.11.0.2/24\n",
        ),
        (
            "etc/systemd/network/12-mac.network",
            "[Match]\nMACAddress=04:42:1a:00:00:06\n[Network]\nAddress=10.12.0.2/24\n",
        ),
        (
            "etc/systemd/network/13-wlan.network",
            "[Match]\nType=wlan\n[Network]\nAddress=10.13.0.2/24\n",
        ),
        // Matched but emptied: Name= resets the list, then another name.
        (
            "etc/systemd/network/14-reset.network",
            "[Match]\nName=enp5s0\nName=\nName=eth9\n[Network]\nAddress=10.14.0.2/24\n",
        ),
    ]);
    let (_, plan) = networkd(&root);
    assert_eq!(plan.ipv4, Ipv4::Dhcp);
    assert_eq!(
        plan.ipv6,
        static6(&["2001:db8:30::2/64", "2001:db8:30::3/64"], None)
    );
}

#[test]
fn networkd_ipv6_off_and_unreadable_values() {
    let (_t, root) = host(&[(
        "etc/systemd/network/20-wired.network",
        "[Match]\nMACAddress=04:42:1A:00:00:05\n[Network]\nAddress=192.168.1.20\nAddress=10.0.0.0/33\nAddress=10.0.0.2/8\nGateway=_dhcp4\nDNS=not-an-address\nLinkLocalAddressing=no\n",
    )]);
    let (_, plan) = networkd(&root);
    assert_eq!(plan.ipv4, static4(&["10.0.0.2/8"], None));
    assert_eq!(plan.ipv6, Ipv6::Off);
    assert!(plan.dns.is_empty());
}

#[test]
fn other_managers_get_dhcp_and_ra() {
    let (_t, root) = host(&[("etc/systemd/network/20-wired.network", STATIC_NETWORK)]);
    let host = HostRoot::new(&root);
    let mut report = network::scan(&host);
    for manager in [Manager::NetworkManager, Manager::None] {
        report.manager = manager;
        assert_eq!(plan_from_host(&host, &report, PORT), BridgePlan::new(PORT));
    }
}

// ---- never a plan netplan_yaml refuses ---------------------------------------------------

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("192.168.1.20/24".to_owned()),
        Just("2001:db8::5/64".to_owned()),
        Just("fe80::1".to_owned()),
        Just("10.0.0.1".to_owned()),
        Just("0.0.0.0/0".to_owned()),
        Just("::/0".to_owned()),
        "[0-9a-f:./]{0,24}",
        "\\PC{0,12}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_values_give_a_plan_that_renders(
        addresses in prop::collection::vec(value(), 0..4),
        gateway in value(),
        dns in prop::collection::vec(value(), 0..3),
        dhcp in prop::sample::select(vec!["yes", "no", "ipv4", "ipv6", "maybe"]),
    ) {
        let quote = |s: &String| serde_json::to_string(s).unwrap();
        let yaml = format!(
            "network:\n  ethernets:\n    enp5s0:\n      addresses: [{}]\n      gateway4: {}\n      routes:\n      - to: default\n        via: {}\n      nameservers:\n        addresses: [{}]\n",
            addresses.iter().map(quote).collect::<Vec<_>>().join(", "),
            quote(&gateway),
            quote(&gateway),
            dns.iter().map(quote).collect::<Vec<_>>().join(", "),
        );
        let mut unit = format!("[Match]\nName=en*\n[Network]\nDHCP={dhcp}\nGateway={gateway}\n");
        for a in &addresses {
            unit.push_str(&format!("Address={a}\n"));
        }
        unit.push_str(&format!("DNS={}\n[Route]\nGateway={gateway}\n", dns.join(" ")));
        for (path, text) in [
            ("etc/netplan/01-netcfg.yaml", yaml.as_str()),
            ("etc/systemd/network/20-wired.network", unit.as_str()),
        ] {
            let (_t, root) = host(&[(path, text)]);
            let host = HostRoot::new(&root);
            let plan = plan_from_host(&host, &network::scan(&host), PORT);
            prop_assert!(netplan_yaml(&plan, Renderer::Networkd).is_ok(), "{plan:?}\n{text}");
        }
    }
}
