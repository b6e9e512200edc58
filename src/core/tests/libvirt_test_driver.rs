//! `vm::libvirt` against libvirt's test driver (`test:///default`): no daemon, all in this
//! process. Its state is shared by every connection of the process, so each test works on
//! domains and volumes of its own names and only reads the driver's built-in `test` domain.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use passthrough_core::vm::libvirt::{
    bridge_network_xml, DomainInfo, DomainState, Libvirt, NetworkInfo, MAX_NETWORK_NAME_LEN,
    MAX_VOLUME_GIB,
};
use passthrough_core::vm::xml::domain_xml;
use passthrough_core::vm::{Code43, NetworkChoice, Storage, VmSpec, WindowsVersion};

const URI: &str = "test:///default";
/// The UUID of the test driver's built-in `test` domain.
const TEST_UUID: &str = "6695eb01-f6a4-8304-79aa-97f2502e193f";
const UNKNOWN_UUID: &str = "00000000-1111-2222-3333-444444444444";

fn open() -> Libvirt {
    Libvirt::open(URI).unwrap_or_else(|e| panic!("{}", e.message()))
}

/// A name no other test (nor another run in this process) uses.
fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The wizard's Windows 11 domain (`vm::xml::domain_xml`): q35, UEFI with Secure Boot, TPM,
/// Hyper-V with a vendor ID, KVM hidden, QXL + SPICE, a qcow2 volume and a NAT network.
fn windows_xml(name: &str) -> String {
    let spec = VmSpec {
        name: name.to_owned(),
        windows: WindowsVersion::Windows11,
        storage: Storage::NewVolume {
            pool: "default-pool".into(),
            size_gib: 64,
        },
        network: NetworkChoice::Network("default".into()),
        code43: Code43 {
            vendor_id: Some("1234567890ab".into()),
            kvm_hidden: true,
            ..Code43::default()
        },
        ..VmSpec::default()
    };
    domain_xml(&spec).unwrap_or_else(|e| panic!("{}", e.message()))
}

fn state_of(lv: &Libvirt, uuid: &str) -> DomainState {
    lv.find(uuid)
        .unwrap()
        .unwrap_or_else(|| panic!("{uuid} is gone"))
        .state
}

#[test]
fn opens_and_names_its_uri() {
    let lv = open();
    assert_eq!(lv.uri(), URI);
    assert!(format!("{lv:?}").contains(URI));
}

#[test]
fn lists_the_built_in_domain_sorted() {
    let lv = open();
    let domains = lv.domains().unwrap();
    let test = domains
        .iter()
        .find(|d| d.name == "test")
        .unwrap_or_else(|| panic!("no built-in test domain in {domains:?}"));
    assert_eq!(test.uuid, TEST_UUID);
    assert_eq!(test.state, DomainState::Running);
    assert!(test.persistent);
    assert!(!test.autostart);
    let names: Vec<&str> = domains.iter().map(|d| d.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted);
}

#[test]
fn finds_by_name_and_by_uuid() {
    let lv = open();
    let by_name = lv.find("test").unwrap().expect("test by name");
    let by_uuid = lv.find(TEST_UUID).unwrap().expect("test by UUID");
    assert_eq!(by_name, by_uuid);
    // libvirt's UUIDs also parse without hyphens and in capitals.
    let plain = TEST_UUID.replace('-', "").to_uppercase();
    assert_eq!(lv.find(&plain).unwrap().as_ref(), Some(&by_name));
    for missing in ["no-such-vm", UNKNOWN_UUID, "", "测试"] {
        assert_eq!(lv.find(missing).unwrap(), None, "{missing:?}");
    }
}

#[test]
fn a_windows_vm_lives_and_dies() {
    let lv = open();
    let name = unique("pt-win11");
    let defined: DomainInfo = lv
        .define(&windows_xml(&name))
        .unwrap_or_else(|e| panic!("{}", e.message()));
    assert_eq!(defined.name, name);
    assert_eq!(defined.state, DomainState::ShutOff);
    assert!(defined.persistent);
    let uuid = defined.uuid.clone();
    assert_eq!(lv.find(&name).unwrap().as_ref(), Some(&defined));
    assert_eq!(lv.find(&uuid).unwrap().as_ref(), Some(&defined));
    assert!(lv.domains().unwrap().contains(&defined));

    // Its persistent XML is the one defined (with libvirt's additions).
    let xml = lv.xml(&uuid).unwrap();
    for part in [
        format!("<name>{name}</name>"),
        format!("<uuid>{uuid}</uuid>"),
        "machine='q35'".to_owned(),
        "value='1234567890ab'".to_owned(),
        "tpm-crb".to_owned(),
        "type='qxl'".to_owned(),
    ] {
        assert!(xml.contains(&part), "{part} not in\n{xml}");
    }

    lv.start(&uuid).unwrap();
    assert_eq!(state_of(&lv, &uuid), DomainState::Running);
    let error = lv.start(&uuid).unwrap_err();
    assert!(error.message().contains(&name), "{}", error.message());
    assert!(error.libvirt_message().is_some_and(|m| !m.is_empty()));

    // The test driver's guest obeys the power button at once.
    lv.shutdown(&uuid).unwrap();
    assert_eq!(state_of(&lv, &uuid), DomainState::ShutOff);
    let error = lv.shutdown(&uuid).unwrap_err();
    assert!(
        error.message().contains("Cannot shut down") && error.message().contains(&name),
        "{}",
        error.message()
    );

    lv.start(&uuid).unwrap();
    lv.force_off(&uuid).unwrap();
    assert_eq!(state_of(&lv, &uuid), DomainState::ShutOff);
    let error = lv.force_off(&uuid).unwrap_err();
    assert!(error.message().contains(&name), "{}", error.message());

    // Defining the same XML again updates it in place.
    let again = lv.define(&xml).unwrap();
    assert_eq!(again.uuid, uuid);

    lv.undefine(&uuid).unwrap();
    assert_eq!(lv.find(&uuid).unwrap(), None);
    assert_eq!(lv.find(&name).unwrap(), None);
    assert!(!lv.domains().unwrap().iter().any(|d| d.uuid == uuid));
    // Gone means not found, with a sentence that names the UUID and the connection.
    let error = lv.start(&uuid).unwrap_err();
    assert!(error.is_not_found());
    assert!(
        error.message().contains(&uuid) && error.message().contains(URI),
        "{}",
        error.message()
    );
}

#[test]
fn undefining_a_running_vm_leaves_it_transient() {
    let lv = open();
    let name = unique("pt-transient");
    let uuid = lv.define(&windows_xml(&name)).unwrap().uuid;
    lv.start(&uuid).unwrap();
    lv.undefine(&uuid).unwrap();
    let now = lv.find(&uuid).unwrap().expect("still running");
    assert_eq!(now.state, DomainState::Running);
    assert!(!now.persistent);
    assert!(!now.autostart);
    // Turning it off removes it.
    lv.force_off(&uuid).unwrap();
    assert_eq!(lv.find(&uuid).unwrap(), None);
}

#[test]
fn unknown_and_malformed_uuids_are_clear_errors() {
    let lv = open();
    type Op = fn(&Libvirt, &str) -> Result<(), passthrough_core::vm::libvirt::VirtError>;
    let ops: [(&str, Op); 5] = [
        ("start", |lv, u| lv.start(u)),
        ("shutdown", |lv, u| lv.shutdown(u)),
        ("force_off", |lv, u| lv.force_off(u)),
        ("undefine", |lv, u| lv.undefine(u)),
        ("xml", |lv, u| lv.xml(u).map(drop)),
    ];
    for (op, call) in ops {
        let error = call(&lv, UNKNOWN_UUID).unwrap_err();
        assert!(error.is_not_found(), "{op}: {error:?}");
        assert_eq!(
            error.message(),
            format!("There is no virtual machine with the UUID {UNKNOWN_UUID} at {URI}."),
            "{op}"
        );
        for bad in ["test", "", "../../etc/passwd", "6695eb01-f6a4-8304-79aa"] {
            let error = call(&lv, bad).unwrap_err();
            assert!(!error.is_not_found(), "{op}({bad:?})");
            assert!(error.libvirt_message().is_none(), "{op}({bad:?})");
            assert!(
                error
                    .message()
                    .contains("is not the UUID of a virtual machine"),
                "{op}({bad:?}): {}",
                error.message()
            );
        }
    }
    // The built-in domain is untouched by all of that.
    assert_eq!(state_of(&lv, TEST_UUID), DomainState::Running);
}

#[test]
fn bad_domain_xml_is_refused_with_libvirts_reason() {
    let lv = open();
    for bad in ["", "<domain", "<network><name>x</name></network>"] {
        let error = lv.define(bad).unwrap_err();
        assert!(
            error
                .message()
                .starts_with("Cannot create the virtual machine: "),
            "{}",
            error.message()
        );
        let reason = error.libvirt_message().unwrap_or_default();
        assert!(!reason.is_empty(), "{bad:?}");
        assert!(error.message().ends_with(reason), "{}", error.message());
    }
}

#[test]
fn networks_have_their_bridge_and_forward_mode() {
    let lv = open();
    let networks = lv.networks().unwrap();
    let default = networks
        .iter()
        .find(|n| n.name == "default")
        .unwrap_or_else(|| panic!("no default network in {networks:?}"));
    assert!(default.active);
    assert_eq!(default.bridge.as_deref(), Some("virbr0"));
    assert_eq!(default.forward.as_deref(), Some("nat"));
    // The test driver's default network is not autostarted.
    assert!(!default.autostart);
}

/// A host bridge name of its own for each test (at most 15 characters).
fn unique_bridge() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("ptbr{}", N.fetch_add(1, Ordering::Relaxed))
}

fn network(lv: &Libvirt, name: &str) -> Option<NetworkInfo> {
    lv.networks().unwrap().into_iter().find(|n| n.name == name)
}

#[test]
fn a_bridge_network_is_defined_started_and_autostarted() {
    let lv = open();
    let name = unique("pt-lan");
    let bridge = unique_bridge();
    let made = lv
        .define_bridge_network(&name, &bridge)
        .unwrap_or_else(|e| panic!("{}", e.message()));
    let want = NetworkInfo {
        name: name.clone(),
        active: true,
        bridge: Some(bridge.clone()),
        forward: Some("bridge".into()),
        autostart: true,
    };
    assert_eq!(made, want);
    assert_eq!(network(&lv, &name).as_ref(), Some(&want));

    // Again: the same network, reused as it is.
    assert_eq!(lv.define_bridge_network(&name, &bridge).unwrap(), want);
    assert_eq!(
        lv.networks()
            .unwrap()
            .iter()
            .filter(|n| n.name == name)
            .count(),
        1
    );

    // The same name on another bridge is another network: refused, the first one kept.
    let error = lv.define_bridge_network(&name, "ptother0").unwrap_err();
    assert!(error.is_name_taken(), "{error:?}");
    assert!(
        error.message().contains(&name)
            && error.message().contains(&bridge)
            && error.message().contains("ptother0"),
        "{}",
        error.message()
    );
    assert_eq!(network(&lv, &name).as_ref(), Some(&want));

    lv.remove_network(&name).unwrap();
    assert_eq!(network(&lv, &name), None);
    let error = lv.remove_network(&name).unwrap_err();
    assert!(error.is_not_found(), "{error:?}");
    assert_eq!(
        error.message(),
        format!("There is no network named “{name}” at {URI}.")
    );
}

/// The test driver's state is shared by the connections of this process (each virsh process
/// has its own), so a second connection through the `virt` crate changes what `Libvirt` sees.
fn virt_conn() -> virt::connect::Connect {
    virt::connect::Connect::open(Some(URI)).unwrap()
}

#[test]
fn a_stopped_or_transient_bridge_network_is_reused_and_started() {
    let lv = open();
    let conn = virt_conn();
    let name = unique("pt-lan-stopped");
    let bridge = unique_bridge();
    lv.define_bridge_network(&name, &bridge).unwrap();
    // Someone stopped it and took its autostart away: the next call puts both back.
    let raw = conn.lookup_network_by_name(&name).unwrap();
    raw.set_autostart(false).unwrap();
    raw.destroy().unwrap();
    let stopped = network(&lv, &name).unwrap();
    assert!(!stopped.active && !stopped.autostart, "{stopped:?}");
    let uuid = raw.uuid_string().unwrap();
    let made = lv.define_bridge_network(&name, &bridge).unwrap();
    assert!(made.active && made.autostart, "{made:?}");
    assert_eq!(
        conn.lookup_network_by_name(&name)
            .unwrap()
            .uuid_string()
            .unwrap(),
        uuid,
        "the same network, not a new one"
    );
    lv.remove_network(&name).unwrap();
    assert_eq!(network(&lv, &name), None);

    // A transient one (started, never defined) becomes defined, with its UUID.
    let name = unique("pt-lan-transient");
    let xml = bridge_network_xml(&name, &bridge).unwrap();
    let transient = conn.create_network_xml(&xml).unwrap();
    assert!(!transient.is_persistent().unwrap());
    let uuid = transient.uuid_string().unwrap();
    let made = lv.define_bridge_network(&name, &bridge).unwrap();
    assert!(made.active && made.autostart, "{made:?}");
    let now = conn.lookup_network_by_name(&name).unwrap();
    assert!(now.is_persistent().unwrap());
    assert_eq!(now.uuid_string().unwrap(), uuid);
    // Removing stops and undefines it: gone.
    lv.remove_network(&name).unwrap();
    assert_eq!(network(&lv, &name), None);

    // A transient one that is only stopped by removal is gone as well.
    let name = unique("pt-lan-transient");
    conn.create_network_xml(&bridge_network_xml(&name, &bridge).unwrap())
        .unwrap();
    lv.remove_network(&name).unwrap();
    assert_eq!(network(&lv, &name), None);
}

#[test]
fn a_network_of_another_kind_keeps_its_name() {
    let lv = open();
    let before = lv.networks().unwrap();
    let default = before
        .iter()
        .find(|n| n.name == "default")
        .cloned()
        .unwrap();
    let error = lv.define_bridge_network("default", "br0").unwrap_err();
    assert!(error.is_name_taken(), "{error:?}");
    assert!(!error.is_not_found());
    assert!(error.libvirt_message().is_none());
    assert_eq!(
        error.message(),
        "There is already a libvirt network named “default” with the forward mode “nat”, \
         not one on the host bridge br0. Choose another name, or delete that network first."
    );
    assert_eq!(network(&lv, "default"), Some(default));

    // An isolated network (no forward) of that name is refused too.
    let conn = virt_conn();
    let name = unique("pt-isolated");
    let xml = format!(
        "<network><name>{name}</name><bridge name='{}'/></network>",
        unique_bridge()
    );
    let isolated = conn.define_network_xml(&xml).unwrap();
    let error = lv.define_bridge_network(&name, "br0").unwrap_err();
    assert!(error.is_name_taken(), "{error:?}");
    assert!(
        error.message().contains("an isolated network"),
        "{}",
        error.message()
    );
    let still = network(&lv, &name).unwrap();
    assert_eq!(still.forward, None);
    assert!(!still.active && !still.autostart, "{still:?}");
    isolated.undefine().unwrap();
}

#[test]
fn bridge_network_names_are_data() {
    let lv = open();
    let bridge = unique_bridge();
    for name in [
        format!("a'b\"c&d-{}", unique("q")),
        format!("<局域网> & {}", unique("lan")),
    ] {
        let xml = bridge_network_xml(&name, &bridge).unwrap();
        let tree = xmltree::Element::parse(xml.as_bytes()).unwrap();
        assert_eq!(tree.get_child("name").unwrap().get_text().unwrap(), name);
        let made = lv
            .define_bridge_network(&name, &bridge)
            .unwrap_or_else(|e| panic!("{name}: {}", e.message()));
        assert_eq!(made.name, name);
        assert_eq!(network(&lv, &name).as_ref(), Some(&made));
        lv.remove_network(&name).unwrap();
        assert_eq!(network(&lv, &name), None);
    }
}

#[test]
fn bad_network_names_and_bridges_are_refused_before_libvirt() {
    let lv = open();
    let long = "网".repeat(MAX_NETWORK_NAME_LEN + 1);
    let bad_names: [(&str, &str); 6] = [
        ("", "needs a name"),
        ("   ", "needs a name"),
        (" lan", "begin or end with a space"),
        ("a/b", "cannot contain “/”"),
        ("a\nb", "control characters"),
        (&long, "too long"),
    ];
    for (name, says) in bad_names {
        let error = lv.define_bridge_network(name, "br0").unwrap_err();
        assert!(
            error.message().contains(says),
            "{name:?}: {}",
            error.message()
        );
        assert!(error.libvirt_message().is_none(), "{name:?}");
        assert_eq!(
            bridge_network_xml(name, "br0").unwrap_err(),
            error.message(),
            "{name:?}"
        );
    }
    let ok_long = "网".repeat(MAX_NETWORK_NAME_LEN);
    assert!(bridge_network_xml(&ok_long, "br0").is_ok());

    let name = unique("pt-badbridge");
    for bridge in [
        "",
        "a-name-too-long-x",
        "br 0",
        "br/0",
        "br:0",
        "..",
        "br\n0",
        "br\"0",
        "br'0",
        "br&0",
        "网桥",
    ] {
        let error = lv.define_bridge_network(&name, bridge).unwrap_err();
        assert!(error.libvirt_message().is_none(), "{bridge:?}");
        assert!(
            error.message().contains("interface name")
                || error.message().contains("bridge of a libvirt network"),
            "{bridge:?}: {}",
            error.message()
        );
        assert_eq!(
            bridge_network_xml(&name, bridge).unwrap_err(),
            error.message()
        );
    }
    assert_eq!(network(&lv, &name), None, "nothing reached libvirt");
}

#[test]
fn bridge_network_xml_is_what_the_reference_post_wrote_and_validates() {
    let xml = bridge_network_xml("br0", "br0").unwrap();
    let tree = xmltree::Element::parse(xml.as_bytes()).unwrap();
    assert_eq!(tree.name, "network");
    let names: Vec<&str> = tree
        .children
        .iter()
        .filter_map(|n| n.as_element())
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(names, ["name", "forward", "bridge"]);
    assert_eq!(tree.get_child("name").unwrap().get_text().unwrap(), "br0");
    assert_eq!(
        tree.get_child("forward").unwrap().attributes["mode"],
        "bridge"
    );
    assert_eq!(tree.get_child("bridge").unwrap().attributes["name"], "br0");

    // libvirt's schema (network.rng) takes it, odd names included.
    let dir = tempfile::tempdir().unwrap();
    for (name, bridge) in [
        ("br0", "br0"),
        ("a'b\"c&d <局域网>", "br-lan.10"),
        ("LAN", "enp3s0_br"),
    ] {
        let file = dir.path().join("network.xml");
        std::fs::write(&file, bridge_network_xml(name, bridge).unwrap()).unwrap();
        let out = Command::new("virt-xml-validate")
            .arg(&file)
            .arg("network")
            .output()
            .expect("virt-xml-validate (libvirt-clients + libxml2-utils) is installed");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && said.contains(" validates"),
            "{name:?} on {bridge}: virt-xml-validate refused it:\n{said}"
        );
    }
}

#[test]
fn volumes_are_made_in_pools() {
    let lv = open();
    let pools = lv.pools().unwrap();
    assert!(pools.iter().any(|p| p == "default-pool"), "{pools:?}");
    let mut sorted = pools.clone();
    sorted.sort();
    assert_eq!(pools, sorted);

    let name = format!("{}.qcow2", unique("pt-disk"));
    let path = lv.create_volume("default-pool", &name, 64).unwrap();
    assert_eq!(path, format!("/default-pool/{name}"));
    // The same name again: libvirt's refusal, with the disk and pool named.
    let error = lv.create_volume("default-pool", &name, 64).unwrap_err();
    assert!(
        error.message().contains(&name) && error.message().contains("default-pool"),
        "{}",
        error.message()
    );
    assert!(error.libvirt_message().is_some_and(|m| !m.is_empty()));

    // Names are data: quotes, markup and Chinese reach libvirt as they are.
    let odd = format!("{}-'\"<&>-游戏.qcow2", unique("pt-odd"));
    let path = lv.create_volume("default-pool", &odd, 1).unwrap();
    assert_eq!(path, format!("/default-pool/{odd}"));

    let error = lv.create_volume("no-such-pool", "x.qcow2", 1).unwrap_err();
    assert!(error.is_not_found());
    assert!(
        error.message().contains("no-such-pool"),
        "{}",
        error.message()
    );
    for bad in ["", ".hidden", "../x.qcow2", "a/b", "a\nb"] {
        let error = lv.create_volume("default-pool", bad, 1).unwrap_err();
        assert!(
            error.message().contains("cannot be the name of a disk"),
            "{bad:?}: {}",
            error.message()
        );
    }
    for size in [0, MAX_VOLUME_GIB + 1, u64::MAX] {
        let error = lv
            .create_volume("default-pool", "big.qcow2", size)
            .unwrap_err();
        assert!(
            error.message().contains(&size.to_string()),
            "{}",
            error.message()
        );
    }
}

#[test]
fn a_bad_uri_says_where_it_tried() {
    let error = Libvirt::open("test:///no/such/config.xml").unwrap_err();
    assert!(error.is_connect());
    assert!(
        error
            .message()
            .starts_with("Cannot connect to libvirt at test:///no/such/config.xml: "),
        "{}",
        error.message()
    );
    assert!(error.libvirt_message().is_some_and(|m| !m.is_empty()));
    let error = Libvirt::open("nosuchdriver:///system").unwrap_err();
    assert!(
        error.message().contains("nosuchdriver:///system"),
        "{}",
        error.message()
    );
}
