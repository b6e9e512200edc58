//! `ReadLog`: the logs the Troubleshooting step looks for known problems in, which only root
//! may read on most systems: the kernel log of the current boot and a virtual machine's QEMU
//! log (`/var/log/libvirt/qemu/NAME.log`, mode 0600 root).
//!
//! The request has been validated ([`validate::log_request`](crate::validate::log_request))
//! before. At most the last [`MAX_LOG`] bytes are returned, cut at a line boundary: the
//! problems worth finding are at the end, and the reply stays a reasonable D-Bus message.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

use passthrough_core::dbus::HelperError;
use passthrough_core::i18n::gettext_f;
use passthrough_core::HostRoot;

/// The most bytes of a log `ReadLog` returns (its end).
pub const MAX_LOG: usize = 1024 * 1024;

/// Where libvirt keeps the QEMU log of each VM (`NAME.log`).
pub const QEMU_LOG_DIR: &str = "/var/log/libvirt/qemu";

/// Kernel log files read when the journal cannot be: in a copy of a host (tests, `--root`)
/// these are the only source.
pub const KERNEL_LOG_FILES: &[&str] = &["/var/log/kern.log", "/var/log/dmesg"];

/// Where journalctl is looked for on the running system (by absolute path, never `PATH`).
const JOURNALCTL: &[&str] = &["/usr/bin/journalctl", "/bin/journalctl"];

/// `O_NOFOLLOW` (not in std): the open fails on a symbolic link as the last component.
#[cfg(any(
    target_arch = "aarch64",
    target_arch = "arm",
    target_arch = "powerpc",
    target_arch = "powerpc64",
    target_arch = "m68k"
))]
const O_NOFOLLOW: i32 = 0o100000;
#[cfg(not(any(
    target_arch = "aarch64",
    target_arch = "arm",
    target_arch = "powerpc",
    target_arch = "powerpc64",
    target_arch = "m68k"
)))]
const O_NOFOLLOW: i32 = 0o400000;

/// A validated `ReadLog` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogRequest {
    /// The kernel log of the current boot.
    Kernel,
    /// The QEMU log of the libvirt domain of this name.
    Qemu(String),
}

/// The end of the log `request` names, as text.
pub fn read(root: &HostRoot, request: &LogRequest) -> Result<String, HelperError> {
    let bytes = match request {
        LogRequest::Kernel => kernel(root)?,
        LogRequest::Qemu(name) => qemu(root, name)?,
    };
    Ok(String::from_utf8_lossy(tail(&bytes)).into_owned())
}

/// The last [`MAX_LOG`] bytes of `bytes`, starting at the beginning of a line (unless one
/// line alone is longer than that).
pub fn tail(bytes: &[u8]) -> &[u8] {
    if bytes.len() <= MAX_LOG {
        return bytes;
    }
    let start = bytes.len() - MAX_LOG;
    if bytes[start - 1] == b'\n' {
        return &bytes[start..];
    }
    let end = &bytes[start..];
    match end.iter().position(|&b| b == b'\n') {
        Some(i) if i + 1 < end.len() => &end[i + 1..],
        _ => end,
    }
}

/// The kernel log of the current boot. On the running system: `journalctl -k -b`, which
/// reads the journal's files (the unit's `ProtectKernelLogs=yes` forbids /dev/kmsg and
/// syslog(2), so `dmesg` would fail there), else the first of [`KERNEL_LOG_FILES`]. Under any
/// other root only those files: never the build machine's own journal.
fn kernel(root: &HostRoot) -> Result<Vec<u8>, HelperError> {
    let journal = if root.is_live() {
        Some(journalctl())
    } else {
        None
    };
    if let Some(Ok(out)) = &journal {
        if !out.is_empty() {
            return Ok(out.clone());
        }
    }
    for file in KERNEL_LOG_FILES {
        match read_tail(&root.path(file)) {
            Ok(bytes) => return Ok(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(HelperError::Failed(gettext_f(
                    "Cannot read the kernel log {path}: {error}",
                    &[("path", file), ("error", &e.to_string())],
                )))
            }
        }
    }
    match journal {
        // journalctl ran and the journal has no kernel messages of this boot.
        Some(Ok(out)) => Ok(out),
        Some(Err(error)) => Err(HelperError::Failed(gettext_f(
            "Cannot read the kernel log: {error}",
            &[("error", &error)],
        ))),
        None => Err(HelperError::NotFound(gettext_f(
            "There is no kernel log in {root} (looked for var/log/kern.log and var/log/dmesg).",
            &[("root", &root.base().display().to_string())],
        ))),
    }
}

/// `journalctl -k -b --no-pager -o cat -q` on the running system: its output, or why not.
fn journalctl() -> Result<Vec<u8>, String> {
    let Some(program) = JOURNALCTL.iter().find(|p| Path::new(p).is_file()) else {
        return Err(gettext_f(
            "journalctl is not installed (looked in /usr/bin and /bin).",
            &[],
        ));
    };
    let out = Command::new(program)
        .args(["-k", "-b", "--no-pager", "-o", "cat", "-q"])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LC_ALL", "C.UTF-8")
        .current_dir("/")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            gettext_f(
                "cannot start {command}: {error}",
                &[("command", program), ("error", &e.to_string())],
            )
        })?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(gettext_f(
            "journalctl failed ({status}): {output}",
            &[
                ("status", &out.status.to_string()),
                ("output", String::from_utf8_lossy(&out.stderr).trim()),
            ],
        ))
    }
}

/// The QEMU log of the domain `name` (validated: one path component). The directory must be
/// the real `ROOT/var/log/libvirt/qemu` (no symbolic link on the way) and the log a regular
/// file opened without following a symbolic link.
fn qemu(root: &HostRoot, name: &str) -> Result<Vec<u8>, HelperError> {
    let host_path = format!("{QEMU_LOG_DIR}/{name}.log");
    let dir = root.path(QEMU_LOG_DIR);
    let not_found = || {
        HelperError::NotFound(gettext_f(
            "The virtual machine “{name}” has no QEMU log ({path} does not exist).",
            &[("name", name), ("path", &host_path)],
        ))
    };
    let real_dir = match dir.canonicalize() {
        Ok(real) => real,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(not_found()),
        Err(e) => return Err(unreadable(&host_path, &e)),
    };
    let expected = root
        .base()
        .canonicalize()
        .map_err(|e| unreadable(&host_path, &e))?
        .join(QEMU_LOG_DIR.trim_start_matches('/'));
    if real_dir != expected {
        tracing::warn!(dir = %dir.display(), real = %real_dir.display(), "QEMU log directory is a symbolic link");
        return Err(HelperError::InvalidArgument(gettext_f(
            "{dir} is not a real directory (a symbolic link leads elsewhere), so no log was read from it.",
            &[("dir", QEMU_LOG_DIR)],
        )));
    }
    let path = real_dir.join(format!("{name}.log"));
    let not_regular = || {
        HelperError::InvalidArgument(gettext_f(
            "{path} is not a regular file (it may be a symbolic link), so it was not read.",
            &[("path", &host_path)],
        ))
    };
    // lstat first: a FIFO or device must not even be opened (it could block the reader).
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.file_type().is_file() => {}
        Ok(_) => return Err(not_regular()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(not_found()),
        Err(e) => return Err(unreadable(&host_path, &e)),
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(O_NOFOLLOW)
        .open(&path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => not_found(),
            // ELOOP: the last component became a symbolic link after the lstat.
            _ if e.raw_os_error() == Some(40) => not_regular(),
            _ => unreadable(&host_path, &e),
        })?;
    let meta = file.metadata().map_err(|e| unreadable(&host_path, &e))?;
    if !meta.is_file() || meta.nlink() == 0 {
        return Err(not_regular());
    }
    tail_of(file, meta.len()).map_err(|e| unreadable(&host_path, &e))
}

fn unreadable(path: &str, error: &io::Error) -> HelperError {
    HelperError::Failed(gettext_f(
        "Cannot read {path}: {error}",
        &[("path", path), ("error", &error.to_string())],
    ))
}

/// The end of the regular file at `path` (followed symbolic links are fine: only the kernel
/// log files under the root are read this way), at most [`MAX_LOG`] bytes and the one before.
fn read_tail(path: &Path) -> io::Result<Vec<u8>> {
    let file = File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            gettext_f("not a regular file", &[]),
        ));
    }
    tail_of(file, meta.len())
}

/// Reads the last `MAX_LOG + 1` bytes of `file` (one more, to see whether the cut falls at
/// the start of a line); [`tail`] cuts them.
fn tail_of(mut file: File, len: u64) -> io::Result<Vec<u8>> {
    let keep = (MAX_LOG as u64) + 1;
    if len > keep {
        file.seek(SeekFrom::Start(len - keep))?;
    }
    let mut bytes = Vec::with_capacity(len.min(keep) as usize);
    file.take(keep).read_to_end(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> (tempfile::TempDir, HostRoot) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("var/log/libvirt/qemu")).unwrap();
        let root = HostRoot::new(dir.path());
        (dir, root)
    }

    #[test]
    fn tail_cuts_at_a_line() {
        assert_eq!(tail(b"a\nb\n"), b"a\nb\n");
        let mut big = Vec::new();
        let mut n = 0;
        while big.len() <= 3 * MAX_LOG {
            big.extend(format!("line {n} 行\n").as_bytes());
            n += 1;
        }
        let end = tail(&big);
        assert!(end.len() <= MAX_LOG);
        assert!(end.len() > MAX_LOG - 100);
        assert!(end.starts_with(b"line "));
        assert!(end.ends_with(format!("line {} 行\n", n - 1).as_bytes()));
        // A cut that falls exactly after a newline keeps the whole next line.
        let mut exact = vec![b'x'; 9];
        exact.push(b'\n');
        exact.extend(vec![b'y'; MAX_LOG]);
        assert_eq!(tail(&exact), &exact[10..]);
        // One endless line: its end.
        let long = vec![b'z'; MAX_LOG + 10];
        assert_eq!(tail(&long).len(), MAX_LOG);
    }

    #[test]
    fn reads_the_qemu_log_and_the_kernel_log_files() {
        let (_dir, root) = root();
        let name = "Game's \"VM\" 游戏";
        std::fs::write(
            root.path(format!("{QEMU_LOG_DIR}/{name}.log")),
            "qemu started\n",
        )
        .unwrap();
        assert_eq!(
            read(&root, &LogRequest::Qemu(name.into())).unwrap(),
            "qemu started\n"
        );
        let Err(HelperError::NotFound(text)) = read(&root, &LogRequest::Qemu("other".into()))
        else {
            panic!("expected NotFound");
        };
        assert!(text.contains("other"), "{text}");
        let Err(HelperError::NotFound(text)) = read(&root, &LogRequest::Kernel) else {
            panic!("expected NotFound");
        };
        assert!(text.contains("kern.log"), "{text}");
        std::fs::write(root.path("/var/log/dmesg"), "dmesg\n").unwrap();
        assert_eq!(read(&root, &LogRequest::Kernel).unwrap(), "dmesg\n");
        std::fs::write(root.path("/var/log/kern.log"), "kern\n").unwrap();
        assert_eq!(read(&root, &LogRequest::Kernel).unwrap(), "kern\n");
    }

    #[test]
    fn never_follows_a_symlink_out_of_the_log_directory() {
        let (dir, root) = root();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "SECRET\n").unwrap();
        std::os::unix::fs::symlink(&secret, root.path(format!("{QEMU_LOG_DIR}/vm.log"))).unwrap();
        let Err(HelperError::InvalidArgument(text)) = read(&root, &LogRequest::Qemu("vm".into()))
        else {
            panic!("a symlinked log was read");
        };
        assert!(
            !text.contains("SECRET") && text.contains("vm.log"),
            "{text}"
        );
        // A FIFO is not opened (it would block).
        let fifo = root.path(format!("{QEMU_LOG_DIR}/fifo.log"));
        assert!(Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        assert!(matches!(
            read(&root, &LogRequest::Qemu("fifo".into())),
            Err(HelperError::InvalidArgument(_))
        ));
        // The directory itself a symlink elsewhere.
        let (other, root2) = {
            let d = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(d.path().join("var/log/libvirt")).unwrap();
            let elsewhere = dir.path().join("elsewhere");
            std::fs::create_dir(&elsewhere).unwrap();
            std::fs::write(elsewhere.join("vm.log"), "SECRET\n").unwrap();
            std::os::unix::fs::symlink(&elsewhere, d.path().join("var/log/libvirt/qemu")).unwrap();
            let r = HostRoot::new(d.path());
            (d, r)
        };
        let Err(HelperError::InvalidArgument(text)) = read(&root2, &LogRequest::Qemu("vm".into()))
        else {
            panic!("a log in a symlinked directory was read");
        };
        assert!(!text.contains("SECRET"), "{text}");
        drop(other);
    }

    #[test]
    fn a_big_log_returns_its_end() {
        let (_dir, root) = root();
        let mut text = String::new();
        let mut n = 0;
        while text.len() < 3 * MAX_LOG {
            text.push_str(&format!("2026-01-01 qemu line {n}\n"));
            n += 1;
        }
        std::fs::write(root.path(format!("{QEMU_LOG_DIR}/big.log")), &text).unwrap();
        let got = read(&root, &LogRequest::Qemu("big".into())).unwrap();
        assert!(got.len() <= MAX_LOG);
        assert!(got.starts_with("2026-01-01 qemu line "));
        assert!(got.ends_with(&format!("line {}\n", n - 1)));
        assert!(text.ends_with(&got));
    }
}
