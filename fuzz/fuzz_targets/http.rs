//! Any bytes as a terminal HTTP answer or a simulator request (see entries.rs).
#![no_main]

#[path = "../entries.rs"]
mod entries;

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| entries::http(bytes));
