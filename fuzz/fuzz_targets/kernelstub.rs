#![no_main]

use libfuzzer_sys::fuzz_target;
use passthrough_core::bootcfg::kernelstub;

fuzz_target!(|data: &[u8]| {
    passthrough_fuzz::check_kargs(data, kernelstub::kernel_args, kernelstub::edit);
});
