//! Debian and Ubuntu's `/etc/initramfs-tools/modules`: one module a line (optionally with
//! parameters after it), `#` comments. Removing a module drops its lines; new modules are
//! added at the end, one a line. Every other line stays as it is.

use super::lines::{append_line, lines};
use super::modlist::{self, removes};
use super::EditError;

/// The file's standard host path.
pub const PATH: &str = "/etc/initramfs-tools/modules";

/// The modules the file loads, in order.
pub fn modules(text: &str) -> Vec<String> {
    lines(text)
        .iter()
        .filter_map(|l| module_of(l.content(text)))
        .map(str::to_owned)
        .collect()
}

/// Removes the modules in `remove` (exact names, unless also in `add`) and adds those of
/// `add` that are missing.
pub fn edit(text: &str, add: &[&str], remove: &[&str]) -> Result<String, EditError> {
    modlist::validate(PATH, add, false)?;
    let current = modules(text);
    let expected = modlist::expected(&current, add, remove);
    if expected == current {
        return Ok(text.to_owned());
    }
    let mut out = String::with_capacity(text.len());
    for line in lines(text) {
        let dropped = module_of(line.content(text)).is_some_and(|m| removes(m, add, remove));
        if !dropped {
            out.push_str(&text[line.start..line.end]);
        }
    }
    let kept: Vec<String> = modules(&out);
    for name in modlist::missing(&kept, add) {
        out = append_line(&out, &name);
    }
    modlist::verified(PATH, out, &expected, |t| Ok(modules(t)))
}

/// The module a line loads, if it is not blank or a comment.
fn module_of(line: &str) -> Option<&str> {
    let first = line.split_whitespace().next()?;
    (!first.starts_with('#')).then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let text = "# List of modules\n\nnvidia\nvfio_pci ids=10de:1c02\r\n  # old\nvfio";
        assert_eq!(modules(text), ["nvidia", "vfio_pci", "vfio"]);
        assert_eq!(
            edit(text, &["vfio_pci", "vfio", "vfio_iommu_type1"], &["nvidia"]).unwrap(),
            "# List of modules\n\nvfio_pci ids=10de:1c02\r\n  # old\nvfio\nvfio_iommu_type1"
        );
    }
}
