//! Fuzzes `kiln_worker::fuzzing::html_output` (see its documentation for the promises).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kiln_worker::fuzzing::html_output(data));
