//! Plans rendered on the fixture roots: snapshots of `passthroughctl plan`, idempotence
//! (a plan applied to its own result renders to nothing), releases that give back the
//! original files byte for byte, validation, and the whole path through a transaction
//! with recorders in place of the regeneration commands.

mod common;

use std::fs;
use std::path::Path;

use passthrough_core::bootcfg::{self, loader_entry, KargOp};
use passthrough_core::pci::PciAddress;
use passthrough_core::plan::{BindBy, Plan, Rendered};
use passthrough_core::plan_render::{self, render, unified_diff, PlanError};
use passthrough_core::transaction::{self, HostRunner};
use passthrough_core::{HostReport, HostRoot, ScanOptions};

use common::{copy_fixture, ctl, fixture};

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn addr(s: &str) -> PciAddress {
    s.parse().unwrap()
}

fn scan(root: &HostRoot) -> HostReport {
    HostReport::scan(root, &ScanOptions::default())
}

fn plan_on(root: &HostRoot, plan: &Plan) -> Result<Rendered, PlanError> {
    render(root, &scan(root), plan)
}

/// Writes the rendered files under the root, and does what the commands that edit the
/// kernel arguments themselves (grubby, rpm-ostree) would do to the loader entries.
fn apply_files(root: &HostRoot, r: &Rendered) {
    for f in &r.files {
        let p = root.path(&f.path);
        match &f.after {
            Some(text) => {
                fs::create_dir_all(p.parent().unwrap()).unwrap();
                fs::write(&p, text).unwrap();
            }
            None => fs::remove_file(&p).unwrap(),
        }
    }
    let by_command = r
        .commands
        .iter()
        .any(|c| c[0] == "grubby" || c[0] == "rpm-ostree");
    if by_command {
        let mut ops: Vec<KargOp> = r
            .kernel_args
            .remove
            .iter()
            .map(|w| KargOp::RemoveExact { arg: w.clone() })
            .collect();
        ops.extend(
            r.kernel_args
                .add
                .iter()
                .map(|w| KargOp::AddExact { arg: w.clone() }),
        );
        let mut any = false;
        for dir in plan_render::LOADER_ENTRY_DIRS {
            for name in root.list_dir(dir).unwrap_or_default() {
                let path = format!("{dir}/{name}");
                let text = root.read_string(&path).unwrap();
                fs::write(root.path(&path), loader_entry::edit(&text, &ops).unwrap()).unwrap();
                any = true;
            }
        }
        assert!(
            any,
            "the fixture has loader entries to stand for the kernel's"
        );
    }
}

/// Contents of every file a list of renders touched, as they are now.
fn snapshot_files(root: &HostRoot, paths: &[String]) -> Vec<(String, Option<String>)> {
    paths
        .iter()
        .map(|p| (p.clone(), root.read_string(p).ok()))
        .collect()
}

fn reserve(gpus: &[&str]) -> Plan {
    Plan {
        reserve: gpus.iter().map(|a| addr(a)).collect(),
        ..Plan::default()
    }
}

/// Every fixture with a plan that exercises its boot loader and initramfs system.
fn cases() -> Vec<(&'static str, Plan)> {
    let full = |gpu: &str| Plan {
        enable_iommu: true,
        iommu_pt: true,
        reserve: vec![addr(gpu)],
        ignore_msrs: true,
        boot_gpu_fix: true,
        ..Plan::default()
    };
    vec![
        ("b550-blog", full("0000:08:00.0")),
        (
            "b550-blog",
            Plan {
                acs_override: true,
                ..full("0000:04:00.0")
            },
        ),
        ("b550-blog-acs", full("0000:04:00.0")),
        ("intel-igpu-nvidia", full("0000:01:00.0")),
        ("nvidia-3d-controller", full("0000:01:00.0")),
        ("two-identical-gpus", full("0000:43:00.0")),
        (
            "two-identical-gpus",
            Plan {
                reserve: vec![addr("0000:23:00.0"), addr("0000:43:00.0")],
                ..full("0000:43:00.0")
            },
        ),
        ("domain-0001", full("0001:01:00.0")),
        ("iommu-off", full("0000:06:00.0")),
        ("boot-grub-arch", full("0000:01:00.0")),
        (
            "boot-grub-arch",
            Plan {
                bind_by: BindBy::Address,
                ..full("0000:01:00.0")
            },
        ),
        ("boot-sdboot-debian", full("0000:01:00.0")),
        ("boot-sdboot-kernel-install", full("0000:01:00.0")),
    ]
}

#[test]
fn a_plan_applied_to_its_own_result_renders_to_nothing() {
    for (name, plan) in cases() {
        let (_d, root) = copy_fixture(name);
        let first = plan_on(&root, &plan).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!first.is_empty(), "{name}: {plan:?} changes something");
        // Everything it renders passes the transaction's allow-lists.
        for f in &first.files {
            assert!(transaction::path_allowed(&f.path), "{name}: {}", f.path);
        }
        for c in &first.commands {
            assert!(transaction::command_allowed(c), "{name}: {c:?}");
        }
        transaction::validate(&root, &first).unwrap();
        apply_files(&root, &first);
        let second = plan_on(&root, &plan).unwrap();
        assert!(
            second.is_empty(),
            "{name}: {plan:?} again:\n{}",
            unified_diff(&second)
        );
        // No argument is ever duplicated.
        for f in &first.files {
            if let Some(after) = &f.after {
                for arg in &first.kernel_args.add {
                    let n = after.matches(arg.as_str()).count();
                    assert!(
                        n <= 1 || f.path.contains("entries"),
                        "{name}: {arg} ×{n} in {}",
                        f.path
                    );
                }
            }
        }
    }
}

#[test]
fn releasing_what_a_plan_reserved_gives_back_the_original_files() {
    let cases = [
        ("nvidia-3d-controller", "0000:01:00.0", BindBy::Auto),
        ("intel-igpu-nvidia", "0000:01:00.0", BindBy::Auto),
        ("two-identical-gpus", "0000:43:00.0", BindBy::Auto),
        ("two-identical-gpus", "0000:23:00.0", BindBy::Ids),
        ("domain-0001", "0001:01:00.0", BindBy::Auto),
        ("iommu-off", "0000:06:00.0", BindBy::Auto),
        ("boot-grub-arch", "0000:01:00.0", BindBy::Auto),
        ("boot-grub-arch", "0000:01:00.0", BindBy::Address),
        ("boot-sdboot-debian", "0000:01:00.0", BindBy::Auto),
        ("boot-sdboot-kernel-install", "0000:01:00.0", BindBy::Auto),
    ];
    for (name, gpu, bind_by) in cases {
        let (_d, root) = copy_fixture(name);
        let plan = Plan {
            bind_by,
            ..reserve(&[gpu])
        };
        let reserved = plan_on(&root, &plan).unwrap();
        let mut paths: Vec<String> = reserved.files.iter().map(|f| f.path.clone()).collect();
        for dir in plan_render::LOADER_ENTRY_DIRS {
            for n in root.list_dir(dir).unwrap_or_default() {
                paths.push(format!("{dir}/{n}"));
            }
        }
        let original = snapshot_files(&root, &paths);
        apply_files(&root, &reserved);
        let release = Plan {
            release: vec![addr(gpu)],
            ..Plan::default()
        };
        let released = plan_on(&root, &release).unwrap();
        apply_files(&root, &released);
        assert_eq!(
            snapshot_files(&root, &paths),
            original,
            "{name}: releasing {gpu} restores every byte"
        );
        assert_eq!(released.kernel_args.add, Vec::<String>::new(), "{name}");
        assert_eq!(
            released.kernel_args.remove, reserved.kernel_args.add,
            "{name}: what was added goes"
        );
        assert!(plan_on(&root, &release).unwrap().is_empty(), "{name}");
    }
}

#[test]
fn releasing_the_blog_gpu_removes_its_ids_and_the_key() {
    let (_d, root) = copy_fixture("b550-blog");
    let r = plan_on(
        &root,
        &Plan {
            release: vec![addr("0000:08:00.0")],
            ..Plan::default()
        },
    )
    .unwrap();
    assert_eq!(r.kernel_args.remove, ["vfio_pci.ids=10de:1c02,10de:10f1"]);
    let grub = r.files[0].after.as_deref().unwrap();
    assert!(
        grub.contains("GRUB_CMDLINE_LINUX_DEFAULT=\"quiet splash amd_iommu=on kvm.ignore_msrs=1\"")
    );
    assert_eq!(r.commands, [["update-grub"]]);
}

#[test]
fn ids_merge_with_both_spellings_into_one_argument() {
    let (_d, root) = copy_fixture("b550-blog-acs");
    let grub = root.read_string("/etc/default/grub").unwrap();
    let line = grub
        .lines()
        .find(|l| l.starts_with("GRUB_CMDLINE_LINUX_DEFAULT="))
        .unwrap()
        .to_owned();
    fs::write(
        root.path("/etc/default/grub"),
        grub.replace(
            &line,
            "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet vfio_pci.ids=10DE:1c02 vfio-pci.ids=10de:10f1\"",
        ),
    )
    .unwrap();
    let r = plan_on(&root, &reserve(&["0000:04:00.0"])).unwrap();
    let after = r.files[0].after.as_deref().unwrap();
    let words = bootcfg::grub::kernel_args(after).unwrap();
    let vfio: Vec<&String> = words.iter().filter(|w| w.contains("pci.ids")).collect();
    assert_eq!(vfio.len(), 1, "{words:?}");
    assert!(
        vfio[0].ends_with("=10de:1c02,10de:10f1,1002:67ff,1002:aae0"),
        "{vfio:?}"
    );
    let modprobe = r
        .files
        .iter()
        .find(|f| f.path == bootcfg::modprobe::PATH)
        .unwrap();
    assert!(modprobe
        .after
        .as_deref()
        .unwrap()
        .contains("options vfio-pci ids=10de:1c02,10de:10f1,1002:67ff,1002:aae0\n"));
}

#[test]
fn amd_never_gets_amd_iommu_on_and_intel_gets_intel_iommu_on() {
    let r = plan_on(
        &HostRoot::new(fixture("b550-blog")),
        &Plan {
            enable_iommu: true,
            ..Plan::default()
        },
    )
    .unwrap();
    assert_eq!(r.kernel_args.remove, ["amd_iommu=on"]);
    assert!(r.kernel_args.add.is_empty());
    assert!(r
        .notes
        .iter()
        .any(|n| n.contains("not a value the kernel knows")));
    let r = plan_on(
        &HostRoot::new(fixture("boot-grub-arch")),
        &Plan {
            enable_iommu: true,
            ..Plan::default()
        },
    )
    .unwrap();
    assert_eq!(r.kernel_args.add, ["intel_iommu=on"]);
    assert_eq!(r.commands, [["grub-mkconfig", "-o", "/boot/grub/grub.cfg"]]);
    // No reservation asked: the initramfs is left alone.
    assert_eq!(r.files.len(), 1);
    // Already on (Fedora fixture): nothing to do.
    let r = plan_on(
        &HostRoot::new(fixture("intel-igpu-nvidia")),
        &Plan {
            enable_iommu: true,
            iommu_pt: true,
            ..Plan::default()
        },
    )
    .unwrap();
    assert!(r.is_empty(), "{r:?}");
}

#[test]
fn boot_gpu_fix_follows_the_kernel() {
    let fix = Plan {
        boot_gpu_fix: true,
        ..Plan::default()
    };
    // 6.6 with simpledrm.
    let r = plan_on(&HostRoot::new(fixture("boot-grub-arch")), &fix).unwrap();
    assert_eq!(r.kernel_args.add, ["initcall_blacklist=sysfb_init"]);
    // The same kernel built without simpledrm (its config says so).
    let (_d, root) = copy_fixture("boot-grub-arch");
    fs::write(
        root.path("/boot/config-6.6.8-arch1-1"),
        "CONFIG_DRM=y\n# CONFIG_DRM_SIMPLEDRM is not set\nCONFIG_FB_EFI=y\n",
    )
    .unwrap();
    let r = plan_on(&root, &fix).unwrap();
    assert_eq!(r.kernel_args.add, ["video=efifb:off"]);
    // An old kernel (5.4).
    fs::write(
        root.path("/proc/sys/kernel/osrelease"),
        "5.4.0-150-generic\n",
    )
    .unwrap();
    fs::remove_file(root.path("/boot/config-6.6.8-arch1-1")).unwrap();
    assert_eq!(
        plan_on(&root, &fix).unwrap().kernel_args.add,
        ["video=efifb:off"]
    );
    // Unknown kernel: both, each ignored by the kernel that does not use it.
    let r = plan_on(&HostRoot::new(fixture("nvidia-3d-controller")), &fix).unwrap();
    assert_eq!(
        r.kernel_args.add,
        ["video=efifb:off", "initcall_blacklist=sysfb_init"]
    );
}

#[test]
fn vfio_virqfd_only_before_6_2() {
    let r = plan_on(
        &HostRoot::new(fixture("boot-sdboot-debian")),
        &reserve(&["0000:01:00.0"]),
    )
    .unwrap();
    let modules = r
        .files
        .iter()
        .find(|f| f.path == "/etc/initramfs-tools/modules")
        .unwrap();
    assert!(modules
        .after
        .as_deref()
        .unwrap()
        .ends_with("vfio_iommu_type1\nvfio_virqfd\n"));
    assert_eq!(r.commands, [["update-initramfs", "-u", "-k", "all"]]);
    let r = plan_on(
        &HostRoot::new(fixture("boot-sdboot-kernel-install")),
        &reserve(&["0000:01:00.0"]),
    )
    .unwrap();
    let dracut = r
        .files
        .iter()
        .find(|f| f.path == bootcfg::dracut::PATH)
        .unwrap();
    assert!(!dracut.after.as_deref().unwrap().contains("virqfd"));
}

#[test]
fn identical_gpus_are_bound_by_address() {
    let root = HostRoot::new(fixture("two-identical-gpus"));
    let r = plan_on(&root, &reserve(&["0000:43:00.0"])).unwrap();
    let rule = r
        .files
        .iter()
        .find(|f| f.path == plan_render::UDEV_RULE_PATH)
        .expect("a udev rule");
    let rule = rule.after.as_deref().unwrap();
    assert!(rule.contains(
        "ACTION==\"add\", SUBSYSTEM==\"pci\", KERNEL==\"0000:43:00.0\", ATTR{driver_override}=\"vfio-pci\"\n"
    ));
    assert!(!rule.contains("0000:23:00.0"));
    assert!(
        r.kernel_args.add.is_empty(),
        "no vfio-pci.ids: {:?}",
        r.kernel_args
    );
    let modprobe = r
        .files
        .iter()
        .find(|f| f.path == bootcfg::modprobe::PATH)
        .unwrap();
    assert!(!modprobe.after.as_deref().unwrap().contains("ids="));
    assert!(r.notes.iter().any(|n| n.contains("same IDs")));
    // Reserving both cards: IDs are fine again.
    let r = plan_on(&root, &reserve(&["0000:23:00.0", "0000:43:00.0"])).unwrap();
    assert!(r
        .files
        .iter()
        .all(|f| f.path != plan_render::UDEV_RULE_PATH));
    assert!(r.kernel_args.add[0].starts_with("vfio-pci.ids=1002:73bf,"));
    // By IDs on request, with a warning.
    let r = plan_on(
        &root,
        &Plan {
            bind_by: BindBy::Ids,
            ..reserve(&["0000:43:00.0"])
        },
    )
    .unwrap();
    assert!(r.kernel_args.add[0].starts_with("vfio-pci.ids=1002:73bf,"));
    assert!(r.notes.iter().any(|n| n.contains("reserves it too")));
    // mkinitcpio gets the rule into its image.
    let r = plan_on(
        &HostRoot::new(fixture("boot-grub-arch")),
        &Plan {
            bind_by: BindBy::Address,
            ..reserve(&["0000:01:00.0"])
        },
    )
    .unwrap();
    assert!(r
        .files
        .iter()
        .any(|f| f.path == plan_render::MKINITCPIO_DROPIN_PATH));
    assert_eq!(r.commands[0], ["mkinitcpio", "-P"]);
}

#[test]
fn invalid_plans_are_refused_with_the_reason() {
    let root = HostRoot::new(fixture("b550-blog"));
    let report = scan(&root);
    let err = |plan: Plan| render(&root, &report, &plan).unwrap_err();
    assert_eq!(
        err(reserve(&["0000:0c:00.0"])),
        PlanError::UnknownDevice(addr("0000:0c:00.0"))
    );
    assert_eq!(
        err(reserve(&["0000:08:00.1"])),
        PlanError::NotAGpu(addr("0000:08:00.1"))
    );
    assert_eq!(
        err(Plan {
            release: vec![addr("0000:03:00.0")],
            ..Plan::default()
        }),
        PlanError::NotAGpu(addr("0000:03:00.0"))
    );
    assert_eq!(
        err(Plan {
            release: vec![addr("0000:08:00.0")],
            ..reserve(&["0000:08:00.0"])
        }),
        PlanError::ReserveAndRelease(addr("0000:08:00.0"))
    );
    let shared = err(reserve(&["0000:04:00.0"]));
    assert!(matches!(shared, PlanError::SharedGroup { .. }));
    let text = shared.to_string();
    assert!(
        text.contains("IOMMU group 15") && text.contains("ACS override"),
        "{text}"
    );
    // With the ACS override it renders, with a note on its cost.
    let r = render(
        &root,
        &report,
        &Plan {
            acs_override: true,
            ..reserve(&["0000:04:00.0"])
        },
    )
    .unwrap();
    assert!(r
        .kernel_args
        .add
        .contains(&"pcie_acs_override=downstream,multifunction".to_owned()));
    assert!(r.notes.iter().any(|n| n.contains("peer-to-peer DMA")));
    // A host whose boot loader is unknown: say what to add by hand.
    let root = HostRoot::new(fixture("truncated-tree"));
    let e = plan_on(
        &root,
        &Plan {
            enable_iommu: true,
            ..Plan::default()
        },
    )
    .unwrap_err();
    match &e {
        PlanError::UnknownBootLoader { add, .. } => assert_eq!(add, &["intel_iommu=on"]),
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("intel_iommu=on"));
}

#[test]
fn the_diff_names_files_and_commands() {
    let root = HostRoot::new(fixture("b550-blog"));
    let r = plan_on(
        &root,
        &Plan {
            enable_iommu: true,
            ..reserve(&["0000:08:00.0"])
        },
    )
    .unwrap();
    let diff = unified_diff(&r);
    assert!(diff.starts_with("--- a/etc/default/grub\n+++ b/etc/default/grub\n@@ "));
    assert!(diff.contains("--- /dev/null\n+++ b/etc/modprobe.d/passthrough-vfio.conf\n"));
    assert!(diff.ends_with("$ update-initramfs -u -k all\n$ update-grub\n"));
    // A removed file diffs against /dev/null.
    let (_d, copy) = copy_fixture("b550-blog");
    apply_files(&copy, &r);
    let back = plan_on(
        &copy,
        &Plan {
            release: vec![addr("0000:08:00.0")],
            ..Plan::default()
        },
    )
    .unwrap();
    assert!(
        unified_diff(&back).contains("--- a/etc/modprobe.d/passthrough-vfio.conf\n+++ /dev/null\n")
    );
}

/// `passthroughctl plan` on every layout, as text (and one as JSON).
#[test]
fn snapshots_of_plan_on_the_fixtures() {
    let runs: &[(&str, &str, &[&str])] = &[
        (
            "b550-blog",
            "iommu-gpu",
            &["--iommu", "--gpu", "0000:08:00.0"],
        ),
        ("b550-blog", "release", &["--release", "0000:08:00.0"]),
        (
            "b550-blog",
            "acs",
            &["--gpu", "04:00.0", "--acs-override", "--ignore-msrs"],
        ),
        (
            "intel-igpu-nvidia",
            "all",
            &[
                "--iommu",
                "--iommu-pt",
                "--gpu",
                "01:00.0",
                "--boot-gpu-fix",
            ],
        ),
        (
            "nvidia-3d-controller",
            "iommu-gpu",
            &["--iommu", "--gpu", "01:00.0"],
        ),
        ("two-identical-gpus", "gpu", &["--gpu", "0000:43:00.0"]),
        (
            "two-identical-gpus",
            "by-ids",
            &["--gpu", "0000:43:00.0", "--by", "ids", "--iommu-pt"],
        ),
        (
            "domain-0001",
            "iommu-gpu",
            &["--iommu", "--gpu", "0001:01:00.0", "--boot-gpu-fix"],
        ),
        ("iommu-off", "iommu-gpu", &["--iommu", "--gpu", "06:00.0"]),
        (
            "boot-grub-arch",
            "all",
            &[
                "--iommu",
                "--gpu",
                "01:00.0",
                "--ignore-msrs",
                "--boot-gpu-fix",
            ],
        ),
        (
            "boot-grub-arch",
            "by-address",
            &["--gpu", "01:00.0", "--by", "address"],
        ),
        (
            "boot-sdboot-debian",
            "iommu-gpu",
            &["--iommu", "--gpu", "01:00.0"],
        ),
        (
            "boot-sdboot-kernel-install",
            "iommu-pt-gpu",
            &["--iommu", "--iommu-pt", "--gpu", "01:00.0"],
        ),
        ("intel-igpu-nvidia", "nothing", &["--iommu", "--iommu-pt"]),
    ];
    for (name, label, args) in runs {
        let root = format!("tests/fixtures/roots/{name}");
        let mut argv = vec!["plan", "--root", root.as_str()];
        argv.extend_from_slice(args);
        let out = ctl(&argv);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{name} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        insta::assert_snapshot!(format!("plan-{name}-{label}"), stdout(&out));
    }
    let out = ctl(&[
        "--json",
        "plan",
        "--iommu",
        "--gpu",
        "0000:08:00.0",
        "--root",
        "tests/fixtures/roots/b550-blog",
    ]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["files"][0]["path"], "/etc/default/grub");
    assert!(v["files"][1]["before"].is_null());
    assert_eq!(v["commands"][1], serde_json::json!(["update-grub"]));
    assert_eq!(
        v["kernel_args"]["remove"],
        serde_json::json!(["amd_iommu=on"])
    );
    insta::assert_json_snapshot!("plan-b550-blog-json", v);
}

#[test]
fn invalid_plans_exit_2_with_one_line() {
    for args in [
        &["plan", "--gpu", "0000:04:00.0"][..],
        &["plan", "--gpu", "0000:0c:00.0"],
        &["plan", "--gpu", "08:00.1"],
        &["plan", "--gpu", "nonsense"],
        &["plan", "--gpu"],
        &["plan", "--by", "sideways"],
        &["gpus", "--iommu"],
        &["plan", "--gpu", "08:00.0", "--release", "08:00.0"],
    ] {
        let mut argv = args.to_vec();
        argv.extend(["--root", "tests/fixtures/roots/b550-blog"]);
        let o = ctl(&argv);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("passthroughctl: "));
        assert!(o.stdout.is_empty());
    }
    let o = ctl(&[
        "plan",
        "--iommu",
        "--root",
        "tests/fixtures/roots/truncated-tree",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("intel_iommu=on"));
}

/// The whole path on the fixtures that carry recorders: render, apply as a transaction
/// (the recorders log the commands inside the root), render again (nothing), roll back
/// (every byte as before).
#[test]
fn rendered_plans_go_through_transactions_with_recorders() {
    for (name, gpu) in [
        ("boot-grub-arch", "0000:01:00.0"),
        ("boot-sdboot-debian", "0000:01:00.0"),
        ("boot-sdboot-kernel-install", "0000:01:00.0"),
    ] {
        let (_d, root) = copy_fixture(name);
        let plan = Plan {
            enable_iommu: true,
            boot_gpu_fix: true,
            ..reserve(&[gpu])
        };
        let before = snapshot_tree(root.base());
        let rendered = plan_on(&root, &plan).unwrap();
        let runner = HostRunner::new(root.clone());
        let id = transaction::apply(&root, &rendered, &runner, &mut |_| {}).unwrap();
        let log = root
            .read_string("/var/log/passthrough-recorder.log")
            .unwrap();
        let want: String = rendered
            .commands
            .iter()
            .map(|c| format!("{} {}\n", c[0], c[1..].join(" ")))
            .collect();
        assert_eq!(log, want, "{name}");
        assert!(plan_on(&root, &plan).unwrap().is_empty(), "{name}");
        transaction::rollback(&root, &id, &runner, &mut |_| {}).unwrap();
        let mut after = snapshot_tree(root.base());
        after.retain(|(p, _)| !p.starts_with("var/lib/passthrough") && !p.starts_with("var/log"));
        assert_eq!(after, before, "{name}: rollback restores the tree");
    }
}

fn snapshot_tree(base: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            if m.file_type().is_symlink() {
                out.push((
                    rel,
                    fs::read_link(&p)
                        .unwrap()
                        .into_os_string()
                        .into_encoded_bytes(),
                ));
            } else if m.is_dir() {
                if rel != "var" && rel != "var/lib" && rel != "var/log" {
                    out.push((rel.clone() + "/", Vec::new()));
                }
                walk(base, &p, out);
            } else {
                out.push((rel, fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(base, base, &mut out);
    out.sort();
    out
}

#[test]
fn mkinitcpio_with_a_drop_in_directory_leaves_mkinitcpio_conf_alone() {
    let (_d, root) = copy_fixture("boot-grub-arch");
    fs::create_dir_all(root.path("/etc/mkinitcpio.conf.d")).unwrap();
    let conf_before = fs::read(root.path("/etc/mkinitcpio.conf")).unwrap();
    let reserved = plan_on(&root, &reserve(&["0000:01:00.0"])).unwrap();
    assert!(
        reserved
            .files
            .iter()
            .all(|f| f.path != "/etc/mkinitcpio.conf"),
        "the main file is not touched: {:?}",
        reserved.files.iter().map(|f| &f.path).collect::<Vec<_>>()
    );
    let dropin = reserved
        .files
        .iter()
        .find(|f| f.path == plan_render::MKINITCPIO_DROPIN_PATH)
        .expect("the drop-in is written");
    let text = dropin.after.as_deref().unwrap();
    assert!(
        text.contains("MODULES+=(vfio_pci vfio vfio_iommu_type1)"),
        "{text}"
    );
    assert!(reserved.commands.iter().any(|c| c == &["mkinitcpio", "-P"]));
    apply_files(&root, &reserved);
    assert!(
        plan_on(&root, &reserve(&["0000:01:00.0"]))
            .unwrap()
            .is_empty(),
        "idempotent"
    );
    let release = Plan {
        release: vec![addr("0000:01:00.0")],
        ..Plan::default()
    };
    let released = plan_on(&root, &release).unwrap();
    apply_files(&root, &released);
    assert!(
        !root.path(plan_render::MKINITCPIO_DROPIN_PATH).exists(),
        "the drop-in goes"
    );
    assert_eq!(
        fs::read(root.path("/etc/mkinitcpio.conf")).unwrap(),
        conf_before
    );
}
