#!/usr/bin/env bash
# Assembles bench-out/llama.cpp/tree: the llama.cpp source that llama-cpp-sys-2
# vendors (so benchmarks compare against the very library Watershed links), plus
# the sources of llama.cpp's benchmark tools, which the crate does not ship,
# taken from the llama-cpp-python sdist on PyPI (its vendor/llama.cpp is the
# full tree). Backends other than CPU and CUDA are left out. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
SDIST_VERSION=${SDIST_VERSION:-0.3.36}
D=bench-out/llama.cpp
mkdir -p "$D"
if [[ -f "$D/tree/.complete" ]]; then
  echo "$D/tree"
  exit 0
fi
crate=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/llama-cpp-sys-2-0.1.161/llama.cpp | head -n1)
[[ -d "$crate" ]] || { echo "llama-cpp-sys-2 source not found: run cargo fetch" >&2; exit 1; }
sdist="$D/llama_cpp_python-$SDIST_VERSION.tar.gz"
if [[ ! -f "$sdist" ]]; then
  .venv/bin/pip download -q --no-binary :all: --no-deps "llama-cpp-python==$SDIST_VERSION" -d "$D" >&2
fi
rm -rf "$D/tree" "$D/sdist"
cp -r "$crate" "$D/tree"
for b in et metal hexagon sycl vulkan opencl cann musa hip webgpu zdnn rpc blas kompute openvino virtgpu; do
  rm -rf "$D/tree/ggml/src/ggml-$b"
done
rm -rf "$D/tree/tools"/*
mkdir -p "$D/sdist"
tar xzf "$sdist" -C "$D/sdist" "llama_cpp_python-$SDIST_VERSION/vendor/llama.cpp/tools/batched-bench" \
  "llama_cpp_python-$SDIST_VERSION/vendor/llama.cpp/tools/llama-bench"
for t in batched-bench llama-bench; do
  cp -r "$D/sdist/llama_cpp_python-$SDIST_VERSION/vendor/llama.cpp/tools/$t" "$D/tree/tools/"
done
cat > "$D/tree/tools/CMakeLists.txt" <<'CMAKE'
# Only the benchmark tools (sources from the llama-cpp-python sdist).
find_package(Threads REQUIRED)
llama_add_compile_flags()
add_subdirectory(batched-bench)
add_subdirectory(llama-bench)
CMAKE
touch "$D/tree/.complete"
echo "$D/tree"
