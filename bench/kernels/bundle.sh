#!/usr/bin/env bash
# Packs what the kernel benchmark needs on the accelerator machine into bench/out/kdev (ignored):
# node (xz), the node_modules packages the benchmark and test/webgpu-kernels.test.ts import (their
# dependency closure only, linux-x64 native parts), the Vulkan loader package, and enter.sh.
# Same approach as ../shared/tools/device-bundle.sh, kept separate so that it does not touch the
# .device/ bundle other runs use. Then: carry ["bench/out/kdev", "bench/out/dist"].
set -euo pipefail
root=$(git rev-parse --show-toplevel); cd "$root"
out=bench/out/kdev
rm -rf "$out" && mkdir -p "$out/gl" /tmp/amd64-lists/partial
o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64-lists'
apt-get $o update >/dev/null 2>&1 || true
(cd "$out/gl" && apt-get $o download libvulkan1 >/dev/null 2>&1) || echo "warning: libvulkan1 not downloaded"
xz -T0 -c "$(readlink -f "$(command -v node)")" > "$out/node.xz"
stage=$(mktemp -d); mkdir -p "$stage/node_modules"
# the dependency closure of the packages the run imports
node -e '
const fs = require("fs"), path = require("path");
const seen = new Set(), todo = ["@tensorflow/tfjs", "@tensorflow/tfjs-backend-webgpu", "webgpu", "mocha", "tsx"];
while (todo.length) {
  const n = todo.pop(); if (seen.has(n)) continue;
  const pj = path.join("node_modules", n, "package.json"); if (!fs.existsSync(pj)) continue;
  seen.add(n); const p = JSON.parse(fs.readFileSync(pj, "utf8"));
  for (const d of Object.keys({ ...(p.dependencies || {}), ...(p.optionalDependencies || {}) })) todo.push(d);
}
console.log([...seen].join("\n"));' > "$stage/list"
while read -r p; do mkdir -p "$stage/node_modules/$(dirname "$p")"; cp -a "node_modules/$p" "$stage/node_modules/$p"; done < "$stage/list"
[ -d node_modules/.bin ] && cp -a node_modules/.bin "$stage/node_modules/.bin"
find "$stage/node_modules" -type d \( -name 'win32-*' -o -name 'darwin-*' -o -name 'linux-arm*' -o -name 'android-*' \) -prune -exec rm -rf {} + 2>/dev/null || true
find "$stage/node_modules" \( -name '*.map' -o -name '*.min.js' -o -name '*.es2017.js' -o -name '*.fesm.js' -o -name '*.md' -o -name '*.d.ts' \) -delete 2>/dev/null || true
tar -C "$stage" -cJf "$out/node_modules.tar.xz" node_modules; rm -rf "$stage"
cat > "$out/enter.sh" <<'EOS'
# sourced at the start of a device command, from the project root
_k=$PWD/bench/out/kdev
for f in "$_k"/gl/*.deb; do [ -e "$f" ] && dpkg -x "$f" /; done; ldconfig 2>/dev/null || true
mkdir -p /tmp/devnode && xz -dc "$_k/node.xz" > /tmp/devnode/node && chmod +x /tmp/devnode/node
export PATH=/tmp/devnode:$PATH
[ -d node_modules ] || tar -xJf "$_k/node_modules.tar.xz"
f=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json; [ -e "$f" ] && export VK_DRIVER_FILES=$f
EOS
du -sh "$out"/* | sort -h
echo "bundle: $(du -sm "$out" | cut -f1) MiB (a device call carries at most 64 MiB with the work tree)"
