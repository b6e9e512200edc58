//! Troubleshooting: the knowledge base of known passthrough failures, the detectors that
//! find them on the host, in the kernel log, in a VM's QEMU log and in its domain XML, and
//! the Markdown report for a forum post.

mod detect;
mod kb;
mod patterns;
mod types;

use std::fmt::Write;

pub use detect::{domain_xml as detect_domain_xml, host as detect_host};
pub use detect::{kernel_log as detect_kernel_log, qemu_log as detect_qemu_log};
pub use kb::knowledge_base;
pub use patterns::Finding;
pub use types::{Detection, Entry, FixAction, Inputs, Problem};

use crate::i18n::gettext_f;

/// Everything the detectors find in `inputs`, one problem per knowledge-base entry (the
/// first evidence wins: host facts, then the kernel log, the QEMU log, the domain XML),
/// most serious first.
pub fn diagnose(inputs: &Inputs) -> Vec<Problem> {
    let r = inputs.report;
    let mut findings = detect::host(r);
    if let Some(log) = inputs.kernel_log {
        findings.extend(detect::kernel_log(r, log));
    }
    if let Some(log) = inputs.qemu_log {
        findings.extend(detect::qemu_log(r, log));
    }
    if let Some(xml) = inputs.domain_xml {
        findings.extend(detect::domain_xml(r, xml));
    }
    let kb = knowledge_base();
    let mut problems: Vec<(usize, Problem)> = Vec::new();
    for f in findings {
        let Some(rank) = kb.iter().position(|e| e.id == f.id) else {
            continue;
        };
        if let Some((_, p)) = problems.iter_mut().find(|(_, p)| p.id == f.id) {
            if p.fix_action.is_none() {
                p.fix_action = f.fix;
            }
            continue;
        }
        let e = &kb[rank];
        problems.push((
            rank,
            Problem {
                id: e.id.to_owned(),
                title: e.title.clone(),
                cause: e.cause.clone(),
                fix: e.fix.clone(),
                evidence: f.evidence,
                fix_action: f.fix,
            },
        ));
    }
    problems.sort_by_key(|(rank, _)| *rank);
    problems.into_iter().map(|(_, p)| p).collect()
}

/// The detected problems as a Markdown section (“## Detected problems”).
pub fn problems_markdown(problems: &[Problem]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## {}\n", gettext_f("Detected problems", &[]));
    if problems.is_empty() {
        let _ = writeln!(out, "{}\n", gettext_f("No known problem was found.", &[]));
        return out;
    }
    for p in problems {
        let _ = writeln!(out, "### {} (`{}`)\n", p.title, p.id);
        let _ = writeln!(
            out,
            "- **{}** `{}`",
            gettext_f("Found:", &[]),
            p.evidence.replace('`', "'")
        );
        let _ = writeln!(out, "- **{}** {}", gettext_f("Cause:", &[]), p.cause);
        let _ = writeln!(out, "- **{}** {}", gettext_f("Fix:", &[]), p.fix);
        if p.fix_action.is_some() {
            let _ = writeln!(
                out,
                "- {}",
                gettext_f("Passthrough can apply this fix.", &[])
            );
        }
        out.push('\n');
    }
    out
}

/// The forum report: the host (facts, checks, graphics cards, IOMMU groups), the kernel
/// command line, the VM's domain XML and the detected problems with cause and fix.
pub fn report_markdown(inputs: &Inputs, problems: &[Problem]) -> String {
    let r = inputs.report;
    let mut out = crate::markdown::report(r);
    if !out.ends_with("\n\n") {
        out.push('\n');
    }
    let _ = writeln!(out, "## {}\n", gettext_f("Kernel command line", &[]));
    match &r.cmdline {
        Some(c) => {
            let _ = writeln!(out, "```\n{}\n```\n", c.raw.trim());
        }
        None => {
            let _ = writeln!(
                out,
                "{}\n",
                gettext_f("Unknown (/proc/cmdline could not be read).", &[])
            );
        }
    }
    if let Some(xml) = inputs.domain_xml {
        let title = match inputs.vm_name {
            Some(name) => gettext_f("Virtual machine “{name}”", &[("name", name)]),
            None => gettext_f("Virtual machine", &[]),
        };
        let _ = writeln!(out, "## {title}\n");
        let _ = writeln!(out, "```xml\n{}\n```\n", xml.trim_end());
    }
    out.push_str(&problems_markdown(problems));
    out
}
