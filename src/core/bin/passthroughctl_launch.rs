//! `passthroughctl-launch`: the `launch` command of passthroughctl, in a binary of its own.
//!
//! It is the only command that talks to libvirt, and loading libvirt's library (with
//! gnutls, libssh, curl…) costs every process that links it about 12 ms before `main`.
//! passthroughctl runs this program, installed next to it, for `launch`, so its other
//! commands start in a few milliseconds. Arguments (already checked by passthroughctl):
//! `--root DIR --uri URI [--json] -- TARGET`.

use std::path::PathBuf;
use std::process::ExitCode;

use passthrough_core::vm::launcher;
use passthrough_core::{i18n, HostReport, HostRoot, ScanOptions, LOCALEDIR};

fn main() -> ExitCode {
    i18n::init(LOCALEDIR);
    let mut root = PathBuf::from("/");
    let mut uri = launcher::default_uri();
    let mut json = false;
    let mut target = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--root" => root = args.next().map(PathBuf::from).unwrap_or(root),
            "--uri" => uri = args.next().unwrap_or(uri),
            "--json" => json = true,
            "--" => target = args.next(),
            _ => {
                eprintln!("passthroughctl-launch: unexpected argument {a}");
                return ExitCode::from(2);
            }
        }
    }
    let Some(target) = target else {
        eprintln!("passthroughctl-launch: no virtual machine given");
        return ExitCode::from(2);
    };
    let root = HostRoot::new(root);
    let report = HostReport::scan(&root, &ScanOptions::default());
    let code = launcher::run_cli(
        &uri,
        &target,
        &root,
        &report,
        json,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    ExitCode::from(code)
}
