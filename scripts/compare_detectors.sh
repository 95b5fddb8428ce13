#!/usr/bin/env bash
# Watershed's privacy detectors beside Presidio's pattern recognizers and detect-secrets,
# on the tuned and held-out corpora: makes (or reuses) the virtual environment under
# .venv-compare/ with both peers from PyPI, builds the small detector example (not the
# whole gateway), and prints the table that BENCHMARKS.md quotes.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv-compare/bin/python ]; then
    python3 -m venv .venv-compare
fi
.venv-compare/bin/pip install --quiet presidio-analyzer detect-secrets phonenumbers

cargo build --quiet --release -p watershed-policies --example detect_jsonl

.venv-compare/bin/python scripts/compare_detectors.py \
    --watershed target/release/examples/detect_jsonl --overlap \
    policies/tests/data/privacy_corpus.jsonl \
    policies/tests/data/privacy_corpus_holdout.jsonl
