#![no_main]

use libfuzzer_sys::fuzz_target;
use passthrough_core::bootcfg::loader_entry;

fuzz_target!(|data: &[u8]| {
    passthrough_fuzz::check_kargs(data, loader_entry::kernel_args, loader_entry::edit);
});
