//! The NetworkManager side of the Network step against a real NetworkManager 1.42 on a
//! private system bus in a network namespace with a veth pair (tests/common/nm.rs): the bridge
//! is made through `passthrough_core::network::nm`, the address moves to it and the peer
//! answers pings; an unconfirmed checkpoint rolls everything back; removing the bridge gives
//! the port its earlier connection; refusals change nothing. Only the interface TYPE of a
//! Wi-Fi card is a test double (there is no Wi-Fi device here), never NetworkManager.
//!
//! Skipped (with a SKIPPED line) when not root or when NetworkManager, nmcli, ip or ping is
//! missing.

mod common;

use std::time::{Duration, Instant};

use common::nm::{
    missing, netns_with_prefix, processes_mentioning, NmLab, NS_PREFIX, PORT, PORT_ADDRESS,
    PORT_ADDRESS6, PORT_DNS, PORT_DNS6, PORT_GATEWAY, WIRED,
};
use passthrough_core::network::nm::{
    port_refusal, Nm, NmDeviceKind, NmError, DEVICE_TYPE_WIFI, ROLE_KEY,
};
use passthrough_core::network::{can_bridge, BridgePlan, Interface, InterfaceKind, Ipv4, Ipv6};

fn lab(test: &str) -> Option<NmLab> {
    if let Some(why) = missing() {
        common::skip(test, &why);
        return None;
    }
    Some(NmLab::start())
}

/// Drops the lab and checks that nothing of it is left: no namespace, no process.
fn finish(lab: NmLab) {
    let names = lab.netns_names();
    let dir = lab.dir();
    let (nm_pid, bus_pid) = (lab.nm.pid(), lab.bus.pid());
    drop(lab);
    let left = netns_with_prefix(NS_PREFIX);
    for name in &names {
        assert!(!left.contains(name), "namespace {name} is left: {left:?}");
    }
    let dir = dir.to_string_lossy().into_owned();
    assert!(
        processes_mentioning(&dir).is_empty(),
        "processes of {dir} are left: {:?}",
        processes_mentioning(&dir)
    );
    for pid in [nm_pid, bus_pid] {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} is still there"
        );
    }
    assert!(!std::path::Path::new(&dir).exists(), "{dir} is left");
}

fn passthrough_connections(nm: &Nm) -> Vec<String> {
    nm.connections()
        .unwrap()
        .into_iter()
        .filter(|c| c.passthrough_role.is_some())
        .map(|c| c.id)
        .collect()
}

fn the_plan(nm: &Nm) -> BridgePlan {
    nm.plan_for_port(PORT).expect("plan for the port")
}

#[test]
fn devices_show_the_port_and_its_address_and_the_plan_moves_it() {
    let Some(lab) = lab("devices_show_the_port_and_its_address_and_the_plan_moves_it") else {
        return;
    };
    let nm = lab.client();
    assert!(nm.running().unwrap());
    assert!(nm.version().unwrap().starts_with("1."));

    let devices = nm.devices().unwrap();
    let port = devices
        .iter()
        .find(|d| d.interface == PORT)
        .unwrap_or_else(|| panic!("{PORT} missing from {devices:#?}"));
    assert_eq!(port.kind, NmDeviceKind::Veth, "{port:#?}");
    assert!(port.is_activated(), "{port:#?}");
    assert!(port.managed);
    assert_eq!(port.connection_id.as_deref(), Some(WIRED));
    assert!(port.connection_uuid.is_some());
    assert_eq!(port.ipv4_addresses, vec![PORT_ADDRESS.to_owned()]);
    assert_eq!(port.ipv4_gateway.as_deref(), Some(PORT_GATEWAY));
    assert_eq!(port.ipv6_addresses, vec![PORT_ADDRESS6.to_owned()]);
    assert_eq!(port.dns, vec![PORT_DNS.to_owned(), PORT_DNS6.to_owned()]);
    assert!(port.mac.is_some());
    assert_eq!(port.master, None);

    let plan = the_plan(&nm);
    assert_eq!(
        plan,
        BridgePlan {
            bridge: "br0".into(),
            port: PORT.into(),
            ipv4: Ipv4::Static {
                addresses: vec![PORT_ADDRESS.into()],
                gateway: Some(PORT_GATEWAY.into()),
            },
            ipv6: Ipv6::Static {
                addresses: vec![PORT_ADDRESS6.into()],
                gateway: None,
            },
            dns: vec![PORT_DNS.into(), PORT_DNS6.into()],
        }
    );

    // A profile without a device (a bridge never activated) is not a device.
    lab.nmcli(&[
        "connection",
        "add",
        "type",
        "bridge",
        "ifname",
        "br7",
        "con-name",
        "My bridge",
        "connection.autoconnect",
        "no",
    ]);
    assert!(nm.device("br7").unwrap().is_none());

    // NetworkManager stopped: said so, in a sentence.
    let mut lab = lab;
    lab.nm.child.kill().unwrap();
    lab.nm.child.wait().unwrap();
    assert!(!nm.running().unwrap());
    let err = nm.devices().unwrap_err();
    assert!(matches!(err, NmError::NotRunning(_)), "{err:?}");
    assert!(err.message().contains("not running"), "{err}");
    finish(lab);
}

#[test]
fn apply_moves_the_address_to_the_bridge_and_confirm_keeps_it() {
    let Some(lab) = lab("apply_moves_the_address_to_the_bridge_and_confirm_keeps_it") else {
        return;
    };
    let nm = lab.client();
    let plan = the_plan(&nm);
    let port_mac = nm.device(PORT).unwrap().unwrap().mac;

    let start = Instant::now();
    let applied = nm.apply_bridge(&plan, 60).expect("apply");
    eprintln!("apply_bridge took {:?}", start.elapsed());
    assert_eq!(applied.rollback_timeout_secs, 60);
    assert_eq!(nm.checkpoints().unwrap(), vec![applied.checkpoint.clone()]);
    let remaining = nm
        .checkpoint_remaining(&applied.checkpoint)
        .unwrap()
        .expect("a running checkpoint");
    assert!(
        remaining > Duration::from_secs(50) && remaining <= Duration::from_secs(60),
        "{remaining:?}"
    );
    // "Wait, I need more time": 120 s from now.
    nm.adjust_rollback_timeout(&applied.checkpoint, 120)
        .unwrap();
    let remaining = nm
        .checkpoint_remaining(&applied.checkpoint)
        .unwrap()
        .unwrap();
    assert!(
        remaining > Duration::from_secs(110) && remaining <= Duration::from_secs(121),
        "{remaining:?}"
    );

    // The kernel's view in the namespace.
    assert!(lab.has_link("br0"));
    assert_eq!(
        lab.addresses("br0"),
        vec![PORT_ADDRESS.to_owned(), PORT_ADDRESS6.to_owned()]
    );
    assert_eq!(lab.addresses(PORT), Vec::<String>::new());
    assert_eq!(lab.master(PORT).as_deref(), Some("br0"));
    assert!(lab.ping(), "the peer gets no answer through br0");

    // NetworkManager's view.
    let devices = nm.devices().unwrap();
    let br0 = devices.iter().find(|d| d.interface == "br0").unwrap();
    assert_eq!(br0.kind, NmDeviceKind::Bridge);
    assert!(br0.is_activated());
    assert_eq!(br0.ports, vec![PORT.to_owned()]);
    assert_eq!(br0.ipv4_addresses, vec![PORT_ADDRESS.to_owned()]);
    assert_eq!(br0.ipv4_gateway.as_deref(), Some(PORT_GATEWAY));
    assert_eq!(br0.dns, vec![PORT_DNS.to_owned(), PORT_DNS6.to_owned()]);
    assert_eq!(br0.mac, port_mac, "the bridge keeps the port's MAC address");
    assert_eq!(br0.connection_uuid.as_deref(), Some(&*applied.bridge_uuid));
    let port = devices.iter().find(|d| d.interface == PORT).unwrap();
    assert_eq!(port.master.as_deref(), Some("br0"));
    assert_eq!(port.connection_uuid.as_deref(), Some(&*applied.port_uuid));

    // The port profile wins over "Wired connection 1" after a reboot.
    let connections = nm.connections().unwrap();
    let wired = connections.iter().find(|c| c.id == WIRED).unwrap();
    let port_conn = connections
        .iter()
        .find(|c| c.uuid == applied.port_uuid)
        .unwrap();
    assert!(port_conn.autoconnect_priority > wired.autoconnect_priority);
    assert_eq!(port_conn.kind, "802-3-ethernet");
    assert_eq!(port_conn.passthrough_role.as_deref(), Some("port"));
    assert_eq!(port_conn.master.as_deref(), Some(&*applied.bridge_uuid));
    let bridge_conn = connections
        .iter()
        .find(|c| c.uuid == applied.bridge_uuid)
        .unwrap();
    assert_eq!(bridge_conn.id, "Passthrough bridge br0");
    assert_eq!(bridge_conn.passthrough_role.as_deref(), Some("bridge"));
    // The profiles are on disk (keyfiles), with the marker.
    let keyfiles: Vec<String> = std::fs::read_dir(lab.dir().join("connections"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert_eq!(
        keyfiles.iter().filter(|k| k.contains(ROLE_KEY)).count(),
        2,
        "{keyfiles:#?}"
    );

    nm.confirm(&applied.checkpoint).expect("confirm");
    assert!(nm.checkpoints().unwrap().is_empty());
    assert_eq!(nm.checkpoint_remaining(&applied.checkpoint).unwrap(), None);
    // Still bridged a moment later.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(lab.master(PORT).as_deref(), Some("br0"));
    assert!(lab.ping());
    finish(lab);
}

#[test]
fn an_unconfirmed_apply_rolls_back_by_itself() {
    let Some(lab) = lab("an_unconfirmed_apply_rolls_back_by_itself") else {
        return;
    };
    let nm = lab.client();
    let plan = the_plan(&nm);
    let applied = nm.apply_bridge(&plan, 3).expect("apply");
    let applied_at = Instant::now();
    assert_eq!(
        lab.addresses("br0").first().map(String::as_str),
        Some(PORT_ADDRESS)
    );
    assert!(lab.ping());

    // No confirm: NetworkManager undoes it when the 3 s pass.
    assert!(
        lab.wait_until(Duration::from_secs(15), || nm
            .checkpoints()
            .unwrap()
            .is_empty()),
        "the checkpoint is still there"
    );
    assert!(
        lab.wait_until(Duration::from_secs(10), || !lab.has_link("br0")
            && lab.addresses(PORT).contains(&PORT_ADDRESS.to_owned())),
        "not rolled back: {:#}",
        lab.ip_addr()
    );
    eprintln!("rolled back {:?} after apply", applied_at.elapsed());
    assert_eq!(lab.master(PORT), None);
    assert!(
        lab.wait_until(Duration::from_secs(5), || lab.ping()),
        "no answer after the rollback"
    );
    assert!(passthrough_connections(&nm).is_empty());
    let port = nm.device(PORT).unwrap().unwrap();
    assert_eq!(port.connection_id.as_deref(), Some(WIRED));
    assert_eq!(nm.checkpoint_remaining(&applied.checkpoint).unwrap(), None);
    let err = nm.confirm(&applied.checkpoint).unwrap_err();
    assert!(err.message().contains("Too late"), "{err}");
    finish(lab);
}

#[test]
fn removing_the_bridge_restores_the_earlier_connection() {
    let Some(lab) = lab("removing_the_bridge_restores_the_earlier_connection") else {
        return;
    };
    let nm = lab.client();
    let applied = nm.apply_bridge(&the_plan(&nm), 60).expect("apply");
    nm.confirm(&applied.checkpoint).unwrap();

    let start = Instant::now();
    let removed = nm.remove_bridge("br0", 60).expect("remove");
    eprintln!("remove_bridge took {:?}", start.elapsed());
    assert_eq!(removed.deleted.len(), 2);
    assert!(removed.deleted.contains(&applied.bridge_uuid));
    assert!(removed.deleted.contains(&applied.port_uuid));
    let wired_uuid = nm
        .connections()
        .unwrap()
        .into_iter()
        .find(|c| c.id == WIRED)
        .unwrap()
        .uuid;
    assert_eq!(removed.restored, vec![wired_uuid]);
    assert!(
        lab.wait_until(Duration::from_secs(5), || !lab.has_link("br0")),
        "br0 is still there"
    );
    assert_eq!(
        lab.addresses(PORT),
        vec![PORT_ADDRESS.to_owned(), PORT_ADDRESS6.to_owned()]
    );
    assert_eq!(lab.master(PORT), None);
    assert!(lab.ping());
    assert_eq!(
        nm.device(PORT).unwrap().unwrap().connection_id.as_deref(),
        Some(WIRED)
    );
    assert!(passthrough_connections(&nm).is_empty());
    nm.confirm(&removed.checkpoint).unwrap();
    assert!(nm.checkpoints().unwrap().is_empty());

    // A bridge Passthrough did not make is not removed.
    let err = nm.remove_bridge("br0", 60).unwrap_err();
    assert!(matches!(err, NmError::Refused(_)), "{err:?}");
    assert!(nm.checkpoints().unwrap().is_empty());
    finish(lab);
}

#[test]
fn an_unconfirmed_removal_brings_the_bridge_back() {
    let Some(lab) = lab("an_unconfirmed_removal_brings_the_bridge_back") else {
        return;
    };
    let nm = lab.client();
    let applied = nm.apply_bridge(&the_plan(&nm), 60).expect("apply");
    nm.confirm(&applied.checkpoint).unwrap();
    let removed = nm.remove_bridge("br0", 3).expect("remove");
    assert!(!lab.has_link("br0") || lab.addresses("br0").is_empty());
    assert_eq!(
        lab.addresses(PORT).first().map(String::as_str),
        Some(PORT_ADDRESS)
    );

    assert!(
        lab.wait_until(Duration::from_secs(15), || nm
            .checkpoints()
            .unwrap()
            .is_empty()),
        "the checkpoint is still there"
    );
    assert!(
        lab.wait_until(Duration::from_secs(10), || lab.master(PORT).as_deref()
            == Some("br0")
            && lab.addresses("br0").contains(&PORT_ADDRESS.to_owned())),
        "the bridge did not come back: {:#}",
        lab.ip_addr()
    );
    assert_eq!(lab.addresses(PORT), Vec::<String>::new());
    assert!(lab.wait_until(Duration::from_secs(5), || lab.ping()));
    let mut ours = passthrough_connections(&nm);
    ours.sort();
    assert_eq!(
        ours,
        vec![
            "Passthrough bridge br0".to_owned(),
            "Passthrough bridge br0 port ptv0".to_owned()
        ],
        "deleted profiles are back"
    );
    assert_eq!(nm.checkpoint_remaining(&removed.checkpoint).unwrap(), None);
    finish(lab);
}

#[test]
fn a_bridge_that_does_not_come_up_is_undone_at_once() {
    let Some(lab) = lab("a_bridge_that_does_not_come_up_is_undone_at_once") else {
        return;
    };
    let mut nm = lab.client();
    nm.set_activation_limit(Duration::from_secs(2));
    // DHCP with no DHCP server on the link: br0 waits for a lease that never comes.
    let mut plan = the_plan(&nm);
    plan.ipv4 = Ipv4::Dhcp;
    plan.ipv6 = Ipv6::Off;
    plan.dns = vec![PORT_DNS.into()];
    let start = Instant::now();
    let err = nm.apply_bridge(&plan, 60).unwrap_err();
    eprintln!("gave up after {:?}: {err}", start.elapsed());
    assert!(matches!(err, NmError::Timeout(_)), "{err:?}");
    assert!(err.message().contains("br0"), "{err}");
    // Rolled back at once, not after the 60 s of the checkpoint.
    assert!(nm.checkpoints().unwrap().is_empty());
    assert!(
        lab.wait_until(Duration::from_secs(5), || !lab.has_link("br0")
            && lab.addresses(PORT).contains(&PORT_ADDRESS.to_owned())),
        "not rolled back: {:#}",
        lab.ip_addr()
    );
    assert!(passthrough_connections(&nm).is_empty());
    assert!(lab.wait_until(Duration::from_secs(5), || lab.ping()));
    finish(lab);
}

#[test]
fn refusals_change_nothing() {
    let Some(lab) = lab("refusals_change_nothing") else {
        return;
    };
    let nm = lab.client();
    let before = nm.connections().unwrap();
    let unchanged = |nm: &Nm| {
        assert!(nm.checkpoints().unwrap().is_empty(), "a checkpoint is left");
        assert_eq!(nm.connections().unwrap(), before, "connections changed");
        assert!(!lab.has_link("br0"));
        assert_eq!(
            lab.addresses(PORT).first().map(String::as_str),
            Some(PORT_ADDRESS)
        );
    };

    // A port that does not exist.
    let mut plan = the_plan(&nm);
    plan.port = "nosuch0".into();
    let err = nm.apply_bridge(&plan, 30).unwrap_err();
    assert!(matches!(err, NmError::Refused(_)), "{err:?}");
    assert!(err.message().contains("nosuch0"), "{err}");
    unchanged(&nm);

    // A bridge name another interface has.
    let mut plan = the_plan(&nm);
    plan.bridge = "lo".into();
    let err = nm.apply_bridge(&plan, 30).unwrap_err();
    assert!(matches!(err, NmError::Refused(_)), "{err:?}");
    assert!(err.message().contains("lo"), "{err}");
    unchanged(&nm);

    // A bridge name a connection profile has (but no device yet).
    lab.nmcli(&[
        "connection",
        "add",
        "type",
        "bridge",
        "ifname",
        "br7",
        "con-name",
        "My bridge",
        "connection.autoconnect",
        "no",
    ]);
    let before_with_br7 = nm.connections().unwrap();
    let mut plan = the_plan(&nm);
    plan.bridge = "br7".into();
    let err = nm.apply_bridge(&plan, 30).unwrap_err();
    assert!(err.message().contains("“My bridge”"), "{err}");
    assert!(nm.checkpoints().unwrap().is_empty());
    assert_eq!(nm.connections().unwrap(), before_with_br7);
    lab.nmcli(&["connection", "delete", "My bridge"]);

    // An invalid plan.
    let mut plan = the_plan(&nm);
    plan.ipv4 = Ipv4::Static {
        addresses: vec!["10.77.0.300/24".into()],
        gateway: None,
    };
    let err = nm.apply_bridge(&plan, 30).unwrap_err();
    assert!(err.message().contains("10.77.0.300/24"), "{err}");
    unchanged(&nm);

    // What NetworkManager would reject half-way: IPv6 DNS without IPv6.
    let mut plan = the_plan(&nm);
    plan.ipv6 = Ipv6::Off;
    let err = nm.apply_bridge(&plan, 30).unwrap_err();
    assert!(matches!(err, NmError::Refused(_)), "{err:?}");
    assert!(err.message().contains(PORT_DNS6), "{err}");
    unchanged(&nm);

    // A port that is already a bridge port.
    let applied = nm.apply_bridge(&the_plan(&nm), 30).expect("apply");
    nm.confirm(&applied.checkpoint).unwrap();
    let after_bridge = nm.connections().unwrap();
    let mut plan = BridgePlan::new(PORT);
    plan.bridge = "br1".into();
    let err = nm.apply_bridge(&plan, 30).unwrap_err();
    assert!(matches!(err, NmError::Refused(_)), "{err:?}");
    assert!(err.message().contains("br0"), "{err}");
    assert!(nm.checkpoints().unwrap().is_empty());
    assert_eq!(nm.connections().unwrap(), after_bridge);
    assert!(!lab.has_link("br1"));
    finish(lab);
}

/// Wi-Fi: the only test double is the interface TYPE (NetworkManager's DeviceType 2), fed to
/// the same decision `apply_bridge` makes; the sentence is `can_bridge`'s.
#[test]
fn a_wifi_port_is_refused_with_the_reason() {
    let wifi = Interface {
        name: "wlp3s0".into(),
        kind: InterfaceKind::Wifi,
        mac: None,
        carrier: None,
        operstate: None,
        master: None,
        ports: Vec::new(),
    };
    let reason = port_refusal("wlp3s0", DEVICE_TYPE_WIFI, None).unwrap_err();
    assert_eq!(reason, can_bridge(&wifi).unwrap_err());
    assert!(reason.contains("Wi-Fi"), "{reason}");
    assert!(reason.contains("NAT"), "{reason}");
    assert!(reason.contains("macvtap"), "{reason}");
    assert_eq!(
        NmDeviceKind::from_device_type(DEVICE_TYPE_WIFI),
        NmDeviceKind::Wifi
    );
}

/// The environment variable that hands the lab's bus address to the child test below.
const CHILD_BUS: &str = "PASSTHROUGH_NM_TEST_BUS";

/// A user NetworkManager does not authorize (`nobody`, with `auth-polkit=root-only`, which
/// answers like polkit rules that say no) gets the permission sentence, and nothing changes.
/// The code under test runs in this test binary re-executed as `nobody` (a process has one
/// uid), in the ignored test `nm_calls_as_another_user`.
#[test]
fn another_user_is_refused_with_the_permission_sentence() {
    if let Some(why) = missing() {
        common::skip("another_user_is_refused_with_the_permission_sentence", &why);
        return;
    }
    let lab = NmLab::start_with_auth("root-only");
    let nm = lab.client();
    let before = nm.connections().unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "nm_calls_as_another_user",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_BUS, &lab.address)
        .env("LANGUAGE", "en")
        .output()
        .unwrap();
    let text = common::out_text(&out);
    assert!(out.status.success(), "{text}");
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("REFUSED: "))
        .unwrap_or_else(|| panic!("the child did not run: {text}"));
    eprintln!("as nobody: {line}");
    assert!(line.contains("polkit"), "{line}");
    assert!(nm.checkpoints().unwrap().is_empty());
    assert_eq!(nm.connections().unwrap(), before);
    assert!(!lab.has_link("br0"));
    assert_eq!(
        lab.addresses(PORT).first().map(String::as_str),
        Some(PORT_ADDRESS)
    );
    finish(lab);
}

#[test]
#[ignore = "run as nobody by another_user_is_refused_with_the_permission_sentence"]
fn nm_calls_as_another_user() {
    let Ok(address) = std::env::var(CHILD_BUS) else {
        return;
    };
    // Nm::system() finds the lab's bus through DBUS_SYSTEM_BUS_ADDRESS.
    std::env::set_var("DBUS_SYSTEM_BUS_ADDRESS", &address);
    let nm = Nm::system().expect("connect as nobody");
    // Reading is allowed to everyone.
    let devices = nm.devices().expect("devices as nobody");
    assert!(devices.iter().any(|d| d.interface == PORT));
    let plan = nm.plan_for_port(PORT).expect("plan as nobody");
    let err = nm.apply_bridge(&plan, 10).unwrap_err();
    assert!(matches!(err, NmError::PermissionDenied(_)), "{err:?}");
    println!("REFUSED: {err}");
    let err = nm.remove_bridge("br0", 10).unwrap_err();
    assert!(matches!(err, NmError::Refused(_)), "{err:?}");
}
