#!/usr/bin/env bash
# On the accelerator machine (issue 15's "on the GPU for real"): the whole mocha suite, the WebGPU kernel
# and parity tests and every notebook (as a script of its code cells), all with TFLENS_BACKEND=webgpu
# and synchronous readback forbidden. Logs go to $OUT/logs.tgz, a summary to $OUT/summary.txt (bench/device/logs.sh). Made by
# bench/device/bundle-suite.sh; run from the project root with carry ["bench/out/suite", "dist"].
# SUITE_SECONDS bounds each part (default 520).
set -uo pipefail
source bench/device/logs.sh
source bench/out/suite/enter.sh
ln -sfn .. node_modules/tflens
cap=${SUITE_SECONDS:-520}
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; node --version; python3 -c 'import torch, numpy; print("torch", torch.__version__, "numpy", numpy.__version__)'; } > "$logs/machine.txt" 2>&1
# Redis on a loopback port for the sweep tests
mkdir -p /tmp/redis && for f in bench/out/suite/redis/*.deb; do dpkg -x "$f" /tmp/redis; done
export PATH=$PATH:/tmp/redis/usr/bin LD_LIBRARY_PATH=/tmp/redis/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
/tmp/redis/usr/bin/redis-server --port 6390 --bind 127.0.0.1 --save '' --appendonly no --daemonize yes --dir /tmp/redis >> "$logs/machine.txt" 2>&1 || echo "redis did not start" >> "$logs/machine.txt"
export TFLENS_TEST_REDIS=redis://127.0.0.1:6390/0 TFLENS_BACKEND=webgpu TFLENS_FORBID_SYNC_READBACK=1
node scripts/nb-to-script.mjs > /dev/null
# the suite in four groups at once (one GPU, many processes), the WebGPU tests, the notebooks
mapfile -t files < <(ls test/*.test.ts | grep -v -e live-jupyter -e browser)
for g in 0 1 2 3; do
  sel=(); for i in "${!files[@]}"; do (( i % 4 == g )) && sel+=("${files[$i]}"); done
  timeout "$cap" node_modules/.bin/mocha --reporter spec "${sel[@]}" > "$logs/suite-$g.log" 2>&1 &
done
timeout "$cap" node_modules/.bin/mocha test/webgpu-kernels.test.ts test/fused.test.ts test/half.test.ts test/parity.test.ts > "$logs/test-webgpu.log" 2>&1 &
for s in reports/scripts/*.ts; do
  (cd notebooks && n=$(basename "$s" .ts) && t0=$(date +%s) && { timeout "$cap" node --import tsx "../$s" > "$logs/nb-$n.log" 2>&1; rc=$?; echo "$n rc=$rc $(( $(date +%s) - t0 )) s" >> "$logs/notebooks.txt"; }) &
done
wait
{ for f in "$logs"/suite-*.log "$logs"/test-webgpu.log; do printf '%s: ' "$(basename "$f")"; grep -E '^\s+[0-9]+ (passing|failing|pending)' "$f" | tr -s ' \n' ' '; echo; done; sort "$logs/notebooks.txt"; } > "$logs/summary.txt"
pack
cat "$logs/summary.txt"
