//! Troubleshooting: the knowledge base is complete, every detector finds its problem in real
//! log lines (fixtures under tests/fixtures/logs, each with its source) and nothing in
//! healthy logs, the fixes render and apply, and `passthroughctl diagnose` keeps its contract.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;

use passthrough_core::diagnose::{
    self, detect_domain_xml, detect_host, detect_kernel_log, detect_qemu_log, diagnose,
    knowledge_base, Detection, FixAction, Inputs,
};
use passthrough_core::plan_render;
use passthrough_core::vm::features;
use passthrough_core::vm::{code43, xml as vm_xml, GpuAssignment, VmSpec, WindowsVersion};
use passthrough_core::{HostReport, HostRoot, ScanOptions};

use common::{copy_fixture, ctl, fixture, scan};

fn logs_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/logs")
}

/// A log fixture: its lines without the `#` header, and the ids its header expects.
fn log(name: &str) -> (String, BTreeSet<String>) {
    let text = std::fs::read_to_string(logs_dir().join(name)).unwrap();
    let header: Vec<&str> = text.lines().take_while(|l| l.starts_with('#')).collect();
    assert!(
        header
            .iter()
            .any(|l| l.contains("http") || l.contains("reference/")),
        "{name}: the header names the source"
    );
    let expect = header
        .iter()
        .find_map(|l| l.strip_prefix("# expect:"))
        .unwrap_or_else(|| panic!("{name}: no # expect: line"))
        .split_whitespace()
        .filter(|w| *w != "none")
        .map(str::to_owned)
        .collect();
    let body = text
        .lines()
        .skip(header.len())
        .collect::<Vec<_>>()
        .join("\n");
    (body, expect)
}

/// Which fixtures are QEMU logs; the others are kernel logs.
const QEMU_LOGS: &[&str] = &[
    "blog-qemu-win10.txt",
    "group-not-viable.txt",
    "vfio-container.txt",
    "reset-bug-qemu.txt",
    "healthy-qemu.txt",
];

fn ids(findings: &[diagnose::Finding]) -> BTreeSet<String> {
    findings.iter().map(|f| f.id.to_owned()).collect()
}

fn nothing<'a>(report: &'a HostReport) -> Inputs<'a> {
    Inputs {
        report,
        kernel_log: None,
        qemu_log: None,
        domain_xml: None,
        vm_name: None,
    }
}

fn domain_with_gpu(address: &str, windows: WindowsVersion) -> String {
    let spec = VmSpec {
        name: "win10".into(),
        windows,
        gpu: Some(GpuAssignment {
            addresses: vec![address.parse().unwrap()],
            rom_file: None,
        }),
        ..VmSpec::default()
    };
    vm_xml::domain_xml(&spec).unwrap()
}

/// Ids that some test below finds with a detector: the log fixtures' and the host/XML cases'.
fn tested_ids() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for e in std::fs::read_dir(logs_dir()).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        out.extend(log(&name).1);
    }
    for id in [
        "group-shared",
        "chipset-x4",
        "boot-gpu-rom",
        "code43-nvidia",
        "code43-amd",
        "dracut-no-conf",
        "ovmf-missing",
        "libvirt-group",
        "win11-secure-boot-tpm",
    ] {
        out.insert(id.to_owned());
    }
    out
}

#[test]
fn every_entry_is_complete_unique_and_detected_or_explained() {
    let kb = knowledge_base();
    let mut seen = BTreeSet::new();
    let tested = tested_ids();
    for e in &kb {
        assert!(seen.insert(e.id), "id {} twice", e.id);
        for (what, text) in [
            ("title", &e.title),
            ("symptoms", &e.symptoms),
            ("cause", &e.cause),
            ("fix", &e.fix),
        ] {
            assert!(text.trim().len() > 5, "{}: empty {what}", e.id);
        }
        assert!(!e.detection.is_empty(), "{}: no detection", e.id);
        for s in &e.sources {
            assert!(s.starts_with("https://"), "{}: source {s}", e.id);
        }
        let detectable = e
            .detection
            .iter()
            .any(|d| !matches!(d, Detection::NotDetectable(_)));
        if detectable {
            assert!(tested.contains(e.id), "{}: no tested detector", e.id);
        } else {
            for d in &e.detection {
                if let Detection::NotDetectable(why) = d {
                    assert!(why.len() > 20, "{}: no reason", e.id);
                }
            }
        }
    }
    // Every id a detector can report is in the knowledge base.
    for id in &tested {
        assert!(
            kb.iter().any(|e| e.id == id),
            "{id} is not in the knowledge base"
        );
    }
    // The reference post's problems and the issue's list are all there.
    for id in [
        "rdp-slow",
        "parsec-blurry",
        "parsec-14003",
        "steam-link-secure-desktop",
        "obs-black-after-rdp",
        "host-black-screen",
        "boot-gpu-tdr",
        "code43-nvidia",
        "code43-amd",
        "code31",
        "boot-gpu-rom",
        "group-shared",
        "chipset-x4",
        "amd-reset-bug",
        "vfio-virqfd",
        "dracut-no-conf",
        "amd-iommu-on",
        "nvidia-old-driver",
        "framebuffer-bar",
        "win11-secure-boot-tpm",
        "nvidia-persistenced",
        "libvirt-group",
    ] {
        assert!(seen.contains(id), "{id} missing");
    }
}

#[test]
fn each_log_detector_finds_its_fixture_lines_and_nothing_in_healthy_logs() {
    let report = scan("intel-igpu-nvidia");
    let mut names: Vec<String> = std::fs::read_dir(logs_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert!(names.len() >= 14);
    for name in &names {
        let (body, expect) = log(name);
        let qemu = QEMU_LOGS.contains(&name.as_str());
        let found = if qemu {
            detect_qemu_log(&report, &body)
        } else {
            detect_kernel_log(&report, &body)
        };
        assert_eq!(ids(&found), expect, "{name}");
        for f in &found {
            assert!(
                body.lines().any(|l| l.trim() == f.evidence),
                "{name}: the evidence is a line of the log"
            );
        }
        // The other kind of detector finds nothing in it either.
        let other = if qemu {
            detect_kernel_log(&report, &body)
        } else {
            detect_qemu_log(&report, &body)
        };
        if name.starts_with("healthy") {
            assert!(other.is_empty(), "{name}: {other:?}");
        }
    }
}

#[test]
fn the_reference_post_end_to_end() {
    let report = scan("b550-blog");
    let qemu = log("blog-qemu-win10.txt").0;
    let dmesg = log("blog-dmesg-acs.txt").0;
    let problems = diagnose(&Inputs {
        qemu_log: Some(&qemu),
        kernel_log: Some(&dmesg),
        vm_name: Some("win10"),
        ..nothing(&report)
    });
    let got: Vec<&str> = problems.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(got, ["boot-gpu-tdr", "acs-override", "amd-iommu-on"]);
    // Host facts come first as evidence; no entry twice.
    assert!(problems[0].evidence.contains("0000:08:00.0"));
    // Ordered like the knowledge base.
    let kb: Vec<&str> = knowledge_base().iter().map(|e| e.id).collect();
    let ranks: Vec<usize> = got
        .iter()
        .map(|id| kb.iter().position(|k| k == id).unwrap())
        .collect();
    assert!(ranks.windows(2).all(|w| w[0] < w[1]));
    // The QEMU line alone is enough for the boot GPU.
    let q = detect_qemu_log(&report, &qemu);
    assert_eq!(q[0].id, "boot-gpu-tdr");
    assert!(q[0]
        .evidence
        .contains("vfio_region_write(0000:08:00.0:region1+0x345990"));
}

#[test]
fn host_detectors_on_fixture_roots() {
    let ids_of = |r: &HostReport| ids(&detect_host(r));
    // A healthy host.
    assert!(ids_of(&scan("intel-igpu-nvidia")).is_empty());
    assert!(ids_of(&scan("two-identical-gpus")).is_empty());
    assert_eq!(
        ids_of(&scan("iommu-off")),
        ["iommu-off", "kvm-missing"].map(String::from).into()
    );
    assert!(ids_of(&scan("boot-grub-arch")).contains("ovmf-missing"));
    assert!(ids_of(&scan("nvidia-3d-controller")).contains("libvirt-group"));
    assert!(ids_of(&scan("b550-blog-acs")).contains("acs-override"));

    // The post's second slot: the RX 550 in chipset group 15, were it given to the VM (and the
    // boot GPU): shared group, x4 behind the chipset, the Polaris reset bug, the AMD boot GPU.
    let mut r = scan("b550-blog");
    assert!(
        !ids_of(&r).contains("group-shared"),
        "the host's own card is fine"
    );
    let rx550 = r
        .gpus
        .iter_mut()
        .find(|g| g.address.to_string() == "0000:04:00.0")
        .unwrap();
    rx550.driver = Some("vfio-pci".into());
    rx550.boot_vga = true;
    let found = ids_of(&r);
    for id in [
        "group-shared",
        "chipset-x4",
        "amd-reset-bug",
        "boot-gpu-rom",
    ] {
        assert!(found.contains(id), "{id}: {found:?}");
    }
}

#[test]
fn initramfs_files_on_a_new_kernel() {
    let (_dir, root) = copy_fixture("b550-blog");
    std::fs::create_dir_all(root.path("/etc/dracut.conf.d")).unwrap();
    std::fs::write(
        root.path("/etc/dracut.conf.d/vfio"),
        "add_drivers+=\" vfio vfio_iommu_type1 vfio_pci \"\n",
    )
    .unwrap();
    let modules = root.path("/etc/initramfs-tools/modules");
    let mut text = std::fs::read_to_string(&modules).unwrap();
    text.push_str("vfio_virqfd\n");
    std::fs::write(&modules, text).unwrap();
    let mut report = HostReport::scan(&root, &ScanOptions::default());
    report.kernel_release = Some("6.5.0-35-generic".into());
    let found = detect_host(&report);
    assert!(ids(&found).contains("dracut-no-conf"));
    let virqfd = found.iter().find(|f| f.id == "vfio-virqfd").unwrap();
    assert!(virqfd.evidence.contains("/etc/initramfs-tools/modules"));
    // Its fix re-renders the reservation of the card vfio-pci holds.
    let Some(FixAction::Plan(plan)) = &virqfd.fix else {
        panic!("no plan")
    };
    assert_eq!(plan.reserve.len(), 1);
    plan_render::render(&root, &report, plan).unwrap();
    // On the post's 5.19 kernel vfio_virqfd is right.
    report.kernel_release = Some("5.19.17".into());
    assert!(!ids(&detect_host(&report)).contains("vfio-virqfd"));
}

#[test]
fn fix_plans_render_on_the_blog_root() {
    let root = HostRoot::new(fixture("b550-blog"));
    let report = HostReport::scan(&root, &ScanOptions::default());
    let qemu = log("blog-qemu-win10.txt").0;
    let bar = log("framebuffer-bar.txt").0;
    let problems = diagnose(&Inputs {
        qemu_log: Some(&qemu),
        kernel_log: Some(&bar),
        ..nothing(&report)
    });
    let mut rendered = 0;
    for p in &problems {
        if let Some(FixAction::Plan(plan)) = &p.fix_action {
            let r = plan_render::render(&root, &report, plan)
                .unwrap_or_else(|e| panic!("{}: {}", p.id, e.message()));
            assert!(!r.is_empty(), "{}: the fix changes something", p.id);
            if p.id == "amd-iommu-on" {
                assert_eq!(r.kernel_args.remove, ["amd_iommu=on"]);
            }
            if p.id == "framebuffer-bar" || p.id == "boot-gpu-tdr" {
                assert!(plan.boot_gpu_fix);
                assert!(!r.kernel_args.add.is_empty());
            }
            rendered += 1;
        }
    }
    assert_eq!(rendered, 3, "{problems:?}");
}

#[test]
fn code43_fixes_apply_to_the_wizard_domain() {
    let report = scan("b550-blog");
    // NVIDIA: a domain from the wizard without the code 43 settings.
    for (address, id) in [
        ("0000:08:00.0", "code43-nvidia"),
        ("0000:04:00.0", "code43-amd"),
    ] {
        let xml = domain_with_gpu(address, WindowsVersion::Windows11);
        let found = detect_domain_xml(&report, &xml);
        let f = found
            .iter()
            .find(|f| f.id == id)
            .unwrap_or_else(|| panic!("{id}"));
        let Some(FixAction::VmEdits(edits)) = &f.fix else {
            panic!("{id}: no edits")
        };
        let fixed = features::edit(&xml, edits).unwrap();
        let settings = features::read(&fixed).unwrap();
        let g = report
            .gpus
            .iter()
            .find(|g| g.address.to_string() == address)
            .unwrap();
        let want = code43::recommended(
            &format!("{:04x}", g.vendor_id.unwrap()),
            &format!("{:04x}", g.device_id.unwrap()),
        );
        assert_eq!(settings.code43, want, "{id}");
        assert!(!ids(&detect_domain_xml(&report, &fixed)).contains(id));
    }
    // The boot GPU in the XML; Windows 11 without TPM and Secure Boot.
    let xml =
        domain_with_gpu("0000:08:00.0", WindowsVersion::Windows10).replace("win/10", "win/11");
    let found = ids(&detect_domain_xml(&report, &xml));
    assert!(found.contains("boot-gpu-tdr"));
    assert!(found.contains("win11-secure-boot-tpm"), "{found:?}");
    let ok = domain_with_gpu("0000:08:00.0", WindowsVersion::Windows11);
    assert!(!ids(&detect_domain_xml(&report, &ok)).contains("win11-secure-boot-tpm"));
    assert!(detect_domain_xml(&report, "not xml").is_empty());
}

#[test]
fn markdown_report_has_the_xml_the_command_line_and_the_problems() {
    let report = scan("b550-blog");
    let xml = domain_with_gpu("0000:08:00.0", WindowsVersion::Windows11);
    let qemu = log("blog-qemu-win10.txt").0;
    let inputs = Inputs {
        qemu_log: Some(&qemu),
        domain_xml: Some(&xml),
        vm_name: Some("win10"),
        ..nothing(&report)
    };
    let problems = diagnose(&inputs);
    let md = diagnose::report_markdown(&inputs, &problems);
    assert!(md.contains(&format!("```xml\n{}\n```", xml.trim_end())));
    assert!(md.contains("amd_iommu=on kvm.ignore_msrs=1"));
    assert!(md.contains("## IOMMU groups"));
    assert!(md.contains("Virtual machine “win10”"));
    for p in &problems {
        assert!(md.contains(&p.title) && md.contains(&p.fix), "{}", p.id);
    }
    assert!(problems.iter().any(|p| p.id == "code43-nvidia"));
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

const LOGS: &str = "src/core/tests/fixtures/logs";

#[test]
fn cli_diagnose_snapshots_and_exit_codes() {
    let blog = ctl(&[
        "diagnose",
        "--root",
        "tests/fixtures/roots/b550-blog",
        "--qemu-log",
        &format!("{LOGS}/blog-qemu-win10.txt"),
        "--kernel-log",
        &format!("{LOGS}/blog-dmesg-acs.txt"),
    ]);
    assert_eq!(blog.status.code(), Some(1));
    insta::assert_snapshot!("diagnose-b550-blog", stdout(&blog));

    let json = ctl(&[
        "--json",
        "diagnose",
        "--root=tests/fixtures/roots/b550-blog",
        &format!("--qemu-log={LOGS}/blog-qemu-win10.txt"),
    ]);
    assert_eq!(json.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    let first = &v["problems"][0];
    for key in ["id", "title", "cause", "fix", "evidence"] {
        assert!(first[key].is_string(), "{key}");
    }
    assert_eq!(first["id"], "boot-gpu-tdr");
    insta::assert_json_snapshot!("diagnose-b550-blog-json", v);

    let healthy = ctl(&[
        "diagnose",
        "--root",
        "tests/fixtures/roots/intel-igpu-nvidia",
        "--qemu-log",
        &format!("{LOGS}/healthy-qemu.txt"),
        "--kernel-log",
        &format!("{LOGS}/healthy-dmesg.txt"),
    ]);
    assert_eq!(healthy.status.code(), Some(0));
    insta::assert_snapshot!("diagnose-healthy", stdout(&healthy));
    let healthy_json = ctl(&[
        "diagnose",
        "--json",
        "--root",
        "tests/fixtures/roots/intel-igpu-nvidia",
    ]);
    assert_eq!(healthy_json.status.code(), Some(0));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stdout(&healthy_json)).unwrap(),
        serde_json::json!({ "problems": [] })
    );

    // --vm reads ROOT/var/log/libvirt/qemu/NAME.log.
    let (_dir, root) = copy_fixture("intel-igpu-nvidia");
    let logdir = root.path("/var/log/libvirt/qemu");
    std::fs::create_dir_all(&logdir).unwrap();
    std::fs::write(logdir.join("win10.log"), log("group-not-viable.txt").0).unwrap();
    let root_arg = root.base().display().to_string();
    let vm = ctl(&["diagnose", "--root", &root_arg, "--vm", "win10", "--json"]);
    assert_eq!(vm.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(&stdout(&vm)).unwrap();
    assert_eq!(v["problems"][0]["id"], "group-not-viable");
    // A VM that never ran has no log: nothing to read, nothing found.
    let none = ctl(&["diagnose", "--root", &root_arg, "--vm", "other"]);
    assert_eq!(none.status.code(), Some(0));

    // Bad usage and unreadable input exit 2 with one line on stderr.
    for args in [
        &["diagnose", "--qemu-log", "/nonexistent/qemu.log"][..],
        &["diagnose", "--kernel-log"][..],
        &["gpus", "--vm", "win10"][..],
        &["diagnose", "--vm", "../../etc/passwd"][..],
    ] {
        let out = ctl(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    }
}
