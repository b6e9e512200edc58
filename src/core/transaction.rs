//! Transactions: a [`Rendered`] plan applied to the host so that it can always be undone.
//!
//! Each transaction lives in `ROOT/var/lib/passthrough/transactions/<id>/`:
//! `journal.json` (summary, every step with its state, timestamps, command output) and
//! `backup/<host path>`, byte-exact copies of the files it changed (the journal marks the
//! files that did not exist).
//!
//! The write protocol for each file: journal the step, back the file up (fsync), journal
//! the backup (with the file's hash, mode and owner), write the new content to a temporary
//! file in the same directory (fsync), rename it over the file, fsync the directory, journal
//! the step as done. So at any moment every file is either entirely old or entirely new,
//! and the journal knows which files may be new. One exception: a file whose directory is
//! read-only while the file itself is writable (the helper's hardened unit sees
//! `/etc/booster.yaml` and, before mkinitcpio 36, `/etc/mkinitcpio.conf` that way: neither
//! has a drop-in directory) is rewritten in place; its backup and journal entry are on disk
//! first, so an interrupted write is undone by [`recover`]. The regeneration commands run after the
//! files; a failing command restores every file and runs the commands again, so that the
//! generated boot files match the restored configuration. [`recover`] finishes the rollback
//! of a transaction that was interrupted (the journal says it started, not that it ended).
//!
//! Nothing here trusts its input: paths must be absolute host paths inside an allow-list
//! of configuration files, commands must be known regeneration commands with the argument
//! shapes Passthrough itself renders, and transaction IDs are `[0-9A-Za-z-]+`.

use std::cell::Cell;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::i18n::gettext_f;
use crate::plan::{KernelArgsSummary, Rendered};
use crate::root::HostRoot;

/// Where the transactions are kept (host path).
pub const STATE_DIR: &str = "/var/lib/passthrough/transactions";

/// Single files a transaction may change.
pub const WRITABLE_FILES: &[&str] = &[
    "/etc/default/grub",
    "/etc/mkinitcpio.conf",
    "/etc/initramfs-tools/modules",
    "/etc/booster.yaml",
    // A trial boot entry (`trial.rs`).
    "/boot/grub/custom.cfg",
    "/boot/grub2/custom.cfg",
    // The network bridge (`network::render`).
    crate::network::NETPLAN_FILE,
];

/// Directories whose files a transaction may change (not their subdirectories).
pub const WRITABLE_DIRS: &[&str] = &[
    "/etc/kernel/",
    "/boot/loader/entries/",
    "/efi/loader/entries/",
    "/boot/efi/loader/entries/",
    "/etc/kernelstub/",
    "/etc/mkinitcpio.conf.d/",
    "/etc/dracut.conf.d/",
    "/etc/modprobe.d/",
    "/etc/udev/rules.d/",
    // The network bridge (`network::render`): Passthrough's file, and the files whose IP
    // settings of the bridge's port move to the bridge.
    "/etc/netplan/",
];

/// Directories where a transaction may write only Passthrough's own files: names starting
/// with the given prefix (the network bridge's systemd-networkd files).
pub const WRITABLE_OWN_FILES: &[(&str, &str)] = &[(
    crate::network::render::NETWORKD_DIR,
    crate::network::render::NETWORKD_PREFIX,
)];

/// The regeneration commands a transaction may run (argv[0]).
pub const COMMANDS: &[&str] = &[
    "update-grub",
    "grub-mkconfig",
    "grub2-mkconfig",
    "grubby",
    "kernel-install",
    "kernelstub",
    "rpm-ostree",
    "update-initramfs",
    "dracut",
    "mkinitcpio",
    "booster",
    // A trial boot (`trial.rs`): request it once, or cancel the request.
    "grub-reboot",
    "grub2-reboot",
    "grub-editenv",
    "grub2-editenv",
    "bootctl",
    // The network bridge (`network::render`).
    "netplan",
    "networkctl",
];

/// Directories searched for a command, inside the root.
const COMMAND_DIRS: &[&str] = &["/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/// Most output kept in the journal per command.
const MAX_OUTPUT: usize = 64 * 1024;

const JOURNAL: &str = "journal.json";
const BACKUP: &str = "backup";
const FORMAT: u32 = 1;

// ---------------------------------------------------------------------------------------
// IDs

/// A transaction's ID: `YYYYMMDD-HHMMSS-xxxxxx` when Passthrough makes it; any 1 to 64 of
/// `[0-9A-Za-z-]` when it is read back, so it can never name a path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TransactionId(String);

impl TransactionId {
    pub fn parse(s: &str) -> Result<Self, ApplyError> {
        let ok = (1..=64).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ApplyError::InvalidId(s.chars().take(64).collect()))
        }
    }

    fn generate(now: u64) -> Self {
        let (y, mo, d, h, mi, s) = civil(now);
        Self(format!(
            "{y:04}{mo:02}{d:02}-{h:02}{mi:02}{s:02}-{:06x}",
            random_u32() & 0xff_ffff
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for TransactionId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TransactionId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for TransactionId {
    type Err = ApplyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

fn random_u32() -> u32 {
    let mut buf = [0u8; 4];
    if File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_ok()
    {
        return u32::from_le_bytes(buf);
    }
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish() as u32
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// UTC calendar date and time of a Unix time (Howard Hinnant's `civil_from_days`).
fn civil(secs: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
}

/// `2024-01-31 12:00:00 UTC`.
pub fn format_time(secs: u64) -> String {
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC")
}

// ---------------------------------------------------------------------------------------
// Errors

#[derive(Debug)]
pub enum ApplyError {
    /// Not a transaction ID.
    InvalidId(String),
    /// No journal for this ID.
    NotFound(TransactionId),
    /// A path outside the allow-list, or not a plain absolute path.
    PathNotAllowed(String),
    /// A command that is not a known regeneration command with a known argument shape.
    CommandNotAllowed(Vec<String>),
    /// The file is not what the plan was rendered from: render again.
    Stale(String),
    /// Rollback refused: the files changed since the transaction wrote them.
    ChangedSince {
        id: TransactionId,
        paths: Vec<String>,
    },
    /// Interrupted transactions must be recovered first.
    Pending(Vec<TransactionId>),
    /// The transaction is not in a state that allows this (e.g. already rolled back).
    WrongState {
        id: TransactionId,
        state: TransactionState,
    },
    /// A command failed; every file was restored (`restored` false when restoring failed
    /// too: then the journal lists what is left).
    CommandFailed {
        id: TransactionId,
        argv: Vec<String>,
        message: String,
        restored: bool,
    },
    /// A file could not be read or written.
    Io { path: String, error: io::Error },
    /// A journal could not be read.
    Journal { id: String, message: String },
}

impl ApplyError {
    fn io(path: impl AsRef<Path>, error: io::Error) -> Self {
        Self::Io {
            path: path.as_ref().display().to_string(),
            error,
        }
    }

    /// A translated sentence for the user.
    pub fn message(&self) -> String {
        match self {
            Self::InvalidId(id) => {
                gettext_f("“{id}” is not a transaction ID.", &[("id", id)])
            }
            Self::NotFound(id) => gettext_f(
                "There is no transaction {id}.",
                &[("id", id.as_str())],
            ),
            Self::PathNotAllowed(path) => gettext_f(
                "Passthrough never changes {path}: the change was refused.",
                &[("path", path)],
            ),
            Self::CommandNotAllowed(argv) => gettext_f(
                "Passthrough never runs “{command}”: the change was refused.",
                &[("command", &argv.join(" "))],
            ),
            Self::Stale(path) => gettext_f(
                "{path} changed since the preview was made. Nothing was changed; look at the preview again.",
                &[("path", path)],
            ),
            Self::ChangedSince { id, paths } => gettext_f(
                "Transaction {id} was not rolled back: {paths} changed after it was applied, and rolling back would undo those changes too. Roll back the later transactions first, or force the rollback.",
                &[("id", id.as_str()), ("paths", &paths.join(", "))],
            ),
            Self::Pending(ids) => gettext_f(
                "An earlier change was interrupted ({ids}) and must be undone first.",
                &[(
                    "ids",
                    &ids.iter().map(|i| i.as_str()).collect::<Vec<_>>().join(", "),
                )],
            ),
            Self::WrongState { id, state } => gettext_f(
                "Transaction {id} cannot be rolled back: it is {state}.",
                &[("id", id.as_str()), ("state", &state.label())],
            ),
            Self::CommandFailed {
                argv,
                message,
                restored: true,
                ..
            } => gettext_f(
                "“{command}” failed ({error}). Every file was restored as it was before.",
                &[("command", &argv.join(" ")), ("error", message)],
            ),
            Self::CommandFailed {
                id,
                argv,
                message,
                restored: false,
            } => gettext_f(
                "“{command}” failed ({error}), and restoring the files failed too. Transaction {id} lists what is left to do.",
                &[
                    ("command", &argv.join(" ")),
                    ("error", message),
                    ("id", id.as_str()),
                ],
            ),
            Self::Io { path, error } => gettext_f(
                "Cannot write {path}: {error}",
                &[("path", path), ("error", &error.to_string())],
            ),
            Self::Journal { id, message } => gettext_f(
                "The journal of transaction {id} cannot be read: {error}",
                &[("id", id), ("error", message)],
            ),
        }
    }
}

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for ApplyError {}

// ---------------------------------------------------------------------------------------
// Validation

/// True when `path` is a plain absolute host path that a transaction may change.
pub fn path_allowed(path: &str) -> bool {
    let p = Path::new(path);
    let plain = path.len() < 4096
        && p.is_absolute()
        && !path.contains("//")
        && !path.ends_with('/')
        && !path.bytes().any(|b| b.is_ascii_control())
        && p.components()
            .skip(1)
            .all(|c| matches!(c, Component::Normal(_)));
    plain
        && (WRITABLE_FILES.contains(&path)
            || WRITABLE_DIRS.iter().any(|dir| {
                path.strip_prefix(dir)
                    .is_some_and(|name| !name.is_empty() && !name.contains('/'))
            })
            || WRITABLE_OWN_FILES.iter().any(|(dir, prefix)| {
                path.strip_prefix(dir)
                    .and_then(|name| name.strip_prefix(prefix))
                    .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'))
            }))
}

/// The mode of a file a transaction creates: netplan reads only files that are not
/// readable by others (they may hold Wi-Fi passwords) without warning.
fn new_file_mode(host_path: &str) -> u32 {
    if host_path.starts_with("/etc/netplan/") {
        0o600
    } else {
        0o644
    }
}

fn kernel_version_ok(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 128
        && !v.starts_with('.')
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+-~".contains(&b))
}

fn karg_ok(arg: &str) -> bool {
    !arg.is_empty()
        && arg.len() <= 4096
        && !arg.starts_with('-')
        && !arg.bytes().any(|b| b.is_ascii_control())
}

/// Whether `argv` asks the boot loader to start the trial entry once (`trial.rs`).
pub fn is_one_shot(argv: &[String]) -> bool {
    undo_one_shot(argv).is_some()
}

/// What a rollback runs instead of `argv`: the command that cancels a one-shot boot request,
/// or, for `networkctl delete BRIDGE` (removing the bridge), `networkctl reload`, which
/// creates it again from the restored files.
fn undo_command(argv: &[String]) -> Option<Vec<String>> {
    if let ["networkctl", "delete", _] = argv
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        return Some(vec!["networkctl".into(), "reload".into()]);
    }
    undo_one_shot(argv)
}

/// The command that cancels a one-shot boot request: a rollback runs it instead of the
/// request itself.
fn undo_one_shot(argv: &[String]) -> Option<Vec<String>> {
    let args: Vec<&str> = argv.iter().map(String::as_str).collect();
    let owned = |v: &[&str]| Some(v.iter().map(|s| (*s).to_owned()).collect());
    match args.as_slice() {
        ["grub-reboot", crate::trial::GRUB_ENTRY_ID] => {
            owned(&["grub-editenv", "/boot/grub/grubenv", "unset", "next_entry"])
        }
        ["grub2-reboot", crate::trial::GRUB_ENTRY_ID] => owned(&[
            "grub2-editenv",
            "/boot/grub2/grubenv",
            "unset",
            "next_entry",
        ]),
        ["bootctl", "set-oneshot", crate::trial::LOADER_ENTRY_NAME] => {
            owned(&["bootctl", "set-oneshot", ""])
        }
        _ => None,
    }
}

/// True when `argv` is one of the regeneration commands Passthrough renders, with an
/// argument shape it renders (so no argument can name an arbitrary output file).
pub fn command_allowed(argv: &[String]) -> bool {
    let Some((name, args)) = argv.split_first() else {
        return false;
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let grub_cfg = |p: &str| {
        matches!(p, "/boot/grub/grub.cfg" | "/boot/grub2/grub.cfg")
            || p.strip_prefix("/boot/efi/EFI/")
                .and_then(|rest| rest.strip_suffix("/grub.cfg"))
                .is_some_and(|dir| {
                    !dir.is_empty()
                        && dir
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b))
                })
    };
    if is_one_shot(argv) {
        return true;
    }
    match (name.as_str(), args.as_slice()) {
        ("update-grub", []) => true,
        ("grub-editenv", ["/boot/grub/grubenv", "unset", "next_entry"]) => true,
        ("grub2-editenv", ["/boot/grub2/grubenv", "unset", "next_entry"]) => true,
        ("bootctl", ["set-oneshot", ""]) => true,
        ("grub-mkconfig" | "grub2-mkconfig", ["-o", cfg]) => grub_cfg(cfg),
        ("grubby", [first, rest @ ..]) => {
            *first == "--update-kernel=ALL"
                && !rest.is_empty()
                && rest.iter().all(|a| {
                    a.strip_prefix("--args=")
                        .or_else(|| a.strip_prefix("--remove-args="))
                        .is_some_and(|v| v.split(' ').all(karg_ok))
                })
        }
        ("kernel-install", ["add", version, image]) => {
            kernel_version_ok(version)
                && (*image == format!("/usr/lib/modules/{version}/vmlinuz")
                    || *image == format!("/boot/vmlinuz-{version}"))
        }
        ("kernelstub", []) => true,
        ("rpm-ostree", ["kargs", rest @ ..]) => {
            !rest.is_empty()
                && rest.iter().all(|a| {
                    a.strip_prefix("--append-if-missing=")
                        .or_else(|| a.strip_prefix("--delete-if-present="))
                        .is_some_and(karg_ok)
                })
        }
        ("update-initramfs", ["-u", "-k", "all"]) => true,
        ("netplan", ["apply"]) => true,
        ("networkctl", ["reload"]) => true,
        ("networkctl", ["reconfigure" | "delete", iface]) => {
            !iface.starts_with('-') && crate::network::validate_interface_name(iface).is_ok()
        }
        ("dracut", ["--regenerate-all", "--force"]) => true,
        ("mkinitcpio", ["-P"]) => true,
        ("booster", ["build", "--force", image]) => *image == "/boot/booster-linux.img",
        ("booster", ["build", "--force", "--kernel-version", version, image]) => {
            kernel_version_ok(version)
                && image
                    .strip_prefix("/boot/booster-")
                    .and_then(|n| n.strip_suffix(".img"))
                    .is_some_and(kernel_version_ok)
        }
        _ => false,
    }
}

/// Checks everything about a rendered plan before any byte is written.
pub fn validate(root: &HostRoot, rendered: &Rendered) -> Result<(), ApplyError> {
    let mut seen = std::collections::HashSet::new();
    for f in &rendered.files {
        if !path_allowed(&f.path) || !seen.insert(f.path.as_str()) {
            return Err(ApplyError::PathNotAllowed(f.path.clone()));
        }
        check_inside_root(root, &f.path)?;
        if current_content(root, &f.path)? != f.before {
            return Err(ApplyError::Stale(f.path.clone()));
        }
    }
    for argv in &rendered.commands {
        if !command_allowed(argv) {
            return Err(ApplyError::CommandNotAllowed(argv.clone()));
        }
    }
    Ok(())
}

/// The file must not be a symlink, and (for a fixture root) its existing directories must
/// not lead out of the root.
fn check_inside_root(root: &HostRoot, host_path: &str) -> Result<(), ApplyError> {
    let real = root.path(host_path);
    if fs::symlink_metadata(&real).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(ApplyError::PathNotAllowed(host_path.to_owned()));
    }
    if root.is_live() {
        return Ok(());
    }
    let base = root
        .base()
        .canonicalize()
        .map_err(|e| ApplyError::io(root.base(), e))?;
    let mut dir = real.parent().map(Path::to_path_buf);
    while let Some(d) = dir {
        if d.exists() {
            let canon = d.canonicalize().map_err(|e| ApplyError::io(&d, e))?;
            if !canon.starts_with(&base) {
                return Err(ApplyError::PathNotAllowed(host_path.to_owned()));
            }
            break;
        }
        dir = d.parent().map(Path::to_path_buf);
    }
    Ok(())
}

fn current_content(root: &HostRoot, host_path: &str) -> Result<Option<String>, ApplyError> {
    match fs::read(root.path(host_path)) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| ApplyError::Stale(host_path.to_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ApplyError::io(root.path(host_path), e)),
    }
}

// ---------------------------------------------------------------------------------------
// Running commands

/// Runs a regeneration command, passing each line of its output (stdout and stderr) on.
pub trait CommandRunner {
    fn run(&self, argv: &[String], output: &mut dyn FnMut(&str)) -> Result<(), String>;
}

/// Runs commands on the host the root stands for.
///
/// On `/` it runs the command found in the standard directories, by absolute path. On any
/// other root it runs only a program *inside* that root (`ROOT/usr/sbin`, `ROOT/usr/bin`,
/// `ROOT/sbin`, `ROOT/bin`: in tests, recorders) with `PASSTHROUGH_ROOT=ROOT`, and never
/// the build machine's own tools.
#[derive(Debug, Clone)]
pub struct HostRunner {
    root: HostRoot,
}

impl HostRunner {
    pub fn new(root: HostRoot) -> Self {
        Self { root }
    }

    /// The program `name` resolves to, or why it does not.
    pub fn resolve(&self, name: &str) -> Result<PathBuf, String> {
        if !COMMANDS.contains(&name) {
            return Err(gettext_f(
                "“{command}” is not a command Passthrough runs.",
                &[("command", name)],
            ));
        }
        for dir in COMMAND_DIRS {
            let candidate = self.root.path(dir).join(name);
            if fs::metadata(&candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            {
                return Ok(candidate);
            }
        }
        Err(if self.root.is_live() {
            gettext_f(
                "{command} is not installed (looked in /usr/sbin, /usr/bin, /sbin and /bin).",
                &[("command", name)],
            )
        } else {
            gettext_f(
                "{command} is not installed in {root} (looked in its usr/sbin, usr/bin, sbin and bin).",
                &[("command", name), ("root", &self.root.base().display().to_string())],
            )
        })
    }
}

/// Commands that change the live network. The helper's unit has a private network
/// namespace, where they would change nothing that matters.
pub const NETWORK_COMMANDS: &[&str] = &["netplan", "networkctl"];

/// The program and arguments that run `argv` (whose program resolved to `program`): on a
/// live host whose init is systemd, a network command runs as a transient systemd unit
/// (`systemd-run --wait --pipe`), outside the helper's sandbox, and the helper waits for it
/// and gets its output; everything else runs directly.
pub fn command_line(program: &Path, argv: &[String], systemd: bool) -> (PathBuf, Vec<String>) {
    let name = argv.first().map(String::as_str).unwrap_or_default();
    if systemd && NETWORK_COMMANDS.contains(&name) {
        let mut args: Vec<String> = [
            "--wait",
            "--pipe",
            "--quiet",
            "--collect",
            "--service-type=exec",
            "--description=Passthrough network change",
            "--",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.push(program.to_string_lossy().into_owned());
        args.extend(argv[1..].iter().cloned());
        (PathBuf::from("/usr/bin/systemd-run"), args)
    } else {
        (program.to_path_buf(), argv[1..].to_vec())
    }
}

impl CommandRunner for HostRunner {
    fn run(&self, argv: &[String], output: &mut dyn FnMut(&str)) -> Result<(), String> {
        let name = argv
            .first()
            .ok_or_else(|| gettext_f("empty command", &[]))?;
        let program = self.resolve(name)?;
        let systemd = self.root.is_live() && Path::new("/run/systemd/system").is_dir();
        let (exe, args) = command_line(&program, argv, systemd);
        let mut cmd = Command::new(exe);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if self.root.is_live() {
            cmd.env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .current_dir("/");
        } else {
            cmd.env("PASSTHROUGH_ROOT", self.root.base())
                .current_dir(self.root.base());
        }
        let mut child = cmd.spawn().map_err(|e| {
            gettext_f(
                "cannot start {command}: {error}",
                &[("command", name), ("error", &e.to_string())],
            )
        })?;
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let mut readers = Vec::new();
        let pipes: [Option<Box<dyn Read + Send>>; 2] = [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ];
        for pipe in pipes.into_iter().flatten() {
            let tx = tx.clone();
            readers.push(std::thread::spawn(move || {
                let mut reader = BufReader::new(pipe);
                let mut buf = Vec::new();
                while reader.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
                    let line = String::from_utf8_lossy(&buf);
                    let _ = tx.send(line.trim_end_matches(['\n', '\r']).to_owned());
                    buf.clear();
                }
            }));
        }
        drop(tx);
        for line in rx {
            output(&line);
        }
        for r in readers {
            let _ = r.join();
        }
        let status = child.wait().map_err(|e| e.to_string())?;
        if status.success() {
            Ok(())
        } else {
            Err(match status.code() {
                Some(code) => gettext_f(
                    "{command} exited with status {code}",
                    &[("command", name), ("code", &code.to_string())],
                ),
                None => gettext_f("{command} was killed by a signal", &[("command", name)]),
            })
        }
    }
}

// ---------------------------------------------------------------------------------------
// Journal

/// What the user sees of a transaction's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TransactionState {
    /// Every file written and every command run.
    Applied,
    /// Rolled back on request.
    RolledBack,
    /// A step failed (or the transaction was interrupted and recovered): every file was
    /// restored.
    FailedAndRestored,
    /// The journal says it started and never ended: [`recover`] rolls it back.
    Interrupted,
}

impl TransactionState {
    pub fn label(self) -> String {
        match self {
            Self::Applied => gettext_f("applied", &[]),
            Self::RolledBack => gettext_f("rolled back", &[]),
            Self::FailedAndRestored => gettext_f("failed and restored", &[]),
            Self::Interrupted => gettext_f("interrupted", &[]),
        }
    }
}

/// The journal's own state, finer than [`TransactionState`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Phase {
    Applying,
    Applied,
    /// Restoring after a failed step.
    Restoring,
    /// Rolling back on request.
    RollingBack,
    RolledBack,
    FailedAndRestored,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum FileState {
    Pending,
    /// About to back up: the file is untouched.
    Started,
    /// The backup is on disk and journaled: the file may be old or new.
    BackedUp,
    /// The new content is in place.
    Written,
    /// The old content is back.
    Restored,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct FileStep {
    path: String,
    state: FileState,
    /// Whether the file existed before (None until backed up).
    existed: Option<bool>,
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
    /// SHA-256 of the old and the new content (None: no file).
    before_sha256: Option<String>,
    after_sha256: Option<String>,
    /// Directories this step created (host paths, outermost first).
    created_dirs: Vec<String>,
    /// The temporary file of the atomic write (host path).
    temp: String,
    started: Option<u64>,
    finished: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum CommandState {
    Pending,
    Started,
    Done,
    Failed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CommandStep {
    argv: Vec<String>,
    state: CommandState,
    output: String,
    error: Option<String>,
    started: Option<u64>,
    finished: Option<u64>,
}

impl CommandStep {
    fn new(argv: &[String]) -> Self {
        Self {
            argv: argv.to_vec(),
            state: CommandState::Pending,
            output: String::new(),
            error: None,
            started: None,
            finished: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Journal {
    format: u32,
    id: TransactionId,
    summary: String,
    kernel_args: KernelArgsSummary,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    permanent: Option<crate::plan::Plan>,
    started: u64,
    finished: Option<u64>,
    phase: Phase,
    files: Vec<FileStep>,
    commands: Vec<CommandStep>,
    /// Commands run again after the files were restored.
    restore_commands: Vec<CommandStep>,
    error: Option<String>,
}

/// A transaction as [`list`] shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TransactionRecord {
    pub id: TransactionId,
    /// What it changes, in a line (translated).
    pub summary: String,
    /// Unix time it started and ended.
    pub started: u64,
    pub finished: Option<u64>,
    pub state: TransactionState,
    pub files: Vec<String>,
    pub commands: Vec<Vec<String>>,
    pub kernel_args: KernelArgsSummary,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// For a trial: the plan that makes it permanent.
    pub permanent: Option<crate::plan::Plan>,
    /// When it is undone unless confirmed (Unix time): see [`await_confirmation`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confirm_by: Option<u64>,
}

impl TransactionRecord {
    /// Whether it asked the boot loader to start a trial entry once (`trial.rs`).
    pub fn is_trial(&self) -> bool {
        self.commands.iter().any(|c| is_one_shot(c))
    }
}

impl Journal {
    fn state(&self) -> TransactionState {
        match self.phase {
            Phase::Applied => TransactionState::Applied,
            Phase::RolledBack => TransactionState::RolledBack,
            Phase::FailedAndRestored => TransactionState::FailedAndRestored,
            Phase::Applying | Phase::Restoring | Phase::RollingBack => {
                TransactionState::Interrupted
            }
        }
    }

    fn record(&self) -> TransactionRecord {
        TransactionRecord {
            id: self.id.clone(),
            summary: self.summary.clone(),
            started: self.started,
            finished: self.finished,
            state: self.state(),
            files: self.files.iter().map(|f| f.path.clone()).collect(),
            commands: self.commands.iter().map(|c| c.argv.clone()).collect(),
            kernel_args: self.kernel_args.clone(),
            error: self.error.clone(),
            permanent: self.permanent.clone(),
            confirm_by: None,
        }
    }
}

/// A running (or finished) transaction on disk.
struct Store {
    root: HostRoot,
    dir: PathBuf,
    journal: Journal,
}

impl Store {
    fn dir_of(root: &HostRoot, id: &TransactionId) -> PathBuf {
        root.path(STATE_DIR).join(id.as_str())
    }

    fn load(root: &HostRoot, id: &TransactionId) -> Result<Self, ApplyError> {
        let dir = Self::dir_of(root, id);
        let path = dir.join(JOURNAL);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ApplyError::NotFound(id.clone()))
            }
            Err(e) => return Err(ApplyError::io(&path, e)),
        };
        let journal: Journal = serde_json::from_str(&text).map_err(|e| ApplyError::Journal {
            id: id.to_string(),
            message: e.to_string(),
        })?;
        if journal.id != *id {
            return Err(ApplyError::Journal {
                id: id.to_string(),
                message: "the journal names another transaction".into(),
            });
        }
        Ok(Self {
            root: root.clone(),
            dir,
            journal,
        })
    }

    fn save(&mut self) -> Result<(), ApplyError> {
        let mut text =
            serde_json::to_string_pretty(&self.journal).expect("journals always serialize");
        text.push('\n');
        atomic_write(&self.dir.join(JOURNAL), text.as_bytes(), 0o600, None)
            .map_err(|e| ApplyError::io(self.dir.join(JOURNAL), e))
    }

    fn backup_path(&self, host_path: &str) -> PathBuf {
        let mut p = self.dir.join(BACKUP);
        for c in Path::new(host_path).components() {
            if let Component::Normal(part) = c {
                p.push(part);
            }
        }
        p
    }
}

// ---------------------------------------------------------------------------------------
// File primitives

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `bytes` to `path` through a temporary file in the same directory: write, fsync,
/// rename, fsync the directory. `owner` is (uid, gid).
fn atomic_write(path: &Path, bytes: &[u8], mode: u32, owner: Option<(u32, u32)>) -> io::Result<()> {
    replace_file(path, &temp_path(path, "tmp"), bytes, mode, owner, &|| {})?;
    sync_dir(path.parent().unwrap_or(Path::new("/")))
}

/// Puts `bytes` at `path` through `temp` (write, fsync, rename; `between` runs before the
/// rename). When the directory is read-only but `path` exists and is writable (a file
/// bind-mounted writable into a read-only directory), `path` is rewritten in place
/// instead: truncate, write, fsync; its mode and owner stay those of the file.
fn replace_file(
    path: &Path,
    temp: &Path,
    bytes: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
    between: &dyn Fn(),
) -> io::Result<()> {
    match write_temp(temp, bytes, mode, owner) {
        Ok(()) => {
            between();
            match fs::rename(temp, path) {
                // The file is a mount point of its own: it cannot be renamed over.
                Err(e) if e.kind() == io::ErrorKind::ResourceBusy => {
                    let _ = fs::remove_file(temp);
                    write_in_place(path, bytes)
                }
                other => other,
            }
        }
        Err(e) if e.kind() == io::ErrorKind::ReadOnlyFilesystem && path.is_file() => {
            between();
            write_in_place(path, bytes).map_err(|_| e)
        }
        Err(e) => Err(e),
    }
}

fn write_in_place(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new().write(true).truncate(true).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn write_temp(temp: &Path, bytes: &[u8], mode: u32, owner: Option<(u32, u32)>) -> io::Result<()> {
    let _ = fs::remove_file(temp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(temp)?;
    f.write_all(bytes)?;
    f.set_permissions(fs::Permissions::from_mode(mode))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
    }
    f.sync_all()
}

fn temp_path(path: &Path, tag: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.passthrough-{tag}"))
}

fn remove_if_exists(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        // A read-only directory says so even when the file is not there.
        Err(e)
            if fs::symlink_metadata(path).is_err_and(|m| m.kind() == io::ErrorKind::NotFound) =>
        {
            let _ = e;
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

fn host_parent(host_path: &str) -> String {
    match host_path.rfind('/') {
        Some(0) | None => "/".to_owned(),
        Some(i) => host_path[..i].to_owned(),
    }
}

/// The ancestors of `host_path` that do not exist yet, outermost first.
fn missing_dirs(root: &HostRoot, host_path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut dir = host_parent(host_path);
    while dir != "/" && !root.path(&dir).exists() {
        out.push(dir.clone());
        dir = host_parent(&dir);
    }
    out.reverse();
    out
}

// ---------------------------------------------------------------------------------------
// Progress and hooks

/// What a running transaction reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Progress {
    /// The transaction has its ID and journal; nothing is written yet.
    Started { id: String },
    /// A step begins (0-based `index` of `total`), described for the user.
    Step {
        index: usize,
        total: usize,
        text: String,
    },
    /// A line of a command's output.
    Output { line: String },
}

/// Test hooks: `before_step(k)` is called at every point where the process could die (the
/// k-th such point of this call), so a test can stop the transaction there.
pub struct ApplyHooks {
    pub before_step: Box<dyn Fn(usize)>,
}

impl Default for ApplyHooks {
    fn default() -> Self {
        Self {
            before_step: Box::new(|_| {}),
        }
    }
}

struct Faults<'a> {
    hooks: &'a ApplyHooks,
    count: Cell<usize>,
}

impl Faults<'_> {
    fn point(&self) {
        let k = self.count.get();
        self.count.set(k + 1);
        (self.hooks.before_step)(k);
    }
}

// ---------------------------------------------------------------------------------------
// Apply

/// A line that says what a rendered plan changes.
pub fn summary(rendered: &Rendered) -> String {
    let mut parts = Vec::new();
    if !rendered.kernel_args.add.is_empty() {
        parts.push(gettext_f(
            "add {args}",
            &[("args", &rendered.kernel_args.add.join(" "))],
        ));
    }
    if !rendered.kernel_args.remove.is_empty() {
        parts.push(gettext_f(
            "remove {args}",
            &[("args", &rendered.kernel_args.remove.join(" "))],
        ));
    }
    let files: Vec<&str> = rendered.files.iter().map(|f| f.path.as_str()).collect();
    if !files.is_empty() {
        parts.push(gettext_f("change {files}", &[("files", &files.join(", "))]));
    }
    if parts.is_empty() {
        gettext_f("no change", &[])
    } else {
        parts.join("; ")
    }
}

/// Applies `rendered` as one transaction. See the module documentation.
pub fn apply(
    root: &HostRoot,
    rendered: &Rendered,
    runner: &dyn CommandRunner,
    progress: &mut dyn FnMut(&Progress),
) -> Result<TransactionId, ApplyError> {
    apply_with_hooks(root, rendered, runner, progress, &ApplyHooks::default())
}

/// [`apply`] with test hooks.
pub fn apply_with_hooks(
    root: &HostRoot,
    rendered: &Rendered,
    runner: &dyn CommandRunner,
    progress: &mut dyn FnMut(&Progress),
    hooks: &ApplyHooks,
) -> Result<TransactionId, ApplyError> {
    validate(root, rendered)?;
    let pending: Vec<TransactionId> = list(root)?
        .into_iter()
        .filter(|r| r.state == TransactionState::Interrupted)
        .map(|r| r.id)
        .collect();
    if !pending.is_empty() {
        return Err(ApplyError::Pending(pending));
    }
    let faults = Faults {
        hooks,
        count: Cell::new(0),
    };
    let started = now();
    let state_dir = root.path(STATE_DIR);
    fs::create_dir_all(&state_dir).map_err(|e| ApplyError::io(&state_dir, e))?;
    let (id, dir) = loop {
        let id = TransactionId::generate(started);
        let dir = state_dir.join(id.as_str());
        match fs::create_dir(&dir) {
            Ok(()) => break (id, dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(ApplyError::io(&dir, e)),
        }
    };
    fs::create_dir(dir.join(BACKUP)).map_err(|e| ApplyError::io(dir.join(BACKUP), e))?;
    let journal = Journal {
        format: FORMAT,
        id: id.clone(),
        summary: summary(rendered),
        kernel_args: rendered.kernel_args.clone(),
        permanent: rendered.permanent.clone(),
        started,
        finished: None,
        phase: Phase::Applying,
        files: rendered
            .files
            .iter()
            .map(|f| FileStep {
                path: f.path.clone(),
                state: FileState::Pending,
                existed: None,
                mode: None,
                uid: None,
                gid: None,
                before_sha256: None,
                after_sha256: None,
                created_dirs: Vec::new(),
                temp: host_temp(&f.path),
                started: None,
                finished: None,
            })
            .collect(),
        commands: rendered
            .commands
            .iter()
            .map(|c| CommandStep::new(c))
            .collect(),
        restore_commands: Vec::new(),
        error: None,
    };
    let mut store = Store {
        root: root.clone(),
        dir,
        journal,
    };
    store.save()?;
    sync_dir(&state_dir).map_err(|e| ApplyError::io(&state_dir, e))?;
    progress(&Progress::Started {
        id: id.as_str().to_owned(),
    });
    faults.point();

    let total = rendered.files.len() + rendered.commands.len();
    for (i, change) in rendered.files.iter().enumerate() {
        progress(&Progress::Step {
            index: i,
            total,
            text: match &change.after {
                Some(_) => gettext_f("Writing {path}", &[("path", &change.path)]),
                None => gettext_f("Removing {path}", &[("path", &change.path)]),
            },
        });
        if let Err(e) = write_step(
            &mut store,
            i,
            change.before.as_deref(),
            change.after.as_deref(),
            &faults,
        ) {
            // Nothing has run yet: put the files back and stop.
            store.journal.error = Some(e.message());
            store.journal.phase = Phase::Restoring;
            store.save()?;
            restore_files(&mut store)?;
            store.journal.phase = Phase::FailedAndRestored;
            store.journal.finished = Some(now());
            store.save()?;
            return Err(e);
        }
    }
    for (j, argv) in rendered.commands.iter().enumerate() {
        progress(&Progress::Step {
            index: rendered.files.len() + j,
            total,
            text: gettext_f("Running {command}", &[("command", &argv.join(" "))]),
        });
        store.journal.commands[j].state = CommandState::Started;
        store.journal.commands[j].started = Some(now());
        store.save()?;
        faults.point();
        let mut out = String::new();
        let result = runner.run(argv, &mut |line| {
            push_output(&mut out, line);
            progress(&Progress::Output {
                line: line.to_owned(),
            });
        });
        faults.point();
        let step = &mut store.journal.commands[j];
        step.output = out;
        step.finished = Some(now());
        match result {
            Ok(()) => {
                step.state = CommandState::Done;
                store.save()?;
            }
            Err(message) => {
                step.state = CommandState::Failed;
                step.error = Some(message.clone());
                store.journal.error = Some(gettext_f(
                    "{command} failed: {error}",
                    &[("command", &argv.join(" ")), ("error", &message)],
                ));
                store.journal.phase = Phase::Restoring;
                store.save()?;
                let restored = restore_all(&mut store, runner, progress, Phase::FailedAndRestored);
                return Err(ApplyError::CommandFailed {
                    id,
                    argv: argv.clone(),
                    message,
                    restored: restored.is_ok(),
                });
            }
        }
    }
    faults.point();
    store.journal.phase = Phase::Applied;
    store.journal.finished = Some(now());
    store.save()?;
    Ok(id)
}

fn host_temp(host_path: &str) -> String {
    temp_path(Path::new(host_path), "new")
        .to_string_lossy()
        .into_owned()
}

fn push_output(out: &mut String, line: &str) {
    if out.len() < MAX_OUTPUT {
        out.push_str(line);
        out.push('\n');
        if out.len() >= MAX_OUTPUT {
            out.push_str("[…]\n");
        }
    }
}

/// One file: back up, journal, write atomically, journal.
fn write_step(
    store: &mut Store,
    i: usize,
    expected_before: Option<&str>,
    after: Option<&str>,
    faults: &Faults<'_>,
) -> Result<(), ApplyError> {
    let host_path = store.journal.files[i].path.clone();
    let real = store.root.path(&host_path);
    faults.point();
    store.journal.files[i].state = FileState::Started;
    store.journal.files[i].started = Some(now());
    store.save()?;

    // Back up the file as it is now.
    let old = match fs::read(&real) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(ApplyError::io(&real, e)),
    };
    if old.as_deref() != expected_before.map(str::as_bytes) {
        return Err(ApplyError::Stale(host_path));
    }
    let meta = match &old {
        Some(_) => Some(fs::metadata(&real).map_err(|e| ApplyError::io(&real, e))?),
        None => None,
    };
    if let Some(bytes) = &old {
        let backup = store.backup_path(&host_path);
        let parent = backup.parent().expect("backup paths have a parent");
        fs::create_dir_all(parent).map_err(|e| ApplyError::io(parent, e))?;
        write_temp(&backup, bytes, 0o600, None).map_err(|e| ApplyError::io(&backup, e))?;
        sync_dir(parent).map_err(|e| ApplyError::io(parent, e))?;
    }
    faults.point();
    let created = missing_dirs(&store.root, &host_path);
    {
        let step = &mut store.journal.files[i];
        step.existed = Some(old.is_some());
        step.mode = meta.as_ref().map(|m| m.mode() & 0o7777);
        step.uid = meta.as_ref().map(|m| m.uid());
        step.gid = meta.as_ref().map(|m| m.gid());
        step.before_sha256 = old.as_deref().map(sha256_hex);
        step.after_sha256 = after.map(|a| sha256_hex(a.as_bytes()));
        step.created_dirs = created.clone();
        step.state = FileState::BackedUp;
    }
    store.save()?;
    faults.point();

    // Write the new content.
    match after {
        Some(text) => {
            for d in &created {
                let p = store.root.path(d);
                fs::create_dir(&p).map_err(|e| ApplyError::io(&p, e))?;
                sync_dir(p.parent().unwrap_or(Path::new("/")))
                    .map_err(|e| ApplyError::io(&p, e))?;
            }
            let temp = store.root.path(&store.journal.files[i].temp);
            let mode = meta
                .as_ref()
                .map(|m| m.mode() & 0o7777)
                .unwrap_or_else(|| new_file_mode(&store.journal.files[i].path));
            let owner = meta.as_ref().map(|m| (m.uid(), m.gid()));
            replace_file(&real, &temp, text.as_bytes(), mode, owner, &|| {
                faults.point()
            })
            .map_err(|e| ApplyError::io(&real, e))?;
        }
        None => {
            faults.point();
            remove_if_exists(&real).map_err(|e| ApplyError::io(&real, e))?;
        }
    }
    let parent = real.parent().unwrap_or(Path::new("/"));
    sync_dir(parent).map_err(|e| ApplyError::io(parent, e))?;
    faults.point();
    store.journal.files[i].state = FileState::Written;
    store.journal.files[i].finished = Some(now());
    store.save()
}

/// Puts back every file a transaction may have touched, newest first. Safe to repeat.
fn restore_files(store: &mut Store) -> Result<(), ApplyError> {
    for i in (0..store.journal.files.len()).rev() {
        let step = store.journal.files[i].clone();
        let real = store.root.path(&step.path);
        // A temporary file may be left from an interrupted write.
        if step.state != FileState::Pending {
            let temp = store.root.path(&step.temp);
            remove_if_exists(&temp).map_err(|e| ApplyError::io(&temp, e))?;
        }
        if !matches!(step.state, FileState::BackedUp | FileState::Written) {
            continue;
        }
        match step.existed {
            Some(true) => {
                let backup = store.backup_path(&step.path);
                let bytes = fs::read(&backup).map_err(|e| ApplyError::io(&backup, e))?;
                let owner = step.uid.zip(step.gid);
                atomic_write(&real, &bytes, step.mode.unwrap_or(0o644), owner)
                    .map_err(|e| ApplyError::io(&real, e))?;
            }
            _ => {
                remove_if_exists(&real).map_err(|e| ApplyError::io(&real, e))?;
                let parent = real.parent().unwrap_or(Path::new("/"));
                if parent.exists() {
                    sync_dir(parent).map_err(|e| ApplyError::io(parent, e))?;
                }
            }
        }
        for d in step.created_dirs.iter().rev() {
            let p = store.root.path(d);
            // Only if empty: something else may have put files there since.
            if fs::remove_dir(&p).is_ok() {
                let parent = p.parent().unwrap_or(Path::new("/"));
                sync_dir(parent).map_err(|e| ApplyError::io(parent, e))?;
            }
        }
        store.journal.files[i].state = FileState::Restored;
        store.save()?;
    }
    Ok(())
}

/// Restores the files, then runs the commands that had started again (all of them for a
/// requested rollback) so the generated boot files match the restored configuration.
fn restore_all(
    store: &mut Store,
    runner: &dyn CommandRunner,
    progress: &mut dyn FnMut(&Progress),
    final_phase: Phase,
) -> Result<Option<(Vec<String>, String)>, ApplyError> {
    restore_files(store)?;
    let rerun: Vec<Vec<String>> = store
        .journal
        .commands
        .iter()
        .filter(|c| final_phase == Phase::RolledBack || c.state != CommandState::Pending)
        .map(|c| undo_command(&c.argv).unwrap_or_else(|| c.argv.clone()))
        .collect();
    let mut failure = None;
    store.journal.restore_commands.clear();
    for (j, argv) in rerun.iter().enumerate() {
        progress(&Progress::Step {
            index: j,
            total: rerun.len(),
            text: gettext_f("Running {command}", &[("command", &argv.join(" "))]),
        });
        let mut step = CommandStep::new(argv);
        step.state = CommandState::Started;
        step.started = Some(now());
        store.journal.restore_commands.push(step);
        store.save()?;
        let mut out = String::new();
        let result = runner.run(argv, &mut |line| {
            push_output(&mut out, line);
            progress(&Progress::Output {
                line: line.to_owned(),
            });
        });
        let step = store
            .journal
            .restore_commands
            .last_mut()
            .expect("pushed above");
        step.output = out;
        step.finished = Some(now());
        match result {
            Ok(()) => step.state = CommandState::Done,
            Err(message) => {
                step.state = CommandState::Failed;
                step.error = Some(message.clone());
                failure.get_or_insert((argv.clone(), message));
            }
        }
        store.save()?;
    }
    store.journal.phase = final_phase;
    store.journal.finished = Some(now());
    if let Some((argv, message)) = &failure {
        let text = gettext_f(
            "The files were restored, but {command} failed afterwards: {error}",
            &[("command", &argv.join(" ")), ("error", message)],
        );
        store.journal.error = Some(match store.journal.error.take() {
            Some(first) => format!("{first}\n{text}"),
            None => text,
        });
    }
    store.save()?;
    Ok(failure)
}

// ---------------------------------------------------------------------------------------
// Rollback, list, recover

/// Restores the files of an applied transaction byte for byte (and removes the files it
/// created), then runs its commands again. Refused when a file changed since.
pub fn rollback(
    root: &HostRoot,
    id: &TransactionId,
    runner: &dyn CommandRunner,
    progress: &mut dyn FnMut(&Progress),
) -> Result<(), ApplyError> {
    rollback_impl(root, id, runner, progress, false)
}

/// [`rollback`] even when files changed since the transaction.
pub fn rollback_forced(
    root: &HostRoot,
    id: &TransactionId,
    runner: &dyn CommandRunner,
    progress: &mut dyn FnMut(&Progress),
) -> Result<(), ApplyError> {
    rollback_impl(root, id, runner, progress, true)
}

fn rollback_impl(
    root: &HostRoot,
    id: &TransactionId,
    runner: &dyn CommandRunner,
    progress: &mut dyn FnMut(&Progress),
    force: bool,
) -> Result<(), ApplyError> {
    let id = TransactionId::parse(id.as_str())?;
    let mut store = Store::load(root, &id)?;
    let state = store.journal.state();
    if state != TransactionState::Applied {
        return Err(ApplyError::WrongState { id, state });
    }
    if !force {
        let mut changed = Vec::new();
        for f in &store.journal.files {
            if current_sha256(root, &f.path)? != f.after_sha256 {
                changed.push(f.path.clone());
            }
        }
        if !changed.is_empty() {
            return Err(ApplyError::ChangedSince { id, paths: changed });
        }
    }
    store.journal.phase = Phase::RollingBack;
    store.save()?;
    let outcome = restore_all(&mut store, runner, progress, Phase::RolledBack)?;
    // Nothing waits for confirmation any more (the marker is only read for applied ones).
    let _ = remove_if_exists(&store.dir.join(CONFIRM_BY));
    match outcome {
        Some((argv, message)) => Err(ApplyError::CommandFailed {
            id,
            argv,
            message,
            restored: true,
        }),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------
// Confirm or revert

/// The file in a transaction's directory that says it is undone unless confirmed by then
/// (Unix time, decimal).
const CONFIRM_BY: &str = "confirm-by";

/// Marks an applied transaction as undone at `deadline` (Unix time) unless [`confirm`]ed
/// before: a change that can cut the user off (the network bridge) is kept only when the
/// user can still answer afterwards. The mark is on disk, so a helper that restarts finds it.
pub fn await_confirmation(
    root: &HostRoot,
    id: &TransactionId,
    deadline: u64,
) -> Result<(), ApplyError> {
    let store = Store::load(root, id)?;
    if store.journal.state() != TransactionState::Applied {
        return Err(ApplyError::WrongState {
            id: id.clone(),
            state: store.journal.state(),
        });
    }
    let path = store.dir.join(CONFIRM_BY);
    atomic_write(&path, format!("{deadline}\n").as_bytes(), 0o600, None)
        .map_err(|e| ApplyError::io(&path, e))
}

/// Keeps a transaction that waits for confirmation. False when none waits (already
/// confirmed, undone, or never asked).
pub fn confirm(root: &HostRoot, id: &TransactionId) -> Result<bool, ApplyError> {
    let path = Store::dir_of(root, id).join(CONFIRM_BY);
    let removed = remove_if_exists(&path).map_err(|e| ApplyError::io(&path, e))?;
    if removed {
        sync_dir(&Store::dir_of(root, id)).map_err(|e| ApplyError::io(&path, e))?;
    }
    Ok(removed)
}

/// When the transaction is undone unless confirmed; `None` when nothing waits.
pub fn confirmation_deadline(root: &HostRoot, id: &TransactionId) -> Option<u64> {
    fs::read_to_string(Store::dir_of(root, id).join(CONFIRM_BY))
        .ok()
        .and_then(|t| t.trim().parse().ok())
}

/// Every applied transaction that waits for confirmation, with its deadline.
pub fn awaiting_confirmation(root: &HostRoot) -> Result<Vec<(TransactionId, u64)>, ApplyError> {
    Ok(list(root)?
        .into_iter()
        .filter(|r| r.state == TransactionState::Applied)
        .filter_map(|r| r.confirm_by.map(|t| (r.id, t)))
        .collect())
}

/// The current Unix time, as the journal records it.
pub fn unix_now() -> u64 {
    now()
}

/// The SHA-256 of `host_path` as it is now (hex, as the journal records it); `None` when
/// there is no such file.
pub fn current_sha256(root: &HostRoot, host_path: &str) -> Result<Option<String>, ApplyError> {
    match fs::read(root.path(host_path)) {
        Ok(bytes) => Ok(Some(sha256_hex(&bytes))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ApplyError::io(root.path(host_path), e)),
    }
}

/// The journal's step of transaction `id` for `host_path`, backed up (so `existed` is known).
fn backed_up_step(
    root: &HostRoot,
    id: &TransactionId,
    host_path: &str,
) -> Result<(Store, FileStep), ApplyError> {
    let store = Store::load(root, id)?;
    let journal_error = |message: String| ApplyError::Journal {
        id: id.to_string(),
        message,
    };
    let step = store
        .journal
        .files
        .iter()
        .find(|f| f.path == host_path)
        .cloned()
        .ok_or_else(|| {
            journal_error(gettext_f(
                "the transaction did not change {path}",
                &[("path", host_path)],
            ))
        })?;
    if step.existed.is_none() || step.state == FileState::Pending {
        return Err(journal_error(gettext_f(
            "the transaction did not get to back up {path}",
            &[("path", host_path)],
        )));
    }
    Ok((store, step))
}

/// What `host_path` held before transaction `id` changed it, byte for byte from the
/// transaction's backup (checked against the journal's hash); `None` when the file did not
/// exist. An error when the transaction did not change the file, or its backup is missing,
/// damaged or not text.
pub fn content_before(
    root: &HostRoot,
    id: &TransactionId,
    host_path: &str,
) -> Result<Option<String>, ApplyError> {
    let id = TransactionId::parse(id.as_str())?;
    let (store, step) = backed_up_step(root, &id, host_path)?;
    if step.existed != Some(true) {
        return Ok(None);
    }
    let backup = store.backup_path(host_path);
    let bytes = fs::read(&backup).map_err(|e| ApplyError::io(&backup, e))?;
    let journal_error = |message: String| ApplyError::Journal {
        id: id.to_string(),
        message,
    };
    if step.before_sha256.as_deref() != Some(sha256_hex(&bytes).as_str()) {
        return Err(journal_error(gettext_f(
            "the backup of {path} is not what the journal recorded",
            &[("path", host_path)],
        )));
    }
    String::from_utf8(bytes).map(Some).map_err(|_| {
        journal_error(gettext_f(
            "the backup of {path} is not text",
            &[("path", host_path)],
        ))
    })
}

/// The SHA-256 of what transaction `id` left at `host_path` (hex, as [`current_sha256`]
/// gives it); `None` when it removed the file.
pub fn sha256_after(
    root: &HostRoot,
    id: &TransactionId,
    host_path: &str,
) -> Result<Option<String>, ApplyError> {
    let id = TransactionId::parse(id.as_str())?;
    Ok(backed_up_step(root, &id, host_path)?.1.after_sha256)
}

/// Every journaled transaction, newest first. Unreadable journals are skipped.
pub fn list(root: &HostRoot) -> Result<Vec<TransactionRecord>, ApplyError> {
    let dir = root.path(STATE_DIR);
    let names = match root.list_dir(STATE_DIR) {
        Ok(names) => names,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ApplyError::io(&dir, e)),
    };
    let mut records: Vec<TransactionRecord> = names
        .iter()
        .filter_map(|n| TransactionId::parse(n).ok())
        .filter_map(|id| Store::load(root, &id).ok())
        .map(|s| {
            let mut record = s.journal.record();
            record.confirm_by = confirmation_deadline(root, &record.id);
            record
        })
        .collect();
    records.sort_by(|a, b| (b.started, &b.id).cmp(&(a.started, &a.id)));
    Ok(records)
}

/// Finishes the rollback of every interrupted transaction (at start-up, before anything
/// else): restores its files and, if any of its commands had started, runs them again.
pub fn recover(
    root: &HostRoot,
    runner: &dyn CommandRunner,
) -> Result<Vec<TransactionId>, ApplyError> {
    recover_with_hooks(root, runner, &ApplyHooks::default())
}

/// [`recover`] with test hooks (a fault point before each transaction's restoration).
pub fn recover_with_hooks(
    root: &HostRoot,
    runner: &dyn CommandRunner,
    hooks: &ApplyHooks,
) -> Result<Vec<TransactionId>, ApplyError> {
    let faults = Faults {
        hooks,
        count: Cell::new(0),
    };
    let mut done = Vec::new();
    let mut records = list(root)?;
    records.reverse();
    for r in records
        .into_iter()
        .filter(|r| r.state == TransactionState::Interrupted)
    {
        let mut store = Store::load(root, &r.id)?;
        let final_phase = match store.journal.phase {
            Phase::RollingBack => Phase::RolledBack,
            _ => Phase::FailedAndRestored,
        };
        if store.journal.phase == Phase::Applying {
            store.journal.error = Some(gettext_f(
                "The change was interrupted; Passthrough restored the files.",
                &[],
            ));
            store.journal.phase = Phase::Restoring;
            store.save()?;
        }
        faults.point();
        // A failed re-run of a command is in the journal; the files are back either way.
        let _ = restore_all(&mut store, runner, &mut |_| {}, final_phase);
        done.push(r.id);
    }
    Ok(done)
}

// ---------------------------------------------------------------------------------------
// SHA-256 (FIPS 180-4), for the journal's record of what each file held.

fn sha256_hex(data: &[u8]) -> String {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 64];
        for (t, word) in block.chunks_exact(4).enumerate() {
            w[t] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for t in 16..64 {
            let s0 = w[t - 15].rotate_right(7) ^ w[t - 15].rotate_right(18) ^ (w[t - 15] >> 3);
            let s1 = w[t - 2].rotate_right(17) ^ w[t - 2].rotate_right(19) ^ (w[t - 2] >> 10);
            w[t] = w[t - 16]
                .wrapping_add(s0)
                .wrapping_add(w[t - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for t in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[t])
                .wrapping_add(w[t]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *x = x.wrapping_add(y);
        }
    }
    h.iter().map(|x| format!("{x:08x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_known_vectors() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            sha256_hex(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
    }

    #[test]
    fn sha256_of_multi_block_input() {
        let expected = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
        assert_eq!(sha256_hex(&vec![b'a'; 1_000_000]), expected);
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(civil(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(civil(1_700_000_000), (2023, 11, 14, 22, 13, 20));
        assert_eq!(format_time(1_700_000_000), "2023-11-14 22:13:20 UTC");
    }

    #[test]
    fn ids_are_validated() {
        let id = TransactionId::generate(1_700_000_000);
        assert!(id.as_str().starts_with("20231114-221320-"), "{id}");
        assert_eq!(id.as_str().len(), 22);
        TransactionId::parse(id.as_str()).unwrap();
        for bad in ["", "../x", "a/b", "a b", ".", "..", &"a".repeat(65), "x\0"] {
            assert!(TransactionId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(serde_json::from_str::<TransactionId>("\"../../etc\"").is_err());
    }

    #[test]
    fn paths_are_allow_listed() {
        for ok in [
            "/etc/default/grub",
            "/etc/kernel/cmdline",
            "/boot/loader/entries/arch.conf",
            "/boot/efi/loader/entries/x.conf",
            "/etc/modprobe.d/passthrough-vfio.conf",
            "/etc/udev/rules.d/90-passthrough-vfio.rules",
            "/etc/mkinitcpio.conf",
            "/etc/dracut.conf.d/passthrough-vfio.conf",
            "/etc/netplan/90-passthrough-bridge.yaml",
            "/etc/netplan/00-installer-config.yaml",
            "/etc/netplan/50-cloud-init.yaml",
            "/etc/systemd/network/05-passthrough-br0.netdev",
        ] {
            assert!(path_allowed(ok), "{ok}");
        }
        for bad in [
            "etc/default/grub",
            "/etc/default/grub/",
            "/etc/default/grub.d",
            "/etc/shadow",
            "/etc/kernel/../shadow",
            "/etc/kernel/./cmdline",
            "/etc/kernel//cmdline",
            "/etc/kernel/",
            "/etc/kernel/install.d/90-x.install",
            "/etc/modprobe.d/x\n.conf",
            "/boot/vmlinuz",
            "/etc/netplan/",
            "/etc/netplan",
            "/etc/netplan/x/00-config.yaml",
            "/etc/netplan/../shadow",
            "/lib/netplan/00-config.yaml",
            "/run/netplan/00-config.yaml",
            "/etc/systemd/network/20-wired.network",
        ] {
            assert!(!path_allowed(bad), "{bad}");
        }
    }

    /// Records nothing, runs nothing.
    struct NoCommands;

    impl CommandRunner for NoCommands {
        fn run(&self, _: &[String], _: &mut dyn FnMut(&str)) -> Result<(), String> {
            Ok(())
        }
    }

    #[test]
    fn content_before_reads_the_backup_and_sha256_after_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let root = HostRoot::new(dir.path());
        let user = "/etc/netplan/00-installer-config.yaml";
        let ours = crate::network::NETPLAN_FILE;
        let original = "# The installer's file\nnetwork:\n  version: 2\n";
        fs::create_dir_all(root.path("/etc/netplan")).unwrap();
        fs::write(root.path(user), original).unwrap();
        let edited = "network:\n  version: 2\n".to_owned();
        let rendered = Rendered {
            files: vec![
                crate::plan::FileChange {
                    path: ours.into(),
                    before: None,
                    after: Some("# Written by Passthrough\n".into()),
                },
                crate::plan::FileChange {
                    path: user.into(),
                    before: Some(original.into()),
                    after: Some(edited.clone()),
                },
            ],
            ..Rendered::default()
        };
        let id = apply(&root, &rendered, &NoCommands, &mut |_| {}).unwrap();
        assert_eq!(
            content_before(&root, &id, user).unwrap().as_deref(),
            Some(original)
        );
        assert_eq!(content_before(&root, &id, ours).unwrap(), None);
        assert_eq!(
            sha256_after(&root, &id, user).unwrap(),
            current_sha256(&root, user).unwrap()
        );
        assert_eq!(
            sha256_after(&root, &id, user).unwrap(),
            Some(sha256_hex(edited.as_bytes()))
        );
        assert_eq!(
            current_sha256(&root, "/etc/netplan/none.yaml").unwrap(),
            None
        );
        // A file the transaction did not change, and a transaction that does not exist.
        let err = content_before(&root, &id, "/etc/default/grub").unwrap_err();
        assert!(matches!(err, ApplyError::Journal { .. }), "{err}");
        let none = TransactionId::parse("20000101-000000-000000").unwrap();
        assert!(matches!(
            content_before(&root, &none, user),
            Err(ApplyError::NotFound(_))
        ));
        // A damaged backup is refused, never returned.
        let backup = Store::dir_of(&root, &id).join("backup/etc/netplan/00-installer-config.yaml");
        fs::write(&backup, "network: {}\n").unwrap();
        let err = content_before(&root, &id, user).unwrap_err();
        assert!(
            err.to_string().contains("not what the journal recorded"),
            "{err}"
        );
    }

    #[test]
    fn commands_are_allow_listed() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        for ok in [
            &["update-grub"][..],
            &["grub-mkconfig", "-o", "/boot/grub/grub.cfg"],
            &["grub2-mkconfig", "-o", "/boot/efi/EFI/fedora/grub.cfg"],
            &[
                "grubby",
                "--update-kernel=ALL",
                "--args=intel_iommu=on iommu=pt",
            ],
            &[
                "kernel-install",
                "add",
                "6.6.8-arch1-1",
                "/usr/lib/modules/6.6.8-arch1-1/vmlinuz",
            ],
            &["rpm-ostree", "kargs", "--append-if-missing=intel_iommu=on"],
            &["update-initramfs", "-u", "-k", "all"],
            &[
                "booster",
                "build",
                "--force",
                "--kernel-version",
                "6.6.8-arch1-1",
                "/boot/booster-linux.img",
            ],
        ] {
            assert!(command_allowed(&v(ok)), "{ok:?}");
        }
        for bad in [
            &[][..],
            &["sh", "-c", "true"],
            &["/usr/sbin/update-grub"],
            &["update-grub", "--extra"],
            &["grub-mkconfig", "-o", "/etc/shadow"],
            &["grub-mkconfig", "-o", "/boot/efi/EFI/../../etc/grub.cfg"],
            &["grubby", "--update-kernel=ALL", "--args=--config=/x"],
            &["grubby", "--update-kernel=ALL"],
            &[
                "kernel-install",
                "add",
                "../../x",
                "/usr/lib/modules/../../x/vmlinuz",
            ],
            &["booster", "build", "--force", "/etc/passwd"],
        ] {
            assert!(!command_allowed(&v(bad)), "{bad:?}");
        }
    }
}
