#!/usr/bin/env bash
# The kernel micro-benchmark on the accelerator, in one device call (everything goes to $OUT):
#   here:   node node_modules/typescript/bin/tsc -p tsconfig.json --outDir bench/out/kdist
#           bash bench/kernels/bundle.sh
#   device: carry ["bench/out/kdev", "bench/out/kdist"], command: bash bench/kernels/run-device.sh
# Runs the benchmark (default Dawn robustness), test/webgpu-kernels.test.ts on the GPU (the only
# check of the subgroup-matrix path), then the matmul part again with TFLENS_WEBGPU_FAST=1.
set -u -o pipefail
OUT=${OUT:-bench/out/kernels}; mkdir -p "$OUT"
source bench/out/kdev/enter.sh
export TFLENS_DIST=${TFLENS_DIST:-bench/out/kdist}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
{ echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-}"; ldconfig -p | grep -E 'libvulkan|libGLdispatch|libGLX_nvidia' ; } >> "$OUT/gpu.txt"
# full logs go to $OUT; the console shows them without Dawn's "Warning:" lines
timeout "${BENCH_TIMEOUT:-115}" node bench/kernels/kernels-bench.mjs --parts "${BENCH_PARTS:-matmul,attention,gated,norm,rotary}" --out "$OUT/bench.json" > "$OUT/bench.log" 2>&1
grep -v '^Warning' "$OUT/bench.log" | cut -c1-150
echo "== test/webgpu-kernels.test.ts =="
TFLENS_BACKEND=webgpu timeout "${TEST_TIMEOUT:-60}" node node_modules/mocha/bin/mocha.js test/webgpu-kernels.test.ts > "$OUT/test.log" 2>&1
echo "rc=$?" >> "$OUT/test.log"
grep -v '^Warning' "$OUT/test.log" | tail -c 2500
[ "${FAST_TIMEOUT:-35}" = 0 ] && exit 0
echo "== matmul with TFLENS_WEBGPU_FAST=1 (Dawn robustness off) =="
TFLENS_WEBGPU_FAST=1 timeout "${FAST_TIMEOUT:-35}" node bench/kernels/kernels-bench.mjs --parts matmul --out "$OUT/bench-fast.json" > "$OUT/bench-fast.log" 2>&1
grep -E 'square|7B MLP in|toggles' "$OUT/bench-fast.log" | cut -c1-150
