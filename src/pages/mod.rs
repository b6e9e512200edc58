//! One page per setup step. The steps not built yet are status pages in `window.ui`.

mod gpu_page;
mod system_page;

pub use gpu_page::{GpuView, PtGpuPage};
pub use system_page::PtSystemPage;
