//! passthroughctl as a whole process: the contract in DESIGN.md, and snapshots of its output
//! on every fixture.

mod common;

use common::{ctl, fixture_names};

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn snapshots_of_gpus_json_and_report_on_every_fixture() {
    for name in fixture_names() {
        let root = format!("tests/fixtures/roots/{name}");
        let gpus = ctl(&["gpus", "--json", "--root", &root]);
        assert_eq!(
            gpus.status.code(),
            Some(0),
            "{name}: {}",
            String::from_utf8_lossy(&gpus.stderr)
        );
        let value: serde_json::Value =
            serde_json::from_str(&stdout(&gpus)).expect("gpus --json is JSON");
        insta::assert_json_snapshot!(format!("gpus-{name}"), value);
        let report = ctl(&["--root", &root, "report"]);
        assert_eq!(report.status.code(), Some(0));
        insta::assert_snapshot!(format!("report-{name}"), stdout(&report));
    }
}

#[test]
fn gpus_json_has_the_contract_fields() {
    let out = ctl(&["--json", "gpus", "--root=tests/fixtures/roots/b550-blog"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let g = &v["gpus"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["address"] == "0000:08:00.0")
        .unwrap();
    assert_eq!(g["vendor_id"], "10de");
    assert_eq!(g["device_id"], "1c02");
    assert_eq!(g["vendor"], "NVIDIA Corporation");
    assert_eq!(g["name"], "GP106 [GeForce GTX 1060 3GB]");
    assert_eq!(g["class"], "0300");
    assert_eq!(g["driver"], "vfio-pci");
    assert_eq!(g["boot_vga"], true);
    assert_eq!(g["iommu_group"], 16);
    assert_eq!(g["verdict"], "isolated");
    assert_eq!(g["companions"], serde_json::json!(["0000:08:00.1"]));
    assert_eq!(g["blockers"], serde_json::json!([]));
    assert_eq!(g["link"]["current_width"], 16);
    assert_eq!(g["link"]["max_speed"], "8.0 GT/s PCIe");
    assert_eq!(g["lanes"], "cpu");
}

#[test]
fn exit_codes() {
    // A failed check exits 1, a good one 0.
    assert_eq!(
        ctl(&["check", "--root", "tests/fixtures/roots/iommu-off"])
            .status
            .code(),
        Some(1)
    );
    assert_eq!(
        ctl(&["check", "--root", "tests/fixtures/roots/b550-blog"])
            .status
            .code(),
        Some(0)
    );
    // Bad usage and unreadable input exit 2 with one line on stderr.
    for args in [
        &["frobnicate"][..],
        &[][..],
        &["gpus", "--root"][..],
        &["gpus", "--bogus"][..],
        &["gpus", "extra"][..],
        &["gpus", "--root", "/nonexistent/root"][..],
    ] {
        let o = ctl(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("passthroughctl: "));
        assert!(o.stdout.is_empty());
    }
    assert_eq!(ctl(&["--help"]).status.code(), Some(0));
}

#[test]
fn check_and_groups_json() {
    let out = ctl(&[
        "check",
        "--json",
        "--root",
        "tests/fixtures/roots/iommu-off",
    ]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["status"], "error");
    let iommu = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "iommu")
        .unwrap();
    assert_eq!(iommu["status"], "error");

    let out = ctl(&[
        "groups",
        "--json",
        "--root",
        "tests/fixtures/roots/b550-blog",
    ]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["iommu_enabled"], true);
    let g15 = v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["group"] == 15)
        .unwrap();
    assert_eq!(g15["devices"].as_array().unwrap().len(), 12);

    let text = stdout(&ctl(&[
        "groups",
        "--root",
        "tests/fixtures/roots/iommu-off",
    ]));
    assert!(text.contains("IOMMU is off"));
}

#[test]
fn report_on_this_machine_says_plainly_when_the_iommu_is_off() {
    let out = ctl(&["report"]);
    assert_eq!(out.status.code(), Some(0));
    let md = stdout(&out);
    assert!(md.starts_with("# Passthrough host report"));
    if !std::path::Path::new("/sys/kernel/iommu_groups")
        .read_dir()
        .is_ok_and(|mut d| d.next().is_some())
    {
        assert!(md.contains("The IOMMU is off on this host."), "{md}");
    }
    // Every PCI device of this machine is listed.
    let count = std::fs::read_dir("/sys/bus/pci/devices")
        .map(|d| d.count())
        .unwrap_or(0);
    let listed = md
        .lines()
        .filter(|l| l.len() > 12 && l.as_bytes()[4] == b':' && l.as_bytes()[7] == b':')
        .count();
    assert!(listed >= count, "{listed} of {count} devices listed");
}

/// Only `passthroughctl-launch` links libvirt: loading it (with gnutls, libssh, curl…) costs
/// each process about 12 ms, which every other command would pay (see README, Performance).
#[test]
fn only_the_launch_binary_links_libvirt() {
    let ldd = |exe: &str| {
        let out = std::process::Command::new("ldd")
            .arg(exe)
            .output()
            .expect("ldd");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let ctl = ldd(env!("CARGO_BIN_EXE_passthroughctl"));
    assert!(ctl.contains("libc.so"), "{ctl}");
    assert!(!ctl.contains("libvirt"), "{ctl}");
    assert!(ldd(env!("CARGO_BIN_EXE_passthroughctl-launch")).contains("libvirt.so"));
}
