#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard::fuzzing::storage_protocol(data));
