//! The gaming VM: the wizard's choices ([`VmSpec`]), the libvirt domain XML they become
//! (`xml`), the "code 43" workarounds by GPU vendor (`code43`), reading and changing those
//! settings in an existing domain (`features`), libvirt itself (`libvirt`, through the
//! `virt` crate) and the app-grid launcher (`launcher`).
//!
//! XML is only ever built and edited as a tree and written by a serializer (xmltree), never
//! by pasting strings, so a name with quotes, `<`, `&` or Chinese characters stays data.

pub mod launcher;
pub mod libvirt;
pub mod spec;

pub use spec::{
    Code43, Display, GpuAssignment, NetworkChoice, SpecError, Storage, VmSpec, WindowsVersion,
    MAX_NAME_LEN, MAX_VENDOR_ID_LEN,
};
pub mod code43;
pub mod features;
mod tree;
pub mod xml;
