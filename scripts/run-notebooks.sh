#!/usr/bin/env bash
# npm run notebooks [-- NAME...]
# Executes notebooks/*.ipynb (or the named ones: "00-smoke", "00-smoke.ipynb" or "notebooks/00-smoke.ipynb")
# headless with the tslab kernel, writes the executed notebooks and standalone HTML reports
# (plotly inlined, offline) into reports/, and exits non-zero if any notebook fails.
# Env: NB_TIMEOUT (seconds per cell, default 1800), REPORTS (output folder, default reports).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/nb-setup.sh"
nb_setup

REPORTS="${REPORTS:-reports}"
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

failed=()
for nb in "${notebooks[@]}"; do
  name="$(basename "$nb" .ipynb)"
  start=$(date +%s)
  nb_log "running $nb"
  # Write the executed notebook beside the report only when every cell succeeded; a failed run
  # leaves the previous report (if any) as it was and its log in $REPORTS/$name.log.
  tmp_dir="$(mktemp -d "$ROOT/.tflens-tmp/nb-XXXXXX")"
  if jupyter nbconvert --to notebook --execute \
      --ExecutePreprocessor.timeout="$TIMEOUT" \
      --ExecutePreprocessor.kernel_name=tslab \
      --output-dir "$tmp_dir" --output "$name.ipynb" "$nb" >"$REPORTS/$name.log" 2>&1 \
    && jupyter nbconvert --to html --output-dir "$tmp_dir" --output "$name.html" "$tmp_dir/$name.ipynb" >>"$REPORTS/$name.log" 2>&1; then
    mv -f "$tmp_dir/$name.ipynb" "$REPORTS/$name.ipynb"
    mv -f "$tmp_dir/$name.html" "$REPORTS/$name.html"
    nb_log "ok   $nb ($(( $(date +%s) - start ))s) -> $REPORTS/$name.html"
  else
    failed+=("$nb")
    nb_log "FAIL $nb ($(( $(date +%s) - start ))s); last lines of $REPORTS/$name.log:"
    tail -n 30 "$REPORTS/$name.log" >&2 || true
  fi
  rm -rf "$tmp_dir"
done

if [ "${#failed[@]}" -gt 0 ]; then
  nb_log "${#failed[@]} of ${#notebooks[@]} notebook(s) failed: ${failed[*]}"
  exit 1
fi
nb_log "all ${#notebooks[@]} notebook(s) ran; reports in $REPORTS/"
