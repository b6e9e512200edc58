//! Build-time configuration. Everything has a default, so a plain `cargo run` works without
//! a configure step; packagers set the environment variables at build time.

/// The application ID; also the GSettings schema ID and the icon name.
pub const APP_ID: &str = "io.github.passthrough.Passthrough";

/// The version of the app, from Cargo.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Where the message catalogs are installed (shared with the CLI through core).
pub const LOCALEDIR: &str = passthrough_core::LOCALEDIR;

/// Where the app's own data files are installed.
pub const PKGDATADIR: &str = match option_env!("PKGDATADIR") {
    Some(dir) => dir,
    None => "/usr/local/share/passthrough",
};

/// The resource path of the embedded bundle (see `data/resources.gresource.xml`).
pub const RESOURCE_BASE_PATH: &str = "/io/github/passthrough/Passthrough";
