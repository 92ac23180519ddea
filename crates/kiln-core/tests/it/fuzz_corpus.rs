//! Replays the committed fuzz corpora (`fuzz/corpus/`) through the fuzz targets' own checks, so the
//! stable test suite catches a regression on any input the fuzzers once found interesting, without
//! nightly Rust or libFuzzer.

use kiln_core::fuzzing;
use kiln_testkit::fuzzing::replay_corpus;

#[test]
fn url_corpus_keeps_the_normaliser_s_promises() {
    let files = replay_corpus("url", fuzzing::url);
    assert!(files >= 50, "only {files} url inputs");
}

#[test]
fn user_agent_corpus_keeps_the_classifier_s_promises() {
    let files = replay_corpus("user_agent", fuzzing::user_agent);
    assert!(files >= 50, "only {files} user_agent inputs");
}

#[test]
fn bots_map_corpus_is_read_or_refused_without_a_panic() {
    let files = replay_corpus("bots_map", fuzzing::bots_map);
    assert!(files >= 20, "only {files} bots_map inputs");
}
