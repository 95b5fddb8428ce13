#!/usr/bin/env bash
# Fuzzes the privacy detectors and the redaction/restoration pair with cargo-fuzz
# (libFuzzer): each target in fuzz/ runs SECONDS (default 60) from its seed corpus in
# fuzz/corpus/<target>/, with a 2 s limit per input so that a slow input fails like a
# crash; inputs go up to 4 KiB, where a quadratic scanner is already far over the
# detect target's own linear work bound. A failing input is left in
# fuzz/artifacts/<target>/: turn it into a test in policies/tests/fuzz_regressions.rs.
# Not run by CI: it takes minutes.
#
#   scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
# cargo-fuzz passes nightly-only compiler flags; a stable toolchain accepts them when
# told it is bootstrapping.
if ! rustc --version | grep -q nightly; then
  export RUSTC_BOOTSTRAP=1
fi
for target in detect redact_restore; do
  # New inputs go to a scratch corpus, so the committed seeds stay a few dozen files.
  scratch="fuzz/target/corpus/$target"
  mkdir -p "$scratch"
  # The code is safe Rust, so no sanitizer (twice the executions per second); debug
  # assertions stay on so that arithmetic overflow fails too.
  cargo fuzz run --fuzz-dir fuzz --sanitizer none --debug-assertions "$target" \
    "$scratch" "fuzz/corpus/$target" -- \
    -max_total_time="$secs" -max_len=4096 -timeout=2 -rss_limit_mb=2048 -print_final_stats=1
done
