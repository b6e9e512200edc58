//! `passthroughctl`: Passthrough's host model on the command line.
//!
//! `passthroughctl [--root DIR] [--json] COMMAND`; global options may also follow the command.
//! Exit codes: 0 success, 1 a failed check, 2 bad usage or unreadable input.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use passthrough_core::checks::{self, Status};
use passthrough_core::i18n::gettext_f;
use passthrough_core::plan::{BindBy, Plan};
use passthrough_core::{markdown, plan_render, HostReport, HostRoot, ScanOptions};
use serde_json::json;

const COMMANDS: &[&str] = &["report", "check", "groups", "gpus", "plan"];

struct Args {
    root: PathBuf,
    json: bool,
    user: Option<String>,
    command: String,
    /// The options of `plan`.
    plan: Plan,
}

fn usage() -> String {
    gettext_f(
        "Usage: passthroughctl [--root DIR] [--json] [--user NAME] COMMAND\n\nCommands:\n  report   the whole host as Markdown, ready for a forum post\n  check    the system check; exits 1 when something needed is missing\n  groups   IOMMU groups and their devices\n  gpus     graphics cards with their passthrough verdicts\n  plan     the file changes and commands of a boot configuration, as a diff (changes nothing)\n\nOptions:\n  --root DIR    read the host from DIR instead of /\n  --json        print JSON\n  --user NAME   check NAME's libvirt group membership\n  -h, --help    show this help\n  -V, --version show the version\n\nOptions of plan:\n  --iommu            turn the IOMMU on (intel_iommu=on on Intel)\n  --gpu ADDR         reserve the GPU at ADDR and its other functions for vfio-pci\n  --release ADDR     remove the reservation of the GPU at ADDR\n  --iommu-pt         add iommu=pt\n  --acs-override     add pcie_acs_override=downstream,multifunction\n  --ignore-msrs      add kvm.ignore_msrs=1 kvm.report_ignored_msrs=0\n  --boot-gpu-fix     keep the firmware framebuffer off the boot GPU\n  --try-once         boot the new kernel arguments once (grub-reboot, bootctl set-oneshot)\n  --by ids|address   how to reserve (default: by IDs unless another device has the same IDs)",
        &[],
    )
}

enum Parsed {
    Run(Args),
    Exit(ExitCode),
}

fn parse(argv: Vec<String>) -> Result<Parsed, String> {
    let mut root = None;
    let mut json = false;
    let mut user = None;
    let mut command = None;
    let mut plan = Plan::default();
    let mut plan_option = None;
    let mut it = argv.into_iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| it.next())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| gettext_f("{option} needs a value", &[("option", name)]))
        };
        match flag.as_str() {
            "--root" => root = Some(PathBuf::from(value("--root")?)),
            "--user" => user = Some(value("--user")?),
            "--json" => json = true,
            "--iommu" | "--iommu-pt" | "--acs-override" | "--ignore-msrs" | "--boot-gpu-fix"
            | "--try-once" | "--gpu" | "--release" | "--by" => {
                plan_option.get_or_insert_with(|| flag.clone());
                match flag.as_str() {
                    "--iommu" => plan.enable_iommu = true,
                    "--iommu-pt" => plan.iommu_pt = true,
                    "--acs-override" => plan.acs_override = true,
                    "--ignore-msrs" => plan.ignore_msrs = true,
                    "--boot-gpu-fix" => plan.boot_gpu_fix = true,
                    "--try-once" => plan.try_once = true,
                    "--by" => {
                        plan.bind_by = match value("--by")?.as_str() {
                            "ids" => BindBy::Ids,
                            "address" => BindBy::Address,
                            "auto" => BindBy::Auto,
                            other => {
                                return Err(gettext_f(
                                    "--by takes ids or address, not {value}",
                                    &[("value", other)],
                                ))
                            }
                        }
                    }
                    list => {
                        let address = value(list)?.parse().map_err(|_| {
                            gettext_f(
                                "{option} needs a PCI address such as 0000:08:00.0",
                                &[("option", list)],
                            )
                        })?;
                        let target = if list == "--gpu" {
                            &mut plan.reserve
                        } else {
                            &mut plan.release
                        };
                        if !target.contains(&address) {
                            target.push(address);
                        }
                    }
                }
            }
            "-h" | "--help" => {
                println!("{}", usage());
                return Ok(Parsed::Exit(ExitCode::SUCCESS));
            }
            "-V" | "--version" => {
                println!("passthroughctl {}", env!("CARGO_PKG_VERSION"));
                return Ok(Parsed::Exit(ExitCode::SUCCESS));
            }
            f if f.starts_with('-') => {
                return Err(gettext_f("unknown option {option}", &[("option", f)]))
            }
            c if command.is_none() => {
                if !COMMANDS.contains(&c) {
                    return Err(gettext_f(
                        "unknown command {command} (commands: {list})",
                        &[("command", c), ("list", &COMMANDS.join(", "))],
                    ));
                }
                command = Some(c.to_owned());
            }
            extra => {
                return Err(gettext_f(
                    "unexpected argument {argument}",
                    &[("argument", extra)],
                ))
            }
        }
    }
    let command = command.ok_or_else(|| {
        gettext_f(
            "no command given (commands: {list})",
            &[("list", &COMMANDS.join(", "))],
        )
    })?;
    if let Some(option) = plan_option.as_deref().filter(|_| command != "plan") {
        return Err(gettext_f(
            "{option} is an option of plan, not of {command}",
            &[("option", option), ("command", &command)],
        ));
    }
    Ok(Parsed::Run(Args {
        root: root.unwrap_or_else(|| PathBuf::from("/")),
        json,
        user,
        command,
        plan,
    }))
}

fn main() -> ExitCode {
    passthrough_core::i18n::init(passthrough_core::LOCALEDIR);
    let args = match parse(std::env::args().skip(1).collect()) {
        Ok(Parsed::Run(a)) => a,
        Ok(Parsed::Exit(code)) => return code,
        Err(msg) => {
            eprintln!("passthroughctl: {msg}");
            return ExitCode::from(2);
        }
    };
    if !args.root.is_dir() {
        eprintln!(
            "passthroughctl: {}",
            gettext_f(
                "cannot read the host root {root}: not a directory",
                &[("root", &args.root.display().to_string())]
            )
        );
        return ExitCode::from(2);
    }
    let root = HostRoot::new(&args.root);
    let report = HostReport::scan(
        &root,
        &ScanOptions {
            user: args.user.clone(),
        },
    );
    let mut code = ExitCode::SUCCESS;
    let text = match (args.command.as_str(), args.json) {
        ("report", false) => markdown::report(&report),
        ("report", true) => {
            let checks = checks::run(&report);
            to_json(&json!({ "host": report, "checks": checks }))
        }
        ("check", json) => {
            let checks = checks::run(&report);
            if checks::worst(&checks) == Status::Error {
                code = ExitCode::from(1);
            }
            if json {
                to_json(&json!({ "status": checks::worst(&checks), "checks": checks }))
            } else {
                check_text(&checks)
            }
        }
        ("groups", false) => markdown::groups(&report),
        ("groups", true) => to_json(&groups_json(&report)),
        ("gpus", false) => markdown::gpus(&report),
        ("gpus", true) => to_json(&json!({ "gpus": report.gpus })),
        ("plan", json) => match plan_render::render(&root, &report, &args.plan) {
            Ok(rendered) if json => {
                // In the order of the struct: files, commands, kernel_args, notes.
                let mut text = serde_json::to_string_pretty(&rendered).expect("plans serialize");
                text.push('\n');
                text
            }
            Ok(rendered) => plan_text(&rendered),
            Err(e) => {
                eprintln!("passthroughctl: {}", one_line(&e.message()));
                return ExitCode::from(2);
            }
        },
        _ => unreachable!("commands are validated in parse"),
    };
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush())
        .is_err()
    {
        // A closed pipe (| head) is not an error worth a message.
    }
    code
}

/// The plan's diff and commands, then its notes (or a line saying that nothing changes).
fn plan_text(rendered: &passthrough_core::plan::Rendered) -> String {
    let mut out = plan_render::unified_diff(rendered);
    if rendered.is_empty() {
        out.push_str(&gettext_f(
            "Nothing to change: the host already matches the plan.",
            &[],
        ));
        out.push('\n');
    }
    for note in &rendered.notes {
        out.push_str(&format!("\n# {}\n", one_line(note)));
    }
    out
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn to_json(v: &serde_json::Value) -> String {
    let mut s = serde_json::to_string_pretty(v).expect("JSON values always serialize");
    s.push('\n');
    s
}

fn check_text(checks: &[checks::Check]) -> String {
    let mut out = String::new();
    for c in checks {
        let mark = match c.status {
            Status::Ok => "ok  ",
            Status::Info => "info",
            Status::Warning => "warn",
            Status::Error => "FAIL",
        };
        out.push_str(&format!(
            "[{mark}] {}: {}\n       {}\n",
            c.title, c.summary, c.detail
        ));
    }
    out
}

fn groups_json(r: &HostReport) -> serde_json::Value {
    let dev = |d: &passthrough_core::pci::PciDevice| {
        json!({
            "address": d.address,
            "vendor_id": d.vendor_id.map(|v| format!("{v:04x}")),
            "device_id": d.device_id.map(|v| format!("{v:04x}")),
            "class": d.class_hex(),
            "vendor": d.vendor_name,
            "name": d.device_name,
            "driver": d.driver,
            "notes": d.notes,
        })
    };
    let groups: Vec<serde_json::Value> = r
        .pci
        .groups()
        .into_iter()
        .map(|(g, devs)| json!({ "group": g, "devices": devs.into_iter().map(dev).collect::<Vec<_>>() }))
        .collect();
    let ungrouped: Vec<serde_json::Value> = r
        .pci
        .devices
        .iter()
        .filter(|d| d.iommu_group.is_none())
        .map(dev)
        .collect();
    json!({ "iommu_enabled": r.pci.iommu_enabled, "groups": groups, "ungrouped": ungrouped })
}
