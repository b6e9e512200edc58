//! "Try once": the next boot uses the new kernel arguments, every later boot the old ones,
//! until the user makes them permanent.
//!
//! A trial writes a boot entry of its own and asks the boot loader to start it once:
//!
//! | boot loader | trial entry | one-shot command | undone by |
//! |---|---|---|---|
//! | GRUB (`/boot/grub` or `/boot/grub2`) | a `menuentry` in `custom.cfg`, which `41_custom` sources at boot (no `grub-mkconfig` needed), copied from the first entry of `grub.cfg` | `grub-reboot passthrough-trial` | `grub-editenv …/grubenv unset next_entry` |
//! | systemd-boot | `passthrough-trial.conf` next to the entry of the running kernel | `bootctl set-oneshot passthrough-trial.conf` | `bootctl set-oneshot ""` |
//!
//! The boot loader forgets the one-shot choice as it starts the entry, so a trial that hangs
//! is undone by restarting once more. Only kernel arguments are tried: the reservation goes
//! on the trial entry's command line (`vfio-pci.ids=`), not into `/etc/modprobe.d`; the
//! initramfs gains the vfio modules, which hold no device without those arguments. A
//! reservation by address (udev) cannot be tried once. Making the trial permanent applies
//! the same plan without the trial, which also removes the trial entry.

use crate::boot::BootLoaderKind;
use crate::bootcfg::{kernel_cmdline, loader_entry, EditError, KargOp};
use crate::i18n::gettext_f;
use crate::report::HostReport;
use crate::root::HostRoot;
use crate::transaction::TransactionRecord;

/// GRUB's ID of the trial entry (`grub-reboot`'s argument).
pub const GRUB_ENTRY_ID: &str = "passthrough-trial";
/// The trial's systemd-boot entry file (`bootctl set-oneshot`'s argument).
pub const LOADER_ENTRY_NAME: &str = "passthrough-trial.conf";
/// The trial entry's title in the boot menu (the boot menu has no translations).
pub const TITLE: &str = "Passthrough trial boot";
const BEGIN: &str =
    "### BEGIN Passthrough trial boot (one boot; Make Permanent or Roll Back removes it)";
const END: &str = "### END Passthrough trial boot";

/// Where a trial goes on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Grub {
        /// `/boot/grub` or `/boot/grub2` (host path).
        dir: String,
        /// The first menu entry of `grub.cfg`: its body lines, and which one is `linux`.
        body: Vec<String>,
        linux: usize,
        /// Byte offset of the arguments in the `linux` line.
        args_at: usize,
    },
    SystemdBoot {
        /// The entry the trial copies (host path).
        entry: String,
    },
}

impl Target {
    /// The file the trial writes (host path).
    pub fn path(&self) -> String {
        match self {
            Self::Grub { dir, .. } => format!("{dir}/custom.cfg"),
            Self::SystemdBoot { entry } => {
                let dir = entry.rsplit_once('/').map_or("", |(d, _)| d);
                format!("{dir}/{LOADER_ENTRY_NAME}")
            }
        }
    }

    /// The command that boots the trial entry once.
    pub fn one_shot(&self) -> Vec<String> {
        match self {
            Self::Grub { dir, .. } => vec![reboot_command(dir).into(), GRUB_ENTRY_ID.into()],
            Self::SystemdBoot { .. } => vec![
                "bootctl".into(),
                "set-oneshot".into(),
                LOADER_ENTRY_NAME.into(),
            ],
        }
    }
}

fn reboot_command(dir: &str) -> &'static str {
    if dir.ends_with("grub2") {
        "grub2-reboot"
    } else {
        "grub-reboot"
    }
}

/// Where a trial goes on this host, or why there can be none (translated).
pub fn target(root: &HostRoot, report: &HostReport) -> Result<Target, String> {
    match report.boot_loader.kind {
        BootLoaderKind::Grub => grub_target(root, report),
        BootLoaderKind::SystemdBoot => loader_target(root, report),
        BootLoaderKind::Kernelstub => Err(gettext_f(
            "kernelstub writes one boot entry only, so it cannot boot new settings just once.",
            &[],
        )),
        BootLoaderKind::Grubby | BootLoaderKind::RpmOstree => Err(gettext_f(
            "On this system the boot entries are managed by {tool}, which has no way to boot new settings just once.",
            &[("tool", report.boot_loader.kind.display_name())],
        )),
        BootLoaderKind::Unknown => Err(gettext_f(
            "Passthrough does not know this boot loader, so it cannot boot new settings just once.",
            &[],
        )),
    }
}

fn grub_target(root: &HostRoot, report: &HostReport) -> Result<Target, String> {
    let cfg = report.boot_loader.grub_cfg.clone().unwrap_or_default();
    let dir = match cfg.as_str() {
        "/boot/grub/grub.cfg" => "/boot/grub",
        "/boot/grub2/grub.cfg" => "/boot/grub2",
        _ => {
            return Err(gettext_f(
                "The GRUB menu of this system is not in /boot/grub or /boot/grub2, so Passthrough cannot add a trial entry to it.",
                &[],
            ))
        }
    };
    let text = root.read_string(&cfg).map_err(|_| {
        gettext_f(
            "{path} cannot be read, so Passthrough cannot copy its first entry for a trial boot.",
            &[("path", &cfg)],
        )
    })?;
    // grub-reboot works through `next_entry`, and custom.cfg is read by 41_custom.
    if !text.contains("next_entry") || !text.contains("custom.cfg") {
        return Err(gettext_f(
            "{path} has no one-shot boot (next_entry) or does not read custom.cfg, so a trial entry would never start.",
            &[("path", &cfg)],
        ));
    }
    let Some((body, linux, args_at)) = first_entry(&text) else {
        return Err(gettext_f(
            "{path} has no menu entry with a linux line that Passthrough can copy.",
            &[("path", &cfg)],
        ));
    };
    Ok(Target::Grub {
        dir: dir.into(),
        body,
        linux,
        args_at,
    })
}

/// The body of the first top-level `menuentry` of a grub.cfg, the index of its `linux`
/// line and where that line's arguments start. `None` when there is none, or its arguments
/// come from a variable (`$kernelopts`) Passthrough cannot see into.
fn first_entry(text: &str) -> Option<(Vec<String>, usize, usize)> {
    let mut lines = text.lines();
    lines.find(|l| l.starts_with("menuentry ") && l.trim_end().ends_with('{'))?;
    let mut body = Vec::new();
    let mut depth = 0usize;
    for line in lines {
        let t = line.trim();
        if t == "}" && depth == 0 {
            break;
        }
        if t.ends_with('{') {
            depth += 1;
        } else if t == "}" {
            depth -= 1;
        }
        body.push(line.to_owned());
    }
    let linux = body.iter().position(|l| {
        let t = l.trim_start();
        ["linux", "linux16", "linuxefi"].iter().any(|k| {
            t.strip_prefix(k)
                .is_some_and(|r| r.starts_with([' ', '\t']))
        })
    })?;
    let line = &body[linux];
    if line.contains("$kernelopts") {
        return None;
    }
    // Skip the indentation, the command and the kernel image.
    let mut at = line.len() - line.trim_start().len();
    for _ in 0..2 {
        at += line[at..].find([' ', '\t']).unwrap_or(line.len() - at);
        at += line[at..].len() - line[at..].trim_start().len();
    }
    Some((body, linux, at))
}

fn loader_target(root: &HostRoot, report: &HostReport) -> Result<Target, String> {
    let entries = crate::plan_render::loader_entry_paths(root);
    let release = report.kernel_release.clone().unwrap_or_default();
    let running = entries.iter().find(|e| {
        !release.is_empty()
            && root.read_string(e).is_ok_and(|t| {
                t.lines()
                    .any(|l| l.trim_start().starts_with("linux") && l.contains(release.as_str()))
            })
    });
    match running.or(entries.last()) {
        Some(entry) => Ok(Target::SystemdBoot {
            entry: entry.clone(),
        }),
        None => Err(gettext_f(
            "There is no systemd-boot entry file to copy (unified kernel images carry their arguments inside), so Passthrough cannot add a trial entry.",
            &[],
        )),
    }
}

/// The kernel arguments the trial entry starts from.
pub fn base_args(root: &HostRoot, target: &Target) -> Result<Vec<String>, EditError> {
    match target {
        Target::Grub {
            body,
            linux,
            args_at,
            dir,
        } => kernel_cmdline::kernel_args(&body[*linux][*args_at..])
            .map_err(|e| in_custom_cfg(e, dir)),
        Target::SystemdBoot { entry } => {
            let text = root.read_string(entry).unwrap_or_default();
            loader_entry::kernel_args(&text)
        }
    }
}

/// The trial file's new text (`before` is what the file holds now).
pub fn render(
    root: &HostRoot,
    target: &Target,
    ops: &[KargOp],
    before: Option<&str>,
) -> Result<String, EditError> {
    match target {
        Target::Grub {
            body,
            linux,
            args_at,
            dir,
        } => {
            let mut body = body.clone();
            let line = &body[*linux];
            let args =
                kernel_cmdline::edit(&line[*args_at..], ops).map_err(|e| in_custom_cfg(e, dir))?;
            body[*linux] = format!("{}{}", &line[..*args_at], args);
            let mut out = without_block(before.unwrap_or_default());
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(&format!(
                "{BEGIN}\nmenuentry '{TITLE}' --id {GRUB_ENTRY_ID} {{\n"
            ));
            for l in body {
                out.push_str(&l);
                out.push('\n');
            }
            out.push_str(&format!("}}\n{END}\n"));
            Ok(out)
        }
        Target::SystemdBoot { entry } => {
            let text = root.read_string(entry).unwrap_or_default();
            let edited = loader_entry::edit(&text, ops)?;
            let mut out = String::new();
            let mut titled = false;
            for line in edited.split_inclusive('\n') {
                let key = line.split_whitespace().next().unwrap_or_default();
                if key == "title" {
                    if !titled {
                        out.push_str(&format!("title {TITLE}\n"));
                    }
                    titled = true;
                } else {
                    out.push_str(line);
                }
            }
            if !titled {
                out.insert_str(0, &format!("title {TITLE}\n"));
            }
            Ok(out)
        }
    }
}

/// An error of the kernel-arguments editor, said of the trial's file.
fn in_custom_cfg(mut e: EditError, dir: &str) -> EditError {
    e.file = if dir.ends_with("grub2") {
        "/boot/grub2/custom.cfg"
    } else {
        "/boot/grub/custom.cfg"
    };
    e
}

/// `text` without the trial's block.
fn without_block(text: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in text.split_inclusive('\n') {
        let t = line.trim_end();
        if t == BEGIN {
            inside = true;
        } else if inside && t == END {
            inside = false;
        } else if !inside {
            out.push_str(line);
        }
    }
    out
}

/// The trial files on this host, with what each becomes once the trial is removed (`None`:
/// the file goes).
pub fn leftovers(root: &HostRoot) -> Vec<(String, String, Option<String>)> {
    let mut out = Vec::new();
    for dir in ["/boot/grub", "/boot/grub2"] {
        let path = format!("{dir}/custom.cfg");
        if let Ok(text) = root.read_string(&path) {
            if text.lines().any(|l| l == BEGIN) {
                let rest = without_block(&text);
                let after = (!rest.trim().is_empty()).then_some(rest);
                out.push((path, text, after));
            }
        }
    }
    for dir in crate::plan_render::LOADER_ENTRY_DIRS {
        let path = format!("{dir}/{LOADER_ENTRY_NAME}");
        if let Ok(text) = root.read_string(&path) {
            out.push((path, text, None));
        }
    }
    out
}

/// Where a trial stands after it was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrialStatus {
    /// The host has not restarted since the trial was written.
    Pending,
    /// This boot runs with the trial's arguments.
    Worked,
    /// The host restarted, and this boot has the old arguments: the trial boot failed or was
    /// not chosen.
    FellBack,
}

/// The newest applied trial whose entry is still there, and how it went.
pub fn current(
    root: &HostRoot,
    report: &HostReport,
    records: &[TransactionRecord],
) -> Option<(TransactionRecord, TrialStatus)> {
    if leftovers(root).is_empty() {
        return None;
    }
    let record = records
        .iter()
        .filter(|r| r.state == crate::transaction::TransactionState::Applied && r.is_trial())
        .max_by_key(|r| (r.started, r.id.as_str().to_owned()))?
        .clone();
    let running: Vec<String> = report
        .cmdline
        .as_ref()
        .map(|c| c.args.iter().map(|a| a.to_string()).collect())
        .unwrap_or_default();
    let args = &record.kernel_args;
    let status = if !args.add.is_empty()
        && args.add.iter().all(|a| running.contains(a))
        && !args.remove.iter().any(|a| running.contains(a))
    {
        TrialStatus::Worked
    } else if boot_time(root).is_some_and(|t| t > record.finished.unwrap_or(record.started)) {
        TrialStatus::FellBack
    } else {
        TrialStatus::Pending
    };
    Some((record, status))
}

/// When this boot started (Unix time), from `/proc/stat`.
fn boot_time(root: &HostRoot) -> Option<u64> {
    let stat = root.read_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_entry_of_a_grub_cfg() {
        let cfg = "set default=0\nmenuentry 'A' --class a {\n\tinsmod ext2\n\tif [ x = y ]; then\n\t\techo\n\tfi\n\tlinux\t/vmlinuz root=/dev/sda1 ro  quiet\n\tinitrd\t/initrd\n}\nmenuentry 'B' {\n\tlinux /b\n}\n";
        let (body, linux, at) = first_entry(cfg).unwrap();
        assert_eq!(body.len(), 6);
        assert_eq!(&body[linux][at..], "root=/dev/sda1 ro  quiet");
        assert!(first_entry("menuentry 'F' {\n\tlinux ($root)/vmlinuz $kernelopts\n}\n").is_none());
        assert!(first_entry("set a=b\n").is_none());
    }

    #[test]
    fn the_block_comes_out_whole() {
        let user = "menuentry 'Mine' {\n\tchainloader /x\n}\n";
        let with = format!("{user}{BEGIN}\nmenuentry 'T' {{\n}}\n{END}\n");
        assert_eq!(without_block(&with), user);
        assert_eq!(without_block(user), user);
    }
}
