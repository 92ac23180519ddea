//! Fuzzes `kiln_core::fuzzing::url` (see its documentation for the input format and the promises).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kiln_core::fuzzing::url(data));
