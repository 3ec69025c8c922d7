#!/usr/bin/env bash
# One device call for everything when the device time allows only one: the WebGPU kernel and parity
# tests, then the issue-16 benchmark (GPT-2-small and Qwen2-0.5B-shape parts, no 7B rows), then the
# whole suite and the notebooks (bench/device/suite.sh). Caps: WEBGPU_SECONDS (90), BENCH_SECONDS (170),
# SUITE_SECONDS (270). Carry ["bench/out/suite", "dist"].
set -uo pipefail
source bench/device/logs.sh
source bench/out/suite/enter.sh
ln -sfn .. node_modules/tflens
export TFLENS_FORBID_SYNC_READBACK=1
TFLENS_BACKEND=webgpu timeout "${WEBGPU_SECONDS:-90}" node_modules/.bin/mocha test/webgpu-kernels.test.ts test/fused.test.ts test/half.test.ts test/parity.test.ts > "$logs/test-webgpu-alone.log" 2>&1
echo "test:webgpu rc=$?" >> "$logs/status.txt"; pack
unset TFLENS_FORBID_SYNC_READBACK
timeout "${BENCH_SECONDS:-170}" node bench/run.mjs --device --parts matmul,forward,nocache,memory,sweeps,retrieval --out "$out" --no-table --tag "gpu-$(date -u +%Y%m%d-%H%M)-main" > "$logs/bench-main.log" 2>&1
echo "bench rc=$?" >> "$logs/status.txt"; pack
SUITE_SECONDS=${SUITE_SECONDS:-270} bash bench/device/suite.sh > /dev/null 2>&1
cat "$logs/status.txt" "$logs/summary.txt"
