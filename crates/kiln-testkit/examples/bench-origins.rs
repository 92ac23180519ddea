//! The render corpus's origins as a program of their own, for benchmarks that render them with
//! something other than Kiln's test code (`scripts/bench-render-cost.sh` asks Kiln, prerender and
//! Rendertron for the same pages).
//!
//! `cargo run --release -p kiln-testkit --example bench-origins`
//!
//! Starts the corpus origin (with the internal server its SSRF pages aim at) and the built React and
//! Vue apps of `examples/frameworks/`, each on a free port of 127.0.0.1, prints one line per origin,
//! `<name> <base URL>` (`corpus`, `react`, `vue`, then `internal`), followed by `ready`, and serves
//! until it is killed.

use kiln_testkit::corpus::TestCorpusOrigin;
use std::io::Write as _;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let internal = TestCorpusOrigin::start_internal().await;
    let origins = [
        ("corpus", TestCorpusOrigin::start(&internal).await),
        ("react", TestCorpusOrigin::start_framework("react").await),
        ("vue", TestCorpusOrigin::start_framework("vue").await),
        ("internal", internal),
    ];
    // One write and a flush: the script that started this program reads the lines from a pipe or a
    // file as soon as `ready` is there.
    let mut lines = String::new();
    for (name, server) in &origins {
        lines.push_str(&format!("{name} {}\n", server.base()));
    }
    lines.push_str("ready\n");
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(lines.as_bytes())
        .and_then(|()| stdout.flush())
        .expect("the origins' addresses can be written to standard output");
    drop(stdout);
    // The servers run on this runtime until the process ends.
    std::future::pending::<()>().await;
}
