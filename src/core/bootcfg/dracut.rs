//! Passthrough's own dracut drop-in (Fedora, openSUSE, …): force the vfio modules into the
//! initramfs and load them early, so that vfio-pci claims the reserved GPU first. dracut
//! reads only the files of `/etc/dracut.conf.d` whose names end in `.conf`, and the spaces
//! inside the quotes keep `+=` from gluing names to those of other files.

/// The drop-in's host path.
pub const PATH: &str = "/etc/dracut.conf.d/passthrough-vfio.conf";

/// The modules Passthrough forces in (kernels before 6.2 also need `vfio_virqfd`).
pub const MODULES: &[&str] = &["vfio_pci", "vfio", "vfio_iommu_type1"];

/// The first line of the file, saying who wrote it.
pub const HEADER: &str =
    "# Written by Passthrough: load vfio-pci early so it claims the reserved GPU.";

/// The drop-in's text: `force_drivers+=" vfio_pci vfio vfio_iommu_type1 "`. The text does
/// not depend on the language, so rendering twice gives the same bytes.
pub fn render(modules: &[&str]) -> String {
    if modules.is_empty() {
        return format!("{HEADER}\n");
    }
    format!("{HEADER}\nforce_drivers+=\" {} \"\n", modules.join(" "))
}

/// The modules of the `force_drivers` lines of a drop-in like the one [`render`] writes.
pub fn modules(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            l.strip_prefix("force_drivers+=")
                .or_else(|| l.strip_prefix("force_drivers="))
        })
        .flat_map(|v| v.trim_matches(['"', '\'']).split_whitespace())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_in() {
        assert!(PATH.starts_with("/etc/dracut.conf.d/") && PATH.ends_with(".conf"));
        let text = render(MODULES);
        assert!(text.starts_with("# Written by Passthrough"));
        assert!(text.ends_with("\nforce_drivers+=\" vfio_pci vfio vfio_iommu_type1 \"\n"));
        assert_eq!(modules(&text), MODULES);
        assert_eq!(render(&[]), format!("{HEADER}\n"));
    }
}
