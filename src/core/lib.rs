//! passthrough-core: everything in Passthrough that is neither GTK nor privileged.
//!
//! All host state is read through a [`HostRoot`], so the whole program can be pointed at a
//! fixture directory (`--root DIR`) and see that machine instead of this one.

pub mod boot;
pub mod bootcfg;
pub mod checks;
pub mod cmdline;
pub mod cpu;
pub mod dbus;
pub mod diagnose;
pub mod firmware;
pub mod gpu;
pub mod i18n;
pub mod ids;
pub mod libvirt;
pub mod markdown;
pub mod network;
pub mod note;
pub mod pci;
pub mod plan;
pub mod plan_render;
pub mod report;
pub mod root;
pub mod transaction;
pub mod trial;
pub mod vm;

pub use note::{Note, Severity};
pub use report::{HostReport, ScanOptions};
pub use root::HostRoot;

/// The gettext domain shared by the app, the CLI and the helper.
pub const GETTEXT_DOMAIN: &str = "passthrough";

/// Where the message catalogs are installed; `LOCALEDIR` at build time, else the
/// `/usr/local` default of `build-aux/install`. `PASSTHROUGH_LOCALEDIR` overrides it at run time.
pub const LOCALEDIR: &str = match option_env!("LOCALEDIR") {
    Some(dir) => dir,
    None => "/usr/local/share/locale",
};
