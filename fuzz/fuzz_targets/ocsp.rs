#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nw_trust::fuzz::ocsp(data));
