#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard::fuzzing::unit_config(data));
