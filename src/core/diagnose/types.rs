//! The shapes of the troubleshooting module: knowledge-base entries, detected problems and
//! what a detection reads. No translatable strings live here (xgettext's C parser reads the
//! lifetimes below as unterminated character constants).

use serde::Serialize;

use crate::plan::Plan;
use crate::report::HostReport;
use crate::vm::features::Edit;

/// Where a knowledge-base entry can be detected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Detection {
    /// From the host report: command line, drivers, groups, boot VGA, link width, files.
    Host,
    /// From the kernel log (`journalctl -k`, dmesg).
    KernelLog,
    /// From libvirt's QEMU log of a VM (`/var/log/libvirt/qemu/NAME.log`).
    QemuLog,
    /// From the VM's domain XML.
    DomainXml,
    /// Cannot be detected from the host; the text says why (translated).
    NotDetectable(String),
}

/// One known problem: what the user sees, why, and what to do (all translated).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub id: &'static str,
    pub title: String,
    pub symptoms: String,
    pub cause: String,
    pub fix: String,
    pub detection: Vec<Detection>,
    /// Where the problem and its fix are described (URLs).
    pub sources: Vec<&'static str>,
}

/// A fix Passthrough can apply by itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FixAction {
    /// A boot configuration (preview and apply through the helper).
    Plan(Plan),
    /// Edits of the VM's domain XML (`vm::features::edit`).
    VmEdits(Vec<Edit>),
}

/// A problem found on this host or in this VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The knowledge-base entry's id.
    pub id: String,
    pub title: String,
    pub cause: String,
    pub fix: String,
    /// The log line or fact that matched.
    pub evidence: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix_action: Option<FixAction>,
}

/// What a diagnosis reads. Logs and XML are optional: without them only the host is checked.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub report: &'a HostReport,
    pub kernel_log: Option<&'a str>,
    pub qemu_log: Option<&'a str>,
    pub domain_xml: Option<&'a str>,
    pub vm_name: Option<&'a str>,
}
