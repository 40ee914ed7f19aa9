#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard_fuzzing::rest_bodies(data));
