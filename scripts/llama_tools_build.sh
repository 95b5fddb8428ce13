#!/usr/bin/env bash
# Builds llama.cpp's benchmark tools (llama-bench, llama-batched-bench) for the
# CPU from the tree scripts/llama_tools_tree.sh assembles, into
# bench-out/llama.cpp/build-cpu, with the flags llama-cpp-sys-2 builds the
# library Watershed links with (RelWithDebInfo, x86-64 with AVX2/FMA/F16C, not
# -march=native: llama.cpp's AMX kernels, which a native build enables on
# Sapphire Rapids, crash on this kind of VM). Idempotent; prints the bin directory.
set -euo pipefail
cd "$(dirname "$0")/.."
tree=$(bash scripts/llama_tools_tree.sh)
B=bench-out/llama.cpp/build-cpu
if [[ ! -x "$B/bin/llama-batched-bench" || ! -x "$B/bin/llama-bench" ]]; then
  cmake -S "$tree" -B "$B" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_SHARED_LIBS=ON \
    -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
    -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_APP=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_COMMON=ON >&2
  cmake --build "$B" -j"$(nproc)" --target llama-batched-bench llama-bench >&2
fi
echo "$B/bin"
