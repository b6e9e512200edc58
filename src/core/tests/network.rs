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
    let out = Command::new(common::netplan())
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

// ---------------------------------------------------------------------------------------
// The bridge as a transaction (`network::render`)

use passthrough_core::network::render::{
    check_with_netplan, networkd_files, render, NetworkChange, NETWORKD_DIR,
};
use passthrough_core::transaction::{self, CommandRunner, TransactionState};
use std::cell::RefCell;

/// Records every command instead of running it.
#[derive(Default)]
struct Record(RefCell<Vec<String>>);

impl CommandRunner for Record {
    fn run(&self, argv: &[String], _output: &mut dyn FnMut(&str)) -> Result<(), String> {
        self.0.borrow_mut().push(argv.join(" "));
        Ok(())
    }
}

fn quiet(_: &transaction::Progress) {}

/// Every file under `root` with its bytes (symlinks as their target).
fn tree(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let meta = fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                stack.push(p);
            } else if meta.file_type().is_symlink() {
                out.push((
                    p.clone(),
                    fs::read_link(&p)
                        .unwrap()
                        .into_os_string()
                        .into_encoded_bytes(),
                ));
            } else {
                out.push((p.clone(), fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// The desktop without its br0, for making one.
fn desktop_without_br0(root: &Path) {
    desktop(root);
    fs::remove_dir_all(root.join("sys/class/net/br0")).unwrap();
    fs::remove_file(root.join("sys/class/net/enp7s0/master")).unwrap();
}

/// The desktop (without br0 unless `keep_br0`) with netplan over networkd, as Ubuntu Server
/// installs it.
fn netplan_desktop_with(keep_br0: bool) -> (tempfile::TempDir, PathBuf) {
    let (t, root) = temp_root();
    if keep_br0 {
        desktop(&root);
    } else {
        desktop_without_br0(&root);
    }
    write(
        &root,
        "etc/netplan/00-installer-config.yaml",
        "network:\n  version: 2\n  renderer: networkd\n  ethernets:\n    enp5s0:\n      dhcp4: true\n",
    );
    (t, root)
}

fn netplan_desktop() -> (tempfile::TempDir, PathBuf) {
    netplan_desktop_with(false)
}

#[test]
fn the_netplan_bridge_is_checked_by_netplan_applied_and_rolled_back_byte_for_byte() {
    let (_t, root) = netplan_desktop();
    let host = HostRoot::new(&root);
    let before = tree(&root);
    let report = network::scan(&host);
    let create = NetworkChange::Create {
        plan: BridgePlan::new("enp5s0"),
    };
    let rendered = render(&host, &report, &create).unwrap();
    assert_eq!(rendered.files.len(), 1);
    assert_eq!(rendered.files[0].path, NETPLAN_FILE);
    assert_eq!(rendered.files[0].before, None);
    assert_eq!(
        rendered.commands,
        vec![vec!["netplan".to_owned(), "apply".to_owned()]]
    );
    check_with_netplan(&host, &rendered).unwrap();
    // Checking wrote nothing into the root.
    assert_eq!(tree(&root), before);

    let runner = Record::default();
    let id = transaction::apply(&host, &rendered, &runner, &mut quiet).unwrap();
    let file = root.join(NETPLAN_FILE.trim_start_matches('/'));
    assert_eq!(
        fs::read_to_string(&file).unwrap(),
        rendered.files[0].after.clone().unwrap()
    );
    // netplan warns about (and may refuse) files other users can read.
    assert_eq!(
        fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(*runner.0.borrow(), ["netplan apply"]);

    // The same change again: nothing to do.
    let report = network::scan(&host);
    let err = render(&host, &report, &create).unwrap_err();
    assert!(err.contains("nothing to apply"), "{err}");

    // Removal deletes exactly our file; its rollback brings it back.
    let remove = NetworkChange::Remove {
        bridge: "br0".into(),
    };
    let removal = render(&host, &report, &remove).unwrap();
    assert_eq!(removal.files.len(), 1);
    assert_eq!(removal.files[0].after, None);
    check_with_netplan(&host, &removal).unwrap();
    let rid = transaction::apply(&host, &removal, &runner, &mut quiet).unwrap();
    assert!(!file.exists());
    transaction::rollback(&host, &rid, &runner, &mut quiet).unwrap();
    assert!(file.exists());
    transaction::rollback(&host, &id, &runner, &mut quiet).unwrap();
    assert_eq!(
        *runner.0.borrow(),
        [
            "netplan apply",
            "netplan apply",
            "netplan apply",
            "netplan apply"
        ]
    );
    let after: Vec<_> = tree(&root)
        .into_iter()
        .filter(|(p, _)| !p.starts_with(root.join("var/lib/passthrough")))
        .collect();
    assert_eq!(
        after, before,
        "rolling both back restores the tree byte for byte"
    );
}

#[test]
fn netplan_rejections_change_nothing_and_say_where() {
    let (_t, root) = netplan_desktop();
    // The distribution's file is broken (a tab in YAML indentation): netplan's own error.
    write(
        &root,
        "etc/netplan/00-installer-config.yaml",
        "network:\n  version: 2\n  ethernets:\n\tenp5s0:\n      dhcp4: true\n",
    );
    let host = HostRoot::new(&root);
    let report = network::scan(&host);
    let rendered = render(
        &host,
        &report,
        &NetworkChange::Create {
            plan: BridgePlan::new("enp5s0"),
        },
    )
    .unwrap();
    let before = tree(&root);
    let err = check_with_netplan(&host, &rendered).unwrap_err();
    assert!(err.starts_with("netplan rejects"), "{err}");
    assert!(err.contains("00-installer-config.yaml"), "{err}");
    assert!(
        !err.contains("passthrough-netplan-"),
        "the private directory leaks: {err}"
    );
    assert_eq!(tree(&root), before);

    // Another file already defines br0 as something else: a clash netplan sees.
    write(
        &root,
        "etc/netplan/00-installer-config.yaml",
        "network:\n  version: 2\n  ethernets:\n    enp5s0:\n      dhcp4: true\n  bonds:\n    br0:\n      interfaces: [enp6s0]\n",
    );
    let err = check_with_netplan(&host, &rendered).unwrap_err();
    assert!(err.starts_with("netplan rejects"), "{err}");
}

#[test]
fn refusals_name_the_reason_and_leave_the_host_alone() {
    let (_t, root) = netplan_desktop_with(true);
    let host = HostRoot::new(&root);
    let report = network::scan(&host);
    let create = |port: &str, bridge: &str| NetworkChange::Create {
        plan: BridgePlan {
            bridge: bridge.into(),
            ..BridgePlan::new(port)
        },
    };
    let err = render(&host, &report, &create("wlan0", "br1")).unwrap_err();
    assert!(err.contains("Wi-Fi"), "{err}");
    // br0 exists (with enp7s0) and Passthrough did not make it.
    let err = render(&host, &report, &create("enp6s0", "br0")).unwrap_err();
    assert!(err.contains("exists already"), "{err}");
    let err = render(&host, &report, &create("enp5s0", "br 0")).unwrap_err();
    assert!(err.contains("br 0"), "{err}");
    // Removing a bridge Passthrough did not make.
    let err = render(
        &host,
        &report,
        &NetworkChange::Remove {
            bridge: "br0".into(),
        },
    )
    .unwrap_err();
    assert!(err.contains("removes only what it made"), "{err}");
    // A file of ours by name but not by content is not ours.
    write(
        &root,
        NETPLAN_FILE.trim_start_matches('/'),
        "network:\n  version: 2\n  bridges:\n    br0: {}\n",
    );
    let err = render(
        &host,
        &report,
        &NetworkChange::Remove {
            bridge: "br0".into(),
        },
    )
    .unwrap_err();
    assert!(err.contains("removes only what it made"), "{err}");
    // Nothing manages the network: the by-hand sentence.
    let bare = NetworkReport {
        manager: Manager::None,
        ..report.clone()
    };
    let err = render(&host, &bare, &create("enp5s0", "br1")).unwrap_err();
    assert!(err.contains("by hand"), "{err}");
    // Requests come as JSON from the app: unknown fields are refused.
    let json = r#"{"action":"create","plan":{"bridge":"br0","port":"enp5s0","ipv4":"dhcp","ipv6":"ra","dns":[],"extra":1}}"#;
    assert!(serde_json::from_str::<NetworkChange>(json).is_err());
    let json = r#"{"action":"create","plan":{"bridge":"br0","port":"enp5s0","ipv4":"dhcp","ipv6":"ra","dns":[]}}"#;
    assert_eq!(
        serde_json::from_str::<NetworkChange>(json).unwrap(),
        NetworkChange::Create {
            plan: BridgePlan::new("enp5s0")
        }
    );
}

/// `key=value` facts of networkd files, for comparing ours with netplan's.
fn facts(text: &str) -> Vec<String> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            section = line.to_owned();
        } else {
            out.push(format!("{section}{line}"));
        }
    }
    out.sort();
    out
}

#[test]
fn networkd_files_say_what_netplan_says_for_the_same_bridge() {
    // Static IPv4 with a gateway, static IPv6, two DNS servers.
    let plan = BridgePlan {
        bridge: "br0".into(),
        port: "enp5s0".into(),
        ipv4: Ipv4::Static {
            addresses: vec!["192.168.1.20/24".into()],
            gateway: Some("192.168.1.1".into()),
        },
        ipv6: Ipv6::Static {
            addresses: vec!["2001:db8::20/64".into()],
            gateway: None,
        },
        dns: vec!["192.168.1.1".into(), "2001:4860:4860::8888".into()],
    };
    let ours = networkd_files(&plan).unwrap();
    let (_t, gen) = generate(&netplan_yaml(&plan, Renderer::Networkd).unwrap(), &[]);
    let theirs = |name: &str| {
        facts(&read(
            &gen,
            &format!("run/systemd/network/10-netplan-{name}"),
        ))
    };
    let ours_of = |suffix: &str| {
        let (_, text) = ours.iter().find(|(p, _)| p.ends_with(suffix)).unwrap();
        facts(text)
    };
    // The bridge device: the same keys, values and sections.
    assert_eq!(ours_of("br0.netdev"), theirs("br0.netdev"));
    // The bridge's network: every address and DNS server netplan writes, we write.
    let t = theirs("br0.network");
    let o = ours_of("br0.network");
    for key in ["[Network]Address=", "[Network]DNS=", "[Match]Name="] {
        let pick = |v: &[String]| {
            v.iter()
                .filter(|l| l.starts_with(key))
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(pick(&o), pick(&t), "{key}");
    }
    // The gateway: netplan writes a [Route]; we write Gateway=, the same route.
    assert!(
        t.contains(&"[Route]Gateway=192.168.1.1".to_owned()),
        "{t:?}"
    );
    assert!(
        o.contains(&"[Network]Gateway=192.168.1.1".to_owned()),
        "{o:?}"
    );
    assert!(o.contains(&"[Network]IPv6AcceptRA=no".to_owned()), "{o:?}");
    // The port: only a member of the bridge.
    let t = theirs("enp5s0.network");
    let o = ours_of("enp5s0.network");
    assert!(
        t.contains(&"[Network]Bridge=br0".to_owned())
            && o.contains(&"[Network]Bridge=br0".to_owned())
    );
    assert!(
        o.iter()
            .all(|l| !l.contains("Address=") && !l.contains("DHCP=")),
        "{o:?}"
    );

    // DHCP: the same DHCP= value as netplan.
    let dhcp = BridgePlan::new("enp5s0");
    let ours = networkd_files(&dhcp).unwrap();
    let (_t2, gen) = generate(&netplan_yaml(&dhcp, Renderer::Networkd).unwrap(), &[]);
    let t = facts(&read(&gen, "run/systemd/network/10-netplan-br0.network"));
    let o = facts(&ours[1].1);
    let pick = |v: &[String]| {
        v.iter()
            .filter(|l| l.starts_with("[Network]DHCP="))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(pick(&o), pick(&t));
}

#[test]
fn networkd_bridge_applies_removes_and_the_removal_rolls_back_without_deleting_again() {
    let (_t, root) = temp_root();
    desktop_without_br0(&root);
    write(
        &root,
        "etc/systemd/network/20-wired.network",
        "[Match]\nName=enp5s0\n\n[Network]\nDHCP=yes\n",
    );
    // A file with our prefix that a user wrote: never touched.
    write(
        &root,
        "etc/systemd/network/05-passthrough-notes.network",
        "[Match]\nName=enp6s0\n",
    );
    let host = HostRoot::new(&root);
    let report = network::scan(&host);
    assert_eq!(report.manager, Manager::Networkd);
    let rendered = render(
        &host,
        &report,
        &NetworkChange::Create {
            plan: BridgePlan::new("enp5s0"),
        },
    )
    .unwrap();
    let paths: Vec<&str> = rendered.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/etc/systemd/network/05-passthrough-br0.netdev",
            "/etc/systemd/network/05-passthrough-br0.network",
            "/etc/systemd/network/05-passthrough-enp5s0.network",
        ]
    );
    // Sorted before the distribution's file, so it wins for enp5s0.
    assert!("05-passthrough-enp5s0.network" < "20-wired.network");
    for f in &rendered.files {
        assert!(transaction::path_allowed(&f.path), "{}", f.path);
    }
    assert!(!transaction::path_allowed(
        "/etc/systemd/network/20-wired.network"
    ));
    assert!(!transaction::path_allowed(&format!(
        "{NETWORKD_DIR}05-passthrough-"
    )));
    let runner = Record::default();
    let id = transaction::apply(&host, &rendered, &runner, &mut quiet).unwrap();
    let before_removal = tree(&root);

    let report = network::scan(&host);
    let removal = render(
        &host,
        &report,
        &NetworkChange::Remove {
            bridge: "br0".into(),
        },
    )
    .unwrap();
    let removed: Vec<&str> = removal.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        removed, paths,
        "exactly our three files, not the user's one"
    );
    let rid = transaction::apply(&host, &removal, &runner, &mut quiet).unwrap();
    assert!(root
        .join("etc/systemd/network/05-passthrough-notes.network")
        .exists());
    // Undoing the removal must not delete the bridge again: `networkctl reload` makes it.
    transaction::rollback(&host, &rid, &runner, &mut quiet).unwrap();
    let now: Vec<_> = tree(&root)
        .into_iter()
        .filter(|(p, _)| !p.starts_with(root.join("var/lib/passthrough")))
        .collect();
    let then: Vec<_> = before_removal
        .into_iter()
        .filter(|(p, _)| !p.starts_with(root.join("var/lib/passthrough")))
        .collect();
    assert_eq!(now, then);
    assert_eq!(
        *runner.0.borrow(),
        [
            "networkctl reload",
            "networkctl reconfigure enp5s0",
            "networkctl reload",
            "networkctl reconfigure enp5s0",
            "networkctl delete br0",
            "networkctl reload",
            "networkctl reconfigure enp5s0",
            "networkctl reload",
        ]
    );
    let list = transaction::list(&host).unwrap();
    assert!(list
        .iter()
        .any(|r| r.id == id && r.state == TransactionState::Applied));
    // The allow-list takes networkctl only with an interface name.
    let v = |s: &[&str]| s.iter().map(|w| w.to_string()).collect::<Vec<_>>();
    assert!(transaction::command_allowed(&v(&[
        "networkctl",
        "delete",
        "br0"
    ])));
    assert!(!transaction::command_allowed(&v(&[
        "networkctl",
        "delete",
        "../x"
    ])));
    // Not an option in disguise.
    assert!(!transaction::command_allowed(&v(&[
        "networkctl",
        "delete",
        "--all"
    ])));
    assert!(!transaction::command_allowed(&v(&[
        "netplan", "apply", "--state", "/tmp"
    ])));
}

#[test]
fn confirm_or_revert_marks_survive_on_disk_until_confirmed_or_rolled_back() {
    let (_t, root) = netplan_desktop();
    let host = HostRoot::new(&root);
    let report = network::scan(&host);
    let rendered = render(
        &host,
        &report,
        &NetworkChange::Create {
            plan: BridgePlan::new("enp5s0"),
        },
    )
    .unwrap();
    let runner = Record::default();
    let id = transaction::apply(&host, &rendered, &runner, &mut quiet).unwrap();
    assert_eq!(transaction::awaiting_confirmation(&host).unwrap(), []);
    transaction::await_confirmation(&host, &id, 4_000_000_000).unwrap();
    assert_eq!(
        transaction::awaiting_confirmation(&host).unwrap(),
        [(id.clone(), 4_000_000_000)]
    );
    let record = transaction::list(&host).unwrap().remove(0);
    assert_eq!(record.confirm_by, Some(4_000_000_000));
    assert!(transaction::confirm(&host, &id).unwrap());
    assert!(
        !transaction::confirm(&host, &id).unwrap(),
        "confirmed once only"
    );
    assert_eq!(transaction::awaiting_confirmation(&host).unwrap(), []);
    // A rollback clears the mark too, and a rolled-back transaction cannot wait.
    transaction::await_confirmation(&host, &id, 4_000_000_000).unwrap();
    transaction::rollback(&host, &id, &runner, &mut quiet).unwrap();
    assert_eq!(transaction::awaiting_confirmation(&host).unwrap(), []);
    assert!(transaction::await_confirmation(&host, &id, 1).is_err());
}

// ---------------------------------------------------------------------------------------
// A port with static settings in the user's own netplan file: netplan appends lists, so
// they move out of that file into the bridge, and come back when the bridge goes.

use passthrough_core::network::current::plan_from_host;

/// Ubuntu Server's installer file for a static enp5s0 (and a DHCP enp6s0 left alone).
const STATIC_SERVER: &str = "# This is the network config written by 'subiquity'\n\
network:
  version: 2
  renderer: networkd
  ethernets:
    enp5s0:
      addresses:
      - 192.168.1.20/24
      routes:
      - to: default
        via: 192.168.1.1
      nameservers:
        addresses:
        - 192.168.1.1
        - 9.9.9.9
        search: []
      dhcp4: false
    enp6s0:
      dhcp4: true
      optional: true
";

const INSTALLER: &str = "etc/netplan/00-installer-config.yaml";

/// The desktop without br0, with `text` as the installer's netplan file (mode 0600).
fn static_server(text: &str) -> (tempfile::TempDir, PathBuf) {
    let (t, root) = temp_root();
    desktop_without_br0(&root);
    write(&root, INSTALLER, text);
    fs::set_permissions(root.join(INSTALLER), fs::Permissions::from_mode(0o600)).unwrap();
    (t, root)
}

fn without_state(tree: Vec<(PathBuf, Vec<u8>)>, root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    tree.into_iter()
        .filter(|(p, _)| !p.starts_with(root.join("var/lib/passthrough")))
        .collect()
}

/// Runs the real `netplan generate --root-dir` on a copy of the root's netplan files with
/// `rendered`'s changes written; returns the copy and netplan's stderr.
fn generate_staged(root: &Path, rendered: &Rendered) -> (tempfile::TempDir, PathBuf, String) {
    let (t, stage) = temp_root();
    for dir in ["lib/netplan", "etc/netplan", "run/netplan"] {
        for e in fs::read_dir(root.join(dir)).into_iter().flatten() {
            let p = e.unwrap().path();
            let rel = format!("{dir}/{}", p.file_name().unwrap().to_string_lossy());
            write(&stage, &rel, &fs::read_to_string(&p).unwrap());
        }
    }
    for f in &rendered.files {
        let rel = f.path.trim_start_matches('/');
        match &f.after {
            Some(text) => write(&stage, rel, text),
            None => fs::remove_file(stage.join(rel)).unwrap(),
        }
    }
    for dir in ["lib/netplan", "etc/netplan", "run/netplan"] {
        for e in fs::read_dir(stage.join(dir)).into_iter().flatten() {
            fs::set_permissions(e.unwrap().path(), fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
    let out = Command::new(common::netplan())
        .arg("generate")
        .arg("--root-dir")
        .arg(&stage)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "netplan generate failed:\n{stderr}");
    (t, stage, stderr)
}

fn ethernet(text: &str, id: &str) -> serde_yaml::Value {
    let doc: serde_yaml::Value = serde_yaml::from_str(text).unwrap();
    doc["network"]["ethernets"][id].clone()
}

use passthrough_core::plan::Rendered;

#[test]
fn a_static_port_moves_to_the_bridge_and_comes_back_byte_for_byte() {
    let (_t, root) = static_server(STATIC_SERVER);
    let host = HostRoot::new(&root);
    let original = tree(&root);
    let report = network::scan(&host);
    let plan = plan_from_host(&host, &report, "enp5s0");
    assert_eq!(
        plan.ipv4,
        Ipv4::Static {
            addresses: vec!["192.168.1.20/24".into()],
            gateway: Some("192.168.1.1".into()),
        }
    );
    assert_eq!(plan.dns, ["192.168.1.1", "9.9.9.9"]);

    // Without the edit, netplan keeps the port's address next to the bridge's: the problem.
    let (path, yaml) = netplan_file(&report, &plan).unwrap();
    let ours_only = Rendered {
        files: vec![passthrough_core::plan::FileChange {
            path,
            before: None,
            after: Some(yaml),
        }],
        ..Rendered::default()
    };
    let (_s, stage, _) = generate_staged(&root, &ours_only);
    let port = read(&stage, "run/systemd/network/10-netplan-enp5s0.network");
    assert!(port.contains("Address=192.168.1.20/24"), "{port}");

    let create = NetworkChange::Create { plan: plan.clone() };
    let rendered = render(&host, &report, &create).unwrap();
    let paths: Vec<&str> = rendered.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [NETPLAN_FILE, "/etc/netplan/00-installer-config.yaml"]
    );
    let edit = &rendered.files[1];
    assert_eq!(edit.before.as_deref(), Some(STATIC_SERVER));
    let edited = edit.after.clone().unwrap();
    let mut lines = edited.lines();
    assert_eq!(
        lines.next(),
        Some("# Edited by Passthrough: the IP settings of enp5s0 moved to the bridge br0 in 90-passthrough-bridge.yaml; removing the bridge in Passthrough restores this file.")
    );
    assert_eq!(
        lines.next(),
        Some("# This is the network config written by 'subiquity'")
    );
    // The port's IP settings are gone, everything else is kept.
    let port_entry = ethernet(&edited, "enp5s0");
    assert_eq!(port_entry, serde_yaml::Value::Mapping(Default::default()));
    assert_eq!(
        ethernet(&edited, "enp6s0"),
        ethernet(STATIC_SERVER, "enp6s0")
    );
    let doc: serde_yaml::Value = serde_yaml::from_str(&edited).unwrap();
    assert_eq!(doc["network"]["renderer"], "networkd");
    assert_eq!(doc["network"]["version"], 2);
    for f in &rendered.files {
        assert!(transaction::path_allowed(&f.path), "{}", f.path);
    }

    check_with_netplan(&host, &rendered).unwrap();
    assert_eq!(tree(&root), original, "checking writes nothing");
    let (_s, stage, stderr) = generate_staged(&root, &rendered);
    assert!(!stderr.contains("Conflicting"), "{stderr}");
    let port = read(&stage, "run/systemd/network/10-netplan-enp5s0.network");
    for key in ["Address=", "Gateway=", "DNS=", "DHCP="] {
        assert!(!port.contains(key), "{key} in the port's file:\n{port}");
    }
    assert!(port.contains("Bridge=br0"), "{port}");
    let br = read(&stage, "run/systemd/network/10-netplan-br0.network");
    for line in [
        "Address=192.168.1.20/24",
        "Gateway=192.168.1.1",
        "DNS=192.168.1.1",
        "DNS=9.9.9.9",
    ] {
        assert!(br.contains(line), "{line} missing in:\n{br}");
    }
    let other = read(&stage, "run/systemd/network/10-netplan-enp6s0.network");
    assert!(other.contains("DHCP=ipv4"), "{other}");

    let runner = Record::default();
    transaction::apply(&host, &rendered, &runner, &mut quiet).unwrap();
    let installer = root.join(INSTALLER);
    assert_eq!(fs::read_to_string(&installer).unwrap(), edited);
    assert_eq!(
        fs::metadata(&installer).unwrap().permissions().mode() & 0o777,
        0o600,
        "the user's file keeps its mode"
    );

    // Removal: our file goes, the installer's file comes back byte for byte.
    let report = network::scan(&host);
    let remove = NetworkChange::Remove {
        bridge: "br0".into(),
    };
    let removal = render(&host, &report, &remove).unwrap();
    let removed: Vec<(&str, Option<&str>)> = removal
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.after.as_deref()))
        .collect();
    assert_eq!(
        removed,
        [
            (NETPLAN_FILE, None),
            ("/etc/netplan/00-installer-config.yaml", Some(STATIC_SERVER))
        ]
    );
    check_with_netplan(&host, &removal).unwrap();
    transaction::apply(&host, &removal, &runner, &mut quiet).unwrap();
    assert_eq!(fs::read_to_string(&installer).unwrap(), STATIC_SERVER);
    assert_eq!(
        without_state(tree(&root), &root),
        original,
        "after the removal the host is as it was"
    );
    assert_eq!(
        fs::metadata(&installer).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(*runner.0.borrow(), ["netplan apply", "netplan apply"]);
    // Nothing of ours is left to remove.
    let err = render(&host, &network::scan(&host), &remove).unwrap_err();
    assert!(err.contains("removes only what it made"), "{err}");
}

#[test]
fn making_the_bridge_again_with_other_settings_still_restores_the_first_content() {
    let (_t, root) = static_server(STATIC_SERVER);
    let host = HostRoot::new(&root);
    let original = tree(&root);
    let report = network::scan(&host);
    let plan = plan_from_host(&host, &report, "enp5s0");
    let runner = Record::default();
    let first = render(
        &host,
        &report,
        &NetworkChange::Create { plan: plan.clone() },
    )
    .unwrap();
    transaction::apply(&host, &first, &runner, &mut quiet).unwrap();
    // The same bridge with another DNS server: only our file changes this time.
    let mut other = plan;
    other.dns = vec!["1.1.1.1".into()];
    let report = network::scan(&host);
    let second = render(&host, &report, &NetworkChange::Create { plan: other }).unwrap();
    let paths: Vec<&str> = second.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, [NETPLAN_FILE]);
    transaction::apply(&host, &second, &runner, &mut quiet).unwrap();
    let removal = render(
        &host,
        &report,
        &NetworkChange::Remove {
            bridge: "br0".into(),
        },
    )
    .unwrap();
    assert_eq!(removal.files.len(), 2);
    transaction::apply(&host, &removal, &runner, &mut quiet).unwrap();
    assert_eq!(without_state(tree(&root), &root), original);
}

#[test]
fn removal_refuses_to_undo_the_users_later_edits() {
    let (_t, root) = static_server(STATIC_SERVER);
    let host = HostRoot::new(&root);
    let report = network::scan(&host);
    let plan = plan_from_host(&host, &report, "enp5s0");
    let rendered = render(&host, &report, &NetworkChange::Create { plan }).unwrap();
    let runner = Record::default();
    transaction::apply(&host, &rendered, &runner, &mut quiet).unwrap();
    // The user adds something to the edited file.
    let installer = root.join(INSTALLER);
    let mut text = fs::read_to_string(&installer).unwrap();
    text.push_str("# enp7s0 for the backups, later\n");
    fs::write(&installer, &text).unwrap();
    let before = tree(&root);
    let remove = NetworkChange::Remove {
        bridge: "br0".into(),
    };
    let err = render(&host, &network::scan(&host), &remove).unwrap_err();
    assert!(
        err.contains("/etc/netplan/00-installer-config.yaml") && err.contains("changed after"),
        "{err}"
    );
    assert!(err.contains(NETPLAN_FILE), "{err}");
    assert_eq!(tree(&root), before, "a refusal changes nothing");
    // Deleting the file counts as a change too.
    fs::remove_file(&installer).unwrap();
    let err = render(&host, &network::scan(&host), &remove).unwrap_err();
    assert!(err.contains("changed after"), "{err}");
    // Undoing the edit makes the removal possible again.
    fs::write(&installer, rendered.files[1].after.as_deref().unwrap()).unwrap();
    let removal = render(&host, &network::scan(&host), &remove).unwrap();
    assert_eq!(removal.files.len(), 2);
}

/// A file in /etc/netplan that says netplan manages the network, and nothing about ports.
const RENDERER_ONLY: &str = "network:\n  version: 2\n  renderer: networkd\n";

#[test]
fn static_settings_outside_etc_netplan_are_refused_and_set_name_entries_are_edited() {
    // The same static settings in /run/netplan: Passthrough does not edit them.
    let (_t, root) = temp_root();
    desktop_without_br0(&root);
    write(&root, "run/netplan/50-cloud-init.yaml", STATIC_SERVER);
    write(&root, "etc/netplan/01-renderer.yaml", RENDERER_ONLY);
    let host = HostRoot::new(&root);
    let report = network::scan(&host);
    let before = tree(&root);
    let plan = plan_from_host(&host, &report, "enp5s0");
    let err = render(&host, &report, &NetworkChange::Create { plan }).unwrap_err();
    assert!(
        err.contains("/run/netplan/50-cloud-init.yaml") && err.contains("enp5s0"),
        "{err}"
    );
    assert!(err.contains("/etc/netplan"), "{err}");
    assert_eq!(tree(&root), before);

    // In /lib/netplan too, unless a file of the same name in /etc/netplan shadows it.
    let (_t, root) = temp_root();
    desktop_without_br0(&root);
    write(&root, "lib/netplan/10-vendor.yaml", STATIC_SERVER);
    write(&root, "etc/netplan/01-renderer.yaml", RENDERER_ONLY);
    let host = HostRoot::new(&root);
    let report = network::scan(&host);
    let plan = BridgePlan::new("enp5s0");
    let create = NetworkChange::Create { plan };
    let err = render(&host, &report, &create).unwrap_err();
    assert!(err.contains("/lib/netplan/10-vendor.yaml"), "{err}");
    write(
        &root,
        "etc/netplan/10-vendor.yaml",
        "network:\n  version: 2\n  ethernets:\n    enp5s0:\n      dhcp4: true\n",
    );
    let rendered = render(&host, &report, &create).unwrap();
    assert_eq!(rendered.files.len(), 1);

    // An entry matched by MAC address that names the interface enp5s0 (and a DHCP entry
    // for another interface in the same file, untouched).
    let named = "network:\n  version: 2\n  ethernets:\n    lan:\n      match:\n        macaddress: \"04:42:1a:00:00:05\"\n      set-name: enp5s0\n      addresses: [10.0.0.5/8]\n      gateway4: 10.0.0.1\n      mtu: 9000\n    enp6s0:\n      dhcp4: yes\n";
    let (_t, root) = static_server(named);
    let host = HostRoot::new(&root);
    let report = network::scan(&host);
    let rendered = render(&host, &report, &create).unwrap();
    assert_eq!(rendered.files.len(), 2);
    let edited = rendered.files[1].after.as_deref().unwrap();
    let lan = ethernet(edited, "lan");
    assert!(
        lan.get("addresses").is_none() && lan.get("gateway4").is_none(),
        "{edited}"
    );
    assert_eq!(lan["set-name"], "enp5s0");
    assert_eq!(lan["mtu"], 9000);
    assert_eq!(lan["match"], ethernet(named, "lan")["match"]);
    assert_eq!(ethernet(edited, "enp6s0"), ethernet(named, "enp6s0"));
    // No comment lines in the original: only ours.
    assert!(edited.starts_with("# Edited by Passthrough"), "{edited}");
    assert!(
        edited.lines().nth(1).unwrap().starts_with("network:"),
        "{edited}"
    );
    check_with_netplan(&host, &rendered).unwrap();
}

#[test]
fn a_dhcp_host_changes_only_our_file_and_a_bridge_without_journal_removes_only_it() {
    let (_t, root) = netplan_desktop();
    let host = HostRoot::new(&root);
    let original = tree(&root);
    let report = network::scan(&host);
    let create = NetworkChange::Create {
        plan: BridgePlan::new("enp5s0"),
    };
    let rendered = render(&host, &report, &create).unwrap();
    assert_eq!(rendered.files.len(), 1, "dhcp4: true alone is overridden");
    assert_eq!(rendered.files[0].path, NETPLAN_FILE);
    let runner = Record::default();
    transaction::apply(&host, &rendered, &runner, &mut quiet).unwrap();
    let remove = NetworkChange::Remove {
        bridge: "br0".into(),
    };
    let removal = render(&host, &network::scan(&host), &remove).unwrap();
    assert_eq!(removal.files.len(), 1);
    assert_eq!(removal.files[0].after, None);

    // A bridge made by an older Passthrough (no journal): our file only, as before.
    fs::remove_dir_all(root.join("var/lib/passthrough")).unwrap();
    let removal = render(&host, &network::scan(&host), &remove).unwrap();
    assert_eq!(removal.files.len(), 1);
    assert_eq!(removal.files[0].path, NETPLAN_FILE);
    transaction::apply(&host, &removal, &runner, &mut quiet).unwrap();
    assert_eq!(without_state(tree(&root), &root), original);
}
