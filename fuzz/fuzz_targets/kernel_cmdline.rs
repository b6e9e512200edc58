#![no_main]

use libfuzzer_sys::fuzz_target;
use passthrough_core::bootcfg::kernel_cmdline;

fuzz_target!(|data: &[u8]| {
    passthrough_fuzz::check_kargs(data, kernel_cmdline::kernel_args, kernel_cmdline::edit);
});
