//! Fuzzes `kiln_core::fuzzing::user_agent` (see its documentation for the input format and the promises).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kiln_core::fuzzing::user_agent(data));
