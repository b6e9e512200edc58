//! What every fuzz target checks. The input is a file's text (bytes read as UTF-8, lossily);
//! its last bytes also pick a few ops, from realistic arguments and from the file's own
//! words, so the seeds can be plain configuration files.

use passthrough_core::bootcfg::{apply_ops, EditError, KargOp};

/// Arguments a plan writes or removes.
const ARGS: &[&str] = &[
    "intel_iommu=on",
    "iommu=pt",
    "vfio-pci.ids=10de:1c02,10de:10f1",
    "vfio_pci.ids=1002:67df",
    "video=efifb:off",
    "initcall_blacklist=sysfb_init",
    "kvm.ignore_msrs=1",
    "kvm.report_ignored_msrs=0",
    "pcie_acs_override=downstream,multifunction",
    "amd_iommu=on",
    "quiet",
    "splash",
];

/// Modules a plan writes or removes.
pub const MODULES: &[&str] = &[
    "vfio_pci",
    "vfio",
    "vfio_iommu_type1",
    "vfio_virqfd",
    "nvidia",
    "amdgpu",
    "ext4",
];

/// The text of an input.
pub fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// The bytes that pick the ops: the last four.
fn selectors(data: &[u8]) -> &[u8] {
    &data[data.len().saturating_sub(4)..]
}

/// Up to three ops picked by the input's last bytes. Additions use only valid arguments;
/// removals may name any word of the file.
pub fn ops(data: &[u8], text: &str) -> Vec<KargOp> {
    let sel = selectors(data);
    let words: Vec<&str> = text.split_whitespace().collect();
    let n = sel.first().map_or(0, |b| usize::from(*b % 4));
    sel.iter()
        .skip(1)
        .take(n)
        .map(|&b| {
            let arg = ARGS[usize::from(b / 4) % ARGS.len()];
            let (key, value) = arg.split_once('=').unwrap_or((arg, ""));
            let any_word = words
                .get(usize::from(b / 4) % words.len().max(1))
                .copied()
                .unwrap_or(arg);
            match b % 4 {
                0 => KargOp::SetKey {
                    key: key.to_owned(),
                    value: (!value.is_empty()).then(|| value.to_owned()),
                },
                1 => KargOp::RemoveKey {
                    key: any_word.split('=').next().unwrap_or(key).to_owned(),
                },
                2 => KargOp::AddExact { arg: arg.to_owned() },
                _ => KargOp::RemoveExact {
                    arg: any_word.to_owned(),
                },
            }
        })
        .collect()
}

/// Module names to add and to remove, picked by the input's last bytes.
pub fn module_lists(data: &[u8]) -> (Vec<&'static str>, Vec<&'static str>) {
    let sel = selectors(data);
    let pick = |mask: u8| -> Vec<&'static str> {
        MODULES
            .iter()
            .enumerate()
            .filter(|(k, _)| sel.iter().any(|b| (b ^ mask) >> (*k % 8) & 1 == 1 && b % 3 == 0))
            .map(|(_, m)| *m)
            .collect()
    };
    (pick(0), pick(0x5a))
}

/// A kernel-argument editor's `kernel_args`.
pub type KernelArgs = fn(&str) -> Result<Vec<String>, EditError>;
/// A kernel-argument editor's `edit`.
pub type KargEdit = fn(&str, &[KargOp]) -> Result<String, EditError>;

/// No panic; what the reader accepts, the editor edits (the ops are all writable)
/// consistently with `apply_ops`, idempotently, and without ops byte for byte. The one
/// refusal allowed on a readable file is the editor's own check of its output (no line:
/// seen only on garbage such as multi-line `${…}` holding quotes).
pub fn check_kargs(data: &[u8], kernel_args: KernelArgs, edit: KargEdit) {
    let text = text(data);
    let ops = ops(data, &text);
    let Ok(before) = kernel_args(&text) else {
        assert!(edit(&text, &ops).is_err(), "edited what it could not read");
        return;
    };
    assert_eq!(edit(&text, &[]).unwrap(), text, "no ops, same bytes");
    let out = match edit(&text, &ops) {
        Ok(out) => out,
        Err(e) if e.line.is_none() => return,
        Err(e) => panic!("readable file, writable ops: {e}"),
    };
    let after = kernel_args(&out).expect("its own output is readable");
    assert_eq!(after, apply_ops(&before, &ops), "edit agrees with apply_ops");
    assert_eq!(edit(&out, &ops).unwrap(), out, "idempotent");
}

/// A module-list editor's `modules`.
pub type Modules = fn(&str) -> Vec<String>;
/// A module-list editor's `edit`.
pub type ModuleEdit = fn(&str, &[&str], &[&str]) -> Result<String, EditError>;

/// No panic; an edit it makes is idempotent, holds what it adds and not what it removes.
pub fn check_modules(data: &[u8], modules: Modules, edit: ModuleEdit) {
    let text = text(data);
    let (add, remove) = module_lists(data);
    let _ = modules(&text);
    if let Ok(same) = edit(&text, &[], &[]) {
        assert_eq!(same, text, "no change, same bytes");
    }
    let Ok(out) = edit(&text, &add, &remove) else {
        return;
    };
    let after = modules(&out);
    for name in &add {
        assert!(after.iter().any(|m| m == name), "{name} added");
    }
    for name in remove.iter().filter(|n| !add.contains(n)) {
        assert!(!after.iter().any(|m| m == name), "{name} removed");
    }
    assert_eq!(edit(&out, &add, &remove).unwrap(), out, "idempotent");
}
