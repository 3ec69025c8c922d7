#!/usr/bin/env bash
# npm run notebook-server [-- extra jupyter options]
# Same setup as `npm run notebooks` (Jupyter, dist/, node_modules/tflens, tslab kernel), then
# starts Jupyter Notebook on notebooks/. Env: HOST (default 127.0.0.1), PORT (default 8888),
# NOTEBOOK_DIR (default notebooks/; test/live-jupyter.test.ts serves a copy from elsewhere).
# Synchronous readback is allowed here unless TFLENS_FORBID_SYNC_READBACK=1 is exported.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/nb-setup.sh"
nb_setup
extra=()
[ "$(id -u)" = 0 ] && extra+=(--allow-root)
nb_log "kernel: 'TypeScript (tslab, tflens)'; notebooks start with: import * as tfl from 'tflens';"
exec jupyter notebook --notebook-dir="${NOTEBOOK_DIR:-$ROOT/notebooks}" --no-browser \
  --ip="${HOST:-127.0.0.1}" --port="${PORT:-8888}" "${extra[@]}" "$@"
