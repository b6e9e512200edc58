//! One page per setup step.

mod boot_page;
mod gpu_page;
mod launch_page;
mod network_page;
mod system_page;
mod troubleshoot_page;
pub mod vm_page;

pub use boot_page::PtBootPage;
pub use gpu_page::{GpuView, PtGpuPage};
pub use launch_page::PtLaunchPage;
pub use network_page::PtNetworkPage;
pub use system_page::PtSystemPage;
pub use troubleshoot_page::PtTroubleshootPage;
pub use vm_page::{data_home, PtVmPage};
