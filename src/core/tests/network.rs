//! The network model: detection on host roots built here, and the bridge's netplan YAML
//! validated by the real `netplan generate --root-dir` (package netplan.io).

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use passthrough_core::network::{
    self, can_bridge, netplan_file, netplan_yaml, BridgePlan, InterfaceKind, Ipv4, Ipv6, Manager,
    NetworkReport, Renderer, NETPLAN_FILE,
};
use passthrough_core::HostRoot;

fn write(root: &Path, path: &str, text: &str) {
    let p = root.join(path);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

fn mkdir(root: &Path, path: &str) {
    fs::create_dir_all(root.join(path)).unwrap();
}

/// A desktop: enp5s0 wired with a cable and the default route, enp6s0 wired without one,
/// wlan0 Wi-Fi, an existing br0 with enp7s0 as its port, lo and a veth left out.
fn desktop(dir: &Path) {
    for (name, carrier) in [("enp5s0", "1"), ("enp6s0", "0"), ("enp7s0", "1")] {
        let d = format!("sys/class/net/{name}");
        mkdir(dir, &format!("{d}/device"));
        write(dir, &format!("{d}/type"), "1\n");
        write(dir, &format!("{d}/carrier"), &format!("{carrier}\n"));
        write(dir, &format!("{d}/operstate"), "up\n");
        write(dir, &format!("{d}/address"), "04:42:1a:00:00:05\n");
    }
    mkdir(dir, "sys/class/net/br0/bridge");
    mkdir(dir, "sys/class/net/br0/brif/enp7s0");
    mkdir(dir, "sys/class/net/br0/brif/vnet0");
    write(dir, "sys/class/net/br0/carrier", "1\n");
    std::os::unix::fs::symlink("../br0", dir.join("sys/class/net/enp7s0/master")).unwrap();
    mkdir(dir, "sys/class/net/wlan0/device");
    mkdir(dir, "sys/class/net/wlan0/wireless");
    write(dir, "sys/class/net/wlan0/type", "1\n");
    mkdir(dir, "sys/class/net/lo");
    write(dir, "sys/class/net/lo/type", "772\n");
    mkdir(dir, "sys/class/net/veth1a2b");
    write(dir, "sys/class/net/veth1a2b/type", "1\n");
    // The kernel's format: hex, little-endian; 0101A8C0 = 192.168.1.1. A second default
    // route with a higher metric (via wlan0) must not win.
    write(
        dir,
        "proc/net/route",
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
         wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n\
         enp5s0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
         enp5s0\t0001A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n",
    );
}

fn temp_root() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    fs::create_dir(&root).unwrap();
    (dir, root)
}

#[test]
fn detects_wired_wifi_bridges_and_the_default_route() {
    let (_t, root) = temp_root();
    desktop(&root);
    write(
        &root,
        "etc/netplan/01-netcfg.yaml",
        "network:\n  version: 2\n  renderer: networkd\n  ethernets:\n    enp5s0:\n      dhcp4: true\n",
    );
    let r = network::scan(&HostRoot::new(&root));
    assert_eq!(
        r.manager,
        Manager::Netplan {
            renderer: Renderer::Networkd
        }
    );
    let names: Vec<&str> = r.interfaces.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["br0", "enp5s0", "enp6s0", "enp7s0", "wlan0"]);
    let enp5s0 = r.interface("enp5s0").unwrap();
    assert_eq!(enp5s0.kind, InterfaceKind::Wired);
    assert_eq!(enp5s0.carrier, Some(true));
    assert_eq!(enp5s0.mac.as_deref(), Some("04:42:1a:00:00:05"));
    assert_eq!(r.interface("enp6s0").unwrap().carrier, Some(false));
    assert_eq!(r.interface("wlan0").unwrap().kind, InterfaceKind::Wifi);
    let br0 = r.interface("br0").unwrap();
    assert_eq!(br0.kind, InterfaceKind::Bridge);
    assert_eq!(br0.ports, ["enp7s0", "vnet0"]);
    assert_eq!(
        r.interface("enp7s0").unwrap().master.as_deref(),
        Some("br0")
    );
    assert_eq!(r.default_route.as_deref(), Some("enp5s0"));

    assert_eq!(can_bridge(enp5s0), Ok(()));
    let wifi = can_bridge(r.interface("wlan0").unwrap()).unwrap_err();
    assert!(wifi.contains("wlan0") && wifi.contains("Wi-Fi"), "{wifi}");
    assert!(wifi.contains("MAC address"), "{wifi}");
    assert!(wifi.contains("NAT") && wifi.contains("macvtap"), "{wifi}");
    assert!(can_bridge(br0).unwrap_err().contains("already a bridge"));
    assert!(can_bridge(r.interface("enp7s0").unwrap())
        .unwrap_err()
        .contains("br0"));

    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["manager"]["kind"], "netplan");
    assert_eq!(json["manager"]["renderer"], "networkd");
    assert_eq!(json["interfaces"][4]["kind"], "wifi");
}

#[test]
fn detects_the_manager() {
    let detect = |files: &[(&str, &str)]| {
        let (_t, root) = temp_root();
        for (path, text) in files {
            write(&root, path, text);
        }
        network::scan(&HostRoot::new(&root)).manager
    };
    assert_eq!(detect(&[]), Manager::None);
    assert_eq!(
        detect(&[(
            "etc/netplan/01-network-manager-all.yaml",
            "network:\n  version: 2\n  renderer: NetworkManager\n"
        )]),
        Manager::Netplan {
            renderer: Renderer::NetworkManager
        }
    );
    assert_eq!(
        detect(&[("etc/netplan/50-cloud-init.yaml", "network: {version: 2}\n")]),
        Manager::Netplan {
            renderer: Renderer::Networkd
        }
    );
    assert_eq!(
        detect(&[(
            "etc/NetworkManager/NetworkManager.conf",
            "[main]\nplugins=ifupdown,keyfile\n"
        )]),
        Manager::NetworkManager
    );
    assert_eq!(
        detect(&[(
            "etc/NetworkManager/system-connections/Wired.nmconnection",
            "[connection]\n"
        )]),
        Manager::NetworkManager
    );
    assert_eq!(
        detect(&[(
            "etc/systemd/network/20-wired.network",
            "[Match]\nName=enp5s0\n[Network]\nDHCP=yes\n"
        )]),
        Manager::Networkd
    );
}

#[test]
fn ipv6_default_route_when_there_is_no_ipv4_one() {
    let (_t, root) = temp_root();
    desktop(&root);
    write(
        &root,
        "proc/net/route",
        "Iface\tDestination\tGateway \tFlags\n",
    );
    let zero = "0".repeat(32);
    write(
        &root,
        "proc/net/ipv6_route",
        &format!(
            "{zero} 00 {zero} 00 {zero} ffffffff 00000001 00000000 00200200       lo\n\
             {zero} 00 {zero} 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003   enp6s0\n"
        ),
    );
    assert_eq!(
        network::scan(&HostRoot::new(&root))
            .default_route
            .as_deref(),
        Some("enp6s0")
    );
}

/// The netplan binary; the test fails (does not skip) when netplan.io is not installed.
fn netplan() -> PathBuf {
    let candidates = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d: PathBuf| d.join("netplan"));
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("the netplan binary is missing: install netplan.io (build-aux/deps test)")
        })
}

/// Writes `yaml` as the bridge file under a fresh root, runs `netplan generate --root-dir`
/// and returns the root (kept alive by the TempDir).
fn generate(yaml: &str, extra: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    let (t, root) = temp_root();
    for (path, text) in extra {
        write(&root, path, text);
    }
    let file = root.join(NETPLAN_FILE.trim_start_matches('/'));
    write(&root, NETPLAN_FILE.trim_start_matches('/'), yaml);
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
    let out = Command::new(netplan())
        .arg("generate")
        .arg("--root-dir")
        .arg(&root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "netplan generate failed ({}):\n{}\n--- YAML ---\n{yaml}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    (t, root)
}

fn read(root: &Path, path: &str) -> String {
    fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path} was not generated: {e}"))
}

#[test]
fn dhcp_bridge_renders_to_networkd_files() {
    let plan = BridgePlan::new("enp5s0");
    let yaml = netplan_yaml(&plan, Renderer::Networkd).unwrap();
    assert!(yaml.contains("stp: false"), "{yaml}");
    assert!(yaml.contains("forward-delay: 0"), "{yaml}");
    // The distribution's own file gives enp5s0 DHCP; ours overrides it.
    let (_t, root) = generate(
        &yaml,
        &[(
            "etc/netplan/01-netcfg.yaml",
            "network:\n  version: 2\n  ethernets:\n    enp5s0:\n      dhcp4: true\n",
        )],
    );
    let netdev = read(&root, "run/systemd/network/10-netplan-br0.netdev");
    assert!(
        netdev.contains("Name=br0") && netdev.contains("Kind=bridge"),
        "{netdev}"
    );
    assert!(netdev.contains("STP=false"), "{netdev}");
    assert!(netdev.contains("ForwardDelaySec=0"), "{netdev}");
    let br = read(&root, "run/systemd/network/10-netplan-br0.network");
    assert!(br.contains("DHCP=ipv4"), "{br}");
    assert!(br.contains("IPv6AcceptRA=yes"), "{br}");
    let port = read(&root, "run/systemd/network/10-netplan-enp5s0.network");
    assert!(port.contains("Bridge=br0"), "{port}");
    assert!(!port.contains("DHCP=ipv4"), "{port}");
}

#[test]
fn static_ipv4_and_ipv6_with_several_dns_servers() {
    let plan = BridgePlan {
        bridge: "br-vm".into(),
        port: "enp5s0".into(),
        ipv4: Ipv4::Static {
            addresses: vec!["192.168.1.10/24".into(), "10.0.0.2/8".into()],
            gateway: Some("192.168.1.1".into()),
        },
        ipv6: Ipv6::Static {
            addresses: vec!["2001:db8::10/64".into()],
            gateway: Some("2001:db8::1".into()),
        },
        dns: vec![
            "192.168.1.1".into(),
            "1.1.1.1".into(),
            "2606:4700:4700::1111".into(),
        ],
    };
    let yaml = netplan_yaml(&plan, Renderer::Networkd).unwrap();
    let (_t, root) = generate(&yaml, &[]);
    assert!(root
        .join("run/systemd/network/10-netplan-br-vm.netdev")
        .is_file());
    assert!(root
        .join("run/systemd/network/10-netplan-enp5s0.network")
        .is_file());
    let br = read(&root, "run/systemd/network/10-netplan-br-vm.network");
    for line in [
        "Address=192.168.1.10/24",
        "Address=10.0.0.2/8",
        "Address=2001:db8::10/64",
        "Gateway=192.168.1.1",
        "Gateway=2001:db8::1",
        "DNS=192.168.1.1",
        "DNS=1.1.1.1",
        "DNS=2606:4700:4700::1111",
        "IPv6AcceptRA=no",
    ] {
        assert!(br.contains(line), "{line} missing in:\n{br}");
    }
    assert!(!br.contains("DHCP="), "{br}");

    // The same plan for NetworkManager: keyfiles.
    let yaml = netplan_yaml(&plan, Renderer::NetworkManager).unwrap();
    assert!(yaml.contains("renderer: NetworkManager"), "{yaml}");
    let (_t, root) = generate(&yaml, &[]);
    let dir = "run/NetworkManager/system-connections";
    let br = read(&root, &format!("{dir}/netplan-br-vm.nmconnection"));
    for line in [
        "type=bridge",
        "interface-name=br-vm",
        "stp=false",
        "forward-delay=0",
        "address1=192.168.1.10/24",
        "address2=10.0.0.2/8",
        "address1=2001:db8::10/64",
        "route1=0.0.0.0/0,192.168.1.1",
        "route1=::/0,2001:db8::1",
        "dns=192.168.1.1;1.1.1.1;",
        "dns=2606:4700:4700::1111;",
    ] {
        assert!(br.contains(line), "{line} missing in:\n{br}");
    }
    let port = read(&root, &format!("{dir}/netplan-enp5s0.nmconnection"));
    assert!(port.contains("master=br-vm"), "{port}");
    assert!(port.contains("slave-type=bridge"), "{port}");
}

#[test]
fn ipv6_by_router_advertisements_dhcpv6_and_off() {
    let mut plan = BridgePlan::new("eno1");
    plan.ipv6 = Ipv6::Ra;
    plan.dns = vec!["9.9.9.9".into(), "2620:fe::fe".into()];
    let (_t, root) = generate(&netplan_yaml(&plan, Renderer::Networkd).unwrap(), &[]);
    let br = read(&root, "run/systemd/network/10-netplan-br0.network");
    assert!(br.contains("IPv6AcceptRA=yes"), "{br}");
    assert!(br.contains("DHCP=ipv4"), "{br}");
    assert!(
        br.contains("DNS=9.9.9.9") && br.contains("DNS=2620:fe::fe"),
        "{br}"
    );

    plan.ipv6 = Ipv6::Dhcp;
    let (_t, root) = generate(&netplan_yaml(&plan, Renderer::Networkd).unwrap(), &[]);
    let br = read(&root, "run/systemd/network/10-netplan-br0.network");
    assert!(br.contains("DHCP=yes"), "{br}");

    plan.ipv6 = Ipv6::Off;
    let (_t, root) = generate(&netplan_yaml(&plan, Renderer::Networkd).unwrap(), &[]);
    let br = read(&root, "run/systemd/network/10-netplan-br0.network");
    assert!(br.contains("IPv6AcceptRA=no"), "{br}");
    assert!(br.contains("LinkLocalAddressing=no"), "{br}");
}

#[test]
fn bad_inputs_are_refused_with_clear_errors() {
    let bad = |edit: &dyn Fn(&mut BridgePlan), expected: &str| {
        let mut plan = BridgePlan::new("enp5s0");
        edit(&mut plan);
        let err = netplan_yaml(&plan, Renderer::Networkd).unwrap_err();
        assert!(err.contains(expected), "{expected:?} not in {err:?}");
    };
    let v4 = |a: &str, g: Option<&str>| Ipv4::Static {
        addresses: vec![a.into()],
        gateway: g.map(Into::into),
    };
    bad(
        &|p| p.bridge = "bridge-for-the-vms".into(),
        "not a valid interface name",
    );
    bad(&|p| p.port = String::new(), "1 to 15 characters");
    bad(&|p| p.port = "..".into(), "“..”");
    bad(&|p| p.bridge = "br/0".into(), "“br/0”");
    bad(&|p| p.bridge = "br 0".into(), "“br 0”");
    bad(
        &|p| p.bridge = "br0\nx: y".into(),
        "not a valid interface name",
    );
    bad(&|p| p.bridge = "enp5s0".into(), "same name as its port");
    bad(&|p| p.ipv4 = v4("192.168.1.10", None), "192.168.1.10/24");
    bad(
        &|p| p.ipv4 = v4("192.168.1.300/24", None),
        "“192.168.1.300/24”",
    );
    bad(
        &|p| p.ipv4 = v4("192.168.1.10/33", None),
        "“192.168.1.10/33”",
    );
    bad(&|p| p.ipv4 = v4("192.168.1.10/0", None), "“192.168.1.10/0”");
    bad(
        &|p| p.ipv4 = v4("2001:db8::1/64", None),
        "IPv6 address in the IPv4",
    );
    bad(
        &|p| p.ipv4 = v4("10.0.0.2/8", Some("10.0.0.x")),
        "“10.0.0.x”",
    );
    bad(
        &|p| p.ipv4 = v4("10.0.0.2/8", Some("fe80::1")),
        "IPv6 address in the IPv4",
    );
    bad(
        &|p| {
            p.ipv4 = Ipv4::Static {
                addresses: vec![],
                gateway: None,
            }
        },
        "at least one address",
    );
    bad(
        &|p| {
            p.ipv6 = Ipv6::Static {
                addresses: vec!["2001:db8::1/129".into()],
                gateway: None,
            }
        },
        "“2001:db8::1/129”",
    );
    bad(
        &|p| {
            p.ipv6 = Ipv6::Static {
                addresses: vec!["10.0.0.1/8".into()],
                gateway: None,
            }
        },
        "IPv4 address in the IPv6",
    );
    bad(
        &|p| p.dns = vec!["1.1.1.1".into(), "dns.example".into()],
        "“dns.example”",
    );
}

#[test]
fn netplan_file_checks_the_port_on_the_host_before_writing_anything() {
    let (_t, root) = temp_root();
    desktop(&root);
    write(
        &root,
        "etc/netplan/01-network-manager-all.yaml",
        "network:\n  version: 2\n  renderer: NetworkManager\n",
    );
    let report = network::scan(&HostRoot::new(&root));
    let (path, yaml) = netplan_file(&report, &BridgePlan::new("enp5s0")).unwrap();
    assert_eq!(path, "/etc/netplan/90-passthrough-bridge.yaml");
    assert!(yaml.contains("renderer: NetworkManager"), "{yaml}");

    let err = netplan_file(&report, &BridgePlan::new("wlan0")).unwrap_err();
    assert!(err.contains("Wi-Fi") && err.contains("macvtap"), "{err}");
    let err = netplan_file(&report, &BridgePlan::new("enp9s0")).unwrap_err();
    assert!(err.contains("no interface named enp9s0"), "{err}");
    let err = netplan_file(&report, &BridgePlan::new("enp7s0")).unwrap_err();
    assert!(err.contains("already a port of the bridge br0"), "{err}");
    assert!(!root.join("etc/netplan/90-passthrough-bridge.yaml").exists());

    let not_netplan = NetworkReport {
        manager: Manager::NetworkManager,
        ..report
    };
    let err = netplan_file(&not_netplan, &BridgePlan::new("enp5s0")).unwrap_err();
    assert!(err.contains("not managed by netplan"), "{err}");
}

#[test]
fn passthroughctl_network_text_and_json() {
    let (_t, root) = temp_root();
    desktop(&root);
    write(
        &root,
        "etc/NetworkManager/NetworkManager.conf",
        "[main]\nplugins=keyfile\n",
    );
    let root_arg = root.to_str().unwrap();
    let out = common::ctl(&["network", "--root", root_arg]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("Managed by: NetworkManager"), "{text}");
    assert!(text.contains("Default route: enp5s0"), "{text}");
    assert!(
        text.contains("`wlan0`: Wi-Fi (cannot be bridged)"),
        "{text}"
    );
    assert!(
        text.contains("`br0`: bridge, ports: enp7s0, vnet0"),
        "{text}"
    );
    assert!(
        text.contains("`enp5s0`: wired, cable connected, default route"),
        "{text}"
    );

    let out = common::ctl(&["--json", "network", "--root", root_arg]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["manager"]["kind"], "network-manager");
    assert_eq!(v["default_route"], "enp5s0");
    let wlan = v["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "wlan0")
        .unwrap();
    assert_eq!(wlan["kind"], "wifi");

    let out = common::ctl(&["network", "--root", "/nonexistent/root"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!out.stderr.is_empty());
}
