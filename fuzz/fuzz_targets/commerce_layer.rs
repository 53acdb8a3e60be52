//! Fuzz target `commerce_layer`: the property is `psp_gateway_fuzz::commerce_layer::check` (fuzz/src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| psp_gateway_fuzz::commerce_layer::check(data));
