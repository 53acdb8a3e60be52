//! Fuzz target `plugin_json`: the property is `psp_gateway_fuzz::plugin_json::check` (fuzz/src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| psp_gateway_fuzz::plugin_json::check(data));
