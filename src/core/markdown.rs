//! Text renderings of a [`HostReport`]: the Markdown report for forum posts and the plain
//! listings of `passthroughctl groups` and `gpus`.

use std::fmt::Write;

use crate::checks::{self, Status};
use crate::gpu::{GpuVerdict, Lanes, Verdict};
use crate::i18n::gettext_f;
use crate::note::Severity;
use crate::pci::PciDevice;
use crate::report::HostReport;

fn status_mark(s: Status) -> &'static str {
    match s {
        Status::Ok => "✅",
        Status::Info => "ℹ️",
        Status::Warning => "⚠️",
        Status::Error => "❌",
    }
}

fn severity_mark(s: Severity) -> &'static str {
    match s {
        Severity::Info => "ℹ️",
        Severity::Warning => "⚠️",
        Severity::Error => "❌",
    }
}

pub fn verdict_label(v: Verdict) -> String {
    match v {
        Verdict::Isolated => gettext_f("Isolated", &[]),
        Verdict::Shared => gettext_f("Shared group", &[]),
        Verdict::NoIommu => gettext_f("No IOMMU", &[]),
    }
}

pub fn lanes_label(l: Lanes) -> String {
    match l {
        Lanes::Cpu => gettext_f("processor lanes", &[]),
        Lanes::Chipset => gettext_f("chipset lanes", &[]),
        Lanes::Unknown => gettext_f("lanes unknown", &[]),
    }
}

/// "PCIe 3.0 x4 (max x8)", or `None` when sysfs has no link information.
pub fn link_label(link: &crate::pci::Link) -> Option<String> {
    let width = link.current_width?;
    let gen = link
        .current_speed
        .as_deref()
        .and_then(crate::pci::speed_generation);
    let mut s = match gen {
        Some(g) => format!("PCIe {g} x{width}"),
        None => format!("x{width}"),
    };
    if let Some(max) = link.max_width.filter(|m| *m != width) {
        s.push(' ');
        s.push_str(&gettext_f("(max x{width})", &[("width", &max.to_string())]));
    }
    Some(s)
}

/// One lspci-like line: `0000:08:00.0 VGA compatible controller [0300]: NVIDIA … [10de:1c02] (rev a1)`.
pub fn device_line(d: &PciDevice) -> String {
    let mut s = format!("{} {}", d.address, d.class_label());
    if let Some(c) = d.class_hex() {
        let _ = write!(s, " [{c}]");
    }
    let _ = write!(s, ": {}", d.display_name());
    if let Some(ids) = d.ids() {
        let _ = write!(s, " [{ids}]");
    }
    if let Some(rev) = d.revision.filter(|r| *r != 0) {
        let _ = write!(s, " (rev {rev:02x})");
    }
    if let Some(drv) = &d.driver {
        let _ = write!(s, " — {drv}");
    }
    s
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|")
}

pub fn report(r: &HostReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {}\n", gettext_f("Passthrough host report", &[]));
    if r.root != "/" {
        let _ = writeln!(
            out,
            "{}\n",
            gettext_f("Host root: `{root}`", &[("root", &r.root)])
        );
    }
    if !r.pci.iommu_enabled {
        let _ = writeln!(
            out,
            "> **{}** {}\n",
            gettext_f("The IOMMU is off on this host.", &[]),
            gettext_f("There are no IOMMU groups, so no device can be passed through until it is turned on.", &[])
        );
    }

    let _ = writeln!(out, "## {}\n", gettext_f("System", &[]));
    let _ = writeln!(out, "| | {} | |", gettext_f("Check", &[]));
    let _ = writeln!(out, "|---|---|---|");
    let checks = checks::run(r);
    for c in &checks {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            status_mark(c.status),
            md_escape(&c.title),
            md_escape(&c.summary)
        );
    }
    let _ = writeln!(out);
    if let Some(k) = &r.kernel_release {
        let _ = writeln!(out, "- {}: `{k}`", gettext_f("Kernel", &[]));
    }
    if let Some(c) = &r.cmdline {
        let _ = writeln!(out, "- {}: `{}`", gettext_f("Command line", &[]), c.raw);
    }
    for c in checks.iter().filter(|c| c.status >= Status::Warning) {
        let _ = writeln!(
            out,
            "- {} **{}**: {}",
            status_mark(c.status),
            c.title,
            c.detail
        );
    }
    for n in &r.notes {
        let _ = writeln!(out, "- {} {}", severity_mark(n.severity), n.text);
    }
    let _ = writeln!(out);

    let _ = writeln!(out, "## {}\n", gettext_f("Graphics cards", &[]));
    if r.gpus.is_empty() {
        let _ = writeln!(out, "{}\n", gettext_f("No graphics card found.", &[]));
    }
    for g in &r.gpus {
        gpu_section(&mut out, r, g);
    }

    let _ = writeln!(out, "## {}\n", gettext_f("IOMMU groups", &[]));
    let groups = r.pci.groups();
    if groups.is_empty() {
        let _ = writeln!(
            out,
            "{}\n",
            gettext_f("No IOMMU groups: the IOMMU is off.", &[])
        );
        let _ = writeln!(out, "```");
        for d in &r.pci.devices {
            let _ = writeln!(out, "{}", device_line(d));
        }
        let _ = writeln!(out, "```\n");
    } else {
        let _ = writeln!(out, "```");
        for (g, devs) in &groups {
            for d in devs {
                let _ = writeln!(
                    out,
                    "{} {g:>3}  {}",
                    gettext_f("Group", &[]),
                    device_line(d)
                );
            }
        }
        let ungrouped: Vec<&PciDevice> = r
            .pci
            .devices
            .iter()
            .filter(|d| d.iommu_group.is_none())
            .collect();
        for d in ungrouped {
            let _ = writeln!(out, "{}  {}", gettext_f("No group", &[]), device_line(d));
        }
        let _ = writeln!(out, "```\n");
    }
    let problems: Vec<_> = r
        .pci
        .notes
        .iter()
        .chain(r.pci.devices.iter().flat_map(|d| d.notes.iter()))
        .collect();
    if !problems.is_empty() {
        let _ = writeln!(out, "## {}\n", gettext_f("Problems reading the host", &[]));
        for n in problems {
            let _ = writeln!(out, "- {} {}", severity_mark(n.severity), n.text);
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(
        out,
        "_{}_",
        gettext_f(
            "Made by Passthrough {version}.",
            &[("version", env!("CARGO_PKG_VERSION"))]
        )
    );
    out
}

fn gpu_section(out: &mut String, r: &HostReport, g: &GpuVerdict) {
    let _ = writeln!(out, "### {} — {}\n", g.address, g.display_name());
    let mut facts = vec![format!("**{}**", verdict_label(g.verdict))];
    if let Some(grp) = g.iommu_group {
        facts.push(gettext_f("group {group}", &[("group", &grp.to_string())]));
    }
    if let Some(ids) = g.ids() {
        facts.push(format!("`{ids}`"));
    }
    if let Some(d) = &g.driver {
        facts.push(gettext_f("driver {driver}", &[("driver", d)]));
    }
    if g.boot_vga {
        facts.push(gettext_f("boot GPU", &[]));
    }
    if let Some(link) = link_label(&g.link) {
        facts.push(link);
    }
    facts.push(lanes_label(g.lanes));
    let _ = writeln!(out, "{}\n", facts.join(" · "));
    let _ = writeln!(out, "{}\n", g.explanation);
    if !g.companions.is_empty() {
        let _ = writeln!(out, "{}", gettext_f("Goes to the VM with it:", &[]));
        for a in &g.companions {
            if let Some(d) = r.pci.get(a) {
                let _ = writeln!(out, "- {}", device_line(d));
            }
        }
        let _ = writeln!(out);
    }
    if !g.blockers.is_empty() {
        let _ = writeln!(out, "{}", gettext_f("Shares its group with:", &[]));
        for a in &g.blockers {
            if let Some(d) = r.pci.get(a) {
                let _ = writeln!(out, "- {}", device_line(d));
            }
        }
        let _ = writeln!(out);
    }
    if !g.options.is_empty() {
        let _ = writeln!(out, "{}", gettext_f("What you can do:", &[]));
        for o in &g.options {
            let _ = writeln!(out, "- {o}");
        }
        let _ = writeln!(out);
    }
    for n in g.notes.iter().filter(|n| n.severity >= Severity::Warning) {
        let _ = writeln!(out, "- {} {}", severity_mark(n.severity), n.text);
    }
    if g.notes.iter().any(|n| n.severity >= Severity::Warning) {
        let _ = writeln!(out);
    }
}

/// `passthroughctl groups`: the reference post's listing, grouped and readable.
pub fn groups(r: &HostReport) -> String {
    let mut out = String::new();
    let groups = r.pci.groups();
    if groups.is_empty() {
        let _ = writeln!(
            out,
            "{}",
            gettext_f("No IOMMU groups: the IOMMU is off on this host.", &[])
        );
        return out;
    }
    for (g, devs) in groups {
        let _ = writeln!(
            out,
            "{}",
            gettext_f("IOMMU group {group}:", &[("group", &g.to_string())])
        );
        for d in devs {
            let _ = writeln!(out, "    {}", device_line(d));
        }
    }
    out
}

/// `passthroughctl gpus`: one block per GPU.
pub fn gpus(r: &HostReport) -> String {
    let mut out = String::new();
    if r.gpus.is_empty() {
        let _ = writeln!(out, "{}", gettext_f("No graphics card found.", &[]));
    }
    for g in &r.gpus {
        let _ = writeln!(
            out,
            "{} {} [{}]",
            g.address,
            g.display_name(),
            verdict_label(g.verdict)
        );
        let _ = writeln!(out, "    {}", g.explanation);
        if !g.companions.is_empty() {
            let list: Vec<String> = g.companions.iter().map(|a| a.to_string()).collect();
            let _ = writeln!(
                out,
                "    {} {}",
                gettext_f("Companions:", &[]),
                list.join(", ")
            );
        }
        if !g.blockers.is_empty() {
            let list: Vec<String> = g.blockers.iter().map(|a| a.to_string()).collect();
            let _ = writeln!(
                out,
                "    {} {}",
                gettext_f("Blockers:", &[]),
                list.join(", ")
            );
        }
        for n in &g.notes {
            let _ = writeln!(out, "    {} {}", severity_mark(n.severity), n.text);
        }
    }
    out
}
