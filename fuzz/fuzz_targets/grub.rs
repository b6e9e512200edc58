#![no_main]

use libfuzzer_sys::fuzz_target;
use passthrough_core::bootcfg::grub;

fuzz_target!(|data: &[u8]| {
    passthrough_fuzz::check_kargs(data, grub::kernel_args, grub::edit);
    let _ = grub::linux_args(&passthrough_fuzz::text(data));
});
