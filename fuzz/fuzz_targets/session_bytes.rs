#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| joint::fuzz_targets::session_bytes(data));
