#!/usr/bin/env bash
# Prepares bench-out/gpu/ for scripts/gpu_bench.sh, which runs on a GPU machine
# without network or Rust: the llama.cpp source (with the benchmark tools) as a
# tarball, the watershed binary built with `dynamic-link` (it loads the CUDA
# build of the same libllama/libggml there), and the default model's tokenizer
# for the synthetic MoE. The static release binary is rebuilt afterwards, so
# target/release/watershed is the ordinary one again.
set -euo pipefail
cd "$(dirname "$0")/.."
G=bench-out/gpu
mkdir -p "$G"
tree=$(bash scripts/llama_tools_tree.sh)
tar czf "$G/llama-tree.tar.gz" -C "$(dirname "$tree")" "$(basename "$tree")"
.venv/bin/python scripts/make_big_moe_gguf.py --export-tokenizer "$G/tokenizer.gguf" \
  --from models/SmolLM2-135M-Instruct.Q4_1.gguf
cargo build --release --locked -p watershed --features dynamic-link
strip -o "$G/watershed-dl" target/release/watershed
gzip -f "$G/watershed-dl"
readelf -d target/release/watershed | grep -E "NEEDED|RUNPATH|RPATH" > "$G/watershed-dl.needed"
cargo build --release --locked -p watershed
ls -la "$G"
