#!/usr/bin/env bash
# Packs what the whole test suite and the notebooks need on the accelerator machine (no Node, no
# network, no Jupyter there) into bench/out/suite: node, the dependency closure of the packages the
# tests and notebooks import, the Vulkan/GL loaders, and Redis (Debian packages, unpacked there into
# /tmp/redis) for the sweep tests. Builds dist/ first. Then one device call, with carry
# ["bench/out/suite", "dist"]:  bash bench/device/suite.sh
set -euo pipefail
root=$(git rev-parse --show-toplevel); cd "$root"
npm run build >/dev/null
BUNDLE_OUT=bench/out/suite \
BUNDLE_ROOTS="@tensorflow/tfjs @tensorflow/tfjs-backend-wasm @tensorflow/tfjs-backend-webgpu webgpu mocha tsx @huggingface/tokenizers bullmq ioredis mathjs ml-matrix plotly.js-dist gpt-3-encoder" \
  bash bench/kernels/bundle.sh
mkdir -p bench/out/suite/redis
o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64-lists'
(cd bench/out/suite/redis && apt-get $o download redis-server redis-tools libjemalloc2 liblzf1 >/dev/null 2>&1) || echo "warning: Redis packages not downloaded (the sweep tests will fail there)"
total=$(( $(du -sm bench/out/suite | cut -f1) + $(du -sm dist | cut -f1) + $(git ls-files -z | xargs -0 du -cm | tail -1 | cut -f1) ))
echo "carry + work tree: about ${total} MiB (at most 64)"
