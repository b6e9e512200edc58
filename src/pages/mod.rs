//! One page per setup step. The steps not built yet are status pages in `window.ui`.

mod boot_page;
mod gpu_page;
mod launch_page;
mod system_page;
mod troubleshoot_page;
pub mod vm_page;

pub use boot_page::PtBootPage;
pub use gpu_page::{GpuView, PtGpuPage};
pub use launch_page::PtLaunchPage;
pub use system_page::PtSystemPage;
pub use troubleshoot_page::PtTroubleshootPage;
pub use vm_page::{data_home, PtVmPage};
