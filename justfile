# Kiln's recipes. `just` is optional: every recipe is a script you can run directly.

# Start the whole platform locally with the demo site (Ctrl-C stops it).
up:
    scripts/run-local.sh up

# Stop whatever a previous `up` left running.
down:
    scripts/run-local.sh down

# Run the whole test suite against real Redis, Postgres, nginx and Chromium.
test *ARGS:
    scripts/test.sh {{ARGS}}

# Formatting and lints, as CI runs them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets --locked -- -D warnings

# No module uses another that uses it back (the test command runs this too); PACKAGE... checks
# only those, in full, skip list or not.
module-loops *PACKAGES:
    scripts/module-loops.sh {{PACKAGES}}

# Dependencies against deny.toml: licences, banned crates, sources and security advisories.
deny:
    scripts/deny.sh

# Validate the deployment files offline: Kubernetes manifests, compose, workflows, Prometheus,
# Grafana, the edge's nginx config (deploy/README.md).
validate-deploy:
    scripts/validate-deploy.sh

# Fuzz one target (url, user_agent, bots_map, html_output) on nightly with cargo-fuzz, for SECONDS
# (default 600), growing fuzz/corpus/<target>/; then `just fuzz-cmin <target>` before committing it.
# The fuzz crate keeps its own target directory (fuzz/target): its builds use other compiler flags.
fuzz target seconds="600" *ARGS:
    env -u CARGO_TARGET_DIR cargo +nightly fuzz run {{target}} -- -max_total_time={{seconds}} {{ARGS}}

# Minimise one target's committed corpus to the inputs that still add coverage.
fuzz-cmin target:
    env -u CARGO_TARGET_DIR cargo +nightly fuzz cmin {{target}}

# Refresh docs/screenshots/ from the dashboard's browser test.
screenshots:
    scripts/screenshots.sh

# The benchmark suite (about 25 minutes after the release build): builds, starts a private stack,
# measures against in-run references, stops it, and writes docs/benchmarks/latest.{md,csv,png},
# render.md and render-cost.{md,csv,png}. BENCH_SECONDS, BENCH_ROUNDS, ... tune it (see scripts/bench.sh).
bench:
    scripts/bench.sh

# What a cold render costs, Kiln against prerender and Rendertron in the same run (about 10 minutes
# after the build; the quick settings, `just bench` runs the full ones): renders/s and CPU-seconds
# per render at 1, 2, 4 and 8 at once, docs/benchmarks/render-cost.{md,csv,png}. See
# scripts/bench-render-cost.sh for its BENCH_* settings.
bench-render-cost:
    BENCH_QUICK="${BENCH_QUICK:-1}" scripts/bench-render-cost.sh

# Cold-render throughput with 1, 2, 3 and 4 workers on this machine: docs/benchmarks/scale.md.
bench-scale *ARGS:
    scripts/bench-scale.sh {{ARGS}}

# The unit costs behind docs/capacity.md (a gateway with 100,000 domains, a million cached pages in
# Redis, the render log at 10 million rows) and the check of the model on two gateways and three
# workers: docs/benchmarks/capacity.{md,csv}. About 20 minutes after the build; needs ~8 GB of disk
# and memory for a while, all deleted at the end. See scripts/bench-capacity.sh for its BENCH_* settings.
bench-capacity:
    scripts/bench-capacity.sh

# CI's whole run.
ci:
    bash .ci/run
