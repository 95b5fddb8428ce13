#!/usr/bin/env bash
# The local engine side by side with llama.cpp's own tools, same GGUF, same
# machine, one script: llama-bench (single-stream decode), llama-batched-bench
# (32-token prompts, 96 generated tokens, B = 1 and 8) and Watershed's HTTP
# endpoint under the same load (scripts/bench_serving.py), then the prefix-cache
# TTFT. Prints markdown tables; BENCHMARKS.md holds a recorded run.
#
#   scripts/bench_engine.sh [MODEL.gguf]
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
THREADS=${THREADS:-$(nproc)}
PORT=${PORT:-18081}
bash scripts/setup.sh > /dev/null
cargo build --release --locked -p watershed 2> /dev/null
BIN=$(bash scripts/llama_tools_build.sh 2> /dev/null)
export LD_LIBRARY_PATH="$BIN:${LD_LIBRARY_PATH:-}"

echo "## Machine"
echo "$(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), model $(basename "$MODEL")"
echo "llama.cpp: the tree llama-cpp-sys-2 0.1.161 vendors (ggml $(sed -n 's/set(GGML_VERSION_MINOR \(.*\))/0.\1/p' bench-out/llama.cpp/tree/ggml/CMakeLists.txt).x) for both sides; tool sources from llama-cpp-python $(ls bench-out/llama.cpp/*.tar.gz | sed 's/.*python-\(.*\)\.tar\.gz/\1/')"
echo

echo "## llama-bench (decode only, tg128)"
"$BIN/llama-bench" -m "$MODEL" -p 0 -n 128 -t "$THREADS" -o md 2> /dev/null | grep -E "^\|"
echo

echo "## llama-batched-bench (npp 32, ntg 96)"
"$BIN/llama-batched-bench" -m "$MODEL" -c 4096 -b 2048 -ub 512 -npp 32 -ntg 96 -npl 1,8 \
  -t "$THREADS" 2> /dev/null | grep -E "^\|" | tee bench-out/batched-bench.md
echo

D=$(mktemp -d)
cat > "$D/bench.yaml" <<EOF
version: 1
ledger: { url: "sqlite://$D/ledger.db" }
models:
  local:
    engine: local
    gguf: "$PWD/$MODEL"
    context_tokens: 2048
    parallel: 8
    threads: $THREADS
routes:
  - name: all
    to: [local]
EOF
target/release/watershed serve --config "$D/bench.yaml" --listen "127.0.0.1:$PORT" 2> "$D/watershed.log" &
ws=$!
trap 'kill $ws 2> /dev/null; wait $ws 2> /dev/null; rm -rf "$D"' EXIT
for _ in $(seq 120); do
  python3 -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$PORT/readyz', timeout=2)" 2> /dev/null && break
  sleep 0.5
done

echo "## Watershed over HTTP (a different prompt per concurrent request, greedy, max_tokens 96)"
python3 scripts/bench_serving.py --url "http://127.0.0.1:$PORT" --model local \
  --concurrency 1,8 --rounds 4 --max-tokens 96 --label watershed --json bench-out/watershed.json
echo

echo "## Ratio, generated tokens per second of wall time (prefill included)"
python3 - <<'EOF'
import json
rows = {}
for line in open("bench-out/batched-bench.md"):
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) >= 9 and cells[0].isdigit():
        pp, tg, b, t = int(cells[0]), int(cells[1]), int(cells[2]), float(cells[8])
        rows[b] = b * tg / t
ours = {r["concurrency"]: r["gen_tps"] for r in json.load(open("bench-out/watershed.json"))}
print("| B | llama-batched-bench gen tok/s | Watershed HTTP gen tok/s | ratio |")
print("|---|---|---|---|")
for b in sorted(ours):
    ref = rows.get(b)
    if ref:
        print(f"| {b} | {ref:.1f} | {ours[b]:.1f} | {ours[b] / ref:.2f} |")
EOF
echo

echo "## Prefix cache: TTFT with a shared ~1000-token system prompt"
python3 scripts/bench_serving.py --url "http://127.0.0.1:$PORT" --model local --prefix-cache
