#![no_main]

use libfuzzer_sys::fuzz_target;
use passthrough_core::bootcfg::mkinitcpio;

fuzz_target!(|data: &[u8]| {
    passthrough_fuzz::check_modules(data, mkinitcpio::modules, mkinitcpio::edit);
});
