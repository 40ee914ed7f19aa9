#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard_fuzzing::address_rewrite(data));
