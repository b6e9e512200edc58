//! "Try once": trial entries rendered on the GRUB and systemd-boot fixtures, refused where
//! a host cannot boot once, applied and rolled back through transactions with recorders
//! for grub-reboot, grub-editenv and bootctl, and the trial's status after a restart.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use passthrough_core::plan::{BindBy, Plan, Rendered};
use passthrough_core::plan_render::{render, PlanError};
use passthrough_core::transaction::{self, HostRunner, Progress, TransactionState};
use passthrough_core::trial::{self, TrialStatus};
use passthrough_core::{HostReport, HostRoot, ScanOptions};

use common::fixture;

const RECORDER: &str = "#!/bin/sh\n\
: \"${PASSTHROUGH_ROOT:?recorders run only inside a test root}\"\n\
mkdir -p \"$PASSTHROUGH_ROOT/var/log\"\n\
echo \"$(basename \"$0\") $*\" >> \"$PASSTHROUGH_ROOT/var/log/passthrough-recorder.log\"\n";

/// A copy of a fixture with recorders for the trial's commands.
fn copy_with_recorders(name: &str) -> (tempfile::TempDir, HostRoot) {
    let (dir, root) = common::copy_fixture(name);
    // Recorders in place of the fixture's empty stand-ins too.
    for name in [
        "grub-reboot",
        "grub-editenv",
        "bootctl",
        "update-grub",
        "update-initramfs",
    ] {
        let path = root.path("/usr/sbin").join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, RECORDER).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }
    (dir, root)
}

fn recorded(root: &HostRoot) -> Vec<String> {
    root.read_string("/var/log/passthrough-recorder.log")
        .map(|t| t.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

fn scan(root: &HostRoot) -> HostReport {
    HostReport::scan(root, &ScanOptions::default())
}

fn trial_plan(gpu: &str) -> Plan {
    Plan {
        enable_iommu: true,
        iommu_pt: true,
        reserve: vec![gpu.parse().unwrap()],
        try_once: true,
        ..Plan::default()
    }
}

fn file<'a>(r: &'a Rendered, path: &str) -> Option<&'a passthrough_core::plan::FileChange> {
    r.files.iter().find(|f| f.path == path)
}

fn quiet(_: &Progress) {}

#[test]
fn grub_trial_is_a_custom_cfg_entry_booted_once() {
    let (_d, root) = copy_with_recorders("b550-blog");
    let report = scan(&root);
    let r = render(&root, &report, &trial_plan("0000:08:00.0")).unwrap();
    // /etc/default/grub is left alone; the trial entry carries the arguments.
    assert!(file(&r, "/etc/default/grub").is_none(), "{:?}", r.files);
    let custom = file(&r, "/boot/grub/custom.cfg").expect("custom.cfg");
    assert_eq!(custom.before, None);
    let text = custom.after.as_deref().unwrap();
    assert!(
        text.contains("menuentry 'Passthrough trial boot' --id passthrough-trial {\n"),
        "{text}"
    );
    let linux = text
        .lines()
        .find(|l| l.trim_start().starts_with("linux"))
        .unwrap();
    assert_eq!(
        linux,
        "\tlinux\t/boot/vmlinuz-5.19.17 root=UUID=5d812412-e8a8-47c5-9dc0-505a28fc0eb9 ro  quiet splash vfio_pci.ids=10de:1c02,10de:10f1 kvm.ignore_msrs=1 $vt_handoff iommu=pt"
    );
    // The rest of the first entry is copied as it is.
    assert!(text.contains("\trecordfail\n\tload_video\n"));
    assert!(text.contains("\tinitrd\t/boot/initrd.img-5.19.17\n}\n"));
    assert_eq!(r.kernel_args.add, ["iommu=pt"]);
    assert_eq!(r.kernel_args.remove, ["amd_iommu=on"]);
    // The IDs stay on the command line only: no `options vfio-pci ids=` for every boot.
    let modprobe = file(&r, "/etc/modprobe.d/passthrough-vfio.conf").unwrap();
    let modprobe = modprobe.after.as_deref().unwrap();
    assert!(!modprobe.contains("options vfio-pci"), "{modprobe}");
    assert!(modprobe.contains("softdep nvidia pre: vfio-pci"));
    // The one-shot request comes last, after the initramfs.
    assert_eq!(
        r.commands.last().unwrap(),
        &["grub-reboot".to_owned(), "passthrough-trial".to_owned()]
    );
    assert_eq!(r.commands[0][0], "update-initramfs");
    // The plan that makes it permanent is the same without the trial.
    assert_eq!(
        r.permanent,
        Some(Plan {
            try_once: false,
            ..trial_plan("0000:08:00.0")
        })
    );
}

#[test]
fn systemd_boot_trial_copies_the_running_kernels_entry() {
    let (_d, root) = copy_with_recorders("boot-sdboot-debian");
    let report = scan(&root);
    let plan = Plan {
        iommu_pt: true,
        ignore_msrs: true,
        try_once: true,
        ..Plan::default()
    };
    let r = render(&root, &report, &plan).unwrap();
    assert_eq!(r.files.len(), 1, "{:?}", r.files);
    let f = &r.files[0];
    assert_eq!(f.path, "/boot/efi/loader/entries/passthrough-trial.conf");
    let source = root
        .read_string(
            "/boot/efi/loader/entries/3f9a1c2e4b5d6e7f8091a2b3c4d5e6f7-6.1.0-13-amd64.conf",
        )
        .unwrap();
    let expected = source
        .replace("title      Debian GNU/Linux 12 (bookworm)", "title Passthrough trial boot")
        .replace(
            "systemd.machine_id=3f9a1c2e4b5d6e7f8091a2b3c4d5e6f7",
            "systemd.machine_id=3f9a1c2e4b5d6e7f8091a2b3c4d5e6f7 iommu=pt kvm.ignore_msrs=1 kvm.report_ignored_msrs=0",
        );
    assert_eq!(f.after.as_deref(), Some(expected.as_str()));
    assert_eq!(
        r.commands,
        [["bootctl", "set-oneshot", "passthrough-trial.conf"]]
    );
    // The trial entry is not one of the entries a permanent plan edits.
    fs::write(root.path(&f.path), f.after.as_deref().unwrap()).unwrap();
    let permanent = render(&root, &report, r.permanent.as_ref().unwrap()).unwrap();
    let paths: Vec<&str> = permanent.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/boot/efi/loader/entries/3f9a1c2e4b5d6e7f8091a2b3c4d5e6f7-6.1.0-12-amd64.conf",
            "/boot/efi/loader/entries/3f9a1c2e4b5d6e7f8091a2b3c4d5e6f7-6.1.0-13-amd64.conf",
            "/boot/efi/loader/entries/passthrough-trial.conf",
        ]
    );
    assert_eq!(permanent.files[2].after, None, "the trial entry goes");
}

#[test]
fn hosts_without_a_one_shot_boot_refuse_with_the_reason() {
    for (name, gpu, words) in [
        ("two-identical-gpus", "0000:43:00.0", "kernelstub"),
        ("intel-igpu-nvidia", "0000:01:00.0", "grubby"),
    ] {
        let root = HostRoot::new(fixture(name));
        let report = scan(&root);
        let plan = Plan {
            bind_by: BindBy::Ids,
            ..trial_plan(gpu)
        };
        let err = render(&root, &report, &plan).unwrap_err();
        assert!(matches!(err, PlanError::Trial(_)), "{name}: {err:?}");
        assert!(err.message().contains(words), "{name}: {}", err.message());
        assert!(trial::target(&root, &report).is_err());
    }
    // A reservation by address is a udev rule for every boot: no trial of it.
    let root = HostRoot::new(fixture("b550-blog"));
    let plan = Plan {
        bind_by: BindBy::Address,
        ..trial_plan("0000:08:00.0")
    };
    let err = render(&root, &scan(&root), &plan).unwrap_err();
    assert!(matches!(err, PlanError::Trial(_)));
    assert!(err.message().contains("0000:08:00.0"), "{}", err.message());
    // A grub.cfg without the one-shot block cannot start a trial entry.
    let (_d, copy) = copy_with_recorders("b550-blog");
    let cfg = copy.read_string("/boot/grub/grub.cfg").unwrap();
    fs::write(
        copy.path("/boot/grub/grub.cfg"),
        cfg.replace("next_entry", "x"),
    )
    .unwrap();
    let err = render(&copy, &scan(&copy), &trial_plan("0000:08:00.0")).unwrap_err();
    assert!(err.message().contains("next_entry"), "{}", err.message());
}

#[test]
fn a_users_custom_cfg_keeps_its_entries() {
    let (_d, root) = copy_with_recorders("b550-blog");
    let mine = "menuentry 'Windows' {\n\tchainloader /EFI/Microsoft/Boot/bootmgfw.efi\n}\n";
    fs::write(root.path("/boot/grub/custom.cfg"), mine).unwrap();
    let report = scan(&root);
    let r = render(&root, &report, &trial_plan("0000:08:00.0")).unwrap();
    let after = file(&r, "/boot/grub/custom.cfg")
        .unwrap()
        .after
        .clone()
        .unwrap();
    assert!(after.starts_with(mine));
    fs::write(root.path("/boot/grub/custom.cfg"), &after).unwrap();
    // Trying the same again changes nothing; making it permanent gives the file back.
    let again = render(&root, &report, &trial_plan("0000:08:00.0")).unwrap();
    assert!(
        file(&again, "/boot/grub/custom.cfg").is_none(),
        "{:?}",
        again.files
    );
    let permanent = render(&root, &report, r.permanent.as_ref().unwrap()).unwrap();
    let custom = file(&permanent, "/boot/grub/custom.cfg").unwrap();
    assert_eq!(custom.after.as_deref(), Some(mine));
    assert!(file(&permanent, "/etc/default/grub").is_some());
}

/// The whole life of a trial on a copy of the blog's host: apply (the one-shot request is
/// made), status before and after a restart, rollback (the request is cancelled, not made
/// again, and every file is back), and making it permanent.
#[test]
fn a_trial_through_transactions_and_restarts() {
    let (_d, root) = copy_with_recorders("b550-blog");
    let report = scan(&root);
    let runner = HostRunner::new(root.clone());
    let grub_before = root.read_string("/etc/default/grub").unwrap();
    let r = render(&root, &report, &trial_plan("0000:08:00.0")).unwrap();
    let id = transaction::apply(&root, &r, &runner, &mut quiet).unwrap();
    assert_eq!(
        recorded(&root),
        [
            "update-initramfs -u -k all",
            "grub-reboot passthrough-trial"
        ]
    );
    let records = transaction::list(&root).unwrap();
    assert!(records[0].is_trial());
    assert_eq!(records[0].permanent, r.permanent);

    // Not restarted yet (no boot time newer than the trial).
    let (record, status) = trial::current(&root, &report, &records).unwrap();
    assert_eq!(record.id, id);
    assert_eq!(status, TrialStatus::Pending);

    // Restarted into the old arguments: the trial entry did not come up.
    let finished = record.finished.unwrap();
    fs::write(
        root.path("/proc/stat"),
        format!("cpu 1 2 3\nbtime {}\n", finished + 60),
    )
    .unwrap();
    let (_, status) = trial::current(&root, &scan(&root), &records).unwrap();
    assert_eq!(status, TrialStatus::FellBack);

    // Restarted into the trial entry: its arguments are on the running command line.
    let cmdline = root.read_string("/proc/cmdline").unwrap();
    let trial_cmdline = cmdline.replace("amd_iommu=on ", "").trim_end().to_owned() + " iommu=pt\n";
    fs::write(root.path("/proc/cmdline"), &trial_cmdline).unwrap();
    let booted = scan(&root);
    let (_, status) = trial::current(&root, &booted, &records).unwrap();
    assert_eq!(status, TrialStatus::Worked);

    // Roll back: files as before, the one-shot request cancelled instead of made again.
    transaction::rollback(&root, &id, &runner, &mut quiet).unwrap();
    assert!(!root.exists("/boot/grub/custom.cfg"));
    assert!(!root.exists("/etc/modprobe.d/passthrough-vfio.conf"));
    assert_eq!(
        recorded(&root)[2..],
        [
            "update-initramfs -u -k all",
            "grub-editenv /boot/grub/grubenv unset next_entry"
        ]
    );
    let records = transaction::list(&root).unwrap();
    assert_eq!(records[0].state, TransactionState::RolledBack);
    assert!(trial::current(&root, &booted, &records).is_none());

    // Again, and this time make it permanent: /etc/default/grub changes, the entry goes.
    let r = render(&root, &report, &trial_plan("0000:08:00.0")).unwrap();
    transaction::apply(&root, &r, &runner, &mut quiet).unwrap();
    let permanent = render(&root, &booted, r.permanent.as_ref().unwrap()).unwrap();
    let made_permanent = transaction::apply(&root, &permanent, &runner, &mut quiet).unwrap();
    assert!(!root.exists("/boot/grub/custom.cfg"));
    assert_ne!(root.read_string("/etc/default/grub").unwrap(), grub_before);
    let modprobe = root
        .read_string("/etc/modprobe.d/passthrough-vfio.conf")
        .unwrap();
    assert!(
        modprobe.contains("options vfio-pci ids=10de:1c02,10de:10f1"),
        "{modprobe}"
    );
    let records = transaction::list(&root).unwrap();
    assert!(trial::current(&root, &booted, &records).is_none());
    let record = records.iter().find(|r| r.id == made_permanent).unwrap();
    assert!(!record.is_trial());
    assert_eq!(record.permanent, None);
    // And the permanent plan re-rendered is nothing to do.
    assert!(render(&root, &booted, r.permanent.as_ref().unwrap())
        .unwrap()
        .is_empty());
}

mod properties {
    use super::*;
    use passthrough_core::bootcfg::{apply_ops, kernel_cmdline, KargOp};
    use proptest::prelude::*;

    fn arg() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z_.]{1,8}(=[a-z0-9:,]{1,6})?",
            Just("$vt_handoff".to_owned()),
            Just("vfio-pci.ids=10de:1b80".to_owned()),
            Just("amd_iommu=on".to_owned()),
        ]
    }

    fn grub_cfg() -> impl Strategy<Value = (String, Vec<String>)> {
        (
            prop::collection::vec(arg(), 0..8),
            "[ \t]{1,3}",
            prop::collection::vec("[ -~]{0,30}", 0..4),
            any::<bool>(),
        )
            .prop_map(|(args, gap, noise, nested)| {
                let mut cfg = String::from(
                    "if [ \"${next_entry}\" ] ; then\n  set default=\"${next_entry}\"\nfi\n",
                );
                for n in &noise {
                    cfg.push_str(&format!("# {n}\n"));
                }
                cfg.push_str("menuentry 'Linux' --class os {\n\tinsmod ext2\n");
                if nested {
                    cfg.push_str(
                        "\tif [ x$grub_platform = xefi ]; then\n\t\tinsmod efi_gop\n\tfi\n",
                    );
                }
                cfg.push_str(&format!(
                    "\tlinux{gap}/vmlinuz-6.6 root=/dev/sda2 ro {}\n\tinitrd\t/initrd.img\n}}\n",
                    args.join(" ")
                ));
                cfg.push_str("source ${config_directory}/custom.cfg\n");
                let mut words = vec!["root=/dev/sda2".to_owned(), "ro".to_owned()];
                words.extend(args);
                (cfg, words)
            })
    }

    fn ops() -> impl Strategy<Value = Vec<KargOp>> {
        prop::collection::vec(
            prop_oneof![
                // What a plan adds is always a plain argument ($… is GRUB's, not ours).
                arg()
                    .prop_filter("plain", |a| !a.starts_with('$'))
                    .prop_map(|a| KargOp::AddExact { arg: a }),
                arg().prop_map(|a| KargOp::RemoveExact { arg: a }),
                "[a-z_.]{1,8}".prop_map(|k| KargOp::RemoveKey { key: k }),
                ("[a-z_.]{1,8}", "[a-z0-9]{1,4}").prop_map(|(k, v)| KargOp::SetKey {
                    key: k,
                    value: Some(v)
                }),
            ],
            0..5,
        )
    }

    /// A report of a GRUB host whose menu is /boot/grub/grub.cfg.
    fn grub_report() -> HostReport {
        let report = scan(&HostRoot::new(fixture("b550-blog")));
        assert_eq!(
            report.boot_loader.grub_cfg.as_deref(),
            Some("/boot/grub/grub.cfg")
        );
        report
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// The trial entry's `linux` line has exactly the arguments the operations give, and
        /// the rest of the first entry is copied byte for byte.
        #[test]
        fn the_trial_entry_has_the_edited_arguments((cfg, words) in grub_cfg(), ops in ops()) {
            let dir = tempfile::tempdir().unwrap();
            let root = HostRoot::new(dir.path());
            fs::create_dir_all(root.path("/boot/grub")).unwrap();
            fs::write(root.path("/boot/grub/grub.cfg"), &cfg).unwrap();
            let report = grub_report();
            let target = trial::target(&root, &report).unwrap();
            prop_assert_eq!(trial::base_args(&root, &target).unwrap(), words.clone());
            let text = trial::render(&root, &target, &ops, None).unwrap();
            let linux = text.lines().find(|l| l.trim_start().starts_with("linux")).unwrap();
            let args_at = linux.find("/vmlinuz-6.6").unwrap() + "/vmlinuz-6.6".len();
            let got = kernel_cmdline::kernel_args(&linux[args_at..]).unwrap();
            prop_assert_eq!(got, apply_ops(&words, &ops));
            let entry_start = cfg.find("menuentry").unwrap();
            let body_start = cfg[entry_start..].find('\n').unwrap() + entry_start + 1;
            let body_end = cfg.find("\tlinux").unwrap();
            prop_assert!(text.contains(&cfg[body_start..body_end]));
        }

        /// Any text as grub.cfg: a target or a reason, never a panic.
        #[test]
        fn any_grub_cfg_gives_a_target_or_a_reason(cfg in "(menuentry |linux|\\{|\\}|next_entry|custom.cfg|[ \t\n]|[a-z$]{1,4}){0,60}") {
            let dir = tempfile::tempdir().unwrap();
            let root = HostRoot::new(dir.path());
            fs::create_dir_all(root.path("/boot/grub")).unwrap();
            fs::write(root.path("/boot/grub/grub.cfg"), &cfg).unwrap();
            let report = grub_report();
            if let Ok(target) = trial::target(&root, &report) {
                if trial::base_args(&root, &target).is_ok() {
                    let _ = trial::render(&root, &target, &[], None);
                }
            }
        }
    }
}
