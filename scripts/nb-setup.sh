#!/usr/bin/env bash
# Shared setup for `npm run notebooks` and `npm run notebook-server` (sourced, not run):
#  - Jupyter (notebook + nbconvert) installed where missing: apt as root, else pip --user;
#  - dist/ built when missing or older than src/ (tslab type-checks notebooks against dist/*.d.ts);
#  - node_modules/tflens -> the project root, so notebooks `import * as tfl from 'tflens'`;
#  - the tslab kernel registered as "tslab" in .tflens-tmp/jupyter (put first on JUPYTER_PATH),
#    running this checkout's node_modules/tslab with this node.
# Leaves ROOT, NB_PYTHON (the Python running Jupyter) and JUPYTER_PATH exported.

nb_log() { printf '[notebooks] %s\n' "$*" >&2; }
nb_die() { printf '[notebooks] error: %s\n' "$*" >&2; exit 1; }

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ROOT
cd "$ROOT"

nb_have_jupyter() {
  command -v jupyter >/dev/null 2>&1 && jupyter nbconvert --version >/dev/null 2>&1 && jupyter notebook --version >/dev/null 2>&1
}

nb_install_jupyter() {
  nb_have_jupyter && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    nb_log "installing jupyter-notebook and jupyter-nbconvert with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq jupyter-notebook jupyter-nbconvert >/dev/null
  elif command -v python3 >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1; then
    nb_log "installing notebook and nbconvert with pip --user"
    python3 -m pip install --user -q notebook nbconvert
    export PATH="$HOME/.local/bin:$PATH"
  fi
  nb_have_jupyter || nb_die "Jupyter (notebook + nbconvert) is missing and could not be installed: install jupyter-notebook and jupyter-nbconvert (apt) or 'pip install notebook nbconvert'"
}

# The Python that runs Jupyter (it has nbclient, nbformat and nbconvert): the interpreter named in
# jupyter's #! line, else python3.
nb_find_python() {
  local shebang cand
  shebang="$(head -n 1 "$(command -v jupyter)" 2>/dev/null | sed -n 's/^#! *//p')"
  for cand in "$shebang" python3 /usr/bin/python3; do
    [ -n "$cand" ] || continue
    # shellcheck disable=SC2086  # "/usr/bin/env python3" must split
    if $cand -c 'import nbclient, nbformat, nbconvert' >/dev/null 2>&1; then NB_PYTHON="$cand"; export NB_PYTHON; return 0; fi
  done
  nb_die "no Python with nbclient, nbformat and nbconvert found (tried: $shebang, python3, /usr/bin/python3)"
}

nb_build() {
  [ -d node_modules ] || nb_die "node_modules is missing: run 'npm ci' first"
  if [ ! -f dist/index.js ] || [ ! -f dist/index.d.ts ] \
     || [ -n "$(find src package.json tsconfig.json -newer dist/index.js -print -quit 2>/dev/null)" ]; then
    nb_log "building dist/ (npm run build)"
    npm run --silent build || nb_die "npm run build failed"
  fi
}

nb_link() {
  local link="node_modules/tflens"
  if [ -L "$link" ] && [ "$(readlink "$link")" = ".." ]; then return 0; fi
  [ -e "$link" ] && [ ! -L "$link" ] && nb_die "$link exists and is not a symlink; remove it so the runner can link the project there"
  ln -sfn .. "$link"
}

# tslab runs notebook cells as CommonJS: `import * as tfl from 'tflens'` becomes require('tflens'),
# which needs a "default" (or "require") condition in package.json "exports", Node >= 20.19
# (require of an ES module) and no top-level await in dist/. Check that here, with a clear message,
# instead of the kernel's bare "<Error>".
nb_check_import() {
  local out
  if ! out="$(cd "$ROOT/notebooks" && node --no-warnings -e "require('tflens')" 2>&1)"; then
    printf '%s\n' "$out" | grep -m 3 -E 'Error|error' >&2 || true
    nb_die "require('tflens') fails from notebooks/ (as tslab does it): package.json \"exports\" needs a \"default\": \"./dist/index.js\" condition, node must be >= 20.19, dist/ must have no top-level await"
  fi
}

nb_kernel() {
  local dir="$ROOT/.tflens-tmp/jupyter/kernels/tslab"
  local node_bin
  node_bin="$(command -v node)" || nb_die "node is not on PATH"
  [ -f "$ROOT/node_modules/tslab/bin/tslab" ] || nb_die "node_modules/tslab is missing: run 'npm ci' first"
  mkdir -p "$dir"
  # written by node so that any path is JSON-escaped correctly
  "$node_bin" -e '
    const [node, root, out] = process.argv.slice(1);
    const spec = {
      argv: [node, root + "/node_modules/tslab/bin/tslab", "kernel", "--config-path", "{connection_file}"],
      display_name: "TypeScript (tslab, tflens)",
      language: "typescript",
      metadata: { tflens: true },
    };
    require("fs").writeFileSync(out, JSON.stringify(spec, null, 2) + "\n");
  ' "$node_bin" "$ROOT" "$dir/kernel.json.tmp"
  mv "$dir/kernel.json.tmp" "$dir/kernel.json"
  export JUPYTER_PATH="$ROOT/.tflens-tmp/jupyter${JUPYTER_PATH:+:$JUPYTER_PATH}"
  jupyter --paths 2>/dev/null | grep -F "$ROOT/.tflens-tmp/jupyter" >/dev/null \
    || nb_die "jupyter does not search $ROOT/.tflens-tmp/jupyter for kernels (JUPYTER_PATH ignored?)"
}

nb_setup() {
  nb_install_jupyter
  nb_find_python
  nb_build
  nb_link
  nb_check_import
  nb_kernel
}
