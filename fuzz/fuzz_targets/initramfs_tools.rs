#![no_main]

use libfuzzer_sys::fuzz_target;
use passthrough_core::bootcfg::initramfs_tools;

fuzz_target!(|data: &[u8]| {
    passthrough_fuzz::check_modules(data, initramfs_tools::modules, initramfs_tools::edit);
});
