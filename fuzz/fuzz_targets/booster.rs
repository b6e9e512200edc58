#![no_main]

use libfuzzer_sys::fuzz_target;
use passthrough_core::bootcfg::booster;

fuzz_target!(|data: &[u8]| {
    passthrough_fuzz::check_modules(data, booster::modules, booster::edit);
});
