//! Passthrough's own modprobe drop-in: `options vfio-pci ids=…` reserves the devices by
//! vendor:device ID, and one `softdep DRIVER pre: vfio-pci` line per graphics and HDMI
//! audio driver makes modprobe load vfio-pci before the driver that would take the card
//! (the Arch wiki's list: nvidia, nouveau, amdgpu, radeon, snd_hda_intel).

/// The drop-in's host path.
pub const PATH: &str = "/etc/modprobe.d/passthrough-vfio.conf";

/// The drivers that must wait for vfio-pci.
pub const SOFTDEP_DRIVERS: &[&str] = &["nvidia", "nouveau", "amdgpu", "radeon", "snd_hda_intel"];

/// The first line of the file, saying who wrote it.
pub const HEADER: &str = "# Written by Passthrough: reserve these devices for vfio-pci.";

/// What the drop-in says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VfioModprobe {
    /// `vendor:device` IDs (`10de:1c02`).
    pub ids: Vec<String>,
    /// Drivers that get `softdep DRIVER pre: vfio-pci`.
    pub softdeps: Vec<String>,
}

impl VfioModprobe {
    /// The drop-in for these IDs with the usual soft dependencies.
    pub fn new(ids: &[&str]) -> Self {
        Self {
            ids: ids.iter().map(|s| (*s).to_owned()).collect(),
            softdeps: SOFTDEP_DRIVERS.iter().map(|s| (*s).to_owned()).collect(),
        }
    }
}

/// The drop-in's text (the same bytes whatever the language).
pub fn render(conf: &VfioModprobe) -> String {
    let mut out = format!("{HEADER}\n");
    if !conf.ids.is_empty() {
        out.push_str(&format!("options vfio-pci ids={}\n", conf.ids.join(",")));
    }
    for driver in &conf.softdeps {
        out.push_str(&format!("softdep {driver} pre: vfio-pci\n"));
    }
    out
}

/// Reads a drop-in: the IDs of every `options vfio-pci ids=…` (or `vfio_pci`) line, and
/// the drivers of every `softdep` line whose `pre:` list names vfio-pci.
/// `parse(&render(c)) == c` for IDs and drivers without whitespace or commas.
pub fn parse(text: &str) -> VfioModprobe {
    let mut conf = VfioModprobe::default();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["options", module, params @ ..] if is_vfio_pci(module) => {
                let ids = params.iter().filter_map(|p| p.strip_prefix("ids="));
                conf.ids.extend(
                    ids.flat_map(|v| v.split(','))
                        .filter(|id| !id.is_empty())
                        .map(str::to_owned),
                );
            }
            ["softdep", driver, rest @ ..] if pre_vfio(rest) => {
                conf.softdeps.push((*driver).to_owned())
            }
            _ => {}
        }
    }
    conf
}

fn is_vfio_pci(module: &str) -> bool {
    module == "vfio-pci" || module == "vfio_pci"
}

/// Whether a softdep's lists name vfio-pci among the `pre:` modules.
fn pre_vfio(rest: &[&str]) -> bool {
    let mut in_pre = false;
    for word in rest {
        match *word {
            "pre:" => in_pre = true,
            "post:" => in_pre = false,
            w if in_pre && is_vfio_pci(w) => return true,
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let conf = VfioModprobe::new(&["10de:1c02", "10de:10f1"]);
        let text = render(&conf);
        assert_eq!(
            text,
            "# Written by Passthrough: reserve these devices for vfio-pci.\n\
             options vfio-pci ids=10de:1c02,10de:10f1\n\
             softdep nvidia pre: vfio-pci\n\
             softdep nouveau pre: vfio-pci\n\
             softdep amdgpu pre: vfio-pci\n\
             softdep radeon pre: vfio-pci\n\
             softdep snd_hda_intel pre: vfio-pci\n"
        );
        assert_eq!(parse(&text), conf);
        assert_eq!(
            parse(&render(&VfioModprobe::default())),
            VfioModprobe::default()
        );
        let hand =
            "options vfio_pci disable_vga=1 ids=1002:67df\nsoftdep drm pre: ttm post: vfio-pci\n";
        assert_eq!(parse(hand).ids, ["1002:67df"]);
        assert!(parse(hand).softdeps.is_empty());
    }
}
