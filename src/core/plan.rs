//! Plans: what the user chose in the Boot configuration step, and the concrete file edits
//! and commands it becomes on a given host. This module holds the shared types; `render`
//! (in `plan_render.rs`) turns a [`Plan`] into a [`Rendered`] change, and `transaction.rs`
//! applies one.

use serde::{Deserialize, Serialize};

use crate::pci::PciAddress;

/// How a GPU is reserved for vfio-pci.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BindBy {
    /// By vendor:device IDs, unless another device on the host has the same IDs (two
    /// identical GPUs): then by address.
    #[default]
    Auto,
    /// `vfio-pci.ids=` and `options vfio-pci ids=`.
    Ids,
    /// `driver_override` for the exact addresses, set early in boot.
    Address,
}

/// A user's choice. Every field is an intent; rendering compares it with the host's files,
/// so re-applying a plan changes nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// `intel_iommu=on` on Intel; nothing on AMD, where the IOMMU is on by default.
    pub enable_iommu: bool,
    /// `iommu=pt`.
    pub iommu_pt: bool,
    /// GPUs to reserve for vfio-pci, with their companions.
    pub reserve: Vec<PciAddress>,
    /// GPUs whose reservation is removed, restoring what was there before.
    pub release: Vec<PciAddress>,
    pub bind_by: BindBy,
    /// `pcie_acs_override=downstream,multifunction` (needs a patched kernel).
    pub acs_override: bool,
    /// `kvm.ignore_msrs=1 kvm.report_ignored_msrs=0`.
    pub ignore_msrs: bool,
    /// Keep the host's firmware framebuffer off the boot GPU: `video=efifb:off`, or
    /// `initcall_blacklist=sysfb_init` on kernels with simpledrm.
    pub boot_gpu_fix: bool,
    /// Boot the new kernel arguments once (`grub-reboot`, `bootctl set-oneshot`) instead of
    /// making them permanent; see `trial.rs`.
    #[serde(default)]
    pub try_once: bool,
}

/// One edit of the kernel command line, as the boot-loader editors apply it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "op")]
pub enum KargOp {
    /// Leave exactly one `key[=value]` for this key (dash/underscore in the module part
    /// count as one), where the first one was, or at the end.
    SetKey { key: String, value: Option<String> },
    /// Remove every argument with this key.
    RemoveKey { key: String },
    /// Add this exact word unless it is present (for keys that may repeat, like `video=`).
    AddExact { arg: String },
    /// Remove this exact word.
    RemoveExact { arg: String },
}

/// A file the plan changes, as seen on the host (path without the root prefix).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileChange {
    pub path: String,
    /// `None` for a new file.
    pub before: Option<String>,
    /// `None` when the file is removed.
    pub after: Option<String>,
}

/// Arguments the plan adds to and removes from the kernel command line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelArgsSummary {
    pub add: Vec<String>,
    pub remove: Vec<String>,
}

/// A plan made concrete for one host: the `passthroughctl plan --json` shape.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rendered {
    pub files: Vec<FileChange>,
    /// Regeneration commands, each as argv (`["update-grub"]`).
    pub commands: Vec<Vec<String>>,
    pub kernel_args: KernelArgsSummary,
    /// Explanations for the user (translated), e.g. why `amd_iommu=on` is not written.
    pub notes: Vec<String>,
    /// For a trial ("try once"): the plan that makes it permanent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permanent: Option<Plan>,
}

impl Rendered {
    /// Nothing to do: the host already matches the plan.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.commands.is_empty()
    }
}
