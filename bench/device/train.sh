#!/usr/bin/env bash
# On the accelerator machine (issue 20.5): train zoo recipes (recall, ioi) with tflens on WebGPU, one process
# per job at once (one GPU, many processes), and beside them the PyTorch binding check
# (scripts/recall-binding-check.py) on CUDA for the same shapes. Made by bench/device/bundle-train.sh;
# run from the project root with carry ["bench/out/train"].
#   JOBS: lines of `scripts/train-zoo.ts` arguments (model name first), one process each (default
#   "recall --seed 2"; JSON for --arch / --format without spaces), TRAIN_SECONDS (400: then SIGUSR2
#   stops the training and the model so far is saved), HEADLINE_SECONDS (120, for the card's headline),
#   CHECKS (lines of recall-binding-check.py arguments; empty: none), CHECK_SECONDS (each, 120).
# The model folders come back in $OUT/models.tgz, the logs in $OUT/logs.tgz (bench/device/logs.sh).
set -uo pipefail
set -f  # the JOBS and CHECKS lines hold JSON with brackets: no globbing
source bench/device/logs.sh
source bench/out/train/enter.sh
ln -sfn .. node_modules/tflens
export TFLENS_BACKEND=${TFLENS_BACKEND:-webgpu} TFLENS_QUIET=1
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; node --version; } > "$logs/machine.txt" 2>&1
work=/tmp/zoo-train; mkdir -p "$work"
i=0
while IFS= read -r line; do
  [ -z "$line" ] && continue; i=$((i + 1))
  (t0=$(date +%s)
   echo "job $i: $line" > "$logs/job-$i.log"
   # shellcheck disable=SC2086
   timeout -k "${HEADLINE_SECONDS:-120}" -s USR2 "${TRAIN_SECONDS:-400}" node --import tsx scripts/train-zoo.ts $line --out "$work/job-$i" >> "$logs/job-$i.log" 2>&1
   echo "job $i rc=$? $(( $(date +%s) - t0 )) s: $line" >> "$logs/status.txt") &
done <<< "${JOBS:-recall --seed 2}"
# USR2 only stops the training; the headline after it runs until -k's grace ends (then SIGKILL)
if [ -n "${CHECKS:-}" ]; then
  (i=0; while IFS= read -r line; do
     [ -z "$line" ] && continue; i=$((i + 1))
     echo "check $i: $line" > "$logs/check-$i.log"
     # shellcheck disable=SC2086
     timeout "${CHECK_SECONDS:-120}" "${PYTHON:-python3}" scripts/recall-binding-check.py $line --seconds "$(( ${CHECK_SECONDS:-120} - 15 ))" >> "$logs/check-$i.log" 2>&1
   done <<< "$CHECKS") &
fi
wait
set +f
tar czf "$out/models.tgz" -C "$work" .
grep -E "job|step [0-9]+:|trained|MB|Error|heldout" "$logs"/job-*.log > "$logs/summary.txt" 2>/dev/null
tail -n 3 "$logs"/check-*.log >> "$logs/summary.txt" 2>/dev/null
pack
cat "$logs/status.txt" "$logs/summary.txt"
