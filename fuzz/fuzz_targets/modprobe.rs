#![no_main]

use libfuzzer_sys::fuzz_target;
use passthrough_core::bootcfg::{dracut, modprobe};

fuzz_target!(|data: &[u8]| {
    let text = passthrough_fuzz::text(data);
    let conf = modprobe::parse(&text);
    assert_eq!(modprobe::parse(&modprobe::render(&conf)), conf, "render round-trips");
    let drivers = dracut::modules(&text);
    let names: Vec<&str> = drivers.iter().map(String::as_str).collect();
    assert_eq!(dracut::modules(&dracut::render(&names)), drivers);
});
