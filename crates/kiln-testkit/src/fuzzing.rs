//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/`) through a fuzz target's own check,
//! so the stable test suite catches a regression on any input the fuzzers once found interesting,
//! without nightly Rust or libFuzzer.
//!
//! The checks themselves are the production crates' (their `fuzzing` modules, behind the `fuzzing`
//! feature), where the fuzz targets in `fuzz/` call them too; only the replay, which reads files and
//! catches panics, is test code.

use std::path::Path;

/// Runs `check` on every file of the committed corpus `fuzz/corpus/<target>/` and returns how many
/// there were; panics naming every file whose check failed.
pub fn replay_corpus(target: &str, check: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a corpus entry").path())
        .collect();
    files.sort();
    let failed: Vec<String> = files
        .iter()
        .filter_map(|path| {
            let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            std::panic::catch_unwind(|| check(&data))
                .is_err()
                .then(|| path.display().to_string())
        })
        .collect();
    assert!(failed.is_empty(), "{target}: failed on {failed:#?}");
    files.len()
}
