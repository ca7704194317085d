//! Any bytes as an MQTT request payload, then the gate (see entries.rs).
#![no_main]

#[path = "../entries.rs"]
mod entries;

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| entries::request(bytes));
