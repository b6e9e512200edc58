//! The `io.github.passthrough.Helper1` object.
//!
//! Every mutating method checks polkit for the caller first, then validates its arguments,
//! then acts; nothing else runs as root on a caller's behalf.

use std::sync::Arc;

use passthrough_core::HostRoot;
use zbus::interface;

use crate::authority::Authority;
use crate::idle::Idle;

/// The helper's one object, served at [`OBJECT_PATH`](passthrough_core::dbus::OBJECT_PATH).
#[derive(Debug)]
pub struct Helper {
    root: HostRoot,
    // Checked by Apply and Rollback, which call into core's transaction engine.
    #[allow(dead_code)]
    authority: Authority,
    idle: Idle,
    /// Held while a transaction runs: one change of the host at a time.
    #[allow(dead_code)]
    changing: Arc<std::sync::Mutex<()>>,
}

impl Helper {
    pub fn new(root: HostRoot, authority: Authority, idle: Idle) -> Self {
        Self {
            root,
            authority,
            idle,
            changing: Arc::default(),
        }
    }

    /// The host root this helper reads and changes (`/` on a real system).
    pub fn root(&self) -> &HostRoot {
        &self.root
    }
}

#[interface(name = "io.github.passthrough.Helper1")]
impl Helper {
    /// The helper's version (the package version).
    #[zbus(property(emits_changed_signal = "const"))]
    fn version(&self) -> String {
        let _busy = self.idle.busy();
        env!("CARGO_PKG_VERSION").to_owned()
    }
}
