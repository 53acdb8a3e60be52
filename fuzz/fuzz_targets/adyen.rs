//! Fuzz target `adyen`: the property is `psp_gateway_fuzz::adyen::check` (fuzz/src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| psp_gateway_fuzz::adyen::check(data));
