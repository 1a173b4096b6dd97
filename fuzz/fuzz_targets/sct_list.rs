#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nw_trust::fuzz::sct_list(data));
