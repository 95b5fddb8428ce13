#!/usr/bin/env bash
# Sets everything up and runs the whole test suite: formatting, lints, unit and
# integration tests (PostgreSQL, mock upstreams, the official Python SDKs driving
# the real binary).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
export WATERSHED_PYTHON="$PWD/.venv/bin/python"
export WATERSHED_TEST_MODEL="$PWD/models/SmolLM2-135M-Instruct.Q4_1.gguf"
cargo fmt --all -- --check
cargo clippy --locked --workspace --all-targets -- -D warnings
# The gateway's own tests need its binary, so this also builds the `watershed`
# binary that the end-to-end tests in tests/ start.
cargo test --locked --workspace
# The unit and ledger suites again under shifted clocks (a year's end, a new
# year's first seconds, a leap day): no outcome may depend on today's date.
bash scripts/test_clock.sh
