#!/usr/bin/env bash
# The GPU benchmark, run on a machine with an NVIDIA GPU, CUDA, cmake and a C++
# compiler but no network and no Rust toolchain. Everything it needs is prepared
# on the build machine by scripts/gpu_bench_prepare.sh into bench-out/gpu/:
#
#   llama-tree.tar.gz  the llama.cpp source llama-cpp-sys-2 vendors, plus the
#                      llama-batched-bench sources from the llama-cpp-python sdist
#   watershed-dl.gz    the watershed binary built with the `dynamic-link` feature
#   tokenizer.gguf     the default model's tokenizer, for the synthetic MoE
#
# It builds llama.cpp's shared libraries with CUDA from that source, writes a
# synthetic MoE shaped like Qwen3-30B-A3B (Q4_0), runs llama-batched-bench on it,
# then serves it with Watershed against the CUDA libraries and drives the HTTP
# endpoint with scripts/bench_serving.py. Results go to $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:?set OUT to the results directory}
G=bench-out/gpu
# Under bench-out/ so a second run on the same machine reuses the build and model.
W=${WORK:-bench-out/gpu-work}
PRESET=${PRESET:-qwen3-30b-a3b}
mkdir -p "$OUT" "$W"
get() { python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' "$1"; }
log() { printf '[%s] %s\n' "$(date +%T)" "$*" | tee -a "$OUT/steps.txt"; }

log "machine"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  nproc; free -g | head -2; python3 --version; cmake --version | head -1
  nvcc --version | tail -2; ldd --version | head -1
} >> "$OUT/steps.txt" 2>&1

W=$(realpath "$W")
MODEL="$W/moe-$PRESET.gguf"
gen=""
if [[ ! -f "$MODEL" ]]; then
  log "generate $PRESET (in the background, while llama.cpp builds)"
  python3 scripts/make_big_moe_gguf.py --tokenizer "$G/tokenizer.gguf" --out "$MODEL" \
    --preset "$PRESET" --type q4_0 >> "$OUT/steps.txt" 2>&1 &
  gen=$!
fi
if [[ -x "$W/build/bin/llama-batched-bench" ]]; then
  log "llama.cpp already built in $W/build"
else
log "unpack"
rm -rf "$W/tree" && tar xzf "$G/llama-tree.tar.gz" -C "$W"

log "configure llama.cpp with CUDA"
cmake -S "$W/tree" -B "$W/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
  -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90}" -DGGML_CUDA_FA=OFF \
  -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
  -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_APP=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_COMMON=ON \
  > "$OUT/cmake.txt" 2>&1 || { log "cmake failed"; tail -30 "$OUT/cmake.txt"; exit 1; }
log "build"
cmake --build "$W/build" -j"$(nproc)" --target llama-batched-bench llama-common \
  > "$OUT/build.txt" 2>&1 || { log "build failed"; tail -40 "$OUT/build.txt"; exit 1; }
log "built"
fi
if [[ -n "$gen" ]]; then
  wait "$gen" || { log "model generation failed"; exit 1; }
fi

export LD_LIBRARY_PATH="$W/build/bin:$W/build/common:${LD_LIBRARY_PATH:-}"
log "llama-batched-bench (each B twice: the first rows pay one-time CUDA set-up)"
timeout 180 "$W/build/bin/llama-batched-bench" -m "$MODEL" -c 8192 -b 2048 -ub 512 \
  -npp 32 -ntg 96 -npl 1,8,1,8 -ngl 99 > "$W/batched-bench.txt" 2>&1
grep -E "^\|" "$W/batched-bench.txt" | tee -a "$OUT/steps.txt"

log "watershed"
gunzip -c "$G/watershed-dl.gz" > "$W/watershed" && chmod +x "$W/watershed"
ldd "$W/watershed" | grep -E "llama|ggml|cuda|not found" >> "$OUT/steps.txt" 2>&1
cat > "$W/gpu.yaml" <<EOF
version: 1
ledger: { url: "sqlite://$W/ledger.db" }
models:
  moe:
    engine: local
    gguf: "$MODEL"
    context_tokens: 1024
    parallel: 8
    gpu_layers: all
routes:
  - name: all
    to: [moe]
EOF
"$W/watershed" serve --config "$W/gpu.yaml" --listen 127.0.0.1:18080 > "$OUT/watershed.log" 2>&1 &
ws=$!
for _ in $(seq 240); do
  get http://127.0.0.1:18080/readyz > /dev/null 2>&1 && break
  kill -0 "$ws" 2> /dev/null || break
  sleep 0.5
done
get http://127.0.0.1:18080/v1/models >> "$OUT/steps.txt" 2>&1
nvidia-smi --query-gpu=memory.used --format=csv >> "$OUT/steps.txt" 2>&1
log "bench through HTTP"
timeout 240 python3 scripts/bench_serving.py --url http://127.0.0.1:18080 --model moe \
  --concurrency 1,8 --rounds 3 --max-tokens 96 --label "watershed HTTP" \
  --json "$OUT/watershed.json" | tee -a "$OUT/steps.txt"
kill -TERM "$ws" 2> /dev/null
wait "$ws"
log "watershed exited with status $?"
