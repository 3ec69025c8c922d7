#!/usr/bin/env bash
# Packs what the kernel benchmark needs on the accelerator machine into bench/out/kdev (ignored):
# node (xz), the node_modules packages the benchmark and test/webgpu-kernels.test.ts import (their
# dependency closure only, linux-x64 native parts), the Vulkan / GL loader packages (NVIDIA's Vulkan
# driver needs libglvnd's libraries), and enter.sh.
# Kept in its own folder (bench/out/kdev) so that it does not touch other bundles.
# Then: carry ["bench/out/kdev", "bench/out/dist"].
# BUNDLE_OUT (default bench/out/kdev) and BUNDLE_ROOTS (space-separated packages whose closure is packed)
# make other bundles: bench/device/bundle-suite.sh packs the test suite and the notebooks this way.
set -euo pipefail
root=$(git rev-parse --show-toplevel); cd "$root"
out=${BUNDLE_OUT:-bench/out/kdev}
export BUNDLE_ROOTS=${BUNDLE_ROOTS:-@tensorflow/tfjs @tensorflow/tfjs-backend-webgpu webgpu mocha tsx}
rm -rf "$out" && mkdir -p "$out/gl" /tmp/amd64-lists/partial
o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64-lists'
apt-get $o update >/dev/null 2>&1 || true
(cd "$out/gl" && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 >/dev/null 2>&1) || echo "warning: GL/Vulkan loader packages not downloaded"
xz -T0 -c "$(readlink -f "$(command -v node)")" > "$out/node.xz"
stage=$(mktemp -d); mkdir -p "$stage/node_modules"
# the dependency closure of the packages the run imports: every package directory reached (nested
# node_modules included) resolves its dependencies the way Node does, walking up to the root
node -e '
const fs = require("fs"), path = require("path");
const root = path.resolve("node_modules"), top = new Set(), seen = new Set();
const todo = process.env.BUNDLE_ROOTS.split(/\s+/).filter(Boolean).map((n) => path.join(root, n));
const resolveFrom = (dir, name) => {
  for (let d = dir; d.startsWith(root); d = path.dirname(d)) {
    const c = path.join(d, "node_modules", name);
    if (fs.existsSync(path.join(c, "package.json"))) return c;
    if (d === root) break;
  }
  const c = path.join(root, name);
  return fs.existsSync(path.join(c, "package.json")) ? c : null;
};
while (todo.length) {
  const dir = todo.pop();
  if (seen.has(dir)) continue;
  seen.add(dir);
  const rel = path.relative(root, dir).split(path.sep);
  top.add(rel[0].startsWith("@") ? rel.slice(0, 2).join("/") : rel[0]);
  const p = JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8"));
  for (const d of Object.keys({ ...(p.dependencies || {}), ...(p.optionalDependencies || {}), ...(p.peerDependencies || {}) })) {
    const r = resolveFrom(dir, d);
    if (r) todo.push(r);
  }
}
console.log([...top].join("\n"));' > "$stage/list"
while read -r p; do mkdir -p "$stage/node_modules/$(dirname "$p")"; cp -a "node_modules/$p" "$stage/node_modules/$p"; done < "$stage/list"
[ -d node_modules/.bin ] && cp -a node_modules/.bin "$stage/node_modules/.bin"
find "$stage/node_modules" -type d \( -name 'win32-*' -o -name 'darwin-*' -o -name 'linux-arm*' -o -name 'android-*' \) -prune -exec rm -rf {} + 2>/dev/null || true
find "$stage/node_modules" \( -name '*.map' -o -name '*.min.js' -o -name '*.es2017.js' -o -name '*.fesm.js' -o -name '*.md' -o -name '*.d.ts' \) -delete 2>/dev/null || true
# Node loads each @tensorflow package from one bundled file (dist/*.node.js, the package.json "main"),
# and the wasm backend its .wasm binaries: the other builds (ESM trees, browser bundles) stay behind
for d in "$stage"/node_modules/@tensorflow/*/; do
  find "$d" -type f ! -name package.json ! -path "${d}dist/*.node.js" ! -path "${d}dist/*.wasm" -delete
done
tar -C "$stage" -cJf "$out/node_modules.tar.xz" node_modules; rm -rf "$stage"
cat > "$out/enter.sh" <<'EOS'
# sourced at the start of a device command, from the project root
_k=$PWD/__OUT__
for f in "$_k"/gl/*.deb; do [ -e "$f" ] && dpkg -x "$f" /; done; ldconfig 2>/dev/null || true
[ -x /tmp/devnode/node ] || { mkdir -p /tmp/devnode && xz -dc "$_k/node.xz" > /tmp/devnode/node && chmod +x /tmp/devnode/node; }
export PATH=/tmp/devnode:$PATH
[ -d node_modules ] || tar -xJf "$_k/node_modules.tar.xz"
f=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json; [ -e "$f" ] && export VK_DRIVER_FILES=$f
EOS
sed -i "s#__OUT__#$out#" "$out/enter.sh"
du -sh "$out"/* | sort -h
echo "bundle: $(du -sm "$out" | cut -f1) MiB (a device call carries at most 64 MiB with the work tree)"
