//! passthrough-helper: Passthrough's privileged system-bus service.
//!
//! It owns `io.github.passthrough.Helper1` on the system bus (D-Bus activated through
//! systemd), previews plans without privilege and applies them, as transactions, for callers
//! that polkit authorizes, resets a reserved graphics card before its VM starts
//! (`ResetGpu`), and reads the kernel log and VMs' QEMU logs for the Troubleshooting step
//! (`ReadLog`). The contract (names, proxy, errors, DTOs) is in
//! [`passthrough_core::dbus`]; this crate never links GTK.

pub mod authority;
pub mod idle;
pub mod logs;
pub mod reset;
pub mod service;
pub mod validate;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use passthrough_core::dbus::{BUS_NAME, OBJECT_PATH};
use passthrough_core::HostRoot;
use zbus::fdo::{RequestNameFlags, RequestNameReply};

use crate::authority::Authority;
use crate::idle::Idle;
use crate::service::Helper;

const USAGE: &str = "\
Usage: passthrough-helper [--root DIR] [--idle-timeout SECS] [--session]

Passthrough's privileged helper. It is started by D-Bus activation on the system bus;
there is no need to run it by hand.

Options:
  --root DIR           read and change the host under DIR instead of / (tests)
  --idle-timeout SECS  exit after SECS seconds without calls (default 60; 0 = never)
  --session            serve on the session bus instead of the system bus (development)
  --version            print the version and exit
  --help               print this help and exit";

/// Command-line options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub root: PathBuf,
    /// `None`: never exit for idleness.
    pub idle_timeout: Option<Duration>,
    pub session: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            root: PathBuf::from("/"),
            idle_timeout: Some(idle::DEFAULT_TIMEOUT),
            session: false,
        }
    }
}

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Serve(Options),
    Help,
    Version,
}

/// Parses the arguments after the program name.
pub fn parse_args<I, S>(args: I) -> Result<Command, String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut options = Options::default();
    let mut args = args.into_iter().map(Into::into);
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |what: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs {what}"))
        };
        match name.as_str() {
            "--root" => {
                let dir = PathBuf::from(value("a directory")?);
                if !dir.is_absolute() {
                    return Err(format!("--root needs an absolute path, not {dir:?}"));
                }
                options.root = dir;
            }
            "--idle-timeout" => {
                let text = value("a number of seconds")?;
                let secs: u64 = text
                    .parse()
                    .map_err(|_| format!("--idle-timeout needs whole seconds, not {text:?}"))?;
                options.idle_timeout = (secs > 0).then(|| Duration::from_secs(secs));
            }
            "--session" => options.session = true,
            "--help" | "-h" => return Ok(Command::Help),
            "--version" => return Ok(Command::Version),
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    Ok(Command::Serve(options))
}

/// The program: parses the command line, serves until idle, returns the exit code.
pub fn run() -> ExitCode {
    init_logging();
    passthrough_core::i18n::init(passthrough_core::LOCALEDIR);
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(Command::Serve(options)) => options,
        Ok(Command::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("passthrough-helper {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("passthrough-helper: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match zbus::block_on(serve(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "stopped");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("PASSTHROUGH_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,zbus=warn"));
    // stderr goes to the journal under systemd; no timestamps, the journal adds its own.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .with_ansi(false)
        .try_init();
}

/// Connects, serves the object, owns the name, and returns once idle.
pub async fn serve(options: Options) -> zbus::Result<()> {
    let root = HostRoot::new(&options.root);
    let builder = if options.session {
        zbus::connection::Builder::session()
    } else {
        zbus::connection::Builder::system()
    };
    let conn = builder.build().await?;
    let authority = Authority::new(&conn).await?;
    let idle = Idle::new();
    let helper = Helper::new(root, authority, idle.clone());
    helper.start_recovery();
    conn.object_server().at(OBJECT_PATH, helper).await?;
    // Not zbus's default flags: those allow another process to take the name over, even in
    // the middle of a transaction. One helper at a time; a second one exits.
    let reply = conn
        .request_name_with_flags(BUS_NAME, RequestNameFlags::DO_NOT_QUEUE)
        .await?;
    if !matches!(
        reply,
        RequestNameReply::PrimaryOwner | RequestNameReply::AlreadyOwner
    ) {
        return Err(zbus::Error::NameTaken);
    }
    tracing::info!(
        root = %options.root.display(),
        idle_timeout = ?options.idle_timeout,
        bus = if options.session { "session" } else { "system" },
        "serving {BUS_NAME}"
    );
    idle.wait(&conn, options.idle_timeout).await;
    tracing::info!("exiting: idle");
    // Give the name back first, so a new call activates a new helper, then finish what runs.
    conn.release_name(BUS_NAME).await.ok();
    idle.calls_finished().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve_opts(args: &[&str]) -> Options {
        match parse_args(args.iter().copied()).unwrap() {
            Command::Serve(o) => o,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn options() {
        assert_eq!(serve_opts(&[]), Options::default());
        let o = serve_opts(&["--root", "/tmp/x", "--idle-timeout=5", "--session"]);
        assert_eq!(o.root, PathBuf::from("/tmp/x"));
        assert_eq!(o.idle_timeout, Some(Duration::from_secs(5)));
        assert!(o.session);
        assert_eq!(serve_opts(&["--idle-timeout", "0"]).idle_timeout, None);
        assert_eq!(parse_args(["--help"]).unwrap(), Command::Help);
        for bad in [
            &["--root"][..],
            &["--root", "relative"],
            &["--idle-timeout", "-1"],
            &["--idle-timeout", "soon"],
            &["--frobnicate"],
        ] {
            assert!(parse_args(bad.iter().copied()).is_err(), "{bad:?}");
        }
    }
}
