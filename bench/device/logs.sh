# Sourced by the device scripts. At most 8 files come back from a device call's $OUT, so the logs
# are written to $logs and pack() copies them into $OUT/logs.tgz (with summary.txt and status.txt
# beside it); each script packs after every phase, so a run stopped by its limit keeps what was packed.
out=$(realpath -m "${OUT:-reports/device}"); mkdir -p "$out"
logs=${TFLENS_DEVICE_LOGS:-/tmp/tflens-device-logs}; mkdir -p "$logs"
pack() {
  tar czf "$out/logs-part.tgz" -C "$logs" . && mv "$out/logs-part.tgz" "$out/logs.tgz"
  for f in summary.txt status.txt; do if [ -f "$logs/$f" ]; then cp "$logs/$f" "$out/"; fi; done
}
