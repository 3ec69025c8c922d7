#!/usr/bin/env bash
# npm run notebooks [-- NAME...]
# Executes notebooks/*.ipynb (or the named ones: "00-smoke", "00-smoke.ipynb" or "notebooks/00-smoke.ipynb")
# headless with the tslab kernel (scripts/nb-execute.py: nbclient, as `jupyter nbconvert --execute`
# with ExecutePreprocessor.timeout), writes the executed notebooks and standalone HTML reports
# (nbconvert's HTML export; plotly inlined, offline; long lines wrap) into reports/, and exits non-zero
# if any notebook fails (its partial run is kept as reports/NAME.failed.ipynb). Every cell must carry
# an id (scripts/nb-cell-ids.py sets them).
# Synchronous readback of computed tensors is forbidden in the kernels, as on WebGPU and in CI
# (TFLENS_FORBID_SYNC_READBACK=1 by default; export TFLENS_FORBID_SYNC_READBACK=0 to allow it).
# Env: NB_TIMEOUT (seconds per cell, default 1800), REPORTS (output folder, default reports).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/nb-setup.sh"
nb_setup

REPORTS="${REPORTS:-reports}"
export TFLENS_FORBID_SYNC_READBACK="${TFLENS_FORBID_SYNC_READBACK:-1}"
TIMEOUT="${NB_TIMEOUT:-1800}"
mkdir -p "$REPORTS"

notebooks=()
if [ "$#" -gt 0 ]; then
  for arg in "$@"; do
    name="$(basename "$arg")"
    name="${name%.ipynb}"
    [ -f "notebooks/$name.ipynb" ] || nb_die "no notebook notebooks/$name.ipynb (from argument '$arg')"
    notebooks+=("notebooks/$name.ipynb")
  done
else
  shopt -s nullglob
  notebooks=(notebooks/*.ipynb)
  shopt -u nullglob
  [ "${#notebooks[@]}" -gt 0 ] || nb_die "no notebooks in notebooks/"
fi

$NB_PYTHON "$ROOT/scripts/nb-cell-ids.py" --check "${notebooks[@]}" || nb_die "cells without ids (see above)"
nb_log "TFLENS_FORBID_SYNC_READBACK=$TFLENS_FORBID_SYNC_READBACK (1: dataSync/arraySync on computed tensors throw, as on WebGPU)"

failed=()
for nb in "${notebooks[@]}"; do
  name="$(basename "$nb" .ipynb)"
  start=$(date +%s)
  nb_log "running $nb"
  # A notebook that fails leaves $REPORTS/$name.failed.ipynb (outputs up to the failing cell) and
  # no $name.ipynb/.html, so an old report never passes for a new one. Log: $REPORTS/$name.log.
  rm -f "$REPORTS/$name.ipynb" "$REPORTS/$name.html" "$REPORTS/$name.failed.ipynb"
  tmp_dir="$(mktemp -d "$ROOT/.tflens-tmp/nb-XXXXXX")"
  # shellcheck disable=SC2086  # NB_PYTHON may be "/usr/bin/env python3"
  if $NB_PYTHON "$ROOT/scripts/nb-execute.py" "$nb" "$tmp_dir/$name.ipynb" tslab "$TIMEOUT" "$tmp_dir/$name.html" >"$REPORTS/$name.log" 2>&1; then
    mv -f "$tmp_dir/$name.ipynb" "$REPORTS/$name.ipynb"
    mv -f "$tmp_dir/$name.html" "$REPORTS/$name.html"
    nb_log "ok   $nb ($(( $(date +%s) - start ))s) -> $REPORTS/$name.html"
  else
    failed+=("$nb")
    [ -f "$tmp_dir/$name.ipynb" ] && mv -f "$tmp_dir/$name.ipynb" "$REPORTS/$name.failed.ipynb"
    nb_log "FAIL $nb ($(( $(date +%s) - start ))s); from $REPORTS/$name.log:"
    tail -n 40 "$REPORTS/$name.log" >&2 || true
  fi
  rm -rf "$tmp_dir"
done

if [ "${#failed[@]}" -gt 0 ]; then
  nb_log "${#failed[@]} of ${#notebooks[@]} notebook(s) failed: ${failed[*]}"
  exit 1
fi
nb_log "all ${#notebooks[@]} notebook(s) ran; reports in $REPORTS/"
