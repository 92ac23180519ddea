//! Replays the committed `html_output` fuzz corpus (`fuzz/corpus/html_output/`) through the fuzz
//! target's own checks, so the stable test suite catches a regression in the page post-processor on
//! any document the fuzzer once found interesting, without nightly Rust or libFuzzer.

use kiln_testkit::fuzzing::replay_corpus;

#[test]
fn html_output_corpus_keeps_the_post_processor_s_promises() {
    let files = replay_corpus("html_output", kiln_worker::fuzzing::html_output);
    assert!(files >= 50, "only {files} html_output inputs");
}
