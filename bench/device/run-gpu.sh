#!/usr/bin/env bash
# The accelerator run (one device call): the bench on WebGPU vs PyTorch CUDA, then the lead's parity
# test on WebGPU, plain and with the bench's int32 CPU forwarding preloaded. Everything goes to $OUT.
# Device call: carry [".device", "bench/out/dist"]; command: bash bench/device/run-gpu.sh
set -u
OUT=${OUT:-bench/out/gpu}; mkdir -p "$OUT"
source .device/enter.sh
f=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json; [ -e "$f" ] && export VK_DRIVER_FILES=$f
export TFLENS_DIST=${TFLENS_DIST:-bench/out/dist} TFLENS_BACKEND=webgpu PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$OUT/gpu.txt"
timeout ${BENCH_TIMEOUT:-360} node bench/run.mjs --device --out "$OUT" --no-table --tag "gpu-webgpu-h200-$(date -u +%Y%m%d-%H%M)" 2>&1 | tee "$OUT/bench.log" | grep -v '^ '
echo "== parity (plain) =="
timeout ${PARITY_TIMEOUT:-75} node node_modules/mocha/bin/mocha.js test/parity.test.ts > "$OUT/parity.log" 2>&1; echo "rc=$?" >> "$OUT/parity.log"; tail -c 2500 "$OUT/parity.log"
echo "== parity (int32 CPU forwarding preloaded) =="
NODE_OPTIONS="--import ./bench/device/webgpu-preload.mjs" timeout ${PARITY_TIMEOUT:-75} node node_modules/mocha/bin/mocha.js test/parity.test.ts > "$OUT/parity-patched.log" 2>&1; echo "rc=$?" >> "$OUT/parity-patched.log"; tail -c 2500 "$OUT/parity-patched.log"
ls -la "$OUT"
