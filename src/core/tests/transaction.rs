//! Transactions on copies of the fixture roots, with recorders in place of the regeneration
//! commands: apply, rollback, a failing command, and a fault injected at every step.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use passthrough_core::plan::Plan;
use passthrough_core::plan::{FileChange, KernelArgsSummary, Rendered};
use passthrough_core::plan_render::render;
use passthrough_core::transaction::{
    self, apply, apply_with_hooks, list, recover, recover_with_hooks, rollback, rollback_forced,
    ApplyError, ApplyHooks, CommandRunner, HostRunner, Progress, TransactionId, TransactionState,
};
use passthrough_core::{HostReport, HostRoot, ScanOptions};

use common::fixture;

const RECORDER: &str = "#!/bin/sh\n\
: \"${PASSTHROUGH_ROOT:?recorders run only inside a test root}\"\n\
mkdir -p \"$PASSTHROUGH_ROOT/var/log\"\n\
echo \"$(basename \"$0\") $*\" >> \"$PASSTHROUGH_ROOT/var/log/passthrough-recorder.log\"\n\
echo \"recorded $(basename \"$0\")\"\n";

/// Puts a recorder at `dir/name` inside the root (replacing the fixture's empty stand-in).
pub fn install_recorder(root: &HostRoot, dir: &str, name: &str, fail: bool) {
    let path = root.path(dir).join(name);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut text = RECORDER.to_owned();
    if fail {
        text.push_str("echo \"$(basename \"$0\"): simulated failure\" >&2\nexit 1\n");
    }
    fs::write(&path, text).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
}

pub fn recorded(root: &HostRoot) -> Vec<String> {
    root.read_string("/var/log/passthrough-recorder.log")
        .map(|t| t.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

#[derive(Debug, PartialEq, Eq)]
enum Entry {
    Dir(u32),
    File(u32, Vec<u8>),
    Link(PathBuf),
}

/// Everything under the root except the transaction store and the recorder log, without
/// following symlinks (the fixtures have sysfs-style cycles).
fn tree(root: &HostRoot) -> BTreeMap<PathBuf, Entry> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Entry>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().to_path_buf();
            if rel.starts_with("var/lib/passthrough")
                || rel == Path::new("var/log/passthrough-recorder.log")
            {
                continue;
            }
            let m = fs::symlink_metadata(&p).unwrap();
            let mode = m.permissions().mode() & 0o7777;
            if m.file_type().is_symlink() {
                out.insert(rel, Entry::Link(fs::read_link(&p).unwrap()));
            } else if m.is_dir() {
                out.insert(rel, Entry::Dir(mode));
                walk(base, &p, out);
            } else {
                out.insert(rel, Entry::File(mode, fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root.base(), root.base(), &mut out);
    // var/ and var/log may be created by the store and the recorders.
    out.retain(|p, e| {
        !(matches!(e, Entry::Dir(_))
            && ["var", "var/lib", "var/log"].contains(&p.to_str().unwrap_or("")))
    });
    out
}

fn temp_files(root: &HostRoot) -> Vec<PathBuf> {
    tree(root)
        .into_keys()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.contains(".passthrough-"))
        })
        .collect()
}

fn v(s: &[&str]) -> Vec<String> {
    s.iter().map(|x| x.to_string()).collect()
}

/// A hand-made change of the b550-blog root: edit a file, create one in a directory that
/// does not exist yet, remove one; then two regeneration commands.
fn b550_change(root: &HostRoot) -> Rendered {
    let grub = root.read_string("/etc/default/grub").unwrap();
    let modules = root.read_string("/etc/initramfs-tools/modules").unwrap();
    Rendered {
        files: vec![
            FileChange {
                path: "/etc/default/grub".into(),
                after: Some(grub.replace("amd_iommu=on ", "iommu=pt ")),
                before: Some(grub),
            },
            FileChange {
                path: "/etc/modprobe.d/passthrough-vfio.conf".into(),
                before: None,
                after: Some("options vfio-pci ids=10de:1c02,10de:10f1\n".into()),
            },
            FileChange {
                path: "/etc/initramfs-tools/modules".into(),
                before: Some(modules),
                after: None,
            },
        ],
        commands: vec![
            v(&["update-initramfs", "-u", "-k", "all"]),
            v(&["update-grub"]),
        ],
        kernel_args: KernelArgsSummary {
            add: v(&["iommu=pt"]),
            remove: v(&["amd_iommu=on"]),
        },
        notes: Vec::new(),
        permanent: None,
    }
}

/// A copy of only the parts of a fixture root that transactions touch (configuration, boot
/// files, programs): much faster to copy and compare than the sysfs trees.
pub fn copy_config(name: &str) -> (tempfile::TempDir, HostRoot) {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("root");
    let src = fixture(name);
    for part in ["etc", "boot", "efi", "usr/bin", "usr/sbin", "proc"] {
        if src.join(part).exists() {
            let to = dest.join(part);
            fs::create_dir_all(to.parent().unwrap()).unwrap();
            let status = std::process::Command::new("cp")
                .arg("-a")
                .arg(src.join(part))
                .arg(&to)
                .status()
                .unwrap();
            assert!(status.success());
        }
    }
    (dir, HostRoot::new(dest))
}

fn b550_with_recorders(fail_grub: bool) -> (tempfile::TempDir, HostRoot) {
    let (dir, root) = copy_config("b550-blog");
    install_recorder(&root, "/usr/sbin", "update-initramfs", false);
    install_recorder(&root, "/usr/sbin", "update-grub", fail_grub);
    (dir, root)
}

fn quiet(_: &Progress) {}

#[test]
fn apply_writes_runs_and_rollback_restores_byte_for_byte() {
    let (_d, root) = b550_with_recorders(false);
    fs::set_permissions(
        root.path("/etc/default/grub"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let original = tree(&root);
    let change = b550_change(&root);
    let runner = HostRunner::new(root.clone());
    let mut lines = Vec::new();
    let mut started = Vec::new();
    let mut steps_before_start = 0;
    let id = apply(&root, &change, &runner, &mut |p| match p {
        Progress::Output { line } => lines.push(line.clone()),
        Progress::Started { id } => started.push(id.clone()),
        Progress::Step { .. } => steps_before_start += usize::from(started.is_empty()),
    })
    .unwrap();
    // The ID is reported once, before the first step, and is the one returned.
    assert_eq!(started, [id.as_str()]);
    assert_eq!(steps_before_start, 0);
    for f in &change.files {
        assert_eq!(
            root.read_string(&f.path).ok(),
            f.after,
            "{} has its new content",
            f.path
        );
    }
    // Mode of the old file kept; a new file gets 0644.
    let mode = |p: &str| fs::metadata(root.path(p)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode("/etc/default/grub"), 0o600);
    assert_eq!(mode("/etc/modprobe.d/passthrough-vfio.conf"), 0o644);
    assert_eq!(
        recorded(&root),
        ["update-initramfs -u -k all", "update-grub "]
    );
    assert_eq!(lines, ["recorded update-initramfs", "recorded update-grub"]);
    // Backups and journal are on disk.
    let store = root.path(transaction::STATE_DIR).join(id.as_str());
    assert_eq!(
        fs::read_to_string(store.join("backup/etc/default/grub")).unwrap(),
        change.files[0].before.as_deref().unwrap()
    );
    let journal = fs::read_to_string(store.join("journal.json")).unwrap();
    assert!(journal.contains("recorded update-grub"), "{journal}");
    let records = list(&root).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].state, TransactionState::Applied);
    assert_eq!(records[0].files.len(), 3);
    assert!(
        records[0].summary.contains("iommu=pt"),
        "{}",
        records[0].summary
    );

    rollback(&root, &id, &runner, &mut quiet).unwrap();
    assert_eq!(tree(&root), original, "rollback restores every byte");
    assert_eq!(recorded(&root).len(), 4, "the commands ran again");
    assert_eq!(list(&root).unwrap()[0].state, TransactionState::RolledBack);
    // A second rollback is refused.
    assert!(matches!(
        rollback(&root, &id, &runner, &mut quiet),
        Err(ApplyError::WrongState { .. })
    ));
}

#[test]
fn a_failing_command_restores_every_file() {
    let (_d, root) = b550_with_recorders(true);
    let original = tree(&root);
    let change = b550_change(&root);
    let runner = HostRunner::new(root.clone());
    let err = apply(&root, &change, &runner, &mut quiet).unwrap_err();
    match &err {
        ApplyError::CommandFailed {
            argv,
            restored: true,
            ..
        } => assert_eq!(argv, &v(&["update-grub"])),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("update-grub"), "{err}");
    assert_eq!(tree(&root), original);
    // Both commands ran, then ran again on the restored files (update-grub fails again).
    assert_eq!(recorded(&root).len(), 4, "{:?}", recorded(&root));
    let records = list(&root).unwrap();
    assert_eq!(records[0].state, TransactionState::FailedAndRestored);
    let error = records[0].error.as_deref().unwrap();
    assert!(error.contains("update-grub"), "{error}");
    let store = root
        .path(transaction::STATE_DIR)
        .join(records[0].id.as_str());
    let journal = fs::read_to_string(store.join("journal.json")).unwrap();
    assert!(journal.contains("simulated failure"), "{journal}");
    assert!(temp_files(&root).is_empty());
}

struct Injected;

fn silence_injected_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<Injected>().is_none() {
                default(info);
            }
        }));
    });
}

/// Applies `change` with the process "dying" at fault point `k`. Returns false when the
/// transaction finished before reaching `k`.
fn apply_dying_at(root: &HostRoot, change: &Rendered, k: usize) -> bool {
    let runner = HostRunner::new(root.clone());
    let hooks = ApplyHooks {
        before_step: Box::new(move |step| {
            if step == k {
                std::panic::panic_any(Injected);
            }
        }),
    };
    let result = catch_unwind(AssertUnwindSafe(|| {
        apply_with_hooks(root, change, &runner, &mut quiet, &hooks)
    }));
    match result {
        Ok(r) => {
            r.unwrap();
            false
        }
        Err(payload) => {
            assert!(payload.downcast_ref::<Injected>().is_some());
            true
        }
    }
}

/// Fault injection on one change; returns the number of faults injected.
pub fn inject_every_fault(setup: &dyn Fn() -> (tempfile::TempDir, HostRoot, Rendered)) -> usize {
    silence_injected_panics();
    let mut faults = 0;
    for k in 0.. {
        let (_d, root, change) = setup();
        let original = tree(&root);
        if !apply_dying_at(&root, &change, k) {
            assert!(k > 0);
            // Without a fault the change is complete.
            for f in &change.files {
                assert_eq!(root.read_string(&f.path).ok(), f.after);
            }
            break;
        }
        faults += 1;
        // Every file is all old or all new.
        for f in &change.files {
            let now = root.read_string(&f.path).ok();
            assert!(
                now == f.before || now == f.after,
                "fault {k}: {} is neither old nor new: {now:?}",
                f.path
            );
        }
        let records = list(&root).unwrap();
        if let Some(r) = records.first() {
            assert_eq!(r.state, TransactionState::Interrupted, "fault {k}");
            // Nothing else may happen until it is recovered.
            let err = apply(&root, &change, &HostRunner::new(root.clone()), &mut quiet);
            assert!(matches!(
                err,
                Err(ApplyError::Pending(_)) | Err(ApplyError::Stale(_))
            ));
        }
        // Every other fault: the recovery itself dies once before it succeeds.
        let runner = HostRunner::new(root.clone());
        if k % 2 == 1 && !records.is_empty() {
            let hooks = ApplyHooks {
                before_step: Box::new(|_| std::panic::panic_any(Injected)),
            };
            let died = catch_unwind(AssertUnwindSafe(|| {
                recover_with_hooks(&root, &runner, &hooks)
            }));
            assert!(died.is_err());
            faults += 1;
        }
        let recovered = recover(&root, &runner).unwrap();
        assert_eq!(recovered.len(), records.len(), "fault {k}");
        assert_eq!(
            tree(&root),
            original,
            "fault {k}: recovery restores every byte"
        );
        assert!(temp_files(&root).is_empty(), "fault {k}");
        for r in list(&root).unwrap() {
            assert_eq!(r.state, TransactionState::FailedAndRestored, "fault {k}");
        }
        assert!(recover(&root, &runner).unwrap().is_empty());
    }
    faults
}

#[test]
fn a_fault_at_every_step_leaves_whole_files_and_recovery_restores_them() {
    let faults = inject_every_fault(&|| {
        let (d, root) = b550_with_recorders(false);
        let change = b550_change(&root);
        (d, root, change)
    });
    // 1 start + 5 per file + 2 per command + 1 end, plus the recoveries that died.
    assert!(faults >= 3 * 5 + 2 * 2 + 2, "{faults}");
    eprintln!("transaction fault injection: {faults} faults injected");
}

#[test]
fn rollback_refuses_files_changed_since_unless_forced() {
    let (_d, root) = b550_with_recorders(false);
    let original = tree(&root);
    let change = b550_change(&root);
    let runner = HostRunner::new(root.clone());
    let id = apply(&root, &change, &runner, &mut quiet).unwrap();
    fs::write(root.path("/etc/default/grub"), "GRUB_TIMEOUT=1\n").unwrap();
    let err = rollback(&root, &id, &runner, &mut quiet).unwrap_err();
    match &err {
        ApplyError::ChangedSince { paths, .. } => assert_eq!(paths, &v(&["/etc/default/grub"])),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("/etc/default/grub"));
    assert_eq!(
        root.read_string("/etc/default/grub").unwrap(),
        "GRUB_TIMEOUT=1\n",
        "nothing restored"
    );
    rollback_forced(&root, &id, &runner, &mut quiet).unwrap();
    assert_eq!(tree(&root), original);
}

#[test]
fn refuses_paths_commands_and_stale_plans_before_writing_anything() {
    let (_d, root) = b550_with_recorders(false);
    let original = tree(&root);
    let runner = HostRunner::new(root.clone());
    let good = b550_change(&root);
    let with_path = |path: &str| {
        let mut r = good.clone();
        r.files[1].path = path.into();
        r
    };
    for path in [
        "/etc/shadow",
        "/etc/modprobe.d/../../shadow",
        "etc/modprobe.d/x.conf",
        "/etc/modprobe.d/sub/x.conf",
        "/etc/default/grub",
    ] {
        assert!(
            matches!(
                apply(&root, &with_path(path), &runner, &mut quiet),
                Err(ApplyError::PathNotAllowed(_))
            ),
            "{path}"
        );
    }
    let mut bad_cmd = good.clone();
    bad_cmd.commands.push(v(&["sh", "-c", "touch /tmp/x"]));
    assert!(matches!(
        apply(&root, &bad_cmd, &runner, &mut quiet),
        Err(ApplyError::CommandNotAllowed(_))
    ));
    let mut stale = good.clone();
    stale.files[0].before = Some("something else\n".into());
    assert!(matches!(
        apply(&root, &stale, &runner, &mut quiet),
        Err(ApplyError::Stale(_))
    ));
    // A symlink in place of a file is refused too.
    std::os::unix::fs::symlink("/etc/passwd", root.path("/etc/booster.yaml")).unwrap();
    let link = Rendered {
        files: vec![FileChange {
            path: "/etc/booster.yaml".into(),
            before: root.read_string("/etc/booster.yaml").ok(),
            after: Some("x\n".into()),
        }],
        ..Rendered::default()
    };
    assert!(matches!(
        apply(&root, &link, &runner, &mut quiet),
        Err(ApplyError::PathNotAllowed(_))
    ));
    fs::remove_file(root.path("/etc/booster.yaml")).unwrap();
    assert_eq!(tree(&root), original);
    assert!(list(&root).unwrap().is_empty());
    assert!(recorded(&root).is_empty());
}

#[test]
fn ids_from_outside_are_validated() {
    let (_d, root) = copy_config("b550-blog");
    let runner = HostRunner::new(root.clone());
    for bad in ["../../etc", "a/b", "", "x y"] {
        assert!(matches!(
            TransactionId::parse(bad),
            Err(ApplyError::InvalidId(_))
        ));
    }
    let missing = TransactionId::parse("20240101-000000-abcdef").unwrap();
    assert!(matches!(
        rollback(&root, &missing, &runner, &mut quiet),
        Err(ApplyError::NotFound(_))
    ));
}

#[test]
fn the_runner_never_runs_the_build_machines_tools() {
    // The fixture's own stand-ins are empty files; without them nothing is found, even if
    // this machine has update-grub.
    let (_d, root) = copy_config("iommu-off");
    fs::remove_file(root.path("/usr/sbin/update-grub")).unwrap();
    let runner = HostRunner::new(root.clone());
    let err = runner.run(&v(&["update-grub"]), &mut |_| {}).unwrap_err();
    assert!(err.contains("not installed"), "{err}");
    assert!(runner.run(&v(&["sh", "-c", "true"]), &mut |_| {}).is_err());
    assert!(runner.resolve("../../bin/sh").is_err());
    // With a recorder it runs inside the root, with PASSTHROUGH_ROOT set.
    install_recorder(&root, "/usr/sbin", "update-grub", false);
    let mut out = Vec::new();
    runner
        .run(&v(&["update-grub"]), &mut |l| out.push(l.to_owned()))
        .unwrap();
    assert_eq!(out, ["recorded update-grub"]);
    assert_eq!(recorded(&root), ["update-grub "]);
    assert_eq!(
        runner.resolve("update-grub").unwrap(),
        root.path("/usr/sbin/update-grub")
    );
}

#[test]
fn list_is_newest_first() {
    let (_d, root) = b550_with_recorders(false);
    let runner = HostRunner::new(root.clone());
    let first = apply(&root, &b550_change(&root), &runner, &mut quiet).unwrap();
    let grub = root.read_string("/etc/default/grub").unwrap();
    let second_change = Rendered {
        files: vec![FileChange {
            path: "/etc/default/grub".into(),
            after: Some(grub.replace("GRUB_TIMEOUT=0", "GRUB_TIMEOUT=3")),
            before: Some(grub),
        }],
        commands: vec![v(&["update-grub"])],
        ..Rendered::default()
    };
    // IDs made in the same second still sort by time, then ID; make the order certain.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = apply(&root, &second_change, &runner, &mut quiet).unwrap();
    let records = list(&root).unwrap();
    assert_eq!(
        records.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        [second.clone(), first.clone()]
    );
    // Rolling back the older one first is refused: the later one changed its file.
    assert!(matches!(
        rollback(&root, &first, &runner, &mut quiet),
        Err(ApplyError::ChangedSince { .. })
    ));
    rollback(&root, &second, &runner, &mut quiet).unwrap();
    rollback(&root, &first, &runner, &mut quiet).unwrap();
    let json = serde_json::to_value(list(&root).unwrap()).unwrap();
    assert_eq!(json[0]["state"], "rolled-back");
}

/// A runner that fails every command, to check that apply never runs anything before the
/// files are in place and journaled.
struct Refuse;

impl CommandRunner for Refuse {
    fn run(&self, _argv: &[String], _output: &mut dyn FnMut(&str)) -> Result<(), String> {
        Err("refused".into())
    }
}

#[test]
fn an_empty_change_still_journals_and_a_custom_runner_can_fail() {
    let (_d, root) = b550_with_recorders(false);
    let original = tree(&root);
    let change = b550_change(&root);
    let err = apply(&root, &change, &Refuse, &mut quiet).unwrap_err();
    assert!(matches!(err, ApplyError::CommandFailed { .. }));
    assert_eq!(tree(&root), original);
}

/// Recorders to put in place: (directory, command).
type Recorders = &'static [(&'static str, &'static str)];

fn rendered_setup(
    name: &'static str,
    gpu: &'static str,
    recorders: Recorders,
) -> impl Fn() -> (tempfile::TempDir, HostRoot, Rendered) {
    // Rendered once on the fixture itself; applied to copies of its configuration.
    let fixture_root = HostRoot::new(fixture(name));
    let report = HostReport::scan(&fixture_root, &ScanOptions::default());
    let plan = Plan {
        enable_iommu: true,
        iommu_pt: true,
        boot_gpu_fix: true,
        reserve: vec![gpu.parse().unwrap()],
        ..Plan::default()
    };
    let change = render(&fixture_root, &report, &plan).unwrap();
    move || {
        let (d, root) = copy_config(name);
        for (dir, cmd) in recorders {
            install_recorder(&root, dir, cmd, false);
        }
        (d, root, change.clone())
    }
}

#[test]
fn a_fault_at_every_step_of_rendered_plans() {
    let cases: [(&str, &str, Recorders); 5] = [
        ("boot-grub-arch", "0000:01:00.0", &[]),
        ("boot-sdboot-debian", "0000:01:00.0", &[]),
        ("boot-sdboot-kernel-install", "0000:01:00.0", &[]),
        (
            "two-identical-gpus",
            "0000:43:00.0",
            &[("/usr/bin", "booster"), ("/usr/bin", "kernelstub")],
        ),
        (
            "b550-blog",
            "0000:08:00.0",
            &[
                ("/usr/sbin", "update-grub"),
                ("/usr/sbin", "update-initramfs"),
            ],
        ),
    ];
    let mut total = 0;
    for (name, gpu, recorders) in cases {
        let faults = inject_every_fault(&rendered_setup(name, gpu, recorders));
        eprintln!("{name}: {faults} faults injected");
        assert!(faults > 10, "{name}: {faults}");
        total += faults;
    }
    eprintln!("rendered plans: {total} faults injected");
}

#[test]
fn a_failing_kernel_install_restores_the_rendered_plan() {
    let (_d, root, change) = rendered_setup("boot-sdboot-kernel-install", "0000:01:00.0", &[])();
    install_recorder(&root, "/usr/bin", "kernel-install", true);
    let original = tree(&root);
    let runner = HostRunner::new(root.clone());
    let err = apply(&root, &change, &runner, &mut quiet).unwrap_err();
    assert!(
        matches!(&err, ApplyError::CommandFailed { argv, restored: true, .. } if argv[0] == "kernel-install"),
        "{err:?}"
    );
    assert_eq!(tree(&root), original);
    // dracut ran, kernel-install failed; then both ran again on the restored files.
    let log = recorded(&root);
    assert_eq!(log[0], "dracut --regenerate-all --force");
    assert!(log[1].starts_with("kernel-install add "));
    assert_eq!(log[2], "dracut --regenerate-all --force");
    assert_eq!(log.len(), 4, "{log:?}");
}

/// The file-system view of the helper's hardened unit (data/passthrough-helper.service):
/// everything read-only (ProtectSystem=strict) but the existing `ReadWritePaths=`. Returns
/// the host paths that are writable.
fn unit_writable_paths() -> Vec<String> {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/passthrough-helper.service"),
    )
    .unwrap();
    assert!(unit.contains("\nProtectSystem=strict\n"));
    unit.lines()
        .filter_map(|l| l.strip_prefix("ReadWritePaths="))
        .flat_map(|l| l.split_whitespace())
        .map(|p| p.trim_start_matches('-').to_owned())
        .collect()
}

const HARDENED_INNER: &str = "PASSTHROUGH_TEST_HARDENED_ROOT";

/// Under the unit's view, /etc is read-only and /etc/booster.yaml (booster) or
/// /etc/mkinitcpio.conf (mkinitcpio before 36) is a writable file of its own: neither has a
/// drop-in directory. The transaction rewrites it in place, a fault at every step still
/// leaves whole files that recovery restores, and rollback restores every byte. Runs itself
/// again inside a user and mount namespace (`unshare`).
#[test]
fn the_hardened_units_read_only_etc_with_a_writable_single_file() {
    if let Ok(dir) = std::env::var(HARDENED_INNER) {
        return hardened_inner(Path::new(&dir));
    }
    // The namespaces must be possible here at all; otherwise say so (the behaviour under
    // test is never the reason this probe fails).
    let probe = std::process::Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "true"])
        .output()
        .expect("unshare (util-linux) runs");
    if !probe.status.success() {
        eprintln!(
            "SKIPPED the_hardened_units_read_only_etc_with_a_writable_single_file: this machine allows no user and mount namespaces: {}",
            String::from_utf8_lossy(&probe.stderr).trim()
        );
        return;
    }
    let booster: Recorders = &[("/usr/bin", "booster"), ("/usr/bin", "kernelstub")];
    for (name, gpu, recorders, file) in [
        (
            "two-identical-gpus",
            "0000:43:00.0",
            booster,
            "/etc/booster.yaml",
        ),
        (
            "boot-grub-arch",
            "0000:01:00.0",
            &[][..],
            "/etc/mkinitcpio.conf",
        ),
    ] {
        hardened_case(name, gpu, recorders, file);
    }
}

fn hardened_case(name: &'static str, gpu: &'static str, recorders: Recorders, file: &str) {
    let (d, root, change) = rendered_setup(name, gpu, recorders)();
    assert!(change.files.iter().any(|f| f.path == file), "{change:?}");
    // What every real host has: the directories the unit lists and the state directory
    // systemd creates (StateDirectory=).
    for dir in [
        "/etc/udev/rules.d",
        "/etc/modprobe.d",
        "/var/lib/passthrough",
    ] {
        fs::create_dir_all(root.path(dir)).unwrap();
    }
    fs::write(
        d.path().join("change.json"),
        serde_json::to_string(&change).unwrap(),
    )
    .unwrap();
    fs::write(d.path().join("in-place"), file).unwrap();
    let original = tree(&root);
    let base = root.path("/");
    let base = base.to_str().unwrap().trim_end_matches('/');
    let mut script =
        format!("set -e\nmount --bind '{base}' '{base}'\nmount -o remount,ro,bind '{base}'\n");
    let mut writable = Vec::new();
    for p in unit_writable_paths() {
        if root.path(&p).exists() {
            script.push_str(&format!(
                "mount --bind '{base}{p}' '{base}{p}'\nmount -o remount,rw,bind '{base}{p}'\n"
            ));
            writable.push(p);
        }
    }
    assert!(writable.iter().any(|p| p == file), "{name}: {writable:?}");
    assert!(!writable.iter().any(|p| p == "/etc"));
    script.push_str(
        "exec \"$0\" --exact the_hardened_units_read_only_etc_with_a_writable_single_file --nocapture\n",
    );
    let status = std::process::Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c", &script])
        .arg(std::env::current_exe().unwrap())
        .env(HARDENED_INNER, d.path())
        .status()
        .expect("unshare (util-linux) runs");
    assert!(
        status.success(),
        "{name}: the run inside the namespace failed"
    );
    // Outside the namespace: the same files, back to what they were.
    assert_eq!(tree(&root), original, "{name}");
    assert!(temp_files(&root).is_empty(), "{name}");
}

fn hardened_inner(dir: &Path) {
    let root = HostRoot::new(dir.join("root"));
    let change: Rendered =
        serde_json::from_str(&fs::read_to_string(dir.join("change.json")).unwrap()).unwrap();
    // The namespace is what the unit makes it: /etc itself is read-only.
    let probe = root.path("/etc/.probe");
    let err = fs::write(&probe, "x").unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ReadOnlyFilesystem);
    let original = tree(&root);
    let runner = HostRunner::new(root.clone());
    let inode = |p: &str| std::os::unix::fs::MetadataExt::ino(&fs::metadata(root.path(p)).unwrap());
    let file = fs::read_to_string(dir.join("in-place")).unwrap();
    let file_inode = inode(&file);

    // A whole apply: every file new, the single file rewritten in place (same inode).
    let id = apply(&root, &change, &runner, &mut quiet).unwrap();
    for f in &change.files {
        assert_eq!(root.read_string(&f.path).ok(), f.after, "{}", f.path);
    }
    assert_eq!(inode(&file), file_inode);
    assert!(temp_files(&root).is_empty());
    rollback(&root, &id, &runner, &mut quiet).unwrap();
    assert_eq!(tree(&root), original, "rollback restores every byte");

    // A fault at every step: whole files, and recovery restores them.
    silence_injected_panics();
    let state = root.path(transaction::STATE_DIR);
    let mut faults = 0;
    for k in 0.. {
        for e in fs::read_dir(&state).unwrap() {
            fs::remove_dir_all(e.unwrap().path()).unwrap();
        }
        if !apply_dying_at(&root, &change, k) {
            break;
        }
        faults += 1;
        for f in &change.files {
            let now = root.read_string(&f.path).ok();
            assert!(now == f.before || now == f.after, "fault {k}: {}", f.path);
        }
        recover(&root, &runner).unwrap();
        assert_eq!(
            tree(&root),
            original,
            "fault {k}: recovery restores every byte"
        );
        assert!(temp_files(&root).is_empty(), "fault {k}");
    }
    let last = list(&root).unwrap();
    assert_eq!(last.len(), 1);
    rollback(&root, &last[0].id, &runner, &mut quiet).unwrap();
    assert_eq!(tree(&root), original);
    assert!(faults > 10, "{faults}");
    eprintln!("hardened view, {file}: {faults} faults injected");
}

/// A trial (try once) on the blog's host: a new custom.cfg, the initramfs and the one-shot
/// request; recovery cancels the request (grub-editenv) instead of making it again.
#[test]
fn a_fault_at_every_step_of_a_trial() {
    let fixture_root = HostRoot::new(fixture("b550-blog"));
    let report = HostReport::scan(&fixture_root, &ScanOptions::default());
    let plan = Plan {
        iommu_pt: true,
        reserve: vec!["0000:08:00.0".parse().unwrap()],
        try_once: true,
        ..Plan::default()
    };
    let change = render(&fixture_root, &report, &plan).unwrap();
    assert!(change
        .files
        .iter()
        .any(|f| f.path == "/boot/grub/custom.cfg"));
    let faults = inject_every_fault(&|| {
        let (d, root) = b550_with_recorders(false);
        install_recorder(&root, "/usr/sbin", "grub-reboot", false);
        install_recorder(&root, "/usr/sbin", "grub-editenv", false);
        (d, root, change.clone())
    });
    assert!(faults > 10, "{faults}");
    eprintln!("trial: {faults} faults injected");
}
