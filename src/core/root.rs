//! [`HostRoot`]: the only door to host state.

use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

/// A directory that is read as if it were `/` of the host being examined.
///
/// The default is the real `/`. Tests and `--root DIR` point it at a fixture tree, and every
/// reader in core goes through it: nothing opens `/sys` or `/proc` directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRoot {
    base: PathBuf,
}

impl Default for HostRoot {
    fn default() -> Self {
        Self::new("/")
    }
}

impl HostRoot {
    pub fn new(base: impl Into<PathBuf>) -> Self {
        Self { base: base.into() }
    }

    /// The directory this root stands for.
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// True when this is the running system's own `/`.
    pub fn is_live(&self) -> bool {
        self.base == Path::new("/")
    }

    /// The real path of a host path such as `/sys/bus/pci` (leading `/` optional).
    ///
    /// `..` components are dropped, so no host path can name a file outside the root.
    pub fn path(&self, host_path: impl AsRef<Path>) -> PathBuf {
        let mut out = self.base.clone();
        for c in host_path.as_ref().components() {
            if let Component::Normal(part) = c {
                out.push(part);
            }
        }
        out
    }

    pub fn read_string(&self, host_path: impl AsRef<Path>) -> io::Result<String> {
        fs::read_to_string(self.path(host_path))
    }

    /// Reads a one-value file (sysfs style) and trims the trailing newline.
    pub fn read_value(&self, host_path: impl AsRef<Path>) -> io::Result<String> {
        let mut s = self.read_string(host_path)?;
        let trimmed = s.trim_end().len();
        s.truncate(trimmed);
        Ok(s)
    }

    /// Reads a small file (a sysfs attribute, a config header) with one `read` call where it
    /// fits: no `stat` for a size hint and no extra read for end-of-file, which halves the
    /// system calls of a PCI scan.
    pub fn read_small(&self, host_path: impl AsRef<Path>) -> io::Result<Vec<u8>> {
        let mut file = fs::File::open(self.path(host_path))?;
        let mut buf = vec![0u8; 256];
        let mut len = 0;
        loop {
            let n = file.read(&mut buf[len..])?;
            len += n;
            // A short read means end of file for regular files and sysfs attributes alike.
            if n == 0 || len < buf.len() {
                break;
            }
            buf.resize(buf.len() * 2, 0);
        }
        buf.truncate(len);
        Ok(buf)
    }

    /// [`read_small`](Self::read_small) as text with the trailing newline trimmed.
    pub fn read_attr(&self, host_path: impl AsRef<Path>) -> io::Result<String> {
        let bytes = self.read_small(host_path)?;
        let mut s =
            String::from_utf8(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let trimmed = s.trim_end().len();
        s.truncate(trimmed);
        Ok(s)
    }

    pub fn exists(&self, host_path: impl AsRef<Path>) -> bool {
        self.path(host_path).exists()
    }

    pub fn read_link(&self, host_path: impl AsRef<Path>) -> io::Result<PathBuf> {
        fs::read_link(self.path(host_path))
    }

    /// Names of the entries of a directory, sorted; an error when it cannot be read.
    pub fn list_dir(&self, host_path: impl AsRef<Path>) -> io::Result<Vec<String>> {
        let mut names: Vec<String> = fs::read_dir(self.path(host_path))?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        Ok(names)
    }

    /// The first of `candidates` that exists under the root, as a host path.
    pub fn first_existing<'a>(&self, candidates: &[&'a str]) -> Option<&'a str> {
        candidates.iter().copied().find(|c| self.exists(c))
    }
}

/// Joins a relative symlink target onto the directory holding the link, without touching the
/// file system (`..` pops a component). Used to follow sysfs links inside a fixture root.
pub fn join_lexically(dir: &Path, target: &Path) -> PathBuf {
    let mut out: Vec<Component> = dir.components().collect();
    for c in target.components() {
        match c {
            Component::ParentDir => {
                if matches!(out.last(), Some(Component::Normal(_))) {
                    out.pop();
                }
            }
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                out.clear();
                out.push(c);
            }
            Component::Normal(_) => out.push(c),
        }
    }
    out.iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_root() {
        let root = HostRoot::new("/tmp/fx");
        assert_eq!(
            root.path("/sys/bus/pci"),
            PathBuf::from("/tmp/fx/sys/bus/pci")
        );
        assert_eq!(
            root.path("../../etc/shadow"),
            PathBuf::from("/tmp/fx/etc/shadow")
        );
        assert!(HostRoot::default().is_live());
        assert!(!root.is_live());
    }

    #[test]
    fn lexical_join_follows_sysfs_links() {
        let joined = join_lexically(
            Path::new("sys/bus/pci/devices"),
            Path::new("../../../devices/pci0000:00/0000:00:03.1/0000:08:00.0"),
        );
        assert_eq!(
            joined,
            PathBuf::from("sys/devices/pci0000:00/0000:00:03.1/0000:08:00.0")
        );
    }
}
