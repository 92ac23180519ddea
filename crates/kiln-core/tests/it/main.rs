//! kiln-core's integration tests, one binary: property tests of the cache key (`normaliser`) and
//! the replay of the committed fuzz corpora (`fuzz_corpus`).

mod fuzz_corpus;
mod normaliser;
