#!/usr/bin/env bash
# On the accelerator machine: the issue-16 benchmark in one call (carry ["bench/out/suite", "dist"]):
# every GPT-2-small and Qwen2-0.5B-shape part, then the 7B rows on a bf16 Llama-2-7B-shaped checkpoint
# written there by bench/device/make_7b.py, then the per-kernel-class profile. Each part group writes its
# own JSON to $OUT (so one that runs out of time keeps the others); copy them into bench/results and
# run `node bench/table.mjs`. BENCH_SECONDS bounds the first group (default 300).
set -uo pipefail
source bench/device/logs.sh
source bench/out/suite/enter.sh
ln -sfn .. node_modules/tflens
stamp=$(date -u +%Y%m%d-%H%M)
timeout "${BENCH_SECONDS:-300}" node bench/run.mjs --device --parts matmul,forward,nocache,memory,sweeps,retrieval --out "$out" --no-table --tag "gpu-$stamp-main" > "$logs/bench-main.log" 2>&1
echo "main: rc=$?" >> "$logs/status.txt"; pack
t0=$(date +%s)
python3 bench/device/make_7b.py /tmp/tflens-7b > "$logs/make7b.log" 2>&1
echo "make_7b: rc=$? $(( $(date +%s) - t0 )) s" >> "$logs/status.txt"; pack
TFLENS_7B_DIR=/tmp/tflens-7b timeout "${BENCH_7B_SECONDS:-200}" node bench/run.mjs --device --parts llama7b --out "$out" --no-table --tag "gpu-$stamp-7b" > "$logs/bench-7b.log" 2>&1
echo "7b: rc=$?" >> "$logs/status.txt"; pack
rm -rf /tmp/tflens-7b
timeout "${BENCH_PROFILE_SECONDS:-60}" node bench/run.mjs --device --parts profile --no-torch --out "$out" --no-table --tag "gpu-$stamp-profile" > "$logs/bench-profile.log" 2>&1
echo "profile: rc=$?" >> "$logs/status.txt"; pack
cat "$logs/status.txt"
