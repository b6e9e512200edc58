//! `passthroughctl`: Passthrough's host model on the command line.
//!
//! `passthroughctl [--root DIR] [--json] COMMAND`; global options may also follow the command.
//! Exit codes: 0 success, 1 a failed check, 2 bad usage or unreadable input.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use passthrough_core::checks::{self, Status};
use passthrough_core::diagnose;
use passthrough_core::gpu::Verdict;
use passthrough_core::i18n::gettext_f;
use passthrough_core::pci::PciAddress;
use passthrough_core::plan::{BindBy, Plan};
use passthrough_core::vm::{code43, launcher, xml as vm_xml};
use passthrough_core::vm::{GpuAssignment, NetworkChoice, Storage, VmSpec, WindowsVersion};
use passthrough_core::{markdown, plan_render, HostReport, HostRoot, ScanOptions};
use serde_json::json;

const COMMANDS: &[&str] = &[
    "report", "check", "groups", "gpus", "plan", "vm-xml", "launch", "diagnose", "network",
];

struct Args {
    root: PathBuf,
    json: bool,
    user: Option<String>,
    command: String,
    /// The options of `plan` (and `--gpu` of `vm-xml`).
    plan: Plan,
    /// The options of `vm-xml`.
    vm: VmArgs,
    /// `launch NAME|UUID [--uri URI]`.
    launch: Option<(String, Option<String>)>,
    /// The options of `diagnose`.
    diagnose: DiagnoseArgs,
}

/// `diagnose [--vm NAME] [--qemu-log FILE] [--kernel-log FILE] [--xml FILE]`.
#[derive(Default)]
struct DiagnoseArgs {
    vm: Option<String>,
    qemu_log: Option<PathBuf>,
    kernel_log: Option<PathBuf>,
    xml: Option<PathBuf>,
}

/// `vm-xml`'s choices as given; [`vm_spec`] makes a [`VmSpec`] of them.
#[derive(Default)]
struct VmArgs {
    name: Option<String>,
    windows: WindowsVersion,
    memory_mib: Option<u64>,
    vcpus: Option<u32>,
    iso: Option<String>,
    virtio_iso: Option<String>,
    disk: Option<String>,
    disk_size_gib: Option<u64>,
    network: Option<NetworkChoice>,
    no_kvm: bool,
}

fn usage() -> String {
    gettext_f(
        "Usage: passthroughctl [--root DIR] [--json] [--user NAME] COMMAND\n\nCommands:\n  report   the whole host as Markdown, ready for a forum post\n  check    the system check; exits 1 when something needed is missing\n  groups   IOMMU groups and their devices\n  gpus     graphics cards with their passthrough verdicts\n  plan     the file changes and commands of a boot configuration, as a diff (changes nothing)\n  vm-xml   the libvirt domain XML of a Windows gaming VM (defines nothing)\n  diagnose  known problems of the host, a VM's logs and its XML, with cause and fix; exits 1 when it finds one\n  network  how the host is connected: who manages the network, interfaces, default route\n  launch NAME|UUID   start a VM (after the boot GPU fix when it holds the boot GPU) and open its screen; exits 1 when it does not run\n\nOptions:\n  --root DIR    read the host from DIR instead of /\n  --json        print JSON\n  --user NAME   check NAME's libvirt group membership\n  -h, --help    show this help\n  -V, --version show the version\n\nOptions of plan:\n  --iommu            turn the IOMMU on (intel_iommu=on on Intel)\n  --gpu ADDR         reserve the GPU at ADDR and its other functions for vfio-pci\n  --release ADDR     remove the reservation of the GPU at ADDR\n  --iommu-pt         add iommu=pt\n  --acs-override     add pcie_acs_override=downstream,multifunction\n  --ignore-msrs      add kvm.ignore_msrs=1 kvm.report_ignored_msrs=0\n  --boot-gpu-fix     keep the firmware framebuffer off the boot GPU\n  --try-once         boot the new kernel arguments once (grub-reboot, bootctl set-oneshot)\n  --by ids|address   how to reserve (default: by IDs unless another device has the same IDs)\n\nOptions of vm-xml:\n  --name NAME              the VM's name (required)\n  --gpu ADDR               pass through the GPU at ADDR with its IOMMU group, with its vendor's code 43 settings\n  --windows 10|11          the Windows version (default 11: Secure Boot and a TPM)\n  --memory MIB             memory in MiB (default 8192)\n  --vcpus N                processors (default 4)\n  --iso PATH               the Windows installation ISO\n  --virtio-iso PATH        the virtio-win drivers ISO\n  --disk PATH              an existing disk image or /dev/ disk as the system disk\n  --disk-size GIB          a new disk of GIB GiB in the pool “default” (default 128)\n  --network bridge:BR|network:NAME   the network (default network:default)\n  --no-kvm                 a QEMU-emulated VM (no KVM)\n\nOptions of launch:\n  --uri URI   the libvirt connection (default qemu:///system, or $PASSTHROUGH_LIBVIRT_URI)\n\nOptions of diagnose:\n  --vm NAME          the VM's QEMU log (ROOT/var/log/libvirt/qemu/NAME.log) and XML (ROOT/etc/libvirt/qemu/NAME.xml)\n  --qemu-log FILE    a QEMU log to read\n  --kernel-log FILE  a kernel log to read (journalctl -k, dmesg)\n  --xml FILE         a domain XML to read",
        &[],
    )
}

enum Parsed {
    Run(Box<Args>),
    Exit(ExitCode),
}

fn parse(argv: Vec<String>) -> Result<Parsed, String> {
    let mut root = None;
    let mut json = false;
    let mut user = None;
    let mut command = None;
    let mut plan = Plan::default();
    let mut plan_option = None;
    let mut gpu_option = false;
    let mut vm = VmArgs::default();
    let mut vm_option = None;
    let mut launch_target = None;
    let mut uri = None;
    let mut diagnose = DiagnoseArgs::default();
    let mut diagnose_option = None;
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
            "--uri" => uri = Some(value("--uri")?),
            "--vm" | "--qemu-log" | "--kernel-log" | "--xml" => {
                diagnose_option.get_or_insert_with(|| flag.clone());
                let v = value(&flag)?;
                match flag.as_str() {
                    "--vm" => {
                        if v.contains('/') || v.starts_with('.') {
                            return Err(gettext_f(
                                "--vm takes the name of a virtual machine, not {value}",
                                &[("value", &v)],
                            ));
                        }
                        diagnose.vm = Some(v);
                    }
                    "--qemu-log" => diagnose.qemu_log = Some(PathBuf::from(v)),
                    "--kernel-log" => diagnose.kernel_log = Some(PathBuf::from(v)),
                    _ => diagnose.xml = Some(PathBuf::from(v)),
                }
            }
            "--name" | "--windows" | "--memory" | "--vcpus" | "--iso" | "--virtio-iso"
            | "--disk" | "--disk-size" | "--network" | "--no-kvm" => {
                vm_option.get_or_insert_with(|| flag.clone());
                parse_vm_option(&flag, &mut vm, &mut value)?;
            }
            "--iommu" | "--iommu-pt" | "--acs-override" | "--ignore-msrs" | "--boot-gpu-fix"
            | "--try-once" | "--gpu" | "--release" | "--by" => {
                if flag == "--gpu" {
                    gpu_option = true;
                } else {
                    plan_option.get_or_insert_with(|| flag.clone());
                }
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
            target if command.as_deref() == Some("launch") && launch_target.is_none() => {
                launch_target = Some(target.to_owned());
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
    if gpu_option && command != "plan" && command != "vm-xml" {
        return Err(gettext_f(
            "{option} is an option of plan and vm-xml, not of {command}",
            &[("option", "--gpu"), ("command", &command)],
        ));
    }
    if let Some(option) = vm_option.as_deref().filter(|_| command != "vm-xml") {
        return Err(gettext_f(
            "{option} is an option of vm-xml, not of {command}",
            &[("option", option), ("command", &command)],
        ));
    }
    if let Some(option) = diagnose_option.as_deref().filter(|_| command != "diagnose") {
        return Err(gettext_f(
            "{option} is an option of diagnose, not of {command}",
            &[("option", option), ("command", &command)],
        ));
    }
    if uri.is_some() && command != "launch" {
        return Err(gettext_f(
            "{option} is an option of launch, not of {command}",
            &[("option", "--uri"), ("command", &command)],
        ));
    }
    if command == "launch" && launch_target.is_none() {
        return Err(gettext_f(
            "launch needs the name or UUID of a virtual machine",
            &[],
        ));
    }
    if command == "vm-xml" {
        if vm.name.is_none() {
            return Err(gettext_f("vm-xml needs --name NAME", &[]));
        }
        if plan.reserve.len() > 1 {
            return Err(gettext_f("vm-xml takes one --gpu", &[]));
        }
        if vm.disk.is_some() && vm.disk_size_gib.is_some() {
            return Err(gettext_f(
                "vm-xml takes --disk or --disk-size, not both",
                &[],
            ));
        }
    }
    Ok(Parsed::Run(Box::new(Args {
        root: root.unwrap_or_else(|| PathBuf::from("/")),
        json,
        user,
        command,
        plan,
        vm,
        launch: launch_target.map(|target| (target, uri)),
        diagnose,
    })))
}

/// One option of `vm-xml` into `vm`; `value` takes the option's value.
fn parse_vm_option(
    flag: &str,
    vm: &mut VmArgs,
    value: &mut impl FnMut(&str) -> Result<String, String>,
) -> Result<(), String> {
    let number = |v: String| -> Result<u64, String> {
        v.parse::<u64>().map_err(|_| {
            gettext_f(
                "{option} needs a whole number, not {value}",
                &[("option", flag), ("value", &v)],
            )
        })
    };
    match flag {
        "--name" => vm.name = Some(value(flag)?),
        "--windows" => {
            vm.windows = match value(flag)?.as_str() {
                "10" => WindowsVersion::Windows10,
                "11" => WindowsVersion::Windows11,
                other => {
                    return Err(gettext_f(
                        "--windows takes 10 or 11, not {value}",
                        &[("value", other)],
                    ))
                }
            }
        }
        "--memory" => vm.memory_mib = Some(number(value(flag)?)?),
        "--vcpus" => {
            let n = number(value(flag)?)?;
            vm.vcpus = Some(u32::try_from(n).unwrap_or(u32::MAX));
        }
        "--iso" => vm.iso = Some(value(flag)?),
        "--virtio-iso" => vm.virtio_iso = Some(value(flag)?),
        "--disk" => vm.disk = Some(value(flag)?),
        "--disk-size" => vm.disk_size_gib = Some(number(value(flag)?)?),
        "--network" => {
            let v = value(flag)?;
            vm.network = Some(match v.split_once(':') {
                Some(("bridge", name)) => NetworkChoice::Bridge(name.to_owned()),
                Some(("network", name)) => NetworkChoice::Network(name.to_owned()),
                _ => {
                    return Err(gettext_f(
                        "--network takes bridge:NAME or network:NAME, not {value}",
                        &[("value", &v)],
                    ))
                }
            });
        }
        _ => vm.no_kvm = true,
    }
    Ok(())
}

/// The VM of `vm-xml`'s options; `--gpu` brings the GPU's whole IOMMU group and its
/// vendor's code 43 settings, and is refused for a shared group or a device that is not a GPU.
fn vm_spec(report: &HostReport, vm: &VmArgs, gpu: Option<&PciAddress>) -> Result<VmSpec, String> {
    let defaults = VmSpec::default();
    let mut spec = VmSpec {
        name: vm.name.clone().unwrap_or_default(),
        windows: vm.windows,
        memory_mib: vm.memory_mib.unwrap_or(defaults.memory_mib),
        vcpus: vm.vcpus.unwrap_or(defaults.vcpus),
        install_iso: vm.iso.clone(),
        virtio_iso: vm.virtio_iso.clone(),
        storage: match (&vm.disk, vm.disk_size_gib) {
            (Some(path), _) => Storage::Path { path: path.clone() },
            (None, size) => Storage::NewVolume {
                pool: "default".into(),
                size_gib: size.unwrap_or(128),
            },
        },
        network: vm.network.clone().unwrap_or(defaults.network.clone()),
        kvm: !vm.no_kvm,
        ..defaults
    };
    if let Some(address) = gpu {
        let address_text = address.to_string();
        let Some(g) = report.gpus.iter().find(|g| g.address == *address) else {
            return Err(gettext_f(
                "{address} is not a graphics card on this host (see passthroughctl gpus)",
                &[("address", &address_text)],
            ));
        };
        match g.verdict {
            Verdict::Isolated => {}
            Verdict::Shared => {
                let blockers: Vec<String> = g.blockers.iter().map(|b| b.to_string()).collect();
                return Err(gettext_f(
                    "the IOMMU group of {address} also holds {devices}, which would have to go to the VM too; it cannot be passed through alone",
                    &[("address", &address_text), ("devices", &blockers.join(", "))],
                ));
            }
            Verdict::NoIommu => {
                return Err(gettext_f(
                    "the IOMMU is off, so the group of {address} is unknown; turn it on first (passthroughctl plan --iommu)",
                    &[("address", &address_text)],
                ));
            }
        }
        let mut addresses = vec![g.address];
        addresses.extend(g.companions.iter().copied());
        let hex = |v: Option<u16>| v.map(|v| format!("{v:04x}")).unwrap_or_default();
        spec.code43 = code43::recommended(&hex(g.vendor_id), &hex(g.device_id));
        spec.gpu = Some(GpuAssignment {
            addresses,
            rom_file: None,
        });
    }
    Ok(spec)
}

/// `launch` runs `passthroughctl-launch`, installed next to this program: it is the one
/// command that links libvirt, whose loading would slow every other command down.
fn run_launch(root: &HostRoot, uri: &str, target: &str, json: bool) -> ExitCode {
    use std::os::unix::process::CommandExt;
    let program = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("passthroughctl-launch")))
        .filter(|p| p.is_file());
    let Some(program) = program else {
        eprintln!(
            "passthroughctl: {}",
            gettext_f(
                "passthroughctl-launch, which launch runs, is not installed next to passthroughctl",
                &[]
            )
        );
        return ExitCode::from(2);
    };
    let mut cmd = std::process::Command::new(&program);
    cmd.arg("--root").arg(root.base()).args(["--uri", uri]);
    if json {
        cmd.arg("--json");
    }
    cmd.arg("--").arg(target);
    let error = cmd.exec();
    eprintln!(
        "passthroughctl: {}",
        gettext_f(
            "cannot start {command}: {error}",
            &[
                ("command", &program.display().to_string()),
                ("error", &error.to_string())
            ]
        )
    );
    ExitCode::from(2)
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
    if args.command == "network" {
        // The network alone: no PCI scan (config-space reads cost a millisecond each on
        // some machines).
        let network = passthrough_core::network::scan(&root);
        print!(
            "{}",
            if args.json {
                to_json(&json!(network))
            } else {
                passthrough_core::network::markdown(&network)
            }
        );
        return ExitCode::SUCCESS;
    }
    let report = HostReport::scan(
        &root,
        &ScanOptions {
            user: args.user.clone(),
        },
    );
    let mut code = ExitCode::SUCCESS;
    let text = match (args.command.as_str(), args.json) {
        ("report", false) => {
            let inputs = diagnose::Inputs {
                report: &report,
                kernel_log: None,
                qemu_log: None,
                domain_xml: None,
                vm_name: None,
            };
            let mut text = markdown::report(&report);
            text.push_str(&diagnose::problems_markdown(&diagnose::diagnose(&inputs)));
            text
        }
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
        ("launch", json) => {
            let (target, uri) = args.launch.clone().expect("checked in parse");
            let uri = uri.unwrap_or_else(launcher::default_uri);
            return run_launch(&root, &uri, &target, json);
        }
        ("diagnose", json) => match run_diagnose(&root, &report, &args.diagnose, json) {
            Ok((text, found)) => {
                if found {
                    code = ExitCode::from(1);
                }
                text
            }
            Err(msg) => {
                eprintln!("passthroughctl: {}", one_line(&msg));
                return ExitCode::from(2);
            }
        },
        ("vm-xml", json) => {
            let xml = vm_spec(&report, &args.vm, args.plan.reserve.first()).and_then(|spec| {
                let xml = vm_xml::domain_xml(&spec).map_err(|e| e.message().to_owned())?;
                Ok((spec, xml))
            });
            match xml {
                Ok((spec, xml)) if json => to_json(&json!({ "spec": spec, "xml": xml })),
                Ok((_, xml)) => xml,
                Err(msg) => {
                    eprintln!("passthroughctl: {}", one_line(&msg));
                    return ExitCode::from(2);
                }
            }
        }
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

/// `diagnose`: the problems found, as text or JSON, and whether there were any.
fn run_diagnose(
    root: &HostRoot,
    report: &HostReport,
    args: &DiagnoseArgs,
    json: bool,
) -> Result<(String, bool), String> {
    let read = |path: &std::path::Path| {
        std::fs::read(path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .map_err(|e| {
                gettext_f(
                    "cannot read {path}: {error}",
                    &[
                        ("path", &path.display().to_string()),
                        ("error", &e.to_string()),
                    ],
                )
            })
    };
    // Given files must be readable; the VM's own files are read when they exist.
    let vm_file = |host_path: String| {
        let path = root.path(&host_path);
        path.is_file().then(|| read(&path)).transpose()
    };
    let qemu_log = match (&args.qemu_log, &args.vm) {
        (Some(path), _) => Some(read(path)?),
        (None, Some(vm)) => vm_file(format!("/var/log/libvirt/qemu/{vm}.log"))?,
        (None, None) => None,
    };
    let domain_xml = match (&args.xml, &args.vm) {
        (Some(path), _) => Some(read(path)?),
        (None, Some(vm)) => vm_file(format!("/etc/libvirt/qemu/{vm}.xml"))?,
        (None, None) => None,
    };
    let kernel_log = args.kernel_log.as_deref().map(read).transpose()?;
    let inputs = diagnose::Inputs {
        report,
        kernel_log: kernel_log.as_deref(),
        qemu_log: qemu_log.as_deref(),
        domain_xml: domain_xml.as_deref(),
        vm_name: args.vm.as_deref(),
    };
    let problems = diagnose::diagnose(&inputs);
    let text = if json {
        let list: Vec<serde_json::Value> = problems
            .iter()
            .map(|p| {
                json!({
                    "id": p.id, "title": p.title, "cause": p.cause, "fix": p.fix,
                    "evidence": p.evidence, "fix_action": p.fix_action,
                })
            })
            .collect();
        to_json(&json!({ "problems": list }))
    } else if problems.is_empty() {
        format!("{}\n", gettext_f("No known problem was found.", &[]))
    } else {
        let mut out = String::new();
        for p in &problems {
            out.push_str(&format!(
                "[{}] {}\n  {} {}\n  {} {}\n  {} {}\n",
                p.id,
                p.title,
                gettext_f("Found:", &[]),
                p.evidence,
                gettext_f("Cause:", &[]),
                p.cause,
                gettext_f("Fix:", &[]),
                p.fix
            ));
            if p.fix_action.is_some() {
                out.push_str(&format!(
                    "  {}\n",
                    gettext_f("Passthrough can apply this fix.", &[])
                ));
            }
        }
        out
    };
    Ok((text, !problems.is_empty()))
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
