#!/usr/bin/env bash
# Runs the privacy-detector benchmark in release mode and prints its table: detect and
# the difficulty score on every adversarial family from 100 B to 4 MiB, ms per MiB, and
# the ratio 4 MiB / 16 KiB (about 1 means linear). Takes a minute or two.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench -p watershed-policies --bench detectors "$@"
