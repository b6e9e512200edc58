//! Passthrough, the GTK 4 + libadwaita app. `main.rs` only calls [`run`].

mod application;
mod config;
mod helper_client;
mod launch;
mod pages;
pub mod timing;
mod vm_service;
mod widgets;
mod window;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use gettextrs::gettext;
use gtk::prelude::*;
use gtk::{gio, glib};

pub use application::PtApplication;

/// When `run` started, and how long the process had been alive by then.
static START: OnceLock<(Instant, Duration)> = OnceLock::new();

/// Starts the app: logging, translations, resources, then the main loop.
pub fn run() -> glib::ExitCode {
    START.get_or_init(|| (Instant::now(), time_before_main()));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();

    passthrough_core::i18n::init(config::LOCALEDIR);
    glib::set_application_name(&gettext("Passthrough"));
    tracing::debug!(
        version = config::VERSION,
        pkgdatadir = config::PKGDATADIR,
        "starting"
    );

    if let Err(e) = gio::resources_register_include!("passthrough.gresource") {
        tracing::error!("cannot register the embedded resources: {e}");
        return glib::ExitCode::FAILURE;
    }

    let app = PtApplication::new();
    let code = app.run();
    match app.launch_exit_code() {
        Some(launch) if code == glib::ExitCode::SUCCESS => glib::ExitCode::from(launch),
        _ => code,
    }
}

/// Milliseconds since the process started (for `PASSTHROUGH_TIMING=1`).
pub(crate) fn ms_since_process_start() -> u128 {
    let (at, before) = START.get_or_init(|| (Instant::now(), Duration::ZERO));
    (*before + at.elapsed()).as_millis()
}

/// How long the process ran before `run` (loading libraries and such): uptime now minus the
/// process's start time, both from /proc, in the kernel's 10 ms ticks. Zero when unknown.
fn time_before_main() -> Duration {
    // This is about our own process, not the examined host, so it does not go through HostRoot.
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let started_ticks = read("/proc/self/stat").and_then(|stat| {
        // Fields after the command name, which is in parentheses and may contain spaces.
        let rest = &stat[stat.rfind(')')? + 2..];
        rest.split_whitespace().nth(19)?.parse::<u64>().ok()
    });
    let uptime =
        read("/proc/uptime").and_then(|u| u.split_whitespace().next()?.parse::<f64>().ok());
    match (started_ticks, uptime) {
        // USER_HZ, the unit of /proc/<pid>/stat, is 100 on Linux.
        (Some(ticks), Some(up)) => Duration::from_secs_f64((up - ticks as f64 / 100.0).max(0.0)),
        _ => Duration::ZERO,
    }
}
