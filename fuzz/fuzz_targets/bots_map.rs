//! Fuzzes `kiln_core::fuzzing::bots_map` (see its documentation for the input format and the promises).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kiln_core::fuzzing::bots_map(data));
