#!/usr/bin/env bash
# Sets everything up and runs the gateway on its embedded defaults: SQLite ledger
# (./watershed.db), the local SmolLM2 model, the default policy. Extra arguments go
# to `watershed serve` (for example --listen 0.0.0.0:8080 or --config FILE).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --locked -p watershed
exec target/release/watershed serve "$@"
