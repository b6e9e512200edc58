//! What the detectors share: a finding, the log line patterns and the scan over a log.
//! No translatable strings live here (xgettext's C parser reads the lifetimes below as
//! unterminated character constants).

use crate::gpu::GpuVerdict;

use super::types::FixAction;

/// One thing a detector found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub id: &'static str,
    pub evidence: String,
    pub fix: Option<FixAction>,
}

pub fn found(id: &'static str, evidence: String, fix: Option<FixAction>) -> Finding {
    Finding { id, evidence, fix }
}

/// The id of the boot GPU entry for a card's vendor.
pub fn boot_gpu_id(g: &GpuVerdict) -> &'static str {
    if g.vendor_id == Some(0x1002) {
        "boot-gpu-rom"
    } else {
        "boot-gpu-tdr"
    }
}

/// A line pattern: every part must occur in the line (compared in lower case).
pub struct Pattern {
    id: &'static str,
    all: &'static [&'static str],
    any: &'static [&'static str],
}

pub const KERNEL_PATTERNS: &[Pattern] = &[
    Pattern {
        id: "kvm-missing",
        all: &[],
        any: &[
            "kvm: disabled by bios",
            "svm disabled (by bios)",
            "kvm: no hardware support",
        ],
    },
    Pattern {
        id: "iommu-off",
        all: &["dmar: iommu disabled"],
        any: &[],
    },
    Pattern {
        id: "vfio-probe-failed",
        all: &["vfio-pci", "probe of", "failed with error"],
        any: &[],
    },
    Pattern {
        id: "framebuffer-bar",
        all: &["vfio-pci", "bar "],
        any: &["can't reserve", "cannot reserve"],
    },
    Pattern {
        id: "amd-reset-bug",
        all: &["vfio-pci"],
        any: &[
            "unable to change power state from d3cold to d0",
            "reset recovery - restoring bars",
        ],
    },
    Pattern {
        id: "nvidia-persistenced",
        all: &["nvrm: attempting to remove device", "non-zero usage count"],
        any: &[],
    },
    Pattern {
        id: "vfio-virqfd",
        all: &["vfio_virqfd"],
        any: &["not found", "failed to find"],
    },
    Pattern {
        id: "acs-override",
        all: &["pcie acs overrides enabled"],
        any: &[],
    },
    Pattern {
        id: "amd-iommu-on",
        all: &["command line:", " amd_iommu=on"],
        any: &[],
    },
];

pub const QEMU_PATTERNS: &[Pattern] = &[
    Pattern {
        id: "kvm-missing",
        all: &[],
        any: &[
            "could not access kvm kernel module",
            "failed to initialize kvm",
        ],
    },
    Pattern {
        id: "iommu-off",
        all: &["host doesn't support passthrough of host pci devices"],
        any: &[],
    },
    Pattern {
        id: "vfio-container",
        all: &["failed to set iommu for container"],
        any: &[],
    },
    Pattern {
        id: "group-not-viable",
        all: &["group", "is not viable"],
        any: &[],
    },
    Pattern {
        id: "boot-gpu-tdr",
        all: &["vfio_region_write(", "device or resource busy"],
        any: &[],
    },
    Pattern {
        id: "amd-reset-bug",
        all: &["stuck in d3"],
        any: &[],
    },
];

pub fn scan(log: &str, patterns: &[Pattern]) -> Vec<Finding> {
    let mut out: Vec<Finding> = Vec::new();
    for line in log.lines() {
        let lower = line.to_lowercase();
        for p in patterns {
            let hit = p.all.iter().all(|s| lower.contains(s))
                && (p.any.is_empty() || p.any.iter().any(|s| lower.contains(s)));
            if hit && !out.iter().any(|f| f.id == p.id) {
                out.push(found(p.id, line.trim().to_owned(), None));
            }
        }
    }
    out
}
